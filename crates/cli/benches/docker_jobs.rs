//! Benchmark: `docker run IMAGE true` through a single-process node (submit→Completed) side by
//! side with a raw `docker run --rm IMAGE true` on the same engine, 20 runs each, in one run.
//! Needs the Docker engine and `busybox:latest` (scripts/test-images). Under `cargo test` it
//! runs 2 of each as a smoke test.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use bacalhau_executor_docker::DockerExecutor;
use bacalhau_model::{Job, ResourcesConfig, SpecConfig, Task};
use common::{is_bench, ms, percentile, run_job, start_node};
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "busybox:latest";

fn job() -> Job {
    Job {
        r#type: bacalhau_model::JobType::Batch,
        count: 1,
        tasks: vec![Task {
            name: "main".into(),
            engine: SpecConfig::new("docker").with_param("Image", IMAGE).with_param("Parameters", vec!["true"]),
            // Bacalhau's default job resources; the reference run gets the same limits.
            resources: ResourcesConfig { cpu: "500m".into(), memory: "512Mb".into(), ..Default::default() },
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn raw_run() -> Duration {
    let start = Instant::now();
    let out =
        Command::new("docker").args(["run", "--rm", "--network", "none", IMAGE, "true"]).output().expect("docker");
    assert!(out.status.success(), "raw docker run failed: {}", String::from_utf8_lossy(&out.stderr));
    start.elapsed()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let runs = if is_bench() { 20 } else { 2 };
    let tmp = tempfile::tempdir().expect("tmp");
    let cancel = CancellationToken::new();
    // Fail early and clearly without an engine (the node would only leave docker out).
    DockerExecutor::connect("n-bench").await.expect("the Docker engine must be running");
    let h = start_node(tmp.path(), &[], &cancel).await;
    let mut events = h.subscribe();
    // Warm both paths once.
    raw_run();
    run_job(&h, &mut events, job()).await;
    // Interleave so both see the same engine conditions.
    let mut raw = Vec::new();
    let mut node = Vec::new();
    for _ in 0..runs {
        raw.push(raw_run());
        node.push(run_job(&h, &mut events, job()).await);
    }
    raw.sort();
    node.sort();
    cancel.cancel();
    let (r50, n50) = (percentile(&raw, 0.5), percentile(&node, 0.5));
    println!("docker run {IMAGE} true, {runs} runs each, interleaved");
    println!("{:<46} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    println!(
        "{:<46} {:>9.1} {:>9.1}",
        "raw `docker run --rm` (reference, same limits)",
        ms(r50),
        ms(percentile(&raw, 0.99))
    );
    println!("{:<46} {:>9.1} {:>9.1}", "node, submit -> Completed", ms(n50), ms(percentile(&node, 0.99)));
    println!("ratio node/raw at p50: {:.2}x ({:+.1} ms)", n50.as_secs_f64() / r50.as_secs_f64(), ms(n50) - ms(r50));
}
