//! qmgr: the queue manager. Moves messages incoming → active, decides each recipient's
//! transport, and (for now) defers them: delivery agents (local, smtp) arrive in later issues,
//! and until then a recipient waits with the reason Postfix gives when a transport is missing.
//! defer_transports is honoured already: held mail waits with "deferred transport" and its
//! attempt count and backoff do not advance.

pub mod route;

use std::io;
use std::time::Duration;

use crate::config::Config;
use crate::log::{self, Delivery, Status};
use crate::queue::store::now_us;
use crate::queue::{QueueError, QueueName, QueueStore, RcptState, Update};
use crate::{mail_info, mail_warning};

const SERVICE: &str = "qmgr";

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
        if due && store.move_to(&id, QueueName::Deferred, QueueName::Incoming).is_ok() {
            released += 1;
        }
    }
    Ok(released)
}

/// Handle everything in incoming.
pub fn run_incoming(cfg: &Config, store: &QueueStore) -> io::Result<usize> {
    let ids = store.list(QueueName::Incoming)?;
    for id in &ids {
        if let Err(e) = process(cfg, store, id) {
            match e {
                QueueError::Corrupt(why) => set_aside(store, QueueName::Incoming, id, &why),
                e => mail_warning!(SERVICE, "{id}: {e}"),
            }
        }
    }
    Ok(ids.len())
}

fn set_aside(store: &QueueStore, queue: QueueName, id: &str, why: &str) {
    match store.set_aside(queue, id) {
        Ok(target) => {
            mail_warning!(SERVICE, "{}/{id}: corrupt queue file ({why}): moved to corrupt/{target}", queue.dir_name())
        }
        Err(e) => mail_warning!(SERVICE, "{}/{id}: corrupt queue file ({why}); cannot move it: {e}", queue.dir_name()),
    }
}

fn process(cfg: &Config, store: &QueueStore, id: &str) -> Result<(), QueueError> {
    let entry = store.read_entry(QueueName::Incoming, id)?;
    let env = &entry.envelope;
    let pending: Vec<usize> = env.pending().map(|(i, _)| i).collect();
    if pending.is_empty() {
        store.remove(QueueName::Incoming, id)?;
        mail_info!(SERVICE, "{id}: removed");
        return Ok(());
    }
    let entered_us = now_us();
    mail_info!(
        SERVICE,
        "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
        env.sender,
        entry.size,
        env.recipients.len()
    );

    let mut updates = Vec::new();
    let mut attempted = false;
    for &index in &pending {
        let rcpt = &env.recipients[index];
        let transport = route::transport_for(cfg, &rcpt.address);
        let (dsn, reason) = if cfg.defer_transports().contains(&transport) {
            ("4.3.2", "deferred transport".to_string())
        } else {
            attempted = true;
            ("4.3.0", "mail transport unavailable".to_string())
        };
        let now = now_us();
        log::delivery(
            SERVICE,
            &Delivery {
                queue_id: id,
                to: &rcpt.address,
                orig_to: (rcpt.original != rcpt.address).then_some(rcpt.original.as_str()),
                relay: "none",
                delay: micros(now - env.arrival_us),
                delays: [micros(entered_us - env.arrival_us), micros(now - entered_us), Duration::ZERO, Duration::ZERO],
                dsn,
                status: Status::Deferred,
                text: &reason,
            },
        );
        updates.push(Update::Recipient {
            index,
            state: RcptState::Pending,
            dsn: Some(dsn.into()),
            reason: Some(reason),
        });
    }
    if attempted {
        let attempts = env.attempts + 1;
        let next = now_us() / 1_000_000 + backoff(cfg, attempts).as_secs() as i64;
        updates.push(Update::Schedule { attempts, next_attempt: next });
    }
    // No recipient can be handed to a delivery agent (held, or no agent for its transport in
    // this release), so the message goes from incoming straight to deferred with its new
    // state: one flush. Recipients that can be delivered will pass through active.
    store.update_and_move(id, QueueName::Incoming, QueueName::Deferred, &updates)?;
    Ok(())
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// Postfix's backoff: minimal_backoff_time doubled per attempt, capped at maximal_backoff_time.
pub fn backoff(cfg: &Config, attempts: u32) -> Duration {
    let min = cfg.minimal_backoff_time();
    let max = cfg.maximal_backoff_time().max(min);
    let factor = 1u32.checked_shl(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
    min.checked_mul(factor).unwrap_or(max).min(max)
}
