//! `Task`: the one unit of work in a job: engine, inputs, outputs, limits.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::spec_config::SpecConfig;

/// The task of a job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Task {
    /// Task name; defaults to `main`.
    #[serde(default)]
    pub name: String,
    /// Which engine runs it, with the engine's params.
    #[serde(default)]
    pub engine: SpecConfig,
    /// Where results go; empty = nowhere.
    #[serde(default)]
    pub publisher: SpecConfig,
    /// Environment variables for the workload.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Free-form metadata.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Data mounted read-only into the workload.
    #[serde(default)]
    pub input_sources: Vec<InputSource>,
    /// Directories the workload writes results to.
    #[serde(default)]
    pub result_paths: Vec<ResultPath>,
    /// Resource requests.
    #[serde(default)]
    pub resources: ResourcesConfig,
    /// Network access.
    #[serde(default)]
    pub network: NetworkConfig,
    /// Timeouts, in seconds.
    #[serde(default)]
    pub timeouts: TimeoutConfig,
}

/// Data to mount: where from (`Source`) and where to (`Target`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InputSource {
    /// The storage plug-in and its params.
    #[serde(default)]
    pub source: SpecConfig,
    /// An optional name for the input.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// The path inside the workload; a relative one is read from `/`, as Bacalhau does.
    #[serde(default)]
    pub target: String,
}

/// Where a Target is mounted: absolute (a relative Target is read from `/`, as Bacalhau
/// does), without a trailing slash except for `/` itself.
pub fn absolute_target(target: &str) -> String {
    let t = target.trim().trim_matches('/');
    format!("/{t}")
}

/// A named output directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResultPath {
    /// The directory's name in the result folder.
    #[serde(default)]
    pub name: String,
    /// The absolute path inside the workload.
    #[serde(default)]
    pub path: String,
}

/// Resource requests as the user wrote them (`500m`, `1Gb`). See [`crate::Resources`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourcesConfig {
    /// CPU cores, Kubernetes syntax.
    #[serde(rename = "CPU", default, deserialize_with = "string_or_number", skip_serializing_if = "String::is_empty")]
    pub cpu: String,
    /// Memory, e.g. `512Mb`.
    #[serde(
        rename = "Memory",
        default,
        deserialize_with = "string_or_number",
        skip_serializing_if = "String::is_empty"
    )]
    pub memory: String,
    /// Disk, e.g. `10Gb`.
    #[serde(rename = "Disk", default, deserialize_with = "string_or_number", skip_serializing_if = "String::is_empty")]
    pub disk: String,
    /// GPU count.
    #[serde(rename = "GPU", default, deserialize_with = "string_or_number", skip_serializing_if = "String::is_empty")]
    pub gpu: String,
}

/// YAML writes `CPU: 1` as a number; Bacalhau accepts it as the string "1".
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        S(String),
        I(i64),
        F(f64),
        N(()),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::S(s) => s,
        Raw::I(i) => i.to_string(),
        Raw::F(f) => f.to_string(),
        Raw::N(()) => String::new(),
    })
}

/// Network access for the workload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NetworkType {
    /// Engine default (None for our engines).
    #[default]
    Default,
    /// No network.
    None,
    /// The host's network.
    Host,
    /// Full outbound access.
    Full,
    /// HTTP(S) only, to an allow-list of domains.
    Http,
    /// A bridged network with port mappings.
    Bridge,
}

impl NetworkType {
    /// The name as Bacalhau marshals it.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkType::Default => "Default",
            NetworkType::None => "None",
            NetworkType::Host => "Host",
            NetworkType::Full => "Full",
            NetworkType::Http => "HTTP",
            NetworkType::Bridge => "Bridge",
        }
    }

    /// Parses a name case-insensitively; the empty string is `Default`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "" | "default" => NetworkType::Default,
            "none" => NetworkType::None,
            "host" => NetworkType::Host,
            "full" => NetworkType::Full,
            "http" => NetworkType::Http,
            "bridge" => NetworkType::Bridge,
            _ => return None,
        })
    }
}

impl fmt::Display for NetworkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for NetworkType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for NetworkType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NetworkType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown network type {s:?}: use one of None, Host, Full, HTTP, Bridge"))
        })
    }
}

/// Network settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NetworkConfig {
    /// The kind of access.
    #[serde(default)]
    pub r#type: NetworkType,
    /// Allowed domains (HTTP mode only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub domains: Vec<String>,
}

/// Timeouts in seconds; 0 means "none" (or "fail at once" for QueueTimeout).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimeoutConfig {
    /// Longest run of one execution.
    #[serde(default)]
    pub execution_timeout: u64,
    /// Longest wait for a node.
    #[serde(default)]
    pub queue_timeout: u64,
    /// Longest life of the whole job, retries included.
    #[serde(default)]
    pub total_timeout: u64,
}
