//! The in-memory side of a chunked message area: which chunk holds which ids, which of them are
//! live (stored and not acked) or delivered, and the open chunk that puts append to.
//!
//! A durable queue's persistent messages are stored in chunks: runs of messages with ascending
//! ids, encoded one after the other into one value (layout in [`record`]; in memory, a value is
//! the parts it was built from, the bodies of large messages referenced rather than copied:
//! `chunk::value`). A chunk is appended
//! to the body log once, when it is sealed (full, or at a flush), and moved only by compaction;
//! acks, delivered marks and delivery counts only change its state (two bitmaps over its id
//! span and a sparse list of counts), written with its location as its index entry. A chunk
//! whose every entry is acked is deleted; one whose every entry is acked before it is sealed is
//! never written at all, and entries acked before their chunk is written are left out of it.
//!
//! This module owns that bookkeeping and nothing else: no I/O, no locks. The store that uses it
//! ([`SledStore`](super::SledStore)) keeps an [`Index`] per queue behind a mutex, asks
//! [`Index::take_work`] what to write, writes it, and reports back with [`Index::finish_work`]
//! or [`Index::undo_work`]. In memory it holds the open chunk, chunks sealed but not yet written
//! (a put that fills a chunk asks its caller to have it written; the store keeps a few for the
//! flush, so that entries acked meanwhile are left out, and bounds how many wait, see
//! `sled::ahead`) and, per
//! chunk, a slot of about 100 bytes in a ring buffer (`chunk::list`) plus a bit per id of its span
//! (two while it is being consumed): about 0.1 bytes per stored 16-byte message in full chunks,
//! 2 per 4 KiB one. (It keeps every chunk of the queue, not only a window of them: memory grows
//! with the backlog by that much, and with the number of chunks: a queue that takes few
//! messages between two group commits seals a small chunk at each.)

use bytes::Bytes;

use super::bodylog::Loc;
use super::record;
use super::{MessageView, StoreError};

mod list;
mod state;
mod value;
use list::ChunkList;
pub use state::{Bits, Counts};
pub use value::Value;

/// A chunk is sealed when its value would grow past this many bytes (a message larger than
/// this gets a chunk of its own): large enough that a backlog of two million 4 KiB messages
/// needs about 33,000 chunks in memory (about 100 bytes each), small enough that a queue's open
/// chunk stays a modest buffer. A chunk is one body-log record, read with one `pread`.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// A chunk is sealed when its ids would span more than this (ids of a queue's transient messages
/// are gaps in its chunks), which bounds each state record to 2 x 512 bytes.
pub const MAX_CHUNK_SPAN: u64 = 4096;

/// Where a chunk's entries are (the bytes themselves are kept by the [`Index`]: the open
/// chunk's buffer and the sealed ones waiting or being written; most chunks are stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// The open chunk: puts append to [`Index::open_buf`].
    Open,
    /// Sealed, waiting in [`Index::sealed`] to be written (its value in [`Index::bodies`]).
    Sealed,
    /// Handed out by [`Index::take_work`]; its value is kept for readers until the write is done.
    Writing,
    /// In the storage engine (with its state record).
    Stored,
    /// Not a chunk: the place of one removed from the middle of the list (see [`list`]).
    Gone,
}

/// Delivery marks of a chunk: only chunks being consumed (or recovered with unacked
/// deliveries) have any, so they are kept apart from the chunk.
#[derive(Clone, Debug, Default)]
struct Marks {
    /// Delivered ids, bit `id - first`.
    delivered: Bits,
    /// Delivery counts set, as (id - first, count), ascending; only live ids.
    counts: Counts,
}

