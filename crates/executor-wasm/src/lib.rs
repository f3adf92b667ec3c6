//! The WASM engine: wasmtime with WASI preview1.
//!
//! Inputs are pre-opened read-only at their Target, each ResultPath read-write at its Path;
//! stdout and stderr go straight into the result folder. Timeouts and stops use epoch
//! interruption: a ticker thread advances the engine's epoch and every store checks its own
//! deadline and cancellation token at each tick. Compiled modules are cached in memory and on
//! disk by the SHA-256 of their bytes, so the second run of a module skips compilation.
//!
//! wasmtime is the slowest build in the tree, which is why this is a leaf crate.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bacalhau_executor::{ExecutorError, PreparedInput, RunOutcome, RunRequest, STDERR_FILE, STDOUT_FILE};
use bacalhau_model::{ENGINE_WASM, EngineSpec, WasmEngineSpec};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use wasmtime::{Config, Engine, Linker, Module, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::cli::OutputFile;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

/// How often the epoch advances: the granularity of timeouts and stops.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Compiled modules kept in memory. Each holds its machine code; 256 covers a busy node's
/// working set without letting a stream of distinct modules grow memory without bound.
const MODULE_CACHE_ENTRIES: usize = 256;
/// WASI preview1's module name, provided by the linker itself.
const WASI_MODULE: &str = "wasi_snapshot_preview1";
/// The most modules one run links: deep enough for real programs, bounded for hostile ones.
const MAX_LINKED_MODULES: usize = 64;
/// Part of the on-disk cache key: artifacts only load into the same wasmtime and config.
const CACHE_TAG: &str = "wasmtime-48.0.8-epoch-v1";

/// The WASM executor.
pub struct WasmExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    modules: Mutex<HashMap<[u8; 32], Module>>,
    cache_dir: Option<PathBuf>,
    ticker_stop: Arc<AtomicBool>,
}

impl fmt::Debug for WasmExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WasmExecutor").field("cache_dir", &self.inner.cache_dir).finish_non_exhaustive()
    }
}

struct State {
    wasi: WasiP1Ctx,
    limiter: Limiter,
}

/// Refuses memory growth past the job's limit and remembers that it did, so the failure can be
/// reported as "out of memory" instead of an opaque trap. The limit is on the sum of every
/// linear memory of the store, not on each: a module with eight memories must not get eight
/// times its limit. Tables are bounded too (their elements are host memory).
struct Limiter {
    max_bytes: Option<usize>,
    /// Bytes of all linear memories so far.
    total: usize,
    exceeded: Option<usize>,
}

/// Elements one table may hold (a funcref is a pointer or two of host memory).
const MAX_TABLE_ELEMENTS: usize = 1 << 20;
/// Memories, tables and instances one store may have.
const MAX_STORE_ITEMS: usize = 64;

impl Limiter {
    fn new(max_bytes: Option<usize>) -> Self {
        Self { max_bytes, total: 0, exceeded: None }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.total.saturating_sub(current).saturating_add(desired);
        match self.max_bytes {
            Some(max) if total > max => {
                self.exceeded = Some(total);
                Err(wasmtime::Error::msg("memory limit exceeded"))
            }
            _ => {
                self.total = total;
                Ok(true)
            }
        }
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Err(wasmtime::Error::msg(format!(
                "a table of {desired} elements is more than the {MAX_TABLE_ELEMENTS} allowed"
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn tables(&self) -> usize {
        MAX_STORE_ITEMS
    }

    fn memories(&self) -> usize {
        MAX_STORE_ITEMS
    }
}

/// Why the epoch callback stopped a run.
#[derive(Debug)]
enum Interrupt {
    Timeout,
    Cancelled,
}

impl fmt::Display for Interrupt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Interrupt::Timeout => "timed out",
            Interrupt::Cancelled => "cancelled",
        })
    }
}

