//! `tidemail flush`, `sendmail -q`: ask the daemon to attempt every deferred message now,
//! held transports included. Returns at once.
//!
//! `tidemail flush --wait [--timeout SECS]`: returns when every message that was queued when
//! the flush began has been delivered, bounced or deferred again; prints a summary; exits 0
//! when nothing is left deferred, 75 when something is (or the wait timed out), so an ip-up
//! script knows whether the link may drop. Progress goes to stderr: a bar on a terminal,
//! a plain line every few seconds otherwise. With no daemon running it delivers the queue
//! itself, holding the daemon's instance lock so that no two flushers deliver at once.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::control::{self, Reply, Request};
use crate::daemon::{lock, privileges};
use crate::qmgr::flush::{Progress, Summary};
use crate::qmgr::{MessageReport, Qmgr};
use crate::queue::{QueueStore, layout};
use crate::sysexits::{EX_CONFIG, EX_OK, EX_SOFTWARE, EX_TEMPFAIL};

/// `tidemail flush` / `sendmail -q`.
pub fn run(cfg: &Config) -> i32 {
    match control::request(Path::new(cfg.queue_directory()), &Request::Flush, Duration::from_secs(10)) {
        Ok(Reply::Ok { .. }) => EX_OK,
        Ok(Reply::Error { message }) => {
            eprintln!("tidemail: fatal: flush refused: {message}");
            EX_SOFTWARE
        }
        Ok(Reply::Progress { .. }) => EX_OK,
        Err(e) if control::is_daemon_down(&e) => {
            eprintln!(
                "tidemail: fatal: cannot flush the mail queue: the mail system is down (start tidemail daemon, or use tidemail flush --wait to deliver without it)"
            );
            EX_TEMPFAIL
        }
        Err(e) => {
            eprintln!("tidemail: fatal: cannot flush the mail queue: {e}");
            EX_TEMPFAIL
        }
    }
}

