//! `cidr:` tables (cidr_table(5)): client addresses against networks.
//!
//! ```text
//! 192.168.1.1          OK
//! 192.168.0.0/16       REJECT
//! [2001:db8::]/32      REJECT
//! !10.0.0.0/8          DUNNO
//! if 172.16.0.0/12
//! 172.16.1.0/24        relay
//! endif
//! ```
//!
//! Rules are tried in order, the first that matches wins; `if`/`endif` nest. A pattern is an
//! address (exact match) or `network/prefix` whose host bits must be zero; brackets are
//! allowed around the address. IPv4 keys never match IPv6 rules and the other way round.
//! A key that is not an IP address is simply not found.

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::regexp::keyword;
use super::source::{self, Content, Line};
use super::{Map, MapError, MapKind};

pub fn open(spec: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    Ok(Arc::new(CidrTable { spec: spec.to_string(), rules: source::open_rules(spec, name, parse)? }))
}

#[derive(Debug)]
struct CidrTable {
    spec: String,
    rules: Content<Vec<Rule>>,
}

impl Map for CidrTable {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        let rules = self.rules.get()?;
        Ok(parse_addr(key).and_then(|addr| lookup(&rules, addr)))
    }

    fn kind(&self) -> MapKind {
        MapKind::Pattern
    }
}

#[derive(Debug)]
struct Rule {
    negate: bool,
    net: IpNet,
    action: Action,
}

#[derive(Debug)]
enum Action {
    Result(String),
    If { end: usize },
    Endif,
}

fn lookup(rules: &[Rule], addr: IpAddr) -> Option<String> {
    let mut i = 0;
    while i < rules.len() {
        let rule = &rules[i];
        let holds = rule.net.contains(&addr) != rule.negate;
        match &rule.action {
            Action::If { end } if !holds => i = *end,
            Action::Result(result) if holds => return Some(result.clone()),
            _ => {}
        }
        i += 1;
    }
    None
}

fn parse_addr(text: &str) -> Option<IpAddr> {
    let text = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    text.parse().ok()
}

/// `addr`, `addr/len`, `[addr]`, `[addr]/len`.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let (addr_text, len) = match text.rsplit_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr = parse_addr(addr_text).ok_or_else(|| format!("bad address pattern \"{text}\""))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => {
            len.parse::<u8>().ok().filter(|&l| l <= max).ok_or_else(|| format!("bad prefix length in \"{text}\""))?
        }
    };
    let net = IpNet::new(addr, len).map_err(|e| format!("\"{text}\": {e}"))?;
    if net.trunc() != net {
        return Err(format!("non-null host address bits in \"{text}\", perhaps you mean \"{}\"", net.trunc()));
    }
    Ok(net)
}

