//! The orchestrator's runtime: one task that owns the jobs in flight.
//!
//! Each round it takes everything waiting in its inboxes (submissions, stops, messages from
//! compute nodes, timer ticks), updates its in-memory view, runs the scheduler for every job
//! that changed, commits all resulting state changes in one store transaction, and only after
//! the commit sends messages to compute nodes and answers callers. Persisting before acting
//! is what makes a `kill -9` safe: whatever a node or user was told is already on disk.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bacalhau_model::{
    ComputeStateType, DesiredStateType, Evaluation, EvaluationId, EvaluationStatus, Event, Execution, ExecutionEvent,
    ExecutionId, ExecutionState, HistoryType, Job, JobHistory, JobId, JobState, JobStateType, NodeConnectionState,
    NodeId, NodeInfo, NodeMembershipState, NodeState, Resources, StateChange, SubmissionDefaults, TriggeredBy,
    ValidationError, format_rfc3339_nanos, prepare_submission,
};
use bacalhau_protocol::{
    Envelope, ExecutionDigest, ExecutionReport, FromCompute, LocalExecutionState, OrchestratorInbound, Outbound,
    PROTOCOL_VERSION, Phase, SendError, ToCompute,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::content::ContentIndex;
use crate::identity::NodeKeys;
use crate::scheduler::{self, Notify, Plan, SchedulerConfig};
use crate::selection::NodeView;
use crate::store::{JobOrder, JobStore, StoreError, WriteBatch};

/// How many commands may wait for the runtime. Submitters wait when it is full, which is the
/// back-pressure we want under a burst.
const COMMAND_CAPACITY: usize = 8192;
/// How many messages from compute nodes may wait.
const INBOUND_CAPACITY: usize = 65_536;
/// The most work items taken in one round: bounds the size of one transaction.
const MAX_ROUND: usize = 4096;
/// Job events kept for slow subscribers before they start missing some.
const EVENT_CAPACITY: usize = 16_384;

/// Orchestrator settings.
#[derive(Clone, Debug)]
pub struct OrchestratorConfig {
    /// The redb file.
    pub store_path: PathBuf,
    /// Defaults applied to submissions.
    pub defaults: SubmissionDefaults,
    /// Scheduler settings.
    pub scheduler: SchedulerConfig,
    /// A node that sends nothing for this long is disconnected and its work rescheduled.
    pub node_disconnect_timeout: Duration,
    /// New nodes wait as PENDING until an operator approves them (`node approve`).
    pub manual_node_approval: bool,
    /// How often timeouts and queued jobs are checked.
    pub housekeeping_interval: Duration,
    /// After a restart, how long nodes have to reconnect before their executions count as lost.
    pub restart_grace: Duration,
    /// Multiaddrs of the orchestrator node's own IPFS peer, offered as a provider of inputs.
    pub ipfs_addrs: Vec<String>,
    /// The compute node in this process, if any: its ID is reserved (no network node may use
    /// it) and it cannot be rejected or deleted.
    pub local_node: Option<NodeId>,
    /// Make execution and evaluation IDs from this seed instead of at random (for tests that
    /// replay a run).
    pub id_seed: Option<u64>,
}

impl OrchestratorConfig {
    /// Defaults with the store at `store_path`.
    pub fn new(store_path: PathBuf) -> Self {
        Self {
            store_path,
            defaults: SubmissionDefaults::default(),
            scheduler: SchedulerConfig::default(),
            node_disconnect_timeout: Duration::from_secs(30),
            manual_node_approval: false,
            housekeeping_interval: Duration::from_millis(500),
            restart_grace: Duration::from_secs(10),
            ipfs_addrs: Vec::new(),
            local_node: None,
            id_seed: None,
        }
    }
}

/// Why an orchestrator call failed, classified for the API's status codes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrchestratorError {
    /// The job spec is invalid (400).
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    /// Something is not supported (400).
    #[error("{0}")]
    Unsupported(String),
    /// Nothing has that ID (404).
    #[error("{what} {id} not found")]
    NotFound {
        /// What kind of thing.
        what: &'static str,
        /// The ID asked for.
        id: String,
    },
    /// A short ID matches several things (400).
    #[error("{prefix} matches several jobs ({}): give more of the ID", .matches.join(", "))]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// Some of the matches.
        matches: Vec<String>,
    },
    /// A spec submitted under an existing job's Name is the same as that job's (409).
    #[error("no changes detected for new job spec. Job Name: '{name}', Job Id: '{job_id}'")]
    Unchanged {
        /// The job's name.
        name: String,
        /// The job it would update.
        job_id: JobId,
    },
    /// The request conflicts with the job's state (409).
    #[error("{0}")]
    Conflict(String),
    /// The store failed (500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The orchestrator is stopping (503).
    #[error("the orchestrator is shutting down")]
    ShuttingDown,
}

