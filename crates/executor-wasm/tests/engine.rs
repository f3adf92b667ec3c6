//! The WASM executor against real modules: output, exit codes, env, limits, timeouts, stops.

use std::path::Path;
use std::time::{Duration, Instant};

use bacalhau_executor::{Executor, ExecutorError, PreparedInput, PreparedOutput, ResultFolder, RunRequest};
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_model::{Resources, SpecConfig};
use bacalhau_testkit::{exit_wat, grow_wat, hello_wat, spin_wat};
use tokio_util::sync::CancellationToken;

fn request(dir: &Path, module: Vec<u8>) -> RunRequest {
    let module_path = dir.join("m.wasm");
    std::fs::write(&module_path, module).expect("write module");
    let folder = ResultFolder::create(&dir.join("results")).expect("results");
    RunRequest {
        job_id: "j-test".into(),
        execution_id: "e-test".into(),
        engine: SpecConfig::new("wasm").with_param("EntryModule", "/wasm/m.wasm"),
        inputs: vec![PreparedInput { host_path: module_path, target: "/wasm/m.wasm".into(), read_only: true }],
        outputs: vec![],
        env: Default::default(),
        resources: Resources::default(),
        network: Default::default(),
        timeout: None,
        results_dir: folder.dir().to_owned(),
        work_dir: dir.join("engine"),
        cancel: CancellationToken::new(),
    }
}

#[tokio::test]
async fn writes_stdout_into_the_result_folder() {
    let tmp = tempfile::tempdir().expect("tmp");
    let cache = tmp.path().join("cache");
    let exec = WasmExecutor::new(Some(cache.clone())).expect("executor");
    let req = request(tmp.path(), hello_wat().expect("wat"));
    let out = exec.run(req.clone()).await.expect("run");
    assert_eq!(out.exit_code, 0);
    assert_eq!(std::fs::read_to_string(req.results_dir.join("stdout")).expect("stdout"), "Hello, world!\n");
    // The compiled module is cached on disk and a fresh executor loads it from there.
    let cached: Vec<_> = walk(&cache).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    let again = WasmExecutor::new(Some(cache)).expect("executor");
    assert_eq!(again.run(req).await.expect("run").exit_code, 0);
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

#[tokio::test]
async fn exit_codes_are_outcomes_not_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    let out = exec.run(request(tmp.path(), exit_wat(42).expect("wat"))).await.expect("run");
    assert_eq!(out.exit_code, 42);
}

#[tokio::test]
async fn timeouts_interrupt_a_spinning_module() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    let mut req = request(tmp.path(), spin_wat().expect("wat"));
    req.timeout = Some(Duration::from_millis(200));
    let start = Instant::now();
    let err = exec.run(req).await.expect_err("timeout");
    assert!(matches!(err, ExecutorError::TimedOut(_)), "{err}");
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
}

#[tokio::test]
async fn cancellation_stops_a_spinning_module() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    let req = request(tmp.path(), spin_wat().expect("wat"));
    let cancel = req.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
    let err = exec.run(req).await.expect_err("cancelled");
    assert!(matches!(err, ExecutorError::Cancelled), "{err}");
}

#[tokio::test]
async fn memory_limit_is_reported_as_out_of_memory() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    let mut req = request(tmp.path(), grow_wat(64).expect("wat"));
    req.resources.memory_bytes = 1 << 20;
    let err = exec.run(req).await.expect_err("oom");
    assert!(matches!(err, ExecutorError::OutOfMemory(_)), "{err}");
    // Within the limit the same module runs.
    let mut req = request(tmp.path(), grow_wat(1).expect("wat"));
    req.resources.memory_bytes = 1 << 20;
    assert_eq!(exec.run(req).await.expect("run").exit_code, 0);
}

#[tokio::test]
async fn the_memory_limit_bounds_all_memories_together_and_tables_are_bounded() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    // Eight memories of 256 KiB each: every one fits under 1 MiB, all of them do not.
    let memories = "(memory 4) ".repeat(8);
    let wat = format!("(module {memories} (export \"memory\" (memory 0)) (func (export \"_start\")))");
    let mut req = request(tmp.path(), wat::parse_str(&wat).expect("wat"));
    req.resources.memory_bytes = 1 << 20;
    let err = exec.run(req).await.expect_err("over the limit");
    assert!(matches!(err, ExecutorError::OutOfMemory(_)), "{err}");
    let wat = "(module (memory 1) (export \"memory\" (memory 0)) (table 4000000 funcref) (func (export \"_start\")))";
    let mut req = request(tmp.path(), wat::parse_str(wat).expect("wat"));
    req.resources.memory_bytes = 64 << 20;
    let err = exec.run(req).await.expect_err("table too large");
    assert!(err.to_string().contains("table of 4000000 elements"), "{err}");
}

#[tokio::test]
async fn bad_specs_are_invalid_not_crashes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    let mut req = request(tmp.path(), hello_wat().expect("wat"));
    req.engine = req.engine.with_param("Entrypoint", "main");
    let err = exec.run(req).await.expect_err("no such export");
    assert!(
        err.to_string().contains("unable to find the entrypoint \"main\": the module exports memory, _start"),
        "{err}"
    );
    let err = exec.run(request(tmp.path(), b"not wasm".to_vec())).await.expect_err("invalid");
    assert!(matches!(err, ExecutorError::InvalidSpec(_)), "{err}");
    let mut req = request(tmp.path(), hello_wat().expect("wat"));
    req.engine = SpecConfig::new("wasm").with_param("EntryModule", "/elsewhere.wasm");
    let err = exec.run(req).await.expect_err("missing");
    assert!(err.to_string().contains("/elsewhere.wasm is not in any input source"), "{err}");
}

#[tokio::test]
async fn result_paths_are_writable() {
    let tmp = tempfile::tempdir().expect("tmp");
    let exec = WasmExecutor::new(None).expect("executor");
    // Opens /out/x (dirfd 3 is the first preopen, /wasm; the output is 4), writes "ok".
    let module = wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x")
  (data (i32.const 80) "ok")
  (func (export "_start")
    (if (call $open (i32.const 4) (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 9) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 32))
      (then unreachable))
    (i32.store (i32.const 0) (i32.const 80))
    (i32.store (i32.const 4) (i32.const 2))
    (drop (call $w (i32.load (i32.const 32)) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )
    .expect("wat");
    let mut req = request(tmp.path(), module);
    let out_dir = req.results_dir.join("outputs");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    req.outputs = vec![PreparedOutput { name: "outputs".into(), path: "/out".into(), host_path: out_dir.clone() }];
    assert_eq!(exec.run(req).await.expect("run").exit_code, 0);
    assert_eq!(std::fs::read_to_string(out_dir.join("x")).expect("x"), "ok");
}
