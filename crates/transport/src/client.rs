//! The compute node's side: dials the orchestrator, keeps the stream up, re-dials with
//! back-off, and tells the node after every re-connection so it registers again.

use std::time::Duration;

use bacalhau_model::NodeId;
use bacalhau_protocol::{ComputeEndpoint, Envelope, OrchestratorInbound, PROTOCOL_VERSION, ToCompute};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tracing::{error, info, warn};

use crate::codec::JsonCodec;
use crate::{CONNECT_PATH, NODE_ID_KEY, TOKEN_KEY, TransportError, VERSION_KEY};

/// Messages that may wait while the orchestrator is away; a full queue makes the node wait.
const QUEUE: usize = 65_536;

/// Where and how to dial.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `HOST:PORT` of the orchestrator's node port (or a full `http(s)://` URL).
    pub orchestrator: String,
    /// This node.
    pub node_id: NodeId,
    /// The cluster token.
    pub token: Option<String>,
    /// PEM CA certificate to verify the orchestrator with: dial with TLS.
    pub tls_ca: Option<Vec<u8>>,
    /// The node's own key: every stream opens with a fresh proof of it.
    pub key: std::sync::Arc<crate::NodeKey>,
}

fn endpoint(cfg: &ClientConfig) -> Result<Endpoint, TransportError> {
    let url = if cfg.orchestrator.contains("://") {
        cfg.orchestrator.clone()
    } else if cfg.tls_ca.is_some() {
        format!("https://{}", cfg.orchestrator)
    } else {
        format!("http://{}", cfg.orchestrator)
    };
    let mut ep = Endpoint::from_shared(url.clone())
        .map_err(|e| TransportError::Config(format!("--orchestrators {url:?} is not an address: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .tcp_nodelay(true);
    if let Some(ca) = &cfg.tls_ca {
        let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(tonic::transport::Certificate::from_pem(ca));
        ep = ep.tls_config(tls).map_err(|e| TransportError::Config(format!("TLS: {e}")))?;
    }
    Ok(ep)
}

/// Starts dialling the orchestrator and returns the compute node's endpoint at once; messages
/// queue until the stream is up. Ends when `cancel` fires.
pub fn connect(cfg: ClientConfig, cancel: CancellationToken) -> Result<ComputeEndpoint, TransportError> {
    let ep = endpoint(&cfg)?;
    for (key, value) in [(NODE_ID_KEY, cfg.node_id.0.as_str()), (TOKEN_KEY, cfg.token.as_deref().unwrap_or(""))] {
        MetadataValue::try_from(value)
            .map_err(|_| TransportError::Config(format!("{key} {value:?} must be printable ASCII")))?;
    }
    let (in_tx, inbox) = mpsc::channel(QUEUE);
    let (outbox, out_rx) = mpsc::channel(QUEUE);
    tokio::spawn(run(ep, cfg.clone(), in_tx, out_rx, cancel));
    Ok(ComputeEndpoint { inbox, outbox, node_id: cfg.node_id })
}

async fn run(
    ep: Endpoint,
    cfg: ClientConfig,
    inbox: mpsc::Sender<Envelope<ToCompute>>,
    mut outbox: mpsc::Receiver<OrchestratorInbound>,
    cancel: CancellationToken,
) {
    let mut backoff = Duration::from_millis(200);
    let mut connected_before = false;
    loop {
        let first = !connected_before;
        let attempt = async {
            let channel =
                ep.connect().await.map_err(|e| format!("cannot reach {}: {}", cfg.orchestrator, chain(&e)))?;
            session(channel, &cfg, &inbox, &mut outbox, &mut connected_before).await
        };
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            r = attempt => r,
        };
        match result {
            Ok(Session::Closed) => {
                backoff = Duration::from_millis(200);
                warn!(orchestrator = %cfg.orchestrator, "the orchestrator closed the stream; reconnecting");
            }
            Ok(Session::NodeGone) => return,
            Err(Failure::Refused(msg)) => {
                // A wrong token or version will not fix itself quickly, but an operator can fix
                // the orchestrator: keep trying, slowly, and say why each time.
                error!(orchestrator = %cfg.orchestrator, "the orchestrator refused this node: {msg}");
                backoff = Duration::from_secs(10);
            }
            Err(Failure::Broken(msg)) => {
                if !first {
                    warn!("{msg}; retrying in {backoff:?}");
                } else {
                    info!("{msg}; retrying in {backoff:?}");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// An error with its causes: tonic's top-level "transport error" alone says nothing.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s = format!("{s}: {inner}");
        src = inner.source();
    }
    s
}

enum Session {
    /// The stream ended; dial again.
    Closed,
    /// The compute node is gone: nothing left to carry.
    NodeGone,
}

enum Failure {
    Refused(String),
    Broken(String),
}

impl From<String> for Failure {
    fn from(s: String) -> Self {
        Failure::Broken(s)
    }
}

async fn session(
    channel: Channel,
    cfg: &ClientConfig,
    inbox: &mpsc::Sender<Envelope<ToCompute>>,
    outbox: &mut mpsc::Receiver<OrchestratorInbound>,
    connected_before: &mut bool,
) -> Result<Session, Failure> {
    let (tx, rx) = mpsc::channel::<Envelope<bacalhau_protocol::FromCompute>>(1024);
    let mut req = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let md = req.metadata_mut();
    let (ts, nonce, sig) = cfg.key.prove(cfg.node_id.as_str());
    for (key, value) in [
        (NODE_ID_KEY, cfg.node_id.0.clone()),
        (VERSION_KEY, PROTOCOL_VERSION.to_string()),
        (TOKEN_KEY, cfg.token.clone().unwrap_or_default()),
        (crate::NODE_KEY_KEY, cfg.key.public_b64()),
        (crate::PROOF_TS_KEY, ts),
        (crate::PROOF_NONCE_KEY, nonce),
        (crate::PROOF_SIG_KEY, sig),
    ] {
        if let Ok(v) = MetadataValue::try_from(value.as_str()) {
            md.insert(key, v);
        }
    }
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| format!("the orchestrator at {} is not ready: {e}", cfg.orchestrator))?;
    let path = http::uri::PathAndQuery::from_static(CONNECT_PATH);
    let codec = JsonCodec::<Envelope<bacalhau_protocol::FromCompute>, Envelope<ToCompute>>::default();
    let response = grpc.streaming(req, path, codec).await.map_err(|s| match s.code() {
        tonic::Code::Unauthenticated
        | tonic::Code::FailedPrecondition
        | tonic::Code::InvalidArgument
        | tonic::Code::PermissionDenied => Failure::Refused(s.message().to_owned()),
        _ => Failure::Broken(format!("cannot open the stream to {}: {}", cfg.orchestrator, s.message())),
    })?;
    info!(orchestrator = %cfg.orchestrator, "connected to the orchestrator");
    let again = std::mem::replace(connected_before, true);
    if again && inbox.send(Envelope::new(cfg.node_id.clone(), ToCompute::Reconnected)).await.is_err() {
        return Ok(Session::NodeGone);
    }
    let mut incoming = response.into_inner();
    loop {
        tokio::select! {
            msg = incoming.message() => match msg {
                Ok(Some(env)) => {
                    if inbox.send(env).await.is_err() {
                        return Ok(Session::NodeGone);
                    }
                }
                Ok(None) => return Ok(Session::Closed),
                Err(s) => return Err(Failure::Broken(format!("the stream to {} broke: {}", cfg.orchestrator, s.message()))),
            },
            out = outbox.recv() => match out {
                Some(OrchestratorInbound::Message(env)) => {
                    if tx.send(*env).await.is_err() {
                        return Err(Failure::Broken("the stream closed while sending".into()));
                    }
                }
                Some(_) => {}
                None => return Ok(Session::NodeGone),
            },
        }
    }
}
