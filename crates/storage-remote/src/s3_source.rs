//! `s3` inputs: one object, or every object under a prefix (optionally filtered), shared among
//! a job's partitions by Bacalhau's rules (`bacalhau_model::S3Source`), downloaded under the
//! input's folder as Bacalhau lays them out. Credentials are the node's (the standard `AWS_*`
//! environment), never the job's; a job names only the bucket, key and endpoint.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bacalhau_executor::PreparedInput;
use bacalhau_model::{InputSource, S3Source as S3Spec};
use bacalhau_storage::{InputProvider, Partition, StorageError};
use futures::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::client::{HttpClient, HttpConnector};
use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::path::Path as ObjectPath;
use object_store::{ClientOptions, GetOptions, ObjectMeta, ObjectStore as _, RetryConfig};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt as _;
use tracing::info;

/// Objects downloaded at once: many small objects are bound by round trips, not bandwidth.
const PARALLEL_OBJECTS: usize = 8;
/// Buffered between the network and each file.
const WRITE_BUFFER: usize = 1 << 20;
/// Objects from this size are fetched as ranges in parallel (as the AWS CLI does): one stream
/// is bound by one connection's round trips and window.
const RANGED_FROM_BYTES: u64 = 32 << 20;
/// The size of each range: an object is cut into about 16 ranges of 8 to 64 MiB, so a large
/// object costs few requests (S3 bills each GET) while 8 stay in flight.
fn range_bytes(size: u64) -> u64 {
    (size / 16).clamp(RANGE_MIN, RANGE_MAX).next_multiple_of(1 << 20)
}
const RANGE_MIN: u64 = 8 << 20;
const RANGE_MAX: u64 = 64 << 20;
/// Ranges in flight per object (each holds one write buffer).
const RANGES_IN_FLIGHT: usize = 8;
/// Objects listed at most, before the filter, and pages read at most, for one input.
const MAX_LISTED: usize = 10 * MAX_OBJECTS;
const MAX_PAGES: usize = 20_000;
/// Objects one input may name at most: the listing is held in memory, ~200 bytes an object.
const MAX_OBJECTS: usize = 1_000_000;

/// The node's S3 settings: its credentials and limits.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// Access key ID, secret and optional session token (`AWS_ACCESS_KEY_ID`, ...).
    pub credentials: Option<(String, String, Option<String>)>,
    /// The region when a job names none (`AWS_REGION`, `AWS_DEFAULT_REGION`, else us-east-1).
    pub default_region: String,
    /// Retries of a failed request (`InputSources.MaxRetryCount`).
    pub max_retries: u32,
    /// How long a server may send nothing (`InputSources.ReadTimeout`).
    pub read_timeout: Duration,
}

impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log line.
        f.debug_struct("S3Settings")
            .field("access_key_id", &self.credentials.as_ref().map(|c| c.0.as_str()))
            .field("default_region", &self.default_region)
            .field("max_retries", &self.max_retries)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

impl S3Settings {
    /// From the standard AWS environment variables, else the shared credentials file
    /// (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`, profile `AWS_PROFILE` or
    /// `default`), in that order, as the AWS CLI looks.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Self {
        let nonempty = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let credentials = match (nonempty("AWS_ACCESS_KEY_ID"), nonempty("AWS_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, secret, nonempty("AWS_SESSION_TOKEN"))),
            _ => {
                let file = nonempty("AWS_SHARED_CREDENTIALS_FILE")
                    .map(PathBuf::from)
                    .or_else(|| nonempty("HOME").map(|h| Path::new(&h).join(".aws").join("credentials")));
                let profile = nonempty("AWS_PROFILE").unwrap_or_else(|| "default".into());
                file.and_then(|f| std::fs::read_to_string(f).ok()).and_then(|text| profile_keys(&text, &profile))
            }
        };
        let default_region =
            nonempty("AWS_REGION").or_else(|| nonempty("AWS_DEFAULT_REGION")).unwrap_or_else(|| "us-east-1".into());
        Self { credentials, default_region, max_retries: 3, read_timeout: Duration::from_secs(300) }
    }
}

