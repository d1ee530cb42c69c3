//! The lists with Postfix's order, results and texts. Tables are texthash files in a temp dir;
//! nothing here sends a DNS query.

use std::path::Path;
use std::sync::Arc;

use super::*;

const OUTSIDE: &str = "203.0.113.9";
const INSIDE: &str = "192.168.1.20";

/// A configuration for example.com with the LAN 192.168.1.0/24; `extra` lines win.
fn config(extra: &str) -> Arc<Config> {
    let text = format!(
        "{extra}\nmyhostname = \"mail.example.com\"\ninet_interfaces = [\"loopback-only\"]\n\
         mydestination = [\"$myhostname\", \"example.com\", \"localhost\"]\n"
    );
    let mut text = text;
    if !extra.contains("mynetworks =") {
        text.push_str("mynetworks = [\"127.0.0.0/8\", \"192.168.1.0/24\"]\n");
    }
    if !extra.contains("local_recipient_maps") {
        text.push_str("local_recipient_maps = []\n");
    }
    if !extra.contains("alias_maps") {
        text.push_str("alias_maps = []\n");
    }
    Arc::new(Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap())
}

fn restrictions(extra: &str) -> Restrictions {
    Restrictions::new(config(extra)).unwrap()
}

fn client(addr: &str) -> Client {
    Client {
        addr: addr.parse().unwrap(),
        name: "unknown".into(),
        helo: Some("pc1.example.com".into()),
        sasl_username: None,
        tls: false,
        improper_pipelining: false,
    }
}

fn query<'a>(stage: Stage, client: &'a Client, sender: Option<&'a str>, recipient: Option<&'a str>) -> Query<'a> {
    Query { stage, client, sender, recipient, etrn: None }
}

/// The RCPT verdict, all stages asked in turn as the session does with smtpd_delay_reject.
async fn rcpt(r: &Restrictions, client: &Client, sender: &str, recipient: &str) -> Verdict {
    for stage in [Stage::Connect, Stage::Helo, Stage::Mail, Stage::Rcpt] {
        let verdict = r.check(&query(stage, client, Some(sender), Some(recipient))).await;
        if verdict != Verdict::Accept {
            return verdict;
        }
    }
    Verdict::Accept
}

fn reply(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Reject { code, dsn, text } => format!("{code} {dsn} {text}"),
        other => format!("{other:?}"),
    }
}

fn table(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    format!("texthash:{}", path.display())
}

#[tokio::test]
async fn the_default_configuration_is_not_an_open_relay() {
    let cfg = config("");
    assert_eq!(cfg.mynetworks_style(), "host");
    assert_eq!(Config::defaults().mynetworks_style(), "host");
    let r = Restrictions::new(cfg).unwrap();
    let outsider = client(OUTSIDE);
    assert_eq!(
        reply(&rcpt(&r, &outsider, "a@b.example", "user@remote.example").await),
        "454 4.7.1 <user@remote.example>: Relay access denied"
    );
    assert_eq!(rcpt(&r, &outsider, "a@b.example", "user@example.com").await, Verdict::Accept);
    assert_eq!(rcpt(&r, &outsider, "a@b.example", "postmaster").await, Verdict::Accept);
    // The LAN relays.
    assert_eq!(rcpt(&r, &client(INSIDE), "a@example.com", "user@remote.example").await, Verdict::Accept);
    // An authenticated roaming laptop relays.
    let mut laptop = client(OUTSIDE);
    laptop.sasl_username = Some("alice".into());
    assert_eq!(rcpt(&r, &laptop, "a@example.com", "user@remote.example").await, Verdict::Accept);
}

