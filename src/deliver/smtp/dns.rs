//! DNS lookups for the SMTP client's next hop (RFC 5321 section 5), through hickory-resolver.
//!
//! - [`DnsResolver::mx_relays`]: the MX records of a domain, by preference (equal preferences in
//!   random order), each exchanger's A then AAAA addresses; a domain without MX records is its
//!   own exchanger (implicit MX); a null MX (`0 .`, RFC 7505) refuses mail.
//! - [`DnsResolver::host_relays`]: a host's own A/AAAA addresses (`[host]` next hops).
//! - For the SMTP server's restrictions: [`DnsResolver::mail_domain`], [`DnsResolver::ipv4_addresses`]
//!   (DNSBLs), [`DnsResolver::txt_records`], [`DnsResolver::reverse_names`] and
//!   [`DnsResolver::host_addresses`] (the client's name).
//!
//! Names are looked up as given (fully qualified: no `search`/`domain` suffixes from
//! resolv.conf), and never in the hosts file: that is the caller's business, and with
//! `disable_dns_lookups` nothing in this module runs at all.
//!
//! Where the queries go: the nameservers of `/etc/resolv.conf`; a missing or unusable file is a
//! temporary error, never a panic. For tests and debugging, the environment variable
//! `TIDEMAIL_DNS_SERVER=IP:PORT[,IP:PORT...]` (a bare IP means port 53) replaces resolv.conf.
//! Postfix has no such parameter; it is a testing knob, not configuration. In-process tests use
//! [`DnsResolver::with_servers`] instead, so that parallel tests share no environment.
//!
//! Time: one query waits [`QUERY_TIMEOUT`] per try, with [`QUERY_ATTEMPTS`] tries, and a whole
//! lookup (one name, one type) is cut off after [`LOOKUP_DEADLINE`] (5 s) whatever the resolver
//! does. An MX resolution is the MX lookup followed by the exchangers' A/AAAA lookups, which run
//! concurrently: at most about 2 × [`LOOKUP_DEADLINE`] in all. Failures that may pass (timeouts,
//! SERVFAIL, no nameserver reachable — the offline laptop) are temporary, so mail is deferred,
//! never bounced, while the link is down.

use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;
use std::time::Duration;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::{Resolver, TokioResolver};

use super::relayhost::ResolveError;

/// The environment variable that points every lookup at other nameservers (tests, debugging).
pub const DNS_SERVER_ENV: &str = "TIDEMAIL_DNS_SERVER";
/// Where the nameservers are read from by default.
pub const RESOLV_CONF: &str = "/etc/resolv.conf";
/// How long one try of one query waits for an answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How many tries hickory makes of one query (its retry count).
pub const QUERY_ATTEMPTS: usize = 1;
/// The hard bound on one lookup (one name, one record type), retries included.
pub const LOOKUP_DEADLINE: Duration = Duration::from_secs(5);
/// Postfix's `smtp_mx_address_limit` default: the addresses an MX resolution yields at most.
pub const MX_ADDRESS_LIMIT: usize = 5;
/// Exchangers whose addresses are looked up (in preference order); bounds the work a hostile
/// domain with very many MX records can cause.
pub const MX_HOST_LIMIT: usize = 10;

/// Postfix's text for a lookup that may succeed later (h_errno TRY_AGAIN).
const TRY_AGAIN: &str = "Host not found, try again";

/// A configured DNS stub resolver. Cheap to clone (the connections and the answer cache are
/// shared); building one sends nothing.
#[derive(Clone)]
pub struct DnsResolver {
    inner: TokioResolver,
}

impl std::fmt::Debug for DnsResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DnsResolver")
    }
}

/// Why a resolver could not be set up (reported to the recipients as a temporary failure).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DnsConfigError(pub String);

/// The process-wide resolver and what it was built from (the override or resolv.conf's identity),
/// so that a rewritten resolv.conf (a new link, a VPN) is picked up on the next lookup.
static SHARED: Mutex<Option<(String, DnsResolver)>> = Mutex::new(None);

impl DnsResolver {
    /// A resolver that asks exactly these nameservers (UDP, and TCP for truncated answers).
    pub fn with_servers(servers: &[SocketAddr]) -> Result<DnsResolver, DnsConfigError> {
        if servers.is_empty() {
            return Err(DnsConfigError("no nameservers given".to_string()));
        }
        let servers = servers
            .iter()
            .map(|server| {
                let mut udp = ConnectionConfig::udp();
                udp.port = server.port();
                let mut tcp = ConnectionConfig::tcp();
                tcp.port = server.port();
                NameServerConfig::new(server.ip(), true, vec![udp, tcp])
            })
            .collect();
        DnsResolver::build(ResolverConfig::from_parts(None, vec![], servers))
    }

