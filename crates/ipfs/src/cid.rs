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
