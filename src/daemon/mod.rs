//! `tidemail daemon`: runs in the foreground, picks up maildrop, runs the queue manager,
//! answers the control socket. SIGTERM/SIGINT stop it after the step in progress (every queue
//! change is atomic, so there is never half-written state); SIGHUP reloads the configuration.

pub mod lock;
pub mod privileges;
mod server;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::deliver::local::privsep::LocalAgent;
use crate::queue::{QueueName, QueueStore, layout};
use crate::sysexits::{EX_CONFIG, EX_OSERR, EX_SOFTWARE, EX_TEMPFAIL};
use crate::{log, mail_fatal, mail_info, mail_warning, qmgr, submit};

const SERVICE: &str = "master";
/// A maildrop file still being written after this long belongs to a sendmail that died.
const STALE_MAILDROP_TEMP: Duration = Duration::from_secs(3600);

/// Work for the queue worker thread.
pub enum Work {
    /// Look at maildrop now.
    Wake,
    /// Attempt every deferred message now; the summary (and progress) go to the sender, if any.
    Flush(Option<tokio::sync::mpsc::UnboundedSender<crate::control::Reply>>),
    /// Use this configuration from now on.
    Reload(Arc<Config>),
    Stop,
}

/// Where the mail log goes for a daemon: maillog_file if set; syslog under systemd; else stderr.
pub fn log_settings(cfg: &Config, foreground_stderr: bool) -> log::LogSettings {
    let file = (!cfg.maillog_file().is_empty()).then(|| PathBuf::from(cfg.maillog_file()));
    let under_systemd = std::env::var_os("INVOCATION_ID").is_some();
    log::LogSettings {
        syslog_name: cfg.syslog_name().to_string(),
        stderr: file.is_none() && (foreground_stderr || !under_systemd),
        syslog: file.is_none() && under_systemd,
        maillog_file: file,
    }
}

pub fn run(config_path: &Path) -> i32 {
    let cfg = match Config::load(config_path) {
        Ok(cfg) => Arc::new(cfg),
        Err(e) => {
            eprintln!("tidemail: fatal: {e}");
            return EX_CONFIG;
        }
    };
    if let Err(e) = log::init(log_settings(&cfg, false)) {
        eprintln!("tidemail: fatal: cannot open the mail log: {e}");
        return EX_CONFIG;
    }
    let root = PathBuf::from(cfg.queue_directory());
    let owner = match privileges::queue_owner(&cfg) {
        Ok(owner) => owner,
        Err(e) => {
            mail_fatal!(SERVICE, "{e}");
            return EX_CONFIG;
        }
    };
    if let Err(e) = layout::ensure(&root, owner) {
        mail_fatal!(SERVICE, "queue directory {}: {e}", root.display());
        return EX_TEMPFAIL;
    }
    // Local delivery: as root, a privileged helper forked now, before any thread exists;
    // otherwise in-process, as this user.
    let local: Arc<dyn LocalAgent> = match local_agent(&cfg, owner.is_some()) {
        Ok(agent) => agent,
        Err(e) => {
            mail_fatal!(SERVICE, "cannot start the local delivery helper: {e}");
            return EX_OSERR;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            mail_fatal!(SERVICE, "cannot start the event loop: {e}");
            return EX_OSERR;
        }
    };
    let signals = {
        let _inside = runtime.enter();
        match server::install_signals() {
            Ok(s) => s,
            Err(e) => {
                mail_fatal!(SERVICE, "cannot install signal handlers: {e}");
                return EX_OSERR;
            }
        }
    };
    let _lock = match lock::acquire(&root) {
        Ok(l) => l,
        Err(e) => {
            mail_fatal!(SERVICE, "{e}");
            return EX_TEMPFAIL;
        }
    };
    let listener = match server::bind(&root, owner) {
        Ok(l) => l,
        Err(e) => {
            mail_fatal!(SERVICE, "control socket: {e}");
            return EX_OSERR;
        }
    };
    // The SMTP services' ports (25 and 587 need root) are bound now, before the drop.
    let smtp_listeners = {
        let _inside = runtime.enter();
        match crate::smtpd::listener::bind_all(&cfg) {
            Ok(listeners) => listeners,
            Err(e) => {
                mail_fatal!(SERVICE, "{e}");
                let _ = std::fs::remove_file(crate::control::socket_path(&root));
                return EX_OSERR;
            }
        }
    };
    if let Err(e) = crate::deliver::smtp::sasl::open_tables(&cfg) {
        mail_warning!(SERVICE, "{e}");
    }
    if let Some((uid, gid)) = owner {
        if let Err(e) = privileges::drop_to(uid, gid) {
            mail_fatal!(SERVICE, "{e}");
            return EX_SOFTWARE;
        }
        // Root could create the tree anywhere; mail_owner must also be able to reach it.
        let rwx = nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK;
        if let Err(e) = nix::unistd::access(&root.join(QueueName::Incoming.dir_name()), rwx) {
            mail_fatal!(
                SERVICE,
                "mail_owner {} cannot use the queue directory {}: {e} (every directory above it must be searchable by mail_owner)",
                cfg.mail_owner(),
                root.display()
            );
            return EX_CONFIG;
        }
    }

    let store = QueueStore::new(&root);
    recover(&store);
    mail_info!(
        SERVICE,
        "daemon started -- version {}, configuration {}",
        env!("CARGO_PKG_VERSION"),
        config_path.display()
    );

    let (tx, rx) = mpsc::channel();
    let worker = {
        let (cfg, store, path) = (cfg.clone(), store.clone(), config_path.to_path_buf());
        std::thread::Builder::new()
            .name("queue".into())
            .spawn(move || queue_worker(cfg, store, rx, qmgr::Qmgr::with_local(local), path))
            .expect("spawn queue worker")
    };
    let _ = tx.send(Work::Wake);

    let signal = runtime.block_on(server::serve(
        listener,
        smtp_listeners,
        signals,
        store.clone(),
        tx.clone(),
        config_path.to_path_buf(),
    ));
    let _ = tx.send(Work::Stop);
    let _ = worker.join();
    let _ = std::fs::remove_file(crate::control::socket_path(&root));
    mail_info!(SERVICE, "terminating on signal {signal}");
    0
}

