//! Compute nodes: their messages, membership and liveness as the orchestrator sees them,
//! reconciliation with what a node holds, and the one place an execution's state changes
//! on a node's word (`update_execution`).

use super::*;

impl Engine {
    pub(super) fn membership(&self, id: &NodeId) -> NodeMembershipState {
        self.memberships.get(id).copied().unwrap_or(NodeMembershipState::Pending)
    }

    pub(super) fn node_states(&self) -> Vec<NodeState> {
        self.nodes
            .values()
            .filter_map(|n| {
                let mut info = n.info.clone()?;
                if let Some(c) = info.compute_node_info.as_mut() {
                    c.available_capacity = n.available.into();
                }
                Some(NodeState {
                    membership: self.membership(&info.node_id),
                    dissents: self.dissents.get(&info.node_id).copied().unwrap_or(0),
                    connection_state: n.link.state(n.connected),
                    info,
                    connection: if n.connected {
                        NodeConnectionState::Connected
                    } else {
                        NodeConnectionState::Disconnected
                    },
                })
            })
            .collect()
    }

    /// A node's link came up (it may not have registered yet).
    pub(super) fn connected(&mut self, node_id: NodeId) {
        let mono = self.mono;
        let entry = self.nodes.entry(node_id).or_insert_with(|| NodeEntry {
            info: None,
            connected: false,
            last_seen: mono,
            available: Resources::default(),
            mismatch: None,
            link: LinkHistory::default(),
        });
        entry.last_seen = mono;
    }

    /// A send to the node found its link closed: it is gone until it registers again (its
    /// work is rescheduled only after the disconnect timeout, so a brief reconnect loses
    /// nothing).
    pub(super) fn link_lost(&mut self, node_id: &NodeId, now: i64) {
        if let Some(n) = self.nodes.get_mut(node_id) {
            if n.connected {
                n.link.disconnected_since = now;
                n.link.last_error = "its link closed (the process stopped, or the network between them failed)".into();
            }
            n.connected = false;
            self.content.node_down(node_id);
        }
    }

