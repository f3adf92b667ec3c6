//! HAMT-sharded folders (UnixFS `HAMTShard`, ipfs.md §1.6): building them as kubo does and
//! reading them back. The layout is canonical: murmur3-x64-64 of the name, fanout 256, so
//! each level consumes one byte of the hash.

use std::io;

use crate::Cid;
use crate::dagpb::Link;

/// kubo's fanout: 256 slots, one hash byte per level.
pub const FANOUT: u64 = 256;
/// Multicodec of murmur3-x64-64, the only hash kubo shards with.
pub const MURMUR3_X64_64: u64 = 0x22;

/// The 8 bytes whose successive values pick the slot at each level: the first 64-bit half of
/// murmur3 x64_128 (seed 0), big-endian, as Go's `murmur3.New64().Sum(nil)` gives.
pub fn name_hash(name: &str) -> [u8; 8] {
    let h = murmur3::murmur3_x64_128(&mut name.as_bytes(), 0).unwrap_or_default();
    // The low 64 bits of the u128 are the first half of murmur3's output.
    let mut first = [0u8; 8];
    first.copy_from_slice(&h.to_le_bytes()[..8]);
    u64::from_le_bytes(first).to_be_bytes()
}

/// One folder entry waiting to be placed in a shard.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Its name in the folder.
    pub name: String,
    /// Its CID in binary form.
    pub hash: Vec<u8>,
    /// Its cumulative size.
    pub tsize: u64,
    key: [u8; 8],
}

impl Entry {
    /// An entry, hashing its name.
    pub fn new(name: String, cid: &Cid, tsize: u64) -> Self {
        let key = name_hash(&name);
        Self { key, name, hash: cid.to_bytes(), tsize }
    }
}

/// The set-bit map of occupied slots as a 256-bit big-endian integer with its leading zero
/// bytes stripped (go-bitfield's `Bytes()`).
fn bitfield(slots: &[u8]) -> Vec<u8> {
    let mut bits = [0u8; 32];
    for &s in slots {
        bits[31 - usize::from(s / 8)] |= 1 << (s % 8);
    }
    let first = bits.iter().position(|&b| b != 0).unwrap_or(bits.len());
    bits[first..].to_vec()
}

/// Builds the shard for `entries` at `depth` (0 for the folder's root), handing every block
/// to `emit` (which returns its CID). Returns the shard's CID and cumulative size.
pub fn build(
    mut entries: Vec<Entry>,
    depth: usize,
    emit: &mut dyn FnMut(&[u8]) -> io::Result<Cid>,
) -> io::Result<(Cid, u64)> {
    if depth >= 8 {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "two names have the same 64-bit HAMT hash"));
    }
    entries.sort_by_key(|e| e.key[depth]);
    let mut links = Vec::new();
    let mut slots = Vec::new();
    let mut children_size = 0;
    let mut rest = &mut entries[..];
    while let Some(first) = rest.first() {
        let slot = first.key[depth];
        let n = rest.iter().take_while(|e| e.key[depth] == slot).count();
        let (group, tail) = rest.split_at_mut(n);
        rest = tail;
        slots.push(slot);
        let link = if let [one] = group {
            Link { hash: one.hash.clone(), name: format!("{slot:02X}{}", one.name), tsize: one.tsize }
        } else {
            let (cid, tsize) = build(group.to_vec(), depth + 1, emit)?;
            Link { hash: cid.to_bytes(), name: format!("{slot:02X}"), tsize }
        };
        children_size += link.tsize;
        links.push(link);
    }
    let data = crate::dagpb::unixfs_hamt_shard(&bitfield(&slots), FANOUT);
    let block = crate::dagpb::encode_node(&links, Some(&data));
    let cid = emit(&block)?;
    Ok((cid, block.len() as u64 + children_size))
}

/// What a link of a shard points at.
#[derive(Debug, PartialEq, Eq)]
pub enum ShardLink<'a> {
    /// A deeper shard.
    Shard,
    /// A folder entry with this name.
    Entry(&'a str),
}

/// Classifies a shard link by its name: two hex digits alone lead to a sub-shard; two hex
/// digits followed by a name are an entry.
pub fn classify(link_name: &str) -> Option<ShardLink<'_>> {
    let prefix = link_name.get(..2)?;
    if !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    match &link_name[2..] {
        "" => Some(ShardLink::Shard),
        name => Some(ShardLink::Entry(name)),
    }
}

/// The slot prefix a name has at `depth`.
pub fn slot_prefix(name: &str, depth: usize) -> Option<String> {
    name_hash(name).get(depth).map(|b| format!("{b:02X}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfield_is_big_endian_without_leading_zeros() {
        assert_eq!(bitfield(&[0]), vec![1]);
        assert_eq!(bitfield(&[8, 1]), vec![1, 2]);
        assert_eq!(bitfield(&[255]).len(), 32);
        assert_eq!(bitfield(&[255])[0], 0x80);
    }

    #[test]
    fn link_names_are_classified() {
        assert_eq!(classify("0A"), Some(ShardLink::Shard));
        assert_eq!(classify("FFfile.txt"), Some(ShardLink::Entry("file.txt")));
        assert_eq!(classify("zz"), None);
        assert_eq!(classify("A"), None);
    }
}
