//! Multi-node end-to-end tests, driven through the CLI: an orchestrator and compute nodes
//! joined over the gRPC node port on loopback, as separate `bacalhau serve` processes where a
//! test kills, restarts or configures a process, and otherwise in this process
//! (`testkit::Cluster`), which starts in a fraction of the time.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use bacalhau_testkit::{Cluster, DEADLINE, Serve, c_program, free_port, wait_for};
use serde_json::Value;

const TOKEN: &str = "cluster-test-token";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn program(name: &str) -> String {
    c_program(name).expect("build the WASI program").display().to_string()
}

/// An orchestrator-only node; returns it and its node port.
fn orchestrator(extra: &[&str]) -> (Serve, u16) {
    let node_port = free_port().expect("port");
    let port = node_port.to_string();
    let mut args =
        vec!["--orchestrator", "--node-port", &port, "--node-token", TOKEN, "--node-disconnect-timeout", "6"];
    args.extend_from_slice(extra);
    (Serve::start(bin(), &args).expect("orchestrator"), node_port)
}

fn compute(node_port: u16, token: &str) -> Serve {
    let addr = format!("127.0.0.1:{node_port}");
    Serve::start(bin(), &["--compute", "--orchestrators", &addr, "--node-token", token]).expect("compute node")
}

fn node_of_running(o: &Serve, id: &str) -> Option<String> {
    o.executions(id)
        .iter()
        .find(|e| e["ComputeState"]["StateType"] == 5)
        .and_then(|e| e["NodeID"].as_str().map(str::to_owned))
}

