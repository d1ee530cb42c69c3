//! From TOML text to the settings it makes, one per known parameter, with their lines.
//! Only the shape is checked here (known key, acceptable TOML type); values are read after
//! expansion.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Location, Suggestion};
use super::params::{PARAMETERS, index_of, suggest};
use super::resolve::Written;
use super::value::Kind;

/// The settings of `text`, indexed like [`PARAMETERS`] (None = not set).
pub fn read_settings(text: &str, path: &Path) -> Result<Vec<Option<Written>>, ConfigError> {
    let line_of = |offset: usize| line_number(text, offset);
    let table = DeTable::parse(text).map_err(|error| {
        let span = error.span().unwrap_or(0..0);
        ConfigError::Syntax {
            at: Location::new(path, Some(line_of(span.start))),
            message: syntax_message(text, error.message(), span),
        }
    })?;

    // Report the first fault in file order, not in the map's key order.
    let mut entries: Vec<_> = table.get_ref().iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);

    let mut settings: Vec<Option<Written>> = vec![None; PARAMETERS.len()];
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let at = Location::new(path, Some(line_of(key.span().start)));
        let Some(index) = index_of(name) else {
            // Sections ([services.NAME] in master.cf style, in a later change) will be
            // dispatched here by name; until one exists, a table is as unknown as a typo.
            if is_table(value.get_ref()) && suggest(name).is_none() {
                return Err(ConfigError::UnknownSection { at, name: name.to_string() });
            }
            return Err(ConfigError::UnknownParameter {
                at,
                name: name.to_string(),
                suggestion: Suggestion(suggest(name)),
            });
        };
        let spec = &PARAMETERS[index];
        let shown = render(value.get_ref());
        let raw = postfix_text(spec.kind, value.get_ref()).ok_or_else(|| ConfigError::BadValue {
            at: at.clone(),
            name: spec.name,
            value: shown.clone(),
            expected: spec.kind.expected(spec.default),
        })?;
        settings[index] = Some(Written { raw, shown, line: at.line.unwrap_or(1) });
    }
    Ok(settings)
}