    /// A resolver that asks the nameservers listed in a resolv.conf(5) text. Its `search`,
    /// `domain` and `options` lines are ignored (names are looked up as given, with our timeouts).
    pub fn from_resolv_conf(text: &[u8]) -> Result<DnsResolver, DnsConfigError> {
        let (config, _) = hickory_resolver::system_conf::parse_resolv_conf(text)
            .map_err(|error| DnsConfigError(format!("{RESOLV_CONF}: {error}")))?;
        let servers = config.name_servers().to_vec();
        DnsResolver::build(ResolverConfig::from_parts(None, vec![], servers))
    }

    /// The resolver the SMTP client uses: `TIDEMAIL_DNS_SERVER` when set, else /etc/resolv.conf.
    /// Built once and cached; rebuilt when the override or resolv.conf changes.
    pub fn system() -> Result<DnsResolver, DnsConfigError> {
        let override_value = std::env::var(DNS_SERVER_ENV).ok().filter(|value| !value.trim().is_empty());
        let key = match &override_value {
            Some(value) => format!("env:{value}"),
            None => match std::fs::metadata(RESOLV_CONF) {
                Ok(meta) => format!(
                    "file:{}:{}:{}:{}",
                    meta.dev(),
                    meta.ino(),
                    meta.len(),
                    meta.mtime_nsec() + meta.mtime() * 1_000_000_000
                ),
                Err(error) => return Err(DnsConfigError(format!("cannot read {RESOLV_CONF}: {error}"))),
            },
        };
        let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((built_from, resolver)) = shared.as_ref()
            && *built_from == key
        {
            return Ok(resolver.clone());
        }
        let resolver = match override_value {
            Some(value) => DnsResolver::with_servers(&parse_servers(&value)?)?,
            None => {
                let text = std::fs::read(RESOLV_CONF)
                    .map_err(|error| DnsConfigError(format!("cannot read {RESOLV_CONF}: {error}")))?;
                DnsResolver::from_resolv_conf(&text)?
            }
        };
        *shared = Some((key, resolver.clone()));
        Ok(resolver)
    }

    fn build(config: ResolverConfig) -> Result<DnsResolver, DnsConfigError> {
        if config.name_servers().is_empty() {
            return Err(DnsConfigError("no nameservers configured".to_string()));
        }
        let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
        let options = builder.options_mut();
        options.timeout = QUERY_TIMEOUT;
        options.attempts = QUERY_ATTEMPTS;
        // The hosts file is read by relayhost.rs, from the file it is given; hickory's own copy
        // would be /etc/hosts, read once.
        options.use_hosts_file = ResolveHosts::Never;
        let inner = builder.build().map_err(|error| DnsConfigError(format!("cannot set up the resolver: {error}")))?;
        Ok(DnsResolver { inner })
    }

