//! The compute node's runtime: the one task that drives the [`Engine`] and does its I/O.
//!
//! Each round it takes the orchestrator's messages and the runs that ended, checks each ask
//! against this node's engines, inputs and publishers (the verdict goes to the engine), steps
//! the engine, persists the records it changed, and only then sends, starts runs, cancels
//! runs and asks the bid probe.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bacalhau_executor::{Executor, RunRequest};
use bacalhau_model::{
    BuildVersionInfo, ComputeNodeInfo, Execution, ExecutionId, NodeId, NodeInfo, NodeType, Resources, ResourcesWire,
};
use bacalhau_protocol::{ComputeEndpoint, Envelope, FromCompute, LocalExecutionState, ToCompute};
use bacalhau_storage::{InputProvider, Publisher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use crate::engine::{Engine, Input, Start, job_resources_of, quote};
use crate::logs::{LogLine, stream_files};
use crate::run::RunPlan;
use crate::store::{ExecutionStore, Outcome};

/// How many finished runs and progress events may wait for the node's runtime.
const INTERNAL_CAPACITY: usize = 65_536;
/// The most messages handled per round (and so per store transaction).
const MAX_ROUND: usize = 4096;
/// Lines buffered between a log reader and its consumer.
const LOG_BUFFER: usize = 1024;
/// Trace contexts kept for executions asked for and not yet started.
const MAX_TRACES: usize = 65_536;

/// Compute node settings.
#[derive(Clone, Debug)]
pub struct ComputeConfig {
    /// This node's ID.
    pub node_id: NodeId,
    /// Where the store, inputs and results live.
    pub data_dir: PathBuf,
    /// Everything the node gives to jobs.
    pub capacity: Resources,
    /// Labels for constraints.
    pub labels: BTreeMap<String, String>,
    /// How often it tells the orchestrator it is alive.
    pub heartbeat_interval: Duration,
    /// Test-only: no heartbeats are sent in this window after start (to prove the node comes
    /// back after the orchestrator marks it disconnected).
    pub silent_heartbeats: Option<(Duration, Duration)>,
    /// Test fault: ignore this many bid acceptances, as if they were lost in transit.
    pub drop_bid_acceptances: u32,
    /// This build.
    pub version: BuildVersionInfo,
    /// Multiaddrs of the node's IPFS peer, advertised at registration.
    pub ipfs_addrs: Vec<String>,
    /// Base URL of the node's API, advertised so the orchestrator can fetch live logs.
    pub api_url: String,
    /// What it charges (none: free).
    pub prices: Option<bacalhau_model::Prices>,
    /// Which jobs it bids for.
    pub bid_policy: BidPolicy,
}

impl ComputeConfig {
    /// A node with no labels, prices, bid rules or faults, heartbeating every 5 s: the
    /// settings a caller does not name.
    pub fn new(node_id: NodeId, data_dir: PathBuf, capacity: Resources) -> Self {
        Self {
            node_id,
            data_dir,
            capacity,
            labels: BTreeMap::new(),
            heartbeat_interval: Duration::from_secs(5),
            silent_heartbeats: None,
            drop_bid_acceptances: 0,
            version: BuildVersionInfo::default(),
            ipfs_addrs: Vec::new(),
            api_url: String::new(),
            prices: None,
            bid_policy: BidPolicy::default(),
        }
    }
}

/// An outside check on a job: `Err(reason)` declines it. It may block (it runs a program or
/// asks a URL); the compute node calls it on a blocking thread, off its loop.
pub type BidProbe = Arc<dyn Fn(&bacalhau_model::Job) -> Result<(), String> + Send + Sync>;

/// A compute node's rules for which jobs it bids on (beyond what it can run at all), as
/// Bacalhau's job-selection flags.
#[derive(Clone, Default)]
pub struct BidPolicy {
    /// Decline jobs that ask for any network.
    pub reject_networked: bool,
    /// Decline jobs whose IPFS inputs are not already in this node's store.
    pub local_inputs_only: bool,
    /// An outside check that may veto a job: given the job, `Err(reason)` declines it.
    pub probe: Option<BidProbe>,
    /// Why jobs on the host's network (`Host`, `Full`) are declined, if they are: on a node
    /// whose API has no authentication such a job could drive the API from inside.
    pub host_network_refusal: Option<String>,
}

impl std::fmt::Debug for BidPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BidPolicy")
            .field("reject_networked", &self.reject_networked)
            .field("local_inputs_only", &self.local_inputs_only)
            .field("probe", &self.probe.is_some())
            .field("host_network_refusal", &self.host_network_refusal)
            .finish()
    }
}

