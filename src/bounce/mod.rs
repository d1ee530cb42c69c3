//! bounce: delivery notices (Postfix's bounce(8)). The queue manager records a recipient's
//! outcome durably and then asks for one notice per message: [`notify_failures`] for
//! recipients that failed for good, [`notify_delay`] for recipients still being retried after
//! delay_warning_time. Each is an RFC 3464 report (see [`dsn`]) from `MAILER-DAEMON`, with the
//! null envelope sender, queued in incoming like any other mail.
//!
//! Who is told (Postfix's rules):
//! - the envelope sender, about each recipient whose DSN NOTIFY (RFC 3461) asks for that kind
//!   of notice: no NOTIFY means failures and delays;
//! - with `bounce` (or `delay`) in notify_classes, also bounce_notice_recipient (or
//!   delay_notice_recipient) with a copy carrying the header only;
//! - for a message with the null sender, the sender cannot be told. A failure goes to the
//!   postmaster (Postfix's double bounce) only when notify_classes has `2bounce` or `bounce`,
//!   and is dropped otherwise; a delay is never reported;
//! - nobody when the failed message is itself one of our postmaster notices: reporting it
//!   again could go on forever, so it is logged with `warning:` and dropped.

pub mod dsn;

use std::io::{BufReader, Read};

use chrono::{DateTime, Local};

use self::dsn::{Audience, Kind, Report, Returned};
use crate::config::Config;
use crate::message::{HeaderBlock, HeaderLimits, parse_header_block, read_header_block};
use crate::queue::{
    Envelope, Notify, Origin, QueueEntry, QueueError, QueueName, QueueStore, RcptState, Recipient, Ret,
};
use crate::{mail_info, mail_warning};

pub const SERVICE: &str = "bounce";

/// Whether a recipient's DSN NOTIFY (RFC 3461) lets the sender hear of its failure: always when
/// NOTIFY was not given; otherwise only with FAILURE and without NEVER.
pub fn wants_failure_notice(rcpt: &Recipient) -> bool {
    rcpt.notify.is_empty() || (rcpt.notify.contains(&Notify::Failure) && !rcpt.notify.contains(&Notify::Never))
}

