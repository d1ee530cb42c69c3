//! The queue listing, rendered the way Postfix renders it: `mailq` / `postqueue -p` text
//! (postqueue's `showq_compat.c`, long-queue-ID layout) and `postqueue -j` JSON lines
//! (`showq_json.c`). Pure formatting: the caller scans the queue and passes the entries in
//! the order it wants them listed (Postfix lists maildrop, active, incoming, deferred, hold).
//!
//! Text layout, one block per message, a blank line between blocks:
//!
//! ```text
//! ----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
//! 4cXyZ1BcDfz2Bq*       512 Sun Nov 22 04:38:26  alice@office.example
//!                                                bob@example.org
//!
//! -- 0 Kbytes in 1 Request.
//! ```
//!
//! - After the ID: `*` = in the active queue (being delivered), `!` = on hold. Dial-up
//!   scripts wait with `while mailq | grep '^[^ ]*\*'`, so the marker must stay glued to
//!   the ID.
//! - Only recipients still pending are listed. Above a recipient whose delay reason differs
//!   from the previous recipient's, the reason is printed in parentheses, right-aligned to
//!   end in column 78 (longer reasons start in column 1). A recipient without a reason after
//!   one with a reason gets `(reason unavailable)`.
//! - The null sender shows as `MAILER-DAEMON`.
//! - The summary counts content bytes and truncates to whole Kbytes, as Postfix does
//!   (`-- 0 Kbytes in 1 Request.` for a small message).
//! - An empty queue prints `Mail queue is empty`.
//!
//! Addresses and reasons are printed with control characters replaced by `?`, so queue
//! contents cannot move the cursor or fake lines on the admin's terminal.
//!
//! Write errors are returned as they come; a caller piping into `head` should treat
//! `BrokenPipe` as success, as postqueue does.

use std::borrow::Cow;
use std::fmt::Display;
use std::io::{self, Write};

use chrono::TimeZone;

use crate::queue::{Origin, QueueEntry, QueueName, RcptState, Recipient};

/// How Postfix shows the null sender `<>` (its `empty_address_recipient` default).
const NULL_SENDER: &str = "MAILER-DAEMON";

/// Postfix's long-queue-ID header: `%-17s %8s %-19s %s`.
const HEADER: &str = "----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------";

/// A recipient line is the sender line's columns left blank: 17 + 1 + 8 + 1 + 19 + 1.
const RECIPIENT_INDENT: usize = 47;

/// A reason line `(text)` ends in column 78: `76 - len` spaces of padding, at least none.
const REASON_END: usize = 76;

/// `mailq` / `postqueue -p`, arrival times in local time.
pub fn render_text(entries: &[QueueEntry], out: &mut impl Write) -> io::Result<()> {
    render_text_in(entries, &chrono::Local, out)
}

/// `postqueue -j`: one JSON object per message, each on its own line. Field names, order and
/// spacing are Postfix's, so scripts written for `postqueue -j` work unchanged.
pub fn render_json(entries: &[QueueEntry], out: &mut impl Write) -> io::Result<()> {
    for entry in entries {
        let env = &entry.envelope;
        write!(
            out,
            "{{\"queue_name\": {}, \"queue_id\": {}, \"arrival_time\": {}, \"message_size\": {}, \
             \"forced_expire\": false, \"sender\": {}, ",
            json_str(entry.queue.dir_name()),
            json_str(&entry.id),
            arrival_secs(env.arrival_us),
            entry.size,
            json_str(&sender(entry)),
        )?;
        if let Some(why) = &env.possible_duplicate {
            write!(out, "\"possible_duplicate\": {}, \"recipients\": [", json_str(why))?;
        } else {
            out.write_all(b"\"recipients\": [")?;
        }
        for (n, rcpt) in pending(entry).enumerate() {
            let sep = if n == 0 { "" } else { ", " };
            write!(out, "{sep}{{\"address\": {}", json_str(&rcpt.address))?;
            if let Some(reason) = rcpt.reason.as_deref().filter(|r| !r.is_empty()) {
                write!(out, ", \"delay_reason\": {}", json_str(reason))?;
            }
            out.write_all(b"}")?;
        }
        out.write_all(b"]}\n")?;
    }
    Ok(())
}

