//! canonical(5) mapping: canonical_maps, sender_canonical_maps and
//! recipient_canonical_maps, each limited to the address classes of its *_classes
//! parameter. One address gives one address; the mapping is applied again to its own result
//! until the result stays the same or no table has it (at most ten rounds).

use std::sync::Arc;

use super::mapping::{self, Lookup};
use super::{Defer, Notes};
use crate::maps::Map;

/// The most rounds of mapping an address may go through (Postfix's MAX_RECURSION).
const MAX_ROUNDS: usize = 10;

/// The address classes of canonical_classes, masquerade_classes and their kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classes {
    pub envelope_sender: bool,
    pub envelope_recipient: bool,
    pub header_sender: bool,
    pub header_recipient: bool,
}

impl Classes {
    pub fn parse(names: &[String]) -> Classes {
        let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
        Classes {
            envelope_sender: has("envelope_sender"),
            envelope_recipient: has("envelope_recipient"),
            header_sender: has("header_sender"),
            header_recipient: has("header_recipient"),
        }
    }

    /// Whether this set includes `class`.
    pub fn has(&self, class: Class) -> bool {
        match class {
            Class::EnvelopeSender => self.envelope_sender,
            Class::EnvelopeRecipient => self.envelope_recipient,
            Class::HeaderSender => self.header_sender,
            Class::HeaderRecipient => self.header_recipient,
        }
    }
}

/// Which kind of address is being rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    EnvelopeSender,
    EnvelopeRecipient,
    HeaderSender,
    HeaderRecipient,
}

/// One canonical table list with the parameter it came from and the classes it applies to.
#[derive(Debug, Clone)]
pub struct Canonical {
    /// The parameter name, for log lines (`canonical_maps`).
    pub title: &'static str,
    pub maps: Vec<Arc<dyn Map>>,
    pub classes: Classes,
}

