//! The text of a delivery notice: a MIME `multipart/report` (RFC 3462) with a note for
//! people, a `message/delivery-status` part (RFC 3464) for programs, and the original message
//! (or its header). One composer serves every notice: the [`Kind`] says what happened to the
//! recipients (failed for good, or delayed and still retried) and the [`Audience`] who reads it.
//! Built as plain text: nothing here needs a MIME library.

use chrono::{DateTime, Local, TimeZone};

use crate::message::{Header, date_header_value, message_id_value};
use crate::queue::{Envelope, Recipient, Ret};

/// What of the original message goes back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned<'a> {
    /// The whole message (it fits in bounce_size_limit and RET=HDRS was not asked for).
    Message(&'a [u8]),
    /// The header block only, without the blank line that ends it.
    Headers {
        bytes: &'a [u8],
        /// True when the header alone is returned because the message is larger than
        /// bounce_size_limit (not because the sender asked for RET=HDRS, nor because the
        /// notice is a delay warning or a postmaster copy, which always carry the header only).
        too_big: bool,
    },
}

/// What the notice reports about its recipients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Delivery failed for good (`Action: failed`). Recipients that expired in the queue keep
    /// their last 4.x.x status, as Postfix reports them.
    Failure,
    /// Delivery is late but still being retried (`Action: delayed`).
    Delay {
        /// When the queue manager gives up (RFC 3464 `Will-Retry-Until:`), if it knows.
        retry_until: Option<DateTime<Local>>,
    },
}

/// Who reads the notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The original envelope sender.
    Sender,
    /// The postmaster, with a copy of what the sender was sent (notify_classes `bounce` or
    /// `delay`): header only, no advice meant for the sender.
    PostmasterCopy,
    /// The postmaster, in place of a sender there is not: the failed message had the null
    /// sender (Postfix's double bounce, notify_classes `2bounce`).
    DoubleBounce,
}

/// Everything a notice says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub kind: Kind,
    pub audience: Audience,
    pub myhostname: &'a str,
    pub mail_name: &'a str,
    /// The reported message's queue ID and envelope.
    pub queue_id: &'a str,
    pub envelope: &'a Envelope,
    /// The recipients reported (each with its dsn and reason).
    pub recipients: Vec<&'a Recipient>,
    /// The address the notice goes to (To:).
    pub to: &'a str,
    pub returned: Returned<'a>,
    /// The notice's own queue ID (for its Message-ID) and time of writing.
    pub notice_id: &'a str,
    pub now: DateTime<Local>,
}

pub const SUBJECT: &str = "Undelivered Mail Returned to Sender";
pub const POSTMASTER_SUBJECT: &str = "Postmaster Copy: Undelivered Mail";
pub const DELAY_SUBJECT: &str = "Delayed Mail (still being retried)";
pub const POSTMASTER_DELAY_SUBJECT: &str = "Postmaster Warning: Delayed Mail";

impl Report<'_> {
    /// Postfix's subjects: one for the sender, one for the postmaster, per kind.
    pub fn subject(&self) -> &'static str {
        match (self.kind, self.audience) {
            (Kind::Failure, Audience::Sender) => SUBJECT,
            (Kind::Failure, _) => POSTMASTER_SUBJECT,
            (Kind::Delay { .. }, Audience::Sender) => DELAY_SUBJECT,
            (Kind::Delay { .. }, _) => POSTMASTER_DELAY_SUBJECT,
        }
    }
}

