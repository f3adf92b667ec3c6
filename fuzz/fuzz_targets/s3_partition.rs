//! What a job's `s3` source holds, read as Bacalhau reads it: a Go date layout and a value,
//! S3 params (JSON) and an object key. Parsing, formatting, partitioning and laying out a key
//! give an answer or an error; they never panic, and a laid-out key never climbs out.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mut lines = text.splitn(4, '\n');
    let (layout, value, params, key) =
        (lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""), lines.next().unwrap_or(""));
    let go = bacalhau_model::GoLayout::new(layout);
    if let Ok(t) = go.parse(value) {
        let _ = go.format(&t);
    }
    let _ = go.check();
    let Ok(serde_json::Value::Object(map)) = serde_json::from_str::<serde_json::Value>(params) else { return };
    let mut spec = bacalhau_model::SpecConfig::new("s3");
    for (k, v) in map {
        spec = spec.with_param(&k, v);
    }
    if let Ok(source) = bacalhau_model::S3Source::from_spec(&spec) {
        for total in [1, 2, 7] {
            assert!(source.partition_of(key, total) < total);
        }
        if let Ok(parts) = source.local_path(key) {
            assert!(parts.iter().all(|p| !p.is_empty() && p != ".." && p != "." && !p.contains('/')));
        }
    }
    if let Ok(publisher) = bacalhau_model::S3Publisher::from_spec(&spec) {
        let _ = publisher.key_for("j", "e", "n", "20260101", "000000");
    }
});
