//! A real orchestrator and three real compute nodes in one process, joined by links that
//! lose and duplicate messages at random (seeded), with nodes crashing and starting again on
//! their stores: every job still completes, and no partition completes twice. The streams never break, so nothing re-registers on its own: what repairs
//! the losses is the digest each heartbeat carries (docs/protocol.md, Delivery).
//!
//! `CHAOS_SEEDS=N` runs N seeds (default 3); a failure names its seed, and `CHAOS_SEED=S` runs
//! that one. The runtime's task scheduling is not replayed, so a seed fixes which messages are
//! lost, not the interleaving.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bacalhau_compute::{ComputeConfig, ComputeHandle, ComputeNode};
use bacalhau_executor::Executor;
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_model::{ComputeStateType, NodeId, NodeInfo, RunCommandResult};
use bacalhau_orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorHandle};
use bacalhau_protocol::{
    ComputeEndpoint, Envelope, FromCompute, OrchestratorInbound, Outbound, SendError, ToCompute, connect_in_process,
};
use bacalhau_storage::{InlineSource, InputProvider, NoopPublisher, Publisher};
use bacalhau_testkit::{wasm_data_url, wasm_job};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Per message: the chance in 100 that it is lost, and that it arrives twice.
const LOSS_PCT: u64 = 15;
const DUP_PCT: u64 = 10;
const JOBS: usize = 24;

/// The run's seeded choices.
#[derive(Debug)]
struct Rng(bacalhau_orchestrator::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(bacalhau_orchestrator::SplitMix64::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// How many copies of a message arrive: 0 (lost), 1 or 2.
    fn copies(&mut self) -> usize {
        match self.next() % 100 {
            n if n < LOSS_PCT => 0,
            n if n < LOSS_PCT + DUP_PCT => 2,
            _ => 1,
        }
    }
}

/// The orchestrator's side of a link that loses and duplicates what it carries.
#[derive(Debug)]
struct LossyLink {
    tx: mpsc::Sender<Envelope<ToCompute>>,
    node_id: NodeId,
    rng: Arc<Mutex<Rng>>,
}

impl Outbound for LossyLink {
    fn send(&self, msg: ToCompute) -> Result<(), SendError> {
        // The handshake's answer is not at risk: a node that never hears it is another test.
        let copies = match msg {
            ToCompute::Registered { .. } => 1,
            _ => self.rng.lock().map_or(1, |mut r| r.copies()),
        };
        for _ in 0..copies {
            self.tx.try_send(Envelope::new(self.node_id.clone(), msg.clone())).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Disconnected,
            })?;
        }
        Ok(())
    }
}

/// Connects a compute node through lossy links both ways.
async fn lossy_connect(orchestrator: mpsc::Sender<OrchestratorInbound>, node_id: NodeId, seed: u64) -> ComputeEndpoint {
    let rng = Arc::new(Mutex::new(Rng::new(seed)));
    let (tx, inbox) = mpsc::channel(65_536);
    let link = Arc::new(LossyLink { tx, node_id: node_id.clone(), rng: rng.clone() });
    orchestrator.send(OrchestratorInbound::Connected { node_id: node_id.clone(), link }).await.expect("connect");
    let (outbox, mut from_node) = mpsc::channel::<OrchestratorInbound>(65_536);
    tokio::spawn(async move {
        while let Some(m) = from_node.recv().await {
            let OrchestratorInbound::Message(e) = m else {
                if orchestrator.send(m).await.is_err() {
                    return;
                }
                continue;
            };
            // The handshake itself is not at risk (see above).
            let copies = match e.payload {
                FromCompute::Register { .. } => 1,
                _ => rng.lock().map_or(1, |mut r| r.copies()),
            };
            for _ in 0..copies {
                if orchestrator.send(OrchestratorInbound::Message(e.clone())).await.is_err() {
                    return;
                }
            }
        }
    });
    ComputeEndpoint { inbox, outbox, node_id }
}

/// A module that counts for a few tens of milliseconds, so that crashes catch it running.
fn busy_wat() -> Vec<u8> {
    wat::parse_str(
        r#"(module (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 150000000))))))"#,
    )
    .expect("wat")
}

/// A real WASM compute node with its store under `dir`, heartbeating every 100 ms.
async fn start_compute(
    dir: &std::path::Path,
    node_id: NodeId,
    endpoint: ComputeEndpoint,
    cancel: &CancellationToken,
) -> ComputeHandle {
    try_start_compute(dir, node_id, endpoint, cancel).await.expect("compute")
}

