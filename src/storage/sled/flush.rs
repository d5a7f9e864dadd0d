//! The group commit of the sled store, and the space it gives back.
//!
//! One flush: (1) while no [`Store::hold_flush`](super::super::Store::hold_flush) guard lives,
//! take every dirty queue's work (with its `io` lock), the buffered definitions and deletions,
//! and up to a budget of chunks to move out of the segment being compacted; (2) append the new
//! chunks and the moved ones to the body log and fdatasync it; (3) write every index change,
//! definition, quarantine move, the commit point and new segments in one sled transaction,
//! flush sled, fdatasync its log; (4) tell each queue its chunks are stored, count each
//! segment's live bytes down, delete segments with none left, pick the next one to compact.
//!
//! A failure before (3) completes puts every queue's work and the buffered writes back for the
//! next flush; records already appended are garbage that no index entry points at.

use std::collections::HashMap;
use std::sync::Arc;

use super::super::StoreError;
use super::super::bodylog::Loc;
use super::super::chunk::{Work, compact};
use super::super::record;
use super::defs::Target;
use super::queue::{Move, Pending, SledQueue};
use super::{COMMIT_KEY, LogStats, SledStore, Trees, io, lock};

/// Flushes in a row that must leave a segment under the threshold unchanged before it is
/// compacted (at the idle background tick of 200 ms, about 4 s).
const QUIET_FLUSHES: u32 = 20;

/// An emptied active segment larger than this is closed, so it can be deleted.
const SEAL_EMPTY_ACTIVE: u64 = 4 << 20;

/// Live bytes per body-log segment (the sum of the lengths of the records index entries point
/// at, plus records written ahead and not yet indexed), segment sizes, and what compaction is
/// doing.
#[derive(Debug, Default)]
pub(super) struct Space {
    live: HashMap<u64, u64>,
    size: HashMap<u64, u64>,
    /// The segment being compacted.
    target: Option<u64>,
    /// Segments under the compaction threshold, with how many flushes in a row left their live
    /// bytes unchanged: a segment a consumer is draining (FIFO use) keeps changing and is never
    /// copied; one kept alive by a few old messages goes quiet and is compacted.
    quiet: HashMap<u64, u32>,
    /// Segments compaction has copied chunks out of.
    evacuating: std::collections::HashSet<u64>,
    /// Segments deleted, whose table entries go in the next flush.
    unlisted: Vec<u64>,
    pub(super) stats: LogStats,
}

impl Space {
    /// Counts a record as live.
    pub(super) fn add(&mut self, loc: &Loc) {
        *self.live.entry(loc.seg).or_default() += u64::from(loc.len);
        self.note_size(loc.seg, loc.end());
    }

    /// Counts `bytes` of segment `seg` as dead.
    fn sub(&mut self, seg: u64, bytes: u64) {
        if let Some(l) = self.live.get_mut(&seg) {
            *l = l.saturating_sub(bytes);
        }
    }

    /// Notes that segment `seg` is at least `size` bytes long.
    pub(super) fn note_size(&mut self, seg: u64, size: u64) {
        let s = self.size.entry(seg).or_default();
        *s = (*s).max(size);
    }

    /// Live bytes of segment `seg`.
    pub(super) fn live(&self, seg: u64) -> u64 {
        self.live.get(&seg).copied().unwrap_or(0)
    }
}

/// One queue's share of a flush: the queue, its work, its compaction moves.
type Collected<'a> = (&'a SledQueue, Work, Vec<Move>);

impl SledStore {
    /// Whether a flush has work even without new writes (see [`super::super::Store::wants_flush`]).
    pub(super) fn maintenance_due(&self) -> bool {
        let space = lock(&self.shared.space);
        space.target.is_some() || !space.unlisted.is_empty() || !space.quiet.is_empty() || {
            let p = lock(&self.shared.pending);
            !p.ops.is_empty() || !p.dropped.is_empty()
        }
    }

    /// One group commit. See the module docs.
    pub(super) fn flush_all(&self) -> Result<(), StoreError> {
        // One flush at a time (the flusher thread, and a final one at shutdown or drop).
        let _one = lock(&self.flushing);
        let target = lock(&self.shared.space).target;
        let mut budget = self.opts.compact_bytes_per_flush;
        let queues: Vec<Arc<SledQueue>>;
        let mut collected: Vec<Collected<'_>> = Vec::new();
        let pending;
        {
            let _gate = self.gate.exclusive();
            let mut dirty: Vec<Arc<SledQueue>> = std::mem::take(&mut *lock(&self.shared.dirty))
                .iter()
                .filter_map(std::sync::Weak::upgrade)
                .collect();
            if target.is_some() {
                // Every open queue may hold chunks in the segment being compacted.
                for q in lock(&self.areas).values() {
                    if !dirty.iter().any(|d| Arc::ptr_eq(d, q)) {
                        dirty.push(Arc::clone(q));
                    }
                }
            }
            queues = dirty;
            for queue in &queues {
                let compact = target.filter(|_| budget > 0).map(|seg| (seg, budget));
                if let Some((work, moves)) = queue.collect(compact) {
                    let moved: u64 = moves.iter().map(|m| u64::from(m.from.len)).sum();
                    budget = budget.saturating_sub(moved);
                    collected.push((queue, work, moves));
                }
            }
            pending = std::mem::take(&mut *lock(&self.shared.pending));
        }
        let unlisted = std::mem::take(&mut lock(&self.shared.space).unlisted);
        match self.write_flush(&mut collected, &pending, &unlisted) {
            Ok(()) => {
                self.finish_flush(collected, &pending, target);
                Ok(())
            }
            Err(e) => {
                for (queue, work, _) in collected {
                    queue.undo(work);
                }
                let mut p = lock(&self.shared.pending);
                let later = std::mem::take(&mut *p);
                *p = pending;
                p.ops.extend(later.ops);
                p.dropped.extend(later.dropped);
                p.freed.extend(later.freed);
                lock(&self.shared.space).unlisted.extend(unlisted);
                Err(e)
            }
        }
    }

