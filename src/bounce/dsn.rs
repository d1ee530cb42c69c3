//! The text of a non-delivery notice: a MIME `multipart/report` (RFC 3462) with a note for
//! people, a `message/delivery-status` part (RFC 3464) for programs, and the original message
//! (or its header) returned. Built as plain text: nothing here needs a MIME library.

use chrono::{DateTime, Local, TimeZone};

use crate::message::{Header, date_header_value, message_id_value};
use crate::queue::{Envelope, Recipient};

/// What of the original message goes back to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Returned<'a> {
    /// The whole message (it fits in bounce_size_limit and RET=HDRS was not asked for).
    Message(&'a [u8]),
    /// The header block only, without the blank line that ends it.
    Headers {
        bytes: &'a [u8],
        /// True when the header alone is returned because the message is larger than
        /// bounce_size_limit (not because the sender asked for RET=HDRS).
        too_big: bool,
    },
}

/// Everything a notice says.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub myhostname: &'a str,
    pub mail_name: &'a str,
    /// The failed message's queue ID and envelope.
    pub queue_id: &'a str,
    pub envelope: &'a Envelope,
    /// The recipients reported (each with its dsn and reason).
    pub recipients: Vec<&'a Recipient>,
    /// Who gets the notice: the original sender, or the postmaster (double bounce).
    pub to: &'a str,
    /// A double bounce: the failed message had the null sender; the postmaster is told.
    pub postmaster: bool,
    pub returned: Returned<'a>,
    /// The notice's own queue ID (for its Message-ID) and time of writing.
    pub notice_id: &'a str,
    pub now: DateTime<Local>,
}

pub const SUBJECT: &str = "Undelivered Mail Returned to Sender";
pub const POSTMASTER_SUBJECT: &str = "Postmaster Copy: Undelivered Mail";

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
    let subject = if r.postmaster { POSTMASTER_SUBJECT } else { SUBJECT };
    let headers = [
        ("Date", date_header_value(r.now)),
        ("From", format!("MAILER-DAEMON@{} (Mail Delivery System)", r.myhostname)),
        ("Subject", subject.to_string()),
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
    match r.returned {
        Returned::Message(_) => part_head(&mut out, &boundary, "Undelivered Message", "message/rfc822", cte),
        Returned::Headers { .. } => {
            part_head(&mut out, &boundary, "Undelivered Message Headers", "text/rfc822-headers", cte)
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
    if r.postmaster {
        t.push_str(
            "A message with the null sender address <> could not be delivered to the\n\
             recipients listed below. There is no sender to give it back to, so this\n\
             report goes to the postmaster instead.\n",
        );
    } else {
        t.push_str(
            "Your message could not be delivered to the recipients listed below, and\n\
             no further attempt will be made to deliver it to them.\n",
        );
    }
    match r.returned {
        Returned::Message(_) => t.push_str("The message itself is attached after the delivery report.\n"),
        Returned::Headers { too_big: true, .. } => t.push_str(
            "The message was too large to return in full; its header is attached after\nthe delivery report.\n",
        ),
        Returned::Headers { too_big: false, .. } => {
            t.push_str("As requested, only the message header is attached after the delivery report.\n")
        }
    }
    t.push_str(&format!(
        "\nIf you need help, forward this report to your postmaster.\n\n\
         \x20                  The {} program\n\n",
        r.mail_name
    ));
    for rcpt in &r.recipients {
        t.push_str(&format!("<{}>", one_line(&rcpt.address)));
        if rcpt.original != rcpt.address {
            t.push_str(&format!(" (expanded from <{}>)", one_line(&rcpt.original)));
        }
        t.push_str(&format!(": {}\n", one_line(reason(rcpt))));
    }
    t
}

/// The machine-readable part: per-message fields, then a block per recipient.
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
    for rcpt in &r.recipients {
        s.push('\n');
        s.push_str(&format!("Final-Recipient: rfc822; {}\n", one_line(&rcpt.address)));
        if let Some(orcpt) = &rcpt.orcpt {
            s.push_str(&format!("Original-Recipient: {}\n", one_line(orcpt)));
        } else if rcpt.original != rcpt.address {
            s.push_str(&format!("Original-Recipient: rfc822; {}\n", one_line(&rcpt.original)));
        }
        s.push_str("Action: failed\n");
        s.push_str(&format!("Status: {}\n", status_code(rcpt)));
        s.push_str(&format!("Diagnostic-Code: X-Tidemail; {}\n", one_line(reason(rcpt))));
    }
    s
}

/// The recipient's enhanced status code; a failure without a valid one is 5.0.0.
fn status_code(rcpt: &Recipient) -> &str {
    match rcpt.dsn.as_deref() {
        Some(code)
            if code.starts_with("5.")
                && code.split('.').count() == 3
                && code.bytes().all(|b| b == b'.' || b.is_ascii_digit()) =>
        {
            code
        }
        _ => "5.0.0",
    }
}

fn reason(rcpt: &Recipient) -> &str {
    rcpt.reason.as_deref().filter(|r| !r.is_empty()).unwrap_or("delivery failed")
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
    use crate::queue::{Origin, RcptState, Ret};

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
            myhostname: "mail.example.com",
            mail_name: "tidemail",
            queue_id: "4cXyZ1BcDfz2Bq",
            envelope: env,
            recipients: env.recipients.iter().collect(),
            to: "tom@example.com",
            postmaster: false,
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
}
