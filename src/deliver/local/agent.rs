//! One local recipient, delivered (Postfix's local(8)): the queue file is read here, never
//! trusted from a request; the recipient is expanded into targets ([`super::expand`]), and
//! each target is written or run as its user ([`as_user`]): mailboxes as the recipient,
//! alias commands and files as the alias table's owner or default_privs.
//!
//! Run as root (the privileged helper), every target gets a child process that switched to
//! the target's uid, gid and groups before it touches anything; the parent only forks, waits
//! and reads the child's one-line answer. Run as an ordinary user, targets of that user are
//! done in-process and any other user's are refused with a clear reason.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::unistd::{ForkResult, Gid, Uid, fork, getuid};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::expand::{self, Lookups, Target};
use super::lock::LockSettings;
use super::privsep::{Forward, Reply, TargetResult};
use super::{LocalError, LocalMessage, Privs, command, maildir, mbox};
use crate::config::Config;
use crate::maps::MapList;
use crate::message::parse_header_block;
use crate::queue::{QueueName, QueueStore, RcptState};

/// Delivers recipient `index` of message `queue_id` in active/.
pub fn deliver_recipient(cfg: &Config, queue_directory: &Path, queue_id: &str, index: usize) -> Reply {
    let mut reply = Reply::default();
    let fail = |reply: &mut Reply, e: LocalError| {
        reply.results.push(TargetResult {
            to: String::new(),
            delivered: false,
            temporary: e.temporary,
            dsn: e.dsn,
            text: e.text,
        })
    };
    // A queue ID is letters and digits: nothing else may reach a path.
    if queue_id.is_empty() || !queue_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        fail(&mut reply, LocalError::temporary("4.3.0", format!("bad queue ID {queue_id:?}")));
        return reply;
    }
    let store = QueueStore::new(queue_directory);
    let (entry, mut reader) = match store.open_message(QueueName::Active, queue_id) {
        Ok(opened) => opened,
        Err(e) => {
            fail(&mut reply, LocalError::temporary("4.3.0", format!("cannot open queue file {queue_id}: {e}")));
            return reply;
        }
    };
    let mut content = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
    if let Err(e) = reader.read_to_end(&mut content) {
        fail(&mut reply, LocalError::temporary("4.3.0", format!("cannot read queue file {queue_id}: {e}")));
        return reply;
    }
    let env = &entry.envelope;
    let Some(rcpt) = env.recipients.get(index).filter(|r| r.state == RcptState::Pending) else {
        fail(&mut reply, LocalError::temporary("4.3.0", format!("{queue_id}: no pending recipient #{index}")));
        return reply;
    };
    reply.original = rcpt.original.clone();

    // Delivered-To: for this very recipient means the message has been here before.
    let header = parse_header_block(&content);
    if header.get_all("Delivered-To").any(|h| h.value().trim().eq_ignore_ascii_case(&rcpt.address)) {
        fail(&mut reply, LocalError::permanent("5.4.6", format!("mail forwarding loop for {}", rcpt.address)));
        return reply;
    }

    let lookups = match System::new(cfg) {
        Ok(lookups) => lookups,
        Err(e) => {
            fail(&mut reply, e);
            return reply;
        }
    };
    let expansion = match expand::expand(cfg, &rcpt.address, &lookups) {
        Ok(expansion) => expansion,
        Err(e) => {
            fail(&mut reply, e);
            return reply;
        }
    };
    for warning in &expansion.warnings {
        crate::mail_warning!("local", "{queue_id}: {warning}");
    }
    let domain = rcpt.address.rsplit_once('@').map(|(_, d)| d.to_string()).unwrap_or_else(|| cfg.myhostname().into());
    for delivery in &expansion.deliveries {
        let to = delivery.to.clone();
        // Each target carries its own Delivered-To: (the address it delivers for).
        let mut prepend = vec![format!("Return-Path: <{}>", env.sender), format!("Delivered-To: {to}")];
        if rcpt.original != to {
            prepend.push(format!("X-Original-To: {}", rcpt.original));
        }
        let message = LocalMessage { sender: &env.sender, prepend, content: &content };
        let job = Job { cfg, message: &message, recipient: &to, original: &rcpt.original, domain: &domain };
        let result = match &delivery.target {
            Target::Forward { address } => {
                reply.forwards.push(Forward { address: address.clone(), sender: delivery.sender.clone() });
                continue;
            }
            Target::Mailbox { user, extension } if user.uid == 0 => {
                // Nothing is ever written as root: root's mailbox is written as default_privs
                // (alias root to a real user to read it comfortably).
                match lookups.user(cfg.default_privs()) {
                    Ok(Some(privs)) if privs.uid != 0 => {
                        crate::mail_warning!(
                            "local",
                            "{queue_id}: mail for {} goes to its mailbox as {} (default_privs): alias it to a real user",
                            user.user,
                            privs.user
                        );
                        job.mailbox_as(user, &privs, extension.as_deref())
                    }
                    Ok(_) => Err(LocalError::temporary("4.3.0", "default_privs: no such user (or it is root)")),
                    Err(e) => Err(e),
                }
            }
            Target::Mailbox { user, extension } => job.mailbox(user, extension.as_deref()),
            Target::File { path, privs } => job.file(path, privs),
            Target::Command { command, privs, extension, user } => {
                job.command(command, privs, extension.as_deref(), user.as_ref())
            }
        };
        reply.results.push(match result {
            Ok(text) => TargetResult { to, delivered: true, temporary: false, dsn: "2.0.0".into(), text },
            Err(e) => TargetResult { to, delivered: false, temporary: e.temporary, dsn: e.dsn, text: e.text },
        });
    }
    for failure in expansion.failures {
        fail(&mut reply, failure);
    }
    reply
}

