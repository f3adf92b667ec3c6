//! A network partition between real machines: the orchestrator and two compute nodes are our
//! binary in containers on a private Docker network (the `ubuntu` test image from
//! scripts/test-images; nothing is pulled). `docker network disconnect` cuts the node running
//! a job off: it must be marked DISCONNECTED, the job must finish on the other node, and when
//! the network comes back the node must rejoin with no second completion.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bacalhau_testkit::{c_program, free_port, wait_for};
use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(90);

fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().expect("run docker");
    assert!(out.status.success(), "docker {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Removes the containers and the network however the test ends.
struct Cluster {
    prefix: String,
    containers: Vec<String>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in &self.containers {
            let _ = Command::new("docker").args(["rm", "-f", c]).output();
        }
        let _ = Command::new("docker").args(["network", "rm", &self.prefix]).output();
    }
}

fn cli(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bacalhau"))
        .args(args)
        .env("BACALHAU_API_HOST", "127.0.0.1")
        .env("BACALHAU_API_PORT", port.to_string())
        .output()
        .expect("cli");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn nodes(port: u16) -> Vec<Value> {
    let (_, out) = cli(port, &["node", "list", "--output", "json"]);
    serde_json::from_str::<Value>(&out).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

fn executions(port: u16, id: &str) -> Vec<Value> {
    let (_, out) = cli(port, &["job", "executions", id, "--output", "json"]);
    serde_json::from_str::<Value>(&out).ok().and_then(|v| v.as_array().cloned()).unwrap_or_default()
}

fn state_of(port: u16, id: &str) -> String {
    let (_, out) = cli(port, &["job", "describe", id, "--output", "json"]);
    let v: Value = serde_json::from_str(&out).unwrap_or_default();
    v["Job"]["State"]["StateType"].as_str().unwrap_or_default().to_owned()
}

#[test]
fn a_partitioned_node_loses_its_work_and_rejoins_without_a_second_completion() {
    let bin = Path::new(env!("CARGO_BIN_EXE_bacalhau"));
    let prefix = format!("bacalhau-rs-partition-{}", std::process::id());
    docker(&["network", "create", &prefix]);
    let mut cluster = Cluster { prefix: prefix.clone(), containers: Vec::new() };
    let api = free_port().expect("port");
    let mount = format!("{}:/bacalhau:ro", bin.display());
    let orch = format!("{prefix}-orch");
    let serve = |name: &str, publish: Option<u16>, role: &[&str]| {
        let mut args =
            vec!["run".to_owned(), "-d".into(), "--name".into(), name.into(), "--network".into(), prefix.clone()];
        if let Some(p) = publish {
            args.extend(["-p".into(), format!("127.0.0.1:{p}:1234")]);
        }
        args.extend(["-v".into(), mount.clone(), "ubuntu".into(), "/bacalhau".into(), "serve".into()]);
        args.extend(["--api-host", "0.0.0.0", "--api-port", "1234", "--data-dir", "/data"].map(String::from));
        // A private Docker network: the node port has a token; the APIs stay open on purpose
        // (the host reaches the orchestrator's through a port published on 127.0.0.1 only).
        args.extend(["--node-token", "partition-test-token", "--insecure-allow-anonymous"].map(String::from));
        args.extend(role.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        docker(&refs);
    };
    serve(&orch, Some(api), &["--orchestrator", "--node-port", "4222", "--node-disconnect-timeout", "6"]);
    cluster.containers.push(orch.clone());
    let computes = [format!("{prefix}-a"), format!("{prefix}-b")];
    for c in &computes {
        serve(c, None, &["--compute", "--orchestrators", &format!("{orch}:4222"), "--name", c]);
        cluster.containers.push(c.clone());
    }
    let connected = |n: usize| nodes(api).iter().filter(|v| v["Connection"] == "CONNECTED").count() == n;
    wait_for("both compute containers to join", DEADLINE, || connected(2).then_some(()))
        .unwrap_or_else(|e| panic!("{e}\n{}", docker(&["logs", &orch])));

    let program = c_program("sleep").expect("program").display().to_string();
    let (ok, out) = cli(api, &["wasm", "run", "--wait=false", "--id-only", &program, "8000"]);
    assert!(ok, "{out}");
    let id = out.trim().to_owned();
    let victim = wait_for("the job to run", DEADLINE, || {
        executions(api, &id)
            .iter()
            .find(|e| e["ComputeState"]["StateType"] == 5)
            .and_then(|e| e["NodeID"].as_str().map(str::to_owned))
    })
    .expect("running");
    docker(&["network", "disconnect", &prefix, &victim]);
    wait_for("the cut-off node to be DISCONNECTED", DEADLINE, || {
        nodes(api)
            .iter()
            .any(|n| n["Info"]["NodeID"] == victim.as_str() && n["Connection"] == "DISCONNECTED")
            .then_some(())
    })
    .expect("disconnected");
    wait_for("the job to finish elsewhere", DEADLINE, || (state_of(api, &id) == "Completed").then_some(()))
        .unwrap_or_else(|e| panic!("{e}: {:?}", executions(api, &id)));
    // The network heals: the node rejoins; what it ran meanwhile does not complete the job twice.
    docker(&["network", "connect", &prefix, &victim]);
    wait_for("the node to rejoin", DEADLINE, || connected(2).then_some(())).expect("rejoined");
    std::thread::sleep(Duration::from_secs(3));
    let execs = executions(api, &id);
    let completed: Vec<&Value> = execs.iter().filter(|e| e["ComputeState"]["StateType"] == 7).collect();
    assert_eq!(completed.len(), 1, "exactly one completion: {execs:?}");
    assert_ne!(completed[0]["NodeID"].as_str(), Some(victim.as_str()));
    assert_eq!(state_of(api, &id), "Completed");
}
