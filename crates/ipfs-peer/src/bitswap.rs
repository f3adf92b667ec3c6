//! Bitswap 1.2: the server that answers other peers' wants from our block store, and the
//! client that fetches the blocks we lack, one want-block at a time per CID, moving on to
//! another peer when one says DontHave, drops, or sends a block we did not ask for.
//!
//! Bitswap is message-based, not request/response: kubo writes its wants on a stream it opens
//! and reads only streams the other side opens, so every reply goes out on our own stream to
//! that peer (`send_loop`), never back on the stream the want came in on.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bacalhau_ipfs::{BlockStore, Cid};
use bytes::Bytes;
use libp2p::{PeerId, StreamProtocol};
use tokio::sync::{mpsc, oneshot};

use crate::message::{self, Message};

/// The protocol kubo dials first; 1.2 alone is enough to talk to it.
pub const PROTOCOL: StreamProtocol = StreamProtocol::new("/ipfs/bitswap/1.2.0");
/// Older ids kubo also accepts; we answer them with the same (1.2) messages, which 1.1 peers
/// read, minus presences.
pub const OLDER_PROTOCOLS: [StreamProtocol; 2] =
    [StreamProtocol::new("/ipfs/bitswap/1.1.0"), StreamProtocol::new("/ipfs/bitswap/1.0.0")];

/// kubo answers a want-have with the block itself when it is this small.
const INLINE_HAVE_SIZE: usize = 1024;
/// Wants of one peer we remember while we lack the block (kubo keeps 1024).
const MAX_LEDGER_PER_PEER: usize = 1024;
/// Replies are batched into messages of about this size (kubo's limit is 4 MiB).
const TARGET_MESSAGE: usize = 2 << 20;

/// A test-only misbehaviour of our own server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    #[default]
    None,
    /// Flip a byte of every block served, as a broken or malicious peer would.
    CorruptBlocks,
}

/// A block handed to the waiters of a want, and who sent it.
pub type Delivery = Result<(Bytes, Option<PeerId>), String>;

enum Out {
    Block(Cid),
    Presence(Cid, i32),
    Want { cid: Cid, want_type: i32 },
    Cancel(Cid),
}

#[derive(Default)]
struct Want {
    waiters: Vec<oneshot::Sender<Delivery>>,
    /// The peer our want-block went to.
    asked: Option<PeerId>,
    /// Peers that said DontHave, dropped, or misbehaved for this CID.
    tried: HashSet<PeerId>,
    /// Peers that said Have.
    haves: Vec<PeerId>,
    /// Peers to ask first (the one that gave us the parent block, or providers we were told of).
    hints: Vec<PeerId>,
}

#[derive(Default)]
struct State {
    connected: Vec<PeerId>,
    outbox: HashMap<PeerId, mpsc::UnboundedSender<Out>>,
    /// What each peer asked us for that we did not have yet (served when it arrives).
    ledger: HashMap<PeerId, HashMap<Cid, i32>>,
    wants: HashMap<Cid, Want>,
    /// Peers that sent blocks nobody asked for: a corrupted block hashes to a CID we never
    /// wanted. They get no more wants from us.
    bad: HashSet<PeerId>,
}

/// Counters for `ipfs stats`-like reporting and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Blocks we sent to peers.
    pub blocks_sent: u64,
    /// Blocks we received and kept.
    pub blocks_received: u64,
    /// Blocks refused because they matched nothing we asked for (corrupted or unsolicited).
    pub blocks_refused: u64,
}

