//! The orchestrator's runtime: the one task that drives the [`Engine`] and does its I/O.
//!
//! Each round it takes everything waiting in its inboxes (submissions, stops, messages from
//! compute nodes, timer ticks), reads from the store what those inputs need, steps the engine
//! once, commits the step's writes in one store transaction, and only after the commit sends
//! messages to compute nodes, answers callers and publishes job events. Persisting before
//! acting is what makes a `kill -9` safe: whatever a node or user was told is already on disk.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bacalhau_model::{
    Evaluation, EvaluationId, Execution, ExecutionId, Job, JobHistory, JobId, JobStateType, JobType, NodeId,
    NodeMembershipState, NodeState, SubmissionDefaults, ValidationError, prepare_submission,
};
use bacalhau_protocol::{OrchestratorInbound, Outbound, SendError, ToCompute};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::engine::{Answer, Engine, Input, Now, Snapshot, Stored, Ticket, UploadGrant};
use crate::identity::NodeKeys;
use crate::metrics;
use crate::scheduler::SchedulerConfig;
use crate::store::{JobOrder, JobStore, StoreError};

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
    /// Finished jobs unchanged for this long are deleted with all their records (`None`
    /// keeps them forever). The default is 30 days.
    pub job_retention: Option<Duration>,
    /// Signs upload URLs for the `s3managed` publisher (`Publishers.Types.S3Managed`); `None`
    /// refuses such jobs at submission.
    pub managed_uploads: Option<Arc<dyn ManagedUploads>>,
}

/// Signs URLs with the orchestrator's S3 credentials for the `s3managed` publisher, so compute
/// nodes upload results without holding any (Bacalhau's `PreSignedURLGenerator`).
#[async_trait::async_trait]
pub trait ManagedUploads: Send + Sync + std::fmt::Debug {
    /// A URL to PUT the archive of `execution_id` (of `job_id`) to. The key is made from the
    /// two IDs only, so no execution can reach another's object.
    async fn put_url(&self, job_id: &str, execution_id: &str) -> Result<String, String>;
}

