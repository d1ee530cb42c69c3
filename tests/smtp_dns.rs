//! The SMTP client's next-hop lookups against a real DNS server on loopback that is not ours:
//! tests/smtp/dns_server.py (dnspython) answers from the zone given on its command line and logs
//! every question it receives. Covered: MX preference order, implicit MX, null MX, NXDOMAIN,
//! SERVFAIL, a nameserver that never answers (bounded), and the proof that
//! `disable_dns_lookups` sends no DNS query at all (with a positive control that does).

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tidemail::deliver::smtp::ResolveError;
use tidemail::deliver::smtp::dns::{DNS_SERVER_ENV, DnsResolver, LOOKUP_DEADLINE};
use tidemail::deliver::smtp::relayhost::{self, NextHop};

const SERVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp/dns_server.py");
const PYTHON: &str = "/usr/bin/python3";
/// Set in the environment of the child test process ([`child_entry`]).
const CHILD_MODE: &str = "TIDEMAIL_DNS_TEST_CHILD";

/// The zone every test serves (one record a line, absolute names).
const ZONE: &[&str] = &[
    // Two exchangers, listed worst first: the order must come from the preferences.
    "mx.test. 300 IN MX 20 mx2.test.",
    "mx.test. 300 IN MX 10 mx1.test.",
    "mx1.test. 300 IN A 127.0.0.1",
    "mx2.test. 300 IN A 127.0.0.2",
    // No MX: the domain is its own exchanger.
    "plain.test. 300 IN A 127.0.0.3",
    // RFC 7505.
    "null.test. 300 IN MX 0 .",
    // The preferred exchanger's nameserver fails; the next one is used.
    "mixed.test. 300 IN MX 10 broken.test.",
    "mixed.test. 300 IN MX 20 mx2.test.",
    // The only exchanger does not exist.
    "dangling.test. 300 IN MX 10 nowhere.test.",
    // Exists, but has neither MX nor addresses.
    "txtonly.test. 300 IN TXT \"no mail here\"",
    // For the disable_dns_lookups proof: DNS knows it, the hosts file does not.
    "proof.test. 300 IN MX 10 proof.test.",
    "proof.test. 300 IN A 127.0.0.9",
];

/// A Python with dnspython, or None (the test is then skipped; CI runs as root and installs it).
fn python() -> Option<&'static str> {
    let ok = Command::new(PYTHON)
        .args(["-c", "import dns.message"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        assert!(!nix::unistd::geteuid().is_root(), "python3-dnspython is missing (.ci/test installs it)");
        eprintln!("skipped: python3-dnspython is not installed (run .ci/test as root to install it)");
        return None;
    }
    Some(PYTHON)
}

/// The DNS server, stopped when dropped.
struct DnsServer {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl DnsServer {
    fn start() -> Option<DnsServer> {
        let python = python()?;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("queries.log");
        std::fs::write(&log, "").unwrap();
        let mut command = Command::new(python);
        command.arg(SERVER).arg(&log).args(["--servfail", "broken.test."]).args(ZONE);
        let (child, ready) = common::sink::spawn_ready(command, "dns_server.py");
        let port: u16 = ready.strip_prefix("ready ").and_then(|p| p.parse().ok()).expect("ready PORT");
        Some(DnsServer { child, addr: SocketAddr::from(([127, 0, 0, 1], port)), log, _dir: dir })
    }

    fn resolver(&self) -> DnsResolver {
        DnsResolver::with_servers(&[self.addr]).unwrap()
    }