/// The notice, header and body, with `\n` line ends as queue files hold them.
pub fn compose(r: &Report<'_>) -> Vec<u8> {
    let returned = match r.returned {
        Returned::Message(bytes) | Returned::Headers { bytes, .. } => bytes,
    };
    let human = human_text(r);
    let status = delivery_status(r);
    let eight_bit = !human.is_ascii() || !status.is_ascii() || !returned.is_ascii();
    let encoding = if eight_bit { "8bit" } else { "7bit" };

    // Postfix's boundary shape (queue ID, time, host); made longer should the returned text
    // happen to contain it.
    let mut boundary = format!("{}.{}/{}", r.queue_id, r.now.timestamp(), r.myhostname);
    while contains(returned, format!("--{boundary}").as_bytes()) {
        boundary.push_str(".x");
    }

    let mut out = Vec::with_capacity(returned.len() + human.len() + status.len() + 1024);
    let headers = [
        ("Date", date_header_value(r.now)),
        ("From", format!("MAILER-DAEMON@{} (Mail Delivery System)", r.myhostname)),
        ("Subject", r.subject().to_string()),
        ("To", r.to.to_string()),
        ("Auto-Submitted", "auto-replied".to_string()),
        ("Message-ID", message_id_value(r.notice_id, r.myhostname, r.now)),
        ("MIME-Version", "1.0".to_string()),
        ("Content-Type", format!("multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"")),
        ("Content-Transfer-Encoding", encoding.to_string()),
    ];
    for (name, value) in headers {
        out.extend_from_slice(&Header::new(name, &value).raw);
    }
    out.extend_from_slice(b"\nThis is a MIME-encapsulated message.\n\n");

    let charset = if human.is_ascii() { "us-ascii" } else { "utf-8" };
    part_head(&mut out, &boundary, "Notification", &format!("text/plain; charset={charset}"), None);
    out.extend_from_slice(human.as_bytes());

    out.extend_from_slice(b"\n");
    part_head(&mut out, &boundary, "Delivery report", "message/delivery-status", None);
    out.extend_from_slice(status.as_bytes());

    out.extend_from_slice(b"\n");
    let cte = (!returned.is_ascii()).then_some("8bit");
    let what = match r.kind {
        Kind::Failure => "Undelivered Message",
        Kind::Delay { .. } => "Delayed Message",
    };
    match r.returned {
        Returned::Message(_) => part_head(&mut out, &boundary, what, "message/rfc822", cte),
        Returned::Headers { .. } => {
            part_head(&mut out, &boundary, &format!("{what} Headers"), "text/rfc822-headers", cte)
        }
    }
    out.extend_from_slice(returned);
    if !returned.is_empty() && !returned.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(format!("\n--{boundary}--\n").as_bytes());
    out
}

fn part_head(out: &mut Vec<u8>, boundary: &str, description: &str, content_type: &str, cte: Option<&str>) {
    out.extend_from_slice(format!("--{boundary}\n").as_bytes());
    out.extend_from_slice(format!("Content-Description: {description}\n").as_bytes());
    out.extend_from_slice(format!("Content-Type: {content_type}\n").as_bytes());
    if let Some(cte) = cte {
        out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\n").as_bytes());
    }
    out.extend_from_slice(b"\n");
}

/// The note for people: what happened, then one line per recipient with its reason.
fn human_text(r: &Report<'_>) -> String {
    let mut t = format!("This is the {} mail delivery system at host {}.\n\n", r.mail_name, one_line(r.myhostname));
    let sender = if r.envelope.sender.is_empty() { "<>".to_string() } else { one_line(&r.envelope.sender) };
    match (r.kind, r.audience) {
        (Kind::Failure, Audience::Sender) => t.push_str(
            "Your message could not be delivered to the recipients listed below, and\n\
             no further attempt will be made to deliver it to them.\n",
        ),
        (Kind::Failure, Audience::DoubleBounce) => t.push_str(
            "A message with the null sender address <> could not be delivered to the\n\
             recipients listed below. There is no sender to give it back to, so this\n\
             report goes to the postmaster instead.\n",
        ),
        (Kind::Failure, Audience::PostmasterCopy) => t.push_str(&format!(
            "Postmaster copy: the sender {sender} has been told that this message\n\
             could not be delivered to the recipients listed below.\n"
        )),
        (Kind::Delay { retry_until }, Audience::Sender) => {
            t.push_str(
                "*** This is a warning only: there is no need to send your message again. ***\n\n\
                 Your message has not reached the recipients listed below yet. It is still\n\
                 in the mail queue, and delivery will be tried again automatically.\n",
            );
            let arrived = arrival(r.envelope.arrival_us);
            let waited = elapsed(r.now.signed_duration_since(arrived));
            t.push_str(&format!("\nArrived:        {} ({waited} ago)\n", date_header_value(arrived)));
            if let Some(until) = retry_until {
                t.push_str(&format!(
                    "Retried until:  {}\n\n\
                     Should it still be undeliverable by then, delivery stops and you will\n\
                     normally receive a final report.\n",
                    date_header_value(until)
                ));
            }
            t.push('\n');
        }
        (Kind::Delay { .. }, _) => t.push_str(&format!(
            "Postmaster copy: the sender {sender} has been warned that this message\n\
             is delayed for the recipients listed below. It is still being retried.\n"
        )),
    }
    match (r.returned, r.kind, r.audience) {
        (Returned::Message(_), ..) => t.push_str("The message itself is attached after the delivery report.\n"),
        (Returned::Headers { too_big: true, .. }, Kind::Failure, Audience::Sender | Audience::DoubleBounce) => t
            .push_str(
                "The message was too large to return in full; its header is attached after\nthe delivery report.\n",
            ),
        (Returned::Headers { .. }, Kind::Failure, Audience::Sender) if r.envelope.ret == Some(Ret::Hdrs) => {
            t.push_str("As requested, only the message header is attached after the delivery report.\n")
        }
        (Returned::Headers { .. }, ..) => t.push_str("The message header is attached after the delivery report.\n"),
    }
    if r.audience == Audience::Sender {
        t.push_str(&format!(
            "\nIf you need help, forward this report to your postmaster.\n\n\
             \x20                  The {} program\n",
            r.mail_name
        ));
    }
    t.push('\n');
    for rcpt in &r.recipients {
        t.push_str(&format!("<{}>", one_line(&rcpt.address)));
        if rcpt.original != rcpt.address {
            t.push_str(&format!(" (expanded from <{}>)", one_line(&rcpt.original)));
        }
        t.push_str(&format!(": {}\n", one_line(reason(r.kind, rcpt))));
    }
    t
}

/// The machine-readable part (RFC 3464): the per-message fields, then one block of
/// per-recipient fields per recipient, each block after a blank line.
fn delivery_status(r: &Report<'_>) -> String {
    let env = r.envelope;
    let mut s = String::new();
    if let Some(envid) = &env.envid {
        s.push_str(&format!("Original-Envelope-Id: {}\n", one_line(envid)));
    }
    s.push_str(&format!("Reporting-MTA: dns; {}\n", one_line(r.myhostname)));
    s.push_str(&format!("X-Tidemail-Queue-ID: {}\n", r.queue_id));
    let sender = if env.sender.is_empty() { "<>" } else { env.sender.as_str() };
    s.push_str(&format!("X-Tidemail-Sender: rfc822; {}\n", one_line(sender)));
    s.push_str(&format!("Arrival-Date: {}\n", date_header_value(arrival(env.arrival_us))));
    let action = match r.kind {
        Kind::Failure => "failed",
        Kind::Delay { .. } => "delayed",
    };
    for rcpt in &r.recipients {
        s.push('\n');
        s.push_str(&format!("Final-Recipient: rfc822; {}\n", one_line(&rcpt.address)));
        if let Some(orcpt) = &rcpt.orcpt {
            s.push_str(&format!("Original-Recipient: {}\n", one_line(orcpt)));
        } else if rcpt.original != rcpt.address {
            s.push_str(&format!("Original-Recipient: rfc822; {}\n", one_line(&rcpt.original)));
        }
        s.push_str(&format!("Action: {action}\n"));
        s.push_str(&format!("Status: {}\n", status_code(r.kind, rcpt)));
        let why = reason(r.kind, rcpt);
        match remote_reply(why) {
            // The server's own words, typed as SMTP, and who said them.
            Some((host, reply)) => {
                s.push_str(&format!("Remote-MTA: dns; {}\n", one_line(host)));
                s.push_str(&format!("Diagnostic-Code: smtp; {}\n", one_line(reply)));
            }
            None => s.push_str(&format!("Diagnostic-Code: X-Tidemail; {}\n", one_line(why))),
        }
        if let Kind::Delay { retry_until: Some(until) } = r.kind {
            s.push_str(&format!("Will-Retry-Until: {}\n", date_header_value(until)));
        }
    }
    s
}

/// The recipient's enhanced status code (RFC 3463), when it fits the report: a failure keeps
/// a 4.x.x (a recipient that expired while deferred) or 5.x.x, else 5.0.0; a delay keeps a
/// 4.x.x, else 4.0.0.
fn status_code(kind: Kind, rcpt: &Recipient) -> &str {
    let (classes, fallback): (&[&str], &str) = match kind {
        Kind::Failure => (&["4", "5"], "5.0.0"),
        Kind::Delay { .. } => (&["4"], "4.0.0"),
    };
    rcpt.dsn.as_deref().filter(|code| is_status(code, classes)).unwrap_or(fallback)
}

fn is_status(code: &str, classes: &[&str]) -> bool {
    let parts: Vec<&str> = code.split('.').collect();
    let number = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|b| b.is_ascii_digit());
    parts.len() == 3 && classes.contains(&parts[0]) && number(parts[1], 3) && number(parts[2], 3)
}

fn reason(kind: Kind, rcpt: &Recipient) -> &str {
    let fallback = match kind {
        Kind::Failure => "delivery failed",
        Kind::Delay { .. } => "delivery temporarily failed",
    };
    rcpt.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or(fallback)
}

/// The server and its reply, when a reason is the SMTP client's account of what a server
/// said (`host mx.example.com[192.0.2.1] said: 550 5.1.1 <x>: unknown (in reply to RCPT TO
/// command)`, or `host ... refused to talk to me: 554 ...`). Any other reason was ours.
fn remote_reply(reason: &str) -> Option<(&str, &str)> {
    let (peer, rest) = reason.strip_prefix("host ")?.split_once(' ')?;
    let (host, _addr) = peer.strip_suffix(']')?.split_once('[')?;
    let reply = rest.strip_prefix("said: ").or_else(|| rest.strip_prefix("refused to talk to me: "))?;
    let reply = match reply.rfind(" (in reply to ") {
        Some(at) if reply.ends_with(" command)") => &reply[..at],
        _ => reply,
    };
    let coded = reply.len() >= 3 && reply.as_bytes()[..3].iter().all(u8::is_ascii_digit);
    (coded && !host.is_empty()).then_some((host, reply))
}

/// "3 hours", "2 days": how long a message has waited, roughly, for people.
fn elapsed(d: chrono::TimeDelta) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    let minutes = d.num_minutes().max(0);
    match minutes {
        m if m < 60 => plural(m, "minute"),
        m if m < 48 * 60 => plural(m / 60, "hour"),
        m => plural(m / (24 * 60), "day"),
    }
}

