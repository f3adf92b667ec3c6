//! The compute node's runtime: one task that owns the executions and the capacity.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bacalhau_executor::{Executor, RunRequest};
use bacalhau_model::{
    BuildVersionInfo, ComputeNodeInfo, Execution, ExecutionEvent, ExecutionId, IllegalTransition, NodeId, NodeInfo,
    NodeType, Resources, ResourcesWire,
};
use bacalhau_protocol::{
    ComputeEndpoint, Envelope, ExecutionDigest, ExecutionReport, FromCompute, LocalExecutionState, Phase, ToCompute,
};
use bacalhau_storage::{InputProvider, Publisher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::logs::{LogLine, stream_files};
use crate::run::RunPlan;
use crate::store::{ExecutionStore, Outcome, Record};

/// How many finished runs and progress events may wait for the node's runtime.
const INTERNAL_CAPACITY: usize = 65_536;
/// The most messages handled per round (and so per store transaction).
const MAX_ROUND: usize = 4096;
/// Lines buffered between a log reader and its consumer.
const LOG_BUFFER: usize = 1024;

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
    states: Arc<RwLock<HashMap<ExecutionId, LocalExecutionState>>>,
    data_dir: PathBuf,
}

impl ComputeHandle {
    /// What the node advertises.
    pub fn node_info(&self) -> NodeInfo {
        self.info.read().map(|i| i.clone()).unwrap_or_default()
    }

    /// Whether this node holds the execution.
    pub fn has_execution(&self, id: &ExecutionId) -> bool {
        self.states.read().is_ok_and(|s| s.contains_key(id))
    }

    /// The execution's state on this node, if it holds it.
    pub fn execution_state(&self, id: &ExecutionId) -> Option<LocalExecutionState> {
        self.states.read().ok().and_then(|s| s.get(id).copied())
    }

    /// The execution's output as lines; with `follow`, until it ends.
    pub fn logs(&self, id: &ExecutionId, follow: bool) -> mpsc::Receiver<LogLine> {
        let (tx, rx) = mpsc::channel(LOG_BUFFER);
        let results = RunPlan::results_dir(&self.data_dir.join("executions").join(id.as_str()));
        let states = self.states.clone();
        let id = id.clone();
        let finished = move || states.read().map_or(true, |s| s.get(&id).is_none_or(|st| st.is_terminal()));
        tokio::spawn(stream_files(results.join("stdout"), results.join("stderr"), follow, finished, tx));
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

struct Queued {
    id: ExecutionId,
    priority: i32,
    seq: u64,
}

struct Runtime {
    cfg: ComputeConfig,
    store: Arc<ExecutionStore>,
    records: HashMap<ExecutionId, Record>,
    executors: Vec<Arc<dyn Executor>>,
    inputs: Vec<Arc<dyn InputProvider>>,
    publishers: Vec<Arc<dyn Publisher>>,
    endpoint: ComputeEndpoint,
    internal_tx: mpsc::Sender<Internal>,
    queue: Vec<Queued>,
    queue_seq: u64,
    running: HashMap<ExecutionId, (CancellationToken, Resources)>,
    used: Resources,
    states: Arc<RwLock<HashMap<ExecutionId, LocalExecutionState>>>,
    info: Arc<RwLock<NodeInfo>>,
    /// The IPFS roots last told to the orchestrator.
    reported_roots: Vec<String>,
    /// Executions whose bid waits for the outside probe; the bid is sent when it answers.
    probing: std::collections::HashSet<ExecutionId>,
    /// Bid acceptances dropped so far by the `drop_bid_acceptances` test fault.
    dropped: u32,
}

#[derive(Default)]
struct Round {
    writes: Vec<ExecutionId>,
    sends: Vec<FromCompute>,
    /// The transport re-connected: register again after this round.
    reregister: bool,
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
        let mut rt = Runtime {
            cfg: cfg.clone(),
            store,
            records: HashMap::new(),
            executors,
            inputs,
            publishers,
            endpoint,
            internal_tx,
            queue: Vec::new(),
            reported_roots: Vec::new(),
            probing: Default::default(),
            dropped: 0,
            queue_seq: 0,
            running: HashMap::new(),
            used: Resources::default(),
            states: states.clone(),
            info: info.clone(),
        };
        rt.recover().await?;
        rt.publish_info();
        rt.register().await?;
        tokio::spawn(rt.run(internal_rx, cancel));
        Ok(ComputeHandle { info, states, data_dir: cfg.data_dir })
    }
}

impl Runtime {
    /// Loads the store; anything that was running when the node stopped failed with it.
    async fn recover(&mut self) -> Result<(), ComputeError> {
        let store = self.store.clone();
        let all = tokio::task::spawn_blocking(move || store.all())
            .await
            .map_err(|e| crate::store::StoreError::new(e.to_string()))??;
        let mut changed = Vec::new();
        for mut r in all {
            if let Ok(failed) = r.state.apply(ExecutionEvent::Lost) {
                let message = "the compute node restarted while the execution was in progress".to_owned();
                r.state = failed;
                r.message = message.clone();
                r.outcome = Some(Outcome::Failed { message, cancelled: false, retryable: true });
                r.reported = false;
                changed.push(r.clone());
            }
            self.records.insert(r.execution.id.clone(), r);
        }
        if !changed.is_empty() {
            warn!(executions = changed.len(), "executions interrupted by a restart are reported as failed");
            let store = self.store.clone();
            tokio::task::spawn_blocking(move || store.put_all(&changed))
                .await
                .map_err(|e| crate::store::StoreError::new(e.to_string()))??;
        }
        self.sync_states();
        Ok(())
    }

