//! Shared benchmark helpers: an in-process node and timing a job to completion.

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]
// Each bench includes this module and uses a subset of it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use bacalhau_model::{Job, JobStateType, NodeId};
use bacalhau_node::{ApiSettings, ComputeRole, Faults, Listeners, Node, NodeConfig, OrchestratorRole, Upstream};
use bacalhau_orchestrator::{JobEvent, OrchestratorHandle};
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

/// Starts a node as `serve` runs it (orchestrator and compute in one process, through
/// `bacalhau_node`), without the engines in `disabled`, in `dir`; returns once its compute node
/// is registered.
pub async fn start_node(dir: &std::path::Path, disabled: &[&str], cancel: &CancellationToken) -> OrchestratorHandle {
    let node = start_node_full(dir, disabled, cancel).await;
    node.orchestrator.clone().expect("the orchestrator role")
}

/// [`start_node`], returning the node itself (its API address, and `wait` for its end).
pub async fn start_node_full(dir: &std::path::Path, disabled: &[&str], cancel: &CancellationToken) -> Node {
    let mut compute = ComputeRole::new(Upstream::InProcess, bacalhau_compute::detect_capacity(dir, 80));
    compute.disabled.engines = disabled.iter().map(|e| (*e).to_owned()).collect();
    let cfg = NodeConfig {
        dir: dir.to_owned(),
        node_id: NodeId::from("n-bench"),
        orchestrator: Some(OrchestratorRole::default()),
        compute: Some(compute),
        api: ApiSettings::loopback(),
        ipfs_listen: Vec::new(),
        ipfs_peers: Vec::new(),
        faults: Faults::default(),
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let node = Node::start(cfg, Listeners { api, node: None, web_ui: None }, cancel.child_token()).await.expect("node");
    let h = node.orchestrator.clone().expect("the orchestrator role");
    while h.nodes().await.expect("nodes").is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    node
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