fn arrival(us: i64) -> DateTime<Local> {
    Local.timestamp_micros(us).single().unwrap_or_else(Local::now)
}

/// A value on one line: control characters (line breaks included) become spaces.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Origin, RcptState};

    fn failed(address: &str, original: &str, dsn: &str, reason: &str) -> Recipient {
        let mut r = Recipient::new(address);
        r.original = original.to_string();
        r.state = RcptState::Bounced;
        r.dsn = Some(dsn.into());
        r.reason = Some(reason.into());
        r
    }

    fn report<'a>(env: &'a Envelope, returned: Returned<'a>) -> Report<'a> {
        Report {
            kind: Kind::Failure,
            audience: Audience::Sender,
            myhostname: "mail.example.com",
            mail_name: "tidemail",
            queue_id: "4cXyZ1BcDfz2Bq",
            envelope: env,
            recipients: env.recipients.iter().collect(),
            to: "tom@example.com",
            returned,
            notice_id: "4cXyZ2AbCdE3Fg",
            now: Local.timestamp_opt(1_790_000_000, 0).unwrap(),
        }
    }

    fn text(bytes: &[u8]) -> String {
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn delivery_status_fields_exactly() {
        let mut moved = failed("who@example.com", "who@example.com", "5.1.6", "User has moved to x@new.example");
        moved.orcpt = Some("rfc822;Who@Example.COM".into());
        let mut env = Envelope::new(
            "tom@example.com",
            vec![moved, failed("ann@example.com", "ann@old.example.com", "5.1.1", "User unknown")],
            Origin::Local { uid: 1000 },
            1_789_999_000_000_000,
        );
        env.envid = Some("QQ314159".into());
        let arrival = date_header_value(arrival(env.arrival_us));
        let out = text(&compose(&report(&env, Returned::Message(b"Subject: hi\n\nbody\n"))));
        let expected = format!(
            "Content-Description: Delivery report\nContent-Type: message/delivery-status\n\n\
             Original-Envelope-Id: QQ314159\n\
             Reporting-MTA: dns; mail.example.com\n\
             X-Tidemail-Queue-ID: 4cXyZ1BcDfz2Bq\n\
             X-Tidemail-Sender: rfc822; tom@example.com\n\
             Arrival-Date: {arrival}\n\n\
             Final-Recipient: rfc822; who@example.com\n\
             Original-Recipient: rfc822;Who@Example.COM\n\
             Action: failed\n\
             Status: 5.1.6\n\
             Diagnostic-Code: X-Tidemail; User has moved to x@new.example\n\n\
             Final-Recipient: rfc822; ann@example.com\n\
             Original-Recipient: rfc822; ann@old.example.com\n\
             Action: failed\n\
             Status: 5.1.1\n\
             Diagnostic-Code: X-Tidemail; User unknown\n\n--"
        );
        assert!(out.contains(&expected), "{out}");
        assert!(out.contains("<who@example.com>: User has moved to x@new.example\n"), "{out}");
        assert!(out.contains("<ann@example.com> (expanded from <ann@old.example.com>): User unknown\n"), "{out}");
    }

    #[test]
    fn header_and_parts() {
        let env = Envelope::new(
            "tom@example.com",
            vec![failed("a@example.com", "a@example.com", "5.1.1", "User unknown")],
            Origin::Local { uid: 1000 },
            1_789_999_000_000_000,
        );
        let now = Local.timestamp_opt(1_790_000_000, 0).unwrap();
        let out = text(&compose(&report(&env, Returned::Message(b"Subject: hi\n\nbody\n"))));
        let boundary = "4cXyZ1BcDfz2Bq.1790000000/mail.example.com";
        let head = format!(
            "Date: {}\n\
             From: MAILER-DAEMON@mail.example.com (Mail Delivery System)\n\
             Subject: Undelivered Mail Returned to Sender\n\
             To: tom@example.com\n\
             Auto-Submitted: auto-replied\n\
             Message-ID: {}\n\
             MIME-Version: 1.0\n\
             Content-Type: multipart/report; report-type=delivery-status;\n\tboundary=\"{boundary}\"\n\
             Content-Transfer-Encoding: 7bit\n\n",
            date_header_value(now),
            message_id_value("4cXyZ2AbCdE3Fg", "mail.example.com", now)
        );
        assert!(out.starts_with(&head), "{out}");
        assert!(out.contains(&format!(
            "--{boundary}\nContent-Description: Notification\nContent-Type: text/plain; charset=us-ascii\n\n"
        )));
        assert!(
            out.ends_with(&format!(
                "--{boundary}\nContent-Description: Undelivered Message\nContent-Type: message/rfc822\n\n\
             Subject: hi\n\nbody\n\n--{boundary}--\n"
            )),
            "{out}"
        );
        assert_eq!(out.matches(&format!("--{boundary}\n")).count(), 3);
    }

    #[test]
    fn headers_only_and_eight_bit() {
        let mut env = Envelope::new(
            "tom@example.com",
            vec![failed("a@example.com", "a@example.com", "5.1.1", "User unknown")],
            Origin::Local { uid: 1000 },
            1_789_999_000_000_000,
        );
        env.ret = Some(Ret::Hdrs);
        let headers = "Subject: caf\u{e9}\n".as_bytes();
        let out = text(&compose(&report(&env, Returned::Headers { bytes: headers, too_big: false })));
        assert!(out.contains("Content-Transfer-Encoding: 8bit\n\nThis is a MIME"), "{out}");
        assert!(out.contains(
            "Content-Description: Undelivered Message Headers\nContent-Type: text/rfc822-headers\n\
             Content-Transfer-Encoding: 8bit\n\nSubject: caf\u{e9}\n\n--"
        ));
        assert!(out.contains("only the message header is attached"), "{out}");
        let out = text(&compose(&report(&env, Returned::Headers { bytes: b"Subject: x\n", too_big: true })));
        assert!(out.contains("too large to return in full"), "{out}");
    }

    #[test]
    fn boundary_never_in_the_returned_text() {
        let env = Envelope::new(
            "tom@example.com",
            vec![failed("a@example.com", "a@example.com", "bogus", "")],
            Origin::Local { uid: 1000 },
            0,
        );
        let body = b"Subject: x\n\n--4cXyZ1BcDfz2Bq.1790000000/mail.example.com--\n";
        let out = text(&compose(&report(&env, Returned::Message(body))));
        assert!(out.contains("boundary=\"4cXyZ1BcDfz2Bq.1790000000/mail.example.com.x\""), "{out}");
        assert!(out.contains("Status: 5.0.0\nDiagnostic-Code: X-Tidemail; delivery failed\n"), "{out}");
    }

    fn delayed(address: &str, dsn: Option<&str>, reason: &str) -> Recipient {
        let mut r = Recipient::new(address);
        r.dsn = dsn.map(str::to_string);
        r.reason = Some(reason.into());
        r
    }

    #[test]
    fn delay_status_fields_exactly() {
        let env = Envelope::new(
            "tom@example.com",
            vec![
                delayed(
                    "grey@example.net",
                    Some("4.7.1"),
                    "host mx.example.net[192.0.2.7] said: 451 4.7.1 Greylisted, try again later (in reply to RCPT TO command)",
                ),
                delayed(
                    "far@example.org",
                    Some("4.4.1"),
                    "connect to mx.example.org[192.0.2.9]:25: Connection refused",
                ),
                delayed("odd@example.org", Some("5.1.1"), ""),
            ],
            Origin::Local { uid: 1000 },
            1_789_999_000_000_000,
        );
        let until = Local.timestamp_opt(1_790_400_000, 0).unwrap();
        let mut r = report(&env, Returned::Headers { bytes: b"Subject: hi\n", too_big: false });
        r.kind = Kind::Delay { retry_until: Some(until) };
        let out = text(&compose(&r));
        let arrival = date_header_value(arrival(env.arrival_us));
        let until = date_header_value(until);
        let expected = format!(
            "Content-Type: message/delivery-status\n\n\
             Reporting-MTA: dns; mail.example.com\n\
             X-Tidemail-Queue-ID: 4cXyZ1BcDfz2Bq\n\
             X-Tidemail-Sender: rfc822; tom@example.com\n\
             Arrival-Date: {arrival}\n\n\
             Final-Recipient: rfc822; grey@example.net\n\
             Action: delayed\n\
             Status: 4.7.1\n\
             Remote-MTA: dns; mx.example.net\n\
             Diagnostic-Code: smtp; 451 4.7.1 Greylisted, try again later\n\
             Will-Retry-Until: {until}\n\n\
             Final-Recipient: rfc822; far@example.org\n\
             Action: delayed\n\
             Status: 4.4.1\n\
             Diagnostic-Code: X-Tidemail; connect to mx.example.org[192.0.2.9]:25: Connection refused\n\
             Will-Retry-Until: {until}\n\n\
             Final-Recipient: rfc822; odd@example.org\n\
             Action: delayed\n\
             Status: 4.0.0\n\
             Diagnostic-Code: X-Tidemail; delivery temporarily failed\n\
             Will-Retry-Until: {until}\n\n--"
        );
        assert!(out.contains(&expected), "{out}");
        assert!(out.contains("\nSubject: Delayed Mail (still being retried)\n"), "{out}");
        assert!(out.contains("This is a warning only"), "{out}");
        assert!(out.contains(&format!("\nArrived:        {arrival} (16 minutes ago)\n")), "{out}");
        assert!(out.contains(&format!("\nRetried until:  {until}\n")), "{out}");
        assert!(out.contains(
            "Content-Description: Delayed Message Headers\nContent-Type: text/rfc822-headers\n\nSubject: hi\n\n--"
        ));
        // The person reading it sees the server's words in full.
        assert!(out.contains("<grey@example.net>: host mx.example.net[192.0.2.7] said: 451 4.7.1 Greylisted"));

        // Without a retry limit, no Will-Retry-Until and no promise about it.
        r.kind = Kind::Delay { retry_until: None };
        let out = text(&compose(&r));
        assert!(!out.contains("Will-Retry-Until") && !out.contains("Retried until"), "{out}");
    }

    #[test]
    fn expired_recipient_keeps_its_temporary_status() {
        let mut gone = failed(
            "slow@example.net",
            "slow@example.net",
            "4.4.1",
            "connect to mx.example.net[192.0.2.7]:25: Connection timed out",
        );
        gone.state = RcptState::Bounced;
        let env = Envelope::new("tom@example.com", vec![gone], Origin::Local { uid: 1000 }, 1_789_999_000_000_000);
        let out = text(&compose(&report(&env, Returned::Message(b"Subject: hi\n\nbody\n"))));
        assert!(
            out.contains(
                "Final-Recipient: rfc822; slow@example.net\nAction: failed\nStatus: 4.4.1\n\
                 Diagnostic-Code: X-Tidemail; connect to mx.example.net[192.0.2.7]:25: Connection timed out\n"
            ),
            "{out}"
        );
        assert!(out.contains("<slow@example.net>: connect to mx.example.net[192.0.2.7]:25: Connection timed out\n"));
        assert!(out.contains("no further attempt will be made"), "{out}");
    }

    #[test]
    fn subjects_and_postmaster_wording() {
        let env = Envelope::new(
            "tom@example.com",
            vec![failed("a@example.com", "a@example.com", "5.1.1", "User unknown")],
            Origin::Local { uid: 1000 },
            0,
        );
        let mut r = report(&env, Returned::Headers { bytes: b"Subject: x\n", too_big: false });
        r.to = "postmaster@example.com";
        r.audience = Audience::PostmasterCopy;
        let out = text(&compose(&r));
        assert!(out.contains("\nSubject: Postmaster Copy: Undelivered Mail\n"), "{out}");
        assert!(out.contains("the sender tom@example.com has been told"), "{out}");
        assert!(!out.contains("forward this report"), "{out}");
        r.kind = Kind::Delay { retry_until: None };
        let out = text(&compose(&r));
        assert!(out.contains("\nSubject: Postmaster Warning: Delayed Mail\n"), "{out}");
        assert!(out.contains("has been warned"), "{out}");
        r.audience = Audience::Sender;
        assert_eq!(r.subject(), DELAY_SUBJECT);
        r.kind = Kind::Failure;
        assert_eq!(r.subject(), SUBJECT);
        r.audience = Audience::DoubleBounce;
        assert_eq!(r.subject(), POSTMASTER_SUBJECT);
    }

    #[test]
    fn remote_replies_are_told_from_local_reasons() {
        assert_eq!(
            remote_reply("host mx.example.net[192.0.2.7] said: 550 5.1.1 <a@x>: unknown (in reply to RCPT TO command)"),
            Some(("mx.example.net", "550 5.1.1 <a@x>: unknown"))
        );
        assert_eq!(
            remote_reply("host mx6.example.net[2001:db8::25] said: 421 4.3.2 closing (in reply to MAIL FROM command)"),
            Some(("mx6.example.net", "421 4.3.2 closing"))
        );
        assert_eq!(
            remote_reply("host mx.example.net[192.0.2.7] refused to talk to me: 554 5.7.1 go away"),
            Some(("mx.example.net", "554 5.7.1 go away"))
        );
        for local in [
            "mail transport unavailable",
            "deferred transport",
            "host mx.example.net[192.0.2.7] said: nothing useful",
            "lost connection with mx.example.net[192.0.2.7] while sending RCPT TO",
            "Host or domain name not found",
        ] {
            assert_eq!(remote_reply(local), None, "{local}");
        }
    }

    #[test]
    fn status_codes_are_checked() {
        let with = |dsn: &str| {
            let mut r = Recipient::new("a@example.com");
            r.dsn = Some(dsn.into());
            r
        };
        let delay = Kind::Delay { retry_until: None };
        assert_eq!(status_code(Kind::Failure, &with("5.1.1")), "5.1.1");
        assert_eq!(status_code(Kind::Failure, &with("4.4.7")), "4.4.7");
        assert_eq!(status_code(Kind::Failure, &with("2.0.0")), "5.0.0");
        assert_eq!(status_code(Kind::Failure, &with("5..1")), "5.0.0");
        assert_eq!(status_code(Kind::Failure, &with("5.1.1234")), "5.0.0");
        assert_eq!(status_code(delay, &with("4.7.1")), "4.7.1");
        assert_eq!(status_code(delay, &with("5.1.1")), "4.0.0");
        assert_eq!(status_code(delay, &Recipient::new("a@example.com")), "4.0.0");
    }

    #[test]
    fn waiting_times_for_people() {
        use chrono::TimeDelta;
        assert_eq!(elapsed(TimeDelta::minutes(1)), "1 minute");
        assert_eq!(elapsed(TimeDelta::minutes(59)), "59 minutes");
        assert_eq!(elapsed(TimeDelta::hours(4)), "4 hours");
        assert_eq!(elapsed(TimeDelta::hours(47)), "47 hours");
        assert_eq!(elapsed(TimeDelta::hours(49)), "2 days");
        assert_eq!(elapsed(TimeDelta::seconds(-5)), "0 minutes");
    }
}
