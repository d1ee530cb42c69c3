//! The queue directory tree and who may do what in it.
//!
//! ```text
//! queue_directory/          0755  root (or the running user)
//!   maildrop/               3733  mail_owner:its group  set-gid + sticky, write-only for others
//!   incoming/ active/ deferred/ hold/ corrupt/   0700  mail_owner
//!   public/                 0755  mail_owner   the control socket (flush requests, pickup wake-ups)
//!   pid/                    0700  mail_owner   the instance lock
//! ```
//! Why maildrop looks like that (the local submission mechanism):
//! - any user can create a file there (`-wx` for others) but cannot list the directory, so
//!   nobody learns the names of other users' messages;
//! - sticky: only a file's owner (or the directory's owner, the daemon) can remove or rename it;
//! - set-gid: new files get the queue owner's group whatever the submitter's groups, so files
//!   created mode 0640 are readable by the daemon and by nobody else;
//! - the submitting uid is the file's owner, set by the kernel: it cannot be forged. Pickup
//!   refuses anything that is not a plain file with one link (no hard links to other users'
//!   files, no symlinks, no FIFOs).
//!   So no set-uid/set-gid program is needed, and sendmail works while the daemon is stopped.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use nix::unistd::{Gid, Uid, chown};

use super::QueueName;

pub const PUBLIC_DIR: &str = "public";
pub const PID_DIR: &str = "pid";
pub const CONTROL_SOCKET: &str = "public/control";
pub const LOCK_FILE: &str = "pid/master.pid";

fn mode_of(queue: QueueName) -> u32 {
    match queue {
        QueueName::Maildrop => 0o3733,
        _ => 0o700,
    }
}

/// Create (or repair) the tree. `owner` is mail_owner's uid and gid when running as root;
/// `None` when everything runs as the current user.
pub fn ensure(root: &Path, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    make_dir(root, 0o755, None)?;
    for queue in QueueName::ALL {
        make_dir(&root.join(queue.dir_name()), mode_of(queue), owner)?;
    }
    make_dir(&root.join(PUBLIC_DIR), 0o755, owner)?;
    make_dir(&root.join(PID_DIR), 0o700, owner)?;
    Ok(())
}

/// True if the tree exists (sendmail needs only maildrop).
pub fn exists(root: &Path) -> bool {
    root.join(QueueName::Maildrop.dir_name()).is_dir()
}

fn make_dir(path: &Path, mode: u32, owner: Option<(Uid, Gid)>) -> io::Result<()> {
    match fs::DirBuilder::new().recursive(true).mode(mode).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("create {}: {e}", path.display()))),
    }
    // The umask narrows the mode given at creation; set it exactly.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| io::Error::new(e.kind(), format!("chmod {}: {e}", path.display())))?;
    if let Some((uid, gid)) = owner {
        chown(path, Some(uid), Some(gid)).map_err(|e| io::Error::other(format!("chown {}: {e}", path.display())))?;
        // chown clears set-gid on some systems; restore the mode.
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}
