//! Bacalhau's v1 job model.
//!
//! The types here are the contract shared by every other crate and by Bacalhau's own clients:
//! [`Job`], [`Task`], [`SpecConfig`], [`Execution`], [`Evaluation`], [`JobHistory`] and
//! [`NodeInfo`], with the JSON field names Bacalhau uses on the wire. The crate also parses job
//! specs the way Bacalhau does (YAML or JSON, keys matched case-insensitively), fills in
//! defaults, and validates a submission with errors that name the field and the fix.
//!
//! It does no I/O, spawns nothing and reads no clock: callers pass in IDs and times.

mod engine;
mod evaluation;
mod execution;
mod go_time;
mod history;
mod id;
mod job;
mod keys;
mod legacy;
mod lifecycle;
mod net;
mod node;
mod num;
mod parse;
mod resources;
mod s3;
mod spec_config;
mod task;
mod time;
mod validate;
mod versions;

pub use engine::{DockerEngineSpec, EngineSpec, WasmEngineSpec};
pub use evaluation::{Evaluation, EvaluationStatus, TriggeredBy};
pub use execution::{
    ComputeStateType, DesiredStateType, Execution, ExecutionState, RUN_OUTPUT_LIMIT_BYTES, RunCommandResult,
};
pub use go_time::{GoLayout, GoTime};
pub use history::{Event, HistoryType, JobHistory, StateChange};
pub use id::{EvaluationId, ExecutionId, JobId, NodeId};
pub use job::{
    Job, JobState, JobStateType, JobType, LabelSelectorRequirement, Market, Operator, Strategy, Verification,
};
pub use legacy::{LEGACY_ENTRY_TARGET, rewrite_legacy_wasm};
pub use lifecycle::{ExecutionEvent, IllegalTransition};
pub use net::refused_address;
pub use node::{
    BuildVersionInfo, ComputeNodeInfo, ConnectionState, GO_ZERO_TIME, NodeConnectionState, NodeInfo,
    NodeMembershipState, NodeState, NodeType, Prices, QUOTE_DEFAULT_SECONDS, ResourcesWire,
};
pub use num::{f64_to_i64_saturating, f64_to_u64};
pub use parse::{ParseError, ParsedJob, SpecFormat, parse_job_spec, parse_job_value};
pub use resources::{ResourceParseError, Resources, fmt_bytes, fmt_cpu, parse_bytes, parse_cpu};
pub use s3::{
    Partition, S3_KEY_PLACEHOLDERS, S3Publisher, S3Source, bucket_problem, endpoint_problem, fnv1a32, region_problem,
};
pub use spec_config::{
    ENGINE_DOCKER, ENGINE_NOOP, ENGINE_WASM, PUBLISHER_IPFS, PUBLISHER_LOCAL, PUBLISHER_NOOP, PUBLISHER_S3_MANAGED,
    SOURCE_INLINE, SOURCE_IPFS, SOURCE_LOCAL, SOURCE_URL, SpecConfig,
};
pub use task::{
    InputSource, NetworkConfig, NetworkType, ResourcesConfig, ResultPath, Task, TimeoutConfig, absolute_target,
};
pub use time::format_rfc3339_nanos;
pub use validate::{
    FieldError, JobTypeDefaults, MAX_TIMEOUT_SECS, SERVER_OWNED_FIELDS, SubmissionDefaults, ValidationError,
    prepare_submission, validate,
};
pub use versions::{UpdateError, VERSION_TIME_META, next_version, spec_diff, version_start};
