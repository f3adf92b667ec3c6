//! A compute node's own key pair, and the proof of it that opens a stream.
//!
//! The proof is an ed25519 signature over the node ID, a timestamp and a random nonce, sent
//! in the stream's metadata. The orchestrator checks the signature, refuses a timestamp
//! further than [`MAX_SKEW`] from its clock and a nonce it has seen in that window (so a
//! recorded proof cannot be replayed), then asks its [`bacalhau_protocol::NodeAuthority`]
//! whether that key may speak for that node ID.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// How far a proof's timestamp may be from the orchestrator's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(300);
/// Nonces remembered at most (older ones are forgotten first; their timestamps expire anyway).
const MAX_NONCES: usize = 100_000;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A node's signing key, kept in a file only its owner can read.
#[derive(Debug)]
pub struct NodeKey(SigningKey);

impl NodeKey {
    /// Loads the key at `path`, or makes one there.
    pub fn load_or_create(path: &Path) -> std::io::Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("{} is not a node key (32 bytes); remove it to make a new identity", path.display()),
                    )
                })?;
                Ok(Self(SigningKey::from_bytes(&seed)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                use std::io::Write as _;
                use std::os::unix::fs::OpenOptionsExt as _;
                let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
                f.write_all(&seed)?;
                f.sync_all()?;
                Ok(Self(SigningKey::from_bytes(&seed)))
            }
            Err(e) => Err(e),
        }
    }

    /// A key that lives only in memory.
    pub fn ephemeral() -> Self {
        let mut seed = [0u8; 32];
        let _ = getrandom::fill(&mut seed);
        Self(SigningKey::from_bytes(&seed))
    }

    /// The public key, base64.
    pub fn public_b64(&self) -> String {
        b64().encode(self.0.verifying_key().to_bytes())
    }

    /// `(timestamp, nonce, signature)` proving this key for `node_id` now.
    pub fn prove(&self, node_id: &str) -> (String, String, String) {
        let ts = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()).to_string();
        let mut n = [0u8; 16];
        let _ = getrandom::fill(&mut n);
        let nonce = hex_of(&n);
        let sig = self.0.sign(&message(node_id, &ts, &nonce));
        (ts, nonce, b64().encode(sig.to_bytes()))
    }
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn message(node_id: &str, ts: &str, nonce: &str) -> Vec<u8> {
    format!("bacalhau-rs node proof v1\n{node_id}\n{ts}\n{nonce}").into_bytes()
}

/// Checks proofs and remembers the nonces it has accepted.
#[derive(Debug, Default)]
pub struct ProofChecker {
    seen: Mutex<HashMap<String, u64>>,
}

impl ProofChecker {
    /// The public key the proof is valid for, or why it is not.
    pub fn check(
        &self,
        node_id: &str,
        key_b64: &str,
        ts: &str,
        nonce: &str,
        sig_b64: &str,
    ) -> Result<[u8; 32], String> {
        if key_b64.is_empty() || sig_b64.is_empty() {
            return Err("the node sent no identity proof: upgrade it to this orchestrator's version".into());
        }
        let key: [u8; 32] = b64()
            .decode(key_b64)
            .ok()
            .and_then(|k| k.try_into().ok())
            .ok_or("the node's public key is not 32 bytes of base64")?;
        let verifying = VerifyingKey::from_bytes(&key).map_err(|_| "the node's public key is not an ed25519 key")?;
        let sig: [u8; 64] =
            b64().decode(sig_b64).ok().and_then(|s| s.try_into().ok()).ok_or("the node's proof is not a signature")?;
        verifying
            .verify_strict(&message(node_id, ts, nonce), &Signature::from_bytes(&sig))
            .map_err(|_| "the node's proof does not verify against its key".to_owned())?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let t: u64 = ts.parse().map_err(|_| "the proof's timestamp is not a number")?;
        if t.abs_diff(now) > MAX_SKEW.as_secs() {
            return Err(format!(
                "the node's clock is {}s away from the orchestrator's (more than {}s): fix the clocks (NTP)",
                i128::from(t) - i128::from(now),
                MAX_SKEW.as_secs()
            ));
        }
        if nonce.len() < 16 || nonce.len() > 64 {
            return Err("the proof's nonce has a bad length".into());
        }
        let mut seen = self.seen.lock().map_err(|_| "proof checker poisoned")?;
        seen.retain(|_, at| at.abs_diff(now) <= 2 * MAX_SKEW.as_secs());
        if seen.len() >= MAX_NONCES {
            return Err("too many node connections in the last minutes; try again shortly".into());
        }
        if seen.insert(nonce.to_owned(), now).is_some() {
            return Err("this identity proof was used before (a replay?)".into());
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_once_and_only_for_their_node() {
        let tmp = tempfile::tempdir().expect("tmp");
        let key = NodeKey::load_or_create(&tmp.path().join("node.key")).expect("key");
        let again = NodeKey::load_or_create(&tmp.path().join("node.key")).expect("key");
        assert_eq!(key.public_b64(), again.public_b64(), "the key is kept");
        let checker = ProofChecker::default();
        let (ts, nonce, sig) = key.prove("n-1");
        assert!(checker.check("n-2", &key.public_b64(), &ts, &nonce, &sig).is_err(), "another node's ID");
        checker.check("n-1", &key.public_b64(), &ts, &nonce, &sig).expect("valid");
        let e = checker.check("n-1", &key.public_b64(), &ts, &nonce, &sig).expect_err("replay");
        assert!(e.contains("used before"), "{e}");
        let other = NodeKey::ephemeral();
        let (ts, nonce, sig) = key.prove("n-1");
        assert!(checker.check("n-1", &other.public_b64(), &ts, &nonce, &sig).is_err(), "someone else's key");
    }
}
