//! cleanup end to end, in process: a scratch queue, a configuration, and in-memory tables.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::maps::search::testing::{TestMap, opener};
use crate::queue::{RcptState, layout};

struct Setup {
    _dir: tempfile::TempDir,
    store: QueueStore,
    cfg: Config,
}

fn setup(toml: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    layout::ensure(dir.path(), None).unwrap();
    let text = format!("queue_directory = \"{}\"\n{toml}\n", dir.path().display());
    let cfg = Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap();
    Setup { store: QueueStore::new(dir.path()), cfg, _dir: dir }
}

fn local_envelope(sender: &str, recipients: &[&str]) -> Envelope {
    Envelope::new(sender, recipients.iter().map(|r| Recipient::new(*r)).collect(), Origin::Local { uid: 0 }, 0)
}

fn smtp_envelope(client_addr: &str, sender: &str, recipients: &[&str]) -> Envelope {
    let origin = Origin::Smtp {
        client_name: "client.example".into(),
        client_addr: client_addr.into(),
        helo: Some("client.example".into()),
        protocol: "ESMTP".into(),
    };
    Envelope::new(sender, recipients.iter().map(|r| Recipient::new(*r)).collect(), origin, 0)
}

fn run(s: &Setup, envelope: Envelope, message: &str, tables: Vec<Arc<TestMap>>) -> Result<Cleaned, CleanupError> {
    let open = opener(tables);
    cleanup_with(&s.cfg, &s.store, envelope, &mut message.as_bytes(), &open)
}

/// The committed envelope and content.
fn read(s: &Setup, queue: QueueName, id: &str) -> (Envelope, String) {
    let (entry, mut reader) = s.store.open_message(queue, id).unwrap();
    let mut content = String::new();
    reader.read_to_string(&mut content).unwrap();
    (entry.envelope, content)
}

fn header_lines(content: &str) -> Vec<&str> {
    content.split("\n\n").next().unwrap().lines().collect()
}

fn addresses(env: &Envelope) -> Vec<(&str, &str, Option<&str>)> {
    env.recipients.iter().map(|r| (r.address.as_str(), r.original.as_str(), r.dsn.as_deref())).collect()
}

const VIRTUAL_COMPANY: &str = r#"
myhostname = "mail.test.com"
mydomain = "test.com"
myorigin = "$mydomain"
mydestination = ["$mydomain"]
virtual_maps = ["hash:/etc/postfix/virtual"]
"#;

fn virtual_table() -> Arc<TestMap> {
    TestMap::exact(
        "hash:/etc/postfix/virtual",
        &[("test.net", "anything"), ("tom@test.net", "tom"), ("test@test.net", "test"), ("white@test.net", "white")],
    )
}

#[test]
fn virtual_company() {
    let s = setup(VIRTUAL_COMPANY);
    let env = local_envelope("root", &["tom@test.net", "white@test.net", "unknown@test.net", "white@test.com"]);
    let done = run(&s, env, "Subject: hi\n\nbody\n", vec![virtual_table()]).unwrap();
    assert_eq!(done.disposition, Disposition::Queued);
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "root@test.com");
    assert_eq!(
        addresses(&env),
        [
            ("tom@test.com", "tom@test.net", None),
            ("white@test.com", "white@test.net", None),
            ("unknown@test.net", "unknown@test.net", Some("5.1.1")),
        ]
    );
    let unknown = &env.recipients[2];
    assert_eq!(unknown.state, RcptState::Pending);
    assert_eq!(unknown.reason.as_deref(), Some("User unknown in virtual alias table"));
}

