//! The embedded IPFS peer: a libp2p host (TCP, noise, yamux, identify, ping) that speaks
//! bitswap 1.2 with kubo and with the other nodes of a cluster.
//!
//! Private by default: it dials only the peers it is given (`--ipfs-peers`, or those the
//! orchestrator names as holders of a CID) and never joins the public DHT or bootstraps.
//! Peers named with `--ipfs-peers` are kept connected (re-dialled), as kubo's `Peering.Peers`.

mod bitswap;
mod inbound;
pub mod message;

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bacalhau_ipfs::{BlockStore, Cid};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, identify, noise, ping, tcp, yamux};
use tokio::sync::{mpsc, oneshot, watch};

pub use bitswap::{DEFAULT_STALL, Fault, Stats, describe_metrics};
pub use libp2p::{Multiaddr as Addr, PeerId as Id};

/// Blocks requested at once during a DAG walk (kubo walks with 32; more hides latency).
const WINDOW: usize = 256;
/// How often peers named in `--ipfs-peers` are re-dialled when not connected.
const PEERING_INTERVAL: Duration = Duration::from_secs(5);

/// Why the peer could not do something.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// The key file or the store.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// Listening or dialling.
    #[error("{0}")]
    Network(String),
    /// A block could not be fetched.
    #[error("{0}")]
    Fetch(String),
}

/// How to start the peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Where the peer's private key lives (created, ed25519, on first start).
    pub key_file: PathBuf,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Peers to keep connected.
    pub peers: Vec<Multiaddr>,
    /// Test-only misbehaviour.
    pub fault: Fault,
    /// How long a fetch may go without a block arriving (the [`bacalhau_ipfs::Fetcher`] use).
    pub stall: Duration,
}

impl PeerConfig {
    /// Listen on a free loopback port, keep the key in `dir`.
    pub fn loopback(dir: &Path) -> Self {
        Self {
            key_file: dir.join("peer.key"),
            listen: vec![loopback_any()],
            peers: Vec::new(),
            fault: Fault::None,
            stall: DEFAULT_STALL,
        }
    }
}

/// `/ip4/127.0.0.1/tcp/0`.
pub fn loopback_any() -> Multiaddr {
    Multiaddr::empty().with(Protocol::Ip4(std::net::Ipv4Addr::LOCALHOST)).with(Protocol::Tcp(0))
}

#[derive(NetworkBehaviour)]
struct Behaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    stream: libp2p_stream::Behaviour,
    bitswap: inbound::Behaviour,
}

enum Command {
    Dial(Multiaddr, oneshot::Sender<Result<PeerId, String>>),
}

/// What a DAG fetch moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FetchStats {
    /// Blocks in the DAG.
    pub blocks: u64,
    /// Of which fetched from peers (the rest were here already).
    pub fetched: u64,
    /// Bytes of the blocks fetched.
    pub bytes: u64,
}

/// A running peer. Dropping it stops the host.
#[derive(Debug, Clone)]
pub struct Peer {
    id: PeerId,
    engine: Arc<bitswap::Engine>,
    cmd: mpsc::UnboundedSender<Command>,
    addrs: watch::Receiver<Vec<Multiaddr>>,
    store: Arc<BlockStore>,
    stall: Duration,
}

fn load_or_create_key(path: &Path) -> Result<Keypair, PeerError> {
    match std::fs::read(path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).map_err(|e| {
            PeerError::Network(format!(
                "{} is not a libp2p private key ({e}); delete it to make a new one",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding().map_err(|e| PeerError::Network(e.to_string()))?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, bytes)?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, path)?;
            Ok(key)
        }
        Err(e) => Err(e.into()),
    }
}

/// The peer ID at the end of a multiaddr, if it names one.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().find_map(|p| if let Protocol::P2p(id) = p { Some(id) } else { None })
}

