//! `bacalhau devstack --computes N`: an orchestrator and N compute nodes in one process, the
//! compute nodes joined over the real node port (gRPC on loopback) as separate machines would
//! be, each with its own data dir and its own API (agent, logs, local results, IPFS): a
//! `bacalhau_node::cluster::Cluster`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use bacalhau_node::OrchestratorRole;
use bacalhau_node::cluster::{Cluster, ClusterConfig};
use tracing::info;

use crate::args::DevstackArgs;
use crate::serve::wait_for_signal;

/// Runs until Ctrl-C or SIGTERM; data lives in `<data dir>/devstack` when a data dir is set
/// (`--data-dir`, `BACALHAU_DIR`), else in a temporary dir removed at exit.
pub async fn run(
    host: &str,
    api_port: u16,
    data_dir: Option<PathBuf>,
    args: DevstackArgs,
    cfg: &crate::config::Config,
) -> Result<()> {
    let tmp = tempfile::Builder::new().prefix("bacalhau-devstack-").tempdir()?;
    let dir = data_dir.map_or_else(|| tmp.path().to_owned(), |d| d.join("devstack"));
    if !crate::serve::is_loopback(host) {
        anyhow::bail!(
            "devstack has no authentication, so it listens on loopback only; use --api-host 127.0.0.1 (or run `serve` with API.Auth.Users to expose a node)"
        );
    }
    let mut layout = ClusterConfig::new(&dir, usize::try_from(args.computes)?);
    layout.host = if host == "0.0.0.0" { "127.0.0.1".to_owned() } else { host.to_owned() };
    layout.api_port = api_port;
    layout.node_port = args.node_port;
    layout.prefix = "devstack".to_owned();
    layout.orchestrator = OrchestratorRole {
        defaults: crate::serve::job_defaults(cfg, None)?,
        node_disconnect_timeout: Duration::from_secs(args.node_disconnect_timeout),
        ..OrchestratorRole::default()
    };
    let cluster = Cluster::start_with(layout, |i, role| {
        role.labels.insert("devstack-index".to_owned(), i.to_string());
    })
    .await?;
    let node_addr = cluster.orchestrator.node_addr.map(|a| a.to_string()).unwrap_or_default();
    println!(
        "bacalhau devstack: an orchestrator (API on {}, compute nodes join on {node_addr}) and {} compute nodes:",
        cluster.api_url(),
        args.computes
    );
    for (i, c) in cluster.computes.iter().enumerate() {
        println!("  {}: API {}, data in {}", c.node_id, c.api_url(), dir.join(format!("compute-{i}")).display());
    }
    let api = cluster.orchestrator.api_addr;
    println!("To use it from another shell:");
    println!("export BACALHAU_API_HOST={}\nexport BACALHAU_API_PORT={}", api.ip(), api.port());
    wait_for_signal().await;
    info!("shutting down the devstack");
    cluster.stop().await?;
    drop(tmp);
    Ok(())
}
