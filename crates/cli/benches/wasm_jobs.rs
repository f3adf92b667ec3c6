//! Benchmark: trivial WASM jobs through a single-process node (orchestrator + compute + redb
//! stores), side by side with the same module run directly on the WASM executor.
//!
//! Reports submit→Completed latency (one job at a time: p50/p99) and throughput (a burst of
//! jobs in flight at once: jobs/s and p50/p99), and the ratio to the raw executor run.
//! `BENCH_JOBS` sets the burst size (default 2000). Under `cargo test` (no `--bench` argument)
//! it runs a small smoke version, so the benchmark's code stays exercised.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bacalhau_executor::{Executor, ResultFolder, RunRequest};
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_model::{JobStateType, Resources, SpecConfig};
use common::{is_bench, ms, percentile, run_job, start_node};
use tokio_util::sync::CancellationToken;

/// Runs the module on the executor alone `n` times. `mount` is the input: the module file
/// itself at `/wasm/hello.wasm` (staged as a one-file input), or a folder holding it at `/wasm`.
async fn raw_runs(exec: &WasmExecutor, dir: &std::path::Path, mount: &std::path::Path, n: usize) -> Vec<Duration> {
    let target = if mount.is_dir() { "/wasm" } else { "/wasm/hello.wasm" };
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let results = dir.join(format!("raw-{i}"));
        let start = Instant::now();
        let folder = ResultFolder::create(&results).expect("result folder");
        let req = RunRequest {
            job_id: "j-raw".into(),
            execution_id: format!("e-raw-{i}").into(),
            engine: SpecConfig::new("wasm").with_param("EntryModule", target),
            inputs: vec![bacalhau_executor::PreparedInput {
                host_path: mount.to_owned(),
                target: target.into(),
                read_only: true,
            }],
            outputs: vec![],
            env: Default::default(),
            resources: Resources { memory_bytes: 16_000_000, ..Default::default() },
            network: Default::default(),
            timeout: None,
            results_dir: folder.dir().to_owned(),
            work_dir: results.join("engine"),
            cancel: CancellationToken::new(),
        };
        let r = exec.run(req).await.expect("raw run");
        assert_eq!(r.exit_code, 0);
        out.push(start.elapsed());
    }
    out
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

async fn bench() {
    let smoke = !is_bench();
    let default_jobs = if smoke { 50 } else { 2000 };
    let n: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(default_jobs);
    let (raw_runs_n, single_n) = if smoke { (20, 20) } else { (300, 200) };
    let tmp = tempfile::tempdir().expect("tmp");
    let wasm = bacalhau_testkit::hello_wat().expect("wat");
    let module_path = tmp.path().join("hello.wasm");
    std::fs::write(&module_path, &wasm).expect("write module");
    let url = bacalhau_testkit::wasm_data_url(&wasm);

    // Reference: the same module on the executor directly.
    let raw_exec = WasmExecutor::new(None).expect("executor");
    raw_runs(&raw_exec, tmp.path(), &module_path, 20).await; // warm up
    let mut raw = raw_runs(&raw_exec, tmp.path(), &module_path, raw_runs_n).await;
    raw.sort();
    // The same with the module's folder mounted whole: what staging a one-file input costs.
    let folder = tmp.path().join("module");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("hello.wasm"), &wasm).expect("write module");
    let mut unstaged = raw_runs(&raw_exec, &tmp.path().join("unstaged"), &folder, raw_runs_n).await;
    unstaged.sort();

    // The node.
    let cancel = CancellationToken::new();
    let h = start_node(tmp.path(), &["docker"], &cancel).await;

    let mut events = h.subscribe();
    for _ in 0..20 {
        run_job(&h, &mut events, bacalhau_testkit::wasm_job(&url, 1)).await;
    }
    let mut single = Vec::new();
    for _ in 0..single_n {
        single.push(run_job(&h, &mut events, bacalhau_testkit::wasm_job(&url, 1)).await);
    }
    single.sort();

    // Burst: every job in flight at once.
    let mut events = h.subscribe();
    let start = Instant::now();
    let mut submitted = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let h = h.clone();
        let j = bacalhau_testkit::wasm_job(&url, 1);
        tasks.spawn(async move {
            let t = Instant::now();
            (h.submit(j).await.expect("submit").job_id, t)
        });
    }
    let mut latencies = Vec::with_capacity(n);
    let mut done = 0;
    let mut early: HashMap<bacalhau_model::JobId, Instant> = HashMap::new();
    while done < n {
        tokio::select! {
            Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                let (id, t) = r.expect("join");
                if let Some(end) = early.remove(&id) {
                    latencies.push(end - t);
                    done += 1;
                } else {
                    submitted.insert(id, t);
                }
            }
            e = events.recv() => {
                let e = e.expect("events (raise EVENT_CAPACITY if lagging)");
                if e.state.is_terminal() {
                    assert_eq!(e.state, JobStateType::Completed);
                    match submitted.remove(&e.job_id) {
                        Some(t) => { latencies.push(t.elapsed()); done += 1; }
                        None => { early.insert(e.job_id, Instant::now()); }
                    }
                }
            }
        }
    }
    let wall = start.elapsed();
    latencies.sort();
    cancel.cancel();

    let rate = n as f64 / wall.as_secs_f64();
    println!(
        "WASM jobs through a single-process node (hello world, WAT, {} cores)",
        std::thread::available_parallelism().map_or(1, |c| c.get())
    );
    println!("{:<44} {:>9} {:>9}", "", "p50 ms", "p99 ms");
    println!(
        "{:<44} {:>9.3} {:>9.3}",
        format!("raw executor run (reference, {raw_runs_n} runs)"),
        ms(percentile(&raw, 0.5)),
        ms(percentile(&raw, 0.99))
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}",
        format!("raw run, folder mounted, no one-file staging"),
        ms(percentile(&unstaged, 0.5)),
        ms(percentile(&unstaged, 0.99))
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}",
        format!("node, one job at a time ({single_n} jobs)"),
        ms(percentile(&single, 0.5)),
        ms(percentile(&single, 0.99))
    );
    println!(
        "{:<44} {:>9.3} {:>9.3}",
        format!("node, burst of {n} jobs"),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99))
    );
    println!("burst throughput: {rate:.0} jobs/s ({n} jobs in {:.2} s)", wall.as_secs_f64());
    println!(
        "ratio node/raw at p50: {:.1}x (orchestration overhead {:.3} ms)",
        percentile(&single, 0.5).as_secs_f64() / percentile(&raw, 0.5).as_secs_f64(),
        ms(percentile(&single, 0.5)) - ms(percentile(&raw, 0.5))
    );
}
