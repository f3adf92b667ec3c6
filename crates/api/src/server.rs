//! The REST server.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bacalhau_compute::{ComputeHandle, LogLine};
use bacalhau_model::{
    BuildVersionInfo, ComputeStateType, ExecutionId, HistoryType, JobId, JobStateType, JobType,
    LabelSelectorRequirement, NodeConnectionState, NodeInfo, parse_job_value,
};
use bacalhau_orchestrator::{ListJobsQuery, OrchestratorError, OrchestratorHandle};
use serde_json::Value;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::types::{
    AliveResponse, DiffJobResponse, ErrorBody, GetJobResponse, GetNodeResponse, ListNodesResponse, LogFrame, LogValue,
    NodeActionRequest, NodeActionResponse, Page, PutJobResponse, RerunJobResponse, StopJobResponse,
};

/// Largest request body accepted (Bacalhau's limit): a spec with an inline module fits.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;
/// Default page size of lists.
const DEFAULT_LIMIT: usize = 100;

/// What the handlers need.
#[derive(Clone, Debug)]
pub struct ApiState {
    /// The orchestrator; `None` on a compute-only node, which serves the agent, IPFS and
    /// result routes but no jobs.
    pub orchestrator: Option<OrchestratorHandle>,
    /// The compute node in this process, if any (logs and local results are served from it).
    pub compute: Option<ComputeHandle>,
    /// This build.
    pub version: BuildVersionInfo,
    /// What `agent/node` reports when there is no compute node.
    pub node_info: NodeInfo,
    /// Where the local publisher keeps result archives.
    pub local_results_dir: Option<PathBuf>,
    /// The node's IPFS block store, served at `/ipfs/{cid}`.
    pub ipfs: Option<Arc<bacalhau_ipfs::BlockStore>>,
    /// The node's IPFS peer: the gateway fetches what the store lacks through it.
    pub ipfs_peer: Option<IpfsPeer>,
    /// Who may do what; open when no users are configured.
    pub auth: Arc<crate::auth::Authorizer>,
    /// The names the node answers to (`Host` checks).
    pub names: Arc<crate::guard::Names>,
    /// What the orchestrator presents when it relays a remote node's logs (the cluster token).
    pub relay_token: Option<String>,
    /// Signs `s3` results so clients download them without credentials (`s3PreSigned`).
    pub result_signer: Option<Arc<dyn bacalhau_storage::ResultSigner>>,
    /// Applied to the client that relays from a compute node's API: the binary puts the address
    /// guard here (its resolver refuses metadata addresses; no environment proxy).
    pub relay_guard: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    /// Whether `/` serves the web UI (`WebUI.Enabled`).
    pub web_ui: bool,
}

impl std::fmt::Debug for IpfsPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpfsPeer").field("id", &self.id).field("addrs", &self.addrs).finish_non_exhaustive()
    }
}

/// The URL of `path` on a compute node's API at `api`, the address the node advertised: only
/// a bare http(s) origin is taken (a path, query, fragment or user part could turn the relay
/// into a fetch of anything), and never a metadata address.
fn relay_url(api: &str, path: &str) -> ApiResult<reqwest::Url> {
    let refuse = |why: String| {
        ApiError::not_found(
            format!("the node's advertised API address {api:?} {why}"),
            "the node's operator fixes its --advertise",
        )
    };
    let base = reqwest::Url::parse(api).map_err(|e| refuse(format!("is not a URL: {e}")))?;
    if !matches!(base.scheme(), "http" | "https")
        || !matches!(base.path(), "" | "/")
        || base.query().is_some()
        || base.fragment().is_some()
        || !base.username().is_empty()
        || base.password().is_some()
    {
        return Err(refuse("is not a bare http(s)://HOST:PORT".into()));
    }
    let host = base.host_str().unwrap_or_default();
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<std::net::IpAddr>()
        && let Some(why) = bacalhau_model::refused_address(ip)
    {
        return Err(refuse(format!("names {ip}, {why}")));
    }
    base.join(path).map_err(|e| refuse(format!("cannot take the path {path}: {e}")))
}

/// What the API knows of the node's IPFS peer.
#[derive(Clone)]
pub struct IpfsPeer {
    /// Its peer ID.
    pub id: String,
    /// Its listen multiaddrs, each ending in `/p2p/<ID>`.
    pub addrs: Vec<String>,
    /// Brings missing DAGs in from other peers.
    pub fetcher: Arc<dyn bacalhau_ipfs::Fetcher>,
    /// How many peers are connected now (for `/metrics`).
    pub peers: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// An error with a status, a message and a hint, answered as Bacalhau's JSON error body.
#[derive(Debug)]
pub struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    pub(crate) hint: String,
}