#[test]
fn a_count_3_job_spreads_over_three_compute_nodes() {
    let cluster = Cluster::start(bin(), 3).expect("cluster");
    let o = &cluster.api;
    o.wait_connected(3);
    let list = o.ok(&["node", "list"]);
    assert_eq!(list.matches("CONNECTED").count(), 3, "{list}");
    let id = o.submit_wasm(&["--count", "3", &program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
    let on: BTreeSet<String> =
        o.executions(&id).iter().filter_map(|e| e["NodeID"].as_str().map(str::to_owned)).collect();
    assert_eq!(on.len(), 3, "one execution per node: {on:?}");
    // The output came back over the stream with the result.
    assert!(o.ok(&["job", "logs", &id]).contains("Hello"), "logs through the orchestrator");
}

#[test]
fn a_killed_compute_nodes_work_is_rescheduled_on_another() {
    let (o, port) = orchestrator(&[]);
    let mut a = compute(port, TOKEN);
    let mut b = compute(port, TOKEN);
    o.wait_connected(2);
    let id = o.submit_wasm(&[&program("sleep"), "4000"]);
    let victim = wait_for("the execution to run", DEADLINE, || node_of_running(&o, &id)).expect("running");
    let a_id = std::fs::read_to_string(a.dir.join("node_id")).expect("id");
    if victim == a_id { a.kill9() } else { b.kill9() }.expect("kill -9");
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", o.log());
    let execs = o.executions(&id);
    let done: Vec<&Value> = execs.iter().filter(|e| e["ComputeState"]["StateType"] == 7).collect();
    assert_eq!(done.len(), 1, "completed exactly once: {execs:?}");
    assert_ne!(done[0]["NodeID"].as_str(), Some(victim.as_str()), "finished on the surviving node");
    let list = o.ok(&["node", "list"]);
    assert!(list.contains("DISCONNECTED"), "the killed node shows as gone: {list}");
    // ...and says why, in the table and in Bacalhau's ConnectionState.
    assert!(list.contains("disconnected: "), "the reason in the health column: {list}");
    let gone = o.nodes().into_iter().find(|n| n["Info"]["NodeID"] == victim.as_str()).expect("the killed node");
    let link = &gone["ConnectionState"];
    assert_eq!(link["Status"], "DISCONNECTED", "{gone}");
    assert!(!link["LastError"].as_str().unwrap_or_default().is_empty(), "{gone}");
    assert_ne!(link["DisconnectedSince"], "0001-01-01T00:00:00Z", "{gone}");
    assert_ne!(link["LastHeartbeat"], "0001-01-01T00:00:00Z", "{gone}");
}

#[test]
fn results_arrive_across_an_orchestrator_restart() {
    let (mut o, port) = orchestrator(&[]);
    let _c = compute(port, TOKEN);
    o.wait_connected(1);
    let id = o.submit_wasm(&[&program("sleep"), "3000"]);
    wait_for("the execution to run", DEADLINE, || node_of_running(&o, &id)).expect("running");
    o.kill9().expect("kill -9 the orchestrator");
    std::thread::sleep(Duration::from_millis(500));
    o.restart().expect("restart");
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", o.log());
    assert!(o.ok(&["job", "logs", &id]).contains("done"));
    o.wait_connected(1);
}

#[test]
fn a_wrong_token_is_refused_and_roles_are_checked() {
    let (o, port) = orchestrator(&[]);
    let bad = compute(port, "not-the-token");
    wait_for("the refusal", DEADLINE, || bad.log().contains("wrong or missing cluster token").then_some(()))
        .expect("the compute node says why it was refused");
    assert_eq!(o.nodes().len(), 0, "the refused node is not listed");
    let out = std::process::Command::new(bin()).args(["serve", "--compute"]).output().expect("run");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--compute alone needs its orchestrator: add --orchestrators")
    );
    // A compute-only node answers its agent endpoints and points job requests elsewhere.
    let err = bad.fails(&["job", "list"]);
    assert!(err.contains("compute-only node"), "{err}");
    assert!(bad.ok(&["agent", "alive"]).contains("OK"));
}

#[test]
fn devstack_starts_a_cluster_the_cli_can_use() {
    let port = free_port().expect("port");
    let tmp = tempfile::tempdir().expect("tmp");
    let log = std::fs::File::create(tmp.path().join("devstack.log")).expect("log");
    let mut child = std::process::Command::new(bin())
        .args(["devstack", "--computes", "3", "--api-port", &port.to_string(), "--api-host", "127.0.0.1"])
        .env("BACALHAU_DIR", tmp.path())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start devstack");
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .args(args)
            .env("BACALHAU_API_HOST", "127.0.0.1")
            .env("BACALHAU_API_PORT", port.to_string())
            .output()
            .expect("cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let ready = wait_for("devstack's 3 compute nodes", DEADLINE, || {
        (cli(&["node", "list"]).matches("CONNECTED").count() == 3).then_some(())
    });
    // It prints how to use it once every node has registered.
    let want = format!("export BACALHAU_API_PORT={port}");
    let read = || std::fs::read_to_string(tmp.path().join("devstack.log")).unwrap_or_default();
    let printed =
        ready.and_then(|()| wait_for("devstack's settings", DEADLINE, || read().contains(&want).then_some(())));
    if printed.is_err() {
        let _ = child.kill();
        panic!("devstack did not come up:\n{}", read());
    }
    let out = cli(&["wasm", "run", "--count", "3", "--id-only", &program("hello")]);
    let id = out.trim().to_owned();
    let execs = cli(&["job", "executions", &id, "--output", "json"]);
    let v: Value = serde_json::from_str(&execs).expect("json");
    let on: BTreeSet<&str> = v.as_array().expect("list").iter().filter_map(|e| e["NodeID"].as_str()).collect();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(on.len(), 3, "{execs}");
    assert!(on.iter().all(|n| n.starts_with("devstack-compute-")), "{on:?}");
}