impl std::error::Error for Interrupt {}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl WasmExecutor {
    /// Creates the engine. `cache_dir` keeps compiled modules across restarts.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<Self, ExecutorError> {
        let mut config = Config::new();
        config.epoch_interruption(true);
        let engine =
            Engine::new(&config).map_err(|e| ExecutorError::Failed(format!("cannot start wasmtime: {e:#}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut State| &mut s.wasi)
            .map_err(|e| ExecutorError::Failed(format!("cannot link WASI: {e:#}")))?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| ExecutorError::Failed(format!("cannot start the epoch ticker: {e}")))?;
        }
        if let Some(dir) = &cache_dir
            && let Err(e) = fs::create_dir_all(dir.join(CACHE_TAG))
        {
            warn!(dir = %dir.display(), error = %e, "module cache directory unavailable; compiling every time");
        }
        Ok(Self {
            inner: Arc::new(Inner { engine, linker, modules: Mutex::new(HashMap::new()), cache_dir, ticker_stop }),
        })
    }

    fn spec(request: &bacalhau_executor::RunRequest) -> Result<WasmEngineSpec, ExecutorError> {
        match EngineSpec::decode(&request.engine, "Engine.Params") {
            Ok(EngineSpec::Wasm(w)) => Ok(w),
            Ok(_) => Err(ExecutorError::InvalidSpec(format!("engine {} is not wasm", request.engine.type_name()))),
            Err(errs) => {
                Err(ExecutorError::InvalidSpec(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))
            }
        }
    }
}

impl Inner {
    /// Loads a module by content hash: memory cache, then disk cache, then compile.
    fn module(&self, bytes: &[u8]) -> Result<Module, ExecutorError> {
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if let Some(m) = self.modules.lock().map_err(|_| poisoned())?.get(&hash) {
            return Ok(m.clone());
        }
        let file = self.cache_dir.as_ref().map(|d| d.join(CACHE_TAG).join(format!("{}.cwasm", hex::encode(hash))));
        let mut module = None;
        if let Some(path) = file.as_ref().filter(|p| p.exists()) {
            // SAFETY: the file was written by `Module::serialize` of this same wasmtime version
            // and engine configuration (both are in CACHE_TAG, part of the path), into the
            // node's own data directory.
            #[allow(unsafe_code)]
            match unsafe { Module::deserialize_file(&self.engine, path) } {
                Ok(m) => module = Some(m),
                Err(e) => warn!(path = %path.display(), error = %e, "ignoring unusable cached module"),
            }
        }
        let module = match module {
            Some(m) => m,
            None => {
                let m = Module::new(&self.engine, bytes).map_err(|e| {
                    ExecutorError::InvalidSpec(format!("the entry module is not valid WebAssembly: {e:#}"))
                })?;
                if let Some(path) = &file {
                    match m.serialize() {
                        Ok(art) => {
                            let tmp = path.with_extension("tmp");
                            if fs::write(&tmp, art).and_then(|()| fs::rename(&tmp, path)).is_err() {
                                debug!(path = %path.display(), "could not write the module cache");
                            }
                        }
                        Err(e) => debug!(error = %e, "could not serialise module"),
                    }
                }
                m
            }
        };
        let mut cache = self.modules.lock().map_err(|_| poisoned())?;
        if cache.len() >= MODULE_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(hash, module.clone());
        Ok(module)
    }

    /// Reads and compiles the module file at `path` (`name` is what the job calls it).
    fn compile_file(&self, path: &Path, name: &str) -> Result<Module, ExecutorError> {
        let bytes = fs::read(path).map_err(|e| ExecutorError::InvalidSpec(format!("cannot read the {name}: {e}")))?;
        self.module(&bytes)
    }

    /// Defines in `linker` every module `module` imports that is a mounted file and not yet
    /// linked, loading each one's own imports first. At most `MAX_LINKED_MODULES` modules, so a
    /// hostile chain of imports cannot make a run load without end.
    fn link_imports(
        &self,
        linker: &mut Linker<State>,
        store: &mut Store<State>,
        module: &Module,
        inputs: &[PreparedInput],
        linked: &mut std::collections::HashSet<String>,
    ) -> Result<(), ExecutorError> {
        let names: std::collections::BTreeSet<String> = module.imports().map(|i| i.module().to_owned()).collect();
        for name in names {
            if name == WASI_MODULE || linked.contains(&name) {
                continue;
            }
            // A name that is no mounted file is left for instantiation to report.
            let Ok(path) = resolve_module(inputs, &name) else { continue };
            if linked.len() >= MAX_LINKED_MODULES {
                return Err(ExecutorError::InvalidSpec(format!(
                    "the job links more than {MAX_LINKED_MODULES} modules; {name} was one too many"
                )));
            }
            linked.insert(name.clone());
            let m = self.compile_file(&path, &format!("module {name}"))?;
            self.link_imports(linker, store, &m, inputs, linked)?;
            linker
                .module(&mut *store, &name, &m)
                .map_err(|e| ExecutorError::InvalidSpec(format!("cannot link the module {name}: {e:#}")))?;
        }
        Ok(())
    }

