//! An orchestrator node and N compute nodes in one process, the compute nodes joined over the
//! real node port (gRPC on loopback) as separate machines would be, each with its own data
//! dir, IPFS peer and API. `bacalhau devstack` runs one; tests and benches start one with
//! [`Cluster::start`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bacalhau_model::NodeId;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{ApiSettings, ComputeRole, Faults, Listeners, Node, NodeConfig, OrchestratorRole, Upstream};

/// How a cluster is laid out.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Where each node keeps its data (`orchestrator/`, `compute-N/`).
    pub dir: PathBuf,
    /// How many compute nodes.
    pub computes: usize,
    /// The address every API and the node port listen on (loopback: there is no
    /// authentication).
    pub host: String,
    /// The orchestrator's API port (0: a free one).
    pub api_port: u16,
    /// The orchestrator's node port (0: a free one).
    pub node_port: u16,
    /// Node IDs are `<prefix>-orchestrator` and `<prefix>-compute-<i>`.
    pub prefix: String,
    /// The orchestrator's settings.
    pub orchestrator: OrchestratorRole,
    /// Each compute node's settings (its upstream is set to the orchestrator).
    pub compute: ComputeRole,
}

impl ClusterConfig {
    /// `computes` compute nodes with their default share of this machine, in `dir`, on
    /// loopback.
    pub fn new(dir: &Path, computes: usize) -> Self {
        // Capacity is measured on the data dir's file system, so it must exist.
        let _ = std::fs::create_dir_all(dir);
        let capacity = bacalhau_compute::detect_capacity(dir, bacalhau_compute::DEFAULT_ALLOCATION_PERCENT);
        Self {
            dir: dir.to_owned(),
            computes,
            host: "127.0.0.1".to_owned(),
            api_port: 0,
            node_port: 0,
            prefix: "cluster".to_owned(),
            orchestrator: OrchestratorRole::default(),
            compute: ComputeRole::new(Upstream::InProcess, capacity),
        }
    }
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// The orchestrator node (it runs no compute role).
    pub orchestrator: Node,
    /// The compute nodes.
    pub computes: Vec<Node>,
    /// Where their data is.
    pub dir: PathBuf,
    shutdown: CancellationToken,
    _tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// `computes` compute nodes in a temporary dir; returns once every one has registered.
    pub async fn start(computes: usize) -> Result<Cluster> {
        let tmp = tempfile::Builder::new().prefix("bacalhau-cluster-").tempdir()?;
        let mut cluster = Self::start_with(ClusterConfig::new(tmp.path(), computes), |_, _| {}).await?;
        cluster._tmp = Some(tmp);
        Ok(cluster)
    }

    /// A cluster laid out by `cfg`, with `shape` adjusting compute node `i`'s settings; returns
    /// once every compute node has registered.
    pub async fn start_with(cfg: ClusterConfig, shape: impl Fn(usize, &mut ComputeRole)) -> Result<Cluster> {
        let shutdown = CancellationToken::new();
        let host = cfg.host.as_str();
        let names = std::sync::Arc::new(bacalhau_api::guard::Names::new([host.to_owned(), "localhost".to_owned()]));
        let api_settings = ApiSettings { names, ..ApiSettings::loopback() };
        let api = TcpListener::bind((host, cfg.api_port))
            .await
            .with_context(|| format!("cannot listen on {host}:{}; choose another API port", cfg.api_port))?;
        let node = TcpListener::bind((host, cfg.node_port))
            .await
            .with_context(|| format!("cannot listen for compute nodes on {host}:{}", cfg.node_port))?;
        let orchestrator = Node::start(
            NodeConfig {
                dir: cfg.dir.join("orchestrator"),
                node_id: NodeId::from(format!("{}-orchestrator", cfg.prefix).as_str()),
                orchestrator: Some(cfg.orchestrator.clone()),
                compute: None,
                api: api_settings.clone(),
                ipfs_listen: Vec::new(),
                ipfs_peers: Vec::new(),
                faults: Faults::default(),
            },
            Listeners { api, node: Some(node), web_ui: None },
            shutdown.clone(),
        )
        .await?;
        let node_addr = orchestrator.node_addr.context("the orchestrator has no node port")?;
        let mut computes = Vec::with_capacity(cfg.computes);
        for i in 0..cfg.computes {
            let mut role = cfg.compute.clone();
            role.upstream = Upstream::Remote {
                address: format!("{host}:{}", node_addr.port()),
                token: cfg.orchestrator.node_token.clone(),
                tls_ca: None,
            };
            role.results_host = host.to_owned();
            role.api_host = host.to_owned();
            shape(i, &mut role);
            let api = TcpListener::bind((host, 0)).await?;
            let node = Node::start(
                NodeConfig {
                    dir: cfg.dir.join(format!("compute-{i}")),
                    node_id: NodeId::from(format!("{}-compute-{i}", cfg.prefix).as_str()),
                    orchestrator: None,
                    compute: Some(role),
                    api: api_settings.clone(),
                    ipfs_listen: Vec::new(),
                    ipfs_peers: Vec::new(),
                    faults: Faults::default(),
                },
                Listeners { api, node: None, web_ui: None },
                shutdown.clone(),
            )
            .await?;
            computes.push(node);
        }
        let cluster = Cluster { orchestrator, computes, dir: cfg.dir, shutdown, _tmp: None };
        cluster.wait_for_nodes(cfg.computes, Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Waits until `n` compute nodes have registered.
    async fn wait_for_nodes(&self, n: usize, within: Duration) -> Result<()> {
        let Some(h) = &self.orchestrator.orchestrator else { bail!("no orchestrator") };
        let deadline = Instant::now() + within;
        loop {
            let joined = h.nodes().await.map_err(|e| anyhow::anyhow!("{e}"))?.len();
            if joined >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("only {joined} of {n} compute nodes registered within {within:?}; see {}", self.dir.display());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The orchestrator's handle.
    pub fn handle(&self) -> &bacalhau_orchestrator::OrchestratorHandle {
        self.orchestrator.orchestrator.as_ref().expect("a cluster's orchestrator node runs the orchestrator role")
    }

    /// The orchestrator's API, for the CLI and REST clients.
    pub fn api_url(&self) -> String {
        self.orchestrator.api_url()
    }

    /// A token that stops every node when cancelled.
    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every node and waits for them.
    pub async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        for c in self.computes {
            c.wait().await?;
        }
        self.orchestrator.wait().await
    }
}