impl ApiError {
    pub(crate) fn bad_request(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, code: "BadRequest", message: message.into(), hint: hint.into() }
    }

    pub(crate) fn not_found(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { status: StatusCode::NOT_FOUND, code: "NotFound", message: message.into(), hint: hint.into() }
    }

    pub(crate) fn unavailable(message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            code: "ServiceUnavailable",
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl From<OrchestratorError> for ApiError {
    fn from(e: OrchestratorError) -> Self {
        let message = e.to_string();
        let (status, code, hint) = match &e {
            OrchestratorError::Invalid(_) => {
                (StatusCode::BAD_REQUEST, "ValidationError", "fix the fields named above and submit again")
            }
            OrchestratorError::Unsupported(_) => (StatusCode::BAD_REQUEST, "BadRequest", ""),
            OrchestratorError::NotFound { .. } => {
                (StatusCode::NOT_FOUND, "NotFound", "list jobs with `bacalhau job list` to find the ID")
            }
            OrchestratorError::Ambiguous { .. } => {
                (StatusCode::BAD_REQUEST, "BadRequest", "use a longer prefix of the ID")
            }
            OrchestratorError::Conflict(_) => (StatusCode::CONFLICT, "ResourceInUse", ""),
            OrchestratorError::Unchanged { .. } => {
                (StatusCode::CONFLICT, "ResourceInUse", "Use the --force flag to override this warning")
            }
            OrchestratorError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "retry shortly"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "check the server's log"),
        };
        Self { status, code, message, hint: hint.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            status: self.status.as_u16(),
            message: self.message,
            code: self.code.into(),
            component: "Bacalhau".into(),
            hint: self.hint,
            ..Default::default()
        };
        (self.status, Json(body)).into_response()
    }
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// The orchestrator, or the error a compute-only node answers job routes with.
fn orch(s: &ApiState) -> ApiResult<&OrchestratorHandle> {
    s.orchestrator.as_ref().ok_or_else(|| {
        ApiError::not_found(
            "this is a compute-only node: it takes no jobs",
            "point --api-host/--api-port at its orchestrator (the node was started with --orchestrators HOST:PORT)",
        )
    })
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    // Installed before anything records, so the first round's metrics are kept.
    crate::metrics::handle();
    let auth = state.auth.clone();
    let names = state.names.clone();
    let ui = if state.web_ui {
        Router::new().route("/", get(crate::ui::index)).route("/ui/{file}", get(crate::ui::asset))
    } else {
        Router::new().route("/", get(crate::ui::disabled)).route("/ui/{file}", get(crate::ui::disabled))
    };
    ui.route("/api/v1/auth", get(crate::auth::list_methods))
        .route("/api/v1/auth/{method}", get(crate::auth::method).post(crate::auth::method))
        .route("/api/v1/agent/authconfig", get(crate::auth::authconfig))
        .route("/api/v1/agent/alive", get(alive))
        .route("/api/v1/agent/ready", get(ready))
        .route("/api/v1/agent/version", get(version))
        .route("/api/v1/agent/node", get(agent_node))
        .route("/api/v1/livez", get(livez))
        .route("/api/v1/orchestrator/jobs", get(list_jobs).put(put_job).post(put_job))
        .route("/api/v1/orchestrator/jobs/diff", axum::routing::put(diff_job))
        .route("/api/v1/orchestrator/jobs/{id}", get(get_job).delete(stop_job))
        .route("/api/v1/orchestrator/jobs/{id}/rerun", axum::routing::put(rerun_job))
        .route("/api/v1/orchestrator/jobs/{id}/versions", get(job_versions))
        .route("/api/v1/orchestrator/jobs/{id}/history", get(job_history))
        .route("/api/v1/orchestrator/jobs/{id}/executions", get(job_executions))
        .route("/api/v1/orchestrator/jobs/{id}/results", get(job_results))
        .route("/api/v1/orchestrator/jobs/{id}/logs", get(job_logs))
        .route("/api/v1/compute/executions/{id}/logs", get(execution_logs))
        .route("/api/v1/orchestrator/nodes", get(list_nodes).put(node_action))
        .route("/api/v1/orchestrator/nodes/{id}", get(get_node).put(node_action_by_path))
        .route("/api/v1/local-results/{file}", get(local_result))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(crate::metrics::scrape))
        .route("/ipfs/{cid}", get(crate::ipfs::gateway))
        .route("/ipfs/{cid}/{*path}", get(crate::ipfs::gateway_path))
        .route(
            "/api/v1/ipfs/car",
            axum::routing::post(crate::ipfs::import_car).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/v1/ipfs/pins", get(crate::ipfs::list_pins))
        .route("/api/v1/ipfs/pins/{cid}", axum::routing::post(crate::ipfs::pin).delete(crate::ipfs::unpin))
        .route("/api/v1/ipfs/gc", axum::routing::post(crate::ipfs::gc))
        .route("/api/v1/ipfs/id", get(crate::ipfs::id))
        // The part of kubo's RPC API that `--ipfs-connect` uses, so a node can stand in for kubo.
        .route("/api/v0/id", axum::routing::post(crate::ipfs::kubo_id))
        .route("/api/v0/dag/export", axum::routing::post(crate::ipfs::kubo_dag_export))
        .route(
            "/api/v0/dag/import",
            axum::routing::post(crate::ipfs::kubo_dag_import).layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .fallback(fallback)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(Arc::new(state))
        // Outermost last: errors become JSON, then browsers are checked, then credentials.
        .layer(axum::middleware::from_fn_with_state(auth, crate::auth::authorize))
        .layer(axum::middleware::from_fn_with_state(names, crate::guard::browser_guard))
        .layer(axum::middleware::from_fn(crate::guard::json_errors))
        // Outside everything, so refusals (401, 403, 413) are counted too.
        .layer(axum::middleware::from_fn(crate::metrics::track))
}

pub(crate) type St = State<Arc<ApiState>>;
pub(crate) type Params = Query<HashMap<String, String>>;

async fn fallback(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no API route {uri}"), "see /api/v1/openapi.json for the routes this server has")
}

async fn openapi() -> Json<Value> {
    Json(crate::openapi::document())
}

async fn alive() -> Json<AliveResponse> {
    Json(AliveResponse { status: "OK".into() })
}

/// Readiness, for load balancers and operators: each part of the node that its work needs,
/// with what is wrong; 503 until all are ready. Every check is bounded in time, so a stuck part
/// shows as not ready instead of hanging the probe.
async fn ready(State(s): St) -> Response {
    const WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
    let mut checks = Vec::new();
    let mut check = |name: &str, result: Result<String, String>| {
        let (ok, message) = match result {
            Ok(m) => (true, m),
            Err(m) => (false, m),
        };
        checks.push(crate::types::ReadyCheck { name: name.into(), ok, message });
    };
    if let Some(o) = &s.orchestrator {
        let probe = bacalhau_model::ExecutionId::from("readiness-probe");
        check(
            "job store",
            match tokio::time::timeout(WITHIN, o.execution(&probe)).await {
                Ok(Ok(_)) => Ok("readable".into()),
                Ok(Err(e)) => Err(format!("the job store cannot be read: {e}")),
                Err(_) => Err("the job store did not answer within 2 s".into()),
            },
        );
        check(
            "scheduler",
            match tokio::time::timeout(WITHIN, o.nodes()).await {
                Ok(Ok(nodes)) => {
                    let connected =
                        nodes.iter().filter(|n| n.connection == bacalhau_model::NodeConnectionState::Connected).count();
                    Ok(format!("running; {connected} of {} compute nodes connected", nodes.len()))
                }
                Ok(Err(e)) => Err(format!("the orchestrator's runtime is not running: {e}")),
                Err(_) => Err("the orchestrator's runtime did not answer within 2 s (overloaded or stuck)".into()),
            },
        );
    }
    if let Some(c) = &s.compute {
        let engines = c.node_info().compute_node_info.map(|i| i.execution_engines).unwrap_or_default();
        check(
            "engines",
            if engines.is_empty() {
                Err("no execution engine is available: Docker is not reachable and WASM is disabled \
                     (see Engines.Disabled)"
                    .into())
            } else {
                Ok(engines.join(", "))
            },
        );
        check(
            "orchestrator link",
            if c.registered() {
                Ok("registered".into())
            } else {
                Err("not registered with an orchestrator: it is unreachable, refused this node (token, \
                     version, rejection), or the link is being re-established; see the node's log"
                    .into())
            },
        );
    }
    if let Some(p) = &s.ipfs_peer {
        check(
            "ipfs peer",
            if p.addrs.is_empty() {
                Err("the IPFS peer listens on no address (see --ipfs-listen)".into())
            } else {
                Ok(format!("{} on {} addresses", p.id, p.addrs.len()))
            },
        );
    }
    let ready = checks.iter().all(|c| c.ok);
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, Json(crate::types::ReadyResponse { ready, checks })).into_response()
}

async fn livez() -> &'static str {
    "OK"
}