#[test]
fn manual_approval_holds_new_nodes_until_an_operator_decides() {
    let (o, port) = orchestrator(&["--node-approval", "manual"]);
    let c = compute(port, TOKEN);
    let node_id = std::fs::read_to_string(c.dir.join("node_id")).expect("id");
    o.wait_connected(1);
    assert_eq!(o.nodes()[0]["Membership"], "PENDING");
    let list = o.ok(&["node", "list"]);
    assert!(list.contains("waiting for an operator's approval"), "{list}");
    // Work waits for an approved node...
    let id = o.submit_wasm(&["--queue-timeout", "60", &program("hello")]);
    wait_for("the job to queue", DEADLINE, || {
        let v: Value = serde_json::from_str(&o.ok(&["job", "describe", &id, "--output", "json"])).ok()?;
        (v["Job"]["State"]["StateType"] == "Queued").then_some(())
    })
    .expect("queued while the only node is pending");
    // ...and runs once the operator approves it (by a prefix of its ID).
    let out = o.ok(&["node", "approve", &node_id[..12], "-m", "looks fine"]);
    assert!(out.contains("approved"), "{out}");
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(o.nodes()[0]["Membership"], "APPROVED");
    // Rejected: no new work.
    o.ok(&["node", "reject", &node_id]);
    assert_eq!(o.nodes()[0]["Membership"], "REJECTED");
    assert!(o.ok(&["node", "list"]).contains("rejected by an operator"));
    let id = o.submit_wasm(&[&program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed", "no approved node to run it");
    let err = o.fails(&["node", "approve", "no-such-node"]);
    assert!(err.contains("node no-such-node not found"), "{err}");
    o.ok(&["node", "delete", &node_id]);
    assert!(o.nodes().iter().all(|n| n["Info"]["NodeID"] != node_id.as_str()), "deleted");
}

/// A job spec for `job run`: the `wasm run` command's dry run, with another Type and Count.
fn spec(o: &Serve, job_type: &str, count: u32, args: &[&str]) -> String {
    let mut full = vec!["wasm", "run", "--dry-run"];
    full.extend_from_slice(args);
    let yaml = o
        .ok(&full)
        .replace("Type: batch", &format!("Type: {job_type}"))
        .replace("Count: 1", &format!("Count: {count}"));
    let path = o.work.join(format!("{job_type}.yaml"));
    std::fs::write(&path, yaml).expect("write spec");
    path.display().to_string()
}

fn live_executions(o: &Serve, id: &str) -> Vec<String> {
    o.executions(id)
        .iter()
        .filter(|e| e["ComputeState"]["StateType"] == 5)
        .filter_map(|e| e["NodeID"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn a_daemon_job_runs_on_every_node_including_late_joiners() {
    let (o, port) = orchestrator(&[]);
    let _a = compute(port, TOKEN);
    let _b = compute(port, TOKEN);
    o.wait_connected(2);
    let path = spec(&o, "daemon", 1, &[&program("sleep"), "120000"]);
    let id = o.ok(&["job", "run", "--wait=false", "--id-only", &path]).trim().to_owned();
    wait_for("a daemon execution on both nodes", DEADLINE, || (live_executions(&o, &id).len() == 2).then_some(()))
        .expect("two");
    let _c = compute(port, TOKEN);
    wait_for("the late joiner to get one", DEADLINE, || (live_executions(&o, &id).len() == 3).then_some(()))
        .expect("three");
    let nodes: BTreeSet<String> = live_executions(&o, &id).into_iter().collect();
    assert_eq!(nodes.len(), 3, "one per node");
    o.ok(&["job", "stop", &id]);
    assert_eq!(o.wait_terminal(&id).expect("stopped"), "Stopped");
}

#[test]
fn a_service_job_keeps_its_replicas_up() {
    let cluster = Cluster::start(bin(), 1).expect("cluster");
    let o = &cluster.api;
    // Each replica ends after 300 ms; the service replaces it, again and again.
    let path = spec(o, "service", 2, &[&program("sleep"), "300"]);
    let id = o.ok(&["job", "run", "--wait=false", "--id-only", &path]).trim().to_owned();
    wait_for("replicas to be replaced", DEADLINE, || (o.executions(&id).len() >= 6).then_some(())).expect("restarts");
    let v: Value = serde_json::from_str(&o.ok(&["job", "describe", &id, "--output", "json"])).expect("json");
    assert_eq!(v["Job"]["State"]["StateType"], "Running", "a service does not complete");
    o.ok(&["job", "stop", &id]);
    assert_eq!(o.wait_terminal(&id).expect("stopped"), "Stopped");
}

#[test]
fn the_node_port_speaks_tls_when_given_a_certificate() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (cert, key) = (tmp.path().join("cert.pem"), tmp.path().join("key.pem"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1"])
        .args(["-subj", "/CN=bacalhau-test", "-addext", "subjectAltName=IP:127.0.0.1"])
        // rustls refuses a CA certificate as a server's own (openssl's default is CA:TRUE).
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let (o, port) = orchestrator(&["--tls-cert", &cert, "--tls-key", &key]);
    let addr = format!("127.0.0.1:{port}");
    let tls = Serve::start(bin(), &["--compute", "--orchestrators", &addr, "--node-token", TOKEN, "--tls-ca", &cert])
        .expect("compute with TLS");
    o.wait_connected(1);
    // A node that dials in plain text gets nowhere.
    let plain = compute(port, TOKEN);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(o.connected(), 1, "only the TLS node joined");
    let id = o.submit_wasm(&[&program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
    // The same certificate serves the API over https: the CLI trusts it with --tls-ca.
    let cli = |extra: &[&str]| {
        std::process::Command::new(bin())
            .args(extra)
            .args(["job", "list", "--output", "json"])
            .env("BACALHAU_API_HOST", "127.0.0.1")
            .env("BACALHAU_API_PORT", o.port.to_string())
            .env_remove("BACALHAU_INSECURE_TLS")
            .output()
            .expect("cli")
    };
    let out = cli(&["--tls-ca", &cert]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&id), "{out:?}");
    // Without trusting it the client refuses; plain http gets nowhere.
    let out = cli(&["--tls"]);
    assert!(!out.status.success(), "{out:?}");
    let out = cli(&[]);
    assert!(!out.status.success(), "{out:?}");
    drop((tls, plain));
}

#[test]
fn ipfs_content_moves_between_nodes_by_the_orchestrators_routing() {
    let cluster = Cluster::start_with(bin(), 2, |i, role| {
        role.labels.insert("box".into(), if i == 0 { "a" } else { "b" }.into());
    })
    .expect("cluster");
    let o = &cluster.api;
    // Node A writes a file and publishes its result folder to its own IPFS store.
    let first = o.submit_wasm(&[
        "--constraints",
        "box=a",
        "-o",
        "out:/out",
        "-p",
        "ipfs",
        &program("write"),
        "/out/x.txt",
        "from a",
    ]);
    assert_eq!(o.wait_terminal(&first).expect("finish"), "Completed");
    let results: Value =
        serde_json::from_str(&o.get(&format!("/api/v1/orchestrator/jobs/{first}/results")).expect("results"))
            .expect("json");
    let cid = results["Items"][0]["Params"]["CID"].as_str().expect("an ipfs result").to_owned();
    // Node B mounts it: the orchestrator tells B that A's peer holds it; B's peer knows no one else.
    let second = o.submit_wasm(&[
        "--constraints",
        "box=b",
        "-i",
        &format!("ipfs://{cid}:/in"),
        "-p",
        "ipfs",
        &program("cat"),
        "/in/out/x.txt",
    ]);
    assert_eq!(o.wait_terminal(&second).expect("finish"), "Completed", "{}", o.ok(&["job", "describe", &second]));
    let on: Vec<String> =
        o.executions(&second).iter().filter_map(|e| e["NodeID"].as_str().map(str::to_owned)).collect();
    assert_eq!(on.len(), 1);
    // `job get` through the orchestrator, whose store has neither result: its gateway fetches
    // from the node that published it.
    o.ok(&["job", "get", &second, "--output-dir", "res"]);
    assert_eq!(std::fs::read_to_string(o.work.join("res/stdout")).expect("stdout"), "from a");
}

#[test]
fn a_remote_executions_log_is_readable_while_it_runs() {
    let cluster = Cluster::start(bin(), 1).expect("cluster");
    let o = &cluster.api;
    let id = o.submit_wasm(&[&program("sleep"), "5000"]);
    // The line printed before the sleep comes from the compute node's API, relayed by the
    // orchestrator, while the job still runs.
    let early = wait_for("the first line of a running remote execution", DEADLINE, || {
        let out = o.cli(&["job", "logs", &id]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && text.contains("sleeping 5000 ms")).then_some(text)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(!early.contains("done"), "read while running: {early}");
    assert_eq!(o.job_state(&id).expect("state"), "Running");
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(o.ok(&["job", "logs", &id]), "sleeping 5000 ms\ndone\n");
    // Following a running remote execution streams it to its end.
    let id = o.submit_wasm(&[&program("sleep"), "2000"]);
    wait_for("the job to run", DEADLINE, || (o.job_state(&id).ok()? == "Running").then_some(()))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(o.ok(&["job", "logs", "--follow", &id]), "sleeping 2000 ms\ndone\n");
}

#[test]
fn rejecting_a_node_stops_its_work_and_runs_it_elsewhere() {
    let cluster = Cluster::start(bin(), 2).expect("cluster");
    let o = &cluster.api;
    let id = o.submit_wasm(&[&program("sleep"), "3000"]);
    let running_on = wait_for("the job to run", DEADLINE, || node_of_running(o, &id)).unwrap_or_else(|e| panic!("{e}"));
    o.ok(&["node", "reject", &running_on]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", o.ok(&["job", "describe", &id]));
    let execs = o.executions(&id);
    let failed = execs.iter().find(|e| e["NodeID"] == running_on.as_str()).expect("the first execution");
    assert!(failed["ComputeState"]["Message"].as_str().is_some_and(|m| m.contains("rejected")), "{failed}");
    let done = execs.iter().find(|e| e["ComputeState"]["StateType"] == 7).expect("a completed execution");
    assert_ne!(done["NodeID"], running_on.as_str(), "finished on the other node");
}

#[test]
fn a_node_id_cannot_be_taken_over_by_another_key() {
    let (o, port) = orchestrator(&[]);
    let addr = format!("127.0.0.1:{port}");
    let real = Serve::start(bin(), &["--compute", "--orchestrators", &addr, "--node-token", TOKEN, "--name", "n-real"])
        .expect("compute");
    o.wait_connected(1);
    // Same name and token, but its own data dir and so its own key.
    let impostor =
        Serve::start(bin(), &["--compute", "--orchestrators", &addr, "--node-token", TOKEN, "--name", "n-real"])
            .expect("impostor");
    wait_for("the impostor's refusal", DEADLINE, || impostor.log().contains("bound to another key").then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", impostor.log()));
    // The real node keeps the ID and its work.
    let id = o.submit_wasm(&[&program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("terminal"), "Completed");
    assert!(real.log().contains("registered with the orchestrator"));
    assert!(!impostor.log().contains("registered with the orchestrator"), "{}", impostor.log());
    drop(impostor);
    // A node may not use the ID of an orchestrator's own in-process compute node.
    let both = Serve::start(bin(), &["--node-token", TOKEN, "--node-port", &free_port().expect("port").to_string()])
        .expect("serve");
    let local = std::fs::read_to_string(both.dir.join("node_id")).expect("node id");
    let node_port = both
        .log()
        .lines()
        .find_map(|l| {
            l.split("compute nodes join on ").nth(1).map(|a| a.split(',').next().unwrap_or(a).trim().to_owned())
        })
        .expect("node port in the log");
    let thief =
        Serve::start(bin(), &["--compute", "--orchestrators", &node_port, "--node-token", TOKEN, "--name", &local])
            .expect("thief");
    wait_for("the thief's refusal", DEADLINE, || thief.log().contains("own compute node").then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", thief.log()));
    // Nor can the operator knock the in-process node out.
    for action in ["reject", "delete"] {
        let err = both.fails(&["node", action, &local]);
        assert!(err.contains("own compute node") && err.contains("cannot be rejected or deleted"), "{err}");
    }
    assert_eq!(both.wait_terminal(&both.submit_wasm(&[&program("hello")])).expect("terminal"), "Completed");
}

#[test]
fn the_in_process_node_comes_back_after_being_marked_disconnected() {
    // The node falls silent for 16 s, longer than the 6 s timeout, then speaks again.
    let s =
        Serve::start(bin(), &["--node-disconnect-timeout", "6", "--test-fault", "silent-heartbeats"]).expect("serve");
    wait_for("the node to be marked disconnected", DEADLINE, || {
        s.log().contains("compute node disconnected").then_some(())
    })
    .expect("disconnected");
    wait_for("it to register again", DEADLINE, || s.log().contains("asking it to register").then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", s.log()));
    // It may be marked disconnected again at any moment: the job waits for it rather than failing.
    let out = s.ok(&["wasm", "run", "--queue-timeout", "60", &program("hello")]);
    assert!(out.contains("Completed"), "{out}");
}

#[test]
fn a_lost_bid_acceptance_heals_without_a_reconnect() {
    // The in-process compute node never reconnects, and the job has no timeout: before
    // heartbeats carried a digest of what the node holds, this execution waited forever.
    let s = Serve::start(bin(), &["-c", "Compute.Heartbeat.Interval=1s", "--test-fault", "drop-bid-acceptance"])
        .expect("serve");
    let id = s.submit_wasm(&[&program("hello")]);
    assert_eq!(s.wait_terminal(&id).expect("the job finishes"), "Completed", "{}", s.log());
    assert!(s.log().contains("a bid acceptance is dropped"), "the fault fired: {}", s.log());
    assert!(s.log().contains("resyncing"), "the digest found the difference: {}", s.log());
    assert_eq!(s.ok(&["job", "logs", &id]), "Hello, world!\n");
}

#[test]
fn local_results_out_of_the_clients_reach_come_through_the_orchestrator() {
    let (o, node_port) = orchestrator(&[]);
    // The compute node's API listens on 127.0.0.1 but its results' URLs name 127.0.0.9, where
    // nothing listens: as a node behind NAT, or advertising an address only its network knows.
    let addr = format!("127.0.0.1:{node_port}");
    let c = Serve::start(
        bin(),
        &[
            "--compute",
            "--orchestrators",
            &addr,
            "--node-token",
            TOKEN,
            "-c",
            "Publishers.Types.Local.Address=127.0.0.9",
        ],
    )
    .expect("compute node");
    o.wait_connected(1);
    let id = o.submit_wasm(&["-p", "local", &program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", c.log());
    let results = o.get(&format!("/api/v1/orchestrator/jobs/{id}/results")).expect("results");
    assert!(results.contains("http://127.0.0.9:"), "{results}");
    let out = o.cli(&["job", "get", &id, "--output-dir", "res"]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("through the orchestrator"), "{out:?}");
    let stdout = std::fs::read_to_string(o.work.join("res/stdout")).expect("stdout");
    assert!(stdout.contains("Hello"), "{stdout}");

    // Only with the job named, and only an execution of that job.
    let file = results.split("/local-results/").nth(1).and_then(|r| r.split('"').next()).expect("file").to_owned();
    assert!(o.get(&format!("/api/v1/local-results/{file}?job_id={id}")).is_ok());
    let other = o.submit_wasm(&[&program("hello")]);
    assert_eq!(o.wait_terminal(&other).expect("finish"), "Completed");
    assert!(o.get(&format!("/api/v1/local-results/{file}?job_id={other}")).is_err());
    assert!(o.get(&format!("/api/v1/local-results/{file}")).is_err());
}

/// `agent/ready` names what a node lacks: a compute node whose orchestrator is not up yet is
/// not ready (503, the orchestrator link named) until it registers; an orchestrator reports
/// its store and scheduler.
#[test]
fn readiness_names_what_is_missing_until_the_orchestrator_is_up() {
    let node_port = free_port().expect("port");
    let c = compute(node_port, TOKEN);
    let (status, body) = bacalhau_testkit::http_request(c.port, "GET", "/api/v1/agent/ready", &[], b"").expect("ask");
    assert_eq!(status, 503, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(answer["Ready"], false);
    let link = answer["Checks"].as_array().expect("checks").iter().find(|k| k["Name"] == "orchestrator link").cloned();
    assert_eq!(link.as_ref().map(|l| l["OK"].clone()), Some(serde_json::Value::Bool(false)), "{body}");
    assert!(answer["Checks"].as_array().expect("checks").iter().any(|k| k["Name"] == "engines" && k["OK"] == true));

    let port = node_port.to_string();
    let o =
        Serve::start(bin(), &["--orchestrator", "--node-port", &port, "--node-token", TOKEN]).expect("orchestrator");
    let ready = wait_for("the compute node to be ready", DEADLINE, || {
        bacalhau_testkit::http_request(c.port, "GET", "/api/v1/agent/ready", &[], b"")
            .ok()
            .filter(|(status, _)| *status == 200)
    });
    let body = ready.expect("ready once the orchestrator is up").1;
    assert!(body.contains(r#""Ready":true"#), "{body}");
    let body = o.get("/api/v1/agent/ready").expect("orchestrator ready");
    for name in ["job store", "scheduler", "ipfs peer"] {
        assert!(body.contains(&format!(r#""Name":"{name}","OK":true"#)), "{name}: {body}");
    }
}
