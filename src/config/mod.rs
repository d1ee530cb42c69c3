//! Configuration: a TOML file whose keys are Postfix main.cf parameter names, with Postfix's
//! meanings, defaults and `$name` expansion.
//!
//! Loading reads the file, expands every parameter (lazily, so the order of lines does not
//! matter), parses each into its typed value and runs its sanity check; after that the
//! accessors (`config.myhostname()`, `config.message_size_limit()`...) only read.
//!
//! * `params`: the table (the one place a parameter is defined) and the generated accessors
//! * `expand`: `$name` syntax; `resolve`: lazy evaluation and loop detection
//! * `value`: kinds of value and their text forms; `checks`: sanity checks
//! * `read`: TOML to settings; `derived`, `hostname`, `networks`: computed defaults

mod checks;
mod derived;
mod error;
pub(crate) mod expand;
mod hostname;
mod networks;
mod params;
mod read;
mod resolve;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use error::{ConfigError, Location, Suggestion};
pub use params::{PARAMETERS, Param, ParamSpec};
pub use value::{Kind, Value};

use resolve::{Resolver, Written};

/// Where the configuration is read from when neither -c nor $TIDEMAIL_CONFIG says otherwise.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/tidemail/tidemail.toml";

/// The environment variable naming the configuration file (like Postfix's MAIL_CONFIG).
pub const CONFIG_ENV: &str = "TIDEMAIL_CONFIG";

/// -c FILE wins, then $TIDEMAIL_CONFIG, then DEFAULT_CONFIG_PATH.
pub fn config_path(cli: Option<&Path>) -> PathBuf {
    if let Some(path) = cli {
        return path.to_path_buf();
    }
    match std::env::var_os(CONFIG_ENV) {
        Some(path) if !path.is_empty() => PathBuf::from(path),
        _ => PathBuf::from(DEFAULT_CONFIG_PATH),
    }
}

/// The effective configuration: every parameter resolved and typed.
#[derive(Debug, Clone)]
pub struct Config {
    file: Option<PathBuf>,
    /// One per parameter, indexed like [`PARAMETERS`].
    settings: Vec<Setting>,
    /// The `[service.NAME]` sections, in file order (empty: the default smtp service).
    services: Vec<Service>,
}

/// A network service (a master.cf inet line): where it listens, and its own configuration
/// (the file's, with the section's overrides applied and expanded).
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    /// The addresses to listen on, as written (`all`, `loopback-only`, IP addresses);
    /// None: every inet_interfaces address.
    pub addresses: Option<Vec<String>>,
    pub port: u16,
    pub config: Arc<Config>,
    /// Written in the file (false for the default smtp service).
    pub explicit: bool,
}

#[derive(Debug, Clone)]
struct Setting {
    /// As written, or the default; `$name` unexpanded.
    raw: String,
    /// Set in the file.
    explicit: bool,
    /// After expansion, rendered for display.
    rendered: String,
    value: Value,
}

/// One parameter as `tidemail config` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry<'a> {
    pub name: &'static str,
    /// As written or the default, before expansion, rendered Postfix-style (lists joined
    /// with ", ").
    pub raw: &'a str,
    /// Expanded and rendered.
    pub value: String,
    /// Set in the file.
    pub explicit: bool,
    /// The table's default text (for a computed default, a description of it).
    pub default: &'static str,
}

