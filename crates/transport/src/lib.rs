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
mod identity;
mod server;

pub use client::{ClientConfig, connect};
pub use identity::{NodeKey, ProofChecker};
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
/// Metadata: the node's ed25519 public key (base64).
pub const NODE_KEY_KEY: &str = "x-bacalhau-node-key";
/// Metadata: the proof's timestamp (seconds since the epoch).
pub const PROOF_TS_KEY: &str = "x-bacalhau-node-proof-ts";
/// Metadata: the proof's nonce.
pub const PROOF_NONCE_KEY: &str = "x-bacalhau-node-proof-nonce";
/// Metadata: the proof's signature (base64).
pub const PROOF_SIG_KEY: &str = "x-bacalhau-node-proof";

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
