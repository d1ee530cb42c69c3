//! STARTTLS and SASL AUTH to the smarthost through the real binary: the daemon holds the mail
//! (defer_transports), `tidemail flush --wait` sends it to a recording smarthost that is not
//! ours (tests/smtp/sink.py on aiosmtpd) with a throwaway CA and server certificate
//! (tests/common/pki.rs). A TLS or AUTH failure keeps the mail queued, never bounces it.
//! Every wait is bounded.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Output;

use common::Env;
use common::pki::pki;
use common::sink::Sink;

/// The sink as relayhost, with short waits so that tests take seconds; `extra` is more configuration.
fn quick(sink: &Sink, extra: &str) -> Env {
    Env::with_config(&format!(
        "{}disable_dns_lookups = true\nsmtp_connect_timeout = \"5s\"\nsmtp_helo_timeout = \"10s\"\n\
         smtp_starttls_timeout = \"10s\"\nsmtp_data_done_timeout = \"10s\"\n{extra}",
        sink.relayhost()
    ))
}

/// Appends `text` to the configuration (for settings naming files in the env's directory).
fn append_config(env: &Env, text: &str) {
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(&env.config, format!("{config}{text}")).unwrap();
}

/// `tidemail flush --wait`: exit code and everything it printed.
fn flush_wait(env: &Env) -> (i32, String) {
    let out: Output = env.tidemail(&["flush", "--wait", "--timeout", "60"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.code().unwrap_or(-1), format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
}

/// Submits one message to bob@remote.example and waits until the daemon holds it.
fn send_held(env: &Env, daemon: &common::Daemon) {
    let text = "From: alice@mail.test.example\nTo: bob@remote.example\nSubject: report\n\nThe figures.\n";
    env.submit(&["-f", "alice@mail.test.example", "bob@remote.example"], text.as_bytes());
    daemon.wait_until("the held message", || env.files("deferred").len() == 1);
}

/// The smtp delivery agent's log line for bob@remote.example after the flush.
fn smtp_line(log: &str) -> String {
    let line = log.lines().rfind(|l| l.contains("tidemail/smtp[") && l.contains("to=<bob@remote.example>"));
    line.unwrap_or_else(|| panic!("no smtp log line for bob@remote.example:\n{log}")).to_string()
}

/// Delivered: flush exits 0, the queue is empty, and the log has the status=sent line.
fn assert_delivered(env: &Env, daemon: &common::Daemon, sink: &Sink, flush: (i32, String)) {
    let (code, out) = flush;
    assert_eq!(code, 0, "{out}\n{}", daemon.log());
    assert!(out.contains("1 sent, 0 bounced, 0 deferred"), "{out}");
    assert!(env.files("deferred").is_empty() && env.files("active").is_empty());
    let line = smtp_line(&daemon.log());
    let relay = format!("relay=127.0.0.1[127.0.0.1]:{}", sink.port);
    assert!(line.contains(&relay) && line.contains("dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as M1)"), "{line}");
    assert_eq!(sink.records().len(), 1);
}

/// Not delivered: flush exits 75, the message waits in deferred, nothing bounced, nothing
/// reached the sink. Returns the deferral's log line (with its reason).
fn assert_kept(env: &Env, daemon: &common::Daemon, sink: &Sink, flush: (i32, String)) -> String {
    let (code, out) = flush;
    assert_eq!(code, 75, "{out}\n{}", daemon.log());
    assert!(out.contains("0 sent, 0 bounced, 1 deferred"), "{out}");
    assert_eq!(env.files("deferred").len(), 1, "{}", daemon.log());
    let log = daemon.log();
    assert!(!log.contains("non-delivery notification"), "{log}");
    assert!(!log.contains("status=bounced"), "{log}");
    assert!(sink.records().is_empty(), "the sink took the message");
    let line = smtp_line(&log);
    assert!(line.contains("status=deferred") && line.contains("dsn=4."), "{line}");
    line
}

/// The test CA where the daemon (mail_owner, as root) can read it.
fn readable_ca(env: &Env) -> Option<PathBuf> {
    let ca = std::fs::read_to_string(&pki()?.ca).unwrap();
    Some(env.write_file("ca.pem", &ca))
}

#[test]
fn encrypt_delivers_over_starttls() {
    let Some(sink) = Sink::start_tls(&[]) else { return };
    let env = quick(&sink, "smtp_tls_security_level = \"encrypt\"\n");
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    assert_delivered(&env, &daemon, &sink, flush_wait(&env));
    let records = sink.records();
    assert_eq!(records[0]["tls"], true, "{records:?}");
    assert_eq!(records[0]["rcpt_tos"], serde_json::json!(["bob@remote.example"]));
    assert_eq!(records[0]["auth_user"], serde_json::Value::Null);
}

#[test]
fn verify_with_the_test_ca_delivers() {
    let Some(sink) = Sink::start_tls(&[]) else { return };
    let env = quick(&sink, "");
    let ca = readable_ca(&env).unwrap();
    append_config(&env, &format!("smtp_tls_security_level = \"verify\"\nsmtp_tls_CAfile = \"{}\"\n", ca.display()));
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    assert_delivered(&env, &daemon, &sink, flush_wait(&env));
    assert_eq!(sink.records()[0]["tls"], true);
}

#[test]
fn verify_against_the_system_roots_keeps_the_mail() {
    let Some(sink) = Sink::start_tls(&[]) else { return };
    // No smtp_tls_CAfile: the system's CAs, which do not know the test CA.
    let env = quick(&sink, "smtp_tls_security_level = \"verify\"\n");
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    let flush = flush_wait(&env);
    let out = flush.1.clone();
    let line = assert_kept(&env, &daemon, &sink, flush);
    assert!(line.to_lowercase().contains("certificate"), "{line}");
    assert!(out.to_lowercase().contains("certificate"), "{out}");
    assert!(line.contains("dsn=4.7.5"), "{line}");
    // Still there for the next flush, still not bounced.
    let (code, out) = flush_wait(&env);
    assert_eq!(code, 75, "{out}");
    assert_eq!(env.files("deferred").len(), 1);
    assert!(!daemon.log().contains("non-delivery notification"), "{}", daemon.log());
}

#[test]
fn encrypt_without_starttls_keeps_the_mail() {
    let Some(sink) = Sink::start(&[]) else { return };
    let env = quick(&sink, "smtp_tls_security_level = \"encrypt\"\n");
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    let flush = flush_wait(&env);
    let out = flush.1.clone();
    let line = assert_kept(&env, &daemon, &sink, flush);
    assert!(line.contains("dsn=4.7.4"), "{line}");
    assert!(line.contains("TLS is required, but was not offered by host 127.0.0.1[127.0.0.1]"), "{line}");
    assert!(out.contains("TLS is required, but was not offered"), "{out}");
}

/// A configuration for AUTH PLAIN over TLS to `sink` with a password table holding
/// `credentials` for the relayhost; the table gets `mode` and, as root, belongs to mail_owner
/// (see `a_root_owned_password_table_as_in_postfix`). Returns the table's path.
fn with_password_table(sink: &Sink, credentials: &str, mode: u32) -> (Env, PathBuf) {
    password_table_env(sink, credentials, mode, true)
}

fn password_table_env(sink: &Sink, credentials: &str, mode: u32, give_to_mail_owner: bool) -> (Env, PathBuf) {
    let env = quick(sink, "");
    let table = env.write_file("sasl_passwd", &format!("[127.0.0.1]:{} {credentials}\n", sink.port));
    std::fs::set_permissions(&table, std::fs::Permissions::from_mode(mode)).unwrap();
    if common::is_root() && give_to_mail_owner {
        // The daemon reads the table after it dropped to mail_owner (nobody here).
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        nix::unistd::chown(&table, Some(nobody.uid), None).unwrap();
    }
    append_config(
        &env,
        &format!(
            "smtp_tls_security_level = \"encrypt\"\nsmtp_sasl_auth_enable = true\n\
             smtp_sasl_password_maps = [\"texthash:{}\"]\n",
            table.display()
        ),
    );
    (env, table)
}

#[test]
fn auth_plain_over_tls_with_the_password_table() {
    let Some(sink) = Sink::start_tls(&["--auth", "user:secret"]) else { return };
    let (env, _) = with_password_table(&sink, "user:secret", 0o600);
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    assert_delivered(&env, &daemon, &sink, flush_wait(&env));
    let records = sink.records();
    assert_eq!((&records[0]["tls"], &records[0]["auth_user"]), (&true.into(), &"user".into()), "{records:?}");
    assert_eq!(sink.auth_log(), "PLAIN\n");
}

#[test]
fn a_wrong_password_keeps_the_mail() {
    let Some(sink) = Sink::start_tls(&["--auth", "user:secret"]) else { return };
    let (env, _) = with_password_table(&sink, "user:wrong-pw", 0o600);
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    let flush = flush_wait(&env);
    let out = flush.1.clone();
    let line = assert_kept(&env, &daemon, &sink, flush);
    assert!(line.contains("535") && line.to_lowercase().contains("authentication"), "{line}");
    assert!(out.contains("535"), "{out}");
    assert_eq!(sink.auth_log(), "PLAIN\n");
    let log = daemon.log();
    assert!(!log.contains("wrong-pw") && !out.contains("wrong-pw"), "the password was shown:\n{log}\n{out}");
}

#[test]
fn a_password_table_readable_by_others_keeps_the_mail() {
    let Some(sink) = Sink::start_tls(&["--auth", "user:secret"]) else { return };
    let (env, table) = with_password_table(&sink, "user:secret", 0o644);
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    let flush = flush_wait(&env);
    let out = flush.1.clone();
    let line = assert_kept(&env, &daemon, &sink, flush);
    let file = table.display().to_string();
    for text in [&line, &out] {
        assert!(text.contains(&file) && text.contains("group or others") && text.contains("0644"), "{text}");
        assert!(!text.contains("user:secret"), "{text}");
    }
    assert_eq!(sink.auth_log(), "", "no AUTH may be tried");
}

#[test]
fn a_root_owned_password_table_as_in_postfix() {
    // Postfix's instructions (and config/dialup-office.toml's): the table owned by root, mode
    // 0600. Postfix opens it before giving up root; tidemail must be able to use it too.
    if !common::is_root() {
        return;
    }
    let Some(sink) = Sink::start_tls(&["--auth", "user:secret"]) else { return };
    let (env, _) = password_table_env(&sink, "user:secret", 0o600, false);
    let daemon = env.start_daemon();
    send_held(&env, &daemon);
    assert_delivered(&env, &daemon, &sink, flush_wait(&env));
    assert_eq!(sink.records()[0]["auth_user"], "user");
}
