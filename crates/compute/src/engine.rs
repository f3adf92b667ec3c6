//! The compute node's decisions as a synchronous state machine.
//!
//! [`Engine::step`] takes one round of [`Input`]s (the orchestrator's messages, bid verdicts,
//! probe answers, finished runs) and returns its [`Effects`]: the records to persist, the
//! messages for the orchestrator, the runs to start and cancel, and the probes to ask. It
//! holds no lock, reads no clock and does no I/O: whether this node can run a job at all
//! (its engines, inputs and publishers) is checked by the runtime and arrives as the ask's
//! verdict. The runtime (`node.rs`) persists the records before it sends anything.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

use bacalhau_model::{Execution, ExecutionEvent, ExecutionId, IllegalTransition, Prices, Resources};
use bacalhau_protocol::{ExecutionDigest, ExecutionReport, FromCompute, LocalExecutionState, Phase, ToCompute};
use tracing::{debug, error, info, warn};

use crate::store::{Outcome, Record};

/// One thing for the engine to act on.
#[derive(Debug)]
pub enum Input {
    /// The orchestrator asks for a bid; `verdict` is whether this node can run the job at all
    /// (`Err(why)` declines it), as the runtime found.
    Ask {
        /// The execution, with its job.
        execution: Box<Execution>,
        /// The runtime's verdict.
        verdict: Result<(), String>,
    },
    /// Any other message from the orchestrator.
    Message(ToCompute),
    /// The outside bid probe answered for an execution.
    Probed {
        /// The execution asked about.
        execution: Box<Execution>,
        /// `Err(why)` declines it.
        verdict: Result<(), String>,
    },
    /// The heartbeat: outcomes still unacknowledged since the last one are sent again.
    Tick,
    /// A run ended.
    Finished {
        /// The execution.
        id: ExecutionId,
        /// How it ended.
        outcome: Outcome,
    },
}

/// A run the runtime is to start.
#[derive(Debug)]
pub struct Start {
    /// The execution, with its job.
    pub execution: Execution,
    /// What it takes from capacity.
    pub resources: Resources,
    /// Bytes its inputs may take on disk.
    pub disk_budget: u64,
}

/// What one step decided. Nothing may be sent before `writes` are persisted.
#[derive(Debug, Default)]
pub struct Effects {
    /// Records changed by the step, to persist in one transaction.
    pub writes: Vec<Record>,
    /// Records to delete in the same transaction: executions the orchestrator is done with.
    pub forgets: Vec<ExecutionId>,
    /// Messages for the orchestrator, in order.
    pub sends: Vec<FromCompute>,
    /// Runs to start.
    pub starts: Vec<Start>,
    /// Running executions to stop (each then finishes as cancelled).
    pub cancels: Vec<ExecutionId>,
    /// Executions whose bid waits for the outside probe.
    pub probes: Vec<Execution>,
    /// The orchestrator asked the node to register again.
    pub reregister: bool,
    changed: BTreeSet<ExecutionId>,
}

struct Queued {
    id: ExecutionId,
    priority: i32,
    seq: u64,
}

/// The compute node's state machine. Maps are ordered, so a step's effects do not depend on
/// hashing.
pub struct Engine {
    capacity: Resources,
    prices: Option<Prices>,
    /// Whether an outside probe is asked before bidding.
    probe: bool,
    /// Test fault: this many bid acceptances are dropped, as if lost in transit.
    drop_bid_acceptances: u32,
    dropped: u32,
    records: BTreeMap<ExecutionId, Record>,
    queue: Vec<Queued>,
    queue_seq: u64,
    running: BTreeMap<ExecutionId, Resources>,
    used: Resources,
    /// Executions whose bid waits for the outside probe; the bid is sent when it answers.
    probing: BTreeSet<ExecutionId>,
    /// Outcomes unacknowledged at the last tick.
    unacked: BTreeSet<ExecutionId>,
    /// Executions recently forgotten, so that a late duplicate about one is ignored rather than
    /// taken for new work (bounded: memory follows work in flight, not history).
    forgotten: Forgotten,
}

/// How many forgotten execution IDs are remembered.
const FORGOTTEN_KEPT: usize = 65_536;