#[tokio::test]
async fn relay_tricks_get_no_relay_permission() {
    let extra = "relay_domains = [\"partner.org\"]\nsmtpd_relay_restrictions = []\n\
                 smtpd_recipient_restrictions = [\"permit_mynetworks\", \"reject_unauth_destination\"]";
    let r = restrictions(extra);
    let outsider = client(OUTSIDE);
    for trick in [
        "user%remote.example@example.com",
        "user%remote.example%example.com@example.com",
        "@example.com:user@remote.example",
        "@example.com,@mail.example.com:user@remote.example",
        "remote.example!user@example.com",
        "remote.example!user@EXAMPLE.COM",
        "\"user@remote.example\"@example.com",
        "\"user%remote.example\"@example.com",
        "user@example.com@remote.example",
        "user@[1.2.3.4]",
        "user@[IPv6:2001:db8::1]",
        "USER@REMOTE.EXAMPLE",
        "user@remote.example.",
        "user@example.com..",
        "user@",
        "user%partner.org@example.com",
        "partner.org!user@example.com",
        "user%remote.example",
        "remote.example!user",
    ] {
        let verdict = rcpt(&r, &outsider, "a@b.example", trick).await;
        assert_eq!(reply(&verdict), format!("554 5.7.1 <{trick}>: Relay access denied"), "{trick}");
    }
    for fine in [
        "user@example.com",
        "User@EXAMPLE.COM",
        "user@example.com.",
        "user@Mail.Example.Com",
        "user@[127.0.0.1]",
        "user%example.com@example.com",
        "user@partner.org",
        "user@sub.PARTNER.org",
        "user",
    ] {
        assert_eq!(rcpt(&r, &outsider, "a@b.example", fine).await, Verdict::Accept, "{fine}");
    }
}

#[tokio::test]
async fn parsing_errors_name_the_parameter_and_the_word() {
    let error = Restrictions::new(config("smtpd_helo_restrictions = [\"reject_bogus_thing\"]")).err().unwrap();
    assert!(error.contains("smtpd_helo_restrictions") && error.contains("reject_bogus_thing"), "{error}");
    let error = Restrictions::new(config("smtpd_sender_restrictions = [\"check_sender_access\"]")).err().unwrap();
    assert!(error.contains("smtpd_sender_restrictions") && error.contains("check_sender_access"), "{error}");
    let error = Restrictions::new(config("smtpd_data_restrictions = [\"hash:/x\"]")).err().unwrap();
    assert!(error.contains("smtpd_data_restrictions"), "{error}");
    // A table that cannot be opened stops start-up too.
    let error =
        Restrictions::new(config("smtpd_client_restrictions = [\"check_client_access texthash:/nonexistent/x\"]"))
            .err()
            .unwrap();
    assert!(error.contains("smtpd_client_restrictions"), "{error}");
}

#[tokio::test]
async fn relaying_must_be_refused_somewhere() {
    let error = Restrictions::new(config(
        "smtpd_relay_restrictions = []\nsmtpd_recipient_restrictions = [\"permit_mynetworks\"]",
    ))
    .err()
    .unwrap();
    assert!(error.contains("reject_unauth_destination"), "{error}");
    // The classic tutorial setting, with relay control in the recipient list.
    assert!(
        Restrictions::new(config(
            "smtpd_relay_restrictions = []\n\
             smtpd_recipient_restrictions = [\"permit_mynetworks\", \"check_relay_domains\"]"
        ))
        .is_ok()
    );
}