/// One chunk's bookkeeping (about 100 bytes: a queue of many small chunks keeps one each).
#[derive(Debug)]
struct Chunk {
    /// Its first id, its key.
    first: u64,
    /// The highest id it holds or held.
    last: u64,
    /// Live ids (stored, not acked), bit `id - first`.
    live: Bits,
    /// Delivered ids and delivery counts, once there are any.
    marks: Option<Box<Marks>>,
    /// Where its record is in the body log, once written.
    loc: Option<Loc>,
    /// Bytes of its record counted as live in its segment: the whole record when written,
    /// then shrinking with its live entries (`len * live / base`), so that a segment kept by a
    /// few old messages shows as mostly dead and gets compacted.
    accounted: u32,
    live_count: usize,
    /// Live entries when the record was written (or found at startup).
    base: usize,
    stage: Stage,
    /// Being copied by compaction: its index entry is written by that flush, so state writes
    /// wait until the move is done (a pipelined flush must not write the old location).
    moving: bool,
    /// Its state changed since the engine's copy was written (only tracked once the body is
    /// handed out: until then the state is written with the body).
    dirty: bool,
}

impl Chunk {
    /// A new chunk at `first`, with nothing in it yet.
    fn new(first: u64, stage: Stage) -> Chunk {
        Chunk {
            first,
            last: first,
            live: Bits::default(),
            marks: None,
            loc: None,
            accounted: 0,
            live_count: 0,
            base: 0,
            stage,
            moving: false,
            dirty: false,
        }
    }

    /// The place of a chunk removed from the middle of the list.
    fn gap(first: u64, last: u64) -> Chunk {
        Chunk {
            last,
            ..Chunk::new(first, Stage::Gone)
        }
    }

    fn state(&self) -> Vec<u8> {
        let n = record::bitmap_len(self.first, self.last);
        let (delivered, counts) = match &self.marks {
            Some(m) => (
                m.delivered.to_bytes(n, Some(&self.live)),
                m.counts.live(&self.live),
            ),
            None => (vec![0; n], Vec::new()),
        };
        record::encode_state(self.last, &self.live.to_bytes(n, None), &delivered, &counts)
    }

    /// Marks the state changed (and the chunk for a state write, once it is in the engine).
    fn touch(&mut self, dirty: &mut Vec<u64>) {
        if !self.dirty {
            self.dirty = true;
            if self.in_engine() {
                dirty.push(self.first);
            }
        }
    }

    fn in_engine(&self) -> bool {
        matches!(self.stage, Stage::Writing | Stage::Stored)
    }

    fn marks_mut(&mut self) -> &mut Marks {
        self.marks.get_or_insert_with(Box::default)
    }

    /// Bytes of its record at `loc`.
    fn set_accounted(&mut self, bytes: u64) {
        self.accounted = u32::try_from(bytes).unwrap_or(u32::MAX);
    }
}

/// One chunk to write: its body when it is new, and its state.
#[derive(Debug)]
pub struct ChunkWrite {
    /// The chunk's first id (its key).
    pub first: u64,
    /// A newly sealed chunk's value; `None` when only the state changed.
    pub body: Option<Value>,
    /// The state record's value.
    pub state: Vec<u8>,
    /// Where the body is in the body log: the current place for a state write, filled in by
    /// the store once it has appended a new body.
    pub loc: Option<Loc>,
    /// Bytes of the record (at `loc`) that stopped counting as live with this state.
    pub freed: u64,
}

/// What [`Index::take_work`] asks the store to write, all of it in one atomic batch.
#[derive(Debug, Default)]
pub struct Work {
    /// Chunks and states to insert.
    pub writes: Vec<ChunkWrite>,
    /// Chunks (first id, location, bytes no longer live) to delete: every entry is acked.
    pub removes: Vec<(u64, Option<Loc>, u64)>,
}

impl Work {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.removes.is_empty()
    }
}

