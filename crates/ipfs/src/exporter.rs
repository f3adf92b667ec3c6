//! CID → file or folder on disk, verifying every block against its CID.

use std::io::{self, Write};
use std::path::Path;
use std::rc::Rc;

use crate::dagpb::{Node, Unixfs, UnixfsType, decode_node, decode_unixfs};
use crate::hamt;
use crate::safe_fs::{self, DirHandle};
use crate::{CODEC_RAW, Cid};

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Gets a block, verified. `None` means nobody has it.
pub trait BlockSource {
    /// The block with this CID.
    fn block(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>>;
}

impl BlockSource for crate::BlockStore {
    fn block(&self, cid: &Cid) -> io::Result<Option<Vec<u8>>> {
        self.get(cid)
    }
}

fn fetch(src: &dyn BlockSource, cid: &Cid) -> io::Result<Vec<u8>> {
    let data = src
        .block(cid)?
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("block {cid} is not available")))?;
    if !cid.verifies(&data) {
        return Err(invalid(format!("block {cid} does not match its hash; refusing it")));
    }
    Ok(data)
}

/// Bounds on one export or `cat`, so a hostile DAG (a chain 100,000 levels deep, a node that
/// names one block a million times, a 3 KiB CAR that expands to a terabyte) stops with an
/// error instead of exhausting the stack, the disk or the time of whoever reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExportLimits {
    /// The longest chain of blocks followed from the root (folders and file tree levels).
    pub max_depth: usize,
    /// File content bytes written, all files together.
    pub max_bytes: u64,
    /// Blocks read; a block named twice counts twice.
    pub max_blocks: u64,
}

/// kubo's DAGs are a handful of levels deep (a 1 TiB balanced file has 5); folders nest as
/// deep as people make them, and 256 is far past any real tree.
pub const MAX_DAG_DEPTH: usize = 256;

/// Links waiting to be visited: bounds the walk's memory whatever the DAG's width.
const MAX_PENDING: usize = 1 << 20;

impl Default for ExportLimits {
    fn default() -> Self {
        Self { max_depth: MAX_DAG_DEPTH, max_bytes: u64::MAX, max_blocks: 1 << 26 }
    }
}

impl ExportLimits {
    /// The default limits with at most `bytes` of content.
    pub fn with_max_bytes(bytes: u64) -> Self {
        Self { max_bytes: bytes, ..Self::default() }
    }
}

/// What an export wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// File content bytes.
    pub bytes: u64,
    /// Blocks read.
    pub blocks: u64,
}

/// The limits and what has been used of them.
struct Budget {
    limits: ExportLimits,
    used: ExportStats,
}

impl Budget {
    fn new(limits: ExportLimits) -> Self {
        Self { limits, used: ExportStats::default() }
    }

    fn fetch(&mut self, src: &dyn BlockSource, cid: &Cid, depth: usize) -> io::Result<Vec<u8>> {
        if depth > self.limits.max_depth {
            return Err(invalid(format!(
                "the DAG is more than {} levels deep at {cid}; refusing it",
                self.limits.max_depth
            )));
        }
        self.used.blocks += 1;
        if self.used.blocks > self.limits.max_blocks {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                format!("the DAG has more than {} blocks; refusing it", self.limits.max_blocks),
            ));
        }
        fetch(src, cid)
    }

    fn write(&mut self, out: &mut dyn Write, data: &[u8]) -> io::Result<()> {
        self.used.bytes += data.len() as u64;
        if self.used.bytes > self.limits.max_bytes {
            return Err(io::Error::new(
                io::ErrorKind::QuotaExceeded,
                format!("the content is larger than the {} bytes allowed for it", self.limits.max_bytes),
            ));
        }
        out.write_all(data)
    }
}

fn pending_check(len: usize) -> io::Result<()> {
    if len > MAX_PENDING {
        return Err(invalid(format!("the DAG is wider than {MAX_PENDING} pending links; refusing it")));
    }
    Ok(())
}

/// Writes the file content of `cid` to `out`.
pub fn cat(src: &dyn BlockSource, cid: &Cid, out: &mut dyn Write) -> io::Result<()> {
    cat_with(src, cid, out, ExportLimits::default()).map(|_| ())
}

