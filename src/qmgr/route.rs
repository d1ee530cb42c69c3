//! Where a recipient goes (Postfix's trivial-rewrite resolve step):
//!
//! - a recipient cleanup gave a permanent verdict (still pending, with a 5.x.x status: a
//!   relocated user, an unknown user in a virtual alias domain, a REJECTed local
//!   submission) → the `error` transport, which bounces it with that status and text;
//! - a local domain ($mydestination, `localhost`, a domain literal of one of our interface
//!   addresses) → `local`;
//! - $relay_domains (subdomains too when relay_domains is in
//!   parent_domain_matches_subdomains) → $relay_transport;
//! - anything else → $default_transport;
//! - transport_maps, when set, override all of these (transport(5): the whole address, the
//!   address without its extension, the domain and its parents, then `*`). A result
//!   `transport:nexthop` with an empty part keeps the default for that part; `error:text`
//!   bounces with that text.
//!
//! A table in mydestination or relay_domains that cannot answer means the recipient cannot
//! be resolved now: it is deferred (`4.3.0 address resolver failure`), never misrouted.

use crate::config::Config;
use crate::maps::search::{self, DomainList, LocalDomains};
use crate::maps::{MapError, MapList};
use crate::queue::{RcptState, Recipient};

/// The transport that bounces recipients (Postfix's error(8)).
pub const ERROR_TRANSPORT: &str = "error";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Bounce with this status and text (the `error` transport).
    Error { dsn: String, text: String },
    /// Deliver through this transport; `nexthop` (the part after `:`) when one was given, else
    /// the transport's default destination (relayhost, or the recipient's domain).
    Transport { name: String, nexthop: Option<String> },
    /// The address cannot be resolved now.
    Retry { dsn: String, text: String },
}

/// The lists routing needs, opened once per message.
pub struct Resolver {
    local: LocalDomains,
    relay: DomainList,
    transport: MapList,
    transport_parent: bool,
}

impl Resolver {
    pub fn new(cfg: &Config) -> Result<Resolver, MapError> {
        Ok(Resolver {
            local: LocalDomains::from_config(cfg)?,
            relay: DomainList::for_parameter(cfg, "relay_domains", cfg.relay_domains())?,
            transport: MapList::open(cfg.transport_maps())?,
            transport_parent: search::parent_matches(cfg, "transport_maps"),
        })
    }
}

/// `transport:nexthop` split; an empty part is None.
fn split_transport(value: &str) -> (Option<&str>, Option<&str>) {
    let value = value.trim();
    let (name, nexthop) = value.split_once(':').unwrap_or((value, ""));
    fn some(s: &str) -> Option<&str> {
        let s = s.trim();
        (!s.is_empty()).then_some(s)
    }
    (some(name), some(nexthop))
}

/// The `error` transport's nexthop as a bounce: `5.1.1 text` keeps its status, else 5.0.0.
fn error_result(text: Option<&str>) -> Route {
    let text = text.unwrap_or("delivery refused by the transport table");
    let (dsn, rest) = match text.split_once(' ') {
        Some((code, rest)) if code.starts_with("5.") && code.split('.').count() == 3 => (code, rest),
        _ => ("5.0.0", text),
    };
    Route::Error { dsn: dsn.to_string(), text: rest.to_string() }
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
    let default = match domain_of(&rcpt.address) {
        None => "local",
        Some(d) if d.trim_end_matches('.').eq_ignore_ascii_case("localhost") => "local",
        Some(d) => match (resolver.local.is_local(d), resolver.relay.matches(d.trim_end_matches('.'))) {
            (Ok(true), _) => "local",
            (Ok(false), Ok(true)) => cfg.relay_transport(),
            (Ok(false), Ok(false)) => cfg.default_transport(),
            (Err(_), _) | (_, Err(_)) => return retry(),
        },
    };
    let (default_name, default_nexthop) = split_transport(default);
    let mut name = default_name.unwrap_or("local").to_string();
    // local_transport's nexthop is our own name: not a destination to keep.
    let mut nexthop = default_nexthop.filter(|_| name != "local").map(str::to_string);
    if !resolver.transport.is_empty() {
        let address = search::internal_form(&rcpt.address);
        match search::transport(
            resolver.transport.maps(),
            &address,
            cfg.recipient_delimiter(),
            resolver.transport_parent,
        ) {
            Ok(Some(value)) => {
                let (n, h) = split_transport(&value);
                if let Some(n) = n {
                    name = n.to_string();
                }
                if name == ERROR_TRANSPORT {
                    return error_result(h);
                }
                if let Some(h) = h {
                    nexthop = Some(h.to_string());
                }
            }
            Ok(None) => {}
            Err(_) => return retry(),
        }
    }
    Route::Transport { name, nexthop }
}

/// The transport name for an address (the part before any `:nexthop`), ignoring verdicts.
pub fn transport_for(cfg: &Config, address: &str) -> String {
    let resolver = Resolver::new(cfg).ok();
    match route(cfg, resolver.as_ref(), &Recipient::new(address)) {
        Route::Transport { name, .. } => name,
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
        Route::Transport { name: name.into(), nexthop: None }
    }

    #[test]
    fn classes() {
        let cfg = cfg("relay_domains = [\"partner.org\"]\nrelay_transport = \"relay:[gw]\"\n");
        assert_eq!(route_of(&cfg, "root@mail.example.com"), t("local"));
        assert_eq!(route_of(&cfg, "root@MAIL.example.com."), t("local"));
        assert_eq!(route_of(&cfg, "root@localhost"), t("local"));
        assert_eq!(route_of(&cfg, "root"), t("local"));
        assert_eq!(route_of(&cfg, "root@[127.0.0.1]"), t("local"));
        let gw = Route::Transport { name: "relay".into(), nexthop: Some("[gw]".into()) };
        assert_eq!(route_of(&cfg, "a@partner.org"), gw);
        // relay_domains matches subdomains by default (parent_domain_matches_subdomains).
        assert_eq!(route_of(&cfg, "a@mx.partner.org"), gw);
        assert_eq!(route_of(&cfg, "a@elsewhere.net"), t("smtp"));
        assert_eq!(transport_for(&cfg, "a@elsewhere.net"), "smtp");
    }

    #[test]
    fn transport_maps_override() {
        let dir = tempfile::tempdir().unwrap();
        let table = dir.path().join("transport");
        std::fs::write(
            &table,
            "special.example  smtp:[10.1.1.1]:2525\n.sub.example  relay:\nbob@mail.example.com  :[10.2.2.2]\n\
             gone.example  error:5.1.2 this domain is closed\n*  smtp:[smarthost.isp.example]\n",
        )
        .unwrap();
        let cfg = cfg(&format!("transport_maps = [\"texthash:{}\"]\n", table.display()));
        let tr = |name: &str, hop: Option<&str>| Route::Transport { name: name.into(), nexthop: hop.map(String::from) };
        assert_eq!(route_of(&cfg, "a@special.example"), tr("smtp", Some("[10.1.1.1]:2525")));
        assert_eq!(route_of(&cfg, "a@x.sub.example"), tr("relay", None));
        // An empty transport keeps the default one; the nexthop is taken.
        assert_eq!(route_of(&cfg, "bob@mail.example.com"), tr("local", Some("[10.2.2.2]")));
        assert_eq!(
            route_of(&cfg, "a@gone.example"),
            Route::Error { dsn: "5.1.2".into(), text: "this domain is closed".into() }
        );
        assert_eq!(route_of(&cfg, "a@anywhere.example"), tr("smtp", Some("[smarthost.isp.example]")));
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
