//! Hold and flush through the real binary against a recording smarthost that is not ours
//! (tests/smtp/sink.py on aiosmtpd): mail waits while the smtp transport is held, leaves on a
//! flush, survives a smarthost that is down or cuts the link, bounces only what a server
//! refused for good, and expires by its failure time. Every wait is bounded.

mod common;

use std::process::Output;
use std::time::Duration;

use common::sink::{Sink, free_port};
use common::{Env, wait_for};

const MESSAGE: &[u8] = b"From: alice@mail.test.example\nSubject: report\n\nThe figures are attached.\n";

/// Fast retries and short waits, so that tests take seconds.
fn quick(relayhost: &str, extra: &str) -> Env {
    Env::with_config(&format!(
        "{relayhost}disable_dns_lookups = true\nsmtp_connect_timeout = \"5s\"\nsmtp_helo_timeout = \"10s\"\n\
         smtp_data_done_timeout = \"30s\"\n{extra}"
    ))
}

fn flush_wait(env: &Env) -> (i32, String) {
    let out: Output = env.tidemail(&["flush", "--wait", "--timeout", "60"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

fn send(env: &Env, to: &str, subject: &str) {
    let text = format!("From: alice@mail.test.example\nTo: {to}\nSubject: {subject}\n\nHello.\n");
    env.submit(&["-f", "alice@mail.test.example", to], text.as_bytes());
}

fn queued(env: &Env) -> usize {
    ["incoming", "active", "deferred", "hold"].iter().map(|q| env.files(q).len()).sum()
}

#[test]
fn held_until_flush_then_flush_wait_delivers_everything() {
    let Some(sink) = Sink::start(&[]) else { return };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    for n in 0..3 {
        send(&env, &format!("bob{n}@remote.example"), &format!("held {n}"));
    }
    daemon.wait_until("three held messages", || env.files("deferred").len() == 3);
    assert!(daemon.log().contains("status=deferred (deferred transport)"), "{}", daemon.log());
    assert!(sink.messages().is_empty(), "held mail was sent");

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("flush: 3 message(s)"), "{out}");
    assert!(out.contains("3 sent, 0 bounced, 0 deferred"), "{out}");
    assert_eq!(sink.messages().len(), 3);
    assert_eq!(queued(&env), 0);
    let log = daemon.log();
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{}", sink.port);
    let sent: Vec<&str> = log.lines().filter(|l| l.contains("tidemail/smtp[") && l.contains("status=sent")).collect();
    assert_eq!(sent.len(), 3, "{log}");
    assert!(sent.iter().all(|l| l.contains(&relay) && l.contains("dsn=2.0.0") && l.contains("delays=")), "{log}");
    assert!(sent[0].contains("(250 2.0.0 Ok: queued as M"), "{}", sent[0]);
    assert_eq!(log.matches(": removed").count(), 3, "{log}");
}

#[test]
fn smarthost_down_keeps_mail_without_bounces_until_a_later_flush() {
    if common::sink::python().is_none() {
        return;
    }
    let port = free_port();
    let env = quick(&format!("relayhost = \"[127.0.0.1]:{port}\"\n"), "");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "one");
    send(&env, "carol@remote.example", "two");
    daemon.wait_until("two held messages", || env.files("deferred").len() == 2);

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("0 sent, 0 bounced, 2 deferred"), "{out}");
    assert!(out.contains("Connection refused"), "{out}");
    assert_eq!(env.files("deferred").len(), 2);
    let log = daemon.log();
    assert!(!log.contains("non-delivery notification"), "{log}");
    assert!(!log.contains("status=bounced"), "{log}");
    // The dead smarthost is tried once, not once per message.
    assert_eq!(log.matches("is down:").count(), 1, "{log}");

    let sink = Sink::start_on(port, &[]).unwrap();
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(queued(&env), 0);
}

