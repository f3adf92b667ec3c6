//! Large strings in stored records (a `wasm run` module inline as a `data:` URL, often hundreds
//! of KiB) stored once by SHA-256 and referenced from the records, instead of copied into the
//! job, every execution and every kept version.
//!
//! A record with such strings is written in format 2: the version byte, the slots (a JSON
//! pointer and the SHA-256 of the string that was there), then the JSON with each slot's string
//! emptied. Reading puts the strings back, so every reader gets the record as submitted. Which
//! jobs use a blob is kept both ways (`blob_refs`: hash → job, `job_blobs`: job → hash), so
//! deleting a job's records deletes the blobs no other job uses.

use redb::{MultimapTable, MultimapTableDefinition, ReadableMultimapTable, ReadableTable, Table, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{StoreError, codec, db_err, decode, encode};

/// A string this long or longer is stored once, by hash. Shorter ones cost less inline than
/// the slot and the two index entries would.
pub(super) const BLOB_MIN_BYTES: usize = 1024;

const FORMAT_V2: u8 = 2;

/// SHA-256 → the string.
pub(super) const BLOBS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blobs");
/// SHA-256 → the jobs whose records use it.
pub(super) const BLOB_REFS: MultimapTableDefinition<&[u8], &str> = MultimapTableDefinition::new("blob_refs");
/// Job ID → the blobs its records use.
pub(super) const JOB_BLOBS: MultimapTableDefinition<&str, &[u8]> = MultimapTableDefinition::new("job_blobs");

/// The blob tables of one write transaction.
pub(super) struct BlobWriter<'tx> {
    pub blobs: Table<'tx, &'static [u8], &'static [u8]>,
    pub refs: MultimapTable<'tx, &'static [u8], &'static str>,
    pub by_job: MultimapTable<'tx, &'static str, &'static [u8]>,
}

impl BlobWriter<'_> {
    /// Encodes a record of job `job_id`, storing its large strings as blobs.
    pub fn encode<T: Serialize>(&mut self, job_id: &str, v: &T) -> Result<Vec<u8>, StoreError> {
        let mut value = serde_json::to_value(v).map_err(db_err)?;
        let mut slots = Vec::new();
        take_large(&mut value, &mut String::new(), &mut slots);
        if slots.is_empty() {
            return encode(&value);
        }
        let mut out = vec![FORMAT_V2];
        out.extend_from_slice(&u32::try_from(slots.len()).map_err(db_err)?.to_le_bytes());
        for (pointer, text) in &slots {
            let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
            if self.blobs.get(hash.as_slice()).map_err(db_err)?.is_none() {
                self.blobs.insert(hash.as_slice(), text.as_bytes()).map_err(db_err)?;
            }
            self.refs.insert(hash.as_slice(), job_id).map_err(db_err)?;
            self.by_job.insert(job_id, hash.as_slice()).map_err(db_err)?;
            out.extend_from_slice(&u16::try_from(pointer.len()).map_err(db_err)?.to_le_bytes());
            out.extend_from_slice(pointer.as_bytes());
            out.extend_from_slice(&hash);
        }
        serde_json::to_writer(&mut out, &value).map_err(db_err)?;
        codec::pack(out)
    }

    /// Drops job `job_id`'s uses of blobs, and the blobs no other job uses.
    pub fn release(&mut self, job_id: &str) -> Result<u64, StoreError> {
        let hashes: Vec<Vec<u8>> = self
            .by_job
            .remove_all(job_id)
            .map_err(db_err)?
            .map(|h| h.map(|h| h.value().to_vec()))
            .collect::<Result<_, _>>()
            .map_err(db_err)?;
        let mut freed = 0;
        for hash in hashes {
            self.refs.remove(hash.as_slice(), job_id).map_err(db_err)?;
            if self.refs.get(hash.as_slice()).map_err(db_err)?.next().is_none() {
                self.blobs.remove(hash.as_slice()).map_err(db_err)?;
                freed += 1;
            }
        }
        Ok(freed)
    }
}

/// Decodes a record of either format; `blobs` supplies the strings of format 2.
pub(super) fn decode_record<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
    blobs: &impl ReadableTable<&'static [u8], &'static [u8]>,
) -> Result<T, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { what, message };
    let bytes = codec::unpack(what, bytes)?;
    let Some((&FORMAT_V2, rest)) = bytes.split_first() else { return decode(what, &bytes) };
    let mut r = rest;
    let mut take = |n: usize| -> Result<&[u8], StoreError> {
        if r.len() < n {
            return Err(corrupt("truncated blob slots".into()));
        }
        let (head, tail) = r.split_at(n);
        r = tail;
        Ok(head)
    };
    let count = u32::from_le_bytes(take(4)?.try_into().map_err(|_| corrupt("slot count".into()))?);
    let mut slots = Vec::new();
    for _ in 0..count {
        let len = u16::from_le_bytes(take(2)?.try_into().map_err(|_| corrupt("slot length".into()))?);
        let pointer = std::str::from_utf8(take(len.into())?).map_err(|e| corrupt(e.to_string()))?.to_owned();
        let hash = take(32)?.to_vec();
        slots.push((pointer, hash));
    }
    let mut value: Value = serde_json::from_slice(r).map_err(|e| corrupt(e.to_string()))?;
    for (pointer, hash) in slots {
        let blob = blobs
            .get(hash.as_slice())
            .map_err(db_err)?
            .ok_or_else(|| corrupt(format!("the blob {} at {pointer} is missing", hex::encode(&hash))))?;
        let text = String::from_utf8(blob.value().to_vec()).map_err(|e| corrupt(e.to_string()))?;
        let slot = value.pointer_mut(&pointer).ok_or_else(|| corrupt(format!("no field at {pointer}")))?;
        *slot = Value::String(text);
    }
    serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))
}

/// Empties every string of `BLOB_MIN_BYTES` or more in `v`, returning each with its JSON
/// pointer (RFC 6901).
fn take_large(v: &mut Value, path: &mut String, out: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if s.len() >= BLOB_MIN_BYTES => out.push((path.clone(), std::mem::take(s))),
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push('/');
                path.push_str(&i.to_string());
                take_large(item, path, out);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                take_large(item, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_escape_keys_and_reach_the_string_they_name() {
        let mut v = serde_json::json!({"a/b": {"c~d": ["x", "y".repeat(BLOB_MIN_BYTES)]}, "short": "z"});
        let original = v.clone();
        let mut slots = Vec::new();
        take_large(&mut v, &mut String::new(), &mut slots);
        assert_eq!(slots.len(), 1);
        assert_eq!(slots[0].0, "/a~1b/c~0d/1");
        *v.pointer_mut(&slots[0].0).expect("slot") = Value::String(slots[0].1.clone());
        assert_eq!(v, original);
    }
}
