//! Our peer against our peer over real TCP on loopback: fetching a DAG, a peer that serves
//! corrupted blocks, and a peer that drops mid-transfer.

use std::sync::Arc;
use std::time::Duration;

use bacalhau_ipfs::{BlockStore, Cid, ImportOptions, Importer};
use bacalhau_ipfs_peer::{Fault, Peer, PeerConfig};
use bacalhau_testkit::random_bytes;

struct Node {
    peer: Peer,
    store: Arc<BlockStore>,
    _dir: tempfile::TempDir,
}

async fn node(fault: Fault) -> Node {
    let dir = tempfile::tempdir().expect("tmp");
    let store = Arc::new(BlockStore::open(&dir.path().join("store")).expect("store"));
    let cfg = PeerConfig { fault, ..PeerConfig::loopback(dir.path()) };
    let peer = Peer::start(store.clone(), cfg).await.expect("peer starts");
    Node { peer, store, _dir: dir }
}

fn add(store: &BlockStore, bytes: &[u8], opts: ImportOptions) -> Cid {
    Importer::new(opts, |c, d| store.put_bytes(c, d)).file(bytes).expect("import").cid
}

fn read(store: &BlockStore, cid: &Cid) -> Vec<u8> {
    let mut out = Vec::new();
    bacalhau_ipfs::cat(store, cid, &mut out).expect("cat");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_fetches_a_whole_dag_from_another() {
    let (a, b) = (node(Fault::None).await, node(Fault::None).await);
    let bytes = random_bytes(5 * 1024 * 1024 + 17, 1);
    let v0 = add(&a.store, &bytes, ImportOptions::v0());
    let v1 = add(&a.store, &bytes, ImportOptions::v1());
    assert!(!b.store.has(&v0));
    let stats = b.peer.fetch_dag(v0, &a.peer.addrs(), Duration::from_secs(10)).await.expect("fetch v0");
    assert_eq!(stats.fetched, stats.blocks);
    assert!(stats.blocks > 20, "{stats:?}");
    assert_eq!(read(&b.store, &v0), bytes);
    // Raw leaves and CIDv1, and this time the peers are already connected.
    b.peer.fetch_dag(v1, &[], Duration::from_secs(10)).await.expect("fetch v1");
    assert_eq!(read(&b.store, &v1), bytes);
    // Fetching what is already here moves nothing.
    let again = b.peer.fetch_dag(v0, &[], Duration::from_secs(10)).await.expect("again");
    assert_eq!(again.fetched, 0);
    assert!(a.peer.stats().blocks_sent >= stats.blocks);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_cid_fails_naming_the_block_and_the_peers_asked() {
    let (a, b) = (node(Fault::None).await, node(Fault::None).await);
    let elsewhere = tempfile::tempdir().expect("tmp");
    let other = BlockStore::open(elsewhere.path()).expect("store");
    let missing = add(&other, b"nobody has this\n", ImportOptions::v0());
    // The only peer says DontHave: the fetch fails at once (not at the stall time).
    let err = b.peer.fetch_dag(missing, &a.peer.addrs(), Duration::from_secs(600)).await.expect_err("missing");
    let msg = err.to_string();
    assert!(msg.contains(&missing.to_string()) && msg.contains("peers without it"), "{msg}");
    assert!(msg.contains(&a.peer.id().to_string()), "names the peer that said DontHave: {msg}");
    // With no peer at all, the message says how to add one.
    let lonely = node(Fault::None).await;
    let err = lonely.peer.fetch_dag(missing, &[], Duration::from_secs(1)).await.expect_err("alone");
    assert!(err.to_string().contains("--ipfs-peers"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blocks_are_refused_and_never_stored() {
    let (bad, good, b) = (node(Fault::CorruptBlocks).await, node(Fault::None).await, node(Fault::None).await);
    let bytes = random_bytes(600_000, 2);
    let cid = add(&bad.store, &bytes, ImportOptions::v0());
    // Only the corrupting peer holds it: the fetch fails and says why.
    let err = b.peer.fetch_dag(cid, &bad.peer.addrs(), Duration::from_secs(3)).await.expect_err("corrupted");
    assert!(err.to_string().contains("corrupted"), "{err}");
    assert!(!b.store.has(&cid));
    assert!(b.peer.stats().blocks_refused >= 1);
    assert_eq!(b.peer.wants_in_flight(), 0, "a failed fetch withdraws its wants");
    let blocks = std::fs::read_dir(b.store.dir().join("blocks")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(blocks, 0, "nothing was written");
    // An honest peer with the same DAG: the fetch completes from it.
    add(&good.store, &bytes, ImportOptions::v0());
    b.peer.fetch_dag(cid, &good.peer.addrs(), Duration::from_secs(10)).await.expect("from the good peer");
    assert_eq!(read(&b.store, &cid), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transfer_finishes_from_another_peer_when_one_drops() {
    let (a, c, b) = (node(Fault::None).await, node(Fault::None).await, node(Fault::None).await);
    let bytes = random_bytes(64 * 1024 * 1024, 3);
    let cid = add(&a.store, &bytes, ImportOptions::v0());
    add(&c.store, &bytes, ImportOptions::v0());
    b.peer.connect(&c.peer.addrs()[0]).await.expect("connect c");
    let fetch = {
        let peer = b.peer.clone();
        let a_addrs = a.peer.addrs();
        tokio::spawn(async move { peer.fetch_dag(cid, &a_addrs, Duration::from_secs(10)).await })
    };
    // Let some blocks arrive from A, then stop A.
    let start = std::time::Instant::now();
    while a.peer.stats().blocks_sent < 20 && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let sent_before = a.peer.stats().blocks_sent;
    drop(a);
    let stats = fetch.await.expect("join").expect("finished from C");
    assert_eq!(b.peer.wants_in_flight(), 0);
    assert!(sent_before < stats.blocks, "A was stopped mid-transfer ({sent_before} of {} blocks)", stats.blocks);
    assert!(c.peer.stats().blocks_sent > 0, "C served the rest");
    assert_eq!(read(&b.store, &cid), bytes);
}
