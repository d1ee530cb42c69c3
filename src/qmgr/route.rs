//! Which transport a recipient goes to (Postfix's trivial-rewrite resolve step, the part that
//! needs no lookup tables): $mydestination and localhost → local; relay_domains →
//! relay_transport; everything else → default_transport.

use crate::config::Config;

fn domain_of(address: &str) -> Option<String> {
    address.rsplit_once('@').map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
}

fn listed(list: &[String], domain: &str) -> bool {
    list.iter().any(|d| d.trim_end_matches('.').eq_ignore_ascii_case(domain))
}

/// The transport name (the part before any `:nexthop`).
pub fn transport_for(cfg: &Config, address: &str) -> String {
    let transport = match domain_of(address) {
        None => "local",
        Some(d) if d == "localhost" || listed(cfg.mydestination(), &d) => "local",
        Some(d) if listed(cfg.relay_domains(), &d) => cfg.relay_transport(),
        Some(_) => cfg.default_transport(),
    };
    transport.split(':').next().unwrap_or(transport).to_string()
}
