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

/// Parses an `--input` value into an input source, as Bacalhau's `-i` does: either
/// `URI[:TARGET]` or comma-separated fields (`src|source=URI`, `dst|target|destination=PATH`,
/// `opt|option=KEY=VALUE`, the first of which may be a bare `URI[:TARGET]`), quoted as CSV.
pub fn parse_input(s: &str) -> Result<InputSource> {
    Ok(parse_storage(s)?.0)
}

/// [`parse_input`], also saying whether the value named a target.
fn parse_storage(s: &str) -> Result<(InputSource, bool)> {
    let fields = csv_fields(s).with_context(|| format!("input {s:?} is not a valid comma-separated list"))?;
    let mut uri = None;
    let mut target = None;
    let mut options = BTreeMap::new();
    for (i, field) in fields.iter().enumerate() {
        let Some((key, value)) = field.split_once('=').filter(|_| !field.starts_with("data:")) else {
            if i > 0 {
                bail!("input option {field:?} in {s:?} must be a key=value pair (src=, dst= or opt=KEY=VALUE)");
            }
            let (u, t) = split_target(field);
            uri = Some(u.to_owned());
            target = t.map(str::to_owned);
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "source" | "src" => uri = Some(value.to_owned()),
            "target" | "dst" | "destination" => target = Some(value.to_owned()),
            "opt" | "option" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                if !k.is_empty() {
                    options.insert(k.to_owned(), v.to_owned());
                }
            }
            other => bail!("unexpected key {other} in field {field:?} of input {s:?}: use src=, dst= or opt=KEY=VALUE"),
        }
    }
    let uri = uri.with_context(|| format!("input {s:?} has no source: give URI[:TARGET] or src=URI"))?;
    let uri = uri.trim_matches(|c| c == ' ' || c == '\'' || c == '"');
    let given = target.is_some();
    let target = target
        .map_or_else(|| "/inputs".to_owned(), |t| t.trim_matches(|c| c == ' ' || c == '\'' || c == '"').to_owned());
    let source = source_for_uri(uri, &options)?;
    Ok((InputSource { source, alias: uri.to_owned(), target }, given))
}

/// Splits `URI:TARGET` at the last colon after the scheme, as Bacalhau does, except a colon
/// that starts a port in an http(s) URL's host (`https://host:8080/f` has no target).
fn split_target(field: &str) -> (&str, Option<&str>) {
    if field.starts_with("data:") {
        return (field, None);
    }
    let scheme_end = field.find("://").map_or(0, |i| i + 3);
    let rest = &field[scheme_end..];
    let Some(colon) = rest.rfind(':') else {
        return (field, None);
    };
    let web = field.starts_with("http://") || field.starts_with("https://");
    if web && colon < rest.find('/').unwrap_or(rest.len()) {
        return (field, None);
    }
    (&field[..scheme_end + colon], Some(&rest[colon + 1..]))
}

/// One line of comma-separated fields as Go's `encoding/csv` reads it: a field may be quoted
/// with `"`, and `""` inside quotes is one quote.
fn csv_fields(s: &str) -> Result<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => bail!("a quoted field is not closed"),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(c) => bail!("unexpected {c:?} after a quoted field"),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