    fn run_blocking(&self, request: RunRequest, spec: WasmEngineSpec) -> Result<RunOutcome, ExecutorError> {
        let module = self.compile_file(
            &resolve_module(&request.inputs, &spec.entry_module)?,
            &format!("entry module {}", spec.entry_module),
        )?;

        let open = |name: &str| {
            OpenOptions::new()
                .append(true)
                .create(true)
                .open(request.results_dir.join(name))
                .map_err(|e| ExecutorError::Failed(format!("cannot open {name} in the result folder: {e}")))
        };
        let mut wasi = WasiCtxBuilder::new();
        let mut args = vec![spec.entry_module.clone()];
        args.extend(spec.parameters.iter().cloned());
        wasi.args(&args);
        let env: Vec<(String, String)> = request.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        wasi.envs(&env);
        wasi.stdout(OutputFile::new(open(STDOUT_FILE)?));
        wasi.stderr(OutputFile::new(open(STDERR_FILE)?));
        for mount in mounts(&request.inputs, &request.work_dir)? {
            wasi.preopened_dir(&mount.host, &mount.guest, mount.perms)
                .map_err(|e| ExecutorError::Failed(format!("cannot mount input at {}: {e:#}", mount.guest)))?;
        }
        for out in &request.outputs {
            wasi.preopened_dir(&out.host_path, &out.path, FsPerms::ReadWrite)
                .map_err(|e| ExecutorError::Failed(format!("cannot mount result path {}: {e:#}", out.path)))?;
        }
        let max_bytes = (request.resources.memory_bytes > 0)
            .then(|| usize::try_from(request.resources.memory_bytes).unwrap_or(usize::MAX));
        let state = State { wasi: wasi.build_p1(), limiter: Limiter::new(max_bytes) };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        let deadline = request.timeout.map(|t| Instant::now() + t);
        let cancel: CancellationToken = request.cancel.clone();
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if cancel.is_cancelled() {
                return Err(wasmtime::Error::new(Interrupt::Cancelled));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(wasmtime::Error::new(Interrupt::Timeout));
            }
            Ok(UpdateDeadline::Continue(1))
        });

        // Dynamic linking as Bacalhau does it: each ImportModule is registered under its Target
        // and its file name, and any other import whose module name is a mounted file is
        // loaded from it, its own imports first. The shared linker is only cloned when needed.
        let with_imports;
        let linker = if spec.import_modules.is_empty() && !needs_linking(&module) {
            &self.linker
        } else {
            let mut l = self.linker.clone();
            let mut linked = std::collections::HashSet::new();
            for target in &spec.import_modules {
                let m =
                    self.compile_file(&resolve_module(&request.inputs, target)?, &format!("import module {target}"))?;
                let file_name = Path::new(target).file_name().map(|n| n.to_string_lossy().into_owned());
                let names: Vec<String> = [Some(target.clone()), file_name].into_iter().flatten().collect();
                for name in &names {
                    linked.insert(name.clone());
                }
                self.link_imports(&mut l, &mut store, &m, &request.inputs, &mut linked)?;
                for name in names {
                    l.module(&mut store, &name, &m).map_err(|e| {
                        ExecutorError::InvalidSpec(format!("cannot link import module {target} as {name}: {e:#}"))
                    })?;
                }
            }
            self.link_imports(&mut l, &mut store, &module, &request.inputs, &mut linked)?;
            with_imports = l;
            &with_imports
        };

        let instance = match linker.instantiate(&mut store, &module) {
            Ok(i) => i,
            Err(e) => return finish(Err(classify(e, &store, request.timeout))),
        };
        let Ok(func) = instance.get_typed_func::<(), ()>(&mut store, &spec.entrypoint) else {
            let exports: Vec<String> = module.exports().map(|e| e.name().to_owned()).collect();
            return Err(ExecutorError::InvalidSpec(format!(
                "unable to find the entrypoint {:?}: the module exports {}",
                spec.entrypoint,
                if exports.is_empty() { "nothing".to_owned() } else { exports.join(", ") }
            )));
        };
        let end = func.call(&mut store, ()).map_err(|e| classify(e, &store, request.timeout));
        finish(end)
    }
}

