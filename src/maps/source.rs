//! Text sources of lookup tables: the line format every Postfix table file shares, and the
//! machinery that notices when a file changes.
//!
//! Line format (postmap(1), regexp_table(5), aliases(5)):
//! - empty and whitespace-only lines are ignored, and so are lines whose first
//!   non-whitespace character is `#` (a `#` later in a line is ordinary text);
//! - a logical line starts with non-whitespace text, and a line that starts with whitespace
//!   continues it (the newline goes, the continuation's own whitespace stays);
//! - for `key value` tables the key ends at the first whitespace and the value is the rest,
//!   trimmed.
//!
//! Malformed input is a [`MapError::Syntax`] naming the file and the line: tidemail refuses a
//! broken table rather than serve it with entries silently missing (Postfix warns and skips).
//!
//! [`Watched`] holds what was loaded from files and reloads it when one of them changes
//! (device, inode, size or modification time), checking at most once a second.

use std::borrow::Cow;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::MapError;

/// How often a table looks at its files again.
pub const RECHECK: Duration = Duration::from_secs(1);

/// One logical line: its text (continuations joined) and the number of its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub text: String,
}

/// One `key value` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

pub fn syntax(file: &str, line: usize, reason: impl Into<String>) -> MapError {
    MapError::Syntax { file: file.to_string(), line, reason: reason.into() }
}

/// Read a table's file; failing to is a temporary problem (defer), not "not found".
pub fn read(spec: &str, path: &Path) -> Result<Vec<u8>, MapError> {
    fs::read(path).map_err(|e| MapError::unavailable(spec, format!("open {}: {e}", path.display())))
}

/// Split `bytes` into logical lines. `file` is what errors name.
pub fn logical_lines(file: &str, bytes: &[u8]) -> Result<Vec<Line>, MapError> {
    let mut lines: Vec<Line> = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let number = index + 1;
        let text = std::str::from_utf8(raw).map_err(|_| syntax(file, number, "text is not valid UTF-8"))?;
        let text = text.strip_suffix('\r').unwrap_or(text);
        let trimmed = text.trim_ascii_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if trimmed.len() != text.len() {
            match lines.last_mut() {
                Some(last) => last.text.push_str(text),
                _ => return Err(syntax(file, number, "text starts with whitespace but there is no line to continue")),
            }
        } else {
            lines.push(Line { number, text: text.to_string() });
        }
    }
    Ok(lines)
}

/// Split a logical line into key and value (`key whitespace value`).
pub fn key_value(file: &str, line: &Line) -> Result<Entry, MapError> {
    let text = line.text.trim_ascii_end();
    match text.split_once(|c: char| c.is_ascii_whitespace()) {
        Some((key, value)) if !value.trim_ascii().is_empty() => {
            Ok(Entry { key: key.to_string(), value: value.trim_ascii().to_string(), line: line.number })
        }
        _ => Err(syntax(file, line.number, format!("expected \"key whitespace value\", got \"{text}\""))),
    }
}

/// Parse a postmap(1)-format source: every logical line is `key value`.
pub fn parse_map(file: &str, bytes: &[u8]) -> Result<Vec<Entry>, MapError> {
    logical_lines(file, bytes)?.iter().map(|line| key_value(file, line)).collect()
}

/// Keys of exact tables are folded to lower case at build and at lookup (Postfix's
/// DICT_FLAG_FOLD_FIX), so `Postmaster` finds `postmaster`.
pub fn fold(key: &str) -> String {
    fold_ref(key).into_owned()
}

/// [`fold`] without a copy when the key is already lower case (the common case at lookup).
pub fn fold_ref(key: &str) -> Cow<'_, str> {
    if key.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
        Cow::Owned(key.to_lowercase())
    } else {
        Cow::Borrowed(key)
    }
}

