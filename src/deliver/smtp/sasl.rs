//! SASL AUTH for the SMTP client: the credentials for a next hop (`smtp_sasl_password_maps`),
//! and which mechanism may carry them (PLAIN, else LOGIN) under the security options.
//!
//! `noplaintext` here means "no password over a session without TLS": PLAIN and LOGIN are
//! the only mechanisms tidemail has, and inside TLS the password is not in the clear. (Cyrus
//! SASL, under Postfix, also refuses PLAIN inside TLS unless `smtp_sasl_tls_security_options`
//! drops noplaintext; with tidemail the default setup just works over TLS.) `noactive`,
//! `nodictionary` and `mutual_auth` exclude PLAIN and LOGIN, which offer none of that.

use std::fmt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::config::Config;
use crate::maps::{self, MapList};

/// A user name and password for one server. The password never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    username: String,
    password: String,
}

impl Credentials {
    pub fn new(username: &str, password: &str) -> Credentials {
        Credentials { username: username.to_string(), password: password.to_string() }
    }

    /// A table value, `username:password` (Postfix's format; the password may hold colons).
    pub fn parse(value: &str) -> Credentials {
        let (username, password) = value.trim().split_once(':').unwrap_or((value.trim(), ""));
        Credentials::new(username, password)
    }

    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials").field("username", &self.username).field("password", &"(hidden)").finish()
    }
}

/// The credentials for a next hop, or None when `smtp_sasl_auth_enable` is off or no table
/// has any. Keys tried: `nexthop` as written in relayhost (`[mail.isp.example]:587`), then
/// `host` alone. A table whose file group or others may read or write is refused.
pub fn credentials_for(config: &Config, nexthop: &str, host: &str) -> Result<Option<Credentials>, String> {
    let specs = config.smtp_sasl_password_maps();
    if !config.smtp_sasl_auth_enable() || specs.is_empty() {
        return Ok(None);
    }
    for spec in specs {
        check_private(spec)?;
    }
    let tables = MapList::open(specs).map_err(|e| format!("smtp_sasl_password_maps: {e}"))?;
    let mut keys = vec![nexthop.trim()];
    if host != nexthop.trim() {
        keys.push(host);
    }
    for key in keys {
        if let Some(value) = tables.lookup(key).map_err(|e| format!("smtp_sasl_password_maps: {e}"))? {
            return Ok(Some(Credentials::parse(&value)));
        }
    }
    Ok(None)
}

/// Opens the password tables now. The daemon calls this while still root: like Postfix, it
/// reads a root-owned 0600 sasl_passwd before becoming mail_owner, and keeps the opened table
/// (tables are shared within the process). A changed table list needs a restart.
pub fn open_tables(config: &Config) -> Result<(), String> {
    let specs = config.smtp_sasl_password_maps();
    if !config.smtp_sasl_auth_enable() || specs.is_empty() {
        return Ok(());
    }
    for spec in specs {
        check_private(spec)?;
    }
    MapList::open(specs).map(|_| ()).map_err(|e| format!("smtp_sasl_password_maps: {e}"))
}

/// Refuses a password table (its source, or the compiled `.cdb`/`.db`) open to group or
/// others: sasl_passwd is kept 0600.
fn check_private(spec: &str) -> Result<(), String> {
    let (_, name) = maps::split_spec(spec).map_err(|e| format!("smtp_sasl_password_maps: {e}"))?;
    if !name.starts_with('/') {
        return Ok(());
    }
    for file in [name.to_string(), format!("{name}.cdb"), format!("{name}.db")] {
        if let Ok(meta) = std::fs::metadata(Path::new(&file))
            && meta.mode() & 0o077 != 0
        {
            return Err(format!(
                "smtp_sasl_password_maps: {file} is accessible by group or others (mode {:04o}); \
                 refusing to use its passwords: run \"chmod 600 {file}\"",
                meta.mode() & 0o7777
            ));
        }
    }
    Ok(())
}

/// The mechanisms tidemail can use, in order of preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
        }
    }
}

/// Why no mechanism may be used; the session turns it into a message naming the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Neither PLAIN nor LOGIN is offered (after the mechanism filter).
    NoMechanism,
    /// The session has no TLS and the options contain noplaintext.
    Plaintext,
    /// An option (noactive, nodictionary, mutual_auth) that PLAIN and LOGIN cannot satisfy.
    Option { parameter: &'static str, option: String },
}

/// The smtp_sasl_* settings for choosing a mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslPolicy {
    /// smtp_sasl_security_options: without TLS.
    pub security_options: Vec<String>,
    /// smtp_sasl_tls_security_options: over TLS.
    pub tls_security_options: Vec<String>,
    /// smtp_sasl_mechanism_filter: names, `!name` to exclude, `static:all` for the rest ("" = any).
    pub mechanism_filter: Vec<String>,
}

impl Default for SaslPolicy {
    /// Postfix's defaults: noplaintext, noanonymous, no filter.
    fn default() -> SaslPolicy {
        let options = vec!["noplaintext".to_string(), "noanonymous".to_string()];
        SaslPolicy { security_options: options.clone(), tls_security_options: options, mechanism_filter: Vec::new() }
    }
}

impl SaslPolicy {
    pub fn from_config(config: &Config) -> SaslPolicy {
        SaslPolicy {
            security_options: config.smtp_sasl_security_options().to_vec(),
            tls_security_options: config.smtp_sasl_tls_security_options().to_vec(),
            mechanism_filter: config.smtp_sasl_mechanism_filter().to_vec(),
        }
    }