#[tokio::test]
async fn obsolete_names_are_mapped() {
    let r = restrictions(
        "maps_rbl_domains = [\"rbl.example\", \"rbl2.example\"]\n\
         smtpd_client_restrictions = [\"permit_mynetworks\", \"reject_maps_rbl\", \"reject_unknown_client\"]\n\
         smtpd_helo_restrictions = [\"reject_invalid_hostname\", \"reject_non_fqdn_hostname\"]\n\
         smtpd_relay_restrictions = []\n\
         smtpd_recipient_restrictions = [\"permit_mynetworks\", \"check_relay_domains\"]",
    );
    assert!(matches!(r.client[1], Rule::RejectRblClient(ref d) if d.domain == "rbl.example"));
    assert!(matches!(r.client[2], Rule::RejectRblClient(ref d) if d.domain == "rbl2.example"));
    assert!(matches!(r.client[3], Rule::RejectUnknownClient));
    assert!(matches!(r.helo[..], [Rule::RejectInvalidHelo, Rule::RejectNonFqdnHelo]));
    let words = ["reject_unknown_hostname".to_string(), "REJECT_UNKNOWN_CLIENT".to_string()];
    let rules = parse_list(&config(""), "smtpd_helo_restrictions", &words, Some(Target::Helo)).unwrap();
    assert!(matches!(rules[..], [Rule::RejectUnknownHelo, Rule::RejectUnknownClient]));
    // check_relay_domains: the LAN relays, others reach our domains only.
    assert_eq!(rcpt(&r, &client(INSIDE), "a@example.com", "x@remote.example").await, Verdict::Accept);
    let mut outsider = client(OUTSIDE);
    outsider.helo = Some("bad name".into());
    let verdict = r.check(&query(Stage::Rcpt, &outsider, Some(""), Some("x@remote.example"))).await;
    assert_eq!(reply(&verdict), "554 5.7.1 <x@remote.example>: Recipient address rejected: Relay access denied");
    let verdict = r.check(&query(Stage::Helo, &outsider, None, None)).await;
    assert_eq!(reply(&verdict), "501 5.5.2 <bad name>: Helo command rejected: Invalid name");
}

