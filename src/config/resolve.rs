//! Lazy, order-independent evaluation of the parameters: a value is expanded when first
//! needed (by another value or by the final pass), memoised, and a parameter met again while
//! it is still being expanded is a loop.

use std::path::Path;

use super::error::{ConfigError, Location, Suggestion};
use super::expand::{ExpandError, MAX_NESTING, expand};

/// Parameters Postfix never `$name`-expands: mailbox_command is shell syntax, its `$EXTENSION`
/// and `$HOME` are the shell's to expand from the environment.
pub const VERBATIM: &[&str] = &["mailbox_command"];

/// Parameters expanded at delivery time, per recipient (Postfix's local(8) attributes), and
/// the names they may use besides other parameters.
pub const DELIVERY_TEMPLATES: &[&str] = &["forward_path", "luser_relay"];
pub const DELIVERY_NAMES: &[&str] =
    &["user", "home", "shell", "recipient", "extension", "domain", "local", "mailbox", "recipient_delimiter"];
use super::params::{PARAMETERS, Param, index_of, suggest};

/// A setting as the file wrote it.
#[derive(Debug, Clone)]
pub struct Written {
    /// The value as Postfix text (`$name` unexpanded, arrays joined with ", ").
    pub raw: String,
    /// The value as written in TOML, for error messages.
    pub shown: String,
    pub line: usize,
}

pub struct Resolver<'a> {
    /// The path errors name.
    messages_path: &'a Path,
    /// The loaded file, if any (config_directory derives from it).
    file: Option<&'a Path>,
    written: &'a [Option<Written>],
    raw: Vec<Option<String>>,
    expanded: Vec<Option<String>>,
    /// Parameters being expanded right now, outermost first.
    active: Vec<usize>,
}

impl<'a> Resolver<'a> {
    pub fn new(messages_path: &'a Path, file: Option<&'a Path>, written: &'a [Option<Written>]) -> Resolver<'a> {
        Resolver {
            messages_path,
            file,
            written,
            raw: vec![None; PARAMETERS.len()],
            expanded: vec![None; PARAMETERS.len()],
            active: Vec::new(),
        }
    }

    pub fn file(&self) -> Option<&'a Path> {
        self.file
    }

    pub fn is_explicit(&self, param: Param) -> bool {
        self.written[param as usize].is_some()
    }

    /// Where errors about a parameter point: its line if the file sets it.
    pub fn location(&self, index: usize) -> Location {
        let line = self.written[index].as_ref().map(|w| w.line);
        Location::new(self.messages_path, line)
    }

    /// The value as written in the file, or its default (computed if need be).
    pub fn raw(&mut self, index: usize) -> Result<String, ConfigError> {
        if let Some(raw) = &self.raw[index] {
            return Ok(raw.clone());
        }
        let spec = &PARAMETERS[index];
        let raw = match (&self.written[index], spec.derive) {
            (Some(written), _) => written.raw.clone(),
            (None, Some(derive)) => derive(self)?,
            (None, None) => spec.default.to_string(),
        };
        self.raw[index] = Some(raw.clone());
        Ok(raw)
    }

    pub fn expanded(&mut self, param: Param) -> Result<String, ConfigError> {
        self.expand_index(param as usize)
    }

    /// The value with every `$name` replaced, each referenced parameter expanded in turn.
    pub fn expand_index(&mut self, index: usize) -> Result<String, ConfigError> {
        if let Some(value) = &self.expanded[index] {
            return Ok(value.clone());
        }
        let name = PARAMETERS[index].name;
        if let Some(start) = self.active.iter().position(|&a| a == index) {
            let mut chain: Vec<&'static str> = self.active[start..].iter().map(|&a| PARAMETERS[a].name).collect();
            chain.push(name);
            return Err(ConfigError::ExpansionLoop { at: self.location(index), name, chain });
        }
        if self.active.len() >= MAX_NESTING {
            let outermost = self.active[0];
            return Err(ConfigError::ExpansionTooDeep {
                at: self.location(outermost),
                name: PARAMETERS[outermost].name,
                limit: MAX_NESTING,
            });
        }
        self.active.push(index);
        let result = self.expand_now(index);
        self.active.pop();
        let value = result?;
        self.expanded[index] = Some(value.clone());
        Ok(value)
    }

    fn expand_now(&mut self, index: usize) -> Result<String, ConfigError> {
        let raw = self.raw(index)?;
        if VERBATIM.contains(&PARAMETERS[index].name) {
            return Ok(raw);
        }
        let template = DELIVERY_TEMPLATES.contains(&PARAMETERS[index].name);
        let expanded = expand(&raw, &mut |reference: &str| {
            if template && DELIVERY_NAMES.contains(&reference) {
                return Ok(String::new());
            }
            self.reference(index, reference)
        });
        // A template is checked now (syntax, names) and expanded per delivery.
        let expanded = if template { expanded.map(|_| raw.clone()) } else { expanded };
        let name = PARAMETERS[index].name;
        expanded.map_err(|error| match error {
            ExpandError::Lookup(error) => error,
            ExpandError::Syntax(reason) => {
                ConfigError::BadExpression { at: self.location(index), name, value: raw.clone(), reason }
            }
            ExpandError::TooDeep => {
                ConfigError::ExpansionTooDeep { at: self.location(index), name, limit: MAX_NESTING }
            }
        })
    }

    /// The value of `$reference` met in parameter `from`.
    fn reference(&mut self, from: usize, reference: &str) -> Result<String, ConfigError> {
        match index_of(reference) {
            Some(index) => self.expand_index(index),
            None => Err(ConfigError::UnknownReference {
                at: self.location(from),
                name: PARAMETERS[from].name,
                unknown: reference.to_string(),
                suggestion: Suggestion(suggest(reference)),
            }),
        }
    }
}
