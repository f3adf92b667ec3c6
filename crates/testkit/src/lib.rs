//! Test helpers: WASM test programs and a real `bacalhau serve` process on a free port.
//!
//! Test programs are C compiled with Debian's clang for wasm32-wasi (installed by `.ci/run`),
//! or WAT assembled with the `wat` crate; none are checked in as binaries.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod browser;
pub mod kubo;

use anyhow::{Context, Result, bail};

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Compiles `wasm/<name>.c` to WASI once per source version and returns the module's path.
pub fn c_program(name: &str) -> Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("wasm").join(format!("{name}.c"));
    let text = std::fs::read(&src).with_context(|| format!("no test program {}", src.display()))?;
    let hash = text.iter().fold(0xcbf29ce484222325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100000001b3));
    let dir = std::env::temp_dir().join("bacalhau-test-wasm");
    std::fs::create_dir_all(&dir)?;
    let out = dir.join(format!("{name}-{hash:016x}.wasm"));
    if out.exists() {
        return Ok(out);
    }
    let tmp = dir.join(format!("{name}-{hash:016x}.{}.tmp", std::process::id()));
    let status = Command::new("clang")
        .args(["--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-Wl,--strip-all", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context("cannot run clang: install it with `apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32`")?;
    if !status.success() {
        bail!("clang failed to build {}: install `clang lld wasi-libc libclang-rt-14-dev-wasm32`", src.display());
    }
    std::fs::rename(&tmp, &out)?;
    Ok(out)
}

/// A WAT module that prints `Hello, world!` and returns.
pub fn hello_wat() -> Result<Vec<u8>> {
    Ok(wat::parse_str(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Hello, world!\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 14))
    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))"#,
    )?)
}

/// A WAT module that exits with `code`.
pub fn exit_wat(code: i32) -> Result<Vec<u8>> {
    Ok(wat::parse_str(format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    ))?)
}

/// A module as an inline `data:` URL, as `wasm run` ships it.
pub fn wasm_data_url(wasm: &[u8]) -> String {
    use base64::Engine as _;
    format!("data:application/wasm;base64,{}", base64::engine::general_purpose::STANDARD.encode(wasm))
}

/// A batch job of `count` partitions running the module at `module_url` (a `data:` URL) with
/// small resources, for in-process nodes in tests and benchmarks.
pub fn wasm_job(module_url: &str, count: u32) -> bacalhau_model::Job {
    use bacalhau_model::{InputSource, Job, JobType, ResourcesConfig, SpecConfig, Task};
    Job {
        r#type: JobType::Batch,
        count,
        tasks: vec![Task {
            name: "main".into(),
            engine: SpecConfig::new("wasm").with_param("EntryModule", "/wasm/main.wasm"),
            input_sources: vec![InputSource {
                source: SpecConfig::new("inline").with_param("URL", module_url),
                alias: String::new(),
                target: "/wasm/main.wasm".into(),
            }],
            resources: ResourcesConfig { cpu: "10m".into(), memory: "16Mb".into(), ..Default::default() },
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A WAT module that never ends.
pub fn spin_wat() -> Result<Vec<u8>> {
    Ok(wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))"#)?)
}

/// A WAT module that grows its memory by `pages` 64 KiB pages and traps if refused.
pub fn grow_wat(pages: u32) -> Result<Vec<u8>> {
    Ok(wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))))"#
    ))?)
}