    /// The mechanism to use with a server offering `offered`, or why none may be used.
    pub fn choose(&self, offered: &[String], encrypted: bool) -> Result<Mechanism, Refusal> {
        let (parameter, options) = if encrypted {
            ("smtp_sasl_tls_security_options", &self.tls_security_options)
        } else {
            ("smtp_sasl_security_options", &self.security_options)
        };
        let mechanism = [Mechanism::Plain, Mechanism::Login]
            .into_iter()
            .find(|m| offered.iter().any(|o| o.eq_ignore_ascii_case(m.name())) && self.filter_allows(m.name()))
            .ok_or(Refusal::NoMechanism)?;
        for option in options {
            match option.to_ascii_lowercase().as_str() {
                "noplaintext" if !encrypted => return Err(Refusal::Plaintext),
                "noactive" | "nodictionary" | "mutual_auth" => {
                    return Err(Refusal::Option { parameter, option: option.clone() });
                }
                _ => {}
            }
        }
        Ok(mechanism)
    }

    /// The first filter entry that names the mechanism decides; none matching excludes it.
    fn filter_allows(&self, name: &str) -> bool {
        if self.mechanism_filter.is_empty() {
            return true;
        }
        for entry in &self.mechanism_filter {
            let (negated, pattern) = match entry.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, entry.as_str()),
            };
            if pattern.eq_ignore_ascii_case(name) || pattern.starts_with("static:") {
                return !negated;
            }
        }
        false
    }
}

/// The AUTH PLAIN initial response: base64 of NUL, user, NUL, password (RFC 4616).
pub(crate) fn plain_response(credentials: &Credentials) -> String {
    BASE64.encode(format!("\0{}\0{}", credentials.username, credentials.password))
}

/// The AUTH LOGIN answers: the user name, then the password, each base64.
pub(crate) fn login_responses(credentials: &Credentials) -> [String; 2] {
    [BASE64.encode(&credentials.username), BASE64.encode(&credentials.password)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn plain_and_login_encoding() {
        let credentials = Credentials::new("user", "pass");
        assert_eq!(plain_response(&credentials), "AHVzZXIAcGFzcw==");
        assert_eq!(login_responses(&credentials), ["dXNlcg==", "cGFzcw=="]);
    }

    #[test]
    fn table_values_and_debug() {
        let credentials = Credentials::parse(" alice@isp.example:se:cret ");
        assert_eq!(credentials, Credentials::new("alice@isp.example", "se:cret"));
        assert_eq!(Credentials::parse("bob"), Credentials::new("bob", ""));
        let shown = format!("{credentials:?}");
        assert!(shown.contains("alice@isp.example") && !shown.contains("se:cret"), "{shown}");
    }

    #[test]
    fn mechanism_choice_and_options() {
        let policy = SaslPolicy::default();
        let both = offered(&["LOGIN", "plain", "CRAM-MD5"]);
        assert_eq!(policy.choose(&both, true), Ok(Mechanism::Plain));
        assert_eq!(policy.choose(&offered(&["LOGIN"]), true), Ok(Mechanism::Login));
        assert_eq!(policy.choose(&offered(&["CRAM-MD5"]), true), Err(Refusal::NoMechanism));
        // The default noplaintext: no password without TLS.
        assert_eq!(policy.choose(&both, false), Err(Refusal::Plaintext));
        let opted_in = SaslPolicy { security_options: offered(&["noanonymous"]), ..SaslPolicy::default() };
        assert_eq!(opted_in.choose(&both, false), Ok(Mechanism::Plain));
        let strict = SaslPolicy { tls_security_options: offered(&["nodictionary"]), ..SaslPolicy::default() };
        assert_eq!(
            strict.choose(&both, true),
            Err(Refusal::Option { parameter: "smtp_sasl_tls_security_options", option: "nodictionary".into() })
        );
    }

    #[test]
    fn mechanism_filter() {
        let filtered = |filter: &[&str]| SaslPolicy { mechanism_filter: offered(filter), ..SaslPolicy::default() };
        let both = offered(&["PLAIN", "LOGIN"]);
        assert_eq!(filtered(&["login"]).choose(&both, true), Ok(Mechanism::Login));
        assert_eq!(filtered(&["!plain", "static:all"]).choose(&both, true), Ok(Mechanism::Login));
        assert_eq!(filtered(&["cram-md5"]).choose(&both, true), Err(Refusal::NoMechanism));
    }

    #[test]
    fn password_tables() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sasl_passwd");
        std::fs::write(&file, "[smtp.isp.example]:587 alice:secret\nother.example bob:pw\n").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let toml = format!("smtp_sasl_auth_enable = true\nsmtp_sasl_password_maps = \"texthash:{}\"\n", file.display());
        let config = Config::from_toml_str(&toml, Path::new("/etc/tidemail/main.toml")).unwrap();
        let found = credentials_for(&config, "[smtp.isp.example]:587", "smtp.isp.example").unwrap();
        assert_eq!(found, Some(Credentials::new("alice", "secret")));
        let found = credentials_for(&config, "[other.example]", "other.example").unwrap();
        assert_eq!(found, Some(Credentials::new("bob", "pw")));
        assert_eq!(credentials_for(&config, "[x.example]", "x.example").unwrap(), None);

        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let error = credentials_for(&config, "[smtp.isp.example]:587", "smtp.isp.example").unwrap_err();
        assert!(error.contains(&file.display().to_string()) && error.contains("0640"), "{error}");

        let disabled = Config::from_toml_str(
            &toml.replace("smtp_sasl_auth_enable = true", "smtp_sasl_auth_enable = false"),
            Path::new("/etc/tidemail/main.toml"),
        )
        .unwrap();
        assert_eq!(credentials_for(&disabled, "[smtp.isp.example]:587", "smtp.isp.example").unwrap(), None);
    }
}
