//! `ipfs` inputs and the `ipfs` publisher, on the node's embedded block store.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bacalhau_executor::PreparedInput;
use bacalhau_ipfs::{BlockStore, Cid, Fetcher, ImportOptions, Importer};
use bacalhau_model::{ExecutionId, InputSource, PUBLISHER_IPFS, SOURCE_IPFS, SpecConfig};

use crate::{InputProvider, Publisher, StorageError};

fn cid_param(input: &InputSource) -> Result<Cid, StorageError> {
    let raw = input.source.param_str("CID").unwrap_or_default();
    Cid::parse(raw).map_err(|e| StorageError::Invalid(e.to_string()))
}

/// Mounts a CID from the node's block store (exported to disk, every block verified), first
/// fetching the blocks it lacks from IPFS peers when it has a [`Fetcher`].
#[derive(Debug)]
pub struct IpfsSource {
    store: Arc<BlockStore>,
    fetcher: Option<Arc<dyn Fetcher>>,
    /// Peers the orchestrator said hold a CID.
    providers: Mutex<HashMap<Cid, Vec<String>>>,
    /// The store's pinned roots, re-read at most every few seconds (node info asks often).
    roots: Mutex<(Option<std::time::Instant>, Vec<String>)>,
}

/// At most this many roots are reported for locality.
const MAX_ROOTS: usize = 10_000;
/// Provider hints kept before the oldest are dropped.
const MAX_HINTS: usize = 10_000;

impl IpfsSource {
    /// A source reading only from `store`.
    pub fn new(store: Arc<BlockStore>) -> Self {
        Self { store, fetcher: None, providers: Mutex::default(), roots: Mutex::default() }
    }

    /// A source that fetches what `store` lacks through `fetcher`.
    pub fn with_fetcher(store: Arc<BlockStore>, fetcher: Arc<dyn Fetcher>) -> Self {
        Self { store, fetcher: Some(fetcher), providers: Mutex::default(), roots: Mutex::default() }
    }
}

#[async_trait::async_trait]
impl InputProvider for IpfsSource {
    fn source_type(&self) -> &'static str {
        SOURCE_IPFS
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        let cid = cid_param(input)?;
        if self.fetcher.is_none() && !self.store.has(&cid) {
            return Err(StorageError::Invalid(format!(
                "CID {cid} is not in this node's IPFS store: add it with `bacalhau ipfs add` on the node"
            )));
        }
        Ok(())
    }

    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        let cid = cid_param(input)?;
        let dest = work_dir.join("ipfs");
        let store = self.store.clone();
        // Garbage collection must not delete the DAG between the fetch and the copy out.
        let s = store.clone();
        let _guard = tokio::task::spawn_blocking(move || s.writer())
            .await
            .map_err(|e| StorageError::Invalid(format!("locking the IPFS store crashed: {e}")))?
            .map_err(StorageError::io("locking the IPFS store"))?;
        if let Some(fetcher) = &self.fetcher {
            let hints = self.providers.lock().map(|m| m.get(&cid).cloned().unwrap_or_default()).unwrap_or_default();
            fetcher
                .fetch(cid, hints)
                .await
                .map_err(|e| StorageError::Invalid(format!("input CID {cid} could not be fetched: {e}")))?;
        }
        let d = dest.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(d.parent().unwrap_or(&d))?;
            bacalhau_ipfs::export_with(store.as_ref(), &cid, &d, bacalhau_ipfs::ExportLimits::with_max_bytes(max_bytes))
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("exporting {cid} crashed: {e}")))?
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::QuotaExceeded {
                StorageError::Refused(format!(
                    "input CID {cid} is larger than this job's disk budget of {max_bytes} bytes ({e}); \
                     ask for more with --disk"
                ))
            } else if e.kind() == std::io::ErrorKind::InvalidData {
                StorageError::Refused(format!("input CID {cid} cannot be used: {e}"))
            } else {
                StorageError::Io { context: format!("fetching input CID {cid}"), source: e }
            }
        })?;
        Ok(PreparedInput { host_path: dest, target: input.target.clone(), read_only: true })
    }

    fn held(&self) -> Vec<String> {
        let Ok(mut cache) = self.roots.lock() else { return Vec::new() };
        if cache.0.is_none_or(|t| t.elapsed() > std::time::Duration::from_secs(5)) {
            let pins = self.store.pins().unwrap_or_default();
            *cache =
                (Some(std::time::Instant::now()), pins.iter().take(MAX_ROOTS).map(|p| p.cid.to_string()).collect());
        }
        cache.1.clone()
    }

    fn is_local(&self, input: &InputSource) -> Option<bool> {
        cid_param(input).ok().map(|c| self.store.has(&c))
    }

    fn learn_providers(&self, providers: &BTreeMap<String, Vec<String>>) {
        let Ok(mut known) = self.providers.lock() else { return };
        // Hints are for the asks in flight; an old one only costs a dial, so forget in bulk.
        if known.len() > MAX_HINTS {
            known.clear();
        }
        for (cid, addrs) in providers {
            if let Ok(cid) = Cid::parse(cid) {
                known.insert(cid, addrs.clone());
            }
        }
    }
}

/// Adds the result folder to the node's block store and pins it; the result is its CID.
/// (Inputs are not pinned: they are copied out for the execution, under a writer guard.)
#[derive(Debug)]
pub struct IpfsPublisher {
    store: Arc<BlockStore>,
}

impl IpfsPublisher {
    /// A publisher writing into `store`.
    pub fn new(store: Arc<BlockStore>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl Publisher for IpfsPublisher {
    fn publisher_type(&self) -> &'static str {
        PUBLISHER_IPFS
    }

    async fn publish(&self, id: &ExecutionId, results_dir: &Path) -> Result<Option<SpecConfig>, StorageError> {
        let store = self.store.clone();
        let dir = results_dir.to_owned();
        let label = format!("result of execution {id}");
        let root = tokio::task::spawn_blocking(move || {
            let _guard = store.writer()?;
            let root = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).path(&dir)?;
            store.pin(&root.cid, &label)?;
            Ok::<_, std::io::Error>(root)
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("publishing crashed: {e}")))?
        .map_err(StorageError::io("adding the results to IPFS"))?;
        Ok(Some(SpecConfig::new(PUBLISHER_IPFS).with_param("CID", root.cid.to_string())))
    }
}