/// A bounded set of forgotten IDs, oldest dropped first. It keeps 64-bit fingerprints, not
/// the IDs: a full set is then about 1.5 MiB instead of about 10, which matters because it
/// fills on every node that runs more than its size in jobs. (A false match would need two of
/// the orchestrator's random IDs to collide in 64 bits.)
#[derive(Default)]
struct Forgotten {
    ids: HashSet<u64>,
    order: VecDeque<u64>,
}

fn fingerprint(id: &ExecutionId) -> u64 {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same ID gives the same fingerprint in every run (the simulator replays).
    let mut h = std::hash::DefaultHasher::new();
    id.as_str().hash(&mut h);
    h.finish()
}

impl Forgotten {
    fn insert(&mut self, id: ExecutionId) {
        let f = fingerprint(&id);
        if self.ids.insert(f) {
            self.order.push_back(f);
            if self.order.len() > FORGOTTEN_KEPT
                && let Some(old) = self.order.pop_front()
            {
                self.ids.remove(&old);
            }
        }
    }

    fn contains(&self, id: &ExecutionId) -> bool {
        self.ids.contains(&fingerprint(id))
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("records", &self.records.len()).field("running", &self.running.len()).finish()
    }
}

impl Engine {
    /// A node with `capacity`, charging `prices`; `probe` says whether bids wait for the
    /// outside probe. `drop_bid_acceptances` is a test fault (0 in real use).
    pub fn new(capacity: Resources, prices: Option<Prices>, probe: bool, drop_bid_acceptances: u32) -> Self {
        Self {
            capacity,
            prices,
            probe,
            drop_bid_acceptances,
            dropped: 0,
            records: BTreeMap::new(),
            queue: Vec::new(),
            queue_seq: 0,
            running: BTreeMap::new(),
            used: Resources::default(),
            probing: BTreeSet::new(),
            unacked: BTreeSet::new(),
            forgotten: Forgotten::default(),
        }
    }

    /// Starts from the store's records. Anything that was queued or running when the node
    /// stopped failed with it, and what the orchestrator already acknowledged (kept by older
    /// versions) is forgotten: the returned effects' writes and forgets are to persist.
    pub fn restore(&mut self, records: Vec<Record>) -> Effects {
        let mut fx = Effects::default();
        for mut r in records {
            if r.state.is_terminal() && r.reported {
                // Not remembered as forgotten: if it was a declined bid the orchestrator never
                // heard of, its ask is simply weighed again.
                fx.forgets.push(r.execution.id);
                continue;
            }
            if let Ok(failed) = r.state.apply(ExecutionEvent::Lost) {
                let message = "the compute node restarted while the execution was in progress".to_owned();
                r.state = failed;
                r.message = message.clone();
                r.outcome = Some(Outcome::Failed { message, cancelled: false, retryable: true });
                r.reported = false;
                fx.writes.push(r.clone());
            }
            self.records.insert(r.execution.id.clone(), r);
        }
        if !fx.writes.is_empty() {
            warn!(executions = fx.writes.len(), "executions interrupted by a restart are reported as failed");
        }
        fx
    }

    /// Acts on one round of inputs, then starts what fits.
    pub fn step(&mut self, inputs: impl IntoIterator<Item = Input>) -> Effects {
        let mut fx = Effects::default();
        for input in inputs {
            match input {
                Input::Ask { execution, verdict } => self.ask_for_bid(*execution, verdict, &mut fx),
                Input::Message(msg) => self.handle(msg, &mut fx),
                Input::Probed { execution, verdict } => {
                    if self.probing.remove(&execution.id) {
                        self.answer_bid(*execution, verdict, &mut fx);
                    }
                }
                Input::Finished { id, outcome } => self.finished(id, outcome, &mut fx),
                Input::Tick => self.resend_unacked(&mut fx),
            }
        }
        self.schedule(&mut fx);
        let changed = std::mem::take(&mut fx.changed);
        fx.writes = changed.iter().filter_map(|id| self.records.get(id).cloned()).collect();
        fx
    }

