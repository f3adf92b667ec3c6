//! `JobHistory`: the events a job and its executions went through, in order.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::execution::ComputeStateType;
use crate::id::{ExecutionId, JobId, NodeId};
use crate::job::JobStateType;

/// Whether a history entry is about the job or one execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HistoryType {
    /// About the job.
    JobLevel,
    /// About one execution.
    ExecutionLevel,
}

/// A state transition recorded in history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StateChange<T> {
    /// Before.
    pub previous: T,
    /// After.
    pub new: T,
}

/// What happened, in words.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Event {
    /// A sentence.
    pub message: String,
    /// Which phase (`Submission`, `Scheduling`, `Execution`, ...).
    pub topic: String,
    /// RFC 3339.
    pub timestamp: String,
    /// Extra details (`IsError`, `Hint`, ...).
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
}

/// One entry of a job's history (Bacalhau 1.4 shape, plus HEAD's `SeqNum`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobHistory {
    /// Position in the job's history, from 1.
    pub seq_num: u64,
    /// Job or execution level.
    pub r#type: HistoryType,
    /// The job.
    #[serde(rename = "JobID")]
    pub job_id: JobId,
    /// The job version the entry belongs to (0 in entries stored before versions existed:
    /// version 1).
    #[serde(default)]
    pub job_version: u64,
    /// The node, for execution-level entries.
    #[serde(rename = "NodeID", default, skip_serializing_if = "is_empty_node")]
    pub node_id: NodeId,
    /// The execution, for execution-level entries.
    #[serde(rename = "ExecutionID", default, skip_serializing_if = "is_empty_exec")]
    pub execution_id: ExecutionId,
    /// Job state transition, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_state: Option<StateChange<JobStateType>>,
    /// Execution state transition, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_state: Option<StateChange<ComputeStateType>>,
    /// The job's revision after this entry.
    #[serde(default)]
    pub new_revision: u64,
    /// Free text.
    #[serde(default)]
    pub comment: String,
    /// What happened.
    pub event: Event,
    /// RFC 3339.
    pub time: String,
}

fn is_empty_node(n: &NodeId) -> bool {
    n.0.is_empty()
}

fn is_empty_exec(e: &ExecutionId) -> bool {
    e.0.is_empty()
}
