//! Every flag, defined once.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

/// Compute over data: run jobs where the data is.
#[derive(Debug, Parser)]
#[command(name = "bacalhau", version, about, propagate_version = true)]
pub struct Cli {
    /// The API host to talk to (or listen on, for serve; config API.Host, default 127.0.0.1).
    /// Accepts a URL such as http://host:port.
    #[arg(long, global = true, env = "BACALHAU_API_HOST")]
    pub api_host: Option<String>,
    /// The API port (config API.Port, default 1234).
    #[arg(long, global = true, env = "BACALHAU_API_PORT")]
    pub api_port: Option<u16>,
    /// A config file (FILE.yaml, repeatable, later files win) or one setting (KEY=VALUE, e.g.
    /// -c JobDefaults.Batch.Task.Publisher.Type=local); `bacalhau config list` shows the keys.
    #[arg(short = 'c', long = "config", global = true, value_name = "FILE|KEY=VALUE")]
    pub config: Vec<String>,
    /// Where a node keeps its data (default ~/.bacalhau).
    #[arg(long, global = true, env = "BACALHAU_DIR")]
    pub data_dir: Option<PathBuf>,
    /// A PEM CA certificate to verify the server with (the API for clients; the
    /// orchestrator's node port for `serve --compute`). Implies https for the API.
    #[arg(long, global = true, env = "BACALHAU_TLS_CA", visible_alias = "cacert")]
    pub tls_ca: Option<PathBuf>,
    /// Talk to the API over https without checking its certificate (tests only).
    #[arg(long, global = true, env = "BACALHAU_INSECURE_TLS")]
    pub insecure: bool,
    /// Talk to the API over https (implied by an https:// --api-host, --tls-ca or --insecure).
    #[arg(long, global = true, env = "BACALHAU_HTTPS")]
    pub tls: bool,
    /// The client profile to use (`bacalhau profile list`); default: the selected one.
    #[arg(long, global = true, env = "BACALHAU_PROFILE")]
    pub profile: Option<String>,
    /// Log level: trace, debug, info, warn or error (config Logging.Level; Bacalhau's flag).
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Log lines as text or as one JSON object each (config Logging.Mode: default or json).
    #[arg(long, global = true, visible_alias = "log-mode", value_name = "text|json")]
    pub log_format: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process; boxing variants would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: orchestrator and compute in one process by default.
    Serve(ServeArgs),
    /// Run an orchestrator and N compute nodes on this machine, joined over the node port.
    Devstack(DevstackArgs),
    /// Run WebAssembly programs.
    #[command(subcommand)]
    Wasm(WasmCommand),
    /// Run Docker containers.
    #[command(subcommand)]
    Docker(DockerCommand),
    /// Submit and inspect jobs.
    #[command(subcommand)]
    Job(JobCommand),
    /// Inspect the network's nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Put data into and take it out of the node's embedded IPFS store.
    #[command(subcommand)]
    Ipfs(IpfsCommand),
    /// Ask the node serving the API about itself.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Print client and server versions.
    Version(OutputArgs),
    /// Credentials: what this client sends, and hashing passwords for the node's config.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Named endpoints with their credentials, as Bacalhau's client profiles.
    #[command(subcommand)]
    Profile(ProfileCommand),
    /// Bacalhau's config.yaml: list the effective settings, set one, print the defaults.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List jobs (older form of `job list`).
    List(LegacyListArgs),
    /// Describe a job (older form of `job describe`).
    Describe(DescribeArgs),
    /// Download a job's results (older form of `job get`).
    Get(GetArgs),
    /// Print a job's logs (older form of `job logs`).
    Logs(LogsArgs),
    /// Stop a job (older form of `job stop`).
    Cancel(StopArgs),
    /// Print a shell completion script: `source <(bacalhau completion bash)`.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into --dir.
    Man {
        /// Write bacalhau.1, bacalhau-job-run.1, ... into this folder instead.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every key with its effective value (defaults, files, environment and -c applied).
    List(OutputArgs),
    /// Write one key into the config file ($BACALHAU_DIR/config.yaml, or the one -c names).
    Set {
        /// KEY=VALUE, or KEY VALUE [VALUE...] (values of a list key).
        #[arg(required = true, num_args = 1..)]
        args: Vec<String>,
    },
    /// Print the default configuration as YAML, ready to edit into a config.yaml.
    Default,
}

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the profiles (the current one is marked).
    List,
    /// Save (create or replace) a profile.
    Save(ProfileSaveArgs),
    /// Show a profile (default: the selected one).
    Show {
        /// The profile.
        name: Option<String>,
    },
    /// Make a profile the current one.
    Select {
        /// The profile.
        name: String,
    },
    /// Delete a profile.
    Delete {
        /// The profile.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ProfileSaveArgs {
    /// Its name.
    pub name: String,
    /// The API's URL, e.g. `https://bacalhau.example.com:1234`.
    #[arg(long)]
    pub endpoint: String,
    /// What it is for.
    #[arg(long, default_value = "")]
    pub description: String,
    /// Request timeout (a Go duration such as 30s).
    #[arg(long, default_value = "")]
    pub timeout: String,
    /// Do not check the server's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// The token (API key) sent as `Authorization: Bearer`.
    #[arg(long, env = "BACALHAU_PROFILE_TOKEN", hide_env_values = true, default_value = "")]
    pub auth_token: String,
    /// Make it the current profile.
    #[arg(long)]
    pub select: bool,
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Show which credentials (BACALHAU_API_KEY, BACALHAU_API_USERNAME/PASSWORD) are set.
    Info,
    /// Read a password from stdin and print its bcrypt hash for API.Auth.Users[].Password.
    HashPassword,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Run the orchestrator (on by default together with --compute).
    #[arg(long)]
    pub orchestrator: bool,
    /// Run a compute node (on by default together with --orchestrator).
    #[arg(long)]
    pub compute: bool,
    /// The node's name; a generated n-<uuid> kept in the data dir by default.
    #[arg(long)]
    pub name: Option<String>,
    /// Host paths jobs may mount as `local` inputs (globs; a :rw suffix allows writing).
    #[arg(long, value_delimiter = ',')]
    pub allow_listed_local_paths: Vec<String>,
    /// Node labels, key=value (repeatable or comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// Share of the machine's CPU, memory and disk offered to jobs (config
    /// Compute.AllocatedCapacity.*, default 80).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub capacity_percent: Option<u64>,
    /// Default ExecutionTimeout in seconds for batch and ops jobs that set none (config
    /// JobDefaults.<Batch|Ops>.Task.Timeouts.ExecutionTimeout; 0 = none).
    #[arg(long)]
    pub default_execution_timeout: Option<u64>,
    /// Seconds without a word from a compute node before it counts as disconnected and its
    /// executions are rescheduled (config Orchestrator.NodeManager.DisconnectTimeout, 30s).
    #[arg(long, value_parser = clap::value_parser!(u64).range(6..))]
    pub node_disconnect_timeout: Option<u64>,
    /// Finished jobs unchanged for this long are deleted, with their executions, history and
    /// stored inputs: `30d`, `12h`, `1d12h`, or `never` (config Orchestrator.JobRetention,
    /// default 30d).
    #[arg(long, value_parser = parse_retention_arg)]
    pub job_retention: Option<Retention>,
    /// auto: new compute nodes may take work at once; manual: they wait as PENDING until
    /// `bacalhau node approve` (config Orchestrator.NodeManager.ManualApproval).
    #[arg(long, value_parser = ["auto", "manual"])]
    pub node_approval: Option<String>,
    /// The orchestrator's port for compute nodes (default 4222, Bacalhau's).
    #[arg(long)]
    pub node_port: Option<u16>,
    /// A compute-only node's orchestrator(s), HOST:PORT of its node port (the first is used).
    #[arg(long, value_delimiter = ',')]
    pub orchestrators: Vec<String>,
    /// Serve the API without authentication even on a non-loopback address (dangerous:
    /// anyone who can reach the port can run jobs and manage the node).
    #[arg(long)]
    pub insecure_allow_anonymous: bool,
    /// The host name or address other machines reach this node at (advertised to the
    /// orchestrator and accepted in Host headers); default: the API host, or this machine's
    /// hostname when the API listens on 0.0.0.0.
    #[arg(long)]
    pub advertise: Option<String>,
    /// The cluster token compute nodes present and the orchestrator checks.
    #[arg(long, env = "BACALHAU_NODE_TOKEN", hide_env_values = true)]
    pub node_token: Option<String>,
    /// PEM certificate for the node port (TLS; with --tls-key).
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for the node port.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Multiaddrs the embedded IPFS peer listens on. Loopback by default (private); use e.g.
    /// /ip4/0.0.0.0/tcp/4001 for peers on other machines.
    #[arg(long = "ipfs-listen", value_delimiter = ',', default_value = "/ip4/127.0.0.1/tcp/0")]
    pub ipfs_listen: Vec<String>,
    /// IPFS peers to keep connected, as multiaddrs ending in /p2p/<peer ID> (a kubo's
    /// `ipfs id` addresses). There are no bootstrap peers and no public DHT.
    #[arg(long = "ipfs-peers", value_delimiter = ',')]
    pub ipfs_peers: Vec<String>,
    /// Use an external kubo daemon through its RPC API (kubo's Addresses.API, e.g.
    /// /ip4/127.0.0.1/tcp/5001) for IPFS inputs and the ipfs publisher, as Bacalhau does.
    #[arg(long = "ipfs-connect", env = "BACALHAU_IPFS_CONNECT")]
    pub ipfs_connect: Option<String>,
    /// Price per CPU core-second (setting any price makes this node charge).
    #[arg(long)]
    pub price_cpu_second: Option<f64>,
    /// Price per GB of memory per second.
    #[arg(long)]
    pub price_memory_gb_second: Option<f64>,
    /// Price per GPU-second.
    #[arg(long)]
    pub price_gpu_second: Option<f64>,
    /// Price per GB of published output.
    #[arg(long)]
    pub price_output_gb: Option<f64>,
    /// The least this node quotes or charges for any job.
    #[arg(long)]
    pub min_price: Option<f64>,
    /// Decline jobs that ask for network access.
    #[arg(long)]
    pub reject_networked_jobs: bool,
    /// Take only jobs whose IPFS inputs are already in this node's store.
    #[arg(long)]
    pub local_inputs_only: bool,
    /// A command that decides whether to bid: it gets the job as JSON on stdin; exit 0 bids,
    /// anything else declines (its output is the reason).
    #[arg(long, value_name = "CMD")]
    pub job_selection_probe_exec: Option<String>,
    /// An http:// URL that decides whether to bid: POSTed the job as JSON, a 2xx bids.
    #[arg(long, value_name = "URL")]
    pub job_selection_probe_http: Option<String>,
    /// Test-only misbehaviour, to prove that peers and verification catch it.
    #[arg(long, value_enum, hide = true)]
    pub test_fault: Option<TestFault>,
}

#[derive(Debug, Args)]
pub struct DevstackArgs {
    /// How many compute nodes.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub computes: u32,
    /// The orchestrator's node port (a free one by default).
    #[arg(long, default_value_t = 0)]
    pub node_port: u16,
    /// Seconds without a word from a compute node before its work is rescheduled.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(6..))]
    pub node_disconnect_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum WasmCommand {
    /// Run a WASM module: a local .wasm file is shipped inline with the job.
    Run(WasmRunArgs),
}

#[derive(Debug, Args)]
pub struct WasmRunArgs {
    /// The entry module: a local .wasm file (shipped inline at main.wasm, or FILE:TARGET), a
    /// URI (ipfs://CID, https://...), or the Target of an --input.
    pub module: String,
    /// Arguments passed to the program.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
    /// The function to call.
    #[arg(long = "entry-point", default_value = "_start")]
    pub entry_point: String,
    /// Modules to link first: FILE:TARGET (shipped inline), URL:TARGET, or the Target of an
    /// --input (repeatable or comma-separated).
    #[arg(short = 'I', long = "import-modules", visible_alias = "import-module")]
    pub import_modules: Vec<String>,
    #[command(flatten)]
    pub job: JobFlags,
    #[command(flatten)]
    pub runtime: RuntimeFlags,
}

#[derive(Debug, Subcommand)]
pub enum DockerCommand {
    /// Run a container: `docker run [flags] IMAGE [COMMAND] [ARG...]`.
    Run(DockerRunArgs),
}

#[derive(Debug, Args)]
pub struct DockerRunArgs {
    /// The image, e.g. ubuntu:24.04.
    pub image: String,
    /// The command and its arguments (after the image, or after --).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
    /// Override the image's ENTRYPOINT (repeatable for several words).
    #[arg(long)]
    pub entrypoint: Vec<String>,
    /// Working directory inside the container (absolute).
    #[arg(long, short = 'w')]
    pub workdir: Option<String>,
    /// Mount a CID, the seed's form: CID:/path (same as -i ipfs://CID:/path).
    #[arg(long, short = 'v')]
    pub volume: Vec<String>,
    #[command(flatten)]
    pub job: JobFlags,
    #[command(flatten)]
    pub runtime: RuntimeFlags,
}

/// Job and task flags shared by the run commands.
#[derive(Debug, Args, Clone, Default)]
pub struct JobFlags {
    /// The job's name.
    #[arg(long)]
    pub name: Option<String>,
    /// The job's namespace.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How many executions to run (batch).
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// any: run Count times on any nodes (batch); all: run on every matching node (ops).
    #[arg(long, value_enum, default_value_t = Target::Any)]
    pub target: Target,
    /// Node selection constraints, e.g. region=eu,gpu!=none.
    #[arg(long, short = 's', visible_alias = "selector")]
    pub constraints: Option<String>,
    /// Job labels, key=value.
    #[arg(long, short = 'l')]
    pub labels: Vec<String>,
    /// Job priority.
    #[arg(long, default_value_t = 0)]
    pub priority: i32,
    /// Inputs: URI[:TARGET] or src=URI,dst=TARGET (ipfs://, file://, http(s)://, data:).
    #[arg(long, short = 'i')]
    pub input: Vec<String>,
    /// Result paths, name:path.
    #[arg(long, short = 'o')]
    pub output: Vec<String>,
    /// Publisher: local, noop or ipfs.
    #[arg(long, short = 'p')]
    pub publisher: Option<String>,
    /// Environment variables: KEY=VALUE, or K1=V1,K2=V2 (repeatable).
    #[arg(long, short = 'e')]
    pub env: Vec<String>,
    /// CPU, e.g. 500m or 2.
    #[arg(long)]
    pub cpu: Option<String>,
    /// Memory, e.g. 512Mb.
    #[arg(long)]
    pub memory: Option<String>,
    /// Disk, e.g. 10Gb.
    #[arg(long)]
    pub disk: Option<String>,
    /// GPUs.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Network: None, Host, Full, HTTP, Bridge.
    #[arg(long)]
    pub network: Option<String>,
    /// Allowed domains (HTTP network).
    #[arg(long)]
    pub domain: Vec<String>,
    /// Total timeout in seconds.
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Execution timeout in seconds.
    #[arg(long)]
    pub execution_timeout: Option<u64>,
    /// How long the job may wait for a node, in seconds (0 = fail at once).
    #[arg(long)]
    pub queue_timeout: Option<u64>,
    /// The most the job may cost, in the nodes' price unit; nodes quoting more are passed over.
    #[arg(long)]
    pub max_price: Option<f64>,
    /// How bids are chosen: cheapest, fastest or balanced.
    #[arg(long)]
    pub strategy: Option<String>,
    /// Verify by CID consensus: run on N distinct nodes (publish to ipfs).
    #[arg(long, value_name = "N")]
    pub verify: Option<u32>,
    /// With --verify: how many nodes must produce the same result CID (default: a majority).
    #[arg(long, value_name = "K", requires = "verify")]
    pub quorum: Option<u32>,
}

/// `serve --test-fault`: ways a node can misbehave on purpose.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum TestFault {
    /// The IPFS peer serves corrupted blocks.
    CorruptBlocks,
    /// Every result is altered before it is published.
    TamperResults,
    /// The compute node sends no heartbeats from 4 s to 20 s after start.
    SilentHeartbeats,
    /// The compute node ignores the first bid acceptance it gets, as if it were lost.
    DropBidAcceptance,
}

#[derive(Debug, Clone, Copy, ValueEnum, Default, PartialEq, Eq)]
pub enum Target {
    #[default]
    Any,
    All,
}

/// What to do after submitting.
#[derive(Debug, Args, Clone)]
pub struct RuntimeFlags {
    #[command(flatten)]
    pub track: TrackFlags,
    /// Print the job spec instead of submitting it.
    #[arg(long)]
    pub dry_run: bool,
}

/// How a submitted (or rerun) job is followed.
#[derive(Debug, Args, Clone)]
pub struct TrackFlags {
    /// Wait for the job to finish (--wait=false to return at once).
    #[arg(long, default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set)]
    pub wait: bool,
    /// How long to wait, in seconds.
    #[arg(long, default_value_t = 600)]
    pub wait_timeout_secs: u64,
    /// Print only the job ID.
    #[arg(long)]
    pub id_only: bool,
    /// Stream the job's output while it runs.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Exit with status 1 when the job fails. Bacalhau exits 0 whatever the job's outcome (a
    /// failure is reported on stderr), and so do we without this flag.
    #[arg(long)]
    pub fail_on_job_failure: bool,
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Submit a job spec (YAML or JSON) from a file, or stdin.
    Run(JobRunArgs),
    /// List jobs.
    List(ListArgs),
    /// Describe a job.
    Describe(DescribeArgs),
    /// List a job's executions.
    Executions(IdOutputArgs),
    /// List a job's history.
    History(HistoryArgs),
    /// Print a job's logs.
    Logs(LogsArgs),
    /// Stop a job.
    Stop(StopArgs),
    /// Download a job's results.
    Get(GetArgs),
    /// Check a job spec without submitting it.
    Validate(ValidateArgs),
    /// Run a job again, as its next version: from the latest version, or from --version N.
    Rerun(RerunArgs),
    /// List a job's versions (a spec submitted again under the job's Name makes the next).
    Versions(IdOutputArgs),
}

#[derive(Debug, Args)]
// `--version` here is the job's version, as in Bacalhau, not the CLI's.
#[command(disable_version_flag = true)]
pub struct RerunArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// The version to run again (`job versions` lists them); 0 is the latest.
    #[arg(long, short = 'v', default_value_t = 0)]
    pub version: u64,
    /// Why (recorded in the job's history).
    #[arg(long, default_value = "")]
    pub reason: String,
    #[command(flatten)]
    pub track: TrackFlags,
}

