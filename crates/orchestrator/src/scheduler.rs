//! The schedulers: a pure function from (job, executions, nodes, now) to a [`Plan`].
//!
//! No clock reads, no I/O: the runtime applies the plan (store writes, messages). Batch jobs
//! keep `Count` partitions each with at most one live execution; ops jobs run once on every
//! suitable node.

use std::collections::{BTreeMap, BTreeSet};

use bacalhau_model::{
    ComputeStateType, DesiredStateType, Execution, ExecutionEvent, ExecutionId, Job, JobStateType, JobType, NodeId,
};

use crate::selection::{NodeView, not_enough_nodes, rank_nodes};

/// Scheduler settings.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// How many executions one partition may use up before the job fails.
    pub max_attempts_per_partition: usize,
    /// How long a queued job waits before it is looked at again.
    pub queue_backoff_nanos: i64,
    /// How far past its ExecutionTimeout an execution may run before the orchestrator gives up
    /// on it (the compute node enforces the timeout itself; this is the backstop).
    pub execution_timeout_grace_nanos: i64,
    /// Queue, rather than fail, a job that no node can take now: set by the orchestrator
    /// while nodes it knows are still reconnecting after a restart, so a submission in that
    /// window waits for them instead of failing for want of nodes.
    pub hold_unplaced: bool,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            max_attempts_per_partition: 3,
            queue_backoff_nanos: 1_000_000_000,
            execution_timeout_grace_nanos: 30_000_000_000,
            hold_unplaced: false,
        }
    }
}

/// A message the runtime sends for an execution once the plan is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notify {
    /// Tell the node its bid won.
    BidAccepted,
    /// Tell the node its bid lost.
    BidRejected(String),
    /// Tell the node to stop.
    Cancel(String),
}

/// A change to an existing execution.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionUpdate {
    /// Which.
    pub id: ExecutionId,
    /// What happens to it (the runtime applies it through the lifecycle), if anything.
    pub event: Option<ExecutionEvent>,
    /// New desired state, if it changes.
    pub desired_state: Option<DesiredStateType>,
    /// Why.
    pub message: String,
    /// What to tell the node.
    pub notify: Option<Notify>,
}

/// A new execution to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewExecution {
    /// Where.
    pub node_id: NodeId,
    /// Which partition.
    pub partition_index: u32,
}

/// What one evaluation decided.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Executions to create (each gets an AskForBid).
    pub new_executions: Vec<NewExecution>,
    /// Changes to existing executions.
    pub updates: Vec<ExecutionUpdate>,
    /// The job's new state and reason, if it changes.
    pub job_state: Option<(JobStateType, String)>,
    /// When to evaluate the job again, in Unix nanoseconds, if it must wait.
    pub retry_at: Option<i64>,
    /// Verification verdicts: execution, what it says, and whether it dissented.
    pub verdicts: Vec<(ExecutionId, String, bool)>,
}

impl Plan {
    fn update(
        &mut self,
        e: &Execution,
        event: Option<ExecutionEvent>,
        desired: DesiredStateType,
        msg: &str,
        notify: Option<Notify>,
    ) {
        self.updates.push(ExecutionUpdate {
            id: e.id.clone(),
            event,
            desired_state: Some(desired),
            message: msg.to_owned(),
            notify,
        });
    }

    /// Stops an execution the right way for its state.
    fn stop(&mut self, e: &Execution, reason: &str) {
        let state = e.compute_state.state_type;
        if state.is_terminal() {
            return;
        }
        if state == ComputeStateType::AskForBidAccepted {
            self.update(
                e,
                Some(ExecutionEvent::BidRejected),
                DesiredStateType::Stopped,
                reason,
                Some(Notify::BidRejected(reason.into())),
            );
        } else {
            self.update(
                e,
                Some(ExecutionEvent::Cancelled),
                DesiredStateType::Stopped,
                reason,
                Some(Notify::Cancel(reason.into())),
            );
        }
    }

    fn fail_job(&mut self, live: &[Execution], reason: String) {
        for e in live {
            self.stop(e, "job failed");
        }
        self.job_state = Some((JobStateType::Failed, reason));
    }
}

