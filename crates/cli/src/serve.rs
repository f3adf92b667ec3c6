//! `bacalhau serve`: wires the orchestrator, the compute node, the engines and the API into
//! one process.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bacalhau_api::ApiState;
use bacalhau_compute::{ComputeConfig, ComputeNode, detect_capacity};
use bacalhau_executor::Executor;
use bacalhau_executor_docker::DockerExecutor;
use bacalhau_executor_wasm::WasmExecutor;
use bacalhau_ipfs::BlockStore;
use bacalhau_model::{BuildVersionInfo, JobTypeDefaults, NodeId, NodeInfo, NodeType, SpecConfig, SubmissionDefaults};
use bacalhau_orchestrator::{Orchestrator, OrchestratorConfig};
use bacalhau_protocol::connect_in_process;
use bacalhau_storage::{
    AllowedPath, InlineSource, InputProvider, IpfsPublisher, IpfsSource, LocalPublisher, LocalSource, NoopPublisher,
    Publisher,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::args::ServeArgs;
use crate::config::Config;

/// How long the Docker engine gets to answer at start-up before docker jobs are disabled.
const DOCKER_PROBE: Duration = Duration::from_secs(5);
/// How long in-flight requests get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

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

/// The node's ID: --name, else the one kept in the data dir, else a new one from the
/// `NameProvider` (puuid: `n-<uuid>`, uuid, hostname).
fn node_id(dir: &Path, name: Option<String>, provider: &str) -> Result<NodeId> {
    if let Some(n) = name.filter(|n| !n.trim().is_empty()) {
        return Ok(NodeId::from(n.trim()));
    }
    let file = dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&file)
        && !id.trim().is_empty()
    {
        return Ok(NodeId::from(id.trim()));
    }
    let id = match provider.trim().to_ascii_lowercase().as_str() {
        "puuid" | "" => NodeId::generate(),
        "uuid" => NodeId::from(NodeId::generate().as_str().trim_start_matches("n-")),
        "hostname" => NodeId::from(hostname().context("NameProvider is hostname but this machine has none")?.as_str()),
        other => bail!("NameProvider {other:?} is not one this version has: use puuid, uuid or hostname (or --name)"),
    };
    std::fs::write(&file, id.as_str()).with_context(|| format!("cannot write {}", file.display()))?;
    Ok(id)
}

fn parse_labels(labels: &[String]) -> Result<BTreeMap<String, String>> {
    labels
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .with_context(|| format!("label {l:?} must be key=value"))
        })
        .collect()
}

/// Bacalhau's node port.
pub const DEFAULT_NODE_PORT: u16 = 4222;

/// What a compute node brings to the API server of its process.
pub struct ComputeParts {
    /// The running node.
    pub handle: bacalhau_compute::ComputeHandle,
    /// Where the local publisher keeps archives.
    pub results_dir: PathBuf,
    /// The node's block store and peer.
    pub ipfs: IpfsNode,
    /// Engines offered.
    pub engines: Vec<String>,
}

/// A node's IPFS side: its block store and the peer that serves and fetches blocks.
#[derive(Clone, Debug)]
pub struct IpfsNode {
    /// The block store.
    pub store: Arc<BlockStore>,
    /// The libp2p peer.
    pub peer: bacalhau_ipfs_peer::Peer,
}

impl IpfsNode {
    /// The peer's multiaddrs as strings.
    pub fn addrs(&self) -> Vec<String> {
        self.peer.addrs().iter().map(ToString::to_string).collect()
    }

    /// What the API needs of it.
    pub fn api(&self) -> bacalhau_api::IpfsPeer {
        bacalhau_api::IpfsPeer {
            id: self.peer.id().to_string(),
            addrs: self.addrs(),
            fetcher: Arc::new(self.peer.clone()),
        }
    }
}

fn multiaddrs(values: &[String], flag: &str) -> Result<Vec<bacalhau_ipfs_peer::Addr>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .with_context(|| format!("{flag} {v:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/4001/p2p/Qm...)"))
        })
        .collect()
}

