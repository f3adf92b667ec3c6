//! Node selection: which nodes may run a job, ranked best first, with a reason for each
//! node that may not. Pure: the caller passes the nodes' state in.

use bacalhau_model::{ComputeStateType, Execution, Job, NodeId, NodeInfo, Resources, f64_to_i64_saturating};

/// What the scheduler knows about a node.
#[derive(Clone, Debug)]
pub struct NodeView {
    /// Who.
    pub info: NodeInfo,
    /// Whether it is connected now.
    pub connected: bool,
    /// Whether an operator let it take work.
    pub approved: bool,
    /// Free capacity as last reported.
    pub available: Resources,
    /// CIDs it is known to hold (its pinned roots and the results it published).
    pub holds: std::sync::Arc<std::collections::HashSet<String>>,
    /// Times its result disagreed with a verification quorum.
    pub dissents: u32,
}

impl NodeView {
    /// The node's ID.
    pub fn id(&self) -> &NodeId {
        &self.info.node_id
    }
}

/// A node ruled out, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// Which node.
    pub node_id: NodeId,
    /// Why, in words.
    pub reason: String,
}

/// How many failed executions of one job a node may have before it is no longer asked.
pub const MAX_FAILURES_PER_NODE: usize = 2;

/// Ranks `nodes` for `job`: suitable nodes best first (with scores), the rest with reasons.
pub fn rank_nodes(job: &Job, executions: &[Execution], nodes: &[NodeView]) -> (Vec<(NodeId, i64)>, Vec<Rejection>) {
    let mut ranked = Vec::new();
    let mut rejected = Vec::new();
    let Some(task) = job.task() else {
        return (ranked, rejected);
    };
    let needs = Resources::parse(&task.resources).unwrap_or_default();
    let engine = task.engine.type_name();
    let market = job.market.clone().unwrap_or_default();
    let inputs: Vec<&str> = task
        .input_sources
        .iter()
        .filter(|i| i.source.type_name().eq_ignore_ascii_case("ipfs"))
        .filter_map(|i| i.source.param_str("CID"))
        .collect();
    let mut quotes: Vec<(NodeId, f64)> = Vec::new();
    for node in nodes {
        let reject = |reason: String| Rejection { node_id: node.id().clone(), reason };
        if !node.connected {
            rejected.push(reject("node is disconnected".into()));
            continue;
        }
        if !node.approved {
            rejected.push(reject("node is not approved to run jobs".into()));
            continue;
        }
        let Some(compute) = &node.info.compute_node_info else {
            rejected.push(reject("node is not a compute node".into()));
            continue;
        };
        let has = |list: &[String], want: &str| list.iter().any(|x| x.eq_ignore_ascii_case(want));
        if !has(&compute.execution_engines, &engine) {
            rejected
                .push(reject(format!("does not support {engine}, only {}", list_or_none(&compute.execution_engines))));
            continue;
        }
        if !task.publisher.is_empty() && !has(&compute.publishers, &task.publisher.type_name()) {
            rejected.push(reject(format!(
                "does not support {}, only {}",
                task.publisher.type_name(),
                list_or_none(&compute.publishers)
            )));
            continue;
        }
        if let Some(src) = task.input_sources.iter().find(|i| !has(&compute.storage_sources, &i.source.type_name())) {
            rejected.push(reject(format!(
                "does not support {}, only {}",
                src.source.type_name(),
                list_or_none(&compute.storage_sources)
            )));
            continue;
        }
        let mut score = 0i64;
        let mut unmet = None;
        for c in &job.constraints {
            let ok = c.matches(&node.info.labels);
            if c.is_preference() {
                if ok {
                    score += 10;
                }
            } else if !ok {
                unmet = Some(format!("does not match constraint {} {:?} {:?}", c.key, c.operator, c.values));
                break;
            }
        }
        if let Some(reason) = unmet {
            rejected.push(reject(reason));
            continue;
        }
        let max_job: Resources = compute.max_job_requirements.into();
        if let Some(excess) = needs.first_excess(&max_job) {
            rejected.push(reject(format!("job needs more than the node can ever give: {excess}")));
            continue;
        }
        let mine: Vec<&Execution> = executions.iter().filter(|e| &e.node_id == node.id()).collect();
        if let Some(e) = mine.iter().find(|e| e.compute_state.state_type == ComputeStateType::AskForBidRejected) {
            rejected.push(reject(format!("declined to run this job: {}", e.compute_state.message)));
            continue;
        }
        let failures = mine.iter().filter(|e| e.compute_state.state_type == ComputeStateType::Failed).count();
        if failures >= MAX_FAILURES_PER_NODE {
            rejected.push(reject(format!("has already failed this job {failures} times")));
            continue;
        }
        if mine.is_empty() {
            score += 30;
        }
        let quote = compute.prices.map_or(0.0, |p| p.quote(&needs, task.timeouts.execution_timeout));
        if let Some(max) = market.max_price
            && quote > max
        {
            rejected.push(reject(format!("quotes {quote:.6}, above the job's MaxPrice {max}")));
            continue;
        }
        // Data locality: a node that already holds every IPFS input skips the transfer.
        if !inputs.is_empty() && inputs.iter().all(|c| node.holds.contains(*c)) {
            score += 25;
        }
        // Reputation: each result that disagreed with a verification quorum costs ranking.
        score -= 20 * i64::from(node.dissents);
        // Prefer free capacity: up to 10 points for the share of CPU and memory left.
        let cap: Resources = compute.max_capacity.into();
        let share = |free: u64, max: u64| if max == 0 { 0.0 } else { free as f64 / max as f64 };
        score += f64_to_i64_saturating(
            (5.0 * share(node.available.cpu_millis, cap.cpu_millis)
                + 5.0 * share(node.available.memory_bytes, cap.memory_bytes))
            .round(),
        );
        ranked.push((node.id().clone(), score));
        quotes.push((node.id().clone(), quote));
    }
    // The reverse auction: how the quotes weigh against placement.
    let top = quotes.iter().map(|q| q.1).fold(0.0f64, f64::max);
    let quote_of = |id: &NodeId| quotes.iter().find(|q| &q.0 == id).map_or(0.0, |q| q.1);
    match market.strategy() {
        bacalhau_model::Strategy::Fastest => {}
        bacalhau_model::Strategy::Cheapest => {
            // Score only breaks ties between equal quotes.
            for r in &mut ranked {
                let q = quote_of(&r.0);
                r.1 = r.1.saturating_sub(f64_to_i64_saturating((q.min(1e9) * 1e6).round()).saturating_mul(1000));
            }
        }
        bacalhau_model::Strategy::Balanced => {
            if top > 0.0 {
                for r in &mut ranked {
                    r.1 = r.1.saturating_sub(f64_to_i64_saturating((30.0 * quote_of(&r.0) / top).round()));
                }
            }
        }
    }
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (ranked, rejected)
}