/// Split the inside of a braced list, `{ a=b, { c = d e }, f }` (inline: tables and the
/// Postfix 3.7 `regexp:{ {rule}, {rule} }` forms). Elements are separated by commas or
/// whitespace; a braced element keeps its inner whitespace and commas, trimmed at both ends.
/// `text` must start with `{` and end with `}`.
pub fn braced_list(text: &str) -> Result<Vec<String>, String> {
    let inner =
        text.trim().strip_prefix('{').and_then(|t| t.strip_suffix('}')).ok_or_else(|| "expected {...}".to_string())?;
    let mut items = Vec::new();
    let mut chars = inner.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c == ',' || c.is_whitespace() {
            chars.next();
        } else if c == '{' {
            let mut depth = 0usize;
            let mut end = None;
            for (i, c) in chars.by_ref() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let end = end.ok_or_else(|| "missing '}'".to_string())?;
            items.push(inner[start + 1..end].trim().to_string());
        } else {
            let mut end = inner.len();
            while let Some(&(i, c)) = chars.peek() {
                if c == ',' || c.is_whitespace() {
                    end = i;
                    break;
                }
                if c == '{' || c == '}' {
                    return Err(format!("unexpected '{c}' in \"{}\"", &inner[start..]));
                }
                chars.next();
            }
            items.push(inner[start..end].to_string());
        }
    }
    Ok(items)
}

/// What identifies one version of a file: a rename (postmap, newaliases) changes the inode,
/// an edit in place the size or the modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some(Stamp { dev: m.dev(), ino: m.ino(), size: m.size(), mtime: m.mtime(), mtime_nsec: m.mtime_nsec() })
}

type Loader<T> = Box<dyn Fn() -> Result<T, MapError> + Send + Sync>;

/// A value loaded from files, reloaded when any of them changes.
pub struct Watched<T> {
    spec: String,
    paths: Vec<PathBuf>,
    load: Loader<T>,
    state: RwLock<State<T>>,
}

struct State<T> {
    current: Result<Arc<T>, MapError>,
    stamps: Vec<Option<Stamp>>,
    checked: Instant,
}

impl<T> std::fmt::Debug for Watched<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watched").field("spec", &self.spec).field("paths", &self.paths).finish()
    }
}

impl<T> Watched<T> {
    /// Load now; an error here is returned as is (a syntax error names file and line).
    pub fn open(
        spec: &str,
        paths: Vec<PathBuf>,
        load: impl Fn() -> Result<T, MapError> + Send + Sync + 'static,
    ) -> Result<Watched<T>, MapError> {
        // Stamp before loading: a change made during the load is seen at the next check.
        let stamps = paths.iter().map(|p| stamp(p)).collect();
        let value = load()?;
        Ok(Watched {
            spec: spec.to_string(),
            paths,
            load: Box::new(load),
            state: RwLock::new(State { current: Ok(Arc::new(value)), stamps, checked: Instant::now() }),
        })
    }

    /// The current value, reloaded first if a file changed. While a reload fails, every
    /// call returns the failure as `Unavailable` (mail waits) and it is logged once.
    pub fn get(&self) -> Result<Arc<T>, MapError> {
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if state.checked.elapsed() < RECHECK {
                return state.current.clone();
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let stamps: Vec<Option<Stamp>> = self.paths.iter().map(|p| stamp(p)).collect();
            if stamps != state.stamps {
                state.stamps = stamps;
                state.current = match (self.load)() {
                    Ok(value) => Ok(Arc::new(value)),
                    Err(e) => {
                        crate::mail_warning!("lookup", "{}: {e}", self.spec);
                        Err(as_unavailable(&self.spec, e))
                    }
                };
            }
        }
        state.current.clone()
    }
}

/// At lookup time every failure means the same thing to the caller: defer.
pub fn as_unavailable(spec: &str, e: MapError) -> MapError {
    match e {
        MapError::Unavailable { .. } => e,
        other => MapError::unavailable(spec, other),
    }
}

/// A table's contents: from a file (watched), or fixed (given inline in the table's name).
#[derive(Debug)]
pub enum Content<T> {
    Fixed(Arc<T>),
    File(Watched<T>),
}

impl<T> Content<T> {
    pub fn get(&self) -> Result<Arc<T>, MapError> {
        match self {
            Content::Fixed(value) => Ok(value.clone()),
            Content::File(watched) => watched.get(),
        }
    }
}

