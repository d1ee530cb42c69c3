//! Locking an mbox file the way Debian's mail programs expect (Debian Policy §11.6): a kernel
//! fcntl lock first, then a `PATH.lock` dotlock (liblockfile's, mutt's and procmail's), so
//! that mutt, procmail, mail(1) and Dovecot never see half a message.
//!
//! All locks are tried without blocking, in rounds `delay` apart, at most `attempts` rounds
//! (Postfix's deliver_lock_attempts / deliver_lock_delay); a round that finds one lock busy
//! releases the others before it sleeps, so we never wait holding a lock and cannot deadlock
//! with programs that take them in the other order (Postfix, procmail: dotlock first). A
//! mailbox still locked after the last round is deferred with 4.2.0, never waited for forever. A dotlock whose mtime is older than `stale` is left
//! over from a crashed program and is removed. Optionally (mailbox_delivery_lock = flock) a
//! BSD flock as well; it is invisible to fcntl lockers on Linux, so it is never the default.
//!
//! The fcntl lock is an open-file-description lock (F_OFD_SETLK): it conflicts with the
//! classic POSIX locks of lockf()/fcntl() users, but belongs to our open file, so a close of
//! another descriptor elsewhere in the process cannot drop it.
//!
//! A dotlock needs write access to the mailbox's directory. Where the recipient has none (a
//! 2775 root:mail spool and a process without gid mail), the dotlock is skipped with a
//! warning and the kernel lock alone protects the delivery, as Postfix does for files in
//! non-writable directories (MBOX_DOT_LOCK_MAY_FAIL): refusing would bounce the mail of every
//! such user for a lock that only NFS needs.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, fcntl};

use super::LocalError;
use crate::config::Config;

/// How mailbox files are locked (mailbox_delivery_lock and friends).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockSettings {
    pub fcntl: bool,
    pub dotlock: bool,
    pub flock: bool,
    /// Tries per lock before the delivery is deferred (at least one).
    pub attempts: u32,
    /// The wait between two tries.
    pub delay: Duration,
    /// A dotlock older than this (by mtime) is removed.
    pub stale: Duration,
}

impl LockSettings {
    pub fn from_config(cfg: &Config) -> LockSettings {
        let styles = cfg.mailbox_delivery_lock();
        let has = |name: &str| styles.iter().any(|s| s == name);
        LockSettings {
            fcntl: has("fcntl"),
            dotlock: has("dotlock"),
            flock: has("flock"),
            attempts: u32::try_from(cfg.deliver_lock_attempts()).unwrap_or(u32::MAX).max(1),
            delay: cfg.deliver_lock_delay(),
            stale: cfg.stale_lock_time(),
        }
    }
}

impl Default for LockSettings {
    /// Postfix's defaults on Linux: fcntl and dotlock, 20 tries 1 s apart, stale after 500 s.
    fn default() -> LockSettings {
        LockSettings {
            fcntl: true,
            dotlock: true,
            flock: false,
            attempts: 20,
            delay: Duration::from_secs(1),
            stale: Duration::from_secs(500),
        }
    }
}

/// The locks held on one mailbox; dropping it releases them (dotlock removed first, then the
/// kernel locks).
#[derive(Debug)]
pub struct MailboxLock<'f> {
    file: &'f File,
    fcntl: bool,
    flock: bool,
    dotlock: Option<PathBuf>,
    warning: Option<String>,
}

impl MailboxLock<'_> {
    /// Why a configured lock was skipped (the dotlock in a directory the user cannot write),
    /// for the caller to log; `None` when every configured lock is held.
    pub fn warning(&self) -> Option<&str> {
        self.warning.as_deref()
    }

    /// The dotlock file this guard created, if any.
    pub fn dotlock_path(&self) -> Option<&Path> {
        self.dotlock.as_deref()
    }
}

impl Drop for MailboxLock<'_> {
    fn drop(&mut self) {
        if let Some(lock) = self.dotlock.take() {
            let _ = std::fs::remove_file(lock);
        }
        // Closing the file would release these too, but the caller may keep it open.
        if self.flock {
            // SAFETY: flock(2) on a descriptor that `self.file` keeps open.
            unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
        }
        if self.fcntl {
            let _ = fcntl(self.file, FcntlArg::F_OFD_SETLK(&whole_file(libc::F_UNLCK)));
        }
    }
}

