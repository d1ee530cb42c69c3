//! `mailq`, `sendmail -bp`, `tidemail queue [--json]`.
//!
//! Read the queue directly when we may (root, mail_owner, a development setup); otherwise ask
//! the daemon, which shows every user the queue summary as Postfix's showq does (message
//! contents are never shown).

use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::control::{self, Reply, Request};
use crate::queue::{QueueEntry, QueueStore};
use crate::sysexits::{EX_OK, EX_SOFTWARE, EX_UNAVAILABLE};

use super::mailq;

fn entries(cfg: &Config) -> Result<Vec<QueueEntry>, String> {
    let root = Path::new(cfg.queue_directory());
    match QueueStore::new(root).list_entries() {
        Ok(entries) => return Ok(entries),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
        Err(e) => return Err(format!("cannot read the queue {}: {e}", root.display())),
    }
    match control::request(root, &Request::Queue, Duration::from_secs(30)) {
        Ok(Reply::Ok { entries, .. }) => Ok(entries.unwrap_or_default()),
        Ok(Reply::Error { message }) => Err(format!("queue report failed: {message}")),
        Ok(Reply::Progress { .. }) => Err("queue report failed: unexpected reply from the daemon".into()),
        Err(e) if control::is_daemon_down(&e) => Err("Queue report unavailable - mail system is down".into()),
        Err(e) => Err(format!("queue report failed: {e}")),
    }
}

pub fn run(cfg: &Config, json: bool) -> i32 {
    let entries = match entries(cfg) {
        Ok(e) => e,
        Err(msg) => {
            eprintln!("mailq: fatal: {msg}");
            return EX_UNAVAILABLE;
        }
    };
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let written = if json { mailq::render_json(&entries, &mut out) } else { mailq::render_text(&entries, &mut out) };
    match written.and_then(|()| out.flush()) {
        Ok(()) => EX_OK,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => EX_OK,
        Err(e) => {
            eprintln!("mailq: fatal: {e}");
            EX_SOFTWARE
        }
    }
}