/// A compute node failure at start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComputeError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The orchestrator is unreachable.
    #[error("cannot reach the orchestrator: {0}")]
    Transport(String),
}

/// A handle to the running node: its info, and its executions' logs.
#[derive(Clone, Debug)]
pub struct ComputeHandle {
    info: Arc<RwLock<NodeInfo>>,
    registered: Arc<std::sync::atomic::AtomicBool>,
    states: Arc<RwLock<HashMap<ExecutionId, LocalExecutionState>>>,
    data_dir: PathBuf,
    folders: Arc<crate::folders::FolderPool>,
}

impl ComputeHandle {
    /// Whether the orchestrator accepted this node's registration on the current link (false
    /// while the link is down, refused, or being re-established).
    pub fn registered(&self) -> bool {
        self.registered.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// What the node advertises.
    pub fn node_info(&self) -> NodeInfo {
        self.info.read().map(|i| i.clone()).unwrap_or_default()
    }

    /// Whether this node holds the execution.
    pub fn has_execution(&self, id: &ExecutionId) -> bool {
        self.states.read().is_ok_and(|s| s.contains_key(id))
    }

    /// Whether this node has the execution's output: it holds the execution, or ran it and
    /// its result folder is still on disk (an execution is forgotten once acknowledged).
    pub fn has_logs(&self, id: &ExecutionId) -> bool {
        self.has_execution(id)
            || execution_folder(&self.data_dir, id).is_some_and(|dir| RunPlan::results_dir(&dir).is_dir())
    }

    /// The execution's state on this node, if it holds it.
    pub fn execution_state(&self, id: &ExecutionId) -> Option<LocalExecutionState> {
        self.states.read().ok().and_then(|s| s.get(id).copied())
    }

    /// The execution's output as lines; with `follow`, until it ends.
    pub fn logs(&self, id: &ExecutionId, follow: bool) -> mpsc::Receiver<LogLine> {
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        // No folder, no lines: the channel closes at once.
        let Some(dir) = execution_folder(&self.data_dir, id) else { return rx };
        let results = RunPlan::results_dir(&dir);
        let states = self.states.clone();
        // Registered before the files are opened: their folder's recycling then leaves them whole.
        let reading = self.folders.reading(id.as_str());
        let id = id.clone();
        let finished = move || states.read().map_or(true, |s| s.get(&id).is_none_or(|st| st.is_terminal()));
        tokio::spawn(async move {
            stream_files(results.join("stdout"), results.join("stderr"), follow, finished, tx).await;
            drop(reading);
        });
        rx
    }
}

/// The node.
#[derive(Debug)]
pub struct ComputeNode;

enum Internal {
    Done {
        id: ExecutionId,
        outcome: Outcome,
    },
    /// The bid probe's answer for an execution asked about.
    Probed {
        execution: Box<Execution>,
        verdict: Result<(), String>,
    },
}

/// The longest a bid probe may take, whatever it does: past it the job is declined. The probe
/// runs off the node's loop, so heartbeats and other bids go on meanwhile.
const PROBE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// The engine's shell.
struct Runtime {
    cfg: ComputeConfig,
    engine: Engine,
    store: Arc<ExecutionStore>,
    executors: Vec<Arc<dyn Executor>>,
    inputs: Vec<Arc<dyn InputProvider>>,
    publishers: Vec<Arc<dyn Publisher>>,
    endpoint: ComputeEndpoint,
    internal_tx: mpsc::Sender<Internal>,
    /// Each running execution's stop switch.
    tokens: HashMap<ExecutionId, CancellationToken>,
    /// The W3C `traceparent` of each traced execution asked for and not yet started or
    /// forgotten (only when the orchestrator exports traces).
    traces: HashMap<ExecutionId, String>,
    states: Arc<RwLock<HashMap<ExecutionId, LocalExecutionState>>>,
    info: Arc<RwLock<NodeInfo>>,
    /// The IPFS roots last told to the orchestrator.
    reported_roots: Vec<String>,
    /// Finished executions' folders, emptied for the next ones.
    folders: Arc<crate::folders::FolderPool>,
    /// Publishers waiting for the orchestrator to sign an upload URL.
    uploads: Arc<crate::uploads::ManagedUploads>,
    /// Whether the orchestrator accepted the last registration (for readiness).
    registered: Arc<std::sync::atomic::AtomicBool>,
}

impl ComputeNode {
    /// Opens the store, registers with the orchestrator and starts the runtime.
    pub async fn start(
        cfg: ComputeConfig,
        executors: Vec<Arc<dyn Executor>>,
        inputs: Vec<Arc<dyn InputProvider>>,
        publishers: Vec<Arc<dyn Publisher>>,
        endpoint: ComputeEndpoint,
        cancel: CancellationToken,
    ) -> Result<ComputeHandle, ComputeError> {
        std::fs::create_dir_all(&cfg.data_dir)
            .map_err(|e| crate::store::StoreError::new(format!("cannot create {}: {e}", cfg.data_dir.display())))?;
        let path = cfg.data_dir.join("executions.redb");
        let store = Arc::new(
            tokio::task::spawn_blocking(move || ExecutionStore::open(&path))
                .await
                .map_err(|e| crate::store::StoreError::new(e.to_string()))??,
        );
        let (internal_tx, internal_rx) = mpsc::channel(INTERNAL_CAPACITY);
        let info = Arc::new(RwLock::new(NodeInfo::default()));
        let states = Arc::new(RwLock::new(HashMap::new()));
        let engine = Engine::new(cfg.capacity, cfg.prices, cfg.bid_policy.probe.is_some(), cfg.drop_bid_acceptances);
        let folders = Arc::new(crate::folders::FolderPool::new(cfg.data_dir.join("spare-folders")));
        let uploads = Arc::new(crate::uploads::ManagedUploads::new(endpoint.sender()));
        let registered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut rt = Runtime {
            uploads,
            registered: registered.clone(),
            cfg: cfg.clone(),
            engine,
            store,
            executors,
            inputs,
            publishers,
            endpoint,
            internal_tx,
            tokens: HashMap::new(),
            traces: HashMap::new(),
            reported_roots: Vec::new(),
            states: states.clone(),
            info: info.clone(),
            folders: folders.clone(),
        };
        rt.recover().await?;
        rt.publish_info();
        rt.register().await?;
        tokio::spawn(rt.run(internal_rx, cancel));
        Ok(ComputeHandle { info, registered, states, data_dir: cfg.data_dir, folders })
    }
}

/// Describes the compute node's metrics (the `# HELP` lines). Call once the recorder is
/// installed.
pub fn describe_metrics() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!("bacalhau_compute_bids_total", "This node's answers to asks for bids: accepted or rejected");
    describe_counter!("bacalhau_compute_executions_total", "Executions this node finished, by outcome");
    describe_counter!(
        "bacalhau_compute_bid_refusals_total",
        "Asks this node refused, by reason: engine, resources, input, publisher, network, locality, price, invalid"
    );
    describe_gauge!("bacalhau_compute_running_executions", "Executions running on this node");
    describe_gauge!("bacalhau_compute_queued_executions", "Executions waiting for capacity on this node");
    describe_gauge!("bacalhau_compute_available_cpu", "Free CPU on this node, in cores");
    describe_gauge!("bacalhau_compute_available_memory_bytes", Unit::Bytes, "Free memory on this node");
    describe_gauge!("bacalhau_compute_available_disk_bytes", Unit::Bytes, "Free disk on this node");
    for result in ["accepted", "rejected"] {
        metrics::counter!("bacalhau_compute_bids_total", "result" => result).increment(0);
    }
    for outcome in ["completed", "failed", "cancelled"] {
        metrics::counter!("bacalhau_compute_executions_total", "outcome" => outcome).increment(0);
    }
    for reason in ["engine", "resources", "input", "publisher", "network", "locality", "price", "invalid"] {
        metrics::counter!("bacalhau_compute_bid_refusals_total", "reason" => reason).increment(0);
    }
}