/// The dotlock file of `path`: `path` with `.lock` appended.
pub fn dotlock_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".lock");
    PathBuf::from(name)
}

/// Locks `file` (opened from `path`) exclusively as `settings` say: fcntl, then flock, then
/// the dotlock. Each round tries every lock once without waiting; when one is busy, the ones
/// already taken are released before the pause, so that we never sleep holding a lock and
/// cannot deadlock with a program that takes them in the other order (Postfix itself, and
/// procmail, dotlock first). On failure nothing stays locked and the error is temporary
/// (4.2.0, Postfix's text: `unable to lock for exclusive access: Resource temporarily
/// unavailable`, or `unable to create lock file PATH.lock: File exists`).
pub fn lock_mailbox<'f>(file: &'f File, path: &Path, settings: &LockSettings) -> Result<MailboxLock<'f>, LocalError> {
    let mut broken = 0;
    let mut round = 1;
    loop {
        let mut guard = MailboxLock { file, fcntl: false, flock: false, dotlock: None, warning: None };
        let busy = match lock_round(&mut guard, path, settings, &mut broken)? {
            None => return Ok(guard),
            Some(busy) => busy,
        };
        drop(guard);
        if round >= settings.attempts {
            return Err(busy);
        }
        round += 1;
        pause(settings.delay);
    }
}

/// One try of every configured lock: `Ok(None)` when all are held, `Ok(Some(why))` when one
/// was busy, `Err` when one cannot be taken at all.
fn lock_round(
    guard: &mut MailboxLock<'_>,
    path: &Path,
    settings: &LockSettings,
    broken: &mut u32,
) -> Result<Option<LocalError>, LocalError> {
    if settings.fcntl {
        match fcntl(guard.file, FcntlArg::F_OFD_SETLK(&whole_file(libc::F_WRLCK))) {
            Ok(_) => guard.fcntl = true,
            Err(Errno::EAGAIN | Errno::EACCES | Errno::EINTR) => return Ok(Some(kernel_lock_error(Errno::EAGAIN))),
            Err(e) => return Err(kernel_lock_error(e)),
        }
    }
    if settings.flock {
        // SAFETY: flock(2) on a descriptor that `guard.file` keeps open.
        if unsafe { libc::flock(guard.file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            guard.flock = true;
        } else {
            match Errno::last() {
                Errno::EWOULDBLOCK | Errno::EINTR => return Ok(Some(kernel_lock_error(Errno::EAGAIN))),
                e => return Err(kernel_lock_error(e)),
            }
        }
    }
    if settings.dotlock {
        match dotlock(path, settings, broken)? {
            Dotlock::Held(lock) => guard.dotlock = Some(lock),
            Dotlock::Skipped(warning) => guard.warning = Some(warning),
            Dotlock::Busy(lock) => {
                return Ok(Some(LocalError::temporary(
                    "4.2.0",
                    format!("unable to create lock file {}: {}", lock.display(), strerror(libc::EEXIST)),
                )));
            }
        }
    }
    Ok(None)
}

/// A write lock on the whole file, however far it grows.
fn whole_file(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        // Must be 0 for OFD locks.
        l_pid: 0,
    }
}

/// Sleeps about `delay` (±25%, like Postfix's rand_sleep), so that writers that collided once
/// do not collide again in lockstep.
fn pause(delay: Duration) {
    let noise = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0)
        ^ std::process::id().wrapping_mul(2_654_435_761);
    let permille = 750 + u64::from(noise % 501);
    let nanos = delay.as_nanos().saturating_mul(u128::from(permille)) / 1000;
    std::thread::sleep(Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX)));
}

fn kernel_lock_error(errno: Errno) -> LocalError {
    // Any failure to lock is worth another try later: bouncing mail over a lock is never right.
    LocalError::temporary("4.2.0", format!("unable to lock for exclusive access: {}", strerror(errno as i32)))
}

enum Dotlock {
    Held(PathBuf),
    Busy(PathBuf),
    Skipped(String),
}

