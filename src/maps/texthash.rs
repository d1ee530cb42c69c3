//! `texthash:` tables: the postmap(1) text format read straight into memory, no build step
//! (Postfix 2.8). The file is read again when it changes (checked at most once a second).
//! Keys are folded to lower case; of duplicate keys the first wins, as with postmap.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::path::PathBuf;
use std::sync::Arc;

use super::source::{self, Content, Watched};
use super::{Map, MapError};

pub fn open(spec: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    let (spec_owned, path) = (spec.to_string(), PathBuf::from(name));
    let watched = Watched::open(spec, vec![path.clone()], move || load(&spec_owned, &path))?;
    Ok(Arc::new(TextHash { spec: spec.to_string(), table: Content::File(watched) }))
}

fn load(spec: &str, path: &std::path::Path) -> Result<HashMap<String, String>, MapError> {
    let file = path.display().to_string();
    let entries = source::parse_map(&file, &source::read(spec, path)?)?;
    let mut table = HashMap::with_capacity(entries.len());
    for entry in entries {
        match table.entry(source::fold(&entry.key)) {
            Entry::Occupied(first) => crate::mail_warning!(
                "lookup",
                "{file}, line {}: duplicate entry: \"{}\"; keeping the first",
                entry.line,
                first.key()
            ),
            Entry::Vacant(slot) => {
                slot.insert(entry.value);
            }
        }
    }
    Ok(table)
}

#[derive(Debug)]
struct TextHash {
    spec: String,
    table: Content<HashMap<String, String>>,
}

impl Map for TextHash {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.table.get()?.get(source::fold_ref(key).as_ref()).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn read_and_reread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("virtual");
        fs::write(&path, "# virtual\nInfo@Example.com  alice\n@example.com bob\ninfo@example.com carol\n").unwrap();
        let spec = format!("texthash:{}", path.display());
        let t = open(&spec, path.to_str().unwrap()).unwrap();
        assert_eq!(t.lookup("info@EXAMPLE.com").unwrap().as_deref(), Some("alice"));
        assert_eq!(t.lookup("@example.com").unwrap().as_deref(), Some("bob"));
        assert_eq!(t.lookup("x@example.com").unwrap(), None);
        fs::write(&path, "info@example.com dave, and more\n").unwrap();
        std::thread::sleep(source::RECHECK + std::time::Duration::from_millis(50));
        assert_eq!(t.lookup("info@example.com").unwrap().as_deref(), Some("dave, and more"));
        fs::write(&path, "info@example.com dave\nbroken\n").unwrap();
        std::thread::sleep(source::RECHECK + std::time::Duration::from_millis(50));
        let err = t.lookup("info@example.com").unwrap_err();
        assert!(matches!(err, MapError::Unavailable { .. }));
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn errors_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        assert!(matches!(open("texthash:t", path.to_str().unwrap()), Err(MapError::Unavailable { .. })));
        fs::write(&path, "ok value\nnovalue\n").unwrap();
        let err = open("texthash:t", path.to_str().unwrap()).unwrap_err();
        assert!(matches!(err, MapError::Syntax { line: 2, ref file, .. } if file.ends_with("/t")), "{err}");
    }
}