/// The text listing with arrival times shown in `tz` (tests use UTC).
fn render_text_in<Tz>(entries: &[QueueEntry], tz: &Tz, out: &mut impl Write) -> io::Result<()>
where
    Tz: TimeZone,
    Tz::Offset: Display,
{
    if entries.is_empty() {
        return out.write_all(b"Mail queue is empty\n");
    }

    let mut total: u64 = 0;
    for (n, entry) in entries.iter().enumerate() {
        if n == 0 {
            writeln!(out, "{HEADER}")?;
        } else {
            writeln!(out)?;
        }
        total = total.saturating_add(entry.size);

        // The sender line: `%-17s %8ld %19.19s %s`, the status marker glued to the ID.
        let marker = match entry.queue {
            QueueName::Active => "*",
            QueueName::Hold => "!",
            _ => "",
        };
        let id = format!("{}{marker}", entry.id);
        let arrival = tz
            .timestamp_opt(arrival_secs(entry.envelope.arrival_us), 0)
            .earliest()
            .map(|t| t.format("%a %b %e %H:%M:%S").to_string())
            .unwrap_or_else(|| "??".to_string());
        writeln!(out, "{id:<17} {:>8} {arrival:>19} {}", entry.size, printable(&sender(entry)))?;

        // tidemail: an earlier attempt may have delivered it (see Envelope::possible_duplicate).
        if let Some(why) = &entry.envelope.possible_duplicate {
            let text = format!("possible duplicate: {why}");
            let shown = printable(&text);
            let pad = REASON_END.saturating_sub(shown.chars().count());
            writeln!(out, "{:pad$}({shown})", "")?;
        }

        // Recipients, each reason shown once above the run of recipients sharing it.
        let mut last_reason = "";
        for rcpt in pending(entry) {
            let reason = rcpt.reason.as_deref().unwrap_or("");
            if reason != last_reason {
                last_reason = reason;
                let shown = if reason.is_empty() { "reason unavailable" } else { reason };
                let shown = printable(shown);
                let pad = REASON_END.saturating_sub(shown.chars().count());
                writeln!(out, "{:pad$}({shown})", "")?;
            }
            writeln!(out, "{:RECIPIENT_INDENT$}{}", "", printable(&rcpt.address))?;
        }
    }

    let requests = entries.len();
    let plural = if requests == 1 { "" } else { "s" };
    writeln!(out, "\n-- {} Kbytes in {requests} Request{plural}.", total / 1024)
}

/// Recipients still waiting for delivery (sent and bounced ones are done).
fn pending(entry: &QueueEntry) -> impl Iterator<Item = &Recipient> {
    entry.envelope.recipients.iter().filter(|r| r.state == RcptState::Pending)
}

/// The sender as mailq shows it.
///
/// A maildrop file written by the sendmail command without `-f` may leave the sender for
/// cleanup to fill in from the submitting uid; Postfix shows the login name there, so do we.
fn sender(entry: &QueueEntry) -> Cow<'_, str> {
    let env = &entry.envelope;
    if !env.sender.is_empty() {
        return Cow::Borrowed(&env.sender);
    }
    let from_uid = env.submission.as_ref().is_some_and(|s| s.sender_from_uid);
    match (&env.origin, entry.queue) {
        (Origin::Local { uid }, QueueName::Maildrop) if from_uid => {
            match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(*uid)) {
                Ok(Some(user)) => Cow::Owned(user.name),
                _ => Cow::Owned(uid.to_string()),
            }
        }
        _ => Cow::Borrowed(NULL_SENDER),
    }
}

/// Whole seconds since the epoch (the queue keeps microseconds).
fn arrival_secs(arrival_us: i64) -> i64 {
    arrival_us.div_euclid(1_000_000)
}