impl Peer {
    /// Starts the host and waits until it listens.
    pub async fn start(store: Arc<BlockStore>, cfg: PeerConfig) -> Result<Peer, PeerError> {
        let key = load_or_create_key(&cfg.key_file)?;
        let id = key.public().to_peer_id();
        let (in_tx, mut in_rx) = mpsc::unbounded_channel();
        let protocols: Vec<_> = std::iter::once(bitswap::PROTOCOL).chain(bitswap::OLDER_PROTOCOLS).collect();
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp::Config::default().nodelay(true), noise::Config::new, yamux::Config::default)
            .map_err(|e| PeerError::Network(format!("setting up TCP: {e}")))?
            .with_behaviour(|key| Behaviour {
                identify: identify::Behaviour::new(
                    identify::Config::new("ipfs/0.1.0".into(), key.public())
                        .with_agent_version(format!("bacalhau-rs/{}", env!("CARGO_PKG_VERSION"))),
                ),
                ping: ping::Behaviour::default(),
                stream: libp2p_stream::Behaviour::new(),
                bitswap: inbound::Behaviour::new(protocols, in_tx),
            })
            .map_err(|e| PeerError::Network(format!("setting up the host: {e}")))?
            // Bitswap streams come and go; the connection to a peer should not.
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
            .build();
        let control = swarm.behaviour().stream.new_control();
        let engine = bitswap::Engine::new(store.clone(), control, cfg.fault);
        {
            let engine = engine.clone();
            tokio::spawn(async move {
                while let Some((peer, stream)) = in_rx.recv().await {
                    tokio::spawn(bitswap::read_loop(engine.clone(), peer, stream));
                }
            });
        }
        for addr in &cfg.listen {
            swarm.listen_on(addr.clone()).map_err(|e| PeerError::Network(format!("cannot listen on {addr}: {e}")))?;
        }
        let (addr_tx, mut addrs) = watch::channel(Vec::new());
        let (cmd, rx) = mpsc::unbounded_channel();
        tokio::spawn(drive(swarm, engine.clone(), rx, addr_tx, cfg.peers.clone()));
        if !cfg.listen.is_empty() {
            let ready = addrs.wait_for(|a| !a.is_empty());
            tokio::time::timeout(Duration::from_secs(10), ready)
                .await
                .map_err(|_| PeerError::Network("the IPFS peer did not start listening within 10 s".into()))?
                .map_err(|_| PeerError::Network("the IPFS peer stopped while starting".into()))?;
        }
        Ok(Peer { id, engine, cmd, addrs, store, stall: cfg.stall })
    }

    /// This peer's ID.
    pub fn id(&self) -> PeerId {
        self.id
    }

    /// The addresses it listens on, each ending in `/p2p/<ID>` (what other peers dial).
    pub fn addrs(&self) -> Vec<Multiaddr> {
        self.addrs.borrow().iter().map(|a| a.clone().with(Protocol::P2p(self.id))).collect()
    }

    /// Peers connected now.
    pub fn connected(&self) -> Vec<PeerId> {
        self.engine.connected()
    }

    /// CIDs being asked for now (0 once every fetch has finished or given up).
    pub fn wants_in_flight(&self) -> usize {
        self.engine.wants()
    }

    /// Bitswap counters.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Dials `addr` (unless already connected to the peer it names) and waits for the connection.
    pub async fn connect(&self, addr: &Multiaddr) -> Result<PeerId, PeerError> {
        if let Some(p) = peer_of(addr)
            && (p == self.id || self.connected().contains(&p))
        {
            return Ok(p);
        }
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Command::Dial(addr.clone(), tx))
            .map_err(|_| PeerError::Network("the IPFS peer has stopped".into()))?;
        let res = tokio::time::timeout(Duration::from_secs(10), rx)
            .await
            .map_err(|_| PeerError::Network(format!("dialling {addr} took more than 10 s")))?
            .map_err(|_| PeerError::Network("the IPFS peer has stopped".into()))?;
        res.map_err(|e| PeerError::Network(format!("cannot connect to {addr}: {e}")))
    }

    /// Makes sure every block of the DAG under `root` is in the store, fetching what is missing
    /// from connected peers (`providers` first; they are dialled if need be). Gives up when no
    /// block has arrived for `stall`, saying which peers were asked and what they answered.
    pub async fn fetch_dag(
        &self,
        root: Cid,
        providers: &[Multiaddr],
        stall: Duration,
    ) -> Result<FetchStats, PeerError> {
        // Dial the providers together: one unreachable address must not hold up the rest.
        let dials = futures::future::join_all(providers.iter().map(|a| self.connect(a))).await;
        let mut hints = Vec::new();
        for (addr, res) in providers.iter().zip(dials) {
            match res {
                Ok(p) if p != self.id && !hints.contains(&p) => hints.push(p),
                Ok(_) => {}
                Err(e) => tracing::info!("provider {addr} is unreachable: {e}"),
            }
        }
        if hints.is_empty() && self.connected().is_empty() && !self.store.has(&root) {
            return Err(PeerError::Fetch(format!(
                "{root} is not in this node's IPFS store and no IPFS peer is connected to fetch it from \
                 (connect one with `serve --ipfs-peers MULTIADDR`)"
            )));
        }
        let mut stats = FetchStats::default();
        let mut queue: VecDeque<(Cid, Vec<PeerId>)> = VecDeque::from([(root, hints)]);
        let mut seen: HashSet<Cid> = HashSet::from([root]);
        let mut pending: HashMap<Cid, ()> = HashMap::new();
        let mut inflight = FuturesUnordered::new();
        let mut last_progress = Instant::now();
        loop {
            while inflight.len() < WINDOW
                && let Some((cid, hints)) = queue.pop_front()
            {
                pending.insert(cid, ());
                inflight.push(self.block(cid, hints));
            }
            let left = stall.saturating_sub(last_progress.elapsed());
            let next = match tokio::time::timeout(left, inflight.next()).await {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(_) => {
                    drop(inflight);
                    let mut why = String::new();
                    for cid in pending.keys() {
                        let w = self.engine.give_up(*cid);
                        if why.is_empty() {
                            why = format!("block {cid}: {w}");
                        }
                    }
                    return Err(PeerError::Fetch(format!(
                        "fetching {root}: no block arrived for {} s ({} of the DAG's blocks so far; {why})",
                        stall.as_secs(),
                        stats.blocks
                    )));
                }
            };
            let (cid, res) = next;
            pending.remove(&cid);
            let decoded = res.and_then(|(data, from, fetched)| {
                if cid.codec() != bacalhau_ipfs::CODEC_DAG_PB {
                    return Ok((data, from, fetched, Vec::new()));
                }
                let node = bacalhau_ipfs::dagpb::decode_node(&data).map_err(|e| e.to_string())?;
                Ok((data, from, fetched, node.links.into_iter().map(|l| l.0).collect()))
            });
            let (data, from, fetched, children) = match decoded {
                Ok(d) => d,
                Err(e) => {
                    // The walk ends here: withdraw the other wants so no peer keeps sending.
                    drop(inflight);
                    for c in pending.keys() {
                        self.engine.give_up(*c);
                    }
                    return Err(PeerError::Fetch(format!("fetching {root}: block {cid}: {e}")));
                }
            };
            last_progress = Instant::now();
            stats.blocks += 1;
            if fetched {
                stats.fetched += 1;
                stats.bytes += data.len() as u64;
            }
            if !children.is_empty() {
                let hint: Vec<PeerId> = from.into_iter().collect();
                for child in children {
                    if seen.insert(child) {
                        queue.push_back((child, hint.clone()));
                    }
                }
            }
        }
        Ok(stats)
    }

    /// One block: from the store when present, else from peers.
    async fn block(&self, cid: Cid, hints: Vec<PeerId>) -> (Cid, Result<(bytes::Bytes, Option<PeerId>, bool), String>) {
        let store = self.store.clone();
        let local = tokio::task::spawn_blocking(move || store.get(&cid)).await;
        match local {
            Ok(Ok(Some(data))) => return (cid, Ok((bytes::Bytes::from(data), None, false))),
            Ok(Err(e)) => return (cid, Err(e.to_string())),
            _ => {}
        }
        let rx = self.engine.want(cid, &hints);
        match rx.await {
            Ok(Ok((data, from))) => (cid, Ok((data, from, true))),
            Ok(Err(e)) => (cid, Err(e)),
            Err(_) => (cid, Err("the IPFS peer stopped".into())),
        }
    }
}