/// The keys of `profile` in a shared credentials file (INI: `[name]`, then `key = value`
/// lines; `#` and `;` start comments).
fn profile_keys(text: &str, profile: &str) -> Option<(String, String, Option<String>)> {
    let (mut id, mut secret, mut token) = (None, None, None);
    let mut inside = false;
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == profile;
            continue;
        }
        let Some((k, v)) = line.split_once('=').filter(|_| inside) else { continue };
        let v = v.trim().to_owned();
        match k.trim().to_ascii_lowercase().as_str() {
            "aws_access_key_id" => id = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    Some((id.filter(|v| !v.is_empty())?, secret.filter(|v| !v.is_empty())?, token.filter(|v| !v.is_empty())))
}

/// Hands object_store our HTTP client: its TLS roots, its guarded resolver, its timeouts.
#[derive(Debug)]
struct Connector(reqwest::Client);

impl HttpConnector for Connector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        Ok(HttpClient::new(self.0.clone()))
    }
}

/// The `s3` input provider.
#[derive(Debug)]
pub struct S3Source {
    client: reqwest::Client,
    settings: S3Settings,
}

/// One object to download and where it goes.
struct Planned {
    location: ObjectPath,
    size: u64,
    /// Sent as If-Match on every read, so a file is never spliced from two versions.
    e_tag: Option<String>,
    local: PathBuf,
}

impl S3Source {
    /// A provider on `builder`'s client (the caller's TLS settings), with addresses guarded.
    pub fn new(builder: reqwest::ClientBuilder, settings: S3Settings) -> Result<Self, StorageError> {
        Ok(Self { client: s3_client(builder, settings.read_timeout)?, settings })
    }

    fn spec(input: &InputSource) -> Result<S3Spec, StorageError> {
        S3Spec::from_spec(&input.source).map_err(|errs| {
            let text: Vec<String> = errs.into_iter().map(|(k, why)| format!("Params.{k} {why}")).collect();
            StorageError::Invalid(format!("the s3 input is invalid: {}", text.join("; ")))
        })
    }

    fn store(&self, spec: &S3Spec) -> Result<Arc<AmazonS3>, StorageError> {
        s3_store(&self.client, &self.settings, &spec.bucket, &spec.region, &spec.endpoint)
    }

    /// The objects the input names, before partitioning.
    async fn objects(&self, store: &AmazonS3, spec: &S3Spec) -> Result<Vec<ObjectMeta>, StorageError> {
        let place = format!("s3://{}/{}", spec.bucket, spec.key);
        if spec.is_single_object() {
            let path = ObjectPath::parse(&spec.key)
                .map_err(|e| StorageError::Invalid(format!("the s3 Key {:?} cannot name an object: {e}", spec.key)))?;
            let options = GetOptions {
                head: true,
                version: (!spec.version_id.is_empty()).then(|| spec.version_id.clone()),
                ..GetOptions::default()
            };
            match store.get_opts(&path, options).await {
                Ok(found) => return Ok(vec![found.meta]),
                // A "folder" named without its slash: what lies under it, where Bacalhau would
                // fail on the missing object.
                Err(object_store::Error::NotFound { .. }) if spec.version_id.is_empty() => {
                    let under = self.list(store, spec, &format!("{}/", spec.key)).await?;
                    if under.is_empty() {
                        return Err(StorageError::Refused(format!(
                            "{place} does not exist (no object has that key, and none is under {}/)",
                            spec.key
                        )));
                    }
                    return Ok(under);
                }
                Err(e) => return Err(s3_error(&place, e)),
            }
        }
        self.list(store, spec, spec.prefix()).await
    }