    pub(super) fn handle_message(&mut self, env: Envelope<FromCompute>, now: i64, round: &mut Effects) {
        let node_id = env.node_id.clone();
        if env.version != PROTOCOL_VERSION {
            let reason = format!(
                "protocol version mismatch: node {node_id} speaks version {}, this orchestrator speaks {PROTOCOL_VERSION}; run the same bacalhau version on both",
                env.version
            );
            warn!("{reason}");
            round.sends.push((node_id, ToCompute::Registered { accepted: false, reason }));
            return;
        }
        if let Some(n) = self.nodes.get_mut(&node_id) {
            let was_lost = !n.connected && n.info.is_some();
            n.last_seen = self.mono;
            n.connected = true;
            // Its work was failed and rescheduled when it went silent: it must register again
            // so both sides reconcile (it cancels what it still runs of that work).
            if was_lost && !matches!(env.payload, FromCompute::Register { .. }) {
                info!(%node_id, "a node marked disconnected spoke again; asking it to register");
                round.sends.push((node_id.clone(), ToCompute::Reconnected));
            }
        }
        if !matches!(env.payload, FromCompute::Register { .. }) {
            let why = if self.memberships.get(&node_id) == Some(&NodeMembershipState::Rejected) {
                Some(REJECTED)
            } else if self.nodes.get(&node_id).is_none_or(|n| n.info.is_none()) {
                Some(UNREGISTERED)
            } else {
                None
            };
            if let Some(why) = why {
                if matches!(env.payload, FromCompute::Heartbeat { .. }) {
                    debug!(%node_id, "refused: {why}");
                } else {
                    warn!(%node_id, "refused: {why}");
                }
                round.refused.push(why);
                if why == UNREGISTERED {
                    // It may only have missed its turn (an orchestrator restart): it registers
                    // again, re-sending what was never acknowledged.
                    round.sends.push((node_id, ToCompute::Resync));
                }
                return;
            }
        }
        match env.payload {
            FromCompute::Register { info, executions } => {
                match self.memberships.get(&node_id).copied() {
                    Some(NodeMembershipState::Rejected) => {
                        warn!(%node_id, "a rejected node tried to register");
                        let reason = "this node was rejected by the orchestrator's operator (`bacalhau node approve` lets it in)".to_owned();
                        round.sends.push((node_id, ToCompute::Registered { accepted: false, reason }));
                        return;
                    }
                    Some(_) => {}
                    None => {
                        let m = if self.cfg.manual_node_approval {
                            info!(%node_id, "new node waits for approval: `bacalhau node approve {node_id}`");
                            NodeMembershipState::Pending
                        } else {
                            NodeMembershipState::Approved
                        };
                        self.memberships.insert(node_id.clone(), m);
                        round.batch.put_node_membership(node_id.as_str(), Some(membership_name(m)));
                    }
                }
                info!(%node_id, "compute node registered");
                self.content.node_up(&node_id, &info.ipfs_addrs);
                let available =
                    info.compute_node_info.as_ref().map(|c| Resources::from(c.available_capacity)).unwrap_or_default();
                let mono = self.mono;
                let entry = self.nodes.entry(node_id.clone()).or_insert_with(|| NodeEntry {
                    info: None,
                    connected: true,
                    last_seen: mono,
                    available,
                    mismatch: None,
                    link: LinkHistory::default(),
                });
                entry.info = Some(*info);
                entry.connected = true;
                entry.link.connected_since = now;
                entry.link.last_heartbeat = now;
                entry.available = available;
                round.sends.push((node_id.clone(), ToCompute::Registered { accepted: true, reason: String::new() }));
                self.reconcile(&node_id, executions, now, round);
                // A new node may be what queued jobs wait for.
                self.dirty.extend(self.jobs.keys().cloned());
            }
            FromCompute::Heartbeat { available, ipfs_roots, digest, .. } => {
                if let Some(theirs) = digest {
                    self.compare_digest(&node_id, theirs, round);
                }
                if let Some(n) = self.nodes.get_mut(&node_id) {
                    n.available = available.into();
                    n.link.last_heartbeat = now;
                    if let Some(roots) = ipfs_roots
                        && let Some(c) = n.info.as_mut().and_then(|i| i.compute_node_info.as_mut())
                    {
                        c.ipfs_roots = roots;
                    }
                }
            }
            FromCompute::BidResult { execution_id, accepted, reason, quote } => {
                if !self.owns(&node_id, &execution_id, round) {
                    return;
                }
                let msg =
                    if accepted { "node bid for the execution".to_owned() } else { format!("node declined: {reason}") };
                self.update_execution(
                    &execution_id,
                    ExecutionEvent::NodeBid { accepted },
                    if accepted { None } else { Some(DesiredStateType::Stopped) },
                    &msg,
                    now,
                    round,
                    |e| e.quote = quote,
                );
                if !accepted {
                    // The decline is recorded: the node may forget the execution.
                    round.sends.push((node_id, ToCompute::Ack { execution_id }));
                }
            }
            FromCompute::RunResult { execution_id, published_result, run_output, cost } => {
                if !self.owns(&node_id, &execution_id, round) {
                    return;
                }
                if let Some(cid) = published_result
                    .as_ref()
                    .filter(|p| p.r#type.eq_ignore_ascii_case(bacalhau_model::PUBLISHER_IPFS))
                    .and_then(|p| p.param_str("CID"))
                {
                    self.content.holds(&node_id, cid);
                    round.batch.put_holder(cid, node_id.as_str());
                }
                let msg = if run_output.exit_code == 0 {
                    "Completed successfully".to_owned()
                } else {
                    format!("Completed with exit code {}", run_output.exit_code)
                };
                self.update_execution(
                    &execution_id,
                    ExecutionEvent::Completed,
                    Some(DesiredStateType::Stopped),
                    &msg,
                    now,
                    round,
                    |e| {
                        e.published_result = published_result;
                        e.run_output = Some(run_output);
                        e.cost = cost;
                    },
                );
                round.sends.push((node_id, ToCompute::Ack { execution_id }));
            }
            FromCompute::ComputeError { execution_id, message, cancelled, retryable } => {
                if !self.owns(&node_id, &execution_id, round) {
                    return;
                }
                let event = if cancelled { ExecutionEvent::Cancelled } else { ExecutionEvent::Failed };
                self.update_execution(
                    &execution_id,
                    event,
                    Some(DesiredStateType::Stopped),
                    &message,
                    now,
                    round,
                    |_| {},
                );
                if !retryable && !cancelled {
                    // Another attempt would fail the same way: fail the job now, with this reason.
                    if let Some(job_id) = self.exec_index.get(&execution_id).cloned() {
                        let live = self.jobs.get(&job_id).is_some_and(|a| !a.job.state.state_type.is_terminal());
                        if live {
                            self.set_job_state(&job_id, JobStateType::Failed, message.clone(), now, round);
                        }
                    }
                }
                round.sends.push((node_id, ToCompute::Ack { execution_id }));
            }
            FromCompute::ManagedUpload { execution_id } => {
                if !self.owns(&node_id, &execution_id, round) {
                    return;
                }
                match self.managed_upload(&execution_id) {
                    Ok(job_id) => round.uploads.push(UploadGrant { node_id, job_id, execution_id }),
                    Err(why) => {
                        warn!(%node_id, %execution_id, "no upload URL: {why}");
                        round.sends.push((node_id, ToCompute::ManagedUploadUrl { execution_id, url: Err(why) }));
                    }
                }
            }
            FromCompute::ExecutionEvent { execution_id, topic, message } => {
                if !self.owns(&node_id, &execution_id, round) {
                    return;
                }
                match self.exec_index.get(&execution_id).cloned() {
                    Some(job_id) => {
                        self.exec_history(&job_id, &execution_id, &node_id, now, &topic, &message, None, round)
                    }
                    None => round.refused.push(UNKNOWN_EXECUTION),
                }
            }
        }
    }

    /// Whether the orchestrator lends its S3 credentials for `execution_id`'s upload: only
    /// for an execution in flight (its bid accepted, not being stopped) of a job whose
    /// publisher is `s3managed`; the caller has checked that the asking node runs it. The
    /// object's key comes from the job and execution IDs alone, so a grant reaches nothing
    /// but that execution's own archive.
    fn managed_upload(&self, execution_id: &ExecutionId) -> Result<JobId, String> {
        if self.cfg.managed_uploads.is_none() {
            return Err("this orchestrator has no managed S3 bucket (its operator sets Publishers.Types.S3Managed.Bucket and Region)".into());
        }
        let not_in_flight = || format!("execution {execution_id} is not in flight");
        let job_id = self.exec_index.get(execution_id).ok_or_else(not_in_flight)?;
        let active = self.jobs.get(job_id).ok_or_else(not_in_flight)?;
        let exec = active.execs.iter().find(|e| &e.id == execution_id).ok_or_else(not_in_flight)?;
        let publisher = active.job.tasks.first().map(|t| t.publisher.r#type.as_str()).unwrap_or_default();
        if !publisher.eq_ignore_ascii_case(bacalhau_model::PUBLISHER_S3_MANAGED) {
            return Err(format!("the job's publisher is {publisher:?}, not s3managed"));
        }
        if exec.compute_state.state_type != ComputeStateType::BidAccepted
            || exec.desired_state.state_type != DesiredStateType::Running
        {
            return Err(format!("execution {execution_id} is not running"));
        }
        Ok(job_id.clone())
    }

    /// The executions in memory on `node_id`, each with its job.
    pub(super) fn executions_on<'a>(&'a self, node_id: &NodeId) -> impl Iterator<Item = (&'a Active, &'a Execution)> {
        self.on_node.get(node_id).into_iter().flatten().filter_map(|id| {
            let active = self.jobs.get(self.exec_index.get(id)?)?;
            Some((active, active.execs.iter().find(|e| &e.id == id)?))
        })
    }

    /// Whether `node_id` may report on `execution_id`: an execution in flight belongs to the
    /// node it was asked of, and no other node's word on it counts. (One not in flight is for
    /// the handlers to ignore, and for reconciliation to tell the node.)
    pub(super) fn owns(&self, node_id: &NodeId, execution_id: &ExecutionId, fx: &mut Effects) -> bool {
        let owner = self
            .exec_index
            .get(execution_id)
            .and_then(|j| self.jobs.get(j))
            .and_then(|a| a.execs.iter().find(|e| &e.id == execution_id))
            .map(|e| &e.node_id);
        match owner {
            Some(owner) if owner != node_id => {
                warn!(%node_id, %execution_id, %owner, "refused: {FOREIGN_EXECUTION}");
                fx.refused.push(FOREIGN_EXECUTION);
                false
            }
            _ => true,
        }
    }

    /// Compares a node's digest of its live executions with ours of the same node; a
    /// difference that persists across two heartbeats means a message was lost, and the node
    /// is asked to register again so that reconciliation repairs it.
    pub(super) fn compare_digest(&mut self, node_id: &NodeId, theirs: ExecutionDigest, round: &mut Effects) {
        let mut ours = ExecutionDigest::default();
        for (_, e) in self.executions_on(node_id) {
            let phase = match e.compute_state.state_type {
                ComputeStateType::New | ComputeStateType::AskForBid => Phase::Asked,
                ComputeStateType::AskForBidAccepted => Phase::Bid,
                ComputeStateType::BidAccepted => Phase::Accepted,
                _ => continue,
            };
            ours.add(&e.id, phase);
        }
        let Some(n) = self.nodes.get_mut(node_id) else {
            return;
        };
        if theirs == ours {
            n.mismatch = None;
        } else if n.mismatch == Some((theirs, ours)) {
            warn!(%node_id, ?theirs, ?ours, "the node and the orchestrator disagree about its executions; resyncing");
            n.mismatch = None;
            n.link.last_error = "its executions differed from the orchestrator's record on two heartbeats in a row; \
                                 it was asked to register again"
                .into();
            round.sends.push((node_id.clone(), ToCompute::Resync));
        } else {
            n.mismatch = Some((theirs, ours));
        }
    }

    /// Brings a (re)connected node and the orchestrator back into agreement.
    pub(super) fn reconcile(&mut self, node_id: &NodeId, reports: Vec<ExecutionReport>, now: i64, round: &mut Effects) {
        let reported: HashMap<ExecutionId, LocalExecutionState> =
            reports.iter().map(|r| (r.execution_id.clone(), r.state)).collect();
        let mut lost = Vec::new();
        let mut bid_updates = Vec::new();
        for (active, e) in self.executions_on(node_id) {
            if e.compute_state.state_type.is_terminal() {
                continue;
            }
            let state = e.compute_state.state_type;
            match reported.get(&e.id) {
                None if matches!(state, ComputeStateType::New | ComputeStateType::AskForBid) => {
                    let mut with_job = e.clone();
                    with_job.job = Some(Box::new(active.job.clone()));
                    let providers = self.content.for_job(&active.job);
                    let trace = active.trace.clone();
                    round.sends.push((
                        node_id.clone(),
                        ToCompute::AskForBid { execution: Box::new(with_job), providers, trace },
                    ));
                }
                None => lost.push(e.id.clone()),
                Some(local) => {
                    if e.desired_state.state_type == DesiredStateType::Stopped {
                        round.sends.push((
                            node_id.clone(),
                            ToCompute::CancelExecution {
                                execution_id: e.id.clone(),
                                reason: e.desired_state.message.clone(),
                            },
                        ));
                    } else if state == ComputeStateType::BidAccepted && *local == LocalExecutionState::AskForBidAccepted
                    {
                        round.sends.push((node_id.clone(), ToCompute::BidAccepted { execution_id: e.id.clone() }));
                    } else if matches!(state, ComputeStateType::New | ComputeStateType::AskForBid) {
                        match local {
                            LocalExecutionState::AskForBidAccepted => bid_updates.push((e.id.clone(), true)),
                            LocalExecutionState::AskForBidRejected => bid_updates.push((e.id.clone(), false)),
                            _ => {}
                        }
                    }
                }
            }
        }
        for id in lost {
            let msg = format!("node {node_id} restarted and has no record of the execution");
            self.update_execution(&id, ExecutionEvent::Lost, Some(DesiredStateType::Stopped), &msg, now, round, |_| {});
        }
        for (id, accepted) in bid_updates {
            let desired = if accepted { None } else { Some(DesiredStateType::Stopped) };
            let event = ExecutionEvent::NodeBid { accepted };
            self.update_execution(&id, event, desired, "bid reported after reconnect", now, round, |_| {});
        }
        // Executions the node still runs but the orchestrator has finished with.
        for r in reports.iter().filter(|r| !r.state.is_terminal()) {
            let known_live = self.exec_index.get(&r.execution_id).and_then(|j| self.jobs.get(j)).is_some_and(|a| {
                a.execs.iter().any(|e| e.id == r.execution_id && !e.compute_state.state_type.is_terminal())
            });
            if !known_live {
                round.sends.push((
                    node_id.clone(),
                    ToCompute::CancelExecution {
                        execution_id: r.execution_id.clone(),
                        reason: "the orchestrator no longer wants this execution".into(),
                    },
                ));
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn update_execution(
        &mut self,
        id: &ExecutionId,
        event: ExecutionEvent,
        desired: Option<DesiredStateType>,
        message: &str,
        now: i64,
        round: &mut Effects,
        extra: impl FnOnce(&mut Execution),
    ) {
        let Some(job_id) = self.exec_index.get(id).cloned() else {
            debug!(execution_id = %id, "refused: {UNKNOWN_EXECUTION}");
            round.refused.push(UNKNOWN_EXECUTION);
            return;
        };
        let Some(active) = self.jobs.get_mut(&job_id) else {
            return;
        };
        let Some(e) = active.execs.iter_mut().find(|e| &e.id == id) else {
            return;
        };
        let previous = e.compute_state.state_type;
        let to = match previous.apply(event) {
            Ok(to) => to,
            Err(illegal) => {
                // Duplicates are expected (delivery is at least once): logged quietly, counted.
                debug!(execution_id = %id, %illegal, "refused: {LATE_REPORT}");
                round.refused.push(LATE_REPORT);
                return;
            }
        };
        e.compute_state = ExecutionState::new(to, message);
        round.measures.push(Measure::Execution { from: previous, to });
        if let Some(d) = desired {
            e.desired_state = ExecutionState::new(d, message);
        }
        extra(e);
        e.revision += 1;
        e.modify_time = now;
        let node_id = e.node_id.clone();
        round.batch.put_execution(e.clone());
        if tracing::enabled!(tracing::Level::DEBUG) {
            round.transitions.push(Transition {
                job_id: job_id.clone(),
                execution: Some((id.clone(), node_id.clone())),
                from: format!("{previous:?}"),
                to: format!("{to:?}"),
                message: message.to_owned(),
            });
        }
        self.exec_history(&job_id, id, &node_id, now, "Execution", message, Some((previous, to)), round);
        self.dirty.insert(job_id);
    }

    pub(super) fn node_views(&self) -> Vec<NodeView> {
        self.nodes
            .values()
            .filter_map(|n| {
                let info = n.info.clone()?;
                let approved = self.membership(&info.node_id) == NodeMembershipState::Approved;
                let published = self.content.held_by(&info.node_id);
                let roots = info.compute_node_info.as_ref().map(|c| c.ipfs_roots.as_slice()).unwrap_or_default();
                // Usually one of the two is empty: share the published set rather than copy it.
                let holds = if roots.is_empty() {
                    published
                } else {
                    Arc::new(published.iter().cloned().chain(roots.iter().cloned()).collect())
                };
                let dissents = self.dissents.get(&info.node_id).copied().unwrap_or(0);
                Some(NodeView { info, connected: n.connected, approved, available: n.available, holds, dissents })
            })
            .collect()
    }
}

pub(crate) fn membership_name(m: NodeMembershipState) -> &'static str {
    match m {
        NodeMembershipState::Pending => "PENDING",
        NodeMembershipState::Approved => "APPROVED",
        NodeMembershipState::Rejected => "REJECTED",
    }
}
