//! Input sources that fetch from servers outside the node: `urlDownload` (http and https) and
//! `s3` (any S3-compatible server); the `s3` and `s3managed` publishers, and the orchestrator's
//! signers of their results.
//!
//! They implement `bacalhau_storage::InputProvider` like the local sources do, but live in a
//! crate of their own so that `storage` (and `compute` above it) never link an HTTP client:
//! the binary builds the client (with its TLS settings) and hands it in. The main type is
//! [`UrlSource`] and [`S3Source`]; [`UrlSettings`] and [`S3Settings`] hold the node's limits
//! and credentials for them.

mod guard;
mod s3_managed;
mod s3_presigned;
mod s3_publisher;
mod s3_source;
mod url_source;

pub use guard::{GuardedResolver, guarded, refused_address};
pub use s3_managed::{S3ManagedPublisher, S3ManagedSettings, S3ManagedSigner};
pub use s3_presigned::S3PreSignedSource;
pub use s3_publisher::{S3Publisher, S3ResultSigner};
pub use s3_source::{S3Settings, S3Source};
pub use url_source::{UrlSettings, UrlSource};
