//! The control plane under seeded faults: the real engines and stores, a simulated network
//! and clock. `SIM_SEEDS=N` runs N seeds (default 300); `SIM_SEED=S` replays one.

use bacalhau_sim::{Faults, SimConfig, run};

fn seeds() -> Vec<u64> {
    if let Some(one) = std::env::var("SIM_SEED").ok().and_then(|s| s.parse().ok()) {
        return vec![one];
    }
    let n: u64 = std::env::var("SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
    (1..=n).collect()
}

#[test]
fn every_job_finishes_once_under_every_fault() {
    let mut failures = Vec::new();
    let mut why: std::collections::BTreeMap<String, usize> = Default::default();
    let (mut jobs, mut failed_execs, mut lost, mut completed, mut failed, mut stopped) = (0, 0, 0, 0, 0, 0);
    let (mut verified, mut dissents) = (0, 0);
    for seed in seeds() {
        match run(&SimConfig::with_all_faults(seed)) {
            Ok(r) => {
                jobs += r.acknowledged;
                completed += r.completed;
                failed += r.failed;
                stopped += r.stopped;
                verified += r.verified;
                dissents += r.dissents;
                for (k, v) in r.job_failures.into_iter().chain(r.execution_failures) {
                    *why.entry(k).or_default() += v;
                }
                failed_execs += r.failed_executions;
                lost += r.lost;
            }
            Err(e) => failures.push(e),
        }
    }
    assert!(failures.is_empty(), "{} seeds failed:\n{}", failures.len(), failures.join("\n"));
    eprintln!(
        "{jobs} jobs: {completed} completed, {failed} failed, {stopped} stopped; {failed_execs} executions failed, \
         {lost} messages lost"
    );
    eprintln!("{verified} verified jobs completed, {dissents} wrong results out-voted");
    eprintln!("why jobs and executions failed: {why:#?}");
    assert!(jobs > 0 && completed > 0 && verified > 0 && dissents > 0);
}

#[test]
fn a_seed_replays_exactly() {
    let a = run(&SimConfig::with_all_faults(42)).expect("seed 42");
    let b = run(&SimConfig::with_all_faults(42)).expect("seed 42 again");
    assert_eq!(a, b);
    let c = run(&SimConfig::with_all_faults(43)).expect("seed 43");
    assert_ne!(a.trace, c.trace, "different seeds take different paths");
}

#[test]
fn without_faults_every_job_completes() {
    let mut cfg = SimConfig::with_all_faults(5);
    cfg.faults = Faults {
        loss: 0.0,
        duplication: 0.0,
        max_delay: std::time::Duration::from_millis(1),
        node_crashes: 0,
        orchestrator_crashes: 0,
        partitions: 0,
        clock_jumps: 0,
        run_failure: 0.0,
    };
    let r = run(&cfg).expect("no faults");
    assert_eq!(r.acknowledged, cfg.jobs);
    assert_eq!(r.completed + r.stopped, cfg.jobs, "{r:?}");
    assert_eq!(r.failed_executions, 0, "{r:?}");
}
