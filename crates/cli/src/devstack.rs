//! `bacalhau devstack --computes N`: an orchestrator and N compute nodes in one process, the
//! compute nodes joined over the real node port (gRPC on loopback) as separate machines would
//! be, each with its own data dir and its own API (agent, logs, local results, IPFS).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use bacalhau_api::ApiState;
use bacalhau_model::{NodeId, NodeInfo, NodeType};
use bacalhau_orchestrator::{Orchestrator, OrchestratorConfig};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::DevstackArgs;
use crate::serve::{ComputeSettings, start_compute, start_ipfs, start_node_server, version_info, wait_for_signal};

/// Every devstack node's IPFS peer listens on a free loopback port.
const LOOPBACK: &str = "/ip4/127.0.0.1/tcp/0";

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
    let cancel = CancellationToken::new();
    let api = tokio::net::TcpListener::bind((host, api_port))
        .await
        .with_context(|| format!("cannot listen on {host}:{api_port}; choose another port with --api-port"))?;
    let api_addr = api.local_addr()?;
    std::fs::create_dir_all(dir.join("orchestrator"))?;
    let ipfs = start_ipfs(&dir, &[LOOPBACK.to_owned()], &[], false).await?;
    let mut ocfg = OrchestratorConfig::new(dir.join("orchestrator").join("jobs.redb"));
    ocfg.ipfs_addrs = ipfs.addrs();
    ocfg.defaults = crate::serve::job_defaults(cfg, None)?;
    ocfg.node_disconnect_timeout = Duration::from_secs(args.node_disconnect_timeout);
    let orchestrator = Orchestrator::start(ocfg, cancel.child_token()).await?;
    let nodes = tokio::net::TcpListener::bind((host, args.node_port))
        .await
        .with_context(|| format!("cannot listen for compute nodes on {host}:{}", args.node_port))?;
    let node_addr = nodes.local_addr()?;
    start_node_server(nodes, &orchestrator.handle(), orchestrator.node_authority(), None, None, cancel.child_token())
        .await;

    let advertised = if host == "0.0.0.0" { "127.0.0.1" } else { host };
    let mut lines = Vec::new();
    for i in 0..args.computes {
        let node_id = NodeId::from(format!("devstack-compute-{i}").as_str());
        let node_dir = dir.join(format!("compute-{i}"));
        std::fs::create_dir_all(&node_dir)?;
        let listener = tokio::net::TcpListener::bind((host, 0)).await?;
        let addr = listener.local_addr()?;
        let endpoint = bacalhau_transport::connect(
            bacalhau_transport::ClientConfig {
                orchestrator: format!("{advertised}:{}", node_addr.port()),
                node_id: node_id.clone(),
                token: None,
                tls_ca: None,
                key: std::sync::Arc::new(bacalhau_transport::NodeKey::load_or_create(&node_dir.join("node.key"))?),
            },
            cancel.child_token(),
        )?;
        let settings = ComputeSettings {
            dir: &node_dir,
            node_id: node_id.clone(),
            labels: [("devstack-index".to_owned(), i.to_string())].into(),
            allowed: Vec::new(),
            capacity: bacalhau_compute::detect_capacity(&node_dir, bacalhau_compute::DEFAULT_ALLOCATION_PERCENT),
            heartbeat_interval: Duration::from_secs(5),
            disabled: Default::default(),
            results_url: format!("http://{advertised}:{}", addr.port()),
            ipfs: start_ipfs(&node_dir, &[LOOPBACK.to_owned()], &[], false).await?,
            kubo: None,
            prices: None,
            bid_policy: Default::default(),
            tamper: false,
            silent: false,
            drop_bid_acceptances: 0,
        };
        let parts = start_compute(settings, endpoint, cancel.child_token()).await?;
        let state = ApiState {
            orchestrator: None,
            compute: Some(parts.handle),
            version: version_info(),
            node_info: NodeInfo { node_id: node_id.clone(), node_type: NodeType::Compute, ..Default::default() },
            local_results_dir: Some(parts.results_dir),
            ipfs: Some(parts.ipfs.store.clone()),
            ipfs_peer: Some(parts.ipfs.api()),
            auth: Default::default(),
            names: std::sync::Arc::new(crate::serve::node_names(host, advertised)),
            relay_token: None,
        };
        let stop = cancel.clone();
        tokio::spawn(bacalhau_api::serve(listener, state, async move { stop.cancelled().await }));
        lines.push(format!("  {node_id}: API http://{addr}, data in {}", node_dir.display()));
    }
    let state = ApiState {
        orchestrator: Some(orchestrator.handle()),
        compute: None,
        version: version_info(),
        node_info: NodeInfo {
            node_id: NodeId::from("devstack-orchestrator"),
            node_type: NodeType::Requester,
            ..Default::default()
        },
        local_results_dir: None,
        ipfs: Some(ipfs.store.clone()),
        ipfs_peer: Some(ipfs.api()),
        auth: Default::default(),
        names: std::sync::Arc::new(crate::serve::node_names(host, advertised)),
        relay_token: None,
    };
    println!(
        "bacalhau devstack: an orchestrator (API on http://{api_addr}, compute nodes join on {node_addr}) and {} compute nodes:",
        args.computes
    );
    for l in &lines {
        println!("{l}");
    }
    println!("To use it from another shell:");
    println!("export BACALHAU_API_HOST={}\nexport BACALHAU_API_PORT={}", api_addr.ip(), api_addr.port());
    let shutdown = cancel.clone();
    let server = bacalhau_api::serve(api, state, async move { shutdown.cancelled().await });
    let signals = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down the devstack");
        signals.cancel();
    });
    server.await.context("the API server failed")?;
    let _ = tokio::time::timeout(Duration::from_secs(5), orchestrator.join()).await;
    drop(tmp);
    Ok(())
}