/// [`cat`] within `limits`.
pub fn cat_with(
    src: &dyn BlockSource,
    cid: &Cid,
    out: &mut dyn Write,
    limits: ExportLimits,
) -> io::Result<ExportStats> {
    let mut budget = Budget::new(limits);
    cat_budget(src, cid, 0, None, out, &mut budget)?;
    Ok(budget.used)
}

/// The file under `root` (met at `depth`; `first` is its block when the caller has read it
/// already), depth first and iteratively: no DAG can exhaust the stack.
fn cat_budget(
    src: &dyn BlockSource,
    root: &Cid,
    depth: usize,
    mut first: Option<Vec<u8>>,
    out: &mut dyn Write,
    b: &mut Budget,
) -> io::Result<()> {
    let mut stack = vec![(*root, depth)];
    while let Some((cid, depth)) = stack.pop() {
        let data = match first.take() {
            Some(d) => d,
            None => b.fetch(src, &cid, depth)?,
        };
        if cid.codec() == CODEC_RAW {
            b.write(out, &data)?;
            continue;
        }
        let node = decode_node(&data).map_err(|e| invalid(format!("{cid}: {e}")))?;
        let fs = decode_unixfs(&node.data).map_err(|e| invalid(format!("{cid}: {e}")))?;
        match fs.kind {
            UnixfsType::File | UnixfsType::Raw => {
                b.write(out, &fs.data)?;
                stack.extend(node.links.iter().rev().map(|(child, _, _)| (*child, depth + 1)));
                pending_check(stack.len())?;
            }
            UnixfsType::Directory | UnixfsType::HamtShard => {
                return Err(invalid(format!("{cid} is a folder, not a file")));
            }
            other => return Err(invalid(format!("{cid} is a {other:?}, not a file"))),
        }
    }
    Ok(())
}

/// One entry of a folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Its name.
    pub name: String,
    /// What it points at.
    pub cid: Cid,
    /// Its cumulative size.
    pub tsize: u64,
}

/// Decodes a dag-pb block as UnixFS; `None` for a raw block (file content).
fn unixfs(cid: &Cid, data: &[u8]) -> io::Result<Option<(Node, Unixfs)>> {
    if cid.codec() == CODEC_RAW {
        return Ok(None);
    }
    let node = decode_node(data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    let fs = decode_unixfs(&node.data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    Ok(Some((node, fs)))
}

fn check_shard(cid: &Cid, fs: &Unixfs) -> io::Result<()> {
    if fs.fanout != Some(hamt::FANOUT) || fs.hash_type != Some(hamt::MURMUR3_X64_64) {
        return Err(invalid(format!(
            "{cid} is a HAMT shard with fanout {:?} and hash {:?}; only kubo's 256 and murmur3 are supported",
            fs.fanout, fs.hash_type
        )));
    }
    Ok(())
}

/// The entries of a folder node (plain, or a HAMT shard at `depth`, whose sub-shards are
/// fetched and flattened).
fn entries(src: &dyn BlockSource, cid: &Cid, node: &Node, fs: &Unixfs, depth: usize) -> io::Result<Vec<DirEntry>> {
    if fs.kind == UnixfsType::Directory {
        return Ok(node.links.iter().map(|(c, n, t)| DirEntry { name: n.clone(), cid: *c, tsize: *t }).collect());
    }
    check_shard(cid, fs)?;
    if depth >= 8 {
        return Err(invalid(format!("{cid}: HAMT deeper than its 64-bit hash allows")));
    }
    let mut out = Vec::new();
    for (child, name, tsize) in &node.links {
        match hamt::classify(name) {
            Some(hamt::ShardLink::Entry(n)) => out.push(DirEntry { name: n.to_owned(), cid: *child, tsize: *tsize }),
            Some(hamt::ShardLink::Shard) => {
                let data = fetch(src, child)?;
                match unixfs(child, &data)? {
                    Some((n, f)) if f.kind == UnixfsType::HamtShard => {
                        out.extend(entries(src, child, &n, &f, depth + 1)?)
                    }
                    _ => return Err(invalid(format!("{cid}: link {name:?} should lead to a HAMT shard"))),
                }
            }
            None => return Err(invalid(format!("{cid}: {name:?} is not a HAMT link name"))),
        }
    }
    Ok(out)
}

/// The entries of the folder `cid`, plain or HAMT-sharded.
pub fn read_dir(src: &dyn BlockSource, cid: &Cid) -> io::Result<Vec<DirEntry>> {
    let data = fetch(src, cid)?;
    match unixfs(cid, &data)? {
        Some((node, fs)) if matches!(fs.kind, UnixfsType::Directory | UnixfsType::HamtShard) => {
            entries(src, cid, &node, &fs, 0)
        }
        _ => Err(invalid(format!("{cid} is not a folder"))),
    }
}

/// Follows `path` (`a/b/c`, slashes at either end ignored) from the folder `root`.
pub fn resolve(src: &dyn BlockSource, root: &Cid, path: &str) -> io::Result<Cid> {
    resolve_trail(src, root, path).map(|(cid, _)| cid)
}

/// Like [`resolve`], also returning every block read on the way (folders and HAMT shards, in
/// order), which a verifying client needs to check the path.
pub fn resolve_trail(src: &dyn BlockSource, root: &Cid, path: &str) -> io::Result<(Cid, Vec<Cid>)> {
    let mut cur = *root;
    let mut trail = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        cur = lookup(src, &cur, segment, &mut trail)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("{root}/{path}: {cur} has no entry named {segment:?}"))
        })?;
    }
    Ok((cur, trail))
}