async fn version(State(s): St) -> Json<BuildVersionInfo> {
    Json(s.version.clone())
}

async fn agent_node(State(s): St) -> Json<NodeInfo> {
    Json(s.compute.as_ref().map_or_else(|| s.node_info.clone(), |c| c.node_info()))
}

/// Parses a boolean the way Go's `strconv.ParseBool` does (Python sends `True`/`False`).
fn flag(params: &HashMap<String, String>, key: &str) -> ApiResult<bool> {
    match params.get(key).map(|v| v.trim()) {
        None | Some("") => Ok(false),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(true),
            "0" | "f" | "false" => Ok(false),
            _ => {
                Err(ApiError::bad_request(format!("query parameter {key}={v:?} is not a boolean"), "use true or false"))
            }
        },
    }
}

fn limit(params: &HashMap<String, String>) -> ApiResult<usize> {
    match params.get("limit").map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => v
            .parse::<usize>()
            .map(|n| if n == 0 { DEFAULT_LIMIT } else { n })
            .map_err(|_| ApiError::bad_request(format!("limit={v:?} is not a number"), "use a positive whole number")),
    }
}

async fn put_job(
    State(s): St,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<PutJobResponse>> {
    let key = match headers.get("idempotency-key").map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.trim().is_empty() && k.len() <= 256 => Some(k.trim().to_owned()),
        Some(_) => {
            return Err(ApiError::bad_request(
                "the Idempotency-Key header must be 1 to 256 printable characters",
                "send a fresh UUID per submission, and the same one when retrying it",
            ));
        }
    };
    let mut map = body_object(&body, "send {\"Job\": {...}}")?;
    let force = match take_key(&mut map, "force") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("Force must be true or false, not {other}"),
                "send \"Force\": true",
            ));
        }
    };
    let parsed = request_job(map)?;
    // The job's trace starts here, or continues the client's (`traceparent`, W3C).
    let span = tracing::info_span!("submit_job", job_id = tracing::field::Empty);
    if let Some(tp) = headers.get("traceparent").and_then(|v| v.to_str().ok()) {
        bacalhau_protocol::trace::adopt(&span, tp);
    }
    let result = orch(&s)?.submit_once(parsed.job, key, force).instrument(span.clone()).await?;
    span.record("job_id", result.job_id.as_str());
    let mut warnings: Vec<String> =
        parsed.unknown_keys.iter().map(|k| format!("unknown field {k} was ignored")).collect();
    warnings.extend(result.warnings);
    Ok(Json(PutJobResponse { job_id: result.job_id.0, evaluation_id: result.evaluation_id.0, warnings }))
}

/// A request body that must be a JSON object.
fn body_object(body: &[u8], usage: &str) -> ApiResult<serde_json::Map<String, Value>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}"), usage))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_request("the request body must be a JSON object", usage)),
    }
}

