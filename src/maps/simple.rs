//! static:, inline: and fail: tables (placeholder, being written).
use std::sync::Arc;
use super::{Map, MapError};
pub fn open_static(spec: &str, _name: &str) -> Arc<dyn Map> { open_fail(spec, "") }
pub fn open_inline(spec: &str, _name: &str) -> Result<Arc<dyn Map>, MapError> { Err(MapError::UnknownType(spec.into())) }
#[derive(Debug)] struct Fail(String);
impl Map for Fail { fn spec(&self) -> &str { &self.0 } fn lookup(&self, _k: &str) -> Result<Option<String>, MapError> { Err(MapError::unavailable(&self.0, "fail table")) } }
pub fn open_fail(spec: &str, _name: &str) -> Arc<dyn Map> { Arc::new(Fail(spec.into())) }
