//! Property tests: a job survives JSON and YAML round trips, whatever the key case.

use std::collections::BTreeMap;

use bacalhau_model::{
    InputSource, Job, JobType, ResourcesConfig, ResultPath, SpecConfig, Task, TimeoutConfig, parse_job_spec,
    parse_job_value,
};
use proptest::prelude::*;
use serde_json::Value;

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_-]{0,12}"
}

fn job() -> impl Strategy<Value = Job> {
    (
        name(),
        prop_oneof![Just(JobType::Batch), Just(JobType::Ops), Just(JobType::Daemon), Just(JobType::Service)],
        0u32..5,
        -5i32..5,
        proptest::collection::btree_map("[A-Z][A-Z0-9_]{0,6}", "[ -~]{0,10}", 0..3),
        proptest::collection::vec(("/[a-z]{1,8}", "[a-z]{1,8}"), 0..3),
        (0u64..1000, 0u64..1000, 0u64..5000),
        proptest::collection::btree_map("[a-z]{1,6}", "[a-z0-9]{0,6}", 0..3),
    )
        .prop_map(|(name, r#type, count, priority, env, inputs, (e, q, t), labels)| Job {
            name,
            namespace: "default".into(),
            r#type,
            count,
            priority,
            labels,
            tasks: vec![Task {
                name: "main".into(),
                engine: SpecConfig::new("wasm").with_param("EntryModule", "/m.wasm"),
                publisher: SpecConfig::new("local"),
                env,
                input_sources: inputs
                    .iter()
                    .map(|(target, cid)| InputSource {
                        source: SpecConfig::new("ipfs").with_param("CID", cid.as_str()),
                        alias: String::new(),
                        target: target.clone(),
                    })
                    .collect(),
                result_paths: vec![ResultPath { name: "outputs".into(), path: "/outputs".into() }],
                resources: ResourcesConfig { cpu: "500m".into(), memory: "1Gb".into(), ..Default::default() },
                timeouts: TimeoutConfig { execution_timeout: e, queue_timeout: q, total_timeout: t },
                meta: BTreeMap::new(),
                ..Default::default()
            }],
            ..Default::default()
        })
}

/// Changes the case of every struct key (not data keys inside Env/Params/Labels).
fn recase(v: Value, upper: bool, free: bool) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let child_free = matches!(k.as_str(), "Env" | "Params" | "Labels" | "Meta");
                    let k = if free {
                        k
                    } else if upper {
                        k.to_uppercase()
                    } else {
                        k.to_lowercase()
                    };
                    (k, recase(v, upper, child_free))
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(|v| recase(v, upper, free)).collect()),
        v => v,
    }
}

proptest! {
    #[test]
    fn json_round_trip_in_any_key_case(job in job(), upper in any::<bool>()) {
        let value = serde_json::to_value(&job).expect("serialise");
        let parsed = parse_job_value(recase(value, upper, false)).expect("parse");
        prop_assert!(parsed.unknown_keys.is_empty(), "{:?}", parsed.unknown_keys);
        prop_assert_eq!(parsed.job, job);
    }

    #[test]
    fn yaml_round_trip(job in job()) {
        let text = yaml_serde::to_string(&job).expect("serialise");
        let parsed = parse_job_spec(&text).expect("parse");
        prop_assert_eq!(parsed.job, job);
    }
}
