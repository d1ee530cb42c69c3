//! One incoming message's turn: its recipients are routed, and each is bounced (the `error`
//! transport), held (defer_transports, unless this run is a flush), left waiting (no agent for
//! its transport yet, or its address cannot be resolved now), or put in a delivery job for the
//! SMTP client. A message with jobs moves to active; one without goes straight to its fate
//! ([`super::finish::conclude`]).
//!
//! A message found with an attempt still marked under way (`Envelope::in_flight`) was cut off
//! by a crash while being sent: it may have arrived. It is logged as a possible duplicate and,
//! with smtp_duplicate_suspect_action = hold, set aside in the hold queue for the admin.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::finish::{self, MessageState};
use super::local;
use super::route::{self, Route};
use super::smtp::{self, Destination};
use super::{MessageOutcome, MessageReport, RunState, SERVICE, micros, soft};
use crate::log::{self, Delivery, Status};
use crate::queue::store::now_us;
use crate::queue::{QueueError, QueueName, RcptState, Update};
use crate::{mail_info, mail_warning};

/// A message to send to some of its recipients at one destination.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub sender: String,
    /// (index in the envelope, address).
    pub recipients: Vec<(usize, String)>,
    pub size: u64,
    pub destination: Arc<Destination>,
    /// For the local transport (the destination is then only a name).
    pub local: bool,
}

/// Recipients (index, address) bound for one destination.
type Group = (Arc<Destination>, Vec<(usize, String)>);