impl Config {
    /// Reads, parses, expands and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::read(path, e))?;
        Config::from_toml_str(&text, path)
    }

    /// As [`Config::load`], with the text given; `path_for_messages` is what errors name and
    /// what config_directory derives from.
    pub fn from_toml_str(text: &str, path_for_messages: &Path) -> Result<Config, ConfigError> {
        let (written, sections) = read::read_file(text, path_for_messages)?;
        let mut config = Config::resolve(path_for_messages, Some(path_for_messages), &written)?;
        for section in sections {
            // The overrides replace the file's settings and are expanded with them, so a
            // `$name` in either sees the service's values (as Postfix's -o does).
            let mut own = written.clone();
            for (index, setting) in section.overrides {
                own[index] = Some(setting);
            }
            let service_config = Config::resolve(path_for_messages, Some(path_for_messages), &own)?;
            config.services.push(Service {
                name: section.name,
                addresses: section.addresses,
                port: section.port.unwrap_or(25),
                config: Arc::new(service_config),
                explicit: true,
            });
        }
        Ok(config)
    }

    /// The network services: the `[service.NAME]` sections, or, when there is none, smtp on
    /// port 25 on every inet_interfaces address.
    pub fn services(&self) -> Vec<Service> {
        if !self.services.is_empty() {
            return self.services.clone();
        }
        vec![Service {
            name: "smtp".into(),
            addresses: None,
            port: 25,
            config: Arc::new(self.clone()),
            explicit: false,
        }]
    }

    /// The built-in defaults only, as if the file were empty (and there were no file).
    pub fn defaults() -> Config {
        let no_settings: Vec<Option<Written>> = vec![None; PARAMETERS.len()];
        Config::resolve(Path::new("(built-in defaults)"), None, &no_settings)
            // The table's defaults are covered by tests, and computed ones are sanitised.
            .unwrap_or_else(|error| panic!("built-in configuration defaults are invalid: {error}"))
    }

    /// The file this configuration came from (None for [`Config::defaults`]).
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Every parameter in name order, for `tidemail config`.
    pub fn entries(&self) -> impl Iterator<Item = ConfigEntry<'_>> {
        let mut order: Vec<usize> = (0..PARAMETERS.len()).collect();
        order.sort_by_key(|&index| PARAMETERS[index].name);
        order.into_iter().map(|index| self.entry_at(index))
    }

    /// One parameter by name, or None if there is no such parameter.
    pub fn entry(&self, name: &str) -> Option<ConfigEntry<'_>> {
        params::index_of(name).map(|index| self.entry_at(index))
    }

    /// Whether `name` is a parameter tidemail knows.
    pub fn is_parameter(name: &str) -> bool {
        params::index_of(name).is_some()
    }

    /// The closest parameter name to a misspelt one, for "did you mean" messages.
    pub fn suggest(name: &str) -> Option<&'static str> {
        params::suggest(name)
    }

    /// A parameter's typed value (the generated accessors are shorthands for this).
    pub fn value(&self, param: Param) -> &Value {
        &self.settings[param as usize].value
    }

    fn entry_at(&self, index: usize) -> ConfigEntry<'_> {
        let setting = &self.settings[index];
        let spec = &PARAMETERS[index];
        ConfigEntry {
            name: spec.name,
            raw: &setting.raw,
            value: setting.rendered.clone(),
            explicit: setting.explicit,
            default: spec.default,
        }
    }

    /// Expands, parses and checks every parameter once. Faults in the file's own lines are
    /// reported first, in line order.
    fn resolve(messages_path: &Path, file: Option<&Path>, written: &[Option<Written>]) -> Result<Config, ConfigError> {
        let mut resolver = Resolver::new(messages_path, file, written);
        let mut order: Vec<usize> = (0..PARAMETERS.len()).collect();
        order.sort_by_key(|&index| written[index].as_ref().map_or(usize::MAX, |w| w.line));

        let mut settings: Vec<Option<Setting>> = vec![None; PARAMETERS.len()];
        for index in order {
            let spec = &PARAMETERS[index];
            let expanded = resolver.expand_index(index)?;
            let raw = resolver.raw(index)?;
            let bad_value = |expected: String| {
                let shown = match &written[index] {
                    Some(w) => w.shown.clone(),
                    None => format!("{raw:?}"),
                };
                let value = if raw == expanded { shown } else { format!("{shown} (expands to {expanded:?})") };
                ConfigError::BadValue { at: resolver.location(index), name: spec.name, value, expected }
            };
            let value = spec.kind.parse(&expanded).ok_or_else(|| bad_value(spec.kind.expected(spec.default)))?;
            if let Some(check) = spec.check {
                check(&value).map_err(bad_value)?;
            }
            settings[index] =
                Some(Setting { rendered: value.render(&expanded), raw, explicit: written[index].is_some(), value });
        }
        Ok(Config {
            file: file.map(Path::to_path_buf),
            settings: settings.into_iter().map(|s| s.expect("every parameter resolved")).collect(),
            services: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests;