#[tokio::test]
async fn a_permit_ends_only_its_own_list() {
    // A permit in the client list does not open the relay.
    let r = restrictions("smtpd_client_restrictions = [\"permit\"]\nsmtpd_sender_restrictions = [\"permit\"]");
    assert_eq!(
        reply(&rcpt(&r, &client(OUTSIDE), "a@b.example", "user@remote.example").await),
        "454 4.7.1 <user@remote.example>: Relay access denied"
    );
    // A relay permit does not skip the recipient list.
    let r =
        restrictions("smtpd_recipient_restrictions = [\"check_recipient_access inline:{spam@remote.example=REJECT}\"]");
    assert_eq!(rcpt(&r, &client(INSIDE), "a@example.com", "user@remote.example").await, Verdict::Accept);
    assert_eq!(
        reply(&rcpt(&r, &client(INSIDE), "a@example.com", "spam@remote.example").await),
        "554 5.7.1 <spam@remote.example>: Recipient address rejected: Access denied"
    );
    // The client list rejects with the client's name, at RCPT with delay_reject.
    let r = restrictions("smtpd_client_restrictions = [\"permit_mynetworks\", \"reject\"]");
    assert_eq!(
        reply(&rcpt(&r, &client(OUTSIDE), "a@b.example", "user@example.com").await),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(rcpt(&r, &client(INSIDE), "a@b.example", "user@example.com").await, Verdict::Accept);
    // Each stage asks its own list only.
    let outsider = client(OUTSIDE);
    assert_eq!(r.check(&query(Stage::Rcpt, &outsider, Some("a@b"), Some("u@example.com"))).await, Verdict::Accept);
    assert!(matches!(r.check(&query(Stage::Connect, &outsider, None, None)).await, Verdict::Reject { .. }));
    // No HELO, no sender: those lists are not asked.
    let r = restrictions("smtpd_helo_restrictions = [\"reject\"]\nsmtpd_sender_restrictions = [\"reject\"]");
    let mut quiet = client(OUTSIDE);
    quiet.helo = None;
    assert_eq!(r.check(&query(Stage::Helo, &quiet, None, None)).await, Verdict::Accept);
    assert_eq!(r.check(&query(Stage::Mail, &quiet, None, None)).await, Verdict::Accept);
    assert_eq!(
        reply(&r.check(&query(Stage::Mail, &quiet, Some(""), None)).await),
        "554 5.7.1 <>: Sender address rejected: Access denied"
    );
}

#[tokio::test]
async fn warn_if_reject_only_logs_the_next_reject() {
    let r = restrictions("smtpd_client_restrictions = [\"warn_if_reject\", \"reject\"]");
    assert_eq!(r.check(&query(Stage::Connect, &client(OUTSIDE), None, None)).await, Verdict::Accept);
    let r = restrictions(
        "smtpd_client_restrictions = [\"warn_if_reject\", \"reject_unauth_pipelining\", \"reject_unauth_pipelining\"]",
    );
    let mut hasty = client(OUTSIDE);
    hasty.improper_pipelining = true;
    assert_eq!(
        reply(&r.check(&query(Stage::Connect, &hasty, None, None)).await),
        "503 5.5.0 <unknown[203.0.113.9]>: Client host rejected: Improper use of SMTP command pipelining"
    );
    assert_eq!(r.check(&query(Stage::Connect, &client(OUTSIDE), None, None)).await, Verdict::Accept);
    // A warned-about unlisted recipient is checked again at the end.
    let dir = tempfile::tempdir().unwrap();
    let users = table(&dir, "users", "alice x\n");
    let r = restrictions(&format!(
        "local_recipient_maps = [\"{users}\"]\nsmtpd_recipient_restrictions = [\"warn_if_reject\", \"reject_unlisted_recipient\"]"
    ));
    assert_eq!(
        reply(&rcpt(&r, &client(INSIDE), "", "bob@example.com").await),
        "550 5.1.1 <bob@example.com>: Recipient address rejected: User unknown in local recipient table"
    );
}

#[tokio::test]
async fn access_table_results() {
    let dir = tempfile::tempdir().unwrap();
    let access = table(
        &dir,
        "access",
        "ok@remote.example OK\n\
         rejected@remote.example REJECT\n\
         texted@remote.example REJECT go away\n\
         status@remote.example REJECT 5.7.2 not here\n\
         deferred@remote.example DEFER come back later\n\
         coded@remote.example 550 no such luck\n\
         soft@remote.example 451 4.3.2 busy\n\
         discard@remote.example DISCARD\n\
         hold@remote.example HOLD look at this\n\
         dunno@remote.example DUNNO\n\
         permit@remote.example permit\n\
         restriction@remote.example reject_unauth_pipelining\n\
         numeric@remote.example 1234567\n\
         bad.example REJECT whole domain\n\
         spammer@ 550 5.7.1 not you\n\
         <> REJECT no bounces here\n",
    );
    let r = restrictions(&format!("smtpd_sender_restrictions = [\"check_sender_access {access}\"]"));
    let c = client(INSIDE);
    let mail = |sender: &'static str| Query {
        stage: Stage::Mail,
        client: &c,
        sender: Some(sender),
        recipient: None,
        etrn: None,
    };
    let check = |sender: &'static str| {
        let r = &r;
        let q = mail(sender);
        async move { r.check(&q).await }
    };
    assert_eq!(check("ok@remote.example").await, Verdict::Accept);
    assert_eq!(
        reply(&check("rejected@remote.example").await),
        "554 5.7.1 <rejected@remote.example>: Sender address rejected: Access denied"
    );
    assert_eq!(
        reply(&check("texted@remote.example").await),
        "554 5.7.1 <texted@remote.example>: Sender address rejected: go away"
    );
    assert_eq!(
        reply(&check("status@remote.example").await),
        "554 5.7.2 <status@remote.example>: Sender address rejected: not here"
    );
    assert_eq!(
        reply(&check("deferred@remote.example").await),
        "450 4.7.1 <deferred@remote.example>: Sender address rejected: come back later"
    );
    assert_eq!(
        reply(&check("coded@remote.example").await),
        "550 5.7.1 <coded@remote.example>: Sender address rejected: no such luck"
    );
    assert_eq!(
        reply(&check("soft@remote.example").await),
        "451 4.3.2 <soft@remote.example>: Sender address rejected: busy"
    );
    assert_eq!(
        check("discard@remote.example").await,
        Verdict::Discard { text: "<discard@remote.example>: Sender address triggers DISCARD action".into() }
    );
    assert_eq!(
        check("hold@remote.example").await,
        Verdict::Hold { text: "<hold@remote.example>: Sender address look at this".into() }
    );
    assert_eq!(check("dunno@remote.example").await, Verdict::Accept);
    assert_eq!(check("permit@remote.example").await, Verdict::Accept);
    assert_eq!(check("numeric@remote.example").await, Verdict::Accept);
    assert_eq!(check("restriction@remote.example").await, Verdict::Accept);
    let mut hasty = client(INSIDE);
    hasty.improper_pipelining = true;
    let verdict = r.check(&query(Stage::Mail, &hasty, Some("restriction@remote.example"), None)).await;
    assert_eq!(
        reply(&verdict),
        "503 5.5.0 <restriction@remote.example>: Sender address rejected: Improper use of SMTP command pipelining"
    );
    assert_eq!(
        reply(&check("anyone@bad.example").await),
        "554 5.7.1 <anyone@bad.example>: Sender address rejected: whole domain"
    );
    // smtpd_access_maps matches subdomains by default (parent_domain_matches_subdomains).
    assert!(matches!(check("anyone@sub.bad.example").await, Verdict::Reject { .. }));
    assert_eq!(
        reply(&check("spammer@anywhere.example").await),
        "550 5.7.1 <spammer@anywhere.example>: Sender address rejected: not you"
    );
    assert_eq!(reply(&check("").await), "554 5.7.1 <>: Sender address rejected: no bounces here");
    assert_eq!(check("someone@else.example").await, Verdict::Accept);
}

