//! The group commit of the sled store, and the space it gives back.
//!
//! One flush: (1) while no [`Store::hold_flush`](super::super::Store::hold_flush) guard lives,
//! take every dirty queue's work (with its `io` lock), the buffered definitions and deletions,
//! and up to a budget of chunks to move out of the segment being compacted; (2) append the new
//! chunks and the moved ones to the body log, then one *index record* ([`super::wal`]) with
//! every index change, definition, quarantine move, deleted queue and segment-table change of
//! the flush, and fdatasync the log: the one fsync of the flush, after which it is durable;
//! (3) apply the changes other than the message index's to sled, without flushing it, and hand
//! the index changes to the checkpointer, which applies them with the commit point (the end of
//! the index record) at the next checkpoint (see [`super::checkpoint`]);
//! (4) tell each queue its chunks are stored, count each segment's live bytes down, note the
//! segments with none left for deletion at a checkpoint, pick the next one to compact. The
//! last two need the body log's writer idle ([`BodyLog::try_settled`]): the flusher may be
//! appending the next flush's chunks meanwhile, and a segment it has just filled and left
//! must not look empty before they count as live. When the writer is busy, a later flush
//! decides.
//!
//! A failure before (3) completes puts every queue's work and the buffered writes back for the
//! next flush; records already appended are either garbage that no index entry points at, or an
//! index record whose changes the next flush writes again (replaying both is harmless: a
//! change is a value, and the later one wins).

use std::collections::HashMap;
use std::sync::Arc;

use super::super::StoreError;
#[cfg(doc)]
use super::super::bodylog::BodyLog;
use super::super::bodylog::{Loc, Settled};
use super::super::chunk::{Value, Work, compact};
use super::super::lock;
use super::super::record;
use super::checkpoint::Unapplied;
use super::defs::Target;
use super::queue::{Move, Pending, SledQueue};
use super::wal::{self, Change};
use super::{LogStats, SledStore};

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
    /// Segments compaction has copied chunks out of (counted as compacted once empty).
    evacuating: std::collections::HashSet<u64>,
    /// Segments deleted, whose table entries go in the next flush.
    unlisted: Vec<u64>,
    /// Segments with nothing live, with the flush that emptied them: deleted by the first
    /// checkpoint that covers that flush and lies past them.
    doomed: Vec<(u64, u64)>,
    /// Segment of the last index record written.
    last_record_seg: u64,
    /// Segments whose live bytes changed since compaction last looked.
    changed: std::collections::HashSet<u64>,
    /// A flush could not decide which segments are empty (an append was under way): the next
    /// one must, even with nothing else to do.
    unsettled: bool,
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

    /// Takes the doomed segments that flushes up to `seq` emptied, below segment `below`.
    pub(super) fn take_doomed(&mut self, seq: u64, below: u64) -> Vec<(u64, u64)> {
        let (go, stay) = std::mem::take(&mut self.doomed)
            .into_iter()
            .partition(|&(seg, by)| by <= seq && seg < below);
        self.doomed = stay;
        go
    }

    /// Notes segments deleted (their table entries go in the next flush), and puts back those
    /// that could not be.
    pub(super) fn deleted(&mut self, deleted: &[u64], kept: Vec<(u64, u64)>) {
        self.unlisted.extend_from_slice(deleted);
        self.stats.segments_deleted += deleted.len() as u64;
        self.doomed.extend(kept);
    }

    /// Whether a doomed segment waits for an index record in a later segment (a flush must
    /// write one, even with nothing else to say, so that a checkpoint can lie past it).
    fn needs_advance(&self) -> bool {
        self.doomed
            .iter()
            .any(|&(seg, _)| seg >= self.last_record_seg)
    }
}

/// One queue's share of a flush: the queue, its work, its compaction moves.
type Collected = (Arc<SledQueue>, Work, Vec<Move>);

/// A flush between its halves (see [`SledStore::prepare`]).
pub(super) struct Prepared {
    /// Its place in the commit order (1, 2, ...).
    seq: u64,
    /// Failed commits when it was prepared.
    epoch: u64,
    collected: Vec<Collected>,
    pending: Pending,
    unlisted: Vec<u64>,
    target: Option<u64>,
    /// The flush's index changes (segment-table additions included), as logged.
    changes: Vec<Change>,
    /// Its index record (`None`: the flush had nothing to say).
    record: Option<Loc>,
}

/// Flushes prepared and committed so far, to commit in order.
#[derive(Debug, Default)]
pub(super) struct Order {
    prepared: u64,
    committed: u64,
}

impl SledStore {
    /// Whether a flush has work even without new writes (see [`super::super::Store::wants_flush`]).
    pub(super) fn maintenance_due(&self) -> bool {
        let space = lock(&self.shared.space);
        space.target.is_some()
            || space.unsettled
            || !space.unlisted.is_empty()
            || space.needs_advance()
            || !space.quiet.is_empty()
            || !lock(&self.shared.dirty).is_empty()
            || {
                let p = lock(&self.shared.pending);
                !p.ops.is_empty() || !p.dropped.is_empty()
            }
    }

