//! Postfix's search orders: which keys are tried, in which order, for each use of a table,
//! and lists of domains or networks (`mydestination`, `relay_domains`, `mynetworks`...).
//!
//! Keys come in two kinds (Postfix's FULL and PARTIAL lookups, [`Key`]): the whole input
//! string, which every table is asked, and a piece of it (`@domain`, a parent domain, an IP
//! prefix, `user@`), which only exact tables are asked: a regexp or cidr table sees the
//! whole input once and never a fragment that could match by accident. A list of tables is
//! searched key by key: the first key is tried in every table before the second key is tried
//! in any. Exact tables get the key in lower case (Postfix folds fixed-table keys).
//!
//! Addresses are given in internal form: the local part unquoted (`john smith@example.com`,
//! not `"john smith"@example.com`), the way Postfix looks them up; see [`internal_form`].
//!
//! - [`address`] for canonical(5), virtual(5) and relocated(5) tables;
//! - [`access_address`], [`access_domain`], [`access_client`] and [`access_ip`] for access(5);
//! - [`transport`] for transport(5);
//! - [`DomainList`], [`LocalDomains`] and [`NetworkList`] for parameters that list domains or
//!   networks, with `!` exclusions, `/file/name` and `type:table` entries.
//!
//! Every function returns `Err(MapError)` when a table cannot answer: the caller defers,
//! never treats it as "not found".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::{Map, MapError, MapKind};
use crate::config::Config;

/// Opens a table by its `type:name`: `maps::open`, or tables of their own in tests.
pub type OpenFn = dyn Fn(&str) -> Result<Arc<dyn Map>, MapError>;

/// How much of the input a lookup key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// The whole input string: every table is asked.
    Whole,
    /// A piece of it (a stripped extension, `@domain`, a parent domain, an IP prefix):
    /// only exact tables are asked.
    Part,
}

/// Look `key` up in `maps` in order; the first table that knows it answers.
pub fn find(maps: &[Arc<dyn Map>], key: &str, kind: Key) -> Result<Option<String>, MapError> {
    for map in maps {
        if let Some(value) = find_in(map.as_ref(), key, kind)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// Look `key` up in one table, if that table may be asked such a key.
pub fn find_in(map: &dyn Map, key: &str, kind: Key) -> Result<Option<String>, MapError> {
    match map.kind() {
        MapKind::Pattern if kind == Key::Part => Ok(None),
        MapKind::Pattern => map.lookup(key),
        MapKind::Exact => map.lookup(&key.to_lowercase()),
    }
}

// ---------------------------------------------------------------------------------------------
// Addresses and their extensions
// ---------------------------------------------------------------------------------------------

/// Split a local part into its base and its extension (which keeps its delimiter):
/// `user+foo` gives `("user", "+foo")` with delimiter `+`. `delimiters` is
/// recipient_delimiter: any of its characters starts an extension, the first one found wins.
///
/// As Postfix does, nothing is split off `postmaster`, `mailer-daemon` or `double-bounce`,
/// nor off `owner-list` and `list-request` when `-` is a delimiter, nor when the base would
/// be empty.
pub fn split_extension<'a>(local: &'a str, delimiters: &str) -> Option<(&'a str, &'a str)> {
    if delimiters.is_empty() {
        return None;
    }
    const NEVER_SPLIT: [&str; 3] = ["postmaster", "mailer-daemon", "double-bounce"];
    if NEVER_SPLIT.iter().any(|n| local.eq_ignore_ascii_case(n)) {
        return None;
    }
    if delimiters.contains('-') {
        let lower = local.to_ascii_lowercase();
        if lower.starts_with("owner-") || (lower.len() > 8 && lower.ends_with("-request")) {
            return None;
        }
    }
    let at = local.find(|c| delimiters.contains(c))?;
    if at == 0 {
        return None;
    }
    Some((&local[..at], &local[at..]))
}

/// Split an internal-form address at its last `@`: `(local, Some(domain))`, or the whole
/// string and None.
pub fn split_at_domain(address: &str) -> (&str, Option<&str>) {
    match address.rfind('@') {
        Some(at) => (&address[..at], Some(&address[at + 1..])),
        None => (address, None),
    }
}

/// An address with its extension removed (`user+foo@domain` → `user@domain`) and the
/// extension, if it has one.
pub fn strip_extension(address: &str, delimiters: &str) -> Option<(String, String)> {
    let (local, domain) = split_at_domain(address);
    let (base, extension) = split_extension(local, delimiters)?;
    let bare = match domain {
        Some(domain) => format!("{base}@{domain}"),
        None => base.to_string(),
    };
    Some((bare, extension.to_string()))
}

/// The internal form of an address: its local part unquoted (`"john smith"@example.com` →
/// `john smith@example.com`). An address without quotes is returned as it is.
pub fn internal_form(address: &str) -> String {
    if !address.contains('"') {
        return address.to_string();
    }
    let mut out = String::with_capacity(address.len());
    let mut chars = address.chars();
    let mut in_quotes = false;
    let mut rest_start = None;
    let mut consumed = 0;
    while let Some(c) = chars.next() {
        consumed += c.len_utf8();
        match c {
            '"' => in_quotes = !in_quotes,
            '\\' if in_quotes => {
                if let Some(n) = chars.next() {
                    consumed += n.len_utf8();
                    out.push(n);
                }
            }
            '@' if !in_quotes => {
                rest_start = Some(consumed - 1);
                break;
            }
            c => out.push(c),
        }
    }
    if let Some(start) = rest_start {
        // The domain (after the first unquoted @) is copied as it is.
        out.push_str(&address[start..]);
    }
    out
}

/// The external form of an internal-form address: the local part (everything before the last
/// `@`) quoted when it is not a dot-atom.
pub fn external_form(address: &str) -> String {
    let (local, domain) = split_at_domain(address);
    let local = quote_local_part(local);
    match domain {
        Some(domain) => format!("{local}@{domain}"),
        None => local,
    }
}

pub use crate::address::quote_local_part;

/// Whether a domain is one of ours, for the `user` keys of [`address`].
pub trait LocalTest {
    fn is_local(&self, domain: &str) -> Result<bool, MapError>;
}

impl<F: Fn(&str) -> Result<bool, MapError>> LocalTest for F {
    fn is_local(&self, domain: &str) -> Result<bool, MapError> {
        self(domain)
    }
}

/// What an address search found: the table's value, and the address extension that had to
/// be removed to find it (None when the key kept it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub value: String,
    pub extension: Option<String>,
}

