//! The web UI in a real browser: Debian's headless Chromium, driven through its WebDriver by
//! Selenium (`testkit::browser`; scripts/browser-env installs them), against real
//! `bacalhau serve` processes. Each test saves screenshots of what it saw under
//! `$BACALHAU_TEST_ARTIFACTS` (default: `target/ui-screenshots`).
//!
//! Run with `scripts/test browser`.

use std::path::Path;

use bacalhau_testkit::browser::Browser;
use bacalhau_testkit::{DEADLINE, Serve, c_program, free_port, wait_for};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn program(name: &str) -> String {
    c_program(name).expect("build the WASI program").display().to_string()
}

/// A job submitted from the CLI appears on the jobs page and completes there; its page follows
/// the logs live (the first line shows while the job still runs, the last one arrives on the
/// same stream), and lists its execution, history and published result.
#[test]
fn a_cli_job_completes_in_the_ui_with_live_logs() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let mut b = Browser::start("live-logs", s.port).expect("browser");
    b.open("/");
    b.wait_text("h1", "Jobs");
    let id = s.submit_wasm(&[&program("sleep"), "4000"]);
    let row = format!("tr[data-job='{id}'] td.state");
    b.wait_text(&row, "Running");
    b.shot("jobs-running");
    b.click(&format!("tr[data-job='{id}'] a"));
    b.wait_text("#job-id", &id);
    let early = b.wait_text("#logs", "sleeping 4000 ms");
    assert!(!early.contains("done"), "the log was read while the job ran: {early}");
    assert_eq!(s.job_state(&id).expect("state"), "Running", "the first line arrived before the end");
    b.shot("job-running");
    b.wait_text("#logs", "done");
    b.wait_text("#job-state", "Completed");
    b.wait_text("#executions-table", "Completed");
    b.wait_text("#history", "Completed");
    b.wait_text("#results", "gateway");
    b.shot("job-completed");
    b.click("#nav-jobs");
    b.wait_text(&row, "Completed");
    // The filters go to the server: a state that no job is in lists nothing.
    b.open("/#/jobs?state=Failed");
    wait_for("the filtered list", DEADLINE, || {
        (b.eval("return document.querySelectorAll('#jobs-body tr').length") == json!(0)).then_some(())
    })
    .expect("no failed jobs");
    b.open("/#/jobs?state=Completed&engine=wasm");
    b.wait_text("#jobs-body", &id[..10]);

    // A job's name is anyone's text: markup in it stays text.
    let name = "<img src=x onerror=\"document.title='owned'\">";
    let module = bacalhau_testkit::hello_wat().expect("module");
    let mut job = bacalhau_testkit::wasm_job(&bacalhau_testkit::wasm_data_url(&module), 1);
    job.name = name.to_owned();
    let body = json!({ "Job": job }).to_string();
    let headers = [("Content-Type", "application/json")];
    let (status, answer) =
        bacalhau_testkit::http_request(s.port, "PUT", "/api/v1/orchestrator/jobs", &headers, body.as_bytes())
            .expect("put");
    assert_eq!(status, 200, "{answer}");
    b.open("/#/jobs");
    b.wait_text("#jobs-body", name);
    assert_eq!(b.eval("return document.querySelectorAll('#jobs img').length"), json!(0));
    assert_ne!(b.eval("return document.title"), json!("owned"));
}

/// A running job is stopped from its page in the UI; the CLI sees it stopped.
#[test]
fn a_running_job_is_stopped_from_the_ui() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let id = s.submit_wasm(&[&program("sleep"), "60000"]);
    wait_for("the job to run", DEADLINE, || (s.job_state(&id).ok()? == "Running").then_some(())).expect("running");
    let mut b = Browser::start("stop", s.port).expect("browser");
    b.open(&format!("/#/jobs/{id}"));
    b.wait_text("#job-state", "Running");
    b.click_and_confirm("#stop-job");
    b.wait_text("#job-state", "Stopped");
    b.shot("stopped");
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Stopped");
    let history = s.ok(&["job", "history", &id]);
    assert!(history.contains("stopped from the web UI"), "{history}");
    // Rerun starts it again as its next version.
    b.click("#rerun-job");
    b.wait_text("#job-summary", "Version\n2");
    b.wait_text("#job-state", "Running");
    b.shot("rerun");
    assert_eq!(s.describe(&id)["Job"]["Version"], 2);
}

