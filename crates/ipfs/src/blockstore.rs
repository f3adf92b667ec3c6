//! The on-disk block store: one file per block, written to a temporary name and renamed, so
//! after a crash a block is either wholly there or absent. Reads verify the hash.
//!
//! Pins (`pins/<cid>`, one label per line) keep a DAG alive; [`BlockStore::gc`] deletes every
//! block no pin reaches. Whoever adds blocks and pins them afterwards holds a
//! [`BlockStore::writer`] guard (a shared `flock` on `gc.lock`) in between, and the collector
//! takes the lock exclusively, so it never deletes a DAG that is being added, even from another
//! process (the CLI adding to the store of a running node).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::dagpb::decode_node;
use crate::{Block, CODEC_RAW, Cid};

/// A directory of blocks.
#[derive(Debug)]
pub struct BlockStore {
    dir: PathBuf,
    tmp_seq: AtomicU64,
    pins: Mutex<()>,
}

/// Held while adding blocks that will be pinned; garbage collection waits for it.
#[derive(Debug)]
pub struct WriteGuard {
    _lock: std::fs::File,
}

/// A pinned root and why it is pinned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pin {
    /// The root.
    pub cid: Cid,
    /// Who pinned it (e.g. "added by bacalhau ipfs add", "result of e-…").
    pub labels: Vec<String>,
}

/// Labels one pin records at most (see [`BlockStore::pin`]).
pub const MAX_PIN_LABELS: usize = 64;

/// What a garbage collection did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Blocks kept because a pin reaches them.
    pub kept: u64,
    /// Blocks deleted.
    pub removed: u64,
    /// Bytes freed.
    pub removed_bytes: u64,
}

/// Temporary files older than this are leftovers of a crash.
const STALE_TMP: Duration = Duration::from_secs(3600);

impl BlockStore {
    /// Opens (creating) the store under `dir`.
    pub fn open(dir: &Path) -> io::Result<Self> {
        std::fs::create_dir_all(dir.join("blocks"))?;
        std::fs::create_dir_all(dir.join("pins"))?;
        Ok(Self { dir: dir.to_owned(), tmp_seq: AtomicU64::new(0), pins: Mutex::new(()) })
    }

