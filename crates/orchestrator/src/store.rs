//! The durable job store on redb: jobs, executions, evaluations and history.
//!
//! Every value is stored as one format-version byte followed by JSON, so a later format can
//! be migrated explicitly. Writes go through [`WriteBatch`]: the orchestrator gathers all the
//! state changes of one round of work and commits them in a single transaction, so each change
//! is atomic and a burst of changes costs one fsync (group commit).

use std::path::Path;

use bacalhau_model::{Evaluation, Execution, ExecutionId, Job, JobHistory, JobId};
use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable, TableDefinition,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod blobs;
mod codec;
mod history;

use blobs::{BLOB_REFS, BLOBS, BlobWriter, JOB_BLOBS, decode_record};

const FORMAT_V1: u8 = 1;
/// Records one job listing reads at most (a few milliseconds' work).
const MAX_LIST_SCAN: usize = 20_000;

const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");
const JOBS_BY_CREATE: TableDefinition<(i64, &str), ()> = TableDefinition::new("jobs_by_create_time");
/// Name → the jobs with that name. A job named by its own ID (the default) is not listed: its
/// ID finds it, and the entry would cost more than the job's other records.
const JOB_NAMES: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("job_names");
const EXECUTIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("executions");
const EXECS_BY_JOB: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("executions_by_job");
const EVALUATIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("evaluations");
const HISTORY: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("history");
const ACTIVE_JOBS: TableDefinition<&str, ()> = TableDefinition::new("active_jobs");
/// Node ID → its membership (`APPROVED`, `PENDING`, `REJECTED`), which outlives restarts.
const NODES: TableDefinition<&str, &str> = TableDefinition::new("node_membership");
/// Result CID → the nodes that published it (content routing and locality).
const HOLDERS: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("content_holders");
/// Node → how many of its results disagreed with a verification quorum (reputation).
const DISSENTS: TableDefinition<&str, u64> = TableDefinition::new("node_dissents");
/// Idempotency-Key → "job ID\nevaluation ID" of the submission it created.
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency_keys");
/// Node ID → the ed25519 public key bound to it.
const NODE_KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("node_keys");
/// (job ID, version) → the job as it was when a later version replaced it. The current
/// version lives in `jobs` only, so a job never updated costs nothing here.
const JOB_VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("job_versions");

/// Job ID → its evaluations (for deleting them with the job).
const EVALS_BY_JOB: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("evaluations_by_job");
/// Job ID → the Idempotency-Keys that name it (for deleting them with the job).
const KEYS_BY_JOB: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("idempotency_keys_by_job");

/// redb's page cache for the store. Its default (1 GiB) grows with the file, which grows with
/// history: the pages a round touches are the active jobs' and the index tails, and the OS page
/// cache holds the rest, so resident memory stays with the work in flight.
const CACHE_BYTES: usize = 8 << 20;

/// Up to this size an existing store is checked page by page at start (about a second per
/// few hundred MiB here); a larger one is opened without the walk, since restart time must
/// stay bounded by active work. Commits record the allocator state (redb's quick repair), so
/// opening after a crash does not walk the file either.
const FULL_CHECK_MAX_BYTES: u64 = 64 << 20;

/// How many replaced versions of one job are kept: a client that updates a job in a loop must
/// not grow the store without bound. Older ones are dropped as new ones arrive.
pub const MAX_KEPT_VERSIONS: u64 = 100;

/// A store failure. Callers treat all of them as "retry later or give up"; none is a user error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database could not be opened, read or written.
    #[error("job store: {0}")]
    Db(String),
    /// A stored value could not be decoded.
    #[error("job store: a stored {what} is corrupt or from an unknown format: {message}")]
    Corrupt {
        /// What kind of value.
        what: &'static str,
        /// Details.
        message: String,
    },
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT_V1];
    serde_json::to_writer(&mut out, v).map_err(db_err)?;
    codec::pack(out)
}

fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, StoreError> {
    let bytes = codec::unpack(what, bytes)?;
    match bytes.split_first() {
        Some((&FORMAT_V1, rest)) => {
            serde_json::from_slice(rest).map_err(|e| StoreError::Corrupt { what, message: e.to_string() })
        }
        Some((v, _)) => Err(StoreError::Corrupt { what, message: format!("format version {v}") }),
        None => Err(StoreError::Corrupt { what, message: "empty value".into() }),
    }
}

/// State changes to commit together.
#[derive(Debug, Default)]
pub struct WriteBatch {
    jobs: Vec<(Job, bool)>,
    replaced: Vec<Job>,
    executions: Vec<Execution>,
    evaluations: Vec<Evaluation>,
    history: Vec<JobHistory>,
    nodes: Vec<(String, Option<String>)>,
    holders: Vec<(String, String)>,
    dissents: Vec<(String, u64)>,
    idempotency: Vec<(String, String)>,
}

impl WriteBatch {
    /// Records that the submission with `key` created `job_id` (with `eval_id`), in the same
    /// transaction as the job, so a retry after any crash finds it.
    pub fn put_idempotency_key(&mut self, key: &str, job_id: &str, eval_id: &str) {
        self.idempotency.push((key.to_owned(), format!("{job_id}\n{eval_id}")));
    }

    /// Stores a job (new or changed). `is_new` adds it to the creation-time and name indexes.
    pub fn put_job(&mut self, job: Job, is_new: bool) {
        self.jobs.push((job, is_new));
    }

    /// Keeps `job` as a replaced version (an update or rerun is making the next one).
    pub fn put_replaced_version(&mut self, job: Job) {
        self.replaced.push(job);
    }

    /// The executions this batch stores (for the engine's tests).
    #[cfg(test)]
    pub(crate) fn executions(&self) -> impl Iterator<Item = &Execution> {
        self.executions.iter()
    }

    /// Stores an execution.
    pub fn put_execution(&mut self, execution: Execution) {
        self.executions.push(execution);
    }

    /// Stores an evaluation.
    pub fn put_evaluation(&mut self, evaluation: Evaluation) {
        self.evaluations.push(evaluation);
    }

    /// Appends a history entry.
    pub fn add_history(&mut self, entry: JobHistory) {
        self.history.push(entry);
    }

    /// Records a node's membership (`None` forgets the node).
    pub fn put_node_membership(&mut self, node_id: &str, membership: Option<&str>) {
        self.nodes.push((node_id.to_owned(), membership.map(str::to_owned)));
    }

    /// Records that `node` published `cid`.
    pub fn put_holder(&mut self, cid: &str, node: &str) {
        self.holders.push((cid.to_owned(), node.to_owned()));
    }

