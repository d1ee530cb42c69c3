//! qmgr: the queue manager. Moves messages incoming → active, decides each recipient's
//! transport, and (for now) defers them: delivery agents (local, smtp) arrive in later issues,
//! and until then a recipient waits with the reason Postfix gives when a transport is missing.
//! defer_transports is honoured already: held mail waits with "deferred transport" and its
//! attempt count and backoff do not advance.
//!
//! The one transport that works is `error` (Postfix's error(8)): recipients cleanup found
//! undeliverable (relocated, unknown in a virtual alias domain, a rejected local submission)
//! are logged `status=bounced` under its name, once, and recorded as bounced; once that is
//! durable, the sender gets one non-delivery notice for the message ([`crate::bounce`]). A
//! message with no recipient left pending is removed (`QID: removed`).

pub mod route;

use std::io;
use std::time::Duration;

use self::route::Route;
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

    let resolver = match route::Resolver::new(cfg) {
        Ok(resolver) => Some(resolver),
        Err(e) => {
            mail_warning!(SERVICE, "{id}: {e}");
            None
        }
    };
    let mut updates = Vec::new();
    // Recipients that bounce in this pass: one notice tells of them all.
    let mut bounced = Vec::new();
    let mut attempted = false;
    let mut still_pending = 0;
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
            Route::Error { dsn, text } if !cfg.defer_transports().iter().any(|t| t == route::ERROR_TRANSPORT) => {
                if cfg.soft_bounce() {
                    // soft_bounce: what would bounce waits instead (4.x.x); the verdict stays.
                    attempted = true;
                    still_pending += 1;
                    line(route::ERROR_TRANSPORT, &soft(&dsn), Status::Deferred, &text);
                    continue;
                }
                line(route::ERROR_TRANSPORT, &dsn, Status::Bounced, &text);
                bounced.push(index);
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
                attempted = true;
                (dsn, text)
            }
            Route::Transport(transport) if cfg.defer_transports().contains(&transport) => {
                ("4.3.2".to_string(), "deferred transport".to_string())
            }
            Route::Transport(_) => {
                attempted = true;
                ("4.3.0".to_string(), "mail transport unavailable".to_string())
            }
        };
        still_pending += 1;
        line(SERVICE, &dsn, Status::Deferred, &reason);
        updates.push(Update::Recipient { index, state: RcptState::Pending, dsn: Some(dsn), reason: Some(reason) });
    }
    if still_pending == 0 {
        // Every recipient is done: the message goes, after the notice is made from it.
        if !bounced.is_empty() {
            store.append_updates(QueueName::Incoming, id, &updates)?;
            notify_sender(cfg, store, QueueName::Incoming, id, &bounced);
        }
        store.remove(QueueName::Incoming, id)?;
        mail_info!(SERVICE, "{id}: removed");
        return Ok(());
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
    notify_sender(cfg, store, QueueName::Deferred, id, &bounced);
    Ok(())
}

/// A bounce's status as a deferral (soft_bounce): 5.x.x becomes 4.x.x.
fn soft(dsn: &str) -> String {
    match dsn.strip_prefix('5') {
        Some(rest) => format!("4{rest}"),
        None => dsn.to_string(),
    }
}

/// Tell the sender about the recipients that bounced in this pass (nothing when none did).
///
/// Called only after the queue file records them as bounced (durably): the order is "record,
/// then notify". A crash between the two loses at worst the notice, never mail, and the
/// recipients are not bounced (or reported) twice. Should the notice not be queued, a warning
/// is logged and the message goes on as usual.
fn notify_sender(cfg: &Config, store: &QueueStore, queue: QueueName, id: &str, bounced: &[usize]) {
    if !bounced.is_empty() {
        crate::bounce::notify_or_warn(cfg, store, queue, id, bounced);
    }
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

#[cfg(test)]
mod tests {

    use super::*;
    use crate::queue::{Envelope, Origin, Recipient};

    fn setup(extra: &str) -> (tempfile::TempDir, QueueStore, Config) {
        crate::queue::testing::scratch(&format!("defer_transports = [\"smtp\"]\n{extra}"))
    }

    fn queue(store: &QueueStore, recipients: Vec<Recipient>) -> String {
        let mut writer = store.create(QueueName::Incoming, 0).unwrap();
        writer.write_content(b"Subject: x\n\nbody\n").unwrap();
        let envelope = Envelope::new("sender@mail.example.com", recipients, Origin::Local { uid: 0 }, 0);
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