#[test]
fn virtual_domain_that_is_also_local_is_not_bounced() {
    let s = setup(
        &VIRTUAL_COMPANY.replace(r#"mydestination = ["$mydomain"]"#, r#"mydestination = ["$mydomain", "test.net"]"#),
    );
    let done = run(&s, local_envelope("root", &["nobody@test.net"]), "\n", vec![virtual_table()]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(addresses(&env), [("nobody@test.net", "nobody@test.net", None)]);
}

const DIALUP: &str = r#"
myhostname = "yourhost.isp.com"
mydomain = "local.isp.com"
myorigin = "$mydomain"
mydestination = ["$myhostname", "localhost.$mydomain", "$mydomain"]
masquerade_domains = ["isp.com"]
masquerade_exceptions = ["root"]
"#;

#[test]
fn dialup_masquerading() {
    let s = setup(DIALUP);
    let message = "From: Joe User <user@yourhost.isp.com>\nTo: friend@elsewhere.org, local@yourhost.isp.com\n\
                   Cc: root@yourhost.isp.com\nSubject: hello\n\nbody\n";
    let env = local_envelope("user", &["friend@elsewhere.org", "colleague@yourhost.isp.com"]);
    let done = run(&s, env, message, vec![]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "user@isp.com");
    // envelope_recipient is not a masquerade class by default.
    assert_eq!(env.recipients[1].address, "colleague@yourhost.isp.com");
    let lines = header_lines(&content);
    assert!(lines.contains(&"From: Joe User <user@isp.com>"), "{content}");
    assert!(lines.contains(&"To: friend@elsewhere.org, local@isp.com"), "{content}");
    assert!(lines.contains(&"Cc: root@yourhost.isp.com"), "root is an exception: {content}");
    assert!(lines.contains(&"Subject: hello"), "{content}");

    // root's own mail keeps its host name.
    let done = run(&s, local_envelope("root", &["friend@elsewhere.org"]), "Subject: x\n\n", vec![]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "root@local.isp.com");
    assert!(header_lines(&content).contains(&"From: root@local.isp.com"), "{content}");
}

#[test]
fn masquerading_envelope_recipients_when_asked() {
    let s = setup(&format!(
        "{DIALUP}\nmasquerade_classes = [\"envelope_sender\", \"envelope_recipient\", \"header_sender\", \"header_recipient\"]\n"
    ));
    let done = run(&s, local_envelope("user", &["colleague@yourhost.isp.com"]), "\n", vec![]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(addresses(&env), [("colleague@isp.com", "colleague@yourhost.isp.com", None)]);
}

#[test]
fn canonical_maps_everywhere() {
    let s = setup(
        r#"
myhostname = "host.example.com"
mydomain = "example.com"
canonical_maps = ["hash:/etc/postfix/canonical"]
"#,
    );
    let canonical = TestMap::exact(
        "hash:/etc/postfix/canonical",
        &[("wietse@host.example.com", "Wietse.Venema@example.com"), ("@old.example.com", "@example.com")],
    );
    let message = "From: Wietse <wietse@host.example.com>\nTo: ann@old.example.com (Ann)\n\nbody\n";
    let env = local_envelope("wietse", &["ann@old.example.com", "wietse"]);
    let done = run(&s, env, message, vec![canonical]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "Wietse.Venema@example.com");
    assert_eq!(
        addresses(&env),
        [
            ("ann@example.com", "ann@old.example.com", None),
            ("Wietse.Venema@example.com", "wietse@host.example.com", None)
        ]
    );
    let lines = header_lines(&content);
    assert!(lines.contains(&"From: Wietse <Wietse.Venema@example.com>"), "{content}");
    assert!(lines.contains(&"To: ann@example.com (Ann)"), "{content}");
}

#[test]
fn sender_canonical_is_for_senders_only() {
    let s = setup(
        r#"
myhostname = "host.example.com"
sender_canonical_maps = ["hash:/etc/postfix/sender_canonical"]
"#,
    );
    let table = TestMap::exact("hash:/etc/postfix/sender_canonical", &[("joe", "joe.bloggs@example.net")]);
    let message = "From: joe\nTo: joe\n\n";
    let done = run(&s, local_envelope("joe", &["joe"]), message, vec![table]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "joe.bloggs@example.net");
    assert_eq!(env.recipients[0].address, "joe@host.example.com");
    let lines = header_lines(&content);
    assert!(lines.contains(&"From: joe.bloggs@example.net"), "{content}");
    assert!(lines.contains(&"To: joe@host.example.com"), "{content}");
}

#[test]
fn relocated_users_bounce() {
    let s = setup(
        "myhostname = \"mail.some.com\"\nmydomain = \"some.com\"\nrelocated_maps = [\"hash:/etc/postfix/relocated\"]\n",
    );
    let table = TestMap::exact("hash:/etc/postfix/relocated", &[("who@some.com", "onetwo@newone.com")]);
    let done = run(&s, local_envelope("root", &["who@some.com", "stays@some.com"]), "\n", vec![table]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.recipients[0].dsn.as_deref(), Some("5.1.6"));
    assert_eq!(env.recipients[0].reason.as_deref(), Some("User has moved to onetwo@newone.com"));
    assert_eq!(env.recipients[1].dsn, None);
}

#[test]
fn duplicates_after_rewriting_are_removed() {
    let s = setup(VIRTUAL_COMPANY);
    let env = local_envelope("root", &["tom@test.net", "TOM@test.com", "tom"]);
    let done = run(&s, env, "\n", vec![virtual_table()]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(addresses(&env), [("tom@test.com", "tom@test.net", None)]);
}

#[test]
fn duplicates_from_virtual_expansion_are_removed() {
    let s = setup("myhostname = \"host.example.com\"\nvirtual_alias_maps = [\"hash:/etc/postfix/virtual\"]\n");
    let table = TestMap::exact(
        "hash:/etc/postfix/virtual",
        &[
            ("all@example.com", "ann@example.org, bob@example.org, ann@example.org"),
            ("sales@example.com", "bob@example.org"),
        ],
    );
    let env = local_envelope("me", &["all@example.com", "sales@example.com", "carl@example.org"]);
    let done = run(&s, env, "\n", vec![table]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(
        addresses(&env),
        [
            ("ann@example.org", "all@example.com", None),
            ("bob@example.org", "all@example.com", None),
            ("carl@example.org", "carl@example.org", None)
        ]
    );
}

#[test]
fn trivial_rewriting_of_envelope_and_headers() {
    let s = setup("myhostname = \"host.example.com\"\nmydomain = \"example.com\"\nappend_dot_mydomain = true\n");
    let message = "To: a%b.example.org, site!user, bob@server, <@r1,@r2:c@d.example.org.>\n\n";
    let env = local_envelope("me", &["a%b.example.org", "site!user", "bob@server"]);
    let done = run(&s, env, message, vec![]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "me@host.example.com");
    let rcpts: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["a@b.example.org", "user@site.example.com", "bob@server.example.com"]);
    assert!(
        header_lines(&content)
            .contains(&"To: a@b.example.org, user@site.example.com, bob@server.example.com, <@r1,@r2:c@d.example.org>"),
        "{content}"
    );
}

#[test]
fn mailer_daemon_is_the_null_sender() {
    let s = setup("myhostname = \"host.example.com\"\n");
    let done = run(&s, local_envelope("MAILER-DAEMON", &["a@b.example"]), "\n", vec![]).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.sender, "");
}

// ---- header_checks and body_checks ----

const CHECKS: &str = r#"
myhostname = "host.example.com"
header_checks = ["regexp:/etc/postfix/header_checks"]
body_checks = ["regexp:/etc/postfix/body_checks"]
"#;

/// Pattern tables: the first (substring, action) pair whose substring the line contains.
fn checks(
    header: &'static [(&'static str, &'static str)],
    body: &'static [(&'static str, &'static str)],
) -> Vec<Arc<TestMap>> {
    let find = |rules: &'static [(&'static str, &'static str)]| {
        move |line: &str| rules.iter().find(|(pat, _)| line.contains(pat)).map(|(_, action)| action.to_string())
    };
    vec![
        TestMap::pattern("regexp:/etc/postfix/header_checks", find(header)),
        TestMap::pattern("regexp:/etc/postfix/body_checks", find(body)),
    ]
}

const MESSAGE: &str = "From: sender@host.example.com\nTo: rcpt@remote.example\nSubject: buy now\n\
                       X-Spam: yes\nX-Old: 1\n\nline one\nviagra\nline three\n";

#[test]
fn header_reject_bounces_every_recipient() {
    let s = setup(CHECKS);
    let env = local_envelope("sender", &["rcpt@remote.example", "other@remote.example"]);
    let done = run(&s, env, MESSAGE, checks(&[("Subject: buy", "REJECT no spam here")], &[])).unwrap();
    assert_eq!(done.disposition, Disposition::Queued);
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    for r in &env.recipients {
        assert_eq!(
            (r.state, r.dsn.as_deref(), r.reason.as_deref()),
            (RcptState::Pending, Some("5.7.1"), Some("no spam here"))
        );
    }
}

#[test]
fn header_reject_refuses_smtp_mail() {
    let s = setup(CHECKS);
    let env = smtp_envelope("192.0.2.99", "sender@remote.example", &["rcpt@host.example.com"]);
    let done = run(&s, env, MESSAGE, checks(&[("Subject: buy", "REJECT")], &[])).unwrap();
    assert_eq!(
        done.disposition,
        Disposition::Rejected { dsn: "5.7.1".into(), text: "message content rejected".into() }
    );
    assert!(s.store.list(QueueName::Incoming).unwrap().is_empty());
}

#[test]
fn temporary_reject_is_not_accepted() {
    let s = setup(CHECKS);
    let result = run(
        &s,
        local_envelope("sender", &["r@remote.example"]),
        MESSAGE,
        checks(&[("Subject", "REJECT 4.7.1 later")], &[]),
    );
    assert!(matches!(result, Err(CleanupError::Queue(_))), "{result:?}");
    assert!(s.store.list(QueueName::Incoming).unwrap().is_empty());
}

#[test]
fn hold_from_a_header_goes_to_hold() {
    let s = setup(CHECKS);
    let done =
        run(&s, local_envelope("sender", &["r@remote.example"]), MESSAGE, checks(&[("X-Spam", "HOLD")], &[])).unwrap();
    assert_eq!(done.disposition, Disposition::Held);
    assert_eq!(s.store.list(QueueName::Hold).unwrap(), [done.queue_id.as_str()]);
    assert!(s.store.list(QueueName::Incoming).unwrap().is_empty());
}

#[test]
fn hold_from_the_body_goes_to_hold() {
    let s = setup(CHECKS);
    let done =
        run(&s, local_envelope("sender", &["r@remote.example"]), MESSAGE, checks(&[], &[("viagra", "HOLD")])).unwrap();
    assert_eq!(done.disposition, Disposition::Held);
    assert_eq!(s.store.list(QueueName::Hold).unwrap(), [done.queue_id.as_str()]);
    assert!(s.store.list(QueueName::Incoming).unwrap().is_empty());
}

#[test]
fn discard_queues_nothing() {
    let s = setup(CHECKS);
    for tables in [checks(&[("X-Spam", "DISCARD")], &[]), checks(&[], &[("viagra", "DISCARD gone")])] {
        let done = run(&s, local_envelope("sender", &["r@remote.example"]), MESSAGE, tables).unwrap();
        assert_eq!(done.disposition, Disposition::Discarded);
        assert!(!done.queue_id.is_empty());
    }
    assert!(s.store.list(QueueName::Incoming).unwrap().is_empty());
    assert!(s.store.list(QueueName::Hold).unwrap().is_empty());
    assert!(std::fs::read_dir(s.store.dir(QueueName::Incoming)).unwrap().next().is_none(), "no temporary file left");
}

#[test]
fn header_edits() {
    let s = setup(CHECKS);
    let tables = checks(
        &[
            ("X-Spam", "IGNORE"),
            ("X-Old", "REPLACE X-New: 2"),
            ("Subject", "PREPEND X-Checked: subject seen"),
            ("To:", "WARN looking"),
            ("From:", "DUNNO"),
        ],
        &[("viagra", "REPLACE [removed]"), ("line one", "PREPEND line zero"), ("line three", "IGNORE")],
    );
    let done = run(&s, local_envelope("sender", &["rcpt@remote.example"]), MESSAGE, tables).unwrap();
    let (_, content) = read(&s, QueueName::Incoming, &done.queue_id);
    let (head, body) = content.split_once("\n\n").unwrap();
    let lines: Vec<&str> = head.lines().collect();
    assert!(!lines.iter().any(|l| l.starts_with("X-Spam")), "{head}");
    assert!(!lines.iter().any(|l| l.starts_with("X-Old")), "{head}");
    let subject = lines.iter().position(|l| *l == "Subject: buy now").unwrap();
    assert_eq!(lines[subject - 1], "X-Checked: subject seen");
    assert_eq!(lines[subject + 1], "X-New: 2");
    assert_eq!(body, "line zero\nline one\n[removed]\n");
}

#[test]
fn headers_added_by_cleanup_are_not_inspected() {
    let s = setup(CHECKS);
    let tables = checks(&[("Received", "REJECT"), ("Message-ID", "REJECT"), ("Date", "REJECT")], &[]);
    let done = run(&s, local_envelope("sender", &["r@remote.example"]), "Subject: x\n\nbody\n", tables).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.recipients[0].dsn, None);
}

#[test]
fn folded_headers_are_inspected_whole() {
    let s = setup(CHECKS);
    let tables = checks(&[("Subject: first\n\tsecond", "REJECT folded")], &[]);
    let done =
        run(&s, local_envelope("sender", &["r@remote.example"]), "Subject: first\n\tsecond\n\nbody\n", tables).unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.recipients[0].reason.as_deref(), Some("folded"));
}

