//! End-to-end tests of Docker jobs: a real `bacalhau serve` with the real Docker engine and
//! the `busybox` image that `scripts/test-images` builds with `docker import`.
//! Containers run with no network; nothing here pulls from a registry.

use std::path::Path;
use std::process::Command;

use bacalhau_testkit::{DEADLINE, Serve, free_port, wait_for};
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

/// A serve that offers docker; fails the test if the engine or an image is missing.
fn serve(extra: &[&str]) -> Serve {
    let s = Serve::start(bin(), extra).expect("serve");
    for image in ["busybox:latest", "ubuntu:latest"] {
        let out = Command::new("docker").args(["image", "inspect", image]).output().expect("docker");
        assert!(out.status.success(), "{image} is missing: run scripts/test-images");
    }
    let nodes: Value = serde_json::from_str(&s.get("/api/v1/orchestrator/nodes").expect("nodes")).expect("json");
    let engines = nodes["Nodes"][0]["Info"]["ComputeNodeInfo"]["ExecutionEngines"].clone();
    assert!(
        engines.as_array().expect("engines").contains(&"docker".into()),
        "docker not offered: {engines}\n{}",
        s.log()
    );
    s
}

fn submit(s: &Serve, args: &[&str]) -> String {
    let mut full = vec!["docker", "run", "--wait=false"];
    full.extend_from_slice(args);
    s.ok(&full).trim().to_owned()
}

fn describe(s: &Serve, id: &str) -> Value {
    serde_json::from_str(&s.ok(&["job", "describe", id, "--output", "json"])).expect("describe json")
}

