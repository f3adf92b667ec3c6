//! Bitswap 1.2 messages (boxo `bitswap/message/pb/message.proto`) and their framing on a
//! libp2p stream: an unsigned-varint length, then the protobuf.

use bacalhau_ipfs::Cid;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use prost::Message as _;

/// kubo refuses messages over 4 MiB; blocks are at most 2 MiB, so a reply never needs more.
pub const MAX_MESSAGE: usize = 4 << 20;

/// A whole bitswap message.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Message {
    #[prost(message, optional, tag = "1")]
    pub wantlist: Option<Wantlist>,
    /// Bitswap 1.0 blocks (CIDv0 only); read, never written.
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub blocks: Vec<Vec<u8>>,
    #[prost(message, repeated, tag = "3")]
    pub payload: Vec<Block>,
    #[prost(message, repeated, tag = "4")]
    pub block_presences: Vec<BlockPresence>,
    #[prost(int32, tag = "5")]
    pub pending_bytes: i32,
}

/// The sender's wants (a delta unless `full`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Wantlist {
    #[prost(message, repeated, tag = "1")]
    pub entries: Vec<Entry>,
    #[prost(bool, tag = "2")]
    pub full: bool,
}

/// Want-block is 0, want-have 1.
pub const WANT_BLOCK: i32 = 0;
/// See [`WANT_BLOCK`].
pub const WANT_HAVE: i32 = 1;
/// Block presence: the sender has the block.
pub const HAVE: i32 = 0;
/// Block presence: the sender does not have it.
pub const DONT_HAVE: i32 = 1;

/// One want (or a cancel of one).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Entry {
    #[prost(bytes = "vec", tag = "1")]
    pub block: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub priority: i32,
    #[prost(bool, tag = "3")]
    pub cancel: bool,
    #[prost(int32, tag = "4")]
    pub want_type: i32,
    #[prost(bool, tag = "5")]
    pub send_dont_have: bool,
}

/// A block: its CID's prefix (version, codec, hash function, digest length) and its bytes; the
/// receiver hashes the bytes to get the CID, which is the integrity check.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Block {
    #[prost(bytes = "vec", tag = "1")]
    pub prefix: Vec<u8>,
    #[prost(bytes = "bytes", tag = "2")]
    pub data: bytes::Bytes,
}

/// Have or DontHave for a CID.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlockPresence {
    #[prost(bytes = "vec", tag = "1")]
    pub cid: Vec<u8>,
    #[prost(int32, tag = "2")]
    pub r#type: i32,
}

/// The prefix that, with SHA-256 of the data, rebuilds `cid`.
pub fn prefix(cid: &Cid) -> Vec<u8> {
    let mut out = Vec::with_capacity(4);
    bacalhau_ipfs::dagpb::varint(&mut out, u64::from(cid.version()));
    bacalhau_ipfs::dagpb::varint(&mut out, cid.codec());
    out.extend_from_slice(&[0x12, 0x20]);
    out
}

fn read_uvarint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(9) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

/// The CID a received block claims, computed from its prefix and its bytes. `None` for
/// prefixes this node cannot hold (hash functions other than SHA-256, other codecs).
pub fn block_cid(prefix: &[u8], data: &[u8]) -> Option<Cid> {
    let (version, a) = read_uvarint(prefix)?;
    let (codec, b) = read_uvarint(&prefix[a..])?;
    let (mh, c) = read_uvarint(&prefix[a + b..])?;
    let (len, d) = read_uvarint(&prefix[a + b + c..])?;
    let supported = matches!(codec, bacalhau_ipfs::CODEC_DAG_PB | bacalhau_ipfs::CODEC_RAW);
    if a + b + c + d != prefix.len() || mh != 0x12 || len != 32 || version > 1 || !supported {
        return None;
    }
    if version == 0 && codec != bacalhau_ipfs::CODEC_DAG_PB {
        return None;
    }
    Some(Cid::of(u8::try_from(version).ok()?, codec, data))
}

/// Reads one message; `Ok(None)` at a clean end of stream.
pub async fn read<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<Option<Message>> {
    let mut len = 0usize;
    for i in 0..5 {
        let mut b = [0u8; 1];
        match stream.read(&mut b).await? {
            0 if i == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            _ => {}
        }
        len |= usize::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            break;
        }
        if i == 4 {
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "bitswap length prefix too long"));
        }
    }
    if len > 2 * MAX_MESSAGE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bitswap message of {len} bytes is over the limit"),
        ));
    }
    let mut buf = vec![0u8; len];
    stream.read_exact(&mut buf).await?;
    Message::decode(bytes::Bytes::from(buf))
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("malformed bitswap message: {e}")))
}

/// Writes one message and flushes it.
pub async fn write<S: AsyncWrite + Unpin>(stream: &mut S, msg: &Message) -> std::io::Result<()> {
    let len = msg.encoded_len();
    let mut buf = Vec::with_capacity(len + 5);
    bacalhau_ipfs::dagpb::varint(&mut buf, len as u64);
    msg.encode(&mut buf).map_err(|e| std::io::Error::other(e.to_string()))?;
    stream.write_all(&buf).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_prefix_rebuilds_its_cid() {
        let v0 = Cid::of(0, bacalhau_ipfs::CODEC_DAG_PB, b"x");
        assert_eq!(prefix(&v0), [0, 0x70, 0x12, 0x20]);
        assert_eq!(block_cid(&prefix(&v0), b"x"), Some(v0));
        let raw = Cid::of(1, bacalhau_ipfs::CODEC_RAW, b"y");
        assert_eq!(prefix(&raw), [1, 0x55, 0x12, 0x20]);
        assert_eq!(block_cid(&prefix(&raw), b"y"), Some(raw));
        assert_eq!(block_cid(&[1, 0x55, 0x13, 0x40], b"y"), None, "sha-512 is refused");
        assert_eq!(block_cid(&[0, 0x55, 0x12, 0x20], b"y"), None, "v0 is dag-pb only");
        assert_eq!(block_cid(&[0x80], b"y"), None);
    }

    #[test]
    fn messages_round_trip_through_the_framing() {
        let msg = Message {
            wantlist: Some(Wantlist {
                entries: vec![Entry {
                    block: vec![1, 2],
                    want_type: WANT_HAVE,
                    send_dont_have: true,
                    ..Entry::default()
                }],
                full: false,
            }),
            payload: vec![Block { prefix: vec![0, 0x70, 0x12, 0x20], data: bytes::Bytes::from_static(b"abc") }],
            ..Message::default()
        };
        let mut buf = Vec::new();
        futures::executor::block_on(write(&mut buf, &msg)).expect("write");
        let mut cur = futures::io::Cursor::new(buf);
        let back = futures::executor::block_on(read(&mut cur)).expect("read");
        assert_eq!(back, Some(msg));
        assert_eq!(futures::executor::block_on(read(&mut cur)).expect("eof"), None);
        let mut bad = futures::io::Cursor::new(vec![0xff, 0xff, 0xff, 0xff, 0x7f]);
        assert!(futures::executor::block_on(read(&mut bad)).is_err());
    }
}