#[test]
fn body_checks_stop_at_the_size_limit() {
    let s = setup(&format!("{CHECKS}\nbody_checks_size_limit = 20\n"));
    let message = "Subject: x\n\n0123456789\n0123456789\nviagra\n";
    let done = run(&s, local_envelope("sender", &["r@remote.example"]), message, checks(&[], &[("viagra", "REJECT")]))
        .unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert_eq!(env.recipients[0].dsn, None);
    assert!(content.ends_with("\n\n0123456789\n0123456789\nviagra\n"), "{content}");
}

#[test]
fn redirect_and_bcc() {
    let s = setup(CHECKS);
    let done = run(
        &s,
        local_envelope("sender", &["a@remote.example", "b@remote.example"]),
        MESSAGE,
        checks(&[("Subject", "BCC archive@host.example.com"), ("X-Spam", "REDIRECT boss@host.example.com")], &[]),
    )
    .unwrap();
    let (env, _) = read(&s, QueueName::Incoming, &done.queue_id);
    let rcpts: Vec<&str> = env.recipients.iter().map(|r| r.address.as_str()).collect();
    assert_eq!(rcpts, ["boss@host.example.com", "archive@host.example.com"]);
}

// ---- tables that cannot answer ----

#[test]
fn a_table_that_is_down_defers_and_queues_nothing() {
    for setting in [
        "virtual_alias_maps = [\"hash:down\"]",
        "canonical_maps = [\"hash:down\"]",
        "relocated_maps = [\"hash:down\"]",
        "header_checks = [\"hash:down\"]",
        "body_checks = [\"hash:down\"]",
        "virtual_alias_domains = [\"hash:down\"]",
        "masquerade_domains = [\"example.com\"]\nmasquerade_exceptions = [\"hash:down\"]",
    ] {
        let s = setup(&format!("myhostname = \"host.example.com\"\n{setting}\n"));
        let result = run(
            &s,
            local_envelope("me", &["a@x.example.com"]),
            "Subject: x\n\nbody\n",
            vec![TestMap::failing("hash:down")],
        );
        let Err(CleanupError::Queue(e)) = result else { panic!("{setting}: {result:?}") };
        assert!(e.to_string().contains("message not accepted, try again later"), "{setting}: {e}");
        assert!(s.store.list(QueueName::Incoming).unwrap().is_empty(), "{setting}");
    }
}