/// Opens `<dir>/ipfs` and starts its peer (listening on `listen`, keeping `peers` connected).
pub async fn start_ipfs(dir: &Path, listen: &[String], peers: &[String], corrupt: bool) -> Result<IpfsNode> {
    let store = Arc::new(BlockStore::open(&dir.join("ipfs"))?);
    let mut cfg = bacalhau_ipfs_peer::PeerConfig::loopback(&dir.join("ipfs"));
    cfg.listen = multiaddrs(listen, "--ipfs-listen")?;
    cfg.peers = multiaddrs(peers, "--ipfs-peers")?;
    // A test-only fault mode: serve corrupted blocks, to prove peers refuse them.
    if corrupt {
        warn!("--test-fault corrupt-blocks: this node serves corrupted blocks");
        cfg.fault = bacalhau_ipfs_peer::Fault::CorruptBlocks;
    }
    let peer = bacalhau_ipfs_peer::Peer::start(store.clone(), cfg).await.context("starting the IPFS peer")?;
    Ok(IpfsNode { store, peer })
}

/// The settings a compute node takes from the command line.
pub struct ComputeSettings<'a> {
    /// Its data dir (`<dir>/compute` and `<dir>/ipfs` are used).
    pub dir: &'a Path,
    /// Its ID.
    pub node_id: NodeId,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// `local` inputs allowed.
    pub allowed: Vec<AllowedPath>,
    /// What it offers to jobs.
    pub capacity: bacalhau_model::Resources,
    /// How often it sends heartbeats.
    pub heartbeat_interval: Duration,
    /// Engines, input sources and publishers the operator turned off.
    pub disabled: Disabled,
    /// Base URL of the API this node's local results are served from.
    pub results_url: String,
    /// Its block store and IPFS peer.
    pub ipfs: IpfsNode,
    /// With `--ipfs-connect`: the external kubo that inputs come from and results go to.
    pub kubo: Option<crate::kubo_rpc::KuboRpc>,
    /// What it charges.
    pub prices: Option<bacalhau_model::Prices>,
    /// Which jobs it bids for.
    pub bid_policy: bacalhau_compute::BidPolicy,
    /// Test-only: alter results before publishing.
    pub tamper: bool,
    /// Test-only: send no heartbeats for a while after start.
    pub silent: bool,
    /// Test-only: bid acceptances to ignore, as if lost.
    pub drop_bid_acceptances: u32,
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

/// Starts a compute node with every engine this machine offers, talking through `endpoint`.
pub async fn start_compute(
    settings: ComputeSettings<'_>,
    endpoint: bacalhau_protocol::ComputeEndpoint,
    cancel: CancellationToken,
) -> Result<ComputeParts> {
    let ComputeSettings {
        dir,
        node_id,
        labels,
        allowed,
        capacity,
        heartbeat_interval,
        disabled,
        results_url,
        ipfs: node_ipfs,
        kubo,
        prices,
        bid_policy,
        tamper,
        silent,
        drop_bid_acceptances,
    } = settings;
    let compute_dir = dir.join("compute");
    std::fs::create_dir_all(&compute_dir).with_context(|| format!("cannot create {}", compute_dir.display()))?;
    let wasm = WasmExecutor::new(Some(compute_dir.join("wasm-cache")))?;
    let mut executors: Vec<Arc<dyn Executor>> = vec![Arc::new(wasm)];
    // Docker is offered only when the engine answers.
    match tokio::time::timeout(DOCKER_PROBE, DockerExecutor::connect(node_id.as_str())).await {
        Ok(Ok(docker)) => {
            docker.remove_orphans().await;
            executors.push(Arc::new(docker));
        }
        Ok(Err(e)) => info!("docker engine unavailable, not offering docker jobs: {e}"),
        Err(_) => info!("docker engine did not answer within {DOCKER_PROBE:?}; not offering docker jobs"),
    }
    executors.retain(|e| !listed(&disabled.engines, e.engine_type()));
    let engines: Vec<String> = executors.iter().map(|e| e.engine_type().to_owned()).collect();
    let ipfs = node_ipfs.store.clone();
    let fetcher: Arc<dyn bacalhau_ipfs::Fetcher> = match &kubo {
        Some(k) => Arc::new(k.clone()),
        None => Arc::new(node_ipfs.peer.clone()),
    };
    let mut ipfs_publisher: Arc<dyn Publisher> = match kubo {
        Some(k) => Arc::new(crate::kubo_rpc::KuboPublisher::new(k)),
        None => Arc::new(IpfsPublisher::new(ipfs.clone())),
    };
    if tamper {
        warn!("--test-fault tamper-results: this node alters every result it publishes");
        ipfs_publisher = Arc::new(crate::market::Tampering(ipfs_publisher));
    }
    let mut inputs: Vec<Arc<dyn InputProvider>> = vec![
        Arc::new(InlineSource),
        Arc::new(LocalSource::new(allowed)),
        Arc::new(IpfsSource::with_fetcher(ipfs.clone(), fetcher)),
    ];
    inputs.retain(|i| !listed(&disabled.inputs, i.source_type()));
    let results_dir = compute_dir.join("results");
    let local = LocalPublisher::new(results_dir.clone(), format!("{results_url}/api/v1/local-results"));
    let mut publishers: Vec<Arc<dyn Publisher>> = vec![Arc::new(NoopPublisher), Arc::new(local), ipfs_publisher];
    publishers.retain(|p| !listed(&disabled.publishers, p.publisher_type()));
    let ccfg = ComputeConfig {
        node_id,
        data_dir: compute_dir,
        capacity,
        labels,
        heartbeat_interval,
        silent_heartbeats: silent.then_some((Duration::from_secs(4), Duration::from_secs(20))),
        drop_bid_acceptances,
        version: version_info(),
        ipfs_addrs: node_ipfs.addrs(),
        api_url: results_url.clone(),
        prices,
        bid_policy,
    };
    let handle = ComputeNode::start(ccfg, executors, inputs, publishers, endpoint, cancel).await?;
    Ok(ComputeParts { handle, results_dir, ipfs: node_ipfs, engines })
}