    /// Sends again every outcome that was already unacknowledged at the last tick: a lost
    /// report or a lost Ack costs a heartbeat or two, never the outcome.
    fn resend_unacked(&mut self, fx: &mut Effects) {
        let now: BTreeSet<ExecutionId> = self
            .records
            .values()
            .filter(|r| r.state.is_terminal() && !r.reported && r.outcome.is_some())
            .map(|r| r.execution.id.clone())
            .collect();
        for id in now.intersection(&self.unacked) {
            fx.sends.extend(self.records.get(id).and_then(report));
        }
        self.unacked = now;
    }

    /// The orchestrator is done with `id`: it leaves memory and the store.
    fn forget(&mut self, id: &ExecutionId, fx: &mut Effects) {
        if self.records.remove(id).is_some() {
            fx.changed.remove(id);
            fx.forgets.push(id.clone());
            self.unacked.remove(id);
            self.forgotten.insert(id.clone());
        }
    }

    /// How many executions the node holds (live ones and outcomes not yet acknowledged).
    pub fn held(&self) -> usize {
        self.records.len()
    }

    /// What the node tells the orchestrator when it registers: every execution it holds that
    /// is not finished and acknowledged, then the outcomes not yet acknowledged.
    pub fn registration(&self) -> (Vec<ExecutionReport>, Vec<FromCompute>) {
        let reports = self
            .records
            .values()
            .filter(|r| !(r.state.is_terminal() && r.reported))
            .map(|r| ExecutionReport { execution_id: r.execution.id.clone(), state: r.state })
            .collect();
        (reports, self.records.values().filter_map(report).collect())
    }

    /// What this node holds live, for the orchestrator to compare with its own view.
    pub fn digest(&self) -> ExecutionDigest {
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

    /// Each execution's local state.
    pub fn states(&self) -> impl Iterator<Item = (&ExecutionId, LocalExecutionState)> {
        self.records.iter().map(|(id, r)| (id, r.state))
    }

    /// The execution's local state, if the node holds it.
    pub fn state(&self, id: &ExecutionId) -> Option<LocalExecutionState> {
        self.records.get(id).map(|r| r.state)
    }

    /// Capacity in use by running executions.
    pub fn used(&self) -> Resources {
        self.used
    }

    /// Capacity wanted by queued executions.
    pub fn queued(&self) -> Resources {
        self.queue.iter().fold(Resources::default(), |acc, q| {
            acc.add(&self.records.get(&q.id).map(job_resources).unwrap_or_default())
        })
    }

    /// How many executions run.
    pub fn running_count(&self) -> usize {
        self.running.len()
    }

    /// How many wait for capacity.
    pub fn queued_count(&self) -> usize {
        self.queue.len()
    }

    /// The IDs of the running executions.
    pub fn running(&self) -> impl Iterator<Item = &ExecutionId> {
        self.running.keys()
    }

    /// Moves an execution through its lifecycle; an event its state does not allow (a
    /// duplicate or late message) changes nothing and is returned.
    fn transition(
        &mut self,
        id: &ExecutionId,
        event: ExecutionEvent,
        message: &str,
        fx: &mut Effects,
    ) -> Result<(), IllegalTransition> {
        let Some(r) = self.records.get_mut(id) else {
            return Err(IllegalTransition { from: "unknown", event });
        };
        r.state = r.state.apply(event)?;
        r.message = message.to_owned();
        fx.changed.insert(id.clone());
        Ok(())
    }

    fn handle(&mut self, msg: ToCompute, fx: &mut Effects) {
        match msg {
            // The runtime turns asks into `Input::Ask`; one that arrives raw has no verdict.
            ToCompute::AskForBid { execution, .. } => {
                self.ask_for_bid(*execution, Err("the node could not check the job".into()), fx)
            }
            ToCompute::BidAccepted { execution_id } if self.drop_bid_acceptances > self.dropped => {
                // Test fault: as if the message were lost on the way.
                self.dropped += 1;
                warn!(%execution_id, "test fault: a bid acceptance is dropped");
            }
            ToCompute::BidAccepted { execution_id } => match self.records.get(&execution_id).map(|r| r.state) {
                Some(s) if s.apply(ExecutionEvent::BidAccepted).is_ok() => {
                    let _ = self.transition(&execution_id, ExecutionEvent::BidAccepted, "bid accepted", fx);
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
                        fx.sends.push(m);
                    }
                }
                _ => debug!(%execution_id, "duplicate bid acceptance ignored"),
            },
            ToCompute::BidRejected { execution_id, reason } => {
                // Another node won: nothing to run, nothing to report.
                if self.transition(&execution_id, ExecutionEvent::BidRejected, &reason, fx).is_ok() {
                    self.forget(&execution_id, fx);
                }
            }
            ToCompute::CancelExecution { execution_id, reason } => self.cancel(&execution_id, &reason, fx),
            ToCompute::Ack { execution_id } => {
                if self.records.get(&execution_id).is_some_and(|r| r.state.is_terminal()) {
                    self.forget(&execution_id, fx);
                }
            }
            ToCompute::Reconnected | ToCompute::Resync => fx.reregister = true,
            // The runtime hands these to the publisher waiting for them; one that reaches the
            // engine came after its publisher gave up.
            ToCompute::ManagedUploadUrl { execution_id, .. } => {
                debug!(%execution_id, "an upload URL nobody waits for is dropped");
            }
            ToCompute::Registered { accepted, reason } => {
                if accepted {
                    info!("registered with the orchestrator");
                } else {
                    error!(%reason, "the orchestrator refused this node");
                }
            }
        }
    }

