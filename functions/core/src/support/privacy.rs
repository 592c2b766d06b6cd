//! Identifiers in logs: PSIDs, login_ids and user_refs are personal data, so logs carry a short
//! one-way hash instead. The same id always hashes the same, so a log search still works.

use sha2::{Digest, Sha256};

/// 12 hex chars of SHA-256 over a fixed domain prefix and the id.
pub fn hash_id(id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"login-connect/log-id/v1\0");
    h.update(id.as_bytes());
    hex::encode(&h.finalize()[..6])
}

#[cfg(test)]
mod tests {
    use super::hash_id;

    #[test]
    fn stable_short_and_not_the_id() {
        assert_eq!(hash_id("1234"), hash_id("1234"));
        assert_ne!(hash_id("1234"), hash_id("1235"));
        assert_eq!(hash_id("1234").len(), 12);
        assert!(!hash_id("1234").contains("1234"));
    }
}
