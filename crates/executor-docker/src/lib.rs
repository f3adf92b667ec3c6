//! The Docker engine: runs a task as a container on the Docker Engine API (bollard).
//!
//! Inputs are bind-mounted read-only at their Target and each ResultPath read-write at its
//! Path; stdout and stderr are streamed into the result folder as the container writes them.
//! Containers get no network unless the job asks (`Network: None` is the default here, so a
//! job cannot reach anything it was not allowed to), are labelled with their execution, and
//! are always removed; containers left by a crash are removed when the executor starts.
//! `Network: HTTP` puts the container on an internal network behind a per-execution proxy that
//! lets through only the job's allowed domains ([`proxy`]).

pub mod proxy;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use bacalhau_executor::{Executor, ExecutorError, RunOutcome, RunRequest, STDERR_FILE, STDOUT_FILE};
use bacalhau_model::{DockerEngineSpec, ENGINE_DOCKER, EngineSpec, NetworkType};
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::errors::Error as DockerError;
use bollard::models::{ContainerCreateBody, DeviceRequest, HostConfig, Mount, MountType};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, KillContainerOptions, ListContainersOptions, RemoveContainerOptions,
    WaitContainerOptions,
};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;
use tracing::{debug, warn};

/// The label every container we create carries, with its execution ID as value.
pub const EXECUTION_LABEL: &str = "org.bacalhau-rs.execution";
/// The label with the job ID.
/// Processes (threads included) one container may have at once.
const PIDS_LIMIT: i64 = 4096;

/// The capabilities a container keeps; Docker's default set minus `MKNOD` (device nodes in
/// results), `NET_RAW` (forged packets), `SYS_CHROOT`, `SETFCAP`, `SETPCAP` and
/// `AUDIT_WRITE`. What remains lets an image's entrypoint chown its files and switch to an
/// unprivileged user, which is what ordinary images do.
pub const KEPT_CAPABILITIES: &[&str] =
    &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "KILL", "NET_BIND_SERVICE"];

const JOB_LABEL: &str = "org.bacalhau-rs.job";
/// The label with the ID of the node that created the container: orphan clean-up only touches
/// its own node's containers, so nodes sharing an engine leave each other alone.
pub const NODE_LABEL: &str = "org.bacalhau-rs.node";
/// The internal network `Network: HTTP` containers join: no route out, no traffic between
/// containers; the node's proxy listens on its gateway address.
pub const HTTP_NETWORK: &str = "bacalhau-rs-http";
/// How long one Engine API request may take before its response headers arrive. Waits and
/// log streams are not affected (their headers come at once); a pull's first byte is.
const REQUEST_TIMEOUT_SECS: u64 = 300;

/// The Docker executor.
#[derive(Clone)]
pub struct DockerExecutor {
    docker: Docker,
    node_id: String,
}

impl fmt::Debug for DockerExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerExecutor").finish_non_exhaustive()
    }
}

fn failed(context: &str) -> impl Fn(DockerError) -> ExecutorError + '_ {
    move |e| ExecutorError::Failed(format!("{context}: {e}"))
}

impl DockerExecutor {
    /// Connects to the engine (`DOCKER_HOST`, else the local socket), agreeing on an API
    /// version, and checks that it answers. Containers are labelled with `node_id`.
    pub async fn connect(node_id: &str) -> Result<Self, ExecutorError> {
        let docker = Docker::connect_with_defaults()
            .map_err(failed("cannot connect to the Docker engine"))?
            .with_timeout(Duration::from_secs(REQUEST_TIMEOUT_SECS));
        let docker = docker.negotiate_version().await.map_err(failed("the Docker engine does not answer"))?;
        docker.ping().await.map_err(failed("the Docker engine does not answer"))?;
        // Root in a container is root on the host unless the engine remaps users; that is the
        // engine's setting (userns-remap, or rootless Docker), so say when it is missing.
        if let Ok(info) = docker.info().await {
            let opts = info.security_options.unwrap_or_default();
            if !opts.iter().any(|o| o.contains("userns") || o.contains("rootless")) {
                warn!(
                    "the Docker engine does not remap users: a job's root is the host's root (with capabilities \
                     dropped and no-new-privileges). Configure userns-remap or rootless Docker to run jobs as an \
                     unprivileged host user"
                );
            }
        }
        Ok(Self { docker, node_id: node_id.to_owned() })
    }

    /// Removes containers a previous run of this node left behind (after a crash).
    pub async fn remove_orphans(&self) -> usize {
        let filters = HashMap::from([("label".to_owned(), vec![format!("{NODE_LABEL}={}", self.node_id)])]);
        let opts = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let Ok(list) = self.docker.list_containers(Some(opts)).await else {
            return 0;
        };
        let mut removed = 0;
        for c in list {
            if let Some(id) = c.id
                && self.remove(&id).await
            {
                removed += 1;
            }
        }
        if removed > 0 {
            warn!(removed, "removed containers left by an earlier run");
        }
        removed
    }

