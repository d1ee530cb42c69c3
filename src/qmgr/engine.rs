//! Runs a batch of delivery jobs: one task per destination, each running sessions that take
//! jobs from the destination's line until it is empty.
//!
//! Concurrency per destination starts at initial_destination_concurrency (those sessions
//! connect at once: on a slow link a trial connection first would cost its round trips
//! before the others start) and grows by one
//! session per delivered job up to default_destination_concurrency_limit (0: no limit). A
//! session that cannot be opened while others to the same destination work lowers it again.
//! When no session can be opened at all, the destination is dead for the rest of the run:
//! every job left in its line is deferred at once with the same reason, without another
//! connection (one warning says so), so a down smarthost is not hammered. The next run (a
//! flush, or the next queue scan) tries afresh.
//!
//! When the server takes PIPELINING and CHUNKING, a session writes its next messages before
//! the replies to the earlier ones are read (up to [`MAX_UNANSWERED`] waiting), so a long
//! round trip is paid about once per window rather than once per message. Each message's
//! durable in-flight mark is written before its first byte is, and its results are recorded
//! once its replies are read; a connection lost with messages unanswered defers them all,
//! each flagged as a possible duplicate.
//!
//! File work (reading content, recording results) runs on tokio's blocking threads, so a slow
//! disk does not stall the sessions.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::finish;
use super::plan::Job;
use super::smtp::{self, Broken, Destination, Failure, Sent};
use super::{MessageOutcome, MessageReport, RunState, SERVICE};
use crate::deliver::smtp::Session;
use crate::queue::store::now_us;
use crate::queue::{QueueError, QueueName};
use crate::{mail_info, mail_warning};

/// Messages one session may have written and not yet read the replies to. Enough to keep a
/// satellite link (600 ms round trip) busy with small messages; each is deferred and flagged
/// as a possible duplicate if the connection is lost before its replies arrive.
pub const MAX_UNANSWERED: usize = 8;

/// Runs every job; returns when all are recorded.
pub async fn deliver(run: Arc<RunState>, jobs: Vec<Job>) {
    let (local, jobs): (Vec<Job>, Vec<Job>) = jobs.into_iter().partition(|job| job.local);
    let mut tasks = JoinSet::new();
    if !local.is_empty() {
        tasks.spawn(local_task(run.clone(), local));
    }
    let mut lines: Vec<(Arc<Destination>, VecDeque<Job>)> = Vec::new();
    for job in jobs {
        match lines.iter_mut().find(|(d, _)| d.key == job.destination.key) {
            Some((_, line)) => line.push_back(job),
            None => lines.push((job.destination.clone(), VecDeque::from([job]))),
        }
    }
    for (destination, line) in lines {
        tasks.spawn(destination_task(run.clone(), destination, line));
    }
    while tasks.join_next().await.is_some() {}
}

/// Local jobs, one after another (the local agent takes one request at a time).
async fn local_task(run: Arc<RunState>, jobs: Vec<Job>) {
    for job in jobs {
        let run = run.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || super::local::deliver(&run, &job)).await {
            mail_warning!(SERVICE, "local delivery: {e}");
        }
    }
}

/// One destination's line and the sessions working it.
struct Line {
    jobs: Mutex<VecDeque<Job>>,
    /// How many sessions may run now.
    target: AtomicUsize,
    limit: usize,
    /// Some session got through (greeting and EHLO) in this run.
    reached: AtomicBool,
    /// Sessions running (connected or connecting).
    running: AtomicUsize,
    /// Set when the destination is found dead.
    dead: Mutex<Option<Failure>>,
    grow: Notify,
}

