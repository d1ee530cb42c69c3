//! qmgr: the queue manager. Moves messages incoming → active → removed or deferred, decides
//! each recipient's transport, and hands the recipients of the `smtp` and `relay` transports to
//! the SMTP client, several destinations and several sessions per destination at once.
//!
//! - [`plan`]: one incoming message: route its recipients; bounce what must bounce (the
//!   `error` transport), hold what defer_transports holds ("deferred transport"; attempt count
//!   and backoff unchanged), and make delivery jobs of the rest;
//! - [`engine`]: runs the jobs: per destination, sessions from initial_destination_concurrency
//!   up to default_destination_concurrency_limit, a destination that fails to answer is marked
//!   dead for the rest of the run (its other mail waits without another connection);
//! - [`finish`]: records each job's results (durably before anyone is told), then decides the
//!   message's fate: removed, deferred with backoff, expired, held as a possible duplicate;
//! - [`route`], [`smtp`]: where a recipient goes and how the SMTP client is driven.
//!
//! Memory stays flat however large the queue: at most qmgr_message_active_limit messages are
//! in a run (their envelopes and jobs); message content is read only while it is being sent.

pub mod engine;
pub mod finish;
pub mod flush;
pub mod local;
pub mod plan;
pub mod route;
pub mod smtp;

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::deliver::local::privsep::LocalAgent;
use crate::mail_warning;
use crate::queue::store::now_us;
use crate::queue::{QueueError, QueueName, QueueStore};

const SERVICE: &str = "qmgr";

/// What a run is asked to do.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunOptions {
    /// A flush: held transports are attempted too (the link is up).
    pub flush: bool,
}

/// How a message left a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageOutcome {
    /// Every recipient delivered (or bounced before this run); the message is gone.
    Sent,
    /// Done, and some recipients bounced in this run (a notice went to the sender).
    Bounced,
    /// Some recipients wait: tried and deferred, or held.
    Deferred,
}

/// One message's result in a run, as flush --wait reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReport {
    pub id: String,
    pub size: u64,
    pub outcome: MessageOutcome,
    /// For a deferred message: why its first waiting recipient waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Told about each message as its run ends for it (flush --wait progress).
pub type Observer = Arc<dyn Fn(&MessageReport) + Send + Sync>;

/// What the jobs of one run share.
pub struct RunState {
    pub cfg: Arc<Config>,
    pub store: QueueStore,
    pub options: RunOptions,
    /// The messages with jobs still to finish. A message's lock is held for every change to
    /// its file, so two jobs of one message never write it at once.
    pub messages: Mutex<HashMap<String, Arc<Mutex<finish::MessageState>>>>,
    pub observer: Option<Observer>,
    /// Local delivery, when this process can do it.
    pub local: Option<Arc<dyn LocalAgent>>,
}

impl RunState {
    pub fn observe(&self, report: &MessageReport) {
        if let Some(observer) = &self.observer {
            observer(report);
        }
    }
}

/// The queue manager as the queue worker keeps it between runs.
#[derive(Default)]
pub struct Qmgr {
    runtime: Option<tokio::runtime::Runtime>,
    local: Option<Arc<dyn LocalAgent>>,
}

impl Qmgr {
    pub fn new() -> Qmgr {
        Qmgr::default()
    }

    /// A queue manager that hands `local` recipients to `agent`.
    pub fn with_local(agent: Arc<dyn LocalAgent>) -> Qmgr {
        Qmgr { runtime: None, local: Some(agent) }
    }

    /// The local agent, to pass a new configuration on (SIGHUP).
    pub fn local(&self) -> Option<&Arc<dyn LocalAgent>> {
        self.local.as_ref()
    }