/// One folder pre-opened for the module.
#[derive(Debug)]
struct Mount {
    host: PathBuf,
    guest: String,
    perms: FsPerms,
}

/// Where each input is pre-opened. WASI pre-opens folders, not files, so the single-file
/// inputs that share a guest folder are linked (copied when the link crosses file systems)
/// into a private folder under `work_dir`, each under its Target's name, and that folder is
/// mounted: the module opens the file at its Target and sees nothing that sat beside it on
/// the host (an allow-listed file's siblings, another input's files).
fn mounts(inputs: &[PreparedInput], work_dir: &Path) -> Result<Vec<Mount>, ExecutorError> {
    let perms = |read_only: bool| if read_only { FsPerms::ReadOnly } else { FsPerms::ReadWrite };
    let mut out = Vec::new();
    let mut files: std::collections::BTreeMap<String, Vec<&PreparedInput>> = Default::default();
    for input in inputs {
        // A relative Target is read from `/`, as Bacalhau does.
        let target = bacalhau_model::absolute_target(&input.target);
        let meta = fs::symlink_metadata(&input.host_path)
            .map_err(|e| ExecutorError::Failed(format!("input {} is missing on the host: {e}", input.target)))?;
        if meta.file_type().is_symlink() {
            // Pre-opening or copying it would follow it out of the input's folder.
            return Err(ExecutorError::InvalidSpec(format!(
                "input {} is a symlink, not a file or folder",
                input.target
            )));
        }
        if meta.is_dir() {
            out.push(Mount { host: input.host_path.clone(), guest: target, perms: perms(input.read_only) });
        } else {
            let guest_dir = Path::new(&target).parent().map_or("/".to_owned(), |p| p.display().to_string());
            files.entry(guest_dir).or_default().push(input);
        }
    }
    if !files.is_empty() {
        // A folder left by an earlier attempt would make the links below fail.
        let _ = fs::remove_dir_all(work_dir.join("files"));
    }
    for (i, (guest_dir, group)) in files.into_iter().enumerate() {
        if let Some(folder) = out.iter().find(|m| m.guest.trim_end_matches('/') == guest_dir.trim_end_matches('/')) {
            return Err(ExecutorError::InvalidSpec(format!(
                "the file input at {} lies directly in the folder input mounted at {}; WASM jobs mount folders, \
                 so give the file a Target outside that folder",
                group[0].target, folder.guest
            )));
        }
        if let Some(dir) = own_folder(&group, work_dir) {
            out.push(Mount { host: dir, guest: guest_dir, perms: FsPerms::ReadOnly });
            continue;
        }
        let dir = work_dir.join("files").join(i.to_string());
        fs::create_dir_all(&dir).map_err(|e| ExecutorError::Failed(format!("cannot create {}: {e}", dir.display())))?;
        for input in &group {
            let name = Path::new(&input.target).file_name().ok_or_else(|| {
                ExecutorError::InvalidSpec(format!("the input Target {} does not name a file", input.target))
            })?;
            let staged = dir.join(name);
            if let Err(link) = fs::hard_link(&input.host_path, &staged) {
                // A copy would not carry the job's writes back to the host file.
                if !input.read_only {
                    return Err(ExecutorError::Failed(format!(
                        "cannot mount the writable file {} at {}: {link}",
                        input.host_path.display(),
                        input.target
                    )));
                }
                fs::copy(&input.host_path, &staged).map_err(|e| {
                    ExecutorError::Failed(format!(
                        "cannot mount {} at {}: {e}",
                        input.host_path.display(),
                        input.target
                    ))
                })?;
            }
        }
        let read_only = group.iter().any(|i| i.read_only);
        out.push(Mount { host: dir, guest: guest_dir, perms: perms(read_only) });
    }
    Ok(out)
}

