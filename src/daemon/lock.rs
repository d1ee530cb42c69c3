//! One daemon per queue: an exclusive lock on `pid/master.pid`, held for the daemon's life.
//! The lock goes away with the process, so a kill -9 never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::queue::layout::LOCK_FILE;

pub struct InstanceLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the tidemail daemon is already running on this queue (pid {0})")]
    Running(String),
    #[error("cannot lock {path}: {err}")]
    Io { path: String, err: io::Error },
}

pub fn acquire(queue_directory: &Path) -> Result<InstanceLock, LockError> {
    let path = queue_directory.join(LOCK_FILE);
    let io_err = |err| LockError::Io { path: path.display().to_string(), err };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
        .map_err(io_err)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(LockError::Running(pid.trim().to_string()));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(e)),
    }
    file.set_len(0).map_err(io_err)?;
    file.seek(SeekFrom::Start(0)).map_err(io_err)?;
    writeln!(file, "{}", std::process::id()).map_err(io_err)?;
    Ok(InstanceLock { _file: file })
}

/// True if a daemon holds the lock (used by commands that must not race it).
pub fn is_held(queue_directory: &Path) -> bool {
    match File::open(queue_directory.join(LOCK_FILE)) {
        Ok(f) => matches!(f.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}
