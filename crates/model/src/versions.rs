//! Job versions (Bacalhau 1.8): a spec submitted again under a job's Name updates that job,
//! and `job rerun` starts a job again from one of its versions. This module holds the rules
//! both follow: which fields an update may change, when two specs count as the same, and how
//! their difference is shown.

use serde_json::Value;

use crate::{Job, JobState, JobStateType};

/// Meta key holding when the job's current version began (Unix nanoseconds). TotalTimeout is
/// measured from it, so rerunning a day-old job does not time it out at once.
pub const VERSION_TIME_META: &str = "bacalhau.org/version.time";

/// Past this many lines a rendered spec is not diffed line by line (the diff's cost grows with
/// the product of the sizes, and a request body can hold a very large spec); the diff names
/// the top-level fields that differ instead.
const MAX_DIFF_LINES: usize = 5_000;

/// The fields Bacalhau's `Job.CompareWith` ignores: the server sets them.
const SERVER_FIELDS: [&str; 6] = ["ID", "State", "Version", "Revision", "CreateTime", "ModifyTime"];

/// The spec part of a job as YAML-like JSON, with what the server owns left out, reserved
/// Meta keys dropped and resource quantities lower-cased (`1GB` and `1gb` are the same).
fn comparable(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        for f in SERVER_FIELDS {
            map.remove(f);
        }
        if let Some(Value::Object(meta)) = map.get_mut("Meta") {
            meta.retain(|k, _| !k.starts_with(crate::validate::RESERVED_META_PREFIX));
        }
        if let Some(Value::Array(tasks)) = map.get_mut("Tasks") {
            for t in tasks {
                if let Some(Value::Object(res)) = t.get_mut("Resources") {
                    for q in res.values_mut() {
                        if let Value::String(s) = q {
                            *s = s.to_lowercase();
                        }
                    }
                }
            }
        }
    }
    v
}

/// How `new` differs from `old` in what a user wrote, as a unified diff of the two specs;
/// empty when they are the same (Bacalhau's "no changes detected").
pub fn spec_diff(old: &Job, new: &Job) -> String {
    let (a, b) = (comparable(old), comparable(new));
    if a == b {
        return String::new();
    }
    let render = |v: &Value| yaml_serde::to_string(v).unwrap_or_else(|_| v.to_string());
    let (ya, yb) = (render(&a), render(&b));
    if ya.lines().count() > MAX_DIFF_LINES || yb.lines().count() > MAX_DIFF_LINES {
        return coarse_diff(&a, &b);
    }
    similar::TextDiff::from_lines(&ya, &yb)
        .unified_diff()
        .context_radius(3)
        .header(&format!("version {}", old.version), "submitted")
        .to_string()
}

/// The top-level fields that differ, for specs too large to diff line by line.
fn coarse_diff(a: &Value, b: &Value) -> String {
    let empty = serde_json::Map::new();
    let (ma, mb) = (a.as_object().unwrap_or(&empty), b.as_object().unwrap_or(&empty));
    let mut keys: Vec<&String> = ma.keys().chain(mb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| ma.get(*k) != mb.get(*k))
        .map(|k| format!("~ {k}: changed (the specs are too large to show line by line)\n"))
        .collect()
}

/// Why an update cannot apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UpdateError(pub String);

/// The next version of `current`, taking from `spec` what an update may change (Bacalhau's:
/// Priority, Count, Constraints, Meta, Labels, Tasks; ours adds Market and Verification, which
/// are spec too). The job goes back to Pending with `message`; its ID, Name, Namespace, Type
/// and creation time stay.
pub fn next_version(current: &Job, spec: &Job, now_nanos: i64, message: &str) -> Result<Job, UpdateError> {
    if spec.r#type != current.r#type {
        return Err(UpdateError(format!(
            "job {} is a {} job and an update cannot make it {}: give the new spec another Name to submit it as a new job",
            current.name, current.r#type, spec.r#type
        )));
    }
    let mut next = current.clone();
    next.priority = spec.priority;
    next.count = spec.count;
    next.constraints = spec.constraints.clone();
    next.meta = spec.meta.clone();
    next.labels = spec.labels.clone();
    next.tasks = spec.tasks.clone();
    next.market = spec.market.clone();
    next.verification = spec.verification.clone();
    next.state = JobState { state_type: JobStateType::Pending, message: message.to_owned() };
    next.version = current.version.max(1) + 1;
    next.revision = current.revision + 1;
    next.modify_time = now_nanos;
    next.meta.insert(VERSION_TIME_META.to_owned(), now_nanos.to_string());
    Ok(next)
}

