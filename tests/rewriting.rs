//! Address rewriting and content checks end to end: the real binary, the real tables
//! (texthash, hash built with `tidemail map build`, regexp), the example configurations in
//! config/, and the mail log lines Postfix would write.

mod common;

use std::fs;
use std::io::Read;
use std::time::Duration;

use common::{Env, message, wait_for};
use regex::Regex;
use tidemail::queue::{Envelope, QueueName, RcptState};

const WAIT: Duration = Duration::from_secs(10);

/// A message's envelope and content, wherever it is queued.
fn read(env: &Env, queue: QueueName, id: &str) -> (Envelope, String) {
    let (entry, mut reader) = env.store().open_message(queue, id).unwrap();
    let mut content = String::new();
    reader.read_to_string(&mut content).unwrap();
    (entry.envelope, content)
}

fn header_lines(content: &str) -> Vec<&str> {
    content.split("\n\n").next().unwrap().lines().collect()
}

fn build(env: &Env, table: &str) {
    let out = env.tidemail(&["map", "build", table]).output().unwrap();
    assert!(out.status.success(), "map build {table}: {}", String::from_utf8_lossy(&out.stderr));
}

fn example(name: &str) -> String {
    fs::read_to_string(format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

// ---- The virtual company (001) ----

fn virtual_company() -> Env {
    let env = Env::with_full_config(&example("virtual-company.toml"));
    for table in ["virtual", "aliases"] {
        env.write_file(&format!("tables/{table}"), &example(&format!("tables/{table}")));
    }
    build(&env, &format!("hash:{}/tables/virtual", env.dir.path().display()));
    env
}

#[test]
fn the_example_configurations_load() {
    for name in ["virtual-company.toml", "dialup-office.toml"] {
        let path = format!("{}/config/{name}", env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new(common::BIN).args(["-c", &path, "config", "check"]).output().unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn virtual_domain_users_and_unknown_users() {
    let env = virtual_company();
    let daemon = env.start_daemon();
    env.submit(&["-f", "root", "tom@test.net", "white@test.net", "unknown@test.net"], &message(1, ""));
    let id = daemon.queue_id_of("<test-1@test.example>");
    daemon.wait_log("status=bounced");
    daemon.wait_until("the message deferred", || env.files("deferred").contains(&id));
    let log = daemon.log();

    // The unknown user is bounced by the error transport, the way Postfix's error(8) logs it.
    let bounced = Regex::new(&format!(
        r"tidemail/error\[\d+\]: {id}: to=<unknown@test\.net>, relay=none, delay=[0-9.]+, delays=[0-9.]+/[0-9.]+/0/0, dsn=5\.1\.1, status=bounced \(User unknown in virtual alias table\)"
    ))
    .unwrap();
    assert!(bounced.is_match(&log), "{log}");
    // tom and white are local accounts: tom@test.net became tom@test.com. Local delivery waits
    // until newaliases has built the alias table.
    assert!(log.contains(&format!("{id}: to=<tom@test.com>, orig_to=<tom@test.net>, relay=local")), "{log}");
    assert!(log.contains(&format!("{id}: to=<white@test.com>, orig_to=<white@test.net>, relay=local")), "{log}");
    assert!(log.contains("(run \"tidemail map build\" or newaliases)"), "{log}");
    assert!(log.contains(&format!("{id}: from=<root@test.com>")), "{log}");

    let (envelope, _) = read(&env, QueueName::Deferred, &id);
    let states: Vec<(&str, RcptState)> = envelope.recipients.iter().map(|r| (r.address.as_str(), r.state)).collect();
    assert_eq!(
        states,
        [
            ("tom@test.com", RcptState::Pending),
            ("white@test.com", RcptState::Pending),
            ("unknown@test.net", RcptState::Bounced)
        ]
    );

    // Another attempt for tom and white: the unknown user is not bounced (or logged) again.
    let attempts = |log: &str| log.matches(&format!("{id}: to=<tom@test.com>")).count();
    env.submit(&["-q"], b"");
    daemon.wait_until("a second attempt", || attempts(&daemon.log()) == 2);
    assert_eq!(daemon.log().matches("status=bounced").count(), 1, "{}", daemon.log());
}

#[test]
fn a_message_for_unknown_users_only_is_removed() {
    let env = virtual_company();
    let daemon = env.start_daemon();
    env.submit(&["nobody@test.net"], &message(2, ""));
    let id = daemon.queue_id_of("<test-2@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(log.contains(&format!("{id}: to=<nobody@test.net>, relay=none")), "{log}");
    assert!(log.contains("dsn=5.1.1, status=bounced (User unknown in virtual alias table)"), "{log}");
    // The message is gone; what may be left is the non-delivery notice to its sender.
    assert!(log.contains(&format!("{id}: sender non-delivery notification: ")), "{log}");
    assert!(![env.files("deferred"), env.files("incoming")].concat().contains(&id));
}

// ---- The dial-up office (000, 5.1) ----

#[test]
fn dialup_office_masquerades_host_names() {
    let env = Env::with_full_config(&example("dialup-office.toml"));
    let daemon = env.start_daemon();
    let headers = "From: A User <user@yourhost.isp.com>\nTo: friend@elsewhere.org\n\
                   Cc: colleague@yourhost.isp.com, root@yourhost.isp.com\n";
    env.submit(&["-f", "user@yourhost.isp.com", "friend@elsewhere.org"], &message(3, headers));
    env.submit(&["-f", "root", "friend@elsewhere.org"], &message(4, ""));
    let user = daemon.queue_id_of("<test-3@test.example>");
    let root = daemon.queue_id_of("<test-4@test.example>");
    daemon.wait_until("both deferred", || {
        let deferred = env.files("deferred");
        deferred.contains(&user) && deferred.contains(&root)
    });

    let (envelope, content) = read(&env, QueueName::Deferred, &user);
    assert_eq!(envelope.sender, "user@isp.com");
    let lines = header_lines(&content);
    assert!(lines.contains(&"From: A User <user@isp.com>"), "{content}");
    assert!(lines.contains(&"Cc: colleague@isp.com, root@yourhost.isp.com"), "{content}");
    assert!(daemon.log().contains(&format!("{user}: from=<user@isp.com>")), "{}", daemon.log());

    // root is an exception (masquerade_exceptions): its mail keeps the host's domain.
    let (envelope, content) = read(&env, QueueName::Deferred, &root);
    assert_eq!(envelope.sender, "root@local.isp.com");
    assert!(header_lines(&content).contains(&"From: root@local.isp.com"), "{content}");
}

// ---- canonical and relocated ----

#[test]
fn canonical_maps_give_firstname_lastname() {
    let env = Env::with_config(r#"canonical_maps = ["texthash:$config_directory/canonical"]"#);
    env.write_file(
        "canonical",
        "# login names to the names people know\nwietse@mail.test.example  Wietse.Venema@test.example\n\
         @old.test.example  @test.example\n",
    );
    let daemon = env.start_daemon();
    let headers = "From: Wietse <wietse@mail.test.example>\nTo: ann@old.test.example (Ann)\n";
    env.submit(&["-f", "wietse", "ann@old.test.example"], &message(5, headers));
    let id = daemon.queue_id_of("<test-5@test.example>");
    daemon.wait_until("deferred", || env.files("deferred").contains(&id));
    let (envelope, content) = read(&env, QueueName::Deferred, &id);
    assert_eq!(envelope.sender, "Wietse.Venema@test.example");
    assert_eq!(envelope.recipients[0].address, "ann@test.example");
    assert_eq!(envelope.recipients[0].original, "ann@old.test.example");
    let lines = header_lines(&content);
    assert!(lines.contains(&"From: Wietse <Wietse.Venema@test.example>"), "{content}");
    assert!(lines.contains(&"To: ann@test.example (Ann)"), "{content}");
    assert!(lines.contains(&"Subject: test 5"), "{content}");
}

#[test]
fn relocated_users_bounce_with_their_new_address() {
    let env = Env::with_config(r#"relocated_maps = ["texthash:$config_directory/relocated"]"#);
    env.write_file("relocated", "who@mail.test.example onetwo@newone.com\n");
    let daemon = env.start_daemon();
    env.submit(&["who@mail.test.example"], &message(6, ""));
    let id = daemon.queue_id_of("<test-6@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(
        log.contains(&format!("{id}: to=<who@mail.test.example>, relay=none, "))
            && log.contains("dsn=5.1.6, status=bounced (User has moved to onetwo@newone.com)"),
        "{log}"
    );
    assert!(log.contains("tidemail/error["), "{log}");
}

// ---- header_checks and body_checks ----

fn checks_env() -> Env {
    let env = Env::with_config(
        r#"header_checks = ["regexp:$config_directory/header_checks"]
body_checks = ["regexp:$config_directory/body_checks"]"#,
    );
    env.write_file(
        "header_checks",
        "/^Subject: reject me/ REJECT Go away\n\
         /^Subject: hold me/ HOLD waiting for the boss\n\
         /^Subject: discard me/ DISCARD\n\
         /^Subject: warn me/ WARN watch this\n\
         /^Subject: prepend me/ PREPEND X-Tag: prepended\n\
         /^X-Secret:/ IGNORE\n\
         /^X-Old:/ REPLACE X-New: replaced\n",
    );
    env.write_file("body_checks", "/^bad words/ REJECT 5.7.0 mind your language\n");
    env
}

#[test]
fn header_reject_bounces_local_mail() {
    let env = checks_env();
    let daemon = env.start_daemon();
    env.submit(&["-f", "sender@mail.test.example", "r@remote.example"], &message(7, "Subject: reject me\n"));
    let id = daemon.queue_id_of("<test-7@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    let reject = format!(
        "{id}: reject: header Subject: reject me from local; from=<sender@mail.test.example> to=<r@remote.example>: 5.7.1 Go away"
    );
    assert!(log.contains(&reject), "{log}");
    assert!(log.contains(&format!("{id}: to=<r@remote.example>, relay=none, ")), "{log}");
    assert!(log.contains("dsn=5.7.1, status=bounced (Go away)"), "{log}");
}

#[test]
fn body_reject_bounces_local_mail() {
    let env = checks_env();
    let daemon = env.start_daemon();
    env.submit(&["r@remote.example"], b"Subject: hello\nMessage-ID: <body@test.example>\n\nfine\nbad words here\n");
    let id = daemon.queue_id_of("<body@test.example>");
    daemon.wait_log(&format!("{id}: removed"));
    let log = daemon.log();
    assert!(log.contains(&format!("{id}: reject: body bad words here from local;")), "{log}");
    assert!(log.contains("dsn=5.7.0, status=bounced (mind your language)"), "{log}");
}

#[test]
fn header_hold_puts_the_message_on_hold() {
    let env = checks_env();
    let daemon = env.start_daemon();
    env.submit(&["r@remote.example"], &message(8, "Subject: hold me\n"));
    let id = daemon.queue_id_of("<test-8@test.example>");
    daemon.wait_log(&format!("{id}: hold: header Subject: hold me from local;"));
    daemon.wait_until("the message in hold", || env.files("hold").contains(&id));
    assert!(daemon.log().contains(": waiting for the boss"), "{}", daemon.log());
    // The queue manager never sees it.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!daemon.log().contains(&format!("{id}: from=")), "{}", daemon.log());
    assert!(env.files("incoming").is_empty() && env.files("deferred").is_empty());
}

#[test]
fn header_discard_drops_the_message() {
    let env = checks_env();
    let daemon = env.start_daemon();
    env.submit(&["r@remote.example"], &message(9, "Subject: discard me\n"));
    let id = daemon.queue_id_of("<test-9@test.example>");
    daemon.wait_log(&format!("{id}: discard: header Subject: discard me from local;"));
    wait_for("maildrop emptied", WAIT, || env.files("maildrop").is_empty());
    std::thread::sleep(Duration::from_millis(300));
    for queue in ["incoming", "active", "deferred", "hold"] {
        assert!(env.files(queue).is_empty(), "{queue}: {:?}", env.files(queue));
    }
    assert!(!daemon.log().contains(&format!("{id}: from=")), "{}", daemon.log());
}

#[test]
fn header_edits_and_warnings() {
    let env = checks_env();
    let daemon = env.start_daemon();
    let headers = "Subject: prepend me\nX-Secret: 42\nX-Old: 1\n";
    env.submit(&["r@remote.example"], &message(10, headers));
    env.submit(&["r@remote.example"], &message(11, "Subject: warn me\n"));
    let edited = daemon.queue_id_of("<test-10@test.example>");
    let warned = daemon.queue_id_of("<test-11@test.example>");
    daemon.wait_until("both deferred", || {
        let deferred = env.files("deferred");
        deferred.contains(&edited) && deferred.contains(&warned)
    });
    let (_, content) = read(&env, QueueName::Deferred, &edited);
    let lines = header_lines(&content);
    let subject = lines.iter().position(|l| *l == "Subject: prepend me").unwrap();
    assert_eq!(lines[subject - 1], "X-Tag: prepended");
    assert!(lines.contains(&"X-New: replaced"), "{content}");
    assert!(!content.contains("X-Secret") && !content.contains("X-Old"), "{content}");
    let log = daemon.log();
    assert!(log.contains(&format!("{warned}: warning: header Subject: warn me from local;")), "{log}");
    assert!(log.contains(": watch this"), "{log}");
    assert!(log.contains(&format!("{edited}: replace: header X-Old: 1 from local;")), "{log}");
}

// ---- Tables that cannot answer ----

#[test]
fn a_table_that_cannot_be_opened_keeps_mail_in_maildrop() {
    // hash: without its compiled file (nobody ran `tidemail map build`).
    // The flush releases held mail too: a smarthost that refuses keeps it queued, off the net.
    let env = Env::with_config(
        "virtual_alias_maps = [\"hash:$config_directory/virtual\"]\nrelayhost = \"[127.0.0.1]:1\"\ndisable_dns_lookups = true",
    );
    let source = env.write_file("virtual", "tom@mail.test.example tom@elsewhere.example\n");
    let daemon = env.start_daemon();
    env.submit(&["tom@mail.test.example"], &message(12, ""));
    daemon.wait_log("message not accepted, try again later");
    daemon.wait_log("will retry");
    assert_eq!(env.files("maildrop").len(), 1);
    assert!(env.files("incoming").is_empty() && env.files("deferred").is_empty());
    assert!(!daemon.log().contains("bounced"), "{}", daemon.log());

    // Once the table is built, a flush (`sendmail -q`) sends the waiting message through at
    // once instead of after pickup's retry delay.
    build(&env, &format!("hash:{}", source.display()));
    assert!(env.tidemail(&["flush"]).status().unwrap().success());
    let id = daemon.queue_id_of("<test-12@test.example>");
    daemon.wait_until("deferred", || env.files("deferred").contains(&id));
    let (envelope, _) = read(&env, QueueName::Deferred, &id);
    assert_eq!(envelope.recipients[0].address, "tom@elsewhere.example");
}

#[test]
fn a_failing_table_defers_and_never_bounces() {
    let env = Env::with_config(r#"header_checks = ["fail:broken"]"#);
    let daemon = env.start_daemon();
    env.submit(&["r@remote.example"], &message(13, ""));
    daemon.wait_log("header_checks map lookup problem -- message not accepted, try again later");
    daemon.wait_log("will retry");
    assert_eq!(env.files("maildrop").len(), 1);
    assert!(!daemon.log().contains("bounced"), "{}", daemon.log());
}

#[test]
fn virtual_company_root_goes_to_tom_once_newaliases_ran() {
    let env = virtual_company();
    let out = env.as_name("newaliases", &[]).output().unwrap();
    assert!(out.status.success(), "newaliases: {}", String::from_utf8_lossy(&out.stderr));
    let aliases = format!("hash:{}/tables/aliases", env.dir.path().display());
    let out = env.tidemail(&["map", "query", &aliases, "root"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "tom");
}
