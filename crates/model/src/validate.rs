//! Submission checks: normalisation, defaults and validation with precise errors.

use std::collections::BTreeSet;
use std::fmt;

use crate::engine::EngineSpec;
use crate::id::JobId;
use crate::job::{Job, JobState, JobStateType, JobType, Operator};
use crate::resources::Resources;
use crate::spec_config::{
    PUBLISHER_IPFS, PUBLISHER_LOCAL, PUBLISHER_NOOP, PUBLISHER_S3_MANAGED, SOURCE_INLINE, SOURCE_IPFS, SOURCE_LOCAL,
    SOURCE_URL, SpecConfig,
};
use crate::task::{NetworkType, Task};

/// One problem with one field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// Where, e.g. `Tasks[0].Engine.Params.EntryModule`.
    pub field: String,
    /// What is wrong and how to fix it; reads after the field name.
    pub message: String,
}

impl FieldError {
    /// A problem with a field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.field, self.message)
    }
}

/// Every problem found in a submission.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationError(pub Vec<FieldError>);

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("; "))
    }
}

/// Node-wide defaults applied to submissions, one set per job type (Bacalhau's `JobDefaults`).
#[derive(Clone, Debug, Default)]
pub struct SubmissionDefaults {
    /// `JobDefaults.Batch`.
    pub batch: JobTypeDefaults,
    /// `JobDefaults.Ops`.
    pub ops: JobTypeDefaults,
    /// `JobDefaults.Daemon`: priority and resources only, as Bacalhau (a daemon never ends, so
    /// it has nothing to publish and no timeout).
    pub daemon: JobTypeDefaults,
    /// `JobDefaults.Service`: priority and resources only.
    pub service: JobTypeDefaults,
}

impl SubmissionDefaults {
    /// The defaults for jobs of type `t`.
    pub fn for_type(&self, t: JobType) -> &JobTypeDefaults {
        match t {
            JobType::Batch => &self.batch,
            JobType::Ops => &self.ops,
            JobType::Daemon => &self.daemon,
            JobType::Service => &self.service,
        }
    }
}

/// The defaults of one job type; each applies only where the job leaves the field unset.
#[derive(Clone, Debug)]
pub struct JobTypeDefaults {
    /// Priority when the job's is 0.
    pub priority: i32,
    /// CPU when the task asks for none.
    pub cpu: String,
    /// Memory when the task asks for none.
    pub memory: String,
    /// Disk when the task asks for none (empty: none).
    pub disk: String,
    /// GPUs when the task asks for none (empty: none).
    pub gpu: String,
    /// Publisher when the task has none (empty: none; batch and ops only).
    pub publisher: SpecConfig,
    /// ExecutionTimeout when the task has none (seconds, 0 = none; batch and ops only).
    pub execution_timeout: u64,
    /// TotalTimeout when the task has none (seconds, 0 = none; batch and ops only).
    pub total_timeout: u64,
}

impl Default for JobTypeDefaults {
    fn default() -> Self {
        Self {
            priority: 0,
            cpu: "500m".into(),
            memory: "512Mb".into(),
            disk: String::new(),
            gpu: String::new(),
            publisher: SpecConfig::default(),
            execution_timeout: 0,
            total_timeout: 0,
        }
    }
}

/// Fields of a job that only the server sets; a spec file must not carry them.
pub const SERVER_OWNED_FIELDS: [&str; 6] = ["ID", "State", "Version", "Revision", "CreateTime", "ModifyTime"];

/// The longest timeout a spec may ask for, in seconds (ten years). Anything longer is a typo
/// or an attack on the arithmetic: in nanoseconds it would not fit an i64.
pub const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;

/// The most partitions (Count) one job may have: the scheduler walks them on every
/// evaluation, so a Count of four billion would stall it.
pub const MAX_COUNT: u32 = 10_000;

/// The most nodes one verified job may run on.
pub const MAX_REPLICAS: u32 = 100;

