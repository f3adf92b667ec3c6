//! `Job`: what a user submits, plus the server-owned state the orchestrator keeps on it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::id::JobId;
use crate::task::Task;

/// How a job is scheduled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobType {
    /// Runs `Count` times to completion, on any suitable nodes.
    #[default]
    Batch,
    /// Runs once on every suitable node, to completion.
    Ops,
    /// Runs on every suitable node, including nodes that join later; never completes.
    Daemon,
    /// Keeps `Count` replicas running; never completes.
    Service,
}

impl JobType {
    /// The name as Bacalhau spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobType::Batch => "batch",
            JobType::Ops => "ops",
            JobType::Daemon => "daemon",
            JobType::Service => "service",
        }
    }

    /// Parses a type name case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "batch" => Some(JobType::Batch),
            "ops" => Some(JobType::Ops),
            "daemon" => Some(JobType::Daemon),
            "service" => Some(JobType::Service),
            _ => None,
        }
    }

    /// Whether jobs of this type run until stopped.
    pub fn is_long_running(self) -> bool {
        matches!(self, JobType::Daemon | JobType::Service)
    }
}

impl<'de> Deserialize<'de> for JobType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        JobType::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown job type {s:?}: use one of batch, ops, daemon, service"))
        })
    }
}

impl fmt::Display for JobType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A job's lifecycle state. Marshalled as a string, as Bacalhau does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobStateType {
    /// Not set.
    #[default]
    Undefined,
    /// Accepted, waiting for its first evaluation.
    Pending,
    /// Waiting for nodes to become available (only with a QueueTimeout).
    Queued,
    /// Has executions running.
    Running,
    /// Finished successfully (batch and ops only).
    Completed,
    /// Finished unsuccessfully.
    Failed,
    /// Stopped by a user.
    Stopped,
}

impl JobStateType {
    /// The name as Bacalhau spells it.
    pub fn name(self) -> &'static str {
        match self {
            JobStateType::Undefined => "Undefined",
            JobStateType::Pending => "Pending",
            JobStateType::Queued => "Queued",
            JobStateType::Running => "Running",
            JobStateType::Completed => "Completed",
            JobStateType::Failed => "Failed",
            JobStateType::Stopped => "Stopped",
        }
    }

    /// Whether the job can no longer change.
    pub fn is_terminal(self) -> bool {
        matches!(self, JobStateType::Completed | JobStateType::Failed | JobStateType::Stopped)
    }

    /// Whether `job rerun` may start the job again: not while it still waits to be placed
    /// (Pending, Queued), where a rerun would only race the first run.
    pub fn is_rerunnable(self) -> bool {
        !matches!(self, JobStateType::Undefined | JobStateType::Pending | JobStateType::Queued)
    }
}

impl fmt::Display for JobStateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A job's state with the reason for it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JobState {
    /// The state.
    pub state_type: JobStateType,
    /// Why the job is in this state; what `job describe` shows.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A Kubernetes-style label selector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Operator {
    /// `=` or `==`: the label equals one of the values.
    #[serde(rename = "=", alias = "==")]
    Equals,
    /// `!=`: the label is absent or differs from the value.
    #[serde(rename = "!=")]
    NotEquals,
    /// `in`: the label is one of the values.
    #[serde(rename = "in")]
    In,
    /// `notin`: the label is absent or none of the values.
    #[serde(rename = "notin")]
    NotIn,
    /// `exists`: the label is present.
    #[serde(rename = "exists")]
    Exists,
    /// `!`: the label is absent.
    #[serde(rename = "!")]
    DoesNotExist,
    /// `gt`: the label is a number greater than the value.
    #[serde(rename = "gt")]
    GreaterThan,
    /// `lt`: the label is a number less than the value.
    #[serde(rename = "lt")]
    LessThan,
}

impl Operator {
    /// Parses an operator as Bacalhau's label selectors accept it.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "=" | "==" => Operator::Equals,
            "!=" => Operator::NotEquals,
            "in" => Operator::In,
            "notin" => Operator::NotIn,
            "exists" => Operator::Exists,
            "!" | "doesnotexist" => Operator::DoesNotExist,
            "gt" | ">" => Operator::GreaterThan,
            "lt" | "<" => Operator::LessThan,
            _ => return None,
        })
    }
}

/// One requirement of a node-selection constraint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LabelSelectorRequirement {
    /// The node label's key. A `favour_` prefix makes it a soft preference.
    pub key: String,
    /// How to compare.
    pub operator: Operator,
    /// The values to compare against.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

impl LabelSelectorRequirement {
    /// Whether a node with these labels satisfies the requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let key = self.key.strip_prefix("favour_").unwrap_or(&self.key);
        let value = labels.get(key);
        match self.operator {
            Operator::Equals | Operator::In => value.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(v), Some(bound)) = (
                    value.and_then(|v| v.parse::<f64>().ok()),
                    self.values.first().and_then(|b| b.parse::<f64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { v > bound } else { v < bound }
            }
        }
    }

    /// Parses a Kubernetes-style selector such as `region=eu,zone!=a,gpu,cores>4`, as the
    /// CLI's `--constraints` and the API's `labels` query take it.
    pub fn parse_selector(s: &str) -> Result<Vec<Self>, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, operator, values) = if let Some((k, v)) = part.split_once("!=") {
                (k, Operator::NotEquals, vec![v])
            } else if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                (k, Operator::Equals, vec![v])
            } else if let Some((k, v)) = part.split_once('>') {
                (k, Operator::GreaterThan, vec![v])
            } else if let Some((k, v)) = part.split_once('<') {
                (k, Operator::LessThan, vec![v])
            } else if let Some(k) = part.strip_prefix('!') {
                (k, Operator::DoesNotExist, vec![])
            } else {
                (part, Operator::Exists, vec![])
            };
            if key.trim().is_empty() {
                return Err(format!("label selector {s:?} has an empty key: write key=value"));
            }
            out.push(Self {
                key: key.trim().to_owned(),
                operator,
                values: values.into_iter().map(|v| v.trim().to_owned()).collect(),
            });
        }
        Ok(out)
    }

    /// Whether this is a soft preference (`favour_` key prefix) rather than a requirement.
    pub fn is_preference(&self) -> bool {
        self.key.starts_with("favour_")
    }
}

