//! The faults the test suite injects into a real node (`serve --test-fault`). They exist
//! only with the `test-faults` feature: without it a node refuses to start with any set.

/// Which faults a node runs with; none by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// The IPFS peer serves corrupted blocks (peers must refuse them).
    pub corrupt_blocks: bool,
    /// The compute node alters every result before it is published (verification must
    /// catch it).
    pub tamper_results: bool,
    /// The compute node sends no heartbeats from 4 s to 20 s after it starts (the
    /// orchestrator must mark it disconnected and take it back).
    pub silent_heartbeats: bool,
    /// The compute node ignores the first bid acceptance it gets, as if it were lost (the
    /// digest comparison must repair it).
    pub drop_bid_acceptance: bool,
}

impl Faults {
    /// Whether any fault is set.
    pub fn any(&self) -> bool {
        self.corrupt_blocks || self.tamper_results || self.silent_heartbeats || self.drop_bid_acceptance
    }

    /// Whether this build can inject faults.
    pub const AVAILABLE: bool = cfg!(feature = "test-faults");

    /// Refuses faults in a build without them.
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if self.any() && !Self::AVAILABLE {
            anyhow::bail!(
                "this build has no test faults: they are for the test suite (build with `--features test-faults`)"
            );
        }
        Ok(())
    }
}

/// A publisher that alters the result folder before handing it on, as a faulty or dishonest
/// node would.
#[cfg(feature = "test-faults")]
#[derive(Debug)]
pub(crate) struct Tampering(pub std::sync::Arc<dyn bacalhau_storage::Publisher>);

#[cfg(feature = "test-faults")]
#[async_trait::async_trait]
impl bacalhau_storage::Publisher for Tampering {
    fn publisher_type(&self) -> &'static str {
        self.0.publisher_type()
    }

    async fn publish(
        &self,
        id: &bacalhau_model::ExecutionId,
        results_dir: &std::path::Path,
    ) -> Result<Option<bacalhau_model::SpecConfig>, bacalhau_storage::StorageError> {
        use std::io::Write as _;
        let stdout = results_dir.join("stdout");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&stdout)
            .map_err(bacalhau_storage::StorageError::io("tampering with stdout"))?;
        f.write_all(b"tampered\n").map_err(bacalhau_storage::StorageError::io("tampering with stdout"))?;
        self.0.publish(id, results_dir).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_refused_unless_the_build_has_them() {
        assert!(Faults::default().check().is_ok(), "no faults start anywhere");
        let f = Faults { tamper_results: true, ..Faults::default() };
        assert_eq!(f.check().is_ok(), Faults::AVAILABLE);
        if let Err(e) = f.check() {
            assert!(e.to_string().contains("--features test-faults"), "{e}");
        }
    }
}