pub(crate) const RESERVED_META_PREFIX: &str = "bacalhau.org/";
const RESERVED_RESULT_NAMES: [&str; 3] = ["stdout", "stderr", "exitCode"];
const KNOWN_PUBLISHERS: [&str; 5] = [PUBLISHER_NOOP, PUBLISHER_LOCAL, PUBLISHER_IPFS, "s3", PUBLISHER_S3_MANAGED];
const KNOWN_SOURCES: [&str; 7] =
    [SOURCE_IPFS, SOURCE_INLINE, SOURCE_LOCAL, "localdirectory", SOURCE_URL, "s3", "s3presigned"];

/// Turns a submitted job into the job the orchestrator stores: server-owned fields reset
/// (with warnings), defaults applied, everything validated. Returns the job and the warnings.
pub fn prepare_submission(
    mut job: Job,
    id: JobId,
    now_nanos: i64,
    defaults: &SubmissionDefaults,
) -> Result<(Job, Vec<String>), ValidationError> {
    let mut warnings = Vec::new();
    if job.state.state_type != JobStateType::Undefined {
        warnings.push("State is set by the server; the submitted value was ignored".to_owned());
    }
    for (name, set) in [
        ("Version", job.version != 0),
        ("Revision", job.revision != 0),
        ("CreateTime", job.create_time != 0),
        ("ModifyTime", job.modify_time != 0),
        ("ID", !job.id.0.is_empty()),
    ] {
        if set {
            warnings.push(format!("{name} is set by the server; the submitted value was ignored"));
        }
    }
    if job.tasks.len() > 1 {
        warnings
            .push(format!("only one task per job is supported; {} extra task(s) were dropped", job.tasks.len() - 1));
        job.tasks.truncate(1);
    }
    let reserved: Vec<String> = job.meta.keys().filter(|k| k.starts_with(RESERVED_META_PREFIX)).cloned().collect();
    for k in reserved {
        warnings.push(format!("Meta key {k:?} is reserved for the server and was removed"));
        job.meta.remove(&k);
    }

    job.id = id;
    if job.namespace.trim().is_empty() {
        job.namespace = "default".into();
    }
    if job.name.trim().is_empty() {
        job.name = job.id.0.clone();
    }
    if matches!(job.r#type, JobType::Ops | JobType::Daemon) && job.count == 1 {
        job.count = 0;
    }
    for task in &mut job.tasks {
        if crate::legacy::rewrite_legacy_wasm(task).map_err(ValidationError)? {
            warnings.push(
                "the WASM modules were given as input sources (Bacalhau's legacy form); they were added to InputSources and the engine names their Targets"
                    .to_owned(),
            );
        }
    }
    let d = defaults.for_type(job.r#type);
    if job.priority == 0 {
        job.priority = d.priority;
    }
    let long_running = matches!(job.r#type, JobType::Daemon | JobType::Service);
    for task in &mut job.tasks {
        apply_task_defaults(task, d, long_running);
    }

    let errors = validate(&job);
    if !errors.is_empty() {
        return Err(ValidationError(errors));
    }

    job.state = JobState { state_type: JobStateType::Pending, message: String::new() };
    job.version = 1;
    job.revision = 1;
    job.create_time = now_nanos;
    job.modify_time = now_nanos;
    Ok((job, warnings))
}

fn apply_task_defaults(task: &mut Task, d: &JobTypeDefaults, long_running: bool) {
    if task.name.trim().is_empty() {
        task.name = "main".into();
    }
    // Zero is no limit to an engine and nothing to capacity accounting, so `CPU: 0` or
    // `Memory: 0` gets the default as an empty value does.
    if crate::resources::parse_cpu(&task.resources.cpu).is_ok_and(|v| v == 0) {
        task.resources.cpu = d.cpu.clone();
    }
    if crate::resources::parse_bytes("Memory", &task.resources.memory).is_ok_and(|v| v == 0) {
        task.resources.memory = d.memory.clone();
    }
    if task.resources.disk.trim().is_empty() {
        task.resources.disk = d.disk.clone();
    }
    if task.resources.gpu.trim().is_empty() {
        task.resources.gpu = d.gpu.clone();
    }
    if !long_running {
        if task.publisher.is_empty() && !d.publisher.is_empty() {
            task.publisher = d.publisher.clone();
        }
        if task.timeouts.execution_timeout == 0 {
            task.timeouts.execution_timeout = d.execution_timeout;
        }
        if task.timeouts.total_timeout == 0 {
            task.timeouts.total_timeout = d.total_timeout;
        }
    }
    task.resources.cpu = task.resources.cpu.trim().to_owned();
    task.resources.memory = task.resources.memory.trim().to_owned();
    task.resources.disk = task.resources.disk.trim().to_owned();
}

/// Checks a normalised job; an empty list means valid.
pub fn validate(job: &Job) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match job.r#type {
        JobType::Batch if job.count == 0 => {
            errs.push(FieldError::new("Count", "must be at least 1 for a batch job"));
        }
        _ if job.count > MAX_COUNT => errs.push(FieldError::new(
            "Count",
            format!(
                "is {}, more than the most one job may run ({MAX_COUNT}): split the work into several jobs",
                job.count
            ),
        )),
        JobType::Ops | JobType::Daemon if job.count > 1 => errs.push(FieldError::new(
            "Count",
            format!(
                "must be 0 or 1 for a {} job, which runs once per matching node; use Constraints to choose nodes",
                job.r#type
            ),
        )),
        _ => {}
    }
    if let Some(m) = &job.market {
        if m.max_price.is_some_and(|p| !p.is_finite() || p < 0.0) {
            errs.push(FieldError::new("Market.MaxPrice", "must be a number of at least 0"));
        }
        if crate::Strategy::parse(&m.strategy).is_none() {
            errs.push(FieldError::new(
                "Market.Strategy",
                format!("{:?} is not a strategy: use cheapest, fastest or balanced", m.strategy),
            ));
        }
    }
    if let Some(v) = &job.verification {
        if job.r#type != JobType::Batch {
            errs.push(FieldError::new("Verification", "is only for batch jobs"));
        }
        if job.task().is_some_and(|t| !t.publisher.type_name().eq_ignore_ascii_case("ipfs")) {
            errs.push(FieldError::new(
                "Verification",
                "needs the ipfs publisher: results are compared by their CIDs (add -p ipfs)",
            ));
        }
        if v.replicas < 2 {
            errs.push(FieldError::new("Verification.Replicas", "must be at least 2 to compare results"));
        } else if v.replicas > MAX_REPLICAS {
            errs.push(FieldError::new(
                "Verification.Replicas",
                format!("is {}, more than the most allowed ({MAX_REPLICAS})", v.replicas),
            ));
        }
        if v.quorum == 0 || v.quorum > v.replicas {
            errs.push(FieldError::new(
                "Verification.Quorum",
                format!("must be between 1 and Replicas ({}); a majority is {}", v.replicas, v.replicas / 2 + 1),
            ));
        }
    }
    for (i, c) in job.constraints.iter().enumerate() {
        let field = format!("Constraints[{i}]");
        if c.key.trim().is_empty() {
            errs.push(FieldError::new(format!("{field}.Key"), "is required: name the node label to match"));
        }
        let n = c.values.len();
        let bad = match c.operator {
            Operator::Equals | Operator::NotEquals if n != 1 => Some("needs exactly one value"),
            Operator::In | Operator::NotIn if n == 0 => Some("needs at least one value"),
            Operator::Exists | Operator::DoesNotExist if n != 0 => Some("takes no values"),
            Operator::GreaterThan | Operator::LessThan if n != 1 || c.values[0].parse::<f64>().is_err() => {
                Some("needs exactly one numeric value")
            }
            _ => None,
        };
        if let Some(msg) = bad {
            errs.push(FieldError::new(format!("{field}.Values"), format!("{msg} for operator {:?}", c.operator)));
        }
    }
    match job.tasks.first() {
        None => errs.push(FieldError::new("Tasks", "is required: a job needs exactly one task")),
        Some(task) => validate_task(task, &mut errs),
    }
    errs
}

