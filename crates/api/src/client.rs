//! The typed client the CLI uses.

use std::time::Duration;

use bacalhau_model::{BuildVersionInfo, Execution, Job, JobHistory, NodeInfo, NodeState, SpecConfig};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use crate::types::{
    CarImported, DiffJobResponse, ErrorBody, GcResult, GetJobResponse, GetNodeResponse, ListNodesResponse, LogFrame,
    NodeActionRequest, NodeActionResponse, Page, PinInfo, PutJobResponse, RerunJobResponse, StopJobResponse,
};

/// How long a single API request may take (downloads have their own limit).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Nothing answered at the address.
    #[error(
        "cannot reach the bacalhau API at {url}: {cause}\nHint: start a node with `bacalhau serve`, or point --api-host/--api-port (BACALHAU_API_HOST/BACALHAU_API_PORT) at a running one"
    )]
    Unreachable {
        /// The address tried.
        url: String,
        /// What happened.
        cause: String,
    },
    /// The server answered with an error.
    #[error("{message}{}", if .hint.is_empty() { String::new() } else { format!("\nHint: {}", .hint) })]
    Api {
        /// HTTP status.
        status: u16,
        /// The server's message.
        message: String,
        /// The server's hint.
        hint: String,
    },
    /// The answer could not be read.
    #[error("unexpected answer from {url}: {cause}")]
    Protocol {
        /// The request.
        url: String,
        /// What was wrong.
        cause: String,
    },
}

/// The largest JSON answer read (a malicious or broken server must not fill the client).
const MAX_RESPONSE_BYTES: usize = 64 << 20;
/// The largest IPFS block (bitswap's limit is 2 MiB).
const MAX_BLOCK_BYTES: usize = 4 << 20;

/// A client for one server.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    /// The `Authorization` header value sent with every request, if any.
    authorization: Option<String>,
    /// The TLS settings, for the websocket (reqwest has its own copy).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A client trusting no CA, should building the usual one fail (it has no reason to: its TLS
/// settings are preconfigured, so reqwest never looks for the platform's).
fn plain_client() -> reqwest::Client {
    crate::tls::install_provider();
    let cfg =
        rustls::ClientConfig::builder().with_root_certificates(rustls::RootCertStore::empty()).with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(cfg).build().unwrap_or_default()
}

