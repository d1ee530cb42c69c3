//! Where a recipient would go, as far as relay control and recipient validation need to know
//! (the part of Postfix's trivial-rewrite resolve that smtpd asks): local, a virtual alias
//! domain, a relay domain, or anywhere else — and whether the address carried its own routing.
//!
//! Routing inside an address is how open relays are abused: `user%remote@ours`,
//! `remote!user@ours`, `"user@remote"@ours` and `@ours:user@remote` all name one of our
//! domains on the outside and someone else's inside. Like resolve, a local domain is stripped
//! and what is left is resolved again; an address that needed that and ends up anywhere but
//! here is `routed`, and with allow_untrusted_routing = no (Postfix's default, and the only
//! behaviour here) it never counts as an authorized destination.

use crate::config::Config;
use crate::maps::MapError;
use crate::maps::search::{self, DomainList, ListStyle, LocalDomains};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// $mydestination, localhost, our own address literals; also an address without a domain.
    Local,
    /// $virtual_alias_domains: every address must be a virtual alias.
    Alias,
    /// $relay_domains.
    Relay,
    /// Anywhere else.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The address after our own domains and the routing in it were taken off (internal form).
    pub address: String,
    /// Its domain, lower case, without a trailing dot (None: no domain at all).
    pub domain: Option<String>,
    pub class: Class,
    /// The address carried routing (%, !, a quoted @, a source route).
    pub routed: bool,
}

impl Resolved {
    /// Mail for it is for this machine or one of its virtual domains.
    pub fn is_final(&self) -> bool {
        matches!(self.class, Class::Local | Class::Alias)
    }

    /// What permit_auth_destination permits: final and relay destinations, never routed mail
    /// that leaves this machine (allow_untrusted_routing = no).
    pub fn is_authorized(&self) -> bool {
        if self.domain.is_none() {
            return true;
        }
        if self.routed && self.class != Class::Local {
            return false;
        }
        self.class != Class::Other
    }
}

/// The domain lists the classes come from.
#[derive(Debug, Clone)]
pub struct Domains {
    pub local: LocalDomains,
    virtual_alias: DomainList,
    relay: DomainList,
    percent_hack: bool,
    swap_bangpath: bool,
}

/// More rounds than that is an address built to make us loop.
const MAX_ROUNDS: usize = 20;

impl Domains {
    /// The lists from the configuration. A table that cannot be opened now (a hash: table not
    /// yet built) does not stop the server: it answers every lookup with a temporary error
    /// (the client gets 451 and tries again), and a warning names it.
    pub fn from_config(cfg: &Config) -> Result<Domains, MapError> {
        let open = |spec: &str| -> Result<std::sync::Arc<dyn crate::maps::Map>, MapError> {
            crate::maps::open(spec).or_else(|e| match e {
                MapError::BadSpec(_) | MapError::UnknownType(_) => Err(e),
                e => {
                    crate::mail_warning!("smtpd", "{e}: lookups in it fail until it can be opened");
                    crate::maps::open(&format!("fail:{spec}"))
                }
            })
        };
        let style = |parameter: &str| ListStyle::Domain { parent: search::parent_matches(cfg, parameter) };
        Ok(Domains {
            local: LocalDomains::new(
                cfg.myorigin(),
                DomainList::with_opener(cfg.mydestination(), ListStyle::Exact, &open)?,
                search::interface_addresses(cfg.inet_interfaces()),
            ),
            virtual_alias: DomainList::with_opener(cfg.virtual_alias_domains(), style("virtual_alias_domains"), &open)?,
            relay: DomainList::with_opener(cfg.relay_domains(), style("relay_domains"), &open)?,
            percent_hack: cfg.allow_percent_hack(),
            swap_bangpath: cfg.swap_bangpath(),
        })
    }

    /// Whether `domain` (lower case, no trailing dot) is local.
    pub fn is_local(&self, domain: &str) -> Result<bool, MapError> {
        Ok(domain == "localhost" || self.local.is_local(domain)?)
    }

    /// The class of `address` (as the client gave it, quotes and all).
    pub fn resolve(&self, address: &str) -> Result<Resolved, MapError> {
        let mut current = search::internal_form(strip_source_route(address));
        let mut routed = address.trim_start().starts_with('@');
        for _ in 0..MAX_ROUNDS {
            let (local, domain) = match current.rfind('@') {
                Some(at) => (current[..at].to_string(), Some(current[at + 1..].to_string())),
                None => (current.clone(), None),
            };
            let Some(domain) = domain else {
                // No domain: local, unless the local part routes elsewhere.
                match self.unroute(&local) {
                    Some(next) => {
                        routed = true;
                        current = next;
                        continue;
                    }
                    None => return Ok(Resolved { address: current, domain: None, class: Class::Local, routed }),
                }
            };
            let domain = strip_one_dot(&domain).to_ascii_lowercase();
            if !domain.is_empty() && self.is_local(&domain)? {
                if let Some(next) = self.unroute(&local) {
                    // Our domain on the outside: what is inside decides.
                    routed = true;
                    current = next;
                    continue;
                }
                return Ok(Resolved { address: current, domain: Some(domain), class: Class::Local, routed });
            }
            let class = if domain.is_empty() || domain.ends_with('.') || domain.starts_with('.') {
                Class::Other
            } else if self.virtual_alias.matches(&domain)? {
                Class::Alias
            } else if self.relay.matches(&domain)? {
                Class::Relay
            } else {
                Class::Other
            };
            // A local part with more routing in it on a remote domain is that domain's business;
            // it is still marked, so a relay domain gets no routed mail.
            if self.unroute(&local).is_some() {
                routed = true;
            }
            return Ok(Resolved { address: current, domain: Some(domain), class, routed });
        }
        // Give up: the safest answer is "not ours, and routed".
        Ok(Resolved { address: current, domain: Some(String::new()), class: Class::Other, routed: true })
    }

    /// The address a local part routes to: `user@remote` (a quoted @) as is, `site!user` →
    /// `user@site` (swap_bangpath), `user%remote` → `user@remote` (allow_percent_hack).
    fn unroute(&self, local: &str) -> Option<String> {
        if local.contains('@') {
            return Some(local.to_string());
        }
        if self.swap_bangpath
            && let Some((site, user)) = local.split_once('!')
            && !site.is_empty()
        {
            return Some(format!("{user}@{site}"));
        }
        if self.percent_hack
            && let Some(cut) = local.rfind('%')
        {
            return Some(format!("{}@{}", &local[..cut], &local[cut + 1..]));
        }
        None
    }
}

/// `@a,@b:user@c` → `user@c` (RFC 5321 source routes are ignored, not followed).
pub fn strip_source_route(address: &str) -> &str {
    let trimmed = address.trim();
    if trimmed.starts_with('@')
        && let Some(colon) = trimmed.find(':')
    {
        return &trimmed[colon + 1..];
    }
    trimmed
}

/// `example.com.` → `example.com`; `example.com..` stays (it is not a name).
fn strip_one_dot(domain: &str) -> &str {
    match domain.strip_suffix('.') {
        Some(rest) if !rest.ends_with('.') && !rest.is_empty() => rest,
        _ => domain,
    }
}
