//! A Bacalhau user's habits, end to end through the CLI on a real `serve`: the config system,
//! job specs in Bacalhau's older and looser forms, dynamic linking, and the run flags' forms.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bacalhau_testkit::{Serve, c_program};
use base64::Engine as _;
use serde_json::Value;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn program(name: &str) -> PathBuf {
    c_program(name).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The CLI with no BACALHAU_* settings but a data dir of its own.
fn cli_in(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("BACALHAU_") || k == "LOG_LEVEL") {
        cmd.env_remove(k);
    }
    cmd.args(args).env("BACALHAU_DIR", dir).output().expect("run the CLI")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn config_set_list_and_default_use_bacalhaus_keys() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path();
    let o = cli_in(dir, &["config", "set", "API.Port=1235"]);
    assert!(o.status.success(), "{o:?}");
    let o = cli_in(dir, &["config", "set", "compute.allowlistedlocalpaths", "/data", "/scratch:rw"]);
    assert!(o.status.success(), "{o:?}");
    let file = std::fs::read_to_string(dir.join("config.yaml")).expect("config.yaml written");
    assert!(file.contains("Port: 1235") && file.contains("/scratch:rw"), "{file}");
    let list: Vec<Value> =
        serde_json::from_str(&text(&cli_in(dir, &["config", "list", "--output", "json"])).0).expect("json");
    let value = |k: &str| list.iter().find(|e| e["Key"] == k).map(|e| e["Value"].clone()).expect("listed");
    assert_eq!(value("API.Port"), "1235");
    assert_eq!(value("Compute.AllowListedLocalPaths"), "/data,/scratch:rw");
    assert_eq!(value("JobDefaults.Batch.Task.Publisher.Type"), "ipfs");
    // The environment beats the file, and -c beats the environment.
    let mut cmd = Command::new(bin());
    let o = cmd
        .args(["config", "list", "--output", "json", "-c", "API.Host=10.1.2.3"])
        .env("BACALHAU_DIR", dir)
        .env("BACALHAU_API_PORT", "1300")
        .env("BACALHAU_API_HOST", "10.9.9.9")
        .output()
        .expect("run");
    let list: Vec<Value> = serde_json::from_str(&text(&o).0).expect("json");
    let find = |k: &str| list.iter().find(|e| e["Key"] == k).map(|e| e["Value"].clone()).expect("listed");
    assert_eq!((find("API.Port"), find("API.Host")), ("1300".into(), "10.1.2.3".into()));
    // A key that does not exist is refused with the nearest one, and the file is untouched.
    let o = cli_in(dir, &["config", "set", "API.Prot=1"]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("did you mean API.Port?"), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("config.yaml")).expect("read"), file);
    let o = cli_in(dir, &["job", "list", "-c", "JobDefaults.Batch.Task.Publisher.Typ=local"]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("did you mean JobDefaults.Batch.Task.Publisher.Type?"), "{err}");
    // A misspelt key in the file stops every command that reads it, naming the fix.
    std::fs::write(dir.join("config.yaml"), "Compute:\n  AllowListedLocalPath: [/data]\n").expect("write");
    let (_, err) = text(&cli_in(dir, &["config", "list"]));
    assert!(err.contains("did you mean Compute.AllowListedLocalPaths?"), "{err}");
    let (out, _) = text(&cli_in(dir, &["config", "default"]));
    let defaults: Value = serde_json::to_value(yaml_serde::from_str::<Value>(&out).expect("yaml")).expect("value");
    assert_eq!(defaults["JobDefaults"]["Batch"]["Task"]["Publisher"]["Type"], "ipfs");
    assert_eq!(defaults["API"]["Port"], 1234);
}