#[derive(Debug, Args)]
pub struct JobRunArgs {
    /// The spec file; `-` or nothing reads stdin.
    pub file: Option<PathBuf>,
    /// Update the job with the spec's Name even if the spec has not changed (it runs again).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub runtime: RuntimeFlags,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The spec file.
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Table,
    Json,
    Yaml,
    Csv,
}

#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Do not cut long values in tables.
    #[arg(long)]
    pub wide: bool,
    /// Leave out the table header.
    #[arg(long)]
    pub hide_header: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// How many jobs.
    #[arg(long, default_value_t = 10)]
    pub limit: usize,
    /// Continue after a previous page.
    #[arg(long, default_value = "")]
    pub next_token: String,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub order_reversed: bool,
    /// Only jobs whose labels match this selector.
    #[arg(long, default_value = "")]
    pub labels: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LegacyListArgs {
    /// Only the job with this ID (or ID prefix).
    #[arg(long)]
    pub id_filter: Option<String>,
    /// How many jobs.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub number: usize,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
// `--version` here is the job's version, as in Bacalhau, not the CLI's.
#[command(disable_version_flag = true)]
pub struct DescribeArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// Describe this version of the job (`job versions` lists them); 0 is the latest.
    #[arg(long, short = 'v', default_value_t = 0)]
    pub version: u64,
    /// json or yaml instead of the human view.
    #[arg(long, value_enum)]
    pub output: Option<Format>,
}

