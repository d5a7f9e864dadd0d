//! Checkpoints: making sled durable, off the confirm path.
//!
//! A group commit syncs only the body log (its index record holds every index change); sled
//! applies the same changes in memory. Every [`SledOptions::checkpoint_ms`](super::SledOptions)
//! or [`SledOptions::checkpoint_bytes`](super::SledOptions) of log, a thread of its own flushes
//! sled and `fdatasync`s sled's log file: everything committed before is then in sled for good,
//! and recovery replays only the index records after the last commit point sled holds.
//!
//! A checkpoint also deletes the segments the group commits found empty, once it covers the
//! flush that emptied them and once they lie wholly before its commit point (so no index record
//! that recovery may need goes with them).

use std::fs::File;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::super::StoreError;
use super::super::bodylog::Loc;
use super::queue::Shared;
use super::{io, lock};

/// What has been committed and what is durable in sled: (flush seq, its index record).
#[derive(Debug, Default)]
struct State {
    committed: Option<(u64, Loc)>,
    durable: Option<(u64, Loc)>,
    /// The body log's appended bytes at the last checkpoint.
    at_bytes: u64,
    stop: bool,
}

/// The checkpoints of one store. See the module docs.
pub(super) struct Checkpointer {
    db: sled::Db,
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
        sled_log: File,
        shared: Arc<Shared>,
        every: Duration,
        bytes: u64,
    ) -> Self {
        Checkpointer {
            db,
            sled_log,
            shared,
            every,
            bytes,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            running: Mutex::new(()),
        }
    }

    /// Notes that flush `seq`, whose index record is at `loc`, is applied to sled; wakes the
    /// thread when enough log has been written since the last checkpoint.
    pub(super) fn committed(&self, seq: u64, loc: Loc) {
        let mut st = lock(&self.state);
        st.committed = Some((seq, loc));
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

    /// Makes sled durable up to the last committed flush, then deletes the segments that may go.
    pub(super) fn checkpoint(&self) -> Result<(), StoreError> {
        let _one = lock(&self.running);
        let (target, at_bytes) = {
            let st = lock(&self.state);
            if st.committed == st.durable {
                return Ok(());
            }
            (st.committed, self.shared.log.appended())
        };
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
