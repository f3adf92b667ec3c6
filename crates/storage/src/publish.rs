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
            pack_tar_gz(&src, &tmp)?;
            std::fs::rename(&tmp, &dest).map_err(StorageError::io("storing the result archive"))
        })
        .await
        .map_err(|e| StorageError::Invalid(format!("publishing crashed: {e}")))??;
        Ok(Some(SpecConfig::new(SOURCE_URL).with_param("URL", format!("{}/{name}", self.base_url))))
    }
}

/// Writes `src` (a result folder) as a tar.gz at `dest`, symlinks as links (never followed),
/// synced to disk. Blocking.
pub fn pack_tar_gz(src: &Path, dest: &Path) -> Result<(), StorageError> {
    let file = File::create(dest).map_err(StorageError::io("creating the result archive"))?;
    let mut tar = tar::Builder::new(GzEncoder::new(file, flate2::Compression::fast()));
    tar.follow_symlinks(false);
    tar.append_dir_all(".", src).map_err(StorageError::io("archiving the results"))?;
    let gz = tar.into_inner().map_err(StorageError::io("archiving the results"))?;
    let file = gz.finish().map_err(StorageError::io("compressing the results"))?;
    file.sync_all().map_err(StorageError::io("syncing the result archive"))
}

/// Unpacks a tar.gz into `dest` (new or empty), refusing entries that would land outside it.
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> Result<u64, StorageError> {
    unpack_tar_gz_within(archive, dest, u64::MAX)
}

/// [`unpack_tar_gz`], writing at most `max_bytes` of file content (a job's disk budget).
pub fn unpack_tar_gz_within(archive: &Path, dest: &Path, max_bytes: u64) -> Result<u64, StorageError> {
    let f = File::open(archive).map_err(StorageError::io(format!("opening {}", archive.display())))?;
    unpack(GzDecoder::new(f), dest, max_bytes)
}

/// Unpacks a tar.gz held in memory, writing at most `max_bytes` of file content.
pub fn unpack_tar_gz_bytes(bytes: &[u8], dest: &Path, max_bytes: u64) -> Result<u64, StorageError> {
    unpack(GzDecoder::new(bytes), dest, max_bytes)
}

fn bad_archive(msg: String) -> StorageError {
    StorageError::Refused(format!("the archive {msg}; refusing it"))
}

/// Unpacks through [`bacalhau_ipfs::safe_fs`]: every entry is created once, under an open
/// handle of `dest`, never through a symlink (one made by an earlier entry included), with
/// setuid/setgid bits dropped; hard links, device nodes and FIFOs are refused. Returns the
/// bytes of file content written.
fn unpack(reader: impl std::io::Read, dest: &Path, max_bytes: u64) -> Result<u64, StorageError> {
    use bacalhau_ipfs::safe_fs::{DirHandle, EXEC_MODE, FILE_MODE};
    use std::path::Component;
    if let Some(parent) = dest.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(StorageError::io(format!("creating {}", parent.display())))?;
    }
    let root = DirHandle::create_root(dest).map_err(StorageError::io(format!("creating {}", dest.display())))?;
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(StorageError::io("reading the archive"))?;
    let mut written = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(StorageError::io("reading the archive"))?;
        let path = entry.path().map_err(StorageError::io("reading the archive"))?.into_owned();
        let shown = path.display().to_string();
        let mut names = Vec::new();
        for c in path.components() {
            match c {
                Component::CurDir => {}
                Component::Normal(n) => names.push(
                    n.to_str()
                        .ok_or_else(|| bad_archive(format!("holds a name that is not UTF-8: {shown:?}")))?
                        .to_owned(),
                ),
                _ => return Err(bad_archive(format!("holds a path outside its folder: {shown}"))),
            }
        }
        let kind = entry.header().entry_type();
        let Some((name, parents)) = names.split_last() else {
            continue;
        };
        if parents.len() >= bacalhau_executor::MAX_RESULT_DEPTH {
            return Err(bad_archive(format!("nests folders too deep at {shown}")));
        }
        let mut dir: Option<DirHandle> = None;
        for p in parents {
            let next = dir.as_ref().unwrap_or(&root).open_or_create_dir(p);
            dir = Some(next.map_err(|e| bad_archive(format!("cannot place {shown}: {e}")))?);
        }
        let parent = dir.as_ref().unwrap_or(&root);
        let io = |e: std::io::Error| bad_archive(format!("cannot write {shown}: {e}"));
        match kind {
            tar::EntryType::Directory => {
                parent.open_or_create_dir(name).map_err(io)?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let mode = if entry.header().mode().unwrap_or(0) & 0o111 != 0 { EXEC_MODE } else { FILE_MODE };
                let mut f = parent.create_file(name, mode).map_err(io)?;
                let limit = max_bytes.saturating_sub(written);
                let n =
                    std::io::copy(&mut std::io::Read::take(&mut entry, limit.saturating_add(1)), &mut f).map_err(io)?;
                written += n;
                if n > limit {
                    return Err(StorageError::Refused(format!(
                        "the archive expands to more than the {max_bytes} bytes allowed for it (at {shown}); \
                         ask for more with --disk or make the input smaller"
                    )));
                }
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad_archive(format!("has a symlink {shown} with no target")))?;
                parent.create_symlink(name, &target).map_err(io)?;
            }
            tar::EntryType::Link => {
                return Err(bad_archive(format!("holds a hard link at {shown}, which is not supported")));
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                return Err(bad_archive(format!("holds a device node or FIFO at {shown}")));
            }
            // Metadata entries (pax headers, GNU long names) are read by `tar` itself; anything
            // else carries no content of ours.
            _ => {}
        }
    }
    Ok(written)
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
