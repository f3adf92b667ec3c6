//! The network transport: a compute node dials the orchestrator (so it works behind NAT) and
//! keeps one long-lived gRPC bidirectional stream open (tonic over HTTP/2, TLS optional). The
//! stream carries the protocol crate's envelopes, JSON-encoded; the orchestrator and the
//! compute node see the same channels as with the in-process transport.
//!
//! The handshake is in the stream's metadata: node ID, protocol version and the cluster token.
//! A wrong token or version is refused before any message flows, with a status that says why,
//! and the compute node logs it. A dropped stream is re-dialled with back-off; on every
//! re-connection the compute node is told ([`bacalhau_protocol::ToCompute::Reconnected`]) so it registers again
//! and re-sends what was never acknowledged. HTTP/2 keep-alives notice a dead peer.

mod client;
mod codec;
mod server;

pub use client::{ClientConfig, connect};
pub use server::{ServerConfig, serve};

/// The gRPC method the stream runs on.
pub const CONNECT_PATH: &str = "/bacalhau_rs.node.v1.Orchestrator/Connect";
/// The gRPC service name.
pub const SERVICE_NAME: &str = "bacalhau_rs.node.v1.Orchestrator";
/// Metadata: the compute node's ID.
pub const NODE_ID_KEY: &str = "x-bacalhau-node-id";
/// Metadata: the compute node's protocol version.
pub const VERSION_KEY: &str = "x-bacalhau-protocol-version";
/// Metadata: the cluster token.
pub const TOKEN_KEY: &str = "x-bacalhau-token";

/// Why the transport could not start.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
    /// The server failed.
    #[error("the node server failed: {0}")]
    Server(String),
}
