//! Bacalhau's managed S3 publisher (`s3managed`, `pkg/publisher/s3managed`): the orchestrator
//! holds the S3 credentials and one bucket; a compute node packs the result, asks the
//! orchestrator (over its link) for a URL to PUT it to, and uploads it with no credentials of
//! its own. The object's key is `<Key>/<jobID>/<executionID>.tar.gz`, made by the orchestrator
//! from IDs it knows, so a compute node can neither choose where it writes nor read what it
//! wrote. `job get` receives the result as `s3PreSigned`, with a GET URL the orchestrator
//! signs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bacalhau_model::{ExecutionId, SpecConfig};
use bacalhau_storage::{PublishRequest, Publisher, ResultSigner, SignRequest, StorageError, pack_tar_gz};
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::signer::Signer as _;
use object_store::{GetOptions, ObjectStore as _};
use tracing::{info, warn};

use crate::s3_source::{S3Settings, s3_client, s3_error, s3_store};

/// S3 takes at most 5 GiB in one PUT, and a signed URL allows nothing else.
const MAX_SINGLE_PUT: u64 = 5 << 30;
/// Tries of one upload: transient failures (a reset connection, a 5xx, a throttle) are
/// retried with back-off, as Bacalhau's uploader does.
const UPLOAD_ATTEMPTS: u32 = 5;

/// The orchestrator's managed bucket (`Publishers.Types.S3Managed`).
#[derive(Debug, Clone, Default)]
pub struct S3ManagedSettings {
    /// `Bucket`.
    pub bucket: String,
    /// `Key`: a prefix for every object.
    pub key: String,
    /// `Region`.
    pub region: String,
    /// `Endpoint`: empty for AWS.
    pub endpoint: String,
    /// `PreSignedURLExpiration`: how long each signed URL lasts.
    pub expiry: Duration,
}

impl S3ManagedSettings {
    /// What is wrong with the settings, each naming its key; empty when they are usable.
    pub fn problems(&self) -> Vec<String> {
        let field = "Publishers.Types.S3Managed";
        let mut out = Vec::new();
        if let Some(why) = bacalhau_model::bucket_problem(&self.bucket) {
            out.push(format!("{field}.Bucket {why}"));
        }
        if self.region.is_empty() {
            out.push(format!("{field}.Region is required (e.g. us-east-1)"));
        } else if let Some(why) = bacalhau_model::region_problem(&self.region) {
            out.push(format!("{field}.Region {why}"));
        }
        if let Some(why) = bacalhau_model::endpoint_problem(&self.endpoint) {
            out.push(format!("{field}.Endpoint {why}"));
        }
        if self.key.split('/').any(|part| part == "..") || self.key.contains(['\\', '\0']) {
            out.push(format!("{field}.Key is {:?}: a key prefix has no '..' parts", self.key));
        }
        if self.expiry.is_zero() {
            out.push(format!("{field}.PreSignedURLExpiration must be more than 0s"));
        }
        out
    }

    /// The key of an execution's archive.
    pub fn object_key(&self, job_id: &str, execution_id: &str) -> String {
        let prefix = self.key.trim_matches('/');
        if prefix.is_empty() {
            format!("{job_id}/{execution_id}.tar.gz")
        } else {
            format!("{prefix}/{job_id}/{execution_id}.tar.gz")
        }
    }
}

/// The orchestrator's side: signs PUT URLs for compute nodes and GET URLs for `job get`.
#[derive(Debug)]
pub struct S3ManagedSigner {
    settings: S3ManagedSettings,
    store: Arc<AmazonS3>,
}

impl S3ManagedSigner {
    /// A signer for `managed`'s bucket with the orchestrator's credentials in `s3`. Refuses
    /// settings it could not use, naming each key.
    pub fn new(
        builder: reqwest::ClientBuilder,
        s3: &S3Settings,
        managed: S3ManagedSettings,
    ) -> Result<Self, StorageError> {
        let problems = managed.problems();
        if !problems.is_empty() {
            return Err(StorageError::Invalid(format!(
                "the managed S3 publisher's settings are invalid: {}",
                problems.join("; ")
            )));
        }
        let client = s3_client(builder, s3.read_timeout)?;
        let store = s3_store(&client, s3, &managed.bucket, &managed.region, &managed.endpoint).map_err(|e| {
            StorageError::Invalid(format!("the managed S3 publisher (Publishers.Types.S3Managed) cannot work: {e}"))
        })?;
        Ok(Self { settings: managed, store })
    }

