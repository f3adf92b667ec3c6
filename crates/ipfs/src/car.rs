//! CAR v1 export: a header naming the root, then every block of the DAG (depth first, each
//! once), as the trustless gateway's `application/vnd.ipld.car` response carries it. CAR v1
//! and v2 import (what `ipfs dag export` and other tools write), verifying every block.

use std::collections::HashSet;
use std::io::{self, Read, Write};

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
    // A CBOR byte string's head: the length in the head byte when it is small, else in the
    // bytes after it (an identity-hashed CID can be long).
    let len = cid.len() + 1;
    match (u8::try_from(len), u16::try_from(len)) {
        (Ok(n), _) if n < 24 => h.push(0x40 | n),
        (Ok(n), _) => h.extend_from_slice(&[0x58, n]),
        (_, Ok(n)) => {
            h.push(0x59);
            h.extend_from_slice(&n.to_be_bytes());
        }
        _ => {
            h.push(0x5a);
            h.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        }
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
    export_car_path(src, root, &[], root, out)
}

/// Writes a CAR whose header names `root`: first the `trail` blocks (the folders on a path
/// from `root`), then the whole DAG under `target`, the path's end.
pub fn export_car_path(
    src: &dyn BlockSource,
    root: &Cid,
    trail: &[Cid],
    target: &Cid,
    out: &mut dyn Write,
) -> io::Result<()> {
    let h = header(root);
    let mut prefix = Vec::new();
    varint(&mut prefix, h.len() as u64);
    out.write_all(&prefix)?;
    out.write_all(&h)?;
    let mut seen = HashSet::new();
    // Trail blocks are written on their own, without following their other links.
    let mut stack: Vec<(Cid, bool)> = vec![(*target, true)];
    stack.extend(trail.iter().rev().map(|c| (*c, false)));
    while let Some((cid, follow)) = stack.pop() {
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
        if follow && cid.codec() != CODEC_RAW {
            let node =
                decode_node(&data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{cid}: {e}")))?;
            // Reverse so children come out in link order.
            stack.extend(node.links.iter().rev().map(|l| (l.0, true)));
        }
    }
    Ok(())
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("not a valid CAR file: {}", msg.into()))
}

/// Reads a varint; `None` at a clean end of input.
fn read_varint(r: &mut dyn Read) -> io::Result<Option<u64>> {
    let mut v = 0u64;
    for i in 0..10 {
        let mut b = [0u8];
        if r.read(&mut b)? == 0 {
            return if i == 0 { Ok(None) } else { Err(bad("truncated length")) };
        }
        v |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(Some(v));
        }
    }
    Err(bad("length varint too long"))
}

/// The few dag-cbor items a CAR header holds: a map of text keys to an int or an array of CIDs.
struct Cbor<'a>(&'a [u8]);

impl Cbor<'_> {
    fn head(&mut self) -> io::Result<(u8, u64)> {
        let (&first, rest) = self.0.split_first().ok_or_else(|| bad("header ends early"))?;
        self.0 = rest;
        let (major, info) = (first >> 5, first & 0x1f);
        let n = match info {
            0..=23 => return Ok((major, u64::from(info))),
            24 => 1,
            25 => 2,
            26 => 4,
            27 => 8,
            _ => return Err(bad("indefinite or reserved CBOR lengths in the header")),
        };
        if self.0.len() < n {
            return Err(bad("header ends early"));
        }
        let (num, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok((major, num.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))))
    }

    fn bytes(&mut self, n: u64) -> io::Result<&[u8]> {
        let n = usize::try_from(n).map_err(|_| bad("header field too long"))?;
        if self.0.len() < n {
            return Err(bad("header ends early"));
        }
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(b)
    }

    /// Skips one item of any kind the header might carry.
    fn skip(&mut self, depth: u32) -> io::Result<()> {
        if depth > 16 {
            return Err(bad("header nested too deeply"));
        }
        let (major, n) = self.head()?;
        // Every item takes at least a byte: a count past what is left is a lie.
        if matches!(major, 4 | 5) && n > self.0.len() as u64 {
            return Err(bad("a header list longer than the header"));
        }
        match major {
            0 | 1 | 7 => Ok(()),
            2 | 3 => self.bytes(n).map(|_| ()),
            4 => (0..n).try_for_each(|_| self.skip(depth + 1)),
            5 => (0..n * 2).try_for_each(|_| self.skip(depth + 1)),
            _ => self.skip(depth + 1),
        }
    }
}

