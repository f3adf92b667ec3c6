//! Benchmark: a cluster of one orchestrator and 10 compute-node processes (`bacalhau serve
//! --compute`, joined over the gRPC node port on loopback) running a burst of 10,000 trivial
//! WASM jobs, side by side in the same run with the same burst on a single-process node
//! (orchestrator and compute in one process, in-process transport; both through
//! `bacalhau_node`, as `serve` runs them) as the reference.
//! Reports jobs/s and p50/p99 submit→Completed for both, and the ratio. `BENCH_JOBS` and
//! `BENCH_COMPUTES` change the sizes; under `cargo test` it runs a small smoke version.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bacalhau_model::{JobStateType, NodeId};
use bacalhau_node::{ApiSettings, Faults, Listeners, Node, NodeConfig, OrchestratorRole};
use bacalhau_orchestrator::OrchestratorHandle;
use common::{is_bench, ms, percentile, start_node};
use tokio_util::sync::CancellationToken;

/// Submits `n` jobs at once and waits for all; returns wall time and sorted latencies.
async fn burst(h: &OrchestratorHandle, url: &str, n: usize) -> (Duration, Vec<Duration>) {
    let mut events = h.subscribe();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (h, j) = (h.clone(), bacalhau_testkit::wasm_job(url, 1));
        tasks.spawn(async move {
            let t = Instant::now();
            (h.submit(j).await.expect("submit").job_id, t)
        });
    }
    let (mut submitted, mut early) = (HashMap::new(), HashMap::new());
    let mut latencies = Vec::with_capacity(n);
    while latencies.len() < n {
        tokio::select! {
            Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                let (id, t) = r.expect("join");
                match early.remove(&id) {
                    Some(end) => latencies.push(end - t),
                    None => { submitted.insert(id, t); }
                }
            }
            e = events.recv() => {
                let e = e.expect("events (raise EVENT_CAPACITY if lagging)");
                if e.state.is_terminal() {
                    assert_eq!(e.state, JobStateType::Completed, "job {}", e.job_id);
                    match submitted.remove(&e.job_id) {
                        Some(t) => latencies.push(t.elapsed()),
                        None => { early.insert(e.job_id, Instant::now()); }
                    }
                }
            }
        }
    }
    let wall = start.elapsed();
    latencies.sort();
    (wall, latencies)
}

struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let smoke = !is_bench();
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("BENCH_JOBS", if smoke { 40 } else { 10_000 });
    let computes = env("BENCH_COMPUTES", if smoke { 2 } else { 10 });
    let tmp = tempfile::tempdir().expect("tmp");
    let wasm = bacalhau_testkit::hello_wat().expect("wat");
    let url = bacalhau_testkit::wasm_data_url(&wasm);

    // Reference: the single-process node.
    let cancel = CancellationToken::new();
    std::fs::create_dir_all(tmp.path().join("single")).expect("mkdir");
    let single = start_node(&tmp.path().join("single"), &["docker"], &cancel).await;
    burst(&single, &url, n.min(200)).await; // warm up
    let (single_wall, single_lat) = burst(&single, &url, n).await;
    cancel.cancel();

    // The cluster: this process is the orchestrator; the compute nodes are processes.
    let cancel = CancellationToken::new();
    let dir = tmp.path().join("cluster");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cfg = NodeConfig {
        dir: dir.join("orchestrator"),
        node_id: NodeId::from("bench-orchestrator"),
        orchestrator: Some(OrchestratorRole::default()),
        compute: None,
        api: ApiSettings::loopback(),
        ipfs_listen: Vec::new(),
        ipfs_peers: Vec::new(),
        faults: Faults::default(),
    };
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let orch = Node::start(cfg, Listeners { api, node: Some(listener), web_ui: None }, cancel.child_token())
        .await
        .expect("node");
    let node_port = orch.node_addr.expect("node port").port();
    let h = orch.orchestrator.clone().expect("the orchestrator role");
    let mut children = Children(Vec::new());
    for i in 0..computes {
        let port = bacalhau_testkit::free_port().expect("port");
        let log = std::fs::File::create(dir.join(format!("compute-{i}.log"))).expect("log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_bacalhau"))
            .args(["serve", "--compute", "--orchestrators", &format!("127.0.0.1:{node_port}")])
            .args(["--api-host", "127.0.0.1", "--api-port", &port.to_string()])
            .env("BACALHAU_DIR", dir.join(format!("compute-{i}")))
            // Only WASM here: the docker probe would only add start-up time.
            .env("DOCKER_HOST", "unix:///nonexistent.sock")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start a compute node");
        children.0.push(child);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while h.nodes().await.expect("nodes").len() < computes {
        assert!(Instant::now() < deadline, "the compute nodes did not all connect; see {}", dir.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    burst(&h, &url, n.min(200)).await; // warm up
    let (cluster_wall, cluster_lat) = burst(&h, &url, n).await;
    cancel.cancel();
    drop(children);

    let rate = |wall: Duration| n as f64 / wall.as_secs_f64();
    println!(
        "{n} WASM jobs in one burst ({} cores): 1 orchestrator + {computes} compute-node processes over gRPC, vs one process",
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!("{:<46} {:>10} {:>9} {:>9}", "", "jobs/s", "p50 ms", "p99 ms");
    for (name, wall, lat) in [
        ("single-process node (reference)".to_owned(), single_wall, &single_lat),
        (format!("cluster: {computes} compute processes"), cluster_wall, &cluster_lat),
    ] {
        println!(
            "{name:<46} {:>10.0} {:>9.1} {:>9.1}",
            rate(wall),
            ms(percentile(lat, 0.5)),
            ms(percentile(lat, 0.99))
        );
    }
    println!("cluster / single-process throughput: {:.2}x", rate(cluster_wall) / rate(single_wall));
}