/// Tries once to create `path.lock` exclusively (O_CREAT|O_EXCL), holding our pid like
/// liblockfile. A stale lock is removed and the try made again at once; `broken` counts those
/// across rounds, so a program that keeps leaving old locks cannot keep us looping.
fn dotlock(path: &Path, settings: &LockSettings, broken: &mut u32) -> Result<Dotlock, LocalError> {
    let lock = dotlock_path(path);
    loop {
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock);
        let error = match created {
            Ok(mut file) => {
                // An empty lock file is still a lock; the pid is a courtesy to humans.
                let _ = writeln!(file, "{}", std::process::id());
                return Ok(Dotlock::Held(lock));
            }
            Err(e) => e,
        };
        match error.raw_os_error().map(Errno::from_raw) {
            Some(Errno::EEXIST) => {}
            Some(Errno::EACCES | Errno::EPERM) => {
                return Ok(Dotlock::Skipped(format!(
                    "cannot create lock file {}: {}; delivering without a dotlock",
                    lock.display(),
                    describe(&error)
                )));
            }
            _ => {
                return Err(LocalError::temporary(
                    "4.2.0",
                    format!("unable to create lock file {}: {}", lock.display(), describe(&error)),
                ));
            }
        }
        if *broken < settings.attempts && is_stale(&lock, settings.stale) {
            *broken += 1;
            match std::fs::remove_file(&lock) {
                Ok(()) => continue,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                // Cannot remove it (another user's lock in a sticky directory): wait it out.
                Err(_) => {}
            }
        }
        return Ok(Dotlock::Busy(lock));
    }
}

fn is_stale(lock: &Path, stale: Duration) -> bool {
    match std::fs::symlink_metadata(lock).and_then(|m| m.modified()) {
        Ok(mtime) => SystemTime::now().duration_since(mtime).is_ok_and(|age| age > stale),
        Err(_) => false,
    }
}

/// strerror text without Rust's " (os error N)" suffix, as Postfix's `%m` shows it.
pub(crate) fn describe(error: &io::Error) -> String {
    match error.raw_os_error() {
        Some(code) => strerror(code),
        None => error.to_string(),
    }
}

/// The C library's text for `errno` (nix's own texts differ: "Try again").
pub(crate) fn strerror(errno: i32) -> String {
    let text = io::Error::from_raw_os_error(errno).to_string();
    match text.strip_suffix(&format!(" (os error {errno})")) {
        Some(bare) => bare.to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> LockSettings {
        LockSettings { attempts: 3, delay: Duration::from_millis(10), ..LockSettings::default() }
    }

    #[test]
    fn defaults_follow_postfix() {
        let settings = LockSettings::from_config(&Config::defaults());
        assert_eq!(settings, LockSettings::default());
    }

    #[test]
    fn dotlock_is_created_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("tom");
        let file = File::create(&mbox).unwrap();
        let lock = lock_mailbox(&file, &mbox, &quick()).unwrap();
        let dot = dir.path().join("tom.lock");
        assert_eq!(lock.dotlock_path(), Some(dot.as_path()));
        assert_eq!(std::fs::read_to_string(&dot).unwrap(), format!("{}\n", std::process::id()));
        assert!(lock.warning().is_none());
        drop(lock);
        assert!(!dot.exists());
    }

    #[test]
    fn second_open_file_is_refused_then_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("tom");
        let first = File::create(&mbox).unwrap();
        let second = OpenOptions::new().append(true).open(&mbox).unwrap();
        let settings = LockSettings { dotlock: false, ..quick() };
        let held = lock_mailbox(&first, &mbox, &settings).unwrap();
        let error = lock_mailbox(&second, &mbox, &settings).unwrap_err();
        assert!(error.temporary);
        assert_eq!(error.dsn, "4.2.0");
        assert_eq!(error.text, "unable to lock for exclusive access: Resource temporarily unavailable");
        drop(held);
        lock_mailbox(&second, &mbox, &settings).unwrap();
    }

    #[test]
    fn busy_dotlock_defers_and_stale_one_is_broken() {
        let dir = tempfile::tempdir().unwrap();
        let mbox = dir.path().join("tom");
        let file = File::create(&mbox).unwrap();
        let dot = dir.path().join("tom.lock");
        std::fs::write(&dot, "1\n").unwrap();
        let error = lock_mailbox(&file, &mbox, &quick()).unwrap_err();
        assert_eq!(error.dsn, "4.2.0");
        assert!(error.text.starts_with("unable to create lock file "), "{}", error.text);
        let old = SystemTime::now() - Duration::from_secs(600);
        File::options().write(true).open(&dot).unwrap().set_modified(old).unwrap();
        let lock = lock_mailbox(&file, &mbox, &quick()).unwrap();
        assert_eq!(std::fs::read_to_string(&dot).unwrap(), format!("{}\n", std::process::id()));
        drop(lock);
    }
}