/// The answer to a submission.
#[derive(Clone, Debug)]
pub struct SubmitResult {
    /// The new job's ID.
    pub job_id: JobId,
    /// The evaluation that schedules it.
    pub evaluation_id: EvaluationId,
    /// Things ignored or changed in the submission.
    pub warnings: Vec<String>,
}

/// The answer to a rerun.
#[derive(Clone, Debug)]
pub struct RerunResult {
    /// The job.
    pub job_id: JobId,
    /// The version the rerun made (the latest before it, plus one).
    pub job_version: u64,
    /// The evaluation that schedules it.
    pub evaluation_id: EvaluationId,
}

/// The answer to a stop.
#[derive(Clone, Debug)]
pub struct StopResult {
    /// The evaluation that stops it; empty if the job was already stopped.
    pub evaluation_id: String,
}

/// A job changed state.
#[derive(Clone, Debug)]
pub struct JobEvent {
    /// Which job.
    pub job_id: JobId,
    /// Its new state.
    pub state: JobStateType,
}

/// A job listing request.
#[derive(Clone, Debug, Default)]
pub struct ListJobsQuery {
    /// Only this namespace; `None` or `*` for all.
    pub namespace: Option<String>,
    /// Only jobs whose labels satisfy all of these.
    pub labels: Vec<bacalhau_model::LabelSelectorRequirement>,
    /// Page size.
    pub limit: usize,
    /// Where the previous page ended.
    pub next_token: Option<String>,
    /// Newest first.
    pub reverse: bool,
}

/// A page of jobs.
#[derive(Clone, Debug)]
pub struct ListJobsResult {
    /// The jobs.
    pub items: Vec<Job>,
    /// Token for the next page; empty at the end.
    pub next_token: String,
}

enum Command {
    Submit {
        job: Box<Job>,
        warnings: Vec<String>,
        /// The client's Idempotency-Key: a retried submission gets the job the first one made.
        key: Option<String>,
        /// Update a job of the same Name even when the spec has not changed.
        force: bool,
        reply: oneshot::Sender<Result<SubmitResult, OrchestratorError>>,
    },
    Rerun {
        job_id: JobId,
        /// 0 for the current version.
        version: u64,
        reason: String,
        reply: oneshot::Sender<Result<RerunResult, OrchestratorError>>,
    },
    Stop {
        job_id: JobId,
        reason: String,
        reply: oneshot::Sender<Result<StopResult, OrchestratorError>>,
    },
    Nodes {
        reply: oneshot::Sender<Vec<NodeState>>,
    },
    NodeAction {
        node: String,
        action: NodeAction,
        reply: oneshot::Sender<Result<String, OrchestratorError>>,
    },
}

/// What an operator does to a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeAction {
    /// PENDING (or REJECTED) → APPROVED: it may take work.
    Approve,
    /// → REJECTED: it gets no new work, and is refused when it registers.
    Reject,
    /// Forget it; if it comes back it is new again.
    Delete,
}

/// A cheap, cloneable handle to a running orchestrator.
#[derive(Clone, Debug)]
pub struct OrchestratorHandle {
    commands: mpsc::Sender<Command>,
    inbound: mpsc::Sender<OrchestratorInbound>,
    store: Arc<JobStore>,
    events: broadcast::Sender<JobEvent>,
    defaults: SubmissionDefaults,
    content: Arc<std::sync::RwLock<ContentIndex>>,
    keys: Arc<NodeKeys>,
    refusals: Arc<Refusals>,
}

/// Messages from compute nodes that were refused, by why: each is logged and counted and
/// changes nothing.
#[derive(Debug, Default)]
pub struct Refusals(std::sync::Mutex<BTreeMap<&'static str, u64>>);

impl Refusals {
    fn count(&self, why: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(why).or_default() += 1;
        }
    }

    /// How many of each kind so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()).unwrap_or_default()
    }
}

/// Why a node's message about an execution is refused.
const FOREIGN_EXECUTION: &str = "report on another node's execution";
/// Why a message from a node that has not registered (or was deleted) is refused.
const UNREGISTERED: &str = "message from a node that has not registered";
/// Why a message from a rejected node is refused.
const REJECTED: &str = "message from a rejected node";

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Submit { job, .. } => write!(f, "Submit({})", job.id),
            Command::Stop { job_id, .. } => write!(f, "Stop({job_id})"),
            Command::Rerun { job_id, version, .. } => write!(f, "Rerun({job_id}, {version})"),
            Command::Nodes { .. } => f.write_str("Nodes"),
            Command::NodeAction { node, action, .. } => write!(f, "NodeAction({node}, {action:?})"),
        }
    }
}

