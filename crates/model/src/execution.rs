//! `Execution`: one attempt at running one partition of a job on one node.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::id::{EvaluationId, ExecutionId, JobId, NodeId};
use crate::job::Job;
use crate::spec_config::SpecConfig;

/// How much of stdout/stderr an execution's `RunOutput` keeps (Bacalhau keeps 2 KiB).
pub const RUN_OUTPUT_LIMIT_BYTES: usize = 2048;

/// An execution's observed state, as the orchestrator records it.
///
/// Marshalled as an integer with Bacalhau 1.4's numbering, which is what the official Python
/// client (`bacalhau-apiclient` 1.4.x) reads. `Running` and `Publishing` are compute-local
/// phases and never appear here; the orchestrator sees `BidAccepted` until the result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComputeStateType {
    /// Not set.
    #[default]
    Undefined = 0,
    /// Created by the scheduler; no bid asked yet.
    New = 1,
    /// A bid has been asked for.
    AskForBid = 2,
    /// The node bid for it.
    AskForBidAccepted = 3,
    /// The node declined.
    AskForBidRejected = 4,
    /// The orchestrator accepted the bid: it runs.
    BidAccepted = 5,
    /// The orchestrator declined the bid.
    BidRejected = 6,
    /// Ran to the end (whatever the exit code).
    Completed = 7,
    /// Could not run to the end.
    Failed = 8,
    /// Stopped before the end.
    Cancelled = 9,
}

impl ComputeStateType {
    const ALL: [ComputeStateType; 10] = [
        Self::Undefined,
        Self::New,
        Self::AskForBid,
        Self::AskForBidAccepted,
        Self::AskForBidRejected,
        Self::BidAccepted,
        Self::BidRejected,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the execution can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::AskForBidRejected | Self::BidRejected | Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// Whether the execution's partition is free for another attempt.
    pub fn is_discarded(self) -> bool {
        matches!(self, Self::AskForBidRejected | Self::BidRejected | Self::Failed | Self::Cancelled)
    }

    /// The display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Undefined => "Undefined",
            Self::New => "New",
            Self::AskForBid => "AskForBid",
            Self::AskForBidAccepted => "AskForBidAccepted",
            Self::AskForBidRejected => "AskForBidRejected",
            Self::BidAccepted => "BidAccepted",
            Self::BidRejected => "BidRejected",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// What the scheduler wants an execution to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum DesiredStateType {
    /// Waiting for a bid decision.
    #[default]
    Pending = 0,
    /// Should run.
    Running = 1,
    /// Should stop (or has).
    Stopped = 2,
}

impl DesiredStateType {
    /// The display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Stopped => "Stopped",
        }
    }
}

macro_rules! int_serde {
    ($ty:ty, $all:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_u8(*self as u8)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let n = u8::deserialize(d)?;
                $all.iter()
                    .copied()
                    .find(|v| *v as u8 == n)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown state {n}")))
            }
        }
    };
}
int_serde!(ComputeStateType, ComputeStateType::ALL);
int_serde!(DesiredStateType, [DesiredStateType::Pending, DesiredStateType::Running, DesiredStateType::Stopped]);

/// A state with the reason for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecutionState<T> {
    /// The state.
    pub state_type: T,
    /// Why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl<T> ExecutionState<T> {
    /// A state with a reason.
    pub fn new(state_type: T, message: impl Into<String>) -> Self {
        Self { state_type, message: message.into() }
    }
}

/// What the workload printed and how it ended; stdout/stderr truncated to 2 KiB.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunCommandResult {
    /// First bytes of stdout.
    #[serde(rename = "Stdout", default)]
    pub stdout: String,
    /// Whether stdout was cut.
    #[serde(rename = "StdoutTruncated", default)]
    pub stdout_truncated: bool,
    /// First bytes of stderr (lower-case key, as Bacalhau's Go tag).
    #[serde(rename = "stderr", default)]
    pub stderr: String,
    /// Whether stderr was cut.
    #[serde(rename = "StderrTruncated", default)]
    pub stderr_truncated: bool,
    /// The workload's exit code.
    #[serde(rename = "ExitCode", default)]
    pub exit_code: i32,
    /// Why the runner failed, if it did.
    #[serde(rename = "ErrorMsg", default)]
    pub error_msg: String,
}

/// One attempt at one partition of a job on one node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Execution {
    /// `e-<uuid>`.
    #[serde(rename = "ID")]
    pub id: ExecutionId,
    /// The job's namespace.
    #[serde(default)]
    pub namespace: String,
    /// The evaluation that created it.
    #[serde(rename = "EvalID", default)]
    pub eval_id: EvaluationId,
    /// The job's name.
    #[serde(default)]
    pub name: String,
    /// Where it runs.
    #[serde(rename = "NodeID", default)]
    pub node_id: NodeId,
    /// Its job.
    #[serde(rename = "JobID", default)]
    pub job_id: JobId,
    /// The job version this execution runs; executions of older versions are stopped.
    #[serde(default)]
    pub job_version: u64,
    /// The job as it was when the execution was created (the compute node needs the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Box<Job>>,
    /// Which partition (0..Count).
    #[serde(default)]
    pub partition_index: u32,
    /// What the scheduler wants.
    #[serde(default)]
    pub desired_state: ExecutionState<DesiredStateType>,
    /// What is.
    #[serde(default)]
    pub compute_state: ExecutionState<ComputeStateType>,
    /// Where the publisher put the results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_result: Option<SpecConfig>,
    /// Output summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_output: Option<RunCommandResult>,
    /// The agreed price: the node's quote when its bid was accepted.
    #[serde(rename = "Quote", default, skip_serializing_if = "Option::is_none")]
    pub quote: Option<f64>,
    /// What it cost, from measured use (wall time × resources, plus output), once it ended.
    #[serde(rename = "Cost", default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// For verified jobs: whether its result CID agreed with the quorum.
    #[serde(rename = "Verification", default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<String>,
    /// Bumped on every change.
    #[serde(default)]
    pub revision: u64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub create_time: i64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub modify_time: i64,
}

impl Execution {
    /// Whether the execution occupies its partition (not discarded).
    pub fn is_live(&self) -> bool {
        !self.compute_state.state_type.is_discarded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_integers_with_v1_4_numbering() {
        let s = ExecutionState::new(ComputeStateType::Completed, "");
        assert_eq!(serde_json::to_string(&s).expect("json"), r#"{"StateType":7}"#);
        let back: ExecutionState<ComputeStateType> = serde_json::from_str(r#"{"StateType":9}"#).expect("json");
        assert_eq!(back.state_type, ComputeStateType::Cancelled);
        assert!(serde_json::from_str::<ComputeStateType>("42").is_err());
    }
}
