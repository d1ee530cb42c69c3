//! The mail log as log analysers read it: maillog_file, syslog_name, and Debian's pflogsumm
//! (installed by .ci/test) counting what the daemon did.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Env, message, wait_for};

fn run_pflogsumm(args: &[&str], log: &std::path::Path) -> Option<String> {
    let out = match Command::new("pflogsumm").args(args).arg(log).output() {
        Ok(out) => out,
        Err(_) => {
            eprintln!("skipped: pflogsumm is not installed (.ci/test installs it)");
            return None;
        }
    };
    assert!(out.status.success(), "pflogsumm: {}", String::from_utf8_lossy(&out.stderr));
    Some(String::from_utf8(out.stdout).unwrap())
}

fn two_deferred_messages(syslog_name: &str) -> (Env, std::path::PathBuf) {
    let dir_log = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
    let env = Env::with_config(&format!("maillog_file = \"{}\"\nsyslog_name = \"{syslog_name}\"\n", dir_log.display()));
    let daemon = env.start_daemon();
    for n in 0..2 {
        assert!(env.sendmail(&["-f", "tom@test.example", "r@remote.example"], &message(n, "")).status.success());
    }
    wait_for("two deferrals in the maillog file", Duration::from_secs(10), || {
        std::fs::read_to_string(&dir_log).unwrap_or_default().matches("status=deferred").count() == 2
    });
    drop(daemon);
    (env, dir_log)
}

fn grand_total(report: &str, what: &str) -> Option<u64> {
    report.lines().find(|l| l.split_whitespace().nth(1) == Some(what))?.split_whitespace().next()?.parse().ok()
}

#[test]
fn pflogsumm_counts_with_postfix_name() {
    let (_env, log) = two_deferred_messages("postfix");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.lines().all(|l| l.contains(" postfix/")), "{text}");
    assert!(text.contains("postfix/pickup[") && text.contains("postfix/qmgr["), "{text}");
    let Some(report) = run_pflogsumm(&[], &log) else { return };
    assert_eq!(grand_total(&report, "received"), Some(2), "{report}");
    assert_eq!(grand_total(&report, "deferred"), Some(2), "{report}");
    assert_eq!(grand_total(&report, "senders"), Some(1), "{report}");
    let _ = std::fs::remove_file(log);
}

#[test]
fn pflogsumm_counts_with_our_name() {
    let (_env, log) = two_deferred_messages("tidemail");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("tidemail/pickup[") && !text.contains("postfix/"), "{text}");
    let Some(report) = run_pflogsumm(&["--syslog-name=tidemail"], &log) else { return };
    assert_eq!(grand_total(&report, "received"), Some(2), "{report}");
    assert_eq!(grand_total(&report, "deferred"), Some(2), "{report}");
    let _ = std::fs::remove_file(log);
}

#[test]
fn pflogsumm_counts_deliveries_and_bounces_through_the_smarthost() {
    let Some(sink) = common::sink::Sink::start(&["--reply", "gone@remote.example=550 5.1.1 No such user"]) else {
        return;
    };
    let log = tempfile::NamedTempFile::new().unwrap().into_temp_path().keep().unwrap();
    let env = Env::with_config(&format!("maillog_file = \"{}\"\n{}", log.display(), sink.relayhost()));
    let daemon = env.start_daemon();
    for (n, to) in ["a@remote.example", "b@remote.example", "gone@remote.example"].iter().enumerate() {
        assert!(env.sendmail(&["-f", "tom@test.example", to], &message(n, "")).status.success());
    }
    wait_for("three held messages", Duration::from_secs(10), || env.files("deferred").len() == 3);
    let out = env.tidemail(&["flush", "--wait", "--timeout", "60"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    drop(daemon);
    let text = std::fs::read_to_string(&log).unwrap();
    let Some(report) = run_pflogsumm(&["--syslog-name=tidemail"], &log) else { return };
    assert_eq!(grand_total(&report, "delivered"), Some(2), "{report}\n{text}");
    assert_eq!(grand_total(&report, "bounced"), Some(1), "{report}\n{text}");
    // The relay pflogsumm names is the smarthost as Postfix would log it.
    assert!(report.contains("127.0.0.1[127.0.0.1]"), "{report}");
    let _ = std::fs::remove_file(log);
}
