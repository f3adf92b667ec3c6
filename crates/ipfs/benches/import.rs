//! Benchmark: importing a file (CIDv0, kubo's defaults) side by side with raw SHA-256 over
//! the same bytes, in one run; reports throughput, the ratio, and peak RSS. The content is
//! streamed from a small repeated block so memory use reflects the importer alone. `BENCH_MIB` sets the size
//! (default 1024); under `cargo test` it runs 16 MiB as a smoke test.
//! (The comparison with kubo's `AddFile` needs the kubo test harness of the content-store
//! issue.)

use std::io::Read;
use std::time::Instant;

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

    // Reference: SHA-256 over the same generated stream, read in the importer's chunk size.
    let start = Instant::now();
    let mut src = Pattern { left: bytes, pos: 0, block: &block };
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

    let start = Instant::now();
    let mut blocks = 0u64;
    let root = Importer::new(ImportOptions::v0(), |_, _| {
        blocks += 1;
        Ok(())
    })
    .file(Pattern { left: bytes, pos: 0, block: &block })
    .expect("import");
    let import = start.elapsed();

    let mbps = |d: std::time::Duration| mib as f64 / d.as_secs_f64();
    println!("import of {mib} MiB (generated), CIDv0, 256 KiB chunks, 174 links");
    println!(
        "  raw SHA-256 over the same stream (reference):        {:>8.1} MiB/s  (digest {:x})",
        mbps(raw),
        digest[0]
    );
    println!(
        "  importer (chunk, encode, hash every block):           {:>8.1} MiB/s  ({blocks} blocks, root {})",
        mbps(import),
        root.cid
    );
    println!("  importer / raw SHA-256: {:.0}%", 100.0 * raw.as_secs_f64() / import.as_secs_f64());
    println!("  peak RSS: {:.1} MiB", peak_rss_mib());
}
