//! The IPIP-499 CID-profile fixtures (shared/reference/ipfs.md §1.9): ChaCha20-generated files
//! and the folders on either side of the HAMT threshold, for both profiles and both of kubo's
//! threshold rules.

use std::path::Path;

use bacalhau_ipfs::{BlockStore, ImportOptions, Importer};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use sha2::{Digest, Sha256};

/// kubo's deterministic test bytes: the ChaCha20 keystream with key sha256(seed), zero nonce.
fn keystream(seed: &str, len: usize) -> Vec<u8> {
    let key: [u8; 32] = Sha256::digest(seed.as_bytes()).into();
    let mut cipher = chacha20::ChaCha20::new(&key.into(), &[0u8; 12].into());
    let mut out = vec![0u8; len];
    cipher.apply_keystream(&mut out);
    out
}

/// A folder of files containing "x", named from one keystream: `count` names of `len`
/// characters, then one of `last_len` when given.
fn fixture_dir(dir: &Path, seed: &str, count: usize, len: usize, last_len: Option<usize>) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz01234567890-_";
    let lens: Vec<usize> = std::iter::repeat_n(len, count).chain(last_len).collect();
    let stream = keystream(seed, lens.iter().sum());
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut at = 0;
    for n in lens {
        let name: String = stream[at..at + n].iter().map(|b| ALPHABET[usize::from(*b) % 39] as char).collect();
        at += n;
        std::fs::write(dir.join(name), "x").expect("write");
    }
}

fn cid_of_bytes(data: &[u8], opts: ImportOptions) -> String {
    Importer::new(opts, |_, _| Ok(())).file(data).expect("import").cid.to_string()
}

fn cid_of_path(path: &Path, opts: ImportOptions) -> String {
    Importer::new(opts, |_, _| Ok(())).path(path).expect("import").cid.to_string()
}

#[test]
fn chunk_boundaries_match_both_profiles() {
    let v0 = ImportOptions::v0();
    let data = keystream("chunk-v0-seed", 262_145);
    assert_eq!(cid_of_bytes(&data[..262_144], v0), "QmWmRj3dFDZdb6ABvbmKhEL6TmPbAfBZ1t5BxsEyJrcZhE");
    assert_eq!(cid_of_bytes(&data, v0), "QmYyLxtzZyW22zpoVAtKANLRHpDjZtNeDjQdJrcQNWoRkJ");
    let big = keystream("v0-seed", 174 * 262_144 + 1);
    assert_eq!(cid_of_bytes(&big[..174 * 262_144], v0), "QmUbBALi174SnogsUzLpYbD4xPiBSFANF4iztWCsHbMKh2");
    assert_eq!(cid_of_bytes(&big, v0), "QmV81WL765sC8DXsRhE5fJv2rwhS4icHRaf3J9Zk5FdRnW");
    let v1 = ImportOptions::unixfs_v1_2025();
    let data = keystream("chunk-v1-seed", 1_048_577);
    assert_eq!(cid_of_bytes(&data[..1_048_576], v1), "bafkreiacndfy443ter6qr2tmbbdhadvxxheowwf75s6zehscklu6ezxmta");
    assert_eq!(cid_of_bytes(&data, v1), "bafybeigmix7t42i6jacydtquhet7srwvgpizfg7gjbq7627d35mjomtu64");
}

#[test]
fn the_v0_hamt_threshold_follows_the_chosen_kubo_rule() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Σ(name + CID) = 4096 × (30 + 34) = 262144 exactly: plain for kubo ≥ 0.40, a HAMT before.
    let at = tmp.path().join("at");
    fixture_dir(&at, "hamt-unixfs-v0-2015", 4096, 30, None);
    assert_eq!(cid_of_path(&at, ImportOptions::v0()), "QmX5GtRk3TSSEHtdrykgqm4eqMEn3n2XhfkFAis5fjyZmN");
    assert_eq!(
        cid_of_path(&at, ImportOptions::v0().legacy_sharding()),
        "QmWCW8YwPBGWx2DGftBBKeack73sRpxaFYSh9sGmxpgcKb"
    );
    let over = tmp.path().join("over");
    fixture_dir(&over, "hamt-unixfs-v0-2015", 4033, 31, None);
    for opts in [ImportOptions::v0(), ImportOptions::v0().legacy_sharding()] {
        assert_eq!(cid_of_path(&over, opts), "QmeMiJzmhpJAUgynAcxTQYek5PPKgdv3qEvFsdV3XpVnvP");
    }
}

#[test]
fn the_2025_profile_shards_by_block_size() {
    let tmp = tempfile::tempdir().expect("tmp");
    let at = tmp.path().join("at");
    fixture_dir(&at, "hamt-unixfs-v1-2025", 4765, 11, Some(21));
    assert_eq!(
        cid_of_path(&at, ImportOptions::unixfs_v1_2025()),
        "bafybeic3h7rwruealwxkacabdy45jivq2crwz6bufb5ljwupn36gicplx4"
    );
    let over = tmp.path().join("over");
    fixture_dir(&over, "hamt-unixfs-v1-2025", 4765, 11, Some(22));
    assert_eq!(
        cid_of_path(&over, ImportOptions::unixfs_v1_2025()),
        "bafybeiegvuterwurhdtkikfhbxcldohmxp566vpjdofhzmnhv6o4freidu"
    );
}

#[test]
fn a_sharded_folder_exports_and_resolves_by_name() {
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    fixture_dir(&src, "hamt-unixfs-v0-2015", 4033, 31, None);
    let names: Vec<String> = std::fs::read_dir(&src)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf8"))
        .collect();
    std::fs::write(src.join(&names[7]), "distinct content\n").expect("write");
    let store = BlockStore::open(&tmp.path().join("store")).expect("store");
    let root = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).path(&src).expect("import");
    let listed = bacalhau_ipfs::read_dir(&store, &root.cid).expect("read_dir");
    assert_eq!(listed.len(), 4033);
    let found = bacalhau_ipfs::resolve(&store, &root.cid, &format!("/{}", names[7])).expect("resolve");
    let mut out = Vec::new();
    bacalhau_ipfs::cat(&store, &found, &mut out).expect("cat");
    assert_eq!(out, b"distinct content\n");
    let missing = bacalhau_ipfs::resolve(&store, &root.cid, "no-such-name").expect_err("missing");
    assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    let dest = tmp.path().join("out");
    bacalhau_ipfs::export(&store, &root.cid, &dest).expect("export");
    assert_eq!(std::fs::read_dir(&dest).expect("ls").count(), 4033);
    assert_eq!(std::fs::read(dest.join(&names[7])).expect("read"), b"distinct content\n");
    assert_eq!(std::fs::read(dest.join(&names[0])).expect("read"), b"x");
}