/// Describes the IPFS peer's metrics and starts its counters at zero, so a node that has not
/// moved a block yet still shows them. Call once the recorder is installed.
pub fn describe_metrics() {
    use metrics::{Unit, counter, describe_counter, describe_gauge};
    describe_counter!("bacalhau_ipfs_blocks_sent_total", "Blocks sent to IPFS peers over bitswap");
    describe_counter!("bacalhau_ipfs_bytes_sent_total", Unit::Bytes, "Block bytes sent to IPFS peers over bitswap");
    describe_counter!("bacalhau_ipfs_blocks_received_total", "Blocks received from IPFS peers, verified and kept");
    describe_counter!(
        "bacalhau_ipfs_bytes_received_total",
        Unit::Bytes,
        "Block bytes received from IPFS peers, verified and kept"
    );
    describe_counter!("bacalhau_ipfs_blocks_refused_total", "Blocks refused: not asked for, or not matching their CID");
    describe_gauge!("bacalhau_ipfs_peers", "IPFS peers connected now (taken at each scrape)");
    for name in [
        "bacalhau_ipfs_blocks_sent_total",
        "bacalhau_ipfs_bytes_sent_total",
        "bacalhau_ipfs_blocks_received_total",
        "bacalhau_ipfs_bytes_received_total",
        "bacalhau_ipfs_blocks_refused_total",
    ] {
        counter!(name).increment(0);
    }
}

/// The bitswap engine of one peer.
pub struct Engine {
    store: Arc<BlockStore>,
    control: libp2p_stream::Control,
    fault: Fault,
    state: Mutex<State>,
    stats: Mutex<Stats>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("fault", &self.fault).finish_non_exhaustive()
    }
}

