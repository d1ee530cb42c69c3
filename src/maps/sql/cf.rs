//! The `.cf` file of an SQL table: the syntax of Postfix's main.cf, one `name = value` per
//! logical line.
//!
//! - Blank lines and lines whose first non-blank character is `#` are ignored.
//! - A line that starts with white space continues the previous one (a long `query` can be
//!   folded over several lines).
//! - White space around the name and the value is dropped; the value is taken as it is, with
//!   no `$name` expansion and no trailing-comment stripping (Postfix does neither).
//! - A later definition of the same name replaces an earlier one.
//!
//! A file that contains a non-empty `password` must be private: readable by its owner only.
//! Postfix accepts any mode; tidemail refuses a group- or world-readable secrets file
//! (the table is then unavailable, with a message that says what to change).

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::maps::MapError;

/// One parameter: its value and the line where it was defined (for error messages).
#[derive(Debug, Clone)]
struct Param {
    value: String,
    line: usize,
}

/// The parameters of one `.cf` file.
#[derive(Debug, Clone)]
pub struct CfFile {
    /// The file name as the table names it, for messages.
    pub file: String,
    params: HashMap<String, Param>,
    /// The number of lines, for errors about a parameter that is missing.
    lines: usize,
}

impl CfFile {
    /// Read and parse `path`. The table `spec` names the map in Unavailable errors.
    pub fn read(path: &Path, spec: &str) -> Result<CfFile, MapError> {
        let shown = path.display().to_string();
        let mut file = File::open(path).map_err(|e| MapError::unavailable(spec, format!("open {shown}: {e}")))?;
        // The checks use the descriptor that is read, not a second look-up of the name.
        let meta = file.metadata().map_err(|e| MapError::unavailable(spec, format!("stat {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(MapError::unavailable(spec, format!("{shown}: not a regular file")));
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| MapError::unavailable(spec, format!("read {shown}: {e}")))?;
        let text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(MapError::Syntax { file: shown, line, reason: "text is not valid UTF-8".into() });
            }
        };
        let cf = CfFile::parse(&shown, &text)?;
        if cf.get("password").is_some_and(|p| !p.is_empty()) {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o044 != 0 {
                return Err(MapError::unavailable(
                    spec,
                    format!(
                        "{shown} contains a password but is readable by {} (mode {mode:04o}, owner uid {}): \
                         make it private (chmod 600, owned by the user tidemail runs as)",
                        if mode & 0o004 != 0 { "everyone" } else { "its group" },
                        meta.uid(),
                    ),
                ));
            }
        }
        Ok(cf)
    }

    /// Parse the text of a `.cf` file; `file` names it in syntax errors.
    pub fn parse(file: &str, text: &str) -> Result<CfFile, MapError> {
        // Logical lines: (number of the first physical line, text).
        let mut logical: Vec<(usize, String)> = Vec::new();
        let mut lines = 0;
        for (index, raw) in text.lines().enumerate() {
            lines = index + 1;
            let body = raw.trim_start();
            if body.is_empty() || body.starts_with('#') {
                continue;
            }
            if raw.starts_with(char::is_whitespace)
                && let Some((_, last)) = logical.last_mut()
            {
                last.push(' ');
                last.push_str(body.trim_end());
                continue;
            }
            logical.push((index + 1, body.trim_end().to_string()));
        }
        let mut params = HashMap::new();
        for (line, text) in logical {
            let syntax = |reason: &str| MapError::Syntax { file: file.to_string(), line, reason: reason.to_string() };
            let Some((name, value)) = text.split_once('=') else {
                return Err(syntax("expected \"name = value\""));
            };
            let name = name.trim();
            if name.is_empty() {
                return Err(syntax("missing parameter name before \"=\""));
            }
            if name.contains(char::is_whitespace) {
                return Err(syntax("white space in a parameter name (expected \"name = value\")"));
            }
            params.insert(name.to_string(), Param { value: value.trim().to_string(), line });
        }
        Ok(CfFile { file: file.to_string(), params, lines })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(|p| p.value.as_str())
    }

