//! Properties: import then export gives the bytes back; the decoders never panic.

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use bacalhau_ipfs::{BlockStore, Cid, ImportOptions, Importer, dagpb};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn import_then_cat_round_trips(len in 0usize..700_000, seed in any::<u8>(), v1 in any::<bool>()) {
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect();
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BlockStore::open(tmp.path()).expect("store");
        let opts = if v1 { ImportOptions::v1() } else { ImportOptions::v0() };
        let root = Importer::new(opts, |c, d| store.put_bytes(c, d)).file(&data[..]).expect("import");
        prop_assert_eq!(root.filesize, len as u64);
        let mut out = Vec::new();
        bacalhau_ipfs::cat(&store, &root.cid, &mut out).expect("cat");
        prop_assert_eq!(out, data);
    }

    #[test]
    fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = dagpb::decode_node(&bytes);
        let _ = dagpb::decode_unixfs(&bytes);
        let _ = Cid::read_bytes(&bytes);
    }

    #[test]
    fn cid_strings_never_panic(s in "\\PC{0,80}") {
        let _ = Cid::parse(&s);
    }
}
