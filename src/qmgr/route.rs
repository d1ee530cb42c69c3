//! Where a recipient goes (Postfix's trivial-rewrite resolve step):
//!
//! - a recipient cleanup gave a permanent verdict (still pending, with a 5.x.x status: a
//!   relocated user, an unknown user in a virtual alias domain, a REJECTed local
//!   submission) → the `error` transport, which bounces it with that status and text;
//! - a local domain ($mydestination, `localhost`, a domain literal of one of our interface
//!   addresses) → `local`;
//! - $relay_domains (subdomains too when relay_domains is in
//!   parent_domain_matches_subdomains) → $relay_transport;
//! - anything else → $default_transport.
//!
//! A table in mydestination or relay_domains that cannot answer means the recipient cannot
//! be resolved now: it is deferred (`4.3.0 address resolver failure`), never misrouted.

use crate::config::Config;
use crate::maps::MapError;
use crate::maps::search::{DomainList, LocalDomains};
use crate::queue::{RcptState, Recipient};

/// The transport that bounces recipients (Postfix's error(8)).
pub const ERROR_TRANSPORT: &str = "error";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Bounce with this status and text (the `error` transport).
    Error { dsn: String, text: String },
    /// Deliver through this transport (the part of the transport name before any `:nexthop`).
    Transport(String),
    /// The address cannot be resolved now.
    Retry { dsn: String, text: String },
}

/// The lists routing needs, opened once per message.
pub struct Resolver {
    local: LocalDomains,
    relay: DomainList,
}

impl Resolver {
    pub fn new(cfg: &Config) -> Result<Resolver, MapError> {
        Ok(Resolver {
            local: LocalDomains::from_config(cfg)?,
            relay: DomainList::for_parameter(cfg, "relay_domains", cfg.relay_domains())?,
        })
    }
}

fn domain_of(address: &str) -> Option<&str> {
    address.rsplit_once('@').map(|(_, d)| d)
}

/// A permanent verdict cleanup left on a pending recipient.
pub fn verdict(rcpt: &Recipient) -> Option<(&str, &str)> {
    match (rcpt.state, rcpt.dsn.as_deref()) {
        (RcptState::Pending, Some(dsn)) if dsn.starts_with("5.") => Some((dsn, rcpt.reason.as_deref().unwrap_or(""))),
        _ => None,
    }
}

/// Where `rcpt` goes. `resolver` is None when its tables could not be opened.
pub fn route(cfg: &Config, resolver: Option<&Resolver>, rcpt: &Recipient) -> Route {
    if let Some((dsn, text)) = verdict(rcpt) {
        return Route::Error { dsn: dsn.to_string(), text: text.to_string() };
    }
    let retry = || Route::Retry { dsn: "4.3.0".into(), text: "address resolver failure".into() };
    let Some(resolver) = resolver else {
        return retry();
    };
    let transport = match domain_of(&rcpt.address) {
        None => "local",
        Some(d) if d.trim_end_matches('.').eq_ignore_ascii_case("localhost") => "local",
        Some(d) => match (resolver.local.is_local(d), resolver.relay.matches(d.trim_end_matches('.'))) {
            (Ok(true), _) => "local",
            (Ok(false), Ok(true)) => cfg.relay_transport(),
            (Ok(false), Ok(false)) => cfg.default_transport(),
            (Err(_), _) | (_, Err(_)) => return retry(),
        },
    };
    Route::Transport(transport.split(':').next().unwrap_or(transport).to_string())
}

/// The transport name for an address (the part before any `:nexthop`), ignoring verdicts.
pub fn transport_for(cfg: &Config, address: &str) -> String {
    let resolver = Resolver::new(cfg).ok();
    match route(cfg, resolver.as_ref(), &Recipient::new(address)) {
        Route::Transport(t) => t,
        Route::Error { .. } => ERROR_TRANSPORT.to_string(),
        Route::Retry { .. } => cfg.default_transport().split(':').next().unwrap_or_default().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!("myhostname = \"mail.example.com\"\ninet_interfaces = [\"loopback-only\"]\n{extra}");
        Config::from_toml_str(&text, Path::new("/etc/tidemail/tidemail.toml")).unwrap()
    }

    fn route_of(cfg: &Config, address: &str) -> Route {
        route(cfg, Some(&Resolver::new(cfg).unwrap()), &Recipient::new(address))
    }

    fn t(name: &str) -> Route {
        Route::Transport(name.into())
    }

    #[test]
    fn classes() {
        let cfg = cfg("relay_domains = [\"partner.org\"]\nrelay_transport = \"relay:[gw]\"\n");
        assert_eq!(route_of(&cfg, "root@mail.example.com"), t("local"));
        assert_eq!(route_of(&cfg, "root@MAIL.example.com."), t("local"));
        assert_eq!(route_of(&cfg, "root@localhost"), t("local"));
        assert_eq!(route_of(&cfg, "root"), t("local"));
        assert_eq!(route_of(&cfg, "root@[127.0.0.1]"), t("local"));
        assert_eq!(route_of(&cfg, "a@partner.org"), t("relay"));
        // relay_domains matches subdomains by default (parent_domain_matches_subdomains).
        assert_eq!(route_of(&cfg, "a@mx.partner.org"), t("relay"));
        assert_eq!(route_of(&cfg, "a@elsewhere.net"), t("smtp"));
        assert_eq!(transport_for(&cfg, "a@elsewhere.net"), "smtp");
    }

    #[test]
    fn verdicts_go_to_the_error_transport() {
        let cfg = cfg("");
        let mut rcpt = Recipient::new("unknown@test.net");
        rcpt.dsn = Some("5.1.1".into());
        rcpt.reason = Some("User unknown in virtual alias table".into());
        assert_eq!(
            route(&cfg, None, &rcpt),
            Route::Error { dsn: "5.1.1".into(), text: "User unknown in virtual alias table".into() }
        );
        // A deferral's status is not a verdict.
        rcpt.dsn = Some("4.3.2".into());
        assert_eq!(route(&cfg, Some(&Resolver::new(&cfg).unwrap()), &rcpt), t("smtp"));
        // Done recipients are not routed at all, but a verdict needs a pending one.
        rcpt.dsn = Some("5.1.1".into());
        rcpt.state = RcptState::Bounced;
        assert_eq!(verdict(&rcpt), None);
    }

    #[test]
    fn unresolvable_means_retry() {
        let cfg = cfg("");
        assert_eq!(
            route(&cfg, None, &Recipient::new("a@b.example")),
            Route::Retry { dsn: "4.3.0".into(), text: "address resolver failure".into() }
        );
    }
}
