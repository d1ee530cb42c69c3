//! The daemon's event loop: the control socket, the SMTP services, and signals.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use nix::unistd::{Gid, Uid};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Work, log_settings};
use crate::config::Config;
use crate::control::{MAX_REQUEST, Reply, Request, socket_path};
use crate::queue::QueueStore;
use crate::{log, mail_error, mail_info, mail_warning};

const SERVICE: &str = "master";
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind the control socket (before privileges are dropped); anyone may connect.
pub fn bind(root: &Path, owner: Option<(Uid, Gid)>) -> io::Result<std::os::unix::net::UnixListener> {
    let path = socket_path(root);
    // We hold the instance lock, so a socket file left here belongs to a dead daemon.
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    if let Some((uid, gid)) = owner {
        nix::unistd::chown(&path, Some(uid), Some(gid)).map_err(io::Error::from)?;
    }
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// Serve until SIGTERM or SIGINT; returns the signal's number.
/// The signals the daemon handles. Installed before anything can see the daemon (the
/// control socket), so an early SIGHUP reloads instead of killing it.
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

/// Must be called inside the runtime (`Runtime::enter`).
pub fn install_signals() -> io::Result<Signals> {
    Ok(Signals {
        term: signal(SignalKind::terminate())?,
        int: signal(SignalKind::interrupt())?,
        hup: signal(SignalKind::hangup())?,
    })
}

pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    smtp_listeners: Vec<crate::smtpd::listener::Listener>,
    signals: Signals,
    store: QueueStore,
    work: Sender<Work>,
    config_path: PathBuf,
) -> i32 {
    // ETRN asks the queue worker for a flush, and a queued message wakes it, as the control
    // socket's requests do.
    let (flush, wake) = (work.clone(), work.clone());
    let shared = crate::smtpd::listener::Shared::new(
        store.clone(),
        Box::new(move || {
            let _ = flush.send(Work::Flush(None));
        }),
        Box::new(move || {
            let _ = wake.send(Work::Wake);
        }),
    );
    crate::smtpd::listener::serve(smtp_listeners, Arc::new(shared));
    let listener = match UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            mail_error!(SERVICE, "control socket: {e}");
            return 0;
        }
    };
    let Signals { mut term, mut int, mut hup } = signals;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    loop {
        tokio::select! {
            _ = term.recv() => return libc::SIGTERM,
            _ = int.recv() => return libc::SIGINT,
            _ = hup.recv() => reload(&config_path, &work),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (store, work) = (store.clone(), work.clone());
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, store, work).await {
                            mail_warning!(SERVICE, "control client: {e}");
                        }
                    });
                }
                Err(e) => {
                    mail_warning!(SERVICE, "control socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

/// SIGHUP: re-read the configuration; a broken file is refused and the old one kept.
fn reload(config_path: &Path, work: &Sender<Work>) {
    match Config::load(config_path) {
        Ok(cfg) => {
            if let Err(e) = log::init(log_settings(&cfg, false)) {
                mail_warning!(SERVICE, "reload: mail log: {e}");
            }
            let _ = work.send(Work::Reload(Arc::new(cfg)));
            mail_info!(
                SERVICE,
                "reload -- version {}, configuration {}",
                env!("CARGO_PKG_VERSION"),
                config_path.display()
            );
        }
        Err(e) => mail_error!(SERVICE, "reload refused, keeping the running configuration: {e}"),
    }
}

/// Answers one client. Reading the request and writing each reply line are bounded by
/// CLIENT_TIMEOUT; the wait for a flush's outcome is not (flush --wait has its own --timeout).
async fn answer(stream: UnixStream, store: QueueStore, work: Sender<Work>) -> Result<(), tokio::time::error::Elapsed> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(MAX_REQUEST as u64));
    let reply = match tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line)).await? {
        Ok(_) => match serde_json::from_str::<Request>(line.trim_end()) {
            Ok(Request::Wake) => {
                let _ = work.send(Work::Wake);
                Reply::Ok { entries: None, summary: None }
            }
            Ok(Request::Flush) => {
                let _ = work.send(Work::Flush(None));
                Reply::Ok { entries: None, summary: None }
            }
            Ok(Request::FlushWait) => {
                // The queue worker sends progress lines and the summary; pass them on as they
                // come. A client that goes away does not stop the flush.
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let _ = work.send(Work::Flush(Some(tx)));
                let mut last = Reply::Error { message: "the daemon is stopping".into() };
                while let Some(reply) = rx.recv().await {
                    if !matches!(reply, Reply::Progress { .. }) {
                        last = reply;
                        break;
                    }
                    if write_reply(&mut write, &reply).await.is_err() {
                        return Ok(());
                    }
                }
                last
            }
            Ok(Request::Queue) => match tokio::task::spawn_blocking(move || store.list_entries()).await {
                Ok(Ok(entries)) => Reply::Ok { entries: Some(entries), summary: None },
                Ok(Err(e)) => Reply::Error { message: e.to_string() },
                Err(e) => Reply::Error { message: e.to_string() },
            },
            Err(e) => Reply::Error { message: format!("bad request: {e}") },
        },
        Err(e) => Reply::Error { message: e.to_string() },
    };
    let _ = write_reply(&mut write, &reply).await;
    Ok(())
}

async fn write_reply(write: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> std::io::Result<()> {
    let mut bytes = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    match tokio::time::timeout(CLIENT_TIMEOUT, write.write_all(&bytes)).await {
        Ok(written) => written,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read its reply")),
    }
}