/// The canonical(5) / virtual(5) / relocated(5) search for `address` (internal form):
///
/// 1. `user+ext@domain`, the whole address (every table);
/// 2. `user@domain`, when the address has an extension;
/// 3. `user+ext`, then `user`, only when `local` says the domain is ours ($myorigin,
///    $mydestination, $inet_interfaces);
/// 4. `@domain`.
///
/// Keys 2 to 4 are asked of exact tables only. An address without a domain is looked up
/// whole, then without its extension.
pub fn address(
    maps: &[Arc<dyn Map>],
    address: &str,
    delimiters: &str,
    local: &dyn LocalTest,
) -> Result<Option<Found>, MapError> {
    let found =
        |value: String, extension: Option<&str>| Some(Found { value, extension: extension.map(str::to_string) });
    if let Some(value) = find(maps, address, Key::Whole)? {
        return Ok(found(value, None));
    }
    let stripped = strip_extension(address, delimiters);
    if let Some((bare, extension)) = &stripped
        && let Some(value) = find(maps, bare, Key::Part)?
    {
        return Ok(found(value, Some(extension)));
    }
    let (user, domain) = split_at_domain(address);
    let Some(domain) = domain else {
        return Ok(None);
    };
    if local.is_local(domain)? {
        if let Some(value) = find(maps, user, Key::Part)? {
            return Ok(found(value, None));
        }
        if let Some((bare, extension)) = &stripped {
            let (bare_user, _) = split_at_domain(bare);
            if let Some(value) = find(maps, bare_user, Key::Part)? {
                return Ok(found(value, Some(extension)));
            }
        }
    }
    Ok(find(maps, &format!("@{domain}"), Key::Part)?.map(|value| Found { value, extension: None }))
}

// ---------------------------------------------------------------------------------------------
// access(5)
// ---------------------------------------------------------------------------------------------

/// The names a domain search tries: the domain, then each parent domain down to the top
/// level, as `example.com` when parent domains match subdomains (`parent`), else as
/// `.example.com`.
pub fn domain_keys(domain: &str, parent: bool) -> Vec<String> {
    let mut keys = vec![domain.to_string()];
    let mut rest = domain;
    while let Some(dot) = rest.get(1..).and_then(|r| r.find('.')).map(|i| i + 1) {
        rest = &rest[dot..];
        keys.push(if parent { rest[1..].to_string() } else { rest.to_string() });
    }
    keys.retain(|k| !k.is_empty() && k != ".");
    keys
}

/// An access(5) domain search: the domain (a whole key when `whole`, as for a client
/// hostname; a part when it comes from an address), then its parent domains (parts).
pub fn access_domain(
    maps: &[Arc<dyn Map>],
    domain: &str,
    whole: bool,
    parent: bool,
) -> Result<Option<String>, MapError> {
    for (i, key) in domain_keys(domain, parent).iter().enumerate() {
        let kind = if i == 0 && whole { Key::Whole } else { Key::Part };
        if let Some(value) = find(maps, key, kind)? {
            return Ok(Some(value));
        }
    }
    Ok(None)
}

/// An access(5) address search (check_sender_access, check_recipient_access): for
/// `user+ext@domain`, the keys `user+ext@domain`, `user@domain`, `domain` and its parent
/// domains (see [`access_domain`]), `user+ext@`, `user@`. The null sender is looked up
/// whole, under whatever key the caller gives (Postfix: `<>`).
pub fn access_address(
    maps: &[Arc<dyn Map>],
    address: &str,
    delimiters: &str,
    parent: bool,
) -> Result<Option<String>, MapError> {
    if let Some(value) = find(maps, address, Key::Whole)? {
        return Ok(Some(value));
    }
    let stripped = strip_extension(address, delimiters);
    if let Some((bare, _)) = &stripped
        && let Some(value) = find(maps, bare, Key::Part)?
    {
        return Ok(Some(value));
    }
    let (user, domain) = split_at_domain(address);
    let Some(domain) = domain else {
        // Not an address (the null sender's `<>`): looked up whole only.
        return Ok(None);
    };
    if !domain.is_empty()
        && let Some(value) = access_domain(maps, domain, false, parent)?
    {
        return Ok(Some(value));
    }
    if let Some(value) = find(maps, &format!("{user}@"), Key::Part)? {
        return Ok(Some(value));
    }
    if let Some((bare, _)) = &stripped {
        let (bare_user, _) = split_at_domain(bare);
        return find(maps, &format!("{bare_user}@"), Key::Part);
    }
    Ok(None)
}

/// The text form of a client address that access tables see: brackets and an `IPv6:`
/// prefix removed, an IPv4-mapped IPv6 address as plain IPv4.
pub fn ip_key(addr: &str) -> String {
    let bare = addr.trim_start_matches('[').trim_end_matches(']');
    let bare = bare.strip_prefix("IPv6:").or_else(|| bare.strip_prefix("ipv6:")).unwrap_or(bare);
    match bare.parse::<Ipv6Addr>() {
        Ok(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => bare.to_ascii_lowercase(),
        },
        Err(_) => bare.to_string(),
    }
}

