//! `bacalhau serve`: turns the flags and configuration into a `bacalhau_node::NodeConfig`
//! (one function, [`node_config`]), binds the sockets and runs the node until a signal.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bacalhau_compute::detect_capacity;
use bacalhau_model::{JobTypeDefaults, NodeId, SpecConfig, SubmissionDefaults};
use bacalhau_node::{
    ApiSettings, ComputeRole, Disabled, Faults, Listeners, Node, NodeConfig, OrchestratorRole, Upstream,
};
use bacalhau_storage::AllowedPath;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::args::ServeArgs;
use crate::config::Config;

pub use bacalhau_node::version_info;

/// The orchestrator's bucket for the `s3managed` publisher, when any of its keys is set
/// (the node checks the whole at start and names what is missing).
fn managed_bucket(cfg: &Config) -> Option<bacalhau_node::S3ManagedSettings> {
    let get = |k: &str| cfg.str(&format!("Publishers.Types.S3Managed.{k}")).trim().to_owned();
    let settings = bacalhau_node::S3ManagedSettings {
        bucket: get("Bucket"),
        key: get("Key"),
        region: get("Region"),
        endpoint: get("Endpoint"),
        expiry: cfg.duration("Publishers.Types.S3Managed.PreSignedURLExpiration"),
    };
    let set = [&settings.bucket, &settings.key, &settings.region, &settings.endpoint].iter().any(|v| !v.is_empty());
    set.then_some(settings)
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

fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// The node `serve` runs, from its (settled) flags and the configuration: every setting
/// resolved, every bad value refused with the flag or key that holds it.
pub async fn node_config(host: &str, tls_ca: Option<PathBuf>, args: &ServeArgs, cfg: &Config) -> Result<NodeConfig> {
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
    let users = cfg.users()?;
    let auth =
        Arc::new(bacalhau_api::auth::Authorizer::new(&users, args.node_token.clone()).map_err(anyhow::Error::msg)?);
    check_exposure(host, auth.enabled(), run_orchestrator, args.node_token.is_some(), args.insecure_allow_anonymous)?;
    // --tls-cert/--tls-key serve the API over https, and the node port over TLS.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some((read_pem(c, "TLS certificate")?, read_pem(k, "TLS key")?)),
        _ => None,
    };
    let advertised = advertise_host(host, args.advertise.as_deref());
    // Bacalhau's default is off; ours is on where only this machine can reach it.
    let web_ui = if cfg.is_set("WebUI.Enabled") { cfg.bool("WebUI.Enabled") } else { is_loopback_host(host) };
    let mut names = node_names(host, &advertised);
    let web_ui_listen = match cfg.opt_str("WebUI.Listen").filter(|_| web_ui && cfg.is_set("WebUI.Listen")) {
        None => None,
        Some(listen) => {
            let (ui_host, _) = split_host_port(&listen)
                .with_context(|| format!("WebUI.Listen {listen:?} is not HOST:PORT (for example 127.0.0.1:8438)"))?;
            // The UI's address serves the API too: it is held to the same rule.
            check_exposure(&ui_host, auth.enabled(), false, true, args.insecure_allow_anonymous)
                .context("WebUI.Listen")?;
            names = names.with(ui_host);
            Some(listen)
        }
    };
    let orchestrator = run_orchestrator
        .then(|| -> Result<OrchestratorRole> {
            Ok(OrchestratorRole {
                defaults: job_defaults(cfg, args.default_execution_timeout)?,
                node_disconnect_timeout: Duration::from_secs(args.node_disconnect_timeout.unwrap_or(30)),
                job_retention: match args.job_retention {
                    Some(crate::args::Retention::Never) => None,
                    Some(crate::args::Retention::For(d)) => Some(d),
                    None => Some(bacalhau_orchestrator::DEFAULT_JOB_RETENTION),
                },
                manual_node_approval: args.node_approval.as_deref() == Some("manual"),
                node_token: args.node_token.clone(),
                node_tls: tls.clone(),
                s3_presign: (!cfg.bool("Publishers.Types.S3.PreSignedURLDisabled")).then(|| {
                    let d = cfg.duration("Publishers.Types.S3.PreSignedURLExpiration");
                    if d.is_zero() { Duration::from_secs(900) } else { d }
                }),
                s3_managed: managed_bucket(cfg),
                ..OrchestratorRole::default()
            })
        })
        .transpose()?;
    let compute = if run_compute {
        let upstream = if run_orchestrator {
            Upstream::InProcess
        } else {
            Upstream::Remote {
                address: args.orchestrators[0].trim().to_owned(),
                token: args.node_token.clone(),
                tls_ca: tls_ca.as_deref().map(|p| read_pem(p, "TLS CA certificate")).transpose()?,
            }
        };
        let mut role = ComputeRole::new(upstream, allocated_capacity(&dir, cfg, args.capacity_percent)?);
        role.labels = parse_labels(&args.labels)?;
        role.allowed = args
            .allow_listed_local_paths
            .iter()
            .filter(|p| !p.trim().is_empty())
            .map(|p| AllowedPath::parse(p.trim()))
            .collect::<Result<_, _>>()?;
        role.heartbeat_interval = cfg.duration("Compute.Heartbeat.Interval").max(Duration::from_secs(1));
        role.disabled = Disabled {
            engines: cfg.list("Engines.Disabled"),
            inputs: cfg.list("InputSources.Disabled"),
            publishers: cfg.list("Publishers.Disabled"),
        };
        role.url_inputs.max_retries = u32::try_from(cfg.int("InputSources.MaxRetryCount").max(0)).unwrap_or(u32::MAX);
        // Zero would time every download out at once; Bacalhau reads it as "no limit".
        let read_timeout = cfg.duration("InputSources.ReadTimeout");
        role.url_inputs.read_timeout = if read_timeout.is_zero() { Duration::from_secs(86_400) } else { read_timeout };
        role.s3_inputs.max_retries = role.url_inputs.max_retries;
        role.s3_inputs.read_timeout = role.url_inputs.read_timeout;
        role.results_host = cfg.opt_str("Publishers.Types.Local.Address").unwrap_or_else(|| advertised.clone());
        role.api_host = advertised.clone();
        role.kubo = args.ipfs_connect.clone();
        role.prices = crate::market::prices(args)?;
        role.bid_policy = bacalhau_compute::BidPolicy {
            host_network_refusal: (!auth.enabled() && !args.insecure_allow_anonymous).then(|| {
                "this node's API has no authentication, so a job on the host's network could drive it from \
                 inside: its operator can configure API.Auth.Users (or accept the risk with --insecure-allow-anonymous)"
                    .to_owned()
            }),
            ..crate::market::bid_policy(args)?
        };
        Some(role)
    } else {
        None
    };
    let fault = args.test_fault;
    Ok(NodeConfig {
        dir,
        node_id,
        orchestrator,
        compute,
        api: ApiSettings { auth, tls, names: Arc::new(names), web_ui, web_ui_listen },
        ipfs_listen: args.ipfs_listen.clone(),
        ipfs_peers: args.ipfs_peers.clone(),
        faults: Faults {
            corrupt_blocks: fault == Some(crate::args::TestFault::CorruptBlocks),
            tamper_results: fault == Some(crate::args::TestFault::TamperResults),
            silent_heartbeats: fault == Some(crate::args::TestFault::SilentHeartbeats),
            drop_bid_acceptance: fault == Some(crate::args::TestFault::DropBidAcceptance),
        },
    })
}

