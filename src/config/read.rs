//! From TOML text to the settings it makes, one per known parameter, with their lines.
//! Only the shape is checked here (known key, acceptable TOML type); values are read after
//! expansion.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::error::{ConfigError, Location, Suggestion};
use super::params::{PARAMETERS, index_of, suggest};
use super::resolve::Written;
use super::value::Kind;

/// The top-level table of service sections: `[service.smtp]`, `[service.submission]`...
pub const SERVICE_SECTION: &str = "service";

/// One `[service.NAME]` table as written (master.cf's line for an inet service): where it
/// listens, and the parameters it overrides (Postfix's `-o name=value`).
#[derive(Debug, Clone)]
pub struct ServiceWritten {
    pub name: String,
    /// `address`: the addresses to listen on (None: every inet_interfaces address).
    pub addresses: Option<Vec<String>>,
    /// `port` (None: the service name's well-known port, if it has one).
    pub port: Option<u16>,
    /// Parameter overrides, indexed like [`PARAMETERS`].
    pub overrides: Vec<(usize, Written)>,
}

/// The settings of `text`, indexed like [`PARAMETERS`] (None = not set).
#[cfg(test)]
pub fn read_settings(text: &str, path: &Path) -> Result<Vec<Option<Written>>, ConfigError> {
    read_file(text, path).map(|(settings, _)| settings)
}

/// The settings of `text` and its service sections.
pub fn read_file(text: &str, path: &Path) -> Result<(Vec<Option<Written>>, Vec<ServiceWritten>), ConfigError> {
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
    let mut services = Vec::new();
    for (key, value) in entries {
        let name = key.get_ref().as_ref();
        let at = Location::new(path, Some(line_of(key.span().start)));
        if name == SERVICE_SECTION {
            services = read_services(value.get_ref(), &at, path, &line_of)?;
            continue;
        }
        let Some(index) = index_of(name) else {
            // The only section is [service.NAME]; any other table is as unknown as a typo.
            if is_table(value.get_ref()) && suggest(name).is_none() {
                return Err(ConfigError::UnknownSection { at, name: name.to_string() });
            }
            return Err(ConfigError::UnknownParameter {
                at,
                name: name.to_string(),
                suggestion: Suggestion(suggest(name)),
            });
        };
        settings[index] = Some(written(index, value.get_ref(), at)?);
    }
    Ok((settings, services))
}

/// A parameter's setting: its TOML value as Postfix text, if the type suits the parameter.
fn written(index: usize, value: &DeValue<'_>, at: Location) -> Result<Written, ConfigError> {
    let spec = &PARAMETERS[index];
    let shown = render(value);
    let raw = postfix_text(spec.kind, value).ok_or_else(|| ConfigError::BadValue {
        at: at.clone(),
        name: spec.name,
        value: shown.clone(),
        expected: spec.kind.expected(spec.default),
    })?;
    Ok(Written { raw, shown, line: at.line.unwrap_or(1) })
}