/// Routes message `id` in incoming; returns its delivery jobs (none when it was dealt with).
pub fn plan(run: &RunState, id: &str) -> Result<Vec<Job>, QueueError> {
    let cfg = &*run.cfg;
    let store = &run.store;
    let entry = store.read_entry(QueueName::Incoming, id)?;
    let env = &entry.envelope;
    let pending: Vec<usize> = env.pending().map(|(i, _)| i).collect();
    if pending.is_empty() {
        store.remove(QueueName::Incoming, id)?;
        mail_info!(SERVICE, "{id}: removed");
        run.observe(&MessageReport {
            id: id.to_string(),
            size: entry.size,
            outcome: MessageOutcome::Sent,
            reason: None,
        });
        return Ok(Vec::new());
    }
    let entered_us = now_us();
    mail_info!(
        SERVICE,
        "{id}: from=<{}>, size={}, nrcpt={} (queue active)",
        env.sender,
        entry.size,
        env.recipients.len()
    );

    let mut state = MessageState::new(id, entry.size, env.arrival_us, entered_us);
    let mut updates = Vec::new();
    for destination in &env.in_flight {
        let why = format!("an earlier delivery attempt to {destination} was interrupted before its result was known");
        mail_warning!(SERVICE, "{id}: possible duplicate: {why}");
        updates.push(Update::AttemptEnded { destination: destination.clone(), possible_duplicate: Some(why.clone()) });
        state.possible_duplicate = Some(why);
    }
    if state.possible_duplicate.is_some() && cfg.smtp_duplicate_suspect_action() == "hold" {
        store.update_and_move(id, QueueName::Incoming, QueueName::Hold, &updates)?;
        mail_info!(SERVICE, "{id}: held: possible duplicate (smtp_duplicate_suspect_action = hold)");
        let reason = Some("held: possible duplicate".to_string());
        run.observe(&MessageReport { id: id.to_string(), size: entry.size, outcome: MessageOutcome::Deferred, reason });
        return Ok(Vec::new());
    }

    let resolver = match route::Resolver::new(cfg) {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            mail_warning!(SERVICE, "{id}: {e}");
            None
        }
    };
    // Jobs by destination key, recipients in envelope order.
    let mut groups: Vec<Group> = Vec::new();
    let mut local_recipients: Vec<(usize, String)> = Vec::new();
    let held = |transport: &str| !run.options.flush && cfg.defer_transports().iter().any(|t| t == transport);
    for &index in &pending {
        let rcpt = &env.recipients[index];
        let now = now_us();
        let line = |service: &str, dsn: &str, status: Status, text: &str| {
            log::delivery(
                service,
                &Delivery {
                    queue_id: id,
                    to: &rcpt.address,
                    orig_to: (rcpt.original != rcpt.address).then_some(rcpt.original.as_str()),
                    relay: "none",
                    delay: micros(now - env.arrival_us),
                    delays: [
                        micros(entered_us - env.arrival_us),
                        micros(now - entered_us),
                        Duration::ZERO,
                        Duration::ZERO,
                    ],
                    dsn,
                    status,
                    text,
                },
            )
        };
        let (dsn, reason) = match route::route(cfg, resolver.as_ref(), rcpt) {
            Route::Error { dsn, text } if !held(route::ERROR_TRANSPORT) => {
                if cfg.soft_bounce() {
                    // soft_bounce: what would bounce waits instead (4.x.x); the verdict stays.
                    state.attempted = true;
                    line(route::ERROR_TRANSPORT, &soft(&dsn), Status::Deferred, &text);
                    continue;
                }
                line(route::ERROR_TRANSPORT, &dsn, Status::Bounced, &text);
                state.bounced_now.push(index);
                updates.push(Update::Recipient {
                    index,
                    state: RcptState::Bounced,
                    dsn: Some(dsn),
                    reason: Some(text),
                });
                continue;
            }
            Route::Error { .. } => ("4.3.2".to_string(), "deferred transport".to_string()),
            Route::Retry { dsn, text } => {
                state.attempted = true;
                (dsn, text)
            }
            Route::Transport { name, .. } if held(&name) => ("4.3.2".to_string(), "deferred transport".to_string()),
            Route::Transport { name, nexthop } if smtp::TRANSPORTS.contains(&name.as_str()) => {
                let dest = smtp::destination(cfg, nexthop.as_deref(), &rcpt.address);
                match groups.iter_mut().find(|(d, _)| d.key == dest.key) {
                    Some((_, members)) => members.push((index, rcpt.address.clone())),
                    None => groups.push((Arc::new(dest), vec![(index, rcpt.address.clone())])),
                }
                continue;
            }
            Route::Transport { name, .. } if name == local::TRANSPORT && run.local.is_some() => {
                local_recipients.push((index, rcpt.address.clone()));
                continue;
            }
            Route::Transport { .. } => {
                state.attempted = true;
                ("4.3.0".to_string(), "mail transport unavailable".to_string())
            }
        };
        line(SERVICE, &dsn, Status::Deferred, &reason);
        updates.push(Update::Recipient { index, state: RcptState::Pending, dsn: Some(dsn), reason: Some(reason) });
    }

    if groups.is_empty() && local_recipients.is_empty() {
        if !updates.is_empty() || !state.bounced_now.is_empty() {
            // Recorded before anyone is told (the notice is made from this file).
            store.append_updates(QueueName::Incoming, id, &updates)?;
        }
        let report = finish::conclude(run, QueueName::Incoming, &state)?;
        run.observe(&report);
        return Ok(Vec::new());
    }

    // Recorded now: what bounced must be on disk before the notice that conclude sends.
    if !updates.is_empty() {
        store.append_updates(QueueName::Incoming, id, &updates)?;
    }
    store.move_unsynced(id, QueueName::Incoming, QueueName::Active)?;
    // At most *_destination_recipient_limit recipients per job (0: no limit).
    let mut jobs = Vec::new();
    let mut split = |destination: &Arc<Destination>, members: &[(usize, String)], limit: i64, local: bool| {
        let chunk = usize::try_from(limit).ok().filter(|&n| n > 0).unwrap_or(members.len()).max(1);
        for recipients in members.chunks(chunk) {
            jobs.push(Job {
                id: id.to_string(),
                sender: env.sender.clone(),
                recipients: recipients.to_vec(),
                size: entry.size,
                destination: destination.clone(),
                local,
            });
        }
    };
    for (destination, members) in &groups {
        split(destination, members, cfg.default_destination_recipient_limit(), false);
    }
    if !local_recipients.is_empty() {
        let limit = cfg.local_destination_recipient_limit().max(1);
        split(&Arc::new(local::destination()), &local_recipients, limit, true);
    }
    state.outstanding = jobs.len();
    run.messages.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), Arc::new(Mutex::new(state)));
    Ok(jobs)
}
