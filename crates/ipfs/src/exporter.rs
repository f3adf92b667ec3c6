//! CID → file or folder on disk, verifying every block against its CID.

use std::io::{self, Write};
use std::path::Path;

use crate::dagpb::{UnixfsType, decode_node, decode_unixfs};
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
        UnixfsType::Directory => {
            std::fs::create_dir_all(dest)?;
            for (child, name, _) in &node.links {
                if name.is_empty() || name == "." || name == ".." || name.contains('/') {
                    return Err(invalid(format!("{cid} has an entry named {name:?}, which cannot be a file name")));
                }
                export(src, child, &dest.join(name))?;
            }
            Ok(())
        }
        UnixfsType::Symlink => std::os::unix::fs::symlink(String::from_utf8_lossy(&fs.data).as_ref(), dest),
        UnixfsType::HamtShard => {
            Err(invalid(format!("{cid} is a HAMT-sharded folder, which this node cannot export yet")))
        }
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
