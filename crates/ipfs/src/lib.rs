//! IPFS content addressing, byte-compatible with kubo.
//!
//! - [`Cid`]: CIDv0 (base58btc `Qm…`) and CIDv1 (base32 `bafy…`/`bafk…`) over SHA-256.
//! - [`dagpb`]: dag-pb and UnixFS encoding written by hand, because kubo writes a node's Links
//!   before its Data and a tag-ordered protobuf encoder would not.
//! - [`Importer`]: kubo's `ipfs add` for files, folders and symlinks: 256 KiB chunks, a
//!   balanced DAG of at most 174 links per node, CIDv0 with dag-pb leaves by default, CIDv1 with
//!   raw leaves on request. Streaming: memory does not grow with file size.
//!
//! - [`BlockStore`]: blocks on disk, crash-safe (write then rename), verified on read.
//! - [`export`] and [`cat`]: CID → file or folder, verifying every block.
//!
//! - [`export_car`]: a DAG as a CAR v1 stream; [`read_dir`] and [`resolve`] for folders and paths.
//!
//! - [`hamt`]: HAMT-sharded folders past kubo's threshold (both of kubo's rules), written and read.
//! - Pins and garbage collection in the [`BlockStore`]; CAR v1/v2 import ([`import_car`]).
//!
//! - [`Fetcher`]: what brings missing blocks in from other peers (bitswap lives in the
//!   `ipfs-peer` crate, which implements it).

// Test data patterns truncate on purpose.
#![cfg_attr(test, allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss))]

mod blockstore;
mod car;
mod cid;
pub mod craft;
pub mod dagpb;
mod exporter;
pub mod hamt;
mod importer;
pub mod safe_fs;

pub use blockstore::{BlockStore, GcReport, MAX_PIN_LABELS, Pin, WriteGuard};
pub use car::{CarImport, export_car, export_car_path, import_car};
pub use cid::{CODEC_DAG_PB, CODEC_RAW, Cid, CidError};
pub use exporter::{
    BlockSource, DirEntry, ExportLimits, ExportStats, MAX_DAG_DEPTH, cat, cat_with, export, export_with, file_size,
    read_dir, resolve, resolve_trail,
};
pub use importer::{Block, ImportOptions, Imported, Importer, ShardRule, SizeEstimate};

/// The future a [`Fetcher`] returns.
pub type FetchFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>>;

/// Brings every missing block of a DAG into the local store from other peers.
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Makes the whole DAG under `root` present; `providers` (multiaddrs) are asked first.
    /// Fails, naming the CID and what the peers answered, when nothing arrives for a while.
    fn fetch(&self, root: Cid, providers: Vec<String>) -> FetchFuture<'_>;
}
