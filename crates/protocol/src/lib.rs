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

mod inprocess;
mod message;

pub use inprocess::{ComputeEndpoint, ComputeSender, InProcessLink, connect_in_process};
pub use message::{
    Envelope, ExecutionReport, FromCompute, LocalExecutionState, OrchestratorInbound, Outbound, PROTOCOL_VERSION,
    SendError, ToCompute,
};
