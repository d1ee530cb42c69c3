//! The next hop of the SMTP client: `relayhost` syntax and turning it into socket addresses.
//!
//! Forms (postconf(5) `relayhost`): `host`, `host:port`, `[host]`, `[host]:port`, `[address]`,
//! `[address]:port`, with `ipv6:` allowed inside the brackets (`[ipv6:2001:db8::1]:587`).
//! Brackets turn the MX lookup off. The port is a number or one of the usual service names.
//!
//! Resolution ([`resolve_relays`]): a literal address is used as is. With `disable_dns_lookups`
//! a name is looked up in the hosts file only — read here, never through getaddrinfo(), which
//! may send a DNS query whatever nsswitch.conf says — and no DNS packet is ever sent. Otherwise
//! all DNS traffic goes through one resolver ([`super::dns`], hickory-resolver): a name without
//! brackets is a domain whose MX records decide (RFC 5321 section 5: by preference, implicit MX,
//! null MX refused); a bracketed name is looked up in the hosts file first, then its A/AAAA
//! records in DNS.

use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::dns::DnsResolver;

/// The system hosts file.
pub const HOSTS_FILE: &str = "/etc/hosts";

/// Where the SMTP client connects: a host name or a literal address, a port, and whether the
/// name is a domain whose MX records decide (no brackets) or a host to use directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextHop {
    pub host: Host,
    pub port: u16,
    /// Look up MX records for `host` first (false when the relayhost was written in brackets).
    pub mx: bool,
}

/// A host name or a literal address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Name(String),
    Addr(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Addr(addr) => write!(f, "{addr}"),
        }
    }
}

impl fmt::Display for NextHop {
    /// The relayhost form that parses back to this next hop.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.mx) {
            (Host::Name(name), true) => f.write_str(name)?,
            (Host::Addr(IpAddr::V6(addr)), _) => write!(f, "[ipv6:{addr}]")?,
            (host, _) => write!(f, "[{host}]")?,
        }
        if self.port != 25 {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

/// Parses a relayhost value. Errors are phrased to follow "relayhost: ".
pub fn parse(text: &str) -> Result<NextHop, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty destination".to_string());
    }
    let (inside, bracketed, port_text) = if let Some(rest) = text.strip_prefix('[') {
        let Some(close) = rest.find(']') else {
            return Err(format!("missing \"]\" in \"{text}\""));
        };
        let after = &rest[close + 1..];
        let port = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(format!("unexpected \"{after}\" after \"]\" in \"{text}\"")),
            },
        };
        (&rest[..close], true, port)
    } else if text.contains(']') {
        return Err(format!("unexpected \"]\" in \"{text}\""));
    } else if text.matches(':').count() > 1 {
        // A bare IPv6 address: only the bracketed form can carry a port.
        (text, false, None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, false, Some(port)),
            None => (text, false, None),
        }
    };
    let port = match port_text {
        None => 25,
        Some(port) => parse_port(port).ok_or_else(|| format!("bad port \"{port}\" in \"{text}\""))?,
    };
    let literal = inside.strip_prefix("ipv6:").or_else(|| inside.strip_prefix("IPv6:"));
    let host = if let Some(v6) = literal {
        match v6.parse::<std::net::Ipv6Addr>() {
            Ok(addr) => Host::Addr(IpAddr::V6(addr)),
            Err(_) => return Err(format!("bad IPv6 address \"{v6}\" in \"{text}\"")),
        }
    } else if let Ok(addr) = inside.parse::<IpAddr>() {
        Host::Addr(addr)
    } else {
        check_hostname(inside).map_err(|why| format!("{why} in \"{text}\""))?;
        Host::Name(inside.trim_end_matches('.').to_ascii_lowercase())
    };
    let mx = !bracketed && matches!(host, Host::Name(_));
    Ok(NextHop { host, port, mx })
}

fn parse_port(text: &str) -> Option<u16> {
    match text {
        "smtp" => Some(25),
        "submission" => Some(587),
        "submissions" | "smtps" => Some(465),
        _ => text.parse::<u16>().ok().filter(|port| *port != 0),
    }
}

fn check_hostname(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty host name".to_string());
    }
    if name.len() > 253 {
        return Err("host name too long".to_string());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(format!("bad host name \"{name}\""));
        }
    }
    Ok(())
}

