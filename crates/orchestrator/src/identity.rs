//! Which key speaks for which compute node: a node ID is bound to the key it first joined
//! with (kept in the store's `node_keys` table), and no other key can take it over. The
//! orchestrator's own in-process compute node is reserved: no network node may use its ID.
//! `node delete` forgets the binding, so an operator can let a rebuilt node in again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bacalhau_model::NodeId;
use bacalhau_protocol::NodeAuthority;
use tracing::{info, warn};

use crate::store::JobStore;

/// The bindings, in memory and in the store.
#[derive(Debug)]
pub struct NodeKeys {
    store: Arc<JobStore>,
    keys: Mutex<HashMap<NodeId, [u8; 32]>>,
    reserved: Option<NodeId>,
}

impl NodeKeys {
    pub(crate) fn load(store: Arc<JobStore>, reserved: Option<NodeId>) -> Result<Self, crate::store::StoreError> {
        let keys = store
            .node_keys()?
            .into_iter()
            .filter_map(|(id, k)| Some((NodeId::from(id.as_str()), <[u8; 32]>::try_from(k.as_slice()).ok()?)))
            .collect();
        Ok(Self { store, keys: Mutex::new(keys), reserved })
    }

    /// Forgets `node`'s key (it may join again with a new one).
    pub(crate) fn forget(&self, node: &NodeId) {
        if let Ok(mut k) = self.keys.lock()
            && k.remove(node).is_some()
            && let Err(e) = self.store.put_node_key(node.as_str(), None)
        {
            warn!(%node, "cannot forget the node's key: {e}");
        }
    }

    /// Whether `node` is the orchestrator's own compute node.
    pub fn is_reserved(&self, node: &NodeId) -> bool {
        self.reserved.as_ref() == Some(node)
    }
}

impl NodeAuthority for NodeKeys {
    fn admit(&self, node: &NodeId, key: &[u8; 32]) -> Result<(), String> {
        if self.is_reserved(node) {
            return Err(format!(
                "node ID {node} belongs to the orchestrator's own compute node; start this node with another --name"
            ));
        }
        let mut keys = self.keys.lock().map_err(|_| "node keys poisoned".to_owned())?;
        match keys.get(node) {
            Some(bound) if bound == key => Ok(()),
            Some(_) => Err(format!(
                "node ID {node} is bound to another key: this is not the node that joined under that name. \
                 If the node was rebuilt, an operator can run `bacalhau node delete {node}` to let it join again"
            )),
            None => {
                self.store
                    .put_node_key(node.as_str(), Some(key))
                    .map_err(|e| format!("cannot record the node's key: {e}"))?;
                keys.insert(node.clone(), *key);
                info!(%node, "bound the node ID to its key");
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_keeps_its_first_key_across_restarts() {
        let tmp = tempfile::tempdir().expect("tmp");
        let path = tmp.path().join("jobs.redb");
        let store = Arc::new(JobStore::open(&path).expect("store"));
        let keys = NodeKeys::load(store.clone(), Some(NodeId::from("local"))).expect("load");
        let n = NodeId::from("n-1");
        keys.admit(&n, &[1; 32]).expect("first key binds");
        keys.admit(&n, &[1; 32]).expect("same key again");
        assert!(keys.admit(&n, &[2; 32]).expect_err("another key").contains("bound to another key"));
        assert!(keys.admit(&NodeId::from("local"), &[3; 32]).expect_err("reserved").contains("own compute node"));
        drop(keys);
        let keys = NodeKeys::load(store, None).expect("reload");
        assert!(keys.admit(&n, &[2; 32]).is_err(), "the binding survives a restart");
        keys.forget(&n);
        keys.admit(&n, &[2; 32]).expect("after delete, a new key may join");
    }
}