/// The running orchestrator.
#[derive(Debug)]
pub struct Orchestrator {
    handle: OrchestratorHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Orchestrator {
    /// Opens the store, loads the jobs in flight and starts the runtime.
    pub async fn start(config: OrchestratorConfig, cancel: CancellationToken) -> Result<Self, OrchestratorError> {
        let path = config.store_path.clone();
        let store = Arc::new(tokio::task::spawn_blocking(move || JobStore::open(&path)).await.map_err(join_err)??);
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let content = Arc::new(std::sync::RwLock::new(ContentIndex::new(config.ipfs_addrs.clone())));
        let (s, local) = (store.clone(), config.local_node.clone());
        let keys = Arc::new(tokio::task::spawn_blocking(move || NodeKeys::load(s, local)).await.map_err(join_err)??);
        let refusals = Arc::new(Refusals::default());
        let mut runtime = Runtime {
            refusals: refusals.clone(),
            idempotency: HashMap::new(),
            keys: keys.clone(),
            content: content.clone(),
            dissents: HashMap::new(),
            store: store.clone(),
            cfg: config.clone(),
            jobs: HashMap::new(),
            exec_index: HashMap::new(),
            on_node: HashMap::new(),
            nodes: BTreeMap::new(),
            memberships: HashMap::new(),
            dirty: BTreeSet::new(),
            origin: Instant::now(),
            mono: Duration::ZERO,
            ids: match config.id_seed {
                Some(seed) => Box::new(crate::ids::SeededIds::new(seed)),
                None => Box::new(crate::ids::RandomIds),
            },
            grace_checked: false,
            events: events.clone(),
        };
        runtime.load().await?;
        let handle = OrchestratorHandle {
            commands: commands_tx,
            inbound: inbound_tx,
            store,
            events,
            defaults: config.defaults.clone(),
            content,
            keys,
            refusals,
        };
        let task = tokio::spawn(runtime.run(commands_rx, inbound_rx, cancel));
        Ok(Self { handle, task })
    }

    /// A handle for callers and transports.
    pub fn handle(&self) -> OrchestratorHandle {
        self.handle.clone()
    }

    /// Decides which key may speak for which node ID (for the network transport).
    pub fn node_authority(&self) -> Arc<dyn bacalhau_protocol::NodeAuthority> {
        self.handle.keys.clone()
    }

    /// Waits for the runtime to stop (after its cancellation token fires).
    pub async fn join(self) {
        if let Err(e) = self.task.await {
            error!(error = %e, "orchestrator runtime ended abnormally");
        }
    }
}

mod apply;
mod history;
mod nodes;
mod versions;

use nodes::membership_name;

fn join_err(e: tokio::task::JoinError) -> OrchestratorError {
    OrchestratorError::Store(StoreError::Db(format!("store task failed: {e}")))
}

fn now_nanos() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl OrchestratorHandle {
    /// Validates and stores a job, and schedules it.
    pub async fn submit(&self, job: Job) -> Result<SubmitResult, OrchestratorError> {
        self.submit_once(job, None, false).await
    }

    /// Submits a job at most once per `key` (the HTTP `Idempotency-Key`): a client that
    /// retries after losing the answer gets the job its first attempt created. A spec whose
    /// Name and Namespace match a job's updates that job (a new version); an unchanged spec is
    /// refused unless `force`.
    pub async fn submit_once(
        &self,
        job: Job,
        key: Option<String>,
        force: bool,
    ) -> Result<SubmitResult, OrchestratorError> {
        let (job, warnings) = prepare_submission(job, JobId::generate(), now_nanos(), &self.defaults)?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Submit { job: Box::new(job), warnings, key, force, reply })
            .await
            .map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)?
    }

    /// Starts a job again as a new version, from version `version` (0: the current one).
    pub async fn rerun(&self, id: &str, version: u64, reason: &str) -> Result<RerunResult, OrchestratorError> {
        let job_id = self.resolve_job_id(id).await?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Rerun { job_id, version, reason: reason.to_owned(), reply })
            .await
            .map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)?
    }

    /// How `job` differs from the job of the same Name and Namespace, as it would be submitted
    /// (defaults applied), with the submission's warnings.
    pub async fn diff(&self, job: Job) -> Result<(String, Vec<String>), OrchestratorError> {
        let (job, warnings) = prepare_submission(job, JobId::generate(), now_nanos(), &self.defaults)?;
        self.read(move |s| {
            let current =
                versions::find_named(s, &job.namespace, &job.name)?.ok_or_else(|| OrchestratorError::NotFound {
                    what: "job named",
                    id: format!("{:?} in namespace {:?}", job.name, job.namespace),
                })?;
            Ok((bacalhau_model::spec_diff(&current, &job), warnings))
        })
        .await
    }

    /// Every kept version of a job, oldest first.
    pub async fn versions(&self, job_id: &JobId) -> Result<Vec<Job>, OrchestratorError> {
        let id = job_id.clone();
        self.read(move |s| Ok(s.job_versions(id.as_str())?)).await
    }

    /// A job as it was at `version`.
    pub async fn job_version(&self, job_id: &JobId, version: u64) -> Result<Job, OrchestratorError> {
        let id = job_id.clone();
        self.read(move |s| {
            s.job_version(id.as_str(), version)?.ok_or_else(|| versions::no_such_version(s, &id, version))
        })
        .await
    }

    /// Stops a job (by ID, unique ID prefix or name).
    pub async fn stop(&self, id: &str, reason: &str) -> Result<StopResult, OrchestratorError> {
        let job_id = self.resolve_job_id(id).await?;
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Stop { job_id, reason: reason.to_owned(), reply })
            .await
            .map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)?
    }

    /// Multiaddrs of IPFS peers to ask for `cid`, best first (content routing without a DHT).
    pub fn providers(&self, cid: &str) -> Vec<String> {
        self.content.read().map(|c| c.providers(cid)).unwrap_or_default()
    }

    /// The nodes the orchestrator knows.
    pub async fn nodes(&self) -> Result<Vec<NodeState>, OrchestratorError> {
        let (reply, rx) = oneshot::channel();
        self.commands.send(Command::Nodes { reply }).await.map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)
    }

    /// Approves, rejects or deletes the node whose ID starts with `node`; returns its full ID.
    pub async fn node_action(&self, node: &str, action: NodeAction) -> Result<String, OrchestratorError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::NodeAction { node: node.to_owned(), action, reply };
        self.commands.send(cmd).await.map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)?
    }

    /// Compute nodes' messages refused so far, by why.
    pub fn refusals(&self) -> BTreeMap<String, u64> {
        self.refusals.snapshot()
    }

    /// Where transports deliver compute nodes' messages.
    pub fn inbound(&self) -> mpsc::Sender<OrchestratorInbound> {
        self.inbound.clone()
    }

    /// Job state changes as they are committed.
    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&JobStore) -> Result<T, OrchestratorError> + Send + 'static,
    ) -> Result<T, OrchestratorError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store)).await.map_err(join_err)?
    }

    /// Finds a job by full ID, unique ID prefix (with or without `j-`), or name.
    pub async fn resolve_job_id(&self, id: &str) -> Result<JobId, OrchestratorError> {
        let id = id.trim().to_owned();
        self.read(move |s| {
            if id.is_empty() {
                return Err(OrchestratorError::NotFound { what: "job", id: "\"\"".into() });
            }
            if s.job(&id)?.is_some() {
                return Ok(JobId::from(id.as_str()));
            }
            let mut matches = s.jobs_with_prefix(&id, 5)?;
            if matches.is_empty() && !id.starts_with(JobId::PREFIX) {
                matches = s.jobs_with_prefix(&format!("{}{id}", JobId::PREFIX), 5)?;
            }
            if matches.is_empty() {
                matches = s.jobs_named(&id)?;
            }
            match matches.len() {
                0 => Err(OrchestratorError::NotFound { what: "job", id }),
                1 => Ok(matches.remove(0)),
                _ => Err(OrchestratorError::Ambiguous {
                    prefix: id,
                    matches: matches.into_iter().map(|m| m.0).collect(),
                }),
            }
        })
        .await
    }

    /// A job by ID, prefix or name.
    pub async fn get_job(&self, id: &str) -> Result<Job, OrchestratorError> {
        let job_id = self.resolve_job_id(id).await?;
        self.read(move |s| s.job(job_id.as_str())?.ok_or(OrchestratorError::NotFound { what: "job", id: job_id.0 }))
            .await
    }

    /// A job's executions, oldest first.
    pub async fn executions(&self, job_id: &JobId) -> Result<Vec<Execution>, OrchestratorError> {
        let id = job_id.clone();
        self.read(move |s| Ok(s.executions(id.as_str())?)).await
    }

    /// A job's history, in order.
    pub async fn history(&self, job_id: &JobId) -> Result<Vec<JobHistory>, OrchestratorError> {
        let id = job_id.clone();
        self.read(move |s| Ok(s.history(id.as_str())?)).await
    }

    /// One execution.
    pub async fn execution(&self, id: &ExecutionId) -> Result<Option<Execution>, OrchestratorError> {
        let id = id.clone();
        self.read(move |s| Ok(s.execution(&id)?)).await
    }

    /// A page of jobs.
    pub async fn list_jobs(&self, q: ListJobsQuery) -> Result<ListJobsResult, OrchestratorError> {
        self.read(move |s| {
            let after = match q.next_token.as_deref().filter(|t| !t.is_empty()) {
                None => None,
                Some(t) => {
                    let (time, id) = t.split_once('.').ok_or_else(|| {
                        OrchestratorError::Unsupported(format!("next_token {t:?} is not a token this server issued"))
                    })?;
                    let time = time.parse::<i64>().map_err(|_| {
                        OrchestratorError::Unsupported(format!("next_token {t:?} is not a token this server issued"))
                    })?;
                    Some((time, id.to_owned()))
                }
            };
            let order = if q.reverse { JobOrder::NewestFirst } else { JobOrder::OldestFirst };
            let ns = q.namespace.clone().filter(|n| !n.is_empty() && n != "*");
            let keep = |j: &Job| {
                ns.as_ref().is_none_or(|n| &j.namespace == n) && q.labels.iter().all(|l| l.matches(&j.labels))
            };
            let (items, cursor) = s.list_jobs(order, after, q.limit.max(1), &keep)?;
            Ok(ListJobsResult { items, next_token: cursor.map(|(t, id)| format!("{t}.{id}")).unwrap_or_default() })
        })
        .await
    }

    /// An evaluation.
    pub async fn evaluation(&self, id: &str) -> Result<Option<Evaluation>, OrchestratorError> {
        let id = id.to_owned();
        self.read(move |s| Ok(s.evaluation(&id)?)).await
    }
}

