//! The node's IPFS side: its block store and the libp2p peer that serves and fetches blocks.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use bacalhau_ipfs::BlockStore;

/// A node's block store and peer.
#[derive(Clone, Debug)]
pub struct IpfsNode {
    /// The block store.
    pub store: Arc<BlockStore>,
    /// The libp2p peer.
    pub peer: bacalhau_ipfs_peer::Peer,
}

impl IpfsNode {
    /// Opens `<dir>/ipfs` and starts its peer, listening on `listen` and keeping `peers`
    /// connected (multiaddrs; `corrupt` is the test fault that serves corrupted blocks).
    pub async fn start(dir: &Path, listen: &[String], peers: &[String], corrupt: bool) -> Result<IpfsNode> {
        let store = Arc::new(BlockStore::open(&dir.join("ipfs"))?);
        let mut cfg = bacalhau_ipfs_peer::PeerConfig::loopback(&dir.join("ipfs"));
        cfg.listen = multiaddrs(listen, "--ipfs-listen")?;
        cfg.peers = multiaddrs(peers, "--ipfs-peers")?;
        #[cfg(feature = "test-faults")]
        if corrupt {
            tracing::warn!("--test-fault corrupt-blocks: this node serves corrupted blocks");
            cfg.fault = bacalhau_ipfs_peer::Fault::CorruptBlocks;
        }
        #[cfg(not(feature = "test-faults"))]
        let _ = corrupt;
        let peer = bacalhau_ipfs_peer::Peer::start(store.clone(), cfg).await.context("starting the IPFS peer")?;
        Ok(IpfsNode { store, peer })
    }

    /// The peer's multiaddrs as strings.
    pub fn addrs(&self) -> Vec<String> {
        self.peer.addrs().iter().map(ToString::to_string).collect()
    }

    /// What the API needs of it.
    pub fn api(&self) -> bacalhau_api::IpfsPeer {
        bacalhau_api::IpfsPeer {
            id: self.peer.id().to_string(),
            addrs: self.addrs(),
            fetcher: Arc::new(self.peer.clone()),
            peers: {
                let peer = self.peer.clone();
                Arc::new(move || peer.connected().len())
            },
        }
    }
}

fn multiaddrs(values: &[String], flag: &str) -> Result<Vec<bacalhau_ipfs_peer::Addr>> {
    values
        .iter()
        .map(|v| v.trim())
        .filter(|v| !v.is_empty())
        .map(|v| {
            v.parse()
                .with_context(|| format!("{flag} {v:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/4001/p2p/Qm...)"))
        })
        .collect()
}