#[test]
fn job_defaults_from_config_yaml_choose_the_publisher_and_flags_still_win() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("data");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("config.yaml"),
        "JobDefaults:\n  Batch:\n    Priority: 3\n    Task:\n      Publisher: {Type: local}\n      Timeouts: {ExecutionTimeout: 2m}\nLabels: {zone: north}\n",
    )
    .expect("write");
    let s = Serve::start_in(bin(), &dir, &[]).expect("serve");
    let hello = program("hello").display().to_string();
    let id = s.submit_wasm(&[&hello]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    let d = s.describe(&id);
    assert_eq!(d["Job"]["Tasks"][0]["Publisher"]["Type"], "local", "{d}");
    assert_eq!(d["Job"]["Tasks"][0]["Timeouts"]["ExecutionTimeout"], 120);
    assert_eq!(d["Job"]["Priority"], 3);
    // The local publisher's result is a URL on this node, as Bacalhau's.
    let published = &d["Executions"]["Items"][0]["PublishedResult"];
    assert_eq!(published["Type"], "urlDownload", "{published}");
    assert!(published["Params"]["URL"].as_str().is_some_and(|u| u.contains("/api/v1/local-results/")), "{published}");
    // -p on the command line wins over the default.
    let id = s.submit_wasm(&["-p", "noop", &hello]);
    s.wait_terminal(&id).expect("finish");
    assert_eq!(s.describe(&id)["Job"]["Tasks"][0]["Publisher"]["Type"], "noop");
    let nodes = s.ok(&["node", "list", "--output", "json"]);
    assert!(nodes.contains("\"zone\": \"north\""), "{nodes}");
}

#[test]
fn legacy_wasm_form_with_a_block_scalar_payload_runs_and_validates() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let bytes = std::fs::read(program("hello")).expect("module");
    let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    // Wrapped at 76 columns inside a YAML block scalar, as people paste it.
    let wrapped: Vec<String> =
        b64.as_bytes().chunks(76).map(|c| format!("                {}", String::from_utf8_lossy(c))).collect();
    let spec = format!(
        "Type: batch\nCount: 1\nTasks:\n  - Name: main\n    Engine:\n      Type: wasm\n      Params:\n        EntryModule:\n          Source:\n            Type: inline\n            Params:\n              URL: |\n                data:application/wasm;base64,\n{}\n",
        wrapped.join("\n")
    );
    let file = s.work.join("legacy.yaml");
    std::fs::write(&file, spec).expect("write");
    let f = file.display().to_string();
    let out = s.ok(&["job", "validate", &f]);
    assert!(out.to_lowercase().contains("valid"), "{out}");
    let id = s.ok(&["job", "run", "--wait=false", &f]).trim().to_owned();
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "Hello, world!\n");
    let d = s.describe(&id);
    let task = &d["Job"]["Tasks"][0];
    assert_eq!(
        task["Engine"]["Params"]["EntryModule"], "/wasm/entry.wasm",
        "rewritten as Bacalhau's orchestrator does"
    );
    assert_eq!(task["InputSources"][0]["Target"], "/wasm/entry.wasm");
}

#[test]
fn relative_targets_are_read_from_the_root() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let cat = std::fs::read(program("cat")).expect("module");
    let spec = serde_json::json!({
        "Type": "batch", "Count": 1,
        "Tasks": [{
            "Name": "main",
            "Engine": {"Type": "wasm", "Params": {"EntryModule": "main.wasm", "Parameters": ["/data/hello.txt"]}},
            "InputSources": [
                {"Target": "main.wasm", "Source": {"Type": "inline", "Params": {
                    "URL": format!("data:application/wasm;base64,{}", base64::engine::general_purpose::STANDARD.encode(cat))}}},
                {"Target": "data/hello.txt", "Source": {"Type": "inline", "Params": {"URL": "data:,hello%20relative"}}}
            ]
        }]
    });
    let file = s.work.join("relative.json");
    std::fs::write(&file, spec.to_string()).expect("write");
    let id = s.ok(&["job", "run", "--wait=false", &file.display().to_string()]).trim().to_owned();
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "hello relative");
}

