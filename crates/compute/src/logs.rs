//! Reading an execution's output as log lines, live or after the fact.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Which stream a line came from (Bacalhau's `ExecutionLogType`: 1 stdout, 2 stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStreamKind {
    /// Standard output.
    Stdout = 1,
    /// Standard error.
    Stderr = 2,
}

/// One line of output, with its newline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// Which stream.
    pub kind: LogStreamKind,
    /// The text, including the trailing newline if there was one.
    pub line: String,
}

/// How often a followed log is checked for new output.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Reads both output files and sends their lines; with `follow`, keeps reading until
/// `finished` says the execution ended and everything written has been sent.
pub(crate) async fn stream_files(
    stdout: PathBuf,
    stderr: PathBuf,
    follow: bool,
    finished: impl Fn() -> bool + Send + 'static,
    tx: tokio::sync::mpsc::Sender<LogLine>,
) {
    let mut readers: Vec<(LogStreamKind, PathBuf, Option<BufReader<tokio::fs::File>>, String)> = vec![
        (LogStreamKind::Stdout, stdout, None, String::new()),
        (LogStreamKind::Stderr, stderr, None, String::new()),
    ];
    loop {
        // Read `done` before draining, so output written just before the end is not missed.
        let done = finished();
        for (kind, path, reader, partial) in readers.iter_mut() {
            if reader.is_none()
                && let Ok(f) = tokio::fs::File::open(&*path).await
            {
                *reader = Some(BufReader::new(f));
            }
            let Some(r) = reader.as_mut() else { continue };
            loop {
                match r.read_line(partial).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if partial.ends_with('\n') {
                            let line = std::mem::take(partial);
                            if tx.send(LogLine { kind: *kind, line }).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        }
        if !follow || done {
            for (kind, _, _, partial) in readers.iter_mut() {
                if !partial.is_empty() {
                    let line = std::mem::take(partial);
                    if tx.send(LogLine { kind: *kind, line }).await.is_err() {
                        return;
                    }
                }
            }
            return;
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}