    /// The relays for mail to `domain`: (exchanger name, address) in the order to try them, at
    /// most [`MX_ADDRESS_LIMIT`].
    pub async fn mx_relays(&self, domain: &str, port: u16) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
        let name = fqdn(domain, "MX")?;
        let lookup = match bounded(self.inner.mx_lookup(name.clone())).await {
            Ok(lookup) => lookup,
            // The domain exists but has no MX records: it is its own mail exchanger.
            Err(Failure::NoData) => return self.host_relays(domain, port).await,
            Err(failure) => return Err(failure.into_error(domain, "MX")),
        };
        let mut records: Vec<(u16, Name)> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.clone())),
                _ => None,
            })
            .collect();
        if records.is_empty() {
            // An answer that holds only other types (say a CNAME chain that ends nowhere).
            return self.host_relays(domain, port).await;
        }
        // RFC 7505: "." as the exchanger says the domain takes no mail. A root exchanger mixed
        // with real ones has no address anyway; it is dropped.
        if records.iter().all(|(_, exchange)| exchange.is_root()) {
            return Err(ResolveError::NullMx { domain: domain.to_string() });
        }
        records.retain(|(_, exchange)| !exchange.is_root());
        let hosts = order_exchangers(records);

        // The exchangers' addresses are looked up concurrently, so the whole resolution stays
        // within about one lookup's bound after the MX lookup.
        let mut tasks = tokio::task::JoinSet::new();
        for (index, host) in hosts.iter().take(MX_HOST_LIMIT).enumerate() {
            let resolver = self.clone();
            let host = host.clone();
            tasks.spawn(async move { (index, resolver.addresses(&host).await) });
        }
        let mut results: Vec<Option<Result<Vec<IpAddr>, ResolveError>>> = vec![None; hosts.len().min(MX_HOST_LIMIT)];
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, result)) = joined {
                results[index] = Some(result);
            }
        }

        let mut relays = Vec::new();
        let mut temporary = None;
        let mut permanent = None;
        for (host, result) in hosts.iter().zip(results) {
            match result {
                Some(Ok(addrs)) => {
                    relays.extend(addrs.into_iter().map(|addr| (host.clone(), SocketAddr::new(addr, port))));
                }
                Some(Err(error)) if error.is_temporary() => temporary = temporary.or(Some(error)),
                Some(Err(error)) => permanent = permanent.or(Some(error)),
                None => {
                    temporary = temporary.or(Some(ResolveError::Temporary {
                        name: host.clone(),
                        rtype: "A",
                        detail: TRY_AGAIN.to_string(),
                        cause: Some("the lookup task failed".to_string()),
                    }))
                }
            }
        }
        if relays.is_empty() {
            // An exchanger that may come back is a reason to wait, not to bounce.
            return Err(temporary
                .or(permanent)
                .unwrap_or_else(|| ResolveError::NotFound { name: domain.to_string(), rtype: "MX" }));
        }
        let mut seen = HashSet::new();
        relays.retain(|(_, addr)| seen.insert(*addr));
        relays.truncate(MX_ADDRESS_LIMIT);
        Ok(relays)
    }

    /// A host's own addresses, A before AAAA, as (host, address) pairs.
    pub async fn host_relays(&self, host: &str, port: u16) -> Result<Vec<(String, SocketAddr)>, ResolveError> {
        let addrs = self.addresses(host).await?;
        Ok(addrs.into_iter().map(|addr| (host.to_string(), SocketAddr::new(addr, port))).collect())
    }

    /// A host's A and AAAA records, looked up together; one of them answering is enough.
    async fn addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        let name = fqdn(host, "A")?;
        let (v4, v6) =
            tokio::join!(bounded(self.inner.ipv4_lookup(name.clone())), bounded(self.inner.ipv6_lookup(name)));
        let mut found = Vec::new();
        let mut failures = Vec::new();
        for result in [v4, v6] {
            match result {
                Ok(lookup) => {
                    for addr in lookup.answers().iter().filter_map(|record| record.data.ip_addr()) {
                        if !found.contains(&addr) {
                            found.push(addr);
                        }
                    }
                }
                Err(failure) => failures.push(failure),
            }
        }
        if !found.is_empty() {
            return Ok(found);
        }
        // Nothing: the most hopeful failure decides (temporary, then "no such host", then "no
        // address records").
        let failure = failures
            .iter()
            .find(|failure| matches!(failure, Failure::Temporary(_)))
            .or_else(|| failures.iter().find(|failure| matches!(failure, Failure::NxDomain)))
            .cloned()
            .unwrap_or(Failure::NoData);
        Err(failure.into_error(host, "A"))
    }
}

