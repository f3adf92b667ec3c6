//! dag-pb and UnixFS encoding, byte for byte as kubo writes it (ipfs.md §1.4): a node's Links
//! come before its Data; a link always carries Name (even empty) and Tsize; UnixFS fields in
//! tag order with `blocksizes` unpacked.

/// Appends a protobuf varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(out: &mut Vec<u8>, tag: u8, data: &[u8]) {
    out.push(tag);
    varint(out, data.len() as u64);
    out.extend_from_slice(data);
}

/// One link of a dag-pb node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The child's CID in binary form.
    pub hash: Vec<u8>,
    /// The entry name (empty for file chunks).
    pub name: String,
    /// The child's cumulative size.
    pub tsize: u64,
}

/// Encodes a dag-pb node: links first, then data.
pub fn encode_node(links: &[Link], data: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for l in links {
        let mut inner = Vec::with_capacity(l.hash.len() + l.name.len() + 16);
        bytes_field(&mut inner, 0x0a, &l.hash);
        bytes_field(&mut inner, 0x12, l.name.as_bytes());
        inner.push(0x18);
        varint(&mut inner, l.tsize);
        bytes_field(&mut out, 0x12, &inner);
    }
    if let Some(d) = data {
        bytes_field(&mut out, 0x0a, d);
    }
    out
}

/// UnixFS `File` data: Type, Data (when non-empty), filesize (always), blocksizes.
pub fn unixfs_file(data: &[u8], filesize: u64, blocksizes: &[u64]) -> Vec<u8> {
    let mut out = vec![0x08, 0x02];
    if !data.is_empty() {
        bytes_field(&mut out, 0x12, data);
    }
    out.push(0x18);
    varint(&mut out, filesize);
    for b in blocksizes {
        out.push(0x20);
        varint(&mut out, *b);
    }
    out
}

/// UnixFS `Directory` data.
pub fn unixfs_directory() -> Vec<u8> {
    vec![0x08, 0x01]
}

/// UnixFS `Symlink` data.
pub fn unixfs_symlink(target: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08, 0x04];
    bytes_field(&mut out, 0x12, target);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_world_leaf_matches_kubo() {
        let block = encode_node(&[], Some(&unixfs_file(b"hello world\n", 12, &[])));
        let hex: String = block.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0a12080212".to_owned() + "0c68656c6c6f20776f726c640a180c");
    }
}