/// Listens for compute nodes on the node port, handing them to the orchestrator.
pub async fn start_node_server(
    listener: tokio::net::TcpListener,
    handle: &bacalhau_orchestrator::OrchestratorHandle,
    authority: Arc<dyn bacalhau_protocol::NodeAuthority>,
    token: Option<String>,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    cancel: CancellationToken,
) {
    let inbound = handle.inbound();
    tokio::spawn(async move {
        let cfg = bacalhau_transport::ServerConfig { token, tls, authority: Some(authority) };
        if let Err(e) = bacalhau_transport::serve(listener, inbound, cfg, async move { cancel.cancelled().await }).await
        {
            tracing::error!("{e}");
        }
    });
}

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// Runs the node until Ctrl-C or SIGTERM: orchestrator and compute in one process (the
/// default), or one role (`--orchestrator`, or `--compute --orchestrators HOST:PORT`).
pub async fn serve(host: &str, port: u16, tls_ca: Option<PathBuf>, mut args: ServeArgs, cfg: &Config) -> Result<()> {
    settle(&mut args, cfg)?;
    let tls_ca = tls_ca.or_else(|| cfg.opt_str("Compute.TLS.CACert").map(PathBuf::from));
    let (run_orchestrator, run_compute) = match (args.orchestrator, args.compute) {
        (false, false) => (true, true),
        roles => roles,
    };
    if run_orchestrator && !args.orchestrators.is_empty() {
        bail!(
            "--orchestrators is for compute-only nodes: start this one with `serve --compute --orchestrators HOST:PORT`"
        );
    }
    if run_compute && !run_orchestrator && args.orchestrators.is_empty() {
        bail!(
            "--compute alone needs its orchestrator: add --orchestrators HOST:PORT (the orchestrator's --node-port, 4222 by default)"
        );
    }
    let dir = cfg.data_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let node_id = node_id(&dir, args.name.clone(), &cfg.str("NameProvider"))?;
    let labels = parse_labels(&args.labels)?;
    let allowed: Vec<AllowedPath> = args
        .allow_listed_local_paths
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| AllowedPath::parse(p.trim()))
        .collect::<Result<_, _>>()?;

    let users = cfg.users()?;
    let auth =
        Arc::new(bacalhau_api::auth::Authorizer::new(&users, args.node_token.clone()).map_err(anyhow::Error::msg)?);
    check_exposure(host, auth.enabled(), run_orchestrator, args.node_token.is_some(), args.insecure_allow_anonymous)?;

    let listener = tokio::net::TcpListener::bind((host, port)).await.with_context(|| {
        format!(
            "cannot listen on {host}:{port}: is another bacalhau serve running? Choose another port with --api-port"
        )
    })?;
    let bound = listener.local_addr()?;
    let cancel = CancellationToken::new();
    // --tls-cert/--tls-key serve the API over https, and the node port over TLS.
    let api_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(
            bacalhau_api::tls::server_config(&read_pem(c, "TLS certificate")?, &read_pem(k, "TLS key")?)
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    let scheme = if api_tls.is_some() { "https" } else { "http" };

    let fault = args.test_fault;
    let corrupt = fault == Some(crate::args::TestFault::CorruptBlocks);
    let ipfs = start_ipfs(&dir, &args.ipfs_listen, &args.ipfs_peers, corrupt).await?;
    let mut orchestrator = None;
    let mut node_port = None;
    if run_orchestrator {
        std::fs::create_dir_all(dir.join("orchestrator"))?;
        let mut ocfg = OrchestratorConfig::new(dir.join("orchestrator").join("jobs.redb"));
        ocfg.defaults = job_defaults(cfg, args.default_execution_timeout)?;
        ocfg.node_disconnect_timeout = Duration::from_secs(args.node_disconnect_timeout.unwrap_or(30));
        ocfg.manual_node_approval = args.node_approval.as_deref() == Some("manual");
        ocfg.ipfs_addrs = ipfs.addrs();
        ocfg.local_node = run_compute.then(|| node_id.clone());
        let o = Orchestrator::start(ocfg, cancel.child_token()).await?;
        let wanted = args.node_port.unwrap_or(DEFAULT_NODE_PORT);
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(c), Some(k)) => Some((read_pem(c, "TLS certificate")?, read_pem(k, "TLS key")?)),
            _ => None,
        };
        match tokio::net::TcpListener::bind((host, wanted)).await {
            Ok(l) => {
                node_port = Some(l.local_addr()?);
                start_node_server(
                    l,
                    &o.handle(),
                    o.node_authority(),
                    args.node_token.clone(),
                    tls,
                    cancel.child_token(),
                )
                .await;
            }
            // With both roles in one process the node port is an extra: say so and go on.
            Err(e) if run_compute && args.node_port.is_none() => {
                warn!(
                    "node port {host}:{wanted} unavailable ({e}); other compute nodes cannot join this one (set --node-port)"
                )
            }
            Err(e) => bail!("cannot listen for compute nodes on {host}:{wanted}: {e}; choose another with --node-port"),
        }
        orchestrator = Some(o);
    }

    let advertised = advertise_host(host, args.advertise.as_deref());
    let compute = if run_compute {
        let endpoint = match &orchestrator {
            Some(o) => connect_in_process(o.handle().inbound(), node_id.clone())
                .await
                .map_err(|e| anyhow::anyhow!("cannot connect the compute node: {e}"))?,
            None => {
                let tls_ca = tls_ca.as_deref().map(|p| read_pem(p, "TLS CA certificate")).transpose()?;
                let cfg = bacalhau_transport::ClientConfig {
                    orchestrator: args.orchestrators[0].trim().to_owned(),
                    node_id: node_id.clone(),
                    token: args.node_token.clone(),
                    tls_ca,
                    key: Arc::new(
                        bacalhau_transport::NodeKey::load_or_create(&dir.join("node.key")).with_context(|| {
                            format!("cannot load this node's key {}", dir.join("node.key").display())
                        })?,
                    ),
                };
                bacalhau_transport::connect(cfg, cancel.child_token())?
            }
        };
        let settings = ComputeSettings {
            dir: &dir,
            node_id: node_id.clone(),
            labels,
            allowed,
            capacity: allocated_capacity(&dir, cfg, args.capacity_percent)?,
            heartbeat_interval: cfg.duration("Compute.Heartbeat.Interval").max(Duration::from_secs(1)),
            disabled: Disabled {
                engines: cfg.list("Engines.Disabled"),
                inputs: cfg.list("InputSources.Disabled"),
                publishers: cfg.list("Publishers.Disabled"),
            },
            results_url: format!(
                "{scheme}://{}:{}",
                cfg.opt_str("Publishers.Types.Local.Address").unwrap_or_else(|| advertised.clone()),
                bound.port()
            ),
            ipfs: ipfs.clone(),
            kubo: match &args.ipfs_connect {
                Some(addr) => Some(crate::kubo_rpc::KuboRpc::connect(addr, ipfs.store.clone()).await?),
                None => None,
            },
            prices: crate::market::prices(&args)?,
            bid_policy: bacalhau_compute::BidPolicy {
                host_network_refusal: (!auth.enabled() && !args.insecure_allow_anonymous).then(|| {
                    "this node's API has no authentication, so a job on the host's network could drive it from \
                     inside: its operator can configure API.Auth.Users (or accept the risk with --insecure-allow-anonymous)"
                        .to_owned()
                }),
                ..crate::market::bid_policy(&args)?
            },
            tamper: fault == Some(crate::args::TestFault::TamperResults),
            silent: fault == Some(crate::args::TestFault::SilentHeartbeats),
            drop_bid_acceptances: u32::from(fault == Some(crate::args::TestFault::DropBidAcceptance)),
        };
        Some(start_compute(settings, endpoint, cancel.child_token()).await?)
    } else {
        None
    };

    let roles = match (&orchestrator, &compute) {
        (Some(_), Some(c)) => format!("orchestrator + compute; engines: {}", c.engines.join(", ")),
        (Some(_), None) => "orchestrator".to_owned(),
        (None, Some(c)) => format!("compute for {}; engines: {}", args.orchestrators[0], c.engines.join(", ")),
        (None, None) => unreachable!("at least one role runs"),
    };
    let state = ApiState {
        orchestrator: orchestrator.as_ref().map(Orchestrator::handle),
        compute: compute.as_ref().map(|c| c.handle.clone()),
        version: version_info(),
        node_info: NodeInfo {
            node_id: node_id.clone(),
            node_type: if orchestrator.is_some() { NodeType::Requester } else { NodeType::Compute },
            ..Default::default()
        },
        local_results_dir: compute.as_ref().map(|c| c.results_dir.clone()),
        ipfs: Some(ipfs.store.clone()),
        ipfs_peer: Some(ipfs.api()),
        auth: auth.clone(),
        names: Arc::new(node_names(host, &advertised)),
        relay_token: args.node_token.clone(),
    };
    let nodes = node_port.map(|a| format!(", compute nodes join on {a}")).unwrap_or_default();
    println!("bacalhau serve: node {node_id} ({roles}), API on {scheme}://{bound}{nodes}, data in {}", dir.display());
    println!("IPFS peer {} listening on {}", ipfs.peer.id(), ipfs.addrs().join(", "));
    println!("export BACALHAU_API_HOST={}\nexport BACALHAU_API_PORT={}", bound.ip(), bound.port());
    let shutdown = cancel.clone();
    let stop = async move { shutdown.cancelled().await };
    let server = async move {
        match api_tls {
            Some(tls) => bacalhau_api::server::serve_tls(listener, state, tls, stop).await,
            None => bacalhau_api::serve(listener, state, stop).await,
        }
    };
    let signals = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        signals.cancel();
    });
    server.await.context("the API server failed")?;
    if let Some(o) = orchestrator {
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, o.join()).await;
    }
    Ok(())
}