/// The metrics a message to the orchestrator carries: the node's bids, and its load as each
/// heartbeat reports it.
fn record(msg: &FromCompute) {
    match msg {
        FromCompute::BidResult { accepted, .. } => {
            let result = if *accepted { "accepted" } else { "rejected" };
            metrics::counter!("bacalhau_compute_bids_total", "result" => result).increment(1);
        }
        FromCompute::Heartbeat { available, running, enqueued, .. } => {
            metrics::gauge!("bacalhau_compute_running_executions").set(f64::from(*running));
            metrics::gauge!("bacalhau_compute_queued_executions").set(f64::from(*enqueued));
            metrics::gauge!("bacalhau_compute_available_cpu").set(available.cpu);
            #[allow(clippy::cast_precision_loss)] // a gauge: bytes far below 2^53
            let (memory, disk) = (available.memory as f64, available.disk as f64);
            metrics::gauge!("bacalhau_compute_available_memory_bytes").set(memory);
            metrics::gauge!("bacalhau_compute_available_disk_bytes").set(disk);
        }
        _ => {}
    }
}

impl Runtime {
    /// Loads the store; anything that was running when the node stopped failed with it.
    async fn recover(&mut self) -> Result<(), ComputeError> {
        let store = self.store.clone();
        let all = tokio::task::spawn_blocking(move || store.all())
            .await
            .map_err(|e| crate::store::StoreError::new(e.to_string()))??;
        let fx = self.engine.restore(all);
        if !fx.writes.is_empty() || !fx.forgets.is_empty() {
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.commit(&fx.writes, &fx.forgets))
                .await
                .map_err(|e| crate::store::StoreError::new(e.to_string()))??;
        }
        self.sync_states();
        self.remove_orphan_folders();
        Ok(())
    }

    /// Removes the folders of executions this node no longer holds. Once the orchestrator has
    /// an execution's outcome, its results live where they were published (and a short
    /// summary of stdout and stderr in the orchestrator's record), so the folder only costs
    /// disk and inodes.
    fn remove_folders(&self, ids: Vec<ExecutionId>) {
        if ids.is_empty() {
            return;
        }
        let (data_dir, folders) = (self.cfg.data_dir.clone(), self.folders.clone());
        tokio::task::spawn_blocking(move || {
            for id in ids {
                if let Some(dir) = execution_folder(&data_dir, &id) {
                    folders.give_back(&dir, id.as_str());
                }
            }
        });
    }

    /// At start: folders left by a crash between forgetting an execution and removing its
    /// folder, or by an older version that kept them all. The executions folder is set aside
    /// whole and the held executions' folders moved back (so the work here is bounded by the
    /// executions in flight, and new executions never race the cleanup); what was set aside
    /// is removed in the background: there may be many.
    fn remove_orphan_folders(&self) {
        let root = self.cfg.data_dir.join("executions");
        let aside = self.cfg.data_dir.join(format!("executions{}", aside_suffix()));
        if std::fs::rename(&root, &aside).is_ok() {
            let _ = std::fs::create_dir_all(&root);
            for (id, _) in self.engine.states() {
                if let Some(dir) = execution_folder(&self.cfg.data_dir, id) {
                    let _ = std::fs::rename(aside.join(id.as_str()), dir);
                }
            }
        }
        let data_dir = self.cfg.data_dir.clone();
        tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&data_dir) else { return };
            for entry in entries.flatten() {
                if entry.file_name().to_string_lossy().contains(ASIDE) {
                    crate::folders::remove(&entry.path());
                    info!(folder = %entry.path().display(), "removed the folders of executions this node no longer holds");
                }
            }
        });
    }

    fn sync_states(&self) {
        if let Ok(mut s) = self.states.write() {
            s.clear();
            s.extend(self.engine.states().map(|(id, st)| (id.clone(), st)));
        }
    }

    fn publish_info(&self) {
        let available = self.cfg.capacity.sub(&self.engine.used());
        let queued = self.engine.queued();
        let mut engines: Vec<String> = self.executors.iter().map(|e| e.engine_type().to_owned()).collect();
        engines.sort();
        let mut publishers: Vec<String> = self.publishers.iter().map(|p| p.publisher_type().to_owned()).collect();
        publishers.sort();
        let mut sources: Vec<String> = self.inputs.iter().map(|i| i.source_type().to_owned()).collect();
        sources.sort();
        let info = NodeInfo {
            node_id: self.cfg.node_id.clone(),
            node_type: NodeType::Compute,
            labels: self.cfg.labels.clone(),
            supported_protocols: vec![format!("bacalhau-rs/{}", bacalhau_protocol::PROTOCOL_VERSION)],
            compute_node_info: Some(ComputeNodeInfo {
                execution_engines: engines,
                publishers,
                storage_sources: sources,
                max_capacity: self.cfg.capacity.into(),
                queue_used_capacity: queued.into(),
                available_capacity: available.into(),
                max_job_requirements: self.cfg.capacity.into(),
                running_executions: count(self.engine.running_count()),
                enqueued_executions: count(self.engine.queued_count()),
                prices: self.cfg.prices,
                ipfs_roots: self.inputs.iter().flat_map(|i| i.held()).collect(),
            }),
            bacalhau_version: self.cfg.version.clone(),
            ipfs_addrs: self.cfg.ipfs_addrs.clone(),
            api_url: self.cfg.api_url.clone(),
        };
        if let Ok(mut i) = self.info.write() {
            *i = info;
        }
    }

    async fn register(&mut self) -> Result<(), ComputeError> {
        let info = self.info.read().map(|i| i.clone()).unwrap_or_default();
        let (executions, pending) = self.engine.registration();
        self.endpoint
            .send(FromCompute::Register { info: Box::new(info), executions })
            .await
            .map_err(|e| ComputeError::Transport(e.to_string()))?;
        // Results the orchestrator never acknowledged go again; it ignores duplicates.
        for msg in pending {
            self.endpoint.send(msg).await.map_err(|e| ComputeError::Transport(e.to_string()))?;
        }
        Ok(())
    }

    fn heartbeat(&mut self) -> FromCompute {
        self.publish_info();
        let available: ResourcesWire = self.cfg.capacity.sub(&self.engine.used()).into();
        let roots: Vec<String> = self
            .info
            .read()
            .ok()
            .and_then(|i| i.compute_node_info.as_ref().map(|c| c.ipfs_roots.clone()))
            .unwrap_or_default();
        let changed = roots != self.reported_roots;
        if changed {
            self.reported_roots = roots.clone();
        }
        FromCompute::Heartbeat {
            available,
            queued: ResourcesWire::default(),
            running: count(self.engine.running_count()),
            enqueued: count(self.engine.queued_count()),
            ipfs_roots: changed.then_some(roots),
            digest: Some(self.engine.digest()),
        }
    }

    /// The engine's input for a message: an ask gets this node's verdict on the job.
    fn input(&mut self, msg: ToCompute) -> Input {
        match msg {
            ToCompute::AskForBid { execution, providers, trace } => {
                if let Some(t) = trace.filter(|t| t.len() <= bacalhau_protocol::trace::MAX_TRACEPARENT) {
                    // Bounded by what the engine holds: entries go when the run starts or the
                    // execution is forgotten; a flood of asks that never start is cut off here.
                    if self.traces.len() >= MAX_TRACES {
                        self.traces.clear();
                    }
                    self.traces.insert(execution.id.clone(), t);
                }
                if !providers.is_empty() {
                    for input in &self.inputs {
                        input.learn_providers(&providers);
                    }
                }
                let verdict = self.bid(&execution);
                Input::Ask { execution, verdict }
            }
            other => Input::Message(other),
        }
    }

    async fn run(mut self, mut internal: mpsc::Receiver<Internal>, cancel: CancellationToken) {
        let started = std::time::Instant::now();
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut msgs: Vec<Envelope<ToCompute>> = Vec::with_capacity(MAX_ROUND);
        let mut done: Vec<Internal> = Vec::with_capacity(MAX_ROUND);
        'rounds: loop {
            let mut tick = false;
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                n = internal.recv_many(&mut done, MAX_ROUND) => if n == 0 { break },
                n = self.endpoint.inbox.recv_many(&mut msgs, MAX_ROUND) => if n == 0 {
                    warn!("the orchestrator closed the connection");
                    break;
                },
                _ = heartbeat.tick() => {
                    if self.cfg.silent_heartbeats.is_some_and(|(from, to)| (from..to).contains(&started.elapsed())) {
                        continue;
                    }
                    let msg = self.heartbeat();
                    if self.endpoint.send(msg).await.is_err() {
                        break;
                    }
                    tick = true;
                }
            }
            while let Ok(m) = self.endpoint.inbox.try_recv() {
                msgs.push(m);
                if msgs.len() >= MAX_ROUND {
                    break;
                }
            }
            let mut inputs: Vec<Input> = Vec::with_capacity(msgs.len());
            for m in msgs.drain(..) {
                match m.payload {
                    // An answer for a publisher waiting off the loop, not a step of the engine.
                    ToCompute::ManagedUploadUrl { execution_id, url } => {
                        if !self.uploads.answer(&execution_id, url) {
                            debug!(%execution_id, "an upload URL nobody waits for is dropped");
                        }
                    }
                    other => {
                        match &other {
                            ToCompute::Registered { accepted, .. } => self.registered.store(*accepted, Relaxed),
                            ToCompute::Reconnected => self.registered.store(false, Relaxed),
                            _ => {}
                        }
                        inputs.push(self.input(other));
                    }
                }
            }
            if tick {
                inputs.push(Input::Tick);
            }
            for d in done.drain(..) {
                inputs.push(match d {
                    Internal::Done { id, outcome } => {
                        self.tokens.remove(&id);
                        let outcome_name = match &outcome {
                            Outcome::Completed { .. } => "completed",
                            Outcome::Failed { cancelled: true, .. } => "cancelled",
                            Outcome::Failed { .. } => "failed",
                        };
                        metrics::counter!("bacalhau_compute_executions_total", "outcome" => outcome_name).increment(1);
                        Input::Finished { id, outcome }
                    }
                    Internal::Probed { execution, verdict } => Input::Probed { execution, verdict },
                });
            }
            let fx = self.engine.step(inputs);
            let store = self.store.clone();
            let (writes, forgets) = (fx.writes, fx.forgets);
            let committing = std::time::Instant::now();
            let committed = tokio::task::spawn_blocking(move || store.commit(&writes, &forgets).map(|()| forgets))
                .await
                .map_err(|e| crate::store::StoreError::new(e.to_string()));
            metrics::histogram!("bacalhau_store_commit_seconds", "store" => "executions")
                .record(committing.elapsed().as_secs_f64());
            match committed.and_then(|r| r) {
                Ok(forgotten) => {
                    for id in &forgotten {
                        self.traces.remove(id);
                    }
                    self.remove_folders(forgotten)
                }
                Err(e) => {
                    error!(error = %e, "cannot persist execution state; stopping the compute node");
                    break;
                }
            }
            self.sync_states();
            if fx.reregister {
                self.publish_info();
                if let Err(e) = self.register().await {
                    warn!(error = %e, "cannot register again with the orchestrator");
                }
            }
            for e in fx.sends {
                record(&e);
                if self.endpoint.send(e).await.is_err() {
                    // Whatever runs here would finish unheard: stop it (the store says it was
                    // running, so it is reported failed when the node registers again).
                    warn!("the orchestrator is gone");
                    break 'rounds;
                }
            }
            for id in fx.cancels {
                if let Some(token) = self.tokens.get(&id) {
                    token.cancel();
                }
            }
            for execution in fx.probes {
                self.probe(execution);
            }
            for start in fx.starts {
                self.start(start);
            }
        }
        self.registered.store(false, Relaxed);
        for token in self.tokens.values() {
            token.cancel();
        }
        debug!("compute node runtime stopped");
    }

    /// Asks the outside probe about `execution`, off the loop; its answer comes back as an input.
    fn probe(&self, execution: Execution) {
        let (Some(probe), Some(job)) = (self.cfg.bid_policy.probe.clone(), execution.job.clone()) else {
            return;
        };
        let tx = self.internal_tx.clone();
        tokio::spawn(async move {
            let run = tokio::task::spawn_blocking(move || probe(&job));
            let verdict = match tokio::time::timeout(PROBE_DEADLINE, run).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => Err(format!("the probe crashed: {e}")),
                Err(_) => Err(format!("it did not answer within {}s", PROBE_DEADLINE.as_secs())),
            }
            .map_err(|why| format!("the node's job-selection probe declined: {why}"));
            let _ = tx.send(Internal::Probed { execution: Box::new(execution), verdict }).await;
        });
    }

    /// Starts a run the engine decided on.
    fn start(&mut self, start: Start) {
        let Start { execution, resources, disk_budget } = start;
        let id = execution.id.clone();
        let tx = self.internal_tx.clone();
        let task = execution.job.as_deref().and_then(|j| j.task()).cloned();
        let executor =
            task.as_ref().and_then(|t| self.executors.iter().find(|e| t.engine.is_type(e.engine_type())).cloned());
        let exec_dir = execution_folder(&self.cfg.data_dir, &id);
        let (Some(executor), Some(exec_dir)) = (executor, exec_dir) else {
            // The bid checked both; a job that lost its engine since fails rather than hangs.
            let outcome = Outcome::Failed {
                message: "this node no longer has the job's engine".into(),
                cancelled: false,
                retryable: true,
            };
            tokio::spawn(async move {
                let _ = tx.send(Internal::Done { id, outcome }).await;
            });
            return;
        };
        let publisher = task
            .as_ref()
            .filter(|t| !t.publisher.is_empty())
            .and_then(|t| self.publishers.iter().find(|p| t.publisher.is_type(p.publisher_type())).cloned());
        let token = CancellationToken::new();
        self.tokens.insert(id.clone(), token.clone());
        let folders = self.folders.clone();
        // Spans only for a traced job: an untraced execution costs nothing here.
        let span = match self.traces.remove(&id) {
            Some(parent) => {
                let span = tracing::info_span!(
                    "execution",
                    job_id = %execution.job_id,
                    execution_id = %id,
                    node_id = %execution.node_id
                );
                bacalhau_protocol::trace::adopt(&span, &parent);
                span
            }
            None => tracing::Span::none(),
        };
        let plan = RunPlan {
            exec_dir: exec_dir.clone(),
            execution,
            executor,
            inputs: self.inputs.clone(),
            publisher,
            resources,
            disk_budget,
            prices: self.cfg.prices,
            cancel: token,
            events: self.endpoint.sender(),
            uploads: self.uploads.clone(),
        };
        tokio::spawn(
            async move {
                // One rename, or nothing: no dearer than the mkdir it saves.
                if !exec_dir.exists() {
                    folders.take(&exec_dir);
                }
                let outcome = plan.run().await;
                let _ = tx.send(Internal::Done { id, outcome }).await;
            }
            .instrument(span),
        );
    }

    /// Whether to bid: the node must have the engine, inputs and publisher, and the job must
    /// fit in the node at all (it may still wait in the queue for capacity). The outside probe,
    /// if any, is asked afterwards, off the loop.
    fn bid(&self, execution: &Execution) -> Result<(), String> {
        self.bid_checks(execution).map_err(|(reason, message)| {
            metrics::counter!("bacalhau_compute_bid_refusals_total", "reason" => reason).increment(1);
            message
        })
    }

    /// [`Self::bid`]'s checks; a refusal says which kind it is (a fixed set, for the metrics).
    fn bid_checks(&self, execution: &Execution) -> Result<(), (&'static str, String)> {
        if execution_folder(&self.cfg.data_dir, &execution.id).is_none() {
            return Err((
                "invalid",
                format!(
                    "the execution ID {:?} cannot name a folder: an ID is letters, digits and '-'",
                    execution.id.as_str()
                ),
            ));
        }
        let job = execution.job.as_deref().ok_or(("invalid", "the ask carried no job".to_owned()))?;
        let task = job.task().ok_or(("invalid", "the job has no task".to_owned()))?;
        let Some(executor) = self.executors.iter().find(|e| task.engine.is_type(e.engine_type())) else {
            return Err(("engine", format!("this node does not support engine {}", task.engine.type_name())));
        };
        let needs = job_resources_of(job);
        if let Some(excess) = needs.first_excess(&self.cfg.capacity) {
            return Err(("resources", format!("the job needs more than this node has: {excess}")));
        }
        for input in &task.input_sources {
            let provider = self.inputs.iter().find(|p| input.source.is_type(p.source_type())).ok_or_else(|| {
                ("input", format!("this node does not support input source {}", input.source.type_name()))
            })?;
            provider.validate(input).map_err(|e| ("input", e.to_string()))?;
        }
        if !task.publisher.is_empty() {
            let Some(publisher) = self.publishers.iter().find(|p| task.publisher.is_type(p.publisher_type())) else {
                return Err((
                    "publisher",
                    format!("this node does not support publisher {}", task.publisher.type_name()),
                ));
            };
            publisher.validate(&task.publisher).map_err(|e| ("publisher", e.to_string()))?;
        }
        let policy = &self.cfg.bid_policy;
        let networked =
            !matches!(task.network.r#type, bacalhau_model::NetworkType::None | bacalhau_model::NetworkType::Default);
        if policy.reject_networked && networked {
            return Err(("network", "this node does not take networked jobs (--reject-networked-jobs)".into()));
        }
        if let Some(why) = &policy.host_network_refusal
            && matches!(task.network.r#type, bacalhau_model::NetworkType::Host | bacalhau_model::NetworkType::Full)
        {
            return Err(("network", why.clone()));
        }
        if policy.local_inputs_only {
            for input in &task.input_sources {
                let local =
                    self.inputs.iter().find(|p| input.source.is_type(p.source_type())).and_then(|p| p.is_local(input));
                if local == Some(false) {
                    return Err((
                        "locality",
                        format!(
                            "input {} is not in this node's store, and it takes only jobs whose inputs it holds (--local-inputs-only)",
                            input.source.param_str("CID").unwrap_or(&input.target)
                        ),
                    ));
                }
            }
        }
        if let (Some(max), Some(q)) = (job.market.as_ref().and_then(|m| m.max_price), quote(self.cfg.prices, execution))
            && q > max
        {
            return Err(("price", format!("this node quotes {q:.6}, above the job's MaxPrice {max}")));
        }
        let probe = RunRequest {
            job_id: job.id.clone(),
            execution_id: execution.id.clone(),
            engine: task.engine.clone(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            env: BTreeMap::new(),
            resources: needs,
            network: task.network.clone(),
            timeout: None,
            results_dir: PathBuf::new(),
            work_dir: PathBuf::new(),
            cancel: CancellationToken::new(),
        };
        executor.validate(&probe).map_err(|e| ("engine", e.to_string()))
    }
}

/// Execution `id`'s folder, or `None` for an ID that is not a plain name. IDs come from the
/// orchestrator and from API requests: only letters, digits and `-` may reach a path (no
/// `..`, no `/`).
fn execution_folder(data_dir: &std::path::Path, id: &ExecutionId) -> Option<PathBuf> {
    let s = id.as_str();
    (!s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| data_dir.join("executions").join(s))
}

/// In the name of a folder set aside at start, to be removed in the background.
pub(crate) const ASIDE: &str = ".old-";

/// The end of a set-aside folder's name: this process and the time, so that a restart (with
/// the same PID, as PID 1 in a container is) never meets one an earlier start left.
pub(crate) fn aside_suffix() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{ASIDE}{}-{nanos}", std::process::id())
}

/// A length as the protocol's u32 count, saturating.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_execution_ids_name_a_folder() {
        let data = std::path::Path::new("/data");
        let folder = |id: &str| execution_folder(data, &ExecutionId::from(id));
        assert_eq!(folder("e-1a2B"), Some(PathBuf::from("/data/executions/e-1a2B")));
        for hostile in ["", "..", "../x", "e/../../etc", "/etc", "e-1\0", "e 1", "e.1"] {
            assert_eq!(folder(hostile), None, "{hostile:?}");
        }
    }
}
