//! Execution folders, recycled.
//!
//! A trivial execution's folder is a handful of directories and files (the result folder with
//! stdout and stderr, one folder per input). Creating and removing them for every execution
//! is where a node running thousands of small jobs a second spends its time: ext4 allocates
//! each new inode by scanning past the ones deleted moments before, and removing a folder
//! waits on the device's discard. So a finished execution's folder is emptied back to that
//! skeleton and kept (a few hundred at most) for the next execution, which takes it by one
//! rename: the same inodes serve job after job.
//!
//! Nothing of one job may reach the next: emptying keeps only entries of the exact names and
//! types the node itself makes (never following a link), truncates the files it keeps (only
//! when no one reads them), and removes everything else; a folder that cannot be emptied so
//! is removed instead.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bacalhau_executor::{EXIT_CODE_FILE, STDERR_FILE, STDOUT_FILE};
use tracing::warn;

/// Spare folders kept at most; beyond this a finished execution's folder is removed. Enough
/// for the executions a busy node finishes between two it starts (an emptied folder takes
/// four directories' worth of disk, 16 KiB on ext4: 8 MiB at most).
const MAX_SPARE: usize = 512;

/// The spare folders of one compute node.
#[derive(Debug)]
pub(crate) struct FolderPool {
    /// Where spares wait: beside the executions' folders, on the same file system.
    root: PathBuf,
    spare: Mutex<Spares>,
    /// Executions whose output files someone has open (`job logs`), by how many readers.
    readers: Arc<Mutex<HashMap<String, usize>>>,
}

/// Held while an execution's output files may be open; see [`FolderPool::reading`].
#[derive(Debug)]
pub(crate) struct Reading {
    id: String,
    readers: Arc<Mutex<HashMap<String, usize>>>,
}

impl Drop for Reading {
    fn drop(&mut self) {
        if let Ok(mut r) = self.readers.lock()
            && let Some(n) = r.get_mut(&self.id)
        {
            *n -= 1;
            if *n == 0 {
                r.remove(&self.id);
            }
        }
    }
}

#[derive(Debug, Default)]
struct Spares {
    ready: Vec<PathBuf>,
    /// Names spares apart.
    next: u64,
}

impl FolderPool {
    /// A pool whose spares live in `root`. Spares left by an earlier run are never reused
    /// (this run did not empty them): they are set aside beside `root`, under a name with
    /// [`crate::node::ASIDE`] in it, for the node's cleanup at start.
    pub(crate) fn new(root: PathBuf) -> Self {
        if root.exists() {
            let mut aside = root.clone().into_os_string();
            aside.push(crate::node::aside_suffix());
            if fs::rename(&root, &aside).is_err() {
                let _ = fs::remove_dir_all(&root);
            }
        }
        Self { root, spare: Mutex::new(Spares::default()), readers: Arc::default() }
    }

    /// Makes `dir` (which must not exist) from a spare folder if there is one; otherwise
    /// leaves it to be created.
    pub(crate) fn take(&self, dir: &Path) {
        let spare = self.spare.lock().ok().and_then(|mut s| s.ready.pop());
        if let Some(spare) = spare
            && fs::rename(&spare, dir).is_err()
        {
            let _ = fs::remove_dir_all(&spare);
        }
    }

    /// Says that execution `id`'s output files are about to be opened, until the guard drops.
    /// Take it before opening them.
    pub(crate) fn reading(&self, id: &str) -> Reading {
        if let Ok(mut r) = self.readers.lock() {
            *r.entry(id.to_owned()).or_default() += 1;
        }
        Reading { id: id.to_owned(), readers: self.readers.clone() }
    }