#[test]
fn a_table_that_cannot_be_opened_defers() {
    let s = setup("myhostname = \"host.example.com\"\nvirtual_alias_maps = [\"hash:/nonexistent/virtual\"]\n");
    let result = run(&s, local_envelope("me", &["a@b.example"]), "\n", vec![]);
    let Err(CleanupError::Queue(e)) = result else { panic!("{result:?}") };
    assert!(e.to_string().starts_with("virtual_alias_maps: cannot open table"), "{e}");
}

// ---- SMTP clients and header rewriting ----

#[test]
fn remote_clients_headers_are_left_alone() {
    let s = setup("myhostname = \"host.example.com\"\nmasquerade_domains = [\"example.com\"]\n");
    let message = "From: joe\nTo: ann@sub.example.com\n\nbody\n";
    let done =
        run(&s, smtp_envelope("192.0.2.99", "joe@sub.example.com", &["ann@sub.example.com"]), message, vec![]).unwrap();
    let (env, content) = read(&s, QueueName::Incoming, &done.queue_id);
    // The envelope is always rewritten.
    assert_eq!(env.sender, "joe@example.com");
    assert_eq!(content, message, "headers untouched, none added");
}

#[test]
fn remote_header_rewrite_domain() {
    let s = setup("myhostname = \"host.example.com\"\nremote_header_rewrite_domain = \"domain.invalid\"\n");
    let message = "From: joe\nTo: ann@sub.example.com\n\nbody\n";
    let done =
        run(&s, smtp_envelope("192.0.2.99", "joe@remote.example", &["ann@sub.example.com"]), message, vec![]).unwrap();
    let (_, content) = read(&s, QueueName::Incoming, &done.queue_id);
    assert!(header_lines(&content).contains(&"From: joe@domain.invalid"), "{content}");
}