#[tokio::test]
async fn client_helo_and_etrn_tables() {
    let dir = tempfile::tempdir().unwrap();
    let clients = table(&dir, "clients", "203.0.113 REJECT\n192.168.1.20 OK\n");
    let helos = table(&dir, "helos", "friend.example OK\nliar.example 550 5.7.1 you are not me\n");
    let etrn = table(&dir, "etrn", "example.com OK\n");
    let r = restrictions(&format!(
        "smtpd_client_restrictions = [\"check_client_access {clients}\"]\n\
         smtpd_helo_restrictions = [\"check_helo_access {helos}\", \"reject_non_fqdn_helo_hostname\"]\n\
         smtpd_etrn_restrictions = [\"{etrn}\", \"reject\"]"
    ));
    assert_eq!(
        reply(&r.check(&query(Stage::Connect, &client(OUTSIDE), None, None)).await),
        "554 5.7.1 <unknown[203.0.113.9]>: Client host rejected: Access denied"
    );
    assert_eq!(r.check(&query(Stage::Connect, &client(INSIDE), None, None)).await, Verdict::Accept);
    let mut c = client(INSIDE);
    c.helo = Some("liar.example".into());
    assert_eq!(
        reply(&r.check(&query(Stage::Helo, &c, None, None)).await),
        "550 5.7.1 <liar.example>: Helo command rejected: you are not me"
    );
    c.helo = Some("pc1".into());
    assert_eq!(
        reply(&r.check(&query(Stage::Helo, &c, None, None)).await),
        "504 5.5.2 <pc1>: Helo command rejected: need fully-qualified hostname"
    );
    let etrn = |domain: &'static str| Query {
        stage: Stage::Etrn,
        client: &c,
        sender: None,
        recipient: None,
        etrn: Some(domain),
    };
    assert_eq!(r.check(&etrn("example.com")).await, Verdict::Accept);
    assert_eq!(
        reply(&r.check(&etrn("other.example")).await),
        "554 5.7.1 <other.example>: Etrn command rejected: Access denied"
    );
}