/// Fills each serve setting the command line left unset from the configuration: the flags we
/// had before Bacalhau's config keys stay, as aliases that win over the config.
pub fn settle(args: &mut ServeArgs, cfg: &Config) -> Result<()> {
    args.orchestrator |= cfg.bool("Orchestrator.Enabled");
    args.compute |= cfg.bool("Compute.Enabled");
    if args.allow_listed_local_paths.is_empty() {
        args.allow_listed_local_paths = cfg.list("Compute.AllowListedLocalPaths");
    }
    if args.labels.is_empty() {
        args.labels = cfg.map("Labels").into_iter().map(|(k, v)| format!("{k}={v}")).collect();
    }
    if args.node_disconnect_timeout.is_none() {
        let d = cfg.duration("Orchestrator.NodeManager.DisconnectTimeout");
        if d < Duration::from_secs(6) {
            bail!(
                "Orchestrator.NodeManager.DisconnectTimeout is {d:?}; it must be at least 6s (heartbeats come every 5s)"
            );
        }
        args.node_disconnect_timeout = Some(d.as_secs());
    }
    if args.node_approval.is_none() {
        let manual = cfg.bool("Orchestrator.NodeManager.ManualApproval");
        args.node_approval = Some(if manual { "manual" } else { "auto" }.into());
    }
    if args.node_port.is_none() && cfg.is_set("Orchestrator.Port") {
        let p = cfg.int("Orchestrator.Port");
        args.node_port = Some(u16::try_from(p).with_context(|| format!("Orchestrator.Port {p} is not a port number"))?);
    }
    if args.orchestrators.is_empty() {
        // Bacalhau's addresses are NATS URLs; ours is the same host:port without the scheme.
        args.orchestrators = cfg
            .list("Compute.Orchestrators")
            .into_iter()
            .map(|o| o.trim_start_matches("nats://").trim_start_matches("tls://").to_owned())
            .collect();
    }
    args.advertise = args.advertise.take().or_else(|| cfg.opt_str("Orchestrator.Advertise"));
    args.node_token = args
        .node_token
        .take()
        .or_else(|| cfg.opt_str("Orchestrator.Auth.Token"))
        .or_else(|| cfg.opt_str("Compute.Auth.Token"));
    if args.tls_cert.is_none() && args.tls_key.is_none() {
        let pair = |c: &str, k: &str| cfg.opt_str(c).zip(cfg.opt_str(k));
        if let Some((c, k)) = pair("API.TLS.CertFile", "API.TLS.KeyFile")
            .or_else(|| pair("Orchestrator.TLS.ServerCert", "Orchestrator.TLS.ServerKey"))
        {
            args.tls_cert = Some(c.into());
            args.tls_key = Some(k.into());
        }
    }
    args.ipfs_connect = args
        .ipfs_connect
        .take()
        .or_else(|| cfg.opt_str("InputSources.Types.IPFS.Endpoint"))
        .or_else(|| cfg.opt_str("Publishers.Types.IPFS.Endpoint"));
    args.reject_networked_jobs |= cfg.bool("JobAdmissionControl.RejectNetworkedJobs");
    match cfg.str("JobAdmissionControl.Locality").trim().to_ascii_lowercase().as_str() {
        "local" | "0" => args.local_inputs_only = true,
        "anywhere" | "1" | "" => {}
        other => bail!("JobAdmissionControl.Locality is {other:?}: use local or anywhere"),
    }
    args.job_selection_probe_exec =
        args.job_selection_probe_exec.take().or_else(|| cfg.opt_str("JobAdmissionControl.ProbeExec"));
    args.job_selection_probe_http =
        args.job_selection_probe_http.take().or_else(|| cfg.opt_str("JobAdmissionControl.ProbeHTTP"));
    for key in crate::config_keys::KEYS.iter().filter(|k| !k.used && cfg.is_set(k.path)) {
        warn!("config key {} is accepted for Bacalhau compatibility but this version does not act on it", key.path);
    }
    Ok(())
}