    /// Done with execution `id`'s folder `dir`: emptied and kept as a spare, or removed.
    /// Blocking.
    pub(crate) fn give_back(&self, dir: &Path, id: &str) {
        let name = self.spare.lock().ok().and_then(|mut s| {
            s.next += 1;
            (s.ready.len() < MAX_SPARE).then_some(s.next)
        });
        let Some(n) = name else { return remove(dir) };
        // Out of its path first, so no reader can open its files from now on; then a reader
        // that registered before (and may hold them open) is known.
        let to = self.root.join(n.to_string());
        if fs::create_dir_all(&self.root).and_then(|()| fs::rename(dir, &to)).is_err() {
            return remove(dir);
        }
        let read = self.readers.lock().map_or(true, |r| r.contains_key(id));
        if empty_to_skeleton(&to, !read).is_err() {
            return remove(&to);
        }
        if let Ok(mut s) = self.spare.lock() {
            s.ready.push(to);
        }
    }
}

/// Removes a folder; one that cannot be removed is logged and left.
pub(crate) fn remove(dir: &Path) {
    match fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(dir = %dir.display(), error = %e, "cannot remove a finished execution's folder"),
    }
}

/// Empties an execution folder down to what the node makes for every execution: `results/`
/// with empty `stdout`, `stderr` and `exitCode` (every run writes `exitCode` over the empty
/// one; a failed run's folder is never published), and empty `inputs/<n>/` folders. With
/// `reuse_files` false someone may still be reading the output (`job logs --follow` holds
/// `stdout` open to its end): the files are unlinked instead, which leaves them whole for
/// their readers.
fn empty_to_skeleton(dir: &Path, reuse_files: bool) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let (name, kind) = (entry.file_name(), entry.file_type()?);
        match name.to_str() {
            Some("results") if kind.is_dir() => empty_results(&entry.path(), reuse_files)?,
            Some("inputs") if kind.is_dir() => empty_inputs(&entry.path())?,
            _ => remove_entry(&entry.path(), kind)?,
        }
    }
    Ok(())
}

fn empty_results(dir: &Path, reuse_files: bool) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let (name, kind) = (entry.file_name(), entry.file_type()?);
        let kept = name.to_str().is_some_and(|n| [STDOUT_FILE, STDERR_FILE, EXIT_CODE_FILE].contains(&n));
        if reuse_files && kept && kind.is_file() {
            // A regular file the node wrote (its type read without following links), which no
            // job and no reader has open any more: truncated, it is as new.
            fs::OpenOptions::new().write(true).open(entry.path())?.set_len(0)?;
        } else {
            remove_entry(&entry.path(), kind)?;
        }
    }
    Ok(())
}

fn empty_inputs(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let (name, kind) = (entry.file_name(), entry.file_type()?);
        let numbered = name.to_str().is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if numbered && kind.is_dir() {
            for inner in fs::read_dir(entry.path())? {
                let inner = inner?;
                remove_entry(&inner.path(), inner.file_type()?)?;
            }
        } else {
            remove_entry(&entry.path(), kind)?;
        }
    }
    Ok(())
}

