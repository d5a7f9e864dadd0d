//! One durable queue's message area: its in-memory chunk [`Index`], whose chunk bodies live in
//! the body log and whose index entries (location + state) live in sled's `index` tree under
//! the queue's numeric id.
//!
//! Locks: `area` is held only for in-memory work (appends, bit flips, planning); `io` is held
//! by a write-ahead while it appends sealed chunks, and by a flush while it collects, so that a
//! flush never misses a chunk that is half written ahead (the write-ahead thread, which may
//! wait for the body log's writer with `io` held, waits only for another append: the writer is
//! never held during an fsync). `io` is taken before `area`, never while holding it. Neither is
//! held during an fsync or a read's I/O.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use bytes::Bytes;

use super::super::bodylog::{BodyLog, Loc};
use super::super::chunk::{Index, ReadPart, Work};
use super::super::record::{self, DecodeError};
use super::super::{MessageView, PutOutcome, QueueStore, StoreError, StoredMessage};
use super::super::{lock, try_lock};
use super::defs::{Op, Target};
use super::quarantine::Quarantine;

/// Bound on read rounds that each meet a damaged or moved chunk.
const MAX_READ_ROUNDS: usize = 1000;

#[cfg(test)]
thread_local! {
    /// Runs once, on this thread, inside its next append of chunk bodies, after they are
    /// written and before they are counted live (tests of what other threads may do then).
    pub(in crate::storage) static WHILE_APPENDING: std::cell::RefCell<Option<Box<dyn FnOnce()>>> =
        const { std::cell::RefCell::new(None) };
}

/// What every queue shares with the store.
pub(super) struct Shared {
    /// Queues with writes for the next flush.
    pub(super) dirty: Mutex<Vec<Weak<SledQueue>>>,
    /// Buffered sled writes for the next flush.
    pub(super) pending: Mutex<Pending>,
    pub(super) log: BodyLog,
    pub(super) quarantine: Quarantine,
    /// Live bytes per segment: a record counts from its append, before the body log's writer
    /// is released (so a segment holding chunks written ahead of their flush, or chunks an
    /// append wrote before moving on to a new segment, is never taken for empty). Taken inside
    /// the body log's writer (appends, `BodyLog::try_settled`), never the other way round.
    pub(super) space: Mutex<super::flush::Space>,
    /// Queues whose sealed chunks wait for the write-ahead thread.
    pub(super) ahead: Arc<super::ahead::Ahead>,
}

impl Shared {
    /// Counts appended records as live (the `written` step of a body-log append).
    pub(super) fn count_live(&self, locs: &[Loc]) {
        let mut space = lock(&self.space);
        for loc in locs {
            space.add(loc);
        }
    }
}

/// Writes buffered for the next flush besides the queues' own work.
#[derive(Default)]
pub(super) struct Pending {
    /// Definitions, objects, queue ids, quarantine moves.
    pub(super) ops: Vec<Op>,
    /// Numeric ids of deleted queues whose index entries are to go.
    pub(super) dropped: Vec<u64>,
    /// Bytes that stopped being live, by segment, outside a queue's work (chunks quarantined
    /// by reads, deleted queues).
    pub(super) freed: Vec<(u64, u64)>,
}

/// What a queue's mutex guards: its chunk index, and whether it is on the dirty list.
struct Area {
    index: Index,
    queued: bool,
}

/// One durable queue's messages. See the module docs.
pub(super) struct SledQueue {
    /// The queue's numeric id (first half of its index keys, and in its body-log records).
    pub(super) qid: u64,
    /// Printable name, for log lines.
    name: String,
    area: Mutex<Area>,
    io: Mutex<()>,
    /// Set by `delete_queue`: further use is an error, not a silent write.
    deleted: AtomicBool,
    /// Handed to the write-ahead thread and not yet taken by it.
    handed: AtomicBool,
    /// Bytes of sealed chunks this queue last reported kept for its next flush
    /// ([`super::ahead::Hold`]); changed only under the area lock.
    held: AtomicUsize,
    me: Weak<SledQueue>,
    shared: Arc<Shared>,
}