/// `JobDefaults.*` as the orchestrator applies them; `--default-execution-timeout` wins for
/// batch and ops jobs.
pub fn job_defaults(cfg: &Config, execution_timeout_flag: Option<u64>) -> Result<SubmissionDefaults> {
    let of = |t: &str| -> Result<JobTypeDefaults> {
        let k = |rest: &str| format!("JobDefaults.{t}.{rest}");
        let priority = cfg.int(&k("Priority"));
        let mut d = JobTypeDefaults {
            priority: i32::try_from(priority).with_context(|| format!("{} is out of range", k("Priority")))?,
            cpu: cfg.str(&k("Task.Resources.CPU")),
            memory: cfg.str(&k("Task.Resources.Memory")),
            disk: cfg.str(&k("Task.Resources.Disk")),
            gpu: cfg.str(&k("Task.Resources.GPU")),
            ..Default::default()
        };
        for (name, value) in [("CPU", &d.cpu), ("Memory", &d.memory), ("Disk", &d.disk)] {
            let parsed = if name == "CPU" {
                bacalhau_model::parse_cpu(value).map(|_| ())
            } else {
                bacalhau_model::parse_bytes(name, value).map(|_| ())
            };
            parsed.map_err(|e| anyhow::anyhow!("{} is {value:?}: {e}", k(&format!("Task.Resources.{name}"))))?;
        }
        if t == "Batch" || t == "Ops" {
            let publisher = cfg.str(&k("Task.Publisher.Type"));
            let mut spec = SpecConfig::new(publisher.trim());
            for (p, v) in cfg.map(&k("Task.Publisher.Params")) {
                spec = spec.with_param(&p, v);
            }
            d.publisher = if publisher.trim().is_empty() { SpecConfig::default() } else { spec };
            d.execution_timeout =
                execution_timeout_flag.unwrap_or_else(|| cfg.duration(&k("Task.Timeouts.ExecutionTimeout")).as_secs());
            d.total_timeout = cfg.duration(&k("Task.Timeouts.TotalTimeout")).as_secs();
        }
        Ok(d)
    };
    Ok(SubmissionDefaults { batch: of("Batch")?, ops: of("Ops")?, daemon: of("Daemon")?, service: of("Service")? })
}