/// What every target of one recipient shares.
struct Job<'a> {
    cfg: &'a Config,
    message: &'a LocalMessage<'a>,
    recipient: &'a str,
    original: &'a str,
    domain: &'a str,
}

impl Job<'_> {
    /// The user's mailbox: mailbox_command, home_mailbox (mbox, or Maildir when it ends in
    /// "/"), or mail_spool_directory/USER.
    fn mailbox(&self, user: &Privs, extension: Option<&str>) -> Result<String, LocalError> {
        self.mailbox_as(user, user, extension)
    }

    /// The mailbox of `owner` (its name and home decide where), written as `writer`.
    fn mailbox_as(&self, owner: &Privs, writer: &Privs, extension: Option<&str>) -> Result<String, LocalError> {
        let user = writer;
        let cfg = self.cfg;
        if !cfg.mailbox_command().trim().is_empty() {
            let command = cfg.mailbox_command().trim();
            self.command(command, user, extension, Some(user))?;
            return Ok(format!("delivered to command: {command}"));
        }
        let locks = LockSettings::from_config(cfg);
        let limit = cfg.mailbox_size_limit();
        let home_mailbox = cfg.home_mailbox().trim();
        if !home_mailbox.is_empty() {
            let path = owner.home.join(home_mailbox);
            if home_mailbox.ends_with('/') {
                let message = self.message.clone();
                as_user(user, None, move || maildir::deliver_maildir(&path, &message).map(|_| ()))?;
                return Ok("delivered to maildir".into());
            }
            let message = self.message.clone();
            as_user(user, None, move || mbox::deliver_mbox(&path, &message, &locks, limit))?;
            return Ok("delivered to mailbox".into());
        }
        let spool = PathBuf::from(cfg.mail_spool_directory());
        let path = spool.join(&owner.user);
        // Debian's /var/mail is root:mail 2775: like procmail and mutt_dotlock (set-gid mail),
        // the writer gets that group to create USER and USER.lock there.
        let extra = std::fs::metadata(&spool).ok().filter(|m| m.mode() & 0o020 != 0).map(|m| m.gid());
        let message = self.message.clone();
        as_user(user, extra, move || mbox::deliver_mbox(&path, &message, &locks, limit))?;
        Ok("delivered to mailbox".into())
    }

    fn file(&self, path: &Path, privs: &Privs) -> Result<String, LocalError> {
        let locks = LockSettings::from_config(self.cfg);
        let limit = self.cfg.mailbox_size_limit();
        let message = self.message.clone();
        let target = path.to_path_buf();
        as_user(privs, None, move || mbox::deliver_mbox(&target, &message, &locks, limit))?;
        Ok(format!("delivered to file: {}", path.display()))
    }

    fn command(
        &self,
        command_line: &str,
        privs: &Privs,
        extension: Option<&str>,
        user: Option<&Privs>,
    ) -> Result<String, LocalError> {
        let local = self.recipient.rsplit_once('@').map(|(l, _)| l).unwrap_or(self.recipient);
        let who = user.unwrap_or(privs);
        let env = command::command_env(&command::CommandEnv {
            user: &who.user,
            home: Some(who.home.as_path()),
            shell: Some(who.shell.as_str()),
            sender: self.message.sender,
            recipient: self.recipient,
            local,
            domain: Some(self.domain),
            extension,
            original_recipient: Some(self.original),
        });
        let switch = (nix::unistd::geteuid().is_root()).then_some(privs);
        if switch.is_none() && privs.uid != getuid().as_raw() {
            return Err(not_this_user(privs));
        }
        let home = who.home.is_dir().then_some(who.home.as_path());
        command::run_command(&command::CommandRequest {
            command: command_line,
            privs: switch,
            env,
            cwd: home,
            time_limit: self.cfg.command_time_limit(),
            message: self.message,
        })?;
        Ok(format!("delivered to command: {command_line}"))
    }
}