/// Decides what to do next for `job`.
///
/// `node_grace` is false while the orchestrator has just started and nodes may not have
/// reconnected yet; executions on unknown nodes are then left alone rather than declared lost.
pub fn plan(
    job: &Job,
    executions: &[Execution],
    nodes: &[NodeView],
    now: i64,
    node_grace_over: bool,
    cfg: &SchedulerConfig,
) -> Plan {
    let mut plan = Plan::default();
    if job.state.state_type.is_terminal() {
        for e in executions {
            plan.stop(e, &format!("job {}", job.state.state_type.to_string().to_lowercase()));
        }
        return plan;
    }
    let Some(task) = job.task() else {
        plan.job_state = Some((JobStateType::Failed, "job has no task".into()));
        return plan;
    };

    // An update or rerun made a new version: what older versions still run is stopped, and
    // only the current version's executions count below. (Executions stored before versions
    // existed carry 0 and belong to version 1.)
    let current = job.version.max(1);
    for e in executions.iter().filter(|e| e.job_version.max(1) != current) {
        plan.stop(e, "Execution stopped for job update");
    }
    // Work on a copy whose states reflect this plan's decisions so far.
    let mut execs: Vec<Execution> = executions.iter().filter(|e| e.job_version.max(1) == current).cloned().collect();
    let apply = |plan: &mut Plan,
                 execs: &mut Vec<Execution>,
                 idx: usize,
                 event: ExecutionEvent,
                 msg: &str,
                 notify: Option<Notify>| {
        let e = &mut execs[idx];
        if let Ok(state) = e.compute_state.state_type.apply(event) {
            plan.update(e, Some(event), DesiredStateType::Stopped, msg, notify);
            e.compute_state.state_type = state;
            e.compute_state.message = msg.to_owned();
        }
    };

    let total = nanos(task.timeouts.total_timeout);
    if total > 0 && now.saturating_sub(bacalhau_model::version_start(job)) > total {
        let live: Vec<Execution> =
            execs.iter().filter(|e| !e.compute_state.state_type.is_terminal()).cloned().collect();
        plan.fail_job(
            &live,
            format!("job timed out: it ran longer than its TotalTimeout of {}s", task.timeouts.total_timeout),
        );
        return plan;
    }

    for i in 0..execs.len() {
        let e = &execs[i];
        if e.compute_state.state_type.is_terminal() {
            continue;
        }
        let node = nodes.iter().find(|n| n.id() == &e.node_id);
        let lost = match node {
            Some(n) => !n.connected,
            None => node_grace_over,
        };
        if lost {
            let msg = format!("node {} has disappeared", e.node_id);
            apply(&mut plan, &mut execs, i, ExecutionEvent::Failed, &msg, None);
            continue;
        }
        // An operator rejected the node: what it still runs is stopped there and run elsewhere.
        if node.is_some_and(|n| !n.approved) {
            let msg = format!("node {} was rejected by the orchestrator's operator", e.node_id);
            apply(&mut plan, &mut execs, i, ExecutionEvent::Failed, &msg, Some(Notify::Cancel(msg.clone())));
            continue;
        }
        let exec_timeout = nanos(task.timeouts.execution_timeout);
        let timed_out = e.compute_state.state_type == ComputeStateType::BidAccepted
            && exec_timeout > 0
            && now.saturating_sub(e.modify_time) > exec_timeout.saturating_add(cfg.execution_timeout_grace_nanos);
        if timed_out {
            let msg = format!(
                "execution timed out: it ran longer than its ExecutionTimeout of {}s",
                task.timeouts.execution_timeout
            );
            apply(&mut plan, &mut execs, i, ExecutionEvent::Failed, &msg, Some(Notify::Cancel(msg.clone())));
        }
    }

    match job.r#type {
        JobType::Ops => plan_ops(job, &execs, nodes, now, cfg, &mut plan),
        JobType::Daemon => plan_daemon(job, &execs, nodes, &mut plan),
        _ => plan_batch(job, &execs, nodes, now, cfg, &mut plan),
    }
    plan
}

