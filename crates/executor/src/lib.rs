//! The `Executor` trait every engine implements, and the result folder contract.
//!
//! An engine gets a [`RunRequest`] whose inputs are already on local disk and whose result
//! directories already exist, runs the workload, and writes `stdout` and `stderr` into the
//! request's result folder as it goes. The caller then writes `exitCode` and publishes the
//! folder. A non-zero exit code is a normal outcome, not an error: only a failure of the
//! runner itself (a trap, a timeout, a cancellation) is an [`ExecutorError`].

mod results;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bacalhau_model::{ExecutionId, JobId, NetworkConfig, Resources, SpecConfig};
use tokio_util::sync::CancellationToken;

pub use results::{
    EXIT_CODE_FILE, MAX_RESULT_DEPTH, ResultFolder, STDERR_FILE, STDOUT_FILE, dir_size, sanitize_results, summarize,
    write_exit_code,
};

/// An input already materialised on the compute node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedInput {
    /// Where it is on the host.
    pub host_path: PathBuf,
    /// Where the workload sees it.
    pub target: String,
    /// Whether the workload may write to it.
    pub read_only: bool,
}

/// A result directory the workload writes into.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedOutput {
    /// The ResultPath's name (its folder in the results).
    pub name: String,
    /// Where the workload sees it.
    pub path: String,
    /// Where it is on the host (inside the result folder).
    pub host_path: PathBuf,
}

/// Everything an engine needs to run one execution.
#[derive(Clone, Debug)]
pub struct RunRequest {
    /// The job.
    pub job_id: JobId,
    /// The execution.
    pub execution_id: ExecutionId,
    /// The engine's SpecConfig, with its params.
    pub engine: SpecConfig,
    /// Inputs, on disk.
    pub inputs: Vec<PreparedInput>,
    /// Outputs, created and empty.
    pub outputs: Vec<PreparedOutput>,
    /// Environment for the workload, system variables included.
    pub env: BTreeMap<String, String>,
    /// Limits.
    pub resources: Resources,
    /// Network access.
    pub network: NetworkConfig,
    /// Wall-clock limit; `None` for none.
    pub timeout: Option<Duration>,
    /// The result folder: `stdout` and `stderr` go here.
    pub results_dir: PathBuf,
    /// A private folder for the engine's own files (never published), removed with the
    /// execution. It may not exist yet.
    pub work_dir: PathBuf,
    /// Fires when the execution must stop.
    pub cancel: CancellationToken,
}

/// How a run ended when the runner itself worked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunOutcome {
    /// The workload's exit code.
    pub exit_code: i32,
}

/// Why a run did not finish normally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecutorError {
    /// The spec is not something this engine can run (a user error).
    #[error("{0}")]
    InvalidSpec(String),
    /// It ran past its timeout and was stopped.
    #[error("execution timed out after {}s (ExecutionTimeout)", .0.as_secs_f64())]
    TimedOut(Duration),
    /// It was stopped on request.
    #[error("execution was cancelled")]
    Cancelled,
    /// It ran out of memory.
    #[error("{0}")]
    OutOfMemory(String),
    /// It wrote more than its disk allowance and was stopped.
    #[error("{0}")]
    DiskLimit(String),
    /// The workload crashed or the runner failed.
    #[error("{0}")]
    Failed(String),
}

/// An engine.
#[async_trait::async_trait]
pub trait Executor: Send + Sync + std::fmt::Debug {
    /// The engine's type name, as in `Engine.Type`.
    fn engine_type(&self) -> &'static str;

    /// Checks the engine params before bidding, so a bad spec is refused early.
    fn validate(&self, request: &RunRequest) -> Result<(), ExecutorError>;

    /// Runs the workload to the end, writing `stdout` and `stderr` into the result folder.
    async fn run(&self, request: RunRequest) -> Result<RunOutcome, ExecutorError>;
}
