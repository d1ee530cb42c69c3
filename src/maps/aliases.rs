//! The aliases(5) source format, compiled by `newaliases` (Postfix: postalias).
//!
//! ```text
//! # comment
//! postmaster: root
//! "list owner": alice, bob,
//!     carol
//! archive: /var/mail/archive, "|/usr/bin/archiver -q", :include:/etc/mail/team
//! ```
//!
//! The name is a local part, double-quoted when it holds whitespace, `#`, `:` or `@`; it is
//! stored unquoted and folded to lower case. The value is kept as text: the local delivery
//! agent splits it ([`split_targets`]) and decides what `|command`, `/file` and
//! `:include:` may do (allow_mail_to_commands, allow_mail_to_files).

use super::MapError;
use super::source::{self, Entry, Line};

/// Parse an aliases file into (name, value) entries, in file order.
pub fn parse(file: &str, bytes: &[u8]) -> Result<Vec<Entry>, MapError> {
    source::logical_lines(file, bytes)?.iter().map(|line| entry(file, line)).collect()
}

fn entry(file: &str, line: &Line) -> Result<Entry, MapError> {
    let err = |reason: String| source::syntax(file, line.number, reason);
    let text = line.text.as_str();
    let (name, rest) = if let Some(quoted) = text.strip_prefix('"') {
        let (name, len) = unquote(quoted).ok_or_else(|| err("missing closing '\"' in the alias name".into()))?;
        (name, &quoted[len..])
    } else {
        let end = text.find(':').unwrap_or(text.len());
        let name = text[..end].trim_ascii_end();
        if name.contains(|c: char| c.is_ascii_whitespace() || c == '@' || c == '"') {
            return Err(err(format!("alias name \"{name}\" must be quoted (it contains whitespace, '@' or '\"')")));
        }
        (name.to_string(), &text[name.len()..])
    };
    let Some(value) = rest.trim_ascii_start().strip_prefix(':') else {
        return Err(err(format!("expected \"name: value\", got \"{}\"", text.trim_ascii_end())));
    };
    let value = value.trim_ascii();
    if name.is_empty() {
        return Err(err("empty alias name".into()));
    }
    if value.is_empty() {
        return Err(err(format!("alias \"{name}\" has no value")));
    }
    Ok(Entry { key: name, value: value.to_string(), line: line.number })
}

/// The inside of a quoted string (after the opening quote): the text with backslash escapes
/// resolved, and the number of bytes consumed including the closing quote.
fn unquote(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => out.push(chars.next()?.1),
            c => out.push(c),
        }
    }
    None
}

/// One destination in an alias value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Address(String),
    /// `|command` (the text after the bar).
    Command(String),
    /// `/file/name`.
    File(String),
    /// `:include:/file/name` (the file name).
    Include(String),
}

/// Split an alias value at the commas outside double quotes and classify each part. A part
/// that is entirely quoted (`"|cmd arg"`, `"/path with space"`) loses its quotes; a quoted
/// local part (`"john doe"@example.com`) keeps them.
pub fn split_targets(value: &str) -> Vec<Target> {
    let mut parts = Vec::new();
    let (mut current, mut quoted, mut escaped) = (String::new(), false, false);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
        .iter()
        .map(|p| p.trim())
        .filter(|p| !p.is_empty())
        .map(|p| {
            let whole = p.strip_prefix('"').and_then(unquote).filter(|(_, len)| *len == p.len() - 1).map(|(t, _)| t);
            let text = whole.unwrap_or_else(|| p.to_string());
            if let Some(command) = text.strip_prefix('|') {
                Target::Command(command.to_string())
            } else if text.starts_with('/') {
                Target::File(text)
            } else if text.len() >= 9 && text[..9].eq_ignore_ascii_case(":include:") {
                Target::Include(text[9..].trim().to_string())
            } else {
                Target::Address(text)
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Vec<(String, String, usize)> {
        parse("/etc/aliases", text.as_bytes()).unwrap().into_iter().map(|e| (e.key, e.value, e.line)).collect()
    }

    fn err(text: &str) -> String {
        parse("/etc/aliases", text.as_bytes()).unwrap_err().to_string()
    }

    #[test]
    fn the_usual_file() {
        let text = "# See man 5 aliases\npostmaster:    root\nMailer-Daemon: postmaster\n\nteam: alice,\n  bob ,\n\tcarol\nnull: /dev/null\nsink: \"|exit 0\"\ninc: :include:/etc/mail/team\n";
        assert_eq!(
            ok(text),
            vec![
                ("postmaster".into(), "root".into(), 2),
                ("Mailer-Daemon".into(), "postmaster".into(), 3),
                ("team".into(), "alice,  bob ,\tcarol".into(), 5),
                ("null".into(), "/dev/null".into(), 8),
                ("sink".into(), "\"|exit 0\"".into(), 9),
                ("inc".into(), ":include:/etc/mail/team".into(), 10),
            ]
        );
    }

    #[test]
    fn quoted_names() {
        assert_eq!(ok("\"foo bar\": x\n"), vec![("foo bar".into(), "x".into(), 1)]);
        assert_eq!(ok("\"a:b@c\" : y\n"), vec![("a:b@c".into(), "y".into(), 1)]);
        assert_eq!(ok("\"q\\\"x\": z\n"), vec![("q\"x".into(), "z".into(), 1)]);
        assert_eq!(ok("name : value\n"), vec![("name".into(), "value".into(), 1)]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        assert_eq!(
            err("root: a\nno colon here\n"),
            "/etc/aliases, line 2: alias name \"no colon here\" must be quoted (it contains whitespace, '@' or '\"')"
        );
        assert_eq!(err("a: b\nnocolon\n"), "/etc/aliases, line 2: expected \"name: value\", got \"nocolon\"");
        assert_eq!(err("\n\nempty:\n"), "/etc/aliases, line 3: alias \"empty\" has no value");
        assert_eq!(err("\"open: x\n"), "/etc/aliases, line 1: missing closing '\"' in the alias name");
        assert_eq!(err(": x\n"), "/etc/aliases, line 1: empty alias name");
        assert!(err("user@example: x\n").contains("must be quoted"));
    }

    #[test]
    fn targets() {
        assert_eq!(
            split_targets(
                "alice, \"|/usr/bin/vacation -a, b\" , /var/log/mail.txt,:INCLUDE: /etc/team, \"john doe\"@example.com,,"
            ),
            vec![
                Target::Address("alice".into()),
                Target::Command("/usr/bin/vacation -a, b".into()),
                Target::File("/var/log/mail.txt".into()),
                Target::Include("/etc/team".into()),
                Target::Address("\"john doe\"@example.com".into()),
            ]
        );
        assert_eq!(split_targets("|exit 67"), vec![Target::Command("exit 67".into())]);
    }
}
