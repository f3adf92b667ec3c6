//! Message types and the envelope.

use std::fmt;
use std::sync::Arc;

use bacalhau_model::{
    Execution, ExecutionEvent, ExecutionId, IllegalTransition, NodeId, NodeInfo, ResourcesWire, RunCommandResult,
    SpecConfig,
};
use serde::{Deserialize, Serialize};

/// The protocol version both sides must agree on in the handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// A message with its routing header.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub version: u32,
    /// The compute node this message is from or to.
    pub node_id: NodeId,
    /// The message.
    pub payload: T,
}

impl<T> Envelope<T> {
    /// Wraps a payload with the current protocol version.
    pub fn new(node_id: NodeId, payload: T) -> Self {
        Self { version: PROTOCOL_VERSION, node_id, payload }
    }
}

/// An execution's state on the compute node, which has phases the orchestrator does not track.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LocalExecutionState {
    /// Bid placed, waiting for the decision.
    AskForBidAccepted,
    /// Bid declined by the node.
    AskForBidRejected,
    /// Accepted, waiting for capacity.
    BidAccepted,
    /// The bid was rejected by the orchestrator.
    BidRejected,
    /// Inputs are prepared and the engine runs.
    Running,
    /// Results are being published.
    Publishing,
    /// Finished.
    Completed,
    /// Failed.
    Failed,
    /// Stopped on request.
    Cancelled,
}

impl LocalExecutionState {
    /// Whether the execution is finished on the node.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::AskForBidRejected | Self::BidRejected | Self::Completed | Self::Failed | Self::Cancelled)
    }

    /// The state `event` leads to from this one on the compute node: the same lifecycle as
    /// the orchestrator's ([`bacalhau_model::ComputeStateType::apply`]) with the node's own
    /// `Running` and `Publishing` phases. A bid is not a transition: the node's record starts
    /// at its answer.
    pub fn apply(self, event: ExecutionEvent) -> Result<Self, IllegalTransition> {
        use ExecutionEvent as E;
        let next = match (self, event) {
            (Self::AskForBidAccepted, E::BidAccepted) => Self::BidAccepted,
            (Self::AskForBidAccepted, E::BidRejected) => Self::BidRejected,
            (Self::BidAccepted, E::Started) => Self::Running,
            (Self::Running, E::Publishing) => Self::Publishing,
            (Self::Running | Self::Publishing, E::Completed) => Self::Completed,
            (s, E::Failed) if !s.is_terminal() => Self::Failed,
            (s, E::Cancelled) if !s.is_terminal() => Self::Cancelled,
            (Self::BidAccepted | Self::Running | Self::Publishing, E::Lost) => Self::Failed,
            _ => return Err(IllegalTransition { from: self.name(), event }),
        };
        Ok(next)
    }

    /// The display name.
    pub fn name(self) -> &'static str {
        match self {
            Self::AskForBidAccepted => "AskForBidAccepted",
            Self::AskForBidRejected => "AskForBidRejected",
            Self::BidAccepted => "BidAccepted",
            Self::BidRejected => "BidRejected",
            Self::Running => "Running",
            Self::Publishing => "Publishing",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Cancelled => "Cancelled",
        }
    }
}

/// One execution a compute node holds, reported in the handshake.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecutionReport {
    /// Which.
    pub execution_id: ExecutionId,
    /// Its local state.
    pub state: LocalExecutionState,
}

/// Orchestrator → compute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ToCompute {
    /// Would you run this? The execution carries the job.
    AskForBid {
        /// The execution, with `job` set.
        execution: Box<Execution>,
        /// For each IPFS input CID, the multiaddrs of peers known to hold it (content routing
        /// through the control plane instead of a DHT).
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        providers: std::collections::BTreeMap<String, Vec<String>>,
        /// The W3C `traceparent` of the job's trace, when traces are exported: the node's spans
        /// for this execution join it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
    },
    /// Your bid won: run it.
    BidAccepted {
        /// Which execution.
        execution_id: ExecutionId,
    },
    /// Your bid lost: forget it.
    BidRejected {
        /// Which execution.
        execution_id: ExecutionId,
        /// Why.
        reason: String,
    },
    /// Stop it.
    CancelExecution {
        /// Which execution.
        execution_id: ExecutionId,
        /// Why.
        reason: String,
    },
    /// Your report on this execution is stored; stop re-sending it.
    Ack {
        /// Which execution.
        execution_id: ExecutionId,
    },
    /// Not from the orchestrator: the network transport says the stream to it was
    /// re-established, so the node registers again and re-sends what was never acknowledged.
    Reconnected,
    /// What you hold differs from what I believe: register again, reporting every execution,
    /// so reconciliation repairs the difference.
    Resync,
    /// The answer to [`FromCompute::ManagedUpload`]: where to PUT the execution's archive
    /// (a URL the orchestrator signed with its own credentials), or why not.
    ManagedUploadUrl {
        /// Which execution.
        execution_id: ExecutionId,
        /// The signed URL, or why there is none.
        url: Result<String, String>,
    },
    /// The handshake's answer.
    Registered {
        /// Whether the node may stay.
        accepted: bool,
        /// Why not, if not.
        reason: String,
    },
}

