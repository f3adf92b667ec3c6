//! The messages between the orchestrator and compute nodes, independent of the pipe.
//!
//! Every message travels in an [`Envelope`] carrying the protocol version and the sender's
//! node ID. Compute nodes speak first ([`FromCompute::Register`]) and report what they hold,
//! so either side can restart and the two reconcile: the orchestrator re-sends asks that were
//! never answered, the compute node re-sends results until they are acknowledged. Handlers on
//! both sides are idempotent, so delivery only needs to be at-least-once.
//!
//! This crate also holds the in-process transport used when both roles live in one process;
//! the network transport (one compute-initiated stream per node) carries the same messages.

mod digest;
mod inprocess;
mod message;
pub mod trace;

pub use digest::{ExecutionDigest, Phase};
pub use inprocess::{ComputeEndpoint, ComputeSender, InProcessLink, connect_in_process};
pub use message::{
    Envelope, ExecutionReport, FromCompute, LocalExecutionState, OrchestratorInbound, Outbound, PROTOCOL_VERSION,
    SendError, ToCompute,
};

/// Decides which key may speak for which node ID. The orchestrator implements it over its
/// store (a node ID is bound to the first key that joins with it, or to the one approved);
/// the network transport asks it before any message of a new stream flows.
pub trait NodeAuthority: Send + Sync + std::fmt::Debug {
    /// `Ok` when `key` (an ed25519 public key) may speak for `node`; otherwise why not.
    fn admit(&self, node: &bacalhau_model::NodeId, key: &[u8; 32]) -> Result<(), String>;
}