/// The folder a lone read-only file input can be mounted from as it is: one the node made for
/// it inside this execution's folder (beside `work_dir`), holding that file alone under its
/// Target's name. Staging it would cost two folders and a link per run for the same view.
fn own_folder(group: &[&PreparedInput], work_dir: &Path) -> Option<PathBuf> {
    let [input] = group else { return None };
    let execution = work_dir.parent()?;
    let dir = input.host_path.parent()?;
    let name = Path::new(&input.target).file_name()?;
    let lone = || {
        let mut entries = fs::read_dir(dir).ok()?;
        let only = entries.next()?.ok()?;
        (entries.next().is_none() && only.file_name() == name).then_some(())
    };
    (input.read_only && dir.starts_with(execution) && dir != execution && input.host_path.file_name() == Some(name))
        .then(lone)
        .flatten()
        .map(|()| dir.to_owned())
}

/// Whether a module imports anything beyond WASI.
fn needs_linking(module: &Module) -> bool {
    module.imports().any(|i| i.module() != WASI_MODULE)
}

fn poisoned() -> ExecutorError {
    ExecutorError::Failed("module cache lock poisoned".into())
}

/// How a call into the module ended when it did not return normally.
enum RunEnd {
    /// `proc_exit` with a code: a normal end.
    Exit(i32),
    /// Anything else.
    Error(ExecutorError),
}

fn finish(end: Result<(), RunEnd>) -> Result<RunOutcome, ExecutorError> {
    match end {
        Ok(()) => Ok(RunOutcome { exit_code: 0 }),
        Err(RunEnd::Exit(code)) => Ok(RunOutcome { exit_code: code }),
        Err(RunEnd::Error(e)) => Err(e),
    }
}

fn classify(e: wasmtime::Error, store: &Store<State>, timeout: Option<Duration>) -> RunEnd {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return RunEnd::Exit(exit.0);
    }
    if let Some(i) = e.downcast_ref::<Interrupt>() {
        return RunEnd::Error(match i {
            Interrupt::Timeout => ExecutorError::TimedOut(timeout.unwrap_or_default()),
            Interrupt::Cancelled => ExecutorError::Cancelled,
        });
    }
    if let Some(desired) = store.data().limiter.exceeded {
        let max = store.data().limiter.max_bytes.unwrap_or_default();
        return RunEnd::Error(ExecutorError::OutOfMemory(format!(
            "out of memory: the module tried to grow its memory to {desired} bytes, past the job's memory limit of {max} bytes; raise Resources.Memory"
        )));
    }
    RunEnd::Error(ExecutorError::Failed(format!("the module trapped: {e:#}")))
}

/// Finds a module's file among the inputs: a Target equal to the path (a file, or a directory
/// with exactly one `.wasm`), or a path inside a directory input.
fn resolve_module(inputs: &[PreparedInput], target: &str) -> Result<PathBuf, ExecutorError> {
    let norm = |s: &str| format!("/{}", s.trim_matches('/'));
    let want = norm(target);
    for input in inputs {
        let t = norm(&input.target);
        let path = if want == t {
            input.host_path.clone()
        } else if let Some(rest) = want.strip_prefix(&format!("{t}/")) {
            input.host_path.join(rest)
        } else {
            continue;
        };
        if path.is_dir() {
            let wasm: Vec<PathBuf> = fs::read_dir(&path)
                .map_err(|e| ExecutorError::InvalidSpec(format!("cannot list {target}: {e}")))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
                .collect();
            return match wasm.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(ExecutorError::InvalidSpec(format!("{target} is a directory with no .wasm file"))),
                _ => Err(ExecutorError::InvalidSpec(format!(
                    "{target} is a directory with several .wasm files: name the one to run"
                ))),
            };
        }
        return Ok(path);
    }
    Err(ExecutorError::InvalidSpec(format!("the module {target} is not in any input source")))
}

