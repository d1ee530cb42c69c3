//! Nothing acknowledged is ever lost: kill -9 at any point of pickup, damaged queue files,
//! restarts, a second daemon, signals.

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::time::Duration;

use common::{Env, message, wait_for};
use nix::sys::signal::Signal;
use tidemail::queue::QueueName;

/// Message-IDs of every message in the queue (any state but corrupt).
fn message_ids(env: &Env) -> Vec<String> {
    let store = env.store();
    let mut ids = Vec::new();
    for queue in [QueueName::Maildrop, QueueName::Incoming, QueueName::Active, QueueName::Deferred, QueueName::Hold] {
        for id in env.files(queue.dir_name()) {
            let (_, mut content) = store.open_message(queue, &id).unwrap();
            let mut text = String::new();
            content.read_to_string(&mut text).unwrap();
            let mid = text.lines().find(|l| l.starts_with("Message-ID: ")).unwrap().to_string();
            ids.push(mid);
        }
    }
    ids
}

#[test]
fn kill_9_during_pickup_loses_nothing() {
    const N: usize = 150;
    let env = Env::new();
    for n in 0..N {
        let out = env.sendmail(&["-f", "s@test.example", "r@remote.example"], &message(n, ""));
        assert!(out.status.success());
    }
    // Kill the daemon in the middle of picking up, three times, then let it finish.
    for _ in 0..3 {
        let mut daemon = env.start_daemon();
        let before = env.files("maildrop").len();
        wait_for("some pickups", Duration::from_secs(10), || env.files("maildrop").len() < before || before == 0);
        daemon.kill9();
    }
    let daemon = env.start_daemon();
    wait_for("maildrop to drain", Duration::from_secs(30), || env.files("maildrop").is_empty());
    wait_for("incoming/active to drain", Duration::from_secs(30), || {
        env.files("incoming").is_empty() && env.files("active").is_empty()
    });
    drop(daemon);
    let found: HashSet<String> = message_ids(&env).into_iter().collect();
    for n in 0..N {
        assert!(found.contains(&format!("Message-ID: <test-{n}@test.example>")), "message {n} lost");
    }
    assert!(env.files("corrupt").is_empty(), "{:?}", env.files("corrupt"));
}

#[test]
fn truncated_maildrop_file_is_set_aside_and_daemon_keeps_going() {
    let env = Env::new();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    assert!(env.sendmail(&["r@remote.example"], &message(2, "")).status.success());
    let bad = env.files("maildrop").remove(0);
    let path = env.queue.join("maildrop").join(&bad);
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();

    let daemon = env.start_daemon();
    wait_for("the good message", Duration::from_secs(10), || env.files("deferred").len() == 1);
    wait_for("the bad one set aside", Duration::from_secs(10), || env.files("corrupt").len() == 1);
    assert!(env.files("corrupt")[0].ends_with(&bad));
    daemon.wait_log(&format!("maildrop/{bad}: "));
    assert!(daemon.log().contains("moved to corrupt/"), "{}", daemon.log());
    // Still serving.
    assert!(env.tidemail(&["flush"]).status().unwrap().success());
}

#[test]
fn garbled_deferred_file_is_set_aside_on_flush() {
    let env = Env::new();
    let daemon = env.start_daemon();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    wait_for("deferral", Duration::from_secs(10), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    let path = env.queue.join("deferred").join(&id);
    let mut bytes = fs::read(&path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"\"sender\"").expect("envelope record");
    bytes[at + 3] ^= 0x20; // one bit inside the envelope record
    fs::write(&path, &bytes).unwrap();
    assert!(env.tidemail(&["flush"]).status().unwrap().success());
    wait_for("set aside", Duration::from_secs(10), || env.files("corrupt").len() == 1);
    daemon.wait_log(&format!("deferred/{id}: corrupt queue file"));
    assert!(env.files("deferred").is_empty());
}

#[test]
fn a_second_daemon_refuses_to_start() {
    let env = Env::new();
    let daemon = env.start_daemon();
    let out = env.tidemail(&["daemon"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("already running on this queue (pid {})", daemon.pid())), "{err}");
}

#[test]
fn sigterm_stops_cleanly_and_restart_finds_everything() {
    let env = Env::new();
    let mut daemon = env.start_daemon();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    wait_for("deferral", Duration::from_secs(10), || env.files("deferred").len() == 1);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
    assert!(daemon.log().contains("terminating on signal 15"), "{}", daemon.log());
    let again = env.start_daemon();
    again.wait_log("daemon started");
    // The restarted daemon's first queue run takes the held message through the queue
    // manager again; once that is done it is back in deferred, the only copy.
    again.wait_until("the held message back in deferred", || {
        env.files("deferred").len() == 1 && env.files("incoming").is_empty() && env.files("active").is_empty()
    });
    again.wait_log("status=deferred (deferred transport)");
}

#[test]
fn sighup_reloads_and_a_broken_config_is_refused() {
    let env = Env::new();
    let daemon = env.start_daemon();
    let original = fs::read_to_string(&env.config).unwrap();
    fs::write(&env.config, format!("{original}syslog_name = \"postfix\"\n")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("postfix/master[");
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    daemon.wait_log("postfix/pickup[");

    fs::write(&env.config, format!("{original}no_such_parameter = 1\n")).unwrap();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_log("reload refused");
    assert!(daemon.log().contains("no_such_parameter"), "{}", daemon.log());
    fs::write(&env.config, &original).unwrap(); // so that the flush command itself can start
    assert!(env.tidemail(&["flush"]).status().unwrap().success(), "daemon died on a bad reload");
}

#[test]
fn flush_with_daemon_down_exits_75() {
    let env = Env::new();
    let out = env.tidemail(&["flush"]).output().unwrap();
    assert_eq!(out.status.code(), Some(75));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mail system is down"));
    let out = env.sendmail(&["-q"], b"");
    assert_eq!(out.status.code(), Some(75));
}

#[test]
fn flush_releases_held_mail_for_another_attempt() {
    let env = Env::new();
    let daemon = env.start_daemon();
    assert!(env.sendmail(&["r@remote.example"], &message(1, "")).status.success());
    wait_for("deferral", Duration::from_secs(10), || env.files("deferred").len() == 1);
    let id = env.files("deferred").remove(0);
    let count = |log: &str| log.matches(&format!("{id}: to=<r@remote.example>")).count();
    let before = count(&daemon.log());
    assert!(env.sendmail(&["-q"], b"").status.success());
    wait_for("a second attempt", Duration::from_secs(10), || count(&daemon.log()) > before);
}