    /// Records a node's dissent count.
    pub fn put_dissents(&mut self, node: &str, count: u64) {
        self.dissents.push((node.to_owned(), count));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.replaced.is_empty()
            && self.executions.is_empty()
            && self.evaluations.is_empty()
            && self.history.is_empty()
            && self.nodes.is_empty()
            && self.holders.is_empty()
            && self.dissents.is_empty()
            && self.idempotency.is_empty()
    }
}

/// What one retention sweep deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sweep {
    /// Jobs, with all their records.
    pub jobs: u64,
    /// Their executions.
    pub executions: u64,
    /// Blobs no remaining job used.
    pub blobs: u64,
    /// Whether more jobs are due (the sweep stopped at its limit).
    pub more: bool,
}

/// Compaction is considered from this file size on...
const COMPACT_MIN_BYTES: u64 = 64 << 20;
/// ...when the file is this many times what it holds.
const COMPACT_RATIO: u64 = 2;

fn drain_multimap(
    t: &mut redb::MultimapTable<'_, &'static str, &'static str>,
    key: &str,
) -> Result<Vec<String>, StoreError> {
    let values = t.remove_all(key).map_err(db_err)?;
    let mut out = Vec::new();
    for v in values {
        out.push(v.map_err(db_err)?.value().to_owned());
    }
    Ok(out)
}

/// Where a job listing page ended: the last `(create_time, id)` returned.
pub type JobCursor = (i64, String);

/// Which way to order a job listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobOrder {
    /// Newest first.
    NewestFirst,
    /// Oldest first.
    OldestFirst,
}

/// The durable store.
#[derive(Debug)]
pub struct JobStore {
    /// `None` only while it is being reopened after a failed write.
    db: std::sync::RwLock<Option<Database>>,
    path: std::path::PathBuf,
}

