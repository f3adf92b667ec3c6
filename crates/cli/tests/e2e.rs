//! End-to-end tests: a real `bacalhau serve` process on a free loopback port, driven through
//! the CLI exactly as a user would.

use std::path::{Path, PathBuf};

use bacalhau_testkit::{DEADLINE, Serve, c_program, exit_wat, grow_wat, spin_wat, wait_for};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn serve() -> Serve {
    match Serve::start(bin(), &[]) {
        Ok(s) => s,
        Err(e) => panic!("cannot start serve: {e:#}"),
    }
}

fn program(name: &str) -> String {
    match c_program(name) {
        Ok(p) => p.display().to_string(),
        Err(e) => panic!("{e:#}"),
    }
}

fn write_module(s: &Serve, name: &str, bytes: anyhow::Result<Vec<u8>>) -> String {
    let path = s.work.join(name);
    std::fs::write(&path, bytes.expect("assemble WAT")).expect("write module");
    path.display().to_string()
}

fn describe(s: &Serve, id: &str) -> Value {
    serde_json::from_str(&s.ok(&["job", "describe", id, "--output", "json"])).expect("describe json")
}

fn submit(s: &Serve, args: &[&str]) -> String {
    let mut full = vec!["wasm", "run", "--wait=false"];
    full.extend_from_slice(args);
    s.ok(&full).trim().to_owned()
}

#[test]
fn hello_world_runs_and_its_output_is_visible() {
    let s = serve();
    let hello = program("hello");
    let out = s.ok(&["wasm", "run", &hello]);
    assert!(out.contains("Job successfully submitted. Job ID: j-"), "{out}");
    assert!(out.contains("Completed successfully"), "{out}");
    assert!(out.contains("bacalhau job describe j-"), "{out}");
    let id = s.ok(&["wasm", "run", "--id-only", &hello]).trim().to_owned();
    assert!(id.starts_with("j-") && !id.contains('\n'), "{id}");
    // Unique prefixes work, with or without the j- prefix.
    let human = s.ok(&["describe", &id[..10]]);
    assert!(human.contains("State          = Completed"), "{human}");
    assert!(human.contains("Hello, world!"), "{human}");
    assert_eq!(s.ok(&["job", "logs", &id[2..12]]), "Hello, world!\n");
    assert_eq!(s.ok(&["logs", &id]), "Hello, world!\n");
    let list = s.ok(&["list", &format!("--id-filter={id}")]);
    assert!(list.contains(&id[..10]) && list.contains("Completed"), "{list}");
    let csv = s.ok(&["job", "list", "--output", "csv"]);
    assert_eq!(csv.lines().count(), 3, "{csv}");
    let execs: Value = serde_json::from_str(&s.ok(&["job", "executions", &id, "--output", "json"])).expect("json");
    assert_eq!(execs[0]["ComputeState"]["StateType"], 7);
}

#[test]
fn exit_code_and_environment_reach_the_program() {
    let s = serve();
    let env = program("env");
    let out = s.cli(&["wasm", "run", "-e", "EXIT_CODE=5", "-e", "AWESOME=definitely", &env]);
    assert!(out.status.success(), "a non-zero exit is still a completed job: {out:?}");
    let id = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("Job successfully submitted. Job ID: ").map(str::to_owned))
        .expect("job id");
    let d = describe(&s, &id);
    let exec = &d["Executions"]["Items"][0];
    assert_eq!(exec["RunOutput"]["ExitCode"], 5);
    let stdout = exec["RunOutput"]["Stdout"].as_str().expect("stdout");
    assert!(stdout.contains("AWESOME=definitely"), "{stdout}");
    assert!(stdout.contains(&format!("BACALHAU_JOB_ID={id}")), "{stdout}");
    assert!(stdout.contains("BACALHAU_PARTITION_INDEX=0"), "{stdout}");
    assert!(stdout.contains("BACALHAU_PARTITION_COUNT=1"), "{stdout}");
    assert!(stdout.contains(&format!("BACALHAU_EXECUTION_ID={}", exec["ID"].as_str().expect("id"))), "{stdout}");
}