fn message(s: &Serve, id: &str) -> String {
    describe(s, id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned()
}

fn containers_of(node_label_value: &str) -> String {
    let out = Command::new("docker")
        .args(["ps", "-a", "-q", "--filter", &format!("label=org.bacalhau-rs.node={node_label_value}")])
        .output()
        .expect("docker ps");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn node_id(s: &Serve) -> String {
    std::fs::read_to_string(s.dir.join("node_id")).expect("node id")
}

#[test]
fn the_seed_commands_work_as_typed() {
    let s = serve(&[]);
    let out = s.ok(&["docker", "run", "busybox", "echo", "Hello", "World"]);
    assert!(out.contains("Completed successfully"), "{out}");
    let id =
        out.lines().find_map(|l| l.strip_prefix("Job successfully submitted. Job ID: ")).expect("job id").to_owned();
    let list = s.ok(&["list", &format!("--id-filter={id}")]);
    assert!(list.contains(&id[..10]) && list.contains("docker") && list.contains("Completed"), "{list}");
    assert_eq!(s.ok(&["logs", &id]), "Hello World\n");
    wait_for("the container to be removed", DEADLINE, || containers_of(&node_id(&s)).is_empty().then_some(()))
        .expect("containers are removed");
}

#[test]
fn the_seed_ubuntu_command_and_python_example() {
    let data = tempfile::tempdir().expect("tmp");
    let code = std::fs::canonicalize(data.path()).expect("canon");
    std::fs::write(code.join("count.py"), "for i in range(101):\n    print(i)\n").expect("script");
    let s = serve(&["--allow-listed-local-paths", &code.display().to_string()]);
    let out = s.ok(&["docker", "run", "ubuntu", "echo", "Hello", "World"]);
    assert!(out.contains("Completed successfully"), "{out}");
    let id = out.lines().find_map(|l| l.strip_prefix("Job successfully submitted. Job ID: ")).expect("id").to_owned();
    assert_eq!(s.ok(&["logs", &id]), "Hello World\n");

    // The seed's Python example, with the script mounted from the node (IPFS comes later).
    let input = format!("file://{}:/code", code.display());
    let id = submit(&s, &["-i", &input, "-p", "local", "ubuntu", "python3", "/code/count.py"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    s.ok(&["job", "get", &id, "--output-dir", "py"]);
    let expected: String = (0..=100).map(|i| format!("{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(s.work.join("py/stdout")).expect("stdout"), expected);
}

fn ipfs_add(s: &Serve, path: &Path) -> String {
    let dir = s.dir.display().to_string();
    let out = s.cli_env(&["ipfs", "add", "-r", "-Q", &path.display().to_string()], &[("BACALHAU_DIR", &dir)]);
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_seed_ipfs_command_and_python_example_through_ipfs() {
    let s = serve(&[]);
    let data = tempfile::tempdir().expect("tmp");
    std::fs::write(data.path().join("x.txt"), "hello from ipfs\n").expect("write");
    std::fs::write(data.path().join("count.py"), "for i in range(101):\n    print(i)\n").expect("write");
    let cid = ipfs_add(&s, data.path());
    assert!(cid.starts_with("Qm"), "{cid}");
    // The seed's third command, verbatim.
    let out = s.ok(&["docker", "run", "-v", &format!("{cid}:/files"), "ubuntu", "cat", "/files/x.txt"]);
    assert!(out.contains("Completed successfully"), "{out}");
    let id = out.lines().find_map(|l| l.strip_prefix("Job successfully submitted. Job ID: ")).expect("id").to_owned();
    assert_eq!(s.ok(&["logs", &id]), "hello from ipfs\n");

    // The Python example: script from IPFS, output published to IPFS, fetched by CID.
    let id = submit(&s, &["-i", &format!("ipfs://{cid}:/code"), "-p", "ipfs", "ubuntu", "python3", "/code/count.py"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    let result = describe(&s, &id)["Executions"]["Items"][0]["PublishedResult"].clone();
    assert_eq!(result["Type"], "ipfs");
    let result_cid = result["Params"]["CID"].as_str().expect("cid").to_owned();
    assert!(s.ok(&["job", "describe", &id]).contains(&result_cid), "describe shows the result CID");
    s.ok(&["job", "get", &id, "--output-dir", "py"]);
    let expected: String = (0..=100).map(|i| format!("{i}\n")).collect();
    assert_eq!(std::fs::read_to_string(s.work.join("py/stdout")).expect("stdout"), expected);
    assert!(!s.work.join("py/raw").exists());

    // A CID the node does not hold fails the job with a reason naming it.
    let missing = "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD"; // "hello world", never added here
    let id = submit(&s, &["-v", &format!("{missing}:/in"), "busybox", "ls", "/in"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    assert!(message(&s, &id).contains(&format!("{missing} is not in this node's IPFS store")), "{}", message(&s, &id));
}

#[test]
fn exit_codes_env_workdir_and_entrypoint() {
    let s = serve(&[]);
    let id = submit(&s, &["busybox", "sh", "-c", "exit 3"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(describe(&s, &id)["Executions"]["Items"][0]["RunOutput"]["ExitCode"], 3);

    let id = submit(
        &s,
        &[
            "-e",
            "FOO=bar",
            "-w",
            "/tmp",
            "--entrypoint",
            "/bin/sh",
            "busybox",
            "--",
            "-c",
            "echo $FOO $(pwd) $BACALHAU_JOB_ID",
        ],
    );
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["logs", &id]), format!("bar /tmp {id}\n"));
}

#[test]
fn inputs_are_read_only_and_results_are_published() {
    let data = tempfile::tempdir().expect("tmp");
    let dir = std::fs::canonicalize(data.path()).expect("canon");
    std::fs::write(dir.join("in.txt"), "kiwi is delicious\n").expect("write");
    let s = serve(&["--allow-listed-local-paths", &dir.display().to_string()]);
    let input = format!("file://{}:/in", dir.display());
    let script =
        "cat /in/in.txt; echo 15 > /outputs/x.txt; touch /in/nope 2>/dev/null && echo writable || echo read-only";
    let id = submit(&s, &["-i", &input, "-o", "outputs:/outputs", "busybox", "sh", "-c", script]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    assert_eq!(s.ok(&["logs", &id]), "kiwi is delicious\nread-only\n");
    s.ok(&["job", "get", &id, "--output-dir", "res"]);
    assert_eq!(std::fs::read_to_string(s.work.join("res/outputs/x.txt")).expect("result"), "15\n");
    assert_eq!(std::fs::read_to_string(s.work.join("res/exitCode")).expect("exit"), "0");
}

#[test]
fn a_url_input_is_downloaded_into_the_container_read_only() {
    let data = tempfile::tempdir().expect("tmp");
    let served = data.path().join("www");
    std::fs::create_dir_all(served.join("sub")).expect("mkdir");
    std::fs::write(served.join("sub/prices.csv"), "fish,3\n").expect("write");
    let http = bacalhau_testkit::HttpServer::start(&served).expect("http.server");
    let s = serve(&[]);
    let input = format!("http://127.0.0.1:{}/sub/prices.csv:/inputs", http.port);
    let script =
        "ls /inputs; cat /inputs/prices.csv; touch /inputs/nope 2>/dev/null && echo writable || echo read-only";
    let id = submit(&s, &["-i", &input, "busybox", "sh", "-c", script]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    assert_eq!(s.ok(&["logs", &id]), "prices.csv\nfish,3\nread-only\n");
}

#[test]
fn limits_timeouts_and_stop() {
    let s = serve(&[]);
    let oom = submit(&s, &["--memory", "20Mb", "busybox", "sh", "-c", "x=a; while true; do x=$x$x; done"]);
    assert_eq!(s.wait_terminal(&oom).expect("finish"), "Failed");
    let m = message(&s, &oom);
    assert!(m.starts_with("out of memory") && m.contains("exit code 137"), "{m}");

    let slow = submit(&s, &["--execution-timeout", "1", "busybox", "sleep", "30"]);
    assert_eq!(s.wait_terminal(&slow).expect("finish"), "Failed");
    assert!(message(&s, &slow).starts_with("execution timed out after 1s"), "{}", message(&s, &slow));

    let long = submit(&s, &["busybox", "sleep", "300"]);
    wait_for("the container to run", DEADLINE, || (!containers_of(&node_id(&s)).is_empty()).then_some(()))
        .expect("run");
    s.ok(&["job", "stop", &long]);
    assert_eq!(s.wait_terminal(&long).expect("finish"), "Stopped");
    wait_for("the container to go", DEADLINE, || containers_of(&node_id(&s)).is_empty().then_some(()))
        .expect("removed");
}

#[test]
fn the_disk_limit_is_enforced() {
    let s = serve(&[]);
    // Stopped while running...
    let id = submit(
        &s,
        &["--disk", "2mb", "-o", "out:/out", "busybox", "sh", "-c", "head -c 8000000 /dev/zero > /out/big; sleep 60"],
    );
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let m = message(&s, &id);
    assert!(m.contains("disk limit exceeded") && m.contains("raise --disk"), "{m}");
    // ...and caught at the end when it finished between two checks.
    let id = submit(&s, &["--disk", "2mb", "busybox", "sh", "-c", "head -c 8000000 /dev/zero > /big"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    assert!(message(&s, &id).contains("disk limit exceeded"));
    let id = submit(&s, &["--disk", "20mb", "busybox", "sh", "-c", "head -c 1000000 /dev/zero > /small"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
}

#[test]
fn no_network_by_default() {
    let s = serve(&[]);
    let id = submit(&s, &["busybox", "ls", "/sys/class/net"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["logs", &id]), "lo\n", "only loopback inside the container");
}

#[test]
fn network_http_reaches_only_the_allowed_domains() {
    // The "web": a server on this machine's loopback, reachable by the name localhost.
    let origin = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = origin.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in origin.incoming().flatten() {
            let _ = c.read(&mut [0u8; 4096]);
            let _ = c.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 16\r\nConnection: close\r\n\r\nallowed host hi\n");
        }
    });
    let s = serve(&[]);
    let script = format!(
        r#"import urllib.request, urllib.error
print("allowed:", urllib.request.urlopen("http://localhost:{port}/", timeout=20).read().decode().strip())
try:
    urllib.request.urlopen("http://example.com/", timeout=20)
except urllib.error.HTTPError as e:
    print("denied:", e.code)"#
    );
    let id = submit(&s, &["--network", "http", "--domain", "localhost", "ubuntu", "python3", "-c", &script]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", s.ok(&["logs", &id]));
    assert_eq!(s.ok(&["logs", &id]), "allowed: allowed host hi\ndenied: 403\n");
    // Everything else is cut off by the network itself: internal (nothing forwarded beyond
    // the bridge) and without traffic between containers.
    let out = Command::new("docker")
        .args(["network", "inspect", "bacalhau-rs-http", "--format"])
        .arg(r#"{{.Internal}} {{index .Options "com.docker.network.bridge.enable_icc"}}"#)
        .output()
        .expect("docker network inspect");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "true false");
}

#[test]
fn bad_images_and_paths_are_clear_errors() {
    let s = serve(&[]);
    // A registry on a closed loopback port: the engine tries it and fails without leaving
    // the machine.
    let image = format!("127.0.0.1:{}/nosuch:1", free_port().expect("port"));
    let id = submit(&s, &[&image, "true"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let m = message(&s, &id);
    assert!(m.starts_with(&format!("image {image} is not available locally and could not be pulled:")), "{m}");

    let err = s.fails(&["docker", "run", "-o", "x:/outputs/../etc", "busybox", "true"]);
    assert!(
        err.contains("Tasks[0].ResultPaths[0].Path is \"/outputs/../etc\": it must be an absolute path without .."),
        "{err}"
    );
    let err = s.fails(&["docker", "run", "-w", "relative", "busybox", "true"]);
    assert!(err.contains("Engine.Params.WorkingDirectory is \"relative\""), "{err}");
}

#[test]
fn containers_left_by_a_crash_are_removed_at_start() {
    let mut s = serve(&[]);
    let node = node_id(&s);
    s.kill9().expect("kill");
    let out = Command::new("docker")
        .args([
            "create",
            "--label",
            &format!("org.bacalhau-rs.node={node}"),
            "--label",
            "org.bacalhau-rs.execution=e-orphan",
            "busybox",
            "true",
        ])
        .output()
        .expect("docker create");
    assert!(out.status.success(), "{out:?}");
    assert!(!containers_of(&node).is_empty());
    s.restart().expect("restart");
    wait_for("the orphan to go", DEADLINE, || containers_of(&node).is_empty().then_some(())).expect("orphan removed");
}

#[test]
fn hostile_results_neither_escape_nor_keep_setuid_bits_or_fifos() {
    let s = serve(&[]);
    let victim = s.work.join("victim");
    std::fs::create_dir(&victim).expect("mkdir");
    // Two partitions: one makes outputs/x a symlink to the user's folder, the other a folder
    // with a file in it. Merging must not write through the symlink, whichever comes first.
    let script = format!(
        "if [ \"$BACALHAU_PARTITION_INDEX\" = 0 ]; then ln -s {} /outputs/x; else mkdir /outputs/x && echo owned > /outputs/x/f; fi",
        victim.display()
    );
    let id = submit(&s, &["--count", "2", "-p", "local", "-o", "outputs:/outputs", "busybox", "sh", "-c", &script]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    let err = s.fails(&["job", "get", &id, "--output-dir", "merged"]);
    assert!(err.contains("cannot merge results"), "{err}");
    assert_eq!(std::fs::read_dir(&victim).expect("ls").count(), 0, "a result wrote through a symlink");

    // A setuid program in a result reaches nobody with its bit set.
    let id = submit(
        &s,
        &[
            "-p",
            "local",
            "-o",
            "outputs:/outputs",
            "busybox",
            "sh",
            "-c",
            "cp /bin/busybox /outputs/sh && chmod 6755 /outputs/sh",
        ],
    );
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", message(&s, &id));
    s.ok(&["job", "get", &id, "--output-dir", "suid"]);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.work.join("suid/outputs/sh")).expect("sh").permissions().mode();
    assert_eq!(mode & 0o7000, 0, "setuid/setgid kept: {mode:o}");

    // A FIFO fails the job, naming it, instead of hanging the publisher.
    let id = submit(&s, &["-p", "local", "-o", "outputs:/outputs", "busybox", "mkfifo", "/outputs/pipe"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = message(&s, &id);
    assert!(msg.contains("outputs/pipe is a FIFO"), "{msg}");
}

#[test]
fn containers_run_without_privileges_they_do_not_need() {
    let s = serve(&[]);
    // No capability to make device nodes, a bounded process table (cgroup v2 or v1), no
    // privilege gain.
    let id = submit(
        &s,
        &[
            "busybox",
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/pids/pids.max 2>/dev/null; mknod /tmp/d c 1 3 && echo MKNOD-WORKED",
        ],
    );
    s.wait_terminal(&id).expect("finish");
    let out = s.ok(&["logs", &id]);
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    assert!(!out.contains("MKNOD-WORKED"), "{out}");
    assert!(out.contains("4096"), "pids limit missing: {out}");
    let cap_eff = out.lines().find_map(|l| l.strip_prefix("CapEff:\t")).expect("CapEff");
    let caps = u64::from_str_radix(cap_eff.trim(), 16).expect("hex");
    // Docker's default set is 0xa80425fb; MKNOD is bit 27, NET_RAW bit 13.
    assert_eq!(caps & (1 << 27), 0, "{cap_eff}");
    assert_eq!(caps & (1 << 13), 0, "{cap_eff}");
    assert_ne!(caps & (1 << 0), 0, "CHOWN is kept: {cap_eff}");
    // Without API authentication, a job on the host's network could drive the API: declined.
    let id = submit(
        &s,
        &[
            "--network",
            "host",
            "busybox",
            "wget",
            "-qO-",
            &format!("http://127.0.0.1:{}/api/v1/orchestrator/jobs", s.port),
        ],
    );
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let d = describe(&s, &id).to_string();
    assert!(d.contains("API has no authentication"), "{d}");
}