    fn ask_for_bid(&mut self, execution: Execution, verdict: Result<(), String>, fx: &mut Effects) {
        if let Some(r) = self.records.get(&execution.id) {
            // Asked again (a reconnect): answer the same way, or re-send the outcome.
            match r.state {
                LocalExecutionState::AskForBidAccepted => fx.sends.push(FromCompute::BidResult {
                    execution_id: execution.id.clone(),
                    accepted: true,
                    reason: String::new(),
                    quote: quote(self.prices, &r.execution),
                }),
                LocalExecutionState::AskForBidRejected => fx.sends.push(FromCompute::BidResult {
                    execution_id: execution.id.clone(),
                    accepted: false,
                    reason: r.message.clone(),
                    quote: None,
                }),
                _ => fx.sends.extend(report(r)),
            }
            return;
        }
        if self.probing.contains(&execution.id) {
            // Asked again while the probe runs: it answers once it is done.
            return;
        }
        if self.forgotten.contains(&execution.id) {
            // A late duplicate of an ask the orchestrator has since settled.
            debug!(execution_id = %execution.id, "ask for an execution this node is done with ignored");
            return;
        }
        if verdict.is_ok() && self.probe && execution.job.is_some() {
            self.probing.insert(execution.id.clone());
            fx.probes.push(execution);
            return;
        }
        self.answer_bid(execution, verdict, fx);
    }

    /// Records the bid decision and tells the orchestrator.
    fn answer_bid(&mut self, execution: Execution, decision: Result<(), String>, fx: &mut Effects) {
        let quote = quote(self.prices, &execution);
        let id = execution.id.clone();
        let (state, accepted, reason) = match decision {
            Ok(()) => (LocalExecutionState::AskForBidAccepted, true, String::new()),
            Err(reason) => (LocalExecutionState::AskForBidRejected, false, reason),
        };
        self.records.insert(
            id.clone(),
            Record { execution, state, message: reason.clone(), outcome: None, reported: !accepted },
        );
        fx.changed.insert(id.clone());
        fx.sends.push(FromCompute::BidResult { execution_id: id, accepted, reason, quote });
    }

    fn cancel(&mut self, id: &ExecutionId, reason: &str, fx: &mut Effects) {
        // Cancelled while the probe runs: its answer is dropped, no bid is made.
        if self.probing.remove(id) {
            return;
        }
        if self.running.contains_key(id) {
            // The run ends itself and reports Cancelled.
            fx.cancels.push(id.clone());
            return;
        }
        let message =
            if reason.is_empty() { "execution cancelled".to_owned() } else { format!("execution cancelled: {reason}") };
        if self.transition(id, ExecutionEvent::Cancelled, &message, fx).is_err() {
            return;
        }
        self.queue.retain(|q| &q.id != id);
        if let Some(r) = self.records.get_mut(id) {
            r.outcome = Some(Outcome::Failed { message, cancelled: true, retryable: false });
            r.reported = false;
            fx.sends.extend(report(r));
        }
    }

