//! The default mynetworks: the "trusted" clients, computed from the local interfaces the way
//! Postfix does for each mynetworks_style, and written the Postfix way (`127.0.0.0/8`,
//! `[::1]/128`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address configured on a local interface, with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterfaceAddress {
    pub addr: IpAddr,
    pub prefix: u8,
}

/// The mynetworks list for `style` ("host", "subnet" or "class") on this machine.
pub fn local_networks(style: &str, ipv4: bool, ipv6: bool) -> Vec<String> {
    networks_for(style, &interface_addresses(), ipv4, ipv6)
}

/// The mynetworks list for `style` given the interface addresses; loopback always comes first.
pub fn networks_for(style: &str, addresses: &[InterfaceAddress], ipv4: bool, ipv6: bool) -> Vec<String> {
    let mut networks: Vec<String> = Vec::new();
    let mut add = |addr: IpAddr, prefix: u8| {
        let text = cidr(addr, prefix);
        if !networks.contains(&text) {
            networks.push(text);
        }
    };
    if ipv4 {
        add(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)), 8);
    }
    if ipv6 {
        add(IpAddr::V6(Ipv6Addr::LOCALHOST), 128);
    }
    for address in addresses {
        let wanted = match address.addr {
            IpAddr::V4(_) => ipv4,
            // Link-local addresses need a scope to mean anything; Postfix skips them too.
            IpAddr::V6(v6) => ipv6 && !v6.is_unicast_link_local(),
        };
        if !wanted || address.addr.is_loopback() {
            continue;
        }
        let prefix = match (style, address.addr) {
            ("host", IpAddr::V4(_)) => 32,
            ("host", IpAddr::V6(_)) => 128,
            ("class", IpAddr::V4(v4)) => class_prefix(v4).unwrap_or(32),
            // "class" has no meaning for IPv6: Postfix uses the subnet.
            _ => address.prefix,
        };
        add(address.addr, prefix);
    }
    networks
}

/// The old class A/B/C network size for an IPv4 address (none for multicast and above).
fn class_prefix(addr: Ipv4Addr) -> Option<u8> {
    match addr.octets()[0] {
        0..=127 => Some(8),
        128..=191 => Some(16),
        192..=223 => Some(24),
        _ => None,
    }
}

/// `network/prefix`, host bits cleared; IPv6 in brackets as Postfix writes it.
fn cidr(addr: IpAddr, prefix: u8) -> String {
    match addr {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            format!("{}/{prefix}", Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            format!("[{}]/{prefix}", Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Addresses of the interfaces that are up. An error (no /proc, seccomp...) gives none:
/// loopback is still trusted.
fn interface_addresses() -> Vec<InterfaceAddress> {
    use nix::net::if_::InterfaceFlags;
    let Ok(interfaces) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    interfaces
        .filter(|interface| interface.flags.contains(InterfaceFlags::IFF_UP))
        .filter_map(|interface| {
            let addr = interface.address?;
            let mask = interface.netmask;
            if let Some(v4) = addr.as_sockaddr_in() {
                let prefix =
                    mask.and_then(|m| m.as_sockaddr_in().map(|m| u32::from(m.ip()).leading_ones())).unwrap_or(32);
                return Some(InterfaceAddress { addr: IpAddr::V4(v4.ip()), prefix: prefix as u8 });
            }
            let v6 = addr.as_sockaddr_in6()?;
            let prefix =
                mask.and_then(|m| m.as_sockaddr_in6().map(|m| u128::from(m.ip()).leading_ones())).unwrap_or(128);
            Some(InterfaceAddress { addr: IpAddr::V6(v6.ip()), prefix: prefix as u8 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> Vec<InterfaceAddress> {
        let at = |text: &str, prefix| InterfaceAddress { addr: text.parse().unwrap(), prefix };
        vec![
            at("127.0.0.1", 8),
            at("::1", 128),
            at("192.168.1.23", 24),
            at("10.20.30.40", 16),
            at("172.16.5.4", 12),
            at("2001:db8:1:2::17", 64),
            at("fe80::1234", 64),
        ]
    }

    #[test]
    fn host_style_trusts_only_this_machine() {
        assert_eq!(
            networks_for("host", &addrs(), true, true),
            [
                "127.0.0.0/8",
                "[::1]/128",
                "192.168.1.23/32",
                "10.20.30.40/32",
                "172.16.5.4/32",
                "[2001:db8:1:2::17]/128",
            ]
        );
    }

    #[test]
    fn subnet_style_trusts_the_attached_networks() {
        assert_eq!(
            networks_for("subnet", &addrs(), true, true),
            ["127.0.0.0/8", "[::1]/128", "192.168.1.0/24", "10.20.0.0/16", "172.16.0.0/12", "[2001:db8:1:2::]/64",]
        );
    }

    #[test]
    fn class_style_widens_ipv4_to_its_class() {
        assert_eq!(
            networks_for("class", &addrs(), true, false),
            ["127.0.0.0/8", "192.168.1.0/24", "10.0.0.0/8", "172.16.0.0/16",]
        );
    }

    #[test]
    fn protocols_filter_families() {
        assert_eq!(networks_for("host", &addrs(), false, true), ["[::1]/128", "[2001:db8:1:2::17]/128"]);
        assert_eq!(networks_for("host", &[], true, false), ["127.0.0.0/8"]);
    }

    #[test]
    fn this_machine_has_loopback() {
        let networks = local_networks("host", true, true);
        assert_eq!(networks[..2], ["127.0.0.0/8", "[::1]/128"]);
    }
}
