//! virtual(5) alias expansion of envelope recipients (virtual_alias_maps).
//!
//! Expansion is recursive: each result is looked up again, until no table has it. An
//! address that expands to a list including itself is kept and not expanded again (that is
//! how a table says "deliver here too"). The limits are Postfix's: more than
//! virtual_alias_expansion_limit addresses from one recipient, or a chain deeper than
//! virtual_alias_recursion_limit, or a result longer than 1000 bytes, and the message is not
//! accepted now (the sender tries again; an admin fixes the table). A chain that comes back
//! to an address it already passed can only end at the nesting limit: it is reported as
//! such at once.
//!
//! Duplicates among the results are removed by the caller, across all recipients.

use std::collections::HashSet;
use std::sync::Arc;

use super::Defer;
use super::mapping::{self, Lookup};
use crate::maps::Map;

/// The longest address an expansion may produce (Postfix's virtual_alias_address_length_limit).
const MAX_ADDRESS_LEN: usize = 1000;

const TITLE: &str = "virtual_alias_maps";

#[derive(Debug, Clone)]
pub struct VirtualAlias {
    pub maps: Vec<Arc<dyn Map>>,
    /// virtual_alias_expansion_limit.
    pub expansion_limit: usize,
    /// virtual_alias_recursion_limit.
    pub recursion_limit: usize,
}