/// Start-up recovery: files a crash left half-written are removed (maildrop ones only when
/// old: a sendmail process may be writing one right now), and messages that were being
/// handled go back to incoming.
pub fn recover(store: &QueueStore) {
    for queue in [QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold] {
        if let Err(e) = store.remove_stale_temporaries(queue, Duration::ZERO) {
            mail_warning!(SERVICE, "{}: {e}", queue.dir_name());
        }
    }
    if let Err(e) = store.remove_stale_temporaries(QueueName::Maildrop, STALE_MAILDROP_TEMP) {
        mail_warning!(SERVICE, "maildrop: {e}");
    }
    if let Err(e) = qmgr::recover_active(store) {
        mail_warning!(SERVICE, "active: {e}");
    }
}

/// The local delivery agent for a process that `is_root` (and will drop to mail_owner).
pub fn local_agent(cfg: &Arc<Config>, is_root: bool) -> std::io::Result<Arc<dyn LocalAgent>> {
    Ok(if is_root {
        Arc::new(crate::deliver::local::privsep::spawn_helper(cfg.clone())?)
    } else {
        Arc::new(crate::deliver::local::privsep::InProcess::new(cfg.clone()))
    })
}

/// The one thread that changes the queue: pickup, then the queue manager. Serialising them
/// here means no two steps ever work on the same file.
fn queue_worker(
    mut cfg: Arc<Config>,
    store: QueueStore,
    rx: mpsc::Receiver<Work>,
    mut qmgr: qmgr::Qmgr,
    config_path: PathBuf,
) {
    const MAILDROP_POLL: Duration = Duration::from_secs(1);
    let mut next_deferred_scan = Instant::now();
    loop {
        let mut flush = false;
        // Everyone waiting for the flush this round makes: a burst of flushes is one round.
        let mut waiters = Vec::new();
        let mut take = |work: Work, cfg: &mut Arc<Config>, flush: &mut bool| match work {
            Work::Stop => false,
            Work::Reload(new) => {
                *cfg = new;
                if let Some(local) = qmgr.local() {
                    local.reload(&config_path);
                }
                true
            }
            Work::Flush(waiter) => {
                *flush = true;
                waiters.extend(waiter);
                true
            }
            Work::Wake => true,
        };
        match rx.recv_timeout(MAILDROP_POLL) {
            Ok(work) => {
                if !take(work, &mut cfg, &mut flush) {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        while let Ok(more) = rx.try_recv() {
            if !take(more, &mut cfg, &mut flush) {
                return;
            }
        }
        if flush {
            let listeners = Arc::new(waiters);
            let progress = {
                let listeners = listeners.clone();
                Arc::new(move |p: &qmgr::flush::Progress| {
                    for l in listeners.iter() {
                        let _ = l.send(crate::control::Reply::Progress { progress: p.clone() });
                    }
                })
            };
            let summary = qmgr::flush::flush(&cfg, &store, &mut qmgr, progress);
            for l in listeners.iter() {
                let _ = l.send(crate::control::Reply::Ok { entries: None, summary: Some(summary.clone()) });
            }
            next_deferred_scan = Instant::now() + cfg.queue_run_delay();
            continue;
        }
        if let Err(e) = submit::pickup::pickup_all(&cfg, &store, false) {
            mail_warning!("pickup", "maildrop: {e}");
        }
        if Instant::now() >= next_deferred_scan {
            next_deferred_scan = Instant::now() + cfg.queue_run_delay();
            if let Err(e) = qmgr::release_deferred(&store, false) {
                mail_warning!("qmgr", "deferred: {e}");
            }
            // What a sendmail killed mid-write left behind.
            let _ = store.remove_stale_temporaries(QueueName::Maildrop, STALE_MAILDROP_TEMP);
        }
        if let Err(e) = qmgr.run_incoming(&cfg, &store, qmgr::RunOptions::default(), None) {
            mail_warning!("qmgr", "incoming: {e}");
        }
    }
}