/// Removes a key matched case-insensitively, as Go's JSON decoder matches field names.
fn take_key(map: &mut serde_json::Map<String, Value>, key: &str) -> Option<Value> {
    let k = map.keys().find(|k| k.eq_ignore_ascii_case(key))?.clone();
    map.remove(&k)
}

/// The `Job` of a submission or diff request, parsed as a spec.
fn request_job(mut map: serde_json::Map<String, Value>) -> ApiResult<bacalhau_model::ParsedJob> {
    let job_value = take_key(&mut map, "job")
        .ok_or_else(|| ApiError::bad_request("the request has no Job", "send {\"Job\": {...}}"))?;
    parse_job_value(job_value).map_err(|e| ApiError::bad_request(e.to_string(), "fix the job spec"))
}

/// `PUT /jobs/diff`: how a spec differs from the job with its Name (Bacalhau 1.8).
async fn diff_job(State(s): St, body: axum::body::Bytes) -> ApiResult<Json<DiffJobResponse>> {
    let parsed = request_job(body_object(&body, "send {\"Job\": {...}}")?)?;
    if parsed.job.name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "invalid job spec: name is missing",
            "a diff compares a spec with the job of the same Name: give the spec a Name",
        ));
    }
    let (diff, mut warnings) = orch(&s)?.diff(parsed.job).await?;
    warnings.splice(0..0, parsed.unknown_keys.iter().map(|k| format!("unknown field {k} was ignored")));
    Ok(Json(DiffJobResponse { diff, warnings }))
}

/// `PUT /jobs/{id}/rerun`: the job again, as a new version.
async fn rerun_job(State(s): St, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<Json<RerunJobResponse>> {
    let usage = "send {\"JobVersion\": 0, \"Reason\": \"...\"} (JobVersion 0 is the latest)";
    let mut map =
        if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { body_object(&body, usage)? };
    let version = match take_key(&mut map, "jobversion") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!("JobVersion must be a whole number from 0, not {v}"), usage)
        })?,
    };
    let reason = match take_key(&mut map, "reason") {
        Some(Value::String(r)) => r,
        _ => String::new(),
    };
    let r = orch(&s)?.rerun(&id, version, &reason).await?;
    Ok(Json(RerunJobResponse {
        evaluation_id: r.evaluation_id.0,
        job_id: r.job_id.0,
        job_version: r.job_version,
        warnings: Vec::new(),
    }))
}

/// `GET /jobs/{id}/versions`: every kept version, oldest first.
async fn job_versions(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Page<bacalhau_model::Job>>> {
    let job_id = orch(&s)?.resolve_job_id(&id).await?;
    Ok(Json(Page { items: orch(&s)?.versions(&job_id).await?, next_token: String::new() }))
}

/// Which job version a listing covers: `job_version=N`, every one with
/// `all_job_versions=true`, else the current one (`None`: all).
fn version_filter(params: &HashMap<String, String>, current: u64) -> ApiResult<Option<u64>> {
    if flag(params, "all_job_versions")? {
        return Ok(None);
    }
    match params.get("job_version").map(|v| v.trim()).filter(|v| !v.is_empty() && *v != "0") {
        None => Ok(Some(current.max(1))),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            ApiError::bad_request(
                format!("job_version={v:?} is not a version number"),
                "use a version from `job versions`",
            )
        }),
    }
}

/// Whether an item of `item_version` (0: stored before versions, so 1) is in the listing.
fn of_version(item_version: u64, wanted: Option<u64>) -> bool {
    wanted.is_none_or(|v| item_version.max(1) == v)
}

async fn list_jobs(State(s): St, Query(p): Params) -> ApiResult<Json<Page<bacalhau_model::Job>>> {
    let order_by = p.get("order_by").map(|v| v.trim()).unwrap_or("");
    if !matches!(order_by, "" | "created_at" | "create_time") {
        return Err(ApiError::bad_request(format!("order_by={order_by:?} is not supported"), "use created_at"));
    }
    let query = ListJobsQuery {
        namespace: p.get("namespace").cloned(),
        labels: LabelSelectorRequirement::parse_selector(p.get("labels").map_or("", |s| s.as_str()))
            .map_err(|e| ApiError::bad_request(e, "use a selector such as env=prod,tier!=web"))?,
        limit: limit(&p)?,
        next_token: p.get("next_token").cloned(),
        reverse: flag(&p, "reverse")?,
        state: match p.get("state").map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(
                ["Pending", "Queued", "Running", "Completed", "Failed", "Stopped"]
                    .iter()
                    .zip([
                        JobStateType::Pending,
                        JobStateType::Queued,
                        JobStateType::Running,
                        JobStateType::Completed,
                        JobStateType::Failed,
                        JobStateType::Stopped,
                    ])
                    .find(|(name, _)| name.eq_ignore_ascii_case(v))
                    .map(|(_, s)| s)
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            format!("state={v:?} is not a job state"),
                            "use Pending, Queued, Running, Completed, Failed or Stopped",
                        )
                    })?,
            ),
        },
        job_type: match p.get("type").map(|v| v.trim()).filter(|v| !v.is_empty()) {
            None => None,
            Some(v) => Some(JobType::parse(v).ok_or_else(|| {
                ApiError::bad_request(format!("type={v:?} is not a job type"), "use batch, ops, daemon or service")
            })?),
        },
        engine: p.get("engine").map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()),
    };
    let r = orch(&s)?.list_jobs(query).await?;
    Ok(Json(Page { items: r.items, next_token: r.next_token }))
}

