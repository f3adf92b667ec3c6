//! A bacalhau node as a library: the orchestrator role, the compute role, the IPFS peer and
//! the REST API, wired together by [`Node::start`]. `bacalhau serve` builds a [`NodeConfig`]
//! from its flags and configuration and starts one; `bacalhau devstack` and the test suite's
//! [`cluster::Cluster`] start an orchestrator node and compute nodes joined over the network
//! transport, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bacalhau_api::ApiState;
use bacalhau_compute::ComputeHandle;
use bacalhau_model::{BuildVersionInfo, NodeId, NodeInfo, NodeType, SubmissionDefaults};
use bacalhau_orchestrator::{Orchestrator, OrchestratorConfig, OrchestratorHandle};
use bacalhau_protocol::connect_in_process;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod cluster;
mod compute;
mod faults;
mod ipfs;
pub mod kubo_rpc;
pub mod probe;

pub use bacalhau_storage_remote::S3ManagedSettings;
pub use compute::{ComputeRole, Disabled, Upstream};
pub use faults::Faults;
pub use ipfs::IpfsNode;

/// How long the orchestrator gets to stop at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Caps glibc's malloc at one arena per core (at least two) unless `MALLOC_ARENA_MAX` says
/// otherwise. The node's heap is small and bounded (heaptrack over 20,000 jobs: 17 MiB at its
/// peak, 119 KiB never freed), but glibc keeps what is freed: by default up to eight arenas
/// per core, one per busy thread (store commits, folders, WASM runs), each holding its freed
/// pages. Measured over 30,000 jobs on 2 cores, resident memory reached 187 MiB with the
/// defaults and 76 MiB with two arenas (a periodic `malloc_trim` on top gained nothing).
/// Call it first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).max(2);
        // SAFETY: mallopt sets one of malloc's tunables; it takes malloc's own lock and is
        // safe to call at any time.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, i32::try_from(cores).unwrap_or(i32::MAX));
        }
    }
}

/// This build, as the API reports it.
pub fn version_info() -> BuildVersionInfo {
    let v = env!("CARGO_PKG_VERSION");
    let mut parts = v.split('.');
    BuildVersionInfo {
        major: parts.next().unwrap_or("0").into(),
        minor: parts.next().unwrap_or("0").into(),
        git_version: format!("v{v}"),
        git_commit: String::new(),
        build_date: String::new(),
        goos: std::env::consts::OS.into(),
        goarch: std::env::consts::ARCH.into(),
    }
}

/// The orchestrator role's settings.
#[derive(Clone, Debug)]
pub struct OrchestratorRole {
    /// Defaults applied to submissions (`JobDefaults.*`).
    pub defaults: SubmissionDefaults,
    /// A node that sends nothing for this long is disconnected and its work rescheduled.
    pub node_disconnect_timeout: Duration,
    /// New nodes wait as PENDING until an operator approves them.
    pub manual_node_approval: bool,
    /// Finished jobs unchanged this long are deleted (`None`: kept forever).
    pub job_retention: Option<Duration>,
    /// The cluster token compute nodes must present on the node port.
    pub node_token: Option<String>,
    /// PEM certificate and key: the node port speaks TLS.
    pub node_tls: Option<(Vec<u8>, Vec<u8>)>,
    /// How long the URLs it signs for `s3` results last (`None`: it signs none,
    /// `Publishers.Types.S3.PreSignedURLDisabled`); signed with `s3`'s credentials.
    pub s3_presign: Option<Duration>,
    /// The credentials it signs `s3` results with (the standard AWS environment of this process).
    pub s3: bacalhau_storage_remote::S3Settings,
    /// The bucket of the `s3managed` publisher (`Publishers.Types.S3Managed`), signed for with
    /// `s3`'s credentials; `None` refuses `s3managed` jobs.
    pub s3_managed: Option<bacalhau_storage_remote::S3ManagedSettings>,
}

