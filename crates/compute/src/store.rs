//! The compute node's durable execution store (redb).

use std::path::Path;

use bacalhau_model::{Execution, ExecutionId, RunCommandResult, SpecConfig};
use bacalhau_protocol::LocalExecutionState;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const FORMAT_V1: u8 = 1;
const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");

/// How an execution ended, kept until the orchestrator acknowledges it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    /// Ran to the end.
    Completed {
        /// Where the results went.
        published_result: Option<SpecConfig>,
        /// Output summary.
        run_output: RunCommandResult,
        /// What it cost at this node's prices.
        #[serde(default)]
        cost: Option<f64>,
    },
    /// Failed or was cancelled.
    Failed {
        /// Why.
        message: String,
        /// Whether by request.
        cancelled: bool,
        /// Whether another attempt could succeed.
        #[serde(default = "yes")]
        retryable: bool,
    },
}

fn yes() -> bool {
    true
}

/// One execution as the compute node keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The execution, with its job.
    pub execution: Execution,
    /// Its local state.
    pub state: LocalExecutionState,
    /// Why it is in that state.
    pub message: String,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
    /// Whether the orchestrator acknowledged the outcome.
    pub reported: bool,
}

/// A store failure.
#[derive(Debug, thiserror::Error)]
#[error("execution store: {0}")]
pub struct StoreError(String);

impl StoreError {
    pub(crate) fn new(msg: String) -> Self {
        Self(msg)
    }
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

/// The durable store.
#[derive(Debug)]
pub struct ExecutionStore {
    db: Database,
}

impl ExecutionStore {
    /// Opens or creates the store; an empty or damaged file is refused, never replaced.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError(format!(
                "{} is empty (0 bytes): the compute node's store was lost or truncated. Restore it from a backup, \
                 or move it away to start with no executions",
                path.display()
            )));
        }
        let existed = path.exists();
        // The store holds the executions in flight only (a finished one is deleted once the
        // orchestrator has it), so a small cache holds all of it; redb's default is 1 GiB.
        let mut db = Database::builder().set_cache_size(2 << 20).create(path).map_err(|e| {
            StoreError(format!(
                "cannot open {}: {e} (is another bacalhau serve using this data dir? if the file is damaged, restore \
                 it from a backup or move it away)",
                path.display()
            ))
        })?;
        if existed && let Err(e) = db.check_integrity() {
            return Err(StoreError(format!(
                "{} fails its integrity check ({e}): restore it from a backup, or move it away",
                path.display()
            )));
        }
        Self::init(db)
    }

    /// A store in memory (redb's in-memory backend): the same code without a file, for the
    /// simulator, where a node's "disk" outlives its crashes but not the process.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(err)?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, StoreError> {
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(EXECUTIONS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self { db })
    }

    /// Every record.
    pub fn all(&self) -> Result<Vec<Record>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(EXECUTIONS).map_err(err)?;
        let mut out = Vec::new();
        for item in t.iter().map_err(err)? {
            let (_, v) = item.map_err(err)?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }

    /// Writes records in one transaction.
    pub fn put_all(&self, records: &[Record]) -> Result<(), StoreError> {
        self.commit(records, &[])
    }

    /// Writes `records` and deletes the records of `forgets`, in one transaction.
    pub fn commit(&self, records: &[Record], forgets: &[ExecutionId]) -> Result<(), StoreError> {
        if records.is_empty() && forgets.is_empty() {
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(EXECUTIONS).map_err(err)?;
            for r in records {
                let mut bytes = vec![FORMAT_V1];
                serde_json::to_writer(&mut bytes, r).map_err(err)?;
                t.insert(r.execution.id.as_str(), bytes.as_slice()).map_err(err)?;
            }
            for id in forgets {
                t.remove(id.as_str()).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// One record.
    pub fn get(&self, id: &ExecutionId) -> Result<Option<Record>, StoreError> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(EXECUTIONS).map_err(err)?;
        t.get(id.as_str()).map_err(err)?.map(|v| decode(v.value())).transpose()
    }
}

fn decode(bytes: &[u8]) -> Result<Record, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => serde_json::from_slice(rest).map_err(err),
        _ => Err(StoreError("a stored execution has an unknown format".into())),
    }
}
