//! `NodeInfo` and `NodeState`: what a node offers and how the orchestrator sees it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::id::NodeId;
use crate::resources::Resources;

/// A node's role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeType {
    /// An orchestrator.
    Requester,
    /// Runs jobs.
    #[default]
    Compute,
}

/// Resources as Bacalhau marshals them in node info: CPU in cores, bytes otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResourcesWire {
    /// Cores.
    #[serde(rename = "CPU")]
    pub cpu: f64,
    /// Bytes.
    #[serde(rename = "Memory")]
    pub memory: u64,
    /// Bytes.
    #[serde(rename = "Disk")]
    pub disk: u64,
    /// Count.
    #[serde(rename = "GPU")]
    pub gpu: u64,
}

impl From<Resources> for ResourcesWire {
    fn from(r: Resources) -> Self {
        Self { cpu: r.cpu_millis as f64 / 1000.0, memory: r.memory_bytes, disk: r.disk_bytes, gpu: r.gpu }
    }
}

impl From<ResourcesWire> for Resources {
    fn from(r: ResourcesWire) -> Self {
        Self {
            // A node that reports a negative or absurd CPU count has none to offer.
            cpu_millis: crate::num::f64_to_u64((r.cpu * 1000.0).round()).unwrap_or(0),
            memory_bytes: r.memory,
            disk_bytes: r.disk,
            gpu: r.gpu,
        }
    }
}

/// What a compute node offers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ComputeNodeInfo {
    /// Engines it runs (`wasm`, `docker`).
    pub execution_engines: Vec<String>,
    /// Publishers it has.
    pub publishers: Vec<String>,
    /// Input source types it can fetch.
    pub storage_sources: Vec<String>,
    /// Everything it will ever allocate.
    pub max_capacity: ResourcesWire,
    /// Resources used by queued executions.
    #[serde(rename = "QueueCapacity")]
    pub queue_used_capacity: ResourcesWire,
    /// What is free now.
    pub available_capacity: ResourcesWire,
    /// The largest single job it accepts.
    pub max_job_requirements: ResourcesWire,
    /// How many executions run now.
    pub running_executions: u32,
    /// How many wait.
    pub enqueued_executions: u32,
    /// What it charges (absent: free).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prices: Option<Prices>,
    /// Root CIDs its IPFS store holds (pinned), for data-locality ranking; capped.
    #[serde(rename = "IPFSRoots", default, skip_serializing_if = "Vec::is_empty")]
    pub ipfs_roots: Vec<String>,
}

/// A compute node's price list, in one unit of account chosen by the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Prices {
    /// Per CPU core per second.
    #[serde(rename = "CPUSecond", default)]
    pub cpu_second: f64,
    /// Per GB of memory per second.
    #[serde(rename = "MemoryGBSecond", default)]
    pub memory_gb_second: f64,
    /// Per GPU per second.
    #[serde(rename = "GPUSecond", default)]
    pub gpu_second: f64,
    /// Per GB of published output.
    #[serde(rename = "OutputGB", default)]
    pub output_gb: f64,
    /// No job is quoted or charged less.
    #[serde(default)]
    pub min_price: f64,
}

/// How long a quote assumes a job without an ExecutionTimeout runs.
pub const QUOTE_DEFAULT_SECONDS: u64 = 600;

impl Prices {
    fn rate(&self, r: &crate::Resources) -> f64 {
        r.cpu_millis as f64 / 1000.0 * self.cpu_second
            + r.memory_bytes as f64 / 1e9 * self.memory_gb_second
            + r.gpu as f64 * self.gpu_second
    }

    /// The most `r` for `timeout_s` seconds (the job's ExecutionTimeout; 0 means
    /// [`QUOTE_DEFAULT_SECONDS`]) can cost, before output.
    pub fn quote(&self, r: &crate::Resources, timeout_s: u64) -> f64 {
        let secs = if timeout_s == 0 { QUOTE_DEFAULT_SECONDS } else { timeout_s };
        (self.rate(r) * secs as f64).max(self.min_price)
    }

    /// What a run cost: the resources for the wall time it took, plus its output.
    pub fn cost(&self, r: &crate::Resources, wall_s: f64, output_bytes: u64) -> f64 {
        (self.rate(r) * wall_s + output_bytes as f64 / 1e9 * self.output_gb).max(self.min_price)
    }
}