/// Lookups for the SMTP server's restrictions (reject_unknown_*, DNSBLs, the client's name).
/// Each is one name and one record type within [`LOOKUP_DEADLINE`]; the restrictions put their
/// own, shorter bound (smtpd_dns_timeout) around them. Errors keep NXDOMAIN, "no records" and
/// temporary failures apart, because the reply codes differ.
impl DnsResolver {
    /// The A records of `name`.
    pub async fn ipv4_addresses(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, ResolveError> {
        let lookup = bounded(self.inner.ipv4_lookup(fqdn(name, "A")?)).await.map_err(|f| f.into_error(name, "A"))?;
        let found: Vec<std::net::Ipv4Addr> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        if found.is_empty() {
            return Err(ResolveError::NoData { name: name.to_string(), rtype: "A" });
        }
        Ok(found)
    }

    /// The TXT records of `name`, each record's strings joined.
    pub async fn txt_records(&self, name: &str) -> Result<Vec<String>, ResolveError> {
        let lookup = bounded(self.inner.txt_lookup(fqdn(name, "TXT")?)).await.map_err(|f| f.into_error(name, "TXT"))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::TXT(txt) => {
                    Some(txt.txt_data.iter().map(|part| String::from_utf8_lossy(part)).collect::<String>())
                }
                _ => None,
            })
            .collect())
    }

    /// The PTR names of an address (without the trailing dot, lower case).
    pub async fn reverse_names(&self, addr: IpAddr) -> Result<Vec<String>, ResolveError> {
        let arpa = reverse_name(addr);
        let lookup =
            bounded(self.inner.reverse_lookup(fqdn(&arpa, "PTR")?)).await.map_err(|f| f.into_error(&arpa, "PTR"))?;
        let names: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::PTR(ptr) => Some(ptr.0.to_ascii().trim_end_matches('.').to_ascii_lowercase()),
                _ => None,
            })
            .collect();
        if names.is_empty() {
            return Err(ResolveError::NoData { name: arpa, rtype: "PTR" });
        }
        Ok(names)
    }

    /// A host's A and AAAA addresses (one of them answering is enough).
    pub async fn host_addresses(&self, host: &str) -> Result<Vec<IpAddr>, ResolveError> {
        self.addresses(host).await
    }

    /// Whether mail can be addressed to `domain`: it has MX records (not a null MX), else an A or
    /// AAAA record. Ok when it has; NotFound for NXDOMAIN, NoData for a name without such
    /// records, NullMx, or Temporary.
    pub async fn mail_domain(&self, domain: &str) -> Result<(), ResolveError> {
        match bounded(self.inner.mx_lookup(fqdn(domain, "MX")?)).await {
            Ok(lookup) => {
                let exchangers: Vec<&Name> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::MX(mx) => Some(&mx.exchange),
                        _ => None,
                    })
                    .collect();
                if !exchangers.is_empty() && exchangers.iter().all(|name| name.is_root()) {
                    return Err(ResolveError::NullMx { domain: domain.to_string() });
                }
                if !exchangers.is_empty() {
                    return Ok(());
                }
                self.addresses(domain).await.map(|_| ())
            }
            Err(Failure::NoData) => self.addresses(domain).await.map(|_| ()),
            Err(failure) => Err(failure.into_error(domain, "MX")),
        }
    }
}

/// The `in-addr.arpa` / `ip6.arpa` name of an address (IPv4-mapped IPv6 as IPv4).
pub fn reverse_name(addr: IpAddr) -> String {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    match addr {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            format!("{d}.{c}.{b}.{a}.in-addr.arpa")
        }
        IpAddr::V6(v6) => format!("{}.ip6.arpa", reversed_nibbles(v6)),
    }
}

/// An IPv6 address as reversed hex nibbles separated by dots (`1.0.0.0...8.b.d.0.1.0.0.2`), the
/// form both ip6.arpa and DNSBLs use.
pub fn reversed_nibbles(v6: std::net::Ipv6Addr) -> String {
    let hex: String = v6.octets().iter().map(|byte| format!("{byte:02x}")).collect();
    hex.chars().rev().map(String::from).collect::<Vec<_>>().join(".")
}

/// How a lookup failed, in the terms that decide bounce or defer.
#[derive(Debug, Clone)]
enum Failure {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// The name exists but has no record of this type.
    NoData,
    /// Anything that may pass: timeout, SERVFAIL, REFUSED, no nameserver reachable.
    Temporary(String),
}

impl Failure {
    fn into_error(self, name: &str, rtype: &'static str) -> ResolveError {
        let name = name.to_string();
        match self {
            Failure::NxDomain => ResolveError::NotFound { name, rtype },
            Failure::NoData => ResolveError::NoData { name, rtype },
            Failure::Temporary(cause) => {
                ResolveError::Temporary { name, rtype, detail: TRY_AGAIN.to_string(), cause: Some(cause) }
            }
        }
    }
}

/// Runs one lookup within [`LOOKUP_DEADLINE`] and sorts its failure.
async fn bounded<T>(lookup: impl Future<Output = Result<T, NetError>>) -> Result<T, Failure> {
    match tokio::time::timeout(LOOKUP_DEADLINE, lookup).await {
        Ok(Ok(found)) => Ok(found),
        Ok(Err(error)) if error.is_nx_domain() => Err(Failure::NxDomain),
        Ok(Err(error)) if error.is_no_records_found() => Err(Failure::NoData),
        Ok(Err(error)) => Err(Failure::Temporary(error.to_string())),
        Err(_) => Err(Failure::Temporary("lookup timed out".to_string())),
    }
}