#[async_trait::async_trait]
impl bacalhau_executor::Executor for WasmExecutor {
    fn engine_type(&self) -> &'static str {
        ENGINE_WASM
    }

    fn validate(&self, request: &RunRequest) -> Result<(), ExecutorError> {
        Self::spec(request).map(|_| ())
    }

    async fn run(&self, request: RunRequest) -> Result<RunOutcome, ExecutorError> {
        let spec = Self::spec(&request)?;
        let inner = self.inner.clone();
        // A thread of its own, not tokio's blocking pool: a run lasts as long as the job, and
        // hundreds of them parked in the pool keep hundreds of idle threads (and their stacks
        // and malloc caches) alive after a burst; the store's commits and the folders' file
        // work share that pool and want it short. Starting a thread costs microseconds.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("wasm-run".into())
            .spawn(move || {
                let _ = tx.send(inner.run_blocking(request, spec));
            })
            .map_err(|e| ExecutorError::Failed(format!("cannot start a thread for the WASM run: {e}")))?;
        rx.await.map_err(|_| ExecutorError::Failed("the WASM runner crashed (it panicked)".into()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(host: &Path, target: &str) -> PreparedInput {
        PreparedInput { host_path: host.to_owned(), target: target.into(), read_only: true }
    }

    #[test]
    fn a_file_input_is_mounted_alone_under_its_target_name() {
        let tmp = tempfile::tempdir().expect("tmp");
        let host = tmp.path().join("host");
        fs::create_dir_all(&host).expect("mkdir");
        fs::write(host.join("a.txt"), "a").expect("write");
        fs::write(host.join("secret"), "s").expect("write");
        let work = tmp.path().join("work");
        let m = mounts(&[input(&host.join("a.txt"), "/data/file.txt"), input(&host.join("a.txt"), "main.wasm")], &work)
            .expect("mounts");
        assert_eq!(m.len(), 2, "{m:?}");
        let data = m.iter().find(|m| m.guest == "/data").expect("/data mounted");
        let names: Vec<_> = fs::read_dir(&data.host).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(names, ["file.txt"]);
        assert_eq!(fs::read_to_string(data.host.join("file.txt")).expect("read"), "a");
        assert!(matches!(data.perms, FsPerms::ReadOnly));
        assert!(m.iter().any(|m| m.guest == "/"), "{m:?}");
        // Staging again (a retried run) starts from a clean folder.
        mounts(&[input(&host.join("a.txt"), "/data/file.txt")], &work).expect("again");
    }

    #[test]
    fn a_lone_input_in_its_own_folder_in_the_execution_is_mounted_from_there() {
        let tmp = tempfile::tempdir().expect("tmp");
        let (exec, work) = (tmp.path().join("exec"), tmp.path().join("exec/engine"));
        let own = exec.join("inputs/0");
        fs::create_dir_all(&own).expect("mkdir");
        fs::write(own.join("main.wasm"), "m").expect("write");
        let m = mounts(&[input(&own.join("main.wasm"), "/wasm/main.wasm")], &work).expect("mounts");
        assert_eq!((m[0].host.as_path(), m[0].guest.as_str()), (own.as_path(), "/wasm"));
        assert!(matches!(m[0].perms, FsPerms::ReadOnly));
        assert!(!work.exists(), "nothing staged");

        // Staged instead: a sibling beside it, a writable input, a name other than the
        // Target's, or a folder outside the execution's.
        fs::write(own.join("other"), "o").expect("write");
        let staged = |inputs: &[PreparedInput]| mounts(inputs, &work).expect("mounts")[0].host.starts_with(&work);
        assert!(staged(&[input(&own.join("main.wasm"), "/wasm/main.wasm")]));
        fs::remove_file(own.join("other")).expect("rm");
        let writable = PreparedInput { read_only: false, ..input(&own.join("main.wasm"), "/wasm/main.wasm") };
        assert!(staged(&[writable]));
        assert!(staged(&[input(&own.join("main.wasm"), "/wasm/renamed.wasm")]));
        let host = tmp.path().join("host");
        fs::create_dir_all(&host).expect("mkdir");
        fs::write(host.join("main.wasm"), "m").expect("write");
        assert!(staged(&[input(&host.join("main.wasm"), "/wasm/main.wasm")]));
    }

    #[test]
    fn a_file_directly_inside_a_folder_input_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        fs::write(tmp.path().join("f"), "x").expect("write");
        let e = mounts(&[input(tmp.path(), "/data"), input(&tmp.path().join("f"), "/data/f")], &tmp.path().join("w"))
            .expect_err("refused");
        assert!(e.to_string().contains("lies directly in the folder input mounted at /data"), "{e}");
    }
}