/// Parses a CAR header: its version and roots.
fn parse_header(h: &[u8]) -> io::Result<(u64, Vec<Cid>)> {
    let mut c = Cbor(h);
    let (major, entries) = c.head()?;
    if major != 5 {
        return Err(bad("the header is not a map"));
    }
    let (mut version, mut roots) = (None, Vec::new());
    for _ in 0..entries {
        let (kmajor, klen) = c.head()?;
        if kmajor != 3 {
            return Err(bad("a header key is not text"));
        }
        match c.bytes(klen)? {
            b"version" => match c.head()? {
                (0, v) => version = Some(v),
                _ => return Err(bad("the version is not a number")),
            },
            b"roots" => {
                let (amajor, n) = c.head()?;
                if amajor != 4 {
                    return Err(bad("roots is not a list"));
                }
                for _ in 0..n {
                    let tagged = c.head()? == (6, 42);
                    let (bmajor, blen) = c.head()?;
                    let b = c.bytes(blen)?;
                    // Tag 42: a byte string holding 0x00 (identity multibase) and the binary CID.
                    let cid = match (tagged, bmajor, b.split_first()) {
                        (true, 2, Some((0, cid))) => Cid::read_bytes(cid).filter(|(_, n)| *n == cid.len()),
                        _ => None,
                    };
                    roots.push(cid.ok_or_else(|| bad("a root is not a CID this node supports"))?.0);
                }
            }
            _ => c.skip(0)?,
        }
    }
    Ok((version.ok_or_else(|| bad("the header has no version"))?, roots))
}

/// What a CAR import brought in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CarImport {
    /// The roots its header names.
    pub roots: Vec<Cid>,
    /// Blocks read (each verified against its CID).
    pub blocks: u64,
    /// Bytes of block data read.
    pub bytes: u64,
}

/// The largest block accepted (kubo's bitswap limit is 2 MiB; leave room).
const MAX_BLOCK: u64 = 4 << 20;

/// Reads a CAR v1 or v2 stream, verifying each block and handing it to `sink`.
pub fn import_car(reader: impl Read, sink: &mut dyn FnMut(&Cid, &[u8]) -> io::Result<()>) -> io::Result<CarImport> {
    let mut r = io::BufReader::with_capacity(1 << 20, reader);
    let hlen = read_varint(&mut r)?.ok_or_else(|| bad("the file is empty"))?;
    let hlen = header_len(hlen)?;
    let mut h = vec![0; hlen];
    r.read_exact(&mut h).map_err(|_| bad("the header is cut short"))?;
    let (version, mut roots) = parse_header(&h)?;
    match version {
        1 => read_blocks(&mut r, roots, sink),
        2 => {
            // CARv2: a 40-byte header (characteristics, data offset, data size, index offset),
            // then the CARv1 payload at the data offset; the index after it is not needed.
            let mut fixed = [0u8; 40];
            r.read_exact(&mut fixed).map_err(|_| bad("the CARv2 header is cut short"))?;
            let le = |at: usize| u64::from_le_bytes(fixed[at..at + 8].try_into().unwrap_or_default());
            let (offset, size) = (le(16), le(24));
            let consumed = 11 + 40;
            let skip = offset.checked_sub(consumed).ok_or_else(|| bad("CARv2 data offset inside its header"))?;
            io::copy(&mut (&mut r).take(skip), &mut io::sink())?;
            let mut inner = (&mut r).take(size);
            let hlen = read_varint(&mut inner)?.ok_or_else(|| bad("the CARv2 payload is empty"))?;
            let mut h = vec![0; header_len(hlen)?];
            inner.read_exact(&mut h).map_err(|_| bad("the inner header is cut short"))?;
            let (_, inner_roots) = parse_header(&h)?;
            if roots.is_empty() {
                roots = inner_roots;
            }
            read_blocks(&mut inner, roots, sink)
        }
        v => Err(bad(format!("CAR version {v}; this node reads versions 1 and 2"))),
    }
}

/// A header length read from the stream, refused past 1 MiB (a real one is under 100 bytes).
fn header_len(hlen: u64) -> io::Result<usize> {
    usize::try_from(hlen).ok().filter(|&n| n <= 1 << 20).ok_or_else(|| bad(format!("a header of {hlen} bytes")))
}

