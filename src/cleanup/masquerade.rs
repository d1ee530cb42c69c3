//! Address masquerading (masquerade_domains, masquerade_exceptions, masquerade_classes):
//! `user@host.sub.example.com` becomes `user@example.com` when `example.com` is listed.
//!
//! The list is read left to right and the first entry that matches the domain decides, as
//! postconf(5) documents: with `foo.example.com example.com`, `any.foo.example.com` becomes
//! `foo.example.com`, but with `example.com foo.example.com` it becomes `example.com`.
//! A matching `!domain` entry leaves the address alone. A domain equal to an entry is
//! already in masqueraded form. Local parts listed in masquerade_exceptions (`root`) are
//! never masqueraded.

use super::trivial;
use crate::maps::MapError;
use crate::maps::search::DomainList;

#[derive(Debug, Clone)]
pub struct Masquerade {
    /// masquerade_domains, as written (`!` prefixes included).
    pub domains: Vec<String>,
    /// masquerade_exceptions: local parts, matched as a string list (tables allowed).
    pub exceptions: DomainList,
}

impl Masquerade {
    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }

    /// The masqueraded form of `address` (external form), or None when it stays as it is.
    pub fn apply(&self, address: &str) -> Result<Option<String>, MapError> {
        let Some(at) = trivial::last_at(address) else {
            return Ok(None);
        };
        let (local, domain) = (&address[..at], &address[at + 1..]);
        if self.domains.is_empty() || domain.is_empty() {
            return Ok(None);
        }
        if !self.exceptions.is_empty() && self.exceptions.matches(&local.to_lowercase())? {
            return Ok(None);
        }
        for entry in &self.domains {
            let mut masq = entry.as_str();
            let mut truncate = true;
            while let Some(rest) = masq.strip_prefix('!') {
                truncate = !truncate;
                masq = rest;
            }
            if masq.is_empty() {
                continue;
            }
            if masq.len() == domain.len() {
                if masq.eq_ignore_ascii_case(domain) {
                    return Ok(None);
                }
            } else if masq.len() < domain.len() {
                let cut = domain.len() - masq.len();
                if let Some(parent) = domain.get(cut..)
                    && domain.as_bytes()[cut - 1] == b'.'
                    && parent.eq_ignore_ascii_case(masq)
                {
                    return Ok(truncate.then(|| format!("{local}@{masq}")));
                }
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::search::ListStyle;

    fn masq(domains: &[&str], exceptions: &[&str]) -> Masquerade {
        let exceptions: Vec<String> = exceptions.iter().map(|s| s.to_string()).collect();
        Masquerade {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            exceptions: DomainList::new(&exceptions, ListStyle::Exact).unwrap(),
        }
    }

    fn apply(m: &Masquerade, a: &str) -> String {
        m.apply(a).unwrap().unwrap_or_else(|| a.to_string())
    }

    #[test]
    fn strips_host_names() {
        let m = masq(&["isp.com"], &[]);
        assert_eq!(apply(&m, "user@yourhost.isp.com"), "user@isp.com");
        assert_eq!(apply(&m, "user@a.b.local.isp.com"), "user@isp.com");
        assert_eq!(apply(&m, "user@isp.com"), "user@isp.com");
        assert_eq!(apply(&m, "user@notisp.com"), "user@notisp.com");
        assert_eq!(apply(&m, "user@elsewhere.org"), "user@elsewhere.org");
        assert_eq!(apply(&m, "user@YourHost.ISP.com"), "user@isp.com");
        assert_eq!(apply(&m, "user"), "user");
    }

    #[test]
    fn first_match_in_list_order() {
        // postconf(5)'s example, both ways round.
        let m = masq(&["foo.example.com", "example.com"], &[]);
        assert_eq!(apply(&m, "user@any.thing.foo.example.com"), "user@foo.example.com");
        assert_eq!(apply(&m, "user@any.thing.example.com"), "user@example.com");
        let m = masq(&["example.com", "foo.example.com"], &[]);
        assert_eq!(apply(&m, "user@any.thing.foo.example.com"), "user@example.com");
        // An exact entry ends the search: the address is already masqueraded.
        let m = masq(&["foo.example.com", "example.com"], &[]);
        assert_eq!(apply(&m, "user@foo.example.com"), "user@foo.example.com");
    }

    #[test]
    fn exclusions() {
        let m = masq(&["!foo.example.com", "example.com"], &[]);
        assert_eq!(apply(&m, "user@any.thing.foo.example.com"), "user@any.thing.foo.example.com");
        assert_eq!(apply(&m, "user@foo.example.com"), "user@foo.example.com");
        assert_eq!(apply(&m, "user@any.thing.example.com"), "user@example.com");
        // The reference test cases: !a.b.c before b.c.
        let m = masq(&["!a.b.c", "b.c"], &[]);
        assert_eq!(apply(&m, "xxx@aa.a.b.c"), "xxx@aa.a.b.c");
        assert_eq!(apply(&m, "xxx@aaa.b.c"), "xxx@b.c");
        // Two bangs cancel out.
        let m = masq(&["!!b.c"], &[]);
        assert_eq!(apply(&m, "xxx@a.b.c"), "xxx@b.c");
    }

    #[test]
    fn exceptions() {
        let m = masq(&["isp.com"], &["root", "MAILER-DAEMON"]);
        assert_eq!(apply(&m, "root@yourhost.isp.com"), "root@yourhost.isp.com");
        assert_eq!(apply(&m, "Root@yourhost.isp.com"), "Root@yourhost.isp.com");
        assert_eq!(apply(&m, "mailer-daemon@yourhost.isp.com"), "mailer-daemon@yourhost.isp.com");
        assert_eq!(apply(&m, "tom@yourhost.isp.com"), "tom@isp.com");
    }
}