#[test]
fn modules_link_by_file_name_recursively_and_run_flags_take_bacalhaus_forms() {
    let data = tempfile::tempdir().expect("tmp");
    let folder = std::fs::canonicalize(data.path()).expect("canon");
    let s = Serve::start(bin(), &["--allow-listed-local-paths", &format!("{}/*", folder.display())]).expect("serve");
    let wat = |name: &str, text: &str| {
        let path = folder.join(name);
        std::fs::write(&path, wat::parse_str(text).expect("wat")).expect("write");
        path.display().to_string()
    };
    let lib = wat("lib.wasm", r#"(module (func (export "answer") (result i32) i32.const 21))"#);
    let mid = wat(
        "mid.wasm",
        r#"(module (import "lib.wasm" "answer" (func $a (result i32)))
             (func (export "double") (result i32) call $a i32.const 2 i32.mul))"#,
    );
    let main = wat(
        "main.wasm",
        r#"(module (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
             (import "mid.wasm" "double" (func $d (result i32)))
             (memory (export "memory") 1)
             (func (export "_start") call $d call $exit))"#,
    );
    // lib.wasm ships inline with -I FILE:TARGET; mid.wasm is only mounted, and is found because
    // main.wasm imports a module of that name, and it in turn imports lib.wasm.
    let id = s.submit_wasm(&["-I", &format!("{lib}:/lib.wasm"), "-i", &format!("file://{mid}:/mid.wasm"), &main]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", s.describe(&id));
    let d = s.describe(&id);
    assert_eq!(d["Executions"]["Items"][0]["RunOutput"]["ExitCode"], 42, "{d}");
    let task = &d["Job"]["Tasks"][0];
    assert_eq!(task["Engine"]["Params"]["EntryModule"], "main.wasm", "a local module ships at main.wasm");
    assert_eq!(task["Engine"]["Params"]["ImportModules"], serde_json::json!(["/lib.wasm"]));
    let err = s.fails(&["wasm", "run", "-I", &lib, &main]);
    assert!(err.contains("must specify a target path using the format 'path:target'"), "{err}");

    // -e A=B,C=D sets two variables; -e A=B,C one; FILE:TARGET places the entry module.
    let env = program("env").display().to_string();
    let id = s.submit_wasm(&["-e", "ONE=1,TWO=2", "-e", "LIST=a,b", &format!("{env}:/app/env.wasm")]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    let logs = s.ok(&["job", "logs", &id]);
    for want in ["ONE=1", "TWO=2", "LIST=a,b"] {
        assert!(logs.lines().any(|l| l == want), "{want} missing from {logs}");
    }
    assert_eq!(s.describe(&id)["Job"]["Tasks"][0]["Engine"]["Params"]["EntryModule"], "/app/env.wasm");
}

#[test]
fn unsupported_types_use_bacalhaus_wording() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let hello = program("hello").display().to_string();
    let out = s.cli(&["wasm", "run", "-p", "flibble", &hello]);
    let err = text(&out).1;
    assert!(err.contains("does not support flibble, only noop, local, ipfs, s3"), "{err}");
    let spec = s.work.join("engine.yaml");
    std::fs::write(&spec, "Type: batch\nCount: 1\nTasks:\n  - Name: main\n    Engine: {Type: flibble}\n")
        .expect("write");
    let out = s.cli(&["job", "run", &spec.display().to_string()]);
    let err = text(&out).1;
    assert!(
        err.contains("does not support flibble, only docker, wasm")
            || err.contains("does not support flibble, only wasm"),
        "{err}"
    );
}