fn remove_entry(path: &Path, kind: fs::FileType) -> io::Result<()> {
    if kind.is_dir() { fs::remove_dir_all(path) } else { fs::remove_file(path) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for e in fs::read_dir(&d).expect("read_dir").flatten() {
                let p = e.path();
                out.push(p.strip_prefix(dir).expect("under").display().to_string());
                if e.file_type().expect("type").is_dir() {
                    todo.push(p);
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_recycled_folder_keeps_nothing_of_its_job_and_reuses_its_inodes() {
        use std::os::unix::fs::MetadataExt;
        let tmp = tempfile::tempdir().expect("tmp");
        let outside = tmp.path().join("secret");
        fs::write(&outside, "host file").expect("write");
        let pool = FolderPool::new(tmp.path().join("spare"));
        let first = tmp.path().join("exec-1");
        let results = first.join("results");
        fs::create_dir_all(results.join("outputs/deep")).expect("mkdir");
        fs::write(results.join("stdout"), "job one's output").expect("write");
        fs::write(results.join("stderr"), "job one's errors").expect("write");
        fs::write(results.join("exitCode"), "0").expect("write");
        fs::write(results.join("outputs/deep/x"), "x").expect("write");
        fs::create_dir_all(first.join("inputs/0")).expect("mkdir");
        fs::write(first.join("inputs/0/main.wasm"), "module").expect("write");
        fs::create_dir_all(first.join("inputs/1/ipfs/a")).expect("mkdir");
        fs::create_dir_all(first.join("engine/files/0")).expect("mkdir");
        // A link where stdout was, and one under a kept folder: removed, never followed.
        fs::remove_file(results.join("stderr")).expect("rm");
        symlink(&outside, results.join("stderr")).expect("symlink");
        symlink("/", first.join("inputs/2")).expect("symlink");
        let results_inode = fs::metadata(&results).expect("stat").ino();
        let stdout_inode = fs::metadata(results.join("stdout")).expect("stat").ino();

        pool.give_back(&first, "exec-1");
        assert!(!first.exists());
        assert_eq!(fs::read_to_string(&outside).expect("read"), "host file", "a link was followed");

        let second = tmp.path().join("exec-2");
        pool.take(&second);
        assert_eq!(names(&second), ["inputs", "inputs/0", "inputs/1", "results", "results/exitCode", "results/stdout"]);
        for kept in ["stdout", "exitCode"] {
            assert_eq!(fs::read(second.join("results").join(kept)).expect("read").len(), 0, "{kept}");
        }
        assert_eq!(fs::metadata(second.join("results")).expect("stat").ino(), results_inode);
        assert_eq!(fs::metadata(second.join("results/stdout")).expect("stat").ino(), stdout_inode);

        // Someone follows the second execution's log: its files are unlinked, not truncated,
        // and the reader keeps the whole output.
        fs::write(second.join("results/stdout"), "job two's output").expect("write");
        let reading = pool.reading("exec-2");
        let mut reader = fs::File::open(second.join("results/stdout")).expect("open");
        pool.give_back(&second, "exec-2");
        let mut kept = String::new();
        std::io::Read::read_to_string(&mut reader, &mut kept).expect("read");
        assert_eq!(kept, "job two's output");
        drop(reading);
        assert!(pool.readers.lock().expect("lock").is_empty(), "the reader is forgotten");
        let again = tmp.path().join("exec-4");
        pool.take(&again);
        assert_eq!(names(&again), ["inputs", "inputs/0", "inputs/1", "results"]);

        // No spare: the folder is left to be created.
        let third = tmp.path().join("exec-3");
        pool.take(&third);
        assert!(!third.exists());
    }

    #[test]
    fn spares_of_an_earlier_run_are_set_aside_not_reused() {
        let tmp = tempfile::tempdir().expect("tmp");
        fs::create_dir_all(tmp.path().join("spare/1/results")).expect("mkdir");
        let pool = FolderPool::new(tmp.path().join("spare"));
        assert!(!tmp.path().join("spare").exists());
        let aside: Vec<String> = fs::read_dir(tmp.path())
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(aside.len(), 1, "{aside:?}");
        assert!(aside[0].starts_with(&format!("spare{}", crate::node::ASIDE)), "{aside:?}");
        let dir = tmp.path().join("exec");
        pool.take(&dir);
        assert!(!dir.exists());
    }

    #[test]
    fn the_pool_is_bounded() {
        let tmp = tempfile::tempdir().expect("tmp");
        let pool = FolderPool::new(tmp.path().join("spare"));
        for i in 0..MAX_SPARE + 10 {
            let d = tmp.path().join(format!("e{i}"));
            fs::create_dir_all(d.join("results")).expect("mkdir");
            pool.give_back(&d, &format!("e{i}"));
            assert!(!d.exists());
        }
        assert_eq!(fs::read_dir(tmp.path().join("spare")).expect("read").count(), MAX_SPARE);
    }
}