/// Whether a recipient's DSN NOTIFY lets the sender hear that it is delayed: when NOTIFY was
/// not given (Postfix warns by default once delay_warning_time is set), or when it has DELAY.
pub fn wants_delay_notice(rcpt: &Recipient) -> bool {
    rcpt.notify.is_empty() || (rcpt.notify.contains(&Notify::Delay) && !rcpt.notify.contains(&Notify::Never))
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

/// Whether a header block is that of a notice meant for the postmaster (a double bounce or a
/// postmaster copy). Postfix sends these from double_bounce_sender and drops them when they
/// fail; ours have the null sender like every notice, so their subject tells them apart.
fn is_postmaster_notice(block: &HeaderBlock) -> bool {
    is_notice(block)
        && block.get_all("Subject").any(|h| {
            let subject = h.value();
            subject == dsn::POSTMASTER_SUBJECT || subject == dsn::POSTMASTER_DELAY_SUBJECT
        })
}

/// Where double bounces go: Postfix's 2bounce_notice_recipient default, qualified.
pub fn postmaster_address(cfg: &Config) -> String {
    qualify(cfg, "postmaster")
}

/// A bare name (`postmaster`) gets `@$myorigin`, as cleanup would give it.
fn qualify(cfg: &Config, address: &str) -> String {
    if address.contains('@') { address.to_string() } else { format!("{address}@{}", cfg.myorigin()) }
}

/// Whether notify_classes names `class` (Postfix matches the names case-insensitively).
fn notify_class(cfg: &Config, class: &str) -> bool {
    cfg.notify_classes().iter().any(|c| c.eq_ignore_ascii_case(class))
}

/// Send one non-delivery notice about the recipients at `indices` of message `id` in `queue`,
/// and, with `bounce` in notify_classes, a copy for bounce_notice_recipient.
///
/// Call this only once the message's queue file records those recipients as bounced: the
/// notice is made from that file (envelope and content), and a crash between the two steps
/// then loses at worst the notice, never mail. Recipients bounced because the message expired
/// (maximal_queue_lifetime, maximal_hold_lifetime) may keep their last 4.x.x dsn and reason:
/// they are reported as failed with that status, as Postfix does.
///
/// Returns the queue ID of the notice to the sender (or to the postmaster, for a message with
/// the null sender), or None when nobody is to be told. A postmaster copy that cannot be
/// queued is logged, not returned as an error: the sender has been told.
pub fn notify_failures(
    cfg: &Config,
    store: &QueueStore,
    queue: QueueName,
    id: &str,
    indices: &[usize],
) -> Result<Option<String>, QueueError> {
    let (entry, reader) = store.open_message(queue, id)?;
    let env = &entry.envelope;
    let recipients = chosen(env, indices, |r| r.state == RcptState::Bounced && wants_failure_notice(r));
    if recipients.is_empty() {
        return Ok(None);
    }

    // What goes back: the whole message when it fits in bounce_size_limit and the sender did
    // not ask for headers only; otherwise the header, read no further than that limit.
    let too_big = entry.size > cfg.bounce_size_limit();
    let headers_only = env.ret == Some(Ret::Hdrs) || too_big;
    let (content, block) = read_original(cfg, &entry, reader, headers_only)?;
    let returned = if headers_only {
        Returned::Headers { bytes: &content, too_big: env.ret != Some(Ret::Hdrs) }
    } else {
        Returned::Message(&content)
    };

    let notice = Notice { cfg, store, queue_id: id, envelope: env, recipients: &recipients, kind: Kind::Failure };
    if env.sender.is_empty() {
        if is_postmaster_notice(&block) {
            mail_warning!(SERVICE, "{id}: undeliverable postmaster notification discarded");
            return Ok(None);
        }
        // Postfix: "bounce" implies "2bounce"; with neither, a failed bounce is dropped.
        if !notify_class(cfg, "2bounce") && !notify_class(cfg, "bounce") {
            mail_info!(SERVICE, "{id}: undeliverable mail from <> discarded: 2bounce is not in notify_classes");
            return Ok(None);
        }
        // Postfix's 2bounce_notice_recipient; tidemail has no such parameter yet.
        let new_id = notice.queue(Audience::DoubleBounce, &postmaster_address(cfg), returned)?;
        mail_info!(SERVICE, "{id}: postmaster non-delivery notification: {new_id}");
        return Ok(Some(new_id));
    }

    let new_id = notice.queue(Audience::Sender, &env.sender, returned)?;
    mail_info!(SERVICE, "{id}: sender non-delivery notification: {new_id}");
    if notify_class(cfg, "bounce") {
        let headers = header_bytes(&block)?;
        let copy = Returned::Headers { bytes: &headers, too_big: false };
        notice.copy_to_postmaster(cfg.bounce_notice_recipient(), copy, "non-delivery");
    }
    Ok(Some(new_id))
}

/// As [`notify_failures`], logging a failure to queue the notice as a warning.
pub fn notify_or_warn(cfg: &Config, store: &QueueStore, queue: QueueName, id: &str, indices: &[usize]) {
    if let Err(e) = notify_failures(cfg, store, queue, id, indices) {
        mail_warning!(SERVICE, "{id}: cannot queue the non-delivery notification: {e}");
    }
}

/// Warn the sender that the recipients at `indices` of message `id` in `queue` are delayed and
/// still being retried ("Delayed Mail (still being retried)", header only), and, with `delay`
/// in notify_classes, send a copy to delay_notice_recipient.
///
/// The caller decides when: once delay_warning_time is set and reached, once per message. The
/// recipients must still be pending, each with the 4.x.x dsn and the reason of its last
/// attempt. Recipients whose NOTIFY does not ask for delays are left out; a message with the
/// null sender gets no warning at all.
///
/// `retry_until` is when the queue manager will give up on the message (its expiry under
/// maximal_queue_lifetime or maximal_hold_lifetime, whichever comes first), if it can tell; it
/// becomes each recipient's `Will-Retry-Until:` and is named in the text. None leaves both out.
///
/// Returns the queue ID of the warning to the sender, or None when nobody is to be told.
pub fn notify_delay(
    cfg: &Config,
    store: &QueueStore,
    queue: QueueName,
    id: &str,
    indices: &[usize],
    retry_until: Option<DateTime<Local>>,
) -> Result<Option<String>, QueueError> {
    let (entry, reader) = store.open_message(queue, id)?;
    let env = &entry.envelope;
    // No sender to warn, and a delay is not worth a postmaster's attention on its own.
    if env.sender.is_empty() {
        return Ok(None);
    }
    let recipients = chosen(env, indices, |r| r.state == RcptState::Pending && wants_delay_notice(r));
    if recipients.is_empty() {
        return Ok(None);
    }

    // A warning never carries the message: it is still here and will be delivered.
    let (headers, _) = read_original(cfg, &entry, reader, true)?;
    let returned = Returned::Headers { bytes: &headers, too_big: false };
    let notice =
        Notice { cfg, store, queue_id: id, envelope: env, recipients: &recipients, kind: Kind::Delay { retry_until } };
    let new_id = notice.queue(Audience::Sender, &env.sender, returned)?;
    mail_info!(SERVICE, "{id}: sender delay notification: {new_id}");
    if notify_class(cfg, "delay") {
        notice.copy_to_postmaster(cfg.delay_notice_recipient(), returned, "delay");
    }
    Ok(Some(new_id))
}

/// As [`notify_delay`], logging a failure to queue the warning as a warning.
pub fn notify_delay_or_warn(
    cfg: &Config,
    store: &QueueStore,
    queue: QueueName,
    id: &str,
    indices: &[usize],
    retry_until: Option<DateTime<Local>>,
) {
    if let Err(e) = notify_delay(cfg, store, queue, id, indices, retry_until) {
        mail_warning!(SERVICE, "{id}: cannot queue the delay notification: {e}");
    }
}

/// The recipients at `indices` (in that order, unknown indices skipped) that `keep` accepts.
fn chosen<'a>(env: &'a Envelope, indices: &[usize], keep: impl Fn(&Recipient) -> bool) -> Vec<&'a Recipient> {
    indices.iter().filter_map(|&i| env.recipients.get(i)).filter(|r| keep(r)).collect()
}

