//! The way in, end to end through the real binary: sendmail → maildrop → daemon pickup →
//! cleanup → queue, with mailq showing each step.

mod common;

use std::io::Read;
use std::time::Duration;

use common::{Env, message, wait_for};
use tidemail::queue::QueueName;

fn content_of(env: &Env, queue: QueueName, id: &str) -> String {
    let (_, mut content) = env.store().open_message(queue, id).unwrap();
    let mut text = String::new();
    content.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn submitted_while_daemon_down_then_picked_up_at_start() {
    let env = Env::new();
    let out = env.sendmail(&["-i", "-f", "tom@test.example", "jerry@remote.example"], &message(1, ""));
    assert!(out.status.success(), "sendmail: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(env.files("maildrop").len(), 1);

    // mailq sees the message before the daemon ever ran.
    let q = env.mailq();
    assert!(q.contains("tom@test.example") && q.contains("jerry@remote.example"), "{q}");
    // Postfix truncates the total: a small message is "0 Kbytes".
    assert!(q.contains("-- 0 Kbytes in 1 Request."), "{q}");

    let daemon = env.start_daemon();
    wait_for("pickup", Duration::from_secs(10), || {
        env.files("maildrop").is_empty() && env.files("deferred").len() == 1
    });
    let id = env.files("deferred").remove(0);
    daemon.wait_log(&format!("{id}: to=<jerry@remote.example>"));
    let log = daemon.log();
    let uid = nix::unistd::getuid().as_raw();
    assert!(log.contains("tidemail/pickup["), "{log}");
    assert!(log.contains(&format!("{id}: uid={uid} from=<tom@test.example>")), "{log}");
    assert!(log.contains(&format!("{id}: message-id=<test-1@test.example>")), "{log}");
    assert!(log.contains(&format!("{id}: from=<tom@test.example>, size=")), "{log}");
    assert!(log.contains("nrcpt=1 (queue active)"), "{log}");
    assert!(log.contains("relay=none, delay="), "{log}");
    assert!(log.contains("dsn=4.3.2, status=deferred (deferred transport)"), "{log}");

    let q = env.mailq();
    assert!(q.starts_with("----Queue ID----- --Size-- ---Arrival Time----"), "{q}");
    assert!(q.contains(&id) && q.contains("(deferred transport)"), "{q}");

    // Held mail does not use up its attempts.
    let entry = env.store().read_entry(QueueName::Deferred, &id).unwrap();
    assert_eq!(entry.envelope.attempts, 0);
}

#[test]
fn picked_up_promptly_while_daemon_runs_and_headers_added() {
    let env = Env::new();
    let daemon = env.start_daemon();
    let out = env.sendmail(&["-F", "Tom Cat", "jerry@remote.example"], b"Subject: no date\n\nhi\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    wait_for("pickup of a new message", Duration::from_secs(3), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    let text = content_of(&env, QueueName::Deferred, &id);
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).unwrap().unwrap().name;
    assert!(text.starts_with("Received: by mail.test.example (tidemail, from userid"), "{text}");
    assert!(text.contains(&format!("From: Tom Cat <{user}@mail.test.example>\n")), "{text}");
    assert!(text.contains("\nDate: "), "{text}");
    assert!(text.contains("Message-ID: <") && text.contains(&format!(".{id}@mail.test.example>")), "{text}");
    assert!(text.ends_with("\nhi\n"), "{text}");
    let entry = env.store().read_entry(QueueName::Deferred, &id).unwrap();
    assert_eq!(entry.envelope.sender, format!("{user}@mail.test.example"));
    drop(daemon);
}

#[test]
fn dash_t_takes_to_cc_bcc_and_removes_bcc() {
    let env = Env::new();
    let msg = b"To: Anne <anne@remote.example>, bob@remote.example\nCc: \"Carl, Jr\" <carl@remote.example>\nBcc: secret@remote.example\nSubject: t\n\nbody\n";
    let out = env.sendmail(&["-t", "-f", "tom@test.example", "extra@remote.example"], msg);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = env.files("maildrop").remove(0);
    let entry = env.store().read_entry(QueueName::Maildrop, &id).unwrap();
    let rcpts: Vec<_> = entry.envelope.recipients.iter().map(|r| r.address.as_str()).collect();
    for want in [
        "extra@remote.example",
        "anne@remote.example",
        "bob@remote.example",
        "carl@remote.example",
        "secret@remote.example",
    ] {
        assert!(rcpts.contains(&want), "{want} missing from {rcpts:?}");
    }
    let text = content_of(&env, QueueName::Maildrop, &id);
    assert!(!text.to_ascii_lowercase().contains("bcc:"), "{text}");
    assert!(!text.contains("secret@"), "{text}");
    assert!(text.contains("Cc: \"Carl, Jr\" <carl@remote.example>\n"), "{text}");
}

#[test]
fn dot_ends_input_unless_dash_i() {
    let env = Env::new();
    assert!(env.sendmail(&["a@remote.example"], b"Subject: x\n\nbefore\n.\nafter\n").status.success());
    assert!(env.sendmail(&["-oi", "b@remote.example"], b"Subject: y\n\nbefore\n.\nafter\n").status.success());
    let store = env.store();
    let mut bodies: Vec<String> =
        env.files("maildrop").iter().map(|id| content_of(&env, QueueName::Maildrop, id)).collect();
    bodies.sort_by_key(|b| b.len());
    assert!(bodies[0].ends_with("before\n"), "{}", bodies[0]);
    assert!(bodies[1].ends_with("before\n.\nafter\n"), "{}", bodies[1]);
    drop(store);
}

#[test]
fn crlf_input_is_stored_with_lf() {
    let env = Env::new();
    assert!(env.sendmail(&["a@remote.example"], b"Subject: x\r\n\r\nline1\r\nline2\r\n").status.success());
    let id = env.files("maildrop").remove(0);
    assert_eq!(content_of(&env, QueueName::Maildrop, &id), "Subject: x\n\nline1\nline2\n");
}

#[test]
fn mailq_json_is_one_object_per_message() {
    let env = Env::new();
    for n in 0..2 {
        assert!(env.sendmail(&["-f", "s@test.example", "r@remote.example"], &message(n, "")).status.success());
    }
    let out = env.tidemail(&["queue", "--json"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["queue_name"], "maildrop");
    assert_eq!(lines[0]["sender"], "s@test.example");
    assert_eq!(lines[0]["recipients"][0]["address"], "r@remote.example");
}

#[test]
fn empty_queue_says_so() {
    let env = Env::new();
    assert_eq!(env.mailq().trim(), "Mail queue is empty");
}

#[test]
fn sendmail_bs_speaks_smtp_on_stdin() {
    let env = Env::new();
    let dialogue = b"EHLO client\r\nMAIL FROM:<tom@test.example> SIZE=100\r\nRCPT TO:<a@remote.example> NOTIFY=FAILURE\r\nDATA\r\nSubject: bs\r\n\r\n..dot line\r\n.\r\nQUIT\r\n";
    let out = env.sendmail(&["-bs"], dialogue);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("220 mail.test.example ESMTP tidemail\r\n"), "{text}");
    assert!(text.contains("250-PIPELINING\r\n") && text.contains("250 DSN\r\n"), "{text}");
    assert!(text.contains("354 End data with <CR><LF>.<CR><LF>\r\n"), "{text}");
    assert!(text.contains("250 2.0.0 Ok: queued as "), "{text}");
    assert!(text.ends_with("221 2.0.0 Bye\r\n"), "{text}");
    let id = env.files("maildrop").remove(0);
    assert_eq!(content_of(&env, QueueName::Maildrop, &id), "Subject: bs\n\n.dot line\n");
    let entry = env.store().read_entry(QueueName::Maildrop, &id).unwrap();
    assert_eq!(entry.envelope.sender, "tom@test.example");
    assert_eq!(entry.envelope.recipients[0].notify, vec![tidemail::queue::Notify::Failure]);
}

#[test]
fn sendmail_bs_rejects_out_of_order_commands() {
    let env = Env::new();
    let out = env.sendmail(&["-bs"], b"HELO x\r\nRCPT TO:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nMAIL FROM:<a@b.example>\r\nDATA\r\nHELO\r\nQUIT\r\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("503 5.5.1 Error: need MAIL command"), "{text}");
    assert!(text.contains("503 5.5.1 Error: nested MAIL command"), "{text}");
    assert!(text.contains("503 5.5.1 Error: need RCPT command"), "{text}");
    assert!(text.contains("501 5.5.4 Syntax: HELO hostname"), "{text}");
    assert!(env.files("maildrop").is_empty());
}

#[test]
fn dsn_options_are_recorded() {
    let env = Env::new();
    let out = env.sendmail(
        &["-N", "success,delay", "-R", "hdrs", "-V", "env-42", "-f", "s@test.example", "r@remote.example"],
        &message(1, ""),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let id = env.files("maildrop").remove(0);
    let env_ = env.store().read_entry(QueueName::Maildrop, &id).unwrap().envelope;
    assert_eq!(env_.envid.as_deref(), Some("env-42"));
    assert_eq!(env_.ret, Some(tidemail::queue::Ret::Hdrs));
    assert_eq!(env_.recipients[0].notify, vec![tidemail::queue::Notify::Success, tidemail::queue::Notify::Delay]);
}