    /// Steps (2) and (3): the body log, then sled.
    fn write_flush(
        &self,
        collected: &mut [Collected<'_>],
        pending: &Pending,
        unlisted: &[u64],
    ) -> Result<(), StoreError> {
        for (queue, work, moves) in collected.iter_mut() {
            queue.append_bodies(work)?;
            self.append_moves(queue, moves)?;
            let mut space = lock(&self.shared.space);
            for loc in moves.iter().filter_map(|m| m.to) {
                space.add(&loc);
            }
        }
        let synced = self.shared.log.sync()?;
        let mut batches: HashMap<Target, sled::Batch> = HashMap::new();
        let mut put = |t: Target, k: &[u8], v: Option<&[u8]>| {
            let b = batches.entry(t).or_default();
            match v {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        };
        for (queue, work, moves) in collected.iter() {
            for w in &work.writes {
                let Some(loc) = w.loc else {
                    tracing::error!(
                        qid = queue.qid,
                        first = w.first,
                        "chunk without a location not indexed"
                    );
                    continue;
                };
                let entry = record::encode_index_entry(&loc, &w.state);
                put(
                    Target::Index,
                    &record::index_key(queue.qid, w.first),
                    Some(&entry),
                );
            }
            for (first, ..) in &work.removes {
                put(Target::Index, &record::index_key(queue.qid, *first), None);
            }
            for m in moves {
                if let Some(to) = m.to {
                    let entry = record::encode_index_entry(&to, &m.state);
                    put(
                        Target::Index,
                        &record::index_key(queue.qid, m.first),
                        Some(&entry),
                    );
                }
            }
        }
        for &qid in &pending.dropped {
            // Keys only: what they counted as live was taken from the queue's index when it
            // was deleted.
            for key in self.trees.index.scan_prefix(qid.to_be_bytes()).keys() {
                put(Target::Index, &key.map_err(io)?, None);
            }
        }
        for (t, k, v) in &pending.ops {
            put(*t, k, v.as_deref());
        }
        put(Target::Meta, COMMIT_KEY, Some(&synced.commit.encode()));
        for seg in &synced.created {
            put(Target::Segments, &seg.to_be_bytes(), Some(&[]));
        }
        for seg in unlisted {
            put(Target::Segments, &seg.to_be_bytes(), None);
        }
        apply(&self.trees, batches)?;
        self.db.flush().map_err(io)?;
        // sled makes its writes stable with sync_file_range, which waits for the page cache to
        // reach the device but neither flushes the device's write cache nor syncs the metadata
        // of a log file that grew. A confirm promises the message is on disk, power loss
        // included: one fdatasync per group commit makes it so.
        self.sled_log
            .sync_data()
            .map_err(|e| StoreError::Io(format!("fdatasync of sled's log: {e}")))?;
        Ok(())
    }

    /// Reads the chunks to move, keeps their live entries, appends them.
    fn append_moves(&self, queue: &SledQueue, moves: &mut [Move]) -> Result<(), StoreError> {
        let mut payloads = Vec::with_capacity(moves.len());
        for m in moves.iter() {
            match self.shared.log.read(&m.from, queue.qid, m.first)? {
                Ok(body) => payloads.push(Some(compact(&body, m.first, &m.live))),
                Err(reason) => {
                    // A read will quarantine it; compaction leaves it where it is.
                    tracing::warn!(
                        qid = queue.qid,
                        first = m.first,
                        reason,
                        "chunk not moved by compaction"
                    );
                    payloads.push(None);
                }
            }
        }
        let appends: Vec<_> = moves
            .iter()
            .zip(&payloads)
            .filter_map(|(m, p)| Some((queue.qid, m.first, p.as_deref()?)))
            .collect();
        if appends.is_empty() {
            return Ok(());
        }
        let mut locs = self.shared.log.append(&appends)?.into_iter();
        for (m, _) in moves.iter_mut().zip(&payloads).filter(|(_, p)| p.is_some()) {
            m.to = locs.next();
        }
        Ok(())
    }

    /// Step (4).
    fn finish_flush(&self, collected: Vec<Collected<'_>>, pending: &Pending, target: Option<u64>) {
        let mut dead: Vec<(u64, u64)> = pending.freed.clone();
        let (mut moved, mut copied) = (0u64, 0u64);
        for (queue, work, moves) in &collected {
            dead.extend(
                work.removes
                    .iter()
                    .filter_map(|(_, loc, freed)| Some(((*loc)?.seg, *freed))),
            );
            dead.extend(
                work.writes
                    .iter()
                    .filter_map(|w| Some((w.loc?.seg, w.freed))),
            );
            for m in moves.iter().filter(|m| m.to.is_some()) {
                lock(&self.shared.space).evacuating.insert(m.from.seg);
                moved += 1;
                copied += m.to.map_or(0, |l| u64::from(l.len));
            }
            // The index points at the copies now: what the chunks counted where they were is
            // dead there.
            dead.extend(queue.finish(work, moves));
        }
        drop(collected);
        let active = self.shared.log.active();
        let mut space = lock(&self.shared.space);
        let mut changed = std::collections::HashSet::new();
        for &(seg, bytes) in &dead {
            space.sub(seg, bytes);
            if bytes > 0 {
                changed.insert(seg);
            }
        }
        space.stats.chunks_moved += moved;
        space.stats.bytes_copied += copied;
        let mut empty: Vec<u64> = space
            .size
            .keys()
            .copied()
            .filter(|&seg| space.live(seg) == 0 && Some(seg) != active)
            .collect();
        empty.sort_unstable();
        for seg in empty {
            if let Err(e) = self.shared.log.delete(seg) {
                tracing::error!(segment = seg, error = %e, "cannot delete an emptied body-log segment");
                continue;
            }
            space.size.remove(&seg);
            space.live.remove(&seg);
            space.unlisted.push(seg);
            space.stats.segments_deleted += 1;
            if target == Some(seg) {
                space.stats.segments_compacted += 1;
                tracing::info!(
                    segment = seg,
                    chunks_moved = space.stats.chunks_moved,
                    bytes_copied = space.stats.bytes_copied,
                    "body-log segment compacted and deleted"
                );
            }
        }
        if let Some(a) = active
            && space.live(a) == 0
            && self.shared.log.active_len() > SEAL_EMPTY_ACTIVE
        {
            // Nothing live in the active segment: close it so the next flush can delete it.
            self.shared.log.seal_active();
        }
        if let Some(t) = target
            && moved == 0
        {
            // Nothing could be moved (its chunks belong to no open queue, or are unreadable):
            // give others a turn and try this one again once it has been quiet as long.
            space.target = None;
            space.quiet.insert(t, 0);
        }
        let active = self.shared.log.active();
        self.note_quiet(&mut space, &changed, active);
        space.target = self.pick_target(&space, active);
    }

    /// Updates how long each segment under the threshold has gone unchanged.
    fn note_quiet(
        &self,
        space: &mut Space,
        changed: &std::collections::HashSet<u64>,
        active: Option<u64>,
    ) {
        let pct = u64::from(self.opts.compact_live_percent);
        let under: Vec<u64> = space
            .size
            .iter()
            .filter(|(seg, size)| Some(**seg) != active && **size > 0)
            .filter(|&(&seg, &size)| {
                let live = space.live(seg);
                live > 0 && live * 100 < size * pct
            })
            .map(|(&seg, _)| seg)
            .collect();
        space.quiet.retain(|seg, _| under.contains(seg));
        for seg in under {
            let n = space.quiet.entry(seg).or_default();
            *n = if changed.contains(&seg) {
                0
            } else {
                n.saturating_add(1)
            };
        }
    }

    /// The quiet segment with the lowest live share under the threshold, if any (the one being
    /// compacted stays the target until it is empty).
    fn pick_target(&self, space: &Space, active: Option<u64>) -> Option<u64> {
        if let Some(t) = space.target
            && space.live(t) > 0
            && space.size.contains_key(&t)
        {
            return Some(t);
        }
        space
            .quiet
            .iter()
            .filter(|&(&seg, &n)| n >= QUIET_FLUSHES && Some(seg) != active)
            .filter_map(|(&seg, _)| Some((seg, space.live(seg), *space.size.get(&seg)?)))
            .min_by_key(|&(seg, live, size)| (live * 1000 / size.max(1), seg))
            .map(|(seg, _, _)| seg)
    }
}

/// Applies a flush's batches to their trees in one sled transaction.
fn apply(trees: &Trees, batches: HashMap<Target, sled::Batch>) -> Result<(), StoreError> {
    use sled::Transactional;
    use sled::transaction::TransactionError;
    if batches.is_empty() {
        return Ok(());
    }
    let order: Vec<(Target, sled::Batch)> = batches.into_iter().collect();
    let tree_list: Vec<sled::Tree> = order.iter().map(|(t, _)| trees.of(*t).clone()).collect();
    tree_list
        .as_slice()
        .transaction(|txs| {
            for ((_, batch), tx) in order.iter().zip(txs) {
                tx.apply_batch(batch)?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(e) => io(e),
            TransactionError::Abort(()) => StoreError::Io("sled: transaction aborted".into()),
        })
}