async fn drive(
    mut swarm: libp2p::Swarm<Behaviour>,
    engine: Arc<bitswap::Engine>,
    mut cmds: mpsc::UnboundedReceiver<Command>,
    addrs: watch::Sender<Vec<Multiaddr>>,
    peering: Vec<Multiaddr>,
) {
    let mut dials: HashMap<ConnectionId, oneshot::Sender<Result<PeerId, String>>> = HashMap::new();
    let mut tick = tokio::time::interval(PEERING_INTERVAL);
    let redialling: Arc<Mutex<HashSet<ConnectionId>>> = Arc::default();
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return,
                Some(Command::Dial(addr, reply)) => {
                    let opts = DialOpts::from(addr);
                    let id = opts.connection_id();
                    match swarm.dial(opts) {
                        Ok(()) => { dials.insert(id, reply); }
                        Err(e) => { let _ = reply.send(Err(e.to_string())); }
                    }
                }
            },
            _ = tick.tick() => {
                for addr in &peering {
                    let connected = peer_of(addr).is_some_and(|p| swarm.is_connected(&p));
                    if !connected {
                        let opts = DialOpts::from(addr.clone());
                        let id = opts.connection_id();
                        if swarm.dial(opts).is_ok() {
                            redialling.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                        }
                    }
                }
            }
            event = swarm.select_next_some() => match event {
                SwarmEvent::NewListenAddr { address, .. } => {
                    tracing::info!("IPFS peer listening on {address}/p2p/{}", swarm.local_peer_id());
                    addrs.send_modify(|a| a.push(address));
                }
                SwarmEvent::ExpiredListenAddr { address, .. } => addrs.send_modify(|a| a.retain(|x| *x != address)),
                SwarmEvent::ConnectionEstablished { peer_id, connection_id, num_established, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) { let _ = reply.send(Ok(peer_id)); }
                    if num_established.get() == 1 {
                        tracing::debug!(%peer_id, "IPFS peer connected");
                        engine.peer_connected(peer_id);
                    }
                }
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. } => {
                    tracing::debug!(%peer_id, "IPFS peer disconnected");
                    engine.peer_disconnected(peer_id);
                }
                SwarmEvent::OutgoingConnectionError { connection_id, error, .. } => {
                    if let Some(reply) = dials.remove(&connection_id) { let _ = reply.send(Err(error.to_string())); }
                    else if redialling.lock().unwrap_or_else(|p| p.into_inner()).remove(&connection_id) {
                        tracing::debug!("re-dialling a peering peer failed: {error}");
                    }
                }
                _ => {}
            }
        }
    }
}

impl bacalhau_ipfs::Fetcher for Peer {
    fn fetch(&self, root: Cid, providers: Vec<String>) -> bacalhau_ipfs::FetchFuture<'_> {
        Box::pin(async move {
            let addrs: Vec<Multiaddr> = providers.iter().filter_map(|a| a.parse().ok()).collect();
            self.fetch_dag(root, &addrs, self.stall).await.map(drop).map_err(|e| e.to_string())
        })
    }
}