#[test]
fn local_inputs_are_mounted_and_the_allow_list_is_enforced() {
    let data = tempfile::tempdir().expect("tmp");
    let allowed = std::fs::canonicalize(data.path()).expect("canon").join("allowed");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    std::fs::write(allowed.join("hello.txt"), "hello world\n").expect("write");
    let denied = data.path().join("denied");
    std::fs::create_dir_all(&denied).expect("mkdir");
    let s = Serve::start(bin(), &["--allow-listed-local-paths", &format!("{}", allowed.display())]).expect("serve");
    let cat = program("cat");
    let input = format!("file://{}:/in", allowed.display());
    let id = submit(&s, &["-i", &input, &cat, "/in/hello.txt"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "hello world\n");

    let input = format!("file://{}:/in", denied.display());
    let id = submit(&s, &["-i", &input, &cat, "/in/x"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = describe(&s, &id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("not allow-listed"), "{msg}");
}

#[test]
fn a_one_file_input_shows_that_file_at_its_target_and_nothing_beside_it() {
    let data = tempfile::tempdir().expect("tmp");
    let folder = std::fs::canonicalize(data.path()).expect("canon");
    std::fs::write(folder.join("hello.txt"), "hello world\n").expect("write");
    std::fs::write(folder.join("secret.txt"), "the host's secret\n").expect("write");
    // Only the one file is allow-listed; its sibling must stay out of reach of the job.
    let s = Serve::start(bin(), &["--allow-listed-local-paths", &folder.join("hello.txt").display().to_string()])
        .expect("serve");
    let cat = program("cat");
    let input = format!("file://{}:/data/file.txt", folder.join("hello.txt").display());
    let id = submit(&s, &["-i", &input, &cat, "/data/file.txt"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "hello world\n");
    for sibling in ["/data/secret.txt", "/data/hello.txt"] {
        let id = submit(&s, &["-i", &input, &cat, sibling]);
        assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
        let d = describe(&s, &id);
        let exec = &d["Executions"]["Items"][0];
        assert_eq!(exec["RunOutput"]["ExitCode"], 2, "{sibling} was readable: {exec}");
        assert!(!exec["RunOutput"]["Stdout"].as_str().unwrap_or_default().contains("secret"), "{exec}");
    }
    // Two one-file inputs in the same guest folder, each under its own Target name.
    let second = format!("file://{}:/data/other.txt", folder.join("hello.txt").display());
    let id = submit(&s, &["-i", &input, "-i", &second, &cat, "/data/file.txt", "/data/other.txt"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "hello world\nhello world\n");
}

#[test]
fn url_inputs_are_downloaded_to_their_target_and_revalidated_from_the_nodes_cache() {
    let data = tempfile::tempdir().expect("tmp");
    let served = data.path().join("www");
    std::fs::create_dir_all(&served).expect("mkdir");
    std::fs::write(served.join("data.csv"), "name,count\nfish,3\n").expect("write");
    let http = bacalhau_testkit::HttpServer::start(&served).expect("http.server");
    let s = serve();
    let cat = program("cat");
    let input = format!("http://127.0.0.1:{}/data.csv:/inputs", http.port);
    for round in 1..=2 {
        let id = submit(&s, &["-i", &input, &cat, "/inputs/data.csv"]);
        assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "round {round}: {}", describe(&s, &id));
        assert_eq!(s.ok(&["job", "logs", &id]), "name,count\nfish,3\n");
    }
    assert_eq!(http.answered("/data.csv", 200), 1, "downloaded once");
    assert_eq!(http.answered("/data.csv", 304), 1, "then revalidated, not downloaded again");

    // A file the server does not have fails the job at once, naming the URL and the status.
    let missing = format!("http://127.0.0.1:{}/missing.csv", http.port);
    let id = submit(&s, &["-i", &format!("{missing}:/inputs"), &cat, "/inputs/missing.csv"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = describe(&s, &id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains(&missing) && msg.contains("404"), "{msg}");

    // A URL that cannot name a file, or is not http(s), is refused at submission, naming the field.
    let spec = spec_file(
        &s,
        "ftp.yaml",
        "Type: batch\nTasks:\n  - Engine: {Type: docker, Params: {Image: busybox}}\n    InputSources:\n      - {Target: /in, Source: {Type: urlDownload, Params: {URL: \"ftp://127.0.0.1/a.csv\"}}}\n",
    );
    let err = s.fails(&["job", "run", &spec.display().to_string()]);
    assert!(err.contains("Tasks[0].InputSources[0].Source.Params.URL") && err.contains("http://"), "{err}");
}

#[test]
fn result_paths_are_published_and_job_get_writes_the_contract_layout() {
    let s = serve();
    let write = program("write");
    let id = submit(&s, &["-o", "outputs:/outputs", "-p", "local", &write, "/outputs/result.txt", "15"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    let out = s.ok(&["job", "get", &id]);
    assert!(out.contains("have been written to"), "{out}");
    let dir = s.work.join(format!("job-{id}"));
    assert_eq!(std::fs::read_to_string(dir.join("outputs/result.txt")).expect("result"), "15");
    assert_eq!(std::fs::read_to_string(dir.join("stdout")).expect("stdout"), "wrote /outputs/result.txt\n");
    assert_eq!(std::fs::read_to_string(dir.join("stderr")).expect("stderr"), "");
    assert_eq!(std::fs::read_to_string(dir.join("exitCode")).expect("exitCode"), "0");
    assert!(!dir.join("raw").exists());
    let d = describe(&s, &id);
    let url = d["Executions"]["Items"][0]["PublishedResult"]["Params"]["URL"].as_str().expect("url").to_owned();
    assert!(url.starts_with(&format!("http://127.0.0.1:{}/api/v1/local-results/e-", s.port)), "{url}");

    // With no -p the node's JobDefaults publish to its IPFS store, so `job get` works with no
    // flags (the seed's flow); `-p noop` has nothing to get, and says so.
    let hello = program("hello");
    let plain = submit(&s, &[&hello]);
    s.wait_terminal(&plain).expect("finish");
    s.ok(&["job", "get", &plain, "--output-dir", "plain"]);
    assert_eq!(std::fs::read_to_string(s.work.join("plain/stdout")).expect("stdout"), "Hello, world!\n");
    let d = describe(&s, &plain);
    let published = &d["Executions"]["Items"][0]["PublishedResult"];
    assert_eq!(published["Type"], "ipfs", "{published}");
    let cid = published["Params"]["CID"].as_str().expect("a result CID").to_owned();
    assert!(s.ok(&["job", "describe", &plain]).contains(&cid), "describe shows the result CID");
    let none = submit(&s, &["-p", "noop", &hello]);
    s.wait_terminal(&none).expect("finish");
    let err = s.fails(&["job", "get", &none]);
    assert!(err.contains("no results found") && err.contains("bacalhau job logs"), "{err}");
}

#[test]
fn ipfs_inputs_and_results_round_trip_through_a_wasm_job() {
    let s = serve();
    let data = tempfile::tempdir().expect("tmp");
    let big: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::create_dir_all(data.path().join("d")).expect("mkdir");
    std::fs::write(data.path().join("d/big.bin"), &big).expect("write");
    let dir = s.dir.display().to_string();
    let out = s.cli_env(&["ipfs", "add", "-r", &data.path().display().to_string()], &[("BACALHAU_DIR", &dir)]);
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    // A line per item, the root last.
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let line = stdout.lines().last().unwrap_or_default().to_owned();
    let cid = line.strip_prefix("added ").and_then(|l| l.split_whitespace().next()).expect("added line").to_owned();
    // `ipfs cat` and `ipfs get` read it back through the node's gateway, from another store.
    let other = tempfile::tempdir().expect("tmp");
    let other_dir = other.path().display().to_string();
    let cat = s
        .cli_env(&["ipfs", "cat", &ipfs_file_cid(&s, &data.path().join("d/big.bin"))], &[("BACALHAU_DIR", &other_dir)]);
    assert_eq!(cat.stdout, big);
    // A WASM job copies the input into a result path, published to IPFS.
    let write = program("cat");
    let id = submit(&s, &["-i", &format!("ipfs://{cid}:/in"), "-o", "out:/out", "-p", "ipfs", &write, "/in/d/big.bin"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    s.ok(&["job", "get", &id, "--output-dir", "res"]);
    assert_eq!(std::fs::read(s.work.join("res/stdout")).expect("stdout"), big, "bytes survive the round trip");
    let ls = s.cli_env(&["ipfs", "ls", &cid], &[("BACALHAU_DIR", &other_dir)]);
    let ls = String::from_utf8_lossy(&ls.stdout).into_owned();
    assert!(ls.starts_with("Qm") && ls.trim_end().ends_with(" - d/"), "{ls}");
    // The gateway: Range on file content, CAR of the DAG, clear errors.
    let file_cid = ipfs_file_cid(&s, &data.path().join("d/big.bin"));
    let (head, body) = raw_get(s.port, &format!("/ipfs/{file_cid}"), "Range: bytes=10-19\r\n");
    assert!(head.starts_with("http/1.1 206") && head.contains("content-range: bytes 10-19/600000"), "{head}");
    assert_eq!(body, big[10..20].to_vec());
    let (head, body) = raw_get(s.port, &format!("/ipfs/{file_cid}?format=car"), "");
    assert!(head.contains("application/vnd.ipld.car"), "{head}");
    assert!(body.len() > big.len(), "the CAR holds every block");
    let (head, _) = raw_get(s.port, "/ipfs/QmNope", "");
    assert!(head.starts_with("http/1.1 400"), "{head}");
    let (head, _) = raw_get(s.port, "/ipfs/Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD", "");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    let err = s.fails(&["ipfs", "cat", "not-a-cid"]);
    assert!(err.contains("is not a CID"), "{err}");
}

#[test]
fn the_ipfs_store_adds_remotely_shards_pins_collects_and_moves_cars() {
    let s = serve();
    let data = tempfile::tempdir().expect("tmp");
    // Past kubo's threshold: 4200 × (30 + 34) bytes of links > 256 KiB, so a HAMT.
    let shard = data.path().join("many");
    std::fs::create_dir_all(&shard).expect("mkdir");
    for i in 0..4200 {
        std::fs::write(shard.join(format!("{i:030}")), format!("file {i}\n")).expect("write");
    }
    // Added from another data dir: the blocks reach the node as a CAR and are pinned there.
    let client = tempfile::tempdir().expect("tmp");
    let client_dir = client.path().display().to_string();
    let out = s.cli_env(&["ipfs", "add", "-r", "-Q", &shard.display().to_string()], &[("BACALHAU_DIR", &client_dir)]);
    assert!(out.status.success(), "{out:?}");
    let cid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let pins = s.ok(&["ipfs", "pin", "ls"]);
    assert!(pins.contains(&cid) && pins.contains("added by bacalhau ipfs add"), "{pins}");
    // Paths resolve through the shard, on the CLI and on the gateway.
    let name = format!("{:030}", 4117);
    assert_eq!(s.ok(&["ipfs", "cat", &format!("{cid}/{name}")]), "file 4117\n");
    let (head, body) = raw_get(s.port, &format!("/ipfs/{cid}/{name}"), "");
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(body, b"file 4117\n");
    let (head, car) = raw_get(s.port, &format!("/ipfs/{cid}/{name}?format=car"), "");
    assert!(head.contains("application/vnd.ipld.car"), "{head}");
    assert!(car.len() < 100_000, "a path CAR carries the shards on the way, not the whole folder: {}", car.len());
    // A WASM job mounts the sharded folder and reads one file of it.
    let id = submit(&s, &["-i", &format!("ipfs://{cid}:/in"), &program("cat"), &format!("/in/{name}")]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "file 4117\n");
    // Export a CAR, unpin, collect: the blocks are gone; importing the CAR brings them back.
    let car_path = data.path().join("many.car");
    s.ok(&["ipfs", "dag", "export", &cid, "-o", &car_path.display().to_string()]);
    s.ok(&["ipfs", "pin", "rm", &cid]);
    let gc = s.ok(&["ipfs", "repo", "gc"]);
    assert!(gc.starts_with("removed ") && !gc.starts_with("removed 0 "), "{gc}");
    let (head, _) = raw_get(s.port, &format!("/ipfs/{cid}/{name}"), "");
    assert!(head.starts_with("http/1.1 404"), "collected: {head}");
    let imported = s.ok(&["ipfs", "dag", "import", &car_path.display().to_string()]);
    assert!(imported.contains(&format!("Pinned root {cid} success")), "{imported}");
    let (_, body) = raw_get(s.port, &format!("/ipfs/{cid}/{name}"), "");
    assert_eq!(body, b"file 4117\n");
    // A tampered CAR is refused, and says why.
    let mut bad = std::fs::read(&car_path).expect("read");
    let at = bad.len() - 2;
    bad[at] ^= 0xff;
    std::fs::write(&car_path, bad).expect("write");
    let err = s.fails(&["ipfs", "dag", "import", &car_path.display().to_string()]);
    assert!(err.contains("does not match its CID"), "{err}");
    // The raw-leaf CID of bytes no test adds (the empty file's CID is in the store as soon as
    // any job publishes an empty stderr).
    let err = s.fails(&["ipfs", "pin", "add", "bafkreid2axvfn7ci3dfhtmnkbmzmiv4pqzbi5qwfaraf6jtttocu7pbg2a"]);
    assert!(err.contains("cannot pin"), "{err}");
}

/// A GET with extra headers; returns the head (lower-cased) and the body bytes.
fn raw_get(port: u16, path: &str, headers: &str) -> (String, Vec<u8>) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(c, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n").expect("write");
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).expect("read");
    let split = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head");
    (String::from_utf8_lossy(&buf[..split]).to_lowercase(), buf[split + 4..].to_vec())
}

fn ipfs_file_cid(s: &Serve, path: &Path) -> String {
    let dir = s.dir.display().to_string();
    let out = s.cli_env(&["ipfs", "add", "-Q", &path.display().to_string()], &[("BACALHAU_DIR", &dir)]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn execution_timeout_fails_the_job_with_a_reason() {
    let s = serve();
    let spin = write_module(&s, "spin.wasm", spin_wat());
    let id = submit(&s, &["--execution-timeout", "1", &spin]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let d = describe(&s, &id);
    let msg = d["Job"]["State"]["Message"].as_str().unwrap_or_default();
    assert!(msg.contains("timed out after 1s"), "{msg}");
    let execs = d["Executions"]["Items"].as_array().expect("execs");
    assert_eq!(execs.len(), 1, "a timeout would happen again, so it is not retried");
    assert_eq!(msg, "execution timed out after 1s (ExecutionTimeout)");
}

#[test]
fn an_unschedulable_job_queues_until_its_queue_timeout() {
    let s = serve();
    let hello = program("hello");
    let id = submit(&s, &["--cpu", "64", "--queue-timeout", "2", &hello]);
    wait_for("the job to queue", DEADLINE, || (s.job_state(&id).ok()? == "Queued").then_some(())).expect("queued");
    let queued = describe(&s, &id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(queued.starts_with("Job queued. not enough nodes to run job"), "{queued}");
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = describe(&s, &id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("job needs more than the node can ever give: CPU 64 >"), "{msg}");
}

#[test]
fn follow_streams_output_while_the_job_runs() {
    let s = serve();
    let sleep = program("sleep");
    let out = s.ok(&["wasm", "run", "-f", "--id-only", &sleep, "300"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("j-"), "{out}");
    assert_eq!(&lines[1..], ["sleeping 300 ms", "done"], "{out}");
    // As Bacalhau's: the output ends with the log stream, nothing printed after the last line.
    let out = s.ok(&["wasm", "run", "--follow", &sleep, "100"]);
    assert!(out.starts_with("Job successfully submitted. Job ID: j-"), "{out}");
    assert!(out.ends_with("\nsleeping 100 ms\ndone\n"), "{out}");
    let id = submit(&s, &[&sleep, "500"]);
    let logs = s.ok(&["job", "logs", "--follow", &id]);
    assert_eq!(logs, "sleeping 500 ms\ndone\n");
}

#[test]
fn memory_limit_is_enforced() {
    let s = serve();
    let grow = write_module(&s, "grow.wasm", grow_wat(100));
    let id = submit(&s, &["--memory", "1Mb", &grow]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = describe(&s, &id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("out of memory") && msg.contains("Resources.Memory"), "{msg}");
}

#[test]
fn stop_interrupts_a_running_job() {
    let s = serve();
    let spin = write_module(&s, "spin.wasm", spin_wat());
    let id = submit(&s, &[&spin]);
    wait_for("the job to run", DEADLINE, || (s.job_state(&id).ok()? == "Running").then_some(())).expect("running");
    let out = s.ok(&["job", "stop", &id]);
    assert!(out.contains("Job stop successfully submitted"), "{out}");
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Stopped");
    wait_for("the execution to be cancelled", DEADLINE, || {
        let d = describe(&s, &id);
        (d["Executions"]["Items"][0]["ComputeState"]["StateType"] == 9).then_some(())
    })
    .expect("cancelled");
    // Stopping again is fine; stopping a completed job is a conflict with a reason.
    assert!(s.ok(&["job", "stop", &id]).contains("already stopped"));
    let exit = write_module(&s, "exit0.wasm", exit_wat(0));
    let done = submit(&s, &[&exit]);
    s.wait_terminal(&done).expect("finish");
    let err = s.fails(&["cancel", &done]);
    assert!(err.contains("cannot stop job") && err.contains("already completed"), "{err}");
}

fn spec_file(s: &Serve, name: &str, text: &str) -> PathBuf {
    let p = s.work.join(name);
    std::fs::write(&p, text).expect("write spec");
    p
}

#[test]
fn job_specs_in_yaml_run_and_bad_ones_are_rejected_precisely() {
    let s = serve();
    let module = std::fs::read(program("hello")).expect("module");
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(module)
    };
    let good = spec_file(
        &s,
        "good.yaml",
        &format!(
            "name: hello-yaml\ntype: batch\ntasks:\n  - name: main\n    engine:\n      type: wasm\n      params:\n        entrymodule: /wasm/main.wasm\n    inputsources:\n      - target: /wasm/main.wasm\n        source:\n          type: inline\n          params:\n            url: \"data:application/wasm;base64,{b64}\"\n"
        ),
    );
    let path = good.display().to_string();
    assert!(s.ok(&["job", "validate", &path]).contains("is valid"));
    let out = s.ok(&["job", "run", &path]);
    assert!(out.contains("Completed successfully"), "{out}");
    // Names resolve like IDs.
    assert!(s.ok(&["job", "describe", "hello-yaml"]).contains("Hello, world!"));

    let missing = spec_file(&s, "missing.yaml", "Type: batch\nTasks:\n  - Name: main\n    Engine:\n      Type: wasm\n");
    let err = s.fails(&["job", "run", &missing.display().to_string()]);
    assert!(err.contains("Tasks[0].Engine.Params.EntryModule is required"), "{err}");

    let typo = spec_file(&s, "typo.yaml", "Type: batch\nTasks:\n  - Name: main\n    Engin:\n      Type: wasm\n");
    let err = s.fails(&["job", "validate", &typo.display().to_string()]);
    assert!(err.contains("unknown field(s) Tasks[0].Engin"), "{err}");

    let owned = spec_file(&s, "owned.yaml", "ID: j-mine\nType: batch\nTasks: []\n");
    let err = s.fails(&["job", "run", &owned.display().to_string()]);
    assert!(err.contains("ID is set by the server"), "{err}");

    let syntax = spec_file(&s, "syntax.yaml", "Type: [batch\n");
    let err = s.fails(&["job", "run", &syntax.display().to_string()]);
    assert!(err.contains("not valid Yaml"), "{err}");

    let hello = program("hello");
    let err = s.fails(&["wasm", "run", "--cpu", "lots", &hello]);
    assert!(err.contains("Tasks[0].Resources.CPU is \"lots\""), "{err}");
    let err = s.fails(&["wasm", "run", "./missing.wasm"]);
    assert!(err.contains("./missing.wasm is not a local file"), "{err}");
    // A job that fails exits 0, as Bacalhau's CLI does, with the reason on stderr; our non-zero
    // status is behind --fail-on-job-failure.
    let out = s.cli(&["wasm", "run", "--cpu", "64", &hello]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{out:?}");
    assert!(err.contains("Error: job failed: not enough nodes to run job") && err.contains("CPU 64 >"), "{err}");
    let err = s.fails(&["wasm", "run", "--fail-on-job-failure", "--cpu", "64", &hello]);
    assert!(err.contains("not enough nodes to run job"), "{err}");
}

#[test]
fn a_missing_server_is_a_clear_error() {
    let port = bacalhau_testkit::free_port().expect("port").to_string();
    let out =
        std::process::Command::new(bin()).args(["job", "list"]).env("BACALHAU_API_PORT", &port).output().expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("cannot reach the bacalhau API at http://127.0.0.1:{port}")), "{err}");
    assert!(err.contains("bacalhau serve"), "{err}");
    // Flags win over the environment, in Bacalhau's `--flag=value` form too.
    let out = std::process::Command::new(bin())
        .args(["job", "list", "--api-port=1", "--api-host", "127.0.0.2"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://127.0.0.2:1"));
}

#[test]
fn the_api_answers_in_bacalhaus_shapes() {
    let s = serve();
    let doc: Value = serde_json::from_str(&s.get("/api/v1/openapi.json").expect("openapi")).expect("json");
    assert!(doc["paths"]["/api/v1/orchestrator/jobs/{id}/logs"]["get"].is_object());
    let nodes: Value = serde_json::from_str(&s.get("/api/v1/orchestrator/nodes").expect("nodes")).expect("json");
    assert_eq!(nodes["Nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(nodes["nodes"], nodes["Nodes"], "both spellings for Go and Python clients");
    assert_eq!(nodes["Nodes"][0]["Connection"], "CONNECTED");
    assert!(
        nodes["Nodes"][0]["Info"]["ComputeNodeInfo"]["ExecutionEngines"]
            .as_array()
            .expect("engines")
            .contains(&"wasm".into())
    );
    let node = s.ok(&["node", "list"]);
    assert!(node.contains("CONNECTED") && node.contains("wasm"), "{node}");
    let alive = s.ok(&["agent", "alive", "--output", "json"]);
    assert!(alive.contains("\"Status\": \"OK\""), "{alive}");
    let id = submit(&s, &[&program("hello")]);
    s.wait_terminal(&id).expect("finish");
    // The 1.4 Python client reads logs with a plain GET.
    assert_eq!(s.get(&format!("/api/v1/orchestrator/jobs/{id}/logs")).expect("logs"), "Hello, world!\n");
    let list: Value = serde_json::from_str(
        &s.get("/api/v1/orchestrator/jobs?limit=5&reverse=False&order_by=created_at&next_token=").expect("list"),
    )
    .expect("json");
    assert_eq!(list["Items"][0]["ID"], Value::String(id.clone()));
    let h: Value = serde_json::from_str(
        &s.get(&format!("/api/v1/orchestrator/jobs/{id}/history?event_type=execution")).expect("h"),
    )
    .expect("json");
    assert!(h["Items"].as_array().expect("items").iter().all(|i| i["Type"] == "ExecutionLevel"));
    let err = s.get("/api/v1/orchestrator/jobs?labels=%3Deu").expect_err("400");
    assert!(err.to_string().contains("has an empty key"), "{err}");
    let err = s.fails(&["wasm", "run", "--constraints", "=eu", &program("hello")]);
    assert!(err.contains("label selector \"=eu\" has an empty key"), "{err}");
    let err = s.get("/api/v1/orchestrator/jobs/j-nope").expect_err("404");
    assert!(err.to_string().contains("404"), "{err}");
    // Every GET route the document lists is served (the fallback answers "no API route").
    let d = describe(&s, &id);
    let exec = d["Executions"]["Items"][0]["ID"].as_str().expect("exec").to_owned();
    let node = nodes["Nodes"][0]["Info"]["NodeID"].as_str().expect("node").to_owned();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if item.get("get").is_none() {
            continue;
        }
        let url = path
            .replace("{file}", &format!("{exec}.tar.gz"))
            .replace("{id}", if path.contains("/nodes/") { &node } else { &id });
        let body = bacalhau_testkit::http_get(s.port, &url).unwrap_or_else(|e| e.to_string());
        assert!(!body.contains("no API route"), "{url}: {body}");
    }
}

#[test]
fn jobs_in_flight_survive_kill_9_and_none_completes_twice() {
    let mut s = serve();
    let sleep = program("sleep");
    let ids: Vec<String> = (0..4).map(|_| submit(&s, &["--cpu", "0.1", &sleep, "1500"])).collect();
    wait_for("a job to run", DEADLINE, || {
        ids.iter().any(|id| s.job_state(id).ok().as_deref() == Some("Running")).then_some(())
    })
    .expect("running");
    s.kill9().expect("kill -9");
    s.restart().expect("restart");
    for id in &ids {
        assert_eq!(s.wait_terminal(id).expect("finish"), "Completed", "job {id}\n{}", s.log());
        let d = describe(&s, id);
        let completed = d["Executions"]["Items"]
            .as_array()
            .expect("execs")
            .iter()
            .filter(|e| e["ComputeState"]["StateType"] == 7)
            .count();
        assert_eq!(completed, 1, "job {id} completed {completed} times");
        assert_eq!(s.ok(&["job", "logs", id]), "sleeping 1500 ms\ndone\n");
    }
    // Jobs submitted after the restart run too.
    let after = submit(&s, &[&program("hello")]);
    assert_eq!(s.wait_terminal(&after).expect("finish"), "Completed");
}

/// `/metrics` is Prometheus' text format and counts what happened: a job's submission, bids,
/// states and latencies, the compute node's outcome, the API's requests by route pattern (not
/// by raw path) and status, a refused submission; the gauges follow what is in flight and the
/// node's capacity. Every series the repo's Grafana dashboard queries is one the node exports.
#[test]
fn metrics_count_a_jobs_life_and_feed_the_dashboard() {
    let s = serve();
    let out = s.ok(&["wasm", "run", &program("hello")]);
    assert!(out.contains("Completed"), "{out}");
    let spec = br#"{"Job": {"Type": "batch", "Tasks": [{"Name": "t", "Engine": {"Type": "wasm", "Params": {}}}]}}"#;
    let (status, body) = bacalhau_testkit::http_request(
        s.port,
        "PUT",
        "/api/v1/orchestrator/jobs",
        &[("Content-Type", "application/json")],
        spec,
    )
    .expect("put");
    assert_eq!(status, 400, "{body}");

    // The gauges are taken once a second: poll until they show the node, and no job in flight.
    let scrape = wait_for("the node in the gauges", DEADLINE, || {
        let (status, text) = bacalhau_testkit::http_request(s.port, "GET", "/metrics", &[], b"").ok()?;
        assert_eq!(status, 200, "{text}");
        let scrape = bacalhau_testkit::Scrape::parse(&text).expect("Prometheus text");
        let node = scrape.sum("bacalhau_nodes", &[("membership", "APPROVED"), ("connection", "CONNECTED")]);
        (node == 1.0 && scrape.sum("bacalhau_jobs", &[]) == 0.0).then_some(scrape)
    })
    .expect("gauges");
    let batch = [("type", "batch")];
    assert_eq!(scrape.sum("bacalhau_job_submissions_total", &[("type", "batch"), ("result", "accepted")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_job_submissions_total", &[("type", "batch"), ("result", "refused")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_job_state_changes_total", &[("type", "batch"), ("state", "Completed")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_bids_total", &[("by", "node"), ("result", "accepted")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_bids_total", &[("by", "orchestrator"), ("result", "accepted")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_compute_executions_total", &[("outcome", "completed")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_compute_bids_total", &[("result", "accepted")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_job_scheduling_seconds_count", &batch), 1.0);
    assert_eq!(scrape.sum("bacalhau_job_duration_seconds_count", &[("type", "batch"), ("state", "Completed")]), 1.0);
    assert!(scrape.sum("bacalhau_store_commit_seconds_count", &[("store", "jobs")]) >= 1.0);
    assert!(scrape.sum("bacalhau_store_commit_seconds_count", &[("store", "executions")]) >= 1.0);
    assert!(scrape.sum("bacalhau_store_size_bytes", &[("store", "jobs")]) > 0.0);
    assert!(scrape.sum("bacalhau_node_capacity", &[("resource", "cpu_millis")]) > 0.0);
    let put = [("method", "PUT"), ("route", "/api/v1/orchestrator/jobs")];
    assert_eq!(scrape.sum("bacalhau_api_requests_total", &[put[0], put[1], ("status", "200")]), 1.0);
    assert_eq!(scrape.sum("bacalhau_api_requests_total", &[put[0], put[1], ("status", "400")]), 1.0);
    // Routes are labelled by pattern: no series carries a job ID.
    assert!(scrape.sum("bacalhau_api_requests_total", &[("route", "/api/v1/orchestrator/jobs/{id}/history")]) >= 1.0);
    for sample in scrape.samples.iter().filter(|x| x.name == "bacalhau_api_requests_total") {
        assert!(!sample.labels["route"].contains("j-"), "a raw path as a label: {sample:?}");
    }
    assert_eq!(scrape.types.get("bacalhau_job_scheduling_seconds").map(String::as_str), Some("histogram"));

    // The dashboard in the repo queries only series the node exports.
    let dashboard =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/grafana/bacalhau.json"))
            .expect("dashboard");
    let dashboard: Value = serde_json::from_str(&dashboard).expect("dashboard JSON");
    let mut queried = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let mut rest = expr;
            while let Some(at) = rest.find("bacalhau_") {
                let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                rest = &rest[at + name.len()..];
                queried.insert(name);
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for name in &queried {
        assert!(scrape.has(name), "the dashboard queries {name}, which the node does not export");
    }
}

/// One span as the collector received it.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    name: String,
    trace_id: String,
    span_id: String,
    parent: String,
    attributes: std::collections::BTreeMap<String, String>,
}

type Exports = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// An OTLP/HTTP collector on loopback: it keeps every export's path and protobuf body.
fn otlp_collector() -> (u16, Exports) {
    use std::io::{BufRead, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let exports: Exports = Default::default();
    let store = exports.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
                let Ok(read_half) = conn.try_clone() else { return };
                let mut reader = std::io::BufReader::new(read_half);
                let mut writer = conn;
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    store.lock().expect("lock").push((path, body));
                    let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
                    if writer.write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, exports)
}

/// Every span exported so far.
fn exported_spans(exports: &Exports) -> Vec<ReceivedSpan> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
    use prost::Message as _;
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut out = Vec::new();
    for (path, body) in exports.lock().expect("lock").iter().filter(|(p, _)| p == "/v1/traces") {
        let req = ExportTraceServiceRequest::decode(body.as_slice()).unwrap_or_else(|e| panic!("{path}: {e}"));
        for span in req.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
            let attributes = span
                .attributes
                .iter()
                .map(|kv| {
                    let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                        Some(Any::StringValue(s)) => s.clone(),
                        Some(other) => format!("{other:?}"),
                        None => String::new(),
                    };
                    (kv.key.clone(), v)
                })
                .collect();
            out.push(ReceivedSpan {
                name: span.name.clone(),
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent: hex(&span.parent_span_id),
                attributes,
            });
        }
    }
    out
}

/// The names of every metric exported so far.
fn exported_metrics(exports: &Exports) -> std::collections::BTreeSet<String> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use prost::Message as _;
    let mut out = std::collections::BTreeSet::new();
    for (path, body) in exports.lock().expect("lock").iter().filter(|(p, _)| p == "/v1/metrics") {
        let req = ExportMetricsServiceRequest::decode(body.as_slice()).unwrap_or_else(|e| panic!("{path}: {e}"));
        for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
            out.insert(m.name.clone());
        }
    }
    out
}

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set (Bacalhau's telemetry setting), a job is one trace
/// from the API through its placement to the compute node's execution and its phases (input,
/// run, publish), each the child of the one before; a client's `traceparent` header makes the
/// job part of the client's trace; and the node's metrics are exported too.
#[test]
fn otlp_exports_a_jobs_trace_and_the_metrics() {
    let (collector, exports) = otlp_collector();
    let endpoint = format!("http://127.0.0.1:{collector}");
    let s = Serve::start_env(
        bin(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ],
    )
    .expect("serve");
    let id = s.submit_wasm(&[&program("hello")]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    let of_job = |name: &str| {
        exported_spans(&exports).into_iter().find(|x| x.name == name && x.attributes.get("job_id") == Some(&id))
    };
    let trace = wait_for("the job's spans at the collector", DEADLINE, || {
        Some((of_job("submit_job")?, of_job("schedule")?, of_job("execution")?))
    })
    .expect("spans");
    let (submit, schedule, execution) = trace;
    assert_eq!(schedule.trace_id, submit.trace_id, "{schedule:?} {submit:?}");
    assert_eq!(schedule.parent, submit.span_id);
    assert_eq!(execution.trace_id, submit.trace_id);
    assert_eq!(execution.parent, schedule.span_id);
    let phases = wait_for("the execution's phases", DEADLINE, || {
        let children: Vec<String> =
            exported_spans(&exports).into_iter().filter(|x| x.parent == execution.span_id).map(|x| x.name).collect();
        (children.iter().any(|n| n == "run") && children.iter().any(|n| n == "publish")).then_some(children)
    })
    .expect("phases");
    assert!(phases.iter().all(|p| ["prepare_input", "run", "publish"].contains(&p.as_str())), "{phases:?}");

    // A client's trace continues through the job.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent = format!("00-{client_trace}-00f067aa0ba902b7-01");
    let module = bacalhau_testkit::hello_wat().expect("module");
    let job = bacalhau_testkit::wasm_job(&bacalhau_testkit::wasm_data_url(&module), 1);
    let spec = serde_json::json!({ "Job": job }).to_string();
    let (status, body) = bacalhau_testkit::http_request(
        s.port,
        "PUT",
        "/api/v1/orchestrator/jobs",
        &[("Content-Type", "application/json"), ("traceparent", parent.as_str())],
        spec.as_bytes(),
    )
    .expect("put");
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("json");
    let id2 = answer["JobID"].as_str().expect("job id").to_owned();
    let submit2 = wait_for("the client-traced submission", DEADLINE, || {
        exported_spans(&exports)
            .into_iter()
            .find(|x| x.name == "submit_job" && x.attributes.get("job_id") == Some(&id2))
    })
    .expect("span");
    assert_eq!(submit2.trace_id, client_trace);
    assert_eq!(submit2.parent, "00f067aa0ba902b7");
    // A malformed or oversized one is ignored: the job starts a trace of its own.
    for bad in ["00-zz-yy-01".to_owned(), format!("00-{}-00f067aa0ba902b7-01", "a".repeat(4000))] {
        let (status, body) = bacalhau_testkit::http_request(
            s.port,
            "PUT",
            "/api/v1/orchestrator/jobs",
            &[("Content-Type", "application/json"), ("traceparent", bad.as_str())],
            spec.as_bytes(),
        )
        .expect("put");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).expect("json");
        let id3 = answer["JobID"].as_str().expect("job id").to_owned();
        let own = wait_for("the submission's own trace", DEADLINE, || {
            exported_spans(&exports)
                .into_iter()
                .find(|x| x.name == "submit_job" && x.attributes.get("job_id") == Some(&id3))
        })
        .expect("span");
        assert!(own.parent.is_empty() && own.trace_id != client_trace, "{own:?}");
    }

    // The same metrics as /metrics go out over OTLP.
    let names = wait_for("the node's metrics at the collector", DEADLINE, || {
        let names = exported_metrics(&exports);
        (names.contains("bacalhau_job_submissions_total") && names.contains("bacalhau_job_scheduling_seconds"))
            .then_some(names)
    })
    .expect("metrics");
    assert!(names.contains("bacalhau_api_requests_total"), "{names:?}");
}

/// The web UI is at `/` by default on loopback, with strict headers; `WebUI.Listen` serves it
/// (and the API it calls) on a second address too; `WebUI.Enabled=false` turns it off with a
/// hint; a `WebUI.Listen` beyond loopback without users is refused like the API's address.
#[test]
fn the_web_ui_follows_bacalhaus_settings() {
    let ui_port = bacalhau_testkit::free_port().expect("port");
    let listen = format!("WebUI.Listen=127.0.0.1:{ui_port}");
    let s = Serve::start(bin(), &["-c", &listen]).expect("serve");
    for port in [s.port, ui_port] {
        let (status, page) = bacalhau_testkit::http_request(port, "GET", "/", &[], b"").expect("page");
        assert_eq!(status, 200, "{page}");
        assert!(page.contains("/ui/app.js"), "{page}");
        let (status, _) = bacalhau_testkit::http_request(port, "GET", "/ui/app.js", &[], b"").expect("script");
        assert_eq!(status, 200);
        let (status, body) =
            bacalhau_testkit::http_request(port, "GET", "/api/v1/agent/alive", &[], b"").expect("alive");
        assert_eq!(status, 200, "{body}");
    }
    let (status, body) = bacalhau_testkit::http_request(s.port, "GET", "/ui/other.js", &[], b"").expect("missing");
    assert_eq!(status, 404, "{body}");
    // The page's policy: no inline script, no other origin, no framing.
    let raw = std::process::Command::new("curl")
        .args(["-sI", &format!("http://127.0.0.1:{}/", s.port)])
        .output()
        .expect("curl");
    let head = String::from_utf8_lossy(&raw.stdout).to_ascii_lowercase();
    assert!(head.contains("content-security-policy: default-src 'none'; script-src 'self'"), "{head}");
    assert!(head.contains("x-frame-options: deny"), "{head}");
    drop(s);

    let off = Serve::start(bin(), &["-c", "WebUI.Enabled=false"]).expect("serve");
    let (status, body) = bacalhau_testkit::http_request(off.port, "GET", "/", &[], b"").expect("page");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("WebUI.Enabled"), "{body}");

    let out = std::process::Command::new(bin())
        .args(["serve", "--api-port", "0", "-c", "WebUI.Listen=0.0.0.0:0"])
        .env("BACALHAU_DIR", tempfile::tempdir().expect("tmp").path())
        .output()
        .expect("serve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("WebUI.Listen") && err.contains("without authentication"), "{err}");
}
