//! The `s3` publisher (Bacalhau's `pkg/publisher/s3`): a result folder uploaded as one tar.gz
//! (`Encoding: gzip`, the default) or file by file under a prefix (`plain`), to a key with
//! `{jobID} {executionID} {nodeID} {date} {time}` filled in; and the orchestrator's signer that
//! turns an archived `s3` result into `s3PreSigned` with a time-limited URL, so `job get`
//! downloads it with no credentials of its own.

use std::path::Path;
use std::time::Duration;

use bacalhau_model::{ExecutionId, S3Publisher as S3Spec, SpecConfig};
use bacalhau_storage::{PublishRequest, Publisher, ResultSigner, SignRequest, StorageError, pack_tar_gz};
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer as _;
use object_store::{ObjectStore as _, ObjectStoreExt as _, PutPayload, WriteMultipart};
use sha2::Digest as _;
use tokio::io::AsyncReadExt as _;
use tracing::info;

use crate::s3_source::{S3Settings, s3_client, s3_error, s3_store};

/// Parts of a multipart upload: S3 takes 5 MiB to 5 GiB, and 8 MiB keeps a 1 GiB result at 128
/// parts, well under the 10,000 allowed.
const PART_BYTES: usize = 8 << 20;
/// Parts in flight at once per upload (the AWS CLI's default is 10): 80 MiB held at most.
const PARTS_IN_FLIGHT: usize = 10;

/// The `s3` publisher.
#[derive(Debug)]
pub struct S3Publisher {
    client: reqwest::Client,
    settings: S3Settings,
    /// Where archives are written before upload.
    scratch: std::path::PathBuf,
}

impl S3Publisher {
    /// A publisher on `builder`'s client, writing archives under `scratch` before upload.
    pub fn new(
        builder: reqwest::ClientBuilder,
        settings: S3Settings,
        scratch: std::path::PathBuf,
    ) -> Result<Self, StorageError> {
        // An archive is removed once uploaded; one a crash left behind goes now, so the folder
        // holds only uploads in flight.
        let _ = std::fs::remove_dir_all(&scratch);
        Ok(Self { client: s3_client(builder, settings.read_timeout)?, settings, scratch })
    }

    fn spec(spec: &SpecConfig) -> Result<S3Spec, StorageError> {
        S3Spec::from_spec(spec).map_err(|errs| {
            let text: Vec<String> = errs.into_iter().map(|(k, why)| format!("Params.{k} {why}")).collect();
            StorageError::Invalid(format!("the s3 publisher is invalid: {}", text.join("; ")))
        })
    }
}

/// Uploads `file` to `location` in parts, returning its version and its base64 SHA-256.
async fn upload_file(
    store: &object_store::aws::AmazonS3,
    location: &ObjectPath,
    file: &Path,
    place: &str,
) -> Result<(Option<String>, String, u64), StorageError> {
    let mut f = tokio::fs::File::open(file).await.map_err(StorageError::io(format!("reading {}", file.display())))?;
    let len = f.metadata().await.map(|m| m.len()).unwrap_or(0);
    use base64::Engine as _;
    let b64 = |digest: &[u8]| base64::engine::general_purpose::STANDARD.encode(digest);
    if len <= PART_BYTES as u64 {
        // One request for what fits in one part.
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        f.read_to_end(&mut bytes).await.map_err(StorageError::io(format!("reading {}", file.display())))?;
        let checksum = b64(&sha2::Sha256::digest(&bytes));
        let version = store.put(location, PutPayload::from(bytes)).await.map_err(|e| s3_error(place, e))?.version;
        return Ok((version, checksum, len));
    }
    // The whole file's checksum is taken on another core while the parts go up (each part
    // carries its own, which the server checks).
    let path = file.to_path_buf();
    let hashing = tokio::task::spawn_blocking(move || sha256_of(&path));
    let upload = store.put_multipart(location).await.map_err(|e| s3_error(place, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut buf = vec![0u8; PART_BYTES];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(n) => n,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(StorageError::io(format!("reading {}", file.display()))(e));
            }
        };
        if n == 0 {
            break;
        }
        if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
            // The parts sent so far are discarded, not left to be billed.
            let _ = writer.abort().await;
            return Err(s3_error(place, e));
        }
        writer.write(&buf[..n]);
    }
    let version = writer.finish().await.map_err(|e| s3_error(place, e))?.version;
    let digest = hashing
        .await
        .map_err(|e| StorageError::Invalid(format!("hashing {} crashed: {e}", file.display())))?
        .map_err(StorageError::io(format!("hashing {}", file.display())))?;
    Ok((version, b64(&digest), len))
}

