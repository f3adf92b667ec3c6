//! The orchestrator's side: accepts compute nodes' streams on the node port.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bacalhau_model::NodeId;
use bacalhau_protocol::{Envelope, FromCompute, OrchestratorInbound, Outbound, PROTOCOL_VERSION, SendError, ToCompute};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, StreamingService};
use tonic::{Request, Response, Status, Streaming};
use tracing::{info, warn};

use crate::codec::JsonCodec;
use crate::{CONNECT_PATH, NODE_ID_KEY, SERVICE_NAME, TOKEN_KEY, TransportError, VERSION_KEY};

/// Messages that may wait for one compute node (as with the in-process transport).
const TO_COMPUTE_CAPACITY: usize = 65_536;

/// How the node server listens.
#[derive(Clone, Debug, Default)]
pub struct ServerConfig {
    /// The cluster token compute nodes must present; `None` accepts any node.
    pub token: Option<String>,
    /// PEM certificate chain and key: serve TLS.
    pub tls: Option<(Vec<u8>, Vec<u8>)>,
    /// Which key may speak for which node ID; `None` checks proofs but binds nothing.
    pub authority: Option<Arc<dyn bacalhau_protocol::NodeAuthority>>,
}

/// The orchestrator's handle on one node's stream.
#[derive(Debug)]
struct NetLink {
    tx: mpsc::Sender<Envelope<ToCompute>>,
    node_id: NodeId,
}

impl Outbound for NetLink {
    fn send(&self, msg: ToCompute) -> Result<(), SendError> {
        self.tx.try_send(Envelope::new(self.node_id.clone(), msg)).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Disconnected,
        })
    }
}

#[derive(Clone)]
struct NodeService {
    inbound: mpsc::Sender<OrchestratorInbound>,
    token: Option<Arc<str>>,
    /// The latest stream of each node: an older stream that ends must not mark a node that
    /// has already reconnected as gone.
    generations: Arc<Mutex<HashMap<NodeId, u64>>>,
    next: Arc<AtomicU64>,
    proofs: Arc<crate::ProofChecker>,
    authority: Option<Arc<dyn bacalhau_protocol::NodeAuthority>>,
}

impl NamedService for NodeService {
    const NAME: &'static str = SERVICE_NAME;
}

fn meta<'a>(req: &'a Request<Streaming<Envelope<FromCompute>>>, key: &str) -> &'a str {
    req.metadata().get(key).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

/// Checks the handshake metadata, then that the stream's key may speak for its node ID; the
/// error says what to fix.
fn admit(svc: &NodeService, req: &Request<Streaming<Envelope<FromCompute>>>) -> Result<NodeId, Status> {
    let token = svc.token.as_deref();
    let version = meta(req, VERSION_KEY);
    if version != PROTOCOL_VERSION.to_string() {
        return Err(Status::failed_precondition(format!(
            "protocol version mismatch: this node speaks version {version:?}, the orchestrator speaks {PROTOCOL_VERSION}; run the same bacalhau version on both"
        )));
    }
    if let Some(expected) = token
        && meta(req, TOKEN_KEY) != expected
    {
        return Err(Status::unauthenticated(
            "wrong or missing cluster token: start the compute node with the orchestrator's --node-token (BACALHAU_NODE_TOKEN)",
        ));
    }
    let node = meta(req, NODE_ID_KEY);
    if node.is_empty() || node.len() > 256 {
        return Err(Status::invalid_argument("the stream carries no node ID"));
    }
    let key = svc
        .proofs
        .check(
            node,
            meta(req, crate::NODE_KEY_KEY),
            meta(req, crate::PROOF_TS_KEY),
            meta(req, crate::PROOF_NONCE_KEY),
            meta(req, crate::PROOF_SIG_KEY),
        )
        .map_err(Status::unauthenticated)?;
    let node_id = NodeId(node.to_owned());
    if let Some(authority) = &svc.authority {
        authority.admit(&node_id, &key).map_err(Status::permission_denied)?;
    }
    Ok(node_id)
}

type OutStream = Pin<Box<dyn Stream<Item = Result<Envelope<ToCompute>, Status>> + Send>>;

struct Connect(NodeService);

impl StreamingService<Envelope<FromCompute>> for Connect {
    type Response = Envelope<ToCompute>;
    type ResponseStream = OutStream;
    type Future = BoxFuture<Response<OutStream>, Status>;

    fn call(&mut self, req: Request<Streaming<Envelope<FromCompute>>>) -> Self::Future {
        let svc = self.0.clone();
        Box::pin(async move {
            let node_id = admit(&svc, &req).inspect_err(|s| {
                warn!(node = meta(&req, NODE_ID_KEY), "refused a compute node: {}", s.message());
            })?;
            let generation = svc.next.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut g) = svc.generations.lock() {
                g.insert(node_id.clone(), generation);
            }
            let (tx, rx) = mpsc::channel(TO_COMPUTE_CAPACITY);
            let link = Arc::new(NetLink { tx, node_id: node_id.clone() });
            svc.inbound
                .send(OrchestratorInbound::Connected { node_id: node_id.clone(), link })
                .await
                .map_err(|_| Status::unavailable("the orchestrator is shutting down"))?;
            info!(%node_id, "compute node connected");
            let mut incoming = req.into_inner();
            tokio::spawn(async move {
                loop {
                    match incoming.message().await {
                        Ok(Some(mut env)) => {
                            // The stream's admitted identity wins over what a message claims.
                            env.node_id = node_id.clone();
                            if svc.inbound.send(OrchestratorInbound::Message(Box::new(env))).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            warn!(%node_id, "stream from the compute node broke: {}", e.message());
                            break;
                        }
                    }
                }
                let current = svc.generations.lock().map(|g| g.get(&node_id) == Some(&generation)).unwrap_or(true);
                if current {
                    info!(%node_id, "compute node disconnected");
                    let _ = svc.inbound.send(OrchestratorInbound::Disconnected { node_id }).await;
                }
            });
            let out: OutStream = Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok));
            Ok(Response::new(out))
        })
    }
}

impl<B> Service<http::Request<B>> for NodeService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let svc = self.clone();
        Box::pin(async move {
            if req.uri().path() != CONNECT_PATH {
                return Ok(Status::unimplemented(format!("no method {}", req.uri().path())).into_http());
            }
            let mut grpc = Grpc::new(JsonCodec::<Envelope<ToCompute>, Envelope<FromCompute>>::default());
            Ok(grpc.streaming(Connect(svc), req).await)
        })
    }
}

/// Serves the node port on `listener` until `shutdown` completes, handing connections and
/// messages to the orchestrator's `inbound` channel.
pub async fn serve(
    listener: tokio::net::TcpListener,
    inbound: mpsc::Sender<OrchestratorInbound>,
    cfg: ServerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TransportError> {
    let svc = NodeService {
        inbound,
        token: cfg.token.map(Into::into),
        generations: Arc::default(),
        next: Arc::new(AtomicU64::new(0)),
        proofs: Arc::default(),
        authority: cfg.authority,
    };
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(5)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .tcp_nodelay(true);
    if let Some((cert, key)) = cfg.tls {
        let tls = tonic::transport::ServerTlsConfig::new().identity(tonic::transport::Identity::from_pem(cert, key));
        builder = builder.tls_config(tls).map_err(|e| TransportError::Config(format!("TLS: {e}")))?;
    }
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    builder
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| TransportError::Server(e.to_string()))
}