#[test]
fn local_header_rewrite_clients() {
    let message = "From: joe\n\nbody\n";
    for (setting, client, local) in [
        ("local_header_rewrite_clients = [\"permit_mynetworks\"]\nmynetworks = [\"192.0.2.0/24\"]", "192.0.2.99", true),
        (
            "local_header_rewrite_clients = [\"permit_mynetworks\"]\nmynetworks = [\"192.0.2.0/24\"]",
            "198.51.100.1",
            false,
        ),
        ("local_header_rewrite_clients = [\"static:all\"]", "198.51.100.1", true),
        ("local_header_rewrite_clients = [\"check_address_map\", \"hash:pop\"]", "198.51.100.7", true),
        ("local_header_rewrite_clients = [\"check_address_map\", \"hash:pop\"]", "198.51.100.8", false),
        ("local_header_rewrite_clients = [\"permit_inet_interfaces\"]", "127.0.0.1", true),
        ("local_header_rewrite_clients = [\"permit_sasl_authenticated\"]", "127.0.0.1", false),
    ] {
        let s = setup(&format!("myhostname = \"host.example.com\"\n{setting}\n"));
        let tables = vec![
            TestMap::pattern("static:all", |_| Some("all".into())),
            TestMap::exact("hash:pop", &[("198.51.100.7", "ok")]),
        ];
        let done =
            run(&s, smtp_envelope(client, "joe@remote.example", &["ann@host.example.com"]), message, tables).unwrap();
        let (_, content) = read(&s, QueueName::Incoming, &done.queue_id);
        let rewritten = header_lines(&content).contains(&"From: joe@host.example.com");
        assert_eq!(rewritten, local, "{setting} / {client}: {content}");
    }
}

// ---- the pieces ----

#[test]
fn notes_wait_for_the_queue_id() {
    let mut notes = Notes::default();
    notes.info("one".into());
    notes.warning("two".into());
    assert_eq!(notes.pending_text(), "info: one\nwarning: two\n");
    notes.start("QID");
    assert_eq!(notes.pending_text(), "");
}

#[test]
fn body_pieces() {
    let mut input: &[u8] = b"short\nthis line is long\nend";
    let mut out = Vec::new();
    let mut pieces = Vec::new();
    loop {
        out.clear();
        if !read_piece(&mut input, &mut out, 8).unwrap() {
            break;
        }
        pieces.push(String::from_utf8(out.clone()).unwrap());
    }
    assert_eq!(pieces, ["short\n", "this lin", "e is lon", "g\n", "end"]);
}
