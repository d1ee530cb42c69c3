//! DNS-based restrictions with a dead resolver (a UDP socket that never answers, the offline
//! office): each check gives up within smtpd_dns_timeout and answers 450, or skips with
//! smtpd_dns_failure_action = skip. Nothing here waits for a real nameserver.

use std::net::UdpSocket;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tidemail::config::Config;
use tidemail::deliver::smtp::dns::{DNS_SERVER_ENV, DnsResolver};
use tidemail::smtpd::restrictions::{Client, Query, Restrictions, Stage, Verdict};

/// A nameserver that reads nothing and answers nothing. Kept open so queries are not refused.
fn silent_server() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").unwrap()
}

fn config(extra: &str) -> Arc<Config> {
    let text = format!(
        "{extra}\nmyhostname = \"mail.example.com\"\ninet_interfaces = [\"loopback-only\"]\n\
         mydestination = [\"$myhostname\", \"example.com\"]\nmynetworks = [\"192.168.1.0/24\"]\n\
         local_recipient_maps = []\nalias_maps = []\n"
    );
    Arc::new(Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap())
}

fn restrictions(extra: &str, server: &UdpSocket) -> Restrictions {
    let resolver = DnsResolver::with_servers(&[server.local_addr().unwrap()]).unwrap();
    Restrictions::with_resolver(config(extra), resolver).unwrap()
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

/// Every stage of one RCPT (smtpd_delay_reject), timed.
async fn rcpt(r: &Restrictions, client: &Client, sender: &str, recipient: &str) -> (Verdict, Duration) {
    let started = Instant::now();
    for stage in [Stage::Connect, Stage::Helo, Stage::Mail, Stage::Rcpt] {
        let query = Query { stage, client, sender: Some(sender), recipient: Some(recipient), etrn: None };
        let verdict = r.check(&query).await;
        if verdict != Verdict::Accept {
            return (verdict, started.elapsed());
        }
    }
    (Verdict::Accept, started.elapsed())
}

fn reply(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Reject { code, dsn, text } => format!("{code} {dsn} {text}"),
        other => format!("{other:?}"),
    }
}

const BOUND: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_dnsbl_that_does_not_answer_defers_within_the_timeout() {
    let server = silent_server();
    let r =
        restrictions("smtpd_client_restrictions = [\"permit_mynetworks\", \"reject_rbl_client rbl.example\"]", &server);
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@example.com", "bob@example.com").await;
    assert!(took < BOUND, "took {took:?}");
    assert!(reply(&verdict).starts_with("450 4.7.1 "), "{verdict:?}");
    // The LAN is never asked about: permit_mynetworks comes first.
    let (verdict, took) = rcpt(&r, &client("192.168.1.7"), "a@example.com", "x@remote.example").await;
    assert_eq!(verdict, Verdict::Accept);
    assert!(took < Duration::from_millis(200), "took {took:?}");
}

#[tokio::test]
async fn skip_accepts_within_the_timeout() {
    let server = silent_server();
    let r = restrictions(
        "smtpd_dns_failure_action = \"skip\"\n\
         smtpd_client_restrictions = [\"reject_rbl_client rbl.example\", \"reject_unknown_reverse_client_hostname\"]\n\
         smtpd_sender_restrictions = [\"reject_unknown_sender_domain\", \"reject_rhsbl_sender rhsbl.example\"]\n\
         smtpd_helo_restrictions = [\"reject_unknown_helo_hostname\"]\n\
         smtpd_recipient_restrictions = [\"reject_unknown_recipient_domain\"]",
        &server,
    );
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@nowhere.example", "bob@example.com").await;
    assert_eq!(verdict, Verdict::Accept);
    assert!(took < BOUND, "took {took:?}");
}

#[tokio::test]
async fn unknown_sender_domain_defers() {
    let server = silent_server();
    let r = restrictions("smtpd_sender_restrictions = [\"reject_unknown_sender_domain\"]", &server);
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@nowhere.example", "bob@example.com").await;
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(reply(&verdict), "450 4.1.8 <a@nowhere.example>: Sender address rejected: Domain not found");
    // Our own domains are not looked up.
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@example.com", "bob@example.com").await;
    assert_eq!(verdict, Verdict::Accept);
    assert!(took < Duration::from_millis(200), "took {took:?}");
}

#[tokio::test]
async fn a_later_reject_wins_over_a_dns_deferral() {
    let server = silent_server();
    let r = restrictions("smtpd_sender_restrictions = [\"reject_unknown_sender_domain\", \"reject\"]", &server);
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@nowhere.example", "bob@example.com").await;
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(reply(&verdict), "554 5.7.1 <a@nowhere.example>: Sender address rejected: Access denied");
}

#[tokio::test]
async fn unknown_client_hostname_answers_450() {
    let server = silent_server();
    let r = restrictions("smtpd_client_restrictions = [\"reject_unknown_client_hostname\"]", &server);
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@example.com", "bob@example.com").await;
    assert!(took < BOUND, "took {took:?}");
    assert_eq!(reply(&verdict), "450 4.7.1 Client host rejected: cannot find your hostname, [203.0.113.9]");
}

#[tokio::test]
async fn many_dns_checks_cost_one_timeout() {
    let server = silent_server();
    let r = restrictions(
        "smtpd_client_restrictions = [\"reject_rbl_client one.example\", \"reject_rbl_client two.example\"]\n\
         smtpd_helo_restrictions = [\"reject_unknown_helo_hostname\"]\n\
         smtpd_sender_restrictions = [\"reject_unknown_sender_domain\"]\n\
         smtpd_recipient_restrictions = [\"reject_unknown_recipient_domain\", \"reject_rhsbl_recipient rhs.example\"]",
        &server,
    );
    let started = Instant::now();
    for stage in [Stage::Connect, Stage::Helo, Stage::Mail, Stage::Rcpt] {
        let c = client("203.0.113.9");
        let query = Query {
            stage,
            client: &c,
            sender: Some("a@nowhere.example"),
            recipient: Some("b@remote.example"),
            etrn: None,
        };
        let _ = r.check(&query).await;
    }
    assert!(started.elapsed() < BOUND, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn the_environment_override_reaches_the_default_resolver() {
    let server = silent_server();
    // SAFETY: the only test in this binary that reads the variable; the others use explicit resolvers.
    unsafe { std::env::set_var(DNS_SERVER_ENV, server.local_addr().unwrap().to_string()) };
    let r = Restrictions::new(config("smtpd_client_restrictions = [\"reject_rbl_client rbl.example\"]")).unwrap();
    let (verdict, took) = rcpt(&r, &client("203.0.113.9"), "a@example.com", "bob@example.com").await;
    assert!(took < BOUND, "took {took:?}");
    assert!(reply(&verdict).starts_with("450 4.7.1 "), "{verdict:?}");
}
