//! The privileged side of local delivery, and how the unprivileged queue manager asks it.
//!
//! Started as root, the daemon forks this helper before anything else runs (no threads yet,
//! so forking again per delivery is safe). The helper keeps root and does nothing but answer
//! requests on a socketpair: "deliver recipient N of queue file ID in active/". It reads that
//! file itself and trusts nothing else in the request; every mailbox, file and command is
//! then written or run in a child that switched to the target's user first ([`super::agent`]),
//! so a request can never make it write as root. The queue manager (mail_owner) logs and
//! records the results.
//!
//! Started as an ordinary user there is no helper: the same agent runs in-process, and can
//! deliver only to that user.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::agent;
use crate::config::Config;
use crate::mail_warning;

/// One request line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    Deliver {
        queue_id: String,
        recipient: usize,
    },
    /// Load the configuration from this file again (SIGHUP in the daemon).
    Reload {
        config: PathBuf,
    },
}

/// The outcome for one target of a recipient (a mailbox, file, command, or forwarding).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetResult {
    /// The address logged as `to=` (the user the target belongs to, `user@domain`).
    pub to: String,
    pub delivered: bool,
    /// For a failure: try again later rather than bounce.
    #[serde(default)]
    pub temporary: bool,
    pub dsn: String,
    /// `delivered to mailbox`, `delivered to command: /usr/bin/procmail`, or the reason.
    pub text: String,
}

/// What became of one recipient.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// The recipient as it arrived (the log's orig_to).
    #[serde(default)]
    pub original: String,
    pub results: Vec<TargetResult>,
    /// Addresses the recipient forwards to (aliases or .forward naming other addresses): the
    /// queue manager sends them a copy as new mail.
    #[serde(default)]
    pub forwards: Vec<Forward>,
}

/// An address a copy goes to, with the envelope sender for it (owner-NAME) when it is not
/// the original one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub address: String,
    #[serde(default)]
    pub sender: Option<String>,
}

/// How the queue manager reaches local delivery.
pub trait LocalAgent: Send + Sync {
    fn deliver(&self, queue_id: &str, recipient: usize) -> Reply;
    /// Tell the agent to use the configuration in `path` (after SIGHUP).
    fn reload(&self, path: &Path);
}

/// The in-process agent (tidemail run as an ordinary user): delivers as that user only.
pub struct InProcess {
    cfg: Mutex<Arc<Config>>,
    queue_directory: PathBuf,
}

impl InProcess {
    pub fn new(cfg: Arc<Config>) -> InProcess {
        let queue_directory = PathBuf::from(cfg.queue_directory());
        InProcess { cfg: Mutex::new(cfg), queue_directory }
    }
}

impl LocalAgent for InProcess {
    fn deliver(&self, queue_id: &str, recipient: usize) -> Reply {
        let cfg = self.cfg.lock().unwrap_or_else(|p| p.into_inner()).clone();
        agent::deliver_recipient(&cfg, &self.queue_directory, queue_id, recipient)
    }

    fn reload(&self, path: &Path) {
        match Config::load(path) {
            Ok(cfg) => *self.cfg.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(cfg),
            Err(e) => mail_warning!("local", "reload refused: {e}"),
        }
    }
}

/// The queue manager's end of the socketpair to the privileged helper.
pub struct Client {
    stream: Mutex<(UnixStream, BufReader<UnixStream>)>,
}

impl Client {
    fn ask(&self, request: &Request) -> io::Result<Option<Reply>> {
        let mut guard = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let (writer, reader) = &mut *guard;
        let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
        line.push(b'\n');
        writer.write_all(&line)?;
        if matches!(request, Request::Reload { .. }) {
            return Ok(None);
        }
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the local delivery helper exited"));
        }
        serde_json::from_str(&answer).map(Some).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl LocalAgent for Client {
    fn deliver(&self, queue_id: &str, recipient: usize) -> Reply {
        match self.ask(&Request::Deliver { queue_id: queue_id.to_string(), recipient }) {
            Ok(Some(reply)) => reply,
            Ok(None) => Reply::default(),
            Err(e) => Reply {
                results: vec![TargetResult {
                    to: String::new(),
                    delivered: false,
                    temporary: true,
                    dsn: "4.3.0".into(),
                    text: format!("local delivery helper: {e}"),
                }],
                ..Reply::default()
            },
        }
    }

    fn reload(&self, path: &Path) {
        if let Err(e) = self.ask(&Request::Reload { config: path.to_path_buf() }) {
            mail_warning!("local", "cannot pass the new configuration to the local delivery helper: {e}");
        }
    }
}

/// Forks the privileged helper; call while still root and before any thread is started.
/// The helper exits when the other end of the socket closes (the daemon exits).
pub fn spawn_helper(cfg: Arc<Config>) -> io::Result<Client> {
    let (ours, theirs) = UnixStream::pair()?;
    // SAFETY: called before the process has started any thread (see the doc above), so the
    // child may do anything the parent could.
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            serve(cfg, theirs);
            std::process::exit(0);
        }
        nix::unistd::ForkResult::Parent { .. } => {
            drop(theirs);
            let reader = BufReader::new(ours.try_clone()?);
            Ok(Client { stream: Mutex::new((ours, reader)) })
        }
    }
}

/// The helper's loop: one request line in, one reply line out.
fn serve(mut cfg: Arc<Config>, stream: UnixStream) {
    let queue_directory = PathBuf::from(cfg.queue_directory());
    let Ok(read_half) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let reply = match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Deliver { queue_id, recipient }) => {
                agent::deliver_recipient(&cfg, &queue_directory, &queue_id, recipient)
            }
            Ok(Request::Reload { config }) => {
                match Config::load(&config) {
                    Ok(new) => cfg = Arc::new(new),
                    Err(e) => mail_warning!("local", "reload refused: {e}"),
                }
                continue;
            }
            Err(e) => {
                mail_warning!("local", "bad request from the queue manager: {e}");
                return;
            }
        };
        let Ok(mut bytes) = serde_json::to_vec(&reply) else { return };
        bytes.push(b'\n');
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}