#[derive(Debug)]
struct Active {
    job: Job,
    execs: Vec<Execution>,
    history_seq: u64,
    retry_at: Option<i64>,
}

#[derive(Debug)]
struct NodeEntry {
    info: Option<NodeInfo>,
    link: Option<Arc<dyn Outbound>>,
    connected: bool,
    /// When it was last heard from, on the runtime's monotonic clock.
    last_seen: Duration,
    available: Resources,
    /// The last heartbeat's digests (the node's, ours) when they differed: a difference seen
    /// twice in a row is not a message in flight, and the node is asked to resync.
    mismatch: Option<(ExecutionDigest, ExecutionDigest)>,
}

enum Reply {
    Submit(oneshot::Sender<Result<SubmitResult, OrchestratorError>>, SubmitResult),
    Rerun(oneshot::Sender<Result<RerunResult, OrchestratorError>>, RerunResult),
    Stop(oneshot::Sender<Result<StopResult, OrchestratorError>>, StopResult),
    NodeAction(oneshot::Sender<Result<String, OrchestratorError>>, String),
}

#[derive(Default)]
struct Round {
    batch: WriteBatch,
    sends: Vec<(NodeId, ToCompute)>,
    replies: Vec<Reply>,
    events: Vec<JobEvent>,
    /// (namespace, name) of the jobs this round creates, which the store has not seen yet.
    named: HashMap<(String, String), JobId>,
}

