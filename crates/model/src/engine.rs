//! Typed engine params, decoded from a task's `Engine` SpecConfig.

use serde_json::Value;

use crate::spec_config::{ENGINE_WASM, SpecConfig};
use crate::validate::FieldError;

/// The WASM engine's params (Bacalhau's current form).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WasmEngineSpec {
    /// The target path of the input source that holds the entry module.
    pub entry_module: String,
    /// The exported function to call; `_start` by default.
    pub entrypoint: String,
    /// Program arguments (argv[1..]).
    pub parameters: Vec<String>,
    /// Target paths of modules to link before the entry module.
    pub import_modules: Vec<String>,
}

/// An engine's params, by engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineSpec {
    /// `wasm`.
    Wasm(WasmEngineSpec),
    /// Any other engine type: its params are checked by that engine.
    Other(String),
}

fn string_list(config: &SpecConfig, key: &str, path: &str) -> Result<Vec<String>, FieldError> {
    match config.param(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                _ => Err(FieldError::new(format!("{path}.{key}[{i}]"), "must be a string")),
            })
            .collect(),
        Some(_) => Err(FieldError::new(format!("{path}.{key}"), "must be a list of strings")),
    }
}

impl EngineSpec {
    /// Decodes the params of a task's engine; `path` prefixes field names in errors.
    pub fn decode(config: &SpecConfig, path: &str) -> Result<Self, Vec<FieldError>> {
        if !config.is_type(ENGINE_WASM) {
            return Ok(EngineSpec::Other(config.type_name()));
        }
        let mut errors = Vec::new();
        let entry_module = match config.param("EntryModule") {
            Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_owned(),
            Some(Value::Object(_)) => {
                errors.push(FieldError::new(
                    format!("{path}.EntryModule"),
                    "is an input source object (Bacalhau 1.4 form): give the Target path of an entry in InputSources instead",
                ));
                String::new()
            }
            _ => {
                errors.push(FieldError::new(
                    format!("{path}.EntryModule"),
                    "is required: set it to the Target of the InputSource holding the .wasm file (wasm run sets it for you)",
                ));
                String::new()
            }
        };
        let entrypoint = config
            .param_str("Entrypoint")
            .or_else(|| config.param_str("EntryPoint"))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or("_start")
            .to_owned();
        let parameters = string_list(config, "Parameters", path).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        let import_modules = string_list(config, "ImportModules", path).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        });
        if errors.is_empty() {
            Ok(EngineSpec::Wasm(WasmEngineSpec { entry_module, entrypoint, parameters, import_modules }))
        } else {
            Err(errors)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_wasm_params_case_insensitively() {
        let c = SpecConfig::new("WASM")
            .with_param("entrymodule", "/app/main.wasm")
            .with_param("PARAMETERS", serde_json::json!(["a", 1]));
        let EngineSpec::Wasm(w) = EngineSpec::decode(&c, "Tasks[0].Engine.Params").expect("valid") else {
            panic!("not wasm")
        };
        assert_eq!(w.entry_module, "/app/main.wasm");
        assert_eq!(w.entrypoint, "_start");
        assert_eq!(w.parameters, vec!["a", "1"]);
    }

    #[test]
    fn missing_entry_module_names_the_field() {
        let errs = EngineSpec::decode(&SpecConfig::new("wasm"), "Tasks[0].Engine.Params").expect_err("invalid");
        assert_eq!(errs[0].field, "Tasks[0].Engine.Params.EntryModule");
        assert!(errs[0].message.starts_with("is required"));
    }
}
