//! The orchestrator's metrics, recorded through the `metrics` facade (atomics: a scrape reads
//! them and never waits on the runtime).
//!
//! Counters and histograms come from the engine's [`Measure`]s once a round is committed; the
//! gauges (what is in flight, per node) from a [`Census`] the runtime takes at most once a
//! second. A label set that the census no longer has is set to zero once and then forgotten
//! here, so what this remembers is bounded by what is in flight.

use std::collections::HashSet;
use std::time::Duration;

use bacalhau_model::{ComputeStateType, JobStateType, JobType};
use metrics::{counter, gauge, histogram};

use crate::engine::{
    Census, FOREIGN_EXECUTION, LATE_REPORT, Measure, REJECTED, UNKNOWN_EXECUTION, UNREGISTERED, membership_name,
};

/// Records one committed round's facts.
pub(crate) fn record(measures: &[Measure]) {
    for m in measures {
        match *m {
            Measure::Job { job_type, from: _, to, age } => {
                let ty = job_type.as_str();
                counter!("bacalhau_job_state_changes_total", "type" => ty, "state" => to.name()).increment(1);
                if to == JobStateType::Running {
                    histogram!("bacalhau_job_submit_to_running_seconds", "type" => ty).record(age);
                }
                if to.is_terminal() {
                    histogram!("bacalhau_job_duration_seconds", "type" => ty, "state" => to.name()).record(age);
                }
            }
            Measure::Placed { job_type, wait } => {
                histogram!("bacalhau_job_scheduling_seconds", "type" => job_type.as_str()).record(wait);
            }
            Measure::Execution { from: _, to } => {
                counter!("bacalhau_execution_state_changes_total", "state" => to.name()).increment(1);
                let bid = match to {
                    ComputeStateType::AskForBidAccepted => Some(("node", "accepted")),
                    ComputeStateType::AskForBidRejected => Some(("node", "rejected")),
                    ComputeStateType::BidAccepted => Some(("orchestrator", "accepted")),
                    ComputeStateType::BidRejected => Some(("orchestrator", "rejected")),
                    _ => None,
                };
                if let Some((by, result)) = bid {
                    counter!("bacalhau_bids_total", "by" => by, "result" => result).increment(1);
                }
            }
            Measure::Verdict { agreed } => {
                let result = if agreed { "agreed" } else { "dissented" };
                counter!("bacalhau_verification_verdicts_total", "result" => result).increment(1);
            }
        }
    }
}

/// A submission the orchestrator answered.
pub(crate) fn submitted(job_type: JobType, accepted: bool) {
    let result = if accepted { "accepted" } else { "refused" };
    counter!("bacalhau_job_submissions_total", "type" => job_type.as_str(), "result" => result).increment(1);
}

/// A message from a node that was refused, by why (a fixed set of reasons).
pub(crate) fn refused(why: &'static str) {
    counter!("bacalhau_node_messages_refused_total", "reason" => why).increment(1);
}

/// How long a round's engine step and its commit took.
pub(crate) fn round(step: Duration, commit: Duration) {
    histogram!("bacalhau_orchestrator_step_seconds").record(step.as_secs_f64());
    histogram!("bacalhau_store_commit_seconds", "store" => "jobs").record(commit.as_secs_f64());
}

/// The label sets the last census set, so that the next one can zero those that went away.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    jobs: HashSet<(JobType, JobStateType)>,
    executions: HashSet<(String, ComputeStateType)>,
    nodes: HashSet<String>,
}

#[allow(clippy::cast_precision_loss)] // gauges are f64; counts and bytes far below 2^53
fn f(n: u64) -> f64 {
    n as f64
}

