//! Stored records compressed with zstd against a fixed dictionary.
//!
//! A job's records are JSON with the same keys and most of the same values every time, and
//! each is small (a few hundred bytes to a few KiB): compressed alone, zstd finds little to
//! take out, but against a dictionary of typical records it keeps only what differs (IDs,
//! times, the command). A record in format 3 is the version byte, the length of the record it
//! holds (u32, little-endian) and a zstd frame of that record, which is a whole format 1 or 2
//! record with its own version byte. A record that does not shrink is stored as it is.
//!
//! The dictionary is part of the format: stores written with it can only be read with the same
//! bytes, so it never changes. A better one would be a new format byte with its own file.

use std::borrow::Cow;
use std::sync::{LazyLock, Mutex};

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::StoreError;

pub(super) const FORMAT_ZSTD_DICT1: u8 = 3;

/// Typical records of this store (an evaluation, history entries, executions, jobs of each
/// engine), most common last: zstd prefers matches near the end of a raw dictionary.
const DICT1: &[u8] = include_bytes!("dict1.json");

/// The SHA-256 of [`DICT1`], checked by a test: an edit to the file would make every store
/// written with it unreadable.
#[cfg(test)]
const DICT1_SHA256: &str = "1f09f1d386e3e840757fe2d1f2f5cfc39d5a3ac101c25d38428f9c41ee6b2b5f";

/// Level 3 (zstd's default): on records this small, higher levels gain a few bytes at
/// several times the CPU of the commit path.
const LEVEL: i32 = 3;

/// A record holds at most this many bytes once decompressed: larger strings are blobs, and
/// the API refuses larger specs long before this, so a length past it is corruption, not a
/// reason to allocate.
const MAX_RECORD_BYTES: usize = 64 << 20;

static ENCODER: LazyLock<EncoderDictionary<'static>> = LazyLock::new(|| EncoderDictionary::copy(DICT1, LEVEL));
static DECODER: LazyLock<DecoderDictionary<'static>> = LazyLock::new(|| DecoderDictionary::copy(DICT1));

/// Contexts kept for reuse: a context holds its working tables (hundreds of KiB for a
/// compressor), so one per thread that ever touched the store would grow with the blocking
/// pool. Commits are serial and reads brief: a few cover the load, and a burst beyond them
/// makes contexts that are dropped after use.
const KEPT_CONTEXTS: usize = 4;

static COMPRESSORS: Mutex<Vec<Compressor<'static>>> = Mutex::new(Vec::new());
static DECOMPRESSORS: Mutex<Vec<Decompressor<'static>>> = Mutex::new(Vec::new());

/// Runs `f` with a context from `pool` (or a new one from `make`), and keeps it afterwards if
/// the pool has room.
fn with_context<C, T, E>(
    pool: &Mutex<Vec<C>>,
    make: impl FnOnce() -> Result<C, E>,
    f: impl FnOnce(&mut C) -> Result<T, E>,
) -> Result<T, E> {
    let taken = pool.lock().ok().and_then(|mut p| p.pop());
    let mut ctx = match taken {
        Some(c) => c,
        None => make()?,
    };
    let out = f(&mut ctx);
    if let Ok(mut p) = pool.lock()
        && p.len() < KEPT_CONTEXTS
    {
        p.push(ctx);
    }
    out
}

fn codec_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(format!("record compression: {e}"))
}

/// Compresses a format 1 or 2 record into format 3, or returns it as it is when that would not
/// be smaller (or when it is past what a compressed record may claim, so it stays readable).
pub(super) fn pack(record: Vec<u8>) -> Result<Vec<u8>, StoreError> {
    if record.len() > MAX_RECORD_BYTES {
        return Ok(record);
    }
    let len = u32::try_from(record.len()).map_err(codec_err)?;
    let frame = with_context(
        &COMPRESSORS,
        || Compressor::with_prepared_dictionary(&ENCODER).map_err(codec_err),
        |c| c.compress(&record).map_err(codec_err),
    )?;
    if frame.len() + 5 >= record.len() {
        return Ok(record);
    }
    let mut out = Vec::with_capacity(frame.len() + 5);
    out.push(FORMAT_ZSTD_DICT1);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&frame);
    Ok(out)
}