/// How the orchestrator picks among nodes' quotes (a reverse auction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Price and speed (free capacity, locality, reputation) weighed together.
    #[default]
    Balanced,
    /// The lowest quote wins.
    Cheapest,
    /// The best-placed node wins, whatever it charges (within MaxPrice).
    Fastest,
}

impl Strategy {
    /// Reads `cheapest|fastest|balanced` (any case; empty is balanced).
    pub fn parse(s: &str) -> Option<Strategy> {
        match s.to_ascii_lowercase().as_str() {
            "" | "balanced" => Some(Strategy::Balanced),
            "cheapest" => Some(Strategy::Cheapest),
            "fastest" => Some(Strategy::Fastest),
            _ => None,
        }
    }
}

/// The compute market's terms (our extension of Bacalhau's spec; clients that leave it out
/// get the defaults: no price ceiling, balanced).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Market {
    /// The most the job may cost, in the nodes' price unit; quotes above it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_price: Option<f64>,
    /// `cheapest`, `fastest` or `balanced`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub strategy: String,
}

impl Market {
    /// The strategy (balanced when unset or unknown; validation rejects unknown ones).
    pub fn strategy(&self) -> Strategy {
        Strategy::parse(&self.strategy).unwrap_or_default()
    }
}

/// Verification by CID consensus: run on `Replicas` distinct nodes; the result CID that at
/// least `Quorum` of them produced is the job's result.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Verification {
    /// Distinct nodes to run on.
    pub replicas: u32,
    /// Agreeing results needed.
    pub quorum: u32,
}

/// A job: a task to run, how many times, where, and its state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Job {
    /// Server-generated `j-<uuid>`.
    #[serde(rename = "ID", default)]
    pub id: JobId,
    /// Human name; defaults to the ID.
    #[serde(default)]
    pub name: String,
    /// Defaults to `default`.
    #[serde(default)]
    pub namespace: String,
    /// Scheduling type.
    #[serde(default)]
    pub r#type: JobType,
    /// Higher runs first on a busy compute node.
    #[serde(default)]
    pub priority: i32,
    /// How many executions (partitions) a batch or service job runs.
    #[serde(default)]
    pub count: u32,
    /// Node-selection constraints.
    #[serde(default)]
    pub constraints: Vec<LabelSelectorRequirement>,
    /// Free-form metadata; `bacalhau.org/` keys are reserved for the server.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    /// Labels users filter on.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Exactly one task.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// Prices: the most it may cost and how bids are chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub market: Option<Market>,
    /// Run on several nodes and keep the result most of them agree on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// Server-owned state.
    #[serde(default)]
    pub state: JobState,
    /// Spec version, from 1.
    #[serde(default)]
    pub version: u64,
    /// Bumped on every change.
    #[serde(default)]
    pub revision: u64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub create_time: i64,
    /// Unix nanoseconds.
    #[serde(default)]
    pub modify_time: i64,
}

impl Job {
    /// The job's single task. Validated jobs always have one.
    pub fn task(&self) -> Option<&Task> {
        self.tasks.first()
    }

    /// The number of partitions the scheduler keeps: Count, at least 1 for batch/service.
    pub fn partitions(&self) -> u32 {
        if let Some(v) = &self.verification {
            return v.replicas;
        }
        match self.r#type {
            JobType::Batch | JobType::Service => self.count,
            JobType::Ops | JobType::Daemon => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn selectors_match_like_kubernetes() {
        let req = |key: &str, op, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op,
            values: values.iter().map(|s| s.to_string()).collect(),
        };
        let l = labels(&[("region", "eu"), ("cores", "8")]);
        assert!(req("region", Operator::Equals, &["eu"]).matches(&l));
        assert!(!req("region", Operator::Equals, &["us"]).matches(&l));
        assert!(req("region", Operator::NotIn, &["us"]).matches(&l));
        assert!(req("zone", Operator::NotEquals, &["a"]).matches(&l));
        assert!(req("cores", Operator::GreaterThan, &["4"]).matches(&l));
        assert!(!req("cores", Operator::LessThan, &["4"]).matches(&l));
        assert!(req("zone", Operator::DoesNotExist, &[]).matches(&l));
        assert!(req("favour_region", Operator::Equals, &["eu"]).matches(&l));
    }

    #[test]
    fn parses_selectors() {
        let c = LabelSelectorRequirement::parse_selector("region=eu, zone!=a,gpu,cores>4").expect("parse");
        assert_eq!(c.len(), 4);
        assert_eq!(c[1].operator, Operator::NotEquals);
        assert_eq!(c[2].operator, Operator::Exists);
        assert_eq!((c[3].operator, c[3].values.as_slice()), (Operator::GreaterThan, &["4".to_owned()][..]));
        let e = LabelSelectorRequirement::parse_selector("=eu").expect_err("empty key");
        assert!(e.contains("empty key"), "{e}");
    }

    #[test]
    fn job_state_serialises_as_string() {
        let s = serde_json::to_string(&JobState { state_type: JobStateType::Running, message: String::new() })
            .expect("serialise");
        assert_eq!(s, r#"{"StateType":"Running"}"#);
    }
}