/// An access(5) client address search: `1.2.3.4` (whole), then `1.2.3`, `1.2`, `1`; an IPv6
/// address loses its last `:part` at each step, on its text form (`2001:db8::1` →
/// `2001:db8:` → `2001:db8` → `2001`).
pub fn access_ip(maps: &[Arc<dyn Map>], addr: &str) -> Result<Option<String>, MapError> {
    let mut key = ip_key(addr);
    let delimiter = if key.contains(':') { ':' } else { '.' };
    let mut kind = Key::Whole;
    loop {
        if let Some(value) = find(maps, &key, kind)? {
            return Ok(Some(value));
        }
        match key.rfind(delimiter) {
            Some(cut) => key.truncate(cut),
            None => return Ok(None),
        }
        kind = Key::Part;
    }
}

/// An access(5) client search (check_client_access): the hostname and its parent domains,
/// then the address and its prefixes. A domain entry can therefore win over a more specific
/// address entry, as in Postfix.
pub fn access_client(
    maps: &[Arc<dyn Map>],
    hostname: &str,
    addr: &str,
    parent: bool,
) -> Result<Option<String>, MapError> {
    if let Some(value) = access_domain(maps, hostname, true, parent)? {
        return Ok(Some(value));
    }
    access_ip(maps, addr)
}

// ---------------------------------------------------------------------------------------------
// transport(5)
// ---------------------------------------------------------------------------------------------

/// A transport(5) search for `address` (internal form; the null address is the caller's
/// `$empty_address_recipient@$myhostname`): `user+ext@domain` (whole), `user@domain`, the
/// domain and its parent domains (`.parent` forms unless `parent`), and finally `*`.
pub fn transport(
    maps: &[Arc<dyn Map>],
    address: &str,
    delimiters: &str,
    parent: bool,
) -> Result<Option<String>, MapError> {
    if let Some(value) = find(maps, address, Key::Whole)? {
        return Ok(Some(value));
    }
    if let Some((bare, _)) = strip_extension(address, delimiters)
        && let Some(value) = find(maps, &bare, Key::Part)?
    {
        return Ok(Some(value));
    }
    if let (_, Some(domain)) = split_at_domain(address)
        && !domain.is_empty()
    {
        for key in domain_keys(domain, parent) {
            if let Some(value) = find(maps, &key, Key::Part)? {
                return Ok(Some(value));
            }
        }
    }
    find(maps, "*", Key::Whole)
}

// ---------------------------------------------------------------------------------------------
// Lists of domains
// ---------------------------------------------------------------------------------------------

/// How the names in a list match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStyle {
    /// Whole names only, case-insensitively; a table is asked the name once (Postfix's
    /// string lists: mydestination, masquerade_exceptions).
    Exact,
    /// Host and domain names (Postfix's domain lists: relay_domains,
    /// virtual_alias_domains...). `example.com` matches itself, and its subdomains too
    /// when `parent`; `.example.com` matches the subdomains when not `parent`. An exact
    /// table is asked the name and then each parent domain (`.parent` forms unless
    /// `parent`); a pattern table the name only.
    Domain { parent: bool },
}

/// Whether `parameter` is named in parent_domain_matches_subdomains.
pub fn parent_matches(cfg: &Config, parameter: &str) -> bool {
    cfg.parent_domain_matches_subdomains().iter().any(|p| p == parameter)
}

#[derive(Debug, Clone)]
enum Matcher {
    Name(String),
    Table(Arc<dyn Map>),
}

#[derive(Debug, Clone)]
struct Pattern {
    /// Result when this pattern matches: false for `!pattern`.
    yes: bool,
    matcher: Matcher,
}

/// Expand a list's entries: `/file/name` is replaced by the names in the file (separated by
/// white space or commas, `#` comments), leading `!`s are counted.
fn expand_entries(entries: &[String], depth: usize) -> Result<Vec<(bool, String)>, MapError> {
    let mut out = Vec::new();
    for entry in entries {
        let mut yes = true;
        let mut text = entry.as_str();
        while let Some(rest) = text.strip_prefix('!') {
            yes = !yes;
            text = rest;
        }
        if text.is_empty() {
            continue;
        }
        if text.starts_with('/') && depth < 5 {
            let content =
                std::fs::read_to_string(text).map_err(|e| MapError::unavailable(text, format!("open: {e}")))?;
            let names: Vec<String> = content
                .lines()
                .map(|line| line.split('#').next().unwrap_or(""))
                .flat_map(|line| line.split(|c: char| c == ',' || c.is_whitespace()))
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect();
            for (inner_yes, name) in expand_entries(&names, depth + 1)? {
                out.push((yes == inner_yes, name));
            }
        } else {
            out.push((yes, text.to_string()));
        }
    }
    Ok(out)
}

/// Whether a list entry names a table (`type:name`); `[::1]` and the like do not.
fn is_table(entry: &str) -> bool {
    !entry.starts_with('[') && entry.contains(':')
}

/// A parameter that lists domains (or other names): mydestination, relay_domains,
/// virtual_alias_domains, masquerade_exceptions... Entries are names, `.domain` patterns,
/// `type:table` lookups (the value is ignored: a name is listed when it is a key) and
/// `/file/name` files of entries; `!entry` excludes. The first entry that matches decides.
#[derive(Debug, Clone)]
pub struct DomainList {
    patterns: Vec<Pattern>,
    style: ListStyle,
}

impl DomainList {
    /// Build a list, opening its tables with `maps::open`.
    pub fn new(entries: &[String], style: ListStyle) -> Result<DomainList, MapError> {
        DomainList::with_opener(entries, style, &super::open)
    }

