//! Request and response bodies of Bacalhau's v1 API, shared by the server and the client.

use bacalhau_model::{BuildVersionInfo, Execution, Job, JobHistory, NodeState, SpecConfig};
use serde::{Deserialize, Serialize};

/// `PUT /api/v1/orchestrator/jobs` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PutJobResponse {
    /// The new job.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The evaluation scheduling it.
    #[serde(rename = "EvaluationID")]
    pub evaluation_id: String,
    /// Ignored or changed parts of the submission.
    #[serde(rename = "Warnings", default)]
    pub warnings: Vec<String>,
}

/// `PUT /api/v1/orchestrator/jobs/diff` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct DiffJobResponse {
    /// A unified diff from the job's current version to the spec; empty if they are the same.
    #[serde(rename = "Diff")]
    pub diff: String,
    /// Ignored or changed parts of the spec.
    #[serde(rename = "Warnings", default)]
    pub warnings: Vec<String>,
}

/// `PUT /api/v1/orchestrator/jobs/{id}/rerun` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RerunJobResponse {
    /// The evaluation scheduling the rerun.
    #[serde(rename = "EvaluationID")]
    pub evaluation_id: String,
    /// The job.
    #[serde(rename = "JobID")]
    pub job_id: String,
    /// The version the rerun made.
    #[serde(rename = "JobVersion")]
    pub job_version: u64,
    /// Things to know about the rerun.
    #[serde(rename = "Warnings", default)]
    pub warnings: Vec<String>,
}

/// A page of items.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items.
    #[serde(rename = "Items")]
    pub items: Vec<T>,
    /// Token for the next page; empty at the end.
    #[serde(rename = "NextToken", default)]
    pub next_token: String,
}

/// `GET /api/v1/orchestrator/jobs/{id}` answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetJobResponse {
    /// The job.
    #[serde(rename = "Job")]
    pub job: Job,
    /// With `include=history`.
    #[serde(rename = "History", default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Page<JobHistory>>,
    /// With `include=executions`.
    #[serde(rename = "Executions", default, skip_serializing_if = "Option::is_none")]
    pub executions: Option<Page<Execution>>,
}

/// `DELETE /api/v1/orchestrator/jobs/{id}` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StopJobResponse {
    /// The evaluation that stops it; empty if it was already stopped.
    #[serde(rename = "EvaluationID")]
    pub evaluation_id: String,
}

/// Results of a job.
pub type ResultsResponse = Page<SpecConfig>;

/// `GET /api/v1/orchestrator/nodes` answer. Bacalhau's Go server writes `Nodes`, its 1.4
/// Python client reads `nodes`; we write both.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ListNodesResponse {
    /// The nodes.
    #[serde(rename = "Nodes", default)]
    pub nodes: Vec<NodeState>,
    /// The same, for the Python client.
    #[serde(rename = "nodes", default, skip_deserializing)]
    pub nodes_lower: Vec<NodeState>,
    /// Always empty: nodes are not paginated yet.
    #[serde(rename = "NextToken", default)]
    pub next_token: String,
}

/// `GET /api/v1/orchestrator/nodes/{id}` answer (both spellings, as for the list).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct GetNodeResponse {
    /// The node.
    #[serde(rename = "Node")]
    pub node: NodeState,
    /// The same, for the Python client.
    #[serde(rename = "node", default, skip_deserializing)]
    pub node_lower: Option<NodeState>,
}

/// `GET /api/v1/agent/alive` answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AliveResponse {
    /// `OK`.
    #[serde(rename = "Status")]
    pub status: String,
}

/// `GET /api/v1/agent/ready` answer: whether the node can do its work, and each part's word.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// Every check passed.
    #[serde(rename = "Ready")]
    pub ready: bool,
    /// Each part of the node that was checked.
    #[serde(rename = "Checks")]
    pub checks: Vec<ReadyCheck>,
}

/// One part of a node, checked for readiness.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ReadyCheck {
    /// What was checked (`job store`, `scheduler`, `engines`, `orchestrator link`, `ipfs peer`).
    #[serde(rename = "Name")]
    pub name: String,
    /// Whether it is ready.
    #[serde(rename = "OK")]
    pub ok: bool,
    /// What was found, or what is wrong and what to do.
    #[serde(rename = "Message")]
    pub message: String,
}

/// `GET /api/v1/agent/version` answer.
pub type VersionResponse = BuildVersionInfo;

/// One log line on the wire: `{"value": {"Type": 1|2, "Line": "..."}, "error": "..."}`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogFrame {
    /// The line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<LogValue>,
    /// A failure while streaming.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A log line with its stream.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LogValue {
    /// 1 stdout, 2 stderr.
    #[serde(rename = "Type")]
    pub kind: u8,
    /// The text with its newline.
    #[serde(rename = "Line")]
    pub line: String,
}

/// An error body, in Bacalhau's shape (`apimodels.APIError`, fields in its order).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The HTTP status.
    #[serde(rename = "Status", default)]
    pub status: u16,
    /// What went wrong.
    #[serde(rename = "Message", default)]
    pub message: String,
    /// The request's `X-Request-ID`, when it had one.
    #[serde(rename = "RequestID", default)]
    pub request_id: String,
    /// A machine-readable code (`NotFound`, `ValidationError`, ...).
    #[serde(rename = "Code", default)]
    pub code: String,
    /// Which part of the server answered (`Bacalhau`, `Authorizer`, `APIServer`).
    #[serde(rename = "Component", default)]
    pub component: String,
    /// How to fix it.
    #[serde(rename = "Hint", default, skip_serializing_if = "String::is_empty")]
    pub hint: String,
    /// More about it (`reason` for authorisation refusals).
    #[serde(rename = "Details", default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub details: std::collections::BTreeMap<String, String>,
}

/// `POST /api/v1/ipfs/car`: what a CAR upload brought in (its roots are pinned).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct CarImported {
    /// The roots the CAR names.
    pub roots: Vec<String>,
    /// Blocks read, each verified.
    pub blocks: u64,
    /// Bytes of block data.
    pub bytes: u64,
}

/// One pin of the node's IPFS store.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct PinInfo {
    /// The pinned root.
    pub cid: String,
    /// Why it is pinned.
    pub labels: Vec<String>,
    /// The DAG's size as its root records it (kubo's CumulativeSize), when the root is here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// `POST /api/v1/ipfs/gc`: what garbage collection did.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct GcResult {
    /// Blocks still reachable from a pin.
    pub kept: u64,
    /// Blocks deleted.
    pub removed: u64,
    /// Bytes freed.
    pub removed_bytes: u64,
}

/// `PUT /api/v1/orchestrator/nodes`: an operator's action on a node.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeActionRequest {
    /// The node (or a unique prefix).
    #[serde(rename = "NodeID", default)]
    pub node_id: String,
    /// `approve`, `reject` or `delete`.
    #[serde(default)]
    pub action: String,
    /// Why.
    #[serde(default)]
    pub message: String,
}

/// The answer to a node action.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeActionResponse {
    /// Whether it was done.
    pub success: bool,
    /// Why not.
    #[serde(default)]
    pub error: String,
}
