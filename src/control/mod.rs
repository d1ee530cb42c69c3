//! The control socket between the command-line tools and the daemon
//! (`queue_directory/public/control`): one JSON request line, one JSON reply line.
//!
//! Any local user may connect (as with Postfix's public/ directory): the requests only ask the
//! daemon to do what it would do anyway (look at maildrop now, flush the queue) or to describe
//! the queue (what `mailq` shows every user in Postfix).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::qmgr::flush::{Progress, Summary};
use crate::queue::QueueEntry;
use crate::queue::layout::CONTROL_SOCKET;

/// The longest request line the daemon reads: requests are tiny, a long line is abuse.
pub const MAX_REQUEST: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// A new file is in maildrop.
    Wake,
    /// Attempt every deferred message now (sendmail -q, tidemail flush).
    Flush,
    /// As Flush, and answer when it is over: `Progress` lines as messages are done, then `Ok`
    /// with the summary (tidemail flush --wait).
    FlushWait,
    /// List the queue (mailq for users who cannot read the queue directories).
    Queue,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entries: Option<Vec<QueueEntry>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        summary: Option<Summary>,
    },
    /// A flush under way (more lines follow).
    Progress {
        progress: Progress,
    },
    Error {
        message: String,
    },
}

pub fn socket_path(queue_directory: &Path) -> PathBuf {
    queue_directory.join(CONTROL_SOCKET)
}

/// Send one request and wait (bounded) for the reply. Connection refused or a missing socket
/// means the daemon is not running (`io::ErrorKind::ConnectionRefused` / `NotFound`).
pub fn request(queue_directory: &Path, req: &Request, timeout: Duration) -> io::Result<Reply> {
    let stream = UnixStream::connect(socket_path(queue_directory))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(req).map_err(io::Error::other)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    serde_json::from_str(&reply)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply from daemon: {e}")))
}

/// Sends FlushWait and reads the daemon's lines until the summary, calling `progress` for
/// each progress line. `timeout` bounds the whole wait (`TimedOut` when it passes).
pub fn flush_wait(
    queue_directory: &Path,
    timeout: Option<Duration>,
    mut progress: impl FnMut(&Progress),
) -> io::Result<Reply> {
    let stream = UnixStream::connect(socket_path(queue_directory))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(&Request::FlushWait).map_err(io::Error::other)?;
    line.push(b'\n');
    (&stream).write_all(&line)?;
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut reader = BufReader::new(&stream);
    loop {
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            stream.set_read_timeout(Some(left))?;
        }
        let mut text = String::new();
        match reader.read_line(&mut text) {
            Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the daemon closed the connection")),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
            }
            Err(e) => return Err(e),
        }
        let reply: Reply = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("bad reply from daemon: {e}")))?;
        match reply {
            Reply::Progress { progress: p } => progress(&p),
            other => return Ok(other),
        }
    }
}

/// True if the error means "no daemon is listening" rather than a failure to talk to one.
pub fn is_daemon_down(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound)
}

/// Tell the daemon there is new mail in maildrop; if it is not running it will find the file
/// when it starts, so failure here is not an error.
pub fn wake_daemon(queue_directory: &Path) {
    let _ = request(queue_directory, &Request::Wake, Duration::from_secs(2));
}
