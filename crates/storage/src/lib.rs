//! Where job data comes from and where results go.
//!
//! [`InputProvider`]s materialise a task's input sources as local paths (read-only unless the
//! spec and the node both allow writing); [`Publisher`]s take a finished result folder and
//! put it somewhere a user can fetch it, returning the `PublishedResult` that says where.
//! Inputs: `inline`, `local`, and `ipfs` from the node's own block store. Publishers: `local`,
//! `noop`, and `ipfs` into the node's block store.

mod inline;
mod ipfs;
mod local;
mod publish;

use std::path::Path;

use bacalhau_executor::PreparedInput;
use bacalhau_model::{ExecutionId, InputSource, SpecConfig};

pub use inline::InlineSource;
pub use inline::{DataUrl, parse_data_url, percent_decode};
pub use ipfs::{IpfsPublisher, IpfsSource};
pub use local::{AllowedPath, LocalSource};
pub use publish::{LocalPublisher, NoopPublisher, RESULTS_ARCHIVE_SUFFIX, unpack_tar_gz, unpack_tar_gz_bytes};

/// Why an input could not be prepared or a result published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The spec asks for something this node refuses or cannot parse (a user error).
    #[error("{0}")]
    Invalid(String),
    /// The input's content itself is unacceptable (a DAG too deep, a name listed twice, more
    /// than the disk budget): any node would refuse it the same way, so it is not retried.
    #[error("{0}")]
    Refused(String),
    /// Disk or network trouble.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StorageError {
        let context = context.into();
        move |source| StorageError::Io { context, source }
    }
}

/// Fetches one kind of input source onto local disk.
#[async_trait::async_trait]
pub trait InputProvider: Send + Sync + std::fmt::Debug {
    /// The `Source.Type` it handles.
    fn source_type(&self) -> &'static str;

    /// Checks an input without fetching it, so a node can refuse a bid early.
    fn validate(&self, input: &InputSource) -> Result<(), StorageError>;

    /// Makes the input available under `work_dir` (or in place) and says where, writing at
    /// most `max_bytes` (the job's disk budget): an input that expands past it (a small CAR
    /// or archive naming the same content a million times) stops with an error as it is written.
    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError>;

    /// Content this source holds for data-locality ranking (IPFS: the pinned root CIDs).
    fn held(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether the input is already on this node (`None`: the question does not apply).
    fn is_local(&self, _input: &InputSource) -> Option<bool> {
        None
    }

    /// Hints from the orchestrator: which peers hold which content (CID → multiaddrs).
    fn learn_providers(&self, _providers: &std::collections::BTreeMap<String, Vec<String>>) {}
}

/// Publishes a result folder.
#[async_trait::async_trait]
pub trait Publisher: Send + Sync + std::fmt::Debug {
    /// The `Publisher.Type` it handles.
    fn publisher_type(&self) -> &'static str;

    /// Publishes `results_dir` and returns where it went (`None` when it went nowhere).
    async fn publish(&self, execution_id: &ExecutionId, results_dir: &Path)
    -> Result<Option<SpecConfig>, StorageError>;
}