async fn get_job(State(s): St, Path(id): Path<String>, Query(p): Params) -> ApiResult<Json<GetJobResponse>> {
    let mut job = orch(&s)?.get_job(&id).await?;
    let version = version_filter(&p, job.version)?;
    if let Some(v) = version
        && v != job.version.max(1)
    {
        job = orch(&s)?.job_version(&job.id, v).await?;
    }
    let include = p.get("include").map(|v| v.to_ascii_lowercase()).unwrap_or_default();
    let history = if include.contains("history") {
        let items = orch(&s)?.history(&job.id).await?;
        Some(Page {
            items: items.into_iter().filter(|h| of_version(h.job_version, version)).collect(),
            next_token: String::new(),
        })
    } else {
        None
    };
    let executions = if include.contains("executions") {
        let items = orch(&s)?.executions(&job.id).await?;
        Some(Page {
            items: items.into_iter().filter(|e| of_version(e.job_version, version)).collect(),
            next_token: String::new(),
        })
    } else {
        None
    };
    Ok(Json(GetJobResponse { job, history, executions }))
}

async fn stop_job(
    State(s): St,
    Path(id): Path<String>,
    Query(p): Params,
    body: axum::body::Bytes,
) -> ApiResult<Json<StopJobResponse>> {
    let from_body = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        v.as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("reason"))
            .and_then(|(_, v)| v.as_str().map(str::to_owned))
    });
    // The 1.4 Python SDK sends the literal "None" when no reason is given.
    let reason = from_body.or_else(|| p.get("reason").cloned()).filter(|r| r != "None").unwrap_or_default();
    let r = orch(&s)?.stop(&id, &reason).await?;
    Ok(Json(StopJobResponse { evaluation_id: r.evaluation_id }))
}

