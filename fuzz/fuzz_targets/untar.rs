//! An inline tar.gz input (any bytes, gzip-wrapped here so the fuzzer mutates the tar itself)
//! unpacks inside its folder and its budget, or is refused; it never panics or escapes.
#![no_main]

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn scratch() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir_in("/dev/shm").or_else(|_| tempfile::tempdir()).expect("tmp")).path()
}

fuzz_target!(|data: &[u8]| {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).expect("gz");
    let archive = gz.finish().expect("gz");
    let base = scratch().join("run");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).expect("mkdir");
    let out = base.join("out");
    if let Ok(n) = bacalhau_storage::unpack_tar_gz_bytes(&archive, &out, 1 << 20) {
        assert!(n <= 1 << 20);
    }
    let _ = bacalhau_storage::unpack_tar_gz_bytes(data, &base.join("raw"), 1 << 20);
    let siblings: Vec<_> = std::fs::read_dir(&base).expect("ls").flatten().map(|e| e.file_name()).collect();
    assert!(siblings.iter().all(|n| n == "out" || n == "raw"), "the archive wrote beside its folder: {siblings:?}");
});