impl Canonical {
    /// Rewrite `address` if this mapping applies to `class`; the address as it is otherwise.
    pub fn apply(
        &self,
        class: Class,
        address: &str,
        propagate: bool,
        lookup: &Lookup<'_>,
        notes: &mut Notes,
    ) -> Result<String, Defer> {
        if self.maps.is_empty() || !self.classes.has(class) || address.is_empty() {
            return Ok(address.to_string());
        }
        let mut current = address.to_string();
        for _ in 0..MAX_ROUNDS {
            match mapping::map_address(&self.maps, &current, propagate, lookup) {
                Ok(Some(results)) => {
                    let Some(first) = results.first() else {
                        return Ok(current);
                    };
                    if results.len() > 1 {
                        notes.warning(format!("multi-valued {} entry for {current}", self.title));
                    }
                    let same = first.eq_ignore_ascii_case(&current);
                    current = first.clone();
                    if same {
                        return Ok(current);
                    }
                }
                Ok(None) => return Ok(current),
                Err(e) => return Err(Defer::lookup(self.title, &current, e)),
            }
        }
        Err(Defer::new(format!("unreasonable {} map nesting for {current}", self.title)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cleanup::trivial::tests::ctx;
    use crate::maps::MapError;
    use crate::maps::search::testing::{TestMap, list};

    fn local(d: &str) -> Result<bool, MapError> {
        Ok(d == "example.com" || d == "host.example.com")
    }

    fn all() -> Classes {
        Classes { envelope_sender: true, envelope_recipient: true, header_sender: true, header_recipient: true }
    }

    fn run(canonical: &Canonical, class: Class, address: &str) -> Result<String, Defer> {
        let rewrite = ctx();
        let lookup = Lookup { delimiters: "+", local: &local, rewrite: &rewrite };
        canonical.apply(class, address, true, &lookup, &mut Notes::default())
    }

    #[test]
    fn classes() {
        let c = Classes::parse(&["envelope_sender".to_string(), "HEADER_SENDER".to_string()]);
        assert!(c.has(Class::EnvelopeSender) && c.has(Class::HeaderSender));
        assert!(!c.has(Class::EnvelopeRecipient) && !c.has(Class::HeaderRecipient));
    }

    #[test]
    fn firstname_lastname() {
        let maps = list(&[TestMap::exact(
            "hash:canonical",
            &[("wietse", "Wietse.Venema"), ("@host.example.com", "@example.com")],
        )]);
        let canonical = Canonical { title: "canonical_maps", maps, classes: all() };
        assert_eq!(
            run(&canonical, Class::EnvelopeSender, "wietse@host.example.com").unwrap(),
            "Wietse.Venema@example.com"
        );
        assert_eq!(run(&canonical, Class::HeaderRecipient, "joe@host.example.com").unwrap(), "joe@example.com");
        assert_eq!(run(&canonical, Class::EnvelopeSender, "joe@elsewhere.org").unwrap(), "joe@elsewhere.org");
    }

    #[test]
    fn only_its_classes() {
        let maps = list(&[TestMap::exact("hash:s", &[("joe@example.com", "joseph@example.com")])]);
        let sender_only = Canonical {
            title: "sender_canonical_maps",
            maps,
            classes: Classes { envelope_sender: true, header_sender: true, ..Classes::default() },
        };
        assert_eq!(run(&sender_only, Class::EnvelopeSender, "joe@example.com").unwrap(), "joseph@example.com");
        assert_eq!(run(&sender_only, Class::HeaderSender, "joe@example.com").unwrap(), "joseph@example.com");
        assert_eq!(run(&sender_only, Class::EnvelopeRecipient, "joe@example.com").unwrap(), "joe@example.com");
        assert_eq!(run(&sender_only, Class::HeaderRecipient, "joe@example.com").unwrap(), "joe@example.com");
    }

    #[test]
    fn applied_to_its_own_result() {
        let maps = list(&[TestMap::exact(
            "hash:c",
            &[("a@x.org", "b@x.org"), ("b@x.org", "c@x.org"), ("c@x.org", "c@x.org")],
        )]);
        let canonical = Canonical { title: "canonical_maps", maps, classes: all() };
        assert_eq!(run(&canonical, Class::EnvelopeRecipient, "a@x.org").unwrap(), "c@x.org");
        // A loop runs into the limit: the message waits.
        let maps = list(&[TestMap::exact("hash:c", &[("a@x.org", "b@x.org"), ("b@x.org", "a@x.org")])]);
        let looping = Canonical { title: "canonical_maps", maps, classes: all() };
        let err = run(&looping, Class::EnvelopeRecipient, "a@x.org").unwrap_err();
        assert!(err.text.contains("unreasonable canonical_maps map nesting"), "{}", err.text);
    }

    #[test]
    fn multi_valued_takes_the_first() {
        let maps = list(&[TestMap::exact("hash:c", &[("a@x.org", "b@x.org, c@x.org")])]);
        let canonical = Canonical { title: "canonical_maps", maps, classes: all() };
        let rewrite = ctx();
        let lookup = Lookup { delimiters: "+", local: &local, rewrite: &rewrite };
        let mut notes = Notes::default();
        assert_eq!(canonical.apply(Class::EnvelopeSender, "a@x.org", true, &lookup, &mut notes).unwrap(), "b@x.org");
        assert!(notes.pending_text().contains("multi-valued canonical_maps entry for a@x.org"));
    }

    #[test]
    fn lookup_problems_defer() {
        let maps = list(&[TestMap::failing("hash:down")]);
        let canonical = Canonical { title: "canonical_maps", maps, classes: all() };
        let err = run(&canonical, Class::EnvelopeSender, "a@x.org").unwrap_err();
        assert!(err.text.starts_with("canonical_maps map lookup problem for a@x.org"), "{}", err.text);
        assert_eq!(run(&canonical, Class::EnvelopeSender, "").unwrap(), "");
    }
}
