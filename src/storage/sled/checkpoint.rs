//! Checkpoints: making sled durable, off the confirm path.
//!
//! A group commit syncs only the body log (its index record holds every change). sled applies
//! the definition, queue-id and segment-table changes in memory at once, and the message-index
//! changes at the next checkpoint: they are gathered here meanwhile ([`Unapplied`], the latest
//! value of each key), so that an entry written and removed between two checkpoints (a message
//! published and acked within a second) never reaches sled at all. Every [`SledOptions::checkpoint_ms`](super::SledOptions)
//! or [`SledOptions::checkpoint_bytes`](super::SledOptions) of log, a thread of its own flushes
//! sled and `fdatasync`s sled's log file: everything committed before is then in sled for good,
//! and recovery replays only the index records after the last commit point sled holds.
//!
//! A checkpoint also deletes the segments the group commits found empty, once it covers the
//! flush that emptied them and once they lie wholly before its commit point (so no index record
//! that recovery may need goes with them).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::super::StoreError;
use super::super::bodylog::{CommitPoint, Loc};
use super::super::lock;
use super::defs::Target;
use super::queue::Shared;
use super::wal::{self, Change};
use super::{Trees, io};

/// Message-index changes committed (synced in the body log) and not yet applied to sled.
/// Applying [`Unapplied::changes`] leaves sled's index as applying every gathered change in
/// its order would.
#[derive(Debug, Default)]
pub(super) struct Unapplied {
    /// Queues deleted: every entry sled holds for them goes, before `keys` are applied.
    dropped: BTreeSet<u64>,
    /// The latest value of each index key changed (`None`: removed).
    keys: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Unapplied {
    /// Gathers one change (others than [`Change::is_index`] ones are ignored).
    pub(super) fn add(&mut self, change: Change) {
        match change {
            Change::Put(Target::Index, k, v) => {
                self.keys.insert(k, v);
            }
            Change::DropQueue(qid) => {
                // The queue's earlier changes are void: the drop removes what they wrote.
                let prefix = qid.to_be_bytes();
                let doomed: Vec<Vec<u8>> = self
                    .keys
                    .range(prefix.to_vec()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in doomed {
                    self.keys.remove(&k);
                }
                self.dropped.insert(qid);
            }
            Change::Put(..) => {}
        }
    }

    /// A flush's changes split into its message-index changes, gathered, and the rest.
    pub(super) fn split(changes: Vec<Change>) -> (Self, Vec<Change>) {
        let mut index = Unapplied::default();
        let mut rest = Vec::new();
        for c in changes {
            if c.is_index() {
                index.add(c);
            } else {
                rest.push(c);
            }
        }
        (index, rest)
    }

    /// Puts `later`'s changes on top of these.
    fn extend(&mut self, later: Unapplied) {
        // Every key change in `later` of a queue it drops came after the drop.
        for qid in later.dropped {
            self.add(Change::DropQueue(qid));
        }
        self.keys.extend(later.keys);
    }

    /// The changes to apply, drops first.
    fn changes(&self) -> Vec<Change> {
        let drops = self.dropped.iter().map(|&q| Change::DropQueue(q));
        let puts = self
            .keys
            .iter()
            .map(|(k, v)| Change::Put(Target::Index, k.clone(), v.clone()));
        drops.chain(puts).collect()
    }
}

/// What has been committed and what is durable in sled: (flush seq, its index record).
#[derive(Debug, Default)]
struct State {
    committed: Option<(u64, Loc)>,
    /// The index changes of the flushes committed since the last checkpoint.
    unapplied: Unapplied,
    durable: Option<(u64, Loc)>,
    /// The body log's appended bytes at the last checkpoint.
    at_bytes: u64,
    stop: bool,
}

/// The checkpoints of one store. See the module docs.
pub(super) struct Checkpointer {
    db: sled::Db,
    trees: Trees,
    sled_log: File,
    shared: Arc<Shared>,
    every: Duration,
    bytes: u64,
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a checkpoint runs: one at a time.
    running: Mutex<()>,
}

impl Checkpointer {
    pub(super) fn new(
        db: sled::Db,
        trees: Trees,
        sled_log: File,
        shared: Arc<Shared>,
        every: Duration,
        bytes: u64,
    ) -> Self {
        Checkpointer {
            db,
            trees,
            sled_log,
            shared,
            every,
            bytes,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            running: Mutex::new(()),
        }
    }

    /// Notes that flush `seq`, whose index record is at `loc`, is committed: its other changes
    /// are applied to sled, its index changes `index` wait here for the next checkpoint. Wakes
    /// the thread when enough log has been written since the last checkpoint.
    pub(super) fn committed(&self, seq: u64, loc: Loc, index: Unapplied) {
        let mut st = lock(&self.state);
        st.committed = Some((seq, loc));
        st.unapplied.extend(index);
        if self.shared.log.appended().saturating_sub(st.at_bytes) >= self.bytes {
            self.wake.notify_one();
        }
    }

    /// sled (tests that look at its trees).
    #[cfg(test)]
    pub(super) fn db(&self) -> &sled::Db {
        &self.db
    }

    /// The last committed flush's index record (tests).
    #[cfg(test)]
    pub(super) fn last_committed(&self) -> Option<Loc> {
        lock(&self.state).committed.map(|(_, loc)| loc)
    }

    /// Applies the index changes of the flushes committed so far to sled, with the last one's
    /// commit point, and makes sled durable; then deletes the segments that may go (keeping
    /// some files for reuse while the log rolls, see `BodyLog::trim_pool`).
    pub(super) fn checkpoint(&self) -> Result<(), StoreError> {
        let _one = lock(&self.running);
        let (target, at_bytes, unapplied) = {
            let mut st = lock(&self.state);
            if st.committed == st.durable {
                drop(st);
                self.shared.log.trim_pool();
                return Ok(());
            }
            let unapplied = std::mem::take(&mut st.unapplied);
            (st.committed, self.shared.log.appended(), unapplied)
        };
        if let Some((_, loc)) = target {
            let commit = CommitPoint::after(&loc);
            if let Err(e) = wal::apply(&self.trees, &unapplied.changes(), Some(&commit)) {
                // Applied again by the next checkpoint, under what came since.
                let mut st = lock(&self.state);
                let later = std::mem::replace(&mut st.unapplied, unapplied);
                st.unapplied.extend(later);
                return Err(e);
            }
        }
        self.db.flush().map_err(io)?;
        // sled makes its writes stable with sync_file_range, which neither flushes the device's
        // write cache nor syncs the metadata of a log file that grew: fdatasync does.
        self.sled_log
            .sync_data()
            .map_err(|e| StoreError::Io(format!("fdatasync of sled's log: {e}")))?;
        {
            let mut st = lock(&self.state);
            st.durable = target;
            st.at_bytes = at_bytes;
        }
        if let Some((seq, loc)) = target {
            self.delete_covered(seq, loc.seg);
        }
        self.shared.log.trim_pool();
        Ok(())
    }

    /// Deletes the emptied segments that flushes up to `seq` found, below segment `below`.
    fn delete_covered(&self, seq: u64, below: u64) {
        let doomed = lock(&self.shared.space).take_doomed(seq, below);
        let mut deleted = Vec::new();
        let mut kept = Vec::new();
        for (seg, emptied_by) in doomed {
            match self.shared.log.delete(seg) {
                Ok(()) => deleted.push(seg),
                Err(e) => {
                    tracing::error!(segment = seg, error = %e, "cannot delete an emptied body-log segment");
                    kept.push((seg, emptied_by));
                }
            }
        }
        lock(&self.shared.space).deleted(&deleted, kept);
    }

    /// The thread's loop: a checkpoint every `every`, or sooner when woken.
    pub(super) fn run(&self) {
        loop {
            {
                let st = lock(&self.state);
                if st.stop {
                    return;
                }
                let (st, _) = self
                    .wake
                    .wait_timeout(st, self.every)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if st.stop {
                    return;
                }
            }
            if let Err(e) = self.checkpoint() {
                tracing::error!(error = %e, "checkpoint failed (the body log still holds every change)");
            }
        }
    }

    /// Ends [`Checkpointer::run`].
    pub(super) fn stop(&self) {
        lock(&self.state).stop = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// sled's index as a map, with `changes` applied in order.
    fn apply_in_order(
        mut index: BTreeMap<Vec<u8>, Vec<u8>>,
        changes: &[Change],
    ) -> BTreeMap<Vec<u8>, Vec<u8>> {
        for c in changes {
            match c {
                Change::Put(_, k, Some(v)) => {
                    index.insert(k.clone(), v.clone());
                }
                Change::Put(_, k, None) => {
                    index.remove(k);
                }
                Change::DropQueue(q) => index.retain(|k, _| !k.starts_with(&q.to_be_bytes())),
            }
        }
        index
    }

    /// An index key of one of three queues.
    fn key() -> impl Strategy<Value = Vec<u8>> {
        (0..3u64, 0..6u64).prop_map(|(q, first)| {
            let mut k = q.to_be_bytes().to_vec();
            k.extend_from_slice(&first.to_be_bytes());
            k
        })
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            4 => (key(), proptest::option::of(proptest::collection::vec(any::<u8>(), 1..4)))
                .prop_map(|(k, v)| Change::Put(Target::Index, k, v)),
            1 => (0..3u64).prop_map(Change::DropQueue),
        ]
    }

    proptest! {
        /// Gathering flushes' changes (in any grouping) and applying them at a checkpoint leaves
        /// sled's index as applying every change in order would.
        #[test]
        fn a_checkpoint_applies_what_the_flushes_did_in_order(
            before in proptest::collection::btree_map(key(), proptest::collection::vec(any::<u8>(), 1..4), 0..8),
            flushes in proptest::collection::vec(proptest::collection::vec(change(), 0..6), 0..6),
            split in 0..6usize,
        ) {
            let all: Vec<Change> = flushes.iter().flatten().cloned().collect();
            let want = apply_in_order(before.clone(), &all);
            // Two gatherings, the later put on top of the earlier (as after a failed checkpoint).
            let (mut early, mut late) = (Unapplied::default(), Unapplied::default());
            for (i, f) in flushes.into_iter().enumerate() {
                for c in f {
                    if i < split { early.add(c) } else { late.add(c) }
                }
            }
            early.extend(late);
            prop_assert_eq!(apply_in_order(before, &early.changes()), want);
        }
    }

    #[test]
    fn an_entry_written_and_removed_between_checkpoints_leaves_one_removal() {
        let mut u = Unapplied::default();
        let k = [0u8; 16].to_vec();
        u.add(Change::Put(Target::Index, k.clone(), Some(vec![1])));
        u.add(Change::Put(Target::Index, k.clone(), Some(vec![2])));
        u.add(Change::Put(Target::Index, k.clone(), None));
        u.add(Change::Put(Target::Queues, k.clone(), Some(vec![3])));
        assert_eq!(u.changes(), [Change::Put(Target::Index, k, None)]);
    }
}
