//! The quarantine: damaged records moved aside with a log line and counted, so that one bad
//! record (a definition that does not decode, an index entry pointing past a segment's end, a
//! body whose checksum fails) never stops a restart and never panics.
//!
//! Records found damaged at open are moved at once (no other writer exists then); records
//! found damaged by a read while the broker runs are queued and moved by the next flush, in its
//! one transaction, so every sled write still comes from the flusher.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sled::Tree;

use super::super::StoreError;
use super::super::record::DecodeError;
use super::io;

/// The `quarantine` tree (key: length-prefixed tree name, then the original key; value: the
/// original bytes) and its count.
#[derive(Clone)]
pub(super) struct Quarantine {
    pub(super) tree: Tree,
    count: Arc<AtomicU64>,
}

impl Quarantine {
    pub(super) fn new(tree: Tree) -> Self {
        let count = Arc::new(AtomicU64::new(tree.len() as u64));
        Quarantine { tree, count }
    }

    /// Records moved aside, this run and earlier ones.
    pub(super) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// The quarantine key of `key` in `tree_name`.
    pub(super) fn key(tree_name: &[u8], key: &[u8]) -> Vec<u8> {
        let len = u32::try_from(tree_name.len()).unwrap_or(u32::MAX);
        let mut qkey = Vec::with_capacity(4 + tree_name.len() + key.len());
        qkey.extend_from_slice(&len.to_be_bytes());
        qkey.extend_from_slice(tree_name);
        qkey.extend_from_slice(key);
        qkey
    }

    /// Logs and counts a damaged record; the caller moves it (now, or in the next flush).
    pub(super) fn note(&self, tree_name: &[u8], key: &[u8], reason: &str) {
        let err = StoreError::Corrupt {
            key: format!("{}/{}", tree_name.escape_ascii(), key.escape_ascii()),
            reason: reason.to_owned(),
        };
        tracing::error!(error = %err, "damaged record moved to quarantine");
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Moves a damaged record aside now: copies it into the quarantine (the caller removes
    /// the original).
    pub(super) fn put(
        &self,
        tree_name: &[u8],
        key: &[u8],
        value: &[u8],
        reason: DecodeError,
    ) -> Result<(), StoreError> {
        self.note(tree_name, key, &reason.to_string());
        self.tree
            .insert(Self::key(tree_name, key), value)
            .map_err(io)?;
        Ok(())
    }
}
