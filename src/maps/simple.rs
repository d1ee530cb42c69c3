//! Tables without a file: `static:`, `inline:` and `fail:`.
//!
//! - `static:value` answers `value` to every key (a Pattern table, asked once with the whole
//!   string); `static:{ text with spaces }` keeps the inner text, trimmed.
//! - `inline:{ key=value, { key = text with spaces, or commas } }` (Postfix 3.0): a small
//!   exact table in the name itself; keys are folded to lower case, the first of duplicates
//!   wins.
//! - `fail:name` fails every lookup (Unavailable), for testing what a dead table does.

use std::collections::HashMap;
use std::sync::Arc;

use super::source;
use super::{Map, MapError, MapKind};

#[derive(Debug)]
struct Static {
    spec: String,
    value: String,
}

impl Map for Static {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, _key: &str) -> Result<Option<String>, MapError> {
        Ok(Some(self.value.clone()))
    }

    fn kind(&self) -> MapKind {
        MapKind::Pattern
    }
}

pub fn open_static(spec: &str, name: &str) -> Arc<dyn Map> {
    let trimmed = name.trim();
    let value = match trimmed.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        Some(inner) => inner.trim(),
        None => name,
    };
    Arc::new(Static { spec: spec.to_string(), value: value.to_string() })
}

#[derive(Debug)]
struct Inline {
    spec: String,
    table: HashMap<String, String>,
}

impl Map for Inline {
    fn spec(&self) -> &str {
        &self.spec
    }

    fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        Ok(self.table.get(&source::fold(key)).cloned())
    }
}

/// Errors name the table as the file and the entry's position as the line.
pub fn open_inline(spec: &str, name: &str) -> Result<Arc<dyn Map>, MapError> {
    let items = source::braced_list(name)
        .map_err(|reason| source::syntax(spec, 1, format!("expected inline:{{ key=value, ... }}: {reason}")))?;
    let mut table = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let (key, value) = item
            .split_once('=')
            .map(|(k, v)| (k.trim(), v.trim()))
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| source::syntax(spec, index + 1, format!("expected \"key=value\", got \"{item}\"")))?;
        table.entry(source::fold(key)).or_insert_with(|| value.to_string());
    }
    Ok(Arc::new(Inline { spec: spec.to_string(), table }))
}

#[derive(Debug)]
struct Fail(String);

impl Map for Fail {
    fn spec(&self) -> &str {
        &self.0
    }

    fn lookup(&self, _key: &str) -> Result<Option<String>, MapError> {
        Err(MapError::unavailable(&self.0, "table is configured to fail"))
    }
}

pub fn open_fail(spec: &str, _name: &str) -> Arc<dyn Map> {
    Arc::new(Fail(spec.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_tables() {
        let t = open_static("static:relay:[mail.example]", "relay:[mail.example]");
        assert_eq!(t.lookup("anything").unwrap().as_deref(), Some("relay:[mail.example]"));
        assert_eq!(t.kind(), MapKind::Pattern);
        let t = open_static("static:{ 550 go away }", "{ 550 go away }");
        assert_eq!(t.lookup("x").unwrap().as_deref(), Some("550 go away"));
    }

    #[test]
    fn inline_tables() {
        let name = "{ Alice=a@example.com, bob=b, { carol = text with spaces, and commas }, alice=second }";
        let t = open_inline(&format!("inline:{name}"), name).unwrap();
        assert_eq!(t.kind(), MapKind::Exact);
        assert_eq!(t.lookup("ALICE").unwrap().as_deref(), Some("a@example.com"));
        assert_eq!(t.lookup("bob").unwrap().as_deref(), Some("b"));
        assert_eq!(t.lookup("carol").unwrap().as_deref(), Some("text with spaces, and commas"));
        assert_eq!(t.lookup("dave").unwrap(), None);
        let t = open_inline("inline:{}", "{}").unwrap();
        assert_eq!(t.lookup("x").unwrap(), None);
    }

    #[test]
    fn bad_inline_tables() {
        let err = open_inline("inline:{ a=b, c }", "{ a=b, c }").unwrap_err();
        assert_eq!(err.to_string(), "inline:{ a=b, c }, line 2: expected \"key=value\", got \"c\"");
        assert!(matches!(open_inline("inline:a=b", "a=b"), Err(MapError::Syntax { .. })));
        assert!(matches!(open_inline("inline:{ {a=b }", "{ {a=b }"), Err(MapError::Syntax { .. })));
    }

    #[test]
    fn fail_tables() {
        let err = open_fail("fail:test", "test").lookup("x").unwrap_err();
        assert!(matches!(err, MapError::Unavailable { .. }));
        assert_eq!(err.to_string(), "fail:test: table lookup problem: table is configured to fail");
    }
}
