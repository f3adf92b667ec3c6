//! Turning run-command flags into a job spec.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use bacalhau_model::{
    InputSource, Job, JobType, LabelSelectorRequirement, NetworkConfig, NetworkType, ResourcesConfig, ResultPath,
    SpecConfig, Task, TimeoutConfig,
};
use base64::Engine as _;

use crate::args::{DockerRunArgs, JobFlags, Target, WasmRunArgs};

/// Where `wasm run FILE` mounts the entry module, as Bacalhau (relative: read from `/`).
const DEFAULT_ENTRY_TARGET: &str = "main.wasm";

/// Parses an `--input` value into an input source.
pub fn parse_input(s: &str) -> Result<InputSource> {
    let (uri, target) = if s.contains("src=") {
        let mut src = None;
        let mut dst = None;
        for part in s.split(',') {
            if let Some(v) = part.strip_prefix("src=") {
                src = Some(v.to_owned());
            } else if let Some(v) = part.strip_prefix("dst=") {
                dst = Some(v.to_owned());
            }
        }
        (src.with_context(|| format!("input {s:?} has no src=URI"))?, dst.unwrap_or_else(|| "/inputs".into()))
    } else if s.starts_with("data:") {
        (s.to_owned(), "/inputs".to_owned())
    } else {
        let after_scheme = s.find("://").map_or(0, |i| i + 3);
        match s[after_scheme..].rfind(":/") {
            Some(i) => (s[..after_scheme + i].to_owned(), s[after_scheme + i + 1..].to_owned()),
            None => (s.to_owned(), "/inputs".to_owned()),
        }
    };
    let source = source_for_uri(&uri)?;
    Ok(InputSource { source, alias: String::new(), target })
}

fn source_for_uri(uri: &str) -> Result<SpecConfig> {
    Ok(if let Some(cid) = uri.strip_prefix("ipfs://") {
        SpecConfig::new("ipfs").with_param("CID", cid.trim_end_matches('/'))
    } else if let Some(path) = uri.strip_prefix("file://") {
        SpecConfig::new("local").with_param("SourcePath", path)
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        SpecConfig::new("urlDownload").with_param("URL", uri)
    } else if uri.starts_with("data:") {
        SpecConfig::new("inline").with_param("URL", uri)
    } else if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        SpecConfig::new("s3").with_param("Bucket", bucket).with_param("Key", key)
    } else {
        bail!(
            "input {uri:?} is not a URI this client understands: use ipfs://CID, file:///path, http(s)://..., s3://bucket/key or a data: URL"
        )
    })
}

/// A `KEY=VALUE` flag read as pflag's StringToString reads it (Bacalhau's `-e`): one `=` is
/// one pair, whatever commas the value holds (`A=B,C` sets A to `B,C`); two or more make a
/// comma-separated list of pairs (`A=B,C=D`).
pub fn string_to_string(s: &str, flag: &str) -> Result<Vec<(String, String)>> {
    match s.matches('=').count() {
        0 => bail!("{flag} {s:?} must be formatted as key=value"),
        1 => Ok(vec![key_value(s, flag)?]),
        _ => s.split(',').map(|pair| key_value(pair, flag)).collect(),
    }
}

fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s.split_once('=').with_context(|| format!("{what} {s:?} must be KEY=VALUE"))?;
    Ok((k.trim().to_owned(), v.to_owned()))
}

