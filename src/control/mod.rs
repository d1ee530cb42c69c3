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
    /// List the queue (mailq for users who cannot read the queue directories).
    Queue,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Reply {
    Ok {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        entries: Option<Vec<QueueEntry>>,
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

/// True if the error means "no daemon is listening" rather than a failure to talk to one.
pub fn is_daemon_down(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound)
}

/// Tell the daemon there is new mail in maildrop; if it is not running it will find the file
/// when it starts, so failure here is not an error.
pub fn wake_daemon(queue_directory: &Path) {
    let _ = request(queue_directory, &Request::Wake, Duration::from_secs(2));
}
