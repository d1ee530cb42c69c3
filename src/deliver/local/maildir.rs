//! Delivering to a Maildir (Postfix's local(8) `deliver_maildir`, the maildir(5) protocol):
//! write the message to `tmp/` under a unique name, fsync it, link it into `new/`, fsync
//! `new/`, remove the `tmp/` name. No locking is needed and no `From ` line or quoting is
//! written. Readers see a message in `new/` whole or not at all.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::LocalError;
use super::LocalMessage;
use super::lock::describe;
use crate::mail_warning;

/// Deliveries made by this process, for unique names (the `Q` part).
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `message` into the Maildir `dir` (creating `dir`, `tmp/`, `new/` and `cur/` 0700
/// when missing) and returns the path of the new file in `new/`. Every failure is temporary:
/// nothing is left in `new/`, and the `tmp/` file is removed.
pub fn deliver_maildir(dir: &Path, message: &LocalMessage) -> Result<PathBuf, LocalError> {
    deliver(dir, message).map_err(|e| LocalError { text: format!("maildir delivery failed: {}", e.text), ..e })
}

fn deliver(dir: &Path, message: &LocalMessage) -> Result<PathBuf, LocalError> {
    let (tmp, new) = (dir.join("tmp"), dir.join("new"));
    for sub in [&tmp, &new, &dir.join("cur")] {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(sub)
            .map_err(|e| failure("create maildir directory", sub, &e))?;
    }

    let (name, mut file, tmp_path) = create_unique(&tmp)?;
    let written = write_message(&mut file, message).and_then(|()| file.sync_all());
    drop(file);
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(failure("create maildir file", &tmp_path, &e));
    }

    let new_path = new.join(&name);
    // link() rather than rename(): it never replaces an existing new/ file of the same name.
    // Filesystems without hard links (EPERM) get rename() instead.
    let moved = std::fs::hard_link(&tmp_path, &new_path).or_else(|e| match e.raw_os_error() {
        Some(libc::EPERM | libc::ENOTSUP | libc::EXDEV) => std::fs::rename(&tmp_path, &new_path),
        _ => Err(e),
    });
    if let Err(e) = moved {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(failure("create maildir file", &new_path, &e));
    }
    // The message is delivered once its directory entry is on disk.
    if let Err(e) = File::open(&new).and_then(|d| d.sync_all()) {
        let _ = std::fs::remove_file(&new_path);
        let _ = std::fs::remove_file(&tmp_path);
        return Err(failure("sync maildir directory", &new, &e));
    }
    if let Err(e) = std::fs::remove_file(&tmp_path)
        && e.kind() != io::ErrorKind::NotFound
    {
        mail_warning!("local", "remove {}: {}", tmp_path.display(), describe(&e));
    }
    Ok(new_path)
}

fn write_message(file: &mut File, message: &LocalMessage) -> io::Result<()> {
    let mut out = Vec::with_capacity(message.content.len() + 256);
    for line in &message.prepend {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(message.content);
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    file.write_all(&out)
}

/// Creates `tmp/NAME` exclusively, NAME unique as maildir(5) asks:
/// `SECONDS.MMICROSPPIDQCOUNT.HOST`.
fn create_unique(tmp: &Path) -> Result<(String, File, PathBuf), LocalError> {
    let host = hostname();
    let mut last = None;
    for _ in 0..10 {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
        let name = format!(
            "{}.M{}P{}Q{}.{host}",
            now.as_secs(),
            now.subsec_micros(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = tmp.join(&name);
        match OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(file) => return Ok((name, file, path)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some((path, e)),
            Err(e) => return Err(failure("create maildir file", &path, &e)),
        }
    }
    let (path, e) = last.expect("ten tries");
    Err(failure("create maildir file", &path, &e))
}

/// The host name as a Maildir name part: `/` and `:` written as `\057` and `\072`.
fn hostname() -> String {
    let host = nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "localhost".into());
    host.replace('/', "\\057").replace(':', "\\072")
}

fn failure(what: &str, path: &Path, error: &io::Error) -> LocalError {
    let dsn = match error.raw_os_error() {
        Some(libc::EDQUOT | libc::EFBIG) => "4.2.2",
        Some(libc::EAGAIN) => "4.2.0",
        _ => "4.3.0",
    };
    LocalError::temporary(dsn, format!("{what} {}: {}", path.display(), describe(error)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivers_into_new_with_prepended_headers() {
        let dir = tempfile::tempdir().unwrap();
        let maildir = dir.path().join("Maildir");
        let message = LocalMessage {
            sender: "a@b",
            prepend: vec!["Delivered-To: tom@x".into()],
            content: b"Subject: s\n\nFrom here",
        };
        let first = deliver_maildir(&maildir, &message).unwrap();
        let second = deliver_maildir(&maildir, &message).unwrap();
        assert_ne!(first, second);
        assert_eq!(first.parent().unwrap(), maildir.join("new"));
        assert_eq!(std::fs::read(&first).unwrap(), b"Delivered-To: tom@x\nSubject: s\n\nFrom here\n");
        assert_eq!(std::fs::read_dir(maildir.join("tmp")).unwrap().count(), 0);
        assert!(maildir.join("cur").is_dir());
    }

    #[test]
    fn unwritable_place_is_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "").unwrap();
        let message = LocalMessage { sender: "", prepend: vec![], content: b"x\n" };
        let error = deliver_maildir(&blocker.join("Maildir"), &message).unwrap_err();
        assert!(error.temporary);
        assert!(error.text.starts_with("maildir delivery failed: create maildir directory "), "{}", error.text);
    }
}