/// A free loopback port (bound and released), from below Linux's ephemeral range
/// (32768-60999): a port the kernel hands out for `:0` could be taken meanwhile by another
/// listener of the same test that asked for any port (a node's IPFS peer, say).
pub fn free_port() -> Result<u16> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    // Spread processes apart by PID, then walk: tests in one process never get the same port.
    let base = 20_000 + (std::process::id() % 500) * 20;
    for _ in 0..2_000 {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (base - 20_000 + step) % 12_000;
        let port = u16::try_from(port).unwrap_or(20_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `f` until it returns `Some` or the deadline passes.
pub fn wait_for<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > end {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `len` bytes that do not repeat (xorshift64 from `seed`): repeating data would dedupe into a
/// handful of IPFS blocks and hide transfer bugs.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A `bacalhau serve` child process with its own data dir and port.
#[derive(Debug)]
pub struct Serve {
    child: Option<Child>,
    bin: PathBuf,
    /// The API port.
    pub port: u16,
    /// The data dir (`BACALHAU_DIR`).
    pub dir: PathBuf,
    /// A scratch dir tests may use as the CLI's working directory.
    pub work: PathBuf,
    _tmp: tempfile::TempDir,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Serve {
    /// Starts `bin serve` on a free port with a fresh data dir.
    pub fn start(bin: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_with(bin, None, extra)
    }

    /// Starts `bin serve` on a free port with its data dir at `dir` (for tests that choose
    /// the disk).
    pub fn start_in(bin: &Path, dir: &Path, extra: &[&str]) -> Result<Self> {
        Self::start_with(bin, Some(dir), extra)
    }

    /// Starts `bin serve` with these environment variables too (an operator's AWS keys, say).
    pub fn start_env(bin: &Path, extra: &[&str], env: &[(&str, &str)]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work)?;
        let mut s = Self {
            child: None,
            bin: bin.to_owned(),
            port: free_port()?,
            dir: tmp.path().join("data"),
            work,
            _tmp: tmp,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        };
        s.restart()?;
        Ok(s)
    }

    /// A handle on a server that is already running on `port` (in this process, say): the
    /// CLI helpers work as for a started one; there is no process to restart or kill.
    pub fn attach(bin: &Path, port: u16) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work)?;
        Ok(Self {
            child: None,
            bin: bin.to_owned(),
            port,
            dir: tmp.path().join("data"),
            work,
            _tmp: tmp,
            extra: Vec::new(),
            env: Vec::new(),
        })
    }

    fn start_with(bin: &Path, dir: Option<&Path>, extra: &[&str]) -> Result<Self> {
        let tmp = tempfile::tempdir()?;
        let dir = dir.map_or_else(|| tmp.path().join("data"), Path::to_owned);
        let work = tmp.path().join("work");
        std::fs::create_dir_all(&work)?;
        let mut s = Self {
            child: None,
            bin: bin.to_owned(),
            port: free_port()?,
            dir,
            work,
            _tmp: tmp,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: Vec::new(),
        };
        s.restart()?;
        Ok(s)
    }

    /// (Re)starts the server on the same port and data dir, and waits until it answers.
    pub fn restart(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.work.join("serve.log"))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .args(&self.extra)
            .env("BACALHAU_DIR", &self.dir)
            .env("BACALHAU_API_HOST", "127.0.0.1")
            .env("BACALHAU_API_PORT", self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .context("cannot start bacalhau serve")?;
        self.child = Some(child);
        let port = self.port;
        let mut exited = None;
        let child = &mut self.child;
        let tls = self.extra.iter().any(|a| a == "--tls-cert");
        let up = wait_for("serve to answer /api/v1/agent/alive", DEADLINE, || {
            // A server that refused to start has said why and exited: no point waiting.
            if let Some(status) = child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                exited = Some(status);
                return Some(false);
            }
            let alive =
                if tls { https_get(port, "/api/v1/agent/alive") } else { http_get(port, "/api/v1/agent/alive") };
            alive.ok().filter(|b| b.contains("OK")).map(|_| true)
        });
        match (up, exited) {
            (Ok(true), _) => Ok(()),
            (_, Some(status)) => {
                self.child = None;
                bail!("serve exited ({status}) before answering; serve log:\n{}", self.log())
            }
            (Err(e), None) => Err(e).with_context(|| format!("serve log:\n{}", self.log())),
            (Ok(false), None) => bail!("serve stopped answering"),
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("serve.log")).unwrap_or_default()
    }

    /// Kills the server with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill()?;
            c.wait()?;
        }
        Ok(())
    }

    /// Runs the CLI against this server from the work dir.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_env(args, &[])
    }

    /// Runs the CLI with extra environment variables.
    pub fn cli_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .current_dir(&self.work)
            .env("BACALHAU_API_HOST", "127.0.0.1")
            .env("BACALHAU_API_PORT", self.port.to_string())
            .env_remove("BACALHAU_DIR");
        if self.tls() {
            // The tests' certificates are self-signed for 127.0.0.1.
            cmd.env("BACALHAU_INSECURE_TLS", "true");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        match cmd.output() {
            Ok(o) => o,
            Err(e) => panic!("cannot run the bacalhau CLI: {e}"),
        }
    }

    /// Runs the CLI, fails the test if it fails, and returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "bacalhau {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{}\nserve log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        stdout
    }

    /// Runs the CLI expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "bacalhau {args:?} should have failed; stdout:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// GET on the API, returning the body.
    pub fn get(&self, path: &str) -> Result<String> {
        if self.tls() {
            return https_get(self.port, path);
        }
        http_get(self.port, path)
    }

    /// Whether this server's API speaks TLS (it was given --tls-cert).
    pub fn tls(&self) -> bool {
        self.extra.iter().any(|a| a == "--tls-cert")
    }

    /// The orchestrator's node list (`/api/v1/orchestrator/nodes`), as JSON values.
    pub fn nodes(&self) -> Vec<serde_json::Value> {
        self.get("/api/v1/orchestrator/nodes")
            .ok()
            .and_then(|b| serde_json::from_str::<serde_json::Value>(&b).ok())
            .and_then(|v| v["Nodes"].as_array().cloned())
            .unwrap_or_default()
    }

    /// How many nodes are CONNECTED.
    pub fn connected(&self) -> usize {
        self.nodes().iter().filter(|n| n["Connection"] == "CONNECTED").count()
    }

    /// Waits until exactly `n` nodes are connected (panics with the node list if not).
    pub fn wait_connected(&self, n: usize) {
        wait_for(&format!("{n} compute nodes to connect"), DEADLINE, || (self.connected() == n).then_some(()))
            .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", self.nodes(), self.log()));
    }

    /// `wasm run --wait=false ARGS...`; returns the job ID.
    pub fn submit_wasm(&self, args: &[&str]) -> String {
        let mut full = vec!["wasm", "run", "--wait=false"];
        full.extend_from_slice(args);
        self.ok(&full).trim().to_owned()
    }

    /// `job describe ID --output json`: the job, its executions and history.
    pub fn describe(&self, id: &str) -> serde_json::Value {
        let out = self.ok(&["job", "describe", id, "--output", "json"]);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("job describe {id} is not JSON ({e}): {out}"))
    }

    /// A job's executions (`job executions ID --output json`).
    pub fn executions(&self, id: &str) -> Vec<serde_json::Value> {
        serde_json::from_str::<serde_json::Value>(&self.ok(&["job", "executions", id, "--output", "json"]))
            .ok()
            .and_then(|v| v.as_array().cloned())
            .unwrap_or_default()
    }

    /// The job's state string, from `job describe --output json`.
    pub fn job_state(&self, id: &str) -> Result<String> {
        let out = self.cli(&["job", "describe", id, "--output", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        Ok(v["Job"]["State"]["StateType"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the job is in a terminal state and returns it.
    pub fn wait_terminal(&self, id: &str) -> Result<String> {
        wait_for(&format!("job {id} to finish"), DEADLINE, || {
            self.job_state(id).ok().filter(|s| matches!(s.as_str(), "Completed" | "Failed" | "Stopped"))
        })
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id().cast_signed()),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(5);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET over https on loopback (curl, not checking the test's self-signed certificate).
pub fn https_get(port: u16, path: &str) -> Result<String> {
    let out = Command::new("curl")
        .args(["-skf", "--max-time", "10", &format!("https://127.0.0.1:{port}{path}")])
        .output()
        .context("running curl")?;
    if !out.status.success() {
        bail!("GET https {path}: curl exited {}", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A minimal HTTP/1.0 GET over loopback, so the harness needs no HTTP client.
pub fn http_get(port: u16, path: &str) -> Result<String> {
    let (status, body) = http_request(port, "GET", path, &[], b"")?;
    if status != 200 {
        bail!("GET {path}: {status}\n{body}");
    }
    Ok(body)
}

/// One HTTP/1.0 request over loopback with the given headers and body; returns the status and
/// the body, whatever the status (for tests of refusals).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut head = format!("{method} {path} HTTP/1.0\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str("Host: 127.0.0.1\r\n");
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A server may answer (413, 401) before it has read a large body; that is not an error here.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let buf = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("{method} {path}: no status in {head:?}"))?;
    Ok((status, body.to_owned()))
}

/// One sample of a Prometheus text exposition.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The series name (`_bucket`, `_sum` and `_count` included for histograms).
    pub name: String,
    /// Its labels.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// A scrape of `/metrics`: its samples and each family's `# TYPE`.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    /// Every sample, in order.
    pub samples: Vec<Sample>,
    /// Family name → type (`counter`, `gauge`, `histogram`, `summary`).
    pub types: std::collections::BTreeMap<String, String>,
}

impl Scrape {
    /// Parses the Prometheus text format (version 0.0.4), refusing any line it cannot read.
    pub fn parse(text: &str) -> Result<Scrape> {
        let mut out = Scrape::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, ty) = rest.split_once(' ').with_context(|| format!("bad TYPE line {line:?}"))?;
                out.types.insert(name.to_owned(), ty.to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').with_context(|| format!("no value in {line:?}"))?;
            let value: f64 = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().with_context(|| format!("bad value in {line:?}"))?,
            };
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), std::collections::BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').with_context(|| format!("unclosed labels in {line:?}"))?;
                    (name.to_owned(), parse_labels(body).with_context(|| format!("bad labels in {line:?}"))?)
                }
            };
            out.samples.push(Sample { name, labels, value });
        }
        Ok(out)
    }

    /// The sum of the samples named `name` that carry every label in `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
            .map(|s| s.value)
            .sum()
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_labels(body: &str) -> Result<std::collections::BTreeMap<String, String>> {
    let mut labels = std::collections::BTreeMap::new();
    let mut rest = body.trim_start_matches(',');
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").context("label without =\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => bail!("dangling escape"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => bail!("unterminated label value"),
            }
        };
        labels.insert(key.trim().to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    Ok(labels)
}

const SMALL_DISK_ENV: &str = "BACALHAU_TEST_SMALL_DISK";

/// Runs the calling test again, alone, in a private mount namespace (`unshare -m`, as root)
/// where a tmpfs of `mib` MiB is mounted, and returns `None` when it did (the caller then
/// returns). Inside, it returns the mount point: a disk the test can fill without touching
/// the machine's.
pub fn rerun_with_small_disk(test_name: &str, mib: u64) -> Result<Option<PathBuf>> {
    if let Some(dir) = std::env::var_os(SMALL_DISK_ENV) {
        return Ok(Some(PathBuf::from(dir)));
    }
    let dir = tempfile::tempdir()?;
    let status = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg(format!(r#"mount -t tmpfs -o size={mib}m tmpfs "${SMALL_DISK_ENV}" && exec "$@""#))
        .arg("sh")
        .arg(std::env::current_exe()?)
        .args(["--exact", test_name, "--nocapture", "--test-threads=1"])
        .env(SMALL_DISK_ENV, dir.path())
        .status()
        .context("running unshare -m (util-linux, as root) for a private mount namespace")?;
    if !status.success() {
        bail!("the run with a small disk failed ({status}); its output is above");
    }
    Ok(None)
}

/// An orchestrator and compute nodes in this process (`bacalhau_node::cluster::Cluster` on a
/// runtime of its own), with a [`Serve`] handle on the orchestrator's API for the CLI
/// helpers: what a test of several nodes needs, without starting a process per node.
#[cfg(feature = "cluster")]
#[derive(Debug)]
pub struct Cluster {
    /// The orchestrator's API, for the CLI helpers.
    pub api: Serve,
    inner: Option<bacalhau_node::cluster::Cluster>,
    runtime: Option<tokio::runtime::Runtime>,
    /// The nodes' data; removed after they stop.
    _data: tempfile::TempDir,
}

#[cfg(feature = "cluster")]
impl Cluster {
    /// `computes` compute nodes; returns once all have registered.
    pub fn start(bin: &Path, computes: usize) -> Result<Self> {
        Self::start_with(bin, computes, |_, _| {})
    }

    /// The same, with `shape` adjusting compute node `i`'s settings (labels, say).
    pub fn start_with(
        bin: &Path,
        computes: usize,
        shape: impl Fn(usize, &mut bacalhau_node::ComputeRole),
    ) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let tmp = tempfile::tempdir()?;
        let mut cfg = bacalhau_node::cluster::ClusterConfig::new(tmp.path(), computes);
        cfg.orchestrator.node_disconnect_timeout = Duration::from_secs(6);
        let inner = runtime.block_on(bacalhau_node::cluster::Cluster::start_with(cfg, shape))?;
        let mut api = Serve::attach(bin, inner.orchestrator.api_addr.port())?;
        api.dir = tmp.path().to_owned();
        Ok(Self { api, inner: Some(inner), runtime: Some(runtime), _data: tmp })
    }

    /// The compute nodes' IDs, in order.
    pub fn compute_ids(&self) -> Vec<String> {
        self.inner.iter().flat_map(|c| c.computes.iter().map(|n| n.node_id.to_string())).collect()
    }
}

#[cfg(feature = "cluster")]
impl Drop for Cluster {
    fn drop(&mut self) {
        if let (Some(inner), Some(rt)) = (self.inner.take(), self.runtime.take()) {
            let _ = rt.block_on(async { tokio::time::timeout(Duration::from_secs(10), inner.stop()).await });
            rt.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

/// A real HTTP server (Python's `http.server`, which sends `Last-Modified` and answers
/// `If-Modified-Since` with 304) on a loopback port, logging each request to a file.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: PathBuf,
}

impl HttpServer {
    /// Serves `dir`, once the port answers.
    pub fn start(dir: &Path) -> Result<Self> {
        let port = free_port()?;
        let log = dir.with_extension(format!("http-{port}.log"));
        let child = Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", "127.0.0.1", "--directory"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("python3 -m http.server")?;
        let mut server = Self { child, port, log };
        if !listening(&mut server.child, port, "the HTTP server")? {
            bail!(
                "python3 -m http.server exited at start: {}",
                std::fs::read_to_string(&server.log).unwrap_or_default()
            );
        }
        Ok(server)
    }

    /// How many requests for `path` got `status`.
    pub fn answered(&self, path: &str, status: u16) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines().filter(|l| l.contains(&format!("\"GET {path} HTTP/1.1\" {status} "))).count()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Waits until `port` on loopback answers (true) or `child` has exited (false).
fn listening(child: &mut Child, port: u16, what: &str) -> Result<bool> {
    wait_for(what, DEADLINE, || {
        let exited = matches!(child.try_wait(), Ok(Some(_)));
        (exited || TcpStream::connect(("127.0.0.1", port)).is_ok()).then_some(!exited)
    })
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// A real S3-compatible server (moto's server mode, installed by `scripts/s3-env`) on a
/// loopback port, with the AWS CLI to put objects in it as a user would.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    python: PathBuf,
}

/// The keys the tests' S3 server takes (moto accepts any).
pub const S3_TEST_KEYS: [(&str, &str); 4] = [
    ("AWS_ACCESS_KEY_ID", "bacalhau-test"),
    ("AWS_SECRET_ACCESS_KEY", "bacalhau-test-secret"),
    ("AWS_DEFAULT_REGION", "us-east-1"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

impl S3Server {
    /// Starts the server once its port answers.
    pub fn start() -> Result<Self> {
        let out = Command::new(kubo::repo_root().join("scripts/s3-env")).output().context("running scripts/s3-env")?;
        if !out.status.success() {
            bail!("scripts/s3-env could not install moto: {}", String::from_utf8_lossy(&out.stderr));
        }
        let python = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let port = free_port()?;
        let child = Command::new(&python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(S3_TEST_KEYS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto.server")?;
        let mut server = Self { child, port, python };
        if !listening(&mut server.child, port, "the S3 server")? {
            bail!("moto.server exited at start");
        }
        Ok(server)
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Puts the file at `body` as `bucket`/`key`, the key exactly as given (`s3api put-object`).
    pub fn put(&self, bucket: &str, key: &str, body: &Path) -> Result<String> {
        self.aws(&["s3api", "put-object", "--bucket", bucket, "--key", key, "--body", &body.display().to_string()])
    }

    /// Runs `aws ARGS --endpoint-url ENDPOINT` (the AWS CLI from the same venv).
    pub fn aws(&self, args: &[&str]) -> Result<String> {
        let aws = self.python.with_file_name("aws");
        let out = Command::new(aws)
            .args(args)
            .args(["--endpoint-url", &self.endpoint()])
            .envs(S3_TEST_KEYS)
            .output()
            .context("running the AWS CLI")?;
        if !out.status.success() {
            bail!("aws {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}