async fn try_start_compute(
    dir: &std::path::Path,
    node_id: NodeId,
    endpoint: ComputeEndpoint,
    cancel: &CancellationToken,
) -> Result<ComputeHandle, bacalhau_compute::ComputeError> {
    let executors: Vec<Arc<dyn Executor>> = vec![Arc::new(WasmExecutor::new(None).expect("wasm"))];
    let inputs: Vec<Arc<dyn InputProvider>> = vec![Arc::new(InlineSource::new())];
    let publishers: Vec<Arc<dyn Publisher>> = vec![Arc::new(NoopPublisher)];
    let cfg = ComputeConfig {
        heartbeat_interval: Duration::from_millis(100),
        ..ComputeConfig::new(node_id.clone(), dir.join(node_id.as_str()), bacalhau_compute::detect_capacity(dir, 80))
    };
    ComputeNode::start(cfg, executors, inputs, publishers, endpoint, cancel.child_token()).await
}

/// The test's nodes: each one's ID, and the token that stops it.
type Nodes = Vec<(NodeId, CancellationToken)>;

async fn start(dir: &std::path::Path, seed: u64, cancel: &CancellationToken) -> (OrchestratorHandle, Nodes) {
    // The seed also fixes the orchestrator's execution and evaluation IDs.
    let mut cfg = OrchestratorConfig::new(dir.join("jobs.redb"));
    cfg.id_seed = Some(seed);
    let orch = Orchestrator::start(cfg, cancel.child_token()).await.expect("orchestrator");
    let h = orch.handle();
    let mut nodes = Vec::new();
    for n in 0..3u64 {
        let node_id = NodeId::from(format!("n-chaos-{n}").as_str());
        let endpoint = lossy_connect(h.inbound(), node_id.clone(), seed.wrapping_add(n)).await;
        let stop = cancel.child_token();
        start_compute(dir, node_id.clone(), endpoint, &stop).await;
        nodes.push((node_id, stop));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while h.nodes().await.expect("nodes").len() < 3 {
        assert!(Instant::now() < deadline, "the three nodes did not register");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (h, nodes)
}

/// Crashes one node at a seeded moment and brings it back on the same store, twice: what it
/// was running fails with it and runs again elsewhere.
async fn crash_and_restart(
    h: OrchestratorHandle,
    dir: std::path::PathBuf,
    mut nodes: Nodes,
    seed: u64,
    cancel: CancellationToken,
) {
    let mut rng = Rng::new(seed ^ 0x5eed);
    for round in 0..2u64 {
        tokio::time::sleep(Duration::from_millis(30 + rng.next() % 150)).await;
        let k = usize::try_from(rng.next() % 3).unwrap_or(0);
        let (node_id, stop) = nodes[k].clone();
        stop.cancel();
        tokio::time::sleep(Duration::from_millis(50 + rng.next() % 150)).await;
        // The crashed node's store closes once its loop has ended; start again until it opens.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let endpoint = lossy_connect(h.inbound(), node_id.clone(), seed.wrapping_add(100 + round)).await;
            let stop = cancel.child_token();
            match try_start_compute(&dir, node_id.clone(), endpoint, &stop).await {
                Ok(_) => {
                    nodes[k] = (node_id.clone(), stop);
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("node {node_id} could not start again: {e}"),
            }
        }
    }
}

/// Runs one seed; returns what went wrong, if anything.
async fn run_seed(seed: u64) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cancel = CancellationToken::new();
    let (h, nodes) = start(dir.path(), seed, &cancel).await;
    let url = wasm_data_url(&busy_wat());
    let monkey = tokio::spawn(crash_and_restart(h.clone(), dir.path().to_owned(), nodes, seed, cancel.clone()));
    let mut ids = Vec::new();
    for i in 0..JOBS {
        let count = if i % 4 == 0 { 2 } else { 1 };
        ids.push((h.submit(wasm_job(&url, count)).await.map_err(|e| e.to_string())?.job_id, count));
        // Spread the submissions over the crashes.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let result = loop {
        let mut pending = Vec::new();
        for (id, _) in &ids {
            let j = h.get_job(id.as_str()).await.map_err(|e| e.to_string())?;
            if !j.state.state_type.is_terminal() {
                pending.push(format!("{id}: {}", j.state.state_type));
            }
        }
        if pending.is_empty() {
            break Ok(());
        }
        if Instant::now() > deadline {
            break Err(format!("jobs not finished after 60 s: {pending:?}"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    monkey.await.map_err(|e| format!("the crash task failed: {e}"))?;
    let check = async {
        result?;
        let (mut runs, mut lost) = (0, 0);
        for (id, count) in &ids {
            let j = h.get_job(id.as_str()).await.map_err(|e| e.to_string())?;
            if j.state.state_type != bacalhau_model::JobStateType::Completed {
                return Err(format!("job {id} ended {}: {}", j.state.state_type, j.state.message));
            }
            let mut completed: BTreeMap<u32, usize> = BTreeMap::new();
            for e in h.executions(id).await.map_err(|e| e.to_string())? {
                runs += 1;
                if e.compute_state.message.contains("restarted") {
                    lost += 1;
                }
                if e.compute_state.state_type == ComputeStateType::Completed {
                    *completed.entry(e.partition_index).or_default() += 1;
                }
            }
            let want: BTreeMap<u32, usize> = (0..*count).map(|p| (p, 1)).collect();
            if completed != want {
                return Err(format!("job {id}: completed executions per partition {completed:?}, want {want:?}"));
            }
        }
        eprintln!("seed {seed}: {} jobs, {runs} executions, {lost} lost to node crashes", ids.len());
        Ok(())
    };
    let outcome = check.await;
    cancel.cancel();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_complete_once_when_messages_are_lost_and_duplicated() {
    let seeds: Vec<u64> = match std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
        Some(s) => vec![s],
        None => {
            let n = std::env::var("CHAOS_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3u64);
            (1..=n).collect()
        }
    };
    for seed in seeds {
        if let Err(e) = run_seed(seed).await {
            panic!("seed {seed} (replay with CHAOS_SEED={seed}): {e}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cannot_report_on_another_nodes_execution() {
    let dir = tempfile::tempdir().expect("tmp");
    let cancel = CancellationToken::new();
    let orch = Orchestrator::start(OrchestratorConfig::new(dir.path().join("jobs.redb")), cancel.child_token())
        .await
        .expect("orchestrator");
    let h = orch.handle();
    let honest = NodeId::from("n-honest");
    let endpoint = connect_in_process(h.inbound(), honest.clone()).await.expect("connect");
    let honest_node = start_compute(dir.path(), honest.clone(), endpoint, &cancel).await;
    // A registered node with nothing to offer (no engines: it gets no work), and one that
    // connected but never registered.
    let rogue = connect_in_process(h.inbound(), NodeId::from("n-rogue")).await.expect("connect");
    let info = NodeInfo { node_id: NodeId::from("n-rogue"), ..Default::default() };
    rogue.send(FromCompute::Register { info: Box::new(info), executions: Vec::new() }).await.expect("register");
    let stranger = connect_in_process(h.inbound(), NodeId::from("n-stranger")).await.expect("connect");

    // A job that runs until stopped, so its execution is live when the forgeries arrive.
    let id = h
        .submit(wasm_job(&wasm_data_url(&bacalhau_testkit::spin_wat().expect("wat")), 1))
        .await
        .expect("submit")
        .job_id;
    let deadline = Instant::now() + Duration::from_secs(30);
    let exec = loop {
        let running = h
            .executions(&id)
            .await
            .expect("executions")
            .into_iter()
            .find(|e| e.compute_state.state_type == ComputeStateType::BidAccepted && e.node_id == honest);
        if let Some(e) = running {
            break e;
        }
        assert!(Instant::now() < deadline, "the job never started on the honest node");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let forged = FromCompute::RunResult {
        execution_id: exec.id.clone(),
        published_result: None,
        run_output: RunCommandResult { stdout: "forged".into(), ..Default::default() },
        cost: None,
    };
    rogue.send(forged.clone()).await.expect("send");
    stranger.send(forged).await.expect("send");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = h.refusals();
        let foreign = r.get("report on another node's execution").copied().unwrap_or(0);
        let unregistered = r.get("message from a node that has not registered").copied().unwrap_or(0);
        if foreign == 1 && unregistered >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the forgeries were not refused: {r:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Both were refused after they arrived: the execution still runs, on the honest node.
    let now = h.executions(&id).await.expect("executions");
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].compute_state.state_type, ComputeStateType::BidAccepted, "{:?}", now[0].compute_state);
    assert!(now[0].run_output.is_none());
    // Stop the job and let the node end the run before the test tears everything down.
    h.stop(id.as_str(), "done").await.expect("stop");
    let deadline = Instant::now() + Duration::from_secs(30);
    while honest_node.execution_state(&exec.id).is_some_and(|s| !s.is_terminal()) {
        assert!(Instant::now() < deadline, "the honest node did not stop the run");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
}
