//! The compute node: bids for executions, runs them, publishes their results, reports back.
//!
//! It talks to the orchestrator only through `bacalhau-protocol` messages, and to engines,
//! inputs and publishers only through the `Executor`, `InputProvider` and `Publisher` traits;
//! the binary wires the implementations. State lives in a redb store and every change is
//! committed before the orchestrator hears of it, so after a crash the node knows what it
//! bid for, what it finished, and which results the orchestrator has not acknowledged yet.

mod capacity;
pub mod engine;
mod folders;
mod logs;
mod node;
mod run;
mod store;
mod uploads;

pub use capacity::{DEFAULT_ALLOCATION_PERCENT, detect as detect_capacity, share as capacity_share};
pub use logs::{LogLine, LogStreamKind};
pub use node::{BidPolicy, BidProbe, ComputeConfig, ComputeError, ComputeHandle, ComputeNode, describe_metrics};
pub use store::{ExecutionStore, Outcome, Record};