    /// Where the store lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn gc_lock(&self) -> io::Result<std::fs::File> {
        std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(self.dir.join("gc.lock"))
    }

    /// Blocks garbage collection until dropped (blocking while one runs).
    pub fn writer(&self) -> io::Result<WriteGuard> {
        let f = self.gc_lock()?;
        f.lock_shared()?;
        Ok(WriteGuard { _lock: f })
    }

    fn pin_path(&self, cid: &Cid) -> PathBuf {
        self.dir.join("pins").join(cid.to_string())
    }

    /// Pins `cid` (and everything below it) with a label saying why; pinning twice with the
    /// same label is a no-op. A pin records its first [`MAX_PIN_LABELS`] labels: a result
    /// every job publishes alike (the same output, the same CID) would otherwise grow one file
    /// by a line per job, rewritten whole each time. Later ones share the pin unrecorded, so
    /// it stays until its recorded labels are all removed.
    pub fn pin(&self, cid: &Cid, label: &str) -> io::Result<()> {
        let _g = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.pin_path(cid);
        let mut labels = read_labels(&path)?;
        let label = label.replace('\n', " ");
        if labels.contains(&label) || labels.len() >= MAX_PIN_LABELS {
            return Ok(());
        }
        labels.push(label);
        self.write_atomically(&path, labels.join("\n").as_bytes())
    }

    /// Removes one label from a pin (every label when `None`); the pin goes when none is left.
    /// Returns whether `cid` was pinned.
    pub fn unpin(&self, cid: &Cid, label: Option<&str>) -> io::Result<bool> {
        let _g = self.pins.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.pin_path(cid);
        let mut labels = read_labels(&path)?;
        if labels.is_empty() {
            return Ok(false);
        }
        labels.retain(|l| label.is_some_and(|x| x != l));
        if labels.is_empty() {
            std::fs::remove_file(&path)?;
        } else {
            self.write_atomically(&path, labels.join("\n").as_bytes())?;
        }
        Ok(true)
    }

    /// Every pin.
    pub fn pins(&self) -> io::Result<Vec<Pin>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(self.dir.join("pins"))? {
            let e = e?;
            let Some(cid) = e.file_name().to_str().and_then(|n| Cid::parse(n).ok()) else { continue };
            out.push(Pin { cid, labels: read_labels(&e.path())? });
        }
        out.sort_by_key(|p| p.cid.to_string());
        Ok(out)
    }

    /// Deletes every block that no pin reaches, waiting for writers to finish first.
    pub fn gc(&self) -> io::Result<GcReport> {
        let lock = self.gc_lock()?;
        lock.lock()?;
        let mut live = HashSet::new();
        for pin in self.pins()? {
            let mut todo = vec![pin.cid];
            while let Some(cid) = todo.pop() {
                if !live.insert(cid) || cid.codec() == CODEC_RAW {
                    continue;
                }
                // A pin whose blocks are partly missing keeps what it has.
                if let Ok(Some(data)) = self.get(&cid)
                    && let Ok(node) = decode_node(&data)
                {
                    todo.extend(node.links.iter().map(|l| l.0));
                }
            }
        }
        let mut report = GcReport::default();
        for shard in std::fs::read_dir(self.dir.join("blocks"))? {
            for e in std::fs::read_dir(shard?.path())? {
                let e = e?;
                let name = e.file_name();
                let name = name.to_string_lossy();
                let meta = e.metadata()?;
                if name.starts_with(".tmp-") {
                    let stale = meta.modified().ok().and_then(|m| SystemTime::now().duration_since(m).ok());
                    if stale.is_some_and(|age| age > STALE_TMP) {
                        std::fs::remove_file(e.path())?;
                    }
                    continue;
                }
                if Cid::parse(&name).is_ok_and(|c| live.contains(&c)) {
                    report.kept += 1;
                    continue;
                }
                std::fs::remove_file(e.path())?;
                report.removed += 1;
                report.removed_bytes += meta.len();
            }
        }
        Ok(report)
    }

    fn write_atomically(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        let parent = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
        let tmp = parent.join(format!(".tmp-{}-{}", std::process::id(), self.tmp_seq.fetch_add(1, Ordering::Relaxed)));
        std::fs::write(&tmp, data)?;
        std::fs::rename(&tmp, path)
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

    /// The block's size in bytes, if present (without reading it).
    pub fn size(&self, cid: &Cid) -> Option<u64> {
        std::fs::metadata(self.path(cid)).ok().map(|m| m.len())
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
        self.write_atomically(&path, data)
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

fn read_labels(path: &Path) -> io::Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ImportOptions, Importer};

    #[test]
    fn gc_keeps_what_pins_reach_and_deletes_the_rest() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BlockStore::open(tmp.path()).expect("store");
        let add =
            |data: &[u8]| Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).file(data).expect("add").cid;
        let big: Vec<u8> = (0..600_000u32).map(|i| (i / 3) as u8).collect();
        let kept = add(&big);
        let dropped = add(b"not pinned\n");
        store.pin(&kept, "test").expect("pin");
        store.pin(&kept, "test").expect("pin twice");
        store.pin(&kept, "another reason").expect("pin");
        assert_eq!(store.pins().expect("pins")[0].labels, vec!["test", "another reason"]);
        let report = store.gc().expect("gc");
        assert_eq!((report.removed, report.kept), (1, 4));
        assert!(store.has(&kept) && !store.has(&dropped));
        let mut out = Vec::new();
        crate::cat(&store, &kept, &mut out).expect("still readable");
        assert_eq!(out, big);
        assert!(store.unpin(&kept, Some("test")).expect("unpin one label"));
        assert_eq!(store.gc().expect("gc").removed, 0, "the other label still pins it");
        assert!(store.unpin(&kept, None).expect("unpin"));
        assert!(!store.unpin(&kept, None).expect("unpin again"));
        assert_eq!(store.gc().expect("gc").removed, 4);
        assert!(store.pins().expect("pins").is_empty());
    }

    #[test]
    fn a_pin_records_a_bounded_number_of_labels() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BlockStore::open(tmp.path()).expect("store");
        let cid = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d))
            .file(&b"same output"[..])
            .expect("add")
            .cid;
        for i in 0..MAX_PIN_LABELS + 50 {
            store.pin(&cid, &format!("result of execution e-{i}")).expect("pin");
        }
        let labels = &store.pins().expect("pins")[0].labels;
        assert_eq!(labels.len(), MAX_PIN_LABELS);
        assert_eq!(labels[0], "result of execution e-0");
        // An unrecorded owner's unpin leaves the pin to the recorded ones.
        assert!(store.unpin(&cid, Some("result of execution e-100")).expect("unpin"));
        assert_eq!(store.pins().expect("pins")[0].labels.len(), MAX_PIN_LABELS);
    }

    #[test]
    fn gc_waits_for_writers() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = std::sync::Arc::new(BlockStore::open(tmp.path()).expect("store"));
        let guard = store.writer().expect("writer");
        let cid =
            Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).file(&b"in flight"[..]).expect("add");
        let s = store.clone();
        let gc = std::thread::spawn(move || s.gc().expect("gc"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!gc.is_finished(), "gc must wait for the writer");
        store.pin(&cid.cid, "added").expect("pin");
        drop(guard);
        assert_eq!(gc.join().expect("join").removed, 0);
        assert!(store.has(&cid.cid));
    }
}