    /// The segment compaction moves chunks out of next (tests).
    #[cfg(test)]
    pub(in crate::storage) fn compaction_target(&self) -> Option<u64> {
        lock(&self.shared.space).target
    }

    /// One group commit, both halves. See the module docs.
    pub(super) fn flush_all(&self) -> Result<(), StoreError> {
        let prepared = self.prepare()?;
        self.commit(prepared)
    }

    /// The first half of a flush, steps (1) and (2): collect, append, sync the body log. The
    /// next flush may be prepared while this one is committed; commits happen in order.
    pub(super) fn prepare(&self) -> Result<Prepared, StoreError> {
        // One preparation at a time (the flusher thread, and a final flush at shutdown).
        let _one = lock(&self.preparing);
        let target = lock(&self.shared.space).target;
        let mut budget = self.opts.compact_bytes_per_flush;
        let mut collected: Vec<Collected> = Vec::new();
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
            for queue in dirty {
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
        let epoch = self.failures.load(std::sync::atomic::Ordering::Acquire);
        let mut p = Prepared {
            seq: 0,
            epoch,
            collected,
            pending,
            unlisted,
            target,
            changes: Vec::new(),
            record: None,
        };
        match self.write_log(&mut p) {
            Ok(()) => {
                p.seq = {
                    let mut order = lock(&self.order);
                    order.prepared += 1;
                    order.prepared
                };
                Ok(p)
            }
            Err(e) => {
                self.undo(p);
                Err(e)
            }
        }
    }

    /// The second half, steps (3) and (4): sled, then the queues and the space. Waits for the
    /// commit of every flush prepared before this one; a flush prepared before a failed commit
    /// fails too (its confirms would otherwise cover the failed one's writes).
    pub(super) fn commit(&self, mut p: Prepared) -> Result<(), StoreError> {
        {
            let mut order = lock(&self.order);
            while order.committed + 1 < p.seq {
                order = self
                    .order_turn
                    .wait(order)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
        }
        // Index changes wait for the next checkpoint; the rest (rare) goes to sled now, without
        // the commit point, which moves only with the index.
        let (index, rest) = Unapplied::split(std::mem::take(&mut p.changes));
        let result = if p.epoch != self.failures.load(std::sync::atomic::Ordering::Acquire) {
            Err(StoreError::Io(
                "an earlier flush failed; this one is written again later".into(),
            ))
        } else {
            wal::apply(&self.trees, &rest, None)
        };
        let seq = p.seq;
        match result {
            Ok(()) => {
                let (target, record) = (p.target, p.record);
                self.finish_flush(p.collected, &p.pending, target, seq);
                if let Some(loc) = record {
                    self.checkpoints.committed(seq, loc, index);
                }
            }
            Err(_) => {
                self.failures
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                self.undo(p);
            }
        }
        let mut order = lock(&self.order);
        order.committed = order.committed.max(seq);
        self.order_turn.notify_all();
        drop(order);
        result
    }

    /// Puts a flush's work back for the next one.
    fn undo(&self, p: Prepared) {
        for (queue, work, moves) in p.collected {
            queue.undo(work, &moves);
        }
        let mut pending = lock(&self.shared.pending);
        let later = std::mem::take(&mut *pending);
        *pending = p.pending;
        pending.ops.extend(later.ops);
        pending.dropped.extend(later.dropped);
        pending.freed.extend(later.freed);
        lock(&self.shared.space).unlisted.extend(p.unlisted);
    }

    /// Step (2): appends the collected bodies and moved chunks, then the index record, and
    /// syncs the body log.
    fn write_log(&self, p: &mut Prepared) -> Result<(), StoreError> {
        for (queue, work, moves) in p.collected.iter_mut() {
            queue.append_bodies(work, true)?;
            self.append_moves(queue, moves)?;
        }
        // Delayed messages put before this flush began become durable with it.
        self.delayed.sync()?;
        let mut changes = changes_of(p);
        if !changes.is_empty() || lock(&self.shared.space).needs_advance() {
            let mut added = Vec::new();
            let loc = self.shared.log.append_index(
                wal::encode(&changes),
                wal::SEGMENT_ADD_BYTES,
                |out, segs| added = wal::add_segments(out, segs),
                |loc| {
                    let mut space = lock(&self.shared.space);
                    space.note_size(loc.seg, loc.end());
                    space.last_record_seg = loc.seg;
                },
            )?;
            changes.extend(added);
            p.record = Some(loc);
        }
        p.changes = changes;
        self.shared.log.sync()
    }

    /// Reads the chunks to move, keeps their live entries, appends them.
    fn append_moves(&self, queue: &SledQueue, moves: &mut [Move]) -> Result<(), StoreError> {
        let mut payloads = Vec::with_capacity(moves.len());
        for m in moves.iter() {
            match self.shared.log.read(&m.from, queue.qid, m.first)? {
                Ok(body) => payloads.push(Some(compact(&Value::from(body), m.first, &m.live))),
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
            .filter_map(|(m, p)| Some((queue.qid, m.first, p.as_ref()?.parts())))
            .collect();
        if appends.is_empty() {
            return Ok(());
        }
        // Counted live before the writer is released (see `BodyLog::try_settled`).
        let count = |locs: &[Loc]| self.shared.count_live(locs);
        let mut locs = self.shared.log.append(&appends, count)?.into_iter();
        for (m, _) in moves.iter_mut().zip(&payloads).filter(|(_, p)| p.is_some()) {
            m.to = locs.next();
        }
        Ok(())
    }

    /// Step (4). `seq` is the flush's place in the commit order.
    fn finish_flush(
        &self,
        collected: Vec<Collected>,
        pending: &Pending,
        target: Option<u64>,
        seq: u64,
    ) {
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
        {
            let mut space = lock(&self.shared.space);
            for &(seg, bytes) in &dead {
                space.sub(seg, bytes);
                if bytes > 0 {
                    space.changed.insert(seg);
                }
            }
            space.stats.chunks_moved += moved;
            space.stats.bytes_copied += copied;
            if let Some(t) = target
                && moved == 0
            {
                // Nothing could be moved (its chunks belong to no open queue, or are
                // unreadable): give others a turn and try this one again once it has been
                // quiet as long.
                space.target = None;
                space.quiet.insert(t, 0);
            }
        }
        // Which segments are empty depends on which one is active, and on every append having
        // counted its records live: decided while no append is under way, else by a later
        // flush (the flusher may be appending the next one's chunks right now).
        let settled = self.shared.log.try_settled(|log| {
            let mut space = lock(&self.shared.space);
            self.settle(&mut space, log, seq);
        });
        if settled.is_none() {
            lock(&self.shared.space).unsettled = true;
        }
    }

    /// Notes the segments with nothing live (but the active one) for deletion by the first
    /// checkpoint that covers flush `seq` and lies past them, closes an emptied active segment
    /// that has grown large, and picks the next segment to compact.
    fn settle(&self, space: &mut Space, log: &mut Settled<'_>, seq: u64) {
        space.unsettled = false;
        let active = log.active();
        let mut empty: Vec<u64> = space
            .size
            .keys()
            .copied()
            .filter(|&seg| space.live(seg) == 0 && Some(seg) != active)
            .collect();
        empty.sort_unstable();
        for seg in empty {
            space.size.remove(&seg);
            space.live.remove(&seg);
            space.quiet.remove(&seg);
            space.doomed.push((seg, seq));
            if space.evacuating.remove(&seg) {
                space.stats.segments_compacted += 1;
                tracing::info!(
                    segment = seg,
                    chunks_moved = space.stats.chunks_moved,
                    bytes_copied = space.stats.bytes_copied,
                    "body-log segment compacted (deleted at the next checkpoint)"
                );
            }
        }
        if let Some(a) = active
            && space.live(a) == 0
            && log.active_len() > SEAL_EMPTY_ACTIVE
        {
            // Nothing live in the active segment: close it so the next flush can delete it.
            log.seal();
        }
        let active = log.active();
        let changed = std::mem::take(&mut space.changed);
        self.note_quiet(space, &changed, active);
        space.target = self.pick_target(space, active);
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

/// A prepared flush's index changes, exactly as its sled transaction applies them: index
/// entries written, removed and moved, deleted queues, buffered writes (definitions, objects,
/// queue ids, quarantine moves), segments deleted from the table.
fn changes_of(p: &Prepared) -> Vec<Change> {
    let mut out = Vec::new();
    for (queue, work, moves) in &p.collected {
        for w in &work.writes {
            let Some(loc) = w.loc else {
                tracing::error!(
                    qid = queue.qid,
                    first = w.first,
                    "chunk without a location not indexed"
                );
                continue;
            };
            out.push(Change::Put(
                Target::Index,
                record::index_key(queue.qid, w.first).to_vec(),
                Some(record::encode_index_entry(&loc, &w.state)),
            ));
        }
        for (first, ..) in &work.removes {
            out.push(Change::Put(
                Target::Index,
                record::index_key(queue.qid, *first).to_vec(),
                None,
            ));
        }
        for m in moves {
            if let Some(to) = m.to {
                out.push(Change::Put(
                    Target::Index,
                    record::index_key(queue.qid, m.first).to_vec(),
                    Some(record::encode_index_entry(&to, &m.state)),
                ));
            }
        }
    }
    // Keys resolved when applied: what they counted as live was taken from the queue's index
    // when it was deleted.
    out.extend(p.pending.dropped.iter().map(|&qid| Change::DropQueue(qid)));
    out.extend(
        p.pending
            .ops
            .iter()
            .map(|(t, k, v)| Change::Put(*t, k.clone(), v.clone())),
    );
    out.extend(
        p.unlisted
            .iter()
            .map(|seg| Change::Put(Target::Segments, seg.to_be_bytes().to_vec(), None)),
    );
    out
}
