//! `Evaluation`: a request to look at a job again, and why.

use serde::{Deserialize, Serialize};

use crate::id::{EvaluationId, JobId};
use crate::job::JobType;

/// Why an evaluation was created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TriggeredBy {
    /// A job was submitted.
    #[serde(rename = "job-register")]
    JobRegister,
    /// A job was updated: a spec with its Name was submitted again.
    #[serde(rename = "job-update")]
    JobUpdate,
    /// A job was rerun.
    #[serde(rename = "job-rerun")]
    JobRerun,
    /// A job was stopped.
    #[serde(rename = "job-cancel")]
    JobCancel,
    /// A queued job is looked at again.
    #[serde(rename = "job-queue")]
    JobQueue,
    /// A job ran out of time.
    #[serde(rename = "job-timeout")]
    JobTimeout,
    /// An execution changed state.
    #[serde(rename = "exec-update")]
    ExecUpdate,
    /// An execution ran out of time.
    #[serde(rename = "exec-timeout")]
    ExecTimeout,
    /// A node joined.
    #[serde(rename = "node-join")]
    NodeJoin,
    /// A node left.
    #[serde(rename = "node-leave")]
    NodeLeave,
    /// The orchestrator restarted and looks at every job in flight.
    #[serde(rename = "orchestrator-restart")]
    Restart,
}

/// An evaluation's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvaluationStatus {
    /// Waiting to be processed.
    Pending,
    /// Processed.
    Complete,
    /// Processing failed.
    Failed,
}

/// A request to (re)schedule a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Evaluation {
    /// `v-<uuid>`.
    #[serde(rename = "ID")]
    pub id: EvaluationId,
    /// The job's namespace.
    pub namespace: String,
    /// The job.
    #[serde(rename = "JobID")]
    pub job_id: JobId,
    /// Why.
    pub triggered_by: TriggeredBy,
    /// The job's priority.
    pub priority: i32,
    /// The job's type.
    pub r#type: JobType,
    /// Progress.
    pub status: EvaluationStatus,
    /// Notes.
    #[serde(default)]
    pub comment: String,
    /// Unix nanoseconds before which it should not run (0 = now).
    #[serde(default)]
    pub wait_until: i64,
    /// Unix nanoseconds.
    pub create_time: i64,
    /// Unix nanoseconds.
    pub modify_time: i64,
}
