//! The orchestrator: takes jobs, decides where they run, and keeps their state durable.
//!
//! - [`store`]: the redb job store (jobs, executions, evaluations, history).
//! - [`scheduler`] and [`selection`]: pure functions from state to a plan.
//! - [`Orchestrator`]: the runtime, one task that owns the in-memory view of jobs in flight,
//!   applies plans, commits each round of changes in one transaction, and only then talks to
//!   compute nodes and answers callers.
//!
//! It knows compute nodes only through `bacalhau-protocol` messages; it never runs work itself.

// Test data patterns truncate on purpose.
#![cfg_attr(test, allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss))]

pub mod content;
pub mod engine;
mod identity;
mod ids;
mod metrics;
mod runtime;
pub mod scheduler;
pub mod selection;
pub mod store;

pub use identity::NodeKeys;
pub use ids::{IdSource, RandomIds, SeededIds, SplitMix64};
pub use metrics::describe as describe_metrics;
pub use runtime::{
    DEFAULT_JOB_RETENTION, JobEvent, ListJobsQuery, ListJobsResult, ManagedUploads, NodeAction, Orchestrator,
    OrchestratorConfig, OrchestratorError, OrchestratorHandle, Refusals, RerunResult, StopResult, SubmitResult,
};
