//! A job spec from a stranger (JSON or YAML, any shape) is parsed, normalised and validated
//! into a job or a field-named error; it never panics.
#![no_main]

use bacalhau_model::{JobId, SubmissionDefaults, parse_job_spec, prepare_submission};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // YAML aliases can expand exponentially; the API only takes JSON, the CLI reads files the
    // user wrote. Both paths go through the same parser.
    if let Ok(parsed) = parse_job_spec(text) {
        let _ = prepare_submission(parsed.job, JobId::from("j-fuzz"), 0, &SubmissionDefaults::default());
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data)
        && let Ok(parsed) = bacalhau_model::parse_job_value(value)
    {
        let _ = prepare_submission(parsed.job, JobId::from("j-fuzz"), 0, &SubmissionDefaults::default());
    }
});