impl Engine {
    pub(crate) fn new(store: Arc<BlockStore>, control: libp2p_stream::Control, fault: Fault) -> Arc<Self> {
        Arc::new(Self { store, control, fault, state: Mutex::default(), stats: Mutex::default() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The counters so far.
    pub fn stats(&self) -> Stats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// CIDs we are asking peers for now.
    pub fn wants(&self) -> usize {
        self.lock().wants.len()
    }

    /// The peers connected now.
    pub fn connected(&self) -> Vec<PeerId> {
        self.lock().connected.clone()
    }

    pub(crate) fn peer_connected(self: &Arc<Self>, peer: PeerId) {
        let mut st = self.lock();
        if !st.connected.contains(&peer) {
            st.connected.push(peer);
        }
        // A new peer may have what nobody else had.
        let idle: Vec<Cid> = st.wants.iter().filter(|(_, w)| w.asked.is_none()).map(|(c, _)| *c).collect();
        for cid in idle {
            self.route(&mut st, cid);
        }
    }

    pub(crate) fn peer_disconnected(self: &Arc<Self>, peer: PeerId) {
        let mut st = self.lock();
        st.connected.retain(|p| *p != peer);
        st.outbox.remove(&peer);
        st.ledger.remove(&peer);
        let lost: Vec<Cid> = st.wants.iter().filter(|(_, w)| w.asked == Some(peer)).map(|(c, _)| *c).collect();
        for cid in lost {
            if let Some(w) = st.wants.get_mut(&cid) {
                w.asked = None;
                w.tried.insert(peer);
            }
            self.route(&mut st, cid);
        }
    }

    fn send(self: &Arc<Self>, st: &mut State, peer: PeerId, out: Out) {
        let out = match st.outbox.get(&peer) {
            Some(tx) => match tx.send(out) {
                Ok(()) => return,
                Err(back) => back.0,
            },
            None => out,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(out);
        st.outbox.insert(peer, tx);
        tokio::spawn(send_loop(self.clone(), peer, rx));
    }

    /// Sends a want-block for `cid` to the best peer that has not failed it yet.
    fn route(self: &Arc<Self>, st: &mut State, cid: Cid) {
        let Some(w) = st.wants.get(&cid) else { return };
        if w.asked.is_some() {
            return;
        }
        let usable = |p: &PeerId| st.connected.contains(p) && !w.tried.contains(p) && !st.bad.contains(p);
        let pick = w.hints.iter().chain(&w.haves).chain(&st.connected).find(|p| usable(p)).copied();
        if let Some(peer) = pick {
            if let Some(w) = st.wants.get_mut(&cid) {
                w.asked = Some(peer);
            }
            self.send(st, peer, Out::Want { cid, want_type: message::WANT_BLOCK });
        } else if !w.tried.is_empty() {
            // Every connected peer said DontHave, dropped or misbehaved: say so now rather than
            // at the stall timeout. (With nobody connected yet, wait: a peer may still come.)
            let why = describe(w, &st.connected, &st.bad);
            if let Some(w) = st.wants.remove(&cid) {
                for t in w.waiters {
                    let _ = t.send(Err(why.clone()));
                }
            }
        }
    }

    /// Asks for `cid` (unless another caller already is) and returns where its block will arrive.
    pub fn want(self: &Arc<Self>, cid: Cid, hints: &[PeerId]) -> oneshot::Receiver<Delivery> {
        let (tx, rx) = oneshot::channel();
        let mut st = self.lock();
        let w = st.wants.entry(cid).or_default();
        w.waiters.push(tx);
        for h in hints {
            if !w.hints.contains(h) {
                w.hints.push(*h);
            }
        }
        self.route(&mut st, cid);
        rx
    }

    /// Gives up on `cid` when nobody waits for it any more; says why the wait failed.
    pub fn give_up(self: &Arc<Self>, cid: Cid) -> String {
        let mut guard = self.lock();
        let st = &mut *guard;
        let Some(w) = st.wants.get_mut(&cid) else { return String::new() };
        w.waiters.retain(|t| !t.is_closed());
        let why = describe(w, &st.connected, &st.bad);
        if w.waiters.is_empty()
            && let Some(w) = st.wants.remove(&cid)
            && let Some(peer) = w.asked
        {
            self.send(st, peer, Out::Cancel(cid));
        }
        why
    }

    /// Handles one message from `peer`.
    pub(crate) async fn handle(self: &Arc<Self>, peer: PeerId, msg: Message) {
        tracing::trace!(
            %peer,
            blocks = msg.payload.len() + msg.blocks.len(),
            presences = msg.block_presences.len(),
            wants = msg.wantlist.as_ref().map_or(0, |w| w.entries.len()),
            "bitswap message in"
        );
        let blocks: Vec<(Vec<u8>, Bytes)> = msg
            .payload
            .into_iter()
            .map(|b| (b.prefix, b.data))
            .chain(msg.blocks.into_iter().map(|d| (vec![0, 0x70, 0x12, 0x20], Bytes::from(d))))
            .collect();
        if !blocks.is_empty() {
            self.receive_blocks(peer, blocks).await;
        }
        let mut st = self.lock();
        for p in msg.block_presences {
            let Some((cid, _)) = Cid::read_bytes(&p.cid) else { continue };
            let Some(w) = st.wants.get_mut(&cid) else { continue };
            if p.r#type == message::HAVE {
                if !w.haves.contains(&peer) {
                    w.haves.push(peer);
                }
            } else if w.asked == Some(peer) {
                w.asked = None;
                w.tried.insert(peer);
            } else {
                w.tried.insert(peer);
                continue;
            }
            self.route(&mut st, cid);
        }
        let Some(list) = msg.wantlist else { return };
        if list.full {
            st.ledger.remove(&peer);
        }
        for e in list.entries {
            let Some((cid, _)) = Cid::read_bytes(&e.block) else {
                if !e.cancel && e.send_dont_have {
                    // A CID we cannot even hold (another hash function): we certainly lack it.
                    tracing::debug!(%peer, "want for an unsupported CID");
                }
                continue;
            };
            if e.cancel {
                if let Some(l) = st.ledger.get_mut(&peer) {
                    l.remove(&cid);
                }
                continue;
            }
            if self.store.has(&cid) {
                let inline = e.want_type == message::WANT_HAVE
                    && self.store.size(&cid).is_some_and(|n| n <= INLINE_HAVE_SIZE as u64);
                let out = if e.want_type == message::WANT_BLOCK || inline {
                    Out::Block(cid)
                } else {
                    Out::Presence(cid, message::HAVE)
                };
                self.send(&mut st, peer, out);
            } else {
                if e.send_dont_have {
                    self.send(&mut st, peer, Out::Presence(cid, message::DONT_HAVE));
                }
                // Like kubo, remember the want (up to its limit per peer) and serve it if the
                // block arrives later.
                let ledger = st.ledger.entry(peer).or_default();
                if ledger.len() < MAX_LEDGER_PER_PEER {
                    ledger.insert(cid, e.want_type);
                }
            }
        }
    }

    async fn receive_blocks(self: &Arc<Self>, peer: PeerId, blocks: Vec<(Vec<u8>, Bytes)>) {
        // Hashing and writing are CPU and disk work: off the async threads.
        let store = self.store.clone();
        let checked = tokio::task::spawn_blocking(move || {
            blocks.into_iter().map(|(prefix, data)| (message::block_cid(&prefix, &data), data)).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut accepted = Vec::new();
        {
            let mut st = self.lock();
            for (cid, data) in checked {
                let wanted = cid.filter(|c| st.wants.contains_key(c));
                match wanted {
                    Some(cid) => accepted.push((cid, data)),
                    None if cid.is_some_and(|c| store.has(&c)) => {} // a duplicate: we asked twice
                    None => {
                        self.count(|s| s.blocks_refused += 1);
                        metrics::counter!("bacalhau_ipfs_blocks_refused_total").increment(1);
                        if st.bad.insert(peer) {
                            tracing::warn!(%peer, "peer sent a block that matches no CID we asked for (corrupted?): refused, and the peer is no longer asked");
                        }
                        let stuck: Vec<Cid> =
                            st.wants.iter().filter(|(_, w)| w.asked == Some(peer)).map(|(c, _)| *c).collect();
                        for c in stuck {
                            if let Some(w) = st.wants.get_mut(&c) {
                                w.asked = None;
                                w.tried.insert(peer);
                            }
                            self.route(&mut st, c);
                        }
                    }
                }
            }
        }
        if accepted.is_empty() {
            return;
        }
        let store = self.store.clone();
        let to_store = accepted.clone();
        let written = tokio::task::spawn_blocking(move || {
            to_store.iter().map(|(cid, data)| store.put_bytes(cid, data).map_err(|e| e.to_string())).collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut st = self.lock();
        for ((cid, data), ok) in accepted.into_iter().zip(written) {
            let Some(w) = st.wants.remove(&cid) else { continue };
            let len = data.len() as u64;
            let delivery = match ok {
                Ok(()) => Ok((data, Some(peer))),
                Err(e) => Err(format!("storing block {cid}: {e}")),
            };
            self.count(|s| s.blocks_received += 1);
            metrics::counter!("bacalhau_ipfs_blocks_received_total").increment(1);
            metrics::counter!("bacalhau_ipfs_bytes_received_total").increment(len);
            for t in w.waiters {
                let _ = t.send(delivery.clone());
            }
            if let Some(other) = w.asked.filter(|p| *p != peer) {
                self.send(&mut st, other, Out::Cancel(cid));
            }
            // Peers that asked us for it before we had it.
            let waiting: Vec<PeerId> =
                st.ledger.iter().filter(|(_, l)| l.contains_key(&cid)).map(|(p, _)| *p).collect();
            for p in waiting {
                if let Some(kind) = st.ledger.get_mut(&p).and_then(|l| l.remove(&cid)) {
                    let out =
                        if kind == message::WANT_BLOCK { Out::Block(cid) } else { Out::Presence(cid, message::HAVE) };
                    self.send(&mut st, p, out);
                }
            }
        }
    }

    fn block_for(&self, cid: &Cid) -> Option<message::Block> {
        let mut data = self.store.get(cid).ok().flatten()?;
        if self.fault == Fault::CorruptBlocks
            && let Some(b) = data.last_mut()
        {
            *b ^= 0x01;
        }
        Some(message::Block { prefix: message::prefix(cid), data: Bytes::from(data) })
    }
}

fn describe(w: &Want, connected: &[PeerId], bad: &HashSet<PeerId>) -> String {
    let mut parts = Vec::new();
    if connected.is_empty() {
        parts.push("no IPFS peer is connected (add one with `serve --ipfs-peers MULTIADDR`)".to_owned());
    }
    if let Some(p) = w.asked {
        parts.push(format!("waiting on {p}"));
    }
    let refused: Vec<String> = w.tried.iter().filter(|p| bad.contains(p)).map(|p| p.to_string()).collect();
    if !refused.is_empty() {
        parts.push(format!("refused corrupted blocks from {}", refused.join(", ")));
    }
    let lacking: Vec<String> = w.tried.iter().filter(|p| !bad.contains(p)).map(|p| p.to_string()).collect();
    if !lacking.is_empty() {
        parts.push(format!("peers without it or gone: {}", lacking.join(", ")));
    }
    if parts.is_empty() {
        parts.push(format!("no peer of the {} connected has it", connected.len()));
    }
    parts.join("; ")
}

/// Writes what we owe `peer` on a stream we opened to it, batching whatever is queued.
async fn send_loop(engine: Arc<Engine>, peer: PeerId, mut rx: mpsc::UnboundedReceiver<Out>) {
    let mut control = engine.control.clone();
    let mut stream: Option<libp2p::Stream> = None;
    while let Some(first) = rx.recv().await {
        let mut msg = Message::default();
        let mut size = 0usize;
        let mut next = Some(first);
        while let Some(out) = next {
            size += add(&engine, &mut msg, out);
            if size >= TARGET_MESSAGE {
                break;
            }
            next = rx.try_recv().ok();
        }
        let sent_blocks = msg.payload.len() as u64;
        let sent_bytes: u64 = msg.payload.iter().map(|b| b.data.len() as u64).sum();
        tracing::trace!(
            %peer,
            blocks = sent_blocks,
            presences = msg.block_presences.len(),
            wants = msg.wantlist.as_ref().map_or(0, |w| w.entries.len()),
            "bitswap message out"
        );
        let mut attempts = 0;
        loop {
            attempts += 1;
            if stream.is_none() {
                match control.open_stream(peer, PROTOCOL).await {
                    Ok(s) => stream = Some(s),
                    Err(e) => {
                        tracing::debug!(%peer, "cannot open a bitswap stream: {e}");
                        break;
                    }
                }
            }
            let Some(s) = stream.as_mut() else { break };
            match message::write(s, &msg).await {
                Ok(()) => {
                    engine.count(|st| st.blocks_sent += sent_blocks);
                    metrics::counter!("bacalhau_ipfs_blocks_sent_total").increment(sent_blocks);
                    metrics::counter!("bacalhau_ipfs_bytes_sent_total").increment(sent_bytes);
                    break;
                }
                Err(e) => {
                    tracing::debug!(%peer, "bitswap stream broke: {e}");
                    stream = None;
                    if attempts >= 2 {
                        break;
                    }
                }
            }
        }
    }
}

/// Adds one item to `msg`; returns its size.
fn add(engine: &Engine, msg: &mut Message, out: Out) -> usize {
    match out {
        Out::Block(cid) => match engine.block_for(&cid) {
            Some(b) => {
                let n = b.data.len();
                msg.payload.push(b);
                n
            }
            // Collected since it was asked for.
            None => {
                msg.block_presences.push(message::BlockPresence { cid: cid.to_bytes(), r#type: message::DONT_HAVE });
                40
            }
        },
        Out::Presence(cid, kind) => {
            msg.block_presences.push(message::BlockPresence { cid: cid.to_bytes(), r#type: kind });
            40
        }
        Out::Want { cid, want_type } => {
            let list = msg.wantlist.get_or_insert_with(Default::default);
            list.entries.push(message::Entry {
                block: cid.to_bytes(),
                priority: 1,
                cancel: false,
                want_type,
                send_dont_have: true,
            });
            40
        }
        Out::Cancel(cid) => {
            let list = msg.wantlist.get_or_insert_with(Default::default);
            list.entries.push(message::Entry { block: cid.to_bytes(), cancel: true, ..Default::default() });
            40
        }
    }
}

/// Reads every message `peer` sends on one inbound stream.
pub(crate) async fn read_loop(engine: Arc<Engine>, peer: PeerId, mut stream: libp2p::Stream) {
    loop {
        match message::read(&mut stream).await {
            Ok(Some(msg)) => engine.handle(peer, msg).await,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(%peer, "bitswap stream from peer ended: {e}");
                return;
            }
        }
    }
}

/// How long a fetch may go without any block arriving before it gives up.
pub const DEFAULT_STALL: Duration = Duration::from_secs(30);
