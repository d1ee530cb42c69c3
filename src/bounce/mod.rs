//! bounce: non-delivery notices (Postfix's bounce(8)). When recipients of a message fail for
//! good, the queue manager records that durably and then asks for one notice per message
//! ([`notify_failures`]): an RFC 3464 report (see [`dsn`]) from `MAILER-DAEMON`, with the null
//! envelope sender, queued in incoming like any other mail.
//!
//! Who is told:
//! - the envelope sender, about each failed recipient whose DSN NOTIFY allows it (no NOTIFY,
//!   or NOTIFY with FAILURE and without NEVER);
//! - for a message with the null sender (nobody to return it to), the postmaster
//!   (`postmaster@$myorigin`, Postfix's double bounce);
//! - nobody when a message with the null sender is itself a notice (`Auto-Submitted:
//!   auto-replied`, or from MAILER-DAEMON): reporting a failed notice could go on forever, so it
//!   is logged with `warning:` and dropped.

pub mod dsn;

use std::io::{BufReader, Read};

use chrono::Local;

use self::dsn::{Report, Returned};
use crate::config::Config;
use crate::message::{HeaderBlock, HeaderLimits, parse_header_block, read_header_block};
use crate::queue::{Envelope, Notify, Origin, QueueError, QueueName, QueueStore, RcptState, Recipient};
use crate::{mail_info, mail_warning};

pub const SERVICE: &str = "bounce";

/// Whether a recipient's DSN NOTIFY (RFC 3461) lets the sender hear of its failure: always when
/// NOTIFY was not given; otherwise only with FAILURE and without NEVER.
pub fn wants_failure_notice(rcpt: &Recipient) -> bool {
    rcpt.notify.is_empty() || (rcpt.notify.contains(&Notify::Failure) && !rcpt.notify.contains(&Notify::Never))
}

/// Whether a header block is that of a delivery notice (ours or another system's): marked
/// `Auto-Submitted: auto-replied` (RFC 3834), or a `multipart/report` from MAILER-DAEMON.
/// A From: MAILER-DAEMON alone does not make a notice: cleanup writes that From: into any
/// message with the null sender that lacks one.
pub fn is_notice(block: &HeaderBlock) -> bool {
    let lower = |h: &crate::message::Header| h.value().to_ascii_lowercase();
    block.get_all("Auto-Submitted").any(|h| lower(h).starts_with("auto-replied"))
        || (block.get_all("From").any(|h| lower(h).contains("mailer-daemon"))
            && block.get_all("Content-Type").any(|h| lower(h).starts_with("multipart/report")))
}

/// Where double bounces go: Postfix's 2bounce_notice_recipient default, qualified.
pub fn postmaster_address(cfg: &Config) -> String {
    format!("postmaster@{}", cfg.myorigin())
}

