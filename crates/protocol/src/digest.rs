//! What each side believes about the executions on one compute node, in 16 bytes.
//!
//! Every heartbeat carries the compute node's digest of its live executions; the orchestrator
//! computes the same over its own view of that node. A message lost or dropped on a full
//! queue (an ask, a bid, an acceptance, a cancel) leaves the two different, and a difference
//! that stays across two heartbeats makes the orchestrator ask the node to resync: the node
//! registers again with every execution it holds, and reconciliation repairs each one. So
//! delivery heals itself on a healthy stream, without waiting for a reconnect.

use bacalhau_model::ExecutionId;
use serde::{Deserialize, Serialize};

/// How far an execution has got, in the terms both sides share.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Asked for a bid; no answer known yet.
    Asked,
    /// The node bid; the orchestrator has not decided.
    Bid,
    /// The bid won: queued, running or publishing.
    Accepted,
}

/// An order-independent digest of (execution, phase) pairs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionDigest {
    /// How many live executions.
    pub count: u32,
    /// The wrapping sum of each pair's hash (a sum, not XOR, so a pair seen twice still counts).
    pub sum: u64,
}

impl ExecutionDigest {
    /// Adds one execution in `phase`.
    pub fn add(&mut self, id: &ExecutionId, phase: Phase) {
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.wrapping_add(entry_hash(id, phase));
    }

    /// The digest of all of `items`.
    pub fn of<'a>(items: impl IntoIterator<Item = (&'a ExecutionId, Phase)>) -> Self {
        let mut d = Self::default();
        for (id, phase) in items {
            d.add(id, phase);
        }
        d
    }
}

/// FNV-1a over the ID and the phase, then a final mix so that sums of similar IDs spread.
/// Stable across builds and machines (both sides must agree), unlike `std`'s hasher.
fn entry_hash(id: &ExecutionId, phase: Phase) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let tag = match phase {
        Phase::Asked => 1u8,
        Phase::Bid => 2,
        Phase::Accepted => 3,
    };
    for b in id.as_str().bytes().chain(std::iter::once(tag)) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_matter_and_a_phase_or_a_member_does() {
        let (a, b, c) = (ExecutionId::from("e-a"), ExecutionId::from("e-b"), ExecutionId::from("e-c"));
        let one = ExecutionDigest::of([(&a, Phase::Asked), (&b, Phase::Accepted)]);
        let same = ExecutionDigest::of([(&b, Phase::Accepted), (&a, Phase::Asked)]);
        assert_eq!(one, same);
        assert_ne!(one, ExecutionDigest::of([(&a, Phase::Bid), (&b, Phase::Accepted)]), "a lost bid shows");
        assert_ne!(one, ExecutionDigest::of([(&b, Phase::Accepted)]), "a lost ask shows");
        assert_ne!(one, ExecutionDigest::of([(&a, Phase::Asked), (&b, Phase::Accepted), (&c, Phase::Accepted)]));
        assert_eq!(ExecutionDigest::of([]), ExecutionDigest::default());
        // The wire form is two numbers.
        let json = serde_json::to_string(&one).expect("json");
        assert_eq!(serde_json::from_str::<ExecutionDigest>(&json).expect("back"), one);
    }
}