/// Idempotency keys kept in memory (the store has them all).
const MAX_IDEMPOTENCY_CACHE: usize = 10_000;

struct Runtime {
    refusals: Arc<Refusals>,
    /// Recent Idempotency-Keys → (job ID, evaluation ID), including this round's.
    idempotency: HashMap<String, (String, String)>,
    keys: Arc<NodeKeys>,
    content: Arc<std::sync::RwLock<ContentIndex>>,
    /// Per node, results that disagreed with a verification quorum (its reputation).
    dissents: HashMap<NodeId, u32>,
    store: Arc<JobStore>,
    cfg: OrchestratorConfig,
    jobs: HashMap<JobId, Active>,
    exec_index: HashMap<ExecutionId, JobId>,
    /// The executions in memory on each node, so that what concerns one node (its heartbeat's
    /// digest, its reconciliation) costs its own work, not the whole cluster's.
    on_node: HashMap<NodeId, HashSet<ExecutionId>>,
    nodes: BTreeMap<NodeId, NodeEntry>,
    /// Every node's membership, persisted; nodes not here are new.
    memberships: HashMap<NodeId, NodeMembershipState>,
    dirty: BTreeSet<JobId>,
    /// The runtime's clock: it reads `origin` once per round into `mono`, and the handlers
    /// use `mono` (with the wall-clock `now` they are given), never the clock itself.
    origin: Instant,
    /// Time since `origin` at the start of this round (the orchestrator's start is 0).
    mono: Duration,
    /// Where new execution and evaluation IDs come from.
    ids: Box<dyn crate::ids::IdSource>,
    grace_checked: bool,
    events: broadcast::Sender<JobEvent>,
}

enum Work {
    Command(Command),
    Inbound(OrchestratorInbound),
}

