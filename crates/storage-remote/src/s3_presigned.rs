//! `s3PreSigned` inputs: an object read through a URL someone with credentials signed (the
//! form `GET /jobs/{id}/results` hands out for `s3` and `s3managed` results), so one job's
//! result feeds another's input on a compute node that holds no S3 credentials. Bacalhau
//! only downloads this form in `bacalhau get`; a job spec cannot name it there.
//!
//! The URL is fetched as a `urlDownload` is (guarded addresses, bounded redirects, retries,
//! the disk budget), but never cached: its signature changes with every signing. An archived
//! result (`.tar.gz`, or `Managed: true`) is unpacked into the input's folder within the same
//! budget; anything else lands as one file named after the object.

use std::path::Path;

use bacalhau_executor::PreparedInput;
use bacalhau_model::{InputSource, SOURCE_URL, SpecConfig};
use bacalhau_storage::{InputProvider, StorageError};

use crate::url_source::{UrlSettings, UrlSource};

/// The `s3PreSigned` input provider.
#[derive(Debug)]
pub struct S3PreSignedSource {
    url: UrlSource,
}

impl S3PreSignedSource {
    /// A provider on `builder`'s client with the node's `urlDownload` limits (no cache).
    pub fn new(builder: reqwest::ClientBuilder, settings: UrlSettings) -> Result<Self, StorageError> {
        Ok(Self { url: UrlSource::new(builder, UrlSettings { cache_dir: None, ..settings })? })
    }

    /// The input as the `urlDownload` it is fetched as.
    fn as_download(input: &InputSource) -> Result<InputSource, StorageError> {
        let url = input.source.param_str("PreSignedURL").unwrap_or_default().trim();
        if url.is_empty() {
            return Err(StorageError::Invalid(
                "the s3PreSigned input has no PreSignedURL: set Source.Params.PreSignedURL".into(),
            ));
        }
        Ok(InputSource {
            source: SpecConfig::new(SOURCE_URL).with_param("URL", url),
            alias: input.alias.clone(),
            target: input.target.clone(),
        })
    }

    /// Whether the object is a result archive to unpack.
    fn archived(input: &InputSource, file: &Path) -> bool {
        let managed = input.source.params.iter().any(|(k, v)| k.eq_ignore_ascii_case("Managed") && v == true);
        let key = input
            .source
            .params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("SourceSpec"))
            .and_then(|(_, v)| v.as_object())
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Key")))
            .and_then(|(_, v)| v.as_str())
            .unwrap_or_default()
            .to_owned();
        managed || key.ends_with(".tar.gz") || file.to_string_lossy().ends_with(".tar.gz")
    }
}

#[async_trait::async_trait]
impl InputProvider for S3PreSignedSource {
    fn source_type(&self) -> &'static str {
        "s3PreSigned"
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        self.url.validate(&Self::as_download(input)?)
    }

    async fn prepare(
        &self,
        input: &InputSource,
        work_dir: &Path,
        max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        let download = Self::as_download(input)?;
        // Fetched beside the input's folder, so an archive never sits among what it unpacks.
        let staging = work_dir.with_extension("download");
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let result = async {
            self.url.prepare(&download, &staging, max_bytes).await?;
            let mut entries = tokio::fs::read_dir(&staging).await.map_err(StorageError::io("reading the download"))?;
            let file = entries
                .next_entry()
                .await
                .map_err(StorageError::io("reading the download"))?
                .ok_or_else(|| StorageError::Invalid("the s3PreSigned download left no file".into()))?
                .path();
            if Self::archived(input, &file) {
                let (archive, dest) = (file.clone(), work_dir.to_path_buf());
                tokio::task::spawn_blocking(move || bacalhau_storage::unpack_tar_gz_within(&archive, &dest, max_bytes))
                    .await
                    .map_err(|e| StorageError::Invalid(format!("unpacking the s3PreSigned result crashed: {e}")))??;
            } else {
                tokio::fs::create_dir_all(work_dir).await.map_err(StorageError::io("creating the input folder"))?;
                let name = file.file_name().map(std::ffi::OsStr::to_owned).unwrap_or_default();
                tokio::fs::rename(&file, work_dir.join(name))
                    .await
                    .map_err(StorageError::io("placing the download"))?;
            }
            Ok(())
        }
        .await;
        let _ = tokio::fs::remove_dir_all(&staging).await;
        result?;
        Ok(PreparedInput { host_path: work_dir.to_path_buf(), target: input.target.clone(), read_only: true })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(files: Vec<(&'static str, Vec<u8>)>) -> String {
        let mut app = axum::Router::new();
        for (path, body) in files {
            app = app.route(path, axum::routing::get(move || async move { body.clone() }));
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        base
    }

    fn input(url: String, extra: &[(&str, serde_json::Value)]) -> InputSource {
        let mut source = SpecConfig::new("s3PreSigned").with_param("PreSignedURL", url);
        for (k, v) in extra {
            source = source.with_param(k, v.clone());
        }
        InputSource { source, alias: String::new(), target: "/inputs".into() }
    }

    #[tokio::test]
    async fn a_signed_result_is_unpacked_a_plain_object_placed_and_the_budget_kept() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let tmp = tempfile::tempdir().expect("tmp");
        let results = tmp.path().join("results");
        std::fs::create_dir_all(&results).expect("mkdir");
        std::fs::write(results.join("stdout"), "Hello\n").expect("write");
        let archive = tmp.path().join("e-1.tar.gz");
        bacalhau_storage::pack_tar_gz(&results, &archive).expect("pack");
        let base = serve(vec![
            ("/b/j-1/e-1.tar.gz", std::fs::read(&archive).expect("read")),
            ("/b/data.csv", b"a,b\n".to_vec()),
        ])
        .await;
        let source = S3PreSignedSource::new(reqwest::Client::builder(), UrlSettings::default()).expect("source");
        let signed = |path: &str| format!("{base}{path}?X-Amz-Signature=abc");

        let dir = tmp.path().join("in-1");
        let managed = input(signed("/b/j-1/e-1.tar.gz"), &[("Managed", true.into())]);
        let got = source.prepare(&managed, &dir, u64::MAX).await.expect("prepared");
        assert_eq!(std::fs::read_to_string(got.host_path.join("stdout")).expect("stdout"), "Hello\n");
        assert!(!dir.join("e-1.tar.gz").exists(), "the archive is not left among what it held");
        assert!(!dir.with_extension("download").exists(), "the staging folder is gone");

        let dir = tmp.path().join("in-2");
        let plain = input(signed("/b/data.csv"), &[("SourceSpec", serde_json::json!({"Key": "data.csv"}))]);
        source.prepare(&plain, &dir, u64::MAX).await.expect("prepared");
        assert_eq!(std::fs::read_to_string(dir.join("data.csv")).expect("file"), "a,b\n");

        // Three bytes of budget: refused, and nothing left behind.
        let dir = tmp.path().join("in-3");
        let err = source.prepare(&plain, &dir, 3).await.expect_err("over budget");
        assert!(err.to_string().contains("disk"), "{err}");
        assert!(!dir.with_extension("download").exists());

        assert!(source.validate(&input(String::new(), &[])).is_err(), "no URL");
        assert!(source.validate(&input("http://169.254.169.254/latest/x".into(), &[])).is_err(), "metadata");
    }
}
