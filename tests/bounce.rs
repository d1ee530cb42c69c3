//! Non-delivery notices end to end: the real binary, a daemon, relocated users that bounce,
//! and the notice waiting in the queue (no delivery agent delivers it yet).

mod common;

use std::io::Read;

use common::{Daemon, Env, message};
use tidemail::queue::{Envelope, QueueName};

fn relocated_env() -> Env {
    // Local mail is held too, so that the notices (to local users) can be read in deferred.
    let env = Env::with_config(
        "relocated_maps = [\"texthash:$config_directory/relocated\"]\ndefer_transports = [\"smtp\", \"local\"]",
    );
    env.write_file("relocated", "gone@test.example new@elsewhere.example\n");
    env
}

/// Wait for `id`'s notice; returns the notice's queue ID once it is deferred.
fn notice_id(env: &Env, daemon: &Daemon, id: &str, whom: &str) -> String {
    let needle = format!("{id}: {whom} non-delivery notification: ");
    daemon.wait_log(&needle);
    let log = daemon.log();
    let line = log.lines().find(|l| l.contains(&needle)).unwrap();
    let new = line[line.find(&needle).unwrap() + needle.len()..].trim().to_string();
    daemon.wait_until("the notice deferred", || env.files("deferred").contains(&new));
    new
}

fn read(env: &Env, id: &str) -> (Envelope, String) {
    let (entry, mut reader) = env.store().open_message(QueueName::Deferred, id).unwrap();
    let mut content = String::new();
    reader.read_to_string(&mut content).unwrap();
    (entry.envelope, content)
}

#[test]
fn relocated_recipient_gets_the_sender_a_notice() {
    let env = relocated_env();
    let daemon = env.start_daemon();
    env.submit(&["-f", "tom@test.example", "-V", "tom-envid-1", "gone@test.example"], &message(1, ""));
    let id = daemon.queue_id_of("<test-1@test.example>");
    let new = notice_id(&env, &daemon, &id, "sender");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    let bounced = log.find("status=bounced (User has moved to new@elsewhere.example)").expect(&log);
    let notified = log.find("tidemail/bounce[").expect(&log);
    assert!(bounced < notified, "{log}");
    assert!(log.contains(&format!("{new}: from=<>, size=")), "{log}");

    let (envelope, content) = read(&env, &new);
    assert_eq!(envelope.sender, "");
    assert_eq!(envelope.recipients.len(), 1);
    assert_eq!(envelope.recipients[0].address, "tom@test.example");
    for field in [
        "From: MAILER-DAEMON@mail.test.example (Mail Delivery System)\n",
        "Subject: Undelivered Mail Returned to Sender\n",
        "To: tom@test.example\n",
        "Auto-Submitted: auto-replied\n",
        "Content-Type: multipart/report; report-type=delivery-status;\n",
        "Original-Envelope-Id: tom-envid-1\nReporting-MTA: dns; mail.test.example\n",
        &format!("X-Tidemail-Queue-ID: {id}\nX-Tidemail-Sender: rfc822; tom@test.example\nArrival-Date: "),
        "Final-Recipient: rfc822; gone@test.example\nAction: failed\nStatus: 5.1.6\n",
        "Diagnostic-Code: X-Tidemail; User has moved to new@elsewhere.example\n",
        "<gone@test.example>: User has moved to new@elsewhere.example\n",
        "Content-Type: message/rfc822\n",
        "Subject: test 1\n",
        "body of message 1\n",
    ] {
        assert!(content.contains(field), "{field:?} missing in:\n{content}");
    }
    assert!(content.contains("Message-ID: <") && content.contains(&format!(".{new}@mail.test.example>")));
    assert!(content.starts_with("Date: "), "{content}");
}

#[test]
fn notify_never_means_no_notice() {
    let env = relocated_env();
    let daemon = env.start_daemon();
    env.submit(&["-f", "tom@test.example", "-N", "never", "gone@test.example"], &message(2, ""));
    let id = daemon.queue_id_of("<test-2@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(log.contains("status=bounced"), "{log}");
    assert!(!log.contains("non-delivery notification"), "{log}");
    assert!(env.files("incoming").is_empty() && env.files("deferred").is_empty());
}

#[test]
fn ret_hdrs_returns_headers_only() {
    let env = relocated_env();
    let daemon = env.start_daemon();
    env.submit(&["-f", "tom@test.example", "-R", "hdrs", "gone@test.example"], &message(3, ""));
    let id = daemon.queue_id_of("<test-3@test.example>");
    let new = notice_id(&env, &daemon, &id, "sender");
    let (_, content) = read(&env, &new);
    assert!(content.contains("Content-Type: text/rfc822-headers\n"), "{content}");
    assert!(content.contains("Subject: test 3\n"), "{content}");
    assert!(!content.contains("body of message 3"), "{content}");
    assert!(!content.contains("message/rfc822"), "{content}");
}

#[test]
fn null_sender_bounce_goes_to_the_postmaster() {
    let env = relocated_env();
    let daemon = env.start_daemon();
    env.submit(&["-f", "<>", "gone@test.example"], &message(4, ""));
    let id = daemon.queue_id_of("<test-4@test.example>");
    let new = notice_id(&env, &daemon, &id, "postmaster");
    let (envelope, content) = read(&env, &new);
    assert_eq!(envelope.sender, "");
    assert_eq!(envelope.recipients[0].address, "postmaster@mail.test.example");
    assert!(content.contains("X-Tidemail-Sender: rfc822; <>\n"), "{content}");
    assert!(content.contains("body of message 4"), "{content}");
}

#[test]
fn a_failed_notice_goes_to_the_postmaster_once() {
    let env = relocated_env();
    let daemon = env.start_daemon();
    let notice = "From: MAILER-DAEMON@elsewhere.example (Mail Delivery System)\n\
                  Auto-Submitted: auto-replied\nSubject: Undelivered Mail Returned to Sender\n";
    env.submit(&["-f", "<>", "gone@test.example"], &message(5, notice));
    let id = daemon.queue_id_of("<test-5@test.example>");
    // A bounce that cannot be delivered: the postmaster hears of it (2bounce), as in Postfix.
    let new = notice_id(&env, &daemon, &id, "postmaster");
    let (envelope, content) = read(&env, &new);
    assert_eq!(
        (envelope.sender.as_str(), envelope.recipients[0].address.as_str()),
        ("", "postmaster@mail.test.example")
    );
    assert!(content.contains("Subject: Postmaster Copy: Undelivered Mail\n"), "{content}");
    assert_eq!(daemon.log().matches("non-delivery notification").count(), 1, "{}", daemon.log());
}