    /// Handles everything in incoming, in batches of at most qmgr_message_active_limit
    /// messages. Returns how many messages were looked at.
    pub fn run_incoming(
        &mut self,
        cfg: &Arc<Config>,
        store: &QueueStore,
        options: RunOptions,
        observer: Option<Observer>,
    ) -> io::Result<usize> {
        let ids = store.list(QueueName::Incoming)?;
        let batch = usize::try_from(cfg.qmgr_message_active_limit()).unwrap_or(1).max(1);
        for chunk in ids.chunks(batch) {
            let run = Arc::new(RunState {
                cfg: cfg.clone(),
                store: store.clone(),
                options,
                messages: Mutex::new(HashMap::new()),
                observer: observer.clone(),
                local: self.local.clone(),
            });
            let mut jobs = Vec::new();
            for id in chunk {
                match plan::plan(&run, id) {
                    Ok(more) => jobs.extend(more),
                    Err(QueueError::Corrupt(why)) => set_aside(store, QueueName::Incoming, id, &why),
                    Err(e) => mail_warning!(SERVICE, "{id}: {e}"),
                }
            }
            if jobs.is_empty() {
                continue;
            }
            if self.runtime.is_none() {
                self.runtime = Some(tokio::runtime::Builder::new_current_thread().enable_all().build()?);
            }
            let runtime = self.runtime.as_ref().expect("made above");
            runtime.block_on(engine::deliver(run.clone(), jobs));
        }
        Ok(ids.len())
    }
}

/// Put messages a crash left in active/ back in line (Postfix's qmgr does the same at start).
pub fn recover_active(store: &QueueStore) -> io::Result<usize> {
    let ids = store.list(QueueName::Active)?;
    for id in &ids {
        if let Err(e) = store.move_to(id, QueueName::Active, QueueName::Incoming) {
            mail_warning!(SERVICE, "{id}: cannot move back to incoming: {e}");
        }
    }
    Ok(ids.len())
}

/// Move deferred messages that are due (or all of them when `flush`) back to incoming.
pub fn release_deferred(store: &QueueStore, flush: bool) -> io::Result<usize> {
    let now = now_us() / 1_000_000;
    let mut released = 0;
    for id in store.list(QueueName::Deferred)? {
        let due = match store.read_entry(QueueName::Deferred, &id) {
            Ok(entry) => flush || entry.envelope.next_attempt <= now,
            Err(QueueError::Corrupt(why)) => {
                set_aside(store, QueueName::Deferred, &id, &why);
                continue;
            }
            Err(e) => {
                mail_warning!(SERVICE, "deferred/{id}: {e}");
                continue;
            }
        };
        // No flush per file: a move a crash undoes leaves the message in deferred, where the
        // next scan finds it again. One directory flush at the end makes the batch durable.
        if due && store.move_unsynced(&id, QueueName::Deferred, QueueName::Incoming).is_ok() {
            released += 1;
        }
    }
    if released > 0 {
        store.sync_dir(QueueName::Incoming)?;
    }
    Ok(released)
}

/// Handle everything in incoming once (no flush, nobody watching).
pub fn run_incoming(cfg: &Config, store: &QueueStore) -> io::Result<usize> {
    Qmgr::new().run_incoming(&Arc::new(cfg.clone()), store, RunOptions::default(), None)
}

fn set_aside(store: &QueueStore, queue: QueueName, id: &str, why: &str) {
    match store.set_aside(queue, id) {
        Ok(target) => {
            mail_warning!(SERVICE, "{}/{id}: corrupt queue file ({why}): moved to corrupt/{target}", queue.dir_name())
        }
        Err(e) => mail_warning!(SERVICE, "{}/{id}: corrupt queue file ({why}); cannot move it: {e}", queue.dir_name()),
    }
}

/// A bounce's status as a deferral (soft_bounce): 5.x.x becomes 4.x.x.
pub(crate) fn soft(dsn: &str) -> String {
    match dsn.strip_prefix('5') {
        Some(rest) => format!("4{rest}"),
        None => dsn.to_string(),
    }
}

