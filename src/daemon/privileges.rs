//! Who the daemon runs as. Started as root it sets up the queue, binds its sockets, and then
//! becomes mail_owner for good: nothing it does in this release needs root afterwards (local
//! delivery, which does, arrives with its own privileged helper). Started as an ordinary
//! user, everything runs as that user and mail_owner is not used.

use nix::unistd::{Gid, Uid, User, getegid, geteuid, setgid, setgroups, setuid};

use crate::config::Config;

/// The owner the queue tree should have: mail_owner when running as root, `None` otherwise.
pub fn queue_owner(cfg: &Config) -> Result<Option<(Uid, Gid)>, String> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let name = cfg.mail_owner();
    let user = User::from_name(name)
        .map_err(|e| format!("mail_owner \"{name}\": cannot look up the account: {e}"))?
        .ok_or_else(|| format!("mail_owner \"{name}\": no such user (create the account or set mail_owner)"))?;
    if user.uid.is_root() {
        return Err(format!("mail_owner \"{name}\" must not be root (uid 0)"));
    }
    Ok(Some((user.uid, user.gid)))
}

/// Become `uid`/`gid` with no supplementary groups, irrevocably, and check it took.
pub fn drop_to(uid: Uid, gid: Gid) -> Result<(), String> {
    setgroups(&[gid]).map_err(|e| format!("setgroups: {e}"))?;
    setgid(gid).map_err(|e| format!("setgid {gid}: {e}"))?;
    setuid(uid).map_err(|e| format!("setuid {uid}: {e}"))?;
    if geteuid() != uid || getegid() != gid || setuid(Uid::from_raw(0)).is_ok() {
        return Err("privileges were not dropped".into());
    }
    Ok(())
}
