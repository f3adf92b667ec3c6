//! Job updates and reruns (Bacalhau 1.8's job versions).
//!
//! A spec submitted under the Name (and Namespace) of an existing job becomes that job's next
//! version; `rerun` makes a next version from the current or an older one. Either way the
//! replaced version is kept in the store, the job goes back to Pending, and the scheduler
//! stops what the older version still runs (executions carry the version they run).

use bacalhau_model::{EvaluationId, Job, JobId, JobStateType, TriggeredBy, next_version, spec_diff};
use tokio::sync::oneshot;
use tracing::info;

use super::{Active, JobEvent, OrchestratorError, Reply, RerunResult, Round, Runtime, SubmitResult, evaluation};
use crate::store::{JobStore, MAX_KEPT_VERSIONS, StoreError};

/// The job named `name` in `namespace`, if there is one. Jobs submitted before names were
/// unique may share one; the newest is the one a new spec updates.
pub(super) fn find_named(store: &JobStore, namespace: &str, name: &str) -> Result<Option<Job>, StoreError> {
    let mut best: Option<Job> = None;
    for id in store.jobs_named(name)? {
        if let Some(job) = store.job(id.as_str())?
            && job.namespace == namespace
            && best.as_ref().is_none_or(|b| (job.create_time, &job.id.0) > (b.create_time, &b.id.0))
        {
            best = Some(job);
        }
    }
    Ok(best)
}

/// The error for a version that is not there, saying which are.
pub(super) fn no_such_version(store: &JobStore, job_id: &JobId, version: u64) -> OrchestratorError {
    let latest = store.job(job_id.as_str()).ok().flatten().map_or(1, |j| j.version.max(1));
    let oldest = latest.saturating_sub(MAX_KEPT_VERSIONS).max(1);
    OrchestratorError::NotFound {
        what: "job version",
        id: format!(
            "{version} of job {job_id} (it has versions {oldest} to {latest}; `bacalhau job versions {job_id}` lists them)"
        ),
    }
}

impl Runtime {
    /// The current state of the job a submission with this Name and Namespace would update.
    pub(super) fn named_job(&self, job: &Job, round: &Round) -> Result<Option<Job>, OrchestratorError> {
        // A job submitted without a Name is named after its own new ID: nothing has it yet, and
        // most submissions (`docker run`, `wasm run`) skip the store read.
        if job.name == job.id.0 {
            return Ok(None);
        }
        let key = (job.namespace.clone(), job.name.clone());
        let found = match round.named.get(&key) {
            Some(id) => self.jobs.get(id).map(|a| a.job.clone()),
            None => find_named(&self.store, &job.namespace, &job.name)?,
        };
        // The store's copy lags this process's for a job in flight.
        Ok(found.map(|j| self.jobs.get(&j.id).map_or(j, |a| a.job.clone())))
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
        reply: oneshot::Sender<Result<SubmitResult, OrchestratorError>>,
        now: i64,
        round: &mut Round,
    ) {
        match self.try_update(current, spec, force, key, now, round) {
            Ok((job_id, evaluation_id)) => {
                round.replies.push(Reply::Submit(reply, SubmitResult { job_id, evaluation_id, warnings }))
            }
            Err(e) => drop(reply.send(Err(e))),
        }
    }

    fn try_update(
        &mut self,
        current: Job,
        spec: Job,
        force: bool,
        key: Option<String>,
        now: i64,
        round: &mut Round,
    ) -> Result<(JobId, EvaluationId), OrchestratorError> {
        if !force && spec_diff(&current, &spec).is_empty() {
            return Err(OrchestratorError::Unchanged { name: current.name.clone(), job_id: current.id });
        }
        let next = next_version(&current, &spec, now, "Job update requested by user")
            .map_err(|e| OrchestratorError::Unsupported(e.0))?;
        let job_id = current.id.clone();
        let eval = self.start_version(current, next, TriggeredBy::JobUpdate, "Job updated", now, round)?;
        if let Some(k) = key {
            round.batch.put_idempotency_key(&k, job_id.as_str(), eval.0.as_str());
            self.idempotency.insert(k, (job_id.0.clone(), eval.0.clone()));
        }
        Ok((job_id, eval))
    }

    /// `job rerun`: the next version, with the spec of `version` (0: the current one).
    pub(super) fn rerun(
        &mut self,
        job_id: &JobId,
        version: u64,
        reason: &str,
        reply: oneshot::Sender<Result<RerunResult, OrchestratorError>>,
        now: i64,
        round: &mut Round,
    ) {
        match self.try_rerun(job_id, version, reason, now, round) {
            Ok(r) => round.replies.push(Reply::Rerun(reply, r)),
            Err(e) => drop(reply.send(Err(e))),
        }
    }

    fn try_rerun(
        &mut self,
        job_id: &JobId,
        version: u64,
        reason: &str,
        now: i64,
        round: &mut Round,
    ) -> Result<RerunResult, OrchestratorError> {
        let current = match self.jobs.get(job_id) {
            Some(a) => Some(a.job.clone()),
            None => self.store.job(job_id.as_str())?,
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
            self.store
                .job_version(job_id.as_str(), version)?
                .ok_or_else(|| no_such_version(&self.store, job_id, version))?
        };
        let next =
            next_version(&current, &source, now, "job rerun").map_err(|e| OrchestratorError::Unsupported(e.0))?;
        let job_version = next.version;
        let message = if reason.trim().is_empty() {
            "Job rerun requested".to_owned()
        } else {
            format!("Job rerun requested: {}", reason.trim())
        };
        let evaluation_id = self.start_version(current, next, TriggeredBy::JobRerun, &message, now, round)?;
        Ok(RerunResult { job_id: job_id.clone(), job_version, evaluation_id })
    }

    /// Makes `next` the job's current version (keeping `current` as a replaced one) and has
    /// it scheduled. Returns the evaluation's ID.
    fn start_version(
        &mut self,
        current: Job,
        next: Job,
        trigger: TriggeredBy,
        message: &str,
        now: i64,
        round: &mut Round,
    ) -> Result<EvaluationId, StoreError> {
        let id = next.id.clone();
        // A finished job left memory with all its executions ended; they belong to older
        // versions, so the new one starts with none, its history where the store's ends.
        let seq = match self.jobs.contains_key(&id) {
            true => None,
            false => Some(self.store.last_history_seq(id.as_str())?),
        };
        let previous = current.state.state_type;
        info!(job_id = %id, version = next.version, "job {}", if trigger == TriggeredBy::JobRerun { "rerun" } else { "updated" });
        let eval = evaluation(self.ids.evaluation(), &next, trigger, now);
        let eval_id = eval.id.clone();
        round.batch.put_replaced_version(current);
        round.batch.put_job(next.clone(), false);
        round.batch.put_evaluation(eval);
        match (self.jobs.get_mut(&id), seq) {
            (Some(a), _) => {
                a.job = next;
                a.retry_at = None;
            }
            (None, seq) => {
                let history_seq = seq.unwrap_or(0);
                self.jobs.insert(id.clone(), Active { job: next, execs: Vec::new(), history_seq, retry_at: None });
            }
        }
        self.job_history(&id, now, "Submission", message, Some((previous, JobStateType::Pending)), round);
        round.events.push(JobEvent { job_id: id.clone(), state: JobStateType::Pending });
        self.dirty.insert(id);
        Ok(eval_id)
    }
}