/// Why a next hop has no address. The texts are Postfix's; [`ResolveError::status`] is the
/// enhanced status for the recipients and [`ResolveError::is_temporary`] says defer or bounce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name does not exist (NXDOMAIN, or absent from the hosts file).
    #[error("Host or domain name not found. Name service error for name={name} type={rtype}: Host not found")]
    NotFound { name: String, rtype: &'static str },
    /// The name exists but has no record of the type asked for (a host without addresses).
    #[error(
        "Host or domain name not found. Name service error for name={name} type={rtype}: Host found but no data record of requested type"
    )]
    NoData { name: String, rtype: &'static str },
    /// The domain publishes a null MX (RFC 7505): it accepts no mail at all.
    #[error("Domain {domain} does not accept mail (nullMX)")]
    NullMx { domain: String },
    /// The lookup failed in a way that may pass (timeout, SERVFAIL, no nameserver reachable,
    /// resolv.conf or the hosts file unreadable). `cause` is the underlying error, for debugging;
    /// the text stays Postfix's.
    #[error("Host or domain name not found. Name service error for name={name} type={rtype}: {detail}")]
    Temporary { name: String, rtype: &'static str, detail: String, cause: Option<String> },
}

impl ResolveError {
    /// The enhanced status for the recipients: 5.1.10 for a null MX, 5.4.4 for a name that does
    /// not exist or has no address, 4.4.3 for the rest.
    /// (A mistyped relayhost is a configuration error; the queue manager may prefer to defer.)
    pub fn status(&self) -> &'static str {
        match self {
            ResolveError::NotFound { .. } | ResolveError::NoData { .. } => "5.4.4",
            ResolveError::NullMx { .. } => "5.1.10",
            ResolveError::Temporary { .. } => "4.4.3",
        }
    }

    pub fn is_temporary(&self) -> bool {
        matches!(self, ResolveError::Temporary { .. })
    }
}

/// The addresses to try for a next hop, in order, using the system hosts file and, unless
/// `disable_dns_lookups`, the system resolver ([`DnsResolver::system`]).
pub async fn resolve(next_hop: &NextHop, disable_dns_lookups: bool) -> Result<Vec<SocketAddr>, ResolveError> {
    resolve_with_hosts_file(next_hop, disable_dns_lookups, Path::new(HOSTS_FILE)).await
}

/// [`resolve`] with another hosts file (tests, chroots).
pub async fn resolve_with_hosts_file(
    next_hop: &NextHop,
    disable_dns_lookups: bool,
    hosts_file: &Path,
) -> Result<Vec<SocketAddr>, ResolveError> {
    let relays = resolve_relays_with(next_hop, disable_dns_lookups, hosts_file, None).await?;
    Ok(relays.into_iter().map(|(_, addr)| addr).collect())
}

/// The relays to try for a next hop, in order: (host name for the log, address). The host is
/// the MX exchanger's name, the bracketed name, or the literal address as text.
pub async fn resolve_relays(
    next_hop: &NextHop,
    disable_dns_lookups: bool,
) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
    resolve_relays_with(next_hop, disable_dns_lookups, Path::new(HOSTS_FILE), None).await
}

/// [`resolve_relays`] with another hosts file and, when `dns` is given, that resolver instead of
/// the system one (in-process tests point it at a loopback nameserver). With
/// `disable_dns_lookups` only the hosts file is read and `dns` is never touched.
pub async fn resolve_relays_with(
    next_hop: &NextHop,
    disable_dns_lookups: bool,
    hosts_file: &Path,
    dns: Option<&DnsResolver>,
) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
    let name = match &next_hop.host {
        Host::Addr(addr) => return Ok(vec![(addr.to_string(), SocketAddr::new(*addr, next_hop.port))]),
        Host::Name(name) => name,
    };
    let with_port = |addrs: Vec<IpAddr>| -> Vec<(String, SocketAddr)> {
        addrs.into_iter().map(|addr| (name.clone(), SocketAddr::new(addr, next_hop.port))).collect()
    };
    if disable_dns_lookups {
        let addrs = read_hosts_file(hosts_file, name)?;
        if addrs.is_empty() {
            return Err(ResolveError::NotFound { name: name.clone(), rtype: "A" });
        }
        return Ok(with_port(addrs));
    }
    if !next_hop.mx {
        // A bracketed host: the hosts file first, as getaddrinfo with "files dns" does, so a
        // smarthost listed there keeps working while DNS is unreachable.
        let addrs = read_hosts_file(hosts_file, name)?;
        if !addrs.is_empty() {
            return Ok(with_port(addrs));
        }
    }
    let system;
    let dns = match dns {
        Some(dns) => dns,
        None => {
            system = DnsResolver::system().map_err(|error| ResolveError::Temporary {
                name: name.clone(),
                rtype: if next_hop.mx { "MX" } else { "A" },
                detail: error.to_string(),
                cause: None,
            })?;
            &system
        }
    };
    if next_hop.mx { dns.mx_relays(name, next_hop.port).await } else { dns.host_relays(name, next_hop.port).await }
}

