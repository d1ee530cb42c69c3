//! Lookup tables, named `type:name` as in Postfix (`hash:/etc/postfix/access`,
//! `regexp:/etc/postfix/header_checks`, `sqlite:/etc/tidemail/virtual.cf`, ...).
//!
//! Every table type implements `Map`. A table that cannot be opened or queried returns
//! `MapError::Unavailable`: the caller defers (mail waits, SMTP answers 451), it never treats
//! that as "not found". The search orders Postfix applies for each use (address, domain,
//! parent domains, client IP prefixes...) are in `search`.

pub mod aliases;
pub mod cidr;
pub mod hash;
pub mod regexp;
pub mod search;
pub mod simple;
pub mod source;
pub mod sql;
pub mod texthash;
pub mod unix;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

/// How a table wants to be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapKind {
    /// Exact keys (hash, texthash, sql, ...): the search orders try partial keys (user@,
    /// @domain, parent domains, IP prefixes).
    Exact,
    /// Patterns (regexp, pcre, cidr, static): asked once with the whole string, as Postfix
    /// does for its DICT_FLAG_PATTERN tables.
    Pattern,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum MapError {
    /// The table cannot be opened or queried right now: defer, never "not found".
    #[error("{map}: table lookup problem: {reason}")]
    Unavailable { map: String, reason: String },
    /// The table's source is wrong: names the file and line.
    #[error("{file}, line {line}: {reason}")]
    Syntax { file: String, line: usize, reason: String },
    /// A `type:name` that is not a table tidemail knows.
    #[error("unsupported dictionary type: {0}")]
    UnknownType(String),
    #[error("bad table name \"{0}\": expected type:name")]
    BadSpec(String),
}

impl MapError {
    pub fn unavailable(map: impl fmt::Display, reason: impl fmt::Display) -> MapError {
        MapError::Unavailable { map: map.to_string(), reason: reason.to_string() }
    }
}

/// One lookup table.
pub trait Map: Send + Sync + fmt::Debug {
    /// The table's `type:name`, for messages and logs.
    fn spec(&self) -> &str;
    /// Look `key` up; `Ok(None)` means not found.
    fn lookup(&self, key: &str) -> Result<Option<String>, MapError>;
    fn kind(&self) -> MapKind {
        MapKind::Exact
    }
}

/// Split `type:name`. Inline tables keep their braces in the name (`inline:{a=b, c=d}`).
pub fn split_spec(spec: &str) -> Result<(&str, &str), MapError> {
    match spec.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && kind.bytes().all(|b| b.is_ascii_alphanumeric()) => Ok((kind, name)),
        _ => Err(MapError::BadSpec(spec.to_string())),
    }
}

/// Open a table by its `type:name`. Tables are opened once per process and shared; each
/// type notices a rebuilt file by itself.
pub fn open(spec: &str) -> Result<Arc<dyn Map>, MapError> {
    static OPEN: Mutex<Option<HashMap<String, Arc<dyn Map>>>> = Mutex::new(None);
    if let Some(map) = OPEN.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(HashMap::new).get(spec) {
        return Ok(map.clone());
    }
    let (kind, name) = split_spec(spec)?;
    // Postfix's proxymap shares tables between its processes; tidemail's are shared within
    // the one process already, so `proxy:type:name` is simply `type:name`.
    if kind == "proxy" {
        return open(name);
    }
    let map: Arc<dyn Map> = match kind {
        "hash" | "btree" | "cdb" => hash::open(spec, name)?,
        "texthash" => texthash::open(spec, name)?,
        "regexp" => regexp::open(spec, name, regexp::Dialect::Regexp)?,
        "pcre" => regexp::open(spec, name, regexp::Dialect::Pcre)?,
        "cidr" => cidr::open(spec, name)?,
        "static" => simple::open_static(spec, name),
        "inline" => simple::open_inline(spec, name)?,
        "fail" => simple::open_fail(spec, name),
        "unix" => unix::open(spec, name)?,
        "sqlite" | "mysql" | "pgsql" => sql::open(spec, kind, name)?,
        other => return Err(MapError::UnknownType(other.to_string())),
    };
    OPEN.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .insert(spec.to_string(), map.clone());
    Ok(map)
}

/// A Postfix list of tables (`virtual_alias_maps = hash:/a, regexp:/b`): searched in order,
/// the first table that knows the key answers.
#[derive(Debug, Clone, Default)]
pub struct MapList {
    maps: Vec<Arc<dyn Map>>,
}

impl MapList {
    pub fn open(specs: &[String]) -> Result<MapList, MapError> {
        Ok(MapList { maps: specs.iter().map(|s| open(s)).collect::<Result<_, _>>()? })
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }

    pub fn maps(&self) -> &[Arc<dyn Map>] {
        &self.maps
    }

    pub fn lookup(&self, key: &str) -> Result<Option<String>, MapError> {
        for map in &self.maps {
            if let Some(value) = map.lookup(key)? {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}