#[test]
fn completions_man_pages_and_a_closed_stdout() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (bash, _) = text(&cli_in(tmp.path(), &["completion", "bash"]));
    assert!(bash.contains("complete") && bash.contains("bacalhau"), "{}", &bash[..bash.len().min(200)]);
    let (man, _) = text(&cli_in(tmp.path(), &["man"]));
    assert!(man.contains(".TH bacalhau"), "{}", &man[..man.len().min(200)]);
    // `... | head -c 10`: the reader goes away after 10 bytes of a 200 KB script, far past a
    // pipe's buffer, so the CLI's writes fail with EPIPE; it ends quietly with status 0.
    let script = format!("set -o pipefail; '{}' completion bash | head -c 10 >/dev/null", bin().display());
    let out = Command::new("bash").args(["-c", &script]).output().expect("bash");
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A spec named `greet` that prints `message` (an inline input) with the `cat` module.
fn greet_spec(message: &str, extra: &str) -> String {
    let cat = base64::engine::general_purpose::STANDARD.encode(std::fs::read(program("cat")).expect("module"));
    format!(
        "Name: greet\nType: batch\nCount: 1\n{extra}Tasks:\n  - Name: main\n    Engine:\n      Type: wasm\n      Params:\n        EntryModule: /main.wasm\n        Parameters: [/data/msg.txt]\n    Publisher: {{Type: noop}}\n    InputSources:\n      - Target: /main.wasm\n        Source: {{Type: inline, Params: {{URL: \"data:application/wasm;base64,{cat}\"}}}}\n      - Target: /data/msg.txt\n        Source: {{Type: inline, Params: {{URL: \"data:,{message}\"}}}}\n"
    )
}

#[test]
fn a_spec_submitted_again_by_name_updates_the_job_and_reruns_pick_a_version() {
    let s = Serve::start(bin(), &[]).expect("serve");
    let write = |name: &str, body: String| {
        let f = s.work.join(name);
        std::fs::write(&f, body).expect("write spec");
        f.display().to_string()
    };
    let one = write("one.yaml", greet_spec("one", ""));
    let two = write("two.yaml", greet_spec("two", ""));
    let id = s.ok(&["job", "run", "--wait=false", &one]).trim().to_owned();
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "one");

    // The same spec again is refused with Bacalhau's message and the way out.
    let err = s.fails(&["job", "run", "--wait=false", &one]);
    assert!(err.contains(&format!("no changes detected for new job spec. Job Name: 'greet', Job Id: '{id}'")), "{err}");
    assert!(err.contains("--force"), "{err}");

    // The diff endpoint shows what an update would change.
    let spec: Value = yaml_serde::from_str(&std::fs::read_to_string(&two).expect("read")).expect("yaml");
    let body = serde_json::json!({ "Job": spec }).to_string();
    let (status, diff) =
        bacalhau_testkit::http_request(s.port, "PUT", "/api/v1/orchestrator/jobs/diff", &[], body.as_bytes())
            .expect("diff request");
    assert_eq!(status, 200, "{diff}");
    let diff: Value = serde_json::from_str(&diff).expect("json");
    let shown = diff["Diff"].as_str().expect("Diff");
    assert!(shown.lines().any(|l| l.starts_with('-') && l.contains("data:,one")), "{shown}");
    assert!(shown.lines().any(|l| l.starts_with('+') && l.contains("data:,two")), "{shown}");
    // A diff needs a Name, and a job with it; a rerun's JobVersion is a number.
    let put = |path: &str, body: &Value| {
        bacalhau_testkit::http_request(s.port, "PUT", path, &[], body.to_string().as_bytes()).expect("request")
    };
    let mut nameless = spec.clone();
    nameless.as_object_mut().expect("object").remove("Name");
    let (status, body) = put("/api/v1/orchestrator/jobs/diff", &serde_json::json!({ "Job": nameless }));
    assert!(status == 400 && body.contains("name is missing"), "{status} {body}");
    let mut stranger = spec.clone();
    stranger["Name"] = "nobody-has-this".into();
    let (status, body) = put("/api/v1/orchestrator/jobs/diff", &serde_json::json!({ "Job": stranger }));
    assert!(status == 404 && body.contains("nobody-has-this"), "{status} {body}");
    let (status, body) =
        put(&format!("/api/v1/orchestrator/jobs/{id}/rerun"), &serde_json::json!({ "JobVersion": "two" }));
    assert!(status == 400 && body.contains("JobVersion must be a whole number"), "{status} {body}");

    // A changed spec updates the same job as version 2, and it runs again.
    let same = s.ok(&["job", "run", "--wait=false", &two]).trim().to_owned();
    assert_eq!(same, id, "an update keeps the job's ID");
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "two");
    let d = s.describe(&id);
    assert_eq!(d["Job"]["Version"], 2);
    assert!(
        d["History"]["Items"].as_array().expect("history").iter().any(|h| h["Event"]["Message"] == "Job updated"),
        "{d}"
    );
    let versions: Value = serde_json::from_str(&s.ok(&["job", "versions", &id, "--output", "json"])).expect("json");
    let numbers: Vec<u64> = versions.as_array().expect("list").iter().filter_map(|j| j["Version"].as_u64()).collect();
    assert_eq!(numbers, vec![1, 2]);

    // Rerunning version 1 makes version 3 with version 1's spec.
    let o = s.cli(&["job", "rerun", &id, "--version", "1", "--wait=false"]);
    let (_, err) = text(&o);
    assert!(o.status.success() && err.contains("version 3"), "{err}");
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "one");
    let current = s.executions(&id);
    assert_eq!(current.len(), 1, "executions list the current version's: {current:?}");
    assert_eq!(current[0]["JobVersion"], 3);
    let all: Value = serde_json::from_str(
        &s.get(&format!("/api/v1/orchestrator/jobs/{id}/executions?all_job_versions=true")).expect("executions"),
    )
    .expect("json");
    assert_eq!(all["Items"].as_array().map(Vec::len), Some(3));
    let v2: Value =
        serde_json::from_str(&s.ok(&["job", "describe", &id, "--version", "2", "--output", "json"])).expect("json");
    assert_eq!(v2["Job"]["Version"], 2);
    assert_eq!(v2["Executions"]["Items"].as_array().map(Vec::len), Some(1));

    // --force runs an unchanged spec again.
    s.ok(&["job", "run", "--force", "--wait=false", &one]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.describe(&id)["Job"]["Version"], 4);

    // Bad input: a version that does not exist, a type change.
    let err = s.fails(&["job", "rerun", &id, "--version", "9"]);
    assert!(err.contains("9") && err.contains("versions 1 to 4"), "{err}");
    let ops = write("ops.yaml", greet_spec("one", "").replace("Type: batch", "Type: ops"));
    let err = s.fails(&["job", "run", "--wait=false", &ops]);
    assert!(err.contains("cannot make it ops") && err.contains("another Name"), "{err}");
    assert_eq!(s.describe(&id)["Job"]["Version"], 4, "a refused update changes nothing");

    // A job not placed yet (it waits in the queue for a node in zone mars) cannot be rerun.
    let nowhere = write(
        "nowhere.yaml",
        greet_spec("x", "Constraints:\n  - {Key: zone, Operator: '=', Values: [mars]}\n")
            .replace("Name: greet", "Name: nowhere")
            .replace("    Publisher:", "    Timeouts: {QueueTimeout: 600}\n    Publisher:"),
    );
    let stuck = s.ok(&["job", "run", "--wait=false", &nowhere]).trim().to_owned();
    let err = s.fails(&["job", "rerun", &stuck]);
    assert!(
        err.contains("cannot rerun job in state Queued") || err.contains("cannot rerun job in state Pending"),
        "{err}"
    );
    assert_eq!(s.describe(&stuck)["Job"]["Version"], 1);
}