impl Drop for SledQueue {
    fn drop(&mut self) {
        // A queue dropped with chunks kept (its flush writes them or it was deleted) keeps no
        // share of the node's hold.
        let old = std::mem::take(self.held.get_mut());
        self.shared.ahead.hold.report(old, 0);
    }
}

impl SledQueue {
    pub(super) fn new(qid: u64, name: String, index: Index, shared: Arc<Shared>) -> Arc<Self> {
        Arc::new_cyclic(|me| SledQueue {
            qid,
            name,
            area: Mutex::new(Area {
                index,
                queued: false,
            }),
            io: Mutex::new(()),
            deleted: AtomicBool::new(false),
            handed: AtomicBool::new(false),
            held: AtomicUsize::new(0),
            me: me.clone(),
            shared,
        })
    }

    fn area(&self) -> MutexGuard<'_, Area> {
        lock(&self.area)
    }

    /// Reports the bytes of sealed chunks the queue keeps now (`area` is its locked area);
    /// returns the node's total.
    fn report_held(&self, area: &Area) -> usize {
        let now = area.index.sealed_bytes();
        let old = self.held.swap(now, Ordering::AcqRel);
        self.shared.ahead.hold.report(old, now)
    }

    fn check_live(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Io(format!(
                "message store of queue {} used after the queue was deleted",
                self.name
            )));
        }
        Ok(())
    }

    /// Marks the queue deleted: later writes fail, its work is no longer collected. Returns the
    /// bytes its chunks counted as live, by segment (waiting for a write-ahead in flight).
    pub(super) fn delete(&self) -> Vec<(u64, u64)> {
        let _io = lock(&self.io);
        self.deleted.store(true, Ordering::Release);
        let area = self.area();
        let old = self.held.swap(0, Ordering::AcqRel);
        self.shared.ahead.hold.report(old, 0);
        area.index.accounted()
    }

    /// Runs `f` on the index, then puts the queue on the dirty list if `f` changed something.
    fn update<T>(&self, f: impl FnOnce(&mut Index) -> (T, bool)) -> T {
        let (out, push) = {
            let mut area = self.area();
            let (out, changed) = f(&mut area.index);
            let push = changed && !area.queued;
            if push {
                area.queued = true;
            }
            (out, push)
        };
        if push {
            lock(&self.shared.dirty).push(self.me.clone());
        }
        out
    }

    /// Takes the queue's work for a flush, and up to `budget` bytes of its chunks in segment
    /// `compact` to move. Waits for a write-ahead in flight, so that every chunk put before the
    /// flush began is in this work or already in the log; later write-aheads only touch chunks
    /// sealed after this, so the `io` lock is not held past collecting (a publisher's
    /// write-ahead never waits for an fsync).
    pub(super) fn collect(&self, compact: Option<(u64, u64)>) -> Option<(Work, Vec<Move>)> {
        let _io = lock(&self.io);
        if self.deleted.load(Ordering::Acquire) {
            return None;
        }
        let (work, moves, again) = {
            let mut area = self.area();
            let work = area.index.take_work(true, true);
            self.report_held(&area);
            // State writes put off until a flush in flight is done need the next flush.
            let again = area.index.has_deferred();
            area.queued = again;
            let moves: Vec<Move> = compact
                .map(|(seg, budget)| area.index.stored_in(seg, budget))
                .unwrap_or_default()
                .into_iter()
                .filter(|(first, ..)| !work.removes.iter().any(|(f, ..)| f == first))
                .map(|(first, from, live, state)| Move {
                    first,
                    from,
                    live,
                    state,
                    to: None,
                })
                .collect();
            (work, moves, again)
        };
        if again {
            lock(&self.shared.dirty).push(self.me.clone());
        }
        (!work.is_empty() || !moves.is_empty()).then_some((work, moves))
    }

    /// Records that a flush wrote `work` (with the new bodies' locations filled in) and moved
    /// `moves`; returns the bytes that stopped being live, by segment: what the moved chunks
    /// counted where they were, or their copies when they were set aside meanwhile (all the
    /// flush wrote, if the queue was deleted meanwhile).
    pub(super) fn finish(&self, work: &Work, moves: &[Move]) -> Vec<(u64, u64)> {
        let mut area = self.area();
        if self.deleted.load(Ordering::Acquire) {
            // Deleted since the flush collected it: `delete` gives back what the chunks count
            // where the index has them (now, or once it has the area after us), so what this
            // flush wrote for the queue, new chunks and moved copies, is dead where it went.
            let new = work.writes.iter().filter(|w| w.body.is_some());
            return new
                .filter_map(|w| w.loc)
                .chain(moves.iter().filter_map(|m| m.to))
                .map(|loc| (loc.seg, u64::from(loc.len)))
                .collect();
        }
        area.index.finish_work(work, true);
        let mut freed = Vec::new();
        for m in moves {
            match m.to {
                Some(to) => freed.push(match area.index.relocate(m.first, m.from, to) {
                    Some(bytes) => (m.from.seg, bytes),
                    // Set aside by a read meanwhile (its old place given back then): the copy
                    // belongs to nothing.
                    None => (to.seg, u64::from(to.len)),
                }),
                None => area.index.unmove(m.first),
            }
        }
        freed
    }

    /// Puts back a flush's work after it failed.
    pub(super) fn undo(&self, work: Work, moves: &[Move]) {
        self.update(|ix| {
            ix.undo_work(work);
            for m in moves {
                ix.unmove(m.first);
            }
            ((), true)
        });
    }

    /// Keeps the queue's sealed chunks for the next flush, or hands them to the write-ahead
    /// thread, or writes them here when enough wait already (see [`super::ahead`]).
    fn write_or_hand(&self) -> Result<(), StoreError> {
        let (sealed, keep) = {
            let area = self.area();
            let total = self.report_held(&area);
            let keep = if area.index.consumer_keeps_up() {
                self.shared.ahead.hold.chunks(total)
            } else {
                0
            };
            (area.index.sealed_count(), keep)
        };
        if sealed <= keep {
            return Ok(());
        }
        if sealed >= keep + super::ahead::INLINE_AFTER {
            return self.write_ahead(false);
        }
        if self.handed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if self.shared.ahead.hand(self.me.clone()) {
            return Ok(());
        }
        self.handed.store(false, Ordering::Release);
        self.write_ahead(false)
    }

    /// The write-ahead thread's turn: writes what is sealed now. A failure is logged and the
    /// chunks stay sealed: the next flush writes them, and fails loudly (no confirm) if the log
    /// still cannot take them.
    pub(super) fn write_handed(&self) {
        self.handed.store(false, Ordering::Release);
        if let Err(e) = self.write_ahead(true) {
            tracing::error!(queue = %self.name, error = %e, "write-ahead failed; the next flush writes the chunks");
        }
    }

    /// Appends sealed chunks to the body log ahead of a flush (bounding the memory they hold;
    /// no fsync). Their index entries follow in the next flush, which syncs the log first.
    /// Unless `wait`, skipped while a flush is collecting this queue or appending to the log:
    /// that flush, or the next, writes them, and the caller (a connection's task) does not
    /// wait for it.
    fn write_ahead(&self, wait: bool) -> Result<(), StoreError> {
        let io = if wait {
            Some(lock(&self.io))
        } else {
            try_lock(&self.io)
        };
        let Some(_io) = io else {
            return Ok(());
        };
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut work = {
            let mut area = self.area();
            let work = area.index.take_work(false, false);
            self.report_held(&area);
            work
        };
        if work.is_empty() {
            return Ok(());
        }
        match self.append_bodies(&mut work, wait) {
            Ok(false) => {
                self.undo(work, &[]);
                Ok(())
            }
            Ok(true) => {
                self.update(|ix| {
                    ix.finish_work(&work, false);
                    ((), true)
                });
                Ok(())
            }
            Err(e) => {
                self.undo(work, &[]);
                Err(e)
            }
        }
    }

    /// Appends the new chunk bodies of `work` to the body log and fills in their locations.
    /// Unless `wait`, gives up (false, nothing written) while another append is under way.
    pub(super) fn append_bodies(&self, work: &mut Work, wait: bool) -> Result<bool, StoreError> {
        let appends: Vec<_> = work
            .writes
            .iter()
            .filter_map(|w| Some((self.qid, w.first, w.body.as_ref()?.parts())))
            .collect();
        if appends.is_empty() {
            return Ok(true);
        }
        // Counted live before the writer is released (see `BodyLog::try_settled`).
        let count = |locs: &[Loc]| {
            #[cfg(test)]
            if let Some(f) = WHILE_APPENDING.with(|h| h.borrow_mut().take()) {
                f();
            }
            self.shared.count_live(locs);
        };
        let locs = if wait {
            self.shared.log.append(&appends, count)?
        } else {
            match self.shared.log.try_append(&appends, count)? {
                Some(locs) => locs,
                None => return Ok(false),
            }
        };
        let mut locs = locs.into_iter();
        for w in work.writes.iter_mut().filter(|w| w.body.is_some()) {
            w.loc = locs.next();
        }
        Ok(true)
    }

    /// Moves a chunk that a read found missing or damaged aside: forgotten now, its index
    /// entry moved to the quarantine by the next flush. `false` when the chunk moved in the
    /// meantime (compaction), so the read should simply try again.
    fn quarantine_chunk(&self, first: u64, loc: Loc, reason: &str) -> bool {
        let (lost, freed) = {
            let mut area = self.area();
            if area.index.loc_of(first) != Some(loc) {
                return false;
            }
            area.index.forget(first)
        };
        let key = record::index_key(self.qid, first);
        self.shared.quarantine.note(super::INDEX, &key, reason);
        let mut value = Vec::new();
        loc.encode(&mut value);
        value.extend_from_slice(reason.as_bytes());
        let mut pending = lock(&self.shared.pending);
        pending.ops.push((
            Target::Quarantine,
            Quarantine::key(super::INDEX, &key),
            Some(value),
        ));
        pending.ops.push((Target::Index, key.to_vec(), None));
        pending.freed.extend(freed);
        drop(pending);
        tracing::error!(queue = %self.name, first, lost, segment = loc.seg, offset = loc.offset, reason, "messages of a damaged chunk set aside");
        true
    }

    /// The live entries of id `from` or more of one read part, up to `limit`, into `out`.
    /// `Err` when its body is missing or damaged.
    fn read_part(
        &self,
        part: &ReadPart,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredMessage>,
    ) -> Result<Result<(), String>, StoreError> {
        let value: Bytes = match (&part.body, &part.loc) {
            (Some(b), _) => b.clone(),
            (None, Some(loc)) => match self.shared.log.read(loc, self.qid, part.first)? {
                Ok(v) => v,
                Err(reason) => return Ok(Err(reason)),
            },
            (None, None) => return Ok(Err("chunk without a location".into())),
        };
        let entries = match record::chunk_entries(&value) {
            Ok(e) => e,
            Err(DecodeError(reason)) => return Ok(Err(reason.into())),
        };
        let mut taken = Vec::new();
        for e in entries {
            if out.len() + taken.len() == limit {
                break;
            }
            let Some(i) = e.id.checked_sub(part.first) else {
                return Ok(Err("entry below its chunk's first id".into()));
            };
            if e.id >= from && part.live.get(i) {
                taken.push(e);
            }
        }
        // Messages sliced out of the chunk keep all of it alive until the last of them is
        // acked, which the memory budget does not see: a refill that takes a few messages of a
        // 256 KiB chunk, in each of a thousand queues, would hold gigabytes. Slice only when
        // nearly all of the chunk is taken (what is left over is within what a message's
        // budget charge allows for); else copy what is taken out, packed.
        let taken_bytes: usize = taken.iter().map(|e| e.range.len()).sum();
        let start = out.len();
        let mut push = |k: usize, record| {
            if let Some(e) = taken.get(k) {
                // At or past `part.first`: checked above.
                let i = e.id - part.first;
                out.push(StoredMessage {
                    id: e.id,
                    delivered: part.delivered.get(i),
                    delivery_count: part.counts.get(i),
                    record,
                });
            }
        };
        let decoded = if taken_bytes.saturating_mul(8) >= value.len().saturating_mul(7) {
            taken.iter().enumerate().try_for_each(|(k, e)| {
                push(k, e.decode(&value)?);
                Ok(())
            })
        } else {
            record::decode_packed(&value, &taken, &mut push)
        };
        if let Err(DecodeError(reason)) = decoded {
            // All or nothing: a chunk with one bad entry is moved aside whole.
            out.truncate(start);
            return Ok(Err(reason.into()));
        }
        Ok(Ok(()))
    }
}

