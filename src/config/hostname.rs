//! The machine's own name, for the default myhostname. No DNS: a laptop is often offline,
//! and a lookup that hangs at startup is worse than a guess.

use std::sync::OnceLock;

/// Appended to a short name when nothing better is known (Postfix's DEF_MYDOMAIN).
pub const LOCAL_DOMAIN: &str = "localdomain";

/// The system's name as gethostname() gives it, made fully qualified from /etc/hosts when
/// possible. May still be a short name; the caller adds the domain. Computed once.
pub fn system_hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let short = nix::unistd::gethostname()
            .ok()
            .and_then(|name| name.into_string().ok())
            .map(|name| name.trim().trim_end_matches('.').to_string())
            .filter(|name| valid_hostname(name))
            // A nameless or oddly named machine still needs a usable default.
            .unwrap_or_else(|| "localhost".to_string());
        if short.contains('.') {
            return short;
        }
        let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        qualify_from_hosts(&short, &hosts).filter(|name| valid_hostname(name)).unwrap_or(short)
    })
}

/// Finds a dotted name for `short` in /etc/hosts text: on a line that lists `short`, the first
/// name that starts with "`short`." or else the first dotted name that is not a localhost alias
/// (Debian writes "127.0.1.1 laptop.example.org laptop").
pub fn qualify_from_hosts(short: &str, hosts: &str) -> Option<String> {
    for line in hosts.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        if fields.next().is_none() {
            continue;
        }
        let names: Vec<&str> = fields.map(|n| n.trim_end_matches('.')).collect();
        if !names.iter().any(|n| n.eq_ignore_ascii_case(short)) {
            continue;
        }
        let dotted = || names.iter().filter(|n| n.contains('.'));
        let prefix = format!("{}.", short.to_ascii_lowercase());
        let found = dotted()
            .find(|n| n.to_ascii_lowercase().starts_with(&prefix))
            .or_else(|| dotted().find(|n| !n.to_ascii_lowercase().starts_with("localhost")));
        if let Some(name) = found {
            return Some(name.to_string());
        }
    }
    None
}

/// The default mydomain for a given myhostname: all but the first label, unless that leaves
/// a single label (Postfix check_mydomainname(): "example.com" as a hostname gives
/// "localdomain").
pub fn domain_of(hostname: &str) -> &str {
    match hostname.split_once('.') {
        Some((_, rest)) if rest.contains('.') => rest,
        _ => LOCAL_DOMAIN,
    }
}

/// Postfix's valid_hostname(): dot-separated labels of letters, digits, '-' and '_', no label
/// empty, longer than 63 or starting/ending with '-', at most 255 in all, not all numeric
/// (that would be an address).
pub fn valid_hostname(name: &str) -> bool {
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    let all_numeric = name.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    labels_ok && !all_numeric
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
127.0.0.1\tlocalhost
127.0.1.1\tlaptop.example.org\tlaptop   # added by the installer
::1     localhost ip6-localhost ip6-loopback
10.0.0.5 other.example.net other
";

    #[test]
    fn short_name_is_qualified_from_etc_hosts() {
        assert_eq!(qualify_from_hosts("laptop", HOSTS).as_deref(), Some("laptop.example.org"));
        assert_eq!(qualify_from_hosts("other", HOSTS).as_deref(), Some("other.example.net"));
        assert_eq!(qualify_from_hosts("nowhere", HOSTS), None);
        // Listed, but with no dotted name on the line.
        assert_eq!(qualify_from_hosts("localhost", HOSTS), None);
    }

    #[test]
    fn localhost_aliases_are_not_taken_as_our_name() {
        let hosts = "127.0.0.1 localhost.localdomain localhost box\n";
        assert_eq!(qualify_from_hosts("box", hosts), None);
        let hosts = "127.0.0.1 localhost.localdomain box.lan box\n";
        assert_eq!(qualify_from_hosts("box", hosts).as_deref(), Some("box.lan"));
        let hosts = "192.0.2.1 mail.example.com box.example.com box\n";
        assert_eq!(qualify_from_hosts("box", hosts).as_deref(), Some("box.example.com"));
    }

    #[test]
    fn comments_and_case() {
        let hosts = "# 127.0.1.1 box.commented.org box\n127.0.1.1 Box.Example.ORG. BOX\n";
        assert_eq!(qualify_from_hosts("box", hosts).as_deref(), Some("Box.Example.ORG"));
    }

    #[test]
    fn domain_is_hostname_minus_first_label() {
        assert_eq!(domain_of("mail.example.com"), "example.com");
        assert_eq!(domain_of("a.b.c.d"), "b.c.d");
        assert_eq!(domain_of("example.com"), LOCAL_DOMAIN);
        assert_eq!(domain_of("box"), LOCAL_DOMAIN);
    }

    #[test]
    fn hostname_validity() {
        for good in ["mail.example.com", "box", "a-b.c_d.org", "x1.example"] {
            assert!(valid_hostname(good), "{good}");
        }
        for bad in [
            "",
            "mail..example.com",
            ".example.com",
            "example.com.",
            "-a.example",
            "a-.example",
            "has space.org",
            "192.0.2.1",
            "[192.0.2.1]",
            "ünï.example",
        ] {
            assert!(!valid_hostname(bad), "{bad}");
        }
        assert!(!valid_hostname(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn system_hostname_is_usable() {
        assert!(valid_hostname(system_hostname()));
    }
}