    async fn list(&self, store: &AmazonS3, spec: &S3Spec, prefix: &str) -> Result<Vec<ObjectMeta>, StorageError> {
        let place = format!("s3://{}/{prefix}", spec.bucket);
        let mut found = Vec::new();
        let mut token = None;
        let (mut pages, mut listed) = (0usize, 0usize);
        loop {
            let options = PaginatedListOptions { page_token: token.take(), ..PaginatedListOptions::default() };
            let prefix_arg = (!prefix.is_empty()).then_some(prefix);
            let page = store.list_paginated(prefix_arg, options).await.map_err(|e| s3_error(&place, e))?;
            pages += 1;
            listed += page.result.objects.len();
            // A server that pages for ever (empty pages, or objects the filter drops) is cut off.
            if pages > MAX_PAGES || listed > MAX_LISTED {
                return Err(StorageError::Refused(format!(
                    "{place} lists more than {MAX_LISTED} objects or {MAX_PAGES} pages: narrow the Key"
                )));
            }
            found.extend(page.result.objects.into_iter().filter(|o| {
                let key = o.location.as_ref();
                !key.ends_with('/') && spec.keeps(key)
            }));
            if found.len() > MAX_OBJECTS {
                return Err(StorageError::Refused(format!(
                    "{place} names more than {MAX_OBJECTS} objects: split the job by prefix"
                )));
            }
            match page.page_token {
                Some(t) => token = Some(t),
                None => return Ok(found),
            }
        }
    }
}

/// A client for `bucket` with the node's credentials; `endpoint` (an S3-compatible server of
/// one's own) gets path-style requests and plain http when it says so.
pub(crate) fn s3_store(
    client: &reqwest::Client,
    settings: &S3Settings,
    bucket: &str,
    region: &str,
    endpoint: &str,
) -> Result<Arc<AmazonS3>, StorageError> {
    let Some((id, secret, token)) = &settings.credentials else {
        return Err(StorageError::Invalid(
            "this node has no S3 credentials: its operator sets AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (and AWS_SESSION_TOKEN for temporary ones) in the environment of `bacalhau serve`, or a profile \
             in ~/.aws/credentials (AWS_PROFILE names it)"
                .into(),
        ));
    };
    let region = if region.is_empty() { settings.default_region.as_str() } else { region };
    if let Some(why) = bacalhau_model::region_problem(region) {
        return Err(StorageError::Invalid(format!("the s3 Region {why}")));
    }
    let retry = RetryConfig { max_retries: settings.max_retries as usize, ..RetryConfig::default() };
    let mut builder = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(region)
        .with_access_key_id(id)
        .with_secret_access_key(secret)
        .with_retry(retry)
        .with_http_connector(Connector(client.clone()))
        .with_checksum_algorithm(object_store::aws::Checksum::SHA256);
    if let Some(t) = token {
        builder = builder.with_token(t);
    }
    // A name with dots or capitals cannot be a host name under AWS's wildcard certificate:
    // such buckets are reached path-style.
    if bucket.contains('.') || bucket.chars().any(|c| c.is_ascii_uppercase() || c == '_') {
        builder = builder.with_virtual_hosted_style_request(false);
    }
    if !endpoint.is_empty() {
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| StorageError::Invalid(format!("the s3 Endpoint {endpoint:?} is invalid: {e}")))?;
        crate::url_source::check_url(&url)
            .map_err(|why| StorageError::Invalid(format!("the s3 Endpoint {endpoint} {why}")))?;
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_virtual_hosted_style_request(false)
            .with_allow_http(url.scheme() == "http");
    }
    builder
        .build()
        .map(Arc::new)
        .map_err(|e| StorageError::Invalid(format!("cannot reach S3 with these settings: {e}")))
}

/// Builds the HTTP client S3 requests go through: guarded addresses, no redirects.
pub(crate) fn s3_client(
    builder: reqwest::ClientBuilder,
    read_timeout: Duration,
) -> Result<reqwest::Client, StorageError> {
    crate::guard::guarded(builder)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(read_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| StorageError::Invalid(format!("cannot build the HTTP client for S3: {e}")))
}

