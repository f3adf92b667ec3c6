//! Bacalhau's legacy WASM form: `EntryModule` and `ImportModules` given as input-source
//! objects instead of Target paths. Bacalhau's orchestrator rewrites such a spec at submission
//! (its `LegacyWasmModuleTransformer`); this does the same, so old specs run unchanged: each
//! module becomes an InputSource appended to the task (Target `/wasm/entry.wasm`, or
//! `/wasm/imports/module_<i>.wasm`, when it has none) and the params name those Targets.

use serde_json::Value;

use crate::ENGINE_WASM;
use crate::keys::{INPUT_SOURCE, canonicalize};
use crate::task::{InputSource, Task};
use crate::validate::FieldError;

/// Where an entry module without a Target is mounted, as in Bacalhau.
pub const LEGACY_ENTRY_TARGET: &str = "/wasm/entry.wasm";

/// Rewrites a task in the legacy WASM form; returns whether it was one.
pub fn rewrite_legacy_wasm(task: &mut Task) -> Result<bool, Vec<FieldError>> {
    if !task.engine.is_type(ENGINE_WASM) {
        return Ok(false);
    }
    let entry = task.engine.param("EntryModule").cloned();
    let imports = task.engine.param("ImportModules").cloned();
    let legacy_entry = matches!(entry, Some(Value::Object(_)));
    let legacy_imports = matches!(&imports, Some(Value::Array(items)) if items.iter().any(Value::is_object));
    if !legacy_entry && !legacy_imports {
        return Ok(false);
    }
    let path = "Tasks[0].Engine.Params";
    let mut errors = Vec::new();
    let mut added = Vec::new();
    let entry_target = match entry {
        Some(v @ Value::Object(_)) => match input_source(v, LEGACY_ENTRY_TARGET, &format!("{path}.EntryModule")) {
            Ok(source) => {
                let t = source.target.clone();
                added.push(source);
                t
            }
            Err(e) => {
                errors.push(e);
                String::new()
            }
        },
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let mut import_targets = Vec::new();
    if let Some(Value::Array(items)) = imports {
        for (i, item) in items.into_iter().enumerate() {
            let field = format!("{path}.ImportModules[{i}]");
            match item {
                Value::Null => {}
                Value::String(s) => import_targets.push(s),
                v @ Value::Object(_) => match input_source(v, &format!("/wasm/imports/module_{i}.wasm"), &field) {
                    Ok(source) => {
                        import_targets.push(source.target.clone());
                        added.push(source);
                    }
                    Err(e) => errors.push(e),
                },
                _ => errors.push(FieldError::new(field, "must be a Target path or an input source object")),
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let entrypoint =
        task.engine.param_str("Entrypoint").or_else(|| task.engine.param_str("EntryPoint")).map(str::to_owned);
    let params = &mut task.engine.params;
    params.retain(|k, _| !["entrymodule", "importmodules", "entrypoint"].contains(&k.to_ascii_lowercase().as_str()));
    params.insert("EntryModule".into(), Value::String(entry_target));
    params.insert("ImportModules".into(), Value::from(import_targets));
    if let Some(e) = entrypoint {
        params.insert("Entrypoint".into(), Value::String(e));
    }
    task.input_sources.extend(added);
    Ok(true)
}

fn input_source(v: Value, default_target: &str, field: &str) -> Result<InputSource, FieldError> {
    let mut unknown = Vec::new();
    let v = canonicalize(v, &INPUT_SOURCE, field, &mut unknown);
    if let Some(k) = unknown.first() {
        return Err(FieldError::new(field, format!("has the key {k}, which an input source does not have")));
    }
    let mut source: InputSource = serde_json::from_value(v)
        .map_err(|e| FieldError::new(field, format!("is not an input source ({e}): give Source: {{Type, Params}}")))?;
    if source.source.type_name().is_empty() {
        return Err(FieldError::new(format!("{field}.Source.Type"), "is required, e.g. inline, ipfs or urlDownload"));
    }
    if source.target.trim().is_empty() {
        source.target = default_target.to_owned();
    }
    Ok(source)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_job_spec;

    #[test]
    fn modules_given_as_input_sources_become_inputs_and_targets() {
        let spec = r#"
type: batch
tasks:
  - name: main
    engine:
      type: wasm
      params:
        entrymodule: {source: {type: inline, params: {url: "data:,x"}}}
        importmodules:
          - {Source: {Type: inline, Params: {URL: "data:,y"}}, Target: /lib.wasm}
          - {Source: {Type: ipfs, Params: {CID: QmX}}}
        EntryPoint: run
        Parameters: [a]
    inputsources:
      - {Target: /data, Source: {Type: local, Params: {SourcePath: /d}}}
"#;
        let mut job = parse_job_spec(spec).expect("parse").job;
        assert!(rewrite_legacy_wasm(&mut job.tasks[0]).expect("rewrite"));
        let t = &job.tasks[0];
        let targets: Vec<&str> = t.input_sources.iter().map(|i| i.target.as_str()).collect();
        assert_eq!(targets, ["/data", "/wasm/entry.wasm", "/lib.wasm", "/wasm/imports/module_1.wasm"]);
        assert_eq!(t.engine.param_str("EntryModule"), Some("/wasm/entry.wasm"));
        assert_eq!(t.engine.param_str("Entrypoint"), Some("run"));
        assert_eq!(
            t.engine.param("ImportModules"),
            Some(&serde_json::json!(["/lib.wasm", "/wasm/imports/module_1.wasm"]))
        );
        assert_eq!(t.input_sources[1].source.param_str("URL"), Some("data:,x"));
        // The new form is left alone.
        assert!(!rewrite_legacy_wasm(&mut job.tasks[0]).expect("again"));
    }

    #[test]
    fn a_module_without_a_source_type_is_refused_by_name() {
        let mut task = Task {
            engine: crate::SpecConfig::new("wasm").with_param("EntryModule", serde_json::json!({"Target": "/m.wasm"})),
            ..Default::default()
        };
        let e = rewrite_legacy_wasm(&mut task).expect_err("no type");
        assert_eq!(e[0].field, "Tasks[0].Engine.Params.EntryModule.Source.Type");
        assert!(task.input_sources.is_empty(), "nothing half-applied");
    }
}