    fn finished(&mut self, id: ExecutionId, outcome: Outcome, fx: &mut Effects) {
        if let Some(res) = self.running.remove(&id) {
            self.used = self.used.sub(&res);
        }
        let (event, message) = match &outcome {
            Outcome::Completed { .. } => (ExecutionEvent::Completed, "completed".to_owned()),
            Outcome::Failed { cancelled: true, message, .. } => (ExecutionEvent::Cancelled, message.clone()),
            Outcome::Failed { message, .. } => (ExecutionEvent::Failed, message.clone()),
        };
        if let Err(illegal) = self.transition(&id, event, &message, fx) {
            warn!(execution_id = %id, %illegal, "a run ended in a state that does not allow it; its outcome is dropped");
            return;
        }
        if let Some(r) = self.records.get_mut(&id) {
            r.outcome = Some(outcome);
            r.reported = false;
            fx.sends.extend(report(r));
        }
    }

    /// Starts queued executions that fit, highest priority first, then oldest.
    fn schedule(&mut self, fx: &mut Effects) {
        self.queue.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.seq.cmp(&b.seq)));
        let mut keep = Vec::new();
        for q in std::mem::take(&mut self.queue) {
            let Some(record) = self.records.get(&q.id) else { continue };
            let needs = job_resources(record);
            if !self.used.add(&needs).fits_within(&self.capacity) {
                keep.push(q);
                continue;
            }
            let execution = record.execution.clone();
            // Inputs are written against the job's disk, or what the node has left when it named none.
            let disk_budget =
                if needs.disk_bytes > 0 { needs.disk_bytes } else { self.capacity.sub(&self.used).disk_bytes };
            // Only an accepted bid starts (a queued execution cancelled meanwhile left the queue).
            if self.transition(&q.id, ExecutionEvent::Started, "running", fx).is_err() {
                continue;
            }
            self.used = self.used.add(&needs);
            self.running.insert(q.id.clone(), needs);
            fx.starts.push(Start { execution, resources: needs, disk_budget });
        }
        self.queue = keep;
    }
}

/// What the node charges for `execution`, if it has prices.
pub(crate) fn quote(prices: Option<Prices>, execution: &Execution) -> Option<f64> {
    let prices = prices?;
    let job = execution.job.as_deref()?;
    Some(prices.quote(&job_resources_of(job), job.task().map_or(0, |t| t.timeouts.execution_timeout)))
}