/// The original message's bytes for a notice, and its parsed header: the whole message up to
/// bounce_size_limit, or with `headers_only` the header block alone (read no further than
/// header_size_limit and bounce_size_limit, without the blank line after it).
fn read_original(
    cfg: &Config,
    entry: &QueueEntry,
    reader: impl Read,
    headers_only: bool,
) -> Result<(Vec<u8>, HeaderBlock), QueueError> {
    let limit = cfg.bounce_size_limit();
    if headers_only {
        let limits = HeaderLimits {
            header_size_limit: cfg.header_size_limit().min(limit),
            line_length_limit: cfg.line_length_limit(),
        };
        let (block, _) = read_header_block(&mut BufReader::new(reader), &limits).map_err(|e| match e {
            crate::message::HeaderError::Io(e) => QueueError::Io(e),
        })?;
        Ok((header_bytes(&block)?, block))
    } else {
        let mut bytes = Vec::with_capacity(usize::try_from(entry.size.min(limit)).unwrap_or(0));
        reader.take(limit).read_to_end(&mut bytes)?;
        let block = parse_header_block(&bytes);
        Ok((bytes, block))
    }
}

fn header_bytes(block: &HeaderBlock) -> Result<Vec<u8>, QueueError> {
    let mut bytes = Vec::with_capacity(block.len_bytes());
    block.write_to(&mut bytes)?;
    Ok(bytes)
}

/// What the notices about one message share; each call to `queue` makes one of them.
struct Notice<'a> {
    cfg: &'a Config,
    store: &'a QueueStore,
    queue_id: &'a str,
    envelope: &'a Envelope,
    recipients: &'a [&'a Recipient],
    kind: Kind,
}

