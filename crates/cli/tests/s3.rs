//! `s3` inputs against a real S3-compatible server (moto, on loopback) filled with the AWS CLI:
//! the provider on its own (keys, prefixes, filters, partitions, checksums, hostile keys,
//! budgets), then jobs through the CLI with Count 2 sharing a prefix.

use std::collections::BTreeSet;
use std::path::Path;

use bacalhau_model::{InputSource, SpecConfig};
use bacalhau_storage::{InputProvider, Partition, StorageError};
use bacalhau_storage_remote::{S3Settings, S3Source};
use bacalhau_testkit::{S3_TEST_KEYS, S3Server, Serve, c_program};

const FILES: [(&str, &str); 6] = [
    ("set1/001.txt", "one\n"),
    ("set1/002.txt", "two\n"),
    ("set1/101.txt", "hundred-one\n"),
    ("set1/102.txt", "hundred-two\n"),
    ("set2/nested/301.txt", "three-oh-one\n"),
    ("set2/201.txt", "two-oh-one\n"),
];

/// A server holding `FILES` in bucket `data`, uploaded with `aws s3 sync`.
fn filled_server() -> S3Server {
    let s3 = S3Server::start().expect("moto");
    let dir = tempfile::tempdir().expect("tmp");
    for (key, text) in FILES {
        let path = dir.path().join(key);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    s3.aws(&["s3", "mb", "s3://data"]).expect("make bucket");
    s3.aws(&["s3", "sync", &dir.path().display().to_string(), "s3://data/"]).expect("sync");
    s3
}

fn settings(with_keys: bool) -> S3Settings {
    let env = |k: &str| S3_TEST_KEYS.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned());
    let mut s = S3Settings::from_env(|k| if with_keys { env(k) } else { None });
    s.max_retries = 1;
    s
}

fn provider() -> S3Source {
    let _ = rustls::crypto::ring::default_provider().install_default();
    S3Source::new(reqwest::Client::builder(), settings(true)).expect("provider")
}

fn input(s3: &S3Server, key: &str, extra: &[(&str, serde_json::Value)]) -> InputSource {
    let mut source = SpecConfig::new("s3")
        .with_param("Bucket", "data")
        .with_param("Key", key)
        .with_param("Endpoint", s3.endpoint())
        .with_param("Region", "us-east-1");
    for (k, v) in extra {
        source = source.with_param(k, v.clone());
    }
    InputSource { source, alias: String::new(), target: "/inputs".into() }
}