#[tokio::test]
async fn helo_and_address_syntax() {
    let r = restrictions(
        "smtpd_helo_restrictions = [\"reject_invalid_helo_hostname\", \"reject_non_fqdn_helo_hostname\"]\n\
         smtpd_sender_restrictions = [\"reject_non_fqdn_sender\"]\n\
         smtpd_recipient_restrictions = [\"reject_non_fqdn_recipient\"]",
    );
    let helo = |name: &str| {
        let mut c = client(OUTSIDE);
        c.helo = Some(name.to_string());
        c
    };
    for good in ["pc1.example.com", "pc1.example.com.", "[192.0.2.1]", "[IPv6:2001:db8::1]", "mail_1.example.com"] {
        assert_eq!(r.check(&query(Stage::Helo, &helo(good), None, None)).await, Verdict::Accept, "{good}");
    }
    for (bad, text) in [
        ("bad!name.example", "501 5.5.2 <bad!name.example>: Helo command rejected: Invalid name"),
        ("-bad.example", "501 5.5.2 <-bad.example>: Helo command rejected: Invalid name"),
        ("a..b", "501 5.5.2 <a..b>: Helo command rejected: Invalid name"),
        ("[999.1.1.1]", "501 5.5.2 <[999.1.1.1]>: Helo command rejected: invalid ip address"),
        ("[2001:db8::1]", "501 5.5.2 <[2001:db8::1]>: Helo command rejected: invalid ip address"),
        ("localhost", "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"),
        ("192.0.2.1", "504 5.5.2 <192.0.2.1>: Helo command rejected: need fully-qualified hostname"),
    ] {
        assert_eq!(reply(&r.check(&query(Stage::Helo, &helo(bad), None, None)).await), text, "{bad}");
    }
    let c = client(INSIDE);
    assert_eq!(
        reply(&r.check(&query(Stage::Mail, &c, Some("root@localhost"), None)).await),
        "504 5.5.2 <root@localhost>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(
        reply(&r.check(&query(Stage::Mail, &c, Some("root"), None)).await),
        "504 5.5.2 <root>: Sender address rejected: need fully-qualified address"
    );
    assert_eq!(r.check(&query(Stage::Mail, &c, Some(""), None)).await, Verdict::Accept);
    assert_eq!(r.check(&query(Stage::Mail, &c, Some("a@[192.0.2.1]"), None)).await, Verdict::Accept);
    assert_eq!(
        reply(&r.check(&query(Stage::Rcpt, &c, Some(""), Some("bob@pc1"))).await),
        "504 5.5.2 <bob@pc1>: Recipient address rejected: need fully-qualified address"
    );
}

#[tokio::test]
async fn unlisted_recipients_and_senders() {
    let dir = tempfile::tempdir().unwrap();
    let users = table(&dir, "users", "alice x\nbob@example.com x\n");
    let virtual_ = table(&dir, "virtual", "info@virt.example alice\n");
    let r = restrictions(&format!(
        "local_recipient_maps = [\"{users}\"]\nrecipient_delimiter = \"+\"\n\
         virtual_alias_domains = [\"virt.example\"]\nvirtual_alias_maps = [\"{virtual_}\"]\n\
         smtpd_reject_unlisted_sender = true"
    ));
    let c = client(OUTSIDE);
    for known in ["alice@example.com", "ALICE@mail.example.com", "alice+list@example.com", "bob@example.com"] {
        assert_eq!(rcpt(&r, &c, "", known).await, Verdict::Accept, "{known}");
    }
    assert_eq!(rcpt(&r, &c, "", "postmaster@example.com").await, Verdict::Accept);
    assert_eq!(rcpt(&r, &c, "", "MAILER-DAEMON@example.com").await, Verdict::Accept);
    assert_eq!(
        reply(&rcpt(&r, &c, "", "carol@example.com").await),
        "550 5.1.1 <carol@example.com>: Recipient address rejected: User unknown in local recipient table"
    );
    assert_eq!(rcpt(&r, &c, "", "info@virt.example").await, Verdict::Accept);
    assert_eq!(
        reply(&rcpt(&r, &c, "", "sales@virt.example").await),
        "550 5.1.1 <sales@virt.example>: Recipient address rejected: User unknown in virtual alias table"
    );
    // Unlisted senders in our domains (smtpd_reject_unlisted_sender).
    assert_eq!(
        reply(&r.check(&query(Stage::Mail, &c, Some("carol@example.com"), None)).await),
        "550 5.1.0 <carol@example.com>: Sender address rejected: User unknown in local recipient table"
    );
    assert_eq!(r.check(&query(Stage::Mail, &c, Some("carol@elsewhere.example"), None)).await, Verdict::Accept);
    // A table that cannot be read defers.
    let r = restrictions("local_recipient_maps = [\"texthash:/nonexistent/users\"]");
    assert_eq!(
        reply(&rcpt(&r, &c, "", "alice@example.com").await),
        "451 4.3.0 <alice@example.com>: Temporary lookup failure"
    );
}

