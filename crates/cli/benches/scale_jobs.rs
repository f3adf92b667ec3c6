//! Benchmark: a node that runs many jobs. Submits `BENCH_JOBS` trivial WASM jobs (default
//! 200,000) through one single-process node (orchestrator and compute, as `serve` runs them),
//! at most `BENCH_IN_FLIGHT` (default 256) at a time, and at 1k, 10k, 100k and N completed
//! jobs (each after the jobs in flight have finished) reports:
//! - resident memory of the process, and its ratio to the 1k reading (the target is flat);
//! - disk per completed job on each side (the orchestrator's store; everything the compute
//!   side keeps: its execution store, execution folders, block store, module cache);
//! - jobs/s over the window since the previous checkpoint, and that window's p50/p99
//!   submit→Completed;
//! - the first page of `GET /api/v1/orchestrator/jobs` (p50 of 20 requests);
//!
//! and, at the end, the time a real `bacalhau serve` on the same data dir takes to answer
//! `/api/v1/agent/alive`, after a clean stop and after `kill -9` with jobs in flight (which it
//! then finishes). The reference in the same run is the module run directly on the WASM
//! executor, one run at a time: the node's jobs/s is reported as a ratio to it.
//!
//! Under `cargo test` (no `--bench` argument) it runs a small smoke version.

// Byte counts and rates are reported, not computed with.
#![allow(clippy::cast_precision_loss)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bacalhau_executor::{Executor, ResultFolder, RunRequest};
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_model::{JobId, JobStateType, Resources, SpecConfig};
use common::{is_bench, ms, percentile};
use tokio_util::sync::CancellationToken;

/// Latencies in buckets 1% wide: a window of 900,000 jobs kept as a sorted list would add
/// 14 MB to the resident memory the bench reports as the node's.
#[derive(Default)]
struct Latencies {
    counts: Vec<u64>,
    n: u64,
}

// Bucket indexes are logarithms of microsecond counts: small and never negative.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_possible_wrap)]
impl Latencies {
    fn bucket(d: Duration) -> usize {
        let us = d.as_micros().max(1) as f64;
        (us.ln() / 1.01f64.ln()) as usize
    }

