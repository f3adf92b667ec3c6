//! Any DAG a peer or a CAR can hand us (names twice, symlinks then same-named entries, deep
//! chains, shared children, bad names) is exported within its folder and its budget, or
//! refused; it never panics, never writes outside, never follows a symlink.
//!
//! The input is a little program that builds the DAG bottom-up with `craft`, so every link
//! points at a real block and the fuzzer explores shapes rather than hash collisions.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use bacalhau_ipfs::craft::Dag;
use bacalhau_ipfs::{Cid, ExportLimits};
use libfuzzer_sys::fuzz_target;

const NAMES: &[&str] = &["a", "b", "x", "..", ".", "", "a/b", "passwd", "x\0y", "outside"];

fn build(data: &[u8]) -> Option<(Dag, Cid)> {
    let mut dag = Dag::new();
    let mut made: Vec<Cid> = Vec::new();
    let mut it = data.iter().copied();
    // Blocks made in all: each run stays small, so the fuzzer explores shapes fast.
    let mut budget = 1024usize;
    while let Some(op) = it.next() {
        if budget == 0 {
            break;
        }
        let pick = |b: Option<u8>, made: &[Cid]| b.and_then(|b| made.get(b as usize % made.len().max(1)).copied());
        let cid = match op % 5 {
            0 => {
                let n = it.next().unwrap_or(0) as usize % 64;
                let bytes: Vec<u8> = it.by_ref().take(n).collect();
                dag.raw(&bytes)
            }
            1 => {
                let n = it.next().unwrap_or(0) as usize % 8;
                let kids: Vec<(Cid, u64)> = (0..n).filter_map(|_| pick(it.next(), &made)).map(|c| (c, 1)).collect();
                dag.file(b"x", &kids)
            }
            2 => {
                let n = it.next().unwrap_or(0) as usize % 8;
                let entries: Vec<(&str, Cid)> = (0..n)
                    .filter_map(|_| {
                        let name = NAMES[it.next().unwrap_or(0) as usize % NAMES.len()];
                        pick(it.next(), &made).map(|c| (name, c))
                    })
                    .collect();
                dag.dir(&entries)
            }
            3 => {
                let targets = ["/etc", "../..", "a", "/tmp/outside"];
                dag.symlink(targets[it.next().unwrap_or(0) as usize % targets.len()])
            }
            _ => {
                // A chain: the previous node wrapped `depth` times.
                let depth = (it.next().unwrap_or(0) as usize).min(budget);
                budget -= depth;
                let mut c = *made.last()?;
                for _ in 0..depth {
                    c = dag.dir(&[("d", c)]);
                }
                c
            }
        };
        budget = budget.saturating_sub(1);
        made.push(cid);
    }
    made.last().map(|root| (dag, *root))
}

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tmp")).path()
}

fuzz_target!(|data: &[u8]| {
    let Some((dag, root)) = build(data) else { return };
    let limits = ExportLimits { max_depth: 64, max_bytes: 1 << 16, max_blocks: 512 };
    let _ = bacalhau_ipfs::cat_with(&dag, &root, &mut std::io::sink(), limits);
    let base = scratch().join("run");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("mkdir");
    let out = base.join("out");
    let _ = bacalhau_ipfs::export_with(&dag, &root, &out, limits);
    // Nothing but `out` may appear next to it, whatever the DAG said.
    let siblings: Vec<_> = std::fs::read_dir(&base).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(siblings.iter().all(|n| n == "out"), "the export wrote beside its folder: {siblings:?}");
    assert!(!scratch().join("outside").exists() && !Path::new("/tmp/outside").exists());
});
