//! Password hashes in RabbitMQ's `rabbit_password_hashing_sha256` scheme:
//! `base64(salt ++ sha256(salt ++ password))` with a 4-byte random salt, so user definitions can
//! move between RabbitMQ and Lagomorph. Imports nothing else of the crate.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// Hashes `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 4];
    // Without OS randomness a fixed salt still yields a valid (if weaker) hash.
    let _ = getrandom::fill(&mut salt);
    hash_with_salt(salt, password)
}

/// Hashes `password` with the given salt.
pub fn hash_with_salt(salt: [u8; 4], password: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(password.as_bytes());
    let mut out = salt.to_vec();
    out.extend_from_slice(&h.finalize());
    STANDARD.encode(out)
}

/// True when `password` matches `hash`; false for a malformed hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(raw) = STANDARD.decode(hash.trim()) else {
        return false;
    };
    if raw.len() != 4 + 32 {
        return false;
    }
    let mut salt = [0u8; 4];
    salt.copy_from_slice(&raw[..4]);
    let Ok(expected) = STANDARD.decode(hash_with_salt(salt, password)) else {
        return false;
    };
    // Compare without an early exit.
    raw.iter()
        .zip(expected.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_mismatch() {
        let h = hash_password("guest");
        assert!(verify_password(&h, "guest"));
        assert!(!verify_password(&h, "guesT"));
        assert!(!verify_password("not base64!", "guest"));
        assert!(!verify_password("Z3Vlc3Q=", "guest"));
    }
}