/// A chunk moved by compaction: read from `from`, rewritten with its live entries only.
#[derive(Debug)]
pub(super) struct Move {
    pub(super) first: u64,
    pub(super) from: Loc,
    pub(super) live: super::super::chunk::Bits,
    /// The chunk's state when collected (written with the new location).
    pub(super) state: Vec<u8>,
    /// Where it went (set once appended).
    pub(super) to: Option<Loc>,
}

impl QueueStore for SledQueue {
    fn put(&self, id: u64, m: MessageView<'_>) -> Result<PutOutcome, StoreError> {
        self.check_live()?;
        let due = self.update(|ix| match ix.append(id, &m) {
            Ok(due) => (Ok(due), true),
            Err(e) => (Err(e), false),
        })?;
        Ok(if due {
            PutOutcome::WriteDue
        } else {
            PutOutcome::Buffered
        })
    }

    fn write_sealed(&self) -> Result<(), StoreError> {
        self.check_live()?;
        self.write_or_hand()
    }

    fn mark_delivered(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.mark_delivered(id)));
        Ok(())
    }

    fn set_delivery_count(&self, id: u64, count: u32) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.set_delivery_count(id, count)));
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.remove(id)));
        Ok(())
    }

    fn remove_from(&self, from_id: u64) -> Result<usize, StoreError> {
        self.check_live()?;
        Ok(self.update(|ix| {
            let n = ix.remove_from(from_id);
            (n, n > 0)
        }))
    }

    fn read(&self, from_id: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check_live()?;
        let mut out: Vec<StoredMessage> = Vec::with_capacity(limit.min(4096));
        let mut from = from_id;
        for _ in 0..MAX_READ_ROUNDS {
            let parts = self.area().index.plan_read(from, limit - out.len());
            let mut retry = false;
            for part in &parts {
                if out.len() == limit {
                    break;
                }
                if let Err(reason) = self.read_part(part, from, limit, &mut out)? {
                    let Some(loc) = part.loc.filter(|_| part.body.is_none()) else {
                        // A chunk in memory that does not parse: we wrote it, so this is a bug;
                        // skip it rather than loop.
                        tracing::error!(queue = %self.name, first = part.first, reason, "unreadable chunk in memory skipped");
                        continue;
                    };
                    self.quarantine_chunk(part.first, loc, &reason);
                    retry = true;
                    break;
                }
            }
            if !retry || out.len() == limit {
                return Ok(out);
            }
            if let Some(last) = out.last() {
                from = last.id.saturating_add(1);
            }
        }
        tracing::error!(queue = %self.name, "too many damaged chunks in one read");
        Ok(out)
    }

    fn len(&self) -> usize {
        self.area().index.len()
    }

    fn last_id(&self) -> Option<u64> {
        self.area().index.last_id()
    }
}