/// Turns object_store's errors into ours: a missing object or a refusal is final.
pub(crate) fn s3_error(place: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::Refused(format!("{place} does not exist")),
        object_store::Error::PermissionDenied { source, .. } | object_store::Error::Unauthenticated { source, .. } => {
            StorageError::Refused(format!(
                "S3 refused this node's credentials for {place}: {source} (the node's operator checks AWS_ACCESS_KEY_ID and its permissions)"
            ))
        }
        other => {
            StorageError::Io { context: format!("reading {place}"), source: std::io::Error::other(other.to_string()) }
        }
    }
}

#[async_trait::async_trait]
impl InputProvider for S3Source {
    fn source_type(&self) -> &'static str {
        "s3"
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        let spec = Self::spec(input)?;
        self.store(&spec).map(|_| ())
    }

    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        self.prepare_partition(input, work_dir, max_bytes, Partition::WHOLE).await
    }

    async fn prepare_partition(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
        partition: Partition,
    ) -> Result<PreparedInput, StorageError> {
        let spec = Self::spec(input)?;
        let store = self.store(&spec)?;
        let started = std::time::Instant::now();
        let all = self.objects(&store, &spec).await?;
        let listed = all.len();
        let mut plan = Vec::new();
        let mut taken: HashMap<PathBuf, String> = HashMap::new();
        let mut total = 0u64;
        // Folder markers (zero-byte "dir/" objects made by consoles) come back without their
        // slash: a zero-byte object that the prefix or another key lies under is one. Only the
        // zero-byte keys are kept aside, not a copy of every key.
        let empty: HashSet<&str> = all.iter().filter(|m| m.size == 0).map(|m| m.location.as_ref()).collect();
        let mut markers: HashSet<String> = HashSet::new();
        for key in all.iter().map(|m| m.location.as_ref()).chain([spec.prefix()]) {
            for (at, _) in key.match_indices('/') {
                if empty.contains(&key[..at]) {
                    markers.insert(key[..at].to_owned());
                }
            }
        }
        let all: Vec<ObjectMeta> = all.into_iter().filter(|m| !markers.contains(m.location.as_ref())).collect();
        for meta in all {
            let key = meta.location.as_ref().to_owned();
            if spec.is_partitioned() && spec.partition_of(&key, partition.count) != partition.index {
                continue;
            }
            let parts = spec.local_path(&key).map_err(StorageError::Refused)?;
            let local: PathBuf = parts.iter().collect();
            if let Some(other) = taken.insert(local.clone(), key.clone()) {
                return Err(StorageError::Refused(format!(
                    "objects {other:?} and {key:?} would both be {}: rename one, or narrow the Key",
                    local.display()
                )));
            }
            total = total.saturating_add(meta.size);
            plan.push(Planned { location: meta.location, size: meta.size, e_tag: meta.e_tag, local });
        }
        if total > max_bytes {
            return Err(StorageError::Refused(format!(
                "s3://{}/{} is {total} bytes for this partition, more than the {max_bytes} bytes of disk left to the job: raise Resources.Disk",
                spec.bucket, spec.key
            )));
        }
        tokio::fs::create_dir_all(work_dir).await.map_err(StorageError::io("creating the input folder"))?;
        let expect =
            (spec.is_single_object() && !spec.checksum_sha256.is_empty()).then(|| spec.checksum_sha256.clone());
        let version = (!spec.version_id.is_empty()).then(|| spec.version_id.clone());
        let count = plan.len();
        // One pool of range slots for the whole input: 8 large objects at once still have at
        // most RANGES_IN_FLIGHT ranges (each one write buffer) in flight.
        let slots = Arc::new(tokio::sync::Semaphore::new(RANGES_IN_FLIGHT));
        let written = futures::stream::iter(plan.into_iter().map(|p| {
            let (store, dir, spec, slots) = (store.clone(), work_dir.to_path_buf(), &spec, slots.clone());
            let (expect, version) = (expect.clone(), version.clone());
            async move { download(&store, spec, p, &dir, version, expect.as_deref(), &slots).await }
        }))
        .buffer_unordered(PARALLEL_OBJECTS)
        .try_fold(0u64, |sum, n| async move { Ok(sum + n) })
        .await?;
        info!(
            bucket = %spec.bucket, key = %spec.key, listed, objects = count, bytes = written,
            partition = partition.index, of = partition.count, elapsed_ms = started.elapsed().as_millis(),
            "s3 input ready"
        );
        Ok(PreparedInput { host_path: work_dir.to_path_buf(), target: input.target.clone(), read_only: true })
    }
}