/// Seconds from a spec as nanoseconds, saturating: validation bounds timeouts, but a job
/// stored before that bound must not overflow the arithmetic.
fn nanos(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1_000_000_000)
}

fn oldest_first(execs: &mut [&Execution]) {
    execs.sort_by_key(|e| (e.create_time, e.id.0.clone()));
}

fn plan_batch(job: &Job, execs: &[Execution], nodes: &[NodeView], now: i64, cfg: &SchedulerConfig, plan: &mut Plan) {
    let partitions = job.partitions();
    let mut by_partition: BTreeMap<u32, Vec<&Execution>> = BTreeMap::new();
    for e in execs {
        by_partition.entry(e.partition_index).or_default().push(e);
    }
    // A service keeps Count replicas up: a replica that ends, however it ends, is replaced.
    let service = job.r#type == JobType::Service;
    let mut completed = 0u32;
    let mut remaining = Vec::new();
    let mut any_running = false;
    for p in 0..partitions {
        let mut list = by_partition.remove(&p).unwrap_or_default();
        oldest_first(&mut list);
        let has = |s: ComputeStateType| list.iter().any(|e| e.compute_state.state_type == s);
        if !service && has(ComputeStateType::Completed) {
            completed += 1;
            for e in &list {
                plan.stop(e, "another execution already completed this partition");
            }
        } else if has(ComputeStateType::BidAccepted) {
            any_running = true;
            for e in list.iter().filter(|e| e.compute_state.state_type != ComputeStateType::BidAccepted) {
                plan.stop(e, "another execution already runs this partition");
            }
        } else if let Some(winner) =
            list.iter().find(|e| e.compute_state.state_type == ComputeStateType::AskForBidAccepted)
        {
            any_running = true;
            plan.update(
                winner,
                Some(ExecutionEvent::BidAccepted),
                DesiredStateType::Running,
                "bid accepted",
                Some(Notify::BidAccepted),
            );
            for e in list.iter().filter(|e| e.id != winner.id) {
                plan.stop(e, "another node's bid was accepted");
            }
        } else if list.iter().any(|e| !e.compute_state.state_type.is_terminal()) {
            // Waiting for a bid.
        } else {
            // A service replica that ran to its end was not a failed attempt; the failures
            // since its last good run are what would make it hopeless.
            let attempts = if service {
                list.iter().rev().take_while(|e| e.compute_state.state_type != ComputeStateType::Completed).count()
            } else {
                list.len()
            };
            if attempts >= cfg.max_attempts_per_partition {
                let last = list.last().map(|e| e.compute_state.message.clone()).unwrap_or_default();
                let live: Vec<Execution> =
                    execs.iter().filter(|e| !e.compute_state.state_type.is_terminal()).cloned().collect();
                plan.fail_job(&live, format!("job failed after {attempts} attempts; the last one ended with: {last}"));
                return;
            }
            remaining.push(p);
        }
    }
    if job.r#type == JobType::Batch && completed >= partitions {
        match &job.verification {
            Some(v) => verify(job, execs, v, plan),
            None => plan.job_state = Some((JobStateType::Completed, String::new())),
        }
        return;
    }
    if !remaining.is_empty() {
        let (mut ranked, rejected) = rank_nodes(job, execs, nodes);
        if job.verification.is_some() {
            // Replicas must run on distinct nodes: drop nodes already running or done with one.
            let busy: BTreeSet<&NodeId> = execs
                .iter()
                .filter(|e| {
                    e.compute_state.state_type != ComputeStateType::Failed
                        && !matches!(
                            e.compute_state.state_type,
                            ComputeStateType::AskForBidRejected
                                | ComputeStateType::BidRejected
                                | ComputeStateType::Cancelled
                        )
                })
                .map(|e| &e.node_id)
                .collect();
            ranked.retain(|(n, _)| !busy.contains(n));
            if ranked.len() < remaining.len() && !any_running {
                let reason = format!(
                    "verification needs {} distinct nodes; {} more are suitable.\n{}",
                    partitions,
                    ranked.len(),
                    not_enough_nodes(remaining.len(), nodes.len(), ranked.len(), &rejected)
                );
                queue_or_fail(job, execs, now, cfg, reason, plan);
                return;
            }
            ranked.truncate(remaining.len());
            remaining.truncate(ranked.len());
        }
        if ranked.is_empty() {
            let mut reason = not_enough_nodes(remaining.len(), nodes.len(), 0, &rejected);
            // When earlier attempts failed, their reason is what the user needs first.
            let last_failure = execs
                .iter()
                .filter(|e| e.compute_state.state_type == ComputeStateType::Failed)
                .max_by_key(|e| e.modify_time);
            if let Some(f) = last_failure {
                reason = format!("{}\nIt was not retried: {reason}", f.compute_state.message);
            }
            queue_or_fail(job, execs, now, cfg, reason, plan);
            return;
        }
        // Spread partitions over the best nodes, reusing nodes when there are fewer nodes
        // than partitions (a compute node queues what it cannot run at once).
        for (i, p) in remaining.iter().enumerate() {
            let node_id = ranked[i % ranked.len()].0.clone();
            plan.new_executions.push(NewExecution { node_id, partition_index: *p });
        }
    }
    if any_running && job.state.state_type != JobStateType::Running {
        plan.job_state = Some((JobStateType::Running, String::new()));
    }
}

