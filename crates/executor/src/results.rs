//! The result folder: `stdout`, `stderr`, `exitCode` (no trailing newline) and one folder per
//! ResultPath. Docker, WASM, the publishers and `job get` all share this layout.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use bacalhau_model::{RUN_OUTPUT_LIMIT_BYTES, RunCommandResult};

/// The workload's standard output.
pub const STDOUT_FILE: &str = "stdout";
/// The workload's standard error.
pub const STDERR_FILE: &str = "stderr";
/// The exit code, as decimal text without a newline.
pub const EXIT_CODE_FILE: &str = "exitCode";

/// A result folder being filled.
#[derive(Debug)]
pub struct ResultFolder {
    dir: PathBuf,
}

impl ResultFolder {
    /// Creates the folder with empty `stdout` and `stderr` files.
    pub fn create(dir: &Path) -> io::Result<Self> {
        fs::create_dir_all(dir)?;
        File::create(dir.join(STDOUT_FILE))?;
        File::create(dir.join(STDERR_FILE))?;
        Ok(Self { dir: dir.to_owned() })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the folder for a ResultPath and returns its path.
    pub fn output_dir(&self, name: &str) -> io::Result<PathBuf> {
        let p = self.dir.join(name);
        fs::create_dir_all(&p)?;
        Ok(p)
    }
}

/// Writes `exitCode` (no trailing newline, as Bacalhau does).
pub fn write_exit_code(dir: &Path, code: i32) -> io::Result<()> {
    fs::write(dir.join(EXIT_CODE_FILE), code.to_string())
}

fn head(path: &Path) -> io::Result<(String, bool)> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((String::new(), false)),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    let mut buf = Vec::with_capacity(RUN_OUTPUT_LIMIT_BYTES.min(len as usize));
    f.by_ref().take(RUN_OUTPUT_LIMIT_BYTES as u64).read_to_end(&mut buf)?;
    Ok((String::from_utf8_lossy(&buf).into_owned(), len > RUN_OUTPUT_LIMIT_BYTES as u64))
}

/// The output summary an execution carries: first 2 KiB of stdout and stderr, and the exit code.
pub fn summarize(dir: &Path, exit_code: i32, error_msg: &str) -> io::Result<RunCommandResult> {
    let (stdout, stdout_truncated) = head(&dir.join(STDOUT_FILE))?;
    let (stderr, stderr_truncated) = head(&dir.join(STDERR_FILE))?;
    Ok(RunCommandResult {
        stdout,
        stdout_truncated,
        stderr,
        stderr_truncated,
        exit_code,
        error_msg: error_msg.to_owned(),
    })
}

/// Bytes of the files under `path` (0 when it is missing); symlinks count as themselves.
pub fn dir_size(path: &Path) -> u64 {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            std::fs::read_dir(path).into_iter().flatten().flatten().map(|e| dir_size(&e.path())).sum()
        }
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_contract_layout() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let folder = ResultFolder::create(&tmp.path().join("r")).expect("create");
        fs::write(folder.dir().join(STDOUT_FILE), "x".repeat(3000)).expect("write");
        folder.output_dir("outputs").expect("mkdir");
        write_exit_code(folder.dir(), 5).expect("exit");
        assert_eq!(fs::read_to_string(folder.dir().join(EXIT_CODE_FILE)).expect("read"), "5");
        assert!(folder.dir().join("outputs").is_dir());
        let s = summarize(folder.dir(), 5, "").expect("summary");
        assert_eq!(s.stdout.len(), RUN_OUTPUT_LIMIT_BYTES);
        assert!(s.stdout_truncated);
        assert!(!s.stderr_truncated);
        assert_eq!(s.exit_code, 5);
    }
}