/// Every file under `dir`, as relative paths with their text.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("rel").display().to_string();
                out.push((rel, std::fs::read_to_string(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

fn names(files: &[(String, String)]) -> Vec<&str> {
    files.iter().map(|(n, _)| n.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_prefixes_filters_and_partitions_select_objects_as_bacalhau_does() {
    let s3 = tokio::task::spawn_blocking(filled_server).await.expect("server");
    let p = provider();
    let tmp = tempfile::tempdir().expect("tmp");
    let mut n = 0;
    let mut prepare = |key: &str, extra: &[(&str, serde_json::Value)], part: Partition| {
        n += 1;
        let dir = tmp.path().join(n.to_string());
        let input = input(&s3, key, extra);
        let p = &p;
        async move { p.prepare_partition(&input, &dir, u64::MAX, part).await.map(|r| tree(&r.host_path)) }
    };
    let one = prepare("set1/001.txt", &[], Partition::WHOLE).await.expect("one object");
    assert_eq!(one, [("001.txt".to_owned(), "one\n".to_owned())]);
    let prefix = prepare("set2/", &[], Partition::WHOLE).await.expect("prefix");
    assert_eq!(names(&prefix), ["201.txt", "nested/301.txt"]);
    let wildcard = prepare("set1/00*", &[], Partition::WHOLE).await.expect("wildcard");
    assert_eq!(names(&wildcard), ["001.txt", "002.txt"]);
    let partial = prepare("set*", &[("Filter", "^1/1".into())], Partition::WHOLE).await.expect("filter");
    assert_eq!(names(&partial), ["set1/101.txt", "set1/102.txt"]);
    // A folder named without its slash is what lies under it, under the folder's name (the
    // layout Bacalhau gives a key it lists as a prefix).
    let folder = prepare("set2", &[], Partition::WHOLE).await.expect("folder");
    assert_eq!(names(&folder), ["set2/201.txt", "set2/nested/301.txt"]);

    // Two partitions by object share set1 without overlap, as the model's rule says.
    let by_object = [("Partition", serde_json::json!({"Type": "object"}))];
    let mut seen = BTreeSet::new();
    for index in 0..2 {
        let share = prepare("set1/", &by_object, Partition { index, count: 2 }).await.expect("share");
        let spec = bacalhau_model::S3Source::from_spec(&input(&s3, "set1/", &by_object).source).expect("spec");
        for (name, _) in &share {
            assert_eq!(spec.partition_of(&format!("set1/{name}"), 2), index, "{name}");
            assert!(seen.insert(name.clone()), "{name} in two partitions");
        }
    }
    assert_eq!(seen.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checksums_versions_budgets_and_hostile_keys_are_enforced() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let s3 = tokio::task::spawn_blocking(filled_server).await.expect("server");
    let p = provider();
    let tmp = tempfile::tempdir().expect("tmp");
    let good = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"one\n"));
    let bad = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(b"other"));
    let ok = input(&s3, "set1/001.txt", &[("ChecksumSHA256", good.clone().into())]);
    p.prepare(&ok, &tmp.path().join("a"), u64::MAX).await.expect("matching checksum");
    let wrong = input(&s3, "set1/001.txt", &[("ChecksumSHA256", bad.into())]);
    let err = p.prepare(&wrong, &tmp.path().join("b"), u64::MAX).await.expect_err("checksum");
    assert!(matches!(err, StorageError::Refused(_)) && err.to_string().contains("checksum mismatch"), "{err}");
    assert!(tree(&tmp.path().join("b")).is_empty(), "a file that failed its checksum is removed");

    // A large object comes as ranges in parallel, whole and checked.
    let big_bytes = bacalhau_testkit::random_bytes(40 << 20, 7);
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, &big_bytes).expect("write");
    s3.aws(&["s3", "cp", &big.display().to_string(), "s3://data/big/big.bin", "--quiet"]).expect("upload");
    let sum = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(&big_bytes));
    let got = p
        .prepare(&input(&s3, "big/big.bin", &[("ChecksumSHA256", sum.into())]), &tmp.path().join("big"), u64::MAX)
        .await
        .expect("large object");
    assert!(std::fs::read(got.host_path.join("big.bin")).expect("read") == big_bytes, "ranges reassembled");
    let wrong = input(&s3, "big/big.bin", &[("ChecksumSHA256", good.clone().into())]);
    let err = p.prepare(&wrong, &tmp.path().join("big2"), u64::MAX).await.expect_err("checksum");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(tree(&tmp.path().join("big2")).is_empty());

    let missing = input(&s3, "set9/nothing.txt", &[]);
    let err = p.prepare(&missing, &tmp.path().join("c"), u64::MAX).await.expect_err("missing");
    assert!(err.to_string().contains("s3://data/set9/nothing.txt does not exist"), "{err}");

    let err = p.prepare(&input(&s3, "set1/", &[]), &tmp.path().join("d"), 10).await.expect_err("budget");
    assert!(err.to_string().contains("raise Resources.Disk"), "{err}");
    assert!(!tmp.path().join("d").exists() || tree(&tmp.path().join("d")).is_empty());

    // An object whose key climbs out of the input's folder is refused, and nothing lands outside.
    let evil = tmp.path().join("evil.txt");
    std::fs::write(&evil, "x").expect("write");
    s3.put("data", "bad/../../escaped.txt", &evil).expect("put hostile key");
    let dir = tmp.path().join("e").join("inner");
    let err = p.prepare(&input(&s3, "bad/", &[]), &dir, u64::MAX).await.expect_err("hostile key");
    assert!(!tmp.path().join("e").join("escaped.txt").exists() && !tmp.path().join("escaped.txt").exists());
    assert!(err.to_string().contains(".."), "{err}");

    // Folder markers (zero-byte "dir/" objects) are not files.
    let empty = tmp.path().join("empty");
    std::fs::write(&empty, "").expect("write");
    for key in ["set3/", "set3/sub/"] {
        s3.put("data", key, &empty).expect("put marker");
    }
    s3.put("data", "set3/sub/a.txt", &evil).expect("put");
    let got = p.prepare(&input(&s3, "set3/", &[]), &tmp.path().join("markers"), u64::MAX).await.expect("markers");
    assert_eq!(names(&tree(&got.host_path)), ["sub/a.txt"]);

    // Without credentials the node refuses at bid time, saying what to set.
    let bare = S3Source::new(reqwest::Client::builder(), settings(false)).expect("provider");
    let err = bare.validate(&input(&s3, "set1/", &[])).expect_err("no credentials");
    assert!(err.to_string().contains("AWS_ACCESS_KEY_ID"), "{err}");
}

#[test]
fn a_count_2_job_shares_an_s3_prefix_between_its_partitions() {
    let s3 = filled_server();
    let s = Serve::start_env(Path::new(env!("CARGO_BIN_EXE_bacalhau")), &[], &S3_TEST_KEYS).expect("serve");
    let cat = c_program("cat").expect("cat").display().to_string();
    let module = std::fs::read(&cat).expect("module");
    let spec = format!(
        r#"Type: batch
Count: 2
Tasks:
  - Name: main
    Engine: {{Type: wasm, Params: {{EntryModule: /app/cat.wasm, Parameters: [/inputs/001.txt, /inputs/002.txt, /inputs/101.txt, /inputs/102.txt]}}}}
    InputSources:
      - {{Target: /app/cat.wasm, Source: {{Type: inline, Params: {{URL: "{}"}}}}}}
      - Target: /inputs
        Source:
          Type: s3
          Params: {{Bucket: data, Key: "set1/", Endpoint: "{}", Region: us-east-1, Partition: {{Type: object}}}}
"#,
        bacalhau_testkit::wasm_data_url(&module),
        s3.endpoint()
    );
    let id = run_spec(&s, "s3.yaml", &spec);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", s.log());
    let mut lines = Vec::new();
    for e in s.executions(&id) {
        let stdout = e["RunOutput"]["Stdout"].as_str().unwrap_or_default().to_owned();
        assert!(!stdout.is_empty(), "each partition got some objects: {e}");
        lines.extend(stdout.lines().map(str::to_owned));
    }
    lines.sort();
    assert_eq!(lines, ["hundred-one", "hundred-two", "one", "two"], "every object once, across the two partitions");

    // The CLI's -i form; a bad partition type is refused at submission, naming the field.
    let input = format!("src=s3://data/set2/*,dst=/inputs,opt=endpoint={},opt=region=us-east-1", s3.endpoint());
    let id = s.submit_wasm(&["-i", &input, &cat, "/inputs/201.txt", "/inputs/nested/301.txt"]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(s.ok(&["job", "logs", &id]), "two-oh-one\nthree-oh-one\n");
    let bad = s.work.join("bad.yaml");
    std::fs::write(
        &bad,
        "Type: batch\nTasks:\n  - Engine: {Type: docker, Params: {Image: busybox}}\n    InputSources:\n      - {Target: /in, Source: {Type: s3, Params: {Bucket: data, Partition: {Type: hash}}}}\n",
    )
    .expect("spec");
    let err = s.fails(&["job", "run", &bad.display().to_string()]);
    assert!(err.contains("Tasks[0].InputSources[0].Source.Params.Partition.Type"), "{err}");
}

#[test]
fn results_are_published_to_s3_and_job_get_fetches_them_signed() {
    let s3 = S3Server::start().expect("moto");
    s3.aws(&["s3", "mb", "s3://out"]).expect("make bucket");
    let s = Serve::start_env(Path::new(env!("CARGO_BIN_EXE_bacalhau")), &[], &S3_TEST_KEYS).expect("serve");
    let hello = c_program("hello").expect("hello").display().to_string();
    let opts = format!("opt=endpoint={},opt=region=us-east-1", s3.endpoint());

    // One archive per execution, at the key with its placeholders filled.
    let id = s.submit_wasm(&["-p", &format!("s3://out/results/{{jobID}}/{{executionID}},{opts}"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", s.log());
    let exec = s.executions(&id)[0].clone();
    let exec_id = exec["ID"].as_str().expect("id").to_owned();
    let stored = &exec["PublishedResult"];
    assert_eq!(stored["Type"], "s3", "{exec}");
    let key = format!("results/{id}/{exec_id}.tar.gz");
    assert_eq!(stored["Params"]["Key"], key.as_str());
    assert_eq!(stored["Params"]["ChecksumSHA256"].as_str().map(str::len), Some(44), "{stored}");
    assert!(s3.aws(&["s3", "ls", "--recursive", "s3://out/results/"]).expect("ls").contains(&key));
    assert!(s.ok(&["job", "describe", &id]).contains(&key), "describe shows where the result went");
    // The orchestrator hands it out signed; the CLI needs no credentials (it has none here).
    let results = s.get(&format!("/api/v1/orchestrator/jobs/{id}/results")).expect("results");
    assert!(results.contains("s3PreSigned") && results.contains("X-Amz-Signature"), "{results}");
    s.ok(&["job", "get", &id, "--output-dir", "res"]);
    let stdout = std::fs::read_to_string(s.work.join("res/stdout")).expect("stdout");
    assert!(stdout.contains("Hello"), "{stdout}");

    // The orchestrator signs only what is provably this execution's archive.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let signer = bacalhau_storage_remote::S3ResultSigner::new(
        reqwest::Client::builder(),
        settings(true),
        std::time::Duration::from_secs(60),
    )
    .expect("signer");
    let publisher = SpecConfig::new("s3")
        .with_param("Bucket", "out")
        .with_param("Key", "results/{jobID}/{executionID}")
        .with_param("Endpoint", s3.endpoint())
        .with_param("Region", "us-east-1");
    let result: SpecConfig = serde_json::from_value(stored.clone()).expect("result");
    let node = exec["NodeID"].as_str().expect("node").to_owned();
    let created = u64::try_from(exec["CreateTime"].as_i64().expect("time") / 1_000_000_000).expect("secs");
    let ids = (id.clone(), exec_id.clone(), node);
    let request = sign_request;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    use bacalhau_storage::ResultSigner as _;
    assert!(rt.block_on(signer.sign(request(&result, &publisher, &ids, created))).expect("sign").is_some());
    let mut elsewhere = result.clone();
    elsewhere.params.insert("Bucket".into(), "corp-backups".into());
    assert!(
        rt.block_on(signer.sign(request(&elsewhere, &publisher, &ids, created))).expect("sign").is_none(),
        "another bucket"
    );
    let mut other_key = result.clone();
    other_key.params.insert("Key".into(), format!("results/{id}/e-someone-else.tar.gz").into());
    assert!(
        rt.block_on(signer.sign(request(&other_key, &publisher, &ids, created))).expect("sign").is_none(),
        "another key"
    );
    assert!(
        rt.block_on(signer.sign(request(&result, &publisher, &ids, created + 3600))).expect("sign").is_none(),
        "an object older than the execution"
    );

    // `plain`: each file under the prefix.
    let id = s.submit_wasm(&["-p", &format!("s3://out/plain/{{jobID}},opt=encoding=plain,{opts}"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Completed", "{}", s.log());
    let listing = s3.aws(&["s3", "ls", "--recursive", &format!("s3://out/plain/{id}/")]).expect("ls");
    for name in ["stdout", "stderr", "exitCode"] {
        assert!(listing.contains(&format!("plain/{id}/{name}")), "{name}: {listing}");
    }
    let err = s.fails(&["job", "get", &id, "--output-dir", "plain-res"]);
    assert!(err.contains("aws s3 cp --recursive"), "{err}");

    // A placeholder that does not exist, or a missing bucket, is refused at submission.
    let err = s.fails(&["wasm", "run", "-p", &format!("s3://out/{{jobId}},{opts}"), &hello]);
    assert!(err.contains("Tasks[0].Publisher.Params.Key") && err.contains("{jobID}"), "{err}");
    // Publishing to a bucket that does not exist fails the job and says where.
    let id = s.submit_wasm(&["-p", &format!("s3://nobucket/x,{opts}"), &hello]);
    assert_eq!(s.wait_terminal(&id).expect("finish"), "Failed");
    let msg = s.describe(&id)["Job"]["State"]["Message"].as_str().unwrap_or_default().to_owned();
    assert!(msg.contains("s3://nobucket/x.tar.gz"), "{msg}");
}

/// Submits `spec` (written to `name` in the server's work folder) without waiting; its job ID.
fn run_spec(s: &Serve, name: &str, spec: &str) -> String {
    let path = s.work.join(name);
    std::fs::write(&path, spec).expect("spec");
    let out = s.ok(&["job", "run", "--wait=false", &path.display().to_string()]);
    out.lines()
        .find_map(|l| l.strip_prefix("Job successfully submitted. Job ID: "))
        .unwrap_or(out.trim())
        .trim()
        .to_owned()
}

/// A signing request for job, execution and node `ids`.
fn sign_request<'a>(
    result: &'a SpecConfig,
    publisher: &'a SpecConfig,
    ids: &'a (String, String, String),
    not_before_secs: u64,
) -> bacalhau_storage::SignRequest<'a> {
    bacalhau_storage::SignRequest {
        result,
        publisher,
        job_id: &ids.0,
        execution_id: &ids.1,
        node_id: &ids.2,
        not_before_secs,
    }
}

/// An orchestrator with a managed bucket and the AWS keys, a compute node with none: the
/// compute node publishes through URLs the orchestrator signs, and `job get` downloads what it
/// signs for reading.
#[test]
fn s3managed_results_go_to_the_orchestrators_bucket_and_compute_nodes_hold_no_keys() {
    let s3 = S3Server::start().expect("moto");
    s3.aws(&["s3", "mb", "s3://managed"]).expect("make bucket");
    let bin = Path::new(env!("CARGO_BIN_EXE_bacalhau"));
    let node_port = bacalhau_testkit::free_port().expect("port").to_string();
    let (bucket, region, endpoint, prefix) = (
        "Publishers.Types.S3Managed.Bucket=managed".to_owned(),
        "Publishers.Types.S3Managed.Region=us-east-1".to_owned(),
        format!("Publishers.Types.S3Managed.Endpoint={}", s3.endpoint()),
        "Publishers.Types.S3Managed.Key=bacalhau/".to_owned(),
    );
    let token = "managed-test-token";
    let o = Serve::start_env(
        bin,
        &[
            "--orchestrator",
            "--node-port",
            &node_port,
            "--node-token",
            token,
            "-c",
            &bucket,
            "-c",
            &region,
            "-c",
            &endpoint,
            "-c",
            &prefix,
        ],
        &S3_TEST_KEYS,
    )
    .expect("orchestrator");
    let addr = format!("127.0.0.1:{node_port}");
    // No AWS_* in its environment: it could not sign anything itself.
    let c = Serve::start_env(
        bin,
        &["--compute", "--orchestrators", &addr, "--node-token", token],
        &[("AWS_ACCESS_KEY_ID", ""), ("AWS_SECRET_ACCESS_KEY", "")],
    )
    .expect("compute");
    o.wait_connected(1);

    let hello = c_program("hello").expect("hello").display().to_string();
    let id = o.submit_wasm(&["-p", "s3managed", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}\n{}", o.log(), c.log());
    let exec = o.executions(&id)[0].clone();
    let exec_id = exec["ID"].as_str().expect("id").to_owned();
    let stored = &exec["PublishedResult"];
    assert_eq!(stored["Type"], "s3managed", "{exec}");
    assert_eq!(stored["Params"]["ExecutionID"], exec_id.as_str(), "{exec}");
    let key = format!("bacalhau/{id}/{exec_id}.tar.gz");
    assert!(s3.aws(&["s3", "ls", "--recursive", "s3://managed/"]).expect("ls").contains(&key), "at {key}");
    let results = o.get(&format!("/api/v1/orchestrator/jobs/{id}/results")).expect("results");
    assert!(results.contains("s3PreSigned") && results.contains("X-Amz-Signature"), "{results}");
    assert!(results.contains(r#""Managed":true"#), "{results}");
    o.ok(&["job", "get", &id, "--output-dir", "res"]);
    let stdout = std::fs::read_to_string(o.work.join("res/stdout")).expect("stdout");
    assert!(stdout.contains("Hello"), "{stdout}");

    // That result, as the orchestrator signed it, is the next job's `s3PreSigned` input: the
    // compute node fetches it with no keys and the job sees the unpacked result.
    let page: serde_json::Value = serde_json::from_str(&results).expect("json");
    let params = page["Items"][0]["Params"].to_string();
    let cat = c_program("cat").expect("cat").display().to_string();
    let module = std::fs::read(&cat).expect("module");
    let spec = format!(
        "Type: batch\nCount: 1\nTasks:\n  - Name: main\n    Engine: {{Type: wasm, Params: {{EntryModule: /app/cat.wasm, Parameters: [/inputs/stdout]}}}}\n    InputSources:\n      - {{Target: /app/cat.wasm, Source: {{Type: inline, Params: {{URL: \"{}\"}}}}}}\n      - {{Target: /inputs, Source: {{Type: s3PreSigned, Params: {params}}}}}\n",
        bacalhau_testkit::wasm_data_url(&module)
    );
    let chained = run_spec(&o, "chained.yaml", &spec);
    assert_eq!(o.wait_terminal(&chained).expect("finish"), "Completed", "{}", c.log());
    assert!(o.ok(&["job", "logs", &chained]).contains("Hello"), "the first job's stdout, read by the second");
    // A PreSignedURL that is not http(s) is refused at submission, naming the field.
    let bad = o.work.join("bad-presigned.yaml");
    std::fs::write(
        &bad,
        "Type: batch\nTasks:\n  - Engine: {Type: docker, Params: {Image: busybox}}\n    InputSources:\n      - {Target: /in, Source: {Type: s3PreSigned, Params: {PreSignedURL: 'file:///etc/passwd'}}}\n",
    )
    .expect("spec");
    let err = o.fails(&["job", "run", &bad.display().to_string()]);
    assert!(err.contains("Tasks[0].InputSources[0].Source.Params.PreSignedURL"), "{err}");

    // The compute node's `s3` publisher has no keys: only the managed one works there.
    let opts = format!("opt=endpoint={},opt=region=us-east-1", s3.endpoint());
    let id = o.submit_wasm(&["-p", &format!("s3://managed/direct,{opts}"), &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    let why = o.ok(&["job", "describe", &id]);
    assert!(why.contains("AWS_ACCESS_KEY_ID"), "the bid is refused, saying what is missing: {why}");
}

/// Without a managed bucket, `s3managed` is refused at submission, naming the settings; a
/// bucket without a region stops `serve` at start.
#[test]
fn s3managed_without_a_bucket_is_refused_with_the_settings_named() {
    let bin = Path::new(env!("CARGO_BIN_EXE_bacalhau"));
    let s = Serve::start(bin, &[]).expect("serve");
    let hello = c_program("hello").expect("hello").display().to_string();
    let err = s.fails(&["wasm", "run", "-p", "s3managed", &hello]);
    assert!(err.contains("Publishers.Types.S3Managed.Bucket"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let out = std::process::Command::new(bin)
        .args(["serve", "-c", "Publishers.Types.S3Managed.Bucket=managed"])
        .env("BACALHAU_DIR", dir.path())
        .env("BACALHAU_API_PORT", bacalhau_testkit::free_port().expect("port").to_string())
        .envs(S3_TEST_KEYS)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve must refuse: {text}");
    assert!(text.contains("Publishers.Types.S3Managed.Region is required"), "{text}");
}