/// Send one non-delivery notice about the recipients at `indices` of message `id` in `queue`.
///
/// Call this only once the message's queue file records those recipients as bounced: the
/// notice is made from that file (envelope and content), and a crash between the two steps
/// then loses at worst the notice, never mail. Returns the notice's queue ID, or None when
/// nobody is to be told.
pub fn notify_failures(
    cfg: &Config,
    store: &QueueStore,
    queue: QueueName,
    id: &str,
    indices: &[usize],
) -> Result<Option<String>, QueueError> {
    let (entry, mut reader) = store.open_message(queue, id)?;
    let env = &entry.envelope;
    let recipients: Vec<&Recipient> = indices
        .iter()
        .filter_map(|&i| env.recipients.get(i))
        .filter(|r| r.state == RcptState::Bounced && wants_failure_notice(r))
        .collect();
    if recipients.is_empty() {
        return Ok(None);
    }

    // What goes back: the whole message when it fits in bounce_size_limit and the sender did
    // not ask for headers only; otherwise the header, read no further than that limit.
    let limit = cfg.bounce_size_limit();
    let headers_only = env.ret == Some(crate::queue::Ret::Hdrs) || entry.size > limit;
    let (content, block) = if headers_only {
        let limits = HeaderLimits {
            header_size_limit: cfg.header_size_limit().min(limit),
            line_length_limit: cfg.line_length_limit(),
        };
        let (block, _) = read_header_block(&mut BufReader::new(reader), &limits).map_err(|e| match e {
            crate::message::HeaderError::Io(e) => QueueError::Io(e),
        })?;
        let mut bytes = Vec::with_capacity(block.len_bytes());
        block.write_to(&mut bytes)?;
        (bytes, block)
    } else {
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size).unwrap_or(0));
        (&mut reader).take(limit).read_to_end(&mut bytes)?;
        let block = parse_header_block(&bytes);
        (bytes, block)
    };
    let returned = if headers_only {
        Returned::Headers { bytes: &content, too_big: env.ret != Some(crate::queue::Ret::Hdrs) }
    } else {
        Returned::Message(&content)
    };

    let postmaster = env.sender.is_empty();
    if postmaster && is_notice(&block) {
        mail_warning!(
            SERVICE,
            "{id}: undeliverable delivery notice from <>: dropped without a notice about it (mail loop guard)"
        );
        return Ok(None);
    }
    let to = if postmaster { postmaster_address(cfg) } else { env.sender.clone() };

    // No message_size_limit: the notice is bounded by bounce_size_limit plus its own text,
    // and refusing it would leave the sender untold.
    let mut writer = store.create(QueueName::Incoming, 0)?;
    let notice_id = writer.id().to_string();
    let report = Report {
        myhostname: cfg.myhostname(),
        mail_name: cfg.mail_name(),
        queue_id: id,
        envelope: env,
        recipients,
        to: &to,
        postmaster,
        returned,
        notice_id: &notice_id,
        now: Local::now(),
    };
    writer.write_content(&dsn::compose(&report))?;
    // Made by this process, not submitted by a user or a client: a local origin under the
    // daemon's own uid says exactly that (and asks for no special trust, as uid 0 might).
    let origin = Origin::Local { uid: nix::unistd::geteuid().as_raw() };
    let envelope = Envelope::new("", vec![Recipient::new(to)], origin, writer.arrival_us());
    let new_id = store.commit(writer, &envelope)?;
    let whom = if postmaster { "postmaster" } else { "sender" };
    mail_info!(SERVICE, "{id}: {whom} non-delivery notification: {new_id}");
    Ok(Some(new_id))
}