/// `tidemail flush --wait`.
pub fn run_wait(cfg: &Config, timeout: Option<Duration>) -> i32 {
    let queue_directory = PathBuf::from(cfg.queue_directory());
    let display = Display::new();
    let summary = match control::flush_wait(&queue_directory, timeout, |p| display.show(p)) {
        Ok(Reply::Ok { summary: Some(summary), .. }) => summary,
        Ok(Reply::Ok { summary: None, .. }) | Ok(Reply::Progress { .. }) => {
            display.finish();
            eprintln!("tidemail: fatal: the daemon gave no flush summary");
            return EX_SOFTWARE;
        }
        Ok(Reply::Error { message }) => {
            display.finish();
            eprintln!("tidemail: fatal: flush refused: {message}");
            return EX_TEMPFAIL;
        }
        Err(e) if control::is_daemon_down(&e) => match flush_here(cfg, &display) {
            Ok(summary) => summary,
            Err((code, message)) => {
                display.finish();
                eprintln!("tidemail: fatal: {message}");
                return code;
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            display.finish();
            let secs = timeout.map(|t| t.as_secs()).unwrap_or(0);
            let last = display.last();
            println!(
                "flush: timed out after {secs}s with {} of {} message(s) done; the flush goes on in the daemon",
                last.done, last.total
            );
            return EX_TEMPFAIL;
        }
        Err(e) => {
            display.finish();
            eprintln!("tidemail: fatal: cannot flush the mail queue: {e}");
            return EX_TEMPFAIL;
        }
    };
    display.finish();
    print_summary(&summary);
    if summary.all_done() { EX_OK } else { EX_TEMPFAIL }
}

/// No daemon: deliver the queue in this process, as the daemon would (as mail_owner).
fn flush_here(cfg: &Config, display: &Display) -> Result<Summary, (i32, String)> {
    let root = PathBuf::from(cfg.queue_directory());
    let owner = privileges::queue_owner(cfg).map_err(|e| (EX_CONFIG, e))?;
    layout::ensure(&root, owner).map_err(|e| (EX_TEMPFAIL, format!("queue directory {}: {e}", root.display())))?;
    let _lock = lock::acquire(&root).map_err(|e| match e {
        lock::LockError::Running(pid) => {
            (EX_TEMPFAIL, format!("another tidemail process (pid {pid}) is delivering this queue; try again later"))
        }
        e => (EX_TEMPFAIL, e.to_string()),
    })?;
    // The mail log as the daemon writes it (maillog_file, or syslog), never the terminal,
    // which belongs to the progress display. Opened before privileges go, as the daemon does.
    let mut settings = crate::daemon::log_settings(cfg, false);
    settings.stderr = false;
    settings.syslog = settings.maillog_file.is_none();
    crate::log::init(settings).map_err(|e| (EX_CONFIG, format!("cannot open the mail log: {e}")))?;
    let shared = Arc::new(cfg.clone());
    let local = crate::daemon::local_agent(&shared, owner.is_some())
        .map_err(|e| (EX_TEMPFAIL, format!("cannot start the local delivery helper: {e}")))?;
    if let Err(e) = crate::deliver::smtp::sasl::open_tables(cfg) {
        crate::mail_warning!("flush", "{e}");
    }
    if let Some((uid, gid)) = owner {
        privileges::drop_to(uid, gid).map_err(|e| (EX_SOFTWARE, e))?;
    }
    let store = QueueStore::new(&root);
    crate::daemon::recover(&store);
    let display = display.clone();
    let progress = Arc::new(move |p: &Progress| display.show(p));
    Ok(crate::qmgr::flush::flush(&shared, &store, &mut Qmgr::with_local(local), progress))
}

fn print_summary(s: &Summary) {
    let rate = if s.seconds > 0.0 { s.progress.done as f64 / s.seconds } else { 0.0 };
    println!(
        "flush: {} message(s), {} in {:.1}s ({rate:.1} msg/s): {} sent, {} bounced, {} deferred",
        s.progress.total,
        human_bytes(s.progress.bytes_total),
        s.seconds,
        s.sent,
        s.bounced,
        s.deferred.len()
    );
    // The reasons, each once, with how many messages wait for it.
    let mut reasons: Vec<(String, Vec<&MessageReport>)> = Vec::new();
    for report in &s.deferred {
        let reason = report.reason.clone().unwrap_or_else(|| "no reason recorded".into());
        match reasons.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, list)) => list.push(report),
            None => reasons.push((reason, vec![report])),
        }
    }
    for (reason, list) in reasons {
        let ids: Vec<&str> = list.iter().take(5).map(|r| r.id.as_str()).collect();
        let more = if list.len() > ids.len() { format!(" and {} more", list.len() - ids.len()) } else { String::new() };
        println!("deferred: {} message(s) ({}{more}): {reason}", list.len(), ids.join(", "));
    }
}

fn human_bytes(n: u64) -> String {
    match n {
        n if n >= 10 << 20 => format!("{} MB", n >> 20),
        n if n >= 10 << 10 => format!("{} KB", n >> 10),
        n => format!("{n} bytes"),
    }
}

/// Progress on stderr: indicatif's bar on a terminal, a plain line every 5 s otherwise.
#[derive(Clone)]
struct Display {
    bar: Option<indicatif::ProgressBar>,
    state: Arc<Mutex<(Progress, Instant, Instant)>>,
}

impl Display {
    fn new() -> Display {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style = indicatif::ProgressStyle::with_template(
                "flush [{bar:30}] {pos}/{len} messages, {msg} {per_sec} {elapsed_precise}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        let now = Instant::now();
        Display { bar, state: Arc::new(Mutex::new((Progress::default(), now, now))) }
    }

    fn show(&self, p: &Progress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.0 = p.clone();
        if let Some(bar) = &self.bar {
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            bar.set_message(format!("{}/{}", human_bytes(p.bytes_done), human_bytes(p.bytes_total)));
            return;
        }
        if state.2.elapsed() >= Duration::from_secs(5) || p.done == p.total {
            state.2 = Instant::now();
            let secs = state.1.elapsed().as_secs_f64();
            let rate = if secs > 0.0 { p.done as f64 / secs } else { 0.0 };
            eprintln!(
                "flush: {}/{} message(s), {}/{}, {rate:.1} msg/s",
                p.done,
                p.total,
                human_bytes(p.bytes_done),
                human_bytes(p.bytes_total)
            );
            let _ = std::io::stderr().flush();
        }
    }

    fn last(&self) -> Progress {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).0.clone()
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