/// The default of [`OrchestratorConfig::job_retention`].
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often the metrics' gauges are taken from the engine.
const CENSUS_INTERVAL: Duration = Duration::from_secs(1);
/// How often the store is swept for jobs past retention.
const SWEEP_INTERVAL: Duration = Duration::from_secs(600);
/// Jobs deleted per sweep transaction; a backlog is worked off one batch per housekeeping
/// tick, between rounds, so no round waits long.
const SWEEP_BATCH: usize = 2000;

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
            job_retention: Some(DEFAULT_JOB_RETENTION),
            managed_uploads: None,
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
    /// Only jobs in this state.
    pub state: Option<JobStateType>,
    /// Only jobs of this type.
    pub job_type: Option<JobType>,
    /// Only jobs whose first task runs on this engine (`docker`, `wasm`).
    pub engine: Option<String>,
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
        /// The caller's span's W3C `traceparent`, when traces are exported.
        trace: Option<String>,
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
    Providers {
        cid: String,
        reply: oneshot::Sender<Vec<String>>,
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
    keys: Arc<NodeKeys>,
    refusals: Arc<Refusals>,
    /// Whether `s3managed` jobs can publish here.
    managed_uploads: bool,
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

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Command::Submit { job, .. } => write!(f, "Submit({})", job.id),
            Command::Stop { job_id, .. } => write!(f, "Stop({job_id})"),
            Command::Rerun { job_id, version, .. } => write!(f, "Rerun({job_id}, {version})"),
            Command::Nodes { .. } => f.write_str("Nodes"),
            Command::Providers { cid, .. } => write!(f, "Providers({cid})"),
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
        let (s, local) = (store.clone(), config.local_node.clone());
        let keys = Arc::new(tokio::task::spawn_blocking(move || NodeKeys::load(s, local)).await.map_err(join_err)??);
        let refusals = Arc::new(Refusals::default());
        let ids: Box<dyn crate::ids::IdSource> = match config.id_seed {
            Some(seed) => Box::new(crate::ids::SeededIds::new(seed)),
            None => Box::new(crate::ids::RandomIds),
        };
        let mut runtime = Runtime {
            engine: Engine::new(config.clone(), ids),
            store: store.clone(),
            links: HashMap::new(),
            keys: keys.clone(),
            refusals: refusals.clone(),
            events: events.clone(),
            waiting: HashMap::new(),
            next_ticket: 0,
            lost_links: Vec::new(),
            origin: Instant::now(),
            housekeeping_interval: config.housekeeping_interval,
            job_retention: config.job_retention,
            next_sweep: Instant::now(),
            swept: 0,
            managed_uploads: config.managed_uploads.clone(),
            gauges: metrics::Gauges::default(),
            next_census: Instant::now(),
        };
        runtime.load().await?;
        let handle = OrchestratorHandle {
            commands: commands_tx,
            inbound: inbound_tx,
            store,
            events,
            defaults: config.defaults.clone(),
            keys,
            refusals,
            managed_uploads: config.managed_uploads.is_some(),
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
        let job_type = job.r#type;
        let (job, warnings) = prepare_submission(job, JobId::generate(), now_nanos(), &self.defaults)
            .inspect_err(|_| metrics::submitted(job_type, false))?;
        let managed = job.tasks.iter().any(|t| t.publisher.is_type(bacalhau_model::PUBLISHER_S3_MANAGED));
        if managed && !self.managed_uploads {
            metrics::submitted(job_type, false);
            return Err(OrchestratorError::Unsupported(
                "Task.Publisher: s3managed needs a managed S3 bucket on the orchestrator, and this one has none: \
                 its operator sets Publishers.Types.S3Managed.Bucket and Region (and AWS credentials in its \
                 environment), or the job publishes with s3, ipfs or local"
                    .into(),
            ));
        }
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Submit {
                job: Box::new(job),
                warnings,
                key,
                force,
                trace: bacalhau_protocol::trace::traceparent(&tracing::Span::current()),
                reply,
            })
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
            let current = s.job_named(&job.namespace, &job.name)?.ok_or_else(|| OrchestratorError::NotFound {
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
        self.read(move |s| match s.job_version(id.as_str(), version)? {
            Some(job) => Ok(job),
            None => {
                let latest = s.job(id.as_str())?.map_or(1, |j| j.version);
                Err(crate::engine::no_such_version(latest, &id, version))
            }
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
    pub async fn providers(&self, cid: &str) -> Result<Vec<String>, OrchestratorError> {
        let (reply, rx) = oneshot::channel();
        let cmd = Command::Providers { cid: cid.to_owned(), reply };
        self.commands.send(cmd).await.map_err(|_| OrchestratorError::ShuttingDown)?;
        rx.await.map_err(|_| OrchestratorError::ShuttingDown)
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
                ns.as_ref().is_none_or(|n| &j.namespace == n)
                    && q.labels.iter().all(|l| l.matches(&j.labels))
                    && q.state.is_none_or(|st| j.state.state_type == st)
                    && q.job_type.is_none_or(|t| j.r#type == t)
                    && q.engine
                        .as_ref()
                        .is_none_or(|e| j.task().is_some_and(|t| t.engine.r#type.eq_ignore_ascii_case(e)))
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

/// A caller waiting for its answer.
enum Waiting {
    Submit(oneshot::Sender<Result<SubmitResult, OrchestratorError>>, JobType),
    Rerun(oneshot::Sender<Result<RerunResult, OrchestratorError>>),
    Stop(oneshot::Sender<Result<StopResult, OrchestratorError>>),
    Nodes(oneshot::Sender<Vec<NodeState>>),
    NodeAction(oneshot::Sender<Result<String, OrchestratorError>>),
    Providers(oneshot::Sender<Vec<String>>),
}

/// The engine's shell: it gathers inputs, reads what they need from the store, steps the
/// engine, commits the effects' writes, and only then sends, answers and publishes.
struct Runtime {
    engine: Engine,
    store: Arc<JobStore>,
    /// The open link to each connected node.
    links: HashMap<NodeId, Arc<dyn Outbound>>,
    keys: Arc<NodeKeys>,
    refusals: Arc<Refusals>,
    events: broadcast::Sender<JobEvent>,
    /// Callers waiting on this round's answers, by ticket.
    waiting: HashMap<Ticket, Waiting>,
    next_ticket: Ticket,
    /// Links found closed while sending: the engine hears of it next round.
    lost_links: Vec<NodeId>,
    /// The monotonic clock's origin (the runtime's start).
    origin: Instant,
    housekeeping_interval: Duration,
    job_retention: Option<Duration>,
    /// When the next retention sweep is due (on the monotonic clock).
    next_sweep: Instant,
    /// Jobs swept since the store was last considered for compaction.
    swept: u64,
    managed_uploads: Option<Arc<dyn ManagedUploads>>,
    gauges: metrics::Gauges,
    /// When the metrics' gauges are next taken from the engine (on the monotonic clock).
    next_census: Instant,
}

enum Work {
    Command(Command),
    Inbound(OrchestratorInbound),
}

/// What a command needs read from the store before the engine can act on it.
enum Lookup {
    None,
    /// A submission: its Idempotency-Key (unless the engine remembers it) and its Name.
    Submit {
        key: Option<String>,
        named: Option<(String, String)>,
    },
    /// A stop of a job not in flight.
    Job(JobId),
    /// A rerun of a job not in flight (`job` set), and of an older version.
    Rerun {
        job: Option<JobId>,
        version: Option<(JobId, u64)>,
    },
}

fn read_stored(store: &JobStore, lookup: &Lookup) -> Result<Stored, StoreError> {
    let mut stored = Stored::default();
    let with_seq = |job: Option<Job>| -> Result<(Option<Job>, u64), StoreError> {
        let seq = match &job {
            Some(j) => store.last_history_seq(j.id.as_str())?,
            None => 0,
        };
        Ok((job, seq))
    };
    match lookup {
        Lookup::None => {}
        Lookup::Submit { key, named } => {
            if let Some(k) = key {
                stored.idempotent = store.idempotent_submission(k)?;
            }
            if let Some((ns, name)) = named {
                (stored.job, stored.history_seq) = with_seq(store.job_named(ns, name)?)?;
            }
        }
        Lookup::Job(id) => stored.job = store.job(id.as_str())?,
        Lookup::Rerun { job, version } => {
            if let Some(id) = job {
                (stored.job, stored.history_seq) = with_seq(store.job(id.as_str())?)?;
            }
            if let Some((id, v)) = version {
                stored.version = store.job_version(id.as_str(), *v)?;
            }
        }
    }
    Ok(stored)
}

impl Snapshot {
    /// Reads the engine's starting state from the store. Blocking.
    pub fn read(store: &JobStore) -> Result<Snapshot, StoreError> {
        let memberships = store
            .node_memberships()?
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
        Ok(Snapshot {
            active: store.active_jobs()?,
            memberships,
            holders: store
                .content_holders(crate::content::MAX_CIDS)?
                .into_iter()
                .map(|(cid, n)| (cid, NodeId::from(n.as_str())))
                .collect(),
            dissents: store
                .node_dissents()?
                .into_iter()
                .map(|(n, c)| (NodeId::from(n.as_str()), u32::try_from(c).unwrap_or(u32::MAX)))
                .collect(),
        })
    }
}

impl Runtime {
    async fn load(&mut self) -> Result<(), OrchestratorError> {
        let store = self.store.clone();
        let snapshot = tokio::task::spawn_blocking(move || Snapshot::read(&store)).await.map_err(join_err)??;
        self.engine.restore(snapshot);
        Ok(())
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut inbound: mpsc::Receiver<OrchestratorInbound>,
        cancel: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(self.housekeeping_interval);
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
            if housekeeping {
                self.sweep().await;
            }
            self.census();
        }
        debug!("orchestrator runtime stopped");
    }

    /// Sets the metrics' gauges from the engine at most once a second: the census walks every
    /// job in flight, too much for every round but nothing once a second.
    fn census(&mut self) {
        let now = Instant::now();
        if now < self.next_census {
            return;
        }
        self.next_census = now + CENSUS_INTERVAL;
        let census = self.engine.census();
        self.gauges.set(&census, self.store.file_bytes());
    }

    /// Deletes one batch of jobs past retention when a sweep is due, and compacts the store
    /// after a large one. Between rounds, so it never races the engine's reads and writes.
    async fn sweep(&mut self) {
        let Some(retention) = self.job_retention else { return };
        if Instant::now() < self.next_sweep {
            return;
        }
        let cutoff = now_nanos().saturating_sub(i64::try_from(retention.as_nanos()).unwrap_or(i64::MAX));
        let store = self.store.clone();
        let swept = tokio::task::spawn_blocking(move || store.sweep(cutoff, SWEEP_BATCH)).await.map_err(join_err);
        match swept.and_then(|r| r.map_err(OrchestratorError::Store)) {
            Ok(s) => {
                if s.jobs > 0 {
                    info!(jobs = s.jobs, executions = s.executions, blobs = s.blobs, "deleted jobs past retention");
                }
                self.swept += s.jobs;
                // A short retention is swept often enough to hold to it.
                let interval = SWEEP_INTERVAL.min(retention / 4).max(self.housekeeping_interval);
                self.next_sweep = if s.more { Instant::now() } else { Instant::now() + interval };
                if !s.more && self.swept >= SWEEP_BATCH as u64 {
                    self.swept = 0;
                    let store = self.store.clone();
                    match tokio::task::spawn_blocking(move || store.compact_if_sparse()).await {
                        Ok(Ok(Some((before, after)))) => info!(before, after, "compacted the job store"),
                        Ok(Ok(None)) => {}
                        Ok(Err(e)) => warn!(error = %e, "cannot compact the job store"),
                        Err(e) => warn!(error = %e, "compacting the job store crashed"),
                    }
                }
            }
            Err(e) => {
                warn!(error = %e, "cannot delete jobs past retention; trying again later");
                self.next_sweep = Instant::now() + SWEEP_INTERVAL;
            }
        }
    }

    fn ticket(&mut self, waiting: Waiting) -> Ticket {
        self.next_ticket += 1;
        self.waiting.insert(self.next_ticket, waiting);
        self.next_ticket
    }

    /// The engine's input for a piece of work, with what it needs read from the store (`None`
    /// for work that only the runtime handles).
    fn input(&mut self, work: Work) -> (Option<Input>, Lookup) {
        match work {
            Work::Inbound(OrchestratorInbound::Connected { node_id, link }) => {
                self.links.insert(node_id.clone(), link);
                (Some(Input::Connected(node_id)), Lookup::None)
            }
            Work::Inbound(OrchestratorInbound::Disconnected { node_id }) => {
                // Work is rescheduled only after the disconnect timeout, so a brief reconnect
                // loses nothing.
                self.links.remove(&node_id);
                (None, Lookup::None)
            }
            Work::Inbound(OrchestratorInbound::Message(env)) => (Some(Input::Message(env)), Lookup::None),
            Work::Command(Command::Submit { job, warnings, key, force, trace, reply }) => {
                let lookup = Lookup::Submit {
                    key: key.clone().filter(|k| !self.engine.remembers_key(k)),
                    named: (job.name != job.id.0).then(|| (job.namespace.clone(), job.name.clone())),
                };
                let ticket = self.ticket(Waiting::Submit(reply, job.r#type));
                (Some(Input::Submit { ticket, job, warnings, key, force, stored: Stored::default(), trace }), lookup)
            }
            Work::Command(Command::Rerun { job_id, version, reason, reply }) => {
                let lookup = Lookup::Rerun {
                    job: (!self.engine.is_active(&job_id)).then(|| job_id.clone()),
                    version: (version != 0).then(|| (job_id.clone(), version)),
                };
                let ticket = self.ticket(Waiting::Rerun(reply));
                (Some(Input::Rerun { ticket, job_id, version, reason, stored: Stored::default() }), lookup)
            }
            Work::Command(Command::Stop { job_id, reason, reply }) => {
                let lookup = if self.engine.is_active(&job_id) { Lookup::None } else { Lookup::Job(job_id.clone()) };
                let ticket = self.ticket(Waiting::Stop(reply));
                (Some(Input::Stop { ticket, job_id, reason, stored: Stored::default() }), lookup)
            }
            Work::Command(Command::Nodes { reply }) => {
                let ticket = self.ticket(Waiting::Nodes(reply));
                (Some(Input::Nodes { ticket }), Lookup::None)
            }
            Work::Command(Command::NodeAction { node, action, reply }) => {
                let ticket = self.ticket(Waiting::NodeAction(reply));
                (Some(Input::NodeAction { ticket, node, action }), Lookup::None)
            }
            Work::Command(Command::Providers { cid, reply }) => {
                let ticket = self.ticket(Waiting::Providers(reply));
                (Some(Input::Providers { ticket, cid }), Lookup::None)
            }
        }
    }

    async fn round(&mut self, work: Vec<Work>, housekeeping: bool) {
        let now = Now { wall: now_nanos(), mono: self.origin.elapsed() };
        let mut inputs: Vec<Input> = self.lost_links.drain(..).map(Input::LinkLost).collect();
        let mut lookups = Vec::new();
        for w in work {
            let (input, lookup) = self.input(w);
            if let Some(input) = input {
                if !matches!(lookup, Lookup::None) {
                    lookups.push((inputs.len(), lookup));
                }
                inputs.push(input);
            }
        }
        if !lookups.is_empty() {
            // The round's store reads, in one blocking task; most rounds have none.
            let store = self.store.clone();
            let read = tokio::task::spawn_blocking(move || {
                lookups.into_iter().map(|(i, l)| (i, read_stored(&store, &l))).collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            let mut failed = Vec::new();
            for (i, found) in read {
                match found {
                    Ok(found) => match &mut inputs[i] {
                        Input::Submit { stored, .. } | Input::Rerun { stored, .. } | Input::Stop { stored, .. } => {
                            *stored = found;
                        }
                        _ => {}
                    },
                    Err(e) => failed.push((i, e)),
                }
            }
            // An input whose read failed is answered with the error and not acted on.
            for (i, e) in failed.into_iter().rev() {
                let ticket = match inputs.remove(i) {
                    Input::Submit { ticket, .. } | Input::Rerun { ticket, .. } | Input::Stop { ticket, .. } => ticket,
                    _ => continue,
                };
                self.answer(ticket, None, Some(&e));
            }
        }
        if housekeeping {
            inputs.push(Input::Tick);
        }
        let stepping = Instant::now();
        let mut fx = self.engine.step(inputs, now);
        let step_time = stepping.elapsed();

        let store = self.store.clone();
        let batch = std::mem::take(&mut fx.batch);
        let committing = Instant::now();
        let committed = tokio::task::spawn_blocking(move || store.commit(&batch)).await;
        metrics::round(step_time, committing.elapsed());
        let result = match committed {
            Ok(r) => r,
            Err(e) => Err(StoreError::Db(format!("store task failed: {e}"))),
        };
        for why in &fx.refused {
            self.refusals.count(why);
            metrics::refused(why);
        }
        if let Err(e) = result {
            error!(error = %e, "could not commit orchestrator state; reloading from the store");
            for (ticket, answer) in fx.answers {
                self.answer(ticket, Some(answer), Some(&e));
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
        metrics::record(&fx.measures);
        for id in fx.forgotten {
            self.keys.forget(&id);
            self.links.remove(&id);
        }
        for (node_id, mut msg) in fx.sends {
            // A traced job's placement is a span of its trace, and the node's spans its children.
            if let ToCompute::AskForBid { execution, trace: Some(parent), .. } = &mut msg {
                let span = tracing::info_span!(
                    "schedule",
                    job_id = %execution.job_id,
                    execution_id = %execution.id,
                    node_id = %node_id
                );
                bacalhau_protocol::trace::adopt(&span, parent);
                if let Some(child) = bacalhau_protocol::trace::traceparent(&span) {
                    *parent = child;
                }
            }
            self.send(&node_id, msg);
        }
        for grant in fx.uploads {
            self.sign_upload(grant);
        }
        for t in fx.transitions {
            match t.execution {
                Some((execution_id, node_id)) => debug!(
                    job_id = %t.job_id, %execution_id, %node_id, from = t.from, to = t.to,
                    "execution state changed: {}", t.message
                ),
                None => debug!(job_id = %t.job_id, from = t.from, to = t.to, "job state changed: {}", t.message),
            }
        }
        for (ticket, answer) in fx.answers {
            self.answer(ticket, Some(answer), None);
        }
        for e in fx.events {
            // Nobody listening is fine.
            let _ = self.events.send(e);
        }
    }

    /// Hands a caller its answer; `failed` (a store error) replaces any answer that was not
    /// already a refusal, or stands for the answer when there is none.
    fn answer(&mut self, ticket: Ticket, answer: Option<Answer>, failed: Option<&StoreError>) {
        let Some(waiting) = self.waiting.remove(&ticket) else {
            return;
        };
        let err = || OrchestratorError::Store(StoreError::Db(failed.map(ToString::to_string).unwrap_or_default()));
        let answer = match answer {
            Some(a) if failed.is_none() || a.is_err() => Some(a),
            _ => None,
        };
        // A dropped receiver (the caller gave up) is fine.
        match (waiting, answer) {
            (Waiting::Submit(tx, ty), Some(Answer::Submit(r))) => {
                metrics::submitted(ty, r.is_ok());
                drop(tx.send(r));
            }
            (Waiting::Rerun(tx), Some(Answer::Rerun(r))) => drop(tx.send(r)),
            (Waiting::Stop(tx), Some(Answer::Stop(r))) => drop(tx.send(r)),
            (Waiting::Nodes(tx), Some(Answer::Nodes(r))) => drop(tx.send(r)),
            (Waiting::NodeAction(tx), Some(Answer::NodeAction(r))) => drop(tx.send(r)),
            (Waiting::Providers(tx), Some(Answer::Providers(r))) => drop(tx.send(r)),
            (Waiting::Submit(tx, ty), _) => {
                metrics::submitted(ty, false);
                drop(tx.send(Err(err())));
            }
            (Waiting::Rerun(tx), _) => drop(tx.send(Err(err()))),
            (Waiting::Stop(tx), _) => drop(tx.send(Err(err()))),
            (Waiting::NodeAction(tx), _) => drop(tx.send(Err(err()))),
            // Reads: without an answer the caller sees the runtime as gone.
            (Waiting::Nodes(_) | Waiting::Providers(_), _) => {}
        }
    }

    /// Signs a granted upload off the loop (a credential refresh may wait on the network) and
    /// sends the URL to the node; a lost answer is asked for again by the node.
    fn sign_upload(&self, grant: UploadGrant) {
        let (Some(signer), Some(link)) = (self.managed_uploads.clone(), self.links.get(&grant.node_id).cloned()) else {
            return;
        };
        tokio::spawn(async move {
            let url = signer.put_url(grant.job_id.as_str(), grant.execution_id.as_str()).await;
            if let Err(why) = &url {
                warn!(execution_id = %grant.execution_id, "cannot sign an s3managed upload: {why}");
            }
            if let Err(e) = link.send(ToCompute::ManagedUploadUrl { execution_id: grant.execution_id, url }) {
                debug!(node_id = %grant.node_id, "upload URL not sent ({e}); the node asks again");
            }
        });
    }

    fn send(&mut self, node_id: &NodeId, msg: ToCompute) {
        let Some(link) = self.links.get(node_id) else {
            debug!(%node_id, "message for a node without a link dropped; the digest comparison or its registration repairs it");
            return;
        };
        match link.send(msg) {
            Ok(()) => {}
            Err(SendError::Full) => {
                warn!(%node_id, "node's queue is full; the next digest comparison repairs what is lost");
            }
            Err(SendError::Disconnected) => {
                self.links.remove(node_id);
                self.lost_links.push(node_id.clone());
            }
        }
    }
}
