//! The end of a message's turn in a run: each job's results are recorded, and once its last
//! job is done the message's fate is decided ([`conclude`]).
//!
//! Order, always: record, then tell. Recipients are marked sent or bounced in the queue file
//! before a notice goes out or the file moves; a crash in between loses at worst a notice,
//! never mail, and nobody is told twice.
//!
//! Lifetimes (where tidemail departs from Postfix on purpose): maximal_queue_lifetime counts
//! only time covered by attempts that failed for the message's own sake (a server's 4xx to it),
//! each failed attempt crediting the time since the previous one, but no more than the retry
//! interval the message would have waited anyway (its backoff plus queue_run_delay). Time held
//! by defer_transports, or spent with the link or the smarthost down, never counts: a laptop
//! closed for a week bounces nothing. maximal_hold_lifetime caps the age from arrival, held
//! time included. delay_warning_time uses the same clock as maximal_queue_lifetime.

use std::time::Duration;

use chrono::TimeZone;

use super::plan::Job;
use super::smtp::Attempt;
use super::{MessageOutcome, MessageReport, RunState, SERVICE, backoff, micros, soft};
use crate::deliver::smtp::Outcome;
use crate::log::{self, Delivery, Status};
use crate::queue::store::now_us;
use crate::queue::{QueueError, QueueName, RcptState, Update};
use crate::{bounce, mail_info, mail_warning};

/// What a run knows about one message while its jobs are out.
#[derive(Debug, Clone)]
pub struct MessageState {
    pub id: String,
    pub size: u64,
    pub arrival_us: i64,
    /// When the run took the message up (the end of `delays=a/...`).
    pub entered_us: i64,
    /// Jobs not yet finished.
    pub outstanding: usize,
    /// Some recipient was tried (or could not be routed), so attempts and backoff advance.
    pub attempted: bool,
    /// A server deferred this message (4xx to it, not a link failure): the lifetime clock runs.
    pub message_failure: bool,
    /// Recipients that bounced in this run: one notice tells of them all.
    pub bounced_now: Vec<usize>,
    pub possible_duplicate: Option<String>,
}

impl MessageState {
    pub fn new(id: &str, size: u64, arrival_us: i64, entered_us: i64) -> MessageState {
        MessageState {
            id: id.to_string(),
            size,
            arrival_us,
            entered_us,
            outstanding: 0,
            attempted: false,
            message_failure: false,
            bounced_now: Vec::new(),
            possible_duplicate: None,
        }
    }
}

/// Marks an attempt of `job` as under way, durably, before anything is sent: a crash from here
/// until its results are recorded shows as a possible duplicate.
pub fn begin(run: &RunState, job: &Job) -> Result<(), QueueError> {
    let Some(message) = message(run, &job.id) else { return Ok(()) };
    let _guard = message.lock().unwrap_or_else(|p| p.into_inner());
    let update = Update::InFlight { destination: job.destination.key.clone() };
    run.store.append_updates(QueueName::Active, &job.id, &[update])
}

fn message(run: &RunState, id: &str) -> Option<std::sync::Arc<std::sync::Mutex<MessageState>>> {
    run.messages.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned()
}

