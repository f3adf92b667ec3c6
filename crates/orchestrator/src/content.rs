//! Content routing through the control plane: which node's IPFS peer holds which result CID,
//! and where every connected node's peer listens. A compute node asked to run a job with IPFS
//! inputs, and the API fetching a result for `job get`, ask these peers directly instead of
//! searching a DHT.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use bacalhau_model::{Job, NodeId, SOURCE_IPFS};

/// CIDs the index remembers; past that the oldest are forgotten. Every job may publish a
/// result of its own, so an index of all of them would grow with history. A forgotten CID
/// only loses its hint: its providers are then every connected node, which still finds it.
pub const MAX_CIDS: usize = 65_536;

/// The index; shared between the runtime (writer) and the handle (readers).
#[derive(Debug, Default)]
pub struct ContentIndex {
    holders: HashMap<String, BTreeSet<NodeId>>,
    /// The CIDs in `holders`, oldest first.
    order: VecDeque<String>,
    /// The same, by node, shared with the ranking without copying.
    by_node: HashMap<NodeId, std::sync::Arc<std::collections::HashSet<String>>>,
    peers: BTreeMap<NodeId, Vec<String>>,
    /// The orchestrator's own peer (its store holds what `bacalhau ipfs add` pushed to it).
    own: Vec<String>,
}

impl ContentIndex {
    /// An index whose own peer listens on `own`.
    pub fn new(own: Vec<String>) -> Self {
        Self { own, ..Self::default() }
    }

    /// A node (re)registered with these peer addresses.
    pub fn node_up(&mut self, node: &NodeId, addrs: &[String]) {
        if addrs.is_empty() {
            self.peers.remove(node);
        } else {
            self.peers.insert(node.clone(), addrs.to_vec());
        }
    }

    /// A node went away; its peer is no longer offered.
    pub fn node_down(&mut self, node: &NodeId) {
        self.peers.remove(node);
    }

    /// `node` published `cid`.
    pub fn holds(&mut self, node: &NodeId, cid: &str) {
        if !self.holders.contains_key(cid) {
            self.order.push_back(cid.to_owned());
        }
        if self.holders.entry(cid.to_owned()).or_default().insert(node.clone()) {
            std::sync::Arc::make_mut(self.by_node.entry(node.clone()).or_default()).insert(cid.to_owned());
        }
        while self.order.len() > MAX_CIDS {
            let Some(old) = self.order.pop_front() else { break };
            for n in self.holders.remove(&old).into_iter().flatten() {
                if let Some(set) = self.by_node.get_mut(&n) {
                    std::sync::Arc::make_mut(set).remove(&old);
                }
            }
        }
    }

    /// The CIDs `node` is known to have published.
    pub fn held_by(&self, node: &NodeId) -> std::sync::Arc<std::collections::HashSet<String>> {
        self.by_node.get(node).cloned().unwrap_or_default()
    }

    /// Peers to ask for `cid`, best first: the nodes known to hold it, then the orchestrator's
    /// own peer, then every other connected node (any of them may have it cached).
    pub fn providers(&self, cid: &str) -> Vec<String> {
        let holders = self.holders.get(cid);
        let mut out: Vec<String> =
            holders.into_iter().flatten().filter_map(|n| self.peers.get(n)).flatten().cloned().collect();
        out.extend(self.own.iter().cloned());
        for (node, addrs) in &self.peers {
            if !holders.is_some_and(|h| h.contains(node)) {
                out.extend(addrs.iter().cloned());
            }
        }
        out
    }

    /// Providers for every IPFS input of `job`.
    pub fn for_job(&self, job: &Job) -> BTreeMap<String, Vec<String>> {
        job.tasks
            .iter()
            .flat_map(|t| &t.input_sources)
            .filter(|i| i.source.r#type.eq_ignore_ascii_case(SOURCE_IPFS))
            .filter_map(|i| i.source.param_str("CID"))
            .map(|cid| (cid.to_owned(), self.providers(cid)))
            .filter(|(_, p)| !p.is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_come_first_then_the_orchestrator_then_everyone_else() {
        let mut idx = ContentIndex::new(vec!["/own".into()]);
        let (a, b) = (NodeId::from("a"), NodeId::from("b"));
        idx.node_up(&a, &["/a".into()]);
        idx.node_up(&b, &["/b".into()]);
        idx.holds(&b, "Qmx");
        assert_eq!(idx.providers("Qmx"), ["/b", "/own", "/a"]);
        assert_eq!(idx.providers("Qmy"), ["/own", "/a", "/b"]);
        idx.node_down(&b);
        assert_eq!(idx.providers("Qmx"), ["/own", "/a"]);
    }

    #[test]
    fn the_index_keeps_the_newest_cids_only() {
        let mut idx = ContentIndex::new(Vec::new());
        let a = NodeId::from("a");
        idx.node_up(&a, &["/a".into()]);
        for i in 0..MAX_CIDS + 10 {
            idx.holds(&a, &format!("Qm{i}"));
        }
        assert_eq!(idx.holders.len(), MAX_CIDS);
        assert_eq!(idx.held_by(&a).len(), MAX_CIDS);
        assert!(!idx.held_by(&a).contains("Qm9") && idx.held_by(&a).contains("Qm10"));
        // Seen again, a known CID does not count twice.
        idx.holds(&a, &format!("Qm{}", MAX_CIDS + 9));
        assert_eq!(idx.order.len(), MAX_CIDS);
    }
}