/// Builds the job and task shared by every run command around the given engine.
pub fn build_job(flags: &JobFlags, engine: SpecConfig, extra_inputs: Vec<InputSource>) -> Result<Job> {
    let mut inputs = Vec::new();
    for i in &flags.input {
        inputs.push(parse_input(i)?);
    }
    inputs.extend(extra_inputs);
    let mut result_paths = Vec::new();
    for o in &flags.output {
        let (name, path) =
            o.split_once(':').with_context(|| format!("output {o:?} must be name:path, e.g. outputs:/outputs"))?;
        result_paths.push(ResultPath { name: name.into(), path: path.into() });
    }
    let mut env = BTreeMap::new();
    for e in &flags.env {
        env.extend(string_to_string(e, "--env")?);
    }
    let mut labels = BTreeMap::new();
    for l in &flags.labels {
        let (k, v) = key_value(l, "label")?;
        labels.insert(k, v);
    }
    let network = match &flags.network {
        None => NetworkConfig::default(),
        Some(n) => NetworkConfig {
            r#type: NetworkType::parse(n).with_context(|| {
                format!("--network {n:?} is not a network type: use None, Host, Full, HTTP or Bridge")
            })?,
            domains: flags.domain.clone(),
        },
    };
    // No -p leaves the publisher to the orchestrator's JobDefaults (ipfs on a node with its
    // embedded IPFS store), as Bacalhau does.
    let publisher = match flags.publisher.as_deref().map(str::trim) {
        None | Some("") => SpecConfig::default(),
        Some(p) => SpecConfig::new(p),
    };
    let task = Task {
        name: "main".into(),
        engine,
        publisher,
        env,
        input_sources: inputs,
        result_paths,
        resources: ResourcesConfig {
            cpu: flags.cpu.clone().unwrap_or_default(),
            memory: flags.memory.clone().unwrap_or_default(),
            disk: flags.disk.clone().unwrap_or_default(),
            gpu: flags.gpu.clone().unwrap_or_default(),
        },
        network,
        timeouts: TimeoutConfig {
            execution_timeout: flags.execution_timeout.unwrap_or(0),
            queue_timeout: flags.queue_timeout.unwrap_or(0),
            total_timeout: flags.timeout.unwrap_or(0),
        },
        ..Default::default()
    };
    Ok(Job {
        name: flags.name.clone().unwrap_or_default(),
        namespace: flags.namespace.clone().unwrap_or_default(),
        r#type: if flags.target == Target::All { JobType::Ops } else { JobType::Batch },
        priority: flags.priority,
        count: if flags.target == Target::All { 0 } else { flags.count },
        constraints: LabelSelectorRequirement::parse_selector(flags.constraints.as_deref().unwrap_or(""))
            .map_err(anyhow::Error::msg)?,
        labels,
        tasks: vec![task],
        market: (flags.max_price.is_some() || flags.strategy.is_some()).then(|| bacalhau_model::Market {
            max_price: flags.max_price,
            strategy: flags.strategy.clone().unwrap_or_default(),
        }),
        verification: flags
            .verify
            .map(|n| bacalhau_model::Verification { replicas: n, quorum: flags.quorum.unwrap_or(n / 2 + 1) }),
        ..Default::default()
    })
}

