//! The dependency rules of ARCHITECTURE.md, checked against the crates' manifests.

use std::path::Path;

fn deps(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(krate).join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let deps = text.split("[dependencies]").nth(1).unwrap_or("");
    let deps = deps.split("\n[").next().unwrap_or("");
    deps.lines().filter_map(|l| l.split('=').next()).map(|k| k.trim().to_owned()).filter(|k| !k.is_empty()).collect()
}

#[test]
fn layers_depend_only_downward() {
    let heavy = ["wasmtime", "wasmtime-wasi", "bollard", "axum", "reqwest", "bacalhau-executor-wasm", "bacalhau-api"];
    for krate in ["model", "protocol", "executor", "storage", "compute", "orchestrator", "ipfs"] {
        let d = deps(krate);
        for h in heavy {
            assert!(!d.contains(&h.to_owned()), "{krate} must not depend on {h}");
        }
    }
    assert!(!deps("model").iter().any(|d| d == "tokio" || d.starts_with("bacalhau-")), "model is pure");
    assert!(
        !deps("orchestrator").contains(&"bacalhau-compute".to_owned()),
        "orchestrator knows compute only through protocol"
    );
    assert!(
        !deps("compute").contains(&"bacalhau-orchestrator".to_owned()),
        "compute knows the orchestrator only through protocol"
    );
    for krate in ["model", "protocol", "executor", "storage", "compute", "orchestrator", "api", "cli"] {
        let has_wasmtime = deps(krate).iter().any(|d| d == "wasmtime");
        assert!(!has_wasmtime, "only executor-wasm may depend on wasmtime, not {krate}");
    }
    assert!(deps("executor-wasm").contains(&"wasmtime".to_owned()));
    for krate in ["model", "protocol", "executor", "storage", "compute", "orchestrator", "api", "executor-wasm"] {
        assert!(!deps(krate).iter().any(|d| d == "bollard"), "only executor-docker may depend on bollard, not {krate}");
    }
    // The network transport is a plug-in below cli: orchestrator and compute see only protocol.
    for krate in ["model", "protocol", "executor", "storage", "compute", "orchestrator", "api", "ipfs"] {
        let d = deps(krate);
        assert!(
            !d.iter().any(|d| d == "tonic" || d == "bacalhau-transport"),
            "{krate} must not depend on the transport"
        );
    }
    assert!(deps("transport").contains(&"tonic".to_owned()));
    // libp2p lives only in the IPFS peer; the rest reach it through `ipfs::Fetcher`.
    for krate in ["model", "protocol", "executor", "storage", "compute", "orchestrator", "api", "ipfs", "transport"] {
        let d = deps(krate);
        assert!(
            !d.iter().any(|d| d.starts_with("libp2p") || d == "bacalhau-ipfs-peer"),
            "{krate} must not depend on libp2p or the IPFS peer"
        );
    }
    assert!(deps("ipfs-peer").contains(&"libp2p".to_owned()));
    assert!(!deps("ipfs-peer").iter().any(|d| d.starts_with("bacalhau-") && d != "bacalhau-ipfs"));
    assert!(!deps("transport").iter().any(|d| d == "bacalhau-orchestrator" || d == "bacalhau-compute"));
    // Remote inputs are a leaf the binary wires: compute reaches them only through `storage`'s trait.
    assert!(!deps("compute").iter().any(|d| d == "bacalhau-storage-remote"), "compute must not link the HTTP inputs");
    assert!(
        !deps("storage-remote")
            .iter()
            .any(|d| ["bacalhau-compute", "bacalhau-orchestrator", "bacalhau-api"].contains(&d.as_str())),
        "storage-remote sits below compute"
    );
    // The node is a library: flags and the configuration file are the binary's business.
    assert!(!deps("node").iter().any(|d| d == "clap" || d == "bacalhau-cli"), "node must not parse flags");
    // The simulator runs the engines, not the node: no network, no processes.
    assert!(!deps("sim").iter().any(|d| d == "tokio" || d == "bacalhau-node" || d == "bacalhau-transport"));
}
