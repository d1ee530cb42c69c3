//! Defaults that are computed rather than written: from the system (hostname, interfaces,
//! where the file is) and from other parameters, as Postfix's mail_params.c does.
//! Each returns the raw value text (it is then expanded like any other value).

use super::error::ConfigError;
use super::hostname::{self, LOCAL_DOMAIN};
use super::networks;
use super::params::Param;
use super::resolve::Resolver;
use super::value::split_list;

/// Signature of a derived default.
pub type Derive = fn(&mut Resolver<'_>) -> Result<String, ConfigError>;

/// Where the configuration lives when no file was loaded.
pub const DEFAULT_CONFIG_DIRECTORY: &str = "/etc/tidemail";

/// The system's name, qualified if need be.
pub fn myhostname(resolver: &mut Resolver<'_>) -> Result<String, ConfigError> {
    let mydomain_set = resolver.is_explicit(Param::mydomain);
    Ok(qualified_hostname(hostname::system_hostname(), mydomain_set))
}

/// A dotted system name as is; a short one gets ".$mydomain" if the file sets mydomain, else
/// ".localdomain" (Postfix check_myhostname()).
pub fn qualified_hostname(system_name: &str, mydomain_set: bool) -> String {
    if system_name.contains('.') {
        literal(system_name)
    } else if mydomain_set {
        format!("{}.$mydomain", literal(system_name))
    } else {
        format!("{}.{LOCAL_DOMAIN}", literal(system_name))
    }
}

/// $myhostname minus its first label (Postfix check_mydomainname()).
pub fn mydomain(resolver: &mut Resolver<'_>) -> Result<String, ConfigError> {
    let host = resolver.expanded(Param::myhostname)?;
    Ok(literal(hostname::domain_of(&host)))
}

/// The local networks in the mynetworks_style, for the IP versions in inet_protocols.
pub fn mynetworks(resolver: &mut Resolver<'_>) -> Result<String, ConfigError> {
    let style = resolver.expanded(Param::mynetworks_style)?;
    let protocols = split_list(&resolver.expanded(Param::inet_protocols)?);
    let all = protocols.iter().any(|p| p == "all");
    let ipv4 = all || protocols.iter().any(|p| p == "ipv4");
    let ipv6 = all || protocols.iter().any(|p| p == "ipv6");
    // An unknown style is reported against mynetworks_style by its own check; meanwhile the
    // safest reading is the narrowest.
    let style = if matches!(style.trim(), "subnet" | "class") { style.trim() } else { "host" };
    Ok(networks::local_networks(style, ipv4, ipv6).join(", "))
}

/// The directory holding the configuration file, or /etc/tidemail without one.
pub fn config_directory(resolver: &mut Resolver<'_>) -> Result<String, ConfigError> {
    let directory = resolver
        .file()
        .map(|file| std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf()))
        .and_then(|file| file.parent().map(|dir| dir.to_string_lossy().into_owned()))
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| DEFAULT_CONFIG_DIRECTORY.to_string());
    Ok(literal(&directory))
}

/// Text to be taken as is by expansion: a '$' in a computed value is not a reference.
fn literal(text: &str) -> String {
    text.replace('$', "$$")
}
