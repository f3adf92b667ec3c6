//! Hostile content and requests against a real `bacalhau serve`, through the CLI and the REST
//! API: each test here is an attack that worked before SECURITY.md's boundaries were drawn.

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use std::io::Write;
use std::path::Path;

use bacalhau_ipfs::craft::Dag;
use bacalhau_testkit::{Serve, c_program};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn serve(extra: &[&str]) -> Serve {
    Serve::start(bin(), extra).unwrap_or_else(|e| panic!("cannot start serve: {e:#}"))
}

fn program(name: &str) -> String {
    c_program(name).unwrap_or_else(|e| panic!("{e:#}")).display().to_string()
}

/// Imports the DAG under `root` into the node through `ipfs dag import`; returns the CID.
fn import(s: &Serve, dag: &Dag, root: &bacalhau_ipfs::Cid, name: &str) -> String {
    let car = s.work.join(format!("{name}.car"));
    std::fs::write(&car, dag.car(root).expect("car")).expect("write car");
    s.ok(&["ipfs", "dag", "import", &car.display().to_string()]);
    root.to_string()
}

fn message(s: &Serve, id: &str) -> String {
    let d: serde_json::Value =
        serde_json::from_str(&s.ok(&["job", "describe", id, "--output", "json"])).expect("describe json");
    d["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned()
}

fn alive(s: &Serve) -> bool {
    s.get("/api/v1/agent/alive").is_ok_and(|b| b.contains("OK"))
}

#[test]
fn a_symlink_and_a_same_named_entry_write_nothing_outside_the_input_folder() {
    let s = serve(&[]);
    let victim = s.work.join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    let mut dag = Dag::new();
    let payload = dag.raw(b"root::0:0::/root:/bin/sh\n");
    let inner = dag.dir(&[("passwd", payload)]);
    let link = dag.symlink(victim.to_str().expect("utf8"));
    let through_file = dag.dir(&[("x", link), ("x", payload)]);
    let through_dir = dag.dir(&[("x", link), ("x", inner)]);
    let hello = program("hello");
    for (i, root) in [through_file, through_dir].iter().enumerate() {
        let cid = import(&s, &dag, root, &format!("evil{i}"));
        // As a job input, on the compute node.
        let id = s.submit_wasm(&["-i", &format!("ipfs://{cid}:/in"), &hello]);
        assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
        let msg = message(&s, &id);
        assert!(msg.contains("twice"), "{msg}");
        // Through `ipfs get`, on the client.
        let err = s.fails(&["ipfs", "get", &cid, "-o", &s.work.join(format!("got{i}")).display().to_string()]);
        assert!(err.contains("twice"), "{err}");
        assert_eq!(std::fs::read_dir(&victim).expect("ls").count(), 0, "something was written through the symlink");
    }
    assert!(alive(&s));
}

#[test]
fn an_input_that_is_a_symlink_mounts_nothing_of_the_host() {
    let s = serve(&[]);
    let victim = s.work.join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    std::fs::write(victim.join("secret"), "the host's secret\n").expect("write");
    // A CID whose root is a symlink to a host folder: mounted as such, it would put that folder
    // (or `/`) inside the job.
    let mut dag = Dag::new();
    let link = dag.symlink(victim.to_str().expect("utf8"));
    let cid = import(&s, &dag, &link, "link");
    let id = s.submit_wasm(&["-i", &format!("ipfs://{cid}:/in"), &program("cat"), "/in/secret"]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("is a symlink"), "{msg}");
    let logs = s.ok(&["job", "logs", &id]);
    assert!(!logs.contains("secret"), "{logs}");
    assert!(alive(&s));
}

#[test]
fn an_execution_id_that_is_a_path_reads_nothing() {
    let s = serve(&[]);
    // A file named like a result, outside any execution folder.
    std::fs::create_dir_all(s.dir.join("secret/results")).expect("mkdir");
    std::fs::write(s.dir.join("secret/results/stdout"), "the host's secret\n").expect("write");
    for id in ["..%2F..%2Fsecret", "..%2Fsecret", "%2Ftmp", "."] {
        let path = format!("/api/v1/compute/executions/{id}/logs");
        let (status, body) = bacalhau_testkit::http_request(s.port, "GET", &path, &[], b"").expect("request");
        assert!(status == 404 || status == 400, "{path}: {status} {body}");
        assert!(!body.contains("secret\n"), "{path}: {body}");
    }
    assert!(alive(&s));
}

#[test]
fn a_chain_100000_levels_deep_fails_cleanly_as_input_and_through_the_gateway() {
    let s = serve(&[]);
    let mut dag = Dag::new();
    let mut file = dag.raw(b"bottom");
    for _ in 0..100_000 {
        file = dag.file(b"", &[(file, 6)]);
    }
    let cid = import(&s, &dag, &file, "deep");
    // The gateway streams the content; the node must survive the walk.
    let _ = s.get(&format!("/ipfs/{cid}"));
    assert!(alive(&s), "the gateway GET took the node down:\n{}", s.log());
    let id = s.submit_wasm(&["-i", &format!("ipfs://{cid}:/in"), &program("hello")]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("levels deep"), "{msg}");
    assert!(alive(&s));
}

#[test]
fn inputs_that_expand_past_the_disk_budget_stop_with_a_clear_error() {
    let s = serve(&[]);
    // A few KiB of CAR naming one 64 KiB block 174³ times: 1.9 GB once written.
    let mut dag = Dag::new();
    let mut cid = dag.raw(&vec![0u8; 64 << 10]);
    let mut size = 64u64 << 10;
    for _ in 0..3 {
        cid = dag.file(b"", &vec![(cid, size); 174]);
        size *= 174;
    }
    let car_root = import(&s, &dag, &cid, "bomb");
    let car_len = std::fs::metadata(s.work.join("bomb.car")).expect("car").len();
    assert!(car_len < 200 << 10, "{car_len}");
    let hello = program("hello");
    let id = s.submit_wasm(&["--disk", "20Mb", "-i", &format!("ipfs://{car_root}:/in"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("disk budget") && msg.contains("--disk"), "{msg}");

    // 1 GiB of zeros in a tar.gz of about 1 MB, shipped inline.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    {
        let mut tar = tar::Builder::new(&mut gz);
        let mut header = tar::Header::new_gnu();
        header.set_size(1 << 30);
        header.set_mode(0o644);
        header.set_cksum();
        tar.append_data(&mut header, "zeros", std::io::Read::take(std::io::repeat(0), 1 << 30)).expect("tar");
        tar.finish().expect("tar");
    }
    let archive = gz.finish().expect("gz");
    assert!(archive.len() < 2 << 20, "{}", archive.len());
    let b64 = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let module = std::fs::read(&hello).expect("module");
    let spec = format!(
        "Type: batch\nTasks:\n  - Name: main\n    Engine: {{Type: wasm, Params: {{EntryModule: /wasm/main.wasm}}}}\n    Resources: {{Disk: 20Mb}}\n    InputSources:\n      - Target: /wasm/main.wasm\n        Source: {{Type: inline, Params: {{URL: \"data:application/wasm;base64,{}\"}}}}\n      - Target: /in\n        Source: {{Type: inline, Params: {{URL: \"data:application/gzip;base64,{}\"}}}}\n",
        b64(&module),
        b64(&archive)
    );
    let path = s.work.join("bomb.yaml");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(spec.as_bytes())).expect("spec");
    let out = s.cli(&["job", "run", "--wait=false", &path.display().to_string()]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(id.starts_with("j-"), "{out:?}");
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("expands to more than"), "{msg}");
    assert!(alive(&s));
}

const ADMIN_KEY: &str = "admin-key-0123456789abcdef";
const READER_KEY: &str = "reader-key-0123456789abcdef";

/// A node with users: an admin API key, a read-only API key, and `alice` (jobs only) whose
/// password is stored as a bcrypt hash made by `bacalhau auth hash-password`.
fn serve_with_users(cfg_dir: &Path) -> Serve {
    let hash = {
        let mut child = std::process::Command::new(bin())
            .args(["auth", "hash-password"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("hash-password");
        child.stdin.take().expect("stdin").write_all(b"alicepassword1\n").expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).expect("utf8").trim().to_owned()
    };
    assert!(hash.starts_with("$2") && hash.len() == 60, "{hash}");
    let cfg = cfg_dir.join("config.yaml");
    std::fs::write(
        &cfg,
        format!(
            "API:\n  Auth:\n    Users:\n      - Alias: admin\n        APIKey: {ADMIN_KEY}\n        Capabilities: [{{Actions: [\"*\"]}}]\n      - Alias: reader\n        APIKey: {READER_KEY}\n        Capabilities: [{{Actions: [\"read:job\", \"read:node\"]}}]\n      - Username: alice\n        Password: \"{hash}\"\n        Capabilities: [{{Actions: [\"read:job\", \"write:job\"]}}]\n"
        ),
    )
    .expect("config");
    serve(&["--config", &cfg.display().to_string()])
}

fn cli_as(s: &Serve, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    s.cli_env(args, env)
}

#[test]
fn authentication_and_capabilities_work_as_in_bacalhau() {
    let cfg = tempfile::tempdir().expect("tmp");
    let s = serve_with_users(cfg.path());
    let hello = program("hello");
    // Open routes stay open.
    assert!(alive(&s));
    // An unauthenticated write gets 401 and creates nothing.
    let spec = br#"{"Job": {"Type": "batch", "Tasks": [{"Name": "t", "Engine": {"Type": "wasm", "Params": {"EntryModule": "x"}}}]}}"#;
    let (status, body) = bacalhau_testkit::http_request(
        s.port,
        "PUT",
        "/api/v1/orchestrator/jobs",
        &[("Content-Type", "application/json")],
        spec,
    )
    .expect("put");
    assert_eq!(status, 401, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["Code"], "Unauthorized");
    assert_eq!(v["Details"]["reason"], "Missing Authorization header");
    let admin = [("BACALHAU_API_KEY", ADMIN_KEY)];
    let listed = String::from_utf8_lossy(&cli_as(&s, &admin, &["job", "list", "--output", "json"]).stdout).into_owned();
    assert_eq!(listed.trim(), "[]", "the refused write created a job: {listed}");
    // Without credentials the CLI is refused with Bacalhau's message and a hint.
    let out = s.cli(&["job", "list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Request Unauthorized"), "{out:?}");
    // alice (Basic, bcrypt) may run jobs but not manage nodes.
    let alice = [("BACALHAU_API_USERNAME", "alice"), ("BACALHAU_API_PASSWORD", "alicepassword1")];
    let out = cli_as(&s, &alice, &["wasm", "run", &hello]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Completed"), "{out:?}");
    let node = String::from_utf8_lossy(&cli_as(&s, &admin, &["node", "list", "--output", "json"]).stdout).into_owned();
    let nodes: serde_json::Value = serde_json::from_str(&node).expect("nodes");
    let node_id = nodes[0]["Info"]["NodeID"].as_str().expect("node id").to_owned();
    let out = cli_as(&s, &alice, &["node", "reject", &node_id]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success() && err.contains("does not have the required capability 'write:node'"), "{out:?}");
    let wrong = [("BACALHAU_API_USERNAME", "alice"), ("BACALHAU_API_PASSWORD", "wrongpassword")];
    assert!(!cli_as(&s, &wrong, &["job", "list"]).status.success());
    // The reader may read but not write.
    let reader = [("BACALHAU_API_KEY", READER_KEY)];
    assert!(cli_as(&s, &reader, &["job", "list"]).status.success());
    let out = cli_as(&s, &reader, &["wasm", "run", &hello]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'write:job'"), "{out:?}");
    // Both kinds of credentials at once is the client's error, as in Bacalhau.
    let both = [("BACALHAU_API_KEY", READER_KEY), ("BACALHAU_API_USERNAME", "alice")];
    assert!(String::from_utf8_lossy(&cli_as(&s, &both, &["job", "list"]).stderr).contains("can't use both"));
    let info = String::from_utf8_lossy(&cli_as(&s, &reader, &["auth", "info"]).stdout).into_owned();
    assert!(info.contains("API Key: Set") && info.contains("Username: Not Set"), "{info}");
    // Gateway content is job data: it needs read:job.
    let (status, _) = bacalhau_testkit::http_request(s.port, "POST", "/api/v1/ipfs/gc", &[], b"").expect("gc");
    assert_eq!(status, 401);
    // Metrics are node data: a scrape needs read:node, as the node routes do.
    let scrape = |auth: &[(&str, &str)]| bacalhau_testkit::http_request(s.port, "GET", "/metrics", auth, b"");
    let (status, body) = scrape(&[]).expect("scrape");
    assert_eq!(status, 401, "{body}");
    let basic = format!("Basic {}", base64_of("alice:alicepassword1"));
    let (status, body) = scrape(&[("Authorization", &basic)]).expect("scrape");
    assert_eq!(status, 403, "alice has no read:node: {body}");
    let bearer = format!("Bearer {READER_KEY}");
    let (status, body) = scrape(&[("Authorization", &bearer)]).expect("scrape");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("bacalhau_api_requests_total{"), "{body}");
}

fn base64_of(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn a_node_beyond_loopback_without_authentication_refuses_to_start() {
    let out = std::process::Command::new(bin())
        .args(["serve", "--api-host", "0.0.0.0", "--api-port", "0"])
        .env("BACALHAU_DIR", tempfile::tempdir().expect("tmp").path())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0 without authentication"), "{err}");
    assert!(err.contains("API.Auth.Users") && err.contains("--insecure-allow-anonymous"), "{err}");
}

#[test]
fn browsers_and_bad_bodies_get_clear_refusals() {
    let s = serve(&[]);
    let put = |headers: &[(&str, &str)], body: &[u8]| {
        bacalhau_testkit::http_request(s.port, "PUT", "/api/v1/orchestrator/jobs", headers, body).expect("put")
    };
    let json = ("Content-Type", "application/json");
    // DNS rebinding: the page's own name in Host.
    let (status, body) = put(&[json, ("Host", "evil.example:1234")], b"{}");
    assert_eq!(status, 403, "{body}");
    // A page on another site.
    let (status, body) = put(&[json, ("Origin", "http://evil.example")], b"{}");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("evil.example"), "{body}");
    // What a plain HTML form can send.
    let (status, body) = put(&[("Content-Type", "text/plain")], b"{}");
    assert_eq!(status, 415, "{body}");
    // Bad JSON and an oversized body: JSON errors with a 4xx status.
    let (status, body) = put(&[json], b"{not json");
    assert_eq!(status, 400, "{body}");
    assert!(serde_json::from_str::<serde_json::Value>(&body).is_ok_and(|v| v["Code"] == "BadRequest"), "{body}");
    let big = vec![b' '; 100 << 20];
    let (status, body) = put(&[json], &big);
    assert_eq!(status, 413, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("413 is JSON");
    assert_eq!(v["Status"], 413);
    let (status, body) =
        bacalhau_testkit::http_request(s.port, "PUT", "/api/v1/orchestrator/nodes", &[json], b"[1,2").expect("nodes");
    assert!(
        (400..500).contains(&status) && serde_json::from_str::<serde_json::Value>(&body).is_ok(),
        "{status} {body}"
    );
    assert!(alive(&s));
}

#[test]
fn a_full_disk_fails_one_job_and_the_node_recovers_without_a_restart() {
    let Some(disk) = bacalhau_testkit::rerun_with_small_disk(
        "a_full_disk_fails_one_job_and_the_node_recovers_without_a_restart",
        96,
    )
    .expect("small disk") else {
        return;
    };
    let s = Serve::start_in(bin(), &disk.join("data"), &[]).expect("serve");
    let data = s.work.join("input.bin");
    std::fs::write(&data, bacalhau_testkit::random_bytes(24 << 20, 7)).expect("input");
    let cid = s.ok(&["ipfs", "add", "-Q", &data.display().to_string()]).trim().to_owned();
    // Leave about 8 MiB free: the 24 MiB input cannot be written out for the job.
    let free = nix::sys::statvfs::statvfs(&disk).map(|v| v.blocks_available() * v.fragment_size()).expect("statvfs");
    let filler = disk.join("filler");
    std::fs::write(&filler, vec![0u8; (free - (8 << 20)) as usize]).expect("filler");
    let hello = program("hello");
    let id = s.submit_wasm(&["-i", &format!("ipfs://{cid}:/in"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("data directory") && msg.contains("is full"), "{msg}");
    let execs = disk.join("data/compute/executions");
    bacalhau_testkit::wait_for("the failed execution's files to go", bacalhau_testkit::DEADLINE, || {
        let left: u64 = std::fs::read_dir(&execs)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| bacalhau_executor::dir_size(&e.path()))
            .sum();
        (left < 1 << 20).then_some(())
    })
    .expect("cleaned");
    // Fill the disk completely: the orchestrator's store cannot commit a submission.
    let free = nix::sys::statvfs::statvfs(&disk).map(|v| v.blocks_available() * v.fragment_size()).expect("statvfs");
    let more = disk.join("filler2");
    let _ = std::fs::write(&more, vec![0u8; free as usize]);
    let out = s.cli(&["wasm", "run", "--wait=false", &hello]);
    assert!(!out.status.success(), "a submission on a full disk must fail, not be lost silently: {out:?}");
    // Space comes back: the same node takes and runs jobs again, no restart.
    std::fs::remove_file(&more).expect("rm");
    std::fs::remove_file(&filler).expect("rm");
    let out = s.ok(&["wasm", "run", &hello]);
    assert!(out.contains("Completed"), "{out}");
    let id = s.submit_wasm(&["-i", &format!("ipfs://{cid}:/in"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Completed", "{}", message(&s, &id));
}

#[test]
fn a_retried_submission_with_the_same_idempotency_key_creates_one_job() {
    let s = serve(&[]);
    let module = std::fs::read(program("hello")).expect("module");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(module)
    };
    let body = format!(
        r#"{{"Job": {{"Type": "batch", "Tasks": [{{"Name": "t", "Engine": {{"Type": "wasm", "Params": {{"EntryModule": "/m.wasm"}}}}, "InputSources": [{{"Target": "/m.wasm", "Source": {{"Type": "inline", "Params": {{"URL": "data:application/wasm;base64,{b64}"}}}}}}]}}]}}}}"#
    );
    let put = || {
        bacalhau_testkit::http_request(
            s.port,
            "PUT",
            "/api/v1/orchestrator/jobs",
            &[("Content-Type", "application/json"), ("Idempotency-Key", "3f1c2a8e-retry-me")],
            body.as_bytes(),
        )
        .expect("put")
    };
    let (status, first) = put();
    assert_eq!(status, 200, "{first}");
    let (status, second) = put();
    assert_eq!(status, 200, "{second}");
    let id =
        |b: &str| serde_json::from_str::<serde_json::Value>(b).expect("json")["JobID"].as_str().expect("id").to_owned();
    assert_eq!(id(&first), id(&second));
    let list: serde_json::Value = serde_json::from_str(&s.ok(&["job", "list", "--output", "json"])).expect("list");
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn a_damaged_store_is_refused_at_start_and_a_bad_record_is_skipped() {
    let mut s = serve(&[]);
    let hello = program("hello");
    let first = s.submit_wasm(&[&hello]);
    let second = s.submit_wasm(&[&hello]);
    s.wait_terminal(&first).expect("terminal");
    s.wait_terminal(&second).expect("terminal");
    s.kill9().expect("kill");
    let store = s.dir.join("orchestrator/jobs.redb");
    // One record no longer decodes: the listing reports it and shows the rest.
    {
        let db = redb::Database::create(&store).expect("open");
        let tx = db.begin_write().expect("tx");
        {
            let mut jobs = tx.open_table(redb::TableDefinition::<&str, &[u8]>::new("jobs")).expect("jobs");
            jobs.insert(first.as_str(), &b"\x01{not json"[..]).expect("insert");
        }
        tx.commit().expect("commit");
    }
    s.restart().expect("restart");
    let list = s.ok(&["job", "list", "--output", "json"]);
    assert!(list.contains(&second) && !list.contains(&first), "{list}");
    s.kill9().expect("kill");
    // A store file cut to nothing is a lost store, never silently a new one.
    let saved = std::fs::read(&store).expect("read");
    std::fs::write(&store, b"").expect("truncate");
    let err = s.restart().expect_err("an empty store must be refused");
    let log = s.log();
    assert!(log.contains("is empty (0 bytes)") && log.contains("Restore it from a backup"), "{err:#}\n{log}");
    // Garbage where the store was: refused with what to do.
    let mut garbage = saved.clone();
    for b in garbage.iter_mut().take(4096) {
        *b ^= 0x5a;
    }
    std::fs::write(&store, &garbage).expect("garble");
    assert!(s.restart().is_err(), "a garbled store must be refused");
    assert!(s.log().contains("jobs.redb"), "{}", s.log());
}

#[test]
fn zero_resources_get_the_defaults_and_a_public_node_advertises_a_reachable_address() {
    let s = serve(&["--api-host", "0.0.0.0", "--insecure-allow-anonymous", "--advertise", "node7.example"]);
    assert!(s.log().contains("--insecure-allow-anonymous"), "the override is logged loudly:\n{}", s.log());
    let info: serde_json::Value = serde_json::from_str(&s.get("/api/v1/agent/node").expect("node")).expect("json");
    let url = info["APIURL"].as_str().unwrap_or_default();
    assert!(url.starts_with("http://node7.example:"), "{info}");
    // The advertised name is one the node answers to.
    let (status, _) =
        bacalhau_testkit::http_request(s.port, "GET", "/api/v1/agent/alive", &[("Host", "node7.example")], b"")
            .expect("get");
    assert_eq!(status, 200);
    let id = s.submit_wasm(&["--cpu", "0", "--memory", "0", &program("hello")]);
    assert_eq!(s.wait_terminal(&id).expect("terminal"), "Completed");
    let d: serde_json::Value =
        serde_json::from_str(&s.ok(&["job", "describe", &id, "--output", "json"])).expect("describe json");
    let r = &d["Job"]["Tasks"][0]["Resources"];
    assert_eq!(r["CPU"], "500m", "{r}");
    assert_eq!(r["Memory"], "512Mb", "{r}");
}

#[test]
fn bacalhaus_python_sdk_works_with_an_api_key() {
    let python = bacalhau_testkit::kubo::sdk_python().expect("the Python SDK");
    let cfg = tempfile::tempdir().expect("tmp");
    let s = serve_with_users(cfg.path());
    let admin = [("BACALHAU_API_KEY", ADMIN_KEY)];
    let out = cli_as(&s, &admin, &["wasm", "run", "--id-only", &program("hello")]);
    let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(id.starts_with("j-"), "{out:?}");
    // The SDK has no auth of its own: a key goes in as a default header, as Bacalhau documents.
    let script = r#"
import os, sys
from bacalhau_sdk.jobs import Jobs
jobs = Jobs()
key = os.environ.get("KEY")
if key:
    jobs.orchestrator_service.api_client.set_default_header("Authorization", "Bearer " + key)
try:
    listed = jobs.list(limit=10)
except Exception:
    # The SDK prints the API's answer (401) and then fails on its own missing result.
    listed = None
if listed is None:
    print("REFUSED")
    sys.exit(0)
print("JOBS", " ".join(j.id for j in listed.items))
got = jobs.get(job_id=sys.argv[1])
print("GOT", got.job.id, got.job.state.state_type)
"#;
    std::fs::create_dir_all(cfg.path().join("sdk")).expect("sdk dir");
    let run = |key: Option<&str>| {
        let mut cmd = std::process::Command::new(&python);
        cmd.args(["-c", script, &id])
            .env("BACALHAU_API_HOST", "127.0.0.1")
            .env("BACALHAU_API_PORT", s.port.to_string())
            .env("BACALHAU_DIR", cfg.path().join("sdk"))
            .env_remove("KEY");
        if let Some(k) = key {
            cmd.env("KEY", k);
        }
        let out = cmd.output().expect("python");
        (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (stdout, stderr) = run(Some(READER_KEY));
    assert!(stdout.contains(&format!("JOBS {id}")) && stdout.contains(&format!("GOT {id}")), "{stdout}\n{stderr}");
    let (stdout, stderr) = run(None);
    assert!(stdout.contains("REFUSED") && stdout.contains("401"), "{stdout}\n{stderr}");
}

#[test]
fn a_profile_carries_the_endpoint_and_its_credentials() {
    let cfg = tempfile::tempdir().expect("tmp");
    let s = serve_with_users(cfg.path());
    let home = tempfile::tempdir().expect("home");
    let cli = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(bin());
        cmd.args(args)
            .env("BACALHAU_DIR", home.path())
            .env_remove("BACALHAU_API_HOST")
            .env_remove("BACALHAU_API_PORT")
            .env_remove("BACALHAU_API_KEY");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().expect("cli")
    };
    let endpoint = format!("http://127.0.0.1:{}", s.port);
    let out = cli(&["profile", "save", "lab", "--endpoint", &endpoint, "--auth-token", READER_KEY, "--select"], &[]);
    assert!(out.status.success(), "{out:?}");
    let out = cli(&["job", "list", "--output", "json"], &[]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "[]", "{out:?}");
    // The token is shown as present, never printed.
    let shown = String::from_utf8_lossy(&cli(&["profile", "show"], &[]).stdout).into_owned();
    assert!(shown.contains(&endpoint) && !shown.contains(READER_KEY), "{shown}");
    // The reader profile may not write; credentials in the environment win over it.
    let out = cli(&["wasm", "run", &program("hello")], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("'write:job'"), "{out:?}");
    let out = cli(&["wasm", "run", &program("hello")], &[("BACALHAU_API_KEY", ADMIN_KEY)]);
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8_lossy(&cli(&["profile", "list"], &[]).stdout).into_owned();
    assert!(listed.contains("* ") && listed.contains("lab"), "{listed}");
}