/// As [`notify_failures`], logging a failure to queue the notice as a warning.
pub fn notify_or_warn(cfg: &Config, store: &QueueStore, queue: QueueName, id: &str, indices: &[usize]) {
    if let Err(e) = notify_failures(cfg, store, queue, id, indices) {
        mail_warning!(SERVICE, "{id}: cannot queue the non-delivery notification: {e}");
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::queue::Ret;

    fn setup(extra: &str) -> (tempfile::TempDir, QueueStore, Config) {
        crate::queue::testing::scratch(&format!("myorigin = \"example.com\"\n{extra}"))
    }

    fn failed(address: &str, notify: &[Notify]) -> Recipient {
        let mut r = Recipient::new(address);
        r.state = RcptState::Bounced;
        r.dsn = Some("5.1.1".into());
        r.reason = Some(format!("no such user {address}"));
        r.notify = notify.to_vec();
        r
    }

    /// Queue a message in deferred with `recipients`; returns its ID.
    fn queue(store: &QueueStore, sender: &str, recipients: Vec<Recipient>, ret: Option<Ret>, content: &[u8]) -> String {
        let mut writer = store.create(QueueName::Incoming, 0).unwrap();
        writer.write_content(content).unwrap();
        let mut envelope = Envelope::new(sender, recipients, Origin::Local { uid: 1000 }, 0);
        envelope.ret = ret;
        let id = store.commit(writer, &envelope).unwrap();
        store.move_to(&id, QueueName::Incoming, QueueName::Deferred).unwrap();
        id
    }

    fn notice(store: &QueueStore, id: &str) -> (Envelope, String) {
        let (entry, mut reader) = store.open_message(QueueName::Incoming, id).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        (entry.envelope, text)
    }

    const MESSAGE: &[u8] = b"Subject: lunch\nFrom: tom@example.com\n\nSee you at noon.\n";

    #[test]
    fn full_message_returned_to_the_sender() {
        let (_dir, store, cfg) = setup("");
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (env, text) = notice(&store, &new);
        assert_eq!(env.sender, "");
        assert_eq!(env.recipients.len(), 1);
        assert_eq!(env.recipients[0].address, "tom@example.com");
        assert!(text.contains("\nTo: tom@example.com\n"), "{text}");
        assert!(text.contains("\nSubject: Undelivered Mail Returned to Sender\n"), "{text}");
        assert!(text.contains(&format!("\nX-Tidemail-Queue-ID: {id}\n")), "{text}");
        assert!(text.contains("\nFinal-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n"));
        assert!(
            text.contains(
                "Content-Type: message/rfc822\n\nSubject: lunch\nFrom: tom@example.com\n\nSee you at noon.\n"
            )
        );
        assert!(!text.contains("Original-Envelope-Id"), "{text}");
    }

    #[test]
    fn ret_hdrs_returns_the_header_only() {
        let (_dir, store, cfg) = setup("");
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], Some(Ret::Hdrs), MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (_, text) = notice(&store, &new);
        assert!(text.contains("Content-Type: text/rfc822-headers\n\nSubject: lunch\nFrom: tom@example.com\n\n--"));
        assert!(!text.contains("See you at noon."), "{text}");
    }

    #[test]
    fn larger_than_bounce_size_limit_returns_the_header_only() {
        let (_dir, store, cfg) = setup("bounce_size_limit = 100\n");
        let mut big = MESSAGE.to_vec();
        big.extend(std::iter::repeat_n(b"0123456789\n".as_slice(), 20).flatten());
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, &big);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (_, text) = notice(&store, &new);
        assert!(text.contains("Content-Type: text/rfc822-headers\n\nSubject: lunch\n"), "{text}");
        assert!(text.contains("too large to return in full"), "{text}");
        assert!(!text.contains("See you at noon.") && !text.contains("0123456789"), "{text}");

        // At the limit exactly, the whole message goes back.
        let (_dir, store, cfg) = setup(&format!("bounce_size_limit = {}\n", MESSAGE.len()));
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        assert!(notice(&store, &new).1.contains("message/rfc822\n\nSubject: lunch\n"));
    }

    #[test]
    fn notify_decides_who_is_reported() {
        let (_dir, store, cfg) = setup("");
        let recipients = vec![
            failed("never@example.com", &[Notify::Never]),
            failed("success@example.com", &[Notify::Success]),
            failed("failure@example.com", &[Notify::Failure, Notify::Delay]),
            failed("default@example.com", &[]),
        ];
        let id = queue(&store, "tom@example.com", recipients, None, MESSAGE);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0, 1]).unwrap(), None);
        assert!(store.list(QueueName::Incoming).unwrap().is_empty());
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0, 1, 2, 3]).unwrap().unwrap();
        let (_, text) = notice(&store, &new);
        assert!(text.contains("Final-Recipient: rfc822; failure@example.com\n"), "{text}");
        assert!(text.contains("Final-Recipient: rfc822; default@example.com\n"), "{text}");
        assert!(!text.contains("never@") && !text.contains("success@"), "{text}");
        assert_eq!(text.matches("Final-Recipient:").count(), 2);
    }

    #[test]
    fn null_sender_goes_to_the_postmaster() {
        let (_dir, store, cfg) = setup("");
        let id = queue(&store, "", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (env, text) = notice(&store, &new);
        assert_eq!((env.sender.as_str(), env.recipients[0].address.as_str()), ("", "postmaster@example.com"));
        assert!(text.contains("\nTo: postmaster@example.com\n"), "{text}");
        assert!(text.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"), "{text}");
        assert!(text.contains("\nX-Tidemail-Sender: rfc822; <>\n"), "{text}");
    }

    #[test]
    fn no_notice_about_a_failed_notice() {
        let (_dir, store, cfg) = setup("");
        // A notice we made, returned undeliverable.
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let first = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (_, text) = notice(&store, &first);
        let again = queue(&store, "", vec![failed("tom@example.com", &[])], None, text.as_bytes());
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &again, &[0]).unwrap(), None);
        // Another system's notice, without Auto-Submitted:.
        let other = b"From: Mail Delivery Subsystem <MAILER-DAEMON@elsewhere.example>\n\
                      Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b--\n";
        let id = queue(&store, "", vec![failed("tom@example.com", &[])], None, other);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap(), None);
        assert_eq!(store.list(QueueName::Incoming).unwrap(), vec![first]);
        // Any other mail with the null sender (From: MAILER-DAEMON, as cleanup adds) is reported.
        let plain = b"From: MAILER-DAEMON\nSubject: cron output\n\nbody\n";
        let id = queue(&store, "", vec![failed("tom@example.com", &[])], None, plain);
        assert!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().is_some());
    }

    #[test]
    fn only_bounced_recipients_are_reported() {
        let (_dir, store, cfg) = setup("");
        let mut waiting = failed("later@example.com", &[]);
        waiting.state = RcptState::Pending;
        let id = queue(&store, "tom@example.com", vec![waiting], None, MESSAGE);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0, 7]).unwrap(), None);
    }
}
