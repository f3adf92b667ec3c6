//! `inline` inputs: RFC 2397 `data:` URLs carried in the spec (how `wasm run ./prog.wasm`
//! ships a local file). Plain data becomes a file at the Target; `application/gzip` data is a
//! tar.gz that becomes a directory.

use std::path::Path;

use bacalhau_executor::PreparedInput;
use bacalhau_model::{InputSource, SOURCE_INLINE};
use base64::Engine as _;

use crate::{InputProvider, StorageError, unpack_tar_gz_bytes};

/// The largest inline payload accepted. Specs travel in API requests bounded at 10 MB; this
/// leaves room for the rest of the spec and base64's expansion.
const MAX_INLINE_BYTES: usize = 8 * 1024 * 1024;

/// The `inline` input provider. With a cache folder, a payload (a `wasm run` module, sent
/// with every job) is written there once per content hash and each execution gets a hard link
/// to it: a burst of jobs with the same module writes it once, not once per job.
#[derive(Debug, Default)]
pub struct InlineSource {
    cache: Option<std::path::PathBuf>,
}

/// Payloads kept in the cache at most; past that the oldest half goes. Executions hold hard
/// links, so removing a cache entry never takes a file from under one.
const CACHE_ENTRIES: usize = 256;

impl InlineSource {
    /// A provider that writes each input anew.
    pub fn new() -> Self {
        Self { cache: None }
    }

    /// A provider that keeps payloads in `dir` by content hash.
    pub fn cached(dir: std::path::PathBuf) -> Self {
        Self { cache: Some(dir) }
    }
}

/// Puts `bytes` at `dest`: a hard link to the cached copy when there is a cache on the same
/// file system, else a write.
fn place(cache: Option<&Path>, bytes: &[u8], dest: &Path) -> std::io::Result<()> {
    if let Some(dir) = cache {
        use sha2::Digest as _;
        let cached = dir.join(hex::encode(sha2::Sha256::digest(bytes)));
        if !cached.is_file() {
            std::fs::create_dir_all(dir)?;
            trim(dir);
            // Written aside and renamed, so a reader never links a half-written payload.
            let tmp = dir.join(format!(".tmp-{}-{:?}", std::process::id(), std::thread::current().id()));
            std::fs::write(&tmp, bytes)?;
            // Every execution's link is this one file: no one may change it through theirs.
            let mut perms = std::fs::metadata(&tmp)?.permissions();
            perms.set_readonly(true);
            std::fs::set_permissions(&tmp, perms)?;
            std::fs::rename(&tmp, &cached)?;
        }
        if std::fs::hard_link(&cached, dest).is_ok() {
            return Ok(());
        }
    }
    std::fs::write(dest, bytes)
}

/// Keeps the cache under [`CACHE_ENTRIES`] by dropping its oldest half.
fn trim(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut files: Vec<(std::time::SystemTime, std::path::PathBuf)> =
        entries.flatten().filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path()))).collect();
    if files.len() < CACHE_ENTRIES {
        return;
    }
    files.sort();
    for (_, path) in files.iter().take(files.len() / 2) {
        let _ = std::fs::remove_file(path);
    }
}

/// A decoded `data:` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataUrl {
    /// Its media type, lower case (`application/wasm`, `application/gzip`, ...).
    pub media_type: String,
    /// Its payload.
    pub bytes: Vec<u8>,
}

/// Decodes an RFC 2397 `data:` URL (base64 or percent-encoded), refusing payloads over the
/// inline limit.
pub fn parse_data_url(url: &str) -> Result<DataUrl, StorageError> {
    let rest = url
        .trim_start()
        .strip_prefix("data:")
        .ok_or_else(|| StorageError::Invalid("an inline input's URL must start with data:".into()))?;
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| StorageError::Invalid("the data: URL has no comma before its data".into()))?;
    let base64 = meta.ends_with(";base64");
    let media_type = meta.trim_end_matches(";base64").split(';').next().unwrap_or("").to_ascii_lowercase();
    let bytes = if base64 {
        // As Go's decoder (Bacalhau's): line breaks and spaces inside the payload, which YAML
        // block scalars and wrapped base64 produce, are skipped; a percent-escaped payload is
        // unescaped first.
        let unescaped = if data.contains('%') { percent_decode(data) } else { data.as_bytes().to_vec() };
        let compact: Vec<u8> = unescaped.into_iter().filter(|b| !b.is_ascii_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(&compact)
            .map_err(|e| StorageError::Invalid(format!("the data: URL's base64 payload is invalid: {e}")))?
    } else {
        percent_decode(data)
    };
    if bytes.len() > MAX_INLINE_BYTES {
        return Err(StorageError::Invalid(format!(
            "the inline input is {} bytes, over the {MAX_INLINE_BYTES}-byte limit: put large inputs in IPFS or a URL",
            bytes.len()
        )));
    }
    Ok(DataUrl { media_type, bytes })
}