/// The name as an absolute DNS name (so no resolv.conf search suffix is tried).
fn fqdn(name: &str, rtype: &'static str) -> Result<Name, ResolveError> {
    let absolute = format!("{}.", name.trim_end_matches('.'));
    Name::from_ascii(&absolute).map_err(|_| ResolveError::NotFound { name: name.to_string(), rtype })
}

/// Exchanger names by preference, equal preferences shuffled (RFC 5321 section 5.1), each name
/// once (at its best preference).
fn order_exchangers(mut records: Vec<(u16, Name)>) -> Vec<String> {
    shuffle(&mut records);
    // A stable sort keeps the shuffled order within one preference.
    records.sort_by_key(|(preference, _)| *preference);
    let mut hosts: Vec<String> = Vec::new();
    for (_, exchange) in records {
        let host = exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// Fisher-Yates with std's randomly keyed hasher as the random source (no rand crate needed for
/// load spreading).
fn shuffle<T>(items: &mut [T]) {
    let random = RandomState::new();
    for i in (1..items.len()).rev() {
        let j = (random.hash_one(i) % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// `IP:PORT`, `[IPv6]:PORT` or a bare IP (port 53), comma or space separated.
pub fn parse_servers(text: &str) -> Result<Vec<SocketAddr>, DnsConfigError> {
    let mut servers = Vec::new();
    for item in text.split(|c: char| c == ',' || c.is_ascii_whitespace()).filter(|item| !item.is_empty()) {
        let server = match (item.parse::<SocketAddr>(), item.parse::<IpAddr>()) {
            (Ok(addr), _) => addr,
            (_, Ok(ip)) => SocketAddr::new(ip, 53),
            _ => return Err(DnsConfigError(format!("{DNS_SERVER_ENV}: bad nameserver address \"{item}\""))),
        };
        servers.push(server);
    }
    if servers.is_empty() {
        return Err(DnsConfigError(format!("{DNS_SERVER_ENV}: no nameserver address")));
    }
    Ok(servers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    #[test]
    fn exchangers_by_preference() {
        let records = vec![
            (20, name("mx3.example.")),
            (10, name("MX1.example.")),
            (30, name("mx1.example.")),
            (15, name("mx2.example.")),
        ];
        assert_eq!(order_exchangers(records), ["mx1.example", "mx2.example", "mx3.example"]);
    }

    #[test]
    fn equal_preferences_are_shuffled() {
        let records: Vec<(u16, Name)> =
            vec![(10, name("a.example.")), (10, name("b.example.")), (10, name("c.example.")), (5, name("first."))];
        let mut seen = HashSet::new();
        for _ in 0..200 {
            let hosts = order_exchangers(records.clone());
            assert_eq!(hosts[0], "first");
            seen.insert(hosts[1..].to_vec());
        }
        // 6 orders exist; 200 draws that all landed on one would mean no shuffling.
        assert!(seen.len() > 1, "{seen:?}");
    }

    #[test]
    fn reverse_names() {
        assert_eq!(reverse_name("192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
        assert_eq!(reverse_name("::ffff:192.0.2.1".parse().unwrap()), "1.2.0.192.in-addr.arpa");
        let v6 = reverse_name("2001:db8::1".parse().unwrap());
        assert!(v6.starts_with("1.0.0.0.0.0.0.0."), "{v6}");
        assert!(v6.ends_with("8.b.d.0.1.0.0.2.ip6.arpa"), "{v6}");
    }

    #[test]
    fn server_lists() {
        let v4: SocketAddr = "127.0.0.1:5353".parse().unwrap();
        assert_eq!(parse_servers("127.0.0.1:5353").unwrap(), vec![v4]);
        assert_eq!(
            parse_servers("127.0.0.1:5353, [::1]:53 192.0.2.1").unwrap(),
            vec![v4, "[::1]:53".parse().unwrap(), "192.0.2.1:53".parse().unwrap()]
        );
        assert!(parse_servers("").is_err());
        assert!(parse_servers("localhost:53").is_err());
    }

    #[test]
    fn resolv_conf_without_nameservers_is_an_error() {
        assert!(DnsResolver::from_resolv_conf(b"search example.org\n").is_err());
        assert!(DnsResolver::from_resolv_conf(b"nameserver 127.0.0.53\noptions edns0\n").is_ok());
        assert!(DnsResolver::with_servers(&[]).is_err());
    }
}
