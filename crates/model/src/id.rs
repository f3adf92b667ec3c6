//! Identifier newtypes, so a job ID is never passed where an execution ID belongs.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// The prefix Bacalhau puts in front of generated IDs of this kind.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh random ID with Bacalhau's prefix (`j-`, `e-`, ...).
            pub fn generate() -> Self {
                Self(format!("{}{}", $prefix, uuid::Uuid::new_v4()))
            }

            /// The ID whose UUID (v4 form) is made of these bytes: for a seeded source of IDs.
            pub fn from_random_bytes(bytes: [u8; 16]) -> Self {
                Self(format!("{}{}", $prefix, uuid::Builder::from_random_bytes(bytes).into_uuid()))
            }

            /// The ID as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The short form Bacalhau prints in tables: prefix plus the first 8 hex digits.
            pub fn short(&self) -> &str {
                let end = ($prefix.len() + 8).min(self.0.len());
                self.0.get(..end).unwrap_or(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                Self(s)
            }
        }
    };
}

id_type!(
    /// A job's ID: `j-<uuid>`.
    JobId,
    "j-"
);
id_type!(
    /// An execution's ID: `e-<uuid>`.
    ExecutionId,
    "e-"
);
id_type!(
    /// An evaluation's ID: `v-<uuid>`.
    EvaluationId,
    "v-"
);
id_type!(
    /// A node's ID: `n-<uuid>` when generated.
    NodeId,
    "n-"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_carry_their_prefix_and_shorten() {
        let id = JobId::generate();
        assert!(id.as_str().starts_with("j-"));
        assert_eq!(id.short().len(), 10);
        assert!(id.as_str().starts_with(id.short()));
    }
}