/// Every replica of a verified job completed: the result CID at least `Quorum` of them share
/// wins; the others are flagged as dissenting. Too little agreement fails the job, listing
/// each node's CID.
fn verify(job: &Job, execs: &[Execution], v: &bacalhau_model::Verification, plan: &mut Plan) {
    let done: Vec<&Execution> =
        execs.iter().filter(|e| e.compute_state.state_type == ComputeStateType::Completed).collect();
    let cid_of = |e: &Execution| {
        e.published_result.as_ref().and_then(|p| p.param_str("CID")).unwrap_or("(no result)").to_owned()
    };
    let mut votes: BTreeMap<String, Vec<&Execution>> = BTreeMap::new();
    for e in &done {
        votes.entry(cid_of(e)).or_default().push(e);
    }
    let best = votes.iter().max_by_key(|(cid, voters)| (voters.len(), std::cmp::Reverse((*cid).clone())));
    let each: Vec<String> = done.iter().map(|e| format!("{} → {}", e.node_id, cid_of(e))).collect();
    match best {
        Some((cid, voters)) if voters.len() >= v.quorum as usize => {
            for e in &done {
                let mine = cid_of(e);
                if &mine == cid {
                    plan.verdicts.push((
                        e.id.clone(),
                        format!("agreed: {} of {} produced {cid}", voters.len(), done.len()),
                        false,
                    ));
                } else {
                    plan.verdicts.push((e.id.clone(), format!("dissented: produced {mine}, the quorum {cid}"), true));
                }
            }
            let _ = job;
            plan.job_state = Some((
                JobStateType::Completed,
                format!("verified: {} of {} nodes produced {cid} (quorum {})", voters.len(), done.len(), v.quorum),
            ));
        }
        _ => {
            for e in &done {
                plan.verdicts.push((e.id.clone(), format!("no quorum: produced {}", cid_of(e)), false));
            }
            plan.job_state = Some((
                JobStateType::Failed,
                format!(
                    "verification failed: no result CID was produced by {} of the {} nodes: {}",
                    v.quorum,
                    done.len(),
                    each.join("; ")
                ),
            ));
        }
    }
}

fn queue_or_fail(job: &Job, execs: &[Execution], now: i64, cfg: &SchedulerConfig, reason: String, plan: &mut Plan) {
    let queue_timeout = nanos(job.task().map_or(0, |t| t.timeouts.queue_timeout));
    let queue = queue_timeout > 0 && now.saturating_sub(bacalhau_model::version_start(job)) < queue_timeout;
    if queue || cfg.hold_unplaced {
        plan.retry_at = Some(now + cfg.queue_backoff_nanos);
        let msg = if queue {
            format!("Job queued. {reason}")
        } else {
            format!("Job queued while this orchestrator's nodes reconnect after its restart. {reason}")
        };
        if job.state.state_type != JobStateType::Queued || job.state.message != msg {
            plan.job_state = Some((JobStateType::Queued, msg));
        }
    } else {
        let live: Vec<Execution> =
            execs.iter().filter(|e| !e.compute_state.state_type.is_terminal()).cloned().collect();
        plan.fail_job(&live, reason);
    }
}

