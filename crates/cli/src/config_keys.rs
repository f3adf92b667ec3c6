//! Every key of Bacalhau 1.9's `config.yaml`, in its spelling, with this node's default and
//! whether this version acts on it. Keys Bacalhau has and we do not use are still accepted, so
//! a Bacalhau operator's file loads unchanged; `config list` marks them.

/// How a key's value is written and read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text.
    Str,
    /// A whole number.
    Int,
    /// true or false.
    Bool,
    /// A Go duration: `30s`, `1m30s`, `1h`.
    Duration,
    /// A list of text; comma-separated on the command line and in the environment.
    List,
    /// `key=value` pairs; `k=v,k=v` on the command line.
    Map,
    /// A structure only a config file can hold (users, auth methods).
    Raw,
}

/// One config key.
#[derive(Clone, Copy, Debug)]
pub struct Key {
    /// Bacalhau's dotted PascalCase path, e.g. `API.Port`.
    pub path: &'static str,
    /// Its value type.
    pub kind: Kind,
    /// This node's default, as it would be written after `-c KEY=`.
    pub default: &'static str,
    /// Whether this version acts on it.
    pub used: bool,
    /// One line for `config list`.
    pub help: &'static str,
}

const fn key(path: &'static str, kind: Kind, default: &'static str, used: bool, help: &'static str) -> Key {
    Key { path, kind, default, used, help }
}

use Kind::{Bool, Duration, Int, List, Map, Raw, Str};

const Y: bool = true;
const N: bool = false;