/// Records a job's results, logs them (as `service`, unless the caller logged them), and
/// concludes the message after its last job. `job_started_us` is when the job was taken up
/// (the end of `delays=a/b`).
pub fn record(
    run: &RunState,
    job: &Job,
    attempts: &[Attempt],
    possible_duplicate: Option<String>,
    job_started_us: i64,
    service: Option<&str>,
) {
    let Some(message) = message(run, &job.id) else { return };
    let mut state = message.lock().unwrap_or_else(|p| p.into_inner());
    let cfg = &*run.cfg;
    let mut updates = Vec::with_capacity(attempts.len() + 1);
    let mut bounced = Vec::new();
    for a in attempts {
        let (rcpt_state, dsn) = match a.outcome {
            Outcome::Delivered => (RcptState::Sent, a.dsn.clone()),
            Outcome::Bounced if cfg.soft_bounce() => (RcptState::Pending, soft(&a.dsn)),
            Outcome::Bounced => (RcptState::Bounced, a.dsn.clone()),
            Outcome::Deferred => (RcptState::Pending, soft(&a.dsn)),
        };
        if rcpt_state == RcptState::Bounced {
            bounced.push(a.index);
        }
        if rcpt_state == RcptState::Pending && !a.link {
            state.message_failure = true;
        }
        updates.push(Update::Recipient {
            index: a.index,
            state: rcpt_state,
            dsn: Some(dsn),
            reason: Some(a.text.clone()),
        });
    }
    if let Some(why) = &possible_duplicate {
        mail_warning!("smtp", "{}: possible duplicate: {why}", job.id);
        state.possible_duplicate = Some(why.clone());
    }
    updates.push(Update::AttemptEnded { destination: job.destination.key.clone(), possible_duplicate });
    // Durable when someone will be told (a bounce notice) or when another job of the message
    // could otherwise send to these recipients again after a crash. A delivered message's
    // last job needs no flush: if its removal is lost, the in-flight mark flags the copy.
    let sync = !bounced.is_empty() || state.outstanding > 1;
    let written = if sync {
        run.store.append_updates(QueueName::Active, &job.id, &updates)
    } else {
        run.store.append_updates_unsynced(QueueName::Active, &job.id, &updates)
    };
    if let Err(e) = written {
        // The results are lost, not the mail: the message stays in active, the next start
        // puts it back in line (and its in-flight mark flags a possible duplicate).
        mail_warning!(SERVICE, "{}: cannot record delivery results: {e}", job.id);
        state.outstanding = state.outstanding.saturating_sub(1);
        return;
    }
    state.attempted = true;
    state.bounced_now.extend(bounced);

    let env_arrival = state.arrival_us;
    let entered = state.entered_us;
    let now = now_us();
    for a in attempts.iter().filter(|_| service.is_some()) {
        let Some((_, address)) = job.recipients.iter().find(|(i, _)| *i == a.index) else { continue };
        let status = match updates.iter().find_map(|u| match u {
            Update::Recipient { index, state, .. } if *index == a.index => Some(*state),
            _ => None,
        }) {
            Some(RcptState::Sent) => Status::Sent,
            Some(RcptState::Bounced) => Status::Bounced,
            _ => Status::Deferred,
        };
        let dsn = if status == Status::Deferred { soft(&a.dsn) } else { a.dsn.clone() };
        log::delivery(
            service.unwrap_or("smtp"),
            &Delivery {
                queue_id: &job.id,
                to: address,
                orig_to: None,
                relay: &a.relay,
                delay: micros(now - env_arrival),
                delays: [micros(entered - env_arrival), micros(job_started_us - entered), a.setup, a.transmission],
                dsn: &dsn,
                status,
                text: &a.text,
            },
        );
    }

    state.outstanding = state.outstanding.saturating_sub(1);
    if state.outstanding == 0 {
        match conclude(run, QueueName::Active, &state) {
            Ok(report) => run.observe(&report),
            Err(e) => mail_warning!(SERVICE, "{}: {e}", job.id),
        }
    }
}

