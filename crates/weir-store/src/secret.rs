//! Producer secrets are kept only as SHA-256 hashes and compared in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The SHA-256 of a producer secret.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// Hashes a secret.
    pub fn of(secret: &[u8]) -> Self {
        SecretHash(Sha256::digest(secret).into())
    }

    /// Whether `secret` hashes to this value (constant time).
    pub fn matches(&self, secret: &[u8]) -> bool {
        Self::of(secret).0.ct_eq(&self.0).into()
    }
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}
