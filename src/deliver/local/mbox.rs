//! Appending a message to an mbox file (Postfix's local(8) `deliver_mailbox_file` and
//! `mail_copy`): a `From ` line, the prepended headers, the message with `From ` lines quoted,
//! a blank line.
//!
//! The file is opened the way Postfix's safe_open does (no symlinks, no hard-linked or
//! non-regular files, created 0600 when missing), locked ([`super::lock`]), written in one
//! piece and fsynced. A failed write or fsync truncates the file back to its size before the
//! delivery, so a reader never sees half a message, and the recipient is deferred.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use chrono::{DateTime, Local};
use nix::errno::Errno;

use super::LocalError;
use super::LocalMessage;
use super::lock::{self, LockSettings};
use crate::mail_warning;

/// How often to start over when the mailbox was replaced while we waited for its lock.
const REOPEN_TRIES: u32 = 3;

/// Appends `message` to the mbox file `path`, with the process's own rights.
///
/// `size_limit` (mailbox_size_limit, 0 = none) bounds the file's size after the delivery;
/// a message that would exceed it bounces with 5.2.2, as Postfix's file size limit does.
pub fn deliver_mbox(
    path: &Path,
    message: &LocalMessage,
    locks: &LockSettings,
    size_limit: u64,
) -> Result<(), LocalError> {
    append(path, message, locks, size_limit).map_err(|e| LocalError {
        text: format!("cannot update mailbox {} for user {}. {}", path.display(), current_user(), e.text),
        ..e
    })
}

/// The mbox separator line, without its newline: `From sender  Thu Jan  1 00:00:00 1970`
/// (asctime format, two spaces as Postfix writes them; the null sender is `MAILER-DAEMON`).
pub fn from_line(sender: &str, when: DateTime<Local>) -> String {
    let sender = if sender.is_empty() { "MAILER-DAEMON".to_string() } else { quote_sender(sender) };
    format!("From {sender}  {}", when.format("%a %b %e %H:%M:%S %Y"))
}

/// The whole text appended for `message` at `when`.
pub fn mbox_entry(message: &LocalMessage, when: DateTime<Local>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.content.len() + 512);
    out.extend_from_slice(from_line(message.sender, when).as_bytes());
    out.push(b'\n');
    for line in &message.prepend {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(&quote_from_lines(message.content));
    if !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.push(b'\n');
    out
}

/// `From ` at the start of any line becomes `>From ` (Postfix's MAIL_COPY_QUOTE: only that
/// exact form, not `>From ` again, as mboxrd would).
pub fn quote_from_lines(content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 16);
    for line in content.split_inclusive(|&b| b == b'\n') {
        if line.starts_with(b"From ") {
            out.push(b'>');
        }
        out.extend_from_slice(line);
    }
    out
}

