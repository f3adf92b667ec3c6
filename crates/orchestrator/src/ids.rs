//! Where the orchestrator's execution and evaluation IDs come from: random in production, a
//! seeded sequence where a test needs the same IDs on every run.

use bacalhau_model::{EvaluationId, ExecutionId};

/// A source of new IDs.
pub trait IdSource: Send + std::fmt::Debug {
    /// A new execution ID.
    fn execution(&mut self) -> ExecutionId;
    /// A new evaluation ID.
    fn evaluation(&mut self) -> EvaluationId;
}

/// Random v4 UUIDs, as Bacalhau's.
#[derive(Debug, Default)]
pub struct RandomIds;

impl IdSource for RandomIds {
    fn execution(&mut self) -> ExecutionId {
        ExecutionId::generate()
    }

    fn evaluation(&mut self) -> EvaluationId {
        EvaluationId::generate()
    }
}

/// splitmix64: a small seeded generator, the same sequence on every machine (for seeded IDs,
/// and for the simulator's and chaos tests' choices).
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// UUIDs from a seeded generator: the same seed gives the same IDs.
#[derive(Debug)]
pub struct SeededIds(SplitMix64);

impl SeededIds {
    /// IDs from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(SplitMix64::new(seed))
    }

    fn bytes(&mut self) -> [u8; 16] {
        let mut out = [0u8; 16];
        for half in out.chunks_mut(8) {
            half.copy_from_slice(&self.0.next_u64().to_le_bytes());
        }
        out
    }
}

impl IdSource for SeededIds {
    fn execution(&mut self) -> ExecutionId {
        ExecutionId::from_random_bytes(self.bytes())
    }

    fn evaluation(&mut self) -> EvaluationId {
        EvaluationId::from_random_bytes(self.bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_ids_and_they_look_like_bacalhaus() {
        let (mut a, mut b) = (SeededIds::new(7), SeededIds::new(7));
        let ids: Vec<String> = (0..3).map(|_| a.execution().0).collect();
        assert_eq!(ids, (0..3).map(|_| b.execution().0).collect::<Vec<_>>());
        assert_ne!(ids[0], ids[1]);
        assert!(ids[0].starts_with("e-") && ids[0].len() == 38, "{}", ids[0]);
        assert!(SeededIds::new(8).execution().0 != ids[0]);
        assert!(SeededIds::new(7).evaluation().0.starts_with("v-"));
        assert_ne!(RandomIds.execution(), RandomIds.execution());
    }
}