impl Notice<'_> {
    /// Compose the notice for `audience` and queue it to `to`; returns its queue ID.
    fn queue(&self, audience: Audience, to: &str, returned: Returned<'_>) -> Result<String, QueueError> {
        // No message_size_limit: the notice is bounded by bounce_size_limit plus its own text,
        // and refusing it would leave the reader untold.
        let mut writer = self.store.create(QueueName::Incoming, 0)?;
        let notice_id = writer.id().to_string();
        let report = Report {
            kind: self.kind,
            audience,
            myhostname: self.cfg.myhostname(),
            mail_name: self.cfg.mail_name(),
            queue_id: self.queue_id,
            envelope: self.envelope,
            recipients: self.recipients.to_vec(),
            to,
            returned,
            notice_id: &notice_id,
            now: Local::now(),
        };
        writer.write_content(&dsn::compose(&report))?;
        // Made by this process, not submitted by a user or a client: a local origin under the
        // daemon's own uid says exactly that (and asks for no special trust, as uid 0 might).
        let origin = Origin::Local { uid: nix::unistd::geteuid().as_raw() };
        let envelope = Envelope::new("", vec![Recipient::new(to)], origin, writer.arrival_us());
        self.store.commit(writer, &envelope)
    }

    /// The postmaster's copy (notify_classes): header only. Not worth failing for, as in
    /// Postfix: the sender has been told already, so a failure here is only logged.
    fn copy_to_postmaster(&self, recipient: &str, returned: Returned<'_>, what: &str) {
        let id = self.queue_id;
        match self.queue(Audience::PostmasterCopy, &qualify(self.cfg, recipient), returned) {
            Ok(new_id) => mail_info!(SERVICE, "{id}: postmaster {what} notification: {new_id}"),
            Err(e) => mail_warning!(SERVICE, "{id}: cannot queue the postmaster {what} notification: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

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
    fn null_sender_goes_to_the_postmaster_only_with_2bounce() {
        // Without 2bounce (Postfix's default, "resource, software"): a failed bounce is dropped.
        let (_dir, store, cfg) = setup("notify_classes = \"resource, software\"\n");
        let id = queue(&store, "", vec![failed("gone@example.com", &[])], None, MESSAGE);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap(), None);
        assert!(store.list(QueueName::Incoming).unwrap().is_empty());

        // "2bounce" (in tidemail's default), and "bounce" which implies it: the postmaster gets
        // the whole message.
        for classes in ["2bounce", "bounce", "resource, software, 2bounce"] {
            let (_dir, store, cfg) = setup(&format!("notify_classes = \"{classes}\"\n"));
            let id = queue(&store, "", vec![failed("gone@example.com", &[])], None, MESSAGE);
            let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
            let (env, text) = notice(&store, &new);
            assert_eq!((env.sender.as_str(), env.recipients[0].address.as_str()), ("", "postmaster@example.com"));
            assert!(text.contains("\nTo: postmaster@example.com\n"), "{text}");
            assert!(text.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"), "{text}");
            assert!(text.contains("\nX-Tidemail-Sender: rfc822; <>\n"), "{text}");
            assert!(text.contains("See you at noon."), "{text}");
            // No copy on top of the double bounce.
            assert_eq!(store.list(QueueName::Incoming).unwrap(), vec![new]);
        }
    }

    #[test]
    fn failed_notices() {
        let (_dir, store, cfg) = setup("notify_classes = \"2bounce\"\n");
        // Our notice to a sender, returned undeliverable: a double bounce, as in Postfix.
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let first = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let (_, text) = notice(&store, &first);
        let bounced = queue(&store, "", vec![failed("tom@example.com", &[])], None, text.as_bytes());
        let double = notify_failures(&cfg, &store, QueueName::Deferred, &bounced, &[0]).unwrap().unwrap();
        let (env, text) = notice(&store, &double);
        assert_eq!(env.recipients[0].address, "postmaster@example.com");
        // The double bounce returned in its turn: dropped, never reported again.
        let again = queue(&store, "", vec![failed("postmaster@example.com", &[])], None, text.as_bytes());
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &again, &[0]).unwrap(), None);
        // Likewise a postmaster's delay copy.
        let copy = b"Subject: Postmaster Warning: Delayed Mail\nAuto-Submitted: auto-replied\n\nx\n";
        let again = queue(&store, "", vec![failed("postmaster@example.com", &[])], None, copy);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &again, &[0]).unwrap(), None);
        assert_eq!(store.list(QueueName::Incoming).unwrap().len(), 2);
        // Another system's notice, or any other mail with the null sender, is a double bounce.
        let other = b"From: Mail Delivery Subsystem <MAILER-DAEMON@elsewhere.example>\n\
                      Content-Type: multipart/report; report-type=delivery-status; boundary=b\n\n--b--\n";
        let id = queue(&store, "", vec![failed("tom@example.com", &[])], None, other);
        assert!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().is_some());
        let plain = b"From: MAILER-DAEMON\nSubject: cron output\n\nbody\n";
        let id = queue(&store, "", vec![failed("tom@example.com", &[])], None, plain);
        assert!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().is_some());
    }

    /// The notices in incoming, by their one recipient.
    fn notices_to(store: &QueueStore) -> Vec<(String, String)> {
        let mut all: Vec<(String, String)> = store
            .list(QueueName::Incoming)
            .unwrap()
            .iter()
            .map(|id| {
                let (env, text) = notice(store, id);
                (env.recipients[0].address.clone(), text)
            })
            .collect();
        all.sort();
        all
    }

    #[test]
    fn postmaster_copy_of_a_bounce_with_the_bounce_class() {
        let (_dir, store, cfg) = setup("");
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        assert_eq!(notices_to(&store).len(), 1);

        let (_dir, store, cfg) = setup("notify_classes = \"bounce, resource\"\nbounce_notice_recipient = \"ops\"\n");
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        let all = notices_to(&store);
        assert_eq!(all.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), ["ops@example.com", "tom@example.com"]);
        assert!(notice(&store, &new).1.contains("See you at noon."));
        let copy = &all[0].1;
        assert!(copy.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"), "{copy}");
        assert!(copy.contains("\nTo: ops@example.com\n"), "{copy}");
        assert!(copy.contains("Final-Recipient: rfc822; gone@example.com\nAction: failed\nStatus: 5.1.1\n"), "{copy}");
        assert!(
            copy.contains("Content-Type: text/rfc822-headers\n\nSubject: lunch\nFrom: tom@example.com\n\n--"),
            "{copy}"
        );
        assert!(!copy.contains("See you at noon."), "{copy}");

        // Nobody to tell, no copy either.
        let id = queue(&store, "tom@example.com", vec![failed("never@example.com", &[Notify::Never])], None, MESSAGE);
        assert_eq!(notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap(), None);
        assert_eq!(notices_to(&store).len(), 2);
    }

    #[test]
    fn expired_recipients_are_reported_failed_with_their_last_status() {
        let (_dir, store, cfg) = setup("");
        let mut expired = failed("slow@example.net", &[]);
        expired.dsn = Some("4.4.1".into());
        expired.reason = Some("connect to mx.example.net[192.0.2.7]:25: Connection timed out".into());
        let mut greylisted = failed("grey@example.net", &[]);
        greylisted.dsn = Some("4.7.1".into());
        greylisted.reason =
            Some("host mx.example.net[192.0.2.7] said: 450 4.7.1 Try again later (in reply to RCPT TO command)".into());
        let id = queue(&store, "tom@example.com", vec![expired, greylisted], None, MESSAGE);
        let new = notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0, 1]).unwrap().unwrap();
        let (_, text) = notice(&store, &new);
        assert!(text.contains("\nSubject: Undelivered Mail Returned to Sender\n"), "{text}");
        assert!(
            text.contains(
                "Final-Recipient: rfc822; slow@example.net\nAction: failed\nStatus: 4.4.1\n\
                 Diagnostic-Code: X-Tidemail; connect to mx.example.net[192.0.2.7]:25: Connection timed out\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Final-Recipient: rfc822; grey@example.net\nAction: failed\nStatus: 4.7.1\n\
                 Remote-MTA: dns; mx.example.net\nDiagnostic-Code: smtp; 450 4.7.1 Try again later\n"
            ),
            "{text}"
        );
        assert!(text.contains("<slow@example.net>: connect to mx.example.net[192.0.2.7]:25: Connection timed out\n"));
        assert!(text.contains("<grey@example.net>: host mx.example.net[192.0.2.7] said: 450 4.7.1 Try again later"));
        assert!(!text.contains("Action: delayed") && !text.contains("Will-Retry-Until"), "{text}");
    }

    fn waiting(address: &str, notify: &[Notify]) -> Recipient {
        let mut r = Recipient::new(address);
        r.dsn = Some("4.4.1".into());
        r.reason = Some(format!("connect to {address}: Connection refused"));
        r.notify = notify.to_vec();
        r
    }

    #[test]
    fn delay_notice_to_the_sender() {
        let (_dir, store, cfg) = setup("");
        let recipients = vec![
            waiting("default@example.com", &[]),
            waiting("never@example.com", &[Notify::Never]),
            waiting("failure@example.com", &[Notify::Failure]),
            waiting("success@example.com", &[Notify::Success]),
            waiting("delay@example.com", &[Notify::Delay]),
            waiting("both@example.com", &[Notify::Failure, Notify::Delay]),
            failed("bounced@example.com", &[]),
        ];
        let id = queue(&store, "tom@example.com", recipients, None, MESSAGE);
        let until = Local::now() + chrono::TimeDelta::days(4);
        let new = notify_delay(&cfg, &store, QueueName::Deferred, &id, &[0, 1, 2, 3, 4, 5, 6, 9], Some(until))
            .unwrap()
            .unwrap();
        let (env, text) = notice(&store, &new);
        assert_eq!((env.sender.as_str(), env.recipients.len()), ("", 1));
        assert_eq!(env.recipients[0].address, "tom@example.com");
        assert!(text.contains("\nFrom: MAILER-DAEMON@mail.example.com (Mail Delivery System)\n"), "{text}");
        assert!(text.contains("\nTo: tom@example.com\n"), "{text}");
        assert!(text.contains("\nSubject: Delayed Mail (still being retried)\n"), "{text}");
        assert!(text.contains("This is a warning only: there is no need to send your message again."), "{text}");
        assert!(text.contains("still\nin the mail queue"), "{text}");
        for kept in ["default", "delay", "both"] {
            assert!(
                text.contains(&format!(
                    "Final-Recipient: rfc822; {kept}@example.com\nAction: delayed\nStatus: 4.4.1\n\
                     Diagnostic-Code: X-Tidemail; connect to {kept}@example.com: Connection refused\n\
                     Will-Retry-Until: {}\n",
                    crate::message::date_header_value(until)
                )),
                "{text}"
            );
        }
        assert_eq!(text.matches("Final-Recipient:").count(), 3, "{text}");
        assert!(!text.contains("Action: failed") && !text.contains("bounced@"), "{text}");
        // The header only, even though the whole message would fit.
        assert!(
            text.contains("Content-Type: text/rfc822-headers\n\nSubject: lunch\nFrom: tom@example.com\n\n--"),
            "{text}"
        );
        assert!(!text.contains("See you at noon."), "{text}");
        // No copy by default.
        assert_eq!(store.list(QueueName::Incoming).unwrap(), vec![new]);

        // Nobody left who wants to hear: no notice.
        assert_eq!(notify_delay(&cfg, &store, QueueName::Deferred, &id, &[1, 2, 3, 6], None).unwrap(), None);
        assert_eq!(store.list(QueueName::Incoming).unwrap().len(), 1);
    }

    #[test]
    fn no_delay_notice_for_the_null_sender() {
        let (_dir, store, cfg) = setup("notify_classes = \"delay, 2bounce\"\n");
        let id = queue(&store, "", vec![waiting("slow@example.com", &[])], None, MESSAGE);
        assert_eq!(notify_delay(&cfg, &store, QueueName::Deferred, &id, &[0], None).unwrap(), None);
        assert!(store.list(QueueName::Incoming).unwrap().is_empty());
    }

    #[test]
    fn postmaster_copy_of_a_delay_with_the_delay_class() {
        let (_dir, store, cfg) = setup("notify_classes = \"bounce\"\n");
        let id = queue(&store, "tom@example.com", vec![waiting("slow@example.com", &[])], None, MESSAGE);
        notify_delay(&cfg, &store, QueueName::Deferred, &id, &[0], None).unwrap().unwrap();
        assert_eq!(notices_to(&store).len(), 1);

        let (_dir, store, cfg) = setup("notify_classes = \"delay\"\ndelay_notice_recipient = \"ops@example.org\"\n");
        let id = queue(&store, "tom@example.com", vec![waiting("slow@example.com", &[])], None, MESSAGE);
        notify_delay(&cfg, &store, QueueName::Deferred, &id, &[0], None).unwrap().unwrap();
        let all = notices_to(&store);
        assert_eq!(all.iter().map(|(to, _)| to.as_str()).collect::<Vec<_>>(), ["ops@example.org", "tom@example.com"]);
        let copy = &all[0].1;
        assert!(copy.contains("\nSubject: Postmaster Warning: Delayed Mail\n"), "{copy}");
        assert!(copy.contains("Final-Recipient: rfc822; slow@example.com\nAction: delayed\nStatus: 4.4.1\n"), "{copy}");
        assert!(copy.contains("Content-Type: text/rfc822-headers\n\nSubject: lunch\n"), "{copy}");
        assert!(!copy.contains("See you at noon."), "{copy}");

        // A failure is not a delay: no copy of a non-delivery notice with only "delay".
        let id = queue(&store, "tom@example.com", vec![failed("gone@example.com", &[])], None, MESSAGE);
        notify_failures(&cfg, &store, QueueName::Deferred, &id, &[0]).unwrap().unwrap();
        assert_eq!(notices_to(&store).len(), 3);
    }

    /// A field line `Name: value` (RFC 5322 field name), or a folded continuation.
    fn is_field(line: &str) -> bool {
        line.starts_with([' ', '\t'])
            || line
                .split_once(':')
                .is_some_and(|(name, _)| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':'))
    }

    #[test]
    fn delay_report_is_a_well_formed_multipart_report() {
        let (_dir, store, cfg) = setup("");
        let recipients =
            vec![waiting("a@example.com", &[]), waiting("b@example.com", &[]), waiting("c@example.com", &[])];
        let id = queue(&store, "tom@example.com", recipients, None, MESSAGE);
        let new =
            notify_delay(&cfg, &store, QueueName::Deferred, &id, &[0, 1, 2], Some(Local::now())).unwrap().unwrap();
        let (_, text) = notice(&store, &new);

        let (head, body) = text.split_once("\n\n").unwrap();
        let head = parse_header_block(head.as_bytes());
        let content_type = head.get("Content-Type").unwrap().value();
        assert!(content_type.starts_with("multipart/report; report-type=delivery-status;"), "{content_type}");
        let boundary = content_type.split_once("boundary=\"").unwrap().1.trim_end_matches('"');
        assert_eq!(head.get("MIME-Version").unwrap().value(), "1.0");

        // Preamble, three parts, the closing delimiter last, nothing after it.
        let closing = format!("\n--{boundary}--\n");
        assert!(body.ends_with(&closing), "{body}");
        let body = &body[..body.len() - closing.len()];
        let delimiter = format!("--{boundary}\n");
        let mut pieces = body.split(&delimiter);
        assert_eq!(pieces.next(), Some("This is a MIME-encapsulated message.\n\n"));
        let parts: Vec<(HeaderBlock, &str)> = pieces
            .map(|part| {
                let (h, b) = part.split_once("\n\n").unwrap();
                (parse_header_block(format!("{h}\n").as_bytes()), b)
            })
            .collect();
        let types: Vec<String> = parts.iter().map(|(h, _)| h.get("Content-Type").unwrap().value()).collect();
        assert_eq!(types, ["text/plain; charset=us-ascii", "message/delivery-status", "text/rfc822-headers"]);

        // RFC 3464: per-message fields, then one block of per-recipient fields per recipient,
        // each introduced by a blank line; no empty blocks, every line a field.
        let status = parts[1].1;
        let status = status.strip_suffix('\n').unwrap();
        let blocks: Vec<&str> = status.trim_end_matches('\n').split("\n\n").collect();
        assert_eq!(blocks.len(), 4, "{status}");
        for block in &blocks {
            assert!(!block.is_empty() && block.lines().all(is_field), "{block:?}");
        }
        assert!(blocks[0].starts_with("Reporting-MTA: dns; mail.example.com\n"), "{}", blocks[0]);
        assert!(blocks[0].contains("\nArrival-Date: ") && !blocks[0].contains("Final-Recipient"));
        for (block, who) in blocks[1..].iter().zip(["a", "b", "c"]) {
            let fields = parse_header_block(format!("{block}\n").as_bytes());
            assert_eq!(fields.get("Final-Recipient").unwrap().value(), format!("rfc822; {who}@example.com"));
            assert_eq!(fields.get("Action").unwrap().value(), "delayed");
            assert_eq!(fields.get("Status").unwrap().value(), "4.4.1");
            assert!(fields.has("Will-Retry-Until") && fields.has("Diagnostic-Code"), "{block}");
            assert_eq!(fields.headers.len(), 5, "{block}");
        }
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
