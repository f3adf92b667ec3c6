//! Job updates and reruns (Bacalhau 1.8's job versions).
//!
//! A spec submitted under the Name (and Namespace) of an existing job becomes that job's next
//! version; `rerun` makes a next version from the current or an older one. Either way the
//! replaced version is kept in the store, the job goes back to Pending, and the scheduler
//! stops what the older version still runs (executions carry the version they run).

use bacalhau_model::{EvaluationId, Job, JobId, JobStateType, TriggeredBy, next_version, spec_diff};
use tracing::info;

use super::{Active, Answer, Effects, Engine, Stored, Ticket, evaluation};
use crate::runtime::{JobEvent, OrchestratorError, RerunResult, SubmitResult};
use crate::store::MAX_KEPT_VERSIONS;

/// The error for a version that is not there, saying which are (`latest` is the current one).
pub(crate) fn no_such_version(latest: u64, job_id: &JobId, version: u64) -> OrchestratorError {
    let latest = latest.max(1);
    let oldest = latest.saturating_sub(MAX_KEPT_VERSIONS).max(1);
    OrchestratorError::NotFound {
        what: "job version",
        id: format!(
            "{version} of job {job_id} (it has versions {oldest} to {latest}; `bacalhau job versions {job_id}` lists them)"
        ),
    }
}

impl Engine {
    /// The current state of the job a submission with this Name and Namespace would update.
    /// `stored` is the store's job of that Name, read before this step.
    pub(super) fn named_job(&self, job: &Job, stored: Option<Job>, round: &Effects) -> Option<Job> {
        // A job submitted without a Name is named after its own new ID: nothing has it yet, and
        // most submissions (`docker run`, `wasm run`) skip the store read.
        if job.name == job.id.0 {
            return None;
        }
        let key = (job.namespace.clone(), job.name.clone());
        let found = match round.named.get(&key) {
            Some(id) => self.jobs.get(id).map(|a| a.job.clone()),
            None => stored,
        };
        // The store's copy lags this process's for a job in flight.
        found.map(|j| self.jobs.get(&j.id).map_or(j, |a| a.job.clone()))
    }

    /// A submission for an existing job: its next version, unless nothing changed. A refusal
    /// is answered at once; the new version's answer waits for its commit.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        current: Job,
        spec: Job,
        force: bool,
        warnings: Vec<String>,
        key: Option<String>,
        history_seq: u64,
        ticket: Ticket,
        now: i64,
        round: &mut Effects,
    ) {
        let answer = self
            .try_update(current, spec, force, key, history_seq, now, round)
            .map(|(job_id, evaluation_id)| SubmitResult { job_id, evaluation_id, warnings });
        round.answers.push((ticket, Answer::Submit(answer)));
    }

    #[allow(clippy::too_many_arguments)]
    fn try_update(
        &mut self,
        current: Job,
        spec: Job,
        force: bool,
        key: Option<String>,
        history_seq: u64,
        now: i64,
        round: &mut Effects,
    ) -> Result<(JobId, EvaluationId), OrchestratorError> {
        if !force && spec_diff(&current, &spec).is_empty() {
            return Err(OrchestratorError::Unchanged { name: current.name.clone(), job_id: current.id });
        }
        let next = next_version(&current, &spec, now, "Job update requested by user")
            .map_err(|e| OrchestratorError::Unsupported(e.0))?;
        let job_id = current.id.clone();
        let eval = self.start_version(current, next, TriggeredBy::JobUpdate, "Job updated", history_seq, now, round);
        if let Some(k) = key {
            round.batch.put_idempotency_key(&k, job_id.as_str(), eval.0.as_str());
            self.idempotency.insert(k, (job_id.0.clone(), eval.0.clone()));
        }
        Ok((job_id, eval))
    }

    /// `job rerun`: the next version, with the spec of `version` (0: the current one).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn rerun(
        &mut self,
        job_id: &JobId,
        version: u64,
        reason: &str,
        stored: Stored,
        ticket: Ticket,
        now: i64,
        round: &mut Effects,
    ) {
        let answer = self.try_rerun(job_id, version, reason, stored, now, round);
        round.answers.push((ticket, Answer::Rerun(answer)));
    }

    fn try_rerun(
        &mut self,
        job_id: &JobId,
        version: u64,
        reason: &str,
        stored: Stored,
        now: i64,
        round: &mut Effects,
    ) -> Result<RerunResult, OrchestratorError> {
        let current = match self.jobs.get(job_id) {
            Some(a) => Some(a.job.clone()),
            None => stored.job,
        }
        .ok_or_else(|| OrchestratorError::NotFound { what: "job", id: job_id.0.clone() })?;
        let state = current.state.state_type;
        if !state.is_rerunnable() {
            return Err(OrchestratorError::Conflict(format!(
                "cannot rerun job in state {state}: it has not been placed yet, so it will run without a rerun \
                 (use `bacalhau job run` to submit a new job instead)"
            )));
        }
        let source = if version == 0 || version == current.version.max(1) {
            current.clone()
        } else {
            stored.version.ok_or_else(|| no_such_version(current.version, job_id, version))?
        };
        let next =
            next_version(&current, &source, now, "job rerun").map_err(|e| OrchestratorError::Unsupported(e.0))?;
        let job_version = next.version;
        let message = if reason.trim().is_empty() {
            "Job rerun requested".to_owned()
        } else {
            format!("Job rerun requested: {}", reason.trim())
        };
        let evaluation_id =
            self.start_version(current, next, TriggeredBy::JobRerun, &message, stored.history_seq, now, round);
        Ok(RerunResult { job_id: job_id.clone(), job_version, evaluation_id })
    }

    /// Makes `next` the job's current version (keeping `current` as a replaced one) and has
    /// it scheduled. Returns the evaluation's ID. `history_seq` is where the store's history of
    /// the job ends, for a job no longer in memory.
    #[allow(clippy::too_many_arguments)]
    fn start_version(
        &mut self,
        current: Job,
        next: Job,
        trigger: TriggeredBy,
        message: &str,
        history_seq: u64,
        now: i64,
        round: &mut Effects,
    ) -> EvaluationId {
        let id = next.id.clone();
        let previous = current.state.state_type;
        info!(job_id = %id, version = next.version, "job {}", if trigger == TriggeredBy::JobRerun { "rerun" } else { "updated" });
        let eval = evaluation(self.ids.evaluation(), &next, trigger, now);
        let eval_id = eval.id.clone();
        round.batch.put_replaced_version(current);
        round.batch.put_job(next.clone(), false);
        round.batch.put_evaluation(eval);
        // A finished job left memory with all its executions ended; they belong to older
        // versions, so the new one starts with none, its history where the store's ends.
        match self.jobs.get_mut(&id) {
            Some(a) => {
                a.job = next;
                a.retry_at = None;
            }
            None => {
                self.jobs.insert(
                    id.clone(),
                    Active { job: next, execs: Vec::new(), history_seq, retry_at: None, trace: None },
                );
            }
        }
        self.job_history(&id, now, "Submission", message, Some((previous, JobStateType::Pending)), round);
        round.events.push(JobEvent { job_id: id.clone(), state: JobStateType::Pending });
        self.dirty.insert(id);
        eval_id
    }
}