/// Build information.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildVersionInfo {
    /// Major version.
    #[serde(rename = "Major")]
    pub major: String,
    /// Minor version.
    #[serde(rename = "Minor")]
    pub minor: String,
    /// Full version.
    #[serde(rename = "GitVersion")]
    pub git_version: String,
    /// Commit.
    #[serde(rename = "GitCommit")]
    pub git_commit: String,
    /// RFC 3339.
    #[serde(rename = "BuildDate")]
    pub build_date: String,
    /// Operating system.
    #[serde(rename = "GOOS")]
    pub goos: String,
    /// Architecture.
    #[serde(rename = "GOARCH")]
    pub goarch: String,
}

/// What a node tells the orchestrator about itself.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeInfo {
    /// The node's ID.
    #[serde(rename = "NodeID")]
    pub node_id: NodeId,
    /// Its role.
    pub node_type: NodeType,
    /// Labels constraints match against.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Protocols it speaks.
    #[serde(default)]
    pub supported_protocols: Vec<String>,
    /// Compute details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compute_node_info: Option<ComputeNodeInfo>,
    /// Its build.
    #[serde(default)]
    pub bacalhau_version: BuildVersionInfo,
    /// Multiaddrs of its IPFS peer (each ending in `/p2p/<peer ID>`), so other nodes can fetch
    /// the blocks it holds over bitswap.
    #[serde(rename = "IPFSAddrs", default, skip_serializing_if = "Vec::is_empty")]
    pub ipfs_addrs: Vec<String>,
    /// Base URL of its own API (a compute node serves the logs of what it runs there).
    #[serde(rename = "APIURL", default, skip_serializing_if = "String::is_empty")]
    pub api_url: String,
}

/// Whether the orchestrator lets a node take work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeMembershipState {
    /// Waiting for an operator.
    Pending,
    /// May take work.
    #[default]
    Approved,
    /// May not.
    Rejected,
}

/// Whether a node is connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum NodeConnectionState {
    /// Heartbeats arrive.
    #[default]
    Connected,
    /// They stopped.
    Disconnected,
}

/// A node as the orchestrator sees it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeState {
    /// What the node said about itself.
    pub info: NodeInfo,
    /// Approval.
    pub membership: NodeMembershipState,
    /// Connection.
    pub connection: NodeConnectionState,
    /// How many of its results disagreed with a verification quorum (its reputation).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub dissents: u32,
    /// Its link in detail, as Bacalhau 1.5+ reports it (`Connection` is the older form).
    #[serde(default)]
    pub connection_state: ConnectionState,
}

/// A node's link as the orchestrator saw it: Bacalhau's `ConnectionState`. Times are RFC 3339;
/// Go's zero time (`0001-01-01T00:00:00Z`) means never.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ConnectionState {
    /// Connected or disconnected.
    pub status: NodeConnectionState,
    /// When its last heartbeat (or registration) arrived.
    pub last_heartbeat: String,
    /// When it last registered.
    pub connected_since: String,
    /// When it was last marked disconnected.
    pub disconnected_since: String,
    /// What went wrong last: why it was disconnected, or asked to register again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_error: String,
}

/// Go's zero `time.Time`, as Bacalhau marshals a time that never happened.
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

impl Default for ConnectionState {
    fn default() -> Self {
        Self {
            status: NodeConnectionState::Connected,
            last_heartbeat: GO_ZERO_TIME.into(),
            connected_since: GO_ZERO_TIME.into(),
            disconnected_since: GO_ZERO_TIME.into(),
            last_error: String::new(),
        }
    }
}

impl NodeState {
    /// Why the node takes no work now, in words an operator can act on; `None` when it is
    /// healthy.
    pub fn unhealthy_reason(&self) -> Option<String> {
        let id = &self.info.node_id;
        let last_error = &self.connection_state.last_error;
        match (self.membership, self.connection) {
            (NodeMembershipState::Rejected, _) => {
                Some(format!("rejected by an operator (`bacalhau node approve {id}` lets it back in)"))
            }
            (_, NodeConnectionState::Disconnected) if !last_error.is_empty() => {
                Some(format!("disconnected: {last_error}"))
            }
            (_, NodeConnectionState::Disconnected) => Some("disconnected".into()),
            (NodeMembershipState::Pending, _) => {
                Some(format!("waiting for an operator's approval (`bacalhau node approve {id}`)"))
            }
            _ => None,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