/// Open a rule table (regexp, pcre, cidr): `type:/path` reads and watches the file,
/// `type:{ {rule}, {rule} }` (Postfix 3.7) takes the rules from the name, one per line.
pub fn open_rules<T: Send + Sync + 'static>(
    spec: &str,
    name: &str,
    parse: fn(&str, &[Line]) -> Result<T, MapError>,
) -> Result<Content<T>, MapError> {
    if name.trim_start().starts_with('{') {
        let rules = braced_list(name).map_err(|reason| syntax(spec, 1, reason))?;
        let lines: Vec<Line> = rules.into_iter().enumerate().map(|(i, text)| Line { number: i + 1, text }).collect();
        return Ok(Content::Fixed(Arc::new(parse(spec, &lines)?)));
    }
    let path = PathBuf::from(name);
    let (spec_owned, file) = (spec.to_string(), name.to_string());
    let watched = Watched::open(spec, vec![path.clone()], move || {
        let bytes = read(&spec_owned, &path)?;
        parse(&file, &logical_lines(&file, &bytes)?)
    })?;
    Ok(Content::File(watched))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<(usize, String)> {
        logical_lines("t", text.as_bytes()).unwrap().into_iter().map(|l| (l.number, l.text)).collect()
    }

    #[test]
    fn comments_blanks_and_continuations() {
        let text = "# comment\n\nalpha 1\n  continued\n   # indented comment\n\tmore\nbeta 2 # not a comment\r\n";
        assert_eq!(
            lines(text),
            vec![(3, "alpha 1  continued\tmore".to_string()), (7, "beta 2 # not a comment".to_string())]
        );
    }

    #[test]
    fn a_leading_continuation_is_an_error() {
        let err = logical_lines("/etc/x", b"# c\n  orphan\nkey value\n").unwrap_err();
        assert!(matches!(err, MapError::Syntax { ref file, line: 2, .. } if file == "/etc/x"), "{err}");
    }

    #[test]
    fn key_value_entries() {
        let entries = parse_map("t", b"Key   some value  \nk2\tv2\n").unwrap();
        assert_eq!(entries[0], Entry { key: "Key".into(), value: "some value".into(), line: 1 });
        assert_eq!(entries[1], Entry { key: "k2".into(), value: "v2".into(), line: 2 });
    }

    #[test]
    fn a_key_without_value_names_file_and_line() {
        let err = parse_map("/etc/postfix/access", b"good value\n\nlonely\n").unwrap_err();
        assert_eq!(err.to_string(), "/etc/postfix/access, line 3: expected \"key whitespace value\", got \"lonely\"");
        let err = parse_map("f", b"a b\nonly   \n").unwrap_err();
        assert!(matches!(err, MapError::Syntax { line: 2, .. }));
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let err = parse_map("f", b"a b\nc \xff\n").unwrap_err();
        assert!(matches!(err, MapError::Syntax { line: 2, .. }));
    }

    #[test]
    fn folding() {
        assert_eq!(fold("PostMaster@Example.COM"), "postmaster@example.com");
        assert_eq!(fold("ÉCOLE"), "école");
    }

    #[test]
    fn braced_lists() {
        assert_eq!(braced_list("{ a=b, c=d }").unwrap(), ["a=b", "c=d"]);
        assert_eq!(braced_list("{{ key = a value, with comma }, x=y}").unwrap(), ["key = a value, with comma", "x=y"]);
        assert_eq!(braced_list("{ { /a{2}/ ok }, { /b/ no } }").unwrap(), ["/a{2}/ ok", "/b/ no"]);
        assert!(braced_list("{ {unclosed }").is_err());
        assert!(braced_list("a=b").is_err());
        assert_eq!(braced_list("{}").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn watched_reloads_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        fs::write(&path, "one\n").unwrap();
        let p = path.clone();
        let w = Watched::open("texthash:t", vec![path.clone()], move || {
            let text = fs::read_to_string(&p).unwrap();
            if text.contains("bad") { Err(syntax("t", 1, "bad")) } else { Ok(text) }
        })
        .unwrap();
        assert_eq!(*w.get().unwrap(), "one\n");
        fs::write(&path, "two, longer\n").unwrap();
        // Not before a second has passed...
        assert_eq!(*w.get().unwrap(), "one\n");
        w.state.write().unwrap().checked -= RECHECK;
        assert_eq!(*w.get().unwrap(), "two, longer\n");
        fs::write(&path, "bad file\n").unwrap();
        w.state.write().unwrap().checked -= RECHECK;
        assert!(matches!(w.get(), Err(MapError::Unavailable { .. })));
    }
}