    async fn remove(&self, id: &str) -> bool {
        let opts = RemoveContainerOptions { force: true, v: true, ..Default::default() };
        match self.docker.remove_container(id, Some(opts)).await {
            Ok(()) => true,
            Err(e) => {
                debug!(container = id, error = %e, "could not remove container");
                false
            }
        }
    }

    fn spec(request: &RunRequest) -> Result<DockerEngineSpec, ExecutorError> {
        match EngineSpec::decode(&request.engine, "Engine.Params") {
            Ok(EngineSpec::Docker(d)) => Ok(d),
            Ok(_) => Err(ExecutorError::InvalidSpec(format!("engine {} is not docker", request.engine.type_name()))),
            Err(errs) => {
                Err(ExecutorError::InvalidSpec(errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")))
            }
        }
    }

    /// Uses a local image when present; otherwise tries to pull it.
    async fn ensure_image(&self, image: &str) -> Result<(), ExecutorError> {
        if self.docker.inspect_image(image).await.is_ok() {
            return Ok(());
        }
        let opts = CreateImageOptions { from_image: Some(image.to_owned()), ..Default::default() };
        let mut pull = self.docker.create_image(Some(opts), None, None);
        while let Some(item) = pull.next().await {
            if let Err(e) = item {
                return Err(ExecutorError::InvalidSpec(format!(
                    "image {image} is not available locally and could not be pulled: {e}"
                )));
            }
        }
        self.docker.inspect_image(image).await.map(|_| ()).map_err(|e| {
            ExecutorError::InvalidSpec(format!("image {image} is not available locally and could not be pulled: {e}"))
        })
    }

    /// The gateway address of [`HTTP_NETWORK`], creating the network when it is missing.
    async fn http_network(&self) -> Result<std::net::IpAddr, ExecutorError> {
        if self.docker.inspect_network(HTTP_NETWORK, None).await.is_err() {
            let create = bollard::models::NetworkCreateRequest {
                name: HTTP_NETWORK.into(),
                driver: Some("bridge".into()),
                internal: Some(true),
                options: Some(HashMap::from([("com.docker.network.bridge.enable_icc".into(), "false".into())])),
                labels: Some(HashMap::from([(NODE_LABEL.to_owned(), self.node_id.clone())])),
                ..Default::default()
            };
            // Another node on this engine may have just made it: that is fine.
            if let Err(e) = self.docker.create_network(create).await {
                debug!(error = %e, "creating the HTTP network");
            }
        }
        let net =
            self.docker.inspect_network(HTTP_NETWORK, None).await.map_err(failed("cannot set up Network HTTP"))?;
        net.ipam
            .and_then(|i| i.config)
            .into_iter()
            .flatten()
            .find_map(|c| c.gateway.and_then(|g| g.parse().ok()))
            .ok_or_else(|| ExecutorError::Failed(format!("the Docker network {HTTP_NETWORK} has no gateway address")))
    }

    fn container_body(
        &self,
        request: &RunRequest,
        spec: &DockerEngineSpec,
        proxy: Option<&str>,
    ) -> Result<ContainerCreateBody, ExecutorError> {
        let mut env: Vec<String> = request.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        env.extend(spec.environment_variables.iter().cloned());
        if let Some(url) = proxy {
            // Both spellings: curl and wget read the lower-case ones, many runtimes the upper.
            for key in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                env.push(format!("{key}={url}"));
            }
        }
        // Docker resolves a bind source's symlink on the host: refuse it rather than mount
        // whatever it points at.
        if let Some(link) = request.inputs.iter().find(|i| fs_is_symlink(&i.host_path)) {
            return Err(ExecutorError::InvalidSpec(format!(
                "input {} is a symlink, not a file or folder",
                link.target
            )));
        }
        let bind = |source: &Path, target: &str, read_only: bool| Mount {
            source: Some(source.display().to_string()),
            target: Some(target.to_owned()),
            typ: Some(MountType::BIND),
            read_only: Some(read_only),
            ..Default::default()
        };
        let mut mounts: Vec<Mount> = request
            .inputs
            .iter()
            .map(|i| bind(&i.host_path, &bacalhau_model::absolute_target(&i.target), i.read_only))
            .collect();
        mounts.extend(request.outputs.iter().map(|o| bind(&o.host_path, &o.path, false)));
        let network_mode = match request.network.r#type {
            NetworkType::Default | NetworkType::None => "none",
            NetworkType::Host | NetworkType::Full => "host",
            NetworkType::Bridge => "bridge",
            NetworkType::Http => HTTP_NETWORK,
        };
        let r = request.resources;
        let host_config = HostConfig {
            mounts: Some(mounts),
            network_mode: Some(network_mode.to_owned()),
            nano_cpus: (r.cpu_millis > 0).then(|| signed(r.cpu_millis).saturating_mul(1_000_000)),
            memory: (r.memory_bytes > 0).then_some(signed(r.memory_bytes)),
            // Equal to memory: no swap, so the limit is a real limit.
            memory_swap: (r.memory_bytes > 0).then_some(signed(r.memory_bytes)),
            // Job code is untrusted: no privilege gain through setuid programs, a bounded number
            // of processes (a fork bomb stops there), and only the capabilities an ordinary
            // image needs to start as root and drop to its own user.
            security_opt: Some(vec!["no-new-privileges:true".to_owned()]),
            pids_limit: Some(PIDS_LIMIT),
            cap_drop: Some(vec!["ALL".to_owned()]),
            cap_add: Some(KEPT_CAPABILITIES.iter().map(|c| (*c).to_owned()).collect()),
            device_requests: (r.gpu > 0).then(|| {
                vec![DeviceRequest {
                    driver: Some("nvidia".into()),
                    count: Some(signed(r.gpu)),
                    capabilities: Some(vec![vec!["gpu".into()]]),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let labels = HashMap::from([
            (EXECUTION_LABEL.to_owned(), request.execution_id.0.clone()),
            (JOB_LABEL.to_owned(), request.job_id.0.clone()),
            (NODE_LABEL.to_owned(), self.node_id.clone()),
        ]);
        Ok(ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: (!spec.entrypoint.is_empty()).then(|| spec.entrypoint.clone()),
            cmd: (!spec.parameters.is_empty()).then(|| spec.parameters.clone()),
            env: Some(env),
            working_dir: (!spec.working_directory.is_empty()).then(|| spec.working_directory.clone()),
            labels: Some(labels),
            host_config: Some(host_config),
            ..Default::default()
        })
    }

    async fn run_container(&self, id: &str, request: &RunRequest) -> Result<RunOutcome, ExecutorError> {
        // Attached before start: the raw stream, byte for byte from the first write. (The `logs`
        // API goes through the json-file driver, which stores lines as JSON strings and turns
        // binary output into U+FFFD.)
        let attach = bollard::query_parameters::AttachContainerOptions {
            stdout: true,
            stderr: true,
            stream: true,
            ..Default::default()
        };
        let output = self
            .docker
            .attach_container(id, Some(attach))
            .await
            .map_err(failed("cannot attach to the container"))?
            .output;
        self.docker.start_container(id, None).await.map_err(failed("cannot start the container"))?;
        let logs = tokio::spawn(copy_logs(output, request.results_dir.clone()));
        let mut wait = self.docker.wait_container(id, Some(WaitContainerOptions { condition: "not-running".into() }));
        let timeout = async {
            match request.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let disk_limit = request.resources.disk_bytes;
        let disk_watch = async {
            if disk_limit == 0 {
                return std::future::pending().await;
            }
            let mut tick = tokio::time::interval(DISK_CHECK_EVERY);
            loop {
                tick.tick().await;
                let used = self.disk_used(id, request).await;
                if used > disk_limit {
                    return used;
                }
            }
        };
        let ended = tokio::select! {
            r = wait.next() => Ok(r),
            used = disk_watch => Err(ExecutorError::DiskLimit(format!(
                "disk limit exceeded: the job wrote {used} bytes (results, output and its container layer), over its Resources.Disk of {disk_limit} bytes; raise --disk"
            ))),
            () = timeout => Err(ExecutorError::TimedOut(request.timeout.unwrap_or_default())),
            () = request.cancel.cancelled() => Err(ExecutorError::Cancelled),
        };
        let exit_code = match ended {
            Ok(Some(Ok(resp))) => resp.status_code,
            // bollard reports a non-zero exit as an error; it is a normal end with that code.
            Ok(Some(Err(DockerError::DockerContainerWaitError { code, .. }))) => code,
            Ok(Some(Err(e))) => return Err(ExecutorError::Failed(format!("waiting for the container failed: {e}"))),
            Ok(None) => return Err(ExecutorError::Failed("the Docker engine ended the wait without a result".into())),
            Err(stop) => {
                let _ = self.docker.kill_container(id, Some(KillContainerOptions { signal: "SIGKILL".into() })).await;
                let _ = logs.await;
                return Err(stop);
            }
        };
        // The log stream ends when the container stops; wait so no output is lost.
        if let Ok(Err(e)) = logs.await {
            warn!(container = id, error = %e, "could not save all container output");
        }
        // A job that wrote too much and ended between two checks is still over its limit.
        if disk_limit > 0 {
            let used = self.disk_used(id, request).await;
            if used > disk_limit {
                return Err(ExecutorError::DiskLimit(format!(
                    "disk limit exceeded: the job wrote {used} bytes (results, output and its container layer), over its Resources.Disk of {disk_limit} bytes; raise --disk"
                )));
            }
        }
        let state = self.docker.inspect_container(id, None).await.ok().and_then(|c| c.state);
        if state.as_ref().and_then(|s| s.oom_killed).unwrap_or(false) {
            return Err(ExecutorError::OutOfMemory(format!(
                "out of memory: the container was killed at its memory limit of {} bytes (exit code {exit_code}); raise Resources.Memory",
                request.resources.memory_bytes
            )));
        }
        Ok(RunOutcome { exit_code: i32::try_from(exit_code).unwrap_or(i32::MAX) })
    }
}

/// How often a running container's disk use is measured against `Resources.Disk`.
const DISK_CHECK_EVERY: Duration = Duration::from_secs(1);

impl DockerExecutor {
    /// Bytes a container has written: its result folder (result paths, stdout, stderr) and its
    /// writable layer. The engine cannot cap either on most storage drivers, so it is measured.
    async fn disk_used(&self, id: &str, request: &RunRequest) -> u64 {
        let dir = request.results_dir.clone();
        let files = tokio::task::spawn_blocking(move || bacalhau_executor::dir_size(&dir)).await.unwrap_or(0);
        let opts = bollard::query_parameters::InspectContainerOptions { size: true };
        let layer = self.docker.inspect_container(id, Some(opts)).await.ok().and_then(|c| c.size_rw).unwrap_or(0);
        files + u64::try_from(layer).unwrap_or(0)
    }
}

/// Streams the container's stdout and stderr into the result folder until it stops.
async fn copy_logs(
    mut stream: std::pin::Pin<Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>>,
    dir: std::path::PathBuf,
) -> std::io::Result<()> {
    let mut opts = tokio::fs::OpenOptions::new();
    opts.append(true).create(true);
    let mut out = opts.open(dir.join(STDOUT_FILE)).await?;
    let mut err = opts.open(dir.join(STDERR_FILE)).await?;
    while let Some(item) = stream.next().await {
        match item {
            Ok(LogOutput::StdErr { message }) => err.write_all(&message).await?,
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => out.write_all(&message).await?,
            Ok(LogOutput::StdIn { .. }) => {}
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        }
        out.flush().await?;
        err.flush().await?;
    }
    Ok(())
}

#[async_trait::async_trait]
impl Executor for DockerExecutor {
    fn engine_type(&self) -> &'static str {
        ENGINE_DOCKER
    }

    fn validate(&self, request: &RunRequest) -> Result<(), ExecutorError> {
        let spec = Self::spec(request)?;
        self.container_body(request, &spec, None).map(|_| ())
    }

    async fn run(&self, request: RunRequest) -> Result<RunOutcome, ExecutorError> {
        let spec = Self::spec(&request)?;
        self.ensure_image(&spec.image).await?;
        // Lives until the container is done.
        let proxy = match request.network.r#type {
            NetworkType::Http => {
                let gateway = self.http_network().await?;
                let allow = proxy::AllowList::new(&request.network.domains);
                let p = proxy::Proxy::start(gateway, allow).await.map_err(|e| {
                    ExecutorError::Failed(format!("cannot start the HTTP proxy on {gateway} for Network HTTP: {e}"))
                })?;
                Some(p)
            }
            _ => None,
        };
        let body = self.container_body(&request, &spec, proxy.as_ref().map(proxy::Proxy::url).as_deref())?;
        let name = format!("bacalhau-{}", request.execution_id);
        // A container of this name can only be a leftover of this execution's earlier attempt.
        self.remove(&name).await;
        let opts = CreateContainerOptions { name: Some(name.clone()), ..Default::default() };
        let created =
            self.docker.create_container(Some(opts), body).await.map_err(failed("cannot create the container"))?;
        let result = self.run_container(&created.id, &request).await;
        drop(proxy);
        // Removal is not on the job's path: the outcome is final once the container stopped
        // and its output is saved. If the node dies first, start-up clean-up removes it.
        let this = self.clone();
        tokio::spawn(async move { this.remove(&created.id).await });
        result
    }
}

fn fs_is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// A limit as Docker's signed field, clamped: `as i64` would turn a limit past i64::MAX into a
/// negative number, which Docker reads as "no limit".
fn signed(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
