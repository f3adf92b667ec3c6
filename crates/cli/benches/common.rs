//! Shared benchmark helpers: an in-process node and timing a job to completion.

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]
// Each bench includes this module and uses a subset of it.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bacalhau_compute::{ComputeConfig, ComputeNode};
use bacalhau_executor::Executor;
use bacalhau_model::{Job, JobStateType, NodeId};
use bacalhau_orchestrator::{JobEvent, Orchestrator, OrchestratorConfig, OrchestratorHandle};
use bacalhau_protocol::connect_in_process;
use bacalhau_storage::{InlineSource, InputProvider, NoopPublisher, Publisher};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// The `p` quantile of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Milliseconds.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Whether this is a real benchmark run (`cargo bench`) rather than the `cargo test` smoke run.
pub fn is_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Starts an orchestrator and one compute node with `executors` in `dir`; returns once the
/// node is registered.
pub async fn start_node(
    dir: &std::path::Path,
    executors: Vec<Arc<dyn Executor>>,
    cancel: &CancellationToken,
) -> OrchestratorHandle {
    let orch = Orchestrator::start(OrchestratorConfig::new(dir.join("jobs.redb")), cancel.child_token())
        .await
        .expect("orchestrator");
    let h = orch.handle();
    let node_id = NodeId::from("n-bench");
    let endpoint = connect_in_process(h.inbound(), node_id.clone()).await.expect("connect");
    let inputs: Vec<Arc<dyn InputProvider>> = vec![Arc::new(InlineSource)];
    let publishers: Vec<Arc<dyn Publisher>> = vec![Arc::new(NoopPublisher)];
    let cfg = ComputeConfig::new(node_id, dir.join("compute"), bacalhau_compute::detect_capacity(dir, 80));
    ComputeNode::start(cfg, executors, inputs, publishers, endpoint, cancel.child_token()).await.expect("compute");
    while h.nodes().await.expect("nodes").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h
}

/// Submits a job and waits for it to complete; returns submit→Completed.
pub async fn run_job(h: &OrchestratorHandle, events: &mut broadcast::Receiver<JobEvent>, j: Job) -> Duration {
    let start = Instant::now();
    let id = h.submit(j).await.expect("submit").job_id;
    loop {
        match events.recv().await {
            Ok(e) if e.job_id == id && e.state.is_terminal() => {
                assert_eq!(e.state, JobStateType::Completed, "job {id}");
                return start.elapsed();
            }
            Ok(_) => {}
            Err(e) => panic!("event stream: {e}"),
        }
    }
}
