//! pickup: the daemon's side of local submission. Takes each file from maildrop, checks that it
//! is what it claims to be, and hands it to cleanup.
//!
//! Maildrop is writable by every local user, so its files are untrusted: symlinks, hard links
//! to other users' files, FIFOs and directories are refused (set aside to corrupt/, logged),
//! and the submitting uid is the file owner the kernel recorded, never anything in the file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cleanup::{self, CleanupError};
use crate::config::Config;
use crate::queue::{Origin, QueueError, QueueName, QueueStore};
use crate::{mail_info, mail_warning};

const SERVICE: &str = "pickup";

/// What happened to one maildrop file.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Queued in incoming under this ID.
    Queued(String),
    /// Refused and moved to corrupt/.
    SetAside,
    /// Left in maildrop to retry later (a temporary problem, e.g. disk full).
    Retry,
    /// Gone before we got to it.
    Vanished,
    /// Refused, but it cannot be moved (a user's directory): left where it is, ignored.
    Ignored,
}

/// How long a maildrop file that could not be queued (a lookup table down, disk trouble)
/// waits before pickup tries it again; the files behind it are not held up meanwhile.
const RETRY_DELAY: Duration = Duration::from_secs(60);

/// Pick up everything in maildrop; returns the IDs queued in incoming. `retry_now` also takes
/// the files that failed recently (a flush).
pub fn pickup_all(cfg: &Config, store: &QueueStore, retry_now: bool) -> io::Result<Vec<String>> {
    static WAITING: Mutex<Option<HashMap<String, Instant>>> = Mutex::new(None);
    let mut waiting = WAITING.lock().unwrap_or_else(|p| p.into_inner());
    let waiting = waiting.get_or_insert_with(HashMap::new);
    if retry_now {
        waiting.clear();
    }
    let now = Instant::now();
    waiting.retain(|_, until| *until > now);
    let mut queued = Vec::new();
    for name in store.list(QueueName::Maildrop)? {
        if waiting.contains_key(&name) {
            continue;
        }
        match pickup_one(cfg, store, &name) {
            Outcome::Queued(id) => queued.push(id),
            Outcome::Retry => {
                waiting.insert(name, now + RETRY_DELAY);
            }
            Outcome::SetAside | Outcome::Vanished | Outcome::Ignored => {}
        }
    }
    Ok(queued)
}

/// Why a maildrop entry is not a plain file with one link, if it is not.
fn refuse(meta: &std::fs::Metadata) -> Option<String> {
    if meta.file_type().is_symlink() {
        Some("is a symbolic link".into())
    } else if !meta.file_type().is_file() {
        Some("is not a regular file".into())
    } else if meta.nlink() != 1 {
        Some(format!("has {} hard links", meta.nlink()))
    } else {
        None
    }
}

/// Open a maildrop file without following links or blocking on FIFOs, and check (before and
/// after opening, against a swap in between) that it is a plain file with one link. Returns
/// the file and its owner.
fn open_untrusted(store: &QueueStore, name: &str) -> Result<(File, u32), String> {
    let path = store.path(QueueName::Maildrop, name);
    let before = path.symlink_metadata().map_err(|e| e.to_string())?;
    if let Some(why) = refuse(&before) {
        return Err(why);
    }
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(&path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "is a symbolic link".to_string(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if let Some(why) = refuse(&meta) {
        return Err(why);
    }
    if (meta.dev(), meta.ino()) != (before.dev(), before.ino()) {
        return Err("was replaced while being opened".into());
    }
    Ok((file, meta.uid()))
}

pub fn pickup_one(cfg: &Config, store: &QueueStore, name: &str) -> Outcome {
    let path = store.path(QueueName::Maildrop, name);
    if path.symlink_metadata().is_err() {
        return Outcome::Vanished;
    }
    let (file, uid) = match open_untrusted(store, name) {
        Ok(f) => f,
        Err(why) => return set_aside(store, name, &why),
    };
    let (entry, content) = match store.open_message_file(file, QueueName::Maildrop, name) {
        Ok(m) => m,
        Err(QueueError::Corrupt(why)) => return set_aside(store, name, &why),
        Err(e) => {
            mail_warning!(SERVICE, "maildrop/{name}: {e}");
            return Outcome::Retry;
        }
    };
    let mut envelope = entry.envelope;
    envelope.origin = Origin::Local { uid };
    if envelope.submission.as_ref().is_some_and(|s| s.sender_from_uid) {
        envelope.sender = login_name(uid);
    }
    let sender_for_log = crate::address::qualify(&envelope.sender, cfg.myorigin());

    match cleanup::cleanup(cfg, store, envelope, &mut BufReader::new(content)) {
        Ok(done) => {
            mail_info!(SERVICE, "{}: uid={uid} from=<{sender_for_log}>", done.queue_id);
            if let Some(mid) = &done.message_id {
                mail_info!("cleanup", "{}: message-id={mid}", done.queue_id);
            }
            // The new file is durable; only now may the maildrop copy go. A crash in between
            // means the message is picked up twice: delivered twice at worst, never lost.
            if let Err(e) = store.remove_unsynced(QueueName::Maildrop, name) {
                mail_warning!(SERVICE, "maildrop/{name}: cannot remove after pickup: {e}");
            }
            Outcome::Queued(done.queue_id)
        }
        Err(CleanupError::Input(e)) => set_aside(store, name, &format!("damaged content: {e}")),
        Err(e @ (CleanupError::TooBig { .. } | CleanupError::NoRecipients)) => {
            // The sendmail command checks both; a file that fails here was not written by it.
            set_aside(store, name, &e.to_string())
        }
        Err(CleanupError::Queue(e)) => {
            mail_warning!(SERVICE, "maildrop/{name}: cannot queue: {e}; will retry");
            Outcome::Retry
        }
    }
}

fn set_aside(store: &QueueStore, name: &str, why: &str) -> Outcome {
    match store.set_aside(QueueName::Maildrop, name) {
        Ok(target) => {
            mail_warning!(SERVICE, "maildrop/{name}: {why}: moved to corrupt/{target}");
            Outcome::SetAside
        }
        Err(e) => {
            // A directory a user made in maildrop cannot be moved by us (that needs write
            // access to the directory itself). It must not stop pickup of everything else,
            // nor fill the log once a second: say it once per daemon and pass it by.
            static REPORTED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
            let mut reported = REPORTED.lock().unwrap_or_else(|p| p.into_inner());
            if !reported.iter().any(|n| n == name) {
                mail_warning!(SERVICE, "maildrop/{name}: {why}; cannot move it to corrupt/ ({e}): ignored");
                reported.push(name.to_string());
            }
            Outcome::Ignored
        }
    }
}

/// The sender of mail submitted without -f: the submitting user's login name (cleanup adds
/// @$myorigin). A uid without a passwd entry is named by number, as Postfix does.
fn login_name(uid: u32) -> String {
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.name,
        _ => format!("#{uid}"),
    }
}
