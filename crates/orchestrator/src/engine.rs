//! The orchestrator's decisions as a synchronous state machine.
//!
//! [`Engine::step`] takes one round of [`Input`]s (submissions, stops, node messages, ticks)
//! at a given [`Now`] and returns its [`Effects`]: the store writes, the messages for compute
//! nodes, the answers for callers and the job events. It holds no lock, reads no clock, makes
//! no ID of its own (they come from an injected [`IdSource`]) and does no I/O: what it needs
//! from the store arrives with its input ([`Stored`]), read by the runtime beforehand. The same
//! inputs from the same state give the same effects, which is what lets the simulator
//! (`tests/simulation.rs`) replay a seed exactly.
//!
//! The runtime (`runtime.rs`) commits the effects' writes in one transaction and only then
//! sends, answers and publishes; if the commit fails it rebuilds the engine from the store
//! ([`Engine::restore`]) and nothing that was not written was told to anyone.
//!
//! Handlers by concern: `nodes.rs` (node messages, membership, reconciliation, digests),
//! `apply.rs` (evaluating jobs and applying plans), `history.rs`, `versions.rs` (updates and
//! reruns).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bacalhau_model::{
    ComputeStateType, DesiredStateType, Evaluation, EvaluationId, EvaluationStatus, Event, Execution, ExecutionEvent,
    ExecutionId, ExecutionState, HistoryType, Job, JobHistory, JobId, JobState, JobStateType, JobType,
    NodeConnectionState, NodeId, NodeInfo, NodeMembershipState, NodeState, Resources, StateChange, TriggeredBy,
    format_rfc3339_nanos,
};
use bacalhau_protocol::{
    Envelope, ExecutionDigest, ExecutionReport, FromCompute, LocalExecutionState, PROTOCOL_VERSION, Phase, ToCompute,
};
use tracing::{debug, info, warn};

use crate::content::ContentIndex;
use crate::ids::IdSource;
use crate::runtime::{
    JobEvent, NodeAction, OrchestratorConfig, OrchestratorError, RerunResult, StopResult, SubmitResult,
};
use crate::scheduler::{self, Notify, Plan, SchedulerConfig};
use crate::selection::NodeView;
use crate::store::WriteBatch;

mod apply;
mod history;
mod nodes;
mod versions;

pub(crate) use nodes::membership_name;
pub(crate) use versions::no_such_version;

/// Idempotency keys kept in memory (the store has them all).
const MAX_IDEMPOTENCY_CACHE: usize = 10_000;

/// Why a node's message about an execution is refused.
pub const FOREIGN_EXECUTION: &str = "report on another node's execution";
/// Why a message from a node that has not registered (or was deleted) is refused.
pub const UNREGISTERED: &str = "message from a node that has not registered";
/// Why a message from a rejected node is refused.
pub const REJECTED: &str = "message from a rejected node";
/// Why a report on an execution that is not in flight is refused.
pub const UNKNOWN_EXECUTION: &str = "report on an execution not in flight";
/// Why a report its execution's state does not allow (a duplicate, a late one) is refused.
pub const LATE_REPORT: &str = "report its execution's state does not allow";

/// The time a step runs at: wall-clock nanoseconds for what is recorded, and a monotonic
/// reading (since the runtime started) for what is measured (liveness, grace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// Nanoseconds since the Unix epoch.
    pub wall: i64,
    /// Time since the runtime started; never goes back.
    pub mono: Duration,
}

/// Names a caller waiting for an answer; the runtime maps it back to the caller.
pub type Ticket = u64;

/// What the store holds that an input needs, read by the runtime before the step. The engine
/// prefers its own memory: a job in flight is newer there than in the store.
#[derive(Clone, Debug, Default)]
pub struct Stored {
    /// The job the input names (by ID for stop and rerun, by Name and Namespace for a
    /// submission), as the store has it.
    pub job: Option<Job>,
    /// Where that job's history ends in the store.
    pub history_seq: u64,
    /// For a rerun of an older version: that version.
    pub version: Option<Job>,
    /// For a submission with an Idempotency-Key: the (job ID, evaluation ID) an earlier
    /// submission with it created.
    pub idempotent: Option<(String, String)>,
}