/// Streams one object to its place, holding it to its listed size and, when given, its checksum.
async fn download(
    store: &AmazonS3,
    spec: &S3Spec,
    p: Planned,
    dir: &Path,
    version: Option<String>,
    checksum: Option<&str>,
    slots: &tokio::sync::Semaphore,
) -> Result<u64, StorageError> {
    let place = format!("s3://{}/{}", spec.bucket, p.location);
    let dest = dir.join(&p.local);
    if let Some(parent) = dest.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(StorageError::io(format!("creating the folder for {place}")))?;
    }
    let version = version.filter(|_| spec.is_single_object());
    if p.size >= RANGED_FROM_BYTES {
        return download_ranges(store, &place, &p, &dest, version, checksum, slots).await;
    }
    let options = GetOptions { version, if_match: p.e_tag.clone(), ..GetOptions::default() };
    let got = store.get_opts(&p.location, options).await.map_err(|e| s3_error(&place, e))?;
    let file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&dest)
        .await
        .map_err(StorageError::io(format!("creating {}", dest.display())))?;
    let mut out = tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file);
    let mut hasher = checksum.map(|_| sha2::Sha256::new());
    let mut stream = got.into_stream();
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| s3_error(&place, e))?;
        n += chunk.len() as u64;
        // The object may have grown since it was listed: its listed size is what was charged.
        if n > p.size {
            return Err(StorageError::Refused(format!(
                "{place} grew past its listed {} bytes while it was read",
                p.size
            )));
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&chunk);
        }
        out.write_all(&chunk).await.map_err(StorageError::io(format!("writing {}", dest.display())))?;
    }
    out.flush().await.map_err(StorageError::io(format!("writing {}", dest.display())))?;
    if let (Some(h), Some(want)) = (hasher, checksum) {
        use base64::Engine as _;
        let got = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        if got != want {
            let _ = tokio::fs::remove_file(&dest).await;
            return Err(StorageError::Refused(format!("checksum mismatch for {place}: expected {want}, got {got}")));
        }
    }
    Ok(n)
}

