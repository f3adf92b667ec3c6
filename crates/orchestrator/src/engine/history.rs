//! Job history: one entry per job or execution event, numbered per job, with Bacalhau's
//! event topics.

use super::*;

impl Engine {
    pub(super) fn next_seq(&mut self, job_id: &JobId) -> Option<(u64, u64, u64)> {
        let a = self.jobs.get_mut(job_id)?;
        a.history_seq += 1;
        Some((a.history_seq, a.job.revision, a.job.version))
    }

    pub(super) fn job_history(
        &mut self,
        job_id: &JobId,
        now: i64,
        topic: &str,
        message: &str,
        change: Option<(JobStateType, JobStateType)>,
        round: &mut Effects,
    ) {
        self.add_history(job_id, now, topic, message, Subject::Job(change), round);
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn exec_history(
        &mut self,
        job_id: &JobId,
        exec_id: &ExecutionId,
        node_id: &NodeId,
        now: i64,
        topic: &str,
        message: &str,
        change: Option<(ComputeStateType, ComputeStateType)>,
        round: &mut Effects,
    ) {
        self.add_history(job_id, now, topic, message, Subject::Execution(exec_id, node_id, change), round);
    }

    pub(super) fn add_history(
        &mut self,
        job_id: &JobId,
        now: i64,
        topic: &str,
        message: &str,
        subject: Subject<'_>,
        round: &mut Effects,
    ) {
        let Some((seq, revision, job_version)) = self.next_seq(job_id) else {
            return;
        };
        let (r#type, execution_id, node_id, job_state, execution_state, is_error) = match subject {
            Subject::Job(change) => (
                HistoryType::JobLevel,
                ExecutionId::default(),
                NodeId::default(),
                change.map(|(previous, new)| StateChange { previous, new }),
                None,
                change.is_some_and(|c| c.1 == JobStateType::Failed),
            ),
            Subject::Execution(exec, node, change) => (
                HistoryType::ExecutionLevel,
                exec.clone(),
                node.clone(),
                None,
                change.map(|(previous, new)| StateChange { previous, new }),
                change.is_some_and(|c| c.1 == ComputeStateType::Failed),
            ),
        };
        round.batch.add_history(JobHistory {
            seq_num: seq,
            r#type,
            job_id: job_id.clone(),
            job_version,
            node_id,
            execution_id,
            job_state,
            execution_state,
            new_revision: revision,
            comment: message.to_owned(),
            event: event(topic, message, now, is_error),
            time: format_rfc3339_nanos(now),
        });
    }
}

/// What a history entry is about.
pub(super) enum Subject<'a> {
    Job(Option<(JobStateType, JobStateType)>),
    Execution(&'a ExecutionId, &'a NodeId, Option<(ComputeStateType, ComputeStateType)>),
}

pub(super) fn event(topic: &str, message: &str, now: i64, is_error: bool) -> Event {
    let mut details = serde_json::Map::new();
    if is_error {
        details.insert("IsError".into(), serde_json::Value::String("true".into()));
    }
    Event { message: message.to_owned(), topic: topic.to_owned(), timestamp: format_rfc3339_nanos(now), details }
}
