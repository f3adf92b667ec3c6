//! Parsing job specs from YAML or JSON text.

use serde_json::Value;

use crate::job::Job;
use crate::keys::{JOB, canonicalize};

/// The text format of a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpecFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// Why a spec could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The text is not valid YAML/JSON.
    #[error("the job spec is not valid {format:?}: {message}")]
    Syntax {
        /// Which format was tried.
        format: SpecFormat,
        /// The parser's message, with line and column.
        message: String,
    },
    /// The document is not a job.
    #[error("the job spec is not a job: {0}")]
    NotAnObject(String),
    /// A field has the wrong type.
    #[error("{path}: {message}")]
    Field {
        /// Where, e.g. `Tasks[0].Timeouts.ExecutionTimeout`.
        path: String,
        /// What is wrong.
        message: String,
    },
}

/// A parsed job plus the keys it had that the model does not know.
#[derive(Debug)]
pub struct ParsedJob {
    /// The job as written (not yet normalised or validated).
    pub job: Job,
    /// Unknown keys by path, for the caller to reject or warn about.
    pub unknown_keys: Vec<String>,
}

/// Parses a spec from text: JSON if it starts with `{`, YAML otherwise.
pub fn parse_job_spec(text: &str) -> Result<ParsedJob, ParseError> {
    let value: Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text)
            .map_err(|e| ParseError::Syntax { format: SpecFormat::Json, message: e.to_string() })?
    } else {
        yaml_serde::from_str(text)
            .map_err(|e| ParseError::Syntax { format: SpecFormat::Yaml, message: e.to_string() })?
    };
    parse_job_value(value)
}

/// Parses a job from a JSON value with Bacalhau's rules: keys case-insensitive, `null` as
/// absent, a missing `Count` meaning 1.
pub fn parse_job_value(value: Value) -> Result<ParsedJob, ParseError> {
    if !value.is_object() {
        return Err(ParseError::NotAnObject(format!(
            "expected a mapping with Type and Tasks at the top level, found {}",
            kind(&value)
        )));
    }
    let mut unknown_keys = Vec::new();
    let mut value = canonicalize(value, &JOB, "", &mut unknown_keys);
    if let Value::Object(map) = &mut value {
        map.entry("Count").or_insert(Value::from(1));
    }
    let job: Job = serde_path_to_error::deserialize(value)
        .map_err(|e| ParseError::Field { path: e.path().to_string(), message: e.inner().to_string() })?;
    Ok(ParsedJob { job, unknown_keys })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobType;

    #[test]
    fn parses_lower_case_yaml() {
        let p = parse_job_spec(
            "type: ops\nname: hello\ntasks:\n  - name: main\n    engine:\n      type: wasm\n      params:\n        EntryModule: /m.wasm\n    timeouts:\n      executiontimeout: 5\n",
        )
        .expect("parse");
        assert_eq!(p.job.r#type, JobType::Ops);
        assert_eq!(p.job.count, 1);
        assert_eq!(p.job.tasks[0].timeouts.execution_timeout, 5);
        assert!(p.unknown_keys.is_empty());
    }

    #[test]
    fn the_market_and_verification_sections_parse_in_any_key_case() {
        let p = parse_job_spec(
            "type: batch\ncount: 1\nmarket:\n  maxprice: 0.5\n  strategy: Cheapest\nverification:\n  replicas: 3\n  quorum: 2\ntasks:\n  - name: main\n    engine:\n      type: wasm\n",
        )
        .expect("parse");
        let m = p.job.market.clone().expect("market");
        assert_eq!((m.max_price, m.strategy()), (Some(0.5), crate::Strategy::Cheapest));
        assert_eq!(p.job.verification, Some(crate::Verification { replicas: 3, quorum: 2 }));
        assert_eq!(p.job.partitions(), 3);
    }

    #[test]
    fn field_errors_name_the_path() {
        let e = parse_job_spec(r#"{"Type":"batch","Tasks":[{"Timeouts":{"ExecutionTimeout":"soon"}}]}"#)
            .expect_err("bad type");
        assert!(e.to_string().starts_with("Tasks[0].Timeouts.ExecutionTimeout:"), "{e}");
        let e = parse_job_spec("- a\n- b\n").expect_err("not a job");
        assert!(e.to_string().contains("found a list"), "{e}");
        let e = parse_job_spec("Type: [\n").expect_err("syntax");
        assert!(e.to_string().contains("not valid Yaml"), "{e}");
    }
}