/// When the job's current version began: its creation, or its last update or rerun.
pub fn version_start(job: &Job) -> i64 {
    job.meta.get(VERSION_TIME_META).and_then(|t| t.parse().ok()).unwrap_or(job.create_time)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{JobType, Task};

    fn job(image: &str) -> Job {
        let mut t = Task { name: "main".into(), ..Task::default() };
        t.engine.r#type = "docker".into();
        t.engine.params.insert("Image".into(), Value::String(image.into()));
        t.resources.memory = "1GB".into();
        Job {
            id: "j-1".into(),
            name: "hello".into(),
            namespace: "default".into(),
            count: 1,
            tasks: vec![t],
            version: 1,
            revision: 3,
            create_time: 10,
            modify_time: 20,
            ..Job::default()
        }
    }

    #[test]
    fn server_fields_reserved_meta_and_unit_case_are_not_changes() {
        let a = job("ubuntu");
        let mut b = job("ubuntu");
        b.id = "j-2".into();
        b.version = 7;
        b.revision = 1;
        b.create_time = 99;
        b.state.state_type = JobStateType::Failed;
        b.meta.insert(VERSION_TIME_META.into(), "5".into());
        b.tasks[0].resources.memory = "1gb".into();
        assert_eq!(spec_diff(&a, &b), "");
    }

    #[test]
    fn a_changed_image_shows_as_a_line_diff() {
        let d = spec_diff(&job("ubuntu"), &job("debian"));
        assert!(
            d.contains("-") && d.contains("Image: ubuntu") && d.contains("+") && d.contains("Image: debian"),
            "{d}"
        );
        assert!(d.contains("version 1") && d.contains("submitted"), "{d}");
    }

    #[test]
    fn a_huge_spec_gets_a_field_level_diff() {
        let mut a = job("ubuntu");
        a.labels = (0..6_000).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        let mut b = a.clone();
        b.labels.insert("k1".into(), "w".into());
        assert_eq!(spec_diff(&a, &b), "~ Labels: changed (the specs are too large to show line by line)\n");
    }

    #[test]
    fn next_version_copies_the_spec_and_keeps_identity() {
        let mut cur = job("ubuntu");
        cur.state.state_type = JobStateType::Completed;
        let mut spec = job("debian");
        spec.id = "j-other".into();
        spec.count = 3;
        let next = next_version(&cur, &spec, 1_000, "Job updated").expect("update");
        assert_eq!((next.id.as_str(), next.version, next.revision, next.count), ("j-1", 2, 4, 3));
        assert_eq!(next.state.state_type, JobStateType::Pending);
        assert_eq!(next.create_time, 10);
        assert_eq!(version_start(&next), 1_000);
        assert_eq!(version_start(&cur), 10);
        assert_eq!(spec_diff(&spec, &next), "", "the new version is the submitted spec");
    }

    #[test]
    fn an_update_cannot_change_the_job_type() {
        let mut spec = job("ubuntu");
        spec.r#type = JobType::Service;
        let e = next_version(&job("ubuntu"), &spec, 1, "x").expect_err("type change");
        assert!(e.0.contains("cannot make it service") && e.0.contains("another Name"), "{e}");
    }

    #[test]
    fn only_jobs_already_placed_can_be_rerun() {
        assert!(!JobStateType::Pending.is_rerunnable());
        assert!(!JobStateType::Queued.is_rerunnable());
        assert!(JobStateType::Running.is_rerunnable());
        assert!(JobStateType::Failed.is_rerunnable());
        assert!(JobStateType::Completed.is_rerunnable());
    }
}