/// Control characters become `?` (Postfix's `printable()`).
fn printable(s: &str) -> Cow<'_, str> {
    if s.contains(char::is_control) {
        Cow::Owned(s.chars().map(|c| if c.is_control() { '?' } else { c }).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// A JSON string literal, quotes included.
fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::{Envelope, Submission};

    /// 2026-11-22 04:38:26 UTC, a Sunday.
    const ARRIVAL_US: i64 = 1_795_322_306_250_000;

    fn entry(
        id: &str,
        queue: QueueName,
        sender: &str,
        size: u64,
        rcpts: &[(&str, RcptState, Option<&str>)],
    ) -> QueueEntry {
        let recipients = rcpts
            .iter()
            .map(|(addr, state, reason)| {
                let mut r = Recipient::new(*addr);
                r.state = *state;
                r.reason = reason.map(str::to_string);
                r
            })
            .collect();
        QueueEntry {
            id: id.to_string(),
            queue,
            envelope: Envelope::new(sender, recipients, Origin::Local { uid: 1000 }, ARRIVAL_US),
            size,
        }
    }

    fn text(entries: &[QueueEntry]) -> String {
        let mut out = Vec::new();
        render_text_in(entries, &chrono::Utc, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(entries: &[QueueEntry]) -> String {
        let mut out = Vec::new();
        render_json(entries, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    const DEFER: &str = "deferred transport";
    const REFUSED: &str = "connect to smtp.example.net[192.0.2.25]:587: Connection refused";

    fn sample() -> Vec<QueueEntry> {
        use RcptState::*;
        vec![
            entry(
                "4cXyZ1BcDfz2Bq",
                QueueName::Active,
                "alice@office.example",
                512,
                &[("bob@example.org", Pending, None)],
            ),
            entry(
                "4cXyZ1CdFgz3Cr",
                QueueName::Deferred,
                "",
                2100,
                &[
                    ("carol@example.org", Pending, Some(DEFER)),
                    ("dave@example.org", Pending, Some(DEFER)),
                    ("done@example.org", Sent, None),
                    ("erin@example.net", Pending, Some(REFUSED)),
                    ("frank@example.net", Pending, None),
                    ("gone@example.net", Bounced, Some("550 5.1.1 unknown user")),
                ],
            ),
            entry(
                "4cXyZ1DfGhz4Ds",
                QueueName::Hold,
                "root@office.example",
                10_000,
                &[("tom@office.example", Pending, None)],
            ),
            entry("4cXyZ1FgHjz5Ft", QueueName::Maildrop, "tom", 300, &[("boss@example.com", Pending, None)]),
        ]
    }

    #[test]
    fn text_matches_postfix_layout() {
        let want = "\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
4cXyZ1BcDfz2Bq*        512 Sun Nov 22 04:38:26 alice@office.example
                                               bob@example.org

4cXyZ1CdFgz3Cr        2100 Sun Nov 22 04:38:26 MAILER-DAEMON
                                                          (deferred transport)
                                               carol@example.org
                                               dave@example.org
             (connect to smtp.example.net[192.0.2.25]:587: Connection refused)
                                               erin@example.net
                                                          (reason unavailable)
                                               frank@example.net

4cXyZ1DfGhz4Ds!      10000 Sun Nov 22 04:38:26 root@office.example
                                               tom@office.example

4cXyZ1FgHjz5Ft         300 Sun Nov 22 04:38:26 tom
                                               boss@example.com

-- 12 Kbytes in 4 Requests.
";
        assert_eq!(text(&sample()), want);
    }

    #[test]
    fn text_columns() {
        let out = text(&sample());
        let lines: Vec<&str> = out.lines().collect();
        // Reason lines end in column 78; the sender line's columns are Postfix's.
        assert_eq!(lines[5].len(), 78);
        assert_eq!(lines[8].len(), 78);
        assert_eq!(&lines[1][..18], "4cXyZ1BcDfz2Bq*   ");
        assert_eq!(&lines[1][18..26], "     512");
        // The dial-up script's test: active messages, and only those, match '^[^ ]*\*'.
        let active: Vec<&str> =
            lines.iter().filter(|l| l.split(' ').next().is_some_and(|w| w.contains('*'))).copied().collect();
        assert_eq!(active, [lines[1]]);
    }

    #[test]
    fn text_single_request_and_empty_queue() {
        let one = vec![entry("4cXyZ1BcDfz2Bq", QueueName::Incoming, "a@b", 1023, &[("c@d", RcptState::Pending, None)])];
        let want = "\
----Queue ID----- --Size-- ---Arrival Time---- --Sender/Recipient------
4cXyZ1BcDfz2Bq        1023 Sun Nov 22 04:38:26 a@b
                                               c@d

-- 0 Kbytes in 1 Request.
";
        assert_eq!(text(&one), want);
        assert_eq!(text(&[]), "Mail queue is empty\n");
        assert_eq!(json(&[]), "");
    }

    #[test]
    fn long_reasons_start_in_column_one_and_controls_are_masked() {
        let long = "x".repeat(90);
        let e = entry(
            "4cXyZ1BcDfz2Bq",
            QueueName::Deferred,
            "evil\x1b[2J@x",
            1,
            &[("a\rb@x", RcptState::Pending, Some(&long))],
        );
        let out = text(&[e]);
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].ends_with(" evil?[2J@x"));
        assert_eq!(lines[2], format!("({long})"));
        assert_eq!(lines[3], format!("{:47}a?b@x", ""));
    }

    #[test]
    fn maildrop_sender_from_uid_shows_the_login_name() {
        let mut e =
            entry("4cXyZ1FgHjz5Ft", QueueName::Maildrop, "", 300, &[("boss@example.com", RcptState::Pending, None)]);
        e.envelope.origin = Origin::Local { uid: 0 };
        e.envelope.submission = Some(Submission { full_name: None, sender_from_uid: true });
        assert!(text(&[e.clone()]).contains(" 04:38:26 root\n"));
        // The same envelope after cleanup (not in maildrop) is a real null sender.
        e.queue = QueueName::Incoming;
        assert!(text(&[e]).contains(" 04:38:26 MAILER-DAEMON\n"));
    }

    #[test]
    fn json_matches_postqueue_j() {
        let want = concat!(
            r#"{"queue_name": "active", "queue_id": "4cXyZ1BcDfz2Bq", "arrival_time": 1795322306, "message_size": 512, "forced_expire": false, "sender": "alice@office.example", "recipients": [{"address": "bob@example.org"}]}"#,
            "\n",
            r#"{"queue_name": "deferred", "queue_id": "4cXyZ1CdFgz3Cr", "arrival_time": 1795322306, "message_size": 2100, "forced_expire": false, "sender": "MAILER-DAEMON", "recipients": [{"address": "carol@example.org", "delay_reason": "deferred transport"}, {"address": "dave@example.org", "delay_reason": "deferred transport"}, {"address": "erin@example.net", "delay_reason": "connect to smtp.example.net[192.0.2.25]:587: Connection refused"}, {"address": "frank@example.net"}]}"#,
            "\n",
            r#"{"queue_name": "hold", "queue_id": "4cXyZ1DfGhz4Ds", "arrival_time": 1795322306, "message_size": 10000, "forced_expire": false, "sender": "root@office.example", "recipients": [{"address": "tom@office.example"}]}"#,
            "\n",
            r#"{"queue_name": "maildrop", "queue_id": "4cXyZ1FgHjz5Ft", "arrival_time": 1795322306, "message_size": 300, "forced_expire": false, "sender": "tom", "recipients": [{"address": "boss@example.com"}]}"#,
            "\n",
        );
        let got = json(&sample());
        assert_eq!(got, want);
        for line in got.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v["recipients"].is_array());
        }
    }

    #[test]
    fn json_escapes_what_it_must() {
        let e = entry(
            "4cXyZ1BcDfz2Bq",
            QueueName::Deferred,
            "a\"b\\c@x",
            1,
            &[("d@x", RcptState::Pending, Some("line\nbreak"))],
        );
        let got = json(&[e]);
        assert_eq!(got.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(v["sender"], "a\"b\\c@x");
        assert_eq!(v["recipients"][0]["delay_reason"], "line\nbreak");
    }
}