/// What the compute node offers: `Compute.AllocatedCapacity.*` (a share such as `80%` or an
/// amount), over the whole machine; `--capacity-percent` sets every share but the GPUs'.
pub fn allocated_capacity(dir: &Path, cfg: &Config, percent_flag: Option<u64>) -> Result<bacalhau_model::Resources> {
    let machine = detect_capacity(dir, 100);
    let share = |key: &str, whole: u64, parse: &dyn Fn(&str) -> Result<u64>| -> Result<u64> {
        let text = cfg.str(key);
        let text = text.trim();
        let percent =
            match (percent_flag, text.strip_suffix('%')) {
                (Some(p), _) if !key.ends_with("GPU") => Some(p),
                (_, Some(p)) => Some(p.trim().parse::<u64>().ok().filter(|p| *p <= 100).with_context(|| {
                    format!("{key} is {text:?}: a share must be a whole percentage from 0% to 100%")
                })?),
                _ => None,
            };
        match percent {
            Some(p) => Ok(bacalhau_compute::capacity_share(whole, p)),
            None => parse(text).with_context(|| format!("{key} is {text:?}")),
        }
    };
    Ok(bacalhau_model::Resources {
        cpu_millis: share("Compute.AllocatedCapacity.CPU", machine.cpu_millis, &|t| {
            bacalhau_model::parse_cpu(t).map_err(anyhow::Error::msg)
        })?,
        memory_bytes: share("Compute.AllocatedCapacity.Memory", machine.memory_bytes, &|t| {
            bacalhau_model::parse_bytes("Memory", t).map_err(anyhow::Error::msg)
        })?,
        disk_bytes: share("Compute.AllocatedCapacity.Disk", machine.disk_bytes, &|t| {
            bacalhau_model::parse_bytes("Disk", t).map_err(anyhow::Error::msg)
        })?,
        gpu: share("Compute.AllocatedCapacity.GPU", machine.gpu, &|t| {
            t.parse::<u64>().map_err(|_| anyhow::anyhow!("give a share such as 100% or a number of GPUs"))
        })?,
    })
}

