//! Cheap sanity checks named in the parameter table (`check = ...`), the ones Postfix makes
//! at startup. Each returns the expected form when the value is unacceptable, which becomes
//! the "(expected ...)" part of the error.

use super::hostname::valid_hostname;
use super::value::Value;

/// Signature of a table check.
pub type Check = fn(&Value) -> Result<(), String>;

/// A hostname such as mail.example.com (Postfix's valid_hostname()).
pub fn hostname(value: &Value) -> Result<(), String> {
    match value {
        Value::Str(name) if valid_hostname(name) => Ok(()),
        _ => Err("a hostname like mail.example.com".to_string()),
    }
}

/// An absolute path: daemons change directory, so relative paths would drift.
pub fn absolute_path(value: &Value) -> Result<(), String> {
    match value {
        Value::Str(path) if path.starts_with('/') => Ok(()),
        _ => Err("an absolute path, starting with \"/\"".to_string()),
    }
}

/// Empty (feature off) or an absolute path.
pub fn absolute_path_or_empty(value: &Value) -> Result<(), String> {
    match value {
        Value::Str(path) if path.is_empty() || path.starts_with('/') => Ok(()),
        _ => Err("an absolute path, or nothing".to_string()),
    }
}

/// Not empty (a user name, a transport name...).
pub fn non_empty(value: &Value) -> Result<(), String> {
    match value {
        Value::Str(text) if !text.trim().is_empty() => Ok(()),
        Value::List(items) if !items.is_empty() => Ok(()),
        _ => Err("a value; it may not be empty".to_string()),
    }
}

/// A number (or time in seconds) of at least `MIN`.
pub fn at_least<const MIN: i64>(value: &Value) -> Result<(), String> {
    let number = match value {
        Value::Int(n) => i128::from(*n),
        Value::Size(n) => i128::from(*n),
        Value::Time(t) => i128::from(t.as_secs()),
        _ => return Ok(()),
    };
    if number >= i128::from(MIN) {
        return Ok(());
    }
    Err(match value {
        Value::Time(_) if MIN == 1 => "a time of at least 1s".to_string(),
        Value::Time(_) => format!("a time of at least {MIN}s"),
        _ => format!("a number of at least {MIN}"),
    })
}

/// Each list item (or the whole string) is one of `allowed`.
fn one_of(value: &Value, allowed: &[&str]) -> Result<(), String> {
    let ok = match value {
        Value::Str(text) => allowed.contains(&text.as_str()),
        Value::List(items) => items.iter().all(|item| allowed.contains(&item.as_str())),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let alternatives = allowed.join(", ");
    Err(match value {
        Value::List(_) => format!("a list of: {alternatives}"),
        _ => format!("one of: {alternatives}"),
    })
}

pub fn mynetworks_style(value: &Value) -> Result<(), String> {
    one_of(value, &["host", "subnet", "class"])
}

pub fn inet_protocols(value: &Value) -> Result<(), String> {
    non_empty(value)?;
    one_of(value, &["all", "ipv4", "ipv6"])
}

pub fn notify_classes(value: &Value) -> Result<(), String> {
    one_of(value, &["bounce", "2bounce", "data", "delay", "policy", "protocol", "resource", "software"])
}

pub fn smtp_tls_security_level(value: &Value) -> Result<(), String> {
    one_of(value, &["", "none", "may", "encrypt", "verify", "secure"])
}

pub fn sasl_security_options(value: &Value) -> Result<(), String> {
    one_of(value, &["noplaintext", "noactive", "nodictionary", "noanonymous", "mutual_auth"])
}

pub fn dns_failure_action(value: &Value) -> Result<(), String> {
    one_of(value, &["defer", "skip"])
}

pub fn smtpd_tls_security_level(value: &Value) -> Result<(), String> {
    one_of(value, &["", "none", "may", "encrypt"])
}

pub fn smtpd_sasl_type(value: &Value) -> Result<(), String> {
    one_of(value, &["dovecot", "passwd-file"])
}

pub fn mailbox_delivery_lock(value: &Value) -> Result<(), String> {
    one_of(value, &["fcntl", "dotlock", "flock"])
}

pub fn duplicate_suspect_action(value: &Value) -> Result<(), String> {
    one_of(value, &["retry", "hold"])
}

pub fn masquerade_classes(value: &Value) -> Result<(), String> {
    one_of(value, &["envelope_sender", "envelope_recipient", "header_sender", "header_recipient"])
}

/// Who local(8) runs commands and file deliveries as: never root (Postfix refuses too).
pub fn unprivileged_user(value: &Value) -> Result<(), String> {
    non_empty(value)?;
    match value {
        Value::Str(user) if user == "root" || user == "0" => Err("an unprivileged user, not root".to_string()),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn s(text: &str) -> Value {
        Value::Str(text.to_string())
    }

    fn list(items: &[&str]) -> Value {
        Value::List(items.iter().map(|i| i.to_string()).collect())
    }

    #[test]
    fn paths() {
        assert!(absolute_path(&s("/var/spool/tidemail")).is_ok());
        assert!(absolute_path(&s("spool")).is_err());
        assert!(absolute_path(&s("")).is_err());
        assert!(absolute_path_or_empty(&s("")).is_ok());
        assert!(absolute_path_or_empty(&s("log")).is_err());
    }

    #[test]
    fn minimums() {
        assert!(at_least::<1>(&Value::Int(1)).is_ok());
        assert_eq!(at_least::<1>(&Value::Int(0)), Err("a number of at least 1".into()));
        assert!(at_least::<512>(&Value::Size(511)).is_err());
        assert!(at_least::<1>(&Value::Time(Duration::ZERO)).is_err());
        assert!(at_least::<0>(&Value::Time(Duration::ZERO)).is_ok());
    }

    #[test]
    fn keyword_lists() {
        assert!(notify_classes(&list(&["resource", "software"])).is_ok());
        assert!(notify_classes(&list(&[])).is_ok());
        assert!(notify_classes(&list(&["resource", "sofware"])).is_err());
        assert!(mynetworks_style(&s("subnet")).is_ok());
        assert_eq!(mynetworks_style(&s("hosts")), Err("one of: host, subnet, class".into()));
        assert!(inet_protocols(&list(&["ipv4", "ipv6"])).is_ok());
        assert!(inet_protocols(&list(&[])).is_err());
    }

    #[test]
    fn default_privs_is_not_root() {
        assert!(unprivileged_user(&s("nobody")).is_ok());
        assert!(unprivileged_user(&s("root")).is_err());
        assert!(unprivileged_user(&s("")).is_err());
    }
}
