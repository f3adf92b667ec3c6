//! A malformed dag-pb/UnixFS block, CID or HAMT link name returns an error; it never panics.
#![no_main]

use bacalhau_ipfs::{Cid, dagpb, hamt};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(node) = dagpb::decode_node(data) {
        let _ = dagpb::decode_unixfs(&node.data);
        for (_, name, _) in &node.links {
            let _ = hamt::classify(name);
        }
        // What decodes must encode back to a block that decodes to the same node.
        let links: Vec<dagpb::Link> = node
            .links
            .iter()
            .map(|(c, n, t)| dagpb::Link { hash: c.to_bytes(), name: n.clone(), tsize: *t })
            .collect();
        let again = dagpb::encode_node(&links, Some(&node.data));
        let back = dagpb::decode_node(&again).expect("re-encoded block decodes");
        assert_eq!(back.links, node.links);
    }
    let _ = dagpb::decode_unixfs(data);
    let _ = Cid::read_bytes(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Cid::parse(s);
    }
});
