//! A seeded, deterministic simulator of the control plane.
//!
//! It runs the real [`bacalhau_orchestrator::engine::Engine`] and N real
//! [`bacalhau_compute::engine::Engine`]s, each on its real store (redb on its in-memory
//! backend, which outlives a simulated crash as a disk would), over a simulated network and a
//! virtual clock. Everything that happens is an event in one queue ordered by (time, sequence),
//! and every random choice comes from one generator seeded by the run's seed, so a seed
//! replays exactly: the same events in the same order, the same IDs, the same end state.
//!
//! Faults, while they are on: messages lost, duplicated, delayed and so reordered; compute
//! nodes crashing and restarting on their store; the orchestrator crashing and restarting on
//! its store; a node cut off from the orchestrator for a while; the wall clock jumping. Then
//! the faults stop and the run goes on until every job is finished and every node idle, or a
//! deadline passes. [`run`] then checks the invariants and returns what went wrong, naming
//! the seed.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use bacalhau_compute::engine::{Effects as NodeEffects, Engine as NodeEngine, Input as NodeInput};
use bacalhau_compute::{ExecutionStore, Outcome};
use bacalhau_model::{
    ComputeNodeInfo, ComputeStateType, ExecutionId, Job, JobId, JobStateType, NodeId, NodeInfo, NodeType, Resources,
    RunCommandResult, SpecConfig, SubmissionDefaults, Verification, prepare_submission,
};
use bacalhau_orchestrator::engine::{Answer, Engine, Input, Now, Snapshot, Stored, Ticket};
use bacalhau_orchestrator::store::JobStore;
use bacalhau_orchestrator::{OrchestratorConfig, SeededIds, SplitMix64};
use bacalhau_protocol::{Envelope, ExecutionDigest, FromCompute, ToCompute};

/// What a run does.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Every random choice comes from it.
    pub seed: u64,
    /// Compute nodes.
    pub nodes: usize,
    /// Jobs submitted while faults are on.
    pub jobs: usize,
    /// How long faults are on (virtual time).
    pub fault_window: Duration,
    /// How long after the faults stop everything must have settled.
    pub settle_deadline: Duration,
    /// The faults.
    pub faults: Faults,
}

/// Which faults, and how many.
#[derive(Clone, Debug)]
pub struct Faults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplication: f64,
    /// A message takes up to this long (so messages overtake each other).
    pub max_delay: Duration,
    /// Compute node crashes (each followed by a restart on its store).
    pub node_crashes: u32,
    /// Orchestrator crashes (each followed by a restart on its store).
    pub orchestrator_crashes: u32,
    /// Times a node is cut off from the orchestrator, for longer than the disconnect timeout.
    pub partitions: u32,
    /// Jumps of the wall clock, up to a minute either way.
    pub clock_jumps: u32,
    /// Probability that a run fails (retryably).
    pub run_failure: f64,
}