#[test]
fn a_4xx_waits_a_5xx_bounces_to_the_sender() {
    let Some(sink) = Sink::start(&[
        "--reply",
        "busy@remote.example=452 4.2.2 Mailbox full",
        "--reply",
        "gone@remote.example=550 5.1.1 No such user",
    ]) else {
        return;
    };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    env.submit(
        &["-f", "alice@mail.test.example", "ok@remote.example", "busy@remote.example", "gone@remote.example"],
        MESSAGE,
    );
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("Mailbox full"), "{out}");

    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0["rcpt_tos"], serde_json::json!(["ok@remote.example"]));
    let log = daemon.log();
    let line =
        |to: &str| log.lines().find(|l| l.contains(&format!("to=<{to}>")) && l.contains("tidemail/smtp[")).unwrap();
    assert!(line("ok@remote.example").contains("status=sent"), "{log}");
    assert!(
        line("busy@remote.example")
            .contains("dsn=4.2.2, status=deferred (host 127.0.0.1[127.0.0.1] said: 452 4.2.2 Mailbox full"),
        "{log}"
    );
    assert!(
        line("gone@remote.example")
            .contains("dsn=5.1.1, status=bounced (host 127.0.0.1[127.0.0.1] said: 550 5.1.1 No such user"),
        "{log}"
    );
    assert!(log.contains("sender non-delivery notification"), "{log}");

    // The message waits for busy@ only; the notice to alice is queued (alice is local).
    let store = env.store();
    let waiting = store.read_entry(tidemail::queue::QueueName::Deferred, &env.files("deferred")[0]);
    let mut found_notice = false;
    let mut found_original = false;
    for queue in [tidemail::queue::QueueName::Deferred, tidemail::queue::QueueName::Incoming] {
        for id in env.files(queue.dir_name()) {
            let entry = store.read_entry(queue, &id).unwrap();
            if entry.envelope.sender.is_empty() {
                found_notice = entry.envelope.recipients[0].address == "alice@mail.test.example";
            } else {
                let pending: Vec<&str> = entry.envelope.pending().map(|(_, r)| r.address.as_str()).collect();
                assert_eq!(pending, ["busy@remote.example"]);
                found_original = true;
            }
        }
    }
    assert!(waiting.is_ok() && found_notice && found_original, "{log}");
}

#[test]
fn a_link_cut_during_data_is_retried_and_delivered_once() {
    let Some(sink) = Sink::start(&["--cut-after", "200", "--cut-times", "1"]) else { return };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    // Larger than the socket buffers, so the cut is seen while the body is being written.
    let body: String = (0..120_000).map(|n| format!("line {n:06} of a long report\n")).collect();
    let text = format!("From: alice@mail.test.example\nSubject: long\n\n{body}");
    env.submit(&["-f", "alice@mail.test.example", "bob@remote.example"], text.as_bytes());
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("while sending message body"), "{out}");
    assert!(sink.messages().is_empty());
    // The final dot was never sent: no doubt about a duplicate.
    assert!(!daemon.log().contains("possible duplicate"), "{}", daemon.log());

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    let received = String::from_utf8_lossy(&messages[0].1).replace("\r\n", "\n");
    assert!(received.ends_with(&body), "content changed in transit");
}

#[test]
fn a_cut_the_client_cannot_place_is_retried_and_flagged() {
    // A small message fits in the socket buffers: the client learns of the cut only while
    // waiting for the reply to its final dot, so it cannot know whether the server took it.
    let Some(sink) = Sink::start(&["--cut-after", "100", "--cut-times", "1"]) else { return };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "short");
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert!(out.contains("message may be sent more than once"), "{out}");
    daemon.wait_log("possible duplicate");
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn a_reply_lost_after_the_final_dot_is_a_possible_duplicate() {
    let Some(sink) = Sink::start(&["--drop-after-dot", "--cut-times", "1"]) else { return };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "maybe twice");
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert!(std::fs::read_to_string(sink.dir.path().join("dropped.log")).is_ok(), "the sink saw no final dot");
    daemon.wait_log("possible duplicate: the connection to 127.0.0.1[127.0.0.1]");
    let mailq = env.mailq();
    assert!(mailq.contains("(possible duplicate: "), "{mailq}");

    // Retried (smtp_duplicate_suspect_action = retry, the default), with the trace kept.
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn possible_duplicates_can_be_held_for_the_admin() {
    let Some(sink) = Sink::start(&["--drop-after-dot", "--cut-times", "1"]) else { return };
    let env = quick(&sink.relayhost(), "smtp_duplicate_suspect_action = \"hold\"\n");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "hold me");
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert_eq!(env.files("hold").len(), 1, "{}", daemon.log());
    assert!(daemon.log().contains("held: possible duplicate"), "{}", daemon.log());
    // A flush does not release held mail.
    let (_, _) = flush_wait(&env);
    assert_eq!(env.files("hold").len(), 1);
    assert!(sink.messages().is_empty());
}

#[test]
fn lifetime_counts_failed_attempts_then_delay_notice_then_expiry() {
    let Some(sink) = Sink::start(&["--reply", "busy@remote.example=452 4.2.2 Mailbox full"]) else { return };
    // Not held: retries run by themselves, a second apart.
    let env = quick(
        &sink.relayhost(),
        "defer_transports = []\nminimal_backoff_time = \"1s\"\nmaximal_backoff_time = \"1s\"\nqueue_run_delay = \"1s\"\n\
         delay_warning_time = \"1s\"\nmaximal_queue_lifetime = \"3s\"\n",
    );
    let config = std::fs::read_to_string(&env.config).unwrap().replace("defer_transports = [\"smtp\"]\n", "");
    std::fs::write(&env.config, config).unwrap();
    let daemon = env.start_daemon();
    send(&env, "busy@remote.example", "will expire");
    wait_for("the delay notice and the expiry", Duration::from_secs(40), || {
        let log = daemon.log();
        log.contains("status=expired") && log.contains("sender non-delivery notification")
    });
    let log = daemon.log();
    assert!(log.contains("sender delay notification"), "{log}");
    let delay_at = log.find("sender delay notification").unwrap();
    let expired_at = log.find("status=expired").unwrap();
    assert!(delay_at < expired_at, "{log}");
    assert_eq!(log.matches("sender delay notification").count(), 1, "{log}");
    assert!(log.contains("from=<alice@mail.test.example>, status=expired, returned to sender"), "{log}");
    assert!(sink.messages().is_empty());
}