    /// The questions received so far, as "name. TYPE".
    fn queries(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log).unwrap().lines().map(str::to_string).collect()
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hop(text: &str) -> NextHop {
    relayhost::parse(text).unwrap()
}

fn relay(host: &str, addr: &str) -> (String, SocketAddr) {
    (host.to_string(), addr.parse().unwrap())
}

/// A hosts file that knows one smarthost, in a directory kept alive by the caller.
fn hosts_file(dir: &Path) -> PathBuf {
    let path = dir.join("hosts");
    std::fs::write(&path, "127.0.0.1 localhost\n192.0.2.10 smarthost.office.test smarthost\n").unwrap();
    path
}

async fn lookup(
    server: &DnsServer,
    next_hop: &str,
    disable_dns_lookups: bool,
) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
    let dir = tempfile::tempdir().unwrap();
    let hosts = hosts_file(dir.path());
    let resolver = server.resolver();
    relayhost::resolve_relays_with(&hop(next_hop), disable_dns_lookups, &hosts, Some(&resolver)).await
}

#[tokio::test]
async fn mx_records_in_preference_order() {
    let Some(server) = DnsServer::start() else { return };
    let relays = lookup(&server, "mx.test", false).await.unwrap();
    assert_eq!(relays, vec![relay("mx1.test", "127.0.0.1:25"), relay("mx2.test", "127.0.0.2:25")]);
    // The port of `host:port` applies to every exchanger.
    let relays = lookup(&server, "MX.test:2525", false).await.unwrap();
    assert_eq!(relays, vec![relay("mx1.test", "127.0.0.1:2525"), relay("mx2.test", "127.0.0.2:2525")]);
    let queries = server.queries();
    assert!(queries.contains(&"mx.test. MX".to_string()), "{queries:?}");
    assert!(queries.contains(&"mx1.test. A".to_string()), "{queries:?}");
    assert!(queries.contains(&"mx2.test. AAAA".to_string()), "{queries:?}");
}

#[tokio::test]
async fn an_exchanger_that_fails_is_skipped() {
    let Some(server) = DnsServer::start() else { return };
    assert_eq!(lookup(&server, "mixed.test", false).await.unwrap(), vec![relay("mx2.test", "127.0.0.2:25")]);
}

#[tokio::test]
async fn no_mx_records_means_the_domain_itself() {
    let Some(server) = DnsServer::start() else { return };
    assert_eq!(lookup(&server, "plain.test", false).await.unwrap(), vec![relay("plain.test", "127.0.0.3:25")]);
    let queries = server.queries();
    assert_eq!(queries.first().map(String::as_str), Some("plain.test. MX"), "{queries:?}");
    assert!(queries.contains(&"plain.test. A".to_string()), "{queries:?}");

    // Neither MX nor address records: permanent, with Postfix's words.
    let error = lookup(&server, "txtonly.test", false).await.unwrap_err();
    assert!(!error.is_temporary());
    assert_eq!(error.status(), "5.4.4");
    assert_eq!(
        error.to_string(),
        "Host or domain name not found. Name service error for name=txtonly.test type=A: \
         Host found but no data record of requested type"
    );
}

#[tokio::test]
async fn null_mx_refuses_mail() {
    let Some(server) = DnsServer::start() else { return };
    let error = lookup(&server, "null.test", false).await.unwrap_err();
    assert!(matches!(error, ResolveError::NullMx { .. }), "{error:?}");
    assert!(!error.is_temporary());
    assert_eq!(error.status(), "5.1.10");
    assert_eq!(error.to_string(), "Domain null.test does not accept mail (nullMX)");
    // No address lookup for ".".
    assert_eq!(server.queries(), ["null.test. MX"]);
}

#[tokio::test]
async fn nxdomain_is_permanent() {
    let Some(server) = DnsServer::start() else { return };
    let error = lookup(&server, "nx.test", false).await.unwrap_err();
    assert!(matches!(error, ResolveError::NotFound { .. }), "{error:?}");
    assert!(!error.is_temporary());
    assert_eq!(error.status(), "5.4.4");
    assert_eq!(
        error.to_string(),
        "Host or domain name not found. Name service error for name=nx.test type=MX: Host not found"
    );

    let error = lookup(&server, "[nx.test]:587", false).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "Host or domain name not found. Name service error for name=nx.test type=A: Host not found"
    );
    // An MX that names a host that does not exist.
    let error = lookup(&server, "dangling.test", false).await.unwrap_err();
    assert!(!error.is_temporary(), "{error:?}");
    assert!(error.to_string().contains("name=nowhere.test type=A: Host not found"), "{error}");
}

#[tokio::test]
async fn servfail_is_temporary() {
    let Some(server) = DnsServer::start() else { return };
    let error = lookup(&server, "broken.test", false).await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
    assert_eq!(error.status(), "4.4.3");
    assert_eq!(
        error.to_string(),
        "Host or domain name not found. Name service error for name=broken.test type=MX: Host not found, try again"
    );
    let error = lookup(&server, "[broken.test]", false).await.unwrap_err();
    assert!(error.is_temporary(), "{error:?}");
}

#[tokio::test]
async fn bracketed_names_use_a_records_not_mx() {
    let Some(server) = DnsServer::start() else { return };
    assert_eq!(lookup(&server, "[proof.test]:587", false).await.unwrap(), vec![relay("proof.test", "127.0.0.9:587")]);
    let queries = server.queries();
    assert!(!queries.iter().any(|query| query.ends_with(" MX")), "{queries:?}");
    // The hosts file comes first for a bracketed name: no query for the smarthost it lists.
    assert_eq!(
        lookup(&server, "[smarthost.office.test]", false).await.unwrap(),
        vec![relay("smarthost.office.test", "192.0.2.10:25")]
    );
    assert!(!server.queries().iter().any(|query| query.contains("smarthost")));
}