impl JobStore {
    /// Opens (or creates) the store at `path`. An existing file is checked first: an empty
    /// one is refused (it is a lost store, not a new one), and so is one that fails redb's
    /// integrity check, each with what to do about it.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Ok(meta) = std::fs::metadata(path)
            && meta.len() == 0
        {
            return Err(StoreError::Db(format!(
                "{} is empty (0 bytes): the orchestrator's store was lost or truncated. Restore it from a backup, \
                 or move it away to start with no jobs",
                path.display()
            )));
        }
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let mut db = Database::builder().set_cache_size(CACHE_BYTES).create(path).map_err(|e| {
            StoreError::Db(format!(
                "cannot open {}: {e} (is another bacalhau serve using this data dir? if the file is damaged, \
                 restore it from a backup or move it away)",
                path.display()
            ))
        })?;
        if size > FULL_CHECK_MAX_BYTES {
            tracing::debug!(bytes = size, "{}: opened without a full integrity walk", path.display());
        } else if size > 0 {
            match db.check_integrity() {
                Ok(true) => {}
                Ok(false) => tracing::warn!("{}: redb repaired the store after an unclean stop", path.display()),
                Err(e) => {
                    return Err(StoreError::Db(format!(
                        "{} fails its integrity check ({e}): restore it from a backup, or move it away to start with no jobs",
                        path.display()
                    )));
                }
            }
        }
        Self::init_tables(&db)?;
        Ok(Self { db: std::sync::RwLock::new(Some(db)), path: path.to_owned() })
    }

    /// A store in memory (redb's in-memory backend): the same code without a file, for the
    /// simulator, where the orchestrator's "disk" outlives its crashes but not the process.
    pub fn in_memory() -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(db_err)?;
        Self::init_tables(&db)?;
        Ok(Self { db: std::sync::RwLock::new(Some(db)), path: std::path::PathBuf::new() })
    }

    fn init_tables(db: &Database) -> Result<(), StoreError> {
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(JOBS).map_err(db_err)?;
            tx.open_table(JOBS_BY_CREATE).map_err(db_err)?;
            tx.open_multimap_table(JOB_NAMES).map_err(db_err)?;
            tx.open_table(EXECUTIONS).map_err(db_err)?;
            tx.open_multimap_table(EXECS_BY_JOB).map_err(db_err)?;
            tx.open_table(EVALUATIONS).map_err(db_err)?;
            tx.open_table(HISTORY).map_err(db_err)?;
            tx.open_table(ACTIVE_JOBS).map_err(db_err)?;
            tx.open_table(NODES).map_err(db_err)?;
            tx.open_multimap_table(HOLDERS).map_err(db_err)?;
            tx.open_table(DISSENTS).map_err(db_err)?;
            tx.open_table(NODE_KEYS).map_err(db_err)?;
            tx.open_table(IDEMPOTENCY).map_err(db_err)?;
            tx.open_table(JOB_VERSIONS).map_err(db_err)?;
            tx.open_table(BLOBS).map_err(db_err)?;
            tx.open_multimap_table(EVALS_BY_JOB).map_err(db_err)?;
            tx.open_multimap_table(KEYS_BY_JOB).map_err(db_err)?;
            tx.open_multimap_table(BLOB_REFS).map_err(db_err)?;
            tx.open_multimap_table(JOB_BLOBS).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    /// The current version of the job named `name` in `namespace`, if there is one. Jobs
    /// submitted before names were unique may share one; the newest is the one a new spec
    /// updates.
    pub fn job_named(&self, namespace: &str, name: &str) -> Result<Option<Job>, StoreError> {
        let mut best: Option<Job> = None;
        for id in self.jobs_named(name)? {
            if let Some(job) = self.job(id.as_str())?
                && job.namespace == namespace
                && best.as_ref().is_none_or(|b| (job.create_time, &job.id.0) > (b.create_time, &b.id.0))
            {
                best = Some(job);
            }
        }
        Ok(best)
    }

    /// The (job ID, evaluation ID) a submission with this Idempotency-Key created, if any.
    pub fn idempotent_submission(&self, key: &str) -> Result<Option<(String, String)>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(IDEMPOTENCY).map_err(db_err)?;
        Ok(t.get(key)
            .map_err(db_err)?
            .and_then(|v| v.value().split_once('\n').map(|(j, e)| (j.to_owned(), e.to_owned()))))
    }

    fn read_tx(&self) -> Result<redb::ReadTransaction, StoreError> {
        let guard = self.db.read().map_err(|_| StoreError::Db("the store lock is poisoned".into()))?;
        let db = guard.as_ref().ok_or_else(|| StoreError::Db("the store is being reopened; retry".into()))?;
        db.begin_read().map_err(db_err)
    }

    fn write_tx(&self) -> Result<redb::WriteTransaction, StoreError> {
        let guard = self.db.read().map_err(|_| StoreError::Db("the store lock is poisoned".into()))?;
        let db = guard.as_ref().ok_or_else(|| StoreError::Db("the store is being reopened; retry".into()))?;
        let mut tx = db.begin_write().map_err(db_err)?;
        tx.set_quick_repair(true);
        Ok(tx)
    }

    /// After a failed write redb refuses further writes until the file is opened again (its
    /// in-memory state may no longer match the disk): close and reopen it, so the node
    /// recovers once the cause (a full disk, say) is gone, without a restart.
    pub fn reopen(&self) -> Result<(), StoreError> {
        let mut guard = self.db.write().map_err(|_| StoreError::Db("the store lock is poisoned".into()))?;
        drop(guard.take());
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&self.path)
            .map_err(|e| StoreError::Db(format!("reopening {}: {e}", self.path.display())))?;
        *guard = Some(db);
        Ok(())
    }

    /// Commits a batch in one transaction. Blocking: call from a blocking thread.
    pub fn commit(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        {
            let mut bw = BlobWriter {
                blobs: tx.open_table(BLOBS).map_err(db_err)?,
                refs: tx.open_multimap_table(BLOB_REFS).map_err(db_err)?,
                by_job: tx.open_multimap_table(JOB_BLOBS).map_err(db_err)?,
            };
            let mut jobs = tx.open_table(JOBS).map_err(db_err)?;
            let mut by_create = tx.open_table(JOBS_BY_CREATE).map_err(db_err)?;
            let mut names = tx.open_multimap_table(JOB_NAMES).map_err(db_err)?;
            let mut active = tx.open_table(ACTIVE_JOBS).map_err(db_err)?;
            let ended: Vec<&str> = batch
                .jobs
                .iter()
                .filter(|(j, _)| j.state.state_type.is_terminal())
                .map(|(j, _)| j.id.as_str())
                .collect();
            for (job, is_new) in &batch.jobs {
                jobs.insert(job.id.as_str(), bw.encode(job.id.as_str(), job)?.as_slice()).map_err(db_err)?;
                if *is_new {
                    by_create.insert((job.create_time, job.id.as_str()), ()).map_err(db_err)?;
                    if job.name != job.id.as_str() {
                        names.insert(job.name.as_str(), job.id.as_str()).map_err(db_err)?;
                    }
                }
                if job.state.state_type.is_terminal() {
                    active.remove(job.id.as_str()).map_err(db_err)?;
                } else {
                    active.insert(job.id.as_str(), ()).map_err(db_err)?;
                }
            }
            let mut versions = tx.open_table(JOB_VERSIONS).map_err(db_err)?;
            for job in &batch.replaced {
                let id = job.id.as_str();
                versions.insert((id, job.version), bw.encode(id, job)?.as_slice()).map_err(db_err)?;
                if let Some(old) = job.version.checked_sub(MAX_KEPT_VERSIONS) {
                    versions.remove((id, old)).map_err(db_err)?;
                }
            }
            let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
            let mut by_job = tx.open_multimap_table(EXECS_BY_JOB).map_err(db_err)?;
            for e in &batch.executions {
                execs.insert(e.id.as_str(), bw.encode(e.job_id.as_str(), e)?.as_slice()).map_err(db_err)?;
                by_job.insert(e.job_id.as_str(), e.id.as_str()).map_err(db_err)?;
            }
            let mut evals = tx.open_table(EVALUATIONS).map_err(db_err)?;
            let mut evals_by_job = tx.open_multimap_table(EVALS_BY_JOB).map_err(db_err)?;
            for ev in &batch.evaluations {
                evals.insert(ev.id.as_str(), encode(ev)?.as_slice()).map_err(db_err)?;
                evals_by_job.insert(ev.job_id.as_str(), ev.id.as_str()).map_err(db_err)?;
            }
            // An evaluation is a request to schedule: once its job has ended there is nothing
            // left to schedule and no reader, so it goes with the terminal state.
            for id in &ended {
                for e in drain_multimap(&mut evals_by_job, id)? {
                    evals.remove(e.as_str()).map_err(db_err)?;
                }
            }
            let mut history = tx.open_table(HISTORY).map_err(db_err)?;
            for h in &batch.history {
                history.insert((h.job_id.as_str(), h.seq_num), encode(h)?.as_slice()).map_err(db_err)?;
            }
            for id in &ended {
                history::fold(&mut history, id)?;
            }
            let mut nodes = tx.open_table(NODES).map_err(db_err)?;
            for (id, m) in &batch.nodes {
                match m {
                    Some(m) => nodes.insert(id.as_str(), m.as_str()).map_err(db_err)?,
                    None => nodes.remove(id.as_str()).map_err(db_err)?,
                };
            }
            let mut holders = tx.open_multimap_table(HOLDERS).map_err(db_err)?;
            for (cid, node) in &batch.holders {
                holders.insert(cid.as_str(), node.as_str()).map_err(db_err)?;
            }
            let mut dissents = tx.open_table(DISSENTS).map_err(db_err)?;
            for (node, n) in &batch.dissents {
                dissents.insert(node.as_str(), *n).map_err(db_err)?;
            }
            let mut keys = tx.open_table(IDEMPOTENCY).map_err(db_err)?;
            let mut keys_by_job = tx.open_multimap_table(KEYS_BY_JOB).map_err(db_err)?;
            for (key, value) in &batch.idempotency {
                keys.insert(key.as_str(), value.as_str()).map_err(db_err)?;
                if let Some((job_id, _)) = value.split_once('\n') {
                    keys_by_job.insert(job_id, key.as_str()).map_err(db_err)?;
                }
            }
        }
        tx.commit().map_err(db_err)
    }

    /// (result CID, node that published it), for at most `max_cids` CIDs: what a restart
    /// reads must not grow with history.
    pub fn content_holders(&self, max_cids: usize) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.read_tx()?;
        let table = tx.open_multimap_table(HOLDERS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)?.take(max_cids) {
            let (k, vs) = row.map_err(db_err)?;
            for v in vs {
                out.push((k.value().to_owned(), v.map_err(db_err)?.value().to_owned()));
            }
        }
        Ok(out)
    }

    /// Every node's dissent count.
    pub fn node_dissents(&self) -> Result<Vec<(String, u64)>, StoreError> {
        let tx = self.read_tx()?;
        let table = tx.open_table(DISSENTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value().to_owned(), v.value()));
        }
        Ok(out)
    }

    /// Every node's recorded membership.
    pub fn node_memberships(&self) -> Result<Vec<(String, String)>, StoreError> {
        let tx = self.read_tx()?;
        let table = tx.open_table(NODES).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value().to_owned(), v.value().to_owned()));
        }
        Ok(out)
    }

    /// Every node's bound public key.
    pub fn node_keys(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.read_tx()?;
        let table = tx.open_table(NODE_KEYS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            out.push((k.value().to_owned(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Binds (`Some`) or forgets (`None`) a node's key, durably, before anyone acts on it.
    pub fn put_node_key(&self, node_id: &str, key: Option<&[u8]>) -> Result<(), StoreError> {
        let tx = self.write_tx()?;
        {
            let mut t = tx.open_table(NODE_KEYS).map_err(db_err)?;
            match key {
                Some(k) => t.insert(node_id, k).map(|_| ()).map_err(db_err)?,
                None => t.remove(node_id).map(|_| ()).map_err(db_err)?,
            }
        }
        tx.commit().map_err(db_err)
    }

    /// A job by exact ID.
    pub fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(JOBS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        t.get(id).map_err(db_err)?.map(|v| decode_record("job", v.value(), &blobs)).transpose()
    }

    /// Jobs whose ID starts with `prefix` (at most `limit`), for short-ID lookups.
    pub fn jobs_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<JobId>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(JOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.range(prefix..).map_err(db_err)? {
            let (k, _) = item.map_err(db_err)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push(JobId::from(k.value()));
        }
        Ok(out)
    }

    /// Jobs with this exact name.
    pub fn jobs_named(&self, name: &str) -> Result<Vec<JobId>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_multimap_table(JOB_NAMES).map_err(db_err)?;
        let mut out = Vec::new();
        for v in t.get(name).map_err(db_err)? {
            out.push(JobId::from(v.map_err(db_err)?.value()));
        }
        // A job named by its own ID is not in the index (stores written before that are).
        if !out.iter().any(|id| id.as_str() == name) {
            let jobs = tx.open_table(JOBS).map_err(db_err)?;
            let blobs = tx.open_table(BLOBS).map_err(db_err)?;
            if let Some(v) = jobs.get(name).map_err(db_err)?
                && decode_record::<Job>("job", v.value(), &blobs)?.name == name
            {
                out.push(JobId::from(name));
            }
        }
        Ok(out)
    }

    /// A page of jobs in creation order, after the `(create_time, id)` cursor if given, that
    /// `keep` accepts. It reads at most `MAX_LIST_SCAN` records, so a page of a rare filter may
    /// be short (even empty) with a cursor that continues after the last record read.
    pub fn list_jobs(
        &self,
        order: JobOrder,
        after: Option<JobCursor>,
        limit: usize,
        keep: &dyn Fn(&Job) -> bool,
    ) -> Result<(Vec<Job>, Option<JobCursor>), StoreError> {
        let tx = self.read_tx()?;
        let index = tx.open_table(JOBS_BY_CREATE).map_err(db_err)?;
        let jobs = tx.open_table(JOBS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        let mut out = Vec::new();
        let mut last = None;
        let range = match (&after, order) {
            (None, _) => index.range::<(i64, &str)>(..),
            (Some((t, id)), JobOrder::OldestFirst) => {
                index.range::<(i64, &str)>((std::ops::Bound::Excluded((*t, id.as_str())), std::ops::Bound::Unbounded))
            }
            (Some((t, id)), JobOrder::NewestFirst) => index.range::<(i64, &str)>(..(*t, id.as_str())),
        }
        .map_err(db_err)?;
        let mut iter: Box<dyn Iterator<Item = _>> =
            if order == JobOrder::NewestFirst { Box::new(range.rev()) } else { Box::new(range) };
        let mut more = false;
        for (scanned, item) in iter.by_ref().enumerate() {
            let (k, _) = item.map_err(db_err)?;
            let (t, id) = k.value();
            // A filter that matches little must not read the whole store in one request: the
            // page ends short, and its token continues the scan.
            if out.len() >= limit || scanned >= MAX_LIST_SCAN {
                more = true;
                break;
            }
            if let Some(v) = jobs.get(id).map_err(db_err)? {
                // One damaged record must not hide every other job: report it and go on.
                match decode_record::<Job>("job", v.value(), &blobs) {
                    Ok(job) if keep(&job) => out.push(job),
                    Ok(_) => {}
                    Err(e) => tracing::error!(job_id = id, "skipping an unreadable job record: {e}"),
                }
            }
            last = Some((t, id.to_owned()));
        }
        Ok((out, if more { last } else { None }))
    }

    /// Every job not yet in a terminal state, with its executions: what a restart resumes.
    pub fn active_jobs(&self) -> Result<Vec<(Job, Vec<Execution>, u64)>, StoreError> {
        let ids: Vec<String> = {
            let tx = self.read_tx()?;
            let t = tx.open_table(ACTIVE_JOBS).map_err(db_err)?;
            let mut ids = Vec::new();
            for item in t.iter().map_err(db_err)? {
                ids.push(item.map_err(db_err)?.0.value().to_owned());
            }
            ids
        };
        let mut out = Vec::new();
        for id in ids {
            if let Some(job) = self.job(&id)? {
                let execs = self.executions(&id)?;
                let seq = self.last_history_seq(&id)?;
                out.push((job, execs, seq));
            }
        }
        Ok(out)
    }

    /// An execution by ID.
    pub fn execution(&self, id: &ExecutionId) -> Result<Option<Execution>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(EXECUTIONS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        t.get(id.as_str()).map_err(db_err)?.map(|v| decode_record("execution", v.value(), &blobs)).transpose()
    }

    /// A job's executions, oldest first.
    pub fn executions(&self, job_id: &str) -> Result<Vec<Execution>, StoreError> {
        let tx = self.read_tx()?;
        let by_job = tx.open_multimap_table(EXECS_BY_JOB).map_err(db_err)?;
        let execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for id in by_job.get(job_id).map_err(db_err)? {
            let id = id.map_err(db_err)?;
            if let Some(v) = execs.get(id.value()).map_err(db_err)? {
                out.push(decode_record::<Execution>("execution", v.value(), &blobs)?);
            }
        }
        out.sort_by_key(|e| (e.create_time, e.id.0.clone()));
        Ok(out)
    }

    /// A job's history in order.
    pub fn history(&self, job_id: &str) -> Result<Vec<JobHistory>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(HISTORY).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.range((job_id, 0u64)..=(job_id, u64::MAX)).map_err(db_err)? {
            history::decode_row(item.map_err(db_err)?.1.value(), &mut out)?;
        }
        Ok(out)
    }

    /// A job as it was at `version`: the current job if that is its version, else the kept
    /// replaced version (`None` if there never was one or it is no longer kept).
    pub fn job_version(&self, job_id: &str, version: u64) -> Result<Option<Job>, StoreError> {
        if let Some(job) = self.job(job_id)?
            && job.version.max(1) == version
        {
            return Ok(Some(job));
        }
        let tx = self.read_tx()?;
        let t = tx.open_table(JOB_VERSIONS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        t.get((job_id, version)).map_err(db_err)?.map(|v| decode_record("job version", v.value(), &blobs)).transpose()
    }

    /// Every kept version of a job, oldest first, ending with the current one.
    pub fn job_versions(&self, job_id: &str) -> Result<Vec<Job>, StoreError> {
        let Some(current) = self.job(job_id)? else {
            return Ok(Vec::new());
        };
        let tx = self.read_tx()?;
        let t = tx.open_table(JOB_VERSIONS).map_err(db_err)?;
        let blobs = tx.open_table(BLOBS).map_err(db_err)?;
        let mut out = Vec::new();
        for item in t.range((job_id, 0u64)..(job_id, current.version)).map_err(db_err)? {
            out.push(decode_record("job version", item.map_err(db_err)?.1.value(), &blobs)?);
        }
        out.push(current);
        Ok(out)
    }

    /// The last history sequence number of a job (0 if it has none).
    pub fn last_history_seq(&self, job_id: &str) -> Result<u64, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(HISTORY).map_err(db_err)?;
        let last = t.range((job_id, 0u64)..=(job_id, u64::MAX)).map_err(db_err)?.next_back();
        Ok(match last {
            Some(item) => item.map_err(db_err)?.0.value().1,
            None => 0,
        })
    }

    /// Deletes up to `limit` finished jobs last changed before `cutoff` (Unix nanoseconds),
    /// oldest first, with everything stored for them: executions, evaluations, history, kept
    /// versions, Idempotency-Keys, and the blobs no other job uses. Jobs still in flight are
    /// never touched, however old. One transaction. Blocking.
    pub fn sweep(&self, cutoff: i64, limit: usize) -> Result<Sweep, StoreError> {
        let mut out = Sweep::default();
        let tx = self.write_tx()?;
        {
            let mut by_create = tx.open_table(JOBS_BY_CREATE).map_err(db_err)?;
            let active = tx.open_table(ACTIVE_JOBS).map_err(db_err)?;
            let mut jobs = tx.open_table(JOBS).map_err(db_err)?;
            let mut bw = BlobWriter {
                blobs: tx.open_table(BLOBS).map_err(db_err)?,
                refs: tx.open_multimap_table(BLOB_REFS).map_err(db_err)?,
                by_job: tx.open_multimap_table(JOB_BLOBS).map_err(db_err)?,
            };
            // A job's last change is never before its creation, so only jobs created before
            // the cutoff can go: the index's head. Old jobs still running are stepped over, a
            // bounded number of them per sweep.
            let mut doomed: Vec<(i64, String, String)> = Vec::new();
            let mut visited = 0;
            for item in by_create.range::<(i64, &str)>(..).map_err(db_err)? {
                let (k, _) = item.map_err(db_err)?;
                let (t, id) = k.value();
                visited += 1;
                if t >= cutoff || doomed.len() >= limit || visited > limit.saturating_mul(10) {
                    out.more = t < cutoff;
                    break;
                }
                if active.get(id).map_err(db_err)?.is_some() {
                    continue;
                }
                let name = match jobs.get(id).map_err(db_err)? {
                    Some(v) => match decode_record::<Job>("job", v.value(), &bw.blobs) {
                        Ok(job) if job.modify_time >= cutoff => continue,
                        Ok(job) => job.name,
                        // An unreadable record past retention goes like any other.
                        Err(_) => String::new(),
                    },
                    None => String::new(),
                };
                doomed.push((t, id.to_owned(), name));
            }
            let mut names = tx.open_multimap_table(JOB_NAMES).map_err(db_err)?;
            let mut execs = tx.open_table(EXECUTIONS).map_err(db_err)?;
            let mut execs_by_job = tx.open_multimap_table(EXECS_BY_JOB).map_err(db_err)?;
            let mut evals = tx.open_table(EVALUATIONS).map_err(db_err)?;
            let mut evals_by_job = tx.open_multimap_table(EVALS_BY_JOB).map_err(db_err)?;
            let mut history = tx.open_table(HISTORY).map_err(db_err)?;
            let mut versions = tx.open_table(JOB_VERSIONS).map_err(db_err)?;
            let mut keys = tx.open_table(IDEMPOTENCY).map_err(db_err)?;
            let mut keys_by_job = tx.open_multimap_table(KEYS_BY_JOB).map_err(db_err)?;
            let mut holders = tx.open_multimap_table(HOLDERS).map_err(db_err)?;
            for (t, id, name) in &doomed {
                let id = id.as_str();
                by_create.remove((*t, id)).map_err(db_err)?;
                jobs.remove(id).map_err(db_err)?;
                names.remove(name.as_str(), id).map_err(db_err)?;
                for e in drain_multimap(&mut execs_by_job, id)? {
                    if let Some(v) = execs.remove(e.as_str()).map_err(db_err)?
                        && let Ok(exec) = decode_record::<Execution>("execution", v.value(), &bw.blobs)
                        && let Some(cid) = exec.published_result.as_ref().and_then(|r| r.param_str("CID"))
                    {
                        // A hint for content routing only: if a kept execution of the same node
                        // published the same CID, asking every peer still finds it.
                        holders.remove(cid, exec.node_id.as_str()).map_err(db_err)?;
                    }
                    out.executions += 1;
                }
                for e in drain_multimap(&mut evals_by_job, id)? {
                    evals.remove(e.as_str()).map_err(db_err)?;
                }
                for k in drain_multimap(&mut keys_by_job, id)? {
                    keys.remove(k.as_str()).map_err(db_err)?;
                }
                history.retain_in((id, 0u64)..=(id, u64::MAX), |_, _| false).map_err(db_err)?;
                versions.retain_in((id, 0u64)..=(id, u64::MAX), |_, _| false).map_err(db_err)?;
                out.blobs += bw.release(id)?;
                out.jobs += 1;
            }
        }
        tx.commit().map_err(db_err)?;
        Ok(out)
    }

    /// The store file's size on disk, in bytes (0 when it cannot be read).
    pub fn file_bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Compacts the file when it has grown far past what it holds (after a large sweep):
    /// redb reuses freed pages but never gives them back to the file system. Waits for the
    /// reads and writes in progress and blocks new ones while it runs. Blocking. Returns the
    /// file's size before and after, or `None` when it was not worth it.
    pub fn compact_if_sparse(&self) -> Result<Option<(u64, u64)>, StoreError> {
        let before = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        if before < COMPACT_MIN_BYTES {
            return Ok(None);
        }
        let live = {
            let tx = self.write_tx()?;
            let stats = tx.stats().map_err(db_err)?;
            let live = stats.stored_bytes() + stats.metadata_bytes() + stats.fragmented_bytes();
            tx.abort().map_err(db_err)?;
            live
        };
        if before < live.saturating_mul(COMPACT_RATIO) {
            return Ok(None);
        }
        let mut guard = self.db.write().map_err(|_| StoreError::Db("the store lock is poisoned".into()))?;
        let db = guard.as_mut().ok_or_else(|| StoreError::Db("the store is being reopened; retry".into()))?;
        db.compact().map_err(db_err)?;
        drop(guard);
        Ok(Some((before, std::fs::metadata(&self.path).map_or(0, |m| m.len()))))
    }

    /// Bytes each table holds (name, stored, with its B-tree's metadata and fragmentation),
    /// largest first: what a job costs on disk, table by table.
    pub fn table_sizes(&self) -> Result<Vec<(String, u64, u64)>, StoreError> {
        use redb::{MultimapTableHandle, ReadableTableMetadata, TableHandle};
        let tx = self.read_tx()?;
        let row = |name: &str, s: redb::TableStats| {
            (name.to_owned(), s.stored_bytes(), s.stored_bytes() + s.metadata_bytes() + s.fragmented_bytes())
        };
        let mut out = Vec::new();
        for h in tx.list_tables().map_err(db_err)? {
            out.push(row(h.name(), tx.open_untyped_table(h.clone()).map_err(db_err)?.stats().map_err(db_err)?));
        }
        for h in tx.list_multimap_tables().map_err(db_err)? {
            let stats = tx.open_untyped_multimap_table(h.clone()).map_err(db_err)?.stats().map_err(db_err)?;
            out.push(row(h.name(), stats));
        }
        out.sort_by_key(|t| std::cmp::Reverse(t.2));
        Ok(out)
    }

    /// An evaluation by ID.
    pub fn evaluation(&self, id: &str) -> Result<Option<Evaluation>, StoreError> {
        let tx = self.read_tx()?;
        let t = tx.open_table(EVALUATIONS).map_err(db_err)?;
        t.get(id).map_err(db_err)?.map(|v| decode("evaluation", v.value())).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bacalhau_model::{JobState, JobStateType};

    fn job(id: &str, t: i64, state: JobStateType) -> Job {
        Job {
            id: JobId::from(id),
            name: format!("name-{id}"),
            create_time: t,
            state: JobState { state_type: state, message: String::new() },
            ..Default::default()
        }
    }

    #[test]
    fn commits_lists_and_tracks_active_jobs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.redb");
        {
            let store = JobStore::open(&path).expect("open");
            let mut b = WriteBatch::default();
            for i in 0..5 {
                b.put_job(job(&format!("j-{i}"), i, JobStateType::Pending), true);
            }
            store.commit(&b).expect("commit");
            let mut b = WriteBatch::default();
            b.put_job(job("j-1", 1, JobStateType::Completed), false);
            store.commit(&b).expect("commit");
        }
        // Reopen: the data and the active index survive.
        let store = JobStore::open(&path).expect("reopen");
        let active: Vec<String> = store.active_jobs().expect("active").into_iter().map(|(j, _, _)| j.id.0).collect();
        assert_eq!(active, vec!["j-0", "j-2", "j-3", "j-4"]);
        let (page, cursor) = store.list_jobs(JobOrder::NewestFirst, None, 2, &|_| true).expect("list");
        assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j-4", "j-3"]);
        let (page, cursor) = store.list_jobs(JobOrder::NewestFirst, cursor, 2, &|_| true).expect("list");
        assert_eq!(page.iter().map(|j| j.id.as_str()).collect::<Vec<_>>(), vec!["j-2", "j-1"]);
        let (page, cursor) = store.list_jobs(JobOrder::NewestFirst, cursor, 2, &|_| true).expect("list");
        assert_eq!(page.len(), 1);
        assert!(cursor.is_none());
        assert_eq!(store.jobs_with_prefix("j-", 10).expect("prefix").len(), 5);
        assert_eq!(store.jobs_named("name-j-3").expect("name"), vec![JobId::from("j-3")]);
    }

    #[test]
    fn replaced_versions_are_kept_up_to_a_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let mut j = job("j-1", 1, JobStateType::Completed);
        j.version = 1;
        let mut b = WriteBatch::default();
        b.put_job(j.clone(), true);
        store.commit(&b).expect("commit");
        // A client updating one job in a loop: the store keeps the newest versions only.
        let updates = MAX_KEPT_VERSIONS + 20;
        for _ in 0..updates {
            let mut b = WriteBatch::default();
            b.put_replaced_version(j.clone());
            j.version += 1;
            b.put_job(j.clone(), false);
            store.commit(&b).expect("commit");
        }
        let versions: Vec<u64> = store.job_versions("j-1").expect("versions").iter().map(|j| j.version).collect();
        let latest = updates + 1;
        assert_eq!(versions.len() as u64, MAX_KEPT_VERSIONS + 1, "the kept replaced ones and the current one");
        assert_eq!(versions.first().copied(), Some(latest - MAX_KEPT_VERSIONS));
        assert_eq!(versions.last().copied(), Some(latest));
        assert!(versions.windows(2).all(|w| w[0] + 1 == w[1]), "oldest first, none missing: {versions:?}");
        assert!(store.job_version("j-1", 1).expect("read").is_none(), "dropped");
        assert_eq!(store.job_version("j-1", latest).expect("read").map(|j| j.version), Some(latest));
        assert_eq!(store.job_version("j-1", latest - 1).expect("read").map(|j| j.version), Some(latest - 1));
    }

    /// A job whose task carries a `data:` URL of `len` bytes, as `wasm run` ships a module.
    fn inline_job(id: &str, t: i64, state: JobStateType, payload: &str) -> Job {
        use bacalhau_model::{InputSource, SpecConfig, Task};
        let mut j = job(id, t, state);
        j.modify_time = t;
        j.tasks = vec![Task {
            name: "main".into(),
            input_sources: vec![InputSource {
                source: SpecConfig::new("inline").with_param("URL", payload),
                alias: String::new(),
                target: "/wasm/main.wasm".into(),
            }],
            ..Default::default()
        }];
        j
    }

    fn execution_of(j: &Job, id: &str) -> Execution {
        Execution {
            id: ExecutionId::from(id),
            job_id: j.id.clone(),
            job: Some(Box::new(j.clone())),
            ..Default::default()
        }
    }

    fn count(store: &JobStore, table: TableDefinition<&[u8], &[u8]>) -> u64 {
        let tx = store.read_tx().expect("tx");
        redb::ReadableTableMetadata::len(&tx.open_table(table).expect("table")).expect("len")
    }

    fn count_multimap(store: &JobStore, table: MultimapTableDefinition<&str, &str>) -> u64 {
        let tx = store.read_tx().expect("tx");
        redb::ReadableTableMetadata::len(&tx.open_multimap_table(table).expect("table")).expect("len")
    }

    #[test]
    fn an_inline_payload_is_stored_once_and_read_back_as_submitted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let payload = format!("data:application/wasm;base64,{}", "QUJD".repeat(50_000));
        let mut b = WriteBatch::default();
        for i in 0..20 {
            let j = inline_job(&format!("j-{i}"), i, JobStateType::Completed, &payload);
            b.put_execution(execution_of(&j, &format!("e-{i}")));
            b.put_replaced_version(j.clone());
            b.put_job(j, true);
        }
        store.commit(&b).expect("commit");
        assert_eq!(count(&store, BLOBS), 1, "twenty jobs, their executions and versions share one copy");
        let size = std::fs::metadata(dir.path().join("jobs.redb")).expect("stat").len();
        assert!(size < 20 * payload.len() as u64 / 4, "the file holds about one copy: {size} bytes");
        let read = store.job("j-7").expect("read").expect("job");
        assert_eq!(read, inline_job("j-7", 7, JobStateType::Completed, &payload), "the job as submitted");
        let e = store.execution(&ExecutionId::from("e-7")).expect("read").expect("execution");
        assert_eq!(e.job.as_deref(), Some(&read));
        let (page, _) = store.list_jobs(JobOrder::OldestFirst, None, 3, &|_| true).expect("list");
        assert!(page.iter().all(|j| j.tasks[0].input_sources[0].source.param_str("URL") == Some(payload.as_str())));
        // A short one stays inline.
        let mut b = WriteBatch::default();
        b.put_job(inline_job("j-short", 100, JobStateType::Completed, "data:,hi"), true);
        store.commit(&b).expect("commit");
        assert_eq!(count(&store, BLOBS), 1);
    }

    #[test]
    fn a_sweep_deletes_old_finished_jobs_with_everything_of_theirs_and_nothing_else() {
        use bacalhau_model::{EvaluationId, HistoryType, TriggeredBy};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let old_payload = format!("data:,{}", "o".repeat(5000));
        let shared = format!("data:,{}", "s".repeat(5000));
        let mut b = WriteBatch::default();
        // Old and finished (one with a payload of its own, one sharing one with a kept job),
        // old but still running, and recent.
        let jobs = [
            inline_job("j-old", 10, JobStateType::Completed, &old_payload),
            inline_job("j-old-shared", 11, JobStateType::Failed, &shared),
            inline_job("j-running", 12, JobStateType::Running, &shared),
            inline_job("j-new", 1000, JobStateType::Completed, &shared),
        ];
        for j in &jobs {
            b.put_execution(execution_of(j, &format!("e-{}", j.id)));
            let ev_id = EvaluationId::from(format!("ev-{}", j.id).as_str());
            b.put_evaluation(crate::engine::evaluation(ev_id, j, TriggeredBy::JobRegister, 1));
            b.add_history(JobHistory {
                seq_num: 1,
                r#type: HistoryType::JobLevel,
                job_id: j.id.clone(),
                job_version: 1,
                node_id: Default::default(),
                execution_id: Default::default(),
                job_state: None,
                execution_state: None,
                new_revision: 1,
                comment: String::new(),
                event: Default::default(),
                time: String::new(),
            });
            b.put_idempotency_key(&format!("key-{}", j.id), j.id.as_str(), "ev");
            b.put_replaced_version(j.clone());
            b.put_job(j.clone(), true);
        }
        store.commit(&b).expect("commit");
        assert_eq!(count(&store, BLOBS), 2);
        let swept = store.sweep(500, 100).expect("sweep");
        assert_eq!(swept, Sweep { jobs: 2, executions: 2, blobs: 1, more: false });
        for gone in ["j-old", "j-old-shared"] {
            assert!(store.job(gone).expect("read").is_none(), "{gone}");
            assert!(store.executions(gone).expect("read").is_empty());
            assert!(store.history(gone).expect("read").is_empty());
            assert!(store.job_versions(gone).expect("read").is_empty());
            assert!(store.evaluation(&format!("ev-{gone}")).expect("read").is_none());
            assert!(store.idempotent_submission(&format!("key-{gone}")).expect("read").is_none());
            assert!(store.jobs_named(&format!("name-{gone}")).expect("read").is_empty());
        }
        for kept in ["j-running", "j-new"] {
            let j = store.job(kept).expect("read").expect("kept");
            assert_eq!(j.tasks[0].input_sources[0].source.param_str("URL"), Some(shared.as_str()), "blob intact");
            assert_eq!(store.executions(kept).expect("read").len(), 1);
            assert_eq!(store.history(kept).expect("read").len(), 1);
        }
        assert_eq!(count(&store, BLOBS), 1, "the blob only the deleted job used is gone; the shared one stays");
        let (page, _) = store.list_jobs(JobOrder::OldestFirst, None, 10, &|_| true).expect("list");
        assert_eq!(page.len(), 2);
        // A batch limit leaves the rest for the next sweep.
        let mut b = WriteBatch::default();
        for i in 0..5 {
            b.put_job(inline_job(&format!("j-b{i}"), 20 + i, JobStateType::Completed, "x"), true);
        }
        store.commit(&b).expect("commit");
        assert!(store.sweep(500, 3).expect("sweep").more);
        assert_eq!(store.sweep(500, 3).expect("sweep"), Sweep { jobs: 2, executions: 0, blobs: 0, more: false });
    }

    fn entry(job_id: &str, seq: u64, comment: &str) -> JobHistory {
        JobHistory {
            seq_num: seq,
            r#type: bacalhau_model::HistoryType::JobLevel,
            job_id: JobId::from(job_id),
            job_version: 1,
            node_id: Default::default(),
            execution_id: Default::default(),
            job_state: None,
            execution_state: None,
            new_revision: seq,
            comment: comment.into(),
            event: Default::default(),
            time: "2026-12-03T12:00:00Z".into(),
        }
    }

    fn history_rows(store: &JobStore, job_id: &str) -> usize {
        let tx = store.read_tx().expect("tx");
        let t = tx.open_table(HISTORY).expect("table");
        t.range((job_id, 0u64)..=(job_id, u64::MAX)).expect("range").count()
    }

    #[test]
    fn a_finished_jobs_history_is_folded_into_one_row_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let mut b = WriteBatch::default();
        b.put_job(job("j-1", 1, JobStateType::Running), true);
        b.put_job(job("j-2", 2, JobStateType::Running), true);
        for seq in 1..=5 {
            b.add_history(entry("j-1", seq, &format!("step {seq}")));
            b.add_history(entry("j-2", seq, "other"));
        }
        store.commit(&b).expect("commit");
        let all: Vec<JobHistory> = (1..=6).map(|s| entry("j-1", s, &format!("step {s}"))).collect();
        assert_eq!(history_rows(&store, "j-1"), 5, "one row per entry while the job runs");

        // The last entry arrives with the terminal state: folded in the same commit.
        let mut b = WriteBatch::default();
        b.put_job(job("j-1", 1, JobStateType::Completed), false);
        b.add_history(all[5].clone());
        store.commit(&b).expect("commit");
        assert_eq!(history_rows(&store, "j-1"), 1);
        assert_eq!(store.history("j-1").expect("history"), all);
        assert_eq!(store.last_history_seq("j-1").expect("seq"), 6);
        assert_eq!(history_rows(&store, "j-2"), 5, "another job's rows are left alone");
        let sizes = store.table_sizes().expect("sizes");
        let history = sizes.iter().find(|t| t.0 == "history").expect("the history table is listed");
        assert!(history.1 > 0 && history.2 >= history.1, "{history:?}");
        assert!(sizes.windows(2).all(|w| w[0].2 >= w[1].2), "largest first: {sizes:?}");

        // A rerun appends rows after the folded one; ending again folds them all.
        let mut b = WriteBatch::default();
        b.put_job(job("j-1", 1, JobStateType::Running), false);
        b.add_history(entry("j-1", 7, "rerun"));
        store.commit(&b).expect("commit");
        let mut expected = all.clone();
        expected.push(entry("j-1", 7, "rerun"));
        assert_eq!(store.history("j-1").expect("history"), expected);
        let mut b = WriteBatch::default();
        b.put_job(job("j-1", 1, JobStateType::Failed), false);
        b.add_history(entry("j-1", 8, "failed"));
        store.commit(&b).expect("commit");
        expected.push(entry("j-1", 8, "failed"));
        assert_eq!(history_rows(&store, "j-1"), 1);
        assert_eq!(store.history("j-1").expect("history"), expected);
        assert_eq!(store.last_history_seq("j-1").expect("seq"), 8);

        // Retention deletes the folded row with the job.
        assert_eq!(store.sweep(i64::MAX, 10).expect("sweep").jobs, 1, "only j-1 is finished");
        assert_eq!(history_rows(&store, "j-1"), 0);
    }

    #[test]
    fn a_job_named_by_its_id_is_found_by_name_without_an_index_entry_and_its_evaluations_go_when_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let mut by_id = job("j-1", 1, JobStateType::Running);
        by_id.name = "j-1".into();
        let named = job("j-2", 2, JobStateType::Running);
        let mut b = WriteBatch::default();
        for j in [&by_id, &named] {
            use bacalhau_model::{EvaluationId, TriggeredBy};
            b.put_job(j.clone(), true);
            let ev_id = EvaluationId::from(format!("ev-{}", j.id).as_str());
            b.put_evaluation(crate::engine::evaluation(ev_id, j, TriggeredBy::JobRegister, 1));
        }
        store.commit(&b).expect("commit");
        assert_eq!(count_multimap(&store, JOB_NAMES), 1, "only the job with a name of its own");
        assert_eq!(store.jobs_named("j-1").expect("name"), vec![JobId::from("j-1")]);
        assert_eq!(store.jobs_named("name-j-2").expect("name"), vec![JobId::from("j-2")]);
        assert_eq!(store.job_named(&by_id.namespace, "j-1").expect("name").map(|j| j.id), Some(JobId::from("j-1")));
        assert!(store.jobs_named("j-2").expect("name").is_empty(), "an ID is not a name unless the job says so");
        assert!(store.evaluation("ev-j-1").expect("read").is_some(), "kept while the job runs");

        by_id.state.state_type = JobStateType::Completed;
        let mut b = WriteBatch::default();
        b.put_job(by_id, false);
        store.commit(&b).expect("commit");
        assert!(store.evaluation("ev-j-1").expect("read").is_none(), "dropped when the job ended");
        assert!(store.evaluation("ev-j-2").expect("read").is_some());
    }

    #[test]
    fn a_history_too_long_to_fold_stays_in_rows_and_reads_the_same() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let long = "x".repeat(400 << 10);
        let entries: Vec<JobHistory> = (1..=4).map(|s| entry("j-1", s, &long)).collect();
        let mut b = WriteBatch::default();
        b.put_job(job("j-1", 1, JobStateType::Completed), true);
        for e in &entries {
            b.add_history(e.clone());
        }
        store.commit(&b).expect("commit");
        assert_eq!(history_rows(&store, "j-1"), 4, "1.6 MiB of history is not folded");
        assert_eq!(store.history("j-1").expect("history"), entries);
    }

    #[test]
    fn records_written_before_compression_still_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = JobStore::open(&dir.path().join("jobs.redb")).expect("open");
        let old_job = job("j-1", 1, JobStateType::Completed);
        let old_entry = entry("j-1", 1, "stored by an earlier version");
        {
            let tx = store.write_tx().expect("tx");
            {
                let mut jobs = tx.open_table(JOBS).expect("jobs");
                let mut body = vec![FORMAT_V1];
                serde_json::to_writer(&mut body, &old_job).expect("json");
                jobs.insert("j-1", body.as_slice()).expect("insert");
                let mut history = tx.open_table(HISTORY).expect("history");
                let mut body = vec![FORMAT_V1];
                serde_json::to_writer(&mut body, &old_entry).expect("json");
                history.insert(("j-1", 1), body.as_slice()).expect("insert");
            }
            tx.commit().expect("commit");
        }
        assert_eq!(store.job("j-1").expect("read"), Some(old_job));
        assert_eq!(store.history("j-1").expect("read"), vec![old_entry]);
    }

    #[test]
    fn unknown_format_is_reported_as_corrupt() {
        let e = decode::<Job>("job", &[9, b'{', b'}']).expect_err("corrupt");
        assert!(e.to_string().contains("format version 9"), "{e}");
    }
}