/// One thing for the engine to act on.
#[derive(Debug)]
pub enum Input {
    /// A validated submission (a new job, or the next version of the job of its Name).
    Submit {
        /// Who waits for the answer.
        ticket: Ticket,
        /// The job, defaults applied.
        job: Box<Job>,
        /// Warnings for the caller.
        warnings: Vec<String>,
        /// The client's Idempotency-Key: a retried submission gets the job the first one made.
        key: Option<String>,
        /// Update a job of the same Name even when the spec has not changed.
        force: bool,
        /// The job of that Name, and the key's earlier submission, from the store.
        stored: Stored,
        /// The submission's W3C `traceparent`, when traces are exported.
        trace: Option<String>,
    },
    /// `job rerun`.
    Rerun {
        /// Who waits for the answer.
        ticket: Ticket,
        /// The job.
        job_id: JobId,
        /// 0 for the current version.
        version: u64,
        /// Why, for the history.
        reason: String,
        /// The job and that version, from the store.
        stored: Stored,
    },
    /// `job stop`.
    Stop {
        /// Who waits for the answer.
        ticket: Ticket,
        /// The job.
        job_id: JobId,
        /// Why, for the history.
        reason: String,
        /// The job, from the store (for one no longer in flight).
        stored: Stored,
    },
    /// The nodes as the orchestrator sees them.
    Nodes {
        /// Who waits for the answer.
        ticket: Ticket,
    },
    /// An operator's approve, reject or delete.
    NodeAction {
        /// Who waits for the answer.
        ticket: Ticket,
        /// A node ID or a unique prefix of one.
        node: String,
        /// What to do.
        action: NodeAction,
    },
    /// The IPFS peers to ask for a CID.
    Providers {
        /// Who waits for the answer.
        ticket: Ticket,
        /// The CID.
        cid: String,
    },
    /// A node's link came up.
    Connected(NodeId),
    /// A send to this node found its link closed.
    LinkLost(NodeId),
    /// A message from a compute node.
    Message(Box<Envelope<FromCompute>>),
    /// Housekeeping: disconnect timeouts, retries, job timeouts.
    Tick,
}

/// The answer to a caller's input.
#[derive(Debug)]
pub enum Answer {
    /// To [`Input::Submit`].
    Submit(Result<SubmitResult, OrchestratorError>),
    /// To [`Input::Rerun`].
    Rerun(Result<RerunResult, OrchestratorError>),
    /// To [`Input::Stop`].
    Stop(Result<StopResult, OrchestratorError>),
    /// To [`Input::Nodes`].
    Nodes(Vec<NodeState>),
    /// To [`Input::NodeAction`]: the node's full ID.
    NodeAction(Result<String, OrchestratorError>),
    /// To [`Input::Providers`].
    Providers(Vec<String>),
}

impl Answer {
    /// Whether the answer is a refusal (which stands even if the step's commit fails).
    pub fn is_err(&self) -> bool {
        match self {
            Answer::Submit(r) => r.is_err(),
            Answer::Rerun(r) => r.is_err(),
            Answer::Stop(r) => r.is_err(),
            Answer::NodeAction(r) => r.is_err(),
            Answer::Nodes(_) | Answer::Providers(_) => false,
        }
    }
}

/// What one step decided. Nothing in it may be acted on before `batch` is committed.
#[derive(Debug, Default)]
pub struct Effects {
    /// The step's state changes, for one transaction.
    pub batch: WriteBatch,
    /// Messages for compute nodes, in order.
    pub sends: Vec<(NodeId, ToCompute)>,
    /// Answers for callers.
    pub answers: Vec<(Ticket, Answer)>,
    /// Job state changes, for subscribers.
    pub events: Vec<JobEvent>,
    /// Messages refused, each by why.
    pub refused: Vec<&'static str>,
    /// Nodes deleted by an operator: their keys and links go.
    pub forgotten: Vec<NodeId>,
    /// Upload URLs to sign for the `s3managed` publisher, each checked against the execution.
    pub uploads: Vec<UploadGrant>,
    /// State changes to log once committed (gathered only when debug logging is on).
    pub transitions: Vec<Transition>,
    /// Facts for the node's metrics (always gathered: copies of a few enums and numbers).
    pub measures: Vec<Measure>,
    /// (namespace, name) of the jobs this step creates, which the store has not seen yet.
    named: HashMap<(String, String), JobId>,
}

/// An upload the engine allows: the runtime signs a URL for the archive of `execution_id` (of
/// `job_id`) and sends it to `node_id`, which runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    /// The node that asked, and runs the execution.
    pub node_id: NodeId,
    /// The execution's job.
    pub job_id: JobId,
    /// The execution.
    pub execution_id: ExecutionId,
}

/// A job's or an execution's state change, for the log: IDs and states only (never the spec,
/// whose env values are secrets).
#[derive(Debug, Clone)]
pub struct Transition {
    /// The job.
    pub job_id: JobId,
    /// The execution and its node, when an execution changed.
    pub execution: Option<(ExecutionId, NodeId)>,
    /// The state before and after, by name.
    pub from: String,
    /// The new state.
    pub to: String,
    /// Why, as the history says it.
    pub message: String,
}

