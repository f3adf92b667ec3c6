//! Bacalhau's configuration, layered as Bacalhau layers it: the defaults, then config files
//! (`$BACALHAU_DIR/config.yaml` when no file is named, else each `-c FILE.yaml` in order, later
//! ones winning), then `BACALHAU_<KEY_PATH>` environment variables, then `-c KEY=VALUE`; a flag
//! given on the command line wins over all of them. Keys are Bacalhau's (`config_keys`) and
//! match without regard to case. Unlike Bacalhau, a key that does not exist is an error naming
//! the nearest one: a typo silently ignored is a setting silently lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bacalhau_api::auth::UserConfig;
use serde_json::Value;

use crate::config_keys::{self, KEYS, Key, Kind};

/// One key's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Setting {
    /// Text.
    Str(String),
    /// A whole number.
    Int(i64),
    /// true or false.
    Bool(bool),
    /// A duration.
    Duration(Duration),
    /// A list.
    List(Vec<String>),
    /// key=value pairs.
    Map(BTreeMap<String, String>),
    /// A structure from a file.
    Raw(Value),
}

impl Setting {
    /// Parses a value given as text (`-c KEY=VALUE`, an environment variable, `config set`).
    pub fn parse(key: &Key, text: &str) -> Result<Self> {
        let k = key.path;
        Ok(match key.kind {
            Kind::Str => Self::Str(text.to_owned()),
            Kind::Int => Self::Int(text.trim().parse().map_err(|_| {
                anyhow::anyhow!("config key {k} expects a whole number, received {text:?}: e.g. {k}=10")
            })?),
            Kind::Bool => Self::Bool(
                parse_bool(text).with_context(|| format!("config key {k} expects true or false, received {text:?}"))?,
            ),
            Kind::Duration => Self::Duration(parse_go_duration(text).map_err(|e| {
                anyhow::anyhow!("config key {k} expects a duration such as 30s, 5m or 1h30m, received {text:?}: {e}")
            })?),
            Kind::List => Self::List(if text.trim().is_empty() {
                Vec::new()
            } else {
                text.split(',').map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect()
            }),
            Kind::Map => {
                let mut map = BTreeMap::new();
                for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let (key, value) = item.split_once('=').with_context(|| {
                        format!("config key {k} expects key=value pairs (k1=v1,k2=v2); {item:?} has no '='")
                    })?;
                    if key.trim().is_empty() {
                        bail!("config key {k}: {item:?} has no key before '='");
                    }
                    map.insert(key.trim().to_owned(), value.trim().to_owned());
                }
                Self::Map(map)
            }
            Kind::Raw => {
                if text.trim().is_empty() {
                    Self::Raw(Value::Null)
                } else {
                    bail!("config key {k} holds a structure: set it in a config file (bacalhau config set cannot)")
                }
            }
        })
    }

    /// Reads a value from a parsed config file.
    fn from_file(key: &Key, v: &Value) -> Result<Self> {
        let scalar = |v: &Value| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match (key.kind, v) {
            (Kind::Raw, v) => Ok(Self::Raw(v.clone())),
            (_, Value::Null) => Self::parse(key, ""),
            (Kind::Duration, Value::Number(_)) => bail!(
                "{} is a bare number; write the unit, e.g. 30s, 5m or 1h (Bacalhau would read {v} nanoseconds)",
                key.path
            ),
            (Kind::List, Value::Array(items)) => items
                .iter()
                .map(|i| scalar(i).with_context(|| format!("{} must be a list of text", key.path)))
                .collect::<Result<_>>()
                .map(Self::List),
            (Kind::Map, Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    scalar(v).map(|v| (k.clone(), v)).with_context(|| format!("{}.{k} must be text", key.path))
                })
                .collect::<Result<_>>()
                .map(Self::Map),
            (_, v) => match scalar(v) {
                Some(s) => Self::parse(key, &s),
                None => bail!("{} must be {}", key.path, kind_name(key.kind)),
            },
        }
    }

    /// As `config list` and YAML show it.
    pub fn display(&self) -> String {
        match self {
            Self::Str(s) => s.clone(),
            Self::Int(i) => i.to_string(),
            Self::Bool(b) => b.to_string(),
            Self::Duration(d) => format_go_duration(*d),
            Self::List(l) => l.join(","),
            Self::Map(m) => m.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
            Self::Raw(Value::Null) => String::new(),
            Self::Raw(v) => v.to_string(),
        }
    }

    fn to_value(&self) -> Value {
        match self {
            Self::Str(s) => Value::String(s.clone()),
            Self::Int(i) => Value::from(*i),
            Self::Bool(b) => Value::Bool(*b),
            Self::Duration(d) => Value::String(format_go_duration(*d)),
            Self::List(l) => Value::from(l.clone()),
            Self::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect()),
            Self::Raw(v) => v.clone(),
        }
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Str => "text",
        Kind::Int => "a whole number",
        Kind::Bool => "true or false",
        Kind::Duration => "a duration such as 30s",
        Kind::List => "a list",
        Kind::Map => "a map of key: value",
        Kind::Raw => "a structure",
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a Go duration (`300ms`, `1.5h`, `2h45m`; units ns, us, µs, ms, s, m, h).
pub fn parse_go_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("it is empty".into());
    }
    if s.starts_with('-') {
        return Err("it is negative".into());
    }
    let mut total = 0f64;
    let mut rest = s.trim_start_matches('+');
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| format!("{:?} is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err("a unit is missing (ns, us, ms, s, m, h)".into()),
            u => return Err(format!("{u:?} is not a unit (ns, us, ms, s, m, h)")),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

/// Formats a duration as Go does (`1m30s`, `500ms`, `0s`).
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".into();
    }
    if d < Duration::from_secs(1) {
        let ns = d.as_nanos();
        return if ns.is_multiple_of(1_000_000) {
            format!("{}ms", ns / 1_000_000)
        } else if ns.is_multiple_of(1000) {
            format!("{}µs", ns / 1000)
        } else {
            format!("{ns}ns")
        };
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let frac = d.subsec_nanos();
    let s = if frac == 0 { format!("{s}s") } else { format!("{s}.{}s", format!("{frac:09}").trim_end_matches('0')) };
    match (h, m) {
        (0, 0) => s,
        (0, m) => format!("{m}m{s}"),
        (h, m) => format!("{h}h{m}m{s}"),
    }
}