#[derive(Debug, Args)]
pub struct IdOutputArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// all, job or execution.
    #[arg(long, default_value = "all")]
    pub event_type: String,
    /// Only this execution.
    #[arg(long, default_value = "")]
    pub execution_id: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// Keep printing until the execution ends.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Only this execution.
    #[arg(long, short = 'e', default_value = "")]
    pub execution_id: String,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// Print nothing.
    #[arg(long)]
    pub quiet: bool,
    /// Why (recorded in the job's history).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Job ID, unique ID prefix, or name.
    pub id: String,
    /// Where to write (default ./job-<id>).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Keep each result in its own folder under raw/ instead of merging.
    #[arg(long)]
    pub raw: bool,
    /// Give up downloading after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub download_timeout_secs: u64,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// List nodes.
    List(OutputArgs),
    /// Describe a node.
    Describe(DescribeArgs),
    /// Let a PENDING (or REJECTED) node take work.
    Approve(NodeActionArgs),
    /// Refuse a node: no new work, refused when it registers.
    Reject(NodeActionArgs),
    /// Forget a node; if it comes back it is new again.
    Delete(NodeActionArgs),
}

#[derive(Debug, Args)]
pub struct NodeActionArgs {
    /// The node's ID (or a unique prefix).
    pub id: String,
    /// Why, for the record.
    #[arg(short, long, default_value = "")]
    pub message: String,
}