/// A daemon runs on every matching node, including nodes that join later, until stopped.
/// A node whose execution ended keeps it ended (no restart loop); one that failed there twice
/// is ranked out by the selection.
fn plan_daemon(job: &Job, execs: &[Execution], nodes: &[NodeView], plan: &mut Plan) {
    let mut live = 0;
    for e in execs {
        match e.compute_state.state_type {
            ComputeStateType::AskForBidAccepted => {
                plan.update(
                    e,
                    Some(ExecutionEvent::BidAccepted),
                    DesiredStateType::Running,
                    "bid accepted",
                    Some(Notify::BidAccepted),
                );
                live += 1;
            }
            s if !s.is_terminal() => live += 1,
            _ => {}
        }
    }
    let covered: std::collections::BTreeSet<&NodeId> = execs
        .iter()
        .filter(|e| {
            !e.compute_state.state_type.is_terminal() || e.compute_state.state_type == ComputeStateType::Completed
        })
        .map(|e| &e.node_id)
        .collect();
    let (ranked, rejected) = rank_nodes(job, execs, nodes);
    let mut next = execs.iter().map(|e| e.partition_index + 1).max().unwrap_or(0);
    for (node_id, _) in ranked {
        if !covered.contains(&node_id) {
            plan.new_executions.push(NewExecution { node_id, partition_index: next });
            next += 1;
            live += 1;
        }
    }
    if live == 0 {
        let msg = format!("Job queued. {}", not_enough_nodes(1, nodes.len(), 0, &rejected));
        if job.state.state_type != JobStateType::Queued || job.state.message != msg {
            plan.job_state = Some((JobStateType::Queued, msg));
        }
    } else if job.state.state_type != JobStateType::Running {
        plan.job_state = Some((JobStateType::Running, String::new()));
    }
}

