//! Building DAGs block by block, whatever their shape: tests and fuzzers use it to make the
//! hostile ones (names listed twice, symlinks followed by same-named files, chains 100,000
//! levels deep, one block named a million times) that no importer would write.

use std::collections::HashMap;
use std::io;

use crate::dagpb::{Link, encode_node, unixfs_directory, unixfs_file, unixfs_symlink};
use crate::exporter::BlockSource;
use crate::{CODEC_DAG_PB, CODEC_RAW, Cid};

/// Blocks by CID, in memory.
#[derive(Debug, Default, Clone)]
pub struct Dag {
    blocks: HashMap<Cid, Vec<u8>>,
}

impl Dag {
    /// No blocks yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn put(&mut self, codec: u64, block: Vec<u8>) -> Cid {
        let cid = Cid::of(1, codec, &block);
        self.blocks.insert(cid, block);
        cid
    }

    /// A raw leaf.
    pub fn raw(&mut self, data: &[u8]) -> Cid {
        self.put(CODEC_RAW, data.to_vec())
    }

    /// A UnixFS file node with inline `data` and these children (CID, content size).
    pub fn file(&mut self, data: &[u8], children: &[(Cid, u64)]) -> Cid {
        let size = data.len() as u64 + children.iter().map(|c| c.1).sum::<u64>();
        let sizes: Vec<u64> = children.iter().map(|c| c.1).collect();
        let links: Vec<Link> =
            children.iter().map(|(c, s)| Link { hash: c.to_bytes(), name: String::new(), tsize: *s }).collect();
        self.put(CODEC_DAG_PB, encode_node(&links, Some(&unixfs_file(data, size, &sizes))))
    }

    /// A plain folder listing `entries` in the order given (repeats and all).
    pub fn dir(&mut self, entries: &[(&str, Cid)]) -> Cid {
        let links: Vec<Link> =
            entries.iter().map(|(n, c)| Link { hash: c.to_bytes(), name: (*n).to_owned(), tsize: 0 }).collect();
        self.put(CODEC_DAG_PB, encode_node(&links, Some(&unixfs_directory())))
    }

    /// A symlink to `target`.
    pub fn symlink(&mut self, target: &str) -> Cid {
        self.put(CODEC_DAG_PB, encode_node(&[], Some(&unixfs_symlink(target.as_bytes()))))
    }

    /// Writes every block into `store`.
    pub fn put_into(&self, store: &crate::BlockStore) -> io::Result<()> {
        self.blocks.iter().try_for_each(|(c, d)| store.put_bytes(c, d))
    }

    /// The DAG under `root` as a CAR v1 file.
    pub fn car(&self, root: &Cid) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        crate::export_car(self, root, &mut out)?;
        Ok(out)
    }
}

impl BlockSource for Dag {
    fn block(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>> {
        Ok(self.blocks.get(cid).cloned())
    }
}
