//! The compute market end to end, with several real `serve` processes: priced bids and the
//! reverse auction, MaxPrice, CID-consensus verification with a tampering node, reputation,
//! data locality, and the bid policies.

use std::path::Path;

use bacalhau_testkit::{DEADLINE, Serve, c_program, free_port, wait_for};

const TOKEN: &str = "market-test-token";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_bacalhau"))
}

fn program(name: &str) -> String {
    c_program(name).expect("build the WASI program").display().to_string()
}

fn orchestrator() -> (Serve, String) {
    let port = free_port().expect("port").to_string();
    let o =
        Serve::start(bin(), &["--orchestrator", "--node-port", &port, "--node-token", TOKEN]).expect("orchestrator");
    (o, format!("127.0.0.1:{port}"))
}

fn compute(addr: &str, name: &str, extra: &[&str]) -> Serve {
    let mut args = vec!["--compute", "--orchestrators", addr, "--node-token", TOKEN, "--name", name];
    args.extend_from_slice(extra);
    Serve::start(bin(), &args).expect("compute node")
}

fn ran_on(o: &Serve, id: &str) -> Vec<String> {
    o.executions(id)
        .iter()
        .filter(|e| e["ComputeState"]["StateType"] == 7)
        .filter_map(|e| e["NodeID"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_cheapest_quote_wins_and_a_low_max_price_fails_listing_the_quotes() {
    let (o, addr) = orchestrator();
    let _a = compute(&addr, "pricey", &["--price-cpu-second", "0.002"]);
    let _b = compute(&addr, "middle", &["--price-cpu-second", "0.001"]);
    let _c = compute(&addr, "cheap", &["--price-cpu-second", "0.0005", "--price-output-gb", "1"]);
    o.wait_connected(3);
    let list = o.ok(&["node", "list", "--wide"]);
    assert!(list.contains("cpu-s 0.0005"), "node list shows prices: {list}");

    let hello = program("hello");
    let id = o.submit_wasm(&["--strategy", "cheapest", "--cpu", "1", "--execution-timeout", "10", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
    assert_eq!(ran_on(&o, &id), ["cheap"]);
    let e = o.executions(&id).into_iter().find(|e| e["NodeID"] == "cheap").expect("execution");
    // 1 CPU × 10 s × 0.0005.
    assert!((e["Quote"].as_f64().expect("quote") - 0.005).abs() < 1e-9, "{e}");
    let cost = e["Cost"].as_f64().expect("cost from measured use");
    assert!(cost > 0.0 && cost < 0.005, "ran well under its timeout: {cost}");
    let describe = o.ok(&["job", "describe", &id]);
    assert!(describe.contains("Total Cost") && describe.contains("strategy cheapest"), "{describe}");

    // Fastest ignores price: any node may win, and the quote recorded is that node's.
    let id = o.submit_wasm(&["--strategy", "fastest", "--cpu", "1", "--execution-timeout", "10", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");

    // A ceiling below every quote: the job fails, and says what each node asked.
    let id = o.submit_wasm(&["--max-price", "0.001", "--cpu", "1", "--execution-timeout", "10", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    let describe = o.ok(&["job", "describe", &id]);
    for quote in ["quotes 0.020000", "quotes 0.010000", "quotes 0.005000"] {
        assert!(describe.contains(quote), "{quote} missing: {describe}");
    }
    assert!(describe.contains("MaxPrice 0.001"), "{describe}");
    // A bad strategy is refused at submission.
    let err = o.fails(&["wasm", "run", "--strategy", "quickest", &hello]);
    assert!(err.contains("Market.Strategy"), "{err}");
}

#[test]
fn verification_keeps_the_majority_result_and_flags_the_tampering_node() {
    let (mut o, addr) = orchestrator();
    let _a = compute(&addr, "honest-a", &[]);
    let _b = compute(&addr, "honest-b", &[]);
    let _t = compute(&addr, "a-tamperer", &["--test-fault", "tamper-results"]);
    o.wait_connected(3);
    let hello = program("hello");
    // No -p: the default publisher is ipfs, which verification needs.
    let id = o.submit_wasm(&["--verify", "3", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", o.ok(&["job", "describe", &id]));
    let mut on = ran_on(&o, &id);
    on.sort();
    assert_eq!(on, ["a-tamperer", "honest-a", "honest-b"], "three distinct nodes");
    let describe = o.ok(&["job", "describe", &id]);
    assert!(describe.contains("verified: 2 of 3 nodes produced"), "{describe}");
    let flagged: Vec<String> = o
        .executions(&id)
        .iter()
        .filter(|e| e["Verification"].as_str().is_some_and(|v| v.starts_with("dissented")))
        .filter_map(|e| e["NodeID"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(flagged, ["a-tamperer"]);
    // The job's result is the majority's, untampered.
    o.ok(&["job", "get", &id, "--output-dir", "res"]);
    assert_eq!(std::fs::read_to_string(o.work.join("res/stdout")).expect("stdout"), "Hello, world!\n");

    // The dissenter is ranked down, and its record survives an orchestrator restart.
    o.kill9().expect("kill the orchestrator");
    o.restart().expect("restart the orchestrator");
    o.wait_connected(3);
    let record = o.nodes().into_iter().find(|n| n["Info"]["NodeID"] == "a-tamperer").expect("listed");
    assert_eq!(record["Dissents"], 1, "{record}");
    for _ in 0..3 {
        let id = o.submit_wasm(&[&hello]);
        assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
        assert_ne!(ran_on(&o, &id), ["a-tamperer"]);
    }
    // Unanimity cannot be reached with a tamperer: the job fails with each node's CID.
    let id = o.submit_wasm(&["--verify", "3", "--quorum", "3", "-p", "ipfs", &hello]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    let describe = o.ok(&["job", "describe", &id]);
    assert!(describe.contains("verification failed") && describe.contains("tamperer → Qm"), "{describe}");
    // Verification with another publisher is refused at submission.
    let err = o.fails(&["wasm", "run", "--verify", "2", "-p", "local", &hello]);
    assert!(err.contains("needs the ipfs publisher"), "{err}");
}

#[test]
fn jobs_go_where_their_data_is_and_nodes_apply_their_bid_policies() {
    let (o, addr) = orchestrator();
    let picky = compute(&addr, "picky", &["--local-inputs-only", "--reject-networked-jobs", "--labels", "box=picky"]);
    let holder = compute(&addr, "holder", &["--labels", "box=holder"]);
    let _other = compute(&addr, "other", &["--job-selection-probe-exec", "grep -q allowed", "--labels", "box=other"]);
    o.wait_connected(3);
    // Data added to the holder's own store (its API), nowhere else.
    let folder = holder.work.join("d");
    std::fs::create_dir_all(&folder).expect("mkdir");
    std::fs::write(folder.join("x.txt"), "local data\n").expect("write");
    let cid = holder.ok(&["ipfs", "add", "-r", "-Q", &folder.display().to_string()]).trim().to_owned();
    wait_for("the holder to report its roots", DEADLINE, || {
        o.nodes()
            .iter()
            .any(|n| {
                n["Info"]["NodeID"] == "holder" && n["Info"]["ComputeNodeInfo"]["IPFSRoots"].to_string().contains(&cid)
            })
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", o.nodes()));
    let cat = program("cat");
    let input = format!("ipfs://{cid}:/in");
    for _ in 0..2 {
        let id = o.submit_wasm(&["-i", &input, &cat, "/in/x.txt"]);
        assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed", "{}", o.ok(&["job", "describe", &id]));
        assert_eq!(ran_on(&o, &id), ["holder"], "locality");
    }
    // The picky node declines inputs it lacks and networked jobs; the job says why.
    let id = o.submit_wasm(&["--constraints", "box=picky", "-i", &input, &cat, "/in/x.txt"]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    assert!(o.ok(&["job", "describe", &id]).contains("--local-inputs-only"));
    let id = o.submit_wasm(&["--constraints", "box=picky", "--network", "full", &program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    assert!(o.ok(&["job", "describe", &id]).contains("--reject-networked-jobs"));
    // Its metrics count the refusals by kind.
    let scrape = bacalhau_testkit::Scrape::parse(&picky.get("/metrics").expect("metrics")).expect("Prometheus text");
    for reason in ["locality", "network"] {
        assert!(scrape.sum("bacalhau_compute_bid_refusals_total", &[("reason", reason)]) >= 1.0, "{reason}");
    }
    assert_eq!(scrape.sum("bacalhau_compute_bid_refusals_total", &[("reason", "price")]), 0.0);
    drop(picky);
    // The probe vetoes jobs whose spec lacks "allowed" and takes the others.
    let id = o.submit_wasm(&["--constraints", "box=other", &program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Failed");
    assert!(o.ok(&["job", "describe", &id]).contains("probe declined"));
    let id = o.submit_wasm(&["--constraints", "box=other", "-l", "allowed=yes", &program("hello")]);
    assert_eq!(o.wait_terminal(&id).expect("finish"), "Completed");
}

#[test]
fn a_slow_probe_holds_up_only_its_own_job() {
    let gate = tempfile::tempdir().expect("tmp");
    let go = gate.path().join("go");
    // Jobs labelled waitforgo wait in the probe until the test creates the file.
    let probe = format!("if grep -q waitforgo; then while [ ! -e {} ]; do sleep 0.05; done; fi", go.display());
    let s = Serve::start(bin(), &["--job-selection-probe-exec", &probe]).expect("serve");
    let hello = program("hello");
    let held = s.submit_wasm(&["-l", "waitforgo=yes", &hello]);
    // The probe of the held job blocks; the node still bids on, runs and reports the next one.
    let quick = s.submit_wasm(&[&hello]);
    assert_eq!(s.wait_terminal(&quick).expect("the quick job finishes"), "Completed");
    assert_ne!(s.job_state(&held).expect("state"), "Completed", "its probe has not answered yet");
    std::fs::write(&go, "").expect("open the gate");
    assert_eq!(
        s.wait_terminal(&held).expect("the held job finishes"),
        "Completed",
        "{}",
        s.ok(&["job", "describe", &held])
    );
}

/// `bacalhau serve ARGS...` that must refuse to start; returns its stderr.
fn serve_refuses(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new(bin())
        .args(["serve", "--api-port", "0", "--node-port", "0"])
        .args(args)
        .env("BACALHAU_DIR", dir)
        .output()
        .expect("run serve");
    assert!(!out.status.success(), "serve {args:?} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_market_and_peer_settings_are_refused_with_clear_errors() {
    let o = Serve::start(bin(), &[]).expect("serve");
    let hello = program("hello");
    let err = o.fails(&["wasm", "run", "--max-price=-1", &hello]);
    assert!(err.contains("Market.MaxPrice") && err.contains("at least 0"), "{err}");
    let err = o.fails(&["wasm", "run", "--verify", "1", "-p", "ipfs", &hello]);
    assert!(err.contains("Verification.Replicas") && err.contains("at least 2"), "{err}");
    let err = o.fails(&["wasm", "run", "--verify", "3", "--quorum", "4", "-p", "ipfs", &hello]);
    assert!(err.contains("Verification.Quorum") && err.contains("between 1 and Replicas (3)"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let err = serve_refuses(dir.path(), &["--ipfs-peers", "not-a-multiaddr"]);
    assert!(err.contains("--ipfs-peers \"not-a-multiaddr\" is not a multiaddr"), "{err}");
    let err = serve_refuses(dir.path(), &["--price-cpu-second=-1"]);
    assert!(err.contains("--price-cpu-second must be a number of at least 0"), "{err}");
    let err =
        serve_refuses(dir.path(), &["--job-selection-probe-exec", "true", "--job-selection-probe-http", "http://x/"]);
    assert!(err.contains("give one of --job-selection-probe-exec and --job-selection-probe-http"), "{err}");
    let err = serve_refuses(dir.path(), &["--job-selection-probe-http", "https://x/"]);
    assert!(err.contains("only http:// URLs are supported"), "{err}");
    let err = serve_refuses(dir.path(), &["--test-fault", "bogus"]);
    assert!(err.contains("corrupt-blocks") && err.contains("tamper-results"), "{err}");
}