async fn job_history(
    State(s): St,
    Path(id): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<Page<bacalhau_model::JobHistory>>> {
    let job = orch(&s)?.get_job(&id).await?;
    let job_id = job.id.clone();
    let version = version_filter(&p, job.version)?;
    let event_type = p.get("event_type").map(|v| v.to_ascii_lowercase()).unwrap_or_default();
    let wanted: Option<HistoryType> = match event_type.as_str() {
        "" | "all" => None,
        "job" => Some(HistoryType::JobLevel),
        "execution" => Some(HistoryType::ExecutionLevel),
        other => {
            return Err(ApiError::bad_request(
                format!("event_type={other:?} is not valid"),
                "use all, job or execution",
            ));
        }
    };
    let exec = p.get("execution_id").filter(|v| !v.is_empty()).cloned();
    let node = p.get("node_id").filter(|v| !v.is_empty()).cloned();
    // `next_token` is the last sequence number returned, so a poller sees each entry once.
    let after: u64 = p.get("next_token").and_then(|t| t.parse().ok()).unwrap_or(0);
    let lim = limit(&p)?;
    let mut items: Vec<_> = orch(&s)?
        .history(&job_id)
        .await?
        .into_iter()
        .filter(|h| h.seq_num > after)
        .filter(|h| of_version(h.job_version, version))
        .filter(|h| wanted.is_none_or(|w| h.r#type == w))
        .filter(|h| exec.as_ref().is_none_or(|e| h.execution_id.as_str().starts_with(e.as_str())))
        .filter(|h| node.as_ref().is_none_or(|n| h.node_id.as_str().starts_with(n.as_str())))
        .collect();
    let more = items.len() > lim;
    items.truncate(lim);
    let next_token = if more { items.last().map(|h| h.seq_num.to_string()).unwrap_or_default() } else { String::new() };
    Ok(Json(Page { items, next_token }))
}

async fn job_executions(
    State(s): St,
    Path(id): Path<String>,
    Query(p): Params,
) -> ApiResult<Json<Page<bacalhau_model::Execution>>> {
    let job = orch(&s)?.get_job(&id).await?;
    let version = version_filter(&p, job.version)?;
    let mut items = orch(&s)?.executions(&job.id).await?;
    items.retain(|e| of_version(e.job_version, version));
    if flag(&p, "reverse")? {
        items.reverse();
    }
    items.truncate(limit(&p)?);
    Ok(Json(Page { items, next_token: String::new() }))
}

async fn job_results(State(s): St, Path(id): Path<String>) -> ApiResult<Json<Page<bacalhau_model::SpecConfig>>> {
    let job_id = orch(&s)?.resolve_job_id(&id).await?;
    let job = orch(&s)?.get_job(job_id.as_str()).await?;
    let mut executions = orch(&s)?
        .executions(&job_id)
        .await?
        .into_iter()
        .filter(|e| e.compute_state.state_type == ComputeStateType::Completed)
        // A verified job's result is the quorum's: dissenting and unverified copies are not.
        .filter(|e| e.verification.as_deref().is_none_or(|v| v.starts_with("agreed")))
        .filter(|e| e.published_result.is_some())
        .collect::<Vec<_>>();
    // The quorum's copies are one result.
    if job.verification.is_some() {
        executions.truncate(1);
    }
    let publisher = job.task().map(|t| t.publisher.clone()).unwrap_or_default();
    let mut items = Vec::with_capacity(executions.len());
    for e in executions {
        let Some(mut item) = e.published_result else { continue };
        // An archived s3 result is handed out signed, as Bacalhau's orchestrator does: the
        // client downloads it with no credentials of its own. One that cannot be signed (or is
        // not provably this execution's) is shown as stored.
        if let Some(signer) = &s.result_signer {
            let request = bacalhau_storage::SignRequest {
                result: &item,
                publisher: &publisher,
                job_id: job_id.as_str(),
                execution_id: e.id.as_str(),
                node_id: e.node_id.as_str(),
                not_before_secs: u64::try_from(e.create_time / 1_000_000_000).unwrap_or(0),
            };
            match signer.sign(request).await {
                Ok(Some(signed)) => item = signed,
                Ok(None) => {}
                Err(err) => tracing::warn!("cannot sign the s3 result of execution {}: {err}", e.id),
            }
        }
        items.push(item);
    }
    Ok(Json(Page { items, next_token: String::new() }))
}

async fn job_logs(
    State(s): St,
    Path(id): Path<String>,
    Query(p): Params,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let job = orch(&s)?.get_job(&id).await?;
    let job_id = job.id.clone();
    let mut executions = orch(&s)?.executions(&job_id).await?;
    // Without an execution ID, the logs are those of the version asked for (the current one).
    let version = version_filter(&p, job.version)?;
    if p.get("execution_id").is_none_or(|v| v.is_empty()) {
        executions.retain(|e| of_version(e.job_version, version));
    }
    let execution = match p.get("execution_id").filter(|v| !v.is_empty()) {
        Some(want) => executions.iter().find(|e| e.id.as_str().starts_with(want.as_str())).ok_or_else(|| {
            ApiError::not_found(
                format!("job {job_id} has no execution {want}"),
                format!("list them with `bacalhau job executions {job_id}`"),
            )
        })?,
        None => executions
            .iter()
            .rev()
            .find(|e| !e.compute_state.state_type.is_discarded())
            .or_else(|| executions.last())
            .ok_or_else(|| {
                ApiError::not_found(
                    format!("job {job_id} has no executions yet, so there are no logs"),
                    "wait until the job is scheduled, or check `bacalhau job describe`",
                )
            })?,
    };
    let follow = flag(&p, "follow")?;
    let Some(compute) = s.compute.as_ref().filter(|c| c.has_logs(&execution.id)).cloned() else {
        let ended = execution.compute_state.state_type.is_terminal();
        if execution.run_output.is_none() && !ended {
            // Still running on another node: ask that node's API for what it has written.
            // Only to a node that is connected now: the URL is what the node itself advertised,
            // so a node gone (or one that lied) must not make the orchestrator dial anywhere.
            let nodes = orch(&s)?.nodes().await?;
            let api = nodes
                .iter()
                .find(|n| n.info.node_id == execution.node_id && n.connection == NodeConnectionState::Connected)
                .map(|n| n.info.api_url.clone());
            if let Some(api) = api.filter(|a| a.starts_with("http://") || a.starts_with("https://")) {
                return remote_logs(&api, &execution.id, follow, ws.ok(), s.relay_token.as_deref(), s.relay_guard)
                    .await;
            }
        }
        // Another node ran it: what it reported when it finished is all this server has (an
        // execution that ended without output, failed before it ran, has none).
        let out = execution.run_output.clone().or_else(|| ended.then(Default::default)).ok_or_else(|| {
            ApiError::not_found(
                format!(
                    "execution {} runs on node {}; its output reaches this orchestrator when it finishes",
                    execution.id, execution.node_id
                ),
                "wait for the job to finish, or ask that node's API",
            )
        })?;
        let lines: Vec<LogValue> = [(1u8, out.stdout), (2u8, out.stderr)]
            .into_iter()
            .flat_map(|(kind, text)| {
                text.split_inclusive('\n').map(|l| LogValue { kind, line: l.to_owned() }).collect::<Vec<_>>()
            })
            .collect();
        return Ok(match ws.ok() {
            Some(upgrade) => upgrade.on_upgrade(move |mut socket| async move {
                for value in lines {
                    let frame = LogFrame { value: Some(value), error: String::new() };
                    let Ok(text) = serde_json::to_string(&frame) else { continue };
                    if !ws_send(&mut socket, Message::Text(text.into())).await {
                        return;
                    }
                }
                let _ = ws_send(&mut socket, Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
            }),
            None => {
                let text: String = lines.into_iter().map(|l| l.line).collect();
                ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
            }
        });
    };
    let exec_id: ExecutionId = execution.id.clone();
    match ws.ok() {
        Some(upgrade) => Ok(upgrade.on_upgrade(move |socket| stream_ws(socket, compute, exec_id, follow))),
        None => {
            // Streamed: a job's output can be gigabytes, and none of it is held here. With
            // `follow`, the body stays open until the execution ends (the web UI reads it so,
            // as a browser's WebSocket cannot carry credentials in a header).
            let rx = compute.logs(&exec_id, follow);
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|l| (Ok::<_, std::io::Error>(l.line), rx))
            });
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream))
                .into_response())
        }
    }
}

/// How long one websocket frame may take to reach a client before the client is dropped.
const WS_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The relay gives up on a remote node that does not answer within this...
const RELAY_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// ...or, for plain reads, that has not sent everything within this.
const RELAY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// A followed log may be quiet for a long time, but not for ever.
const RELAY_FOLLOW_IDLE: std::time::Duration = std::time::Duration::from_secs(3600);

async fn ws_send(socket: &mut WebSocket, msg: Message) -> bool {
    matches!(tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(msg)).await, Ok(Ok(())))
}