/// Decides the fate of message `state.id`, now in `queue`, after its turn: removed when no
/// recipient waits; otherwise expired (bounced) past its lifetime, else deferred with the
/// next attempt scheduled (or held as a possible duplicate, when so configured).
pub fn conclude(run: &RunState, queue: QueueName, state: &MessageState) -> Result<MessageReport, QueueError> {
    let cfg = &*run.cfg;
    let store = &run.store;
    let id = state.id.as_str();
    let env = store.read_entry(queue, id)?.envelope;
    let pending: Vec<usize> = env.pending().map(|(i, _)| i).collect();
    let report =
        |outcome, reason: Option<String>| MessageReport { id: id.to_string(), size: state.size, outcome, reason };
    let bounced_outcome = if state.bounced_now.is_empty() { MessageOutcome::Sent } else { MessageOutcome::Bounced };

    if pending.is_empty() {
        notify_failures(run, queue, id, &state.bounced_now);
        // A crash may bring the file back; its recipients are all marked done, or its
        // in-flight mark flags the possible duplicate.
        store.remove_unsynced(queue, id)?;
        mail_info!(SERVICE, "{id}: removed");
        return Ok(report(bounced_outcome, None));
    }

    let now = now_us() / 1_000_000;
    let mut updates = Vec::new();
    let (mut failed_secs, mut last_failure) = (env.failed_secs, env.last_failure);
    if state.message_failure {
        let cap = (backoff(cfg, env.attempts.max(1)) + cfg.queue_run_delay()).as_secs() as i64;
        failed_secs += last_failure.map(|t| (now - t).clamp(0, cap)).unwrap_or(0);
        last_failure = Some(now);
        updates.push(Update::Lifetime { failed_secs, last_failure });
    }
    let lifetime = if env.sender.is_empty() { cfg.bounce_queue_lifetime() } else { cfg.maximal_queue_lifetime() };
    let age = Duration::from_micros((now_us() - env.arrival_us).max(0) as u64);
    let expired = if state.message_failure && failed_secs >= lifetime.as_secs() as i64 {
        Some("message delivery failed for longer than maximal_queue_lifetime")
    } else if age >= cfg.maximal_hold_lifetime() {
        Some("message was queued for longer than maximal_hold_lifetime")
    } else {
        None
    };

    if let Some(why) = expired {
        // Postfix keeps each recipient's last 4.x.x status in the report (Action: failed).
        for &index in &pending {
            let r = &env.recipients[index];
            updates.push(Update::Recipient {
                index,
                state: RcptState::Bounced,
                dsn: Some(r.dsn.clone().unwrap_or_else(|| "4.0.0".into())),
                reason: Some(r.reason.clone().unwrap_or_else(|| why.to_string())),
            });
        }
        store.append_updates(queue, id, &updates)?;
        mail_info!(SERVICE, "{id}: from=<{}>, status=expired, returned to sender ({why})", env.sender);
        let mut all = state.bounced_now.clone();
        all.extend(&pending);
        notify_failures(run, queue, id, &all);
        store.remove_unsynced(queue, id)?;
        mail_info!(SERVICE, "{id}: removed");
        return Ok(report(MessageOutcome::Bounced, None));
    }

    let attempts = if state.attempted { env.attempts + 1 } else { env.attempts };
    if state.attempted {
        let next_attempt = now + backoff(cfg, attempts).as_secs() as i64;
        updates.push(Update::Schedule { attempts, next_attempt });
    }
    let warn_delay = !cfg.delay_warning_time().is_zero()
        && !env.delay_warned
        && !env.sender.is_empty()
        && failed_secs >= cfg.delay_warning_time().as_secs() as i64;
    if warn_delay {
        updates.push(Update::DelayWarned);
    }
    let hold = state.possible_duplicate.is_some() && cfg.smtp_duplicate_suspect_action() == "hold";
    let to = if hold { QueueName::Hold } else { QueueName::Deferred };
    store.update_and_move(id, queue, to, &updates)?;
    if hold {
        mail_info!(SERVICE, "{id}: held: possible duplicate (smtp_duplicate_suspect_action = hold)");
    }
    notify_failures(run, to, id, &state.bounced_now);
    if warn_delay {
        // The earlier of the two limits: failure time left, or the hold cap from arrival.
        let by_failures = now + (lifetime.as_secs() as i64 - failed_secs).max(0);
        let by_age = env.arrival_us / 1_000_000 + cfg.maximal_hold_lifetime().as_secs() as i64;
        let until = chrono::Local.timestamp_opt(by_failures.min(by_age), 0).single();
        bounce::notify_delay_or_warn(cfg, store, to, id, &pending, until);
    }
    let reason = pending.first().and_then(|&i| env.recipients[i].reason.clone());
    Ok(report(MessageOutcome::Deferred, reason))
}

fn notify_failures(run: &RunState, queue: QueueName, id: &str, bounced: &[usize]) {
    if !bounced.is_empty() {
        bounce::notify_or_warn(&run.cfg, &run.store, queue, id, bounced);
    }
}