/// A fact for the metrics, taken where the engine changes state; the runtime records it once
/// the step is committed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Measure {
    /// A job changed state; `age` is seconds since it was submitted.
    Job {
        /// The job's type.
        job_type: JobType,
        /// The state before.
        from: JobStateType,
        /// The state after.
        to: JobStateType,
        /// Seconds since submission.
        age: f64,
    },
    /// An execution was placed on a node; `wait` is seconds since its job was submitted.
    Placed {
        /// The job's type.
        job_type: JobType,
        /// Seconds since submission.
        wait: f64,
    },
    /// An execution changed state (a node's bid, the orchestrator's answer, its outcome).
    Execution {
        /// The state before.
        from: ComputeStateType,
        /// The state after.
        to: ComputeStateType,
    },
    /// A verification verdict on one result.
    Verdict {
        /// Whether the result agreed with the quorum.
        agreed: bool,
    },
}

/// Seconds between two of the engine's wall-clock times (nanoseconds), never negative.
pub(crate) fn seconds_between(earlier: i64, later: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)] // a metric: nanosecond precision beyond 2^53 is not needed
    let secs = later.saturating_sub(earlier).max(0) as f64 / 1e9;
    secs
}

/// What the engine holds, counted for the metrics' gauges.
#[derive(Debug, Default)]
pub struct Census {
    /// Jobs in flight by type and state.
    pub jobs: HashMap<(JobType, JobStateType), u64>,
    /// Executions in flight by node and state.
    pub executions: HashMap<(NodeId, ComputeStateType), u64>,
    /// Every registered node.
    pub nodes: Vec<NodeCensus>,
}

/// One node, for the metrics.
#[derive(Debug)]
pub struct NodeCensus {
    /// The node.
    pub node_id: NodeId,
    /// Whether its link is up.
    pub connected: bool,
    /// Its approval.
    pub membership: NodeMembershipState,
    /// Everything it will ever allocate.
    pub capacity: Resources,
    /// What is free now.
    pub available: Resources,
    /// Executions running on it, and waiting in its queue, as it last reported.
    pub running: u32,
    /// Executions waiting in its queue.
    pub queued: u32,
}

/// The durable state the engine starts from (at start, or after a failed commit).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Jobs not yet finished, each with its executions and where its history ends.
    pub active: Vec<(Job, Vec<Execution>, u64)>,
    /// Every node's membership.
    pub memberships: Vec<(NodeId, NodeMembershipState)>,
    /// (CID, node) for every published result.
    pub holders: Vec<(String, NodeId)>,
    /// Results that disagreed with a verification quorum, per node.
    pub dissents: Vec<(NodeId, u32)>,
}

/// A job in flight.
struct Active {
    job: Job,
    execs: Vec<Execution>,
    history_seq: u64,
    retry_at: Option<i64>,
    /// The W3C `traceparent` of its submission, when traces are exported (memory only: a job
    /// resumed after a restart starts no trace).
    trace: Option<String>,
}

/// A compute node as the engine knows it.
#[derive(Debug)]
struct NodeEntry {
    /// Set once it registers.
    info: Option<NodeInfo>,
    connected: bool,
    /// When it was last heard from, on the monotonic clock.
    last_seen: Duration,
    available: Resources,
    /// The last heartbeat's digests (the node's, ours) when they differed: a difference seen
    /// twice in a row is not a message in flight, and the node is asked to resync.
    mismatch: Option<(ExecutionDigest, ExecutionDigest)>,
    /// Its link's history, for operators.
    link: LinkHistory,
}

/// When a node's link changed and why it last went wrong (wall-clock nanoseconds; 0: never).
#[derive(Debug, Default)]
struct LinkHistory {
    last_heartbeat: i64,
    connected_since: i64,
    disconnected_since: i64,
    last_error: String,
}

impl LinkHistory {
    fn state(&self, connected: bool) -> bacalhau_model::ConnectionState {
        let time = |t: i64| if t == 0 { bacalhau_model::GO_ZERO_TIME.to_owned() } else { format_rfc3339_nanos(t) };
        bacalhau_model::ConnectionState {
            status: if connected { NodeConnectionState::Connected } else { NodeConnectionState::Disconnected },
            last_heartbeat: time(self.last_heartbeat),
            connected_since: time(self.connected_since),
            disconnected_since: time(self.disconnected_since),
            last_error: self.last_error.clone(),
        }
    }
}

/// The orchestrator's state machine. Maps that are iterated are ordered, so that a step's
/// effects do not depend on hashing.
pub struct Engine {
    cfg: OrchestratorConfig,
    /// Recent Idempotency-Keys → (job ID, evaluation ID), including this step's.
    idempotency: HashMap<String, (String, String)>,
    content: ContentIndex,
    /// Per node, results that disagreed with a verification quorum (its reputation).
    dissents: HashMap<NodeId, u32>,
    jobs: BTreeMap<JobId, Active>,
    exec_index: HashMap<ExecutionId, JobId>,
    /// The executions in memory on each node, so that what concerns one node (its heartbeat's
    /// digest, its reconciliation) costs its own work, not the whole cluster's.
    on_node: HashMap<NodeId, BTreeSet<ExecutionId>>,
    nodes: BTreeMap<NodeId, NodeEntry>,
    /// Every node's membership; nodes not here are new.
    memberships: HashMap<NodeId, NodeMembershipState>,
    /// Jobs to evaluate at the end of the step.
    dirty: BTreeSet<JobId>,
    /// The step's monotonic time.
    mono: Duration,
    /// Where new execution and evaluation IDs come from.
    ids: Box<dyn IdSource>,
    grace_checked: bool,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("jobs", &self.jobs.len()).field("nodes", &self.nodes.len()).finish()
    }
}