/// Whether `host` is only reachable from this machine.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim().trim_start_matches("http://").trim_start_matches("https://");
    let h = h.trim_matches(['[', ']']);
    h.eq_ignore_ascii_case("localhost") || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Secure by default: beyond loopback, the API needs users and the node port a cluster token,
/// unless the operator says otherwise out loud.
fn check_exposure(host: &str, api_auth: bool, node_port: bool, node_token: bool, insecure: bool) -> Result<()> {
    if is_loopback(host) {
        return Ok(());
    }
    let mut open = Vec::new();
    if !api_auth {
        open.push("the API has no users (add API.Auth.Users to a --config file; hash passwords with `bacalhau auth hash-password`)");
    }
    if node_port && !node_token {
        open.push("the node port has no cluster token (set --node-token or BACALHAU_NODE_TOKEN)");
    }
    if open.is_empty() {
        return Ok(());
    }
    if insecure {
        for o in &open {
            warn!(
                "--insecure-allow-anonymous: listening on {host} although {o}; ANYONE WHO CAN REACH THIS NODE CAN RUN CODE ON IT"
            );
        }
        return Ok(());
    }
    bail!(
        "refusing to listen on {host} without authentication: {}.\nListen on 127.0.0.1 instead, or pass --insecure-allow-anonymous to accept the risk",
        open.join("; and ")
    )
}