/// A node's types, sorted so the message is the same each time (`docker, wasm`).
fn list_or_none(items: &[String]) -> String {
    let mut sorted = items.to_vec();
    sorted.sort();
    if sorted.is_empty() { "none".to_owned() } else { sorted.join(", ") }
}

/// Bacalhau's "not enough nodes" message, listing each node's reason.
pub fn not_enough_nodes(requested: usize, nodes: usize, suitable: usize, rejected: &[Rejection]) -> String {
    let mut msg =
        format!("not enough nodes to run job. requested: {requested}, available: {nodes}, suitable: {suitable}.");
    if nodes == 0 {
        msg.push_str(" No compute node is connected: start one with `bacalhau serve` (compute is on by default).");
    }
    for r in rejected {
        msg.push_str(&format!("\n\u{2022} Node {}: {}", r.node_id, r.reason));
    }
    msg
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bacalhau_model::{ComputeNodeInfo, LabelSelectorRequirement, Operator, ResourcesWire, SpecConfig, Task};

    pub(crate) fn node(id: &str, engines: &[&str], labels: &[(&str, &str)]) -> NodeView {
        let cap = Resources { cpu_millis: 2000, memory_bytes: 4 << 30, disk_bytes: 10 << 30, gpu: 0 };
        NodeView {
            info: NodeInfo {
                node_id: NodeId::from(id),
                labels: labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect(),
                compute_node_info: Some(ComputeNodeInfo {
                    execution_engines: engines.iter().map(|s| s.to_string()).collect(),
                    publishers: vec!["local".into(), "noop".into()],
                    storage_sources: vec!["inline".into(), "local".into()],
                    max_capacity: ResourcesWire::from(cap),
                    max_job_requirements: ResourcesWire::from(cap),
                    ..Default::default()
                }),
                ..Default::default()
            },
            connected: true,
            approved: true,
            available: cap,
            holds: Default::default(),
            dissents: 0,
        }
    }

    fn wasm_job() -> Job {
        Job { tasks: vec![Task { engine: SpecConfig::new("wasm"), ..Default::default() }], ..Default::default() }
    }

    #[test]
    fn rejects_with_reasons_and_prefers_favoured_nodes() {
        let mut job = wasm_job();
        job.constraints = vec![LabelSelectorRequirement {
            key: "favour_zone".into(),
            operator: Operator::Equals,
            values: vec!["b".into()],
        }];
        let nodes = vec![
            node("n-a", &["wasm"], &[("zone", "a")]),
            node("n-b", &["wasm"], &[("zone", "b")]),
            node("n-d", &["docker"], &[]),
        ];
        let (ranked, rejected) = rank_nodes(&job, &[], &nodes);
        assert_eq!(ranked.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), vec!["n-b", "n-a"]);
        assert_eq!(rejected[0].reason, "does not support wasm, only docker");
        let msg = not_enough_nodes(1, 3, 0, &rejected);
        assert!(msg.contains("Node n-d: does not support wasm"), "{msg}");
    }

    #[test]
    fn oversized_jobs_are_rejected() {
        let mut job = wasm_job();
        job.tasks[0].resources.cpu = "16".into();
        let (ranked, rejected) = rank_nodes(&job, &[], &[node("n-a", &["wasm"], &[])]);
        assert!(ranked.is_empty());
        assert_eq!(rejected[0].reason, "job needs more than the node can ever give: CPU 16 > 2");
    }

    fn priced(id: &str, cpu_second: f64) -> NodeView {
        let mut n = node(id, &["wasm"], &[]);
        if let Some(c) = n.info.compute_node_info.as_mut() {
            c.prices = Some(bacalhau_model::Prices { cpu_second, ..Default::default() });
        }
        n
    }

    #[test]
    fn the_reverse_auction_orders_by_strategy_and_refuses_quotes_over_max_price() {
        let mut job = wasm_job();
        job.tasks[0].resources.cpu = "1".into();
        job.tasks[0].timeouts.execution_timeout = 100;
        let mut nodes = vec![priced("n-a", 0.003), priced("n-b", 0.001), priced("n-c", 0.002)];
        // The priciest node has the most free capacity: "fastest" picks it, "cheapest" does not.
        nodes[0].available.cpu_millis = 2000;
        nodes[1].available.cpu_millis = 0;
        nodes[2].available.cpu_millis = 0;
        let order = |job: &Job| rank_nodes(job, &[], &nodes).0.into_iter().map(|r| r.0.0).collect::<Vec<_>>();
        job.market = Some(bacalhau_model::Market { strategy: "cheapest".into(), ..Default::default() });
        assert_eq!(order(&job), ["n-b", "n-c", "n-a"]);
        job.market = Some(bacalhau_model::Market { strategy: "fastest".into(), ..Default::default() });
        assert_eq!(order(&job)[0], "n-a");
        job.market = Some(bacalhau_model::Market { max_price: Some(0.15), strategy: "cheapest".into() });
        let (ranked, rejected) = rank_nodes(&job, &[], &nodes);
        assert_eq!(ranked.iter().map(|r| r.0.as_str()).collect::<Vec<_>>(), ["n-b"]);
        let reasons: Vec<&str> = rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(
            reasons,
            ["quotes 0.300000, above the job's MaxPrice 0.15", "quotes 0.200000, above the job's MaxPrice 0.15"]
        );
    }

    #[test]
    fn locality_and_reputation_move_nodes_up_and_down() {
        let mut job = wasm_job();
        job.tasks[0].input_sources = vec![bacalhau_model::InputSource {
            source: SpecConfig::new("ipfs").with_param("CID", "QmData"),
            target: "/in".into(),
            ..Default::default()
        }];
        job.tasks[0].engine = SpecConfig::new("wasm");
        let mut nodes = vec![node("n-a", &["wasm"], &[]), node("n-b", &["wasm"], &[])];
        for n in &mut nodes {
            if let Some(c) = n.info.compute_node_info.as_mut() {
                c.storage_sources.push("ipfs".into());
            }
        }
        nodes[1].holds = std::sync::Arc::new(["QmData".to_owned()].into());
        assert_eq!(rank_nodes(&job, &[], &nodes).0[0].0.as_str(), "n-b", "the node holding the input");
        nodes[1].dissents = 2;
        assert_eq!(rank_nodes(&job, &[], &nodes).0[0].0.as_str(), "n-a", "two dissents outweigh locality");
    }
}