impl Engine {
    /// An engine with no state, taking IDs from `ids`.
    pub fn new(cfg: OrchestratorConfig, ids: Box<dyn IdSource>) -> Self {
        Self {
            content: ContentIndex::new(cfg.ipfs_addrs.clone()),
            cfg,
            idempotency: HashMap::new(),
            dissents: HashMap::new(),
            jobs: BTreeMap::new(),
            exec_index: HashMap::new(),
            on_node: HashMap::new(),
            nodes: BTreeMap::new(),
            memberships: HashMap::new(),
            dirty: BTreeSet::new(),
            mono: Duration::ZERO,
            ids,
            grace_checked: false,
        }
    }

    /// Replaces the durable part of the state with `snapshot` (what nodes are connected is
    /// kept: it was never durable).
    pub fn restore(&mut self, snapshot: Snapshot) {
        self.memberships = snapshot.memberships.into_iter().collect();
        self.content = ContentIndex::new(self.cfg.ipfs_addrs.clone());
        for (id, n) in &self.nodes {
            if n.connected
                && let Some(info) = &n.info
            {
                self.content.node_up(id, &info.ipfs_addrs);
            }
        }
        for (cid, node) in &snapshot.holders {
            self.content.holds(node, cid);
        }
        self.dissents = snapshot.dissents.into_iter().collect();
        self.jobs.clear();
        self.exec_index.clear();
        self.on_node.clear();
        // Keys of submissions that never reached the disk must not answer retries.
        self.idempotency.clear();
        for (job, execs, seq) in snapshot.active {
            for e in &execs {
                self.exec_index.insert(e.id.clone(), job.id.clone());
                self.on_node.entry(e.node_id.clone()).or_default().insert(e.id.clone());
            }
            self.dirty.insert(job.id.clone());
            self.jobs.insert(job.id.clone(), Active { job, execs, history_seq: seq, retry_at: None, trace: None });
        }
        if !self.jobs.is_empty() {
            info!(jobs = self.jobs.len(), "resuming jobs in flight");
        }
    }

    /// Whether `job_id` is in flight (in memory, where it is newer than in the store).
    pub fn is_active(&self, job_id: &JobId) -> bool {
        self.jobs.contains_key(job_id)
    }

    /// Whether the engine remembers the submission with this Idempotency-Key.
    pub fn remembers_key(&self, key: &str) -> bool {
        self.idempotency.contains_key(key)
    }