impl Default for OrchestratorRole {
    fn default() -> Self {
        Self {
            defaults: SubmissionDefaults::default(),
            node_disconnect_timeout: Duration::from_secs(30),
            manual_node_approval: false,
            job_retention: Some(bacalhau_orchestrator::DEFAULT_JOB_RETENTION),
            node_token: None,
            node_tls: None,
            // Bacalhau's signer falls back to the AWS SDK's 15 minutes.
            s3_presign: Some(Duration::from_secs(900)),
            s3: bacalhau_storage_remote::S3Settings::from_env(|k| std::env::var(k).ok()),
            s3_managed: None,
        }
    }
}

/// The orchestrator's `s3managed` signer as the orchestrator sees it.
#[derive(Debug)]
struct ManagedUploads(Arc<bacalhau_storage_remote::S3ManagedSigner>);

#[async_trait::async_trait]
impl bacalhau_orchestrator::ManagedUploads for ManagedUploads {
    async fn put_url(&self, job_id: &str, execution_id: &str) -> Result<String, String> {
        self.0.put_url(job_id, execution_id).await.map_err(|e| e.to_string())
    }
}

/// The REST API's settings.
#[derive(Clone, Debug)]
pub struct ApiSettings {
    /// Who may do what; open when no users are configured.
    pub auth: Arc<bacalhau_api::auth::Authorizer>,
    /// PEM certificate and key: the API speaks https.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// The names requests may carry in `Host`.
    pub names: Arc<bacalhau_api::guard::Names>,
    /// Whether `/` serves the web UI.
    pub web_ui: bool,
    /// `WebUI.Listen`: another address (`HOST:PORT`) where the same server (the UI and the API
    /// it uses) listens; the caller binds it.
    pub web_ui_listen: Option<String>,
}

impl ApiSettings {
    /// An open API on loopback.
    pub fn loopback() -> Self {
        Self {
            auth: Arc::default(),
            tls: None,
            names: Arc::new(bacalhau_api::guard::Names::new(["127.0.0.1".to_owned(), "localhost".to_owned()])),
            web_ui: true,
            web_ui_listen: None,
        }
    }
}

/// Everything a node needs to start, resolved (no defaults left to look up).
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// Its data dir (`orchestrator/`, `compute/`, `ipfs/` and `node.key` live here).
    pub dir: PathBuf,
    /// Its ID.
    pub node_id: NodeId,
    /// Run the orchestrator role.
    pub orchestrator: Option<OrchestratorRole>,
    /// Run the compute role.
    pub compute: Option<ComputeRole>,
    /// The API.
    pub api: ApiSettings,
    /// Multiaddrs the IPFS peer listens on (empty: a free loopback port).
    pub ipfs_listen: Vec<String>,
    /// Multiaddrs of IPFS peers to keep connected.
    pub ipfs_peers: Vec<String>,
    /// Test faults (only with the `test-faults` feature).
    pub faults: Faults,
}

/// The sockets a node serves on, bound by the caller (so it chooses ports and reports
/// binding errors in its own terms).
#[derive(Debug)]
pub struct Listeners {
    /// The REST API.
    pub api: TcpListener,
    /// The node port compute nodes dial (orchestrator role only; none: no remote nodes).
    pub node: Option<TcpListener>,
    /// `WebUI.Listen`'s socket, when it is not the API's: the same server listens there too.
    pub web_ui: Option<TcpListener>,
}

/// A running node.
pub struct Node {
    /// Its ID.
    pub node_id: NodeId,
    /// Where its API listens.
    pub api_addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// Where compute nodes join it, if it runs the orchestrator role with a node port.
    pub node_addr: Option<SocketAddr>,
    /// The orchestrator, if it runs that role.
    pub orchestrator: Option<OrchestratorHandle>,
    /// The compute node, if it runs that role.
    pub compute: Option<ComputeHandle>,
    /// Engines its compute node offers.
    pub engines: Vec<String>,
    /// Its block store and IPFS peer.
    pub ipfs: IpfsNode,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    runtime: Option<Orchestrator>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("node_id", &self.node_id).field("api_addr", &self.api_addr).finish()
    }
}