/// `GET /api/v1/compute/executions/{id}/logs[?follow=true]` on a node that runs the execution:
/// one JSON log frame per line, streamed (what the orchestrator relays for remote executions).
async fn execution_logs(State(s): St, Path(id): Path<String>, Query(p): Params) -> ApiResult<Response> {
    let exec_id = ExecutionId::from(id.as_str());
    let compute = s.compute.as_ref().filter(|c| c.has_logs(&exec_id)).cloned().ok_or_else(|| {
        ApiError::not_found(format!("this node has no execution {id}"), "ask the node the execution ran on")
    })?;
    let mut rx = compute.logs(&exec_id, flag(&p, "follow")?);
    let (tx, body) = mpsc::channel::<Result<String, std::io::Error>>(64);
    tokio::spawn(async move {
        while let Some(l) = rx.recv().await {
            let frame = LogFrame { value: Some(LogValue { kind: l.kind as u8, line: l.line }), error: String::new() };
            let Ok(mut text) = serde_json::to_string(&frame) else { continue };
            text.push('\n');
            if tx.send(Ok(text)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(body, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], axum::body::Body::from_stream(stream)).into_response())
}

/// Relays a remote node's log stream to this API's caller, as text or websocket frames.
async fn remote_logs(
    api: &str,
    id: &ExecutionId,
    follow: bool,
    ws: Option<WebSocketUpgrade>,
    token: Option<&str>,
    guard: fn(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
) -> ApiResult<Response> {
    let url = relay_url(api, &format!("/api/v1/compute/executions/{id}/logs?follow={follow}"))?;
    crate::tls::install_provider();
    let http = (guard)(crate::tls::http_client_builder())
        .connect_timeout(RELAY_CONNECT_TIMEOUT)
        .read_timeout(if follow { RELAY_FOLLOW_IDLE } else { RELAY_READ_TIMEOUT })
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::bad_request(format!("cannot build the relay client: {e}"), ""))?;
    let mut req = http.get(url.clone());
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.and_then(reqwest::Response::error_for_status).map_err(|e| {
        ApiError::not_found(
            format!("execution {id} runs on another node, whose API at {api} did not give its logs: {e}"),
            "wait for the job to finish: its output then reaches this orchestrator",
        )
    })?;
    let (tx, rx) = mpsc::channel::<LogFrame>(64);
    tokio::spawn(async move {
        use futures::StreamExt;
        let mut body = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            buf.extend_from_slice(&chunk);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if let Ok(frame) = serde_json::from_slice::<LogFrame>(&line)
                    && tx.send(frame).await.is_err()
                {
                    return;
                }
            }
            // A node that sends one endless line is cut off rather than buffered.
            if buf.len() > MAX_LOG_LINE_BYTES {
                return;
            }
        }
    });
    Ok(match ws {
        Some(upgrade) => upgrade.on_upgrade(move |mut socket| async move {
            let mut rx = rx;
            while let Some(frame) = rx.recv().await {
                let Ok(text) = serde_json::to_string(&frame) else { continue };
                if !ws_send(&mut socket, Message::Text(text.into())).await {
                    return;
                }
            }
            let _ = ws_send(&mut socket, Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
        }),
        None => {
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                loop {
                    match rx.recv().await {
                        Some(LogFrame { value: Some(v), .. }) => return Some((Ok::<_, std::io::Error>(v.line), rx)),
                        Some(_) => continue,
                        None => return None,
                    }
                }
            });
            ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], axum::body::Body::from_stream(stream))
                .into_response()
        }
    })
}

/// The longest log line a remote node may send in one frame.
const MAX_LOG_LINE_BYTES: usize = 4 << 20;

async fn stream_ws(mut socket: WebSocket, compute: ComputeHandle, id: ExecutionId, follow: bool) {
    let mut rx: mpsc::Receiver<LogLine> = compute.logs(&id, follow);
    while let Some(l) = rx.recv().await {
        let frame = LogFrame { value: Some(LogValue { kind: l.kind as u8, line: l.line }), error: String::new() };
        let Ok(text) = serde_json::to_string(&frame) else { continue };
        if !ws_send(&mut socket, Message::Text(text.into())).await {
            return;
        }
    }
    let _ = ws_send(&mut socket, Message::Close(Some(CloseFrame { code: 1000, reason: "".into() }))).await;
}

async fn list_nodes(State(s): St) -> ApiResult<Json<ListNodesResponse>> {
    let nodes = orch(&s)?.nodes().await?;
    Ok(Json(ListNodesResponse { nodes_lower: nodes.clone(), nodes, next_token: String::new() }))
}

async fn node_action(State(s): St, Json(req): Json<NodeActionRequest>) -> ApiResult<Json<NodeActionResponse>> {
    let action = match req.action.to_ascii_lowercase().as_str() {
        "approve" => bacalhau_orchestrator::NodeAction::Approve,
        "reject" => bacalhau_orchestrator::NodeAction::Reject,
        "delete" => bacalhau_orchestrator::NodeAction::Delete,
        other => {
            return Err(ApiError::bad_request(
                format!("node action {other:?} is not one this orchestrator knows"),
                "use approve, reject or delete",
            ));
        }
    };
    if req.node_id.trim().is_empty() {
        return Err(ApiError::bad_request("NodeID is empty", "name the node, e.g. from `bacalhau node list`"));
    }
    let r = orch(&s)?.node_action(req.node_id.trim(), action).await;
    Ok(Json(match r {
        Ok(_) => NodeActionResponse { success: true, error: String::new() },
        Err(e) => NodeActionResponse { success: false, error: e.to_string() },
    }))
}