/// Part of a read: one chunk's entries (or the key to fetch them by) and a snapshot of which of
/// them are live and delivered.
#[derive(Debug)]
pub struct ReadPart {
    /// The chunk's first id (its key).
    pub first: u64,
    /// Its value if it is in memory; `None`: fetch it from the engine.
    pub body: Option<Bytes>,
    /// Where to read it from when `body` is `None`.
    pub loc: Option<Loc>,
    /// Live ids, bit `id - first`.
    pub live: Bits,
    /// Delivered ids, bit `id - first`.
    pub delivered: Bits,
    /// Delivery counts.
    pub counts: Counts,
}

/// One queue's chunks. See the module docs.
#[derive(Debug, Default)]
pub struct Index {
    chunks: ChunkList,
    /// Key of the open chunk, always the last one.
    open: Option<u64>,
    /// The open chunk's entries.
    open_buf: value::Builder,
    /// Values of the sealed chunks waiting or being written, by key (few: see `sled::ahead`).
    bodies: Vec<(u64, Value)>,
    /// Keys of sealed chunks not yet handed out, oldest first.
    sealed: Vec<u64>,
    /// Keys of chunks in the engine whose state changed (each once: see [`Chunk::dirty`]).
    dirty: Vec<u64>,
    count: usize,
    /// The highest id put, or found live at recovery: the next put must be above it.
    last_put: Option<u64>,
    /// How long the last chunk sealed was: the next one starts at that size (a busy queue's
    /// chunks fill up again, and growing there by doubling copies every byte once more).
    last_sealed_len: usize,
    /// Flushes to go during which a consumer counts as reading entries before they are
    /// written: set to [`READ_FLUSHES`] by a delivery from an unwritten chunk, one less at each
    /// flush's [`Index::take_work`].
    reads_unwritten: u8,
}