/// Whether an API host is reachable only from this machine.
fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `HOST:PORT` or `[V6]:PORT`, split.
fn split_host_port(addr: &str) -> Option<(String, u16)> {
    let (host, port) = addr.trim().rsplit_once(':')?;
    let host = host.trim_matches(['[', ']']);
    (!host.is_empty()).then_some(())?;
    Some((host.to_owned(), port.parse().ok()?))
}

/// Runs the node until Ctrl-C or SIGTERM: orchestrator and compute in one process (the
/// default), or one role (`--orchestrator`, or `--compute --orchestrators HOST:PORT`).
pub async fn serve(host: &str, port: u16, tls_ca: Option<PathBuf>, mut args: ServeArgs, cfg: &Config) -> Result<()> {
    settle(&mut args, cfg)?;
    let config = node_config(host, tls_ca, &args, cfg).await?;
    let api = tokio::net::TcpListener::bind((host, port)).await.with_context(|| {
        format!(
            "cannot listen on {host}:{port}: is another bacalhau serve running? Choose another port with --api-port"
        )
    })?;
    let node = match &config.orchestrator {
        None => None,
        Some(_) => {
            let wanted = args.node_port.unwrap_or(DEFAULT_NODE_PORT);
            match tokio::net::TcpListener::bind((host, wanted)).await {
                Ok(l) => Some(l),
                // With both roles in one process the node port is an extra: say so and go on.
                Err(e) if config.compute.is_some() && args.node_port.is_none() => {
                    warn!(
                        "node port {host}:{wanted} unavailable ({e}); other compute nodes cannot join this one (set --node-port)"
                    );
                    None
                }
                Err(e) => {
                    bail!("cannot listen for compute nodes on {host}:{wanted}: {e}; choose another with --node-port")
                }
            }
        }
    };
    let web_ui = match config.api.web_ui_listen.as_deref() {
        Some(listen) if split_host_port(listen) != Some((host.to_owned(), port)) => {
            let l = tokio::net::TcpListener::bind(listen.trim()).await;
            Some(l.with_context(|| format!("cannot listen on WebUI.Listen {listen}: choose another address"))?)
        }
        _ => None,
    };
    let dir = config.dir.clone();
    let ui = config.api.web_ui;
    let ui_extra = web_ui.as_ref().and_then(|l| l.local_addr().ok());
    let cancel = CancellationToken::new();
    let node = Node::start(config, Listeners { api, node, web_ui }, cancel.clone()).await?;
    let roles = match (&node.orchestrator, &node.compute) {
        (Some(_), Some(_)) => format!("orchestrator + compute; engines: {}", node.engines.join(", ")),
        (Some(_), None) => "orchestrator".to_owned(),
        (None, _) => format!("compute for {}; engines: {}", args.orchestrators[0], node.engines.join(", ")),
    };
    let joins = node.node_addr.map(|a| format!(", compute nodes join on {a}")).unwrap_or_default();
    println!(
        "bacalhau serve: node {} ({roles}), API on {}{joins}, data in {}",
        node.node_id,
        node.api_url(),
        dir.display()
    );
    println!("IPFS peer {} listening on {}", node.ipfs.peer.id(), node.ipfs.addrs().join(", "));
    if ui {
        let also = ui_extra.map(|a| format!(" and {}://{a}/", node.scheme)).unwrap_or_default();
        println!("web UI at {}/{also}", node.api_url());
    }
    println!("export BACALHAU_API_HOST={}\nexport BACALHAU_API_PORT={}", node.api_addr.ip(), node.api_addr.port());
    tokio::spawn(async move {
        wait_for_signal().await;
        info!("shutting down");
        cancel.cancel();
    });
    node.wait().await
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
    if args.job_retention.is_none() {
        let v = cfg.str("Orchestrator.JobRetention");
        let v = if v.trim().is_empty() { "30d".to_owned() } else { v };
        args.job_retention =
            Some(crate::args::parse_retention(&v).map_err(|e| anyhow::anyhow!("Orchestrator.JobRetention: {e}"))?);
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