#[test]
fn held_time_does_not_count_toward_the_lifetime() {
    let Some(sink) = Sink::start(&[]) else { return };
    // Lifetimes of one second: a Postfix with these would bounce the held message at once.
    let env = quick(&sink.relayhost(), "maximal_queue_lifetime = \"1s\"\nqueue_run_delay = \"1s\"\n");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "offline a while");
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    // Held through several queue scans, well past the lifetime.
    let scans = |log: &str| log.matches("status=deferred (deferred transport)").count();
    daemon.wait_until("three more queue scans", || scans(&daemon.log()) >= 3);
    assert!(!daemon.log().contains("expired"), "{}", daemon.log());
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert_eq!(sink.messages().len(), 1);
}

#[test]
fn flush_wait_without_a_daemon_delivers_the_queue_itself() {
    let Some(sink) = Sink::start(&[]) else { return };
    let env = quick(&sink.relayhost(), "");
    let log = env.dir.path().join("mail.log");
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{config}maillog_file = \"{}\"\n", log.display())).unwrap();
    send(&env, "bob@remote.example", "cron on a laptop");
    send(&env, "carol@remote.example", "cron on a laptop");
    // Plain flush needs the daemon.
    let out = env.tidemail(&["flush"]).output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the mail system is down"));

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("2 sent"), "{out}");
    assert_eq!(sink.messages().len(), 2);
    assert_eq!(queued(&env), 0);
    assert!(env.files("maildrop").is_empty());
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(text.matches("status=sent").count(), 2, "{text}");
}

#[test]
fn no_dns_query_with_disable_dns_lookups() {
    if common::sink::python().is_none() {
        return;
    }
    // A "DNS server" that only counts packets.
    let dns = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    dns.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let server = dns.local_addr().unwrap().to_string();
    let received = |dns: &std::net::UdpSocket| {
        let mut buf = [0u8; 512];
        let mut n = 0;
        while dns.recv_from(&mut buf).is_ok() {
            n += 1;
        }
        n
    };
    for (disable, expect_queries) in [(true, false), (false, true)] {
        let env = Env::with_config(&format!(
            "relayhost = \"relay.isp-for-tests.net\"\ndisable_dns_lookups = {disable}\nmaillog_file = \"/dev/null\"\n"
        ));
        send(&env, "bob@remote.example", "no dns");
        let out =
            env.tidemail(&["flush", "--wait", "--timeout", "60"]).env("TIDEMAIL_DNS_SERVER", &server).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(75), "{text}");
        assert!(text.contains("Host or domain name not found"), "{text}");
        let queries = received(&dns);
        assert_eq!(queries > 0, expect_queries, "disable_dns_lookups = {disable}: {queries} queries");
    }
}

#[test]
fn the_dialup_office_example_holds_then_flushes_to_the_smarthost() {
    let Some(sink) = Sink::start(&[]) else { return };
    // config/dialup-office.toml as shipped, with the ISP's smarthost replaced by the sink.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config/dialup-office.toml")).unwrap();
    let text = text.replace("relayhost = \"[201.110.1.100]\"", &format!("relayhost = \"[127.0.0.1]:{}\"", sink.port));
    assert!(text.contains(&format!(":{}\"", sink.port)), "the example's relayhost line changed");
    let env = Env::with_full_config(&text);
    let daemon = env.start_daemon();
    let message = b"From: A User <user@yourhost.isp.com>\nTo: friend@elsewhere.org\nSubject: hi\n\nHello.\n";
    env.submit(&["-f", "user@yourhost.isp.com", "friend@elsewhere.org"], message);
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    assert!(sink.messages().is_empty());

    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    // Masqueraded on the way out, so replies come back to the provider's mailbox.
    assert_eq!(messages[0].0["mail_from"], "user@isp.com");
    assert_eq!(messages[0].0["rcpt_tos"], serde_json::json!(["friend@elsewhere.org"]));
    assert!(String::from_utf8_lossy(&messages[0].1).contains("From: A User <user@isp.com>"));
    assert_eq!(queued(&env), 0);
}

#[test]
fn flush_wait_outlasts_a_slow_smarthost() {
    // The daemon's control socket bounds reading a request, not the wait for the outcome.
    // 12 s: longer than that bound (10 s), shorter than quick()'s smtp_data_done_timeout.
    let Some(sink) = Sink::start(&["--slow-data", "12"]) else { return };
    let env = quick(&sink.relayhost(), "");
    let daemon = env.start_daemon();
    send(&env, "bob@remote.example", "slow");
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 sent"), "{out}");
}
