//! Bacalhau's v1 REST API: the axum server and the typed client the CLI uses.
//!
//! Handlers parse and validate the request into typed values, call one orchestrator or
//! compute method, and map errors to status codes in one place ([`server::ApiError`]).
//! Response shapes follow Bacalhau's Go server and stay readable by its 1.4 Python client.

pub mod auth;
pub mod client;
pub mod guard;
mod ipfs;
pub mod metrics;
mod openapi;
pub mod server;
pub mod tls;
pub mod types;
mod ui;

pub use client::{Client, ClientError};
pub use server::{ApiState, IpfsPeer, router, serve};