fn source_for_uri(uri: &str, options: &BTreeMap<String, String>) -> Result<SpecConfig> {
    let no_options = |kind: &str| -> Result<()> {
        match options.keys().next() {
            Some(k) => bail!("unknown option {k:?} for storage {kind}"),
            None => Ok(()),
        }
    };
    Ok(if let Some(cid) = uri.strip_prefix("ipfs://") {
        no_options("ipfs")?;
        SpecConfig::new("ipfs").with_param("CID", cid.trim_end_matches('/'))
    } else if let Some(path) = uri.strip_prefix("file://") {
        let mut rw = false;
        for (k, v) in options {
            match k.as_str() {
                "rw" | "read-write" | "read_write" | "readwrite" => {
                    rw = parse_go_bool(v).with_context(|| format!("option {k}={v:?} of {uri} must be true or false"))?
                }
                other => bail!("unknown option {other:?} for storage file: the only one is rw=true|false"),
            }
        }
        let spec = SpecConfig::new("local").with_param("SourcePath", path);
        if rw { spec.with_param("ReadWrite", true) } else { spec }
    } else if uri.starts_with("http://") || uri.starts_with("https://") {
        no_options("url")?;
        SpecConfig::new("urlDownload").with_param("URL", uri)
    } else if uri.starts_with("data:") {
        no_options("inline")?;
        SpecConfig::new("inline").with_param("URL", uri)
    } else if let Some(rest) = uri.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let mut spec =
            SpecConfig::new("s3").with_param("Bucket", bucket).with_param("Key", key.trim_start_matches('/'));
        for (k, v) in options {
            let param = match k.as_str() {
                "endpoint" => "Endpoint",
                "region" => "Region",
                "versionID" | "version-id" | "version_id" => "VersionID",
                "checksum-256" | "checksum256" | "checksum_256" => "ChecksumSHA256",
                "filter" => "Filter",
                other => bail!(
                    "unknown option {other:?} for storage s3: use endpoint, region, version-id, checksum-256 or filter"
                ),
            };
            spec = spec.with_param(param, v.as_str());
        }
        spec
    } else {
        bail!(
            "input {uri:?} is not a URI this client understands: use ipfs://CID, file:///path, http(s)://..., s3://bucket/key or a data: URL"
        )
    })
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses `-p` as Bacalhau does: a type or URI (`ipfs`, `local`, `noop`, `s3://bucket/key`),
/// optionally followed by `target=URI` and `opt=KEY=VALUE` fields; an s3 URI's bucket and
/// key become the `bucket` and `key` params unless options give them.
pub fn parse_publisher(s: &str) -> Result<SpecConfig> {
    let fields = csv_fields(s).with_context(|| format!("publisher {s:?} is not a valid comma-separated list"))?;
    let mut destination = String::new();
    let mut options = serde_json::Map::new();
    for (i, field) in fields.iter().enumerate() {
        let Some((key, value)) = field.split_once('=') else {
            if i > 0 {
                bail!(
                    "invalid publisher option {field:?} in {s:?}: must be a key=value pair (target= or opt=KEY=VALUE)"
                );
            }
            destination = field.clone();
            continue;
        };
        match key.to_ascii_lowercase().as_str() {
            "target" | "dst" | "destination" => destination = value.to_owned(),
            "opt" | "option" => {
                let (k, v) = value.split_once('=').unwrap_or((value, ""));
                if !k.is_empty() {
                    options.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
                }
            }
            _ => bail!("invalid publisher option {field:?} in {s:?}: use target= or opt=KEY=VALUE"),
        }
    }
    let destination = destination.trim_matches(|c| c == ' ' || c == '\'' || c == '"');
    let (scheme, rest) = destination.split_once("://").unwrap_or((destination, ""));
    match scheme {
        "s3" => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            options.entry("bucket").or_insert_with(|| bucket.into());
            options.entry("key").or_insert_with(|| key.trim_start_matches('/').into());
            Ok(SpecConfig { r#type: "s3".into(), params: options })
        }
        "" => bail!("publisher {s:?} names no type: use ipfs, local, noop or s3://bucket/key"),
        other if rest.is_empty() => Ok(SpecConfig { r#type: other.to_owned(), params: options }),
        other => bail!("unknown publisher type {other:?} in {s:?}: use ipfs, local, noop or s3://bucket/key"),
    }
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
        Some(p) => parse_publisher(p)?,
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
        let (mut input, named_target) = parse_storage(arg)?;
        if !named_target {
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

    #[test]
    fn parses_bacalhaus_csv_input_fields_and_options() {
        let i =
            parse_input("source=s3://bkt/dir/*.csv,target=/in,opt=region=eu-west-1,opt=endpoint=http://127.0.0.1:9000")
                .expect("s3");
        assert_eq!((i.source.type_name().as_str(), i.target.as_str()), ("s3", "/in"));
        assert_eq!(i.source.param_str("Key"), Some("dir/*.csv"));
        assert_eq!(i.source.param_str("Region"), Some("eu-west-1"));
        assert_eq!(i.source.param_str("Endpoint"), Some("http://127.0.0.1:9000"));
        assert_eq!(i.alias, "s3://bkt/dir/*.csv");
        let i = parse_input("file:///srv/in:/data,opt=rw=true").expect("rw");
        assert_eq!((i.source.param_str("SourcePath"), i.target.as_str()), (Some("/srv/in"), "/data"));
        assert_eq!(i.source.param("ReadWrite"), Some(&serde_json::Value::Bool(true)));
        // A port is not a target; a relative target is one.
        let i = parse_input("https://127.0.0.1:8080/a.csv").expect("port");
        assert_eq!((i.source.param_str("URL"), i.target.as_str()), (Some("https://127.0.0.1:8080/a.csv"), "/inputs"));
        let i = parse_input("ipfs://QmX:data").expect("relative");
        assert_eq!(i.target, "data");
        let i = parse_input("\"src=https://x.org/a,b.csv\",dst=/in").expect("quoted");
        assert_eq!(i.source.param_str("URL"), Some("https://x.org/a,b.csv"));
        let e = parse_input("ipfs://QmX,flavour=x").expect_err("unknown key");
        assert!(e.to_string().contains("unexpected key flavour"), "{e}");
        let e = parse_input("ipfs://QmX,/data").expect_err("bare second field");
        assert!(e.to_string().contains("must be a key=value pair"), "{e}");
        let e = parse_input("s3://b/k,opt=colour=red").expect_err("unknown option");
        assert!(e.to_string().contains("unknown option \"colour\" for storage s3"), "{e}");
        assert!(parse_input("file:///x,opt=rw=maybe").is_err());
    }

    #[test]
    fn parses_bacalhaus_publisher_forms() {
        assert_eq!(parse_publisher("ipfs").expect("ipfs").type_name(), "ipfs");
        let p = parse_publisher("s3://results/out/,opt=region=us-east-1").expect("s3");
        assert_eq!(p.type_name(), "s3");
        assert_eq!(p.param_str("bucket"), Some("results"));
        assert_eq!(p.param_str("key"), Some("out/"));
        assert_eq!(p.param_str("region"), Some("us-east-1"));
        let p = parse_publisher("target=s3://a/b,opt=bucket=c").expect("target");
        assert_eq!((p.param_str("bucket"), p.param_str("key")), (Some("c"), Some("b")));
        assert!(parse_publisher("gopher://x").is_err());
        assert!(parse_publisher("ipfs,/x").is_err());
    }
}