impl Line {
    fn next_job(&self) -> Option<Job> {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).pop_front()
    }

    fn waiting(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    fn dead(&self) -> Option<Failure> {
        self.dead.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

async fn destination_task(run: Arc<RunState>, destination: Arc<Destination>, jobs: VecDeque<Job>) {
    let cfg = &run.cfg;
    let limit = match usize::try_from(cfg.default_destination_concurrency_limit()).unwrap_or(0) {
        0 => usize::MAX,
        n => n,
    };
    let initial = usize::try_from(cfg.initial_destination_concurrency()).unwrap_or(1).clamp(1, limit);
    let line = Arc::new(Line {
        jobs: Mutex::new(jobs),
        target: AtomicUsize::new(initial),
        limit,
        reached: AtomicBool::new(false),
        running: AtomicUsize::new(0),
        dead: Mutex::new(None),
        grow: Notify::new(),
    });
    let mut sessions = JoinSet::new();
    loop {
        // Start sessions up to the target while jobs wait for one.
        let target = line.target.load(Ordering::Relaxed);
        while line.dead().is_none() && sessions.len() < target && line.waiting() > sessions.len() {
            line.running.fetch_add(1, Ordering::Relaxed);
            sessions.spawn(session_task(run.clone(), destination.clone(), line.clone()));
        }
        if sessions.is_empty() {
            break;
        }
        tokio::select! {
            _ = sessions.join_next() => {}
            _ = line.grow.notified() => {}
        }
    }
    // Whatever is left waits for the next run, with the reason the destination gave.
    if let Some(failure) = line.dead() {
        let left: Vec<Job> = line.jobs.lock().unwrap_or_else(|p| p.into_inner()).drain(..).collect();
        if !left.is_empty() {
            mail_warning!(
                "smtp",
                "destination {} not reached: {}; {} more message(s) wait for the next attempt",
                destination.key,
                failure.text,
                left.len()
            );
        }
        for job in left {
            let failure = failure.clone();
            let run = run.clone();
            let started = now_us();
            let _ = tokio::task::spawn_blocking(move || {
                let indices: Vec<usize> = job.recipients.iter().map(|(i, _)| *i).collect();
                finish::record(&run, &job, &failure.defer_all(&indices), None, started, Some("smtp"));
            })
            .await;
        }
    }
}

/// A job written to the session, its replies still to be read.
struct Unanswered {
    job: Job,
    sent: Sent,
    started_us: i64,
}

async fn session_task(run: Arc<RunState>, destination: Arc<Destination>, line: Arc<Line>) {
    let mut session: Option<Session> = None;
    let mut unanswered: VecDeque<Unanswered> = VecDeque::new();
    while let Some(job) = line.next_job() {
        let job_started = now_us();
        if line.dead().is_some() {
            put_back(&line, job);
            break;
        }
        let connect_started = Instant::now();
        let mut open = match session.take() {
            Some(s) if s.is_usable() => s,
            broken => {
                // What a broken session still owes is settled before another is opened.
                if let Some(mut s) = broken {
                    settle_all(&run, &line, &mut s, &mut unanswered).await;
                }
                match smtp::connect(&run.cfg, &destination).await {
                    Ok(s) => {
                        line.reached.store(true, Ordering::Relaxed);
                        s
                    }
                    Err(failure) => {
                        let others = line.running.load(Ordering::Relaxed) > 1;
                        if others && line.reached.load(Ordering::Relaxed) {
                            // Others get through: this destination wants fewer sessions.
                            let target = line.target.load(Ordering::Relaxed);
                            line.target.store(target.saturating_sub(1).max(1), Ordering::Relaxed);
                            put_back(&line, job);
                        } else {
                            // The sessions opened together all fail together: say so once.
                            let mut dead = line.dead.lock().unwrap_or_else(|p| p.into_inner());
                            if dead.is_none() {
                                mail_info!(SERVICE, "destination {} is down: {}", destination.key, failure.text);
                                *dead = Some(failure);
                            }
                            drop(dead);
                            put_back(&line, job);
                        }
                        break;
                    }
                }
            }
        };
        let setup = connect_started.elapsed();

        // The content, and the durable in-flight mark, off the event loop; the mark is on
        // disk before the message's first byte is written.
        let prepared = {
            let (run, job) = (run.clone(), job.clone());
            tokio::task::spawn_blocking(move || prepare(&run, &job)).await
        };
        let content = match prepared {
            Ok(Ok(content)) => content,
            Ok(Err(e)) => {
                abandon(&run, &job, e);
                session = Some(open);
                continue;
            }
            Err(e) => {
                mail_warning!(SERVICE, "{}: {e}", job.id);
                session = Some(open);
                continue;
            }
        };

        let submitted = smtp::submit(&mut open, &job.sender, &job.recipients, &content, setup).await;
        drop(content);
        match submitted {
            Ok(sent) => unanswered.push_back(Unanswered { job, sent, started_us: job_started }),
            Err(broken) => settle(&run, &line, job, Err(broken), job_started).await,
        }
        // Read replies while too many are due; all of them when the session does not pipeline
        // messages (or broke: what was written before the break may still be answered).
        let window = if open.pipelines_messages() { MAX_UNANSWERED } else { 0 };
        while unanswered.len() > window {
            settle_next(&run, &line, &mut open, &mut unanswered).await;
        }
        session = Some(open);
    }
    if let Some(open) = session.as_mut() {
        settle_all(&run, &line, open, &mut unanswered).await;
    }
    line.running.fetch_sub(1, Ordering::Relaxed);
    if let Some(session) = session
        && session.is_usable()
    {
        session.quit().await;
    }
}

/// Reads the replies to the oldest unanswered job and records its results.
async fn settle_next(run: &Arc<RunState>, line: &Line, session: &mut Session, unanswered: &mut VecDeque<Unanswered>) {
    let Some(Unanswered { job, sent, started_us }) = unanswered.pop_front() else { return };
    let result = smtp::collect(session, sent, &job.recipients).await;
    settle(run, line, job, result, started_us).await;
}

async fn settle_all(run: &Arc<RunState>, line: &Line, session: &mut Session, unanswered: &mut VecDeque<Unanswered>) {
    while !unanswered.is_empty() {
        settle_next(run, line, session, unanswered).await;
    }
}

/// Records a job's results; a delivered job lets the destination have one more session.
async fn settle(run: &Arc<RunState>, line: &Line, job: Job, result: Result<Vec<smtp::Attempt>, Broken>, started: i64) {
    let (attempts, duplicate) = match result {
        Ok(attempts) => {
            let target = line.target.load(Ordering::Relaxed);
            if target < line.limit {
                line.target.store(target + 1, Ordering::Relaxed);
                line.grow.notify_one();
            }
            (attempts, None)
        }
        Err(broken) => {
            let indices: Vec<usize> = job.recipients.iter().map(|(i, _)| *i).collect();
            let duplicate = broken.possible_duplicate.then(|| {
                format!(
                    "the connection to {} was lost after the message was sent and before the server answered",
                    broken.failure.relay
                )
            });
            (broken.failure.defer_all(&indices), duplicate)
        }
    };
    let recorded = {
        let run = run.clone();
        tokio::task::spawn_blocking(move || finish::record(&run, &job, &attempts, duplicate, started, Some("smtp")))
            .await
    };
    if let Err(e) = recorded {
        mail_warning!(SERVICE, "recording results: {e}");
    }
}

fn put_back(line: &Line, job: Job) {
    line.jobs.lock().unwrap_or_else(|p| p.into_inner()).push_front(job);
}

/// Reads the message's content (verifying its checksums) and marks the attempt in flight.
fn prepare(run: &RunState, job: &Job) -> Result<Vec<u8>, QueueError> {
    use std::io::Read;
    let (_, mut reader) = run.store.open_message(QueueName::Active, &job.id)?;
    let mut content = Vec::with_capacity(usize::try_from(job.size).unwrap_or(0).min(64 << 20));
    reader.read_to_end(&mut content).map_err(|e| match e.kind() {
        std::io::ErrorKind::InvalidData => QueueError::Corrupt(e.to_string()),
        _ => QueueError::Io(e),
    })?;
    finish::begin(run, job)?;
    Ok(content)
}

/// A job whose message cannot be read: a corrupt file is set aside; anything else leaves the
/// message in active, where the next start puts it back in line. Either way the run is done
/// with the message.
fn abandon(run: &RunState, job: &Job, e: QueueError) {
    let removed = run.messages.lock().unwrap_or_else(|p| p.into_inner()).remove(&job.id);
    let Some(state) = removed else { return };
    let reason = match e {
        QueueError::Corrupt(why) => {
            super::set_aside(&run.store, QueueName::Active, &job.id, &why);
            format!("corrupt queue file: {why}")
        }
        e => {
            mail_warning!(SERVICE, "{}: cannot read the message: {e}", job.id);
            format!("cannot read the message: {e}")
        }
    };
    let size = state.lock().unwrap_or_else(|p| p.into_inner()).size;
    run.observe(&MessageReport { id: job.id.clone(), size, outcome: MessageOutcome::Deferred, reason: Some(reason) });
}
