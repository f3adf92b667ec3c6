//! Hostile content and requests against a real `bacalhau serve`, through the CLI and the REST
//! API: each test here is an attack that worked before SECURITY.md's boundaries were drawn.

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