/// Fetches a large object as [`range_bytes`] ranges, [`RANGES_IN_FLIGHT`] at once, each
/// written at its offset; the checksum, if asked, is taken over the file once it is whole.
async fn download_ranges(
    store: &AmazonS3,
    place: &str,
    p: &Planned,
    dest: &Path,
    version: Option<String>,
    checksum: Option<&str>,
    slots: &tokio::sync::Semaphore,
) -> Result<u64, StorageError> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(StorageError::io(format!("creating {}", dest.display())))?;
    file.set_len(p.size).map_err(StorageError::io(format!("sizing {}", dest.display())))?;
    let file = Arc::new(file);
    let step = range_bytes(p.size);
    let ranges: Vec<std::ops::Range<u64>> =
        (0..p.size.div_ceil(step)).map(|i| i * step..((i + 1) * step).min(p.size)).collect();
    let result = futures::stream::iter(ranges.into_iter().map(|range| {
        let (file, version) = (file.clone(), version.clone());
        async move {
            let _slot = slots.acquire().await.map_err(|_| StorageError::Invalid("the download was stopped".into()))?;
            let options = GetOptions {
                range: Some(object_store::GetRange::Bounded(range.clone())),
                version,
                if_match: p.e_tag.clone(),
                ..GetOptions::default()
            };
            let got = store.get_opts(&p.location, options).await.map_err(|e| s3_error(place, e))?;
            // Written at its offset as it arrives, a buffer at a time, and read up to the
            // range's length and no further: a server that keeps sending grows nothing.
            let want = range.end - range.start;
            let (mut at, mut got_bytes) = (range.start, 0u64);
            let mut buf = Vec::with_capacity(WRITE_BUFFER);
            let mut body = got.into_stream();
            loop {
                let chunk = body.next().await.transpose().map_err(|e| s3_error(place, e))?;
                let end = chunk.is_none();
                if let Some(chunk) = chunk {
                    got_bytes += chunk.len() as u64;
                    if got_bytes > want {
                        return Err(StorageError::Refused(format!(
                            "{place} sent more than the {want} bytes asked for at {}",
                            range.start
                        )));
                    }
                    buf.extend_from_slice(&chunk);
                }
                if buf.len() >= WRITE_BUFFER || (end && !buf.is_empty()) {
                    let (f, full) = (file.clone(), std::mem::replace(&mut buf, Vec::with_capacity(WRITE_BUFFER)));
                    let len = full.len() as u64;
                    tokio::task::spawn_blocking(move || {
                        use std::os::unix::fs::FileExt as _;
                        f.write_all_at(&full, at)
                    })
                    .await
                    .map_err(|e| StorageError::Invalid(format!("writing {place} crashed: {e}")))?
                    .map_err(StorageError::io(format!("writing {place}")))?;
                    at += len;
                }
                if end {
                    break;
                }
            }
            if got_bytes != want {
                return Err(StorageError::Refused(format!(
                    "{place} changed while it was read: bytes {}..{} came back as {got_bytes} bytes",
                    range.start, range.end
                )));
            }
            Ok(())
        }
    }))
    .buffer_unordered(RANGES_IN_FLIGHT)
    .try_collect::<Vec<()>>()
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(dest).await;
        return Err(e);
    }
    if let Some(want) = checksum {
        let path = dest.to_path_buf();
        let got = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use base64::Engine as _;
            use std::io::Read as _;
            let mut hasher = sha2::Sha256::new();
            let mut f = std::fs::File::open(path)?;
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = f.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            Ok(base64::engine::general_purpose::STANDARD.encode(hasher.finalize()))
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("checking {place} crashed: {e}")))?
        .map_err(StorageError::io(format!("checking {place}")))?;
        if got != want {
            let _ = tokio::fs::remove_file(dest).await;
            return Err(StorageError::Refused(format!("checksum mismatch for {place}: expected {want}, got {got}")));
        }
    }
    Ok(p.size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_environment_then_the_shared_file_profile() {
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("credentials");
        std::fs::write(
            &file,
            "# comment\n[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = s1\n\n\
             [work]\nAWS_ACCESS_KEY_ID=AKIDWORK\naws_secret_access_key= s2 \naws_session_token = t2\n\
             [broken]\naws_access_key_id = AKIDONLY\n",
        )
        .expect("write");
        let path = file.display().to_string();
        let with = |vars: &'static [(&'static str, &'static str)]| {
            let path = path.clone();
            S3Settings::from_env(move |k| {
                if k == "AWS_SHARED_CREDENTIALS_FILE" {
                    return Some(path.clone());
                }
                vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
            })
            .credentials
        };
        assert_eq!(with(&[]), Some(("AKIDDEFAULT".into(), "s1".into(), None)));
        assert_eq!(with(&[("AWS_PROFILE", "work")]), Some(("AKIDWORK".into(), "s2".into(), Some("t2".into()))));
        assert_eq!(with(&[("AWS_PROFILE", "broken")]), None, "a key without its secret is no credential");
        assert_eq!(with(&[("AWS_PROFILE", "absent")]), None);
        // The environment wins over the file.
        let env = with(&[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "e")]);
        assert_eq!(env, Some(("AKIDENV".into(), "e".into(), None)));
    }

    #[test]
    fn large_objects_are_cut_into_about_sixteen_ranges() {
        assert_eq!(range_bytes(32 << 20), 8 << 20);
        assert_eq!(range_bytes(1 << 30), 64 << 20);
        assert_eq!(range_bytes(10 << 30), 64 << 20);
        assert_eq!(range_bytes(300 << 20), 19 << 20);
    }
}
