//! A node that runs for months, through a real `bacalhau serve`: what a finished job leaves on
//! disk, how long it is kept (`--job-retention`), and that what is kept reads back whole.

use std::path::Path;

use bacalhau_testkit::{DEADLINE, Serve, c_program, wait_for};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn serve(extra: &[&str]) -> Serve {
    Serve::start(bin(), extra).unwrap_or_else(|e| panic!("cannot start serve: {e:#}"))
}

fn program(name: &str) -> String {
    c_program(name).unwrap_or_else(|e| panic!("{e:#}")).display().to_string()
}

fn folders(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn a_finished_job_leaves_no_folder_and_its_spec_and_output_read_back_whole() {
    let mut s = serve(&[]);
    let hello = program("hello");
    let out = s.ok(&["wasm", "run", "--id-only", &hello]);
    let id = out.trim().lines().last().expect("job id").to_owned();
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Completed");
    // Published and acknowledged: the execution's folder goes.
    let execs = s.dir.join("compute/executions");
    wait_for("the execution folder to be removed", DEADLINE, || (folders(&execs) == 0).then_some(()))
        .expect("no execution folders left");
    // Its output is what the orchestrator recorded.
    let logs = s.ok(&["job", "logs", &id]);
    assert!(logs.contains("Hello"), "{logs}");
    // The module (stored once, by hash) comes back byte for byte, also after a crash.
    let module = std::fs::read(&hello).expect("module");
    let url = {
        use base64::Engine as _;
        format!("data:application/wasm;base64,{}", base64::engine::general_purpose::STANDARD.encode(&module))
    };
    let source = |d: &serde_json::Value| d["Job"]["Tasks"][0]["InputSources"][0]["Source"]["Params"]["URL"].clone();
    assert_eq!(source(&s.describe(&id)), url.as_str());
    s.kill9().expect("kill");
    s.restart().expect("restart");
    assert_eq!(source(&s.describe(&id)), url.as_str());
    let execs_json = s.executions(&id);
    assert_eq!(execs_json.len(), 1, "{execs_json:?}");
    // A second job with the same module writes it to the compute side's cache once.
    let out = s.ok(&["wasm", "run", &hello]);
    assert!(out.contains("Completed"), "{out}");
    assert_eq!(folders(&s.dir.join("compute/inline-cache")), 1);
}

#[test]
fn jobs_past_retention_are_deleted_with_their_records_and_new_ones_still_run() {
    let s = serve(&["--job-retention", "3s"]);
    let hello = program("hello");
    let out = s.ok(&["wasm", "run", "--id-only", &hello]);
    let id = out.trim().lines().last().expect("job id").to_owned();
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Completed");
    wait_for("the job to pass retention and be deleted", DEADLINE, || {
        let out = s.cli(&["job", "describe", &id]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    })
    .map(|err| assert!(err.contains("not found") || err.contains("no job"), "{err}"))
    .expect("deleted");
    let list = s.ok(&["job", "list", "--output", "json"]);
    assert!(!list.contains(&id), "{list}");
    assert!(s.log().contains("deleted jobs past retention"), "{}", s.log());
    let out = s.ok(&["wasm", "run", &hello]);
    assert!(out.contains("Completed"), "{out}");
}

#[test]
fn a_retention_that_cannot_be_parsed_is_refused_with_what_to_write() {
    for (value, says) in [("soon", "not a retention"), ("0s", "would delete every job"), ("3x", "not a retention")] {
        let err = Serve::start(bin(), &["--job-retention", value]).expect_err("refused");
        let text = format!("{err:#}");
        assert!(text.contains(says) && text.contains("30d") && text.contains("never"), "{value}: {text}");
    }
    let err = Serve::start(bin(), &["-c", "Orchestrator.JobRetention=fortnight"]).expect_err("refused");
    let text = format!("{err:#}");
    assert!(text.contains("Orchestrator.JobRetention") && text.contains("not a retention"), "{text}");
    // `never` keeps jobs forever, and is accepted.
    let s = serve(&["--job-retention", "never"]);
    assert!(s.get("/api/v1/agent/alive").is_ok_and(|b| b.contains("OK")));
}