/// The format 1 or 2 record inside `bytes` (itself when it is not format 3).
pub(super) fn unpack<'a>(what: &'static str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { what, message };
    let Some((&FORMAT_ZSTD_DICT1, rest)) = bytes.split_first() else { return Ok(Cow::Borrowed(bytes)) };
    let (len, frame) = rest.split_at_checked(4).ok_or_else(|| corrupt("truncated compressed record".into()))?;
    let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if len > MAX_RECORD_BYTES {
        return Err(corrupt(format!("a compressed record claims {len} bytes")));
    }
    let record = with_context(
        &DECOMPRESSORS,
        || Decompressor::with_prepared_dictionary(&DECODER).map_err(|e| corrupt(e.to_string())),
        |d| d.decompress(frame, len).map_err(|e| corrupt(format!("compressed record: {e}"))),
    )?;
    if record.len() != len {
        return Err(corrupt(format!("a compressed record holds {} bytes, not {len}", record.len())));
    }
    if record.first() == Some(&FORMAT_ZSTD_DICT1) {
        return Err(corrupt("a compressed record inside a compressed record".into()));
    }
    Ok(Cow::Owned(record))
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;

    #[test]
    fn the_dictionary_is_the_one_stores_were_written_with() {
        assert_eq!(hex::encode(Sha256::digest(DICT1)), DICT1_SHA256);
    }

    #[test]
    fn records_round_trip_and_shrink() {
        let record = [&[1u8][..], br#"{"ID":"j-0b5f1c1e","Type":"batch","Namespace":"default","Tasks":[{"Name":"main","Engine":{"Type":"wasm"}}]}"#].concat();
        let packed = pack(record.clone()).expect("pack");
        assert_eq!(packed[0], FORMAT_ZSTD_DICT1);
        assert!(packed.len() < record.len() / 2, "{} of {} bytes", packed.len(), record.len());
        assert_eq!(unpack("job", &packed).expect("unpack").as_ref(), record.as_slice());
        // Older records are read as they are.
        assert_eq!(unpack("job", &record).expect("as is").as_ref(), record.as_slice());
    }

    #[test]
    fn a_record_that_does_not_shrink_is_kept_as_it_is() {
        let record = vec![1u8, b'7'];
        assert_eq!(pack(record.clone()).expect("pack"), record);
        // Past what a compressed record may claim: kept plain, so it reads back.
        let mut huge = vec![b'x'; MAX_RECORD_BYTES + 1];
        huge[0] = 1;
        let packed = pack(huge.clone()).expect("pack");
        assert_eq!(unpack("job", &packed).expect("unpack").as_ref(), huge.as_slice());
    }

    #[test]
    fn hostile_frames_are_refused_without_allocating_their_claim() {
        let good = pack([&[1u8][..], &[b'x'; 300]].concat()).expect("pack");
        // Truncated length, a huge claimed length, a lying length, a truncated frame, a nested
        // compressed record.
        let mut huge = good.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut short = good.clone();
        short[1..5].copy_from_slice(&10u32.to_le_bytes());
        let nested = pack([&[FORMAT_ZSTD_DICT1][..], &[b'y'; 300]].concat()).expect("pack");
        for bad in [&good[..3], &huge[..], &short[..], &good[..good.len() - 3], &nested[..]] {
            assert!(matches!(unpack("job", bad), Err(StoreError::Corrupt { .. })), "{bad:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_after_the_format_byte_decode_or_fail_cleanly(
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            let mut bytes = vec![FORMAT_ZSTD_DICT1];
            bytes.extend_from_slice(&body);
            let _ = unpack("job", &bytes);
        }
    }
}
