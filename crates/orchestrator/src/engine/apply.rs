//! Evaluating dirty jobs with the scheduler and applying its plans: execution updates, new
//! executions (each with an ask), job state changes.

use super::*;

impl Engine {
    pub(super) fn evaluate(&mut self, now: i64, round: &mut Effects) {
        if self.dirty.is_empty() {
            return;
        }
        let views = self.node_views();
        let grace_over = self.mono > self.cfg.restart_grace;
        // Known nodes that have not registered since the restart may be on their way.
        let awaiting = !grace_over
            && self.memberships.iter().any(|(id, m)| {
                *m == NodeMembershipState::Approved
                    && !self.nodes.get(id).is_some_and(|n| n.connected && n.info.is_some())
            });
        let cfg = SchedulerConfig { hold_unplaced: awaiting, ..self.cfg.scheduler.clone() };
        let dirty = std::mem::take(&mut self.dirty);
        for job_id in dirty {
            let Some(active) = self.jobs.get(&job_id) else {
                continue;
            };
            let plan = scheduler::plan(&active.job, &active.execs, &views, now, grace_over, &cfg);
            self.apply(&job_id, plan, now, round);
        }
    }

    pub(super) fn apply(&mut self, job_id: &JobId, plan: Plan, now: i64, round: &mut Effects) {
        for (exec_id, verdict, dissent) in &plan.verdicts {
            let Some(e) = self.jobs.get_mut(job_id).and_then(|a| a.execs.iter_mut().find(|e| &e.id == exec_id)) else {
                continue;
            };
            if e.verification.as_deref() == Some(verdict.as_str()) {
                continue;
            }
            e.verification = Some(verdict.clone());
            e.revision += 1;
            e.modify_time = now;
            if *dissent {
                warn!(node_id = %e.node_id, execution = %e.id, "result disagreed with the verification quorum");
                let n = self.dissents.entry(e.node_id.clone()).or_default();
                *n += 1;
                round.batch.put_dissents(e.node_id.as_str(), u64::from(*n));
            }
            round.measures.push(Measure::Verdict { agreed: !*dissent });
            round.batch.put_execution(e.clone());
        }
        for u in plan.updates {
            let Some(active) = self.jobs.get_mut(job_id) else {
                return;
            };
            let Some(e) = active.execs.iter_mut().find(|e| e.id == u.id) else {
                continue;
            };
            let previous = e.compute_state.state_type;
            let next = match u.event.map(|ev| previous.apply(ev)) {
                None => None,
                Some(Ok(next)) => Some(next),
                Some(Err(illegal)) => {
                    // The plan was made from this state, so this is a bug; the execution stays.
                    warn!(execution_id = %e.id, %illegal, "the scheduler planned an impossible change; skipped");
                    continue;
                }
            };
            if let Some(s) = next {
                e.compute_state = ExecutionState::new(s, u.message.clone());
                round.measures.push(Measure::Execution { from: previous, to: s });
            }
            if let Some(d) = u.desired_state {
                e.desired_state = ExecutionState::new(d, u.message.clone());
            }
            e.revision += 1;
            e.modify_time = now;
            let node_id = e.node_id.clone();
            let exec_id = e.id.clone();
            round.batch.put_execution(e.clone());
            match u.notify {
                Some(Notify::BidAccepted) => {
                    round.sends.push((node_id.clone(), ToCompute::BidAccepted { execution_id: exec_id.clone() }))
                }
                Some(Notify::BidRejected(reason)) => round
                    .sends
                    .push((node_id.clone(), ToCompute::BidRejected { execution_id: exec_id.clone(), reason })),
                Some(Notify::Cancel(reason)) => round
                    .sends
                    .push((node_id.clone(), ToCompute::CancelExecution { execution_id: exec_id.clone(), reason })),
                None => {}
            }
            let change = next.filter(|s| *s != previous).map(|s| (previous, s));
            self.exec_history(job_id, &exec_id, &node_id, now, "Scheduling", &u.message, change, round);
        }
        for n in plan.new_executions {
            let Some(active) = self.jobs.get_mut(job_id) else {
                return;
            };
            let job = &active.job;
            round.measures.push(Measure::Placed { job_type: job.r#type, wait: seconds_between(job.create_time, now) });
            let e = Execution {
                id: self.ids.execution(),
                namespace: job.namespace.clone(),
                eval_id: EvaluationId::default(),
                name: job.name.clone(),
                node_id: n.node_id.clone(),
                job_id: job.id.clone(),
                job: None,
                partition_index: n.partition_index,
                desired_state: ExecutionState::new(DesiredStateType::Pending, ""),
                compute_state: ExecutionState::new(ComputeStateType::AskForBid, "asked the node for a bid"),
                job_version: job.version,
                published_result: None,
                run_output: None,
                quote: None,
                cost: None,
                verification: None,
                revision: 1,
                create_time: now,
                modify_time: now,
            };
            let mut with_job = e.clone();
            with_job.job = Some(Box::new(job.clone()));
            round.batch.put_execution(e.clone());
            let providers = self.content.for_job(job);
            let trace = active.trace.clone();
            round
                .sends
                .push((n.node_id.clone(), ToCompute::AskForBid { execution: Box::new(with_job), providers, trace }));
            self.exec_index.insert(e.id.clone(), job_id.clone());
            self.on_node.entry(e.node_id.clone()).or_default().insert(e.id.clone());
            let exec_id = e.id.clone();
            active.execs.push(e);
            let msg = format!("Requested execution on {}", n.node_id);
            self.exec_history(job_id, &exec_id, &n.node_id, now, "Scheduling", &msg, None, round);
        }
        if let Some((state, message)) = plan.job_state {
            self.set_job_state(job_id, state, message, now, round);
            if state.is_terminal() {
                // Cancel whatever the plan did not already stop.
                self.dirty.insert(job_id.clone());
            }
        }
        if let Some(t) = plan.retry_at
            && let Some(a) = self.jobs.get_mut(job_id)
        {
            a.retry_at = Some(t);
        }
    }

    pub(super) fn set_job_state(
        &mut self,
        job_id: &JobId,
        state: JobStateType,
        message: String,
        now: i64,
        round: &mut Effects,
    ) {
        let Some(active) = self.jobs.get_mut(job_id) else {
            return;
        };
        let previous = active.job.state.state_type;
        if previous != state {
            round.measures.push(Measure::Job {
                job_type: active.job.r#type,
                from: previous,
                to: state,
                age: seconds_between(active.job.create_time, now),
            });
        }
        active.job.state = JobState { state_type: state, message: message.clone() };
        active.job.revision += 1;
        active.job.modify_time = now;
        round.batch.put_job(active.job.clone(), false);
        round.events.push(JobEvent { job_id: job_id.clone(), state });
        let text = match (state, message.is_empty()) {
            (_, true) => format!("Job {}", state.to_string().to_lowercase()),
            (_, false) => message,
        };
        if tracing::enabled!(tracing::Level::DEBUG) {
            round.transitions.push(Transition {
                job_id: job_id.clone(),
                execution: None,
                from: format!("{previous:?}"),
                to: format!("{state:?}"),
                message: text.clone(),
            });
        }
        let topic = if state == JobStateType::Queued { "Queueing" } else { "State Update" };
        self.job_history(job_id, now, topic, &text, Some((previous, state)), round);
    }
}