fn is_absolute(p: &str) -> bool {
    p.starts_with('/')
}

fn validate_task(task: &Task, errs: &mut Vec<FieldError>) {
    let t = "Tasks[0]";
    if task.engine.is_empty() {
        errs.push(FieldError::new(format!("{t}.Engine.Type"), "is required: set it to wasm or docker"));
    } else {
        match EngineSpec::decode(&task.engine, &format!("{t}.Engine.Params")) {
            Err(e) => errs.extend(e),
            Ok(EngineSpec::Wasm(w)) => {
                let targets: Vec<&str> = task.input_sources.iter().map(|i| i.target.as_str()).collect();
                let resolves =
                    |p: &str| targets.iter().any(|t| *t == p || t.trim_start_matches('/') == p.trim_start_matches('/'));
                if !w.entry_module.is_empty() && !resolves(&w.entry_module) {
                    errs.push(FieldError::new(
                        format!("{t}.Engine.Params.EntryModule"),
                        format!(
                            "is {:?}, which is not the Target of any InputSource: add an InputSource with that Target holding the .wasm file",
                            w.entry_module
                        ),
                    ));
                }
                for (i, m) in w.import_modules.iter().enumerate() {
                    if !resolves(m) {
                        errs.push(FieldError::new(
                            format!("{t}.Engine.Params.ImportModules[{i}]"),
                            format!("is {m:?}, which is not the Target of any InputSource"),
                        ));
                    }
                }
            }
            Ok(EngineSpec::Docker(_) | EngineSpec::Other(_)) => {}
        }
    }
    if !task.publisher.is_empty() && !KNOWN_PUBLISHERS.contains(&task.publisher.type_name().as_str()) {
        errs.push(FieldError::new(
            format!("{t}.Publisher.Type"),
            format!("does not support {}, only {}", task.publisher.r#type, KNOWN_PUBLISHERS.join(", ")),
        ));
    }
    if task.publisher.is_type("s3")
        && let Err(problems) = crate::S3Publisher::from_spec(&task.publisher)
    {
        errs.extend(problems.into_iter().map(|(key, why)| FieldError::new(format!("{t}.Publisher.Params.{key}"), why)));
    }
    for name in task.env.keys() {
        let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            errs.push(FieldError::new(
                format!("{t}.Env.{name}"),
                "is not a valid variable name: use letters, digits and underscores, not starting with a digit",
            ));
        } else if name.to_ascii_uppercase().starts_with("BACALHAU_") {
            errs.push(FieldError::new(
                format!("{t}.Env.{name}"),
                "uses the reserved prefix BACALHAU_, which the system sets itself: rename the variable",
            ));
        }
    }
    let mut targets = BTreeSet::new();
    for (i, input) in task.input_sources.iter().enumerate() {
        let f = format!("{t}.InputSources[{i}]");
        if input.target.trim().is_empty() {
            errs.push(FieldError::new(
                format!("{f}.Target"),
                "is required: the path to mount the input at, e.g. /inputs (a relative path is read from /)",
            ));
        } else if input.target.split('/').any(|c| c == "..") {
            errs.push(FieldError::new(format!("{f}.Target"), format!("is {:?}: it must not contain ..", input.target)));
        } else if !targets.insert(crate::absolute_target(&input.target)) {
            errs.push(FieldError::new(
                format!("{f}.Target"),
                format!("is {:?}, which another input already uses", input.target),
            ));
        }
        validate_source(&input.source, &format!("{f}.Source"), errs);
    }
    let mut names = BTreeSet::new();
    let mut paths = BTreeSet::new();
    for (i, rp) in task.result_paths.iter().enumerate() {
        let f = format!("{t}.ResultPaths[{i}]");
        if rp.name.trim().is_empty() {
            errs.push(FieldError::new(format!("{f}.Name"), "is required: the folder name the results get"));
        } else if rp.name.contains('/') || rp.name == "." || rp.name == ".." {
            errs.push(FieldError::new(
                format!("{f}.Name"),
                format!("is {:?}: use a plain folder name without /", rp.name),
            ));
        } else if RESERVED_RESULT_NAMES.contains(&rp.name.as_str()) {
            errs.push(FieldError::new(
                format!("{f}.Name"),
                format!("is {:?}, which the result folder uses for the program's output: choose another name", rp.name),
            ));
        } else if !names.insert(rp.name.clone()) {
            errs.push(FieldError::new(
                format!("{f}.Name"),
                format!("is {:?}, which another result path already uses", rp.name),
            ));
        }
        if rp.path.trim().is_empty() {
            errs.push(FieldError::new(
                format!("{f}.Path"),
                "is required: the absolute path the program writes results to",
            ));
        } else if !is_absolute(&rp.path) || rp.path.split('/').any(|c| c == "..") {
            errs.push(FieldError::new(
                format!("{f}.Path"),
                format!("is {:?}: it must be an absolute path without ..", rp.path),
            ));
        } else if !paths.insert(rp.path.trim_end_matches('/').to_owned()) {
            errs.push(FieldError::new(
                format!("{f}.Path"),
                format!("is {:?}, which another result path already uses", rp.path),
            ));
        }
    }
    if !task.result_paths.is_empty() && task.publisher.is_empty() {
        errs.push(FieldError::new(
            format!("{t}.Publisher"),
            "is required when ResultPaths are set, or the results would be lost: set a publisher such as local or ipfs",
        ));
    }
    if let Err(e) = Resources::parse(&task.resources) {
        errs.push(FieldError::new(format!("{t}.Resources.{}", e.field), format!("is {:?}: {}", e.value, e.hint)));
    }
    if !task.network.domains.is_empty() && task.network.r#type != NetworkType::Http {
        errs.push(FieldError::new(
            format!("{t}.Network.Domains"),
            format!("is only allowed with Network.Type HTTP, not {}", task.network.r#type),
        ));
    }
    let to = &task.timeouts;
    for (name, secs) in [
        ("ExecutionTimeout", to.execution_timeout),
        ("QueueTimeout", to.queue_timeout),
        ("TotalTimeout", to.total_timeout),
    ] {
        if secs > MAX_TIMEOUT_SECS {
            errs.push(FieldError::new(
                format!("{t}.Timeouts.{name}"),
                format!("is {secs}s, more than the most allowed ({MAX_TIMEOUT_SECS}s, ten years): use 0 for no limit"),
            ));
        }
    }
    if to.total_timeout > 0 && to.execution_timeout.saturating_add(to.queue_timeout) > to.total_timeout {
        errs.push(FieldError::new(
            format!("{t}.Timeouts.TotalTimeout"),
            format!(
                "is {}s, less than ExecutionTimeout ({}s) plus QueueTimeout ({}s): raise TotalTimeout or lower the others",
                to.total_timeout, to.execution_timeout, to.queue_timeout
            ),
        ));
    }
}