    fn sync_states(&self) {
        if let Ok(mut s) = self.states.write() {
            s.clear();
            s.extend(self.records.iter().map(|(id, r)| (id.clone(), r.state)));
        }
    }

    fn publish_info(&self) {
        let available = self.cfg.capacity.sub(&self.used);
        let queued = self.queue.iter().fold(Resources::default(), |acc, q| {
            acc.add(&self.records.get(&q.id).map(job_resources).unwrap_or_default())
        });
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
                running_executions: count(self.running.len()),
                enqueued_executions: count(self.queue.len()),
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
        let executions = self
            .records
            .values()
            .filter(|r| !(r.state.is_terminal() && r.reported))
            .map(|r| ExecutionReport { execution_id: r.execution.id.clone(), state: r.state })
            .collect();
        self.endpoint
            .send(FromCompute::Register { info: Box::new(info), executions })
            .await
            .map_err(|e| ComputeError::Transport(e.to_string()))?;
        // Results the orchestrator never acknowledged go again; it ignores duplicates.
        let pending: Vec<FromCompute> = self.records.values().filter_map(report).collect();
        for msg in pending {
            self.endpoint.send(msg).await.map_err(|e| ComputeError::Transport(e.to_string()))?;
        }
        Ok(())
    }

    async fn run(mut self, mut internal: mpsc::Receiver<Internal>, cancel: CancellationToken) {
        let started = std::time::Instant::now();
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut msgs: Vec<Envelope<ToCompute>> = Vec::with_capacity(MAX_ROUND);
        let mut done: Vec<Internal> = Vec::with_capacity(MAX_ROUND);
        'rounds: loop {
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
                    self.publish_info();
                    let available: ResourcesWire = self.cfg.capacity.sub(&self.used).into();
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
                    let msg = FromCompute::Heartbeat {
                        available,
                        queued: ResourcesWire::default(),
                        running: count(self.running.len()),
                        enqueued: count(self.queue.len()),
                        ipfs_roots: changed.then_some(roots),
                        digest: Some(self.digest()),
                    };
                    if self.endpoint.send(msg).await.is_err() {
                        break;
                    }
                    continue;
                }
            }
            while let Ok(m) = self.endpoint.inbox.try_recv() {
                msgs.push(m);
                if msgs.len() >= MAX_ROUND {
                    break;
                }
            }
            let mut round = Round::default();
            for m in msgs.drain(..) {
                self.handle(m.payload, &mut round);
            }
            for d in done.drain(..) {
                match d {
                    Internal::Done { id, outcome } => self.finished(id, outcome, &mut round),
                    Internal::Probed { execution, verdict } => {
                        if self.probing.remove(&execution.id) {
                            self.answer_bid(*execution, verdict, &mut round);
                        }
                    }
                }
            }
            let starts = self.schedule(&mut round);
            if let Err(e) = self.commit(&round).await {
                error!(error = %e, "cannot persist execution state; stopping the compute node");
                break;
            }
            self.sync_states();
            if round.reregister {
                self.publish_info();
                if let Err(e) = self.register().await {
                    warn!(error = %e, "cannot register again with the orchestrator");
                }
            }
            for e in round.sends {
                if self.endpoint.send(e).await.is_err() {
                    // Whatever runs here would finish unheard: stop it (the store says it was
                    // running, so it is reported failed when the node registers again).
                    warn!("the orchestrator is gone");
                    break 'rounds;
                }
            }
            for plan in starts {
                let tx = self.internal_tx.clone();
                tokio::spawn(async move {
                    let id = plan.execution.id.clone();
                    let outcome = plan.run().await;
                    let _ = tx.send(Internal::Done { id, outcome }).await;
                });
            }
        }
        for (token, _) in self.running.values() {
            token.cancel();
        }
        debug!("compute node runtime stopped");
    }

    async fn commit(&self, round: &Round) -> Result<(), crate::store::StoreError> {
        let records: Vec<Record> = round.writes.iter().filter_map(|id| self.records.get(id).cloned()).collect();
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.put_all(&records))
            .await
            .map_err(|e| crate::store::StoreError::new(e.to_string()))?
    }

    /// Moves an execution through its lifecycle; an event its state does not allow (a
    /// duplicate or late message) changes nothing and is returned.
    fn transition(
        &mut self,
        id: &ExecutionId,
        event: ExecutionEvent,
        message: &str,
        round: &mut Round,
    ) -> Result<(), IllegalTransition> {
        let Some(r) = self.records.get_mut(id) else {
            return Err(IllegalTransition { from: "unknown", event });
        };
        r.state = r.state.apply(event)?;
        r.message = message.to_owned();
        round.writes.push(id.clone());
        Ok(())
    }

    fn handle(&mut self, msg: ToCompute, round: &mut Round) {
        match msg {
            ToCompute::AskForBid { execution, providers } => {
                if !providers.is_empty() {
                    for input in &self.inputs {
                        input.learn_providers(&providers);
                    }
                }
                self.ask_for_bid(*execution, round)
            }
            ToCompute::BidAccepted { execution_id } if self.cfg.drop_bid_acceptances > self.dropped => {
                // Test fault: as if the message were lost on the way.
                self.dropped += 1;
                warn!(%execution_id, "test fault: a bid acceptance is dropped");
            }
            ToCompute::BidAccepted { execution_id } => match self.records.get(&execution_id).map(|r| r.state) {
                Some(s) if s.apply(ExecutionEvent::BidAccepted).is_ok() => {
                    let _ = self.transition(&execution_id, ExecutionEvent::BidAccepted, "bid accepted", round);
                    let priority = self
                        .records
                        .get(&execution_id)
                        .and_then(|r| r.execution.job.as_ref())
                        .map_or(0, |j| j.priority);
                    self.queue_seq += 1;
                    self.queue.push(Queued { id: execution_id, priority, seq: self.queue_seq });
                }
                Some(s) if s.is_terminal() => {
                    if let Some(m) = self.records.get(&execution_id).and_then(report) {
                        round.sends.push(m);
                    }
                }
                _ => debug!(%execution_id, "duplicate bid acceptance ignored"),
            },
            ToCompute::BidRejected { execution_id, reason } => {
                if self.transition(&execution_id, ExecutionEvent::BidRejected, &reason, round).is_ok()
                    && let Some(r) = self.records.get_mut(&execution_id)
                {
                    r.reported = true;
                }
            }
            ToCompute::CancelExecution { execution_id, reason } => self.cancel(&execution_id, &reason, round),
            ToCompute::Ack { execution_id } => {
                if let Some(r) = self.records.get_mut(&execution_id)
                    && !r.reported
                    && r.state.is_terminal()
                {
                    r.reported = true;
                    round.writes.push(execution_id);
                }
            }
            ToCompute::Reconnected | ToCompute::Resync => round.reregister = true,
            ToCompute::Registered { accepted, reason } => {
                if accepted {
                    info!("registered with the orchestrator");
                } else {
                    error!(%reason, "the orchestrator refused this node");
                }
            }
        }
    }

    fn ask_for_bid(&mut self, execution: Execution, round: &mut Round) {
        if let Some(r) = self.records.get(&execution.id) {
            // Asked again (a reconnect): answer the same way, or re-send the outcome.
            match r.state {
                LocalExecutionState::AskForBidAccepted => round.sends.push(FromCompute::BidResult {
                    execution_id: execution.id.clone(),
                    accepted: true,
                    reason: String::new(),
                    quote: self.quote(&r.execution),
                }),
                LocalExecutionState::AskForBidRejected => round.sends.push(FromCompute::BidResult {
                    execution_id: execution.id.clone(),
                    accepted: false,
                    reason: r.message.clone(),
                    quote: None,
                }),
                _ => round.sends.extend(report(r)),
            }
            return;
        }
        if self.probing.contains(&execution.id) {
            // Asked again while the probe runs: it answers once it is done.
            return;
        }
        let decision = self.bid(&execution);
        if decision.is_ok()
            && let Some(probe) = self.cfg.bid_policy.probe.clone()
            && let Some(job) = execution.job.clone()
        {
            self.probing.insert(execution.id.clone());
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
            return;
        }
        self.answer_bid(execution, decision, round);
    }

    /// What this node holds live, for the orchestrator to compare with its own view.
    fn digest(&self) -> ExecutionDigest {
        let mut d = ExecutionDigest::of(self.probing.iter().map(|id| (id, Phase::Asked)));
        for (id, r) in &self.records {
            match r.state {
                LocalExecutionState::AskForBidAccepted => d.add(id, Phase::Bid),
                LocalExecutionState::BidAccepted | LocalExecutionState::Running | LocalExecutionState::Publishing => {
                    d.add(id, Phase::Accepted)
                }
                _ => {}
            }
        }
        d
    }

    /// Records the bid decision and tells the orchestrator.
    fn answer_bid(&mut self, execution: Execution, decision: Result<(), String>, round: &mut Round) {
        let quote = self.quote(&execution);
        let id = execution.id.clone();
        let (state, accepted, reason) = match decision {
            Ok(()) => (LocalExecutionState::AskForBidAccepted, true, String::new()),
            Err(reason) => (LocalExecutionState::AskForBidRejected, false, reason),
        };
        self.records.insert(
            id.clone(),
            Record { execution, state, message: reason.clone(), outcome: None, reported: !accepted },
        );
        round.writes.push(id.clone());
        round.sends.push(FromCompute::BidResult { execution_id: id, accepted, reason, quote });
    }

    fn quote(&self, execution: &Execution) -> Option<f64> {
        let prices = self.cfg.prices?;
        let job = execution.job.as_deref()?;
        Some(prices.quote(&job_resources_of(job), job.task().map_or(0, |t| t.timeouts.execution_timeout)))
    }

    /// Whether to bid: the node must have the engine, inputs and publisher, and the job must
    /// fit in the node at all (it may still wait in the queue for capacity). The outside probe,
    /// if any, is asked afterwards, off the loop.
    fn bid(&self, execution: &Execution) -> Result<(), String> {
        let job = execution.job.as_deref().ok_or("the ask carried no job")?;
        let task = job.task().ok_or("the job has no task")?;
        let Some(executor) = self.executors.iter().find(|e| task.engine.is_type(e.engine_type())) else {
            return Err(format!("this node does not support engine {}", task.engine.type_name()));
        };
        let needs = job_resources_of(job);
        if let Some(excess) = needs.first_excess(&self.cfg.capacity) {
            return Err(format!("the job needs more than this node has: {excess}"));
        }
        for input in &task.input_sources {
            let provider = self
                .inputs
                .iter()
                .find(|p| input.source.is_type(p.source_type()))
                .ok_or_else(|| format!("this node does not support input source {}", input.source.type_name()))?;
            provider.validate(input).map_err(|e| e.to_string())?;
        }
        if !task.publisher.is_empty() && !self.publishers.iter().any(|p| task.publisher.is_type(p.publisher_type())) {
            return Err(format!("this node does not support publisher {}", task.publisher.type_name()));
        }
        let policy = &self.cfg.bid_policy;
        let networked =
            !matches!(task.network.r#type, bacalhau_model::NetworkType::None | bacalhau_model::NetworkType::Default);
        if policy.reject_networked && networked {
            return Err("this node does not take networked jobs (--reject-networked-jobs)".into());
        }
        if let Some(why) = &policy.host_network_refusal
            && matches!(task.network.r#type, bacalhau_model::NetworkType::Host | bacalhau_model::NetworkType::Full)
        {
            return Err(why.clone());
        }
        if policy.local_inputs_only {
            for input in &task.input_sources {
                let local =
                    self.inputs.iter().find(|p| input.source.is_type(p.source_type())).and_then(|p| p.is_local(input));
                if local == Some(false) {
                    return Err(format!(
                        "input {} is not in this node's store, and it takes only jobs whose inputs it holds (--local-inputs-only)",
                        input.source.param_str("CID").unwrap_or(&input.target)
                    ));
                }
            }
        }
        if let (Some(max), Some(q)) = (job.market.as_ref().and_then(|m| m.max_price), self.quote(execution))
            && q > max
        {
            return Err(format!("this node quotes {q:.6}, above the job's MaxPrice {max}"));
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
        executor.validate(&probe).map_err(|e| e.to_string())
    }

    fn cancel(&mut self, id: &ExecutionId, reason: &str, round: &mut Round) {
        // Cancelled while the probe runs: its answer is dropped, no bid is made.
        if self.probing.remove(id) {
            return;
        }
        if let Some((token, _)) = self.running.get(id) {
            // The run ends itself and reports Cancelled.
            token.cancel();
            return;
        }
        let message =
            if reason.is_empty() { "execution cancelled".to_owned() } else { format!("execution cancelled: {reason}") };
        if self.transition(id, ExecutionEvent::Cancelled, &message, round).is_err() {
            return;
        }
        self.queue.retain(|q| &q.id != id);
        if let Some(r) = self.records.get_mut(id) {
            r.outcome = Some(Outcome::Failed { message, cancelled: true, retryable: false });
            r.reported = false;
            round.sends.extend(report(r));
        }
    }

    fn finished(&mut self, id: ExecutionId, outcome: Outcome, round: &mut Round) {
        if let Some((_, res)) = self.running.remove(&id) {
            self.used = self.used.sub(&res);
        }
        let (event, message) = match &outcome {
            Outcome::Completed { .. } => (ExecutionEvent::Completed, "completed".to_owned()),
            Outcome::Failed { cancelled: true, message, .. } => (ExecutionEvent::Cancelled, message.clone()),
            Outcome::Failed { message, .. } => (ExecutionEvent::Failed, message.clone()),
        };
        if let Err(illegal) = self.transition(&id, event, &message, round) {
            warn!(execution_id = %id, %illegal, "a run ended in a state that does not allow it; its outcome is dropped");
            return;
        }
        if let Some(r) = self.records.get_mut(&id) {
            r.outcome = Some(outcome);
            r.reported = false;
            round.sends.extend(report(r));
        }
    }

    /// Starts queued executions that fit, highest priority first, then oldest.
    fn schedule(&mut self, round: &mut Round) -> Vec<RunPlan> {
        self.queue.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
        let mut starts = Vec::new();
        let mut keep = Vec::new();
        for q in std::mem::take(&mut self.queue) {
            let Some(record) = self.records.get(&q.id) else { continue };
            let needs = job_resources(record);
            if !self.used.add(&needs).fits_within(&self.cfg.capacity) {
                keep.push(q);
                continue;
            }
            let execution = record.execution.clone();
            let Some(task) = execution.job.as_deref().and_then(|j| j.task()).cloned() else { continue };
            let Some(executor) = self.executors.iter().find(|e| task.engine.is_type(e.engine_type())).cloned() else {
                continue;
            };
            let publisher = if task.publisher.is_empty() {
                None
            } else {
                self.publishers.iter().find(|p| task.publisher.is_type(p.publisher_type())).cloned()
            };
            let token = CancellationToken::new();
            // Inputs are written against the job's disk, or what the node has left when it named none.
            let disk_budget =
                if needs.disk_bytes > 0 { needs.disk_bytes } else { self.cfg.capacity.sub(&self.used).disk_bytes };
            // Only an accepted bid starts (a queued execution cancelled meanwhile left the queue).
            if self.transition(&q.id, ExecutionEvent::Started, "running", round).is_err() {
                continue;
            }
            self.used = self.used.add(&needs);
            self.running.insert(q.id.clone(), (token.clone(), needs));
            starts.push(RunPlan {
                exec_dir: self.cfg.data_dir.join("executions").join(q.id.as_str()),
                execution,
                executor,
                inputs: self.inputs.clone(),
                publisher,
                resources: needs,
                disk_budget,
                prices: self.cfg.prices,
                cancel: token,
                events: self.endpoint.sender(),
            });
        }
        self.queue = keep;
        starts
    }
}

/// What a job takes from capacity. An orchestrator fills in defaults for zero amounts; a
/// zero that reaches here anyway still counts as the submission defaults, never as nothing.
fn job_resources_of(job: &bacalhau_model::Job) -> Resources {
    static DEFAULTS: std::sync::LazyLock<Resources> = std::sync::LazyLock::new(|| {
        let d = bacalhau_model::JobTypeDefaults::default();
        let cfg = bacalhau_model::ResourcesConfig { cpu: d.cpu, memory: d.memory, ..Default::default() };
        Resources::parse(&cfg).unwrap_or_default()
    });
    let r = job.task().and_then(|t| Resources::parse(&t.resources).ok()).unwrap_or_default();
    Resources {
        cpu_millis: if r.cpu_millis == 0 { DEFAULTS.cpu_millis } else { r.cpu_millis },
        memory_bytes: if r.memory_bytes == 0 { DEFAULTS.memory_bytes } else { r.memory_bytes },
        ..r
    }
}

fn job_resources(r: &Record) -> Resources {
    r.execution.job.as_deref().map(job_resources_of).unwrap_or_default()
}

/// The message that reports a finished execution, if it still needs reporting.
fn report(r: &Record) -> Option<FromCompute> {
    if r.reported {
        return None;
    }
    match r.outcome.clone()? {
        Outcome::Completed { published_result, run_output, cost } => {
            Some(FromCompute::RunResult { execution_id: r.execution.id.clone(), published_result, run_output, cost })
        }
        Outcome::Failed { message, cancelled, retryable } => {
            Some(FromCompute::ComputeError { execution_id: r.execution.id.clone(), message, cancelled, retryable })
        }
    }
}

/// A length as the protocol's u32 count, saturating.
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