/// Where settings come from besides the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `-c`/`--config` values in order: files (`.yaml`/`.yml`), `KEY=VALUE`, or a bare bool key.
    pub config: Vec<String>,
    /// `--data-dir` or `BACALHAU_DIR`, when given.
    pub data_dir: Option<PathBuf>,
}

/// The node's effective configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<&'static str, Setting>,
}

impl Config {
    /// Loads the layers: defaults, files, environment, `-c KEY=VALUE`.
    pub fn load(sources: &Sources) -> Result<Self> {
        Self::load_with_env(sources, |name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_with_env(sources: &Sources, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut files = Vec::new();
        let mut overrides = Vec::new();
        for c in &sources.config {
            if let Some((k, v)) = c.split_once('=') {
                let key = lookup(k).context("in -c/--config")?;
                overrides.push((key, Setting::parse(key, v)?));
            } else if c.ends_with(".yaml") || c.ends_with(".yml") {
                let path = PathBuf::from(c);
                if !path.is_file() {
                    bail!(
                        "the config file {c} does not exist{}",
                        if path.is_dir() { " as a file (it is a folder)" } else { "" }
                    );
                }
                files.push(path);
            } else if Path::new(c).is_file() {
                bail!("config files must end in .yaml or .yml: rename {c}");
            } else {
                let key = lookup(c).context("in -c/--config")?;
                if key.kind != Kind::Bool {
                    bail!("-c {c} needs a value: write -c {}=VALUE", key.path);
                }
                overrides.push((key, Setting::Bool(true)));
            }
        }
        let mut cfg = Self::default();
        // The data folder decides where the default config.yaml is, so it is resolved from
        // every layer but that file first.
        if files.is_empty() {
            let dir = data_dir_before_files(&overrides, sources, &env);
            let default = dir.join("config.yaml");
            if default.is_file() {
                files.push(default);
            }
        }
        for file in &files {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read the config file {}", file.display()))?;
            let value: Value = yaml_serde::from_str(&text)
                .with_context(|| format!("{} is not valid YAML (Bacalhau's config.yaml format)", file.display()))?;
            cfg.merge_file(&value, "").with_context(|| format!("in the config file {}", file.display()))?;
        }
        for key in KEYS {
            let name = config_keys::env_name(key.path);
            if let Some(v) = env(&name) {
                let setting = Setting::parse(key, &v).with_context(|| format!("in the environment variable {name}"))?;
                cfg.values.insert(key.path, setting);
            }
        }
        if let Some(v) = env("LOG_LEVEL").filter(|_| env("BACALHAU_LOGGING_LEVEL").is_none()) {
            cfg.values.insert("Logging.Level", Setting::Str(v));
        }
        // --data-dir (or BACALHAU_DIR) is a flag: above files; BACALHAU_DATADIR and -c win.
        if let Some(d) = sources.data_dir.as_ref().filter(|_| env("BACALHAU_DATADIR").is_none()) {
            cfg.values.insert("DataDir", Setting::Str(d.display().to_string()));
        }
        for (key, setting) in overrides {
            cfg.values.insert(key.path, setting);
        }
        Ok(cfg)
    }

    fn merge_file(&mut self, v: &Value, prefix: &str) -> Result<()> {
        let Some(map) = v.as_object() else {
            if prefix.is_empty() && v.is_null() {
                return Ok(());
            }
            bail!("{} must be a section of keys, not {v}", if prefix.is_empty() { "the file" } else { prefix });
        };
        for (k, child) in map {
            let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
            if let Some(key) = config_keys::find(&path) {
                let setting = Setting::from_file(key, child)?;
                self.values.insert(key.path, setting);
            } else if config_keys::is_section(&path) {
                self.merge_file(child, &config_keys::section_name(&path))?;
            } else {
                bail!(
                    "{path} is not a Bacalhau config key; did you mean {}? (`bacalhau config list` shows every key)",
                    config_keys::nearest(&path)
                );
            }
        }
        Ok(())
    }

    /// A key's value: set, or the default.
    pub fn get(&self, path: &str) -> Setting {
        let key = config_keys::find(path).unwrap_or_else(|| panic!("{path} is not in config_keys::KEYS"));
        self.values.get(key.path).cloned().unwrap_or_else(|| {
            Setting::parse(key, key.default).unwrap_or_else(|e| panic!("the default of {path} does not parse: {e}"))
        })
    }

    /// Whether a layer above the defaults set the key.
    pub fn is_set(&self, path: &str) -> bool {
        config_keys::find(path).is_some_and(|k| self.values.contains_key(k.path))
    }

    /// A text key.
    pub fn str(&self, path: &str) -> String {
        self.get(path).display()
    }

    /// A text key, `None` when empty.
    pub fn opt_str(&self, path: &str) -> Option<String> {
        Some(self.str(path)).filter(|s| !s.trim().is_empty())
    }

    /// A whole-number key.
    pub fn int(&self, path: &str) -> i64 {
        match self.get(path) {
            Setting::Int(i) => i,
            other => panic!("{path} is not a number: {other:?}"),
        }
    }

    /// A bool key.
    pub fn bool(&self, path: &str) -> bool {
        matches!(self.get(path), Setting::Bool(true))
    }

    /// A duration key.
    pub fn duration(&self, path: &str) -> Duration {
        match self.get(path) {
            Setting::Duration(d) => d,
            other => panic!("{path} is not a duration: {other:?}"),
        }
    }

    /// A list key.
    pub fn list(&self, path: &str) -> Vec<String> {
        match self.get(path) {
            Setting::List(l) => l,
            other => panic!("{path} is not a list: {other:?}"),
        }
    }

    /// A map key.
    pub fn map(&self, path: &str) -> BTreeMap<String, String> {
        match self.get(path) {
            Setting::Map(m) => m,
            other => panic!("{path} is not a map: {other:?}"),
        }
    }

    /// The data folder.
    pub fn data_dir(&self) -> PathBuf {
        expand_home(&self.str("DataDir"))
    }

    /// `API.Auth.Users`.
    pub fn users(&self) -> Result<Vec<UserConfig>> {
        match self.get("API.Auth.Users") {
            Setting::Raw(Value::Null) => Ok(Vec::new()),
            Setting::Raw(Value::Array(items)) => {
                items.iter().enumerate().map(|(i, u)| user(u).with_context(|| format!("API.Auth.Users[{i}]"))).collect()
            }
            other => bail!("API.Auth.Users must be a list of users, not {}", other.display()),
        }
    }

    /// Every key with its effective value, sorted.
    pub fn entries(&self) -> Vec<(&'static Key, Setting)> {
        KEYS.iter().map(|k| (k, self.get(k.path))).collect()
    }

    /// The whole configuration as nested YAML-ready values.
    pub fn to_tree(&self) -> Value {
        let mut root = Value::Object(Default::default());
        for (key, setting) in self.entries() {
            set_path(&mut root, key.path, setting.to_value());
        }
        root
    }
}

/// The data folder from `-c DataDir=`, `BACALHAU_DATADIR` or `--data-dir`: where the default
/// config.yaml is looked for.
fn data_dir_before_files(
    overrides: &[(&'static Key, Setting)],
    sources: &Sources,
    env: &impl Fn(&str) -> Option<String>,
) -> PathBuf {
    let from_c = overrides.iter().rev().find(|(k, _)| k.path == "DataDir").map(|(_, s)| s.display());
    let raw = from_c
        .or_else(|| env("BACALHAU_DATADIR"))
        .or_else(|| sources.data_dir.as_ref().map(|d| d.display().to_string()));
    expand_home(raw.as_deref().unwrap_or("~/.bacalhau"))
}

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        // No home: the folder is relative to where the command runs.
        (Some(rest), None) => PathBuf::from(rest),
        _ => PathBuf::from(p),
    }
}

fn lookup(k: &str) -> Result<&'static Key> {
    config_keys::find(k.trim()).with_context(|| {
        format!(
            "{:?} is not a valid config key; did you mean {}? (`bacalhau config list` shows every key)",
            k.trim(),
            config_keys::nearest(k.trim())
        )
    })
}

fn set_path(root: &mut Value, path: &str, v: Value) {
    let mut node = root;
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(map) = node.as_object_mut() else { return };
        // Match an existing key in any case, so a file written by Bacalhau keeps one spelling.
        let existing = map.keys().find(|k| k.eq_ignore_ascii_case(part)).cloned();
        let name = existing.unwrap_or_else(|| (*part).to_owned());
        if i + 1 == parts.len() {
            map.insert(name, v);
            return;
        }
        let entry = map.entry(name).or_insert_with(|| Value::Object(Default::default()));
        if !entry.is_object() {
            *entry = Value::Object(Default::default());
        }
        node = entry;
    }
}