    /// A domain list for the parameter `parameter`, matching subdomains if the parameter is
    /// named in parent_domain_matches_subdomains.
    pub fn for_parameter(cfg: &Config, parameter: &str, entries: &[String]) -> Result<DomainList, MapError> {
        DomainList::new(entries, ListStyle::Domain { parent: parent_matches(cfg, parameter) })
    }

    /// Build a list, opening its tables with `open` (tests give tables of their own).
    pub fn with_opener(entries: &[String], style: ListStyle, open: &OpenFn) -> Result<DomainList, MapError> {
        let mut patterns = Vec::new();
        for (yes, entry) in expand_entries(entries, 0)? {
            let matcher = if is_table(&entry) { Matcher::Table(open(&entry)?) } else { Matcher::Name(entry) };
            patterns.push(Pattern { yes, matcher });
        }
        Ok(DomainList { patterns, style })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `name` is listed (false when the first matching entry is an exclusion, or
    /// when nothing matches).
    pub fn matches(&self, name: &str) -> Result<bool, MapError> {
        let name = name.to_lowercase();
        for pattern in &self.patterns {
            if self.matches_one(&pattern.matcher, &name)? {
                return Ok(pattern.yes);
            }
        }
        Ok(false)
    }

    fn matches_one(&self, matcher: &Matcher, name: &str) -> Result<bool, MapError> {
        match (matcher, self.style) {
            (Matcher::Name(pattern), ListStyle::Exact) => Ok(pattern.eq_ignore_ascii_case(name)),
            (Matcher::Table(map), ListStyle::Exact) => Ok(find_in(map.as_ref(), name, Key::Whole)?.is_some()),
            (Matcher::Name(pattern), ListStyle::Domain { parent }) => {
                let pattern = pattern.to_lowercase();
                if pattern == name {
                    return Ok(true);
                }
                if parent {
                    Ok(name.len() > pattern.len()
                        && name.ends_with(&pattern)
                        && name.as_bytes()[name.len() - pattern.len() - 1] == b'.')
                } else {
                    Ok(pattern.starts_with('.') && name.len() > pattern.len() && name.ends_with(&pattern))
                }
            }
            (Matcher::Table(map), ListStyle::Domain { parent }) => {
                for (i, key) in domain_keys(name, parent).iter().enumerate() {
                    let kind = if i == 0 { Key::Whole } else { Key::Part };
                    if find_in(map.as_ref(), key, kind)?.is_some() {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
        }
    }
}

/// A domain literal's address: `[192.0.2.1]`, `[IPv6:2001:db8::1]`.
pub fn domain_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = match inner.get(..5) {
        Some(prefix) if prefix.eq_ignore_ascii_case("ipv6:") => &inner[5..],
        _ => inner,
    };
    inner.parse().ok()
}

/// The addresses this machine's SMTP server listens on, per inet_interfaces: `all` (every
/// interface address that is up), `loopback-only`, or the addresses listed. Host names in
/// the list are not resolved.
pub fn interface_addresses(inet_interfaces: &[String]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for entry in inet_interfaces {
        match entry.to_ascii_lowercase().as_str() {
            "all" => {
                out.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]);
                if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
                    for interface in interfaces {
                        let Some(addr) = interface.address else { continue };
                        if let Some(v4) = addr.as_sockaddr_in() {
                            out.push(IpAddr::V4(v4.ip()));
                        } else if let Some(v6) = addr.as_sockaddr_in6() {
                            out.push(IpAddr::V6(v6.ip()));
                        }
                    }
                }
            }
            "loopback-only" => out.extend([IpAddr::V4(Ipv4Addr::LOCALHOST), IpAddr::V6(Ipv6Addr::LOCALHOST)]),
            other => {
                if let Ok(addr) = other.trim_start_matches('[').trim_end_matches(']').parse() {
                    out.push(addr);
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What makes a domain local (Postfix's resolve_local): listed in $mydestination, or a
/// domain literal of one of this machine's interface addresses ($inet_interfaces). Address
/// searches also count $myorigin ([`LocalDomains::is_origin_or_local`]).
#[derive(Debug, Clone)]
pub struct LocalDomains {
    origin: String,
    destinations: DomainList,
    interfaces: Vec<IpAddr>,
}

impl LocalDomains {
    pub fn from_config(cfg: &Config) -> Result<LocalDomains, MapError> {
        Ok(LocalDomains::new(
            cfg.myorigin(),
            DomainList::new(cfg.mydestination(), ListStyle::Exact)?,
            interface_addresses(cfg.inet_interfaces()),
        ))
    }

    pub fn new(origin: &str, destinations: DomainList, interfaces: Vec<IpAddr>) -> LocalDomains {
        LocalDomains { origin: origin.trim_end_matches('.').to_string(), destinations, interfaces }
    }

    /// Whether mail for `domain` is delivered on this machine.
    pub fn is_local(&self, domain: &str) -> Result<bool, MapError> {
        let domain = domain.strip_suffix('.').unwrap_or(domain);
        if domain.is_empty() || domain.ends_with('.') {
            return Ok(false);
        }
        if self.destinations.matches(domain)? {
            return Ok(true);
        }
        Ok(domain_literal(domain).is_some_and(|addr| self.interfaces.contains(&addr)))
    }

    /// Whether `domain` is $myorigin or local: when the `user` keys of an address search
    /// apply.
    pub fn is_origin_or_local(&self, domain: &str) -> Result<bool, MapError> {
        Ok(domain.eq_ignore_ascii_case(&self.origin) || self.is_local(domain)?)
    }
}

impl LocalTest for LocalDomains {
    fn is_local(&self, domain: &str) -> Result<bool, MapError> {
        self.is_origin_or_local(domain)
    }
}

// ---------------------------------------------------------------------------------------------
// Lists of networks
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum NetMatcher {
    Net(IpAddr, u8),
    Table(Arc<dyn Map>),
}

/// A list of client networks (mynetworks): `192.0.2.0/24`, `[2001:db8::]/32`, single
/// addresses, `type:table` (the address is looked up as it is, no prefixes), `/file/name`
/// files, `!` exclusions. Entries that are neither (host names) never match here.
#[derive(Debug, Clone)]
pub struct NetworkList {
    patterns: Vec<(bool, NetMatcher)>,
}

impl NetworkList {
    pub fn new(entries: &[String]) -> Result<NetworkList, MapError> {
        NetworkList::with_opener(entries, &super::open)
    }

    pub fn with_opener(entries: &[String], open: &OpenFn) -> Result<NetworkList, MapError> {
        let mut patterns = Vec::new();
        for (yes, entry) in expand_entries(entries, 0)? {
            if is_table(&entry) && !looks_like_ipv6(&entry) {
                patterns.push((yes, NetMatcher::Table(open(&entry)?)));
            } else if let Some((addr, prefix)) = parse_network(&entry) {
                patterns.push((yes, NetMatcher::Net(addr, prefix)));
            }
        }
        Ok(NetworkList { patterns })
    }

    /// Whether `addr` is listed.
    pub fn matches(&self, addr: IpAddr) -> Result<bool, MapError> {
        let addr = normalize(addr);
        for (yes, matcher) in &self.patterns {
            let hit = match matcher {
                NetMatcher::Net(net, prefix) => in_network(addr, *net, *prefix),
                NetMatcher::Table(map) => find_in(map.as_ref(), &addr.to_string(), Key::Whole)?.is_some(),
            };
            if hit {
                return Ok(*yes);
            }
        }
        Ok(false)
    }
}

fn looks_like_ipv6(entry: &str) -> bool {
    entry.trim_start_matches('[').split(['/', ']']).next().is_some_and(|a| a.parse::<Ipv6Addr>().is_ok())
}

/// IPv4-mapped IPv6 addresses compare as IPv4.
fn normalize(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

/// `addr[/prefix]`, the address possibly in brackets.
fn parse_network(entry: &str) -> Option<(IpAddr, u8)> {
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p.parse::<u8>().ok()?)),
        None => (entry, None),
    };
    let addr: IpAddr = addr.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some((normalize(addr), prefix))
}

fn in_network(addr: IpAddr, net: IpAddr, prefix: u8) -> bool {
    match (addr, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Tables for unit tests: in memory, recording the keys they are asked.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use crate::maps::{Map, MapError, MapKind};

    type Matcher = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

    pub struct TestMap {
        spec: String,
        kind: MapKind,
        entries: HashMap<String, String>,
        matcher: Option<Matcher>,
        fail: bool,
        asked: Mutex<Vec<String>>,
    }

    impl std::fmt::Debug for TestMap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TestMap").field("spec", &self.spec).finish()
        }
    }

    impl TestMap {
        /// An exact table; keys are stored in lower case, as exact tables fold them.
        pub fn exact(spec: &str, entries: &[(&str, &str)]) -> Arc<TestMap> {
            Arc::new(TestMap {
                spec: spec.to_string(),
                kind: MapKind::Exact,
                entries: entries.iter().map(|(k, v)| (k.to_lowercase(), v.to_string())).collect(),
                matcher: None,
                fail: false,
                asked: Mutex::new(Vec::new()),
            })
        }

        /// A pattern table answering with `matcher`.
        pub fn pattern(spec: &str, matcher: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Arc<TestMap> {
            Arc::new(TestMap {
                spec: spec.to_string(),
                kind: MapKind::Pattern,
                entries: HashMap::new(),
                matcher: Some(Box::new(matcher)),
                fail: false,
                asked: Mutex::new(Vec::new()),
            })
        }

        /// A table that cannot answer.
        pub fn failing(spec: &str) -> Arc<TestMap> {
            Arc::new(TestMap {
                spec: spec.to_string(),
                kind: MapKind::Exact,
                entries: HashMap::new(),
                matcher: None,
                fail: true,
                asked: Mutex::new(Vec::new()),
            })
        }

        /// The keys asked so far, in order.
        pub fn asked(&self) -> Vec<String> {
            self.asked.lock().unwrap().clone()
        }
    }

    impl Map for TestMap {
        fn spec(&self) -> &str {
            &self.spec
        }

        fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
            self.asked.lock().unwrap().push(key.to_string());
            if self.fail {
                return Err(MapError::unavailable(&self.spec, "test table is down"));
            }
            match &self.matcher {
                Some(m) => Ok(m(key)),
                None => Ok(self.entries.get(key).cloned()),
            }
        }

        fn kind(&self) -> MapKind {
            self.kind
        }
    }

    /// The tables as a list.
    pub fn list(maps: &[Arc<TestMap>]) -> Vec<Arc<dyn Map>> {
        maps.iter().map(|m| m.clone() as Arc<dyn Map>).collect()
    }

    /// An opener for lists that knows only `maps` (by spec).
    pub fn opener(maps: Vec<Arc<TestMap>>) -> impl Fn(&str) -> Result<Arc<dyn Map>, MapError> {
        move |spec: &str| {
            maps.iter()
                .find(|m| m.spec == spec)
                .map(|m| m.clone() as Arc<dyn Map>)
                .ok_or_else(|| MapError::UnknownType(spec.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{TestMap, list, opener};
    use super::*;

    fn never(_: &str) -> Result<bool, MapError> {
        Ok(false)
    }

    fn local_is(domains: &'static [&'static str]) -> impl Fn(&str) -> Result<bool, MapError> {
        move |d: &str| Ok(domains.iter().any(|x| x.eq_ignore_ascii_case(d)))
    }

    #[test]
    fn extensions() {
        assert_eq!(split_extension("user+foo", "+"), Some(("user", "+foo")));
        assert_eq!(split_extension("user+foo+bar", "+"), Some(("user", "+foo+bar")));
        assert_eq!(split_extension("user-foo+bar", "+-"), Some(("user", "-foo+bar")));
        assert_eq!(split_extension("user", "+"), None);
        assert_eq!(split_extension("+foo", "+"), None);
        assert_eq!(split_extension("user+foo", ""), None);
        assert_eq!(split_extension("postmaster", "t"), None);
        assert_eq!(split_extension("MAILER-DAEMON", "-"), None);
        assert_eq!(split_extension("owner-list", "-"), None);
        assert_eq!(split_extension("list-request", "-"), None);
        assert_eq!(split_extension("owner-list", "+"), None);
        assert_eq!(split_extension("a-b", "-"), Some(("a", "-b")));
        assert_eq!(strip_extension("user+foo@example.com", "+"), Some(("user@example.com".into(), "+foo".into())));
        assert_eq!(strip_extension("user@example.com", "+"), None);
    }

    #[test]
    fn internal_and_external_forms() {
        assert_eq!(internal_form("user@example.com"), "user@example.com");
        assert_eq!(internal_form(r#""john smith"@example.com"#), "john smith@example.com");
        assert_eq!(internal_form(r#""a\"b"@x"#), r#"a"b@x"#);
        assert_eq!(internal_form(r#""a@b"@c"#), "a@b@c");
        assert_eq!(external_form("john smith@example.com"), r#""john smith"@example.com"#);
        assert_eq!(external_form("a@b@c"), r#""a@b"@c"#);
        assert_eq!(external_form("user@example.com"), "user@example.com");
        assert_eq!(external_form("user"), "user");
        assert_eq!(quote_local_part(r#"a"b"#), r#""a\"b""#);
    }

    #[test]
    fn address_search_order() {
        let t = TestMap::exact("hash:t", &[]);
        let maps = list(std::slice::from_ref(&t));
        let local = local_is(&["example.com"]);
        assert_eq!(address(&maps, "user+foo@example.com", "+", &local).unwrap(), None);
        assert_eq!(t.asked(), ["user+foo@example.com", "user@example.com", "user+foo", "user", "@example.com"]);

        // Not local: no bare user keys.
        let t = TestMap::exact("hash:t", &[]);
        let maps = list(std::slice::from_ref(&t));
        address(&maps, "user+foo@other.org", "+", &local).unwrap();
        assert_eq!(t.asked(), ["user+foo@other.org", "user@other.org", "@other.org"]);

        // No extension, no delimiter.
        let t = TestMap::exact("hash:t", &[]);
        let maps = list(std::slice::from_ref(&t));
        address(&maps, "User@Example.com", "", &local).unwrap();
        assert_eq!(t.asked(), ["user@example.com", "user", "@example.com"]);

        // A bare name: itself only.
        let t = TestMap::exact("hash:t", &[]);
        let maps = list(std::slice::from_ref(&t));
        address(&maps, "user+x", "+", &never).unwrap();
        assert_eq!(t.asked(), ["user+x", "user"]);
    }

    #[test]
    fn address_search_results_and_extensions() {
        let t = TestMap::exact(
            "hash:t",
            &[("full+x@example.com", "A"), ("bare@example.com", "B"), ("local", "C"), ("@example.com", "D")],
        );
        let maps = list(&[t]);
        let local = local_is(&["example.com"]);
        let found = |a: &str| address(&maps, a, "+", &local).unwrap();
        assert_eq!(found("full+x@example.com"), Some(Found { value: "A".into(), extension: None }));
        assert_eq!(found("bare+y@example.com"), Some(Found { value: "B".into(), extension: Some("+y".into()) }));
        assert_eq!(found("local@example.com"), Some(Found { value: "C".into(), extension: None }));
        assert_eq!(found("local+z@example.com"), Some(Found { value: "C".into(), extension: Some("+z".into()) }));
        assert_eq!(found("nobody+q@example.com"), Some(Found { value: "D".into(), extension: None }));
        assert_eq!(found("local@elsewhere.org"), None);
    }

    #[test]
    fn pattern_tables_see_the_whole_address_once() {
        let exact = TestMap::exact("hash:e", &[("@example.com", "E")]);
        let pattern = TestMap::pattern("regexp:p", |k| (k == "nomatch@example.com").then(|| "P".to_string()));
        let maps = list(&[exact.clone(), pattern.clone()]);
        let local = local_is(&["example.com"]);
        let found = address(&maps, "user+x@example.com", "+", &local).unwrap();
        assert_eq!(found.unwrap().value, "E");
        assert_eq!(pattern.asked(), ["user+x@example.com"]);
        // Key by key: the whole key is tried in every table before a part in any.
        assert_eq!(exact.asked(), ["user+x@example.com", "user@example.com", "user+x", "user", "@example.com"]);
    }

    #[test]
    fn errors_are_not_not_found() {
        let down = TestMap::failing("hash:down");
        let maps = list(&[TestMap::exact("hash:t", &[]), down]);
        assert!(matches!(address(&maps, "a@b", "", &never), Err(MapError::Unavailable { .. })));
        assert!(access_address(&maps, "a@b", "", true).is_err());
        assert!(transport(&maps, "a@b", "", true).is_err());
        assert!(access_ip(&maps, "192.0.2.1").is_err());
        // An error in the local test propagates too.
        let t = list(&[TestMap::exact("hash:t", &[])]);
        let broken = |_: &str| Err(MapError::unavailable("mydestination", "down"));
        assert!(address(&t, "a@b", "", &broken).is_err());
    }

    #[test]
    fn domain_key_forms() {
        assert_eq!(domain_keys("a.b.example.com", true), ["a.b.example.com", "b.example.com", "example.com", "com"]);
        assert_eq!(
            domain_keys("a.b.example.com", false),
            ["a.b.example.com", ".b.example.com", ".example.com", ".com"]
        );
        assert_eq!(domain_keys("localhost", false), ["localhost"]);
    }

    #[test]
    fn access_address_order() {
        let t = TestMap::exact("hash:a", &[]);
        let maps = list(std::slice::from_ref(&t));
        access_address(&maps, "user+foo@mail.example.com", "+", false).unwrap();
        assert_eq!(
            t.asked(),
            [
                "user+foo@mail.example.com",
                "user@mail.example.com",
                "mail.example.com",
                ".example.com",
                ".com",
                "user+foo@",
                "user@"
            ]
        );
        let t = TestMap::exact("hash:a", &[]);
        let maps = list(std::slice::from_ref(&t));
        access_address(&maps, "user@mail.example.com", "+", true).unwrap();
        assert_eq!(t.asked(), ["user@mail.example.com", "mail.example.com", "example.com", "com", "user@"]);
    }

    #[test]
    fn access_tables_from_the_tutorial() {
        // 000: "ispy99@noman.com.cn 550 Go away", "friend.com OK", "202.192 REJECT".
        let t = TestMap::exact(
            "hash:access",
            &[("ispy99@noman.com.cn", "550 Go away"), ("friend.com", "OK"), ("202.192", "REJECT")],
        );
        let maps = list(&[t]);
        let pdms = false;
        assert_eq!(access_address(&maps, "ispy99@noman.com.cn", "", pdms).unwrap().as_deref(), Some("550 Go away"));
        assert_eq!(access_address(&maps, "joe@friend.com", "", pdms).unwrap().as_deref(), Some("OK"));
        // friend.com does not cover a subdomain unless parent domains match subdomains.
        assert_eq!(access_address(&maps, "joe@mx.friend.com", "", false).unwrap(), None);
        assert_eq!(access_address(&maps, "joe@mx.friend.com", "", true).unwrap().as_deref(), Some("OK"));
        assert_eq!(access_ip(&maps, "202.192.7.9").unwrap().as_deref(), Some("REJECT"));
        assert_eq!(access_ip(&maps, "202.193.7.9").unwrap(), None);
        let null = TestMap::exact("hash:a", &[("<>", "REJECT no bounces")]);
        let null_maps = list(std::slice::from_ref(&null));
        assert_eq!(access_address(&null_maps, "<>", "", false).unwrap().as_deref(), Some("REJECT no bounces"));
        assert_eq!(null.asked(), ["<>"]);
        assert_eq!(access_client(&maps, "host.friend.com", "10.0.0.1", true).unwrap().as_deref(), Some("OK"));
        assert_eq!(access_client(&maps, "unknown", "202.192.0.1", true).unwrap().as_deref(), Some("REJECT"));
    }

    #[test]
    fn access_dot_domain_without_parent_matching() {
        let t = TestMap::exact("hash:a", &[(".example.com", "REJECT")]);
        let maps = list(&[t]);
        assert_eq!(access_domain(&maps, "sub.example.com", true, false).unwrap().as_deref(), Some("REJECT"));
        assert_eq!(access_domain(&maps, "example.com", true, false).unwrap(), None);
        // With parent matching, .example.com is never a key that is tried.
        assert_eq!(access_domain(&maps, "sub.example.com", true, true).unwrap(), None);
    }

    #[test]
    fn ip_prefixes() {
        let t = TestMap::exact("hash:a", &[]);
        let maps = list(std::slice::from_ref(&t));
        access_ip(&maps, "202.192.0.1").unwrap();
        assert_eq!(t.asked(), ["202.192.0.1", "202.192.0", "202.192", "202"]);
        let t = TestMap::exact("hash:a", &[]);
        let maps = list(std::slice::from_ref(&t));
        access_ip(&maps, "[IPv6:2001:DB8::1]").unwrap();
        assert_eq!(t.asked(), ["2001:db8::1", "2001:db8:", "2001:db8", "2001"]);
        let t = TestMap::exact("hash:a", &[]);
        let maps = list(std::slice::from_ref(&t));
        access_ip(&maps, "::ffff:192.0.2.7").unwrap();
        assert_eq!(t.asked(), ["192.0.2.7", "192.0.2", "192.0", "192"]);
        // A cidr table (pattern) sees the whole address only.
        let cidr = TestMap::pattern("cidr:c", |_| None);
        let maps = list(std::slice::from_ref(&cidr));
        access_ip(&maps, "10.1.2.3").unwrap();
        assert_eq!(cidr.asked(), ["10.1.2.3"]);
    }

    #[test]
    fn transport_order() {
        let t = TestMap::exact("hash:transport", &[]);
        let maps = list(std::slice::from_ref(&t));
        transport(&maps, "user+ext@a.example.com", "+", false).unwrap();
        assert_eq!(
            t.asked(),
            ["user+ext@a.example.com", "user@a.example.com", "a.example.com", ".example.com", ".com", "*"]
        );
        let t = TestMap::exact("hash:transport", &[("example.com", "smtp:[relay]"), ("*", "error:no")]);
        let maps = list(&[t]);
        assert_eq!(transport(&maps, "u@a.example.com", "", true).unwrap().as_deref(), Some("smtp:[relay]"));
        assert_eq!(transport(&maps, "u@a.example.com", "", false).unwrap().as_deref(), Some("error:no"));
        assert_eq!(transport(&maps, "u@example.com", "", false).unwrap().as_deref(), Some("smtp:[relay]"));
    }

    #[test]
    fn domain_lists() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let list =
            DomainList::new(&names(&["example.com", ".example.org"]), ListStyle::Domain { parent: false }).unwrap();
        assert!(list.matches("example.com").unwrap());
        assert!(list.matches("EXAMPLE.com").unwrap());
        assert!(!list.matches("sub.example.com").unwrap());
        assert!(list.matches("sub.example.org").unwrap());
        assert!(!list.matches("example.org").unwrap());
        let list = DomainList::new(&names(&["example.com"]), ListStyle::Domain { parent: true }).unwrap();
        assert!(list.matches("a.b.example.com").unwrap());
        assert!(!list.matches("badexample.com").unwrap());
        // Exclusions: the first entry that matches decides.
        let list = DomainList::new(&names(&["!secret.example.com", "example.com"]), ListStyle::Domain { parent: true })
            .unwrap();
        assert!(!list.matches("secret.example.com").unwrap());
        assert!(!list.matches("x.secret.example.com").unwrap());
        assert!(list.matches("www.example.com").unwrap());
        // String lists: no subdomains, whatever the form.
        let list = DomainList::new(&names(&["example.com", ".example.org"]), ListStyle::Exact).unwrap();
        assert!(list.matches("Example.COM").unwrap());
        assert!(!list.matches("sub.example.org").unwrap());
        assert!(DomainList::new(&[], ListStyle::Exact).unwrap().is_empty());
    }

    #[test]
    fn domain_lists_with_tables() {
        let virt = TestMap::exact("hash:/etc/postfix/virtual", &[("test.net", "anything"), ("tom@test.net", "tom")]);
        let open = opener(vec![virt.clone(), TestMap::failing("hash:down")]);
        let specs = vec!["hash:/etc/postfix/virtual".to_string()];
        let list = DomainList::with_opener(&specs, ListStyle::Domain { parent: false }, &open).unwrap();
        assert!(list.matches("test.net").unwrap());
        assert!(!list.matches("test.com").unwrap());
        // Parent domains are asked in the .domain form.
        assert!(!list.matches("a.test.net").unwrap());
        assert_eq!(virt.asked()[virt.asked().len() - 2..], [".test.net", ".net"]);
        let list = DomainList::with_opener(&specs, ListStyle::Domain { parent: true }, &open).unwrap();
        assert!(list.matches("a.test.net").unwrap());
        // A table that is down: an error, not "not listed".
        let list =
            DomainList::with_opener(&["hash:down".to_string()], ListStyle::Domain { parent: false }, &open).unwrap();
        assert!(list.matches("test.net").is_err());
        // A table that cannot be opened.
        assert!(DomainList::with_opener(&["hash:missing".to_string()], ListStyle::Exact, &open).is_err());
    }

    #[test]
    fn domain_list_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("domains");
        std::fs::write(&file, "# our domains\nexample.com, example.net # trailing\n!bad.example.org\n.example.org\n")
            .unwrap();
        let list = DomainList::new(&[file.display().to_string()], ListStyle::Domain { parent: false }).unwrap();
        assert!(list.matches("example.net").unwrap());
        assert!(!list.matches("bad.example.org").unwrap());
        assert!(list.matches("good.example.org").unwrap());
        assert!(DomainList::new(&["/nonexistent/file".to_string()], ListStyle::Exact).is_err());
    }

    #[test]
    fn local_domains() {
        let dest =
            DomainList::new(&["mail.example.com".to_string(), "localhost".to_string()], ListStyle::Exact).unwrap();
        let local = LocalDomains::new("example.com", dest, vec!["192.0.2.1".parse().unwrap()]);
        assert!(local.is_local("mail.example.com").unwrap());
        assert!(local.is_local("MAIL.example.com.").unwrap());
        assert!(!local.is_local("example.com").unwrap());
        assert!(local.is_origin_or_local("example.com").unwrap());
        assert!(local.is_local("[192.0.2.1]").unwrap());
        assert!(!local.is_local("[192.0.2.2]").unwrap());
        assert!(!local.is_local("").unwrap());
        assert!(!local.is_local("x..").unwrap());
        assert_eq!(domain_literal("[IPv6:2001:db8::1]"), Some("2001:db8::1".parse().unwrap()));
        assert_eq!(domain_literal("example.com"), None);
    }

    #[test]
    fn interfaces() {
        let loopback = interface_addresses(&["loopback-only".to_string()]);
        assert!(loopback.contains(&"127.0.0.1".parse().unwrap()) && loopback.contains(&"::1".parse().unwrap()));
        let listed = interface_addresses(&["192.0.2.5".to_string(), "host.example".to_string()]);
        assert_eq!(listed, vec!["192.0.2.5".parse::<IpAddr>().unwrap()]);
        assert!(interface_addresses(&["all".to_string()]).contains(&"127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn network_lists() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let list =
            NetworkList::new(&names(&["127.0.0.0/8", "[::1]/128", "!192.168.1.13", "192.168.1.0/24", "host.name"]))
                .unwrap();
        let yes = |a: &str| list.matches(a.parse().unwrap()).unwrap();
        assert!(yes("127.1.2.3"));
        assert!(yes("::1"));
        assert!(yes("::ffff:192.168.1.7"));
        assert!(yes("192.168.1.7"));
        assert!(!yes("192.168.1.13"));
        assert!(!yes("192.168.2.1"));
        assert!(!yes("2001:db8::1"));
        let pop = TestMap::exact("hash:pop", &[("10.9.8.7", "ok")]);
        let open = opener(vec![pop]);
        let list = NetworkList::with_opener(&names(&["hash:pop", "2001:db8::/32"]), &open).unwrap();
        assert!(list.matches("10.9.8.7".parse().unwrap()).unwrap());
        assert!(list.matches("2001:db8::5".parse().unwrap()).unwrap());
        assert!(!list.matches("10.9.8.6".parse().unwrap()).unwrap());
    }
}