#[derive(Debug, Subcommand)]
pub enum IpfsCommand {
    /// Add a file or folder: to the local store, then to the node at --api-host if one runs.
    Add(IpfsAddArgs),
    /// Write a CID's file or folder (CID or CID/path) to disk.
    Get(IpfsGetArgs),
    /// Print a file's content (CID or CID/path).
    Cat(IpfsCatArgs),
    /// List a folder's entries: CID, size and name (folders end with /).
    Ls(IpfsCatArgs),
    /// CAR files: export a DAG, import blocks (as kubo's `ipfs dag export|import`).
    #[command(subcommand)]
    Dag(IpfsDagCommand),
    /// The node's pins: what garbage collection keeps.
    #[command(subcommand)]
    Pin(IpfsPinCommand),
    /// The node's block store.
    #[command(subcommand)]
    Repo(IpfsRepoCommand),
    /// The node's IPFS peer: its peer ID and the multiaddrs it listens on (as `ipfs id`).
    Id,
}

#[derive(Debug, Subcommand)]
pub enum IpfsDagCommand {
    /// Write the DAG under a CID as a CAR v1 file (stdout by default).
    Export(IpfsDagExportArgs),
    /// Import CAR v1/v2 files into the node (or the local store), verifying every block and
    /// pinning their roots.
    Import(IpfsDagImportArgs),
}