/// A compute node waiting for approval is approved from the nodes page, and then runs work.
#[test]
fn a_pending_node_is_approved_from_the_ui() {
    let node_port = free_port().expect("port");
    let port = node_port.to_string();
    let o = Serve::start(
        bin(),
        &["--orchestrator", "--node-port", &port, "--node-token", "ui-token", "--node-approval", "manual"],
    )
    .expect("orchestrator");
    let addr = format!("127.0.0.1:{node_port}");
    let c = Serve::start(bin(), &["--compute", "--orchestrators", &addr, "--node-token", "ui-token"]).expect("compute");
    let node_id = std::fs::read_to_string(c.dir.join("node_id")).expect("id");
    o.wait_connected(1);
    let mut b = Browser::start("approve", o.port).expect("browser");
    b.open("/#/nodes");
    let row = format!("tr[data-node='{node_id}']");
    b.wait_text(&row, "PENDING");
    b.wait_text(&format!("{row} td.health"), "waiting for approval");
    b.shot("pending");
    b.click(&format!("{row} button.approve"));
    b.wait_text(&row, "APPROVED");
    b.shot("approved");
    assert_eq!(o.nodes()[0]["Membership"], "APPROVED");
    let id = o.submit_wasm(&[&program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
}

const ADMIN_KEY: &str = "ui-admin-key-0123456789";
const READER_KEY: &str = "ui-reader-key-0123456789";

/// With users configured the UI shows the API's 401 until one signs in; a reader then sees
/// jobs, and the API's 403 when trying to stop one.
#[test]
fn the_ui_gets_the_apis_answers_for_each_user() {
    let cfg = tempfile::tempdir().expect("tmp");
    let path = cfg.path().join("config.yaml");
    std::fs::write(
        &path,
        format!(
            "API:\n  Auth:\n    Users:\n      - Alias: admin\n        APIKey: {ADMIN_KEY}\n        Capabilities: [{{Actions: [\"*\"]}}]\n      - Alias: reader\n        APIKey: {READER_KEY}\n        Capabilities: [{{Actions: [\"read:job\", \"read:node\"]}}]\n"
        ),
    )
    .expect("config");
    let s = Serve::start(bin(), &["--config", &path.display().to_string()]).expect("serve");
    let out =
        s.cli_env(&["wasm", "run", "--wait=false", &program("sleep"), "60000"], &[("BACALHAU_API_KEY", ADMIN_KEY)]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let mut b = Browser::start("auth", s.port).expect("browser");
    b.open("/");
    b.wait_text("#banner", "Sign in to see this");
    b.wait_text("#banner", "Request Unauthorized");
    b.shot("signed-out");
    // The sign-in dialog opened by itself; a reader's API key goes in.
    b.type_into("#login-key", READER_KEY);
    b.click("#login-ok");
    b.wait_text("#jobs-body", &id[..10]);
    assert!(b.text("#banner").is_empty(), "the error is gone once signed in");
    b.open(&format!("/#/jobs/{id}"));
    b.wait_text("#job-state", "Running");
    b.click_and_confirm("#stop-job");
    b.wait_text("#banner", "write:job");
    b.shot("reader-refused");
    let out = s.cli_env(&["job", "describe", &id, "--output", "json"], &[("BACALHAU_API_KEY", ADMIN_KEY)]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("describe");
    assert_eq!(v["Job"]["State"]["StateType"], "Running", "the reader's stop was refused");
}