/// What a job takes from capacity. An orchestrator fills in defaults for zero amounts; a
/// zero that reaches here anyway still counts as the submission defaults, never as nothing.
pub(crate) fn job_resources_of(job: &bacalhau_model::Job) -> Resources {
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

#[cfg(test)]
mod tests {
    //! The engine on its own: inputs in, effects out, no runtime, store or engines.

    use super::*;
    use bacalhau_model::{Job, JobId, ResourcesConfig, RunCommandResult, Task};

    fn engine() -> Engine {
        Engine::new(Resources { cpu_millis: 1000, memory_bytes: 1 << 30, ..Resources::default() }, None, false, 0)
    }

    fn execution(id: &str) -> Box<Execution> {
        Box::new(Execution {
            id: ExecutionId::from(id),
            job_id: JobId::from("j-1"),
            job: Some(Box::new(Job {
                tasks: vec![Task {
                    resources: ResourcesConfig { cpu: "100m".into(), memory: "16Mb".into(), ..Default::default() },
                    ..Task::default()
                }],
                ..Job::default()
            })),
            ..Execution::default()
        })
    }

    fn ask(id: &str) -> Input {
        Input::Ask { execution: execution(id), verdict: Ok(()) }
    }

    fn accept(id: &str) -> Input {
        Input::Message(ToCompute::BidAccepted { execution_id: ExecutionId::from(id) })
    }

    fn completed(id: &str) -> Input {
        Input::Finished {
            id: ExecutionId::from(id),
            outcome: Outcome::Completed { published_result: None, run_output: RunCommandResult::default(), cost: None },
        }
    }

    #[test]
    fn a_bid_an_acceptance_a_run_and_an_ack() {
        let mut e = engine();
        let fx = e.step([ask("e-1")]);
        assert!(matches!(fx.sends.as_slice(), [FromCompute::BidResult { accepted: true, .. }]));
        assert_eq!(fx.writes.len(), 1, "the bid is persisted before it is sent");
        let fx = e.step([accept("e-1")]);
        assert_eq!(fx.starts.len(), 1, "it fits, so it starts");
        assert_eq!(e.state(&ExecutionId::from("e-1")), Some(LocalExecutionState::Running));
        let fx = e.step([completed("e-1")]);
        assert!(matches!(fx.sends.as_slice(), [FromCompute::RunResult { .. }]));
        // Until acknowledged, the outcome goes again at every registration.
        assert_eq!(e.registration().1.len(), 1);
        // A lost report goes again at the second tick after it was made.
        assert!(e.step([Input::Tick]).sends.is_empty());
        assert!(matches!(e.step([Input::Tick]).sends.as_slice(), [FromCompute::RunResult { .. }]));
        let fx = e.step([Input::Message(ToCompute::Ack { execution_id: ExecutionId::from("e-1") })]);
        assert_eq!(e.registration().1.len(), 0);
        // Acknowledged, it leaves memory and the store; a late duplicate ask is not new work.
        assert_eq!((e.held(), fx.forgets.as_slice()), (0, [ExecutionId::from("e-1")].as_slice()));
        assert!(e.step([ask("e-1")]).sends.is_empty());
        assert_eq!(e.digest(), ExecutionDigest::default(), "nothing live");
    }

    #[test]
    fn duplicates_and_strangers_change_nothing() {
        let mut e = engine();
        e.step([ask("e-1")]);
        // Asked again: the same answer, no new record.
        let fx = e.step([ask("e-1")]);
        assert!(matches!(fx.sends.as_slice(), [FromCompute::BidResult { accepted: true, .. }]));
        assert!(fx.writes.is_empty());
        e.step([accept("e-1")]);
        let fx = e.step([accept("e-1"), accept("e-unknown")]);
        assert!(fx.starts.is_empty() && fx.writes.is_empty() && fx.sends.is_empty());
        // A run that ends twice is reported once.
        e.step([completed("e-1")]);
        let fx = e.step([completed("e-1")]);
        assert!(fx.sends.is_empty() && fx.writes.is_empty());
    }

    #[test]
    fn a_cancel_stops_a_running_execution_and_ends_a_queued_one() {
        let mut e =
            Engine::new(Resources { cpu_millis: 100, memory_bytes: 1 << 30, ..Resources::default() }, None, false, 0);
        e.step([ask("e-1"), ask("e-2")]);
        // Each takes 100m of the node's 150m of CPU: one runs, one waits.
        let fx = e.step([accept("e-1"), accept("e-2")]);
        assert_eq!((fx.starts.len(), e.queued_count()), (1, 1));
        let cancel = |id: &str| {
            Input::Message(ToCompute::CancelExecution { execution_id: ExecutionId::from(id), reason: "stop".into() })
        };
        let fx = e.step([cancel("e-1"), cancel("e-2")]);
        assert_eq!(fx.cancels, [ExecutionId::from("e-1")], "the running one is stopped by its runtime");
        assert!(
            matches!(fx.sends.as_slice(), [FromCompute::ComputeError { cancelled: true, execution_id, .. }] if execution_id.as_str() == "e-2")
        );
    }

    #[test]
    fn what_ran_when_the_node_stopped_is_reported_failed_at_restart() {
        let mut e = engine();
        e.step([ask("e-1")]);
        let fx = e.step([accept("e-1")]);
        let records: Vec<Record> = fx.writes;
        let mut restarted = engine();
        let fx = restarted.restore(records);
        assert_eq!(fx.writes.len(), 1);
        assert!(matches!(restarted.registration().1.as_slice(), [FromCompute::ComputeError { retryable: true, .. }]));
    }
}