/// All keys, sorted by path.
pub const KEYS: &[Key] = &[
    key("API.Auth.AccessPolicyPath", Str, "", N, "A Rego policy for API access (use API.Auth.Users here)"),
    key("API.Auth.Methods", Raw, "", N, "Authentication methods by name"),
    key("API.Auth.Oauth2.Audience", Str, "", N, "OAuth2 audience"),
    key("API.Auth.Oauth2.DeviceAuthorizationEndpoint", Str, "", N, "OAuth2 device authorization endpoint"),
    key("API.Auth.Oauth2.DeviceClientID", Str, "", N, "OAuth2 device client ID"),
    key("API.Auth.Oauth2.Issuer", Str, "", N, "OAuth2 token issuer"),
    key("API.Auth.Oauth2.JWKSUri", Str, "", N, "OAuth2 JWKS URI"),
    key("API.Auth.Oauth2.PollingInterval", Int, "0", N, "OAuth2 device flow polling interval"),
    key("API.Auth.Oauth2.ProviderID", Str, "", N, "OAuth2 provider ID"),
    key("API.Auth.Oauth2.ProviderName", Str, "", N, "OAuth2 provider name"),
    key("API.Auth.Oauth2.Scopes", List, "", N, "OAuth2 scopes"),
    key("API.Auth.Oauth2.TokenEndpoint", Str, "", N, "OAuth2 token endpoint"),
    key("API.Auth.Users", Raw, "", Y, "API users: Alias, Username+Password or APIKey, Capabilities"),
    key("API.Host", Str, "127.0.0.1", Y, "The API's host (serve listens there; clients connect there)"),
    key("API.Port", Int, "1234", Y, "The API's port"),
    key("API.TLS.AutoCert", Str, "", N, "Domain for an ACME certificate"),
    key("API.TLS.AutoCertCachePath", Str, "", N, "Cache folder for ACME certificates"),
    key("API.TLS.CAFile", Str, "", Y, "A CA certificate clients verify the API with"),
    key("API.TLS.CertFile", Str, "", Y, "The API's TLS certificate (serve over https)"),
    key("API.TLS.Insecure", Bool, "false", Y, "Clients skip checking the API's certificate"),
    key("API.TLS.KeyFile", Str, "", Y, "The API's TLS private key"),
    key("API.TLS.SelfSigned", Bool, "false", N, "Serve with a generated self-signed certificate"),
    key("API.TLS.UseTLS", Bool, "false", Y, "Clients talk to the API over https"),
    key("Compute.AllocatedCapacity.CPU", Str, "80%", Y, "CPU offered to jobs: a share (80%) or cores (4, 500m)"),
    key("Compute.AllocatedCapacity.Disk", Str, "80%", Y, "Disk offered to jobs: a share or a size (100GB)"),
    key("Compute.AllocatedCapacity.GPU", Str, "100%", Y, "GPUs offered to jobs: a share or a count"),
    key("Compute.AllocatedCapacity.Memory", Str, "80%", Y, "Memory offered to jobs: a share or a size (16GB)"),
    key(
        "Compute.AllowListedLocalPaths",
        List,
        "",
        Y,
        "Host paths jobs may mount as local inputs (globs; :rw to write)",
    ),
    key("Compute.Auth.Token", Str, "", Y, "The cluster token a compute node presents to its orchestrator"),
    key("Compute.Enabled", Bool, "false", Y, "Run a compute node"),
    key("Compute.Env.AllowList", List, "", N, "Host environment variables jobs may forward"),
    key("Compute.Heartbeat.InfoUpdateInterval", Duration, "1m", N, "How often node info is sent"),
    key("Compute.Heartbeat.Interval", Duration, "5s", Y, "How often a compute node sends heartbeats"),
    key("Compute.Heartbeat.ResourceUpdateInterval", Duration, "0s", N, "Deprecated: use Compute.Heartbeat.Interval"),
    key("Compute.Network.AdvertisedAddress", Str, "", N, "Address published for port mappings"),
    key("Compute.Network.PortRangeEnd", Int, "32000", N, "Last port for port mappings"),
    key("Compute.Network.PortRangeStart", Int, "20000", N, "First port for port mappings"),
    key("Compute.Orchestrators", List, "", Y, "A compute-only node's orchestrators, host:port of their node port"),
    key("Compute.TLS.CACert", Str, "", Y, "A CA certificate to verify the orchestrator's node port with"),
    key("Compute.TLS.RequireTLS", Bool, "false", N, "Require TLS to the orchestrator"),
    key("DataDir", Str, "~/.bacalhau", Y, "Where the node keeps its data"),
    key("DisableAnalytics", Bool, "false", N, "No analytics are sent by this version"),
    key("Engines.Disabled", List, "", Y, "Engines this node does not offer (docker, wasm)"),
    key("Engines.Types.Docker.ManifestCache.Refresh", Duration, "1h", N, "Image manifest cache refresh"),
    key("Engines.Types.Docker.ManifestCache.Size", Int, "1000", N, "Image manifest cache entries"),
    key("Engines.Types.Docker.ManifestCache.TTL", Duration, "1h", N, "Image manifest cache lifetime"),
    key("InputSources.Disabled", List, "", Y, "Input source types this node does not offer"),
    key("InputSources.MaxRetryCount", Int, "3", Y, "Retries of a urlDownload or s3 input after a transient failure"),
    key("InputSources.ReadTimeout", Duration, "5m", Y, "How long a urlDownload or s3 server may send nothing"),
    key("InputSources.Types.IPFS.Endpoint", Str, "", Y, "An external kubo's RPC multiaddr for ipfs inputs"),
    key("JobAdmissionControl.Locality", Str, "anywhere", Y, "local: take only jobs whose inputs are here; anywhere"),
    key("JobAdmissionControl.ProbeExec", Str, "", Y, "A command that decides whether to bid (the job on stdin)"),
    key("JobAdmissionControl.ProbeHTTP", Str, "", Y, "A URL that decides whether to bid (the job POSTed)"),
    key("JobAdmissionControl.RejectNetworkedJobs", Bool, "false", Y, "Decline jobs that ask for network access"),
    key("JobAdmissionControl.RejectStatelessJobs", Bool, "false", N, "Decline jobs without inputs"),
    key("JobDefaults.Batch.Priority", Int, "0", Y, "Priority of batch jobs that set none"),
    key("JobDefaults.Batch.Task.Publisher.Params", Map, "", Y, "Params of the default publisher of batch jobs"),
    key("JobDefaults.Batch.Task.Publisher.Type", Str, "ipfs", Y, "Publisher of batch jobs that set none"),
    key("JobDefaults.Batch.Task.Resources.CPU", Str, "500m", Y, "CPU of batch jobs that set none"),
    key("JobDefaults.Batch.Task.Resources.Disk", Str, "", Y, "Disk of batch jobs that set none"),
    key("JobDefaults.Batch.Task.Resources.GPU", Str, "", Y, "GPUs of batch jobs that set none"),
    key("JobDefaults.Batch.Task.Resources.Memory", Str, "512Mb", Y, "Memory of batch jobs that set none"),
    key(
        "JobDefaults.Batch.Task.Timeouts.ExecutionTimeout",
        Duration,
        "0s",
        Y,
        "ExecutionTimeout of batch jobs (0: none)",
    ),
    key("JobDefaults.Batch.Task.Timeouts.TotalTimeout", Duration, "0s", Y, "TotalTimeout of batch jobs (0: none)"),
    key("JobDefaults.Daemon.Priority", Int, "0", Y, "Priority of daemon jobs that set none"),
    key("JobDefaults.Daemon.Task.Resources.CPU", Str, "500m", Y, "CPU of daemon jobs that set none"),
    key("JobDefaults.Daemon.Task.Resources.Disk", Str, "", Y, "Disk of daemon jobs that set none"),
    key("JobDefaults.Daemon.Task.Resources.GPU", Str, "", Y, "GPUs of daemon jobs that set none"),
    key("JobDefaults.Daemon.Task.Resources.Memory", Str, "512Mb", Y, "Memory of daemon jobs that set none"),
    key("JobDefaults.Ops.Priority", Int, "0", Y, "Priority of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Publisher.Params", Map, "", Y, "Params of the default publisher of ops jobs"),
    key("JobDefaults.Ops.Task.Publisher.Type", Str, "ipfs", Y, "Publisher of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Resources.CPU", Str, "500m", Y, "CPU of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Resources.Disk", Str, "", Y, "Disk of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Resources.GPU", Str, "", Y, "GPUs of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Resources.Memory", Str, "512Mb", Y, "Memory of ops jobs that set none"),
    key("JobDefaults.Ops.Task.Timeouts.ExecutionTimeout", Duration, "0s", Y, "ExecutionTimeout of ops jobs (0: none)"),
    key("JobDefaults.Ops.Task.Timeouts.TotalTimeout", Duration, "0s", Y, "TotalTimeout of ops jobs (0: none)"),
    key("JobDefaults.Service.Priority", Int, "0", Y, "Priority of service jobs that set none"),
    key("JobDefaults.Service.Task.Resources.CPU", Str, "500m", Y, "CPU of service jobs that set none"),
    key("JobDefaults.Service.Task.Resources.Disk", Str, "", Y, "Disk of service jobs that set none"),
    key("JobDefaults.Service.Task.Resources.GPU", Str, "", Y, "GPUs of service jobs that set none"),
    key("JobDefaults.Service.Task.Resources.Memory", Str, "512Mb", Y, "Memory of service jobs that set none"),
    key("Labels", Map, "", Y, "The node's labels, matched by job Constraints"),
    key("Logging.Level", Str, "info", Y, "trace, debug, info, warn or error"),
    key("Logging.LogDebugInfoInterval", Duration, "30s", N, "How often debug information is logged"),
    key("Logging.Mode", Str, "default", Y, "default (text) or json"),
    key("NameProvider", Str, "puuid", Y, "How a new node names itself: puuid, uuid or hostname"),
    key("Orchestrator.Advertise", Str, "", Y, "The address other machines reach this node at"),
    key("Orchestrator.Auth.Token", Str, "", Y, "The cluster token compute nodes must present"),
    key("Orchestrator.Cluster.Advertise", Str, "", N, "NATS cluster advertised address"),
    key("Orchestrator.Cluster.Host", Str, "", N, "NATS cluster host"),
    key("Orchestrator.Cluster.Name", Str, "", N, "NATS cluster name"),
    key("Orchestrator.Cluster.Peers", List, "", N, "NATS cluster peers"),
    key("Orchestrator.Cluster.Port", Int, "0", N, "NATS cluster port"),
    key("Orchestrator.Enabled", Bool, "false", Y, "Run the orchestrator"),
    key("Orchestrator.EvaluationBroker.MaxRetryCount", Int, "10", N, "Evaluation retries"),
    key("Orchestrator.EvaluationBroker.VisibilityTimeout", Duration, "1m", N, "Evaluation visibility timeout"),
    key("Orchestrator.Host", Str, "", Y, "Where the node port listens (default: API.Host)"),
    key(
        "Orchestrator.JobRetention",
        Str,
        "30d",
        Y,
        "(bacalhau-rs) Finished jobs unchanged this long are deleted with their records; `never` keeps them",
    ),
    key(
        "Orchestrator.NodeManager.DisconnectTimeout",
        Duration,
        "30s",
        Y,
        "Silence before a compute node counts as gone",
    ),
    key("Orchestrator.NodeManager.ManualApproval", Bool, "false", Y, "New compute nodes wait for `node approve`"),
    key("Orchestrator.Port", Int, "4222", Y, "The node port compute nodes join on"),
    key("Orchestrator.Scheduler.HousekeepingInterval", Duration, "30s", N, "Scheduler housekeeping interval"),
    key("Orchestrator.Scheduler.HousekeepingTimeout", Duration, "2m", N, "Scheduler housekeeping timeout"),
    key("Orchestrator.Scheduler.QueueBackoff", Duration, "1m", N, "Back-off for queued jobs"),
    key("Orchestrator.Scheduler.WorkerCount", Int, "0", N, "Scheduler workers"),
    key("Orchestrator.SupportReverseProxy", Bool, "false", N, "Behind a reverse proxy"),
    key("Orchestrator.TLS.CACert", Str, "", N, "CA certificate for the node port"),
    key("Orchestrator.TLS.ServerCert", Str, "", Y, "TLS certificate of the node port"),
    key("Orchestrator.TLS.ServerKey", Str, "", Y, "TLS private key of the node port"),
    key("Orchestrator.TLS.ServerTimeout", Int, "0", N, "TLS handshake timeout in seconds"),
    key("Publishers.Disabled", List, "", Y, "Publisher types this node does not offer"),
    key("Publishers.Types.IPFS.Endpoint", Str, "", Y, "An external kubo's RPC multiaddr for the ipfs publisher"),
    key("Publishers.Types.Local.Address", Str, "", Y, "The host in local publisher URLs (default: advertised)"),
    key("Publishers.Types.Local.Port", Int, "0", N, "Local results are served on the API port here"),
    key("Publishers.Types.S3.PreSignedURLDisabled", Bool, "false", Y, "The orchestrator signs no URLs for s3 results"),
    key("Publishers.Types.S3.PreSignedURLExpiration", Duration, "0s", Y, "Lifetime of signed s3 result URLs (0s: 15m)"),
    key("Publishers.Types.S3Managed.Bucket", Str, "", Y, "The orchestrator's bucket for s3managed results"),
    key("Publishers.Types.S3Managed.Endpoint", Str, "", Y, "Its S3 endpoint (empty: AWS)"),
    key(
        "Publishers.Types.S3Managed.Key",
        Str,
        "",
        Y,
        "Key prefix of s3managed results (<Key>/<job>/<execution>.tar.gz)",
    ),
    key("Publishers.Types.S3Managed.PreSignedURLExpiration", Duration, "1h", Y, "Lifetime of its signed URLs"),
    key("Publishers.Types.S3Managed.Region", Str, "", Y, "Its region (required with Bucket)"),
    key("ResultDownloaders.Disabled", List, "", N, "Result downloaders turned off"),
    key("ResultDownloaders.Timeout", Duration, "0s", N, "Result download timeout"),
    key("ResultDownloaders.Types.IPFS.Endpoint", Str, "", N, "kubo endpoint for result downloads"),
    key("StrictVersionMatch", Bool, "false", N, "Refuse clients of another version"),
    key("UpdateConfig.Interval", Duration, "0s", N, "Update checks (none in this version)"),
    key("WebUI.Backend", Str, "", N, "The API the web UI talks to"),
    key(
        "WebUI.Enabled",
        Bool,
        "true",
        Y,
        "Serve the web UI at / on the API's address (unset: on when the API listens on loopback only)",
    ),
    key(
        "WebUI.Listen",
        Str,
        "127.0.0.1:8438",
        Y,
        "Another address where the web UI (and the API it uses) listens; unset: the API's address only",
    ),
];