/// The size of the file content of `cid` (without reading the content).
pub fn file_size(src: &dyn BlockSource, cid: &Cid) -> io::Result<u64> {
    let data = fetch(src, cid)?;
    match unixfs(cid, &data)? {
        None => Ok(data.len() as u64),
        Some((node, fs)) if matches!(fs.kind, UnixfsType::File | UnixfsType::Raw) => {
            Ok(fs.filesize.unwrap_or(fs.data.len() as u64 + node.links.iter().map(|l| l.2).sum::<u64>()))
        }
        Some((_, fs)) if matches!(fs.kind, UnixfsType::Directory | UnixfsType::HamtShard) => {
            Err(invalid(format!("{cid} is a folder, not a file")))
        }
        Some((_, fs)) => Err(invalid(format!("{cid} is a {:?}, not a file", fs.kind))),
    }
}

/// The entry `name` of folder `dir`; in a HAMT only the shards on the name's hash path are read.
fn lookup(src: &dyn BlockSource, dir: &Cid, name: &str, trail: &mut Vec<Cid>) -> io::Result<Option<Cid>> {
    let mut cid = *dir;
    for depth in 0..8 {
        let data = fetch(src, &cid)?;
        trail.push(cid);
        let Some((node, fs)) = unixfs(&cid, &data)? else {
            return Err(invalid(format!("{dir} is a file, not a folder: it has no entry {name:?}")));
        };
        match fs.kind {
            UnixfsType::Directory if depth == 0 => return Ok(node.links.iter().find(|l| l.1 == name).map(|l| l.0)),
            UnixfsType::HamtShard => {
                check_shard(&cid, &fs)?;
                let prefix = hamt::slot_prefix(name, depth).unwrap_or_default();
                let Some((child, link, _)) = node.links.iter().find(|l| l.1.starts_with(&prefix)) else {
                    return Ok(None);
                };
                match hamt::classify(link) {
                    Some(hamt::ShardLink::Shard) => cid = *child,
                    Some(hamt::ShardLink::Entry(n)) => return Ok((n == name).then_some(*child)),
                    None => return Err(invalid(format!("{cid}: {link:?} is not a HAMT link name"))),
                }
            }
            _ => return Err(invalid(format!("{dir} is not a folder: it has no entry {name:?}"))),
        }
    }
    Err(invalid(format!("{dir}: HAMT deeper than its 64-bit hash allows")))
}

/// Writes `cid` (a file, folder or symlink) to `dest`, which must not exist (a folder may
/// also go into an empty folder).
pub fn export(src: &dyn BlockSource, cid: &Cid, dest: &Path) -> io::Result<()> {
    export_with(src, cid, dest, ExportLimits::default()).map(|_| ())
}

/// One entry still to write: its folder, its name and what it is.
struct Pending {
    parent: Rc<DirHandle>,
    name: String,
    cid: Cid,
    depth: usize,
}