fn read_blocks(
    r: &mut dyn Read,
    roots: Vec<Cid>,
    sink: &mut dyn FnMut(&Cid, &[u8]) -> io::Result<()>,
) -> io::Result<CarImport> {
    let mut out = CarImport { roots, ..CarImport::default() };
    let mut buf = Vec::new();
    while let Some(len) = read_varint(r)? {
        let len = usize::try_from(len)
            .ok()
            .filter(|&n| n as u64 <= MAX_BLOCK)
            .ok_or_else(|| bad(format!("a section of {len} bytes (blocks are at most {MAX_BLOCK})")))?;
        buf.resize(len, 0);
        r.read_exact(&mut buf).map_err(|_| bad(format!("block {} is cut short", out.blocks + 1)))?;
        let (cid, n) =
            Cid::read_bytes(&buf).ok_or_else(|| bad(format!("block {} has no valid CID", out.blocks + 1)))?;
        let data = &buf[n..];
        if !cid.verifies(data) {
            return Err(bad(format!("block {cid} does not match its CID; nothing after it was read")));
        }
        sink(&cid, data)?;
        out.blocks += 1;
        out.bytes += data.len() as u64;
    }
    Ok(out)
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

    #[test]
    fn import_reads_back_what_export_wrote() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = BlockStore::open(&tmp.path().join("a")).expect("store");
        let data: Vec<u8> = (0..700_000u32).map(|i| (i * 13) as u8).collect();
        let root = Importer::new(ImportOptions::v1(), |c, d| a.put_bytes(c, d)).file(&data[..]).expect("import");
        let mut car = Vec::new();
        export_car(&a, &root.cid, &mut car).expect("car");
        let b = BlockStore::open(&tmp.path().join("b")).expect("store");
        let got = import_car(&car[..], &mut |c, d| b.put_bytes(c, d)).expect("import car");
        assert_eq!(got.roots, vec![root.cid]);
        // Two equal full chunks share a block: one leaf, the tail leaf and the root.
        assert_eq!(got.blocks, 3);
        let mut out = Vec::new();
        crate::cat(&b, &root.cid, &mut out).expect("cat");
        assert_eq!(out, data);
    }

    #[test]
    fn import_refuses_tampered_and_truncated_cars() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = BlockStore::open(tmp.path()).expect("store");
        let root =
            Importer::new(ImportOptions::v0(), |c, d| a.put_bytes(c, d)).file(&b"hello world\n"[..]).expect("add");
        let mut car = Vec::new();
        export_car(&a, &root.cid, &mut car).expect("car");
        let mut tampered = car.clone();
        let last = tampered.len() - 3;
        tampered[last] ^= 1;
        let err = import_car(&tampered[..], &mut |_, _| Ok(())).expect_err("tampered");
        assert!(err.to_string().contains("does not match its CID"), "{err}");
        let err = import_car(&car[..car.len() - 2], &mut |_, _| Ok(())).expect_err("truncated");
        assert!(err.to_string().contains("cut short"), "{err}");
        let err = import_car(&b"\x05hello"[..], &mut |_, _| Ok(())).expect_err("garbage");
        assert!(err.to_string().contains("not a valid CAR"), "{err}");
    }

    #[test]
    fn headers_with_impossible_lengths_are_refused() {
        // Found by the fuzzer (fuzz/): a map claiming 2^64/2 entries overflowed a count.
        let hex = "2db060606060608e606060606060606060bb9f9f9fb99f9fa26060606060606060606060606060606060316060606060606060606060ba6060603f6060606060603f";
        let bytes: Vec<u8> =
            (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap_or(0)).collect();
        assert!(import_car(&bytes[..], &mut |_, _| Ok(())).is_err());
    }

    #[test]
    fn import_reads_a_carv2_wrapper() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = BlockStore::open(tmp.path()).expect("store");
        let root = Importer::new(ImportOptions::v0(), |c, d| a.put_bytes(c, d)).file(&b"v2\n"[..]).expect("add");
        let mut v1 = Vec::new();
        export_car(&a, &root.cid, &mut v1).expect("car");
        // Pragma {"version": 2}, the fixed header, then the v1 payload at offset 51.
        let mut v2 = vec![0x0a, 0xa1, 0x67, b'v', b'e', b'r', b's', b'i', b'o', b'n', 0x02];
        v2.extend_from_slice(&[0u8; 16]);
        v2.extend_from_slice(&51u64.to_le_bytes());
        v2.extend_from_slice(&(v1.len() as u64).to_le_bytes());
        v2.extend_from_slice(&0u64.to_le_bytes());
        v2.extend_from_slice(&v1);
        let got = import_car(&v2[..], &mut |_, _| Ok(())).expect("v2");
        assert_eq!((got.roots, got.blocks), (vec![root.cid], 1));
    }
}