/// A nameserver that receives and never answers, and one that is not there at all: a temporary
/// failure, within the documented bound.
#[tokio::test]
async fn silent_nameserver_is_temporary_and_bounded() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let closed = {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    for server in [silent.local_addr().unwrap(), closed] {
        let resolver = DnsResolver::with_servers(&[server]).unwrap();
        for next_hop in ["mx.test", "[mx1.test]"] {
            let started = Instant::now();
            let error =
                relayhost::resolve_relays_with(&hop(next_hop), false, &hosts, Some(&resolver)).await.unwrap_err();
            let took = started.elapsed();
            assert!(error.is_temporary(), "{next_hop} via {server}: {error:?}");
            assert_eq!(error.status(), "4.4.3");
            assert!(error.to_string().ends_with("Host not found, try again"), "{error}");
            // One lookup (plus the A/AAAA pair, run together) is cut off at LOOKUP_DEADLINE.
            assert!(took <= LOOKUP_DEADLINE + Duration::from_secs(2), "{next_hop} via {server} took {took:?}");
        }
    }
}

/// THE PROOF: with disable_dns_lookups, resolving names — with and without brackets, known to
/// DNS or not, in the hosts file or not — sends nothing to the nameserver the resolver points
/// at. The same calls with DNS enabled (the positive control) do reach it.
#[tokio::test]
async fn disable_dns_lookups_sends_no_query() {
    let Some(server) = DnsServer::start() else { return };

    for next_hop in ["proof.test", "[proof.test]", "[proof.test]:587", "mx.test"] {
        let error = lookup(&server, next_hop, true).await.unwrap_err();
        assert!(matches!(error, ResolveError::NotFound { .. }), "{next_hop}: {error:?}");
    }
    assert_eq!(lookup(&server, "[smarthost]:587", true).await.unwrap(), vec![relay("smarthost", "192.0.2.10:587")]);
    assert_eq!(lookup(&server, "smarthost.office.test", true).await.unwrap()[0].1, "192.0.2.10:25".parse().unwrap());
    // Give a stray packet time to arrive before looking.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.queries(), Vec::<String>::new(), "disable_dns_lookups sent DNS queries");

    // Positive control: the very same calls with DNS enabled reach the server.
    assert_eq!(lookup(&server, "proof.test", false).await.unwrap(), vec![relay("proof.test", "127.0.0.9:25")]);
    assert_eq!(lookup(&server, "[proof.test]", false).await.unwrap(), vec![relay("proof.test", "127.0.0.9:25")]);
    let queries = server.queries();
    assert!(queries.contains(&"proof.test. MX".to_string()), "{queries:?}");
    assert!(queries.contains(&"proof.test. A".to_string()), "{queries:?}");
}

/// The same proof through the entry point the delivery code calls, `relayhost::resolve`, with
/// the resolver chosen by `TIDEMAIL_DNS_SERVER` (in a child process, so no test here changes the
/// environment of the others).
#[test]
fn disable_dns_lookups_sends_no_query_through_the_system_resolver() {
    let Some(server) = DnsServer::start() else { return };
    let run_child = |mode: &str| {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env(DNS_SERVER_ENV, server.addr.to_string())
            .env(CHILD_MODE, mode)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "child ({mode}) failed:\n{text}");
        assert!(text.contains(&format!("child {mode} done")), "the child did not run:\n{text}");
    };
    run_child("disabled");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.queries(), Vec::<String>::new(), "disable_dns_lookups sent DNS queries");
    run_child("enabled");
    let queries = server.queries();
    assert!(queries.contains(&"proof.test. MX".to_string()), "{queries:?}");
}

/// Runs only in the child process started by the test above; elsewhere it does nothing.
#[tokio::test]
async fn child_entry() {
    let Ok(mode) = std::env::var(CHILD_MODE) else { return };
    match mode.as_str() {
        "disabled" => {
            // /etc/hosts has no *.test names: not found, from the hosts file alone.
            for next_hop in ["proof.test", "[proof.test]"] {
                let error = relayhost::resolve(&hop(next_hop), true).await.unwrap_err();
                assert!(matches!(error, ResolveError::NotFound { .. }), "{next_hop}: {error:?}");
            }
        }
        "enabled" => {
            let addrs = relayhost::resolve(&hop("proof.test"), false).await.unwrap();
            assert_eq!(addrs, vec!["127.0.0.9:25".parse::<SocketAddr>().unwrap()]);
            let relays = relayhost::resolve_relays(&hop("proof.test"), false).await.unwrap();
            assert_eq!(relays, vec![relay("proof.test", "127.0.0.9:25")]);
        }
        other => panic!("unknown child mode {other}"),
    }
    println!("child {mode} done");
}