/// Reads a body, refusing one larger than `max` bytes.
async fn read_capped(resp: reqwest::Response, max: usize, url: &str) -> Result<Vec<u8>, ClientError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ClientError::Protocol { url: url.into(), cause: format!("the answer is larger than {max} bytes") });
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ClientError::Protocol { url: url.into(), cause: cause(&e) })?;
        if out.len() + chunk.len() > max {
            return Err(ClientError::Protocol {
                url: url.into(),
                cause: format!("the answer is larger than {max} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn cause(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

impl Client {
    /// A client for `host:port`; `host` may be a URL (`http://h:p`), as Bacalhau allows.
    pub fn new(host: &str, port: u16) -> Self {
        // reqwest builds its TLS side even for plain http: it needs the provider in place.
        crate::tls::install_provider();
        let host = host.trim();
        let base = if host.starts_with("http://") || host.starts_with("https://") {
            host.trim_end_matches('/').to_owned()
        } else {
            // 0.0.0.0 is a listen address; a client means this machine.
            let h = if host.is_empty() || host == "0.0.0.0" { "127.0.0.1" } else { host };
            format!("http://{h}:{port}")
        };
        let http =
            crate::tls::http_client_builder().timeout(REQUEST_TIMEOUT).build().unwrap_or_else(|_| plain_client());
        Self { base, http, authorization: None, tls: None }
    }

    /// A client for `host:port` over https when `https` (or an `https://` host), checking the
    /// server's certificate as `trust` says, sending `authorization` (`Bearer <key>` or
    /// `Basic <b64>`) with every request.
    pub fn connect(
        host: &str,
        port: u16,
        https: bool,
        trust: &crate::tls::ClientTrust,
        authorization: Option<String>,
    ) -> Result<Self, ClientError> {
        let mut c = Self::new(host, port);
        if https && c.base.starts_with("http://") {
            c.base = c.base.replacen("http://", "https://", 1);
        }
        let bad = |cause: String| ClientError::Protocol { url: c.base.clone(), cause };
        c.tls = crate::tls::client_config(trust).map_err(bad)?;
        if c.tls.is_none() && c.base.starts_with("https://") {
            crate::tls::install_provider();
        }
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(v) = authorization.as_deref().and_then(|v| reqwest::header::HeaderValue::from_str(v).ok()) {
            let mut v = v;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let mut builder = crate::tls::http_client_builder().timeout(REQUEST_TIMEOUT).default_headers(headers);
        if let Some(cfg) = &c.tls {
            builder = builder.tls_backend_preconfigured((**cfg).clone());
        }
        c.http = builder.build().map_err(|e| ClientError::Protocol { url: c.base.clone(), cause: cause(&e) })?;
        c.authorization = authorization;
        Ok(c)
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder, url: &str) -> Result<T, ClientError> {
        let resp =
            req.send().await.map_err(|e| ClientError::Unreachable { url: self.base.clone(), cause: cause(&e) })?;
        let status = resp.status();
        let bytes = read_capped(resp, MAX_RESPONSE_BYTES, url).await?;
        if !status.is_success() {
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                message: format!("{} {}", status, String::from_utf8_lossy(&bytes)),
                ..Default::default()
            });
            let message = match body.details.get("reason") {
                Some(reason) => format!("{}: {reason}", body.message),
                None => body.message,
            };
            return Err(ClientError::Api { status: status.as_u16(), message, hint: body.hint });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol { url: url.into(), cause: e.to_string() })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T, ClientError> {
        let url = format!("{}{path}", self.base);
        self.send(self.http.get(&url).query(query), &url).await
    }

    /// `PUT /jobs` with a job given as JSON.
    /// Sent with an `Idempotency-Key`, and retried (with the same key) when the connection
    /// fails or the server is briefly unavailable: the job is created once either way.
    pub async fn submit(&self, job: &Value) -> Result<PutJobResponse, ClientError> {
        self.submit_forced(job, false).await
    }

    /// [`Self::submit`], where `force` updates a job of the same Name even if the spec has not
    /// changed.
    pub async fn submit_forced(&self, job: &Value, force: bool) -> Result<PutJobResponse, ClientError> {
        let url = format!("{}/api/v1/orchestrator/jobs", self.base);
        let key = uuid::Uuid::new_v4().to_string();
        let body = serde_json::json!({ "Job": job, "Force": force });
        let mut delay = Duration::from_millis(250);
        for attempt in 1.. {
            let req = self.http.put(&url).header("Idempotency-Key", &key).json(&body);
            match self.send(req, &url).await {
                Err(ClientError::Unreachable { .. }) | Err(ClientError::Api { status: 502..=504, .. })
                    if attempt < 4 =>
                {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns")
    }

    /// A job, optionally with history and executions.
    pub async fn get_job(&self, id: &str, include: &str) -> Result<GetJobResponse, ClientError> {
        self.get(&format!("/api/v1/orchestrator/jobs/{id}"), &[("include", include.to_owned())]).await
    }

    /// A job as it was at `version` (0: the current one), optionally with that version's
    /// history and executions.
    pub async fn get_job_version(&self, id: &str, include: &str, version: u64) -> Result<GetJobResponse, ClientError> {
        let q = [("include", include.to_owned()), ("job_version", version.to_string())];
        self.get(&format!("/api/v1/orchestrator/jobs/{id}"), &q).await
    }

    /// How a spec differs from the job with its Name.
    pub async fn diff(&self, job: &Value) -> Result<DiffJobResponse, ClientError> {
        let url = format!("{}/api/v1/orchestrator/jobs/diff", self.base);
        self.send(self.http.put(&url).json(&serde_json::json!({ "Job": job })), &url).await
    }

    /// Runs a job again as a new version, from `version` (0: the latest).
    pub async fn rerun(&self, id: &str, version: u64, reason: &str) -> Result<RerunJobResponse, ClientError> {
        let url = format!("{}/api/v1/orchestrator/jobs/{id}/rerun", self.base);
        let body = serde_json::json!({ "JobVersion": version, "Reason": reason });
        self.send(self.http.put(&url).json(&body), &url).await
    }

    /// Every kept version of a job, oldest first.
    pub async fn versions(&self, id: &str) -> Result<Page<Job>, ClientError> {
        self.get(&format!("/api/v1/orchestrator/jobs/{id}/versions"), &[]).await
    }

    /// A page of jobs.
    pub async fn list_jobs(
        &self,
        limit: usize,
        next_token: &str,
        reverse: bool,
        labels: &str,
    ) -> Result<Page<Job>, ClientError> {
        let q = [
            ("limit", limit.to_string()),
            ("next_token", next_token.to_owned()),
            ("reverse", reverse.to_string()),
            ("labels", labels.to_owned()),
        ];
        self.get("/api/v1/orchestrator/jobs", &q).await
    }

    /// Stops a job.
    pub async fn stop(&self, id: &str, reason: &str) -> Result<StopJobResponse, ClientError> {
        let url = format!("{}/api/v1/orchestrator/jobs/{id}", self.base);
        self.send(self.http.delete(&url).json(&serde_json::json!({ "reason": reason })), &url).await
    }

    /// History entries after `next_token` (empty = from the start).
    pub async fn history(
        &self,
        id: &str,
        event_type: &str,
        execution_id: &str,
        next_token: &str,
    ) -> Result<Page<JobHistory>, ClientError> {
        let q = [
            ("event_type", event_type.to_owned()),
            ("execution_id", execution_id.to_owned()),
            ("next_token", next_token.to_owned()),
            ("limit", "1000".to_owned()),
        ];
        self.get(&format!("/api/v1/orchestrator/jobs/{id}/history"), &q).await
    }

    /// A job's executions.
    pub async fn executions(&self, id: &str) -> Result<Page<Execution>, ClientError> {
        self.get(&format!("/api/v1/orchestrator/jobs/{id}/executions"), &[("limit", "1000".into())]).await
    }

    /// A job's published results.
    pub async fn results(&self, id: &str) -> Result<Page<SpecConfig>, ClientError> {
        self.get(&format!("/api/v1/orchestrator/jobs/{id}/results"), &[]).await
    }

    /// Nodes.
    pub async fn nodes(&self) -> Result<Vec<NodeState>, ClientError> {
        Ok(self.get::<ListNodesResponse>("/api/v1/orchestrator/nodes", &[]).await?.nodes)
    }

    /// One node.
    pub async fn node(&self, id: &str) -> Result<NodeState, ClientError> {
        Ok(self.get::<GetNodeResponse>(&format!("/api/v1/orchestrator/nodes/{id}"), &[]).await?.node)
    }

    /// Liveness.
    pub async fn alive(&self) -> Result<Value, ClientError> {
        self.get("/api/v1/agent/alive", &[]).await
    }

    /// Server version.
    pub async fn version(&self) -> Result<BuildVersionInfo, ClientError> {
        self.get("/api/v1/agent/version", &[]).await
    }

    /// The server node's info.
    pub async fn agent_node(&self) -> Result<NodeInfo, ClientError> {
        self.get("/api/v1/agent/node", &[]).await
    }

    /// Streams log lines over the websocket, calling `on_line(type, line)` for each.
    pub async fn logs(
        &self,
        id: &str,
        execution_id: &str,
        follow: bool,
        mut on_line: impl FnMut(u8, &str),
    ) -> Result<(), ClientError> {
        let ws_base = self.base.replacen("http", "ws", 1);
        let url = format!("{ws_base}/api/v1/orchestrator/jobs/{id}/logs?follow={follow}&execution_id={execution_id}");
        use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|e| ClientError::Protocol { url: url.clone(), cause: e.to_string() })?;
        if let Some(v) = self.authorization.as_deref().and_then(|v| v.parse().ok()) {
            request.headers_mut().insert("authorization", v);
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connect = tokio::time::timeout(
            REQUEST_TIMEOUT,
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector),
        );
        let connected = connect.await.map_err(|_| ClientError::Unreachable {
            url: self.base.clone(),
            cause: format!("no websocket answer within {REQUEST_TIMEOUT:?}"),
        })?;
        let (mut socket, _) = match connected {
            Ok(s) => s,
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let body = resp.body().as_deref().unwrap_or_default();
                let e: ErrorBody = serde_json::from_slice(body).unwrap_or_default();
                return Err(ClientError::Api { status: resp.status().as_u16(), message: e.message, hint: e.hint });
            }
            Err(e) => return Err(ClientError::Unreachable { url: self.base.clone(), cause: e.to_string() }),
        };
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Text(t)) => {
                    let frame: LogFrame = serde_json::from_str(&t)
                        .map_err(|e| ClientError::Protocol { url: url.clone(), cause: e.to_string() })?;
                    if !frame.error.is_empty() {
                        return Err(ClientError::Api { status: 500, message: frame.error, hint: String::new() });
                    }
                    if let Some(v) = frame.value {
                        on_line(v.kind, &v.line);
                    }
                }
                Ok(Message::Close(_)) => break,
                Ok(_) => {}
                Err(e) => return Err(ClientError::Protocol { url: url.clone(), cause: e.to_string() }),
            }
        }
        Ok(())
    }

    /// Approves, rejects or deletes a node.
    pub async fn node_action(
        &self,
        node_id: &str,
        action: &str,
        message: &str,
    ) -> Result<NodeActionResponse, ClientError> {
        let url = format!("{}/api/v1/orchestrator/nodes", self.base);
        let body = NodeActionRequest { node_id: node_id.into(), action: action.into(), message: message.into() };
        self.send(self.http.put(&url).json(&body), &url).await
    }

    /// A raw block from the node's IPFS store (`None` when it does not have it).
    pub async fn raw_block(&self, cid: &str) -> Result<Option<Vec<u8>>, ClientError> {
        let url = format!("{}/ipfs/{cid}?format=raw", self.base);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), cause: cause(&e) })?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(ClientError::Api {
                status: resp.status().as_u16(),
                message: format!("fetching block {cid} failed: {}", resp.status()),
                hint: String::new(),
            });
        }
        Ok(Some(read_capped(resp, MAX_BLOCK_BYTES, &url).await?))
    }

    /// Uploads a CAR file to the node's IPFS store, which verifies every block and pins the
    /// roots with `label`.
    pub async fn import_car(&self, car: &std::path::Path, label: &str) -> Result<CarImported, ClientError> {
        let url = format!("{}/api/v1/ipfs/car", self.base);
        let file = tokio::fs::File::open(car).await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            cause: format!("cannot read {}: {e}", car.display()),
        })?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        // Large uploads outlive the usual request timeout.
        let req = self.http.post(&url).query(&[("label", label)]).timeout(Duration::from_secs(24 * 3600)).body(body);
        self.send(req, &url).await
    }

    /// The node's IPFS pins.
    pub async fn pins(&self) -> Result<Vec<PinInfo>, ClientError> {
        self.get("/api/v1/ipfs/pins", &[]).await
    }

    /// Pins a DAG the node holds.
    pub async fn pin(&self, cid: &str, label: &str) -> Result<PinInfo, ClientError> {
        let url = format!("{}/api/v1/ipfs/pins/{cid}", self.base);
        self.send(self.http.post(&url).query(&[("label", label)]), &url).await
    }

    /// Removes a pin (all its labels).
    pub async fn unpin(&self, cid: &str) -> Result<(), ClientError> {
        let url = format!("{}/api/v1/ipfs/pins/{cid}", self.base);
        let resp = self
            .http
            .delete(&url)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: self.base.clone(), cause: cause(&e) })?;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let body: ErrorBody = resp.json().await.unwrap_or_default();
        Err(ClientError::Api { status, message: body.message, hint: body.hint })
    }

    /// Runs garbage collection on the node's IPFS store.
    /// `GET /api/v1/agent/authconfig`: the server's single sign-on settings.
    pub async fn authconfig(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/api/v1/agent/authconfig", &[]).await
    }

    /// The node's IPFS peer identity (kubo's `ipfs id` shape).
    pub async fn ipfs_id(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/api/v1/ipfs/id", &[]).await
    }

    /// Runs garbage collection on the node's store.
    pub async fn gc(&self) -> Result<GcResult, ClientError> {
        let url = format!("{}/api/v1/ipfs/gc", self.base);
        self.send(self.http.post(&url).timeout(Duration::from_secs(3600)), &url).await
    }

    /// Downloads a URL's body into the new file `dest` (results published by the local
    /// publisher), streamed: nothing of it is held in memory.
    pub async fn download_to(&self, url: &str, dest: &std::path::Path, timeout: Duration) -> Result<u64, ClientError> {
        self.download_with_progress(url, dest, timeout, &mut |_, _| {}).await
    }

    /// [`Client::download_to`], calling `progress(bytes so far, total if the server said)`
    /// after each chunk.
    pub async fn download_with_progress(
        &self,
        url: &str,
        dest: &std::path::Path,
        timeout: Duration,
        progress: &mut (dyn FnMut(u64, Option<u64>) + Send),
    ) -> Result<u64, ClientError> {
        // Credentials go only to the server they are for: a result URL names whatever host the
        // compute node advertised.
        let same_origin =
            url.strip_prefix(self.base.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
        let http = if same_origin {
            self.http.clone()
        } else {
            crate::tls::http_client_builder()
                .build()
                .map_err(|e| ClientError::Protocol { url: url.into(), cause: cause(&e) })?
        };
        let resp = http
            .get(url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable { url: url.into(), cause: cause(&e) })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ClientError::Api {
                status: status.as_u16(),
                message: format!("downloading {url} failed: {status}"),
                hint: String::new(),
            });
        }
        let io = |e: std::io::Error| ClientError::Protocol {
            url: url.into(),
            cause: format!("writing {}: {e}", dest.display()),
        };
        let mut file = tokio::fs::OpenOptions::new().write(true).create_new(true).open(dest).await.map_err(io)?;
        let total = resp.content_length();
        let mut stream = resp.bytes_stream();
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ClientError::Protocol { url: url.into(), cause: cause(&e) })?;
            n += chunk.len() as u64;
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk).await.map_err(io)?;
            progress(n, total);
        }
        tokio::io::AsyncWriteExt::flush(&mut file).await.map_err(io)?;
        Ok(n)
    }
}
