//! Typed engine params, decoded from a task's `Engine` SpecConfig.

use serde_json::Value;

use crate::spec_config::{ENGINE_DOCKER, ENGINE_WASM, SpecConfig};
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

/// The Docker engine's params.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerEngineSpec {
    /// The image, with tag or digest.
    pub image: String,
    /// Overrides the image's ENTRYPOINT when non-empty.
    pub entrypoint: Vec<String>,
    /// The command (the image's CMD when empty).
    pub parameters: Vec<String>,
    /// `KEY=VALUE` pairs.
    pub environment_variables: Vec<String>,
    /// Absolute working directory (the image's when empty).
    pub working_directory: String,
}

/// An engine's params, by engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineSpec {
    /// `wasm`.
    Wasm(WasmEngineSpec),
    /// `docker`.
    Docker(DockerEngineSpec),
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
        if config.is_type(ENGINE_DOCKER) {
            return decode_docker(config, path).map(EngineSpec::Docker);
        }
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

fn decode_docker(config: &SpecConfig, path: &str) -> Result<DockerEngineSpec, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut list = |key: &str| {
        string_list(config, key, path).unwrap_or_else(|e| {
            errors.push(e);
            Vec::new()
        })
    };
    let entrypoint = list("Entrypoint");
    let parameters = list("Parameters");
    let environment_variables = list("EnvironmentVariables");
    let image = config.param_str("Image").map(str::trim).unwrap_or_default().to_owned();
    if image.is_empty() {
        errors.push(FieldError::new(format!("{path}.Image"), "is required: name the image to run, e.g. ubuntu:24.04"));
    }
    let working_directory = config.param_str("WorkingDirectory").map(str::trim).unwrap_or_default().to_owned();
    if !working_directory.is_empty() && !working_directory.starts_with('/') {
        errors.push(FieldError::new(
            format!("{path}.WorkingDirectory"),
            format!("is {working_directory:?}: it must be an absolute path"),
        ));
    }
    for (i, kv) in environment_variables.iter().enumerate() {
        match kv.split_once('=') {
            None => errors.push(FieldError::new(
                format!("{path}.EnvironmentVariables[{i}]"),
                format!("is {kv:?}: write KEY=VALUE"),
            )),
            Some((k, _)) if k.to_ascii_uppercase().starts_with("BACALHAU_") => errors.push(FieldError::new(
                format!("{path}.EnvironmentVariables[{i}]"),
                "uses the reserved prefix BACALHAU_, which the system sets itself: rename the variable",
            )),
            _ => {}
        }
    }
    if errors.is_empty() {
        Ok(DockerEngineSpec { image, entrypoint, parameters, environment_variables, working_directory })
    } else {
        Err(errors)
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
    fn decodes_docker_params() {
        let c = SpecConfig::new("Docker")
            .with_param("image", "busybox")
            .with_param("Parameters", serde_json::json!(["echo", "hi"]));
        let EngineSpec::Docker(d) = EngineSpec::decode(&c, "P").expect("valid") else { panic!("not docker") };
        assert_eq!(d.image, "busybox");
        assert_eq!(d.parameters, vec!["echo", "hi"]);
        let bad = SpecConfig::new("docker")
            .with_param("WorkingDirectory", "rel")
            .with_param("EnvironmentVariables", serde_json::json!(["X"]));
        let errs = EngineSpec::decode(&bad, "P").expect_err("invalid");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("P.Image is required"), "{text:?}");
    }

    #[test]
    fn missing_entry_module_names_the_field() {
        let errs = EngineSpec::decode(&SpecConfig::new("wasm"), "Tasks[0].Engine.Params").expect_err("invalid");
        assert_eq!(errs[0].field, "Tasks[0].Engine.Params.EntryModule");
        assert!(errs[0].message.starts_with("is required"));
    }
}