fn validate_source(src: &SpecConfig, f: &str, errs: &mut Vec<FieldError>) {
    let kind = src.type_name();
    if kind.is_empty() {
        errs.push(FieldError::new(
            format!("{f}.Type"),
            "is required: one of ipfs, inline, local, urlDownload, s3, s3PreSigned",
        ));
        return;
    }
    if !KNOWN_SOURCES.contains(&kind.as_str()) {
        errs.push(FieldError::new(
            format!("{f}.Type"),
            format!("does not support {}, only ipfs, inline, local, urlDownload, s3, s3PreSigned", src.r#type),
        ));
        return;
    }
    let require = |key: &str, what: &str, errs: &mut Vec<FieldError>| {
        if src.param_str(key).is_none_or(|s| s.trim().is_empty()) {
            errs.push(FieldError::new(format!("{f}.Params.{key}"), format!("is required for a {kind} input: {what}")));
        }
    };
    match kind.as_str() {
        SOURCE_IPFS => require("CID", "the content ID to fetch", errs),
        SOURCE_INLINE => {
            require("URL", "an RFC 2397 data: URL", errs);
            if let Some(u) =
                src.param_str("URL").filter(|u| !u.trim().is_empty() && !u.trim_start().starts_with("data:"))
            {
                errs.push(FieldError::new(
                    format!("{f}.Params.URL"),
                    format!(
                        "starts with {:?}: an inline input must be a data: URL",
                        u.chars().take(12).collect::<String>()
                    ),
                ));
            }
        }
        SOURCE_LOCAL | "localdirectory" => {
            require("SourcePath", "an absolute path on the compute node", errs);
            if let Some(p) = src.param_str("SourcePath").filter(|p| !p.is_empty() && !is_absolute(p)) {
                errs.push(FieldError::new(
                    format!("{f}.Params.SourcePath"),
                    format!("is {p:?}: it must be an absolute path"),
                ));
            }
        }
        SOURCE_URL => {
            require("URL", "the http(s) URL to download", errs);
            if let Some(why) = src.param_str("URL").and_then(url_problem) {
                errs.push(FieldError::new(format!("{f}.Params.URL"), why));
            }
        }
        "s3presigned" => {
            require("PreSignedURL", "the signed http(s) URL of the object", errs);
            if let Some(why) = src.param_str("PreSignedURL").and_then(url_problem) {
                errs.push(FieldError::new(format!("{f}.Params.PreSignedURL"), why));
            }
        }
        _ => {
            if let Err(problems) = crate::S3Source::from_spec(src) {
                errs.extend(problems.into_iter().map(|(key, why)| FieldError::new(format!("{f}.Params.{key}"), why)));
            }
        }
    }
}

/// What is wrong with a `urlDownload` URL, checked as Bacalhau checks it at submission:
/// http or https, a host, and a path after it that names the file.
fn url_problem(raw: &str) -> Option<String> {
    let url = raw.trim_matches(|c: char| c == ' ' || c == '\'' || c == '"');
    if url.is_empty() {
        return None;
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Some(format!("is {url:?}: a urlDownload URL must begin with http:// or https://"));
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Some(format!("begins with {scheme}://: a urlDownload URL must begin with http:// or https://"));
    }
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() {
        return Some(format!("is {url:?}: it names no host"));
    }
    if !rest.contains('/') {
        return Some(format!("is {url:?}: it must end with a file name, e.g. {url}/data.csv"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some(format!("is {url:?}: spaces and control characters must be percent-encoded"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::parse_job_spec;

    fn prepare(spec: &str) -> Result<(Job, Vec<String>), ValidationError> {
        let p = parse_job_spec(spec).expect("parse");
        prepare_submission(p.job, JobId::from("j-test"), 42, &SubmissionDefaults::default())
    }

    const WASM: &str = r#"
Type: batch
Tasks:
  - Engine: {Type: wasm, Params: {EntryModule: /app/main.wasm}}
    InputSources:
      - {Target: /app/main.wasm, Source: {Type: inline, Params: {URL: "data:,x"}}}
"#;

    #[test]
    fn applies_defaults() {
        let (job, warnings) = prepare(WASM).expect("valid");
        assert!(warnings.is_empty());
        assert_eq!(job.name, "j-test");
        assert_eq!(job.namespace, "default");
        assert_eq!(job.count, 1);
        assert_eq!(job.tasks[0].name, "main");
        assert_eq!(job.tasks[0].resources.cpu, "500m");
        assert_eq!(job.state.state_type, JobStateType::Pending);
        assert_eq!(job.create_time, 42);
    }

    #[test]
    fn url_inputs_are_checked_at_submission() {
        let spec = |u: &str| {
            format!(
                "Type: batch\nTasks:\n  - Engine: {{Type: wasm, Params: {{EntryModule: /app/main.wasm}}}}\n    InputSources:\n      - {{Target: /app/main.wasm, Source: {{Type: inline, Params: {{URL: \"data:,x\"}}}}}}\n      - {{Target: /in, Source: {{Type: urlDownload, Params: {{URL: \"{u}\"}}}}}}\n"
            )
        };
        assert!(prepare(&spec("https://example.org/data/a.csv")).is_ok());
        assert!(prepare(&spec("HTTP://example.org/")).is_ok(), "Bacalhau takes a path of / too");
        for (bad, says) in [
            ("ftp://example.org/a.csv", "must begin with http:// or https://"),
            ("example.org/a.csv", "must begin with http:// or https://"),
            ("https://example.org", "must end with a file name"),
            ("https:///a.csv", "names no host"),
            ("https://example.org/a b.csv", "percent-encoded"),
        ] {
            let e = prepare(&spec(bad)).expect_err(bad);
            assert_eq!(e.0[0].field, "Tasks[0].InputSources[1].Source.Params.URL", "{bad}");
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn errors_name_field_and_fix() {
        let e = prepare("Type: batch\nTasks:\n  - Engine: {Type: wasm}\n").expect_err("invalid");
        assert_eq!(e.0[0].field, "Tasks[0].Engine.Params.EntryModule");
        assert!(e.to_string().starts_with("Tasks[0].Engine.Params.EntryModule is required"), "{e}");

        let e = prepare(&format!("{WASM}    ResultPaths: [{{Name: out, Path: relative}}]\n")).expect_err("invalid");
        let text = e.to_string();
        assert!(text.contains("Tasks[0].ResultPaths[0].Path is \"relative\": it must be an absolute path"), "{text}");
        assert!(text.contains("Tasks[0].Publisher is required when ResultPaths are set"), "{text}");

        let (job, _) =
            prepare(&format!("{WASM}    Resources: {{CPU: \"0\", Memory: 0Gb}}\n")).expect("zero is defaulted");
        assert_eq!(job.tasks[0].resources.cpu, "500m");
        assert_ne!(job.tasks[0].resources.memory, "0Gb");
        let e = prepare(&format!("{WASM}    Resources: {{Memory: lots}}\n")).expect_err("invalid");
        assert!(e.to_string().contains("Tasks[0].Resources.Memory is \"lots\""), "{e}");

        let e = prepare(&format!("{WASM}    Env: {{BACALHAU_X: y}}\n")).expect_err("invalid");
        assert!(e.to_string().contains("reserved prefix BACALHAU_"), "{e}");

        // Counts that would stall the scheduler.
        let e = prepare(&WASM.replace("Type: batch", "Type: batch\nCount: 4294967295")).expect_err("invalid");
        assert!(e.to_string().contains("Count is 4294967295, more than the most one job may run (10000)"), "{e}");

        // A timeout whose nanoseconds overflow an i64 (it once panicked the scheduler).
        let e = prepare(&format!("{WASM}    Timeouts: {{TotalTimeout: 1000000000000}}\n")).expect_err("invalid");
        assert!(e.to_string().contains("Tasks[0].Timeouts.TotalTimeout is 1000000000000s, more than the most"), "{e}");
        let e = prepare(&format!("{WASM}    Timeouts: {{QueueTimeout: 18446744073709551615}}\n")).expect_err("invalid");
        assert!(e.to_string().contains("Tasks[0].Timeouts.QueueTimeout"), "{e}");

        let e = prepare("Type: ops\nCount: 3\nTasks: []\n").expect_err("invalid");
        assert!(e.to_string().contains("Count must be 0 or 1 for a ops job"), "{e}");
        assert!(e.to_string().contains("Tasks is required"), "{e}");
    }

    #[test]
    fn server_owned_fields_warn() {
        let (job, warnings) = prepare(&format!("ID: j-mine\nRevision: 9\n{WASM}")).expect("valid");
        assert_eq!(job.id.as_str(), "j-test");
        assert_eq!(job.revision, 1);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }
}