/// How many flushes a delivery from an unwritten chunk counts for (see
/// [`Index::consumer_keeps_up`]).
const READ_FLUSHES: u8 = 4;

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a chunk found in the engine at startup (in ascending key order). Returns its live
    /// count; a chunk with none should be deleted rather than added.
    pub fn recover(
        &mut self,
        first: u64,
        last: u64,
        loc: Loc,
        live: Bits,
        delivered: Bits,
        counts: Counts,
    ) -> usize {
        let live_count = live.count_from(0);
        if let Some(top) = live.last_set() {
            let top = first.saturating_add(top);
            self.last_put = Some(self.last_put.map_or(top, |l| l.max(top)));
        }
        self.count += live_count;
        let marks = (delivered != Bits::default() || counts != Counts::default())
            .then(|| Box::new(Marks { delivered, counts }));
        let mut chunk = Chunk {
            last,
            live,
            marks,
            loc: Some(loc),
            live_count,
            base: live_count,
            ..Chunk::new(first, Stage::Stored)
        };
        chunk.set_accounted(u64::from(loc.len));
        if let Some(old) = self.chunks.get(first) {
            // The same key twice (a damaged index): the later one stands.
            self.count -= old.live_count;
        }
        self.chunks.insert(chunk);
        live_count
    }

    /// Appends message `id` to the open chunk, sealing it first if `m` would overflow it.
    /// Returns whether it sealed a chunk, which now waits to be written
    /// ([`PutOutcome::WriteDue`](super::PutOutcome)).
    pub fn append(&mut self, id: u64, m: &MessageView<'_>) -> Result<bool, StoreError> {
        if let Some(last) = self.last_put
            && id <= last
        {
            return Err(StoreError::OutOfOrder { id, last });
        }
        let len = record::entry_len(m);
        let sealed_before = self.sealed.len();
        if let Some(first) = self.open
            && (self.open_buf.len() + len > MAX_CHUNK_BYTES || id - first >= MAX_CHUNK_SPAN)
        {
            self.seal_open();
        }
        let first = match self.open {
            Some(first) => first,
            None => {
                // A lone small message in a queue of many costs a small buffer, a busy queue's
                // next chunk what its last one held.
                let cap = self
                    .last_sealed_len
                    .min(MAX_CHUNK_BYTES)
                    .max(value::Builder::encoded_len(m) + 1)
                    .max(256);
                self.open_buf = value::Builder::with_capacity(cap);
                self.chunks.insert(Chunk::new(id, Stage::Open));
                self.open = Some(id);
                id
            }
        };
        let Some(chunk) = self.chunks.get_mut(first) else {
            return Err(StoreError::Io("invariant: the open chunk is listed".into()));
        };
        self.open_buf.push(id, m);
        chunk.last = id;
        chunk.live.set(id - first);
        chunk.live_count += 1;
        self.count += 1;
        self.last_put = Some(id);
        Ok(self.sealed.len() > sealed_before)
    }

    /// Seals the open chunk: it waits to be written, or is dropped if every entry is acked.
    fn seal_open(&mut self) {
        let Some(first) = self.open.take() else {
            return;
        };
        let buf = std::mem::take(&mut self.open_buf);
        let Some(c) = self.chunks.get_mut(first) else {
            return;
        };
        if c.live_count == 0 {
            self.chunks.remove(first);
            return;
        }
        self.last_sealed_len = buf.encoded();
        c.stage = Stage::Sealed;
        self.bodies.push((first, buf.finish()));
        self.sealed.push(first);
    }

    /// The value kept in memory for sealed chunk `first`.
    fn body(&self, first: u64) -> Option<&Value> {
        self.bodies.iter().find(|b| b.0 == first).map(|b| &b.1)
    }

    /// Lets go of the value kept for sealed chunk `first`.
    fn drop_body(&mut self, first: u64) {
        self.bodies.retain(|b| b.0 != first);
    }

    /// Marks `id` delivered; false if it is not live or was marked already.
    pub fn mark_delivered(&mut self, id: u64) -> bool {
        let Some(c) = self.chunks.holding_mut(id) else {
            return false;
        };
        let i = id - c.first;
        if !c.live.get(i) || !c.marks_mut().delivered.set(i) {
            return false;
        }
        if !c.in_engine() {
            self.reads_unwritten = READ_FLUSHES;
        }
        c.touch(&mut self.dirty);
        true
    }

    /// Whether a consumer has been taking entries before they were written, within the last
    /// few flushes: then it may ack sealed chunks' entries before the next flush, which leaves
    /// them out (the store keeps such a queue's sealed chunks for that flush).
    pub fn consumer_keeps_up(&self) -> bool {
        self.reads_unwritten > 0
    }

    /// Sets `id`'s delivery count; false if it is not live or the count is unchanged.
    pub fn set_delivery_count(&mut self, id: u64, count: u32) -> bool {
        let Some(c) = self.chunks.holding_mut(id) else {
            return false;
        };
        let i = id - c.first;
        if !c.live.get(i) {
            return false;
        }
        let changed = match &mut c.marks {
            Some(m) => m.counts.set(i, count),
            None if count == 0 => false,
            None => c.marks_mut().counts.set(i, count),
        };
        if !changed {
            return false;
        }
        c.touch(&mut self.dirty);
        true
    }

    /// Acks `id`; false if it is not live.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(c) = self.chunks.holding_mut(id) else {
            return false;
        };
        let i = id - c.first;
        if !c.live.clear(i) {
            return false;
        }
        c.live_count -= 1;
        self.count -= 1;
        if let Some(m) = &mut c.marks {
            m.counts.set(i, 0);
        }
        c.touch(&mut self.dirty);
        true
    }

    /// Acks every live id of `from` or more; returns how many there were.
    pub fn remove_from(&mut self, from: u64) -> usize {
        let mut removed = 0;
        for c in self.chunks.starting_mut(from) {
            let n = c.live.clear_from(from.saturating_sub(c.first));
            if n == 0 {
                continue;
            }
            c.live_count -= n;
            removed += n;
            c.touch(&mut self.dirty);
        }
        self.count -= removed;
        removed
    }

    /// Live messages.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no message is live.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The highest live id.
    pub fn last_id(&self) -> Option<u64> {
        self.chunks
            .iter()
            .rev()
            .find_map(|c| Some(c.first + c.live.last_set()?))
    }

    /// Whether state writes were put off by [`Index::take_work`] (their chunks are still being
    /// written by a flush in flight): the queue needs the next flush too.
    pub fn has_deferred(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Sealed chunks waiting to be written.
    pub fn sealed_count(&self) -> usize {
        self.sealed.len()
    }

    /// Bytes of the sealed chunks waiting to be written.
    pub fn sealed_bytes(&self) -> usize {
        self.sealed
            .iter()
            .filter_map(|&first| Some(self.body(first)?.len()))
            .sum()
    }

    /// Whether a flush has anything to write.
    pub fn has_work(&self) -> bool {
        !self.sealed.is_empty() || !self.dirty.is_empty() || self.open.is_some()
    }

    /// Which chunks hold the first `limit` live messages of id `from` or more, with a snapshot
    /// of their bits. Chunks in memory come with their value (the open one copied).
    pub fn plan_read(&self, from: u64, limit: usize) -> Vec<ReadPart> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        let mut wanted = limit;
        for c in self.chunks.starting(from) {
            let n = c.live.count_from(from.saturating_sub(c.first));
            if n == 0 {
                continue;
            }
            let body = match c.stage {
                Stage::Open => Some(self.open_buf.to_bytes()),
                Stage::Sealed | Stage::Writing => self.body(c.first).map(Value::to_bytes),
                Stage::Stored | Stage::Gone => None,
            };
            let marks = c.marks.as_deref().cloned().unwrap_or_default();
            out.push(ReadPart {
                first: c.first,
                body,
                loc: c.loc,
                live: c.live.clone(),
                delivered: marks.delivered,
                counts: marks.counts,
            });
            wanted = wanted.saturating_sub(n);
            if wanted == 0 {
                break;
            }
        }
        out
    }

    /// Hands out what to write: every sealed chunk (the open one too when `seal_open`), and
    /// when `states`, the state of every chunk in the engine that changed (deleting those left
    /// with no live entry). The caller writes it all atomically, then calls
    /// [`Index::finish_work`] (or [`Index::undo_work`] if that failed); only one `Work` may be
    /// out at a time.
    pub fn take_work(&mut self, seal_open: bool, states: bool) -> Work {
        let mut work = Work::default();
        if seal_open {
            self.seal_open();
        }
        if states {
            self.reads_unwritten = self.reads_unwritten.saturating_sub(1);
        }
        for first in std::mem::take(&mut self.sealed) {
            let body = self.body(first).cloned();
            let Some(c) = self.chunks.get_mut(first) else {
                continue;
            };
            if c.live_count == 0 {
                self.chunks.remove(first);
                self.drop_body(first);
                continue;
            }
            let (Stage::Sealed, Some(body)) = (c.stage, body) else {
                continue;
            };
            let value = compact(&body, first, &c.live);
            c.stage = Stage::Writing;
            c.dirty = false;
            c.base = c.live_count;
            work.writes.push(ChunkWrite {
                first,
                body: Some(value),
                state: c.state(),
                loc: None,
                freed: 0,
            });
        }
        if states {
            self.take_states(&mut work);
        }
        work
    }

    /// The state writes and removals of [`Index::take_work`].
    fn take_states(&mut self, work: &mut Work) {
        let mut later = Vec::new();
        for first in std::mem::take(&mut self.dirty) {
            let Some(c) = self.chunks.get_mut(first) else {
                continue;
            };
            if !c.dirty {
                continue;
            }
            if c.moving || c.stage == Stage::Writing {
                // A flush still in flight writes this chunk's entry: the next one writes the
                // state as it is then.
                later.push(first);
                continue;
            }
            c.dirty = false;
            if c.live_count == 0 {
                work.removes
                    .push((first, c.loc, u64::from(std::mem::take(&mut c.accounted))));
            } else {
                let still = c.loc.map_or(0, |l| {
                    u64::from(l.len) * c.live_count as u64 / c.base.max(c.live_count).max(1) as u64
                });
                let freed = u64::from(c.accounted).saturating_sub(still);
                c.set_accounted(u64::from(c.accounted) - freed);
                work.writes.push(ChunkWrite {
                    first,
                    body: None,
                    state: c.state(),
                    loc: c.loc,
                    freed,
                });
            }
        }
        self.dirty.extend(later);
    }

    /// Records that `work` is in the engine: written chunks no longer need their value in
    /// memory, and deleted ones are forgotten. Without `states_written` (only the bodies were
    /// written), the written chunks' states are due at the next full [`Index::take_work`].
    pub fn finish_work(&mut self, work: &Work, states_written: bool) {
        for w in work.writes.iter().filter(|w| w.body.is_some()) {
            if let Some(c) = self.chunks.get_mut(w.first) {
                c.stage = Stage::Stored;
                c.loc = w.loc;
                c.set_accounted(w.loc.map_or(0, |l| u64::from(l.len)));
                if !states_written {
                    c.dirty = true;
                    self.dirty.push(w.first);
                }
            }
            self.drop_body(w.first);
        }
        for (first, ..) in &work.removes {
            // Nothing revives a chunk with no live entry, so it is still dead.
            self.chunks.remove(*first);
        }
    }

    /// Puts back what `work` was to write, for the next attempt.
    pub fn undo_work(&mut self, work: Work) {
        for w in work.writes {
            let Some(c) = self.chunks.get_mut(w.first) else {
                continue;
            };
            c.set_accounted(u64::from(c.accounted) + w.freed);
            if c.stage == Stage::Writing {
                c.stage = Stage::Sealed;
                self.sealed.push(w.first);
            } else if !c.dirty {
                c.dirty = true;
                self.dirty.push(w.first);
            }
        }
        for (first, _, freed) in work.removes {
            if let Some(c) = self.chunks.get_mut(first) {
                c.set_accounted(u64::from(c.accounted) + freed);
                if !c.dirty {
                    c.dirty = true;
                    self.dirty.push(first);
                }
            }
        }
        self.sealed.sort_unstable();
    }

    /// The chunks stored in body-log segment `seg` (for compaction), up to `budget` bytes:
    /// (first id, location, live ids, state record).
    /// They are marked moving until [`Index::relocate`] or [`Index::unmove`].
    pub fn stored_in(&mut self, seg: u64, budget: u64) -> Vec<(u64, Loc, Bits, Vec<u8>)> {
        let mut out = Vec::new();
        let mut taken = 0u64;
        for c in self.chunks.iter_mut() {
            let Some(loc) = c.loc.filter(|l| l.seg == seg) else {
                continue;
            };
            if c.stage != Stage::Stored || c.live_count == 0 || c.moving {
                continue;
            }
            if taken >= budget {
                break;
            }
            taken += u64::from(loc.len);
            c.moving = true;
            // The move writes the entry with the state as it is now.
            c.dirty = false;
            out.push((c.first, loc, c.live.clone(), c.state()));
        }
        out
    }

    /// Ends a move that did not happen.
    pub fn unmove(&mut self, first: u64) {
        if let Some(c) = self.chunks.get_mut(first) {
            c.moving = false;
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(first);
            }
        }
    }

    /// Records that the chunk at `first` moved from `old` to `new`: returns the bytes it still
    /// counted as live at `old`, `None` (and nothing done) when it is gone or elsewhere.
    pub fn relocate(&mut self, first: u64, old: Loc, new: Loc) -> Option<u64> {
        let c = self.chunks.get_mut(first)?;
        c.moving = false;
        if c.loc != Some(old) {
            return None;
        }
        c.loc = Some(new);
        c.base = c.live_count;
        let was = u64::from(c.accounted);
        c.set_accounted(u64::from(new.len));
        Some(was)
    }

    /// Where the chunk at `first` is stored, if it is.
    pub fn loc_of(&self, first: u64) -> Option<Loc> {
        self.chunks.get(first).and_then(|c| c.loc)
    }

    /// Forgets a chunk found damaged or missing in the engine; returns the live messages lost.
    /// It also returns the segment and bytes it counted as live there.
    pub fn forget(&mut self, first: u64) -> (usize, Option<(u64, u64)>) {
        let Some(c) = self.chunks.remove(first) else {
            return (0, None);
        };
        if self.open == Some(first) {
            self.open = None;
            self.open_buf = value::Builder::default();
        }
        self.drop_body(first);
        self.sealed.retain(|&s| s != first);
        self.count -= c.live_count;
        (c.live_count, c.loc.map(|l| (l.seg, u64::from(c.accounted))))
    }

    /// The bytes every stored chunk counts as live, by segment (when the queue is deleted).
    pub fn accounted(&self) -> Vec<(u64, u64)> {
        self.chunks
            .iter()
            .filter_map(|c| Some((c.loc?.seg, u64::from(c.accounted))))
            .collect()
    }

    /// Forgets every chunk (the engine's copies are dropped by the caller); ids keep ascending.
    pub fn reset(&mut self) {
        let last_put = self.last_put;
        *self = Index::default();
        self.last_put = last_put;
    }

    /// Chunks currently known (for tests and metrics).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// A sealed chunk's value without the entries acked before it was written (the value itself