    /// What is in flight and every registered node, counted for the metrics. It walks every
    /// job in flight, so the runtime takes it at most once a second, never per round.
    pub fn census(&self) -> Census {
        let mut census = Census::default();
        for a in self.jobs.values() {
            *census.jobs.entry((a.job.r#type, a.job.state.state_type)).or_default() += 1;
            for e in &a.execs {
                *census.executions.entry((e.node_id.clone(), e.compute_state.state_type)).or_default() += 1;
            }
        }
        for n in self.nodes.values() {
            let Some(info) = &n.info else { continue };
            let compute = info.compute_node_info.as_ref();
            census.nodes.push(NodeCensus {
                node_id: info.node_id.clone(),
                connected: n.connected,
                membership: self.membership(&info.node_id),
                capacity: compute.map(|c| Resources::from(c.max_capacity)).unwrap_or_default(),
                available: n.available,
                running: compute.map_or(0, |c| c.running_executions),
                queued: compute.map_or(0, |c| c.enqueued_executions),
            });
        }
        census
    }

    /// How many jobs are in flight.
    pub fn active_jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Acts on one round of inputs at `now`: each input in order, then the evaluation of
    /// every job they touched. One step is one transaction.
    pub fn step(&mut self, inputs: impl IntoIterator<Item = Input>, now: Now) -> Effects {
        self.mono = now.mono;
        let mut fx = Effects::default();
        for input in inputs {
            self.input(input, now.wall, &mut fx);
        }
        self.evaluate(now.wall, &mut fx);
        self.forget_finished();
        fx
    }

    fn input(&mut self, input: Input, now: i64, fx: &mut Effects) {
        match input {
            Input::Submit { ticket, job, warnings, key, force, stored, trace } => {
                self.submit(ticket, *job, (warnings, key, force, trace), stored, now, fx)
            }
            Input::Rerun { ticket, job_id, version, reason, stored } => {
                self.rerun(&job_id, version, &reason, stored, ticket, now, fx)
            }
            Input::Stop { ticket, job_id, reason, stored } => {
                let answer = self.stop(job_id, reason, stored, now, fx);
                fx.answers.push((ticket, Answer::Stop(answer)));
            }
            Input::Nodes { ticket } => fx.answers.push((ticket, Answer::Nodes(self.node_states()))),
            Input::NodeAction { ticket, node, action } => {
                let answer = self.node_action(&node, action, fx);
                fx.answers.push((ticket, Answer::NodeAction(answer)));
            }
            Input::Providers { ticket, cid } => {
                fx.answers.push((ticket, Answer::Providers(self.content.providers(&cid))))
            }
            Input::Connected(node_id) => self.connected(node_id),
            Input::LinkLost(node_id) => self.link_lost(&node_id, now),
            Input::Message(env) => self.handle_message(*env, now, fx),
            Input::Tick => self.housekeep(now),
        }
    }

    fn submit(
        &mut self,
        ticket: Ticket,
        job: Job,
        (warnings, key, force, trace): (Vec<String>, Option<String>, bool, Option<String>),
        stored: Stored,
        now: i64,
        fx: &mut Effects,
    ) {
        if let Some(k) = &key {
            let earlier = self.idempotency.get(k).cloned().or(stored.idempotent);
            if let Some((job_id, evaluation_id)) = earlier {
                info!(%job_id, "a retried submission (same Idempotency-Key) gets the job it created");
                let result =
                    SubmitResult { job_id: JobId(job_id), evaluation_id: EvaluationId(evaluation_id), warnings };
                fx.answers.push((ticket, Answer::Submit(Ok(result))));
                return;
            }
        }
        let history_seq = stored.history_seq;
        if let Some(current) = self.named_job(&job, stored.job, fx) {
            self.update(current, job, force, warnings, key, history_seq, ticket, now, fx);
            return;
        }
        if job.name != job.id.0 {
            fx.named.insert((job.namespace.clone(), job.name.clone()), job.id.clone());
        }
        let eval = evaluation(self.ids.evaluation(), &job, TriggeredBy::JobRegister, now);
        let result = SubmitResult { job_id: job.id.clone(), evaluation_id: eval.id.clone(), warnings };
        if let Some(k) = key {
            fx.batch.put_idempotency_key(&k, job.id.as_str(), eval.id.as_str());
            // Submissions in flight and just made; older ones are found in the store.
            if self.idempotency.len() >= MAX_IDEMPOTENCY_CACHE {
                self.idempotency.clear();
            }
            self.idempotency.insert(k, (job.id.0.clone(), eval.id.0.clone()));
        }
        fx.batch.put_job(job.clone(), true);
        fx.batch.put_evaluation(eval);
        let id = job.id.clone();
        self.jobs.insert(id.clone(), Active { job, execs: Vec::new(), history_seq: 0, retry_at: None, trace });
        self.job_history(
            &id,
            now,
            "Submission",
            "Job submitted",
            Some((JobStateType::Undefined, JobStateType::Pending)),
            fx,
        );
        fx.events.push(JobEvent { job_id: id.clone(), state: JobStateType::Pending });
        self.dirty.insert(id);
        fx.answers.push((ticket, Answer::Submit(Ok(result))));
    }

    fn stop(
        &mut self,
        job_id: JobId,
        reason: String,
        stored: Stored,
        now: i64,
        fx: &mut Effects,
    ) -> Result<StopResult, OrchestratorError> {
        let reason = if reason.trim().is_empty() { "job stopped by user".to_owned() } else { reason };
        let Some(active) = self.jobs.get(&job_id) else {
            return match stored.job {
                Some(job) => stop_terminal(job.state.state_type, &job_id),
                None => Err(OrchestratorError::NotFound { what: "job", id: job_id.0 }),
            };
        };
        if active.job.state.state_type.is_terminal() {
            return stop_terminal(active.job.state.state_type, &job_id);
        }
        let eval = evaluation(self.ids.evaluation(), &active.job, TriggeredBy::JobCancel, now);
        let result = StopResult { evaluation_id: eval.id.0.clone() };
        fx.batch.put_evaluation(eval);
        self.set_job_state(&job_id, JobStateType::Stopped, reason, now, fx);
        self.dirty.insert(job_id);
        Ok(result)
    }

    fn node_action(&mut self, node: &str, action: NodeAction, fx: &mut Effects) -> Result<String, OrchestratorError> {
        let known: BTreeSet<&NodeId> = self.nodes.keys().chain(self.memberships.keys()).collect();
        let matches: Vec<NodeId> = known.into_iter().filter(|id| id.as_str().starts_with(node)).cloned().collect();
        let id = match matches.as_slice() {
            [one] => one.clone(),
            [] => return Err(OrchestratorError::NotFound { what: "node", id: node.to_owned() }),
            _ => {
                let ids: Vec<String> = matches.iter().map(ToString::to_string).collect();
                let msg = format!("{node} matches several nodes ({}): give more of the ID", ids.join(", "));
                return Err(OrchestratorError::Conflict(msg));
            }
        };
        if action != NodeAction::Approve && self.cfg.local_node.as_ref() == Some(&id) {
            return Err(OrchestratorError::Conflict(format!(
                "node {id} is this orchestrator's own compute node; it cannot be rejected or deleted. \
                 To run the orchestrator alone, restart it with `bacalhau serve --orchestrator`"
            )));
        }
        match action {
            NodeAction::Approve | NodeAction::Reject => {
                let m = if action == NodeAction::Approve {
                    NodeMembershipState::Approved
                } else {
                    NodeMembershipState::Rejected
                };
                self.memberships.insert(id.clone(), m);
                fx.batch.put_node_membership(id.as_str(), Some(membership_name(m)));
                if m == NodeMembershipState::Rejected {
                    let reason = "this node was rejected by the orchestrator's operator".to_owned();
                    fx.sends.push((id.clone(), ToCompute::Registered { accepted: false, reason }));
                }
            }
            NodeAction::Delete => {
                self.memberships.remove(&id);
                self.nodes.remove(&id);
                fx.batch.put_node_membership(id.as_str(), None);
                fx.forgotten.push(id.clone());
            }
        }
        info!(node_id = %id, ?action, "node membership changed");
        // Approval may be what queued jobs wait for.
        self.dirty.extend(self.jobs.keys().cloned());
        Ok(id.to_string())
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
                n.link.disconnected_since = now;
                n.link.last_error = format!(
                    "nothing heard from it for {}s (the disconnect timeout, --node-disconnect-timeout); its executions \
                     were failed and rescheduled",
                    timeout.as_secs()
                );
                // The link stays: if the node is only slow (or is this process's own node, which
                // never re-dials), its next message brings it back through a re-registration.
                self.content.node_down(id);
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

    /// Jobs that are finished and have no live executions leave memory; the store has them.
    /// Their executions leave the indexes with them: the cost is what leaves, not what stays.
    fn forget_finished(&mut self) {
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
}

pub(crate) fn evaluation(id: EvaluationId, job: &Job, trigger: TriggeredBy, now: i64) -> Evaluation {
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

#[cfg(test)]
mod tests {
    //! The engine on its own: inputs in, effects out, no runtime, store or clock.

    use super::*;
    use crate::ids::SeededIds;
    use bacalhau_model::{ComputeNodeInfo, InputSource, JobType, ResourcesConfig, SpecConfig, Task};

    fn engine() -> Engine {
        let mut cfg = OrchestratorConfig::new(std::path::PathBuf::new());
        cfg.restart_grace = Duration::ZERO;
        Engine::new(cfg, Box::new(SeededIds::new(7)))
    }

    fn at(secs: u64) -> Now {
        Now {
            wall: 1_767_225_600_000_000_000 + i64::try_from(secs).unwrap_or(0) * 1_000_000_000,
            mono: Duration::from_secs(secs),
        }
    }

    fn from(node: &str, payload: FromCompute) -> Input {
        Input::Message(Box::new(Envelope::new(NodeId::from(node), payload)))
    }

    fn register(node: &str) -> Input {
        register_with(node, &["noop"])
    }

    fn register_with(node: &str, publishers: &[&str]) -> Input {
        let capacity = Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Default::default() };
        let info = NodeInfo {
            node_id: NodeId::from(node),
            compute_node_info: Some(ComputeNodeInfo {
                execution_engines: vec!["wasm".into()],
                publishers: publishers.iter().map(|p| (*p).to_owned()).collect(),
                storage_sources: vec!["inline".into()],
                max_capacity: capacity.into(),
                available_capacity: capacity.into(),
                max_job_requirements: capacity.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        from(node, FromCompute::Register { info: Box::new(info), executions: Vec::new() })
    }

    fn submit(ticket: Ticket, id: &str, key: Option<&str>) -> Input {
        submit_publishing(ticket, id, key, "noop")
    }

    fn submit_publishing(ticket: Ticket, id: &str, key: Option<&str>, publisher: &str) -> Input {
        let job = Job {
            r#type: JobType::Batch,
            count: 1,
            tasks: vec![Task {
                name: "main".into(),
                engine: SpecConfig::new("wasm").with_param("EntryModule", "/m.wasm"),
                input_sources: vec![InputSource {
                    source: SpecConfig::new("inline").with_param("URL", "data:;base64,AA=="),
                    alias: String::new(),
                    target: "/m.wasm".into(),
                }],
                publisher: SpecConfig::new(publisher),
                resources: ResourcesConfig { cpu: "10m".into(), memory: "16Mb".into(), ..Default::default() },
                ..Default::default()
            }],
            ..Default::default()
        };
        let (job, warnings) =
            bacalhau_model::prepare_submission(job, JobId::from(id), at(0).wall, &Default::default()).expect("valid");
        Input::Submit {
            ticket,
            job: Box::new(job),
            warnings,
            key: key.map(str::to_owned),
            force: false,
            stored: Stored::default(),
            trace: None,
        }
    }

    /// The first ask of the step: which node, which execution.
    fn first_ask(fx: &Effects) -> (NodeId, ExecutionId) {
        fx.sends
            .iter()
            .find_map(|(n, m)| match m {
                ToCompute::AskForBid { execution, .. } => Some((n.clone(), execution.id.clone())),
                _ => None,
            })
            .expect("an ask")
    }

    /// A node's yes to an ask.
    fn accepted_bid(exec: &ExecutionId) -> FromCompute {
        FromCompute::BidResult { execution_id: exec.clone(), accepted: true, reason: String::new(), quote: None }
    }

    /// The execution the engine asked `node` to bid on.
    fn asked(fx: &Effects, node: &str) -> ExecutionId {
        fx.sends
            .iter()
            .find_map(|(n, m)| match m {
                ToCompute::AskForBid { execution, .. } if n.as_str() == node => Some(execution.id.clone()),
                _ => None,
            })
            .expect("an ask")
    }

    #[test]
    fn a_job_goes_from_submission_to_completed_through_its_node() {
        let mut e = engine();
        e.step([Input::Connected(NodeId::from("n1")), register("n1")], at(0));
        let fx = e.step([submit(1, "j-1", None)], at(1));
        assert!(matches!(fx.answers.as_slice(), [(1, Answer::Submit(Ok(_)))]));
        let exec = asked(&fx, "n1");
        let bid =
            FromCompute::BidResult { execution_id: exec.clone(), accepted: true, reason: String::new(), quote: None };
        let fx = e.step([from("n1", bid)], at(2));
        assert!(
            fx.sends.iter().any(|(_, m)| matches!(m, ToCompute::BidAccepted { execution_id } if *execution_id == exec))
        );
        let done = FromCompute::RunResult {
            execution_id: exec.clone(),
            published_result: None,
            run_output: Default::default(),
            cost: None,
        };
        let fx = e.step([from("n1", done)], at(3));
        assert!(fx.sends.iter().any(|(_, m)| matches!(m, ToCompute::Ack { .. })));
        assert!(fx.events.iter().any(|ev| ev.state == JobStateType::Completed), "{:?}", fx.events);
        assert_eq!(e.active_jobs(), 0, "a finished job leaves memory");
    }

    #[test]
    fn reports_the_engine_cannot_act_on_are_refused_and_counted() {
        let mut e = engine();
        e.step([register("n1"), register("n2")], at(0));
        let fx = e.step([submit(1, "j-1", None)], at(1));
        let (node, exec) = first_ask(&fx);
        let other = if node.as_str() == "n1" { "n2" } else { "n1" };
        let bid = |id: &ExecutionId| FromCompute::BidResult {
            execution_id: id.clone(),
            accepted: true,
            reason: String::new(),
            quote: None,
        };
        // Another node's word on it, a node that never registered, an unknown execution.
        let fx = e.step(
            [
                from(other, bid(&exec)),
                from("stranger", bid(&exec)),
                from(node.as_str(), bid(&ExecutionId::from("e-nope"))),
            ],
            at(2),
        );
        assert_eq!(fx.refused, [FOREIGN_EXECUTION, UNREGISTERED, UNKNOWN_EXECUTION]);
        assert!(fx.batch.is_empty(), "nothing changed");
        // A duplicate is a report its execution's state no longer allows.
        e.step([from(node.as_str(), bid(&exec))], at(3));
        let fx = e.step([from(node.as_str(), bid(&exec))], at(4));
        assert_eq!(fx.refused, [LATE_REPORT]);
    }

    #[derive(Debug)]
    struct UnusedSigner;

    #[async_trait::async_trait]
    impl crate::ManagedUploads for UnusedSigner {
        async fn put_url(&self, _: &str, _: &str) -> Result<String, String> {
            Err("the engine never signs".into())
        }
    }

    /// The answer refusing an upload URL for `exec`, if the step sent one.
    fn upload_refusal(fx: &Effects, exec: &ExecutionId) -> Option<String> {
        fx.sends.iter().find_map(|(_, m)| match m {
            ToCompute::ManagedUploadUrl { execution_id, url: Err(why) } if execution_id == exec => Some(why.clone()),
            _ => None,
        })
    }

    #[test]
    fn only_the_node_running_an_s3managed_execution_is_granted_an_upload() {
        let mut cfg = OrchestratorConfig::new(std::path::PathBuf::new());
        cfg.restart_grace = Duration::ZERO;
        cfg.managed_uploads = Some(Arc::new(UnusedSigner));
        let mut e = Engine::new(cfg, Box::new(SeededIds::new(7)));
        let both = ["noop", "s3managed"];
        e.step([register_with("n1", &both), register_with("n2", &both)], at(0));
        let fx = e.step([submit_publishing(1, "j-1", None, "s3managed")], at(1));
        let (node, exec) = first_ask(&fx);
        let other = if node.as_str() == "n1" { "n2" } else { "n1" };
        let ask = |id: &ExecutionId| FromCompute::ManagedUpload { execution_id: id.clone() };
        // Asked for before the node may run it: refused.
        let fx = e.step([from(node.as_str(), ask(&exec))], at(2));
        assert!(fx.uploads.is_empty());
        assert!(upload_refusal(&fx, &exec).is_some_and(|why| why.contains("not running")), "{:?}", fx.sends);
        e.step([from(node.as_str(), accepted_bid(&exec))], at(3));
        // Its node gets a grant; another node's ask is refused and counted; an execution that
        // is not in flight gets a refusal.
        let nope = ExecutionId::from("e-nope");
        let fx =
            e.step([from(node.as_str(), ask(&exec)), from(other, ask(&exec)), from(node.as_str(), ask(&nope))], at(4));
        assert_eq!(fx.uploads, [UploadGrant { node_id: node.clone(), job_id: JobId::from("j-1"), execution_id: exec }]);
        assert_eq!(fx.refused, [FOREIGN_EXECUTION]);
        assert!(upload_refusal(&fx, &nope).is_some_and(|why| why.contains("not in flight")));

        // A job that publishes elsewhere lends no credentials.
        let fx = e.step([submit_publishing(2, "j-2", None, "noop")], at(5));
        let (node, exec) = first_ask(&fx);
        e.step([from(node.as_str(), accepted_bid(&exec))], at(6));
        let fx = e.step([from(node.as_str(), ask(&exec))], at(7));
        assert!(fx.uploads.is_empty());
        assert!(upload_refusal(&fx, &exec).is_some_and(|why| why.contains("not s3managed")));

        // Without a managed bucket, nothing is granted at all.
        let mut plain = engine();
        plain.step([register_with("n1", &both)], at(0));
        let fx = plain.step([submit_publishing(1, "j-1", None, "s3managed")], at(1));
        let exec = asked(&fx, "n1");
        plain.step([from("n1", accepted_bid(&exec))], at(2));
        let fx = plain.step([from("n1", ask(&exec))], at(3));
        assert!(fx.uploads.is_empty());
        assert!(upload_refusal(&fx, &exec).is_some_and(|why| why.contains("Publishers.Types.S3Managed")));
    }

    #[test]
    fn a_retried_submission_gets_the_job_its_first_attempt_made() {
        let mut e = engine();
        e.step([register("n1")], at(0));
        let first = e.step([submit(1, "j-1", Some("k"))], at(1));
        let again = e.step([submit(2, "j-2", Some("k"))], at(2));
        let id = |fx: &Effects| match &fx.answers[0].1 {
            Answer::Submit(Ok(r)) => r.job_id.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(id(&first), id(&again));
        assert!(again.batch.is_empty(), "no second job");
        // After a restart the key comes from the store, read by the runtime.
        let mut e = engine();
        let stored = Stored { idempotent: Some(("j-1".into(), "ev-1".into())), ..Stored::default() };
        let Input::Submit { ticket, job, warnings, key, force, .. } = submit(3, "j-3", Some("k")) else {
            unreachable!("a submission")
        };
        let fx = e.step([Input::Submit { ticket, job, warnings, key, force, stored, trace: None }], at(3));
        assert!(matches!(&fx.answers[0].1, Answer::Submit(Ok(r)) if r.job_id.as_str() == "j-1"));
    }

    #[test]
    fn a_silent_node_loses_its_work_to_another_after_the_timeout() {
        let mut e = engine();
        e.step([register("n1")], at(0));
        let fx = e.step([submit(1, "j-1", None)], at(1));
        let exec = asked(&fx, "n1");
        e.step([register("n2")], at(2));
        // n2 keeps talking; n1 says nothing past the disconnect timeout (30 s).
        let beat = FromCompute::Heartbeat {
            available: Default::default(),
            queued: Default::default(),
            running: 0,
            enqueued: 0,
            ipfs_roots: None,
            digest: None,
        };
        e.step([from("n2", beat.clone())], at(20));
        e.step([from("n2", beat)], at(40));
        let fx = e.step([Input::Tick], at(45));
        assert!(fx.batch.executions().any(|x| x.id == exec && x.compute_state.state_type == ComputeStateType::Failed));
        assert!(fx.sends.iter().any(|(n, m)| n.as_str() == "n2" && matches!(m, ToCompute::AskForBid { .. })));
    }

    #[test]
    fn the_same_inputs_give_the_same_effects() {
        let run = || {
            let mut e = engine();
            e.step([register("n1"), register("n2"), register("n3")], at(0));
            let fx = e.step((1..=20).map(|i| submit(i, &format!("j-{i}"), None)), at(1));
            format!("{:?}", fx.sends)
        };
        assert_eq!(run(), run());
    }
}