/// The TOML parser's message, made plainer for the two slips main.cf habits cause: an empty
/// value written as nothing, and a key given twice.
fn syntax_message(text: &str, message: &str, span: std::ops::Range<usize>) -> String {
    let line_start = text[..span.start.min(text.len())].rfind('\n').map_or(0, |at| at + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let line = line.split('#').next().unwrap_or("").trim_end();
    if line.ends_with('=') && !line.trim_start().starts_with('[') {
        return "missing value after \"=\" (write \"\" for an empty value)".to_string();
    }
    let near = text.get(span).unwrap_or("");
    if message.starts_with("duplicate key") && !near.is_empty() {
        return format!("duplicate key \"{near}\"");
    }
    message.trim().to_string()
}

/// 1-based line of a byte offset.
fn line_number(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

fn is_table(value: &DeValue<'_>) -> bool {
    match value {
        DeValue::Table(_) => true,
        DeValue::Array(items) => items.iter().any(|item| is_table(item.get_ref())),
        _ => false,
    }
}

/// The TOML value as the Postfix text it stands for, if its type suits the kind: strings
/// always; integers for numbers and times; booleans for booleans; arrays of strings for lists.
fn postfix_text(kind: Kind, value: &DeValue<'_>) -> Option<String> {
    match value {
        DeValue::String(text) => Some(text.to_string()),
        DeValue::Integer(number) if kind.takes_integer() => {
            let digits = number.as_str().replace('_', "");
            i128::from_str_radix(&digits, number.radix()).ok().map(|n| n.to_string())
        }
        DeValue::Boolean(yes) if kind == Kind::Bool => Some(if *yes { "yes" } else { "no" }.to_string()),
        DeValue::Array(items) if kind == Kind::List => items
            .iter()
            .map(|item| item.get_ref().as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(", ")),
        _ => None,
    }
}

/// A TOML value written back for an error message: strings quoted, tables named as such.
fn render(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(text) => format!("{:?}", text.as_ref()),
        DeValue::Integer(number) => number.to_string(),
        DeValue::Float(number) => number.to_string(),
        DeValue::Boolean(yes) => yes.to_string(),
        DeValue::Datetime(when) => when.to_string(),
        DeValue::Array(items) => {
            let items: Vec<String> = items.iter().map(|i| render(i.get_ref())).collect();
            format!("[{}]", items.join(", "))
        }
        DeValue::Table(_) => "a table".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::params::Param;

    fn read(text: &str) -> Result<Vec<Option<Written>>, ConfigError> {
        read_settings(text, Path::new("/etc/tidemail/tidemail.toml"))
    }

    fn raw_of(text: &str, param: Param) -> String {
        read(text).unwrap()[param as usize].as_ref().unwrap().raw.clone()
    }

    #[test]
    fn toml_types_become_postfix_text() {
        assert_eq!(raw_of("disable_dns_lookups = true", Param::disable_dns_lookups), "yes");
        assert_eq!(raw_of("message_size_limit = 1_000", Param::message_size_limit), "1000");
        assert_eq!(raw_of("message_size_limit = 0x10", Param::message_size_limit), "16");
        assert_eq!(raw_of("maximal_queue_lifetime = 3", Param::maximal_queue_lifetime), "3");
        assert_eq!(raw_of(r#"mydestination = ["a", "$mydomain"]"#, Param::mydestination), "a, $mydomain");
        assert_eq!(raw_of("mydestination = []", Param::mydestination), "");
    }

    #[test]
    fn lines_are_recorded() {
        let settings = read("\n# comment\nrelayhost = \"[smtp.example.net]\"\n").unwrap();
        assert_eq!(settings[Param::relayhost as usize].as_ref().unwrap().line, 3);
    }

    #[test]
    fn first_fault_in_file_order_is_reported() {
        let error = read("zzz_unknown = 1\naaa_unknown = 2\n").unwrap_err();
        assert!(error.to_string().contains("\"zzz_unknown\""), "{error}");
    }

    #[test]
    fn wrong_toml_types() {
        let error = read("myhostname = 5").unwrap_err().to_string();
        assert_eq!(error, "/etc/tidemail/tidemail.toml, line 1: bad value for myhostname: 5 (expected a string)");
        let error = read("mydestination = [\"a\", 1]").unwrap_err().to_string();
        assert!(error.contains("bad value for mydestination: [\"a\", 1]"), "{error}");
        let error = read("[myhostname]\nx = 1").unwrap_err().to_string();
        assert!(error.contains("bad value for myhostname: a table"), "{error}");
        let error = read("message_size_limit = 1.5").unwrap_err().to_string();
        assert!(error.contains("bad value for message_size_limit: 1.5"), "{error}");
        let error = read("disable_dns_lookups = 1").unwrap_err().to_string();
        assert!(error.contains("(expected yes or no)"), "{error}");
    }

    #[test]
    fn tables_are_reserved_sections() {
        let error = read("relayhost = \"\"\n[services.smtp]\ntype = \"inet\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "/etc/tidemail/tidemail.toml, line 2: unknown section [services] \
             (settings are plain \"name = value\" lines)"
        );
    }

    #[test]
    fn main_cf_habits_get_plain_messages() {
        let error = read("relayhost =\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "/etc/tidemail/tidemail.toml, line 1: \
             missing value after \"=\" (write \"\" for an empty value)"
        );
        let error = read("relayhost = \"a\"\nrelayhost = \"b\"\n").unwrap_err().to_string();
        assert_eq!(error, "/etc/tidemail/tidemail.toml, line 2: duplicate key \"relayhost\"");
    }

    #[test]
    fn syntax_error_names_the_line() {
        let error = read("relayhost = \"\"\nmyorigin = \n").unwrap_err();
        assert!(matches!(&error, ConfigError::Syntax { at, .. } if at.line == Some(2)), "{error:?}");
    }
}