/// when none was), referencing the kept entries' bytes where they are.
pub fn compact(body: &Value, first: u64, live: &Bits) -> Value {
    // We wrote this value ourselves, so it parses; if it somehow does not, write it whole and
    // let the state's bitmaps say what is live.
    body.retain(|id| id.checked_sub(first).is_some_and(|i| live.get(i)))
        .unwrap_or_else(|| body.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(body: &Bytes) -> MessageView<'_> {
        MessageView {
            exchange: "",
            routing_key: "q",
            properties: &[0, 0],
            meta: b"m",
            body,
        }
    }

    #[test]
    fn bits_set_clear_count_and_bytes() {
        let mut b = Bits::default();
        for i in [0, 5, 63, 64, 200, 4095] {
            assert!(b.set(i));
        }
        assert!(!b.set(5));
        assert!(b.get(200) && !b.get(201) && !b.get(1 << 40));
        assert_eq!(b.count_from(0), 6);
        assert_eq!(b.count_from(6), 4);
        assert_eq!(b.count_from(64), 3);
        assert_eq!(b.last_set(), Some(4095));
        let bytes = b.to_bytes(512, None);
        assert_eq!(bytes[0], 0b10_0001);
        assert_eq!(Bits::from_bytes(&bytes, 4096), b);
        // Bits past the span are dropped when read back.
        assert_eq!(Bits::from_bytes(&bytes, 201).last_set(), Some(200));
        assert!(b.clear(4095) && !b.clear(4095));
        assert_eq!(b.clear_from(64), 2);
        assert_eq!(b.last_set(), Some(63));
        let mut mask = Bits::default();
        mask.set(5);
        assert_eq!(b.to_bytes(1, Some(&mask)), [0b10_0000]);
        assert_eq!(Bits::default().last_set(), None);
    }

    #[test]
    fn entries_acked_before_sealing_are_never_written() {
        let mut ix = Index::new();
        for id in 1..=10 {
            assert!(
                !ix.append(id, &view(&Bytes::from_static(b"x")))
                    .expect("append")
            );
        }
        for id in [2, 3, 10] {
            assert!(ix.remove(id));
        }
        let work = ix.take_work(true, true);
        assert_eq!(work.writes.len(), 1);
        let body = work.writes[0].body.clone().expect("a new chunk").to_bytes();
        let ids: Vec<u64> = record::chunk_entries(&body)
            .expect("entries")
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(ids, [1, 4, 5, 6, 7, 8, 9]);
        ix.finish_work(&work, true);
        // A chunk acked entirely while open is dropped without a write.
        for id in 11..=20 {
            let _ = ix
                .append(id, &view(&Bytes::from_static(b"y")))
                .expect("append");
            assert!(ix.remove(id));
        }
        assert!(ix.take_work(true, true).is_empty());
        assert_eq!(ix.chunk_count(), 1);
        assert_eq!((ix.len(), ix.last_id()), (7, Some(9)));
    }

    #[test]
    fn full_chunks_are_sealed_and_due() {
        let mut ix = Index::new();
        let body = Bytes::from(vec![7u8; 4000]);
        let mut due_at = Vec::new();
        for id in 0..200 {
            if ix.append(id, &view(&body)).expect("append") {
                due_at.push(id);
            }
        }
        // 256 KiB hold 65 entries of 4,032 bytes: the 66th seals the first chunk. Only the put
        // that seals one says so (the chunk waits for its writer, not for every later put).
        assert_eq!(due_at, vec![65, 130, 195]);
        let work = ix.take_work(false, false);
        assert!(work.writes.len() >= 3);
        assert!(
            work.writes
                .iter()
                .all(|w| w.body.as_ref().is_some_and(|b| b.len() <= MAX_CHUNK_BYTES))
        );
        ix.finish_work(&work, true);
        // The open chunk stays open without `seal_open`, and the span cap also seals.
        assert!(ix.open.is_some());
        let mut ix = Index::new();
        let _ = ix
            .append(0, &view(&Bytes::from_static(b"a")))
            .expect("append");
        assert!(
            ix.append(MAX_CHUNK_SPAN, &view(&Bytes::from_static(b"b")))
                .expect("append")
        );
    }

    #[test]
    fn puts_must_ascend() {
        let mut ix = Index::new();
        let _ = ix
            .append(5, &view(&Bytes::from_static(b"a")))
            .expect("append");
        assert!(matches!(
            ix.append(5, &view(&Bytes::from_static(b"b"))),
            Err(StoreError::OutOfOrder { id: 5, last: 5 })
        ));
        assert!(ix.remove(5));
        assert!(ix.append(4, &view(&Bytes::from_static(b"b"))).is_err());
        assert!(ix.append(6, &view(&Bytes::from_static(b"b"))).is_ok());
    }

    #[test]
    fn acks_after_writing_rewrite_the_state_and_remove_dead_chunks() {
        let mut ix = Index::new();
        for id in 0..4 {
            let _ = ix
                .append(id, &view(&Bytes::from_static(b"m")))
                .expect("append");
        }
        let work = ix.take_work(true, true);
        ix.finish_work(&work, true);
        assert!(ix.mark_delivered(1));
        assert!(!ix.mark_delivered(1));
        assert!(ix.remove(0));
        let work = ix.take_work(true, true);
        assert_eq!(work.writes.len(), 1);
        assert!(work.writes[0].body.is_none());
        let state = record::decode_state(0, &work.writes[0].state).expect("state");
        assert_eq!(
            (state.last, state.live, state.delivered),
            (3, &[0b1110][..], &[0b10][..])
        );
        ix.finish_work(&work, true);
        assert_eq!(ix.remove_from(0), 3);
        let work = ix.take_work(true, true);
        assert_eq!(work.removes.iter().map(|r| r.0).collect::<Vec<_>>(), [0]);
        // A failed write is put back and handed out again.
        ix.undo_work(work);
        let work = ix.take_work(true, true);
        assert_eq!(work.removes.iter().map(|r| r.0).collect::<Vec<_>>(), [0]);
        ix.finish_work(&work, true);
        assert_eq!(ix.chunk_count(), 0);
        assert!(ix.is_empty());
    }
}