    /// A parameter that must be there and not empty.
    pub fn required(&self, name: &str) -> Result<&str, MapError> {
        match self.get(name) {
            Some(value) if !value.is_empty() => Ok(value),
            _ => Err(MapError::Syntax {
                file: self.file.clone(),
                line: self.line(name),
                reason: format!("required parameter \"{name}\" is missing or empty"),
            }),
        }
    }

    /// The line where `name` is defined; the last line when it is not.
    pub fn line(&self, name: &str) -> usize {
        self.params.get(name).map_or(self.lines.max(1), |p| p.line)
    }

    /// A syntax error about the value of `name`.
    pub fn error(&self, name: &str, reason: impl std::fmt::Display) -> MapError {
        MapError::Syntax { file: self.file.clone(), line: self.line(name), reason: format!("{name}: {reason}") }
    }

    /// The parameter names, sorted (for the check of unknown names).
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.params.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// A yes/no parameter.
    pub fn boolean(&self, name: &str, default: bool) -> Result<bool, MapError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "on" | "1" => Ok(true),
            "no" | "false" | "off" | "0" => Ok(false),
            _ => Err(self.error(name, format!("\"{value}\" is not yes or no"))),
        }
    }

    /// A count (`expansion_limit`).
    pub fn count(&self, name: &str, default: usize) -> Result<usize, MapError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        value.parse().map_err(|_| self.error(name, format!("\"{value}\" is not a whole number")))
    }

    /// A time: a number with an optional unit `s`, `m` or `h` (seconds when there is none),
    /// as Postfix writes times.
    pub fn seconds(&self, name: &str, default: Duration) -> Result<Duration, MapError> {
        let Some(value) = self.get(name) else { return Ok(default) };
        parse_time(value).ok_or_else(|| self.error(name, format!("\"{value}\" is not a time (e.g. 30, 30s, 2m)")))
    }
}

fn parse_time(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits.parse().ok()?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(Duration::from_secs(number.checked_mul(scale)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_values_comments_and_continuations() {
        let text =
            "# comment\n\nhosts = a b\nquery = SELECT x\n  FROM t\n\tWHERE k = '%s'\n  # indented comment\nuser=u\n";
        let cf = CfFile::parse("/t.cf", text).unwrap();
        assert_eq!(cf.get("hosts"), Some("a b"));
        assert_eq!(cf.get("query"), Some("SELECT x FROM t WHERE k = '%s'"));
        assert_eq!(cf.get("user"), Some("u"));
        assert_eq!(cf.line("query"), 4);
        assert_eq!(cf.line("user"), 8);
        assert_eq!(cf.names(), ["hosts", "query", "user"]);
    }

    #[test]
    fn later_definitions_win_and_values_keep_equals_signs() {
        let cf = CfFile::parse("/t.cf", "query = a\nquery = SELECT 1 WHERE 'a=b' = 'a=b'\n").unwrap();
        assert_eq!(cf.get("query"), Some("SELECT 1 WHERE 'a=b' = 'a=b'"));
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        for (text, line) in [("hosts = a\nthis is wrong\n", 2), ("a = b\n\n= value\n", 3), ("x y = 1\n", 1)] {
            match CfFile::parse("/etc/x.cf", text) {
                Err(MapError::Syntax { file, line: l, .. }) => {
                    assert_eq!(file, "/etc/x.cf");
                    assert_eq!(l, line, "{text:?}");
                }
                other => panic!("{text:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn typed_values() {
        let cf = CfFile::parse("/t.cf", "a = 10\nb = 2m\nc = yes\nd = x\n").unwrap();
        assert_eq!(cf.count("a", 0).unwrap(), 10);
        assert_eq!(cf.seconds("b", Duration::ZERO).unwrap(), Duration::from_secs(120));
        assert_eq!(cf.seconds("a", Duration::ZERO).unwrap(), Duration::from_secs(10));
        assert!(cf.boolean("c", false).unwrap());
        assert!(cf.boolean("d", false).is_err());
        assert!(cf.seconds("d", Duration::ZERO).is_err());
        assert_eq!(cf.count("missing", 7).unwrap(), 7);
        let err = cf.required("dbpath").unwrap_err().to_string();
        assert!(err.contains("dbpath"), "{err}");
    }
}