/// [`export`] within `limits`. Everything is created under an open handle of `dest`, each
/// name once and exclusively, never through a symlink (see [`crate::safe_fs`]); a folder
/// that lists a name twice is refused.
pub fn export_with(src: &dyn BlockSource, cid: &Cid, dest: &Path, limits: ExportLimits) -> io::Result<ExportStats> {
    let mut b = Budget::new(limits);
    let data = b.fetch(src, cid, 0)?;
    let folder = match unixfs(cid, &data)? {
        None => None,
        Some((node, fs)) => match fs.kind {
            UnixfsType::Directory | UnixfsType::HamtShard => Some((node, fs)),
            UnixfsType::Symlink => {
                safe_fs::create_new_symlink(dest, &fs.data)?;
                return Ok(b.used);
            }
            UnixfsType::File | UnixfsType::Raw => None,
            UnixfsType::Other(t) => {
                return Err(invalid(format!("{cid} has UnixFS type {t}, which cannot be exported")));
            }
        },
    };
    let Some((node, fs)) = folder else {
        let mut f = io::BufWriter::new(safe_fs::create_new_file(dest)?);
        cat_budget(src, cid, 0, Some(data), &mut f, &mut b)?;
        f.flush()?;
        return Ok(b.used);
    };
    let root = Rc::new(DirHandle::create_root(dest)?);
    let mut stack = Vec::new();
    push_entries(src, cid, &node, &fs, &root, 0, &mut stack)?;
    while let Some(p) = stack.pop() {
        let data = b.fetch(src, &p.cid, p.depth)?;
        let Some((node, fs)) = unixfs(&p.cid, &data)? else {
            let mut f = p.parent.create_file(&p.name, safe_fs::FILE_MODE)?;
            b.write(&mut f, &data)?;
            continue;
        };
        match fs.kind {
            UnixfsType::File | UnixfsType::Raw => {
                let mut f = io::BufWriter::new(p.parent.create_file(&p.name, safe_fs::FILE_MODE)?);
                cat_budget(src, &p.cid, p.depth, Some(data), &mut f, &mut b)?;
                f.flush()?;
            }
            UnixfsType::Directory | UnixfsType::HamtShard => {
                let dir = Rc::new(p.parent.create_dir(&p.name)?);
                push_entries(src, &p.cid, &node, &fs, &dir, p.depth, &mut stack)?;
            }
            UnixfsType::Symlink => p.parent.create_symlink(&p.name, &fs.data)?,
            UnixfsType::Other(t) => {
                return Err(invalid(format!("{} has UnixFS type {t}, which cannot be exported", p.cid)));
            }
        }
    }
    Ok(b.used)
}

