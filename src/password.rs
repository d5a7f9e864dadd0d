//! Password hashes in RabbitMQ's `rabbit_password_hashing_sha256` scheme:
//! `base64(salt ++ sha256(salt ++ password))` with a 4-byte random salt, so user definitions can
//! move between RabbitMQ and Lagomorph. Hashes of RabbitMQ's `rabbit_password_hashing_sha512`
//! and (old, from definitions of RabbitMQ before 3.6) `rabbit_password_hashing_md5` schemes are
//! verified too; the scheme is told apart by the decoded length (20, 36 or 68 bytes). A leaf module: imports nothing else of the crate, so both
//! `config` and `broker` use it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::Md5;
use sha2::{Digest, Sha256, Sha512};

/// Salt length of RabbitMQ's password hashes (32 bits).
const SALT_LEN: usize = 4;

/// Hashes `password` the way RabbitMQ's `rabbit_password_hashing_sha256` does, with a random
/// 4-byte salt: `base64(salt ++ sha256(salt ++ utf8(password)))`. The result can be used in a
/// RabbitMQ definitions file and vice versa.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    // The OS random source failing (no /dev/urandom, no getrandom syscall) leaves nothing
    // sensible to do; it does not happen on supported platforms.
    getrandom::fill(&mut salt).expect("invariant: the OS random number generator is available");
    hash_password_with_salt(salt, password)
}

/// [`hash_password`] with a given salt; for reproducible hashes (tests, the built-in guest).
pub fn hash_password_with_salt(salt: [u8; 4], password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    let mut bytes = Vec::with_capacity(SALT_LEN + digest.len());
    bytes.extend_from_slice(&salt);
    bytes.extend_from_slice(&digest);
    BASE64.encode(bytes)
}

/// Whether `password` matches `hash`. Accepts RabbitMQ's SHA-256 hashes (36 bytes decoded),
/// SHA-512 ones (68 bytes, `rabbit_password_hashing_sha512`) and MD5 ones (20 bytes, from
/// definitions of RabbitMQ before 3.6).
/// Returns false on a malformed hash. The digest comparison does not stop at the first
/// difference.
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(bytes) = BASE64.decode(hash) else {
        return false;
    };
    if bytes.len() < SALT_LEN {
        return false;
    }
    let (salt, expected) = bytes.split_at(SALT_LEN);
    match expected.len() {
        32 => {
            let actual = Sha256::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize();
            constant_time_eq(&actual, expected)
        }
        64 => {
            let actual = Sha512::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize();
            constant_time_eq(&actual, expected)
        }
        16 => {
            let actual = Md5::new()
                .chain_update(salt)
                .chain_update(password.as_bytes())
                .finalize();
            constant_time_eq(&actual, expected)
        }
        _ => false,
    }
}

/// Whether `hash` is well-formed for [`verify_password`] (base64 of salt + SHA-256, SHA-512 or
/// MD5).
pub fn is_password_hash(hash: &str) -> bool {
    algorithm_of(hash).is_some()
}

/// RabbitMQ's name of the scheme of a well-formed `hash` (`rabbit_password_hashing_sha256`,
/// `..._sha512` or `..._md5`), from its decoded length.
pub fn algorithm_of(hash: &str) -> Option<&'static str> {
    match BASE64.decode(hash).ok()?.len().checked_sub(SALT_LEN)? {
        32 => Some("rabbit_password_hashing_sha256"),
        64 => Some("rabbit_password_hashing_sha512"),
        16 => Some("rabbit_password_hashing_md5"),
        _ => None,
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
