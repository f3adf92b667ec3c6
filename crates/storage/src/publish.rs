//! The `noop` and `local` publishers, and tar.gz packing shared with result downloads.

use std::fs::File;
use std::path::{Path, PathBuf};

use bacalhau_model::{ExecutionId, PUBLISHER_LOCAL, PUBLISHER_NOOP, SOURCE_URL, SpecConfig};
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::{Publisher, StorageError};

/// The file name suffix of a published result archive.
pub const RESULTS_ARCHIVE_SUFFIX: &str = ".tar.gz";

/// Publishes nowhere.
#[derive(Debug, Default)]
pub struct NoopPublisher;

#[async_trait::async_trait]
impl Publisher for NoopPublisher {
    fn publisher_type(&self) -> &'static str {
        PUBLISHER_NOOP
    }

    async fn publish(&self, _: &ExecutionId, _: &Path) -> Result<Option<SpecConfig>, StorageError> {
        Ok(None)
    }
}

/// Keeps results on the compute node as `<execution>.tar.gz` and serves them over the node's
/// HTTP API, as Bacalhau's local publisher does; the published result is a `urlDownload`.
#[derive(Debug)]
pub struct LocalPublisher {
    dir: PathBuf,
    base_url: String,
}

impl LocalPublisher {
    /// Archives go to `dir`; they are fetched from `base_url` + `/<execution>.tar.gz`.
    pub fn new(dir: PathBuf, base_url: String) -> Self {
        Self { dir, base_url: base_url.trim_end_matches('/').to_owned() }
    }

    /// Where archives are kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[async_trait::async_trait]
impl Publisher for LocalPublisher {
    fn publisher_type(&self) -> &'static str {
        PUBLISHER_LOCAL
    }

    async fn publish(
        &self,
        execution_id: &ExecutionId,
        results_dir: &Path,
    ) -> Result<Option<SpecConfig>, StorageError> {
        let name = format!("{execution_id}{RESULTS_ARCHIVE_SUFFIX}");
        let dest = self.dir.join(&name);
        let src = results_dir.to_owned();
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            std::fs::create_dir_all(&dir).map_err(StorageError::io("creating the local publisher folder"))?;
            let tmp = dest.with_extension("partial");
            let file = File::create(&tmp).map_err(StorageError::io("creating the result archive"))?;
            let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
            tar.follow_symlinks(false);
            tar.append_dir_all(".", &src).map_err(StorageError::io("archiving the results"))?;
            let gz = tar.into_inner().map_err(StorageError::io("archiving the results"))?;
            let file = gz.finish().map_err(StorageError::io("compressing the results"))?;
            file.sync_all().map_err(StorageError::io("syncing the result archive"))?;
            std::fs::rename(&tmp, &dest).map_err(StorageError::io("storing the result archive"))
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("publishing crashed: {e}")))??;
        Ok(Some(SpecConfig::new(SOURCE_URL).with_param("URL", format!("{}/{name}", self.base_url))))
    }
}

/// Unpacks a tar.gz into `dest`, refusing entries that would land outside it.
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<(), StorageError> {
    let f = File::open(archive).map_err(StorageError::io(format!("opening {}", archive.display())))?;
    unpack(GzDecoder::new(f), dest)
}

pub(crate) fn unpack_tar_gz_bytes(bytes: &[u8], dest: &Path) -> Result<(), StorageError> {
    unpack(GzDecoder::new(bytes), dest)
}

fn unpack(reader: impl std::io::Read, dest: &Path) -> Result<(), StorageError> {
    std::fs::create_dir_all(dest).map_err(StorageError::io(format!("creating {}", dest.display())))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(StorageError::io("reading the archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(StorageError::io("reading the archive"))?;
        // `unpack_in` refuses paths with `..` or absolute paths that would escape `dest`.
        let inside = entry.unpack_in(dest).map_err(StorageError::io("unpacking the archive"))?;
        if !inside {
            return Err(StorageError::Invalid("the archive holds a path outside its folder; refusing it".into()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_publisher_round_trips_a_result_folder() {
        let tmp = tempfile::tempdir().expect("tmp");
        let results = tmp.path().join("results");
        std::fs::create_dir_all(results.join("outputs/deep")).expect("mkdir");
        std::fs::write(results.join("stdout"), "hi\n").expect("write");
        std::fs::write(results.join("outputs/deep/x.txt"), "x").expect("write");
        let publisher = LocalPublisher::new(tmp.path().join("pub"), "http://127.0.0.1:1/r/".into());
        let id = ExecutionId::from("e-1");
        let spec = publisher.publish(&id, &results).await.expect("publish").expect("some");
        assert_eq!(spec.type_name(), "urlDownload");
        assert_eq!(spec.param_str("URL"), Some("http://127.0.0.1:1/r/e-1.tar.gz"));
        let out = tmp.path().join("out");
        unpack_tar_gz(&publisher.dir().join("e-1.tar.gz"), &out).expect("unpack");
        assert_eq!(std::fs::read_to_string(out.join("outputs/deep/x.txt")).expect("read"), "x");
        assert_eq!(std::fs::read_to_string(out.join("stdout")).expect("read"), "hi\n");
    }
}