/// Queues the entries of the folder `cid` (written into `dir`), refusing bad or repeated names.
fn push_entries(
    src: &dyn BlockSource,
    cid: &Cid,
    node: &Node,
    fs: &Unixfs,
    dir: &Rc<DirHandle>,
    depth: usize,
    stack: &mut Vec<Pending>,
) -> io::Result<()> {
    let list = entries(src, cid, node, fs, 0)?;
    let mut names = std::collections::HashSet::with_capacity(list.len());
    let mut batch = Vec::with_capacity(list.len());
    for entry in list {
        safe_fs::check_name(&entry.name)
            .map_err(|_| invalid(format!("{cid} has an entry named {:?}, which cannot be a file name", entry.name)))?;
        if !names.insert(entry.name.clone()) {
            return Err(invalid(format!("{cid} lists the name {:?} twice; refusing it", entry.name)));
        }
        batch.push(Pending { parent: dir.clone(), name: entry.name, cid: entry.cid, depth: depth + 1 });
    }
    // Reversed, so entries are written in their folder's order.
    stack.extend(batch.into_iter().rev());
    pending_check(stack.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockStore, ImportOptions, Importer};

    #[test]
    fn import_then_export_round_trips_a_folder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let src = tmp.path().join("src");
        std::fs::create_dir_all(src.join("sub")).expect("mkdir");
        std::fs::write(src.join("sub/big.bin"), (0..700_000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>()).expect("w");
        std::fs::write(src.join("a.txt"), "alpha\n").expect("w");
        std::fs::write(src.join("empty"), "").expect("w");
        std::os::unix::fs::symlink("a.txt", src.join("link")).expect("ln");
        for opts in [ImportOptions::v0(), ImportOptions::v1()] {
            let store = BlockStore::open(&tmp.path().join(format!("store{}", opts.cid_version))).expect("store");
            let root = Importer::new(opts, |c, d| store.put_bytes(c, d)).path(&src).expect("import");
            let out = tmp.path().join(format!("out{}", opts.cid_version));
            export(&store, &root.cid, &out).expect("export");
            assert_eq!(
                std::fs::read(out.join("sub/big.bin")).expect("r"),
                std::fs::read(src.join("sub/big.bin")).expect("r")
            );
            assert_eq!(std::fs::read_to_string(out.join("a.txt")).expect("r"), "alpha\n");
            assert_eq!(std::fs::read(out.join("empty")).expect("r"), b"");
            assert_eq!(std::fs::read_link(out.join("link")).expect("r").to_str(), Some("a.txt"));
        }
    }

    #[test]
    fn a_corrupted_block_is_refused() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BlockStore::open(tmp.path()).expect("store");
        let root = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d))
            .file(&b"hello world\n"[..])
            .expect("import");
        let path = walk(tmp.path())
            .into_iter()
            .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == root.cid.to_string()))
            .expect("block file");
        std::fs::write(path, b"tampered").expect("tamper");
        let err = cat(&store, &root.cid, &mut Vec::new()).expect_err("refused");
        assert!(err.to_string().contains("does not match its hash"), "{err}");
    }

    use crate::craft::Dag;

    fn store_of(dag: &Dag, dir: &Path) -> BlockStore {
        let store = BlockStore::open(dir).expect("store");
        dag.put_into(&store).expect("put");
        store
    }

    #[test]
    fn a_symlink_followed_by_a_same_named_entry_writes_nothing_outside() {
        let tmp = tempfile::tempdir().expect("tmp");
        let victim = tmp.path().join("victim");
        std::fs::create_dir(&victim).expect("mkdir");
        let mut dag = Dag::new();
        let payload = dag.raw(b"owned");
        let inner = dag.dir(&[("passwd", payload)]);
        let link = dag.symlink(victim.to_str().expect("utf8"));
        let file_after_link = dag.dir(&[("x", link), ("x", payload)]);
        let dir_after_link = dag.dir(&[("x", link), ("x", inner)]);
        let store = store_of(&dag, &tmp.path().join("s"));
        for (i, root) in [file_after_link, dir_after_link].iter().enumerate() {
            let err = export(&store, root, &tmp.path().join(format!("out{i}"))).expect_err("refused");
            assert!(err.to_string().contains("twice"), "{err}");
            assert_eq!(std::fs::read_dir(&victim).expect("ls").count(), 0, "nothing written through the symlink");
        }
    }

    #[test]
    fn a_chain_100000_levels_deep_is_refused_without_overflowing_the_stack() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut dag = Dag::new();
        let mut file = dag.raw(b"end");
        let mut dir = dag.dir(&[]);
        for _ in 0..100_000 {
            file = dag.file(b"", &[(file, 3)]);
            dir = dag.dir(&[("d", dir)]);
        }
        let store = store_of(&dag, &tmp.path().join("s"));
        let err = cat(&store, &file, &mut Vec::new()).expect_err("too deep");
        assert!(err.to_string().contains("levels deep"), "{err}");
        let err = export(&store, &dir, &tmp.path().join("out")).expect_err("too deep");
        assert!(err.to_string().contains("levels deep"), "{err}");
    }

    #[test]
    fn expansion_stops_at_the_byte_budget() {
        let tmp = tempfile::tempdir().expect("tmp");
        let mut dag = Dag::new();
        // 64 KiB, named 174 times per level, 3 levels: 1.9 GB from a few blocks.
        let mut cid = dag.raw(&vec![7u8; 64 << 10]);
        let mut size = 64u64 << 10;
        for _ in 0..3 {
            cid = dag.file(b"", &vec![(cid, size); 174]);
            size *= 174;
        }
        let store = store_of(&dag, &tmp.path().join("s"));
        let limits = ExportLimits::with_max_bytes(10 << 20);
        let err = export_with(&store, &cid, &tmp.path().join("out"), limits).expect_err("over budget");
        assert_eq!(err.kind(), io::ErrorKind::QuotaExceeded, "{err}");
        let written = std::fs::metadata(tmp.path().join("out")).expect("meta").len();
        assert!(written <= 10 << 20, "{written}");
    }

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
        out
    }
}