/// `bacalhau config set KEY=VALUE` (or `KEY VALUE...`): checks the key and value, then rewrites
/// the file in one step (a temporary file renamed over it), so a failure leaves it as it was.
pub fn set(file: &Path, args: &[String]) -> Result<()> {
    let (k, value) = match args {
        [kv] if kv.contains('=') => kv.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).unwrap_or_default(),
        [k, values @ ..] if !values.is_empty() => (k.clone(), values.join(",")),
        _ => bail!("give a key and a value: bacalhau config set KEY=VALUE (e.g. API.Port=1235)"),
    };
    let key = lookup(&k)?;
    let setting = Setting::parse(key, &value)?;
    let mut tree = match std::fs::read_to_string(file) {
        Ok(text) if !text.trim().is_empty() => yaml_serde::from_str::<Value>(&text)
            .with_context(|| format!("{} is not valid YAML; fix or remove it first", file.display()))?,
        Ok(_) => Value::Object(Default::default()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Value::Object(Default::default()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", file.display())),
    };
    if !tree.is_object() {
        bail!("{} does not hold a config section; fix or remove it first", file.display());
    }
    // The file as it would be must still load: a key it already has may be misspelt.
    Config::default().merge_file(&tree, "").with_context(|| format!("in {}", file.display()))?;
    set_path(&mut tree, key.path, setting.to_value());
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = file.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml_serde::to_string(&tree)?).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, file).with_context(|| format!("cannot replace {}", file.display()))?;
    println!("Writing config to {}: {} = {}", file.display(), key.path, setting.display());
    if !key.used {
        eprintln!("Warning: {} is a Bacalhau key this version accepts but does not act on", key.path);
    }
    Ok(())
}