fn not_this_user(privs: &Privs) -> LocalError {
    LocalError::temporary(
        "4.3.0",
        format!(
            "cannot deliver as user {} (uid {}): tidemail runs as uid {}; start it as root to deliver to other users",
            privs.user,
            privs.uid,
            getuid()
        ),
    )
}

/// Runs `work` as `privs` (plus group `extra`): in a child that switched users when root,
/// in-process when this process is that user already, refused otherwise.
fn as_user<T, F>(privs: &Privs, extra: Option<u32>, work: F) -> Result<T, LocalError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<T, LocalError>,
{
    if !nix::unistd::geteuid().is_root() {
        if privs.uid != getuid().as_raw() {
            return Err(not_this_user(privs));
        }
        return work();
    }
    let (read_end, write_end) =
        nix::unistd::pipe().map_err(|e| LocalError::temporary("4.3.0", format!("pipe: {e}")))?;
    // SAFETY: the privileged helper is single-threaded (forked before any thread started).
    match unsafe { fork() } {
        Err(e) => Err(LocalError::temporary("4.3.0", format!("fork: {e}"))),
        Ok(ForkResult::Child) => {
            drop(read_end);
            let result = switch_to(privs, extra).and_then(|()| work());
            let mut out = std::fs::File::from(write_end);
            let _ = out.write_all(&serde_json::to_vec(&result).unwrap_or_default());
            drop(out);
            // Leave without running the parent's exit handlers or flushing its buffers.
            unsafe { libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => {
            drop(write_end);
            let mut answer = Vec::new();
            let _ = std::fs::File::from(read_end).read_to_end(&mut answer);
            let _ = nix::sys::wait::waitpid(child, None);
            serde_json::from_slice::<Result<T, LocalError>>(&answer).unwrap_or_else(|_| {
                Err(LocalError::temporary("4.3.0", format!("delivery process for user {} died", privs.user)))
            })
        }
    }
}

/// Becomes `privs` for good (groups, gid, uid), and checks it took.
fn switch_to(privs: &Privs, extra: Option<u32>) -> Result<(), LocalError> {
    let err =
        |what: &str, e: nix::Error| LocalError::temporary("4.3.0", format!("{what} for user {}: {e}", privs.user));
    if privs.uid == 0 {
        return Err(LocalError::permanent("5.7.1", format!("refusing to deliver as root (user {})", privs.user)));
    }
    let mut groups: Vec<Gid> = privs.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    groups.extend(extra.map(Gid::from_raw));
    nix::unistd::setgroups(&groups).map_err(|e| err("setgroups", e))?;
    nix::unistd::setgid(Gid::from_raw(privs.gid)).map_err(|e| err("setgid", e))?;
    nix::unistd::setuid(Uid::from_raw(privs.uid)).map_err(|e| err("setuid", e))?;
    if nix::unistd::geteuid().as_raw() != privs.uid || nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(LocalError::temporary("4.3.0", format!("could not become user {}", privs.user)));
    }
    // SAFETY: umask only changes this process's file creation mask.
    unsafe { libc::umask(0o077) };
    Ok(())
}

/// The system's aliases, users and files, as expansion asks for them.
struct System {
    aliases: MapList,
    /// Owner of each alias table's source (uid), in alias_maps order.
    owners: Vec<u32>,
}

impl System {
    fn new(cfg: &Config) -> Result<System, LocalError> {
        let aliases =
            MapList::open(cfg.alias_maps()).map_err(|e| LocalError::temporary("4.3.0", format!("alias_maps: {e}")))?;
        let owners = cfg
            .alias_maps()
            .iter()
            .map(|spec| {
                let name = spec.split_once(':').map(|(_, n)| n).unwrap_or(spec);
                std::fs::metadata(name)
                    .or_else(|_| std::fs::metadata(format!("{name}.cdb")))
                    .map(|m| m.uid())
                    .unwrap_or(0)
            })
            .collect();
        Ok(System { aliases, owners })
    }
}

impl Lookups for System {
    fn alias(&self, name: &str) -> Result<Option<(String, u32)>, LocalError> {
        for (map, owner) in self.aliases.maps().iter().zip(&self.owners) {
            match map.lookup(name) {
                Ok(Some(value)) => return Ok(Some((value, *owner))),
                Ok(None) => {}
                Err(e) => return Err(LocalError::temporary("4.3.0", format!("alias_maps lookup of {name}: {e}"))),
            }
        }
        Ok(None)
    }

    fn user(&self, name: &str) -> Result<Option<Privs>, LocalError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| LocalError::temporary("4.3.0", format!("user lookup of {name}: {e}")))?;
        let Some(user) = user else { return Ok(None) };
        let groups = std::ffi::CString::new(name)
            .ok()
            .and_then(|c| nix::unistd::getgrouplist(&c, user.gid).ok())
            .unwrap_or_else(|| vec![user.gid]);
        Ok(Some(Privs {
            user: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: user.dir,
            shell: user.shell.display().to_string(),
        }))
    }

    fn user_by_uid(&self, uid: u32) -> Result<Option<Privs>, LocalError> {
        let user = nix::unistd::User::from_uid(Uid::from_raw(uid))
            .map_err(|e| LocalError::temporary("4.3.0", format!("user lookup of uid {uid}: {e}")))?;
        match user {
            Some(user) => self.user(&user.name),
            None => Ok(None),
        }
    }

    fn read_file(&self, path: &Path, as_user_privs: Option<&Privs>) -> Result<Option<(String, u32, u32)>, LocalError> {
        let path = path.to_path_buf();
        let read = move || {
            use std::os::unix::fs::OpenOptionsExt;
            let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(&path);
            let mut file = match file {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(LocalError::temporary("4.3.0", format!("cannot open {}: {e}", path.display())));
                }
            };
            let meta = file.metadata().map_err(|e| LocalError::temporary("4.3.0", e.to_string()))?;
            let mut text = String::new();
            file.read_to_string(&mut text)
                .map_err(|e| LocalError::temporary("4.3.0", format!("cannot read {}: {e}", path.display())))?;
            Ok(Some((text, meta.uid(), meta.mode())))
        };
        // Read as the user: a .forward can show only what its owner may read.
        match as_user_privs {
            // Root's own .forward is read as root: nothing is written.
            Some(privs) if privs.uid != 0 => as_user(privs, None, read),
            _ => read(),
        }
    }
}
