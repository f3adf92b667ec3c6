//! CAR v1 export: a header naming the root, then every block of the DAG (depth first, each
//! once), as the trustless gateway's `application/vnd.ipld.car` response carries it.

use std::collections::HashSet;
use std::io::{self, Write};

use crate::dagpb::{decode_node, varint};
use crate::exporter::BlockSource;
use crate::{CODEC_RAW, Cid};

/// The CAR v1 header `{"roots": [root], "version": 1}` in dag-cbor.
fn header(root: &Cid) -> Vec<u8> {
    let cid = root.to_bytes();
    let mut h = vec![0xa2];
    h.push(0x65);
    h.extend_from_slice(b"roots");
    h.push(0x81);
    // Tag 42 (CID), then a byte string of 0x00 (identity multibase) and the CID.
    h.extend_from_slice(&[0xd8, 0x2a]);
    let len = cid.len() + 1;
    if len < 24 {
        h.push(0x40 | len as u8);
    } else {
        h.push(0x58);
        h.push(len as u8);
    }
    h.push(0x00);
    h.extend_from_slice(&cid);
    h.push(0x67);
    h.extend_from_slice(b"version");
    h.push(0x01);
    h
}

/// Writes the DAG under `root` as a CAR v1 stream; every block is verified first.
pub fn export_car(src: &dyn BlockSource, root: &Cid, out: &mut dyn Write) -> io::Result<()> {
    let h = header(root);
    let mut prefix = Vec::new();
    varint(&mut prefix, h.len() as u64);
    out.write_all(&prefix)?;
    out.write_all(&h)?;
    let mut stack = vec![*root];
    let mut seen = HashSet::new();
    while let Some(cid) = stack.pop() {
        if !seen.insert(cid) {
            continue;
        }
        let data = src
            .block(&cid)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("block {cid} is not available")))?;
        if !cid.verifies(&data) {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("block {cid} does not match its hash")));
        }
        let cid_bytes = cid.to_bytes();
        let mut len = Vec::new();
        varint(&mut len, (cid_bytes.len() + data.len()) as u64);
        out.write_all(&len)?;
        out.write_all(&cid_bytes)?;
        out.write_all(&data)?;
        if cid.codec() != CODEC_RAW {
            let node =
                decode_node(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{cid}: {e}")))?;
            // Reverse so children come out in link order.
            stack.extend(node.links.iter().rev().map(|l| l.0));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockStore, ImportOptions, Importer};

    fn read_varint(b: &[u8]) -> (u64, usize) {
        let mut v = 0u64;
        for (i, byte) in b.iter().enumerate() {
            v |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return (v, i + 1);
            }
        }
        panic!("bad varint")
    }

    #[test]
    fn writes_the_header_and_every_block_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let store = BlockStore::open(tmp.path()).expect("store");
        // Four identical leaves: the CAR holds the leaf once, plus the root.
        let data: Vec<u8> = (0..4 * 256 * 1024).map(|i| (i % 256) as u8).collect();
        let root = Importer::new(ImportOptions::v0(), |c, d| store.put_bytes(c, d)).file(&data[..]).expect("import");
        let mut car = Vec::new();
        export_car(&store, &root.cid, &mut car).expect("car");
        let (hlen, n) = read_varint(&car);
        let header = &car[n..n + hlen as usize];
        assert_eq!(header[0], 0xa2);
        assert!(header.windows(34).any(|w| w == root.cid.to_bytes().as_slice()), "root in header");
        let mut pos = n + hlen as usize;
        let mut blocks = Vec::new();
        while pos < car.len() {
            let (len, k) = read_varint(&car[pos..]);
            let body = &car[pos + k..pos + k + len as usize];
            let (cid, cl) = Cid::read_bytes(body).expect("cid");
            assert!(cid.verifies(&body[cl..]));
            blocks.push(cid);
            pos += k + len as usize;
        }
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0], root.cid);
    }
}