#[derive(Debug, Args)]
pub struct IpfsDagExportArgs {
    /// The root CID.
    pub cid: String,
    /// Write here instead of stdout.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IpfsDagImportArgs {
    /// CAR files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum IpfsPinCommand {
    /// Pin a CID the node holds.
    Add(IpfsCatArgs),
    /// Unpin a CID.
    Rm(IpfsCatArgs),
    /// List pins and why they were made.
    Ls(OutputArgs),
}

#[derive(Debug, Subcommand)]
pub enum IpfsRepoCommand {
    /// Delete every block no pin reaches.
    Gc,
}

#[derive(Debug, Args)]
pub struct IpfsAddArgs {
    /// The file or folder.
    pub path: PathBuf,
    /// Add a folder recursively.
    #[arg(short, long)]
    pub recursive: bool,
    /// CID version: 0 (kubo's default) or 1 (raw leaves unless --raw-leaves=false).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub cid_version: u8,
    /// Store file chunks as raw blocks (default: on with CIDv1).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub raw_leaves: Option<bool>,
    /// A named import profile: unixfs-v0-2015 (kubo's default), unixfs-v1-2025 (IPIP-499), or
    /// kubo-0.39 (kubo's default before 0.40: a folder of exactly 256 KiB of links is sharded).
    #[arg(long, value_parser = ["unixfs-v0-2015", "legacy-cid-v0", "unixfs-v1-2025", "kubo-0.39"])]
    pub profile: Option<String>,
    /// Print only CIDs, one per item.
    #[arg(short, long)]
    pub quiet: bool,
    /// Print only the root CID.
    #[arg(short = 'Q', long)]
    pub quieter: bool,
    /// Include files whose names start with a dot.
    #[arg(short = 'H', long)]
    pub hidden: bool,
    /// Do not show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

#[derive(Debug, Args)]
pub struct IpfsGetArgs {
    /// The CID, or CID/path inside it.
    pub cid: String,
    /// Where to write (default: the CID).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct IpfsCatArgs {
    /// The CID, or CID/path inside it.
    pub cid: String,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Whether the node is alive.
    Alive(OutputArgs),
    /// The node's version.
    Version(OutputArgs),
    /// The node's info.
    Node(OutputArgs),
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap checks a command's definition only when that command is parsed: a clash in a rarely
    /// used subcommand would otherwise surface as a panic in a user's hands.
    #[test]
    fn every_command_definition_is_valid() {
        super::Cli::command().debug_assert();
    }
}

/// How long finished jobs are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retention {
    /// Deleted once unchanged for this long.
    For(std::time::Duration),
    /// Kept forever.
    Never,
}