/// Compute → orchestrator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum FromCompute {
    /// The handshake: who I am and what I hold.
    Register {
        /// Engines, capacity, labels.
        info: Box<NodeInfo>,
        /// Every execution the node has not been told to forget.
        executions: Vec<ExecutionReport>,
    },
    /// I am alive; this is what I have free.
    Heartbeat {
        /// Free now.
        available: ResourcesWire,
        /// Used by queued work.
        queued: ResourcesWire,
        /// Running now.
        running: u32,
        /// Waiting.
        enqueued: u32,
        /// The root CIDs its IPFS store holds now (data locality), when they changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ipfs_roots: Option<Vec<String>>,
        /// What the node holds live, to compare with what the orchestrator believes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        digest: Option<crate::ExecutionDigest>,
    },
    /// My answer to an ask.
    BidResult {
        /// Which execution.
        execution_id: ExecutionId,
        /// Yes or no.
        accepted: bool,
        /// Why not, if not.
        reason: String,
        /// What it would charge at most (its prices × the job's resources and timeout).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quote: Option<f64>,
    },
    /// It finished.
    RunResult {
        /// Which execution.
        execution_id: ExecutionId,
        /// Where the results went.
        published_result: Option<SpecConfig>,
        /// Exit code and output summary.
        run_output: RunCommandResult,
        /// What it cost, from the wall time it ran and the output it published.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<f64>,
    },
    /// It failed (or was stopped).
    ComputeError {
        /// Which execution.
        execution_id: ExecutionId,
        /// Why, in words a user can act on.
        message: String,
        /// Whether it ended because it was cancelled.
        cancelled: bool,
        /// Whether another attempt could succeed. A bad spec, a missing image, running out of
        /// memory or time would fail the same way again, so the job fails at once.
        #[serde(default = "retryable_default")]
        retryable: bool,
    },
    /// The execution's results are ready for the `s3managed` publisher: sign me a URL to
    /// upload them to (Bacalhau's `ManagedPublisherPreSignURLRequest`). Compute nodes hold
    /// no S3 credentials for it; the orchestrator does.
    ManagedUpload {
        /// Which execution (the orchestrator knows its job and checks that it runs here).
        execution_id: ExecutionId,
    },
    /// Progress worth showing in the job's history (`Running`, `Publishing results`).
    ExecutionEvent {
        /// Which execution.
        execution_id: ExecutionId,
        /// The phase.
        topic: String,
        /// What happened.
        message: String,
    },
}

fn retryable_default() -> bool {
    true
}

/// Why a message could not be handed to the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The peer is gone.
    Disconnected,
    /// The peer's queue is full; the message was dropped and reconciliation must catch up.
    Full,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Disconnected => f.write_str("the node is disconnected"),
            SendError::Full => f.write_str("the node's message queue is full"),
        }
    }
}

/// The orchestrator's handle for sending to one compute node. Must not block.
pub trait Outbound: Send + Sync + fmt::Debug {
    /// Queues a message for the node.
    fn send(&self, msg: ToCompute) -> Result<(), SendError>;
}

/// What arrives at the orchestrator from the transports.
#[derive(Debug)]
pub enum OrchestratorInbound {
    /// A node connected; messages to it go through `link`.
    Connected {
        /// The node.
        node_id: NodeId,
        /// How to reach it.
        link: Arc<dyn Outbound>,
    },
    /// A message from a node.
    Message(Box<Envelope<FromCompute>>),
    /// A node's connection ended.
    Disconnected {
        /// The node.
        node_id: NodeId,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use ExecutionEvent as E;
    use LocalExecutionState as S;

    #[test]
    fn the_nodes_lifecycle() {
        let mut s = S::AskForBidAccepted;
        for e in [E::BidAccepted, E::Started, E::Publishing, E::Completed] {
            s = s.apply(e).expect("legal");
        }
        assert_eq!(s, S::Completed);
        assert!(S::AskForBidAccepted.apply(E::Started).is_err(), "not before the bid is accepted");
        assert!(S::BidAccepted.apply(E::BidAccepted).is_err(), "a duplicate acceptance");
        assert!(S::Completed.apply(E::Cancelled).is_err(), "a late cancel");
        assert_eq!(S::Running.apply(E::Lost), Ok(S::Failed));
        assert!(S::AskForBidAccepted.apply(E::Lost).is_err(), "a bid survives a restart");
        assert_eq!(S::BidAccepted.apply(E::Cancelled), Ok(S::Cancelled));
    }
}