fn plan_ops(job: &Job, execs: &[Execution], nodes: &[NodeView], now: i64, cfg: &SchedulerConfig, plan: &mut Plan) {
    if execs.is_empty() {
        let (ranked, rejected) = rank_nodes(job, execs, nodes);
        if ranked.is_empty() {
            let reason = not_enough_nodes(1, nodes.len(), 0, &rejected);
            queue_or_fail(job, execs, now, cfg, reason, plan);
            return;
        }
        for ((node_id, _), partition_index) in ranked.into_iter().zip(0u32..) {
            plan.new_executions.push(NewExecution { node_id, partition_index });
        }
        return;
    }
    let mut running = false;
    for e in execs {
        if e.compute_state.state_type == ComputeStateType::AskForBidAccepted {
            plan.update(
                e,
                Some(ExecutionEvent::BidAccepted),
                DesiredStateType::Running,
                "bid accepted",
                Some(Notify::BidAccepted),
            );
            running = true;
        } else if e.compute_state.state_type == ComputeStateType::BidAccepted {
            running = true;
        }
    }
    let accepted_update = |e: &Execution| plan.updates.iter().any(|u| u.id == e.id);
    let all_done = execs.iter().all(|e| e.compute_state.state_type.is_terminal() && !accepted_update(e));
    if all_done {
        if let Some(f) = execs.iter().find(|e| e.compute_state.state_type == ComputeStateType::Failed) {
            plan.job_state = Some((
                JobStateType::Failed,
                format!("execution on node {} failed: {}", f.node_id, f.compute_state.message),
            ));
        } else if execs.iter().any(|e| e.compute_state.state_type == ComputeStateType::Completed) {
            plan.job_state = Some((JobStateType::Completed, String::new()));
        } else {
            let reasons: Vec<String> =
                execs.iter().map(|e| format!("\u{2022} Node {}: {}", e.node_id, e.compute_state.message)).collect();
            plan.job_state = Some((JobStateType::Failed, format!("no node ran the job:\n{}", reasons.join("\n"))));
        }
    } else if running && job.state.state_type != JobStateType::Running {
        plan.job_state = Some((JobStateType::Running, String::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::tests::node;
    use bacalhau_model::{ExecutionState, JobState, SpecConfig, Task, TimeoutConfig};

    fn job(count: u32, r#type: JobType) -> Job {
        Job {
            id: "j-1".into(),
            r#type,
            count,
            state: JobState { state_type: JobStateType::Pending, message: String::new() },
            tasks: vec![Task { engine: SpecConfig::new("wasm"), ..Default::default() }],
            ..Default::default()
        }
    }

    fn exec(id: &str, node: &str, p: u32, state: ComputeStateType) -> Execution {
        Execution {
            id: id.into(),
            node_id: node.into(),
            partition_index: p,
            compute_state: ExecutionState::new(state, "because"),
            create_time: id.len() as i64,
            ..Default::default()
        }
    }

    #[test]
    fn a_new_version_stops_the_old_one_and_runs_again() {
        let nodes = vec![node("n-a", &["wasm"], &[])];
        let mut j = job(1, JobType::Batch);
        j.version = 2;
        let mut done = exec("e-1", "n-a", 0, ComputeStateType::Completed);
        done.job_version = 1;
        let mut running = exec("e-22", "n-a", 0, ComputeStateType::BidAccepted);
        running.job_version = 1;
        let p = plan(&j, &[done, running], &nodes, 0, true, &SchedulerConfig::default());
        // Version 1's completion does not complete version 2: it runs again.
        assert_eq!(p.new_executions, vec![NewExecution { node_id: "n-a".into(), partition_index: 0 }]);
        assert_eq!(p.job_state, None);
        let stopped: Vec<(&str, &str)> = p.updates.iter().map(|u| (u.id.as_str(), u.message.as_str())).collect();
        assert_eq!(stopped, vec![("e-22", "Execution stopped for job update")]);
        assert_eq!(p.updates[0].notify, Some(Notify::Cancel("Execution stopped for job update".into())));

        // Executions stored before versions existed (0) belong to version 1.
        let mut legacy = exec("e-3", "n-a", 0, ComputeStateType::Completed);
        legacy.job_version = 0;
        j.version = 1;
        let p = plan(&j, &[legacy], &nodes, 0, true, &SchedulerConfig::default());
        assert!(p.new_executions.is_empty());
        assert_eq!(p.job_state.map(|s| s.0), Some(JobStateType::Completed));
    }

    #[test]
    fn a_daemon_reaches_nodes_that_join_later() {
        let two = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[])];
        let j = job(1, JobType::Daemon);
        let p = plan(&j, &[], &two, 0, true, &SchedulerConfig::default());
        let targets: Vec<&str> = p.new_executions.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(targets, vec!["n-a", "n-b"]);
        let execs = vec![
            exec("e-1", "n-a", 0, ComputeStateType::BidAccepted),
            exec("e-2", "n-b", 1, ComputeStateType::Completed),
        ];
        let three = vec![two[0].clone(), two[1].clone(), node("n-c", &["wasm"], &[])];
        let p = plan(&j, &execs, &three, 0, true, &SchedulerConfig::default());
        let targets: Vec<&str> = p.new_executions.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(targets, vec!["n-c"], "only the newcomer; an ended execution is not restarted");
        assert_eq!(p.new_executions[0].partition_index, 2);
        assert!(p.job_state.is_none_or(|(s, _)| s == JobStateType::Running));
    }

    #[test]
    fn a_service_replaces_replicas_that_end() {
        let nodes = vec![node("n-a", &["wasm"], &[])];
        let j = job(2, JobType::Service);
        let execs = vec![
            exec("e-1", "n-a", 0, ComputeStateType::Completed),
            exec("e-2", "n-a", 1, ComputeStateType::BidAccepted),
        ];
        let p = plan(&j, &execs, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.new_executions.len(), 1, "the replica that ended is replaced");
        assert_eq!(p.new_executions[0].partition_index, 0);
        assert!(p.job_state.is_none_or(|(s, _)| s != JobStateType::Completed), "a service never completes");
        // Three failures in a row since the last good run: hopeless.
        let failing: Vec<Execution> = ["e-1", "e-22", "e-333"]
            .iter()
            .map(|id| exec(id, "n-a", 0, ComputeStateType::Failed))
            .chain([exec("e-4444", "n-a", 1, ComputeStateType::BidAccepted)])
            .collect();
        let p = plan(&j, &failing, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.map(|(s, _)| s), Some(JobStateType::Failed));
    }

    #[test]
    fn new_batch_job_spreads_partitions() {
        let nodes = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[])];
        let p = plan(&job(3, JobType::Batch), &[], &nodes, 0, true, &SchedulerConfig::default());
        let targets: Vec<&str> = p.new_executions.iter().map(|n| n.node_id.as_str()).collect();
        assert_eq!(targets, vec!["n-a", "n-b", "n-a"]);
    }

    #[test]
    fn no_node_fails_at_once_without_queue_timeout_and_queues_with_one() {
        let nodes = vec![node("n-d", &["docker"], &[])];
        let p = plan(&job(1, JobType::Batch), &[], &nodes, 0, true, &SchedulerConfig::default());
        let (state, msg) = p.job_state.expect("state");
        assert_eq!(state, JobStateType::Failed);
        assert!(msg.starts_with("not enough nodes to run job. requested: 1, available: 1, suitable: 0."), "{msg}");

        let mut j = job(1, JobType::Batch);
        j.tasks[0].timeouts = TimeoutConfig { queue_timeout: 60, ..Default::default() };
        let p = plan(&j, &[], &nodes, 1, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.expect("state").0, JobStateType::Queued);
        assert!(p.retry_at.is_some());
    }

    #[test]
    fn accepts_one_bid_per_partition_and_completes() {
        let nodes = vec![node("n-a", &["wasm"], &[])];
        let execs = vec![
            exec("e-1", "n-a", 0, ComputeStateType::AskForBidAccepted),
            exec("e-22", "n-a", 0, ComputeStateType::AskForBidAccepted),
        ];
        let p = plan(&job(1, JobType::Batch), &execs, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.updates[0].notify, Some(Notify::BidAccepted));
        assert_eq!(p.updates[0].id.as_str(), "e-1");
        assert!(matches!(p.updates[1].notify, Some(Notify::BidRejected(_))));
        assert_eq!(p.job_state.expect("running").0, JobStateType::Running);

        let done = vec![exec("e-1", "n-a", 0, ComputeStateType::Completed)];
        let p = plan(&job(1, JobType::Batch), &done, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.expect("done").0, JobStateType::Completed);
    }

    #[test]
    fn failures_are_retried_then_bounded() {
        let nodes = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[])];
        let one = vec![exec("e-1", "n-a", 0, ComputeStateType::Failed)];
        let p = plan(&job(1, JobType::Batch), &one, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.new_executions, vec![NewExecution { node_id: "n-b".into(), partition_index: 0 }]);

        let three = vec![
            exec("e-1", "n-a", 0, ComputeStateType::Failed),
            exec("e-22", "n-b", 0, ComputeStateType::Failed),
            exec("e-333", "n-a", 0, ComputeStateType::Failed),
        ];
        let p = plan(&job(1, JobType::Batch), &three, &nodes, 0, true, &SchedulerConfig::default());
        let (state, msg) = p.job_state.expect("failed");
        assert_eq!(state, JobStateType::Failed);
        assert!(msg.contains("after 3 attempts") && msg.ends_with("because"), "{msg}");
    }

    #[test]
    fn lost_nodes_fail_their_executions_only_after_the_grace_period() {
        let execs = vec![exec("e-1", "n-gone", 0, ComputeStateType::BidAccepted)];
        let p = plan(&job(1, JobType::Batch), &execs, &[], 0, false, &SchedulerConfig::default());
        assert!(p.updates.is_empty());
        let p = plan(&job(1, JobType::Batch), &execs, &[], 0, true, &SchedulerConfig::default());
        assert_eq!(p.updates[0].event, Some(ExecutionEvent::Failed));
        assert_eq!(p.updates[0].message, "node n-gone has disappeared");
    }

    #[test]
    fn total_timeout_fails_the_job_and_cancels() {
        let mut j = job(1, JobType::Batch);
        j.tasks[0].timeouts.total_timeout = 1;
        let execs = vec![exec("e-1", "n-a", 0, ComputeStateType::BidAccepted)];
        let p = plan(&j, &execs, &[node("n-a", &["wasm"], &[])], 2_000_000_000, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.as_ref().expect("failed").0, JobStateType::Failed);
        assert!(matches!(p.updates[0].notify, Some(Notify::Cancel(_))));
    }

    #[test]
    fn ops_runs_on_every_matching_node() {
        let nodes = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[]), node("n-d", &["docker"], &[])];
        let p = plan(&job(0, JobType::Ops), &[], &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.new_executions.len(), 2);
        let done = vec![
            exec("e-1", "n-a", 0, ComputeStateType::Completed),
            exec("e-2", "n-b", 1, ComputeStateType::Completed),
        ];
        let p = plan(&job(0, JobType::Ops), &done, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.expect("done").0, JobStateType::Completed);
    }

    fn with_cid(mut e: Execution, cid: &str) -> Execution {
        e.published_result = Some(bacalhau_model::SpecConfig::new("ipfs").with_param("CID", cid));
        e
    }

    #[test]
    fn verification_keeps_the_quorum_result_and_flags_dissent() {
        let mut j = job(3, JobType::Batch);
        j.verification = Some(bacalhau_model::Verification { replicas: 3, quorum: 2 });
        let execs = vec![
            with_cid(exec("e-1", "n-a", 0, ComputeStateType::Completed), "QmGood"),
            with_cid(exec("e-2", "n-b", 1, ComputeStateType::Completed), "QmBad"),
            with_cid(exec("e-3", "n-c", 2, ComputeStateType::Completed), "QmGood"),
        ];
        let nodes = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[]), node("n-c", &["wasm"], &[])];
        let p = plan(&j, &execs, &nodes, 0, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.as_ref().map(|s| s.0), Some(JobStateType::Completed));
        let dissent: Vec<&str> = p.verdicts.iter().filter(|v| v.2).map(|v| v.0.as_str()).collect();
        assert_eq!(dissent, ["e-2"]);
        j.verification = Some(bacalhau_model::Verification { replicas: 3, quorum: 3 });
        let p = plan(&j, &execs, &nodes, 0, true, &SchedulerConfig::default());
        let (state, msg) = p.job_state.expect("a verdict");
        assert_eq!(state, JobStateType::Failed);
        assert!(msg.contains("n-b → QmBad") && msg.contains("n-a → QmGood"), "{msg}");
    }

    #[test]
    fn verified_replicas_go_to_distinct_nodes() {
        let mut j = job(3, JobType::Batch);
        j.verification = Some(bacalhau_model::Verification { replicas: 3, quorum: 2 });
        let two = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[])];
        let p = plan(&j, &[], &two, 0, true, &SchedulerConfig::default());
        assert_eq!(p.job_state.as_ref().map(|s| s.0), Some(JobStateType::Failed), "3 replicas, 2 nodes");
        assert!(p.job_state.as_ref().is_some_and(|s| s.1.contains("needs 3 distinct nodes")));
        let three = vec![two[0].clone(), two[1].clone(), node("n-c", &["wasm"], &[])];
        let p = plan(&j, &[], &three, 0, true, &SchedulerConfig::default());
        let mut targets: Vec<&str> = p.new_executions.iter().map(|n| n.node_id.as_str()).collect();
        targets.sort();
        assert_eq!(targets, ["n-a", "n-b", "n-c"]);
    }
}