fn parse_retention_arg(s: &str) -> Result<Retention, String> {
    parse_retention(s)
}

/// Parses a retention: a Go duration with days allowed in front (`30d`, `1d12h`, `720h`), or
/// `never`. Zero is refused: it would delete every job the moment it finishes.
pub fn parse_retention(s: &str) -> Result<Retention, String> {
    let s = s.trim();
    if matches!(s.to_ascii_lowercase().as_str(), "never" | "forever" | "off") {
        return Ok(Retention::Never);
    }
    let hint = "write it like 30d, 12h, 1d12h or 90m, or `never` to keep finished jobs forever";
    let (days, rest) = match s.find('d') {
        Some(i) => {
            let n: u64 = s[..i]
                .parse()
                .map_err(|_| format!("{s:?} is not a retention ({:?} is not a number of days); {hint}", &s[..i]))?;
            (n, &s[i + 1..])
        }
        None => (0, s),
    };
    let rest = if rest.is_empty() {
        std::time::Duration::ZERO
    } else {
        crate::config::parse_go_duration(rest).map_err(|e| format!("{s:?} is not a retention ({e}); {hint}"))?
    };
    let total = days
        .checked_mul(86_400)
        .map(std::time::Duration::from_secs)
        .and_then(|d| d.checked_add(rest))
        .ok_or_else(|| format!("{s:?} is too long a retention; {hint}"))?;
    if total.is_zero() {
        return Err(format!("a retention of {s:?} would delete every job as it finishes; {hint}"));
    }
    Ok(Retention::For(total))
}