async fn node_action_by_path(
    state: St,
    Path(id): Path<String>,
    Json(mut req): Json<NodeActionRequest>,
) -> ApiResult<Json<NodeActionResponse>> {
    req.node_id = id;
    node_action(state, Json(req)).await
}

async fn get_node(State(s): St, Path(id): Path<String>) -> ApiResult<Json<GetNodeResponse>> {
    let nodes = orch(&s)?.nodes().await?;
    let matches: Vec<_> = nodes.into_iter().filter(|n| n.info.node_id.as_str().starts_with(id.as_str())).collect();
    match matches.len() {
        0 => Err(ApiError::not_found(format!("node {id} not found"), "list nodes with `bacalhau node list`")),
        1 => {
            let node = matches.into_iter().next().ok_or_else(|| ApiError::not_found("node vanished", ""))?;
            Ok(Json(GetNodeResponse { node_lower: Some(node.clone()), node }))
        }
        _ => Err(ApiError::bad_request(format!("{id} matches several nodes"), "use a longer prefix of the ID")),
    }
}

/// `GET /api/v1/local-results/{file}[?job_id=ID]`: a result archive the `local` publisher kept
/// on this node, streamed. On an orchestrator, with the job named, an archive kept by another
/// node is relayed from that node's API: a client that cannot reach the compute node (behind
/// NAT, or advertising an address only its own network knows) still gets its results.
async fn local_result(State(s): St, Path(file): Path<String>, Query(p): Params) -> ApiResult<Response> {
    let valid = file.starts_with(ExecutionId::PREFIX)
        && file.ends_with(".tar.gz")
        && file.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if !valid {
        return Err(ApiError::not_found(
            format!("no local result {file}"),
            "get results with `bacalhau job get <job-id>`",
        ));
    }
    if let Some(dir) = &s.local_results_dir
        && let Ok(archive) = tokio::fs::File::open(dir.join(&file)).await
    {
        let len = archive.metadata().await.map(|m| m.len()).ok();
        // Streamed from the file: a 1 GiB result must not be 1 GiB of this node's memory per download.
        let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::with_capacity(archive, 256 * 1024));
        return Ok(archive_response(body, len));
    }
    let (Some(job_id), Some(orchestrator)) = (p.get("job_id").filter(|j| !j.is_empty()), s.orchestrator.as_ref())
    else {
        return Err(ApiError::not_found(
            format!("no local result {file} on this node"),
            "the result may have been removed; ask the orchestrator with ?job_id=<job-id>",
        ));
    };
    let exec_id = file.trim_end_matches(".tar.gz");
    let executions = orchestrator.executions(&JobId::from(job_id.as_str())).await?;
    let execution = executions.iter().find(|e| e.id.as_str() == exec_id).ok_or_else(|| {
        ApiError::not_found(
            format!("job {job_id} has no execution {exec_id}"),
            "list them with `bacalhau job executions`",
        )
    })?;
    // Only to a node connected now, as for logs: the URL is what the node advertised.
    let api = orchestrator
        .nodes()
        .await?
        .into_iter()
        .find(|n| n.info.node_id == execution.node_id && n.connection == NodeConnectionState::Connected)
        .map(|n| n.info.api_url)
        .filter(|a| a.starts_with("http://") || a.starts_with("https://"))
        .ok_or_else(|| {
            ApiError::not_found(
                format!("result {file} is kept by node {}, which is not connected now", execution.node_id),
                "try again once that node is back",
            )
        })?;
    let url = relay_url(&api, &format!("/api/v1/local-results/{file}"))?;
    let http = (s.relay_guard)(crate::tls::http_client_builder())
        .connect_timeout(RELAY_CONNECT_TIMEOUT)
        .read_timeout(RELAY_READ_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ApiError::bad_request(format!("cannot build the relay client: {e}"), ""))?;
    let mut req = http.get(url.clone());
    if let Some(t) = s.relay_token.as_deref() {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.and_then(reqwest::Response::error_for_status).map_err(|e| {
        ApiError::not_found(
            format!("result {file} is kept by node {}, whose API at {api} did not give it: {e}", execution.node_id),
            "the result may have been removed from that node",
        )
    })?;
    let len = resp.content_length();
    Ok(archive_response(axum::body::Body::from_stream(resp.bytes_stream()), len))
}

fn archive_response(body: axum::body::Body, len: Option<u64>) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "application/gzip")], body).into_response();
    if let Some(len) = len {
        response.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    }
    response
}

/// Serves the API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: ApiState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state)).with_graceful_shutdown(shutdown).await
}

/// Serves the API over TLS (see [`crate::tls`]).
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: ApiState,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::tls::serve_tls(listener, router(state), tls, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::relay_url;

    #[test]
    fn the_relay_takes_only_a_bare_origin_and_never_a_metadata_address() {
        let url = relay_url("http://127.0.0.1:1234", "/api/v1/local-results/e-1.tar.gz").expect("origin");
        assert_eq!(url.as_str(), "http://127.0.0.1:1234/api/v1/local-results/e-1.tar.gz");
        assert!(relay_url("https://node-7.example:1234/", "/x").is_ok());
        for hostile in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/role#",
            "http://169.254.169.254",
            "http://[::ffff:a9fe:a9fe]:80",
            "http://node:1/somewhere",
            "http://node:1?q=1",
            "http://user:pw@node:1",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(relay_url(hostile, "/x").is_err(), "{hostile} was taken");
        }
    }
}