    fn location(&self, job_id: &str, execution_id: &str) -> Result<(ObjectPath, String), StorageError> {
        let key = self.settings.object_key(job_id, execution_id);
        let location = ObjectPath::parse(&key)
            .map_err(|e| StorageError::Invalid(format!("{key:?} cannot name an S3 object: {e}")))?;
        Ok((location, format!("s3://{}/{key}", self.settings.bucket)))
    }

    /// A URL to PUT the archive of `execution_id` to, valid for the configured time.
    pub async fn put_url(&self, job_id: &str, execution_id: &str) -> Result<String, StorageError> {
        let (location, place) = self.location(job_id, execution_id)?;
        let url = self
            .store
            .signed_url(reqwest::Method::PUT, &location, self.settings.expiry)
            .await
            .map_err(|e| s3_error(&place, e))?;
        Ok(url.to_string())
    }
}

#[async_trait::async_trait]
impl ResultSigner for S3ManagedSigner {
    async fn sign(&self, request: SignRequest<'_>) -> Result<Option<SpecConfig>, StorageError> {
        if !request.result.is_type(bacalhau_model::PUBLISHER_S3_MANAGED)
            || !request.publisher.is_type(bacalhau_model::PUBLISHER_S3_MANAGED)
        {
            return Ok(None);
        }
        // The object is named from the execution the orchestrator knows, never from the
        // node's report, so a result can only ever point at its own archive...
        let (location, place) = self.location(request.job_id, request.execution_id)?;
        let head = self
            .store
            .get_opts(&location, GetOptions { head: true, ..Default::default() })
            .await
            .map_err(|e| s3_error(&place, e))?;
        // ...written after the execution began (S3 keeps whole seconds; clocks differ).
        let written = u64::try_from(head.meta.last_modified.timestamp()).unwrap_or(0);
        if written + 60 < request.not_before_secs {
            warn!(execution = request.execution_id, "not signing {place}: it is older than the execution");
            return Ok(None);
        }
        let url = self
            .store
            .signed_url(reqwest::Method::GET, &location, self.settings.expiry)
            .await
            .map_err(|e| s3_error(&place, e))?;
        Ok(Some(
            SpecConfig::new("s3PreSigned")
                .with_param("SourceSpec", serde_json::Value::Object(serde_json::Map::new()))
                .with_param("PreSignedURL", url.to_string())
                .with_param("Managed", true),
        ))
    }
}

/// The compute node's side: packs the result and PUTs it to the URL the orchestrator signed.
#[derive(Debug)]
pub struct S3ManagedPublisher {
    client: reqwest::Client,
    /// Where archives are written before upload.
    scratch: PathBuf,
}

impl S3ManagedPublisher {
    /// A publisher on `builder`'s client, writing archives under `scratch` before upload.
    pub fn new(builder: reqwest::ClientBuilder, scratch: PathBuf) -> Result<Self, StorageError> {
        // An archive is removed once uploaded; one a crash left behind goes now.
        let _ = std::fs::remove_dir_all(&scratch);
        // The URL comes from the orchestrator, but the node dials it: the same guard as any
        // address someone else names. Signed URLs do not redirect.
        let client = s3_client(builder, Duration::from_secs(60))?;
        Ok(Self { client, scratch })
    }