/// The addresses the hosts file gives `name`; a missing file gives none.
fn read_hosts_file(hosts_file: &Path, name: &str) -> Result<Vec<IpAddr>, ResolveError> {
    // A small local file: read in place (tokio's "fs" feature is not enabled).
    let text = match std::fs::read(hosts_file) {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => String::new(),
        Err(error) => {
            return Err(ResolveError::Temporary {
                name: name.to_string(),
                rtype: "A",
                detail: format!("cannot read {}: {error}", hosts_file.display()),
                cause: None,
            });
        }
    };
    Ok(hosts_file_lookup(&text, name))
}

/// The addresses a hosts file gives `name` (case-insensitive, trailing dot ignored), in file order.
pub fn hosts_file_lookup(text: &str, name: &str) -> Vec<IpAddr> {
    let name = name.trim_end_matches('.');
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_ascii_whitespace();
        let Some(Ok(addr)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        if fields.any(|alias| alias.trim_end_matches('.').eq_ignore_ascii_case(name)) && !found.contains(&addr) {
            found.push(addr);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(host: &str, port: u16, mx: bool) -> NextHop {
        NextHop { host: Host::Name(host.to_string()), port, mx }
    }

    fn addr(text: &str, port: u16) -> NextHop {
        NextHop { host: Host::Addr(text.parse().unwrap()), port, mx: false }
    }

    #[test]
    fn forms() {
        assert_eq!(parse("mail.example.net"), Ok(name("mail.example.net", 25, true)));
        assert_eq!(parse("Mail.Example.NET."), Ok(name("mail.example.net", 25, true)));
        assert_eq!(parse("mail.example.net:2525"), Ok(name("mail.example.net", 2525, true)));
        assert_eq!(parse("[smtp.example.net]"), Ok(name("smtp.example.net", 25, false)));
        assert_eq!(parse("[smtp.example.net]:587"), Ok(name("smtp.example.net", 587, false)));
        assert_eq!(parse("[smtp.example.net]:submission"), Ok(name("smtp.example.net", 587, false)));
        assert_eq!(parse("[192.0.2.7]"), Ok(addr("192.0.2.7", 25)));
        assert_eq!(parse("[192.0.2.7]:465"), Ok(addr("192.0.2.7", 465)));
        assert_eq!(parse("192.0.2.7:26"), Ok(addr("192.0.2.7", 26)));
        assert_eq!(parse("[2001:db8::1]:587"), Ok(addr("2001:db8::1", 587)));
        assert_eq!(parse("[ipv6:2001:db8::1]"), Ok(addr("2001:db8::1", 25)));
        assert_eq!(parse("2001:db8::1"), Ok(addr("2001:db8::1", 25)));
        assert_eq!(parse("  [relay]:25  "), Ok(name("relay", 25, false)));
    }

    #[test]
    fn bad_forms() {
        for bad in [
            "",
            "[smtp.example.net",
            "smtp.example.net]",
            "[smtp.example.net]587",
            "[smtp.example.net]:",
            "[smtp.example.net]:0",
            "[smtp.example.net]:70000",
            "smtp.example.net:pop3",
            "[]",
            "bad host",
            "-bad.example",
            "a..b",
            "[ipv6:192.0.2.1]",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed as {:?}", parse(bad));
        }
    }

    #[test]
    fn display_round_trips() {
        for text in ["mail.example.net", "mail.example.net:2525", "[smtp.example.net]:587", "[192.0.2.7]"] {
            assert_eq!(parse(text).unwrap().to_string(), text);
        }
        assert_eq!(parse("[2001:db8::1]:587").unwrap().to_string(), "[ipv6:2001:db8::1]:587");
    }

    const HOSTS: &str = "\
127.0.0.1\tlocalhost
# 192.0.2.99 commented.example
192.0.2.10   smarthost.office.example smarthost   # the ISP relay
2001:db8::10 smarthost.office.example
192.0.2.10   smarthost.office.example
not-an-address other.example
192.0.2.11 other.example
";

    #[test]
    fn hosts_file_lines() {
        let v4: IpAddr = "192.0.2.10".parse().unwrap();
        let v6: IpAddr = "2001:db8::10".parse().unwrap();
        assert_eq!(hosts_file_lookup(HOSTS, "smarthost.office.example"), vec![v4, v6]);
        assert_eq!(hosts_file_lookup(HOSTS, "SMARTHOST."), vec![v4]);
        assert_eq!(hosts_file_lookup(HOSTS, "other.example"), vec!["192.0.2.11".parse::<IpAddr>().unwrap()]);
        assert!(hosts_file_lookup(HOSTS, "commented.example").is_empty());
        assert!(hosts_file_lookup(HOSTS, "office.example").is_empty());
    }

    #[tokio::test]
    async fn disable_dns_lookups_reads_only_the_hosts_file() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(&hosts, HOSTS).unwrap();

        let hop = parse("[smarthost]:587").unwrap();
        let addrs = resolve_with_hosts_file(&hop, true, &hosts).await.unwrap();
        assert_eq!(addrs, vec!["192.0.2.10:587".parse::<SocketAddr>().unwrap()]);

        // A name the hosts file lacks is not found, whatever DNS would say.
        let hop = parse("[localhost.localdomain.invalid]").unwrap();
        let error = resolve_with_hosts_file(&hop, true, &hosts).await.unwrap_err();
        assert!(matches!(error, ResolveError::NotFound { .. }), "{error:?}");
        assert_eq!(error.status(), "5.4.4");
        // "example.com" is in DNS everywhere, never in this file.
        let hop = parse("example.com").unwrap();
        assert!(matches!(resolve_with_hosts_file(&hop, true, &hosts).await, Err(ResolveError::NotFound { .. })));

        // Literals need no lookup at all, even with no hosts file.
        let hop = parse("[192.0.2.5]:2525").unwrap();
        let none = dir.path().join("missing");
        assert_eq!(
            resolve_with_hosts_file(&hop, true, &none).await.unwrap(),
            vec!["192.0.2.5:2525".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn literals_name_themselves_and_need_no_resolver() {
        let none = Path::new("/nonexistent/hosts");
        for disable in [true, false] {
            let relays = resolve_relays_with(&parse("[192.0.2.5]:2525").unwrap(), disable, none, None).await.unwrap();
            assert_eq!(relays, vec![("192.0.2.5".to_string(), "192.0.2.5:2525".parse::<SocketAddr>().unwrap())]);
            let relays = resolve_relays_with(&parse("[ipv6:2001:db8::1]").unwrap(), disable, none, None).await.unwrap();
            assert_eq!(relays, vec![("2001:db8::1".to_string(), "[2001:db8::1]:25".parse::<SocketAddr>().unwrap())]);
        }
    }

    #[test]
    fn error_texts_and_statuses() {
        let name = || "example.test".to_string();
        let cases = [
            (
                ResolveError::NotFound { name: name(), rtype: "MX" },
                "5.4.4",
                "Host or domain name not found. Name service error for name=example.test type=MX: Host not found",
            ),
            (
                ResolveError::NoData { name: name(), rtype: "A" },
                "5.4.4",
                "Host or domain name not found. Name service error for name=example.test type=A: \
                 Host found but no data record of requested type",
            ),
            (ResolveError::NullMx { domain: name() }, "5.1.10", "Domain example.test does not accept mail (nullMX)"),
            (
                ResolveError::Temporary {
                    name: name(),
                    rtype: "MX",
                    detail: "Host not found, try again".to_string(),
                    cause: Some("request timed out".to_string()),
                },
                "4.4.3",
                "Host or domain name not found. Name service error for name=example.test type=MX: \
                 Host not found, try again",
            ),
        ];
        for (error, status, text) in cases {
            assert_eq!(error.status(), status);
            assert_eq!(error.is_temporary(), status.starts_with('4'));
            assert_eq!(error.to_string(), text);
        }
    }
}
