//! The `local` transport as the queue manager drives it: each recipient is handed to the
//! local delivery agent ([`crate::deliver::local`], behind the privileged helper when the
//! daemon runs as root), one at a time; its targets are logged as Postfix's local(8) logs
//! them, addresses it forwards to get a copy as new mail, and the recipient's outcome is
//! recorded like any other.

use std::io::Read;
use std::time::{Duration, Instant};

use super::finish;
use super::plan::Job;
use super::smtp::Attempt;
use super::{RunState, micros};
use crate::deliver::local::privsep::Reply;
use crate::deliver::smtp::Outcome;
use crate::log::{self, Delivery, Status};
use crate::queue::store::now_us;
use crate::queue::{Envelope, Origin, QueueError, QueueName, Recipient};

/// The transport local delivery serves.
pub const TRANSPORT: &str = "local";

/// The name local jobs go under in a run (never connected to).
pub fn destination() -> super::smtp::Destination {
    super::smtp::Destination {
        key: TRANSPORT.into(),
        written: TRANSPORT.into(),
        hop: Err(String::new()),
        configured: true,
    }
}

/// Delivers one local job (one recipient) and records the outcome. Blocking: runs on a
/// blocking thread.
pub fn deliver(run: &RunState, job: &Job) {
    let Some(agent) = run.local.clone() else { return };
    let started_us = now_us();
    let started = Instant::now();
    let mut attempts = Vec::new();
    for (index, address) in &job.recipients {
        let reply = agent.deliver(&job.id, *index);
        let took = started.elapsed();
        attempts.push(outcome(run, job, *index, address, reply, took, started_us));
    }
    finish::record(run, job, &attempts, None, started_us, None);
}

/// One recipient's reply: its targets logged, forwards queued, and one attempt for the record.
fn outcome(
    run: &RunState,
    job: &Job,
    index: usize,
    address: &str,
    mut reply: Reply,
    took: Duration,
    started_us: i64,
) -> Attempt {
    // One copy per envelope sender (owner-NAME lists get their own).
    let mut senders: Vec<Option<String>> = Vec::new();
    for f in &reply.forwards {
        if !senders.contains(&f.sender) {
            senders.push(f.sender.clone());
        }
    }
    for sender in senders {
        let to: Vec<String> = reply.forwards.iter().filter(|f| f.sender == sender).map(|f| f.address.clone()).collect();
        let (delivered, dsn, text) = match forward(run, job, address, sender.as_deref(), &to) {
            Ok(id) => (true, "2.0.0".to_string(), format!("forwarded as {id}")),
            Err(e) => (false, "4.3.0".to_string(), format!("cannot forward: {e}")),
        };
        reply.results.push(crate::deliver::local::privsep::TargetResult {
            to: address.to_string(),
            delivered,
            temporary: !delivered,
            dsn,
            text,
        });
    }
    let (entered, arrival) = {
        let messages = run.messages.lock().unwrap_or_else(|p| p.into_inner());
        messages
            .get(&job.id)
            .map(|m| {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                (m.entered_us, m.arrival_us)
            })
            .unwrap_or((started_us, started_us))
    };
    let now = now_us();
    for result in &reply.results {
        let to = if result.to.is_empty() { address } else { result.to.as_str() };
        let status = match (result.delivered, result.temporary) {
            (true, _) => Status::Sent,
            (false, true) => Status::Deferred,
            (false, false) => Status::Bounced,
        };
        log::delivery(
            TRANSPORT,
            &Delivery {
                queue_id: &job.id,
                to,
                orig_to: Some(reply.original.as_str()).filter(|o| !o.is_empty() && !o.eq_ignore_ascii_case(to)),
                relay: TRANSPORT,
                delay: micros(now - arrival),
                delays: [micros(entered - arrival), micros(started_us - entered), Duration::ZERO, took],
                dsn: &result.dsn,
                status,
                text: &result.text,
            },
        );
    }
    // The recipient waits if any target must be tried again, bounces if any failed for
    // good, and is done when all were delivered.
    let pick = reply
        .results
        .iter()
        .find(|r| !r.delivered && r.temporary)
        .or_else(|| reply.results.iter().find(|r| !r.delivered))
        .or_else(|| reply.results.first());
    let (outcome, dsn, text) = match pick {
        Some(r) if r.delivered => (Outcome::Delivered, r.dsn.clone(), r.text.clone()),
        Some(r) if r.temporary => (Outcome::Deferred, r.dsn.clone(), r.text.clone()),
        Some(r) => (Outcome::Bounced, r.dsn.clone(), r.text.clone()),
        None => (Outcome::Deferred, "4.3.0".into(), "local delivery gave no result".into()),
    };
    Attempt {
        index,
        outcome,
        dsn,
        text,
        relay: TRANSPORT.into(),
        link: false,
        setup: Duration::ZERO,
        transmission: took,
    }
}

/// Queues a copy for the addresses `address` forwards to, with `Delivered-To: address` on
/// top (a loop comes back with it and bounces). Returns the new queue ID.
fn forward(
    run: &RunState,
    job: &Job,
    address: &str,
    sender: Option<&str>,
    to: &[String],
) -> Result<String, QueueError> {
    let store = &run.store;
    let (entry, mut reader) = store.open_message(QueueName::Active, &job.id)?;
    let mut content = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
    reader.read_to_end(&mut content)?;
    let mut writer = store.create(QueueName::Incoming, 0)?;
    writer.write_content(format!("Delivered-To: {address}\n").as_bytes())?;
    writer.write_content(&content)?;
    let sender = sender.map(str::to_string).unwrap_or_else(|| entry.envelope.sender.clone());
    let recipients = to.iter().map(Recipient::new).collect();
    let origin = Origin::Local { uid: nix::unistd::geteuid().as_raw() };
    let mut envelope = Envelope::new(sender, recipients, origin, writer.arrival_us());
    envelope.envid = entry.envelope.envid.clone();
    envelope.ret = entry.envelope.ret;
    store.commit(writer, &envelope)
}
