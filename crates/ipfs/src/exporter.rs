//! CID → file or folder on disk, verifying every block against its CID.

use std::io::{self, Write};
use std::path::Path;

use crate::dagpb::{Node, Unixfs, UnixfsType, decode_node, decode_unixfs};
use crate::hamt;
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

/// Writes the file content of `cid` to `out`.
pub fn cat(src: &dyn BlockSource, cid: &Cid, out: &mut dyn Write) -> io::Result<()> {
    let data = fetch(src, cid)?;
    if cid.codec() == CODEC_RAW {
        return out.write_all(&data);
    }
    let node = decode_node(&data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    let fs = decode_unixfs(&node.data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    match fs.kind {
        UnixfsType::File | UnixfsType::Raw => {
            out.write_all(&fs.data)?;
            for (child, _, _) in &node.links {
                cat(src, child, out)?;
            }
            Ok(())
        }
        UnixfsType::Directory | UnixfsType::HamtShard => Err(invalid(format!("{cid} is a folder, not a file"))),
        other => Err(invalid(format!("{cid} is a {other:?}, not a file"))),
    }
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

/// Writes `cid` (a file, folder or symlink) to `dest`, which must not exist.
pub fn export(src: &dyn BlockSource, cid: &Cid, dest: &Path) -> io::Result<()> {
    let data = fetch(src, cid)?;
    if cid.codec() == CODEC_RAW {
        return std::fs::write(dest, data);
    }
    let node = decode_node(&data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    let fs = decode_unixfs(&node.data).map_err(|e| invalid(format!("{cid}: {e}")))?;
    match fs.kind {
        UnixfsType::File | UnixfsType::Raw => {
            let mut f = io::BufWriter::new(std::fs::File::create(dest)?);
            cat(src, cid, &mut f)?;
            f.flush()
        }
        UnixfsType::Directory | UnixfsType::HamtShard => {
            std::fs::create_dir_all(dest)?;
            for entry in entries(src, cid, &node, &fs, 0)? {
                let name = &entry.name;
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    return Err(invalid(format!("{cid} has an entry named {name:?}, which cannot be a file name")));
                }
                export(src, &entry.cid, &dest.join(name))?;
            }
            Ok(())
        }
        UnixfsType::Symlink => std::os::unix::fs::symlink(String::from_utf8_lossy(&fs.data).as_ref(), dest),
        UnixfsType::Other(t) => Err(invalid(format!("{cid} has UnixFS type {t}, which cannot be exported"))),
    }
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

    fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
        }
        out
    }
}