impl VirtualAlias {
    /// The addresses `address` expands to: itself when no table has it.
    pub fn expand(&self, address: &str, propagate: bool, lookup: &Lookup<'_>) -> Result<Vec<String>, Defer> {
        let mut out = vec![address.to_string()];
        if self.maps.is_empty() || address.is_empty() {
            return Ok(out);
        }
        // Addresses that expanded into themselves: never looked up again.
        let mut terminal: HashSet<String> = HashSet::new();
        let mut index = 0;
        while index < out.len() {
            if out.len() > self.expansion_limit {
                return Err(Defer::new(format!("unreasonable {TITLE} map expansion size for {address}")));
            }
            // The chain of names this position went through, to recognise a loop.
            let mut chain: HashSet<String> = HashSet::new();
            let mut depth = 0;
            loop {
                let current = out[index].clone();
                let key = current.to_lowercase();
                if terminal.contains(&key) {
                    break;
                }
                if depth >= self.recursion_limit || !chain.insert(key.clone()) {
                    return Err(Defer::new(format!("unreasonable {TITLE} map nesting for {address}")));
                }
                let results = match mapping::map_address(&self.maps, &current, propagate, lookup) {
                    Ok(Some(results)) if !results.is_empty() => results,
                    Ok(_) => break,
                    Err(e) => return Err(Defer::lookup(TITLE, address, e)),
                };
                for (i, result) in results.into_iter().enumerate() {
                    if result.len() > MAX_ADDRESS_LEN {
                        let shown: String = result.chars().take(300).collect();
                        return Err(Defer::new(format!("unreasonable {TITLE} result {shown}...")));
                    }
                    if result.eq_ignore_ascii_case(&current) {
                        terminal.insert(key.clone());
                    }
                    if i == 0 {
                        out[index] = result;
                    } else {
                        out.push(result);
                    }
                }
                depth += 1;
            }
            index += 1;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::trivial::Context;
    use crate::maps::MapError;
    use crate::maps::search::testing::{TestMap, list};

    fn ctx() -> Context {
        Context {
            origin: "test.com".into(),
            domain: "test.com".into(),
            swap_bangpath: true,
            percent_hack: true,
            append_at_origin: true,
            append_dot_domain: false,
        }
    }

    fn local(d: &str) -> Result<bool, MapError> {
        Ok(d == "test.com")
    }

    fn expand_with(
        entries: &[(&str, &str)],
        address: &str,
        expansion: usize,
        recursion: usize,
    ) -> Result<Vec<String>, Defer> {
        let v = VirtualAlias {
            maps: list(&[TestMap::exact("hash:virtual", entries)]),
            expansion_limit: expansion,
            recursion_limit: recursion,
        };
        let rewrite = ctx();
        let lookup = Lookup { delimiters: "+", local: &local, rewrite: &rewrite };
        v.expand(address, true, &lookup)
    }

    fn expand(entries: &[(&str, &str)], address: &str) -> Vec<String> {
        expand_with(entries, address, 1000, 1000).unwrap()
    }

    const TUTORIAL: &[(&str, &str)] =
        &[("test.net", "anything"), ("tom@test.net", "tom"), ("test@test.net", "test"), ("white@test.net", "white")];

    #[test]
    fn the_virtual_company() {
        assert_eq!(expand(TUTORIAL, "tom@test.net"), ["tom@test.com"]);
        assert_eq!(expand(TUTORIAL, "white@test.net"), ["white@test.com"]);
        // Unknown users stay as they are (and bounce later: test.net is a virtual domain).
        assert_eq!(expand(TUTORIAL, "unknown@test.net"), ["unknown@test.net"]);
        assert_eq!(expand(TUTORIAL, "tom@elsewhere.org"), ["tom@elsewhere.org"]);
    }

    #[test]
    fn recursion_and_lists() {
        let table = [
            ("all@x.org", "sales@x.org, dev@x.org"),
            ("sales@x.org", "ann@y.org, bob@y.org"),
            ("dev@x.org", "cy@y.org"),
        ];
        assert_eq!(expand(&table, "all@x.org"), ["ann@y.org", "cy@y.org", "bob@y.org"]);
    }

    #[test]
    fn self_reference_keeps_the_address() {
        let table = [("joe@x.org", "joe@x.org, joe@archive.org")];
        assert_eq!(expand(&table, "joe@x.org"), ["joe@x.org", "joe@archive.org"]);
        let table = [("Joe@x.org", "JOE@x.org")];
        assert_eq!(expand(&table, "joe@x.org"), ["JOE@x.org"]);
    }

    #[test]
    fn loops_and_limits_defer() {
        let looping = [("a@x.org", "b@x.org"), ("b@x.org", "a@x.org")];
        let err = expand_with(&looping, "a@x.org", 1000, 1000).unwrap_err();
        assert_eq!(err.text, "unreasonable virtual_alias_maps map nesting for a@x.org");
        let deep = [("a@x.org", "b@x.org"), ("b@x.org", "c@x.org"), ("c@x.org", "d@x.org")];
        // Postfix counts the lookups of one chain, the last (unsuccessful) one included.
        assert_eq!(expand_with(&deep, "a@x.org", 1000, 4).unwrap(), ["d@x.org"]);
        assert!(expand_with(&deep, "a@x.org", 1000, 3).unwrap_err().text.contains("nesting"));
        let wide = [("list@x.org", "a@y.org, b@y.org, c@y.org")];
        assert_eq!(expand_with(&wide, "list@x.org", 3, 1000).unwrap().len(), 3);
        let err = expand_with(&wide, "list@x.org", 2, 1000).unwrap_err();
        assert_eq!(err.text, "unreasonable virtual_alias_maps map expansion size for list@x.org");
        let long = format!("{}@y.org", "a".repeat(1000));
        let huge = [("big@x.org", long.as_str())];
        assert!(
            expand_with(&huge, "big@x.org", 1000, 1000)
                .unwrap_err()
                .text
                .contains("unreasonable virtual_alias_maps result")
        );
    }

    #[test]
    fn extensions_propagate() {
        let table = [("joe@x.org", "joseph@y.org")];
        assert_eq!(expand(&table, "joe+lists@x.org"), ["joseph+lists@y.org"]);
    }

    #[test]
    fn lookup_problems_defer() {
        let v = VirtualAlias { maps: list(&[TestMap::failing("hash:down")]), expansion_limit: 10, recursion_limit: 10 };
        let rewrite = ctx();
        let lookup = Lookup { delimiters: "", local: &local, rewrite: &rewrite };
        let err = v.expand("a@x.org", true, &lookup).unwrap_err();
        assert!(err.text.starts_with("virtual_alias_maps map lookup problem for a@x.org"), "{}", err.text);
    }
}
