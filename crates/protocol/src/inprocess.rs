//! The in-process transport: bounded channels between an orchestrator and a compute node
//! living in the same process.

use std::sync::Arc;

use bacalhau_model::NodeId;
use tokio::sync::mpsc;

use crate::message::{Envelope, FromCompute, OrchestratorInbound, Outbound, SendError, ToCompute};

/// How many orchestrator messages may wait for a compute node. A burst of submissions creates
/// one ask per execution; 64 Ki covers a large burst, and an overflow is recovered by
/// reconciliation rather than by blocking the orchestrator.
const TO_COMPUTE_CAPACITY: usize = 65_536;

/// The orchestrator's side of an in-process link.
#[derive(Debug)]
pub struct InProcessLink {
    tx: mpsc::Sender<Envelope<ToCompute>>,
    node_id: NodeId,
}

impl Outbound for InProcessLink {
    fn send(&self, msg: ToCompute) -> Result<(), SendError> {
        self.tx.try_send(Envelope::new(self.node_id.clone(), msg)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Disconnected,
        })
    }
}

/// The compute node's side of an in-process link.
#[derive(Debug)]
pub struct ComputeEndpoint {
    /// Messages from the orchestrator.
    pub inbox: mpsc::Receiver<Envelope<ToCompute>>,
    /// Where to send messages.
    pub outbox: mpsc::Sender<OrchestratorInbound>,
    /// This node.
    pub node_id: NodeId,
}

impl ComputeEndpoint {
    /// Sends a message to the orchestrator, waiting if its inbox is full.
    pub async fn send(&self, payload: FromCompute) -> Result<(), SendError> {
        send(&self.outbox, &self.node_id, payload).await
    }
}

async fn send(
    outbox: &mpsc::Sender<OrchestratorInbound>,
    node_id: &NodeId,
    payload: FromCompute,
) -> Result<(), SendError> {
    outbox
        .send(OrchestratorInbound::Message(Box::new(Envelope::new(node_id.clone(), payload))))
        .await
        .map_err(|_| SendError::Disconnected)
}

/// A cloneable sender for a compute node's messages, for tasks other than the node's runtime.
#[derive(Clone, Debug)]
pub struct ComputeSender {
    outbox: mpsc::Sender<OrchestratorInbound>,
    node_id: NodeId,
}

impl ComputeSender {
    /// Sends a message to the orchestrator, waiting if its inbox is full.
    pub async fn send(&self, payload: FromCompute) -> Result<(), SendError> {
        send(&self.outbox, &self.node_id, payload).await
    }
}

impl ComputeEndpoint {
    /// A sender that shares this endpoint's connection.
    pub fn sender(&self) -> ComputeSender {
        ComputeSender { outbox: self.outbox.clone(), node_id: self.node_id.clone() }
    }
}

/// Connects a compute node to an orchestrator's inbox in the same process.
pub async fn connect_in_process(
    orchestrator: mpsc::Sender<OrchestratorInbound>,
    node_id: NodeId,
) -> Result<ComputeEndpoint, SendError> {
    let (tx, inbox) = mpsc::channel(TO_COMPUTE_CAPACITY);
    let link = Arc::new(InProcessLink { tx, node_id: node_id.clone() });
    orchestrator
        .send(OrchestratorInbound::Connected { node_id: node_id.clone(), link })
        .await
        .map_err(|_| SendError::Disconnected)?;
    Ok(ComputeEndpoint { inbox, outbox: orchestrator, node_id })
}