#[test]
fn profiles_switch_the_cli_between_two_nodes() {
    let a = Serve::start(bin(), &[]).expect("serve a");
    let b = Serve::start(bin(), &[]).expect("serve b");
    let home = tempfile::tempdir().expect("home");
    let cli = |args: &[&str]| cli_in(home.path(), args);
    let ok = |args: &[&str]| {
        let o = cli(args);
        assert!(o.status.success(), "{args:?}: {o:?}");
        text(&o).0
    };
    let jobs = |out: String| -> Vec<String> {
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        v.as_array().expect("list").iter().filter_map(|j| j["ID"].as_str().map(str::to_owned)).collect()
    };
    ok(&["profile", "save", "a", "--endpoint", &format!("http://127.0.0.1:{}", a.port)]);
    ok(&["profile", "save", "b", "--endpoint", &format!("http://127.0.0.1:{}", b.port), "--select"]);
    let hello = program("hello").display().to_string();
    let id = ok(&["wasm", "run", "--wait=false", &hello]).trim().to_owned();
    assert_eq!(b.wait_terminal(&id).expect("ran on b"), "Completed");
    assert_eq!(jobs(ok(&["job", "list", "--output", "json"])), vec![id.clone()]);

    // Selecting a points every later command at a; --profile picks one for one command.
    ok(&["profile", "select", "a"]);
    assert!(jobs(ok(&["job", "list", "--output", "json"])).is_empty(), "a has no jobs");
    assert!(ok(&["profile", "list"]).lines().any(|l| l.starts_with('*') && l.contains('a')));
    assert_eq!(jobs(ok(&["--profile", "b", "job", "list", "--output", "json"])), vec![id.clone()]);
    assert!(!a.cli(&["job", "describe", &id]).status.success(), "the job is b's only");

    // A profile that does not exist is named, with the way to see the others.
    ok(&["profile", "delete", "b"]);
    let o = cli(&["--profile", "b", "job", "list"]);
    let (_, err) = text(&o);
    assert!(!o.status.success() && err.contains("no profile b") && err.contains("profile list"), "{err}");
    let o = cli(&["profile", "select", "nosuch"]);
    assert!(!o.status.success() && text(&o).1.contains("nosuch"), "{o:?}");
    assert!(jobs(ok(&["job", "list", "--output", "json"])).is_empty(), "a is still selected");
}