impl SimConfig {
    /// Every fault on, at the rates the test suite uses.
    pub fn with_all_faults(seed: u64) -> Self {
        Self {
            seed,
            nodes: 3,
            jobs: 12,
            fault_window: Duration::from_secs(30),
            settle_deadline: Duration::from_secs(600),
            faults: Faults {
                loss: 0.1,
                duplication: 0.1,
                max_delay: Duration::from_millis(300),
                node_crashes: 2,
                orchestrator_crashes: 1,
                partitions: 1,
                clock_jumps: 2,
                run_failure: 0.05,
            },
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// A hash of every event in order: equal for two runs of one seed.
    pub trace: u64,
    /// Events handled.
    pub events: u64,
    /// Jobs acknowledged to the client.
    pub acknowledged: usize,
    /// Of those, how many ended Completed, Failed, Stopped.
    pub completed: usize,
    /// Failed jobs.
    pub failed: usize,
    /// Stopped jobs.
    pub stopped: usize,
    /// Executions that ended Failed (crashes, partitions, injected failures).
    pub failed_executions: usize,
    /// Messages lost and duplicated by the network.
    pub lost: u64,
    /// Duplicated messages.
    pub duplicated: u64,
    /// Virtual time at which everything had settled.
    pub settled_at: Duration,
    /// Why executions failed, and how often.
    pub execution_failures: BTreeMap<String, usize>,
    /// Why jobs failed, and how often.
    pub job_failures: BTreeMap<String, usize>,
    /// Verified jobs that completed.
    pub verified: usize,
    /// Wrong results out-voted and recorded as dissents.
    pub dissents: usize,
}

/// The run's seeded choices.
struct Rng(SplitMix64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        // 53 random bits as a fraction in [0, 1).
        #[allow(clippy::cast_precision_loss)]
        let x = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        x < p
    }

    /// A duration in [lo, hi].
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = u64::try_from((hi.saturating_sub(lo)).as_nanos()).unwrap_or(u64::MAX);
        lo + Duration::from_nanos(if span == 0 { 0 } else { self.next() % span })
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

/// How a simulated run ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum RunEnd {
    Complete,
    Fail,
    Cancelled,
}

#[derive(Debug)]
enum Event {
    /// A message reaches the orchestrator (if it is up).
    ToOrchestrator {
        from: usize,
        msg: FromCompute,
    },
    /// A message reaches a node, if the node and the orchestrator incarnation that sent it are
    /// both still the ones the message was sent between.
    ToNode {
        node: usize,
        node_life: u64,
        orch_life: u64,
        msg: ToCompute,
    },
    /// The orchestrator hears that a node's link is up.
    Connected {
        node: usize,
        orch_life: u64,
    },
    RunDone {
        node: usize,
        life: u64,
        id: ExecutionId,
        end: RunEnd,
        cid: String,
    },
    Housekeeping {
        life: u64,
    },
    Heartbeat {
        node: usize,
        life: u64,
    },
    Submit(usize),
    Stop(usize),
    NodeCrash(usize),
    NodeRestart(usize),
    OrchestratorCrash,
    OrchestratorRestart,
    Partition(usize, bool),
    ClockJump(i64),
    FaultsEnd,
    Check,
}

impl Event {
    fn kind(&self) -> u8 {
        match self {
            Event::ToOrchestrator { .. } => 0,
            Event::ToNode { .. } => 1,
            Event::Connected { .. } => 2,
            Event::RunDone { .. } => 3,
            Event::Housekeeping { .. } => 4,
            Event::Heartbeat { .. } => 5,
            Event::Submit(_) => 6,
            Event::Stop(_) => 7,
            Event::NodeCrash(_) => 8,
            Event::NodeRestart(_) => 9,
            Event::OrchestratorCrash => 10,
            Event::OrchestratorRestart => 11,
            Event::Partition(..) => 12,
            Event::ClockJump(_) => 13,
            Event::FaultsEnd => 14,
            Event::Check => 15,
        }
    }
}

struct Node {
    id: NodeId,
    store: ExecutionStore,
    engine: Option<NodeEngine>,
    /// Bumped at every crash: events of an earlier life are void.
    life: u64,
    cut_off: bool,
    /// Each running execution's pending end (its event's key), so a cancel can replace it.
    runs: BTreeMap<ExecutionId, (Duration, u64)>,
}

struct Orchestrator {
    store: JobStore,
    engine: Option<Engine>,
    life: u64,
    /// When the current life started (its monotonic clock's zero).
    born: Duration,
}

/// A job of the workload and what the client knows of it.
struct Client {
    spec: Job,
    /// Partitions (replicas, for a verified job).
    count: u32,
    /// Run on three nodes, two agreeing.
    verified: bool,
    acknowledged: Option<JobId>,
    stop_acknowledged: bool,
}

const HOUSEKEEPING: Duration = Duration::from_millis(500);
const HEARTBEAT: Duration = Duration::from_secs(1);
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unix time of the simulation's start (2026-01-01), in nanoseconds.
const EPOCH_NANOS: i64 = 1_767_225_600_000_000_000;

struct Sim {
    cfg: SimConfig,
    rng: Rng,
    now: Duration,
    seq: u64,
    queue: BTreeMap<(Duration, u64), Event>,
    faults_on: bool,
    clock_offset: i64,
    orch: Orchestrator,
    nodes: Vec<Node>,
    clients: Vec<Client>,
    tickets: BTreeMap<Ticket, (usize, bool)>,
    next_ticket: Ticket,
    trace: std::hash::DefaultHasher,
    report: Report,
    settled: bool,
}

/// Runs one seed and checks the invariants; `Err` says which failed and how to replay it.
pub fn run(cfg: &SimConfig) -> Result<Report, String> {
    let mut sim = Sim::new(cfg.clone()).map_err(|e| format!("seed {}: cannot start: {e}", cfg.seed))?;
    sim.schedule_workload();
    sim.drive();
    sim.check().map_err(|e| {
        format!("seed {} failed: {e}\n  replay it with SIM_SEED={} cargo test -p bacalhau-sim", cfg.seed, cfg.seed)
    })?;
    let mut report = sim.report.clone();
    report.trace = sim.trace.finish();
    Ok(report)
}

impl Sim {
    fn new(cfg: SimConfig) -> Result<Self, String> {
        let store = JobStore::in_memory().map_err(|e| e.to_string())?;
        let nodes = (0..cfg.nodes)
            .map(|i| {
                Ok(Node {
                    id: NodeId::from(format!("sim-node-{i}").as_str()),
                    store: ExecutionStore::in_memory().map_err(|e| e.to_string())?,
                    engine: None,
                    life: 0,
                    cut_off: false,
                    runs: BTreeMap::new(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let rng = Rng(SplitMix64::new(cfg.seed));
        Ok(Self {
            rng,
            now: Duration::ZERO,
            seq: 0,
            queue: BTreeMap::new(),
            faults_on: true,
            clock_offset: 0,
            orch: Orchestrator { store, engine: None, life: 0, born: Duration::ZERO },
            nodes,
            clients: Vec::new(),
            tickets: BTreeMap::new(),
            next_ticket: 0,
            trace: std::hash::DefaultHasher::new(),
            report: Report::default(),
            settled: false,
            cfg,
        })
    }

    fn at(&mut self, after: Duration, event: Event) -> u64 {
        self.seq += 1;
        self.queue.insert((self.now + after, self.seq), event);
        self.seq
    }

    fn wall(&self) -> i64 {
        EPOCH_NANOS + i64::try_from(self.now.as_nanos()).unwrap_or(i64::MAX) + self.clock_offset
    }

    fn schedule_workload(&mut self) {
        self.start_orchestrator();
        for n in 0..self.nodes.len() {
            self.start_node(n);
        }
        let window = self.cfg.fault_window;
        for j in 0..self.cfg.jobs {
            let verified = self.rng.chance(0.25);
            let count = if verified { 3 } else { u32::try_from(1 + self.rng.below(3)).unwrap_or(1) };
            let mut spec = job(if verified { 1 } else { count });
            // Half the jobs wait for nodes (Bacalhau's QueueTimeout) rather than fail without.
            if self.rng.chance(0.5) {
                spec.tasks[0].timeouts.queue_timeout = 120;
            }
            if verified {
                spec.verification = Some(Verification { replicas: 3, quorum: 2 });
                spec.tasks[0].publisher = SpecConfig::new("ipfs");
            }
            self.clients.push(Client { spec, count, verified, acknowledged: None, stop_acknowledged: false });
            let t = self.rng.between(Duration::ZERO, window * 2 / 3);
            self.at(t, Event::Submit(j));
            if self.rng.chance(0.2) {
                let t = t + self.rng.between(Duration::from_millis(100), Duration::from_secs(5));
                self.at(t, Event::Stop(j));
            }
        }
        let f = self.cfg.faults.clone();
        for _ in 0..f.node_crashes {
            let n = usize::try_from(self.rng.below(self.nodes.len() as u64)).unwrap_or(0);
            let t = self.rng.between(Duration::from_secs(1), window);
            self.at(t, Event::NodeCrash(n));
            let back = t + self.rng.between(Duration::from_millis(100), Duration::from_secs(3));
            self.at(back, Event::NodeRestart(n));
        }
        for _ in 0..f.orchestrator_crashes {
            let t = self.rng.between(Duration::from_secs(1), window);
            self.at(t, Event::OrchestratorCrash);
            let back = t + self.rng.between(Duration::from_millis(100), Duration::from_secs(3));
            self.at(back, Event::OrchestratorRestart);
        }
        for _ in 0..f.partitions {
            let n = usize::try_from(self.rng.below(self.nodes.len() as u64)).unwrap_or(0);
            let t = self.rng.between(Duration::from_secs(1), window);
            self.at(t, Event::Partition(n, true));
            let heal = t + DISCONNECT_TIMEOUT + self.rng.between(Duration::from_secs(1), Duration::from_secs(5));
            self.at(heal, Event::Partition(n, false));
        }
        for _ in 0..f.clock_jumps {
            let t = self.rng.between(Duration::from_secs(1), window);
            let jump = i64::try_from(self.rng.below(120_000_000_000)).unwrap_or(0) - 60_000_000_000;
            self.at(t, Event::ClockJump(jump));
        }
        self.at(window, Event::FaultsEnd);
        self.at(window, Event::Check);
    }

    fn drive(&mut self) {
        let deadline = self.cfg.fault_window + self.cfg.settle_deadline;
        while let Some(((t, seq), event)) = self.queue.pop_first() {
            if t > deadline || self.settled {
                break;
            }
            self.now = t;
            self.report.events += 1;
            (t, seq, event.kind()).hash(&mut self.trace);
            self.handle(event);
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::ToOrchestrator { from, msg } => {
                if self.orch.engine.is_some() {
                    msg_fingerprint_from(&msg).hash(&mut self.trace);
                    let env = Envelope::new(self.nodes[from].id.clone(), msg);
                    self.orchestrator_step(vec![Input::Message(Box::new(env))]);
                }
            }
            Event::ToNode { node, node_life, orch_life, msg } => {
                let n = &self.nodes[node];
                if n.life == node_life && self.orch.life == orch_life && n.engine.is_some() {
                    msg_fingerprint_to(&msg).hash(&mut self.trace);
                    let input = match msg {
                        ToCompute::AskForBid { execution, .. } => NodeInput::Ask { execution, verdict: Ok(()) },
                        other => NodeInput::Message(other),
                    };
                    self.node_step(node, vec![input]);
                }
            }
            Event::Connected { node, orch_life } => {
                if self.orch.life == orch_life && self.orch.engine.is_some() {
                    let id = self.nodes[node].id.clone();
                    self.orchestrator_step(vec![Input::Connected(id)]);
                }
            }
            Event::RunDone { node, life, id, end, cid } => {
                if self.nodes[node].life != life || self.nodes[node].engine.is_none() {
                    return;
                }
                self.nodes[node].runs.remove(&id);
                id.hash(&mut self.trace);
                let outcome = match end {
                    RunEnd::Complete => Outcome::Completed {
                        published_result: Some(SpecConfig::new("ipfs").with_param("CID", cid)),
                        run_output: RunCommandResult { stdout: format!("{id}\n"), ..Default::default() },
                        cost: None,
                    },
                    RunEnd::Fail => {
                        Outcome::Failed { message: "simulated failure".into(), cancelled: false, retryable: true }
                    }
                    RunEnd::Cancelled => {
                        Outcome::Failed { message: "execution cancelled".into(), cancelled: true, retryable: false }
                    }
                };
                self.node_step(node, vec![NodeInput::Finished { id, outcome }]);
            }
            Event::Housekeeping { life } => {
                if life == self.orch.life && self.orch.engine.is_some() {
                    self.orchestrator_step(vec![Input::Tick]);
                    self.at(HOUSEKEEPING, Event::Housekeeping { life });
                }
            }
            Event::Heartbeat { node, life } => {
                if self.nodes[node].life != life {
                    return;
                }
                if let Some(e) = &self.nodes[node].engine {
                    let msg = FromCompute::Heartbeat {
                        available: Default::default(),
                        queued: Default::default(),
                        running: u32::try_from(e.running_count()).unwrap_or(u32::MAX),
                        enqueued: u32::try_from(e.queued_count()).unwrap_or(u32::MAX),
                        ipfs_roots: None,
                        digest: Some(e.digest()),
                    };
                    self.send_up(node, msg);
                    self.at(HEARTBEAT, Event::Heartbeat { node, life });
                    self.node_step(node, vec![NodeInput::Tick]);
                }
            }
            Event::Submit(j) => self.submit(j),
            Event::Stop(j) => self.stop(j),
            Event::NodeCrash(n) => {
                let node = &mut self.nodes[n];
                if node.engine.take().is_some() {
                    node.life += 1;
                    node.runs.clear();
                }
            }
            Event::NodeRestart(n) => {
                if self.nodes[n].engine.is_none() {
                    self.start_node(n);
                }
            }
            Event::OrchestratorCrash => {
                if self.orch.engine.take().is_some() {
                    self.orch.life += 1;
                }
            }
            Event::OrchestratorRestart => {
                if self.orch.engine.is_none() {
                    self.start_orchestrator();
                    // The nodes' streams broke with it: they dial again and register.
                    for n in 0..self.nodes.len() {
                        if self.nodes[n].engine.is_some() {
                            self.reconnect(n);
                        }
                    }
                }
            }
            Event::Partition(n, cut) => self.nodes[n].cut_off = cut,
            Event::ClockJump(by) => self.clock_offset += by,
            Event::FaultsEnd => {
                self.faults_on = false;
                for n in 0..self.nodes.len() {
                    self.nodes[n].cut_off = false;
                    if self.nodes[n].engine.is_none() {
                        self.start_node(n);
                    }
                }
                if self.orch.engine.is_none() {
                    self.start_orchestrator();
                    for n in 0..self.nodes.len() {
                        self.reconnect(n);
                    }
                }
            }
            Event::Check => {
                if self.is_settled() {
                    self.settled = true;
                    self.report.settled_at = self.now;
                } else {
                    self.at(Duration::from_secs(1), Event::Check);
                }
            }
        }
    }

    fn start_orchestrator(&mut self) {
        let mut cfg = OrchestratorConfig::new(std::path::PathBuf::new());
        cfg.node_disconnect_timeout = DISCONNECT_TIMEOUT;
        cfg.housekeeping_interval = HOUSEKEEPING;
        cfg.restart_grace = Duration::from_secs(3);
        // Each life draws its IDs from its own stream, as a restarted process's random IDs
        // never repeat the last one's.
        let ids = SeededIds::new(self.cfg.seed ^ (self.orch.life + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let mut engine = Engine::new(cfg, Box::new(ids));
        match Snapshot::read(&self.orch.store) {
            Ok(s) => engine.restore(s),
            Err(e) => panic!("seed {}: the orchestrator's store cannot be read: {e}", self.cfg.seed),
        }
        self.orch.engine = Some(engine);
        self.orch.born = self.now;
        let life = self.orch.life;
        self.at(HOUSEKEEPING, Event::Housekeeping { life });
    }

    fn start_node(&mut self, n: usize) {
        let capacity = Resources { cpu_millis: 100, memory_bytes: 1 << 30, ..Resources::default() };
        let mut engine = NodeEngine::new(capacity, None, false, 0);
        let node = &mut self.nodes[n];
        let records = node.store.all().unwrap_or_else(|e| panic!("node {n}'s store cannot be read: {e}"));
        let fx = engine.restore(records);
        if let Err(e) = node.store.commit(&fx.writes, &fx.forgets) {
            panic!("node {n}'s store cannot be written: {e}");
        }
        node.engine = Some(engine);
        let life = node.life;
        self.at(HEARTBEAT, Event::Heartbeat { node: n, life });
        self.reconnect(n);
    }

    /// A node's link comes up: the orchestrator hears of the link, then of its registration.
    fn reconnect(&mut self, n: usize) {
        let orch_life = self.orch.life;
        self.at(Duration::ZERO, Event::Connected { node: n, orch_life });
        self.register(n);
    }

    fn register(&mut self, n: usize) {
        let Some(engine) = &self.nodes[n].engine else { return };
        let (executions, pending) = engine.registration();
        let info = node_info(&self.nodes[n].id);
        self.send_up(n, FromCompute::Register { info: Box::new(info), executions });
        for msg in pending {
            self.send_up(n, msg);
        }
    }

    /// The network: a message may be lost, duplicated or delayed while faults are on, and
    /// never crosses a partition.
    fn copies(&mut self, cut_off: bool) -> Vec<Duration> {
        if cut_off {
            self.report.lost += 1;
            return Vec::new();
        }
        if !self.faults_on {
            return vec![Duration::from_millis(1)];
        }
        let f = self.cfg.faults.clone();
        if self.rng.chance(f.loss) {
            self.report.lost += 1;
            return Vec::new();
        }
        let mut out = vec![self.rng.between(Duration::from_millis(1), f.max_delay)];
        if self.rng.chance(f.duplication) {
            self.report.duplicated += 1;
            out.push(self.rng.between(Duration::from_millis(1), f.max_delay));
        }
        out
    }

    fn send_up(&mut self, from: usize, msg: FromCompute) {
        let delays = self.copies(self.nodes[from].cut_off);
        for d in delays {
            self.at(d, Event::ToOrchestrator { from, msg: msg.clone() });
        }
    }

    fn send_down(&mut self, node: usize, msg: ToCompute) {
        let delays = self.copies(self.nodes[node].cut_off);
        let (node_life, orch_life) = (self.nodes[node].life, self.orch.life);
        for d in delays {
            self.at(d, Event::ToNode { node, node_life, orch_life, msg: msg.clone() });
        }
    }

    fn orchestrator_step(&mut self, inputs: Vec<Input>) {
        let now = Now { wall: self.wall(), mono: self.now.saturating_sub(self.orch.born) };
        let Some(engine) = self.orch.engine.as_mut() else { return };
        let fx = engine.step(inputs, now);
        // Persist before acting, as the runtime does.
        if let Err(e) = self.orch.store.commit(&fx.batch) {
            panic!("seed {}: the orchestrator's commit failed: {e}", self.cfg.seed);
        }
        for (node_id, msg) in fx.sends {
            if let Some(n) = self.nodes.iter().position(|n| n.id == node_id) {
                self.send_down(n, msg);
            }
        }
        for (ticket, answer) in fx.answers {
            let Some((j, is_stop)) = self.tickets.remove(&ticket) else { continue };
            match answer {
                Answer::Submit(Ok(r)) if !is_stop => self.clients[j].acknowledged = Some(r.job_id),
                Answer::Stop(Ok(_)) if is_stop => self.clients[j].stop_acknowledged = true,
                _ => {}
            }
        }
    }

    fn node_step(&mut self, n: usize, inputs: Vec<NodeInput>) {
        let Some(engine) = self.nodes[n].engine.as_mut() else { return };
        let fx: NodeEffects = engine.step(inputs);
        if let Err(e) = self.nodes[n].store.commit(&fx.writes, &fx.forgets) {
            panic!("node {n}'s store cannot be written: {e}");
        }
        if fx.reregister {
            self.register(n);
        }
        for msg in fx.sends {
            self.send_up(n, msg);
        }
        let life = self.nodes[n].life;
        for id in fx.cancels {
            if let Some(key) = self.nodes[n].runs.remove(&id) {
                self.queue.remove(&key);
                let seq = self.at(
                    Duration::from_millis(5),
                    Event::RunDone { node: n, life, id: id.clone(), end: RunEnd::Cancelled, cid: String::new() },
                );
                self.nodes[n].runs.insert(id, (self.now + Duration::from_millis(5), seq));
            }
        }
        for start in fx.starts {
            let took = self.rng.between(Duration::from_millis(50), Duration::from_secs(2));
            let p = self.cfg.faults.run_failure;
            let end = if self.faults_on && self.rng.chance(p) { RunEnd::Fail } else { RunEnd::Complete };
            let id = start.execution.id.clone();
            let cid = self.cid(n, &start.execution.job_id);
            let seq = self.at(took, Event::RunDone { node: n, life, id: id.clone(), end, cid });
            self.nodes[n].runs.insert(id, (self.now + took, seq));
        }
    }

    /// The CID a node publishes for a job's result: every honest node the same one; the
    /// dishonest node (node 0, in odd seeds) another.
    fn cid(&self, node: usize, job: &JobId) -> String {
        if node == 0 && self.cfg.seed % 2 == 1 { format!("bafy-tampered-{job}") } else { format!("bafy-{job}") }
    }

    fn submit(&mut self, j: usize) {
        if self.orch.engine.is_none() {
            // Refused (connection refused): the client retries.
            self.at(Duration::from_secs(1), Event::Submit(j));
            return;
        }
        let id = JobId::from(format!("j-sim-{:04}-{j:04}", self.cfg.seed % 10_000).as_str());
        let spec = self.clients[j].spec.clone();
        let (job, warnings) = match prepare_submission(spec, id, self.wall(), &SubmissionDefaults::default()) {
            Ok(p) => p,
            Err(e) => panic!("the simulator's job is invalid: {e}"),
        };
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.tickets.insert(ticket, (j, false));
        // A retried submission carries the same Idempotency-Key, so it never makes two jobs.
        let key = Some(format!("sim-{j}"));
        let stored = self.lookup_key(key.as_deref());
        let input = Input::Submit { ticket, job: Box::new(job), warnings, key, force: false, stored, trace: None };
        self.orchestrator_step(vec![input]);
    }

    /// What the runtime would read for a submission's Idempotency-Key.
    fn lookup_key(&self, key: Option<&str>) -> Stored {
        let mut stored = Stored::default();
        if let Some(k) = key
            && !self.orch.engine.as_ref().is_some_and(|e| e.remembers_key(k))
        {
            stored.idempotent = self.orch.store.idempotent_submission(k).ok().flatten();
        }
        stored
    }

    fn stop(&mut self, j: usize) {
        let Some(job_id) = self.clients[j].acknowledged.clone() else {
            // Not submitted yet (or not acknowledged): try later.
            if self.faults_on {
                self.at(Duration::from_secs(1), Event::Stop(j));
            }
            return;
        };
        if self.orch.engine.is_none() {
            self.at(Duration::from_secs(1), Event::Stop(j));
            return;
        }
        let mut stored = Stored::default();
        if !self.orch.engine.as_ref().is_some_and(|e| e.is_active(&job_id)) {
            stored.job = self.orch.store.job(job_id.as_str()).ok().flatten();
        }
        self.next_ticket += 1;
        let ticket = self.next_ticket;
        self.tickets.insert(ticket, (j, true));
        self.orchestrator_step(vec![Input::Stop { ticket, job_id, reason: String::new(), stored }]);
    }

    /// Every acknowledged job finished, every client has its answer, every node idle.
    fn is_settled(&self) -> bool {
        if self.faults_on || self.orch.engine.is_none() {
            return false;
        }
        for c in &self.clients {
            let Some(id) = &c.acknowledged else { return false };
            match self.orch.store.job(id.as_str()) {
                Ok(Some(job)) if job.state.state_type.is_terminal() => {}
                _ => return false,
            }
        }
        self.nodes.iter().all(|n| n.engine.as_ref().is_some_and(idle))
    }

    fn check(&mut self) -> Result<(), String> {
        if !self.settled {
            let waiting: Vec<String> = self
                .clients
                .iter()
                .enumerate()
                .filter_map(|(j, c)| match &c.acknowledged {
                    None => Some(format!("job {j} never acknowledged")),
                    Some(id) => match self.orch.store.job(id.as_str()) {
                        Ok(Some(job)) if job.state.state_type.is_terminal() => None,
                        Ok(Some(job)) => Some(format!("{id} still {}", job.state.state_type)),
                        Ok(None) => Some(format!("{id} acknowledged but not in the store")),
                        Err(e) => Some(format!("{id}: {e}")),
                    },
                })
                .collect();
            let busy: Vec<String> =
                self.nodes.iter().filter(|n| !n.engine.as_ref().is_some_and(idle)).map(|n| n.id.to_string()).collect();
            return Err(format!(
                "not settled {}s after the faults stopped (liveness): jobs {waiting:?}, nodes still busy {busy:?}",
                self.cfg.settle_deadline.as_secs()
            ));
        }
        for n in &self.nodes {
            let held = n.store.all().map_err(|e| e.to_string())?;
            if !held.is_empty() {
                return Err(format!("{} still stores {} executions after everything settled", n.id, held.len()));
            }
        }
        for (j, c) in self.clients.iter().enumerate() {
            let Some(id) = &c.acknowledged else { continue };
            self.report.acknowledged += 1;
            let job = match self.orch.store.job(id.as_str()) {
                Ok(Some(job)) => job,
                Ok(None) => return Err(format!("job {j} ({id}) was acknowledged and is lost")),
                Err(e) => return Err(format!("job {id}: {e}")),
            };
            let execs = self.orch.store.executions(id.as_str()).map_err(|e| e.to_string())?;
            let mut completed: BTreeMap<u32, usize> = BTreeMap::new();
            for e in &execs {
                if e.compute_state.state_type == ComputeStateType::Completed {
                    *completed.entry(e.partition_index).or_default() += 1;
                }
                if e.compute_state.state_type == ComputeStateType::Failed {
                    self.report.failed_executions += 1;
                    *self.report.execution_failures.entry(first_words(&e.compute_state.message)).or_default() += 1;
                    if let Ok(w) = std::env::var("SIM_EXPLAIN")
                        && e.compute_state.message.contains(&w)
                    {
                        eprintln!("seed {} exec {} on {}:", self.cfg.seed, e.id, e.node_id);
                        for h in self.orch.store.history(id.as_str()).unwrap_or_default() {
                            if h.execution_id == e.id || h.execution_id.0.is_empty() {
                                eprintln!(
                                    "   {} {} {:?} {}",
                                    h.time, h.event.topic, h.execution_state, h.event.message
                                );
                            }
                        }
                    }
                }
            }
            if let Some((p, n)) = completed.iter().find(|(_, n)| **n > 1) {
                return Err(format!("job {id}: partition {p} completed {n} times"));
            }
            match job.state.state_type {
                JobStateType::Completed => {
                    self.report.completed += 1;
                    let parts: BTreeSet<u32> = completed.keys().copied().collect();
                    let want: BTreeSet<u32> = (0..c.count).collect();
                    if parts != want {
                        return Err(format!(
                            "job {id} is Completed with Count {} but its completed partitions are {parts:?}",
                            c.count
                        ));
                    }
                    if c.verified {
                        self.report.dissents += check_verified(&job, &execs)?;
                        self.report.verified += 1;
                    }
                }
                JobStateType::Failed => {
                    self.report.failed += 1;
                    *self.report.job_failures.entry(first_words(&job.state.message)).or_default() += 1;
                }
                JobStateType::Stopped => self.report.stopped += 1,
                other => return Err(format!("job {id} ended {other}")),
            }
            if c.stop_acknowledged && job.state.state_type != JobStateType::Stopped {
                return Err(format!("job {id} was stopped (acknowledged) but ended {}", job.state.state_type));
            }
        }
        Ok(())
    }
}

/// A verified job that Completed: a quorum of its completed executions published the honest
/// CID, and any that published another was recorded as dissenting (returns how many).
fn check_verified(job: &Job, execs: &[bacalhau_model::Execution]) -> Result<usize, String> {
    let honest = format!("bafy-{}", job.id);
    let done: Vec<&bacalhau_model::Execution> =
        execs.iter().filter(|e| e.compute_state.state_type == ComputeStateType::Completed).collect();
    let cid = |e: &bacalhau_model::Execution| {
        e.published_result.as_ref().and_then(|p| p.param_str("CID")).unwrap_or_default().to_owned()
    };
    let agreeing = done.iter().filter(|e| cid(e) == honest).count();
    if agreeing < 2 {
        return Err(format!("verified job {} Completed with {agreeing} agreeing results (quorum 2)", job.id));
    }
    let wrong: Vec<&&bacalhau_model::Execution> = done.iter().filter(|e| cid(e) != honest).collect();
    for e in &wrong {
        if !e.verification.as_deref().is_some_and(|v| v.starts_with("dissented")) {
            return Err(format!("{}'s wrong result on {} was not recorded as a dissent", job.id, e.node_id));
        }
    }
    Ok(wrong.len())
}

/// A node with nothing live and nothing held: every outcome acknowledged and forgotten, so its
/// memory follows its work in flight, not its history.
fn idle(e: &NodeEngine) -> bool {
    e.digest() == ExecutionDigest::default() && e.running_count() == 0 && e.held() == 0
}

/// A message without its IDs, to count by kind.
fn first_words(message: &str) -> String {
    message.split_whitespace().filter(|w| !w.contains('-')).take(8).collect::<Vec<_>>().join(" ")
}

/// A trivial WASM batch job (the module is never run: the simulator only times runs).
fn job(count: u32) -> Job {
    bacalhau_testkit::wasm_job("data:application/wasm;base64,AGFzbQEAAAA=", count)
}

fn node_info(id: &NodeId) -> NodeInfo {
    let capacity = Resources { cpu_millis: 100, memory_bytes: 1 << 30, ..Resources::default() };
    NodeInfo {
        node_id: id.clone(),
        node_type: NodeType::Compute,
        compute_node_info: Some(ComputeNodeInfo {
            execution_engines: vec!["wasm".into()],
            publishers: vec!["noop".into(), "ipfs".into()],
            storage_sources: vec!["inline".into()],
            max_capacity: capacity.into(),
            available_capacity: capacity.into(),
            max_job_requirements: capacity.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// What of a message goes into the trace: its kind and execution.
fn msg_fingerprint_from(msg: &FromCompute) -> (u8, Option<&ExecutionId>) {
    match msg {
        FromCompute::Register { .. } => (0, None),
        FromCompute::Heartbeat { .. } => (1, None),
        FromCompute::BidResult { execution_id, .. } => (2, Some(execution_id)),
        FromCompute::RunResult { execution_id, .. } => (3, Some(execution_id)),
        FromCompute::ComputeError { execution_id, .. } => (4, Some(execution_id)),
        FromCompute::ExecutionEvent { execution_id, .. } => (5, Some(execution_id)),
        FromCompute::ManagedUpload { execution_id } => (6, Some(execution_id)),
    }
}

fn msg_fingerprint_to(msg: &ToCompute) -> (u8, Option<&ExecutionId>) {
    match msg {
        ToCompute::AskForBid { execution, .. } => (0, Some(&execution.id)),
        ToCompute::BidAccepted { execution_id } => (1, Some(execution_id)),
        ToCompute::BidRejected { execution_id, .. } => (2, Some(execution_id)),
        ToCompute::CancelExecution { execution_id, .. } => (3, Some(execution_id)),
        ToCompute::Ack { execution_id } => (4, Some(execution_id)),
        ToCompute::Registered { .. } => (5, None),
        ToCompute::Reconnected => (6, None),
        ToCompute::Resync => (7, None),
        ToCompute::ManagedUploadUrl { execution_id, .. } => (8, Some(execution_id)),
    }
}
