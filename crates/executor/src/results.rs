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
    let mut buf = Vec::with_capacity(RUN_OUTPUT_LIMIT_BYTES.min(usize::try_from(len).unwrap_or(usize::MAX)));
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
/// Iterative: a job that nests folders 100,000 deep must not overflow the node's stack.
pub fn dir_size(path: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![path.to_owned()];
    while let Some(p) = todo.pop() {
        match fs::symlink_metadata(&p) {
            Ok(m) if m.is_dir() => todo.extend(fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path())),
            Ok(m) => total += m.len(),
            Err(_) => {}
        }
    }
    total
}

/// Folders nested deeper than this in a result are refused: nothing real nests so deep, and
/// every reader after us (publishers, `job get`) would have to walk it.
pub const MAX_RESULT_DEPTH: usize = 256;

/// Makes a result folder safe to keep on the host and hand on: setuid, setgid and sticky bits
/// are cleared (a container's root could otherwise leave a setuid-root program in the node's
/// data folder), and device nodes, FIFOs and sockets are refused with an error naming them
/// (reading a FIFO blocks forever; a device node is a door into the host). Symlinks are kept
/// as they are and never followed.
pub fn sanitize_results(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut todo = vec![(dir.to_owned(), 0usize)];
    while let Some((p, depth)) = todo.pop() {
        let shown = || p.strip_prefix(dir).unwrap_or(&p).display().to_string();
        let meta = fs::symlink_metadata(&p).map_err(|e| format!("reading the result {}: {e}", shown()))?;
        let ft = meta.file_type();
        let kind = if ft.is_fifo() {
            Some("a FIFO")
        } else if ft.is_socket() {
            Some("a socket")
        } else if ft.is_block_device() || ft.is_char_device() {
            Some("a device node")
        } else {
            None
        };
        if let Some(kind) = kind {
            return Err(format!(
                "the result {} is {kind}; results may hold only files, folders and symlinks: remove it before the job ends",
                shown()
            ));
        }
        if ft.is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & 0o7000 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(mode & 0o777))
                .map_err(|e| format!("clearing setuid/setgid bits of the result {}: {e}", shown()))?;
        }
        if ft.is_dir() {
            if depth >= MAX_RESULT_DEPTH {
                return Err(format!("the result folders nest more than {MAX_RESULT_DEPTH} deep at {}", shown()));
            }
            let entries = fs::read_dir(&p).map_err(|e| format!("reading the result {}: {e}", shown()))?;
            for e in entries {
                let e = e.map_err(|e| format!("reading the result {}: {e}", shown()))?;
                todo.push((e.path(), depth + 1));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitizing_clears_setuid_and_refuses_fifos() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("outputs");
        fs::create_dir_all(out.join("sub")).expect("mkdir");
        fs::write(out.join("sub/suid"), "x").expect("write");
        fs::set_permissions(out.join("sub/suid"), fs::Permissions::from_mode(0o6755)).expect("chmod");
        std::os::unix::fs::symlink("/etc/passwd", out.join("link")).expect("ln");
        sanitize_results(tmp.path()).expect("clean");
        let mode = fs::metadata(out.join("sub/suid")).expect("meta").permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        nix::unistd::mkfifo(&out.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o644)).expect("mkfifo");
        let err = sanitize_results(tmp.path()).expect_err("fifo");
        assert!(err.contains("outputs/fifo is a FIFO"), "{err}");
    }

    #[test]
    fn dir_size_survives_a_very_deep_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut p = tmp.path().to_owned();
        // Deep enough that a recursive walk with real frames would be in trouble on a small stack.
        for _ in 0..300 {
            p = p.join("d");
        }
        fs::create_dir_all(&p).expect("mkdir");
        fs::write(p.join("f"), "abc").expect("write");
        assert_eq!(dir_size(tmp.path()), 3);
        let err = sanitize_results(tmp.path()).expect_err("too deep");
        assert!(err.contains("nest more than"), "{err}");
    }

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
