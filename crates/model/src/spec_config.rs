//! `SpecConfig`: a typed plug-in reference (engine, publisher, input source) with free-form params.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Engine type: Docker containers.
pub const ENGINE_DOCKER: &str = "docker";
/// Engine type: WebAssembly modules (WASI preview1).
pub const ENGINE_WASM: &str = "wasm";
/// Engine type: does nothing; for tests.
pub const ENGINE_NOOP: &str = "noop";
/// Publisher type: discard results.
pub const PUBLISHER_NOOP: &str = "noop";
/// Bacalhau's managed S3 publisher: the orchestrator signs the upload, compute nodes hold no
/// credentials.
pub const PUBLISHER_S3_MANAGED: &str = "s3managed";
/// Publisher type: keep results on the compute node and serve them over HTTP.
pub const PUBLISHER_LOCAL: &str = "local";
/// Publisher type: add results to IPFS.
pub const PUBLISHER_IPFS: &str = "ipfs";
/// Input source type: a CID from IPFS.
pub const SOURCE_IPFS: &str = "ipfs";
/// Input source type: an RFC 2397 `data:` URL embedded in the spec.
pub const SOURCE_INLINE: &str = "inline";
/// Input source type: an allow-listed path on the compute node.
pub const SOURCE_LOCAL: &str = "local";
/// Input source type: a file downloaded over HTTP(S).
pub const SOURCE_URL: &str = "urlDownload";

/// `{"Type": ..., "Params": {...}}`: which plug-in, and its parameters.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SpecConfig {
    /// The plug-in's type name, matched case-insensitively.
    #[serde(default)]
    pub r#type: String,
    /// Type-specific parameters.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub params: Map<String, Value>,
}

impl SpecConfig {
    /// A config of the given type with no params.
    pub fn new(kind: &str) -> Self {
        Self { r#type: kind.to_owned(), params: Map::new() }
    }

    /// Adds a param (builder style).
    pub fn with_param(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.params.insert(key.to_owned(), value.into());
        self
    }

    /// Whether this config is of the given type (case-insensitive, as Bacalhau's `IsType`).
    pub fn is_type(&self, kind: &str) -> bool {
        self.r#type.trim().eq_ignore_ascii_case(kind)
    }

    /// Whether no type is set (an empty publisher means "do not publish").
    pub fn is_empty(&self) -> bool {
        self.r#type.trim().is_empty()
    }

    /// The normalised type name: lower-case except Bacalhau's camel-case `urlDownload`.
    pub fn type_name(&self) -> String {
        let t = self.r#type.trim();
        if t.eq_ignore_ascii_case(SOURCE_URL) { SOURCE_URL.to_owned() } else { t.to_ascii_lowercase() }
    }

    /// A param looked up case-insensitively, as Bacalhau decodes params.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.get(key).or_else(|| self.params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    }

    /// A string param (case-insensitive key); `None` when missing or not a string.
    pub fn param_str(&self, key: &str) -> Option<&str> {
        self.param(key).and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_case_insensitive() {
        let c = SpecConfig::new("Inline").with_param("url", "data:,x");
        assert!(c.is_type("inline"));
        assert_eq!(c.param_str("URL"), Some("data:,x"));
        assert_eq!(c.type_name(), "inline");
        assert_eq!(SpecConfig::new("URLDOWNLOAD").type_name(), "urlDownload");
    }
}