/// One user entry, keys in any case.
fn user(v: &Value) -> Result<UserConfig> {
    let map = v.as_object().context("a user must be a map with Username/Password or APIKey and Capabilities")?;
    let mut u = UserConfig::default();
    for (k, val) in map {
        let s = || val.as_str().map(str::to_owned).with_context(|| format!("{k} must be a string"));
        match k.to_ascii_lowercase().as_str() {
            "alias" => u.alias = s()?,
            "username" => u.username = s()?,
            "password" => u.password = s()?,
            "apikey" => u.api_key = s()?,
            "capabilities" => {
                u.capabilities = serde_json::from_value(lower_to_actions(val))
                    .context("Capabilities must be a list of {Actions: [...]}")?
            }
            other => bail!("{other} is not a user key; use Alias, Username, Password, APIKey, Capabilities"),
        }
    }
    Ok(u)
}

fn lower_to_actions(v: &Value) -> Value {
    match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|c| match c.as_object() {
                    Some(m) => Value::Object(
                        m.iter()
                            .map(|(k, v)| {
                                (
                                    if k.eq_ignore_ascii_case("actions") { "Actions".into() } else { k.clone() },
                                    v.clone(),
                                )
                            })
                            .collect(),
                    ),
                    None => c.clone(),
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(config: &[&str], env: &[(&str, &str)]) -> Result<Config> {
        let env: BTreeMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let sources = Sources { config: config.iter().map(|s| (*s).to_owned()).collect(), data_dir: None };
        Config::load_with_env(&sources, |n| env.get(n).cloned())
    }

    #[test]
    fn layers_files_env_and_values_in_bacalhau_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = tmp.path().join("a.yaml");
        let b = tmp.path().join("b.yml");
        std::fs::write(&a, "api:\n  port: 1000\n  host: 10.0.0.1\nlabels: {zone: a}\n").expect("write");
        std::fs::write(
            &b,
            "API:\n  Port: 2000\nJobDefaults:\n  Batch:\n    Task:\n      Timeouts: {ExecutionTimeout: 1m30s}\n",
        )
        .expect("write");
        let (a, b) = (a.display().to_string(), b.display().to_string());
        let cfg = load(&[&a, &b], &[]).expect("files");
        assert_eq!(cfg.int("API.Port"), 2000, "the later file wins");
        assert_eq!(cfg.str("API.Host"), "10.0.0.1", "an earlier file's other keys stay");
        assert_eq!(cfg.map("Labels")["zone"], "a");
        assert_eq!(cfg.duration("JobDefaults.Batch.Task.Timeouts.ExecutionTimeout"), Duration::from_secs(90));
        let cfg = load(&[&a, &b], &[("BACALHAU_API_PORT", "3000")]).expect("env");
        assert_eq!(cfg.int("API.Port"), 3000, "the environment wins over files");
        let cfg = load(&[&a, "api.port=4000", &b], &[("BACALHAU_API_PORT", "3000")]).expect("values");
        assert_eq!(cfg.int("API.Port"), 4000, "-c KEY=VALUE wins over the environment");
        let cfg = load(&["Compute.Enabled", "compute.allowlistedlocalpaths=/a,/b:rw"], &[]).expect("bool");
        assert!(cfg.bool("Compute.Enabled"));
        assert_eq!(cfg.list("Compute.AllowListedLocalPaths"), ["/a", "/b:rw"]);
        assert_eq!(load(&[], &[]).expect("defaults").str("JobDefaults.Batch.Task.Publisher.Type"), "ipfs");
    }

    #[test]
    fn bad_keys_and_values_name_the_problem() {
        let e = format!("{:#}", load(&["API.Prot=1"], &[]).expect_err("unknown"));
        assert!(e.contains("\"API.Prot\" is not a valid config key; did you mean API.Port?"), "{e}");
        let e = format!("{:#}", load(&["API.Port=abc"], &[]).expect_err("type"));
        assert!(e.contains("API.Port expects a whole number"), "{e}");
        let e = format!("{:#}", load(&["API.Host"], &[]).expect_err("bare"));
        assert!(e.contains("write -c API.Host=VALUE"), "{e}");
        let e = format!("{:#}", load(&["/nope/config.yaml"], &[]).expect_err("missing"));
        assert!(e.contains("/nope/config.yaml does not exist"), "{e}");
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("c.yaml");
        std::fs::write(&f, "Compute:\n  AllowListedLocalPath: [/data]\n").expect("write");
        let e = format!("{:#}", load(&[&f.display().to_string()], &[]).expect_err("typo"));
        assert!(
            e.contains(
                "Compute.AllowListedLocalPath is not a Bacalhau config key; did you mean Compute.AllowListedLocalPaths?"
            ),
            "{e}"
        );
        std::fs::write(&f, "JobDefaults: {Batch: {Task: {Timeouts: {TotalTimeout: 30}}}}\n").expect("write");
        let e = format!("{:#}", load(&[&f.display().to_string()], &[]).expect_err("bare number"));
        assert!(e.contains("write the unit"), "{e}");
    }

    #[test]
    fn reads_users_in_any_case() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("config.yaml");
        std::fs::write(
            &f,
            "api:\n  auth:\n    users:\n      - alias: ro\n        apikey: P7D4CBB284634DD081FAC33868436ECCL\n        capabilities:\n          - actions: [\"read:job\"]\n",
        )
        .expect("write");
        let cfg = load(&[&f.display().to_string()], &[]).expect("config");
        let users = cfg.users().expect("users");
        assert_eq!(users[0].alias, "ro");
        assert_eq!(users[0].capabilities[0].actions, vec!["read:job"]);
    }

    #[test]
    fn go_durations_round_trip() {
        for (text, secs) in
            [("30s", 30.0), ("1m30s", 90.0), ("1h", 3600.0), ("1.5h", 5400.0), ("500ms", 0.5), ("0", 0.0)]
        {
            assert_eq!(parse_go_duration(text).expect(text).as_secs_f64(), secs, "{text}");
        }
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(500)), "500ms");
        assert!(
            parse_go_duration("10").is_err() && parse_go_duration("1d").is_err() && parse_go_duration("-1s").is_err()
        );
    }

    #[test]
    fn set_rewrites_the_file_whole_or_not_at_all() {
        let tmp = tempfile::tempdir().expect("tmp");
        let f = tmp.path().join("config.yaml");
        std::fs::write(&f, "api:\n  port: 1000\n").expect("write");
        set(&f, &["API.Host=0.0.0.0".into()]).expect("set");
        set(&f, &["compute.allowlistedlocalpaths".into(), "/a".into(), "/b".into()]).expect("set list");
        let cfg = load(&[&f.display().to_string()], &[]).expect("load");
        assert_eq!((cfg.int("API.Port"), cfg.str("API.Host")), (1000, "0.0.0.0".into()));
        assert_eq!(cfg.list("Compute.AllowListedLocalPaths"), ["/a", "/b"]);
        let before = std::fs::read_to_string(&f).expect("read");
        assert!(set(&f, &["API.Prot=1".into()]).is_err());
        assert!(set(&f, &["API.Port=x".into()]).is_err());
        assert_eq!(std::fs::read_to_string(&f).expect("read"), before, "a refused set changes nothing");
    }
}
