//! `ipfs` inputs and the `ipfs` publisher, on the node's embedded block store.

use std::path::Path;
use std::sync::Arc;

use bacalhau_executor::PreparedInput;
use bacalhau_ipfs::{BlockStore, Cid, ImportOptions, Importer};
use bacalhau_model::{ExecutionId, InputSource, PUBLISHER_IPFS, SOURCE_IPFS, SpecConfig};

use crate::{InputProvider, Publisher, StorageError};

fn cid_param(input: &InputSource) -> Result<Cid, StorageError> {
    let raw = input.source.param_str("CID").unwrap_or_default();
    Cid::parse(raw).map_err(|e| StorageError::Invalid(e.to_string()))
}

/// Mounts a CID from the node's block store (exported to disk, every block verified).
#[derive(Debug)]
pub struct IpfsSource {
    store: Arc<BlockStore>,
}

impl IpfsSource {
    /// A source reading from `store`.
    pub fn new(store: Arc<BlockStore>) -> Self {
        Self { store }
    }
}

#[async_trait::async_trait]
impl InputProvider for IpfsSource {
    fn source_type(&self) -> &'static str {
        SOURCE_IPFS
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        let cid = cid_param(input)?;
        if !self.store.has(&cid) {
            return Err(StorageError::Invalid(format!(
                "CID {cid} is not in this node's IPFS store: add it with `bacalhau ipfs add` on the node"
            )));
        }
        Ok(())
    }

    async fn prepare(&self, input: &InputSource, work_dir: &Path) -> Result<PreparedInput, StorageError> {
        let cid = cid_param(input)?;
        let dest = work_dir.join("ipfs");
        let store = self.store.clone();
        let d = dest.clone();
        tokio::task::spawn_blocking(move || {
            // Garbage collection must not delete the DAG while it is being copied out.
            let _guard = store.writer()?;
            std::fs::create_dir_all(d.parent().unwrap_or(&d))?;
            bacalhau_ipfs::export(store.as_ref(), &cid, &d)
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("exporting {cid} crashed: {e}")))?
        .map_err(StorageError::io(format!("fetching input CID {cid}")))?;
        Ok(PreparedInput { host_path: dest, target: input.target.clone(), read_only: true })
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