impl Runtime {
    async fn load(&mut self) -> Result<(), OrchestratorError> {
        let store = self.store.clone();
        let active = tokio::task::spawn_blocking(move || store.active_jobs()).await.map_err(join_err)??;
        let store = self.store.clone();
        let members = tokio::task::spawn_blocking(move || store.node_memberships()).await.map_err(join_err)??;
        self.memberships = members
            .into_iter()
            .map(|(id, m)| {
                let m = match m.as_str() {
                    "PENDING" => NodeMembershipState::Pending,
                    "REJECTED" => NodeMembershipState::Rejected,
                    _ => NodeMembershipState::Approved,
                };
                (NodeId::from(id.as_str()), m)
            })
            .collect();
        let store = self.store.clone();
        let (holders, dissents) = tokio::task::spawn_blocking(move || {
            Ok::<_, StoreError>((store.content_holders()?, store.node_dissents()?))
        })
        .await
        .map_err(join_err)??;
        if let Ok(mut c) = self.content.write() {
            for (cid, node) in &holders {
                c.holds(&NodeId::from(node.as_str()), cid);
            }
        }
        self.dissents = dissents
            .into_iter()
            .map(|(n, c)| (NodeId::from(n.as_str()), u32::try_from(c).unwrap_or(u32::MAX)))
            .collect();
        self.jobs.clear();
        self.exec_index.clear();
        self.on_node.clear();
        // Keys of submissions that never reached the disk must not answer retries.
        self.idempotency.clear();
        for (job, execs, seq) in active {
            for e in &execs {
                self.exec_index.insert(e.id.clone(), job.id.clone());
                self.on_node.entry(e.node_id.clone()).or_default().insert(e.id.clone());
            }
            self.dirty.insert(job.id.clone());
            self.jobs.insert(job.id.clone(), Active { job, execs, history_seq: seq, retry_at: None });
        }
        if !self.jobs.is_empty() {
            info!(jobs = self.jobs.len(), "resuming jobs in flight");
        }
        Ok(())
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<OrchestratorInbound>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.cfg.housekeeping_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cmd_buf = Vec::with_capacity(MAX_ROUND);
        let mut in_buf = Vec::with_capacity(MAX_ROUND);
        loop {
            let mut housekeeping = false;
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                n = inbound.recv_many(&mut in_buf, MAX_ROUND) => if n == 0 { break },
                n = commands.recv_many(&mut cmd_buf, MAX_ROUND) => if n == 0 { break },
                _ = tick.tick() => housekeeping = true,
            }
            // Take whatever else is already waiting, so one transaction covers it all.
            while in_buf.len() < MAX_ROUND {
                match inbound.try_recv() {
                    Ok(m) => in_buf.push(m),
                    Err(_) => break,
                }
            }
            while cmd_buf.len() < MAX_ROUND {
                match commands.try_recv() {
                    Ok(c) => cmd_buf.push(c),
                    Err(_) => break,
                }
            }
            let work: Vec<Work> =
                in_buf.drain(..).map(Work::Inbound).chain(cmd_buf.drain(..).map(Work::Command)).collect();
            self.round(work, housekeeping).await;
        }
        debug!("orchestrator runtime stopped");
    }

    async fn round(&mut self, work: Vec<Work>, housekeeping: bool) {
        let now = now_nanos();
        self.mono = self.origin.elapsed();
        let mut round = Round::default();
        for w in work {
            match w {
                Work::Command(c) => self.handle_command(c, now, &mut round),
                Work::Inbound(m) => self.handle_inbound(m, now, &mut round),
            }
        }
        if housekeeping {
            self.housekeep(now);
        }
        self.evaluate(now, &mut round);

        let store = self.store.clone();
        let batch = std::mem::take(&mut round.batch);
        let committed = tokio::task::spawn_blocking(move || store.commit(&batch)).await;
        let result = match committed {
            Ok(r) => r,
            Err(e) => Err(StoreError::Db(format!("store task failed: {e}"))),
        };
        if let Err(e) = result {
            error!(error = %e, "could not commit orchestrator state; reloading from the store");
            for r in round.replies {
                match r {
                    Reply::Submit(tx, _) => drop(tx.send(Err(OrchestratorError::Store(StoreError::Db(e.to_string()))))),
                    Reply::Stop(tx, _) => drop(tx.send(Err(OrchestratorError::Store(StoreError::Db(e.to_string()))))),
                    Reply::Rerun(tx, _) => drop(tx.send(Err(OrchestratorError::Store(StoreError::Db(e.to_string()))))),
                    Reply::NodeAction(tx, _) => {
                        drop(tx.send(Err(OrchestratorError::Store(StoreError::Db(e.to_string())))))
                    }
                }
            }
            // redb refuses writes after a failed one until reopened; the state in memory has
            // changes that never reached the disk, so it is rebuilt from what did.
            let store = self.store.clone();
            match tokio::task::spawn_blocking(move || store.reopen()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => error!(error = %e, "could not reopen the orchestrator's store"),
                Err(e) => error!(error = %e, "reopening the orchestrator's store crashed"),
            }
            if let Err(e) = self.load().await {
                error!(error = %e, "could not reload orchestrator state");
            }
            return;
        }
        for (node_id, msg) in round.sends {
            self.send(&node_id, msg);
        }
        for r in round.replies {
            match r {
                Reply::Submit(tx, v) => drop(tx.send(Ok(v))),
                Reply::Stop(tx, v) => drop(tx.send(Ok(v))),
                Reply::Rerun(tx, v) => drop(tx.send(Ok(v))),
                Reply::NodeAction(tx, v) => drop(tx.send(Ok(v))),
            }
        }
        for e in round.events {
            // Nobody listening is fine.
            let _ = self.events.send(e);
        }
        // Jobs that are finished and have no live executions leave memory; the store has them.
        // Their executions leave the indexes with them: the cost is what leaves, not what stays.
        let mut left = Vec::new();
        self.jobs.retain(|_, a| {
            let done = a.job.state.state_type.is_terminal()
                && a.execs.iter().all(|e| e.compute_state.state_type.is_terminal());
            if done {
                left.extend(a.execs.iter().map(|e| (e.id.clone(), e.node_id.clone())));
            }
            !done
        });
        for (id, node) in left {
            self.exec_index.remove(&id);
            if let Some(on) = self.on_node.get_mut(&node) {
                on.remove(&id);
                if on.is_empty() {
                    self.on_node.remove(&node);
                }
            }
        }
    }

    fn send(&mut self, node_id: &NodeId, msg: ToCompute) {
        let Some(node) = self.nodes.get_mut(node_id) else {
            debug!(%node_id, "message for an unknown node dropped; it is re-sent when the node registers");
            return;
        };
        let Some(link) = &node.link else {
            return;
        };
        match link.send(msg) {
            Ok(()) => {}
            Err(SendError::Full) => {
                warn!(%node_id, "node's queue is full; outstanding messages are re-sent when it re-registers");
            }
            Err(SendError::Disconnected) => {
                node.link = None;
                node.connected = false;
                if let Ok(mut c) = self.content.write() {
                    c.node_down(node_id);
                }
            }
        }
    }

    fn handle_command(&mut self, cmd: Command, now: i64, round: &mut Round) {
        match cmd {
            Command::Submit { job, warnings, key, force, reply } => {
                if let Some(k) = &key {
                    let earlier = match self.idempotency.get(k) {
                        Some(r) => Some(r.clone()),
                        None => self.store.idempotent_submission(k).ok().flatten(),
                    };
                    if let Some((job_id, evaluation_id)) = earlier {
                        info!(%job_id, "a retried submission (same Idempotency-Key) gets the job it created");
                        let result = SubmitResult {
                            job_id: JobId(job_id),
                            evaluation_id: EvaluationId(evaluation_id),
                            warnings,
                        };
                        drop(reply.send(Ok(result)));
                        return;
                    }
                }
                let job = *job;
                match self.named_job(&job, round) {
                    Ok(Some(current)) => {
                        self.update(current, job, force, warnings, key, reply, now, round);
                        return;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        drop(reply.send(Err(e)));
                        return;
                    }
                }
                if job.name != job.id.0 {
                    round.named.insert((job.namespace.clone(), job.name.clone()), job.id.clone());
                }
                let eval = evaluation(self.ids.evaluation(), &job, TriggeredBy::JobRegister, now);
                let result = SubmitResult { job_id: job.id.clone(), evaluation_id: eval.id.clone(), warnings };
                if let Some(k) = key {
                    round.batch.put_idempotency_key(&k, job.id.as_str(), eval.id.as_str());
                    // Submissions in flight and just made; older ones are found in the store.
                    if self.idempotency.len() >= MAX_IDEMPOTENCY_CACHE {
                        self.idempotency.clear();
                    }
                    self.idempotency.insert(k, (job.id.0.clone(), eval.id.0.clone()));
                }
                round.batch.put_job(job.clone(), true);
                round.batch.put_evaluation(eval);
                let id = job.id.clone();
                self.jobs.insert(id.clone(), Active { job, execs: Vec::new(), history_seq: 0, retry_at: None });
                self.job_history(
                    &id,
                    now,
                    "Submission",
                    "Job submitted",
                    Some((JobStateType::Undefined, JobStateType::Pending)),
                    round,
                );
                round.events.push(JobEvent { job_id: id.clone(), state: JobStateType::Pending });
                self.dirty.insert(id);
                round.replies.push(Reply::Submit(reply, result));
            }
            Command::Rerun { job_id, version, reason, reply } => {
                self.rerun(&job_id, version, &reason, reply, now, round)
            }
            Command::Stop { job_id, reason, reply } => {
                let reason = if reason.trim().is_empty() { "job stopped by user".to_owned() } else { reason };
                if let Some(active) = self.jobs.get_mut(&job_id) {
                    if active.job.state.state_type.is_terminal() {
                        let state = active.job.state.state_type;
                        drop(reply.send(stop_terminal(state, &job_id)));
                        return;
                    }
                    let eval = evaluation(self.ids.evaluation(), &active.job, TriggeredBy::JobCancel, now);
                    let result = StopResult { evaluation_id: eval.id.0.clone() };
                    round.batch.put_evaluation(eval);
                    self.set_job_state(&job_id, JobStateType::Stopped, reason, now, round);
                    self.dirty.insert(job_id);
                    round.replies.push(Reply::Stop(reply, result));
                } else {
                    let answer = match self.store.job(job_id.as_str()) {
                        Ok(Some(job)) => stop_terminal(job.state.state_type, &job_id),
                        Ok(None) => Err(OrchestratorError::NotFound { what: "job", id: job_id.0 }),
                        Err(e) => Err(e.into()),
                    };
                    drop(reply.send(answer));
                }
            }
            Command::Nodes { reply } => {
                drop(reply.send(self.node_states()));
            }
            Command::NodeAction { node, action, reply } => {
                let known: BTreeSet<&NodeId> = self.nodes.keys().chain(self.memberships.keys()).collect();
                let matches: Vec<NodeId> =
                    known.into_iter().filter(|id| id.as_str().starts_with(node.as_str())).cloned().collect();
                let id = match matches.as_slice() {
                    [one] => one.clone(),
                    [] => {
                        drop(reply.send(Err(OrchestratorError::NotFound { what: "node", id: node })));
                        return;
                    }
                    _ => {
                        let ids: Vec<String> = matches.iter().map(ToString::to_string).collect();
                        let msg = format!("{node} matches several nodes ({}): give more of the ID", ids.join(", "));
                        drop(reply.send(Err(OrchestratorError::Conflict(msg))));
                        return;
                    }
                };
                if action != NodeAction::Approve && self.keys.is_reserved(&id) {
                    let msg = format!(
                        "node {id} is this orchestrator's own compute node; it cannot be rejected or deleted. \
                         To run the orchestrator alone, restart it with `bacalhau serve --orchestrator`"
                    );
                    drop(reply.send(Err(OrchestratorError::Conflict(msg))));
                    return;
                }
                match action {
                    NodeAction::Approve | NodeAction::Reject => {
                        let m = if action == NodeAction::Approve {
                            NodeMembershipState::Approved
                        } else {
                            NodeMembershipState::Rejected
                        };
                        self.memberships.insert(id.clone(), m);
                        round.batch.put_node_membership(id.as_str(), Some(membership_name(m)));
                        if m == NodeMembershipState::Rejected {
                            let reason = "this node was rejected by the orchestrator's operator".to_owned();
                            round.sends.push((id.clone(), ToCompute::Registered { accepted: false, reason }));
                        }
                    }
                    NodeAction::Delete => {
                        self.keys.forget(&id);
                        self.memberships.remove(&id);
                        self.nodes.remove(&id);
                        round.batch.put_node_membership(id.as_str(), None);
                    }
                }
                info!(node_id = %id, ?action, "node membership changed");
                // Approval may be what queued jobs wait for.
                self.dirty.extend(self.jobs.keys().cloned());
                round.replies.push(Reply::NodeAction(reply, id.to_string()));
            }
        }
    }

    fn housekeep(&mut self, now: i64) {
        let timeout = self.cfg.node_disconnect_timeout;
        let mut lost_nodes = Vec::new();
        for (id, n) in &mut self.nodes {
            // A dropped stream or a silent one (a partition can leave TCP half-open): both
            // count once the node has not been heard from for the timeout.
            if n.connected && self.mono.saturating_sub(n.last_seen) > timeout {
                warn!(node_id = %id, "compute node disconnected");
                n.connected = false;
                // The link stays: if the node is only slow (or is this process's own node, which
                // never re-dials), its next message brings it back through a re-registration.
                if let Ok(mut c) = self.content.write() {
                    c.node_down(id);
                }
                lost_nodes.push(id.clone());
            }
        }
        let grace_over = self.mono > self.cfg.restart_grace;
        let first_after_grace = grace_over && !self.grace_checked;
        self.grace_checked |= grace_over;
        for (id, a) in &mut self.jobs {
            let timeouts =
                a.job.task().is_some_and(|t| t.timeouts.total_timeout > 0 || t.timeouts.execution_timeout > 0);
            let retry = a.retry_at.is_some_and(|t| t <= now);
            let on_lost = a.execs.iter().any(|e| lost_nodes.contains(&e.node_id));
            if timeouts || retry || on_lost || first_after_grace {
                if retry {
                    a.retry_at = None;
                }
                self.dirty.insert(id.clone());
            }
        }
    }
}

fn evaluation(id: EvaluationId, job: &Job, trigger: TriggeredBy, now: i64) -> Evaluation {
    Evaluation {
        id,
        namespace: job.namespace.clone(),
        job_id: job.id.clone(),
        triggered_by: trigger,
        priority: job.priority,
        r#type: job.r#type,
        status: EvaluationStatus::Complete,
        comment: String::new(),
        wait_until: 0,
        create_time: now,
        modify_time: now,
    }
}

fn stop_terminal(state: JobStateType, job_id: &JobId) -> Result<StopResult, OrchestratorError> {
    if state == JobStateType::Stopped {
        Ok(StopResult { evaluation_id: String::new() })
    } else {
        Err(OrchestratorError::Conflict(format!(
            "cannot stop job {job_id}: it is already {}",
            state.to_string().to_lowercase()
        )))
    }
}
