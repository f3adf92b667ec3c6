//! The on-disk block store: one file per block, written to a temporary name and renamed, so
//! after a crash a block is either wholly there or absent. Reads verify the hash.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Block, Cid};

/// A directory of blocks.
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    tmp_seq: AtomicU64,
}

impl BlockStore {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("blocks"))?;
        Ok(Self { dir: dir.to_owned(), tmp_seq: AtomicU64::new(0) })
    }

    fn path(&self, cid: &Cid) -> PathBuf {
        let s = cid.to_string();
        // Spread blocks over subfolders by the CID's last two characters, as kubo's flatfs does.
        let shard = s.get(s.len().saturating_sub(3)..s.len().saturating_sub(1)).unwrap_or("00").to_owned();
        self.dir.join("blocks").join(shard).join(s)
    }

    /// Whether the block is present.
    pub fn has(&self, cid: &Cid) -> bool {
        self.path(cid).exists()
    }

    /// Stores a block (a no-op when present).
    pub fn put(&self, block: &Block) -> io::Result<()> {
        self.put_bytes(&block.cid, &block.data)
    }

    /// Stores a block given as CID and bytes (a no-op when present).
    pub fn put_bytes(&self, cid: &Cid, data: &[u8]) -> io::Result<()> {
        let path = self.path(cid);
        if path.exists() {
            return Ok(());
        }
        let parent = path.parent().ok_or_else(|| io::Error::other("block path has no parent"))?;
        std::fs::create_dir_all(parent)?;
        let tmp = parent.join(format!(".tmp-{}-{}", std::process::id(), self.tmp_seq.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, &path)
    }

    /// Reads a block, checking it against its CID; `None` when absent.
    pub fn get(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>> {
        match std::fs::read(self.path(cid)) {
            Ok(data) if cid.verifies(&data) => Ok(Some(data)),
            Ok(_) => {
                Err(io::Error::new(io::ErrorKind::InvalidData, format!("block {cid} on disk does not match its hash")))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
