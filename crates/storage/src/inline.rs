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

/// The `inline` input provider.
#[derive(Debug, Default)]
pub struct InlineSource;

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

fn percent_decode(s: &str) -> Vec<u8> {
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
                tokio::fs::write(&file, &data.bytes).await.map_err(StorageError::io("writing the inline input"))?;
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
        let p = InlineSource.prepare(&input, tmp.path(), u64::MAX).await.expect("prepare");
        assert_eq!(p.host_path, tmp.path().join("main.wasm"));
        assert_eq!(std::fs::read(&p.host_path).expect("read"), b"hi");
    }
}