/// The SHA-256 of a file, read a megabyte at a time. Blocking.
fn sha256_of(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let mut f = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().to_vec());
        }
        hasher.update(&buf[..n]);
    }
}

/// Every regular file under `dir`, as paths relative to it with `/` between parts. Links are
/// not followed: a result's link names something on the host, not a result.
fn files_under(dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), dir.to_path_buf())];
    while let Some((rel, path)) = stack.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                stack.push((child_rel, entry.path()));
            } else if kind.is_file() {
                out.push((child_rel, entry.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[async_trait::async_trait]
impl Publisher for S3Publisher {
    fn publisher_type(&self) -> &'static str {
        "s3"
    }

    async fn publish(&self, _: &ExecutionId, _: &Path) -> Result<Option<SpecConfig>, StorageError> {
        Err(StorageError::Invalid("the s3 publisher needs the job's Publisher params".into()))
    }

    fn validate(&self, spec: &SpecConfig) -> Result<(), StorageError> {
        let s = Self::spec(spec)?;
        s3_store(&self.client, &self.settings, &s.bucket, &s.region, &s.endpoint).map(|_| ())
    }

    async fn publish_for(
        &self,
        request: PublishRequest<'_>,
        results_dir: &Path,
    ) -> Result<Option<SpecConfig>, StorageError> {
        let spec = Self::spec(request.spec)?;
        let store = s3_store(&self.client, &self.settings, &spec.bucket, &spec.region, &spec.endpoint)?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let (date, time) = utc_date_time(now);
        let key = spec.key_for(request.job_id, request.execution_id.as_str(), request.node_id, &date, &time);
        let place = format!("s3://{}/{key}", spec.bucket);
        let started = std::time::Instant::now();
        let mut result = SpecConfig::new("s3")
            .with_param("Bucket", spec.bucket.clone())
            .with_param("Key", key.clone())
            .with_param("Region", spec.region.clone())
            .with_param("Endpoint", spec.endpoint.clone());
        let bytes = if spec.plain {
            let dir = results_dir.to_path_buf();
            let files = tokio::task::spawn_blocking(move || files_under(&dir))
                .await
                .map_err(|e| StorageError::Invalid(format!("listing the results crashed: {e}")))?
                .map_err(StorageError::io("listing the results"))?;
            let mut locations = Vec::with_capacity(files.len());
            for (rel, _) in &files {
                let location = ObjectPath::parse(format!("{key}{rel}"))
                    .map_err(|e| StorageError::Refused(format!("the result file {rel:?} cannot be an S3 key: {e}")))?;
                locations.push(location);
            }
            let mut total = 0;
            for (i, ((rel, path), location)) in files.iter().zip(&locations).enumerate() {
                match upload_file(&store, location, path, &format!("{place}{rel}")).await {
                    Ok((_, _, len)) => total += len,
                    Err(e) => {
                        // Nothing half-published: the files already up are taken down again.
                        for done in &locations[..i] {
                            let _ = store.delete(done).await;
                        }
                        return Err(e);
                    }
                }
            }
            total
        } else {
            let location = ObjectPath::parse(&key)
                .map_err(|e| StorageError::Invalid(format!("the s3 Key {key:?} cannot name an object: {e}")))?;
            tokio::fs::create_dir_all(&self.scratch)
                .await
                .map_err(StorageError::io("creating the s3 publisher's folder"))?;
            let archive = self.scratch.join(format!("{}.tar.gz", request.execution_id));
            let (src, dest) = (results_dir.to_path_buf(), archive.clone());
            let packed = tokio::task::spawn_blocking(move || pack_tar_gz(&src, &dest))
                .await
                .map_err(|e| StorageError::Invalid(format!("archiving the results crashed: {e}")));
            let uploaded = match packed {
                Ok(Ok(())) => upload_file(&store, &location, &archive, &place).await,
                Ok(Err(e)) | Err(e) => Err(e),
            };
            let _ = tokio::fs::remove_file(&archive).await;
            let (version, checksum, len) = uploaded?;
            result = result.with_param("VersionID", version.unwrap_or_default()).with_param("ChecksumSHA256", checksum);
            len
        };
        info!(%place, bytes, elapsed_ms = started.elapsed().as_millis(), "results published to s3");
        Ok(Some(result))
    }
}

/// `YYYYMMDD` and `HHMMSS` of a Unix time, in UTC (Bacalhau uses the node's local time zone,
/// which makes the same job's keys depend on where it ran).
fn utc_date_time(secs: u64) -> (String, String) {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (format!("{year:04}{month:02}{day:02}"), format!("{:02}{:02}{:02}", rem / 3600, rem / 60 % 60, rem % 60))
}

/// The orchestrator's signer: an archived `s3` result becomes Bacalhau's `s3PreSigned`, with a
/// URL valid for `expiry`, signed with the orchestrator's credentials.
#[derive(Debug)]
pub struct S3ResultSigner {
    client: reqwest::Client,
    settings: S3Settings,
    expiry: Duration,
}

impl S3ResultSigner {
    /// A signer whose URLs last `expiry` (Bacalhau's `Publishers.Types.S3.PreSignedURLExpiration`).
    pub fn new(builder: reqwest::ClientBuilder, settings: S3Settings, expiry: Duration) -> Result<Self, StorageError> {
        Ok(Self { client: s3_client(builder, settings.read_timeout)?, settings, expiry })
    }
}

#[async_trait::async_trait]
impl ResultSigner for S3ResultSigner {
    async fn sign(&self, request: SignRequest<'_>) -> Result<Option<SpecConfig>, StorageError> {
        let result = request.result;
        let text = |k: &str| result.param_str(k).unwrap_or_default().to_owned();
        let key = text("Key");
        if !result.is_type("s3") || !key.ends_with(".tar.gz") || self.settings.credentials.is_none() {
            return Ok(None);
        }
        // The node's word is checked before the orchestrator lends its credentials: the
        // result must be where the job's publisher put this execution's archive...
        let Ok(spec) = S3Spec::from_spec(request.publisher) else { return Ok(None) };
        let expected = spec.key_for(request.job_id, request.execution_id, request.node_id, "\u{1}", "\u{2}");
        let pattern =
            format!("^{}$", regex::escape(&expected).replace('\u{1}', "[0-9]{8}").replace('\u{2}', "[0-9]{6}"));
        let same_place = request.publisher.is_type("s3")
            && !spec.plain
            && text("Bucket") == spec.bucket
            && text("Endpoint") == spec.endpoint
            && text("Region") == spec.region
            && regex::Regex::new(&pattern).is_ok_and(|re| re.is_match(&key));
        if !same_place {
            tracing::warn!(
                execution = request.execution_id,
                "not signing an s3 result that is not where the job's publisher puts it: s3://{}/{key}",
                text("Bucket")
            );
            return Ok(None);
        }
        let store = s3_store(&self.client, &self.settings, &spec.bucket, &spec.region, &spec.endpoint)?;
        let location = ObjectPath::parse(&key)
            .map_err(|e| StorageError::Invalid(format!("the result's key {key:?} cannot name an object: {e}")))?;
        let place = format!("s3://{}/{key}", spec.bucket);
        // ...and written after the execution began: an object that was there before (a key
        // with no placeholders naming someone's backup) is not the execution's to hand out.
        let head = store
            .get_opts(&location, object_store::GetOptions { head: true, ..Default::default() })
            .await
            .map_err(|e| s3_error(&place, e))?;
        let written = u64::try_from(head.meta.last_modified.timestamp()).unwrap_or(0);
        // Clocks differ between machines; S3 keeps whole seconds.
        if written + 60 < request.not_before_secs {
            tracing::warn!(execution = request.execution_id, "not signing {place}: it is older than the execution");
            return Ok(None);
        }
        let url =
            store.signed_url(reqwest::Method::GET, &location, self.expiry).await.map_err(|e| s3_error(&place, e))?;
        Ok(Some(
            SpecConfig::new("s3PreSigned")
                .with_param("SourceSpec", serde_json::Value::Object(result.params.clone()))
                .with_param("PreSignedURL", url.to_string())
                .with_param("Managed", false),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_times_are_utc_digits() {
        assert_eq!(utc_date_time(0), ("19700101".into(), "000000".into()));
        assert_eq!(utc_date_time(1_796_313_637), ("20261203".into(), "160037".into()));
        assert_eq!(utc_date_time(951_782_400), ("20000229".into(), "000000".into()));
    }
}