pub(crate) fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// Postfix's backoff: minimal_backoff_time doubled per attempt, capped at maximal_backoff_time.
pub fn backoff(cfg: &Config, attempts: u32) -> Duration {
    let min = cfg.minimal_backoff_time();
    let max = cfg.maximal_backoff_time().max(min);
    let factor = 1u32.checked_shl(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::queue::{Envelope, Origin, RcptState, Recipient};

    fn setup(extra: &str) -> (tempfile::TempDir, QueueStore, Config) {
        crate::queue::testing::scratch(&format!("defer_transports = [\"smtp\"]\n{extra}"))
    }

    fn queue(store: &QueueStore, recipients: Vec<Recipient>) -> String {
        let mut writer = store.create(QueueName::Incoming, 0).unwrap();
        writer.write_content(b"Subject: x\n\nbody\n").unwrap();
        let arrival = writer.arrival_us();
        let envelope = Envelope::new("sender@mail.example.com", recipients, Origin::Local { uid: 0 }, arrival);
        store.commit(writer, &envelope).unwrap()
    }

    fn sentenced(address: &str, dsn: &str, text: &str) -> Recipient {
        let mut r = Recipient::new(address);
        r.dsn = Some(dsn.into());
        r.reason = Some(text.into());
        r
    }

    #[test]
    fn all_bounced_means_removed() {
        let (_dir, store, cfg) = setup("");
        let id = queue(&store, vec![sentenced("unknown@test.net", "5.1.1", "User unknown in virtual alias table")]);
        run_incoming(&cfg, &store).unwrap();
        assert!(store.list(QueueName::Deferred).unwrap().is_empty());
        assert!(!store.path(QueueName::Incoming, &id).exists());
        // What is left is the non-delivery notice, made before the message went.
        let left = store.list(QueueName::Incoming).unwrap();
        assert_eq!(left.len(), 1);
        let notice = store.read_entry(QueueName::Incoming, &left[0]).unwrap().envelope;
        assert_eq!((notice.sender.as_str(), notice.recipients[0].address.as_str()), ("", "sender@mail.example.com"));
    }

    #[test]
    fn bounced_once_then_the_rest_waits() {
        let (_dir, store, cfg) = setup("");
        let id = queue(
            &store,
            vec![
                sentenced("who@some.com", "5.1.6", "User has moved to onetwo@newone.com"),
                Recipient::new("a@remote.example"),
            ],
        );
        run_incoming(&cfg, &store).unwrap();
        let entry = store.read_entry(QueueName::Deferred, &id).unwrap();
        let r = &entry.envelope.recipients;
        assert_eq!(r[0].state, RcptState::Bounced);
        assert_eq!(r[0].reason.as_deref(), Some("User has moved to onetwo@newone.com"));
        assert_eq!((r[1].state, r[1].dsn.as_deref()), (RcptState::Pending, Some("4.3.2")));
        // Back through incoming: the bounced recipient is not routed again.
        release_deferred(&store, true).unwrap();
        run_incoming(&cfg, &store).unwrap();
        let entry = store.read_entry(QueueName::Deferred, &id).unwrap();
        assert_eq!(entry.envelope.recipients[0].state, RcptState::Bounced);
        assert_eq!(entry.envelope.pending().count(), 1);
    }

    #[test]
    fn soft_bounce_keeps_the_verdict() {
        let (_dir, store, cfg) = setup("soft_bounce = true\n");
        let id = queue(&store, vec![sentenced("unknown@test.net", "5.1.1", "User unknown in virtual alias table")]);
        run_incoming(&cfg, &store).unwrap();
        let entry = store.read_entry(QueueName::Deferred, &id).unwrap();
        let r = &entry.envelope.recipients[0];
        assert_eq!((r.state, r.dsn.as_deref()), (RcptState::Pending, Some("5.1.1")));
        assert_eq!(entry.envelope.attempts, 1);
        assert_eq!(soft("5.1.1"), "4.1.1");
    }
}