/// The address other machines use for this node: --advertise, else the API host, else (for
/// 0.0.0.0) this machine's hostname.
fn advertise_host(host: &str, advertise: Option<&str>) -> String {
    if let Some(a) = advertise.map(str::trim).filter(|a| !a.is_empty()) {
        return a.to_owned();
    }
    if host == "0.0.0.0" || host == "::" {
        return hostname().unwrap_or_else(|| "127.0.0.1".to_owned());
    }
    host.to_owned()
}

/// The names a request's `Host` may carry.
pub fn node_names(host: &str, advertised: &str) -> bacalhau_api::guard::Names {
    bacalhau_api::guard::Names::new([host.to_owned(), advertised.to_owned(), hostname().unwrap_or_default()])
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())
}

pub async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}

#[cfg(test)]
mod config_tests {
    use super::*;
    use clap::Parser as _;

    fn cfg(values: &[&str]) -> Config {
        let sources =
            crate::config::Sources { config: values.iter().map(|v| (*v).to_owned()).collect(), data_dir: None };
        Config::load_with_env(&sources, |_| None).expect("config")
    }

    fn settled(values: &[&str]) -> Result<ServeArgs> {
        let cli = crate::args::Cli::parse_from(["bacalhau", "serve"]);
        let crate::args::Command::Serve(mut args) = cli.command else { unreachable!("serve parses as serve") };
        settle(&mut args, &cfg(values))?;
        Ok(args)
    }

    #[test]
    fn config_keys_fill_unset_flags_and_bad_values_are_named() {
        let args =
            settled(&["Compute.Orchestrators=nats://10.0.0.1:4222", "Orchestrator.NodeManager.ManualApproval=true"])
                .expect("settle");
        assert_eq!(args.orchestrators, ["10.0.0.1:4222"]);
        assert_eq!(args.node_approval.as_deref(), Some("manual"));
        let e = settled(&["JobAdmissionControl.Locality=nearby"]).expect_err("locality");
        assert!(e.to_string().contains("use local or anywhere"), "{e}");
        let e = settled(&["Orchestrator.NodeManager.DisconnectTimeout=2s"]).expect_err("short");
        assert!(e.to_string().contains("at least 6s"), "{e}");
        let e =
            format!("{:#}", job_defaults(&cfg(&["JobDefaults.Batch.Task.Resources.CPU=lots"]), None).expect_err("cpu"));
        assert!(e.contains("JobDefaults.Batch.Task.Resources.CPU is \"lots\""), "{e}");
        let d = job_defaults(&cfg(&["JobDefaults.Ops.Task.Publisher.Type=local"]), Some(7)).expect("defaults");
        assert_eq!((d.ops.publisher.type_name(), d.batch.publisher.type_name()), ("local".into(), "ipfs".into()));
        assert_eq!((d.batch.execution_timeout, d.daemon.publisher.is_empty()), (7, true));
        let tmp = tempfile::tempdir().expect("tmp");
        let e = format!(
            "{:#}",
            allocated_capacity(tmp.path(), &cfg(&["Compute.AllocatedCapacity.CPU=150%"]), None).expect_err("share")
        );
        assert!(e.contains("from 0% to 100%"), "{e}");
        let c = allocated_capacity(tmp.path(), &cfg(&["Compute.AllocatedCapacity.Memory=1GB"]), None).expect("amount");
        assert_eq!(c.memory_bytes, 1_000_000_000);
    }
}
