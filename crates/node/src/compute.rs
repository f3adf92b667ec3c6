//! The compute role: every engine this machine offers, the input sources and publishers, and
//! the compute node itself, talking to its orchestrator through an endpoint.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bacalhau_compute::{BidPolicy, ComputeConfig, ComputeHandle, ComputeNode};
use bacalhau_executor::Executor;
use bacalhau_executor_docker::DockerExecutor;
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_model::{NodeId, Prices, Resources};
use bacalhau_storage::{
    AllowedPath, InlineSource, InputProvider, IpfsPublisher, IpfsSource, LocalPublisher, NoopPublisher, Publisher,
};
use bacalhau_storage_remote::{S3Settings, S3Source, UrlSettings, UrlSource};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::Faults;
use crate::ipfs::IpfsNode;
use crate::kubo_rpc::{KuboPublisher, KuboRpc};

/// How long the Docker engine gets to answer at start-up before docker jobs are disabled.
const DOCKER_PROBE: Duration = Duration::from_secs(5);

/// Where a compute node's orchestrator is.
#[derive(Clone, Debug)]
pub enum Upstream {
    /// In this process (the node also runs the orchestrator role).
    InProcess,
    /// Across the network, at an orchestrator's node port.
    Remote {
        /// `HOST:PORT` of its node port.
        address: String,
        /// The cluster token.
        token: Option<String>,
        /// PEM CA certificate to verify it with (TLS).
        tls_ca: Option<Vec<u8>>,
    },
}

/// The compute role's settings.
#[derive(Clone, Debug)]
pub struct ComputeRole {
    /// Its orchestrator.
    pub upstream: Upstream,
    /// Labels for constraints.
    pub labels: BTreeMap<String, String>,
    /// Host folders `local` inputs may come from.
    pub allowed: Vec<AllowedPath>,
    /// What it offers to jobs.
    pub capacity: Resources,
    /// How often it sends heartbeats.
    pub heartbeat_interval: Duration,
    /// Engines, input sources and publishers the operator turned off.
    pub disabled: Disabled,
    /// The host in the URLs of its `local` results (the API's port is added):
    /// `Publishers.Types.Local.Address`, else the advertised host.
    pub results_host: String,
    /// The host its orchestrator reaches its API at (logs of running executions, relayed
    /// results): the advertised host.
    pub api_host: String,
    /// With `--ipfs-connect`: the external kubo that inputs come from and results go to.
    pub kubo: Option<String>,
    /// What it charges.
    pub prices: Option<Prices>,
    /// Which jobs it bids for.
    pub bid_policy: BidPolicy,
    /// Retries and timeouts of `urlDownload` inputs (its cache folder is set by the node).
    pub url_inputs: UrlSettings,
    /// Credentials and limits of `s3` inputs.
    pub s3_inputs: S3Settings,
}

impl ComputeRole {
    /// A compute role with this machine's default share of capacity, no labels, prices or bid
    /// rules, heartbeating every 5 s.
    pub fn new(upstream: Upstream, capacity: Resources) -> Self {
        Self {
            upstream,
            labels: BTreeMap::new(),
            allowed: Vec::new(),
            capacity,
            heartbeat_interval: Duration::from_secs(5),
            disabled: Disabled::default(),
            results_host: "127.0.0.1".to_owned(),
            api_host: "127.0.0.1".to_owned(),
            kubo: None,
            prices: None,
            bid_policy: BidPolicy::default(),
            url_inputs: UrlSettings::default(),
            // The standard AWS variables of this process: the node's credentials, not a job's.
            s3_inputs: S3Settings::from_env(|k| std::env::var(k).ok()),
        }
    }
}

/// Engines, input sources and publishers turned off (`Engines.Disabled`, ...).
#[derive(Debug, Default, Clone)]
pub struct Disabled {
    /// Engine types.
    pub engines: Vec<String>,
    /// Input source types.
    pub inputs: Vec<String>,
    /// Publisher types.
    pub publishers: Vec<String>,
}

/// Whether `name` is in a `*.Disabled` list (any case).
fn listed(list: &[String], name: &str) -> bool {
    list.iter().any(|d| d.trim().eq_ignore_ascii_case(name))
}

/// A running compute role.
pub(crate) struct ComputeParts {
    pub handle: ComputeHandle,
    pub results_dir: PathBuf,
    pub engines: Vec<String>,
}

/// Where the node's API is reached from outside.
#[derive(Debug)]
pub(crate) struct ApiUrls {
    /// By its orchestrator (advertised in NodeInfo).
    pub api: String,
    /// By users downloading `local` results (their URLs start with it).
    pub results: String,
}