/// The key with this path, compared without regard to case.
pub fn find(path: &str) -> Option<&'static Key> {
    KEYS.iter().find(|k| k.path.eq_ignore_ascii_case(path))
}

/// Whether `prefix` is a section holding keys (`API`, `JobDefaults.Batch`).
pub fn is_section(prefix: &str) -> bool {
    let p = format!("{}.", prefix.to_ascii_lowercase());
    KEYS.iter().any(|k| k.path.to_ascii_lowercase().starts_with(&p))
}

/// The canonical spelling of a section.
pub fn section_name(prefix: &str) -> String {
    let n = prefix.split('.').count();
    let p = format!("{}.", prefix.to_ascii_lowercase());
    KEYS.iter()
        .find(|k| k.path.to_ascii_lowercase().starts_with(&p))
        .map_or_else(|| prefix.to_owned(), |k| k.path.split('.').take(n).collect::<Vec<_>>().join("."))
}

/// The key whose path is closest to `path`, for "did you mean" hints.
pub fn nearest(path: &str) -> &'static str {
    let want = path.to_ascii_lowercase();
    // Compare with the same number of path segments, so `API.Auth.Userz` finds `API.Auth.Users`
    // and a misspelt section finds the section's nearest key.
    let depth = want.split('.').count();
    KEYS.iter()
        .map(|k| {
            let cut: Vec<&str> = k.path.split('.').take(depth).collect();
            (strsim::levenshtein(&want, &cut.join(".").to_ascii_lowercase()), k.path)
        })
        .min_by_key(|(d, p)| (*d, p.len()))
        .map_or("API.Host", |(_, p)| p)
}

/// The environment variable Bacalhau reads a key from: `BACALHAU_` and the path in upper case
/// with dots as underscores (`API.Port` → `BACALHAU_API_PORT`).
pub fn env_name(path: &str) -> String {
    format!("BACALHAU_{}", path.to_ascii_uppercase().replace('.', "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_unique_and_their_defaults_parse() {
        for pair in KEYS.windows(2) {
            assert!(pair[0].path.to_ascii_lowercase() < pair[1].path.to_ascii_lowercase(), "{}", pair[1].path);
        }
        for k in KEYS {
            crate::config::Setting::parse(k, k.default).unwrap_or_else(|e| panic!("{}: {e}", k.path));
        }
        assert_eq!(env_name("Compute.AllowListedLocalPaths"), "BACALHAU_COMPUTE_ALLOWLISTEDLOCALPATHS");
        assert_eq!(nearest("API.Auth.Userz"), "API.Auth.Users");
        assert_eq!(nearest("Compute.AllowListedLocalPath"), "Compute.AllowListedLocalPaths");
        assert_eq!(section_name("jobdefaults.batch"), "JobDefaults.Batch");
    }
}