/// A module named on the `wasm run` command line: `FILE[:TARGET]` (a local file, shipped
/// inline), `SCHEME://...[:TARGET]` (fetched by the node), or a Target another input mounts.
/// Returns the input to add, if any, and the module's Target.
fn wasm_module(
    arg: &str,
    default_target: Option<&str>,
    inputs: &[InputSource],
) -> Result<(Option<InputSource>, String)> {
    let what = if default_target.is_some() { "the entry module" } else { "import module" };
    if arg.contains("://") {
        let mut input = parse_input(arg)?;
        if !arg[arg.find("://").map_or(0, |i| i + 3)..].contains(":/") {
            match default_target {
                Some(t) => input.target = t.to_owned(),
                None => bail!("{what} {arg:?} must name a target: write {arg}:/path/to/module.wasm"),
            }
        }
        let target = input.target.clone();
        return Ok((Some(input), target));
    }
    let parts: Vec<&str> = arg.split(':').collect();
    let (file, target) = match parts.as_slice() {
        [file, target] => (*file, Some((*target).to_owned())),
        _ => (arg, None),
    };
    let local = Path::new(file);
    if local.is_file() {
        let target = match (target, default_target) {
            (Some(t), _) => t,
            (None, Some(t)) => t.to_owned(),
            (None, None) => bail!("import module {arg:?} must specify a target path using the format 'path:target'"),
        };
        let bytes = std::fs::read(local).with_context(|| format!("cannot read {}", local.display()))?;
        let url = format!("data:application/wasm;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes));
        let input =
            InputSource { source: SpecConfig::new("inline").with_param("URL", url), alias: String::new(), target };
        let target = input.target.clone();
        return Ok((Some(input), target));
    }
    if local.exists() {
        bail!("{what} {file:?} should point to a single file");
    }
    // Not a local file: the Target of a module another --input mounts, or a path inside one.
    let want = bacalhau_model::absolute_target(arg);
    let mounted = inputs
        .iter()
        .map(|i| bacalhau_model::absolute_target(&i.target))
        .any(|t| want == t || want.strip_prefix(t.as_str()).is_some_and(|rest| rest.starts_with('/')));
    if mounted {
        return Ok((None, arg.to_owned()));
    }
    bail!("{what} {arg} is not a local file, a URI, or the target of an --input: give the path of a .wasm file")
}

/// The job for `wasm run`.
pub fn wasm_job(args: &WasmRunArgs) -> Result<Job> {
    let user_inputs: Vec<InputSource> = args.job.input.iter().map(|i| parse_input(i)).collect::<Result<_>>()?;
    let mut added = Vec::new();
    let mut import_targets = Vec::new();
    for m in args.import_modules.iter().flat_map(|m| m.split(',')).map(str::trim).filter(|m| !m.is_empty()) {
        let (input, target) =
            wasm_module(m, None, &user_inputs).with_context(|| format!("failed to parse import module {m:?}"))?;
        added.extend(input);
        import_targets.push(target);
    }
    let (input, entry) =
        wasm_module(&args.module, Some(DEFAULT_ENTRY_TARGET), &user_inputs).context("failed to parse entry module")?;
    added.extend(input);
    let engine = SpecConfig::new("wasm")
        .with_param("EntryModule", entry)
        .with_param("Entrypoint", args.entry_point.clone())
        .with_param("Parameters", args.args.clone())
        .with_param("ImportModules", import_targets);
    // As Bacalhau: the modules come after the user's own inputs.
    build_job(&args.job, engine, added)
}

/// The job for `docker run`.
pub fn docker_job(args: &DockerRunArgs) -> Result<Job> {
    let mut inputs = Vec::new();
    for v in &args.volume {
        let (cid, target) =
            v.split_once(':').with_context(|| format!("volume {v:?} must be CID:/path, e.g. QmX...:/inputs"))?;
        if !target.starts_with('/') {
            bail!("volume {v:?}: the mount path {target:?} must be absolute");
        }
        inputs.push(InputSource {
            source: SpecConfig::new("ipfs").with_param("CID", cid),
            alias: String::new(),
            target: target.to_owned(),
        });
    }
    let mut engine = SpecConfig::new("docker").with_param("Image", args.image.clone());
    if !args.command.is_empty() {
        engine = engine.with_param("Parameters", args.command.clone());
    }
    if !args.entrypoint.is_empty() {
        engine = engine.with_param("Entrypoint", args.entrypoint.clone());
    }
    if let Some(w) = &args.workdir {
        engine = engine.with_param("WorkingDirectory", w.clone());
    }
    build_job(&args.job, engine, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_input_forms() {
        let i = parse_input("ipfs://QmX:/data").expect("ipfs");
        assert_eq!(i.source.param_str("CID"), Some("QmX"));
        assert_eq!(i.target, "/data");
        let i = parse_input("file:///srv/in").expect("file");
        assert_eq!(i.source.param_str("SourcePath"), Some("/srv/in"));
        assert_eq!(i.target, "/inputs");
        let i = parse_input("src=https://x.org/a.csv,dst=/in").expect("kv");
        assert_eq!(i.source.type_name(), "urlDownload");
        assert_eq!(i.target, "/in");
        assert!(parse_input("gopher://x").is_err());
    }
}
