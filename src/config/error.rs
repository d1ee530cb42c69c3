//! Configuration errors. Each one's Display is the single line the user sees after
//! "tidemail: fatal: ", and it always starts with the configuration file's path
//! (plus the line when the fault sits on one), the way Postfix reports main.cf errors.

use std::fmt;
use std::path::{Path, PathBuf};

/// Where a fault was found: the file, and the line of the offending setting if it has one
/// (a problem in a built-in default has no line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    pub line: Option<usize>,
}

impl Location {
    pub fn new(path: &Path, line: Option<usize>) -> Location {
        Location { path: path.to_path_buf(), line }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}", self.path.display()),
            None => write!(f, "{}", self.path.display()),
        }
    }
}

/// Renders an optional "did you mean" hint; empty when there is nothing close enough.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suggestion(pub Option<&'static str>);

impl fmt::Display for Suggestion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(name) => write!(f, " (did you mean \"{name}\"?)"),
            None => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read at all (missing, unreadable, a directory...).
    #[error("cannot read {}: {reason}", path.display())]
    Read {
        path: PathBuf,
        reason: String,
        #[source]
        source: std::io::Error,
    },

    /// The text is not valid TOML.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },

    /// A top-level key that is no parameter we know.
    #[error("{at}: unknown parameter \"{name}\"{suggestion}")]
    UnknownParameter { at: Location, name: String, suggestion: Suggestion },

    /// A `[table]` (or dotted key) whose name is not a known section.
    #[error("{at}: unknown section [{name}] (settings are plain \"name = value\" lines)")]
    UnknownSection { at: Location, name: String },

    /// A value that does not have the form the parameter needs (wrong TOML type, bad
    /// number, bad time unit, failed sanity check...).
    #[error("{at}: bad value for {name}: {value} (expected {expected})")]
    BadValue {
        at: Location,
        name: &'static str,
        /// The offending value as the user wrote it (strings quoted).
        value: String,
        expected: String,
    },

    /// A `$name` in a value that is no parameter we know.
    #[error("{at}: {name} refers to unknown parameter ${unknown}{suggestion}")]
    UnknownReference { at: Location, name: &'static str, unknown: String, suggestion: Suggestion },

    /// A malformed `$` expression (unmatched brace, empty name, ...).
    #[error("{at}: bad value for {name}: \"{value}\" ({reason})")]
    BadExpression { at: Location, name: &'static str, value: String, reason: String },

    /// A parameter whose expansion comes back to itself.
    #[error("{at}: {name} refers to itself: {}", render_chain(chain))]
    ExpansionLoop {
        at: Location,
        name: &'static str,
        /// The references followed, from `name` back to the repeated parameter.
        chain: Vec<&'static str>,
    },

    /// Expansion nested deeper than Postfix allows (mac_expand's limit of 100 levels).
    #[error("{at}: {name}: $ expressions nested more than {limit} levels deep")]
    ExpansionTooDeep { at: Location, name: &'static str, limit: usize },
}

/// `$a -> $b -> $a`
fn render_chain(chain: &[&str]) -> String {
    chain.iter().map(|name| format!("${name}")).collect::<Vec<_>>().join(" -> ")
}

impl ConfigError {
    /// An I/O error text without Rust's " (os error N)" suffix, to read like strerror().
    pub(crate) fn read(path: &Path, source: std::io::Error) -> ConfigError {
        let text = source.to_string();
        let reason = match text.find(" (os error ") {
            Some(cut) => text[..cut].to_string(),
            None => text,
        };
        ConfigError::Read { path: path.to_path_buf(), reason, source }
    }
}
