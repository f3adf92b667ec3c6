//! `local` inputs: paths on the compute node that an operator allow-listed.

use std::path::{Path, PathBuf};

use bacalhau_executor::PreparedInput;
use bacalhau_model::{InputSource, SOURCE_LOCAL};

use crate::{InputProvider, StorageError};

/// One allow-list entry: a glob, and whether jobs may write there (`:rw` suffix).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedPath {
    pattern: glob::Pattern,
    read_write: bool,
}

impl AllowedPath {
    /// Parses `PATTERN[:rw]`, e.g. `/data/**` or `/scratch/*:rw`.
    pub fn parse(s: &str) -> Result<Self, StorageError> {
        let (p, read_write) = match s.strip_suffix(":rw") {
            Some(p) => (p, true),
            None => (s.strip_suffix(":ro").unwrap_or(s), false),
        };
        let pattern = glob::Pattern::new(p)
            .map_err(|e| StorageError::Invalid(format!("allow-listed path {s:?} is not a valid glob: {e}")))?;
        Ok(Self { pattern, read_write })
    }
}

/// The `local` input provider.
#[derive(Debug, Default)]
pub struct LocalSource {
    allowed: Vec<AllowedPath>,
}

impl LocalSource {
    /// A provider that serves only paths matching `allowed`.
    pub fn new(allowed: Vec<AllowedPath>) -> Self {
        Self { allowed }
    }

    fn check(&self, input: &InputSource) -> Result<(PathBuf, bool), StorageError> {
        let raw = input.source.param_str("SourcePath").unwrap_or_default();
        if !raw.starts_with('/') {
            return Err(StorageError::Invalid(format!("local input SourcePath {raw:?} must be an absolute path")));
        }
        // Resolve symlinks and `..` first, so an allowed prefix cannot be escaped.
        let path = std::fs::canonicalize(raw)
            .map_err(|e| StorageError::Invalid(format!("local input {raw} is not readable on this node: {e}")))?;
        let want_rw = match input.source.param("ReadWrite") {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let Some(entry) = self.allowed.iter().find(|a| a.pattern.matches_path(&path)) else {
            return Err(StorageError::Invalid(format!(
                "local input {} is not allow-listed on this node: start serve with --allow-listed-local-paths including it",
                path.display()
            )));
        };
        if want_rw && !entry.read_write {
            return Err(StorageError::Invalid(format!(
                "local input {} may only be mounted read-only here: allow-list it with a :rw suffix to write",
                path.display()
            )));
        }
        Ok((path, want_rw))
    }
}

#[async_trait::async_trait]
impl InputProvider for LocalSource {
    fn source_type(&self) -> &'static str {
        SOURCE_LOCAL
    }

    fn validate(&self, input: &InputSource) -> Result<(), StorageError> {
        self.check(input).map(|_| ())
    }

    async fn prepare(
        &self,
        input: &InputSource,
        _work_dir: &Path,
        _max_bytes: u64,
    ) -> Result<PreparedInput, StorageError> {
        let (host_path, rw) = self.check(input)?;
        Ok(PreparedInput { host_path, target: input.target.clone(), read_only: !rw })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bacalhau_model::SpecConfig;

    fn input(path: &str, rw: bool) -> InputSource {
        InputSource {
            source: SpecConfig::new("local").with_param("SourcePath", path).with_param("ReadWrite", rw),
            alias: String::new(),
            target: "/in".into(),
        }
    }

    #[test]
    fn enforces_the_allow_list() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ok = tmp.path().join("ok");
        let other = tmp.path().join("other");
        std::fs::create_dir_all(&ok).expect("mkdir");
        std::fs::create_dir_all(&other).expect("mkdir");
        let root = std::fs::canonicalize(tmp.path()).expect("canon");
        let src = LocalSource::new(vec![AllowedPath::parse(&format!("{}/ok", root.display())).expect("glob")]);
        assert!(src.validate(&input(ok.to_str().expect("utf8"), false)).is_ok());
        let e = src.validate(&input(other.to_str().expect("utf8"), false)).expect_err("denied");
        assert!(e.to_string().contains("not allow-listed"), "{e}");
        let sneaky = format!("{}/ok/../other", root.display());
        assert!(src.validate(&input(&sneaky, false)).is_err());
        let e = src.validate(&input(ok.to_str().expect("utf8"), true)).expect_err("ro");
        assert!(e.to_string().contains("read-only"), "{e}");
    }
}