/// Decodes `%XX` escapes (RFC 3986); a `%` not followed by two hex digits stays as it is.
pub fn percent_decode(s: &str) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(hi * 16 + lo);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[async_trait::async_trait]
impl InputProvider for InlineSource {
    fn source_type(&self) -> &'static str {
        SOURCE_INLINE
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        let url = input.source.param_str("URL").unwrap_or_default();
        parse_data_url(url).map(|_| ())
    }

    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        let url = input.source.param_str("URL").unwrap_or_default().to_owned();
        let data = parse_data_url(&url)?;
        tokio::fs::create_dir_all(work_dir).await.map_err(StorageError::io("creating the input folder"))?;
        let host_path =
            if matches!(data.media_type.as_str(), "application/gzip" | "application/x-gzip" | "application/x-tar+gzip")
            {
                let dir = work_dir.join("inline");
                let bytes = data.bytes;
                let d = dir.clone();
                tokio::task::spawn_blocking(move || unpack_tar_gz_bytes(&bytes, &d, max_bytes))
                    .await
                    .map_err(|e| StorageError::Invalid(format!("unpacking the inline archive failed: {e}")))??;
                dir
            } else {
                let name = Path::new(&input.target)
                    .file_name()
                    .map_or_else(|| "data".to_owned(), |n| n.to_string_lossy().into_owned());
                if data.bytes.len() as u64 > max_bytes {
                    return Err(StorageError::Refused(format!(
                        "the inline input for {} is {} bytes, more than the {max_bytes} bytes allowed for it",
                        input.target,
                        data.bytes.len()
                    )));
                }
                let file = work_dir.join(name);
                let (cache, bytes, dest) = (self.cache.clone(), data.bytes, file.clone());
                tokio::task::spawn_blocking(move || place(cache.as_deref(), &bytes, &dest))
                    .await
                    .map_err(|e| StorageError::Invalid(format!("writing the inline input failed: {e}")))?
                    .map_err(StorageError::io("writing the inline input"))?;
                file
            };
        Ok(PreparedInput { host_path, target: input.target.clone(), read_only: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bacalhau_model::SpecConfig;

    #[test]
    fn decodes_plain_and_base64() {
        assert_eq!(parse_data_url("data:,hello%20world").expect("plain").bytes, b"hello world");
        let d = parse_data_url("data:application/wasm;base64,AGFzbQ==").expect("b64");
        assert_eq!(d.media_type, "application/wasm");
        assert_eq!(d.bytes, b"\0asm");
        assert!(parse_data_url("data:;base64,!!!").is_err());
        // Wrapped and indented, as a YAML block scalar leaves it.
        let d = parse_data_url("data:application/wasm;base64,AGFz\n  bQ==\r\n").expect("wrapped");
        assert_eq!(d.bytes, b"\0asm");
        let d = parse_data_url("data:;base64,AG Fz bQ%3D%3D").expect("spaces and escapes");
        assert_eq!(d.bytes, b"\0asm");
        assert!(parse_data_url("http://x").is_err());
    }

    #[tokio::test]
    async fn writes_a_file_named_after_the_target() {
        let tmp = tempfile::tempdir().expect("tmp");
        let input = InputSource {
            source: SpecConfig::new("inline").with_param("URL", "data:,hi"),
            alias: String::new(),
            target: "/app/main.wasm".into(),
        };
        let p = InlineSource::new().prepare(&input, tmp.path(), u64::MAX).await.expect("prepare");
        assert_eq!(p.host_path, tmp.path().join("main.wasm"));
        assert_eq!(std::fs::read(&p.host_path).expect("read"), b"hi");
    }

    #[tokio::test]
    async fn a_cached_payload_is_written_once_and_linked_into_each_execution() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let cache = tmp.path().join("cache");
        let source = InlineSource::cached(cache.clone());
        let input = InputSource {
            source: SpecConfig::new("inline").with_param("URL", "data:;base64,AGFzbQEAAAA="),
            alias: String::new(),
            target: "/wasm/main.wasm".into(),
        };
        let mut inodes = Vec::new();
        for i in 0..3 {
            let p = source.prepare(&input, &tmp.path().join(i.to_string()), u64::MAX).await.expect("prepare");
            assert_eq!(std::fs::read(&p.host_path).expect("read"), b"\0asm\x01\0\0\0");
            inodes.push(std::fs::metadata(&p.host_path).expect("stat").ino());
        }
        assert!(inodes.windows(2).all(|w| w[0] == w[1]), "one file, linked: {inodes:?}");
        assert_eq!(std::fs::read_dir(&cache).expect("cache").count(), 1);
        // The shared copy cannot be written through an execution's link.
        let linked = tmp.path().join("0").join("main.wasm");
        assert!(std::fs::OpenOptions::new().write(true).open(&linked).is_err() || nix_is_root());
        // Removing an execution's folder leaves the others theirs.
        std::fs::remove_dir_all(tmp.path().join("0")).expect("rm");
        std::fs::remove_dir_all(&cache).expect("rm cache");
        assert_eq!(std::fs::read(tmp.path().join("1").join("main.wasm")).expect("read").len(), 8);
    }

    /// Root may write a read-only file; the read-only mount is what stops a job there.
    fn nix_is_root() -> bool {
        std::fs::read_to_string("/proc/self/status")
            .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
    }
}