fn parse(file: &str, lines: &[Line]) -> Result<Vec<Rule>, MapError> {
    let mut rules: Vec<Rule> = Vec::new();
    let mut open_ifs: Vec<(usize, usize)> = Vec::new();
    for line in lines {
        let err = |reason: String| source::syntax(file, line.number, reason);
        let text = line.text.trim_ascii();
        if let Some(rest) = keyword(text, "endif") {
            if !rest.is_empty() {
                return Err(err(format!("extra text after \"endif\": \"{rest}\"")));
            }
            let (start, _) = open_ifs.pop().ok_or_else(|| err("\"endif\" without \"if\"".into()))?;
            // The net of an endif is never looked at.
            rules.push(Rule { negate: false, net: IpNet::default(), action: Action::Endif });
            rules[start].action = Action::If { end: rules.len() - 1 };
            continue;
        }
        let (is_if, body) = match keyword(text, "if") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (negate, body) = match body.strip_prefix('!') {
            Some(rest) => (true, rest.trim_ascii_start()),
            None => (false, body),
        };
        let (pattern, rest) = match body.split_once(|c: char| c.is_ascii_whitespace()) {
            Some((pattern, rest)) => (pattern, rest.trim_ascii()),
            None => (body, ""),
        };
        let net = parse_net(pattern).map_err(err)?;
        let action = match (is_if, rest.is_empty()) {
            (true, true) => {
                open_ifs.push((rules.len(), line.number));
                Action::If { end: usize::MAX }
            }
            (true, false) => return Err(err(format!("extra text after the \"if\" pattern: \"{rest}\""))),
            (false, true) => return Err(err(format!("no result after \"{pattern}\""))),
            (false, false) => Action::Result(rest.to_string()),
        };
        rules.push(Rule { negate, net, action });
    }
    if let Some((_, line)) = open_ifs.pop() {
        return Err(source::syntax(file, line, "\"if\" without \"endif\""));
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> Result<Vec<Rule>, MapError> {
        parse("/etc/c", &source::logical_lines("/etc/c", text.as_bytes()).unwrap())
    }

    fn find(rules: &[Rule], key: &str) -> Option<String> {
        parse_addr(key).and_then(|a| lookup(rules, a))
    }

    #[test]
    fn first_match_v4_and_v6() {
        let t = table(
            "192.168.1.1 OK\n192.168.0.0/16 REJECT local\n2001:db8::1 OK6\n[2001:db8::]/32 REJECT6\n[2001:db9::2] bracketed\n0.0.0.0/0 any4\n",
        )
        .unwrap();
        assert_eq!(find(&t, "192.168.1.1").as_deref(), Some("OK"));
        assert_eq!(find(&t, "192.168.7.9").as_deref(), Some("REJECT local"));
        assert_eq!(find(&t, "2001:DB8:0::1").as_deref(), Some("OK6"));
        assert_eq!(find(&t, "[2001:db8:ff::5]").as_deref(), Some("REJECT6"));
        assert_eq!(find(&t, "2001:db9::2").as_deref(), Some("bracketed"));
        assert_eq!(find(&t, "10.1.2.3").as_deref(), Some("any4"));
        assert_eq!(find(&t, "fe80::1"), None, "IPv4 rules never match IPv6 keys");
        assert_eq!(find(&t, "not-an-address"), None);
    }

    #[test]
    fn negation_and_ifs() {
        let t = table(
            "if 10.0.0.0/8\nif !10.1.0.0/16\n10.2.0.0/16 ten-two\nendif\n!10.1.1.0/24 ten-one\nendif\n::/0 six\n",
        )
        .unwrap();
        assert_eq!(find(&t, "10.2.3.4").as_deref(), Some("ten-two"));
        assert_eq!(find(&t, "10.1.2.3").as_deref(), Some("ten-one"));
        assert_eq!(find(&t, "10.1.1.3"), None);
        assert_eq!(find(&t, "::1").as_deref(), Some("six"));
    }

    #[test]
    fn bad_lines_name_the_line() {
        let line = |text: &str| match table(text).unwrap_err() {
            MapError::Syntax { line, reason, .. } => (line, reason),
            other => panic!("{other}"),
        };
        assert_eq!(line("10.0.0.0/8 ok\n10.0.0.1/8 bad\n").0, 2);
        assert!(line("10.0.0.1/8 bad\n").1.contains("10.0.0.0/8"));
        assert_eq!(line("10.0.0.0/33 x\n").0, 1);
        assert_eq!(line("1.2.3 x\n").0, 1);
        assert_eq!(line("010.1.2.3 x\n").0, 1, "a leading zero (octal) is refused");
        assert_eq!(line("1.2.3.4\n").1, "no result after \"1.2.3.4\"");
        assert_eq!(line("\n\nif 1.2.3.4\n").0, 3);
        assert_eq!(line("endif\n").0, 1);
    }

    #[test]
    fn open_a_file_and_inline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.cidr");
        std::fs::write(&path, "127.0.0.0/8 OK\n").unwrap();
        let t = open("cidr:x", path.to_str().unwrap()).unwrap();
        assert_eq!(t.kind(), MapKind::Pattern);
        assert_eq!(t.lookup("127.1.2.3").unwrap().as_deref(), Some("OK"));
        let t = open("cidr:{}", "{ { 10.0.0.0/8 inside }, { ::/0 v6 } }").unwrap();
        assert_eq!(t.lookup("10.9.9.9").unwrap().as_deref(), Some("inside"));
        assert_eq!(t.lookup("::2").unwrap().as_deref(), Some("v6"));
    }
}