    /// One PUT of `archive`.
    async fn put(&self, url: &str, archive: &Path, len: u64) -> Result<(), PutError> {
        let file =
            tokio::fs::File::open(archive).await.map_err(|e| PutError::Fatal(format!("reading the archive: {e}")))?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, 1 << 20));
        let response = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .header(reqwest::header::CONTENT_TYPE, "application/gzip")
            .body(body)
            .send()
            .await
            .map_err(|e| PutError::Transient(format!("the upload failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text: String = response.text().await.unwrap_or_default().chars().take(300).collect();
        let why = format!("S3 answered {status}: {text}");
        Err(match status.as_u16() {
            408 | 429 | 500..=599 => PutError::Transient(why),
            403 => PutError::Forbidden(why),
            _ => PutError::Fatal(why),
        })
    }
}

/// How a PUT failed, for what to do next.
enum PutError {
    /// Worth trying again after a pause.
    Transient(String),
    /// The signature was refused: expired, most likely.
    Forbidden(String),
    /// Would fail again.
    Fatal(String),
}

#[async_trait::async_trait]
impl Publisher for S3ManagedPublisher {
    fn publisher_type(&self) -> &'static str {
        bacalhau_model::PUBLISHER_S3_MANAGED
    }

    async fn publish(&self, _: &ExecutionId, _: &Path) -> Result<Option<SpecConfig>, StorageError> {
        Err(StorageError::Invalid("the s3managed publisher needs the orchestrator to sign its upload".into()))
    }

    async fn publish_for(
        &self,
        request: PublishRequest<'_>,
        results_dir: &Path,
    ) -> Result<Option<SpecConfig>, StorageError> {
        let Some(uploads) = request.uploads else {
            return Err(StorageError::Invalid(
                "the s3managed publisher needs an orchestrator to sign its upload, and this node has none".into(),
            ));
        };
        tokio::fs::create_dir_all(&self.scratch)
            .await
            .map_err(StorageError::io("creating the s3managed publisher's folder"))?;
        let archive = self.scratch.join(format!("{}.tar.gz", request.execution_id));
        let (src, dest) = (results_dir.to_path_buf(), archive.clone());
        let packed = tokio::task::spawn_blocking(move || pack_tar_gz(&src, &dest))
            .await
            .map_err(|e| StorageError::Invalid(format!("archiving the results crashed: {e}")))
            .and_then(|r| r);
        let uploaded = match packed {
            Ok(()) => self.upload(uploads, request.execution_id, &archive).await,
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_file(&archive).await;
        let bytes = uploaded?;
        info!(execution = %request.execution_id, bytes, "results published to the managed S3 bucket");
        Ok(Some(
            SpecConfig::new(bacalhau_model::PUBLISHER_S3_MANAGED)
                .with_param("JobID", request.job_id)
                .with_param("ExecutionID", request.execution_id.as_str()),
        ))
    }
}

impl S3ManagedPublisher {
    async fn upload(
        &self,
        uploads: &dyn bacalhau_storage::UploadUrls,
        execution_id: &ExecutionId,
        archive: &Path,
    ) -> Result<u64, StorageError> {
        let len = tokio::fs::metadata(archive).await.map_err(StorageError::io("reading the archive"))?.len();
        if len > MAX_SINGLE_PUT {
            return Err(StorageError::Refused(format!(
                "the result archive is {len} bytes; the s3managed publisher uploads one object of at most 5 GiB \
                 (an S3 limit for signed uploads): publish results this large with the s3 publisher"
            )));
        }
        let mut url = uploads.upload_url(execution_id).await?;
        let mut last = String::new();
        let mut renewed = false;
        for attempt in 0..UPLOAD_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(4))).await;
            }
            match self.put(&url, archive, len).await {
                Ok(()) => return Ok(len),
                Err(PutError::Transient(why)) => last = why,
                Err(PutError::Forbidden(why)) if !renewed => {
                    // The URL may have expired on the way (a slow link, a long retry): one
                    // fresh URL, then a refusal is final.
                    last = why;
                    renewed = true;
                    url = uploads.upload_url(execution_id).await?;
                }
                Err(PutError::Forbidden(why) | PutError::Fatal(why)) => {
                    return Err(StorageError::Refused(format!(
                        "uploading the result to the managed S3 bucket failed: {why} (the orchestrator's \
                         operator checks Publishers.Types.S3Managed and its credentials)"
                    )));
                }
            }
        }
        Err(StorageError::Io {
            context: format!("uploading the result to the managed S3 bucket ({UPLOAD_ATTEMPTS} tries)"),
            source: std::io::Error::other(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Hands out `/put/1`, `/put/2`, ... on a server, counting the asks.
    #[derive(Debug)]
    struct Urls {
        base: String,
        asked: AtomicU32,
    }

    #[async_trait::async_trait]
    impl bacalhau_storage::UploadUrls for Urls {
        async fn upload_url(&self, _: &ExecutionId) -> Result<String, StorageError> {
            let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(format!("{}/put/{n}", self.base))
        }
    }

    /// A server whose answers to PUTs are scripted (status per request, in order; then 200),
    /// keeping each body that got a 200 by path.
    async fn server(script: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, Vec<u8>)>>>) {
        use axum::extract::{Path as UrlPath, State};
        let kept = Arc::new(Mutex::new(Vec::new()));
        let script = Arc::new(Mutex::new(script.into_iter()));
        let state = (script, kept.clone());
        type St = (Arc<Mutex<std::vec::IntoIter<u16>>>, Arc<Mutex<Vec<(String, Vec<u8>)>>>);
        async fn put(State((script, kept)): State<St>, UrlPath(n): UrlPath<String>, body: axum::body::Bytes) -> u16 {
            let status = script.lock().expect("lock").next().unwrap_or(200);
            if status == 200 {
                kept.lock().expect("lock").push((n, body.to_vec()));
            }
            status
        }
        let app = axum::Router::new()
            .route(
                "/put/{n}",
                axum::routing::put(|st, n, body| async move {
                    axum::http::StatusCode::from_u16(put(st, n, body).await).expect("status")
                }),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (base, kept)
    }

    #[tokio::test]
    async fn uploads_retry_transient_failures_renew_a_refused_url_once_and_refuse_huge_archives() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = tempfile::tempdir().expect("tmp");
        let publisher = S3ManagedPublisher::new(reqwest::Client::builder(), tmp.path().join("scratch")).expect("new");
        let archive = tmp.path().join("a.tar.gz");
        std::fs::write(&archive, b"archive bytes").expect("write");
        let id = ExecutionId::from("e-1");

        // A 503 and a 500 are retried on the same URL; the body arrives whole.
        let (base, kept) = server(vec![503, 500]).await;
        let urls = Urls { base, asked: AtomicU32::new(0) };
        assert_eq!(publisher.upload(&urls, &id, &archive).await.expect("uploaded"), 13);
        assert_eq!(urls.asked.load(Ordering::SeqCst), 1);
        assert_eq!(kept.lock().expect("lock").as_slice(), [("1".to_owned(), b"archive bytes".to_vec())]);

        // A 403 (an expired URL) gets one fresh URL; a second 403 is final, naming the status.
        let (base, kept) = server(vec![403]).await;
        let urls = Urls { base, asked: AtomicU32::new(0) };
        publisher.upload(&urls, &id, &archive).await.expect("uploaded after renewal");
        assert_eq!(urls.asked.load(Ordering::SeqCst), 2);
        assert_eq!(kept.lock().expect("lock")[0].0, "2");
        let (base, _) = server(vec![403, 403]).await;
        let urls = Urls { base, asked: AtomicU32::new(0) };
        let err = publisher.upload(&urls, &id, &archive).await.expect_err("refused");
        assert!(err.to_string().contains("403"), "{err}");
        // A 400 is not retried.
        let (base, _) = server(vec![400]).await;
        let urls = Urls { base, asked: AtomicU32::new(0) };
        let err = publisher.upload(&urls, &id, &archive).await.expect_err("refused");
        assert!(matches!(err, StorageError::Refused(_)) && err.to_string().contains("400"), "{err}");

        // Over S3's 5 GiB for one PUT: refused before any URL is asked for (a sparse file).
        let huge = tmp.path().join("huge.tar.gz");
        std::fs::File::create(&huge).expect("create").set_len(MAX_SINGLE_PUT + 1).expect("sparse");
        let urls = Urls { base: "http://127.0.0.1:9".into(), asked: AtomicU32::new(0) };
        let err = publisher.upload(&urls, &id, &huge).await.expect_err("too big");
        assert!(err.to_string().contains("5 GiB") && err.to_string().contains("s3 publisher"), "{err}");
        assert_eq!(urls.asked.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn keys_and_settings_are_checked() {
        let mut s = S3ManagedSettings {
            bucket: "results".into(),
            key: "/bacalhau/".into(),
            region: "us-east-1".into(),
            endpoint: String::new(),
            expiry: Duration::from_secs(3600),
        };
        assert!(s.problems().is_empty(), "{:?}", s.problems());
        assert_eq!(s.object_key("j-1", "e-1"), "bacalhau/j-1/e-1.tar.gz");
        s.key = String::new();
        assert_eq!(s.object_key("j-1", "e-1"), "j-1/e-1.tar.gz");
        let bad = S3ManagedSettings {
            bucket: "s3://x".into(),
            key: "a/../b".into(),
            region: String::new(),
            endpoint: "ftp://x".into(),
            expiry: Duration::ZERO,
        };
        let problems = bad.problems().join("\n");
        for key in ["Bucket", "Region is required", "Endpoint", "Key", "PreSignedURLExpiration"] {
            assert!(problems.contains(&format!("Publishers.Types.S3Managed.{key}")), "{key}: {problems}");
        }
        let region = S3ManagedSettings { region: "x@169.254.169.254/".into(), ..s };
        assert!(region.problems().join("").contains("Region"), "a region that would redirect requests");
    }
}