#[tokio::test]
async fn sender_login_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let logins = table(&dir, "logins", "alice@example.com alice\nshared@example.com alice, bob\n");
    let r = restrictions(&format!(
        "smtpd_sasl_auth_enable = true\nsmtpd_sender_login_maps = [\"{logins}\"]\n\
         smtpd_sender_restrictions = [\"reject_sender_login_mismatch\"]"
    ));
    let mut bob = client(OUTSIDE);
    bob.sasl_username = Some("bob".into());
    let mail = |c: &Client, sender: &'static str| {
        let c = c.clone();
        let r = &r;
        async move { r.check(&query(Stage::Mail, &c, Some(sender), None)).await }
    };
    assert_eq!(
        reply(&mail(&bob, "alice@example.com").await),
        "553 5.7.1 <alice@example.com>: Sender address rejected: not owned by user bob"
    );
    assert_eq!(mail(&bob, "shared@example.com").await, Verdict::Accept);
    assert_eq!(
        reply(&mail(&bob, "bob@elsewhere.example").await),
        "553 5.7.1 <bob@elsewhere.example>: Sender address rejected: not owned by user bob"
    );
    let anonymous = client(OUTSIDE);
    assert_eq!(
        reply(&mail(&anonymous, "alice@example.com").await),
        "553 5.7.1 <alice@example.com>: Sender address rejected: not logged in"
    );
    assert_eq!(mail(&anonymous, "stranger@elsewhere.example").await, Verdict::Accept);
}

#[tokio::test]
async fn data_and_end_of_data_lists() {
    let r = restrictions(
        "smtpd_data_restrictions = [\"reject_unauth_pipelining\"]\nsmtpd_end_of_data_restrictions = [\"defer\"]",
    );
    let mut hasty = client(OUTSIDE);
    hasty.improper_pipelining = true;
    assert_eq!(
        reply(&r.check(&query(Stage::Data, &hasty, Some("a@b.example"), None)).await),
        "503 5.5.0 <DATA>: Data command rejected: Improper use of SMTP command pipelining"
    );
    assert_eq!(r.check(&query(Stage::Data, &client(OUTSIDE), Some("a@b.example"), None)).await, Verdict::Accept);
    assert_eq!(
        reply(&r.check(&query(Stage::EndOfData, &client(OUTSIDE), Some("a@b.example"), None)).await),
        "450 4.3.2 <END-OF-MESSAGE>: End-of-data command rejected: Try again later"
    );
}

#[test]
fn helpers() {
    assert!(valid_hostname("mail.example.com") && valid_hostname("a_b.example"));
    assert!(!valid_hostname("1.2.3.4") && !valid_hostname("a.-b") && !valid_hostname(""));
    assert_eq!(split_dsn("5.7.1", "4.2.0 full"), ("4.2.0".to_string(), "full"));
    assert_eq!(split_dsn("5.7.1", "go away"), ("5.7.1".to_string(), "go away"));
    assert_eq!(dsn_fix("5.1.1", SENDER), "5.1.0");
    assert_eq!(dsn_fix("4.1.2", RECIPIENT), "4.1.2");
    assert_eq!(dsn_fix("5.1.1", CLIENT), "5.7.1");
    assert_eq!(Reply::new(450, "5.7.1", String::new()).dsn, "4.7.1");
    let list = parse_dnsbl("zen.example=127.0.0.[2..4;10]").unwrap();
    assert!(list.accepts("127.0.0.3".parse().unwrap()) && list.accepts("127.0.0.10".parse().unwrap()));
    assert!(!list.accepts("127.0.0.5".parse().unwrap()) && !list.accepts("127.0.1.3".parse().unwrap()));
    assert!(parse_dnsbl("zen.example=127.0.0").is_err());
    assert!(parse_dnsbl("zen.example").unwrap().accepts("10.0.0.1".parse().unwrap()));
}