/// The sender as Postfix's quote_822_local writes it: a local part with spaces or specials in
/// double quotes, so the `From ` line stays one address and a date.
fn quote_sender(sender: &str) -> String {
    let (local, domain) = match sender.rfind('@') {
        Some(at) => (&sender[..at], &sender[at..]),
        None => (sender, ""),
    };
    let special = |c: char| c.is_ascii_whitespace() || c.is_ascii_control() || "()<>,;:\\\"[]".contains(c);
    if local.starts_with('"') || !local.chars().any(special) {
        return sender.to_string();
    }
    let mut quoted = String::from("\"");
    for c in local.chars() {
        if c == '"' || c == '\\' {
            quoted.push('\\');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted + domain
}

fn append(path: &Path, message: &LocalMessage, locks: &LockSettings, size_limit: u64) -> Result<(), LocalError> {
    let mut tries = 0;
    loop {
        let file = open_mailbox(path)?;
        let lock = lock::lock_mailbox(&file, path, locks)?;
        // We may have waited: a reader (movemail, a mutt rewrite) can have replaced or linked
        // the file meanwhile. Write only to what the name still is, once-linked.
        if still_named(&file, path)? {
            return write_locked(path, &file, lock, message, size_limit);
        }
        drop(lock);
        tries += 1;
        if tries >= REOPEN_TRIES {
            return Err(LocalError::temporary("4.2.0", "file status changed unexpectedly"));
        }
    }
}

fn write_locked(
    path: &Path,
    file: &File,
    lock: lock::MailboxLock<'_>,
    message: &LocalMessage,
    size_limit: u64,
) -> Result<(), LocalError> {
    if let Some(warning) = lock.warning() {
        mail_warning!("local", "{warning}");
    }
    let original = file.metadata().map_err(|e| io_error("cannot fstat file", &e, false))?.len();
    let entry = mbox_entry(message, Local::now());
    if size_limit > 0 && original.saturating_add(entry.len() as u64) > size_limit {
        // Postfix enforces the limit as the file size rlimit: a write fails with EFBIG, which
        // it bounces as "mailbox full". Nothing is written here.
        return Err(LocalError::permanent("5.2.2", format!("error writing message: {}", lock::strerror(libc::EFBIG))));
    }
    if let Err(error) = write_synced(file, &entry) {
        // Never leave half a message: cut the file back before deferring.
        let length = i64::try_from(original).unwrap_or(i64::MAX);
        if let Err(e) = nix::unistd::ftruncate(file, length).and_then(|()| nix::unistd::fsync(file)) {
            mail_warning!(
                "local",
                "{}: cannot truncate to {original} bytes after a failed write: {}",
                path.display(),
                lock::strerror(e as i32)
            );
        }
        return Err(io_error("error writing message", &error, true));
    }
    // Released only now, after the fsync.
    drop(lock);
    Ok(())
}

fn write_synced(mut file: &File, entry: &[u8]) -> io::Result<()> {
    file.write_all(entry)?;
    file.sync_all()
}

/// Opens an existing mailbox, or creates it 0600, as Postfix's safe_open does: never through a
/// symlink, never a file with other hard links (someone's link to a file they may not write),
/// never a directory or device. Those refusals bounce (5.2.0, EPERM in Postfix).
fn open_mailbox(path: &Path) -> Result<File, LocalError> {
    // O_NONBLOCK: a FIFO planted as the mailbox must not hang the delivery.
    let flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK;
    loop {
        match OpenOptions::new().append(true).custom_flags(flags).open(path) {
            Ok(file) => {
                check_opened(&file, path)?;
                return Ok(file);
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) && is_symlink(path) => {
                return Err(LocalError::permanent("5.2.0", "file is a symbolic link"));
            }
            Err(e) => return Err(io_error("cannot open file", &e, false)),
        }
        // O_EXCL never follows a symlink, and loses cleanly to a concurrent creator.
        match OpenOptions::new().append(true).create_new(true).mode(0o600).custom_flags(flags).open(path) {
            Ok(file) => return Ok(file),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
            Err(e) => return Err(io_error("cannot create file exclusively", &e, false)),
        }
    }
}

fn check_opened(file: &File, path: &Path) -> Result<(), LocalError> {
    let meta = file.metadata().map_err(|e| io_error("cannot fstat file", &e, false))?;
    if !meta.file_type().is_file() {
        return Err(LocalError::permanent("5.2.0", format!("destination {} is not a regular file", path.display())));
    }
    if meta.nlink() != 1 {
        return Err(LocalError::permanent("5.2.0", format!("file has {} hard links", meta.nlink())));
    }
    Ok(())
}

/// Whether `path` still names the open `file`, and that file still has exactly one link.
fn still_named(file: &File, path: &Path) -> Result<bool, LocalError> {
    let open = file.metadata().map_err(|e| io_error("cannot fstat file", &e, false))?;
    if open.nlink() > 1 {
        return Err(LocalError::permanent("5.2.0", format!("file has {} hard links", open.nlink())));
    }
    Ok(match std::fs::symlink_metadata(path) {
        Ok(named) => named.dev() == open.dev() && named.ino() == open.ino(),
        Err(_) => false,
    })
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A system call's failure as Postfix's mbox_dsn classifies it, prefixed with `what` (its
/// `%m` texts). Deviations, deliberately more forgiving: resource shortages (ENFILE, EMFILE,
/// ENOMEM, EIO, EROFS...) defer instead of bouncing with 5.2.0, and a full mailbox (EDQUOT,
/// EFBIG from the kernel) defers with 4.2.2 instead of bouncing; after a write (`written`)
/// every failure defers, the file having been cut back.
pub(crate) fn io_error(what: &str, error: &io::Error, written: bool) -> LocalError {
    let text = format!("{what}: {}", lock::describe(error));
    let errno = error.raw_os_error().map(Errno::from_raw);
    match errno {
        Some(Errno::EAGAIN | Errno::ESTALE) => LocalError::temporary("4.2.0", text),
        Some(Errno::EDQUOT | Errno::EFBIG) => LocalError::temporary("4.2.2", text),
        Some(
            Errno::ENOSPC
            | Errno::ENFILE
            | Errno::EMFILE
            | Errno::ENOMEM
            | Errno::EIO
            | Errno::EINTR
            | Errno::EROFS
            | Errno::EBUSY
            | Errno::ETIMEDOUT,
        ) => LocalError::temporary("4.3.0", text),
        _ if written => LocalError::temporary("4.3.0", text),
        _ => LocalError::permanent("5.2.0", text),
    }
}

/// The name of the user we run as (the recipient), for the error text.
fn current_user() -> String {
    let uid = nix::unistd::geteuid();
    match nix::unistd::User::from_uid(uid) {
        Ok(Some(user)) => user.name,
        _ => uid.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Local> {
        Local.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
    }

    #[test]
    fn from_line_is_asctime() {
        assert_eq!(
            from_line("tom@example.com", at(2024, 3, 7, 9, 5, 1)),
            "From tom@example.com  Thu Mar  7 09:05:01 2024"
        );
        assert_eq!(from_line("a@b", at(1999, 12, 31, 23, 59, 59)), "From a@b  Fri Dec 31 23:59:59 1999");
    }

    #[test]
    fn null_sender_is_mailer_daemon() {
        assert_eq!(from_line("", at(2024, 3, 17, 0, 0, 0)), "From MAILER-DAEMON  Sun Mar 17 00:00:00 2024");
    }

    #[test]
    fn sender_with_space_is_quoted() {
        assert_eq!(
            from_line("john smith@x.org", at(2024, 3, 17, 0, 0, 0)),
            "From \"john smith\"@x.org  Sun Mar 17 00:00:00 2024"
        );
    }

    #[test]
    fn only_from_space_at_line_start_is_quoted() {
        let quoted = quote_from_lines(b"Subject: x\n\nFrom here\n>From there\nFromage\n a From b\nFrom ");
        assert_eq!(quoted, b"Subject: x\n\n>From here\n>From there\nFromage\n a From b\n>From ");
    }

    #[test]
    fn entry_ends_with_newline_and_blank_line() {
        let message = LocalMessage {
            sender: "a@b",
            prepend: vec!["Return-Path: <a@b>".into(), "Delivered-To: tom@x".into()],
            content: b"Subject: s\n\nno newline",
        };
        let text = String::from_utf8(mbox_entry(&message, at(2024, 3, 7, 9, 5, 1))).unwrap();
        assert_eq!(
            text,
            "From a@b  Thu Mar  7 09:05:01 2024\nReturn-Path: <a@b>\nDelivered-To: tom@x\nSubject: s\n\nno newline\n\n"
        );
    }

    #[test]
    fn symlink_and_hard_link_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        std::fs::write(&target, "").unwrap();
        let link = dir.path().join("tom");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let error = open_mailbox(&link).unwrap_err();
        assert_eq!(
            (error.temporary, error.dsn.as_str(), error.text.as_str()),
            (false, "5.2.0", "file is a symbolic link")
        );
        let hard = dir.path().join("jim");
        std::fs::hard_link(&target, &hard).unwrap();
        let error = open_mailbox(&hard).unwrap_err();
        assert_eq!((error.temporary, error.text.as_str()), (false, "file has 2 hard links"));
    }

    #[test]
    fn size_limit_bounces_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("tom");
        let message = LocalMessage { sender: "a@b", prepend: vec![], content: b"Subject: s\n\nbody\n" };
        let locks = LockSettings { dotlock: false, ..LockSettings::default() };
        deliver_mbox(&mbox, &message, &locks, 0).unwrap();
        let size = std::fs::metadata(&mbox).unwrap().len();
        let error = deliver_mbox(&mbox, &message, &locks, size + 10).unwrap_err();
        assert!(!error.temporary);
        assert_eq!(error.dsn, "5.2.2");
        assert!(error.text.ends_with(". error writing message: File too large"), "{}", error.text);
        assert!(error.text.starts_with(&format!("cannot update mailbox {} for user ", mbox.display())));
        assert_eq!(std::fs::metadata(&mbox).unwrap().len(), size);
    }
}