/// The `[service.NAME]` tables: `address`, `port`, and parameter overrides, each checked like
/// a top-level setting (an unknown key is an error naming it).
fn read_services(
    value: &DeValue<'_>,
    at: &Location,
    path: &Path,
    line_of: &dyn Fn(usize) -> usize,
) -> Result<Vec<ServiceWritten>, ConfigError> {
    let bad = |at: &Location, name: &'static str, value: String, expected: &str| ConfigError::BadValue {
        at: at.clone(),
        name,
        value,
        expected: expected.to_string(),
    };
    let DeValue::Table(table) = value else {
        return Err(bad(at, SERVICE_SECTION, render(value), "[service.NAME] tables"));
    };
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut services = Vec::new();
    for (key, value) in entries {
        let name = key.get_ref().to_string();
        let line = line_of(key.span().start);
        let section_at = Location::new(path, Some(line));
        let DeValue::Table(items) = value.get_ref() else {
            return Err(bad(&section_at, SERVICE_SECTION, render(value.get_ref()), "[service.NAME] tables"));
        };
        let mut service = ServiceWritten { name, addresses: None, port: None, overrides: Vec::new() };
        let mut items: Vec<_> = items.iter().collect();
        items.sort_by_key(|(key, _)| key.span().start);
        for (item, value) in items {
            let key = item.get_ref().as_ref();
            let at = Location::new(path, Some(line_of(item.span().start)));
            let value = value.get_ref();
            match key {
                "address" => {
                    let list = match value {
                        DeValue::String(text) => Some(vec![text.to_string()]),
                        DeValue::Array(items) => items
                            .iter()
                            .map(|item| item.get_ref().as_str().map(str::to_string))
                            .collect::<Option<Vec<_>>>(),
                        _ => None,
                    };
                    let list = list.filter(|l| !l.is_empty() && l.iter().all(|a| valid_listen_address(a)));
                    service.addresses =
                        Some(list.ok_or_else(|| bad(&at, "address", render(value), "\"all\" or IP addresses"))?);
                }
                "port" => {
                    let port = match value {
                        DeValue::Integer(n) => n.as_str().replace('_', "").parse::<u16>().ok(),
                        DeValue::String(text) => text.parse::<u16>().ok(),
                        _ => None,
                    };
                    service.port = Some(
                        port.filter(|&p| p > 0)
                            .ok_or_else(|| bad(&at, "port", render(value), "a port number 1-65535"))?,
                    );
                }
                _ => {
                    let Some(index) = index_of(key) else {
                        return Err(ConfigError::UnknownParameter {
                            at,
                            name: key.to_string(),
                            suggestion: Suggestion(suggest(key)),
                        });
                    };
                    service.overrides.push((index, written(index, value, at)?));
                }
            }
        }
        if service.port.is_none() {
            service.port = well_known_port(&service.name);
        }
        if service.port.is_none() {
            return Err(bad(&section_at, "port", "(none)".into(), "a port for a service not named smtp or submission"));
        }
        services.push(service);
    }
    Ok(services)
}

/// The port a service named like a master.cf service listens on by default.
fn well_known_port(name: &str) -> Option<u16> {
    match name {
        "smtp" => Some(25),
        "submission" => Some(587),
        _ => None,
    }
}

/// `all`, `loopback-only`, or an IP address (brackets allowed around IPv6).
fn valid_listen_address(text: &str) -> bool {
    let text = text.trim();
    matches!(text.to_ascii_lowercase().as_str(), "all" | "loopback-only")
        || text.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>().is_ok()
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
    fn service_sections() {
        let text = "relayhost = \"\"\n[service.smtp]\nport = 2525\naddress = \"127.0.0.1\"\n\
                    [service.submission]\nsmtpd_tls_security_level = \"encrypt\"\nsmtpd_sasl_auth_enable = true\n";
        let (_, services) = read_file(text, Path::new("/etc/tidemail/tidemail.toml")).unwrap();
        assert_eq!(services.len(), 2);
        assert_eq!((services[0].name.as_str(), services[0].port), ("smtp", Some(2525)));
        assert_eq!(services[0].addresses, Some(vec!["127.0.0.1".to_string()]));
        assert_eq!((services[1].name.as_str(), services[1].port), ("submission", Some(587)));
        let names: Vec<&str> = services[1].overrides.iter().map(|(i, _)| PARAMETERS[*i].name).collect();
        assert_eq!(names, ["smtpd_tls_security_level", "smtpd_sasl_auth_enable"]);

        let error = read("[service.smtp]\nsmtpd_tls_securty_level = \"may\"\n").unwrap_err().to_string();
        assert_eq!(
            error,
            "/etc/tidemail/tidemail.toml, line 2: unknown parameter \"smtpd_tls_securty_level\" \
             (did you mean \"smtpd_tls_security_level\"?)"
        );
        let error = read("[service.smtp]\nport = 70000\n").unwrap_err().to_string();
        assert!(error.contains("line 2: bad value for port: 70000"), "{error}");
        let error = read("[service.relay]\naddress = \"all\"\n").unwrap_err().to_string();
        assert!(error.contains("bad value for port"), "{error}");
        let error = read("[service.smtp]\naddress = \"mail.example\"\n").unwrap_err().to_string();
        assert!(error.contains("bad value for address"), "{error}");
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
