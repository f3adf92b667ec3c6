//! Case-insensitive keys, the way Bacalhau reads job specs.
//!
//! Go's `encoding/json` matches struct fields case-insensitively, so Bacalhau accepts `name:`
//! as well as `Name:`. Serde does not, so before deserialising we walk the document with a
//! description of the model's shape and rewrite every known key to its canonical spelling.
//! Free-form maps (`Env`, `Meta`, `Labels`, `Params`) are left alone: their keys are data.

use serde_json::{Map, Value};

/// The shape of a part of the model, as far as key spelling is concerned.
#[derive(Debug)]
pub(crate) enum Shape {
    /// An object with known fields.
    Struct(&'static [(&'static str, Shape)]),
    /// A list whose items have the given shape.
    List(&'static Shape),
    /// A map or value whose keys are data, not field names.
    Free,
}

const SPEC_CONFIG: Shape = Shape::Struct(&[("Type", Shape::Free), ("Params", Shape::Free)]);

/// The shape of an InputSource.
pub(crate) const INPUT_SOURCE: Shape =
    Shape::Struct(&[("Source", SPEC_CONFIG), ("Alias", Shape::Free), ("Target", Shape::Free)]);

const TASK: Shape = Shape::Struct(&[
    ("Name", Shape::Free),
    ("Engine", SPEC_CONFIG),
    ("Publisher", SPEC_CONFIG),
    ("Env", Shape::Free),
    ("Meta", Shape::Free),
    ("InputSources", Shape::List(&INPUT_SOURCE)),
    ("ResultPaths", Shape::List(&Shape::Struct(&[("Name", Shape::Free), ("Path", Shape::Free)]))),
    (
        "Resources",
        Shape::Struct(&[("CPU", Shape::Free), ("Memory", Shape::Free), ("Disk", Shape::Free), ("GPU", Shape::Free)]),
    ),
    ("Network", Shape::Struct(&[("Type", Shape::Free), ("Domains", Shape::Free)])),
    (
        "Timeouts",
        Shape::Struct(&[
            ("ExecutionTimeout", Shape::Free),
            ("QueueTimeout", Shape::Free),
            ("TotalTimeout", Shape::Free),
        ]),
    ),
]);

/// The shape of a job spec.
pub(crate) const JOB: Shape = Shape::Struct(&[
    ("ID", Shape::Free),
    ("Name", Shape::Free),
    ("Namespace", Shape::Free),
    ("Type", Shape::Free),
    ("Priority", Shape::Free),
    ("Count", Shape::Free),
    (
        "Constraints",
        Shape::List(&Shape::Struct(&[("Key", Shape::Free), ("Operator", Shape::Free), ("Values", Shape::Free)])),
    ),
    ("Meta", Shape::Free),
    ("Labels", Shape::Free),
    ("Tasks", Shape::List(&TASK)),
    ("Market", Shape::Struct(&[("MaxPrice", Shape::Free), ("Strategy", Shape::Free)])),
    ("Verification", Shape::Struct(&[("Replicas", Shape::Free), ("Quorum", Shape::Free)])),
    ("State", Shape::Struct(&[("StateType", Shape::Free), ("Message", Shape::Free)])),
    ("Version", Shape::Free),
    ("Revision", Shape::Free),
    ("CreateTime", Shape::Free),
    ("ModifyTime", Shape::Free),
]);

/// Rewrites known keys to their canonical spelling, drops `null`s (Go treats them as absent),
/// and reports unknown keys by path (e.g. `Tasks[0].Engin`).
pub(crate) fn canonicalize(value: Value, shape: &Shape, path: &str, unknown: &mut Vec<String>) -> Value {
    match (shape, value) {
        (Shape::Struct(fields), Value::Object(map)) => {
            let mut out = Map::new();
            for (key, v) in map {
                if v.is_null() {
                    continue;
                }
                match fields.iter().find(|(name, _)| name.eq_ignore_ascii_case(&key)) {
                    Some((name, sub)) => {
                        let sub_path = if path.is_empty() { (*name).to_owned() } else { format!("{path}.{name}") };
                        out.insert((*name).to_owned(), canonicalize(v, sub, &sub_path, unknown));
                    }
                    None => unknown.push(if path.is_empty() { key } else { format!("{path}.{key}") }),
                }
            }
            Value::Object(out)
        }
        (Shape::List(item), Value::Array(items)) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| canonicalize(v, item, &format!("{path}[{i}]"), unknown))
                .collect(),
        ),
        (_, v) => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rewrites_known_keys_and_keeps_data_keys() {
        let mut unknown = Vec::new();
        let v = canonicalize(
            json!({"name": "x", "tasks": [{"ENGINE": {"type": "wasm", "params": {"entrymodule": "/m"}}, "env": {"foo": "1"}}], "bogus": 1, "labels": null}),
            &JOB,
            "",
            &mut unknown,
        );
        assert_eq!(
            v,
            json!({"Name": "x", "Tasks": [{"Engine": {"Type": "wasm", "Params": {"entrymodule": "/m"}}, "Env": {"foo": "1"}}]})
        );
        assert_eq!(unknown, vec!["bogus".to_owned()]);
    }
}
