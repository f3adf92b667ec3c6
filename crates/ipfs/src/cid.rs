//! Content identifiers over SHA-256.

use std::fmt;

use sha2::{Digest, Sha256};

/// Multicodec of dag-pb blocks.
pub const CODEC_DAG_PB: u64 = 0x70;
/// Multicodec of raw blocks.
pub const CODEC_RAW: u64 = 0x55;
const SHA2_256: u8 = 0x12;

/// A CID whose multihash is SHA-256.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cid {
    version: u8,
    codec: u64,
    digest: [u8; 32],
}

impl Cid {
    /// The CID of `block`: version 0 (dag-pb only) or 1.
    pub fn of(version: u8, codec: u64, block: &[u8]) -> Self {
        let version = if codec == CODEC_DAG_PB { version.min(1) } else { 1 };
        Self { version, codec, digest: Sha256::digest(block).into() }
    }

    /// The CID version.
    pub fn version(&self) -> u8 {
        self.version
    }

    /// The block's codec.
    pub fn codec(&self) -> u64 {
        self.codec
    }

    /// The binary form, as it appears in dag-pb links.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(36);
        if self.version == 1 {
            crate::dagpb::varint(&mut out, 1);
            crate::dagpb::varint(&mut out, self.codec);
        }
        out.push(SHA2_256);
        out.push(32);
        out.extend_from_slice(&self.digest);
        out
    }
}

/// Why a CID could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{input:?} is not a CID this node can use: {reason}")]
pub struct CidError {
    input: String,
    reason: &'static str,
}

fn read_varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

impl Cid {
    /// Parses the binary form at the start of `bytes`; returns the CID and its length.
    pub fn read_bytes(bytes: &[u8]) -> Option<(Cid, usize)> {
        if bytes.len() >= 34 && bytes[0] == SHA2_256 && bytes[1] == 32 {
            let digest = bytes[2..34].try_into().ok()?;
            return Some((Cid { version: 0, codec: CODEC_DAG_PB, digest }, 34));
        }
        let (version, a) = read_varint(bytes)?;
        let (codec, b) = read_varint(bytes.get(a..)?)?;
        let rest = bytes.get(a + b..)?;
        if version != 1 || rest.len() < 34 || rest[0] != SHA2_256 || rest[1] != 32 {
            return None;
        }
        let digest = rest[2..34].try_into().ok()?;
        Some((Cid { version: 1, codec, digest }, a + b + 34))
    }

    /// Parses a CID string: `Qm…` (CIDv0) or multibase base32 `b…` (CIDv1), SHA-256 only.
    pub fn parse(s: &str) -> Result<Cid, CidError> {
        let err = |reason| CidError { input: s.to_owned(), reason };
        let t = s.trim();
        let bytes = if t.starts_with("Qm") {
            bs58::decode(t).into_vec().map_err(|_| err("it is not valid base58"))?
        } else if let Some(b32) = t.strip_prefix('b') {
            base32_decode(b32).ok_or_else(|| err("it is not valid base32"))?
        } else {
            return Err(err("expected a CIDv0 (Qm...) or a base32 CIDv1 (b...)"));
        };
        match Cid::read_bytes(&bytes) {
            Some((cid, n)) if n == bytes.len() && (cid.codec == CODEC_DAG_PB || cid.codec == CODEC_RAW) => Ok(cid),
            Some(_) => Err(err("only dag-pb and raw CIDs with SHA-256 are supported")),
            None => Err(err("it does not hold a SHA-256 multihash")),
        }
    }

    /// Whether `block` hashes to this CID.
    pub fn verifies(&self, block: &[u8]) -> bool {
        let d: [u8; 32] = Sha256::digest(block).into();
        d == self.digest
    }
}

fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'a'..=b'z' => c - b'a',
            b'2'..=b'7' => c - b'2' + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | u32::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits).to_le_bytes()[0]);
        }
    }
    Some(out)
}

/// RFC 4648 base32, lower case, no padding (multibase `b`).
fn base32_lower(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

impl fmt::Display for Cid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.version == 0 {
            f.write_str(&bs58::encode(self.to_bytes()).into_string())
        } else {
            write!(f, "b{}", base32_lower(&self.to_bytes()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_it_prints() {
        for s in [
            "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH",
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354",
        ] {
            assert_eq!(Cid::parse(s).expect("parse").to_string(), s);
        }
        assert!(Cid::parse("hello").is_err());
        assert!(Cid::parse("Qm0000").is_err());
        assert!(Cid::parse("bafy!!").is_err());
    }

    #[test]
    fn prints_kubo_forms() {
        // The empty raw block and the empty UnixFS file, from kubo.
        assert_eq!(
            Cid::of(1, CODEC_RAW, b"").to_string(),
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        );
        let empty_file = [0x0a, 0x04, 0x08, 0x02, 0x18, 0x00];
        assert_eq!(Cid::of(0, CODEC_DAG_PB, &empty_file).to_string(), "QmbFMke1KXqnYyBBWxB74N4c5SBnJMVAiMNRcGu6x1AwQH");
        assert_eq!(Cid::of(0, CODEC_DAG_PB, &empty_file).to_bytes().len(), 34);
        assert_eq!(Cid::of(1, CODEC_DAG_PB, &empty_file).to_bytes().len(), 36);
    }
}