/// `--log-level` and `--log-format` (alias `--log-mode`) set Logging.Level and Logging.Mode
/// over every other source; `serve` then logs one JSON object per line, and a level that does
/// not exist stops it with the levels named.
#[test]
fn log_flags_set_the_level_and_the_format() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = Command::new(bin())
        .args(["config", "list", "--output", "json", "-c", "Logging.Level=warn", "--log-level", "debug"])
        .args(["--log-mode", "json"])
        .env("BACALHAU_DIR", dir.path())
        .output()
        .expect("run");
    let list: Vec<Value> = serde_json::from_str(&text(&o).0).expect("json");
    let find = |k: &str| list.iter().find(|e| e["Key"] == k).map(|e| e["Value"].clone()).expect("listed");
    assert_eq!((find("Logging.Level"), find("Logging.Mode")), ("debug".into(), "json".into()));

    let s = bacalhau_testkit::Serve::start(bin(), &["--log-format", "json"]).expect("serve");
    let log = s.log();
    // The banner lines go to stdout for the person who started it; every log line is JSON
    // (a text log line starts with its time and level).
    let json: Vec<Value> =
        log.lines().filter(|l| l.starts_with('{')).filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(json.iter().any(|v| v["level"] == "INFO"), "{log}");
    let text_line =
        |l: &&str| !l.starts_with('{') && ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"].iter().any(|w| l.contains(w));
    assert!(!log.lines().any(|l| text_line(&l)), "a text log line: {log}");
    let o = Command::new(bin())
        .args(["serve", "--log-level", "loud"])
        .env("BACALHAU_DIR", dir.path())
        .env("BACALHAU_API_PORT", bacalhau_testkit::free_port().expect("port").to_string())
        .output()
        .expect("run");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("trace, debug, info, warn or error"));
}

/// A job's environment values are secrets as far as logs go: a node logging at debug level
/// through a whole job never writes one.
#[test]
fn env_values_never_reach_the_log() {
    let s = bacalhau_testkit::Serve::start(bin(), &["--log-level", "debug"]).expect("serve");
    let hello = c_program("hello").expect("hello").display().to_string();
    let secret = "hunter2-4f9c1e-not-for-logs";
    let id = s.submit_wasm(&["-e", &format!("API_TOKEN={secret}"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    s.ok(&["job", "describe", &id]);
    let log = s.log();
    assert!(log.contains(&id), "the job's events were logged at debug level");
    assert!(
        log.lines().any(|l| l.contains("execution state changed") && l.contains(&id) && l.contains("Completed")),
        "one line per execution state change, with its job: {log}"
    );
    assert!(!log.contains(secret), "an env value reached the log");
}
