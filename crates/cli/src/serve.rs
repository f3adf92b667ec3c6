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
use bacalhau_model::{BuildVersionInfo, NodeId, NodeInfo, NodeType, SubmissionDefaults};
use bacalhau_orchestrator::{Orchestrator, OrchestratorConfig};
use bacalhau_protocol::connect_in_process;
use bacalhau_storage::{
    AllowedPath, InlineSource, InputProvider, IpfsPublisher, IpfsSource, LocalPublisher, LocalSource, NoopPublisher,
    Publisher,
};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::args::ServeArgs;

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

/// The data directory: --data-dir, $BACALHAU_DIR, or ~/.bacalhau.
pub fn data_dir(flag: Option<PathBuf>) -> Result<PathBuf> {
    match flag {
        Some(d) => Ok(d),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set: pass --data-dir or set BACALHAU_DIR")?;
            Ok(Path::new(&home).join(".bacalhau"))
        }
    }
}

/// The node's ID: --name, else the one kept in the data dir, else a new `n-<uuid>`.
fn node_id(dir: &Path, name: Option<String>) -> Result<NodeId> {
    if let Some(n) = name.filter(|n| !n.trim().is_empty()) {
        return Ok(NodeId::from(n.trim()));
    }
    let file = dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&file)
        && !id.trim().is_empty()
    {
        return Ok(NodeId::from(id.trim()));
    }
    let id = NodeId::generate();
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

/// Runs the node until Ctrl-C or SIGTERM.
pub async fn serve(host: &str, port: u16, data_dir_flag: Option<PathBuf>, args: ServeArgs) -> Result<()> {
    if args.orchestrator != args.compute {
        bail!(
            "--{} alone needs the network transport between orchestrator and compute nodes, which this build does not have yet: run `bacalhau serve` with no role flags for both roles in one process",
            if args.orchestrator { "orchestrator" } else { "compute" }
        );
    }
    let dir = data_dir(data_dir_flag)?;
    std::fs::create_dir_all(dir.join("orchestrator")).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("compute"))?;
    let node_id = node_id(&dir, args.name.clone())?;
    let labels = parse_labels(&args.labels)?;
    let allowed: Vec<AllowedPath> = args
        .allow_listed_local_paths
        .iter()
        .filter(|p| !p.trim().is_empty())
        .map(|p| AllowedPath::parse(p.trim()))
        .collect::<Result<_, _>>()?;

    let listener = tokio::net::TcpListener::bind((host, port)).await.with_context(|| {
        format!(
            "cannot listen on {host}:{port}: is another bacalhau serve running? Choose another port with --api-port"
        )
    })?;
    let bound = listener.local_addr()?;
    let cancel = CancellationToken::new();

    let mut ocfg = OrchestratorConfig::new(dir.join("orchestrator").join("jobs.redb"));
    ocfg.defaults = SubmissionDefaults { execution_timeout: args.default_execution_timeout, ..Default::default() };
    let orchestrator = Orchestrator::start(ocfg, cancel.child_token()).await?;
    let handle = orchestrator.handle();

    let compute_dir = dir.join("compute");
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
    let executors_names: Vec<String> = executors.iter().map(|e| e.engine_type().to_owned()).collect();
    let ipfs = Arc::new(BlockStore::open(&dir.join("ipfs"))?);
    let inputs: Vec<Arc<dyn InputProvider>> =
        vec![Arc::new(InlineSource), Arc::new(LocalSource::new(allowed)), Arc::new(IpfsSource::new(ipfs.clone()))];
    let results_dir = compute_dir.join("results");
    let advertised = if host == "0.0.0.0" { "127.0.0.1".to_owned() } else { host.to_owned() };
    let local =
        LocalPublisher::new(results_dir.clone(), format!("http://{advertised}:{}/api/v1/local-results", bound.port()));
    let publishers: Vec<Arc<dyn Publisher>> =
        vec![Arc::new(NoopPublisher), Arc::new(local), Arc::new(IpfsPublisher::new(ipfs.clone()))];
    let endpoint = connect_in_process(handle.inbound(), node_id.clone())
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect the compute node: {e}"))?;
    let ccfg = ComputeConfig {
        node_id: node_id.clone(),
        data_dir: compute_dir,
        capacity: detect_capacity(&dir, args.capacity_percent),
        labels,
        heartbeat_interval: Duration::from_secs(5),
        version: version_info(),
    };
    let compute = ComputeNode::start(ccfg, executors, inputs, publishers, endpoint, cancel.child_token()).await?;

    let state = ApiState {
        orchestrator: handle,
        compute: Some(compute),
        version: version_info(),
        node_info: NodeInfo { node_id: node_id.clone(), node_type: NodeType::Requester, ..Default::default() },
        local_results_dir: Some(results_dir),
        ipfs: Some(ipfs),
    };
    println!(
        "bacalhau serve: node {node_id} (orchestrator + compute; engines: {}), API on http://{bound}, data in {}",
        executors_names.join(", "),
        dir.display()
    );
    println!("export BACALHAU_API_HOST={}\nexport BACALHAU_API_PORT={}", bound.ip(), bound.port());
    let shutdown = cancel.clone();
    let server = bacalhau_api::serve(listener, state, async move { shutdown.cancelled().await });
    let signals = cancel.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        signals.cancel();
    });
    server.await.context("the API server failed")?;
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, orchestrator.join()).await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