    fn push(&mut self, d: Duration) {
        let b = Self::bucket(d);
        if self.counts.len() <= b {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
        self.n += 1;
    }

    /// The `p` quantile, to within 1%.
    fn percentile(&self, p: f64) -> Duration {
        let rank = ((self.n.saturating_sub(1)) as f64 * p).round() as u64;
        let mut seen = 0;
        for (b, &c) in self.counts.iter().enumerate() {
            seen += c;
            if seen > rank {
                return Duration::from_micros(1.01f64.powi(b as i32) as u64);
            }
        }
        Duration::ZERO
    }
}

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Bytes allocated on disk under `path` (blocks, not lengths: an inode's cost shows). Iterative.
fn disk(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut todo = vec![path.to_owned()];
    while let Some(p) = todo.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        total += m.blocks() * 512;
        if m.is_dir() {
            todo.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    total
}

/// (orchestrator, compute) bytes on disk in a node's data dir.
fn disk_by_side(dir: &Path) -> (u64, u64) {
    let orchestrator = disk(&dir.join("orchestrator"));
    (orchestrator, disk(dir).saturating_sub(orchestrator))
}

/// Raw executor runs per second, one at a time: the reference.
async fn raw_rate(dir: &Path, module: &Path, n: usize) -> f64 {
    let exec = WasmExecutor::new(None).expect("executor");
    let start = Instant::now();
    for i in 0..n {
        let results = dir.join(format!("raw-{i}"));
        let folder = ResultFolder::create(&results).expect("result folder");
        let req = RunRequest {
            job_id: "j-raw".into(),
            execution_id: format!("e-raw-{i}").into(),
            engine: SpecConfig::new("wasm").with_param("EntryModule", "/wasm/main.wasm"),
            inputs: vec![bacalhau_executor::PreparedInput {
                host_path: module.to_owned(),
                target: "/wasm/main.wasm".into(),
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
        assert_eq!(exec.run(req).await.expect("raw run").exit_code, 0);
        let _ = std::fs::remove_dir_all(&results);
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// p50 of the first page of the job list over HTTP, as `bacalhau job list` asks for it.
async fn list_latency(port: u16) -> Duration {
    tokio::task::spawn_blocking(move || {
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let body = bacalhau_testkit::http_get(port, "/api/v1/orchestrator/jobs?limit=10").expect("job list");
            times.push(t.elapsed());
            assert!(body.starts_with("{\"Items\""), "job list answered {}", &body[..body.len().min(300)]);
        }
        times.sort();
        percentile(&times, 0.5)
    })
    .await
    .expect("join")
}

fn main() {
    // As `bacalhau serve` runs.
    bacalhau_node::tune_allocator();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    rt.block_on(bench());
}

struct Row {
    jobs: usize,
    rss: u64,
    disk: (u64, u64),
    rate: f64,
    p50: Duration,
    p99: Duration,
    list: Duration,
}

async fn bench() {
    let smoke = !is_bench();
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let n = env("BENCH_JOBS", if smoke { 300 } else { 200_000 });
    let in_flight = env("BENCH_IN_FLIGHT", if smoke { 32 } else { 256 }).max(1);
    let mut checkpoints: Vec<usize> =
        [if smoke { 100 } else { 1_000 }, 10_000, 100_000, n].into_iter().filter(|&c| c <= n).collect();
    checkpoints.dedup();

    let tmp = tempfile::tempdir().expect("tmp");
    let wasm = bacalhau_testkit::hello_wat().expect("wat");
    let module = tmp.path().join("main.wasm");
    std::fs::write(&module, &wasm).expect("write module");
    let url = bacalhau_testkit::wasm_data_url(&wasm);
    let raw = raw_rate(tmp.path(), &module, if smoke { 20 } else { 500 }).await;

    let dir = tmp.path().join("node");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let cancel = CancellationToken::new();
    let node = common::start_node_full(&dir, &["docker"], &cancel).await;
    let h = node.orchestrator.clone().expect("orchestrator");
    let port = node.api_addr.port();
    let disk0 = disk_by_side(&dir);

    let mut events = h.subscribe();
    let mut tasks = tokio::task::JoinSet::new();
    let (mut submitted, mut early): (HashMap<JobId, Instant>, HashMap<JobId, Instant>) = Default::default();
    let (mut started, mut done) = (0usize, 0usize);
    let mut window = Latencies::default();
    let mut window_start = Instant::now();
    let mut rows = Vec::new();
    for &checkpoint in &checkpoints {
        while done < checkpoint {
            while started < checkpoint && started - done < in_flight {
                let (h, j) = (h.clone(), bacalhau_testkit::wasm_job(&url, 1));
                tasks.spawn(async move {
                    let t = Instant::now();
                    (h.submit(j).await.expect("submit").job_id, t)
                });
                started += 1;
            }
            tokio::select! {
                Some(r) = tasks.join_next(), if !tasks.is_empty() => {
                    let (id, t) = r.expect("join");
                    match early.remove(&id) {
                        Some(end) => { window.push(end - t); done += 1; }
                        None => { submitted.insert(id, t); }
                    }
                }
                e = events.recv() => {
                    let e = e.expect("job events (the bench fell behind)");
                    if e.state.is_terminal() {
                        assert_eq!(e.state, JobStateType::Completed, "job {}", e.job_id);
                        match submitted.remove(&e.job_id) {
                            Some(t) => { window.push(t.elapsed()); done += 1; }
                            None => { early.insert(e.job_id, Instant::now()); }
                        }
                    }
                }
            }
        }
        let elapsed = window_start.elapsed();
        let jobs = window.n;
        let (d_orch, d_comp) = disk_by_side(&dir);
        let row = Row {
            jobs: done,
            rss: rss(),
            disk: (d_orch.saturating_sub(disk0.0), d_comp.saturating_sub(disk0.1)),
            rate: jobs as f64 / elapsed.as_secs_f64(),
            p50: window.percentile(0.5),
            p99: window.percentile(0.99),
            list: list_latency(port).await,
        };
        eprintln!("{} jobs: {:.1} MiB resident, {:.0} jobs/s", row.jobs, row.rss as f64 / 1048576.0, row.rate);
        rows.push(row);
        window = Latencies::default();
        window_start = Instant::now();
    }
    cancel.cancel();
    // Every handle holds the store open; the restarted server must be its only user.
    drop((h, events, tasks));
    node.wait().await.expect("node stops");

    // Where the orchestrator's bytes are, table by table (before the restart adds jobs).
    let tables = bacalhau_orchestrator::store::JobStore::open(&dir.join("orchestrator").join("jobs.redb"))
        .and_then(|s| s.table_sizes())
        .expect("the bench's store opens");

    // Restart: a real `serve` on the same data dir.
    let bin = Path::new(env!("CARGO_BIN_EXE_bacalhau"));
    let t = Instant::now();
    let mut serve = bacalhau_testkit::Serve::start_in(bin, &dir, &[]).expect("serve starts on the bench's data dir");
    let clean = t.elapsed();
    let module_arg = module.to_string_lossy().into_owned();
    let pending: Vec<String> = (0..5).map(|_| serve.submit_wasm(&[&module_arg])).collect();
    serve.kill9().expect("kill -9");
    let t = Instant::now();
    serve.restart().expect("serve restarts after kill -9");
    let killed = t.elapsed();
    for id in &pending {
        assert_eq!(serve.wait_terminal(id.trim()).expect("job ends"), "Completed", "job {id} after the restart");
    }
    // The web UI's jobs page on this store, against the same page on an empty node, in
    // headless Chromium (the bench only: the smoke run has no browser tier behind it).
    let paint = (!smoke).then(|| {
        let empty = bacalhau_testkit::Serve::start(bin, &[]).expect("an empty node");
        (jobs_page_paint(serve.port, "full"), jobs_page_paint(empty.port, "empty"))
    });

    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    println!("{n} trivial WASM jobs through one single-process node ({cores} cores, {in_flight} in flight)");
    println!(
        "{:>9} {:>10} {:>8} {:>12} {:>12} {:>9} {:>9} {:>9} {:>11}",
        "jobs", "RSS MiB", "x 1k", "orch B/job", "comp B/job", "jobs/s", "p50 ms", "p99 ms", "list p50 ms"
    );
    let base = rows.first().map_or(1, |r| r.rss.max(1));
    for r in &rows {
        println!(
            "{:>9} {:>10.1} {:>8.3} {:>12.0} {:>12.0} {:>9.0} {:>9.2} {:>9.2} {:>11.3}",
            r.jobs,
            r.rss as f64 / 1048576.0,
            r.rss as f64 / base as f64,
            r.disk.0 as f64 / r.jobs as f64,
            r.disk.1 as f64 / r.jobs as f64,
            r.rate,
            ms(r.p50),
            ms(r.p99),
            ms(r.list)
        );
    }
    println!("orchestrator store after {done} jobs, bytes per job by table (stored, with B-tree overhead):");
    for (name, stored, total) in tables.iter().filter(|t| t.2 > 0) {
        println!("  {name:<28} {:>8.0} {:>8.0}", *stored as f64 / done as f64, *total as f64 / done as f64);
    }
    println!("reference: the module on the executor alone, one run at a time: {raw:.0} runs/s");
    if let Some(last) = rows.last() {
        println!("ratio node jobs/s / raw executor runs/s (last window): {:.2}", last.rate / raw);
    }
    println!(
        "serve on this data dir answers /api/v1/agent/alive in {:.0} ms after a clean stop, {:.0} ms after kill -9 \
         with {} jobs in flight (all completed after it)",
        ms(clean),
        ms(killed),
        pending.len()
    );
    if let Some(((full_fcp, full_rows), (empty_fcp, empty_rows))) = paint {
        println!(
            "web UI jobs page, best of 5 loads: first paint {full_fcp:.0} ms, first page of jobs drawn {full_rows:.0} ms \
             with {} jobs stored; on an empty node {empty_fcp:.0} ms and {empty_rows:.0} ms (ratio {:.2})",
            done + pending.len(),
            full_rows / empty_rows.max(1.0)
        );
    }
}

/// The jobs page's first contentful paint and the moment its first page of jobs is drawn (the
/// page's `jobs-painted` mark), in ms from navigation, best of 5 loads in headless Chromium.
fn jobs_page_paint(port: u16, name: &str) -> (f64, f64) {
    let mut b = bacalhau_testkit::browser::Browser::start(&format!("bench-{name}"), port).expect("browser");
    let mut best = (f64::MAX, f64::MAX);
    for i in 0..5 {
        b.open(&format!("/?load={i}#/jobs"));
        let v = b.eval_until(
            "const m = performance.getEntriesByName('jobs-painted')[0]; \
             const p = performance.getEntriesByName('first-contentful-paint')[0]; \
             return m && p ? [p.startTime, m.startTime] : null;",
        );
        let (fcp, rows) = (v[0].as_f64().expect("paint time"), v[1].as_f64().expect("mark time"));
        best = (best.0.min(fcp), best.1.min(rows));
    }
    b.shot("jobs");
    best
}
