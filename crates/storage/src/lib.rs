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
pub use publish::{
    LocalPublisher, NoopPublisher, RESULTS_ARCHIVE_SUFFIX, pack_tar_gz, unpack_tar_gz, unpack_tar_gz_bytes,
    unpack_tar_gz_within,
};

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

/// Which partition of its job an execution runs (`BACALHAU_PARTITION_INDEX` of
/// `BACALHAU_PARTITION_COUNT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partition {
    /// This execution's partition, from 0.
    pub index: u32,
    /// How many partitions the job has (at least 1).
    pub count: u32,
}

impl Partition {
    /// The whole job as one partition.
    pub const WHOLE: Partition = Partition { index: 0, count: 1 };
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

    /// [`InputProvider::prepare`] for one partition of a job (a source that shares its
    /// content among partitions, as `s3` does, prepares only this partition's share).
    async fn prepare_partition(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
        _partition: Partition,
    ) -> Result<PreparedInput, StorageError> {
        self.prepare(input, work_dir, max_bytes).await
    }

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

    /// Checks a job's publisher spec before bidding (credentials, params this node needs).
    fn validate(&self, _spec: &SpecConfig) -> Result<(), StorageError> {
        Ok(())
    }

    /// [`Publisher::publish`] with the job's publisher spec and whose results they are (a
    /// publisher whose spec says where, as `s3` does, needs both).
    async fn publish_for(
        &self,
        request: PublishRequest<'_>,
        results_dir: &Path,
    ) -> Result<Option<SpecConfig>, StorageError> {
        self.publish(request.execution_id, results_dir).await
    }
}

/// Turns a published result into one a client can download without credentials of its own
/// (an archived `s3` result into `s3PreSigned`, with a time-limited URL), on the orchestrator.
#[async_trait::async_trait]
pub trait ResultSigner: Send + Sync + std::fmt::Debug {
    /// The signed form of the request's result, or `None` when it is not this signer's kind
    /// or not provably the execution's own.
    async fn sign(&self, request: SignRequest<'_>) -> Result<Option<SpecConfig>, StorageError>;
}

/// Signers asked in turn (the `s3` one, the `s3managed` one); the first that signs wins.
#[derive(Debug, Default)]
pub struct Signers(pub Vec<std::sync::Arc<dyn ResultSigner>>);

#[async_trait::async_trait]
impl ResultSigner for Signers {
    async fn sign(&self, request: SignRequest<'_>) -> Result<Option<SpecConfig>, StorageError> {
        for signer in &self.0 {
            if let Some(signed) = signer.sign(request).await? {
                return Ok(Some(signed));
            }
        }
        Ok(None)
    }
}

/// A result to sign and what it must match: a compute node reports its result, so a signer
/// checks it against the job's publisher and the execution before lending its credentials.
#[derive(Debug, Clone, Copy)]
pub struct SignRequest<'a> {
    /// The result the node reported.
    pub result: &'a SpecConfig,
    /// The job's `Publisher`.
    pub publisher: &'a SpecConfig,
    /// The job.
    pub job_id: &'a str,
    /// The execution.
    pub execution_id: &'a str,
    /// The node that ran it.
    pub node_id: &'a str,
    /// When the execution was created (Unix seconds): its result cannot be older.
    pub not_before_secs: u64,
}

/// What a publisher is asked to publish: the job's publisher spec and whose results they are.
#[derive(Debug, Clone, Copy)]
pub struct PublishRequest<'a> {
    /// The task's `Publisher`.
    pub spec: &'a SpecConfig,
    /// The job.
    pub job_id: &'a str,
    /// The execution.
    pub execution_id: &'a ExecutionId,
    /// The node publishing.
    pub node_id: &'a str,
    /// Who signs upload URLs for the `s3managed` publisher (the orchestrator, through the
    /// compute node's link to it); `None` where no orchestrator is reachable.
    pub uploads: Option<&'a dyn UploadUrls>,
}

/// Asks the orchestrator for a URL to PUT an execution's archive to, signed with its S3
/// credentials (Bacalhau's managed publisher: compute nodes hold none).
#[async_trait::async_trait]
pub trait UploadUrls: Send + Sync + std::fmt::Debug {
    /// A fresh signed PUT URL for `execution_id`'s archive, or why there is none.
    async fn upload_url(&self, execution_id: &ExecutionId) -> Result<String, StorageError>;
}
