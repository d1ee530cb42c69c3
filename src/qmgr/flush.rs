//! A flush: every message in the queue is attempted now, held transports included, backoff
//! ignored, and what became of each message that was queued when the flush began is counted
//! for `tidemail flush --wait` (progress as it goes, a summary at the end).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::{MessageOutcome, MessageReport, Observer, Qmgr, RunOptions, SERVICE};
use crate::config::Config;
use crate::queue::{QueueName, QueueStore};
use crate::{mail_info, mail_warning, submit};

/// How far a flush has come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub done: usize,
    pub total: usize,
    pub bytes_done: u64,
    pub bytes_total: u64,
}

/// What a flush did with the messages queued when it began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub progress: Progress,
    pub sent: usize,
    pub bounced: usize,
    /// The messages still waiting, each with its reason.
    pub deferred: Vec<MessageReport>,
    pub seconds: f64,
}

impl Summary {
    /// Nothing of what the flush found is left waiting.
    pub fn all_done(&self) -> bool {
        self.deferred.is_empty()
    }
}

/// Runs one flush. `progress` is called after each message of the snapshot is done.
pub fn flush(
    cfg: &Arc<Config>,
    store: &QueueStore,
    qmgr: &mut Qmgr,
    progress: Arc<dyn Fn(&Progress) + Send + Sync>,
) -> Summary {
    let started = Instant::now();
    if let Err(e) = submit::pickup::pickup_all(cfg, store, true) {
        mail_warning!("pickup", "maildrop: {e}");
    }
    if let Err(e) = super::release_deferred(store, true) {
        mail_warning!(SERVICE, "deferred: {e}");
    }
    // The snapshot: what is waiting now, with file sizes for the byte count.
    let mut snapshot: HashMap<String, u64> = HashMap::new();
    for queue in [QueueName::Incoming, QueueName::Active] {
        for id in store.list(queue).unwrap_or_default() {
            let size = std::fs::metadata(store.path(queue, &id)).map(|m| m.len()).unwrap_or(0);
            snapshot.insert(id, size);
        }
    }
    let total = Progress { done: 0, total: snapshot.len(), bytes_done: 0, bytes_total: snapshot.values().sum() };
    mail_info!(SERVICE, "flush: {} message(s) queued", total.total);
    let state = Arc::new(Mutex::new((Summary { progress: total, ..Summary::default() }, snapshot)));
    let observer: Observer = {
        let state = state.clone();
        Arc::new(move |report: &MessageReport| {
            let mut guard = state.lock().unwrap_or_else(|p| p.into_inner());
            let (summary, snapshot) = &mut *guard;
            let Some(bytes) = snapshot.remove(&report.id) else { return };
            tally(summary, report, bytes);
            progress(&summary.progress);
        })
    };
    if let Err(e) = qmgr.run_incoming(cfg, store, RunOptions { flush: true }, Some(observer)) {
        mail_warning!(SERVICE, "incoming: {e}");
    }
    let (mut summary, left) = std::mem::take(&mut *state.lock().unwrap_or_else(|p| p.into_inner()));
    // Messages the run did not report on (an error on the way): where are they now?
    for (id, bytes) in left {
        let waiting = [QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold]
            .into_iter()
            .find(|&q| store.path(q, &id).exists());
        let report = MessageReport {
            id: id.clone(),
            size: bytes,
            outcome: if waiting.is_some() { MessageOutcome::Deferred } else { MessageOutcome::Sent },
            reason: waiting.map(|q| format!("still in the {} queue", q.dir_name())),
        };
        tally(&mut summary, &report, bytes);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    mail_info!(
        SERVICE,
        "flush: done in {:.1}s: sent={}, bounced={}, deferred={}",
        summary.seconds,
        summary.sent,
        summary.bounced,
        summary.deferred.len()
    );
    summary
}

fn tally(summary: &mut Summary, report: &MessageReport, bytes: u64) {
    summary.progress.done += 1;
    summary.progress.bytes_done += bytes;
    match report.outcome {
        MessageOutcome::Sent => summary.sent += 1,
        MessageOutcome::Bounced => summary.bounced += 1,
        MessageOutcome::Deferred => summary.deferred.push(report.clone()),
    }
}
