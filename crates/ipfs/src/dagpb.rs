//! dag-pb and UnixFS encoding, byte for byte as kubo writes it (ipfs.md §1.4): a node's Links
//! come before its Data; a link always carries Name (even empty) and Tsize; UnixFS fields in
//! tag order with `blocksizes` unpacked.

/// Appends a protobuf varint.
pub fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v.to_le_bytes()[0] | 0x80);
        v >>= 7;
    }
    out.push(v.to_le_bytes()[0]);
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

/// UnixFS `HAMTShard` data: the occupied-slot bitfield, murmur3-x64-64 (0x22), fanout.
pub fn unixfs_hamt_shard(bitfield: &[u8], fanout: u64) -> Vec<u8> {
    let mut out = vec![0x08, 0x05];
    bytes_field(&mut out, 0x12, bitfield);
    out.extend_from_slice(&[0x28, 0x22, 0x30]);
    varint(&mut out, fanout);
    out
}

/// UnixFS `Symlink` data.
pub fn unixfs_symlink(target: &[u8]) -> Vec<u8> {
    let mut out = vec![0x08, 0x04];
    bytes_field(&mut out, 0x12, target);
    out
}

/// Why a block could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed dag-pb/UnixFS block: {0}")]
pub struct DecodeError(&'static str);

/// A decoded dag-pb node.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Node {
    /// Its links, in order.
    pub links: Vec<(crate::Cid, String, u64)>,
    /// Its data.
    pub data: Vec<u8>,
}

/// The UnixFS node kinds this node can export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnixfsType {
    /// Raw data.
    Raw,
    /// A folder.
    Directory,
    /// A file (or a chunk of one).
    File,
    /// A symbolic link.
    Symlink,
    /// A HAMT-sharded folder.
    HamtShard,
    /// Something else.
    Other(u64),
}

/// Decoded UnixFS data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unixfs {
    /// What it is.
    pub kind: UnixfsType,
    /// Inline data (file bytes, symlink target).
    pub data: Vec<u8>,
    /// Bytes of file content below this node, when recorded.
    pub filesize: Option<u64>,
    /// A HAMT shard's hash function (multicodec).
    pub hash_type: Option<u64>,
    /// A HAMT shard's fanout.
    pub fanout: Option<u64>,
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&byte, rest) = self.b.split_first().ok_or(DecodeError("truncated varint"))?;
            self.b = rest;
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = usize::try_from(self.varint()?).map_err(|_| DecodeError("length too large"))?;
        if n > self.b.len() {
            return Err(DecodeError("length past the end of the block"));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn skip(&mut self, wire: u64) -> Result<(), DecodeError> {
        match wire {
            0 => self.varint().map(|_| ()),
            2 => self.bytes().map(|_| ()),
            _ => Err(DecodeError("unsupported wire type")),
        }
    }
}

/// Decodes a dag-pb block. Never panics on malformed input.
pub fn decode_node(block: &[u8]) -> Result<Node, DecodeError> {
    let mut r = Reader { b: block };
    let mut node = Node::default();
    while !r.b.is_empty() {
        let key = r.varint()?;
        match key {
            0x12 => {
                let mut l = Reader { b: r.bytes()? };
                let (mut hash, mut name, mut tsize) = (None, String::new(), 0);
                while !l.b.is_empty() {
                    match l.varint()? {
                        0x0a => hash = Some(l.bytes()?),
                        0x12 => {
                            name = String::from_utf8(l.bytes()?.to_vec())
                                .map_err(|_| DecodeError("link name is not UTF-8"))?
                        }
                        0x18 => tsize = l.varint()?,
                        k => l.skip(k & 7)?,
                    }
                }
                let hash = hash.ok_or(DecodeError("link without a hash"))?;
                let (cid, n) = crate::Cid::read_bytes(hash).ok_or(DecodeError("link hash is not a CID"))?;
                if n != hash.len() {
                    return Err(DecodeError("link hash has trailing bytes"));
                }
                node.links.push((cid, name, tsize));
            }
            0x0a => node.data = r.bytes()?.to_vec(),
            k => r.skip(k & 7)?,
        }
    }
    Ok(node)
}

/// Decodes UnixFS data (the Data of a dag-pb node).
pub fn decode_unixfs(data: &[u8]) -> Result<Unixfs, DecodeError> {
    let mut r = Reader { b: data };
    let mut kind = None;
    let mut inline = Vec::new();
    let mut filesize = None;
    let (mut hash_type, mut fanout) = (None, None);
    while !r.b.is_empty() {
        match r.varint()? {
            0x08 => {
                kind = Some(match r.varint()? {
                    0 => UnixfsType::Raw,
                    1 => UnixfsType::Directory,
                    2 => UnixfsType::File,
                    4 => UnixfsType::Symlink,
                    5 => UnixfsType::HamtShard,
                    other => UnixfsType::Other(other),
                })
            }
            0x12 => inline = r.bytes()?.to_vec(),
            0x18 => filesize = Some(r.varint()?),
            0x28 => hash_type = Some(r.varint()?),
            0x30 => fanout = Some(r.varint()?),
            k => r.skip(k & 7)?,
        }
    }
    let kind = kind.ok_or(DecodeError("UnixFS data without a Type"))?;
    Ok(Unixfs { kind, data: inline, filesize, hash_type, fanout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_what_it_encodes_and_rejects_garbage() {
        let leaf = encode_node(&[], Some(&unixfs_file(b"hi", 2, &[])));
        let cid = crate::Cid::of(0, crate::CODEC_DAG_PB, &leaf);
        let dir = encode_node(&[Link { hash: cid.to_bytes(), name: "a".into(), tsize: 9 }], Some(&unixfs_directory()));
        let n = decode_node(&dir).expect("decode");
        assert_eq!(n.links, vec![(cid, "a".to_owned(), 9)]);
        assert_eq!(decode_unixfs(&n.data).expect("unixfs").kind, UnixfsType::Directory);
        let l = decode_node(&leaf).expect("leaf");
        assert_eq!(decode_unixfs(&l.data).expect("unixfs").data, b"hi");
        for bad in [
            &[0x12u8, 0x05, 0x0a][..],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x12, 0x02, 0x0a, 0x01][..],
        ] {
            assert!(decode_node(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn hello_world_leaf_matches_kubo() {
        let block = encode_node(&[], Some(&unixfs_file(b"hello world\n", 12, &[])));
        let hex: String = block.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "0a12080212".to_owned() + "0c68656c6c6f20776f726c640a180c");
    }
}
