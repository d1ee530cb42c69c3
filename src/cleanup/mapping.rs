//! One address-to-addresses lookup, as canonical and virtual alias tables do it (Postfix's
//! mail_addr_map): search the tables in the address order (`maps::search::address`), read
//! the value as an address list, and bring each result into canonical form.
//!
//! - A value `@otherdomain` means the same user in another domain (only as the first
//!   address of the value).
//! - Each result is rewritten in the local context (`user` → `user@$myorigin`...).
//! - When the key that matched had the address extension removed (`user@domain` found for
//!   `user+foo@domain`) and propagation is on (propagate_unmatched_extensions), the
//!   extension goes back into every result: `user+foo@elsewhere`.

use std::sync::Arc;

use super::trivial::{self, Context};
use crate::address;
use crate::maps::search::{self, LocalTest};
use crate::maps::{Map, MapError};

/// What one lookup needs besides the tables.
pub struct Lookup<'a> {
    /// recipient_delimiter.
    pub delimiters: &'a str,
    /// Which domains are ours (for the `user` keys).
    pub local: &'a dyn LocalTest,
    /// The local rewriting context, applied to every result.
    pub rewrite: &'a Context,
}

/// Insert an extension into the local part of an external-form address:
/// (`"john smith"@x`, `+foo`) → `"john smith+foo"@x`.
pub fn with_extension(address: &str, extension: &str) -> String {
    let internal = search::internal_form(address);
    let (local, domain) = search::split_at_domain(&internal);
    let extended = match domain {
        Some(domain) => format!("{local}{extension}@{domain}"),
        None => format!("{local}{extension}"),
    };
    search::external_form(&extended)
}

/// Look `address` (external form) up; None when no table has it.
pub fn map_address(
    maps: &[Arc<dyn Map>],
    address: &str,
    propagate: bool,
    lookup: &Lookup<'_>,
) -> Result<Option<Vec<String>>, MapError> {
    let internal = search::internal_form(address);
    let Some(found) = search::address(maps, &internal, lookup.delimiters, lookup.local)? else {
        return Ok(None);
    };
    let mut value = found.value.trim().to_string();
    if value.starts_with('@') {
        // The same user, extension removed, in the other domain.
        let local = match trivial::last_at(address) {
            Some(at) => &address[..at],
            None => address,
        };
        let local = match &found.extension {
            Some(ext) => {
                let internal_local = search::internal_form(local);
                let base = internal_local.strip_suffix(ext.as_str()).unwrap_or(&internal_local).to_string();
                search::quote_local_part(&base)
            }
            None => local.to_string(),
        };
        value = format!("{local}{value}");
    }
    let extension = found.extension.as_deref().filter(|_| propagate);
    let results = address::parse_address_list(&value)
        .into_iter()
        .map(|a| trivial::canonicalize(&a, lookup.rewrite))
        .filter(|a| !a.is_empty())
        .map(|a| match extension {
            Some(ext) => with_extension(&a, ext),
            None => a,
        })
        .collect();
    Ok(Some(results))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::trivial::tests::ctx;
    use crate::maps::search::testing::{TestMap, list};

    fn local(d: &str) -> Result<bool, MapError> {
        Ok(d == "example.com")
    }

    fn map(entries: &[(&str, &str)], address: &str, propagate: bool) -> Option<Vec<String>> {
        let maps = list(&[TestMap::exact("hash:t", entries)]);
        let rewrite = ctx();
        let lookup = Lookup { delimiters: "+", local: &local, rewrite: &rewrite };
        map_address(&maps, address, propagate, &lookup).unwrap()
    }

    #[test]
    fn results_are_canonical() {
        assert_eq!(map(&[("tom@test.net", "tom")], "tom@test.net", true), Some(vec!["tom@example.com".into()]));
        assert_eq!(
            map(&[("list@test.net", "a, b@x.org, Carol <c@y.org>")], "list@test.net", true),
            Some(vec!["a@example.com".into(), "b@x.org".into(), "c@y.org".into()])
        );
        assert_eq!(map(&[], "tom@test.net", true), None);
    }

    #[test]
    fn other_domain() {
        assert_eq!(map(&[("@old.org", "@new.org")], "joe@old.org", true), Some(vec!["joe@new.org".into()]));
        assert_eq!(map(&[("@old.org", "@new.org")], "joe+x@old.org", true), Some(vec!["joe+x@new.org".into()]));
        assert_eq!(map(&[("@old.org", "@new.org")], "joe+x@old.org", false), Some(vec!["joe+x@new.org".into()]));
        assert_eq!(map(&[("@old.org", "@new.org")], r#""j s"@old.org"#, true), Some(vec![r#""j s"@new.org"#.into()]));
    }

    #[test]
    fn extension_propagation() {
        let entries = [("joe@example.com", "joseph@elsewhere.org, jo")];
        assert_eq!(
            map(&entries, "joe+news@example.com", true),
            Some(vec!["joseph+news@elsewhere.org".into(), "jo+news@example.com".into()])
        );
        assert_eq!(
            map(&entries, "joe+news@example.com", false),
            Some(vec!["joseph@elsewhere.org".into(), "jo@example.com".into()])
        );
        // A key that kept the extension matched: nothing to propagate.
        assert_eq!(
            map(&[("joe+news@example.com", "news@x.org")], "joe+news@example.com", true),
            Some(vec!["news@x.org".into()])
        );
        // Found by the bare local part of a local domain.
        assert_eq!(map(&[("joe", "joseph@x.org")], "joe+a@example.com", true), Some(vec!["joseph+a@x.org".into()]));
        assert_eq!(with_extension(r#""j s"@x"#, "+y"), r#""j s+y"@x"#);
    }
}
