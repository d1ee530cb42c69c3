//! relocated(5): users who have moved. A recipient found in relocated_maps is bounced with
//! `5.1.6 User has moved to <new address>` (the table's value, as written), instead of being
//! delivered. Keys are searched like canonical and virtual keys (`user@domain`, `user` for
//! our own domains, `@domain`; address extensions removed).

use std::sync::Arc;

use super::Defer;
use crate::maps::Map;
use crate::maps::search::{self, LocalTest};

const TITLE: &str = "relocated_maps";

#[derive(Debug, Clone, Default)]
pub struct Relocated {
    pub maps: Vec<Arc<dyn Map>>,
}

impl Relocated {
    /// The new address of a recipient who has moved, if the tables know one.
    pub fn new_address(&self, address: &str, delimiters: &str, local: &dyn LocalTest) -> Result<Option<String>, Defer> {
        if self.maps.is_empty() || address.is_empty() {
            return Ok(None);
        }
        let internal = search::internal_form(address);
        match search::address(&self.maps, &internal, delimiters, local) {
            Ok(found) => Ok(found.map(|f| f.value.trim().to_string())),
            Err(e) => Err(Defer::lookup(TITLE, address, e)),
        }
    }
}

/// The status and text a relocated recipient bounces with.
pub fn bounce_text(new_address: &str) -> (&'static str, String) {
    ("5.1.6", format!("User has moved to {new_address}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maps::MapError;
    use crate::maps::search::testing::{TestMap, list};

    fn local(d: &str) -> Result<bool, MapError> {
        Ok(d == "some.com")
    }

    #[test]
    fn moved_users() {
        // 000's example: who@some.com onetwo@newone.com.
        let r = Relocated {
            maps: list(&[TestMap::exact(
                "hash:relocated",
                &[("who@some.com", "onetwo@newone.com"), ("@gone.org", "the new office")],
            )]),
        };
        assert_eq!(r.new_address("who@some.com", "+", &local).unwrap().as_deref(), Some("onetwo@newone.com"));
        assert_eq!(r.new_address("who+x@some.com", "+", &local).unwrap().as_deref(), Some("onetwo@newone.com"));
        assert_eq!(r.new_address("anyone@gone.org", "+", &local).unwrap().as_deref(), Some("the new office"));
        assert_eq!(r.new_address("stays@some.com", "+", &local).unwrap(), None);
        assert_eq!(bounce_text("onetwo@newone.com"), ("5.1.6", "User has moved to onetwo@newone.com".to_string()));
    }

    #[test]
    fn local_user_keys() {
        let r = Relocated { maps: list(&[TestMap::exact("hash:relocated", &[("who", "who@newone.com")])]) };
        assert_eq!(r.new_address("who@some.com", "", &local).unwrap().as_deref(), Some("who@newone.com"));
        assert_eq!(r.new_address("who@other.org", "", &local).unwrap(), None);
    }

    #[test]
    fn lookup_problems_defer() {
        let r = Relocated { maps: list(&[TestMap::failing("hash:down")]) };
        assert!(
            r.new_address("who@some.com", "", &local)
                .unwrap_err()
                .text
                .starts_with("relocated_maps map lookup problem")
        );
    }
}