/// Starts a compute node in `dir` with every engine this machine offers, talking through
/// `endpoint`; its API (for logs and local results) is at `urls`.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn start(
    dir: &Path,
    node_id: NodeId,
    role: ComputeRole,
    ipfs: &IpfsNode,
    urls: ApiUrls,
    faults: Faults,
    endpoint: bacalhau_protocol::ComputeEndpoint,
    cancel: CancellationToken,
) -> Result<ComputeParts> {
    let compute_dir = dir.join("compute");
    std::fs::create_dir_all(&compute_dir).with_context(|| format!("cannot create {}", compute_dir.display()))?;
    let wasm = WasmExecutor::new(Some(compute_dir.join("wasm-cache")))?;
    let mut executors: Vec<Arc<dyn Executor>> = vec![Arc::new(wasm)];
    // Docker is offered only when the engine answers.
    if !listed(&role.disabled.engines, "docker") {
        match tokio::time::timeout(DOCKER_PROBE, DockerExecutor::connect(node_id.as_str())).await {
            Ok(Ok(docker)) => {
                docker.remove_orphans().await;
                executors.push(Arc::new(docker));
            }
            Ok(Err(e)) => info!("docker engine unavailable, not offering docker jobs: {e}"),
            Err(_) => info!("docker engine did not answer within {DOCKER_PROBE:?}; not offering docker jobs"),
        }
    }
    executors.retain(|e| !listed(&role.disabled.engines, e.engine_type()));
    let engines: Vec<String> = executors.iter().map(|e| e.engine_type().to_owned()).collect();
    let store = ipfs.store.clone();
    let kubo = match &role.kubo {
        Some(addr) => Some(KuboRpc::connect(addr, store.clone()).await?),
        None => None,
    };
    let fetcher: Arc<dyn bacalhau_ipfs::Fetcher> = match &kubo {
        Some(k) => Arc::new(k.clone()),
        None => Arc::new(ipfs.peer.clone()),
    };
    let ipfs_publisher: Arc<dyn Publisher> = match kubo {
        Some(k) => Arc::new(KuboPublisher::new(k)),
        None => Arc::new(IpfsPublisher::new(store.clone())),
    };
    #[cfg(feature = "test-faults")]
    let ipfs_publisher: Arc<dyn Publisher> = if faults.tamper_results {
        tracing::warn!("--test-fault tamper-results: this node alters every result it publishes");
        Arc::new(crate::faults::Tampering(ipfs_publisher))
    } else {
        ipfs_publisher
    };
    let url_settings = UrlSettings { cache_dir: Some(compute_dir.join("url-cache")), ..role.url_inputs };
    let presigned = bacalhau_storage_remote::S3PreSignedSource::new(
        bacalhau_api::tls::http_client_builder(),
        url_settings.clone(),
    )?;
    let url = UrlSource::new(bacalhau_api::tls::http_client_builder(), url_settings)?;
    let mut inputs: Vec<Arc<dyn InputProvider>> = vec![
        Arc::new(InlineSource::cached(compute_dir.join("inline-cache"))),
        Arc::new(bacalhau_storage::LocalSource::new(role.allowed)),
        Arc::new(IpfsSource::with_fetcher(store, fetcher)),
        Arc::new(url),
        Arc::new(presigned),
        Arc::new(S3Source::new(bacalhau_api::tls::http_client_builder(), role.s3_inputs.clone())?),
    ];
    inputs.retain(|i| !listed(&role.disabled.inputs, i.source_type()));
    let results_dir = compute_dir.join("results");
    let local = LocalPublisher::new(results_dir.clone(), format!("{}/api/v1/local-results", urls.results));
    let s3_publisher = bacalhau_storage_remote::S3Publisher::new(
        bacalhau_api::tls::http_client_builder(),
        role.s3_inputs.clone(),
        compute_dir.join("s3-publisher"),
    )?;
    // Holds no credentials: the orchestrator signs each upload.
    let s3_managed = bacalhau_storage_remote::S3ManagedPublisher::new(
        bacalhau_api::tls::http_client_builder(),
        compute_dir.join("s3managed-publisher"),
    )?;
    let mut publishers: Vec<Arc<dyn Publisher>> =
        vec![Arc::new(NoopPublisher), Arc::new(local), ipfs_publisher, Arc::new(s3_publisher), Arc::new(s3_managed)];
    publishers.retain(|p| !listed(&role.disabled.publishers, p.publisher_type()));
    let mut ccfg = ComputeConfig::new(node_id, compute_dir, role.capacity);
    ccfg.labels = role.labels;
    ccfg.heartbeat_interval = role.heartbeat_interval;
    ccfg.version = crate::version_info();
    ccfg.ipfs_addrs = ipfs.addrs();
    ccfg.api_url = urls.api;
    ccfg.prices = role.prices;
    ccfg.bid_policy = role.bid_policy;
    #[cfg(feature = "test-faults")]
    {
        ccfg.silent_heartbeats = faults.silent_heartbeats.then_some((Duration::from_secs(4), Duration::from_secs(20)));
        ccfg.drop_bid_acceptances = u32::from(faults.drop_bid_acceptance);
    }
    #[cfg(not(feature = "test-faults"))]
    let _ = faults;
    let handle = ComputeNode::start(ccfg, executors, inputs, publishers, endpoint, cancel).await?;
    Ok(ComputeParts { handle, results_dir, engines })
}

/// A host as it goes in a URL: an IPv6 address in brackets.
pub(crate) fn url_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
}