impl Gauges {
    /// Sets every gauge from a census, and the store file's size.
    pub(crate) fn set(&mut self, census: &Census, store_bytes: u64) {
        gauge!("bacalhau_store_size_bytes", "store" => "jobs").set(f(store_bytes));

        let mut queue = 0;
        // Every type in every waiting or running state has a series, zero or not, so a
        // dashboard's sums exist before the first job.
        let mut counts = census.jobs.clone();
        for ty in [JobType::Batch, JobType::Ops, JobType::Daemon, JobType::Service] {
            for state in [JobStateType::Pending, JobStateType::Queued, JobStateType::Running] {
                counts.entry((ty, state)).or_default();
            }
        }
        let jobs: HashSet<_> = counts.keys().copied().collect();
        for (&(ty, state), &n) in &counts {
            gauge!("bacalhau_jobs", "type" => ty.as_str(), "state" => state.name()).set(f(n));
            if matches!(state, JobStateType::Pending | JobStateType::Queued) {
                queue += n;
            }
        }
        for (ty, state) in self.jobs.difference(&jobs) {
            gauge!("bacalhau_jobs", "type" => ty.as_str(), "state" => state.name()).set(0.0);
        }
        self.jobs = jobs;
        gauge!("bacalhau_job_queue_length").set(f(queue));

        // Likewise each registered node in the states of a live execution.
        let mut counts = census.executions.clone();
        for n in &census.nodes {
            for state in
                [ComputeStateType::AskForBid, ComputeStateType::AskForBidAccepted, ComputeStateType::BidAccepted]
            {
                counts.entry((n.node_id.clone(), state)).or_default();
            }
        }
        let executions: HashSet<_> = counts.keys().map(|(node, state)| (node.as_str().to_owned(), *state)).collect();
        for ((node, state), &n) in &counts {
            gauge!("bacalhau_executions", "node_id" => node.as_str().to_owned(), "state" => state.name()).set(f(n));
        }
        for (node, state) in self.executions.difference(&executions) {
            gauge!("bacalhau_executions", "node_id" => node.clone(), "state" => state.name()).set(0.0);
        }
        self.executions = executions;

        let mut by_state = std::collections::HashMap::<(&str, &str), u64>::new();
        let mut nodes = HashSet::new();
        for n in &census.nodes {
            let id = n.node_id.as_str().to_owned();
            let connection = if n.connected { "CONNECTED" } else { "DISCONNECTED" };
            *by_state.entry((membership_name(n.membership), connection)).or_default() += 1;
            for (resource, capacity, available) in [
                ("cpu_millis", n.capacity.cpu_millis, n.available.cpu_millis),
                ("memory_bytes", n.capacity.memory_bytes, n.available.memory_bytes),
                ("disk_bytes", n.capacity.disk_bytes, n.available.disk_bytes),
                ("gpu", n.capacity.gpu, n.available.gpu),
            ] {
                gauge!("bacalhau_node_capacity", "node_id" => id.clone(), "resource" => resource).set(f(capacity));
                gauge!("bacalhau_node_available", "node_id" => id.clone(), "resource" => resource).set(f(available));
            }
            gauge!("bacalhau_node_running_executions", "node_id" => id.clone()).set(f(n.running.into()));
            gauge!("bacalhau_node_queued_executions", "node_id" => id.clone()).set(f(n.queued.into()));
            gauge!("bacalhau_node_connected", "node_id" => id.clone()).set(if n.connected { 1.0 } else { 0.0 });
            nodes.insert(id);
        }
        for id in self.nodes.difference(&nodes) {
            // A deleted node: its series read zero until the exporter drops them as idle.
            for resource in ["cpu_millis", "memory_bytes", "disk_bytes", "gpu"] {
                gauge!("bacalhau_node_capacity", "node_id" => id.clone(), "resource" => resource).set(0.0);
                gauge!("bacalhau_node_available", "node_id" => id.clone(), "resource" => resource).set(0.0);
            }
            gauge!("bacalhau_node_running_executions", "node_id" => id.clone()).set(0.0);
            gauge!("bacalhau_node_queued_executions", "node_id" => id.clone()).set(0.0);
            gauge!("bacalhau_node_connected", "node_id" => id.clone()).set(0.0);
        }
        self.nodes = nodes;
        for membership in ["PENDING", "APPROVED", "REJECTED"] {
            for connection in ["CONNECTED", "DISCONNECTED"] {
                let n = by_state.get(&(membership, connection)).copied().unwrap_or(0);
                gauge!("bacalhau_nodes", "membership" => membership, "connection" => connection).set(f(n));
            }
        }
    }
}

/// Describes the orchestrator's metrics (the `# HELP` lines). Call once the recorder is
/// installed.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "bacalhau_job_submissions_total",
        "Job submissions answered, by type and result (accepted or refused)"
    );
    describe_counter!("bacalhau_job_state_changes_total", "Job state changes, by type and the state entered");
    describe_gauge!("bacalhau_jobs", "Jobs in flight, by type and state (finished jobs are on disk only)");
    describe_gauge!("bacalhau_job_queue_length", "Jobs waiting to be placed (Pending or Queued)");
    describe_histogram!(
        "bacalhau_job_scheduling_seconds",
        Unit::Seconds,
        "From a job's submission to each execution placed on a node"
    );
    describe_histogram!(
        "bacalhau_job_submit_to_running_seconds",
        Unit::Seconds,
        "From a job's submission to its first Running state"
    );
    describe_histogram!(
        "bacalhau_job_duration_seconds",
        Unit::Seconds,
        "From a job's submission to its end, by type and final state"
    );
    describe_counter!("bacalhau_execution_state_changes_total", "Execution state changes, by the state entered");
    describe_gauge!("bacalhau_executions", "Executions in flight, by node and state");
    describe_counter!(
        "bacalhau_bids_total",
        "Bids: by the node (accepted or rejected an ask) and by the orchestrator (accepted or rejected a bid)"
    );
    describe_counter!("bacalhau_verification_verdicts_total", "Verification verdicts on results: agreed or dissented");
    describe_counter!("bacalhau_node_messages_refused_total", "Messages from compute nodes refused, by reason");
    describe_gauge!("bacalhau_nodes", "Registered compute nodes, by membership and connection");
    describe_gauge!("bacalhau_node_capacity", "A node's total capacity, by resource");
    describe_gauge!("bacalhau_node_available", "A node's free capacity, by resource");
    describe_gauge!("bacalhau_node_running_executions", "Executions running on a node, as it last reported");
    describe_gauge!("bacalhau_node_queued_executions", "Executions waiting in a node's queue, as it last reported");
    describe_gauge!("bacalhau_node_connected", "1 while a node's link is up");
    describe_histogram!(
        "bacalhau_orchestrator_step_seconds",
        Unit::Seconds,
        "Time the orchestrator's engine took to decide one round"
    );
    describe_histogram!("bacalhau_store_commit_seconds", Unit::Seconds, "Time to commit one round to a store");
    describe_gauge!("bacalhau_store_size_bytes", Unit::Bytes, "A store's file size");
    // The counters whose labels are known up front start at zero, so rates and dashboards
    // work before the first event.
    for by in ["node", "orchestrator"] {
        for result in ["accepted", "rejected"] {
            counter!("bacalhau_bids_total", "by" => by, "result" => result).increment(0);
        }
    }
    for result in ["agreed", "dissented"] {
        counter!("bacalhau_verification_verdicts_total", "result" => result).increment(0);
    }
    for why in [FOREIGN_EXECUTION, UNREGISTERED, REJECTED, UNKNOWN_EXECUTION, LATE_REPORT] {
        counter!("bacalhau_node_messages_refused_total", "reason" => why).increment(0);
    }
}