impl Node {
    /// Starts the node's roles and serves its API until `shutdown` fires.
    pub async fn start(cfg: NodeConfig, listeners: Listeners, shutdown: CancellationToken) -> Result<Node> {
        cfg.faults.check()?;
        // Before any part records: what is recorded without a recorder is lost.
        bacalhau_api::metrics::handle();
        bacalhau_ipfs_peer::describe_metrics();
        let NodeConfig {
            dir,
            node_id,
            orchestrator: orch_role,
            compute: compute_role,
            api,
            ipfs_listen,
            ipfs_peers,
            faults,
        } = cfg;
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let api_addr = listeners.api.local_addr()?;
        let scheme = if api.tls.is_some() { "https" } else { "http" };
        let listen = if ipfs_listen.is_empty() { vec!["/ip4/127.0.0.1/tcp/0".to_owned()] } else { ipfs_listen };
        let ipfs = IpfsNode::start(&dir, &listen, &ipfs_peers, faults.corrupt_blocks).await?;

        let mut runtime = None;
        let mut node_addr = None;
        // The managed bucket is checked before anything starts: a node that would refuse
        // every s3managed job later says so now.
        let managed = match orch_role.as_ref().and_then(|r| r.s3_managed.clone().map(|m| (m, r.s3.clone()))) {
            Some((m, s3)) => Some(Arc::new(bacalhau_storage_remote::S3ManagedSigner::new(
                bacalhau_api::tls::http_client_builder(),
                &s3,
                m,
            )?)),
            None => None,
        };
        if let Some(role) = &orch_role {
            std::fs::create_dir_all(dir.join("orchestrator"))?;
            let mut ocfg = OrchestratorConfig::new(dir.join("orchestrator").join("jobs.redb"));
            ocfg.defaults = role.defaults.clone();
            ocfg.node_disconnect_timeout = role.node_disconnect_timeout;
            ocfg.job_retention = role.job_retention;
            ocfg.manual_node_approval = role.manual_node_approval;
            ocfg.ipfs_addrs = ipfs.addrs();
            ocfg.local_node = compute_role.is_some().then(|| node_id.clone());
            ocfg.managed_uploads =
                managed.clone().map(|m| Arc::new(ManagedUploads(m)) as Arc<dyn bacalhau_orchestrator::ManagedUploads>);
            let o = Orchestrator::start(ocfg, shutdown.child_token()).await?;
            if let Some(l) = listeners.node {
                node_addr = Some(l.local_addr()?);
                let inbound = o.handle().inbound();
                let cfg = bacalhau_transport::ServerConfig {
                    token: role.node_token.clone(),
                    tls: role.node_tls.clone(),
                    authority: Some(o.node_authority()),
                };
                let stop = shutdown.child_token();
                tokio::spawn(async move {
                    if let Err(e) =
                        bacalhau_transport::serve(l, inbound, cfg, async move { stop.cancelled().await }).await
                    {
                        tracing::error!("{e}");
                    }
                });
            }
            runtime = Some(o);
        }

        let mut compute = None;
        let mut engines = Vec::new();
        let mut results_dir = None;
        if let Some(role) = compute_role {
            let endpoint = match (&role.upstream, &runtime) {
                (Upstream::InProcess, Some(o)) => connect_in_process(o.handle().inbound(), node_id.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect the compute node: {e}"))?,
                (Upstream::InProcess, None) => {
                    anyhow::bail!("a compute node without the orchestrator role needs a remote orchestrator")
                }
                (Upstream::Remote { address, token, tls_ca }, _) => {
                    let key = bacalhau_transport::NodeKey::load_or_create(&dir.join("node.key"))
                        .with_context(|| format!("cannot load this node's key {}", dir.join("node.key").display()))?;
                    let cfg = bacalhau_transport::ClientConfig {
                        orchestrator: address.trim().to_owned(),
                        node_id: node_id.clone(),
                        token: token.clone(),
                        tls_ca: tls_ca.clone(),
                        key: Arc::new(key),
                    };
                    bacalhau_transport::connect(cfg, shutdown.child_token())?
                }
            };
            let url_of = |host: &str| format!("{scheme}://{}:{}", compute::url_host(host), api_addr.port());
            let urls = compute::ApiUrls { api: url_of(&role.api_host), results: url_of(&role.results_host) };
            let parts =
                compute::start(&dir, node_id.clone(), role, &ipfs, urls, faults, endpoint, shutdown.child_token())
                    .await?;
            engines = parts.engines;
            results_dir = Some(parts.results_dir);
            compute = Some(parts.handle);
        }

        let orchestrator = runtime.as_ref().map(Orchestrator::handle);
        let relay_token = orch_role.as_ref().and_then(|r| r.node_token.clone());
        let mut signers: Vec<Arc<dyn bacalhau_storage::ResultSigner>> = Vec::new();
        if let Some((expiry, s3)) = orch_role.as_ref().and_then(|r| r.s3_presign.map(|d| (d, r.s3.clone()))) {
            signers.push(Arc::new(bacalhau_storage_remote::S3ResultSigner::new(
                bacalhau_api::tls::http_client_builder(),
                s3,
                expiry,
            )?));
        }
        if let Some(m) = managed {
            signers.push(m);
        }
        let result_signer = (!signers.is_empty())
            .then(|| Arc::new(bacalhau_storage::Signers(signers)) as Arc<dyn bacalhau_storage::ResultSigner>);
        let state = ApiState {
            orchestrator: orchestrator.clone(),
            compute: compute.clone(),
            version: version_info(),
            node_info: NodeInfo {
                node_id: node_id.clone(),
                node_type: if orch_role.is_some() { NodeType::Requester } else { NodeType::Compute },
                ..Default::default()
            },
            local_results_dir: results_dir,
            ipfs: Some(ipfs.store.clone()),
            ipfs_peer: Some(ipfs.api()),
            auth: api.auth.clone(),
            names: api.names.clone(),
            relay_token,
            result_signer,
            relay_guard: bacalhau_storage_remote::guarded,
            web_ui: api.web_ui,
        };
        let tls = match &api.tls {
            Some((cert, key)) => Some(bacalhau_api::tls::server_config(cert, key).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let stop = shutdown.clone();
        let serve = |listener: TcpListener, state: ApiState, stop: CancellationToken| {
            let tls = tls.clone();
            async move {
                let stop = async move { stop.cancelled().await };
                match tls {
                    Some(tls) => bacalhau_api::server::serve_tls(listener, state, tls, stop).await,
                    None => bacalhau_api::serve(listener, state, stop).await,
                }
            }
        };
        let api_server = serve(listeners.api, state.clone(), stop.clone());
        let ui_server = listeners.web_ui.map(|l| serve(l, state, stop));
        let server = tokio::spawn(async move {
            match ui_server {
                None => api_server.await,
                Some(ui) => {
                    let (a, b) = tokio::join!(api_server, ui);
                    a.and(b)
                }
            }
        });
        Ok(Node { node_id, api_addr, scheme, node_addr, orchestrator, compute, engines, ipfs, server, runtime })
    }

    /// The API's base URL.
    pub fn api_url(&self) -> String {
        format!("{}://{}", self.scheme, self.api_addr)
    }

    /// Waits until the node has stopped (after its shutdown token fired): the API server has
    /// drained and the orchestrator has committed its last round.
    pub async fn wait(self) -> Result<()> {
        let served = self.server.await.context("the API server crashed")?;
        if let Some(o) = self.runtime {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, o.join()).await;
        }
        served.context("the API server failed")
    }
}
