//! Paging: where ready messages beyond the memory window wait, and how they come back.
//!
//! Persistent messages of a durable queue are in its store already (put at publish), so paging
//! them costs nothing; they are read back by id from the paged tail's start. Transient ones
//! first wait in the queue's in-memory tail (`State::tail`), then go to the queue's spill file
//! (a FIFO), written in the order of their ids.
//!
//! All of it runs under the pager lock and never under the queue's lock: the queue lock is
//! taken briefly to plan (how many, from where; take the tail) and again to insert what was
//! read. The pager lock is always taken first, so tail writes and read-backs are ordered, and
//! refills do not overlap. Reading from two sources (store and spill) keeps id order by a
//! frontier: only messages up to the lowest id that every source with more to give has
//! reached are inserted; spill messages beyond it wait in `lookahead`, store ones are read
//! again next time.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};

use super::super::Queue;
use super::super::outcome::Followups;
use super::recovery::to_queued;
use super::{ClassicQueue, State, Work};
use crate::broker::budget::{REFILL_FLOOR, REFILL_FLOOR_BYTES};
use crate::broker::message::QueuedMessage;
use crate::broker::time::Now;
use crate::storage::{Spill, StoreError, StoredMessage};

/// Each lane's spill file and what was read from it but not yet inserted.
pub(super) struct Pager {
    lanes: Vec<PagerLane>,
}

/// One priority lane's spill file and read-back state.
#[derive(Default)]
struct PagerLane {
    spill: Option<Box<dyn Spill>>,
    /// Transient messages read back (or taken from the tail) beyond the last merge frontier;
    /// all older than anything in the spill file.
    lookahead: VecDeque<QueuedMessage>,
}

impl Pager {
    /// A pager for `lanes` priority lanes.
    pub(super) fn new(lanes: usize) -> Pager {
        Pager {
            lanes: (0..lanes.max(1)).map(|_| PagerLane::default()).collect(),
        }
    }

    /// Lane `lane`'s read-back lookahead and the first messages of its spill file, up to
    /// `limit` each, left in place (browsing).
    pub(super) fn peek_lane(
        &mut self,
        lane: usize,
        limit: usize,
    ) -> Result<(Vec<QueuedMessage>, Vec<Spilled>), StoreError> {
        let Some(pl) = self.lanes.get_mut(lane) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let lookahead = pl.lookahead.iter().take(limit).cloned().collect();
        let spilled = match pl.spill.as_mut() {
            Some(s) if !s.is_empty() => s.peek(limit)?,
            _ => Vec::new(),
        };
        Ok((lookahead, spilled))
    }

    /// Drops the spill files (the queue is gone).
    pub(super) fn close(&mut self) {
        for l in &mut self.lanes {
            l.spill = None;
            l.lookahead.clear();
        }
    }
}

impl PagerLane {
    /// Messages in the spill file.
    fn spilled(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.len())
    }
}

/// A message read from a spill file: its id and record.
pub(super) type Spilled = (u64, crate::storage::MessageRecord);

/// What one refill round reads.
struct Plan {
    /// The lane read back (the head lane).
    lane: usize,
    want: usize,
    paged_start: u64,
    next_id: u64,
    /// Every lane's tail, taken to be written (each to its own spill file).
    tails: Vec<Vec<QueuedMessage>>,
    epoch: u64,
}

/// Most store records a lane's read-back scans per round (a priority lane skips the other
/// lanes' messages).
const SCAN_LIMIT: usize = 16 * 1024;

impl ClassicQueue {
    pub(super) fn pager(&self) -> MutexGuard<'_, Pager> {
        self.pager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the lanes' spill tails to their spill files (opened on first use).
    pub(super) fn flush_tail(&self) -> Result<(), StoreError> {
        let mut pager = self.pager();
        let tails = {
            let mut st = self.lock();
            let (tails, bytes) = st.ready.take_tails();
            st.share.credit(&self.deps.budget, bytes);
            tails
        };
        for (lane, tail) in tails.into_iter().enumerate() {
            self.write_spill(&mut pager, lane, tail)?;
        }
        Ok(())
    }

    fn write_spill(
        &self,
        pager: &mut Pager,
        lane: usize,
        tail: Vec<QueuedMessage>,
    ) -> Result<(), StoreError> {
        if tail.is_empty() {
            return Ok(());
        }
        let n = pager.lanes.len();
        let Some(pl) = pager.lanes.get_mut(lane) else {
            return Ok(());
        };
        if pl.spill.is_none() {
            // A priority queue has a spill file per lane, named apart from the queue's.
            let name = if n == 1 {
                self.name.to_string()
            } else {
                format!("{}\u{0}priority-{lane}", self.name)
            };
            pl.spill = Some(self.deps.root.open_spill(&self.vhost, &name)?);
        }
        if let Some(spill) = pl.spill.as_mut() {
            for qm in &tail {
                let meta = qm.meta();
                spill.push(qm.id, super::to_view(&qm.msg, &meta))?;
            }
        }
        Ok(())
    }

    /// Reads paged messages back into memory while the queue wants them (consumers with
    /// credit bound how much that is), dispatching after each batch. With `wait`, waits for a
    /// refill another thread runs; without, asks that thread to go on and returns.
    pub(super) fn refill(
        &self,
        q: &Arc<Queue>,
        now: Now,
        fx: &mut Followups,
        wait: bool,
    ) -> Result<(), StoreError> {
        loop {
            let mut pager = if wait {
                self.pager()
            } else {
                match self.pager.try_lock() {
                    Ok(p) => p,
                    Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        // The refill running now looks at this before it lets go.
                        self.refill_asked.store(true, Ordering::Release);
                        return Ok(());
                    }
                }
            };
            self.refill_asked.store(false, Ordering::Release);
            while let Some(mut plan) = self.plan_refill() {
                let back = self.read_paged(&mut pager, &mut plan)?;
                let mut work = Work::default();
                {
                    let mut st = self.lock();
                    if st.epoch != plan.epoch || st.deleted {
                        return Ok(());
                    }
                    // A priority lane's scan may skip only other lanes' messages: it moved on.
                    let progress = !back.read.is_empty()
                        || back.read_to.is_some_and(|to| to >= plan.paged_start);
                    self.insert_read(&mut st, plan.lane, back);
                    // Room claimed for messages the read did not find goes back.
                    st.share.credit(&self.deps.budget, 0);
                    // A paged head may have kept drop-head from working; it is in memory now.
                    self.drop_over_limit(q, &mut st, &mut work, fx);
                    self.dispatch_locked(q, &mut st, now, &mut work, fx);
                    Self::rearm(&mut st, now, &mut work);
                    if !progress {
                        drop(st);
                        work.refill = false;
                        self.finish(q, work, now, fx)?;
                        break;
                    }
                }
                work.refill = false;
                self.finish(q, work, now, fx)?;
            }
            drop(pager);
            if !self.refill_asked.swap(false, Ordering::AcqRel) {
                return Ok(());
            }
        }
    }

    /// Under the queue lock: is a refill wanted, and of how many messages (within the window
    /// and what the budget has room for)?
    fn plan_refill(&self) -> Option<Plan> {
        let mut st = self.lock();
        if st.deleted || !(st.ready.wants_refill() || st.ready.needs_refill()) {
            return None;
        }
        let lane = st.ready.head();
        let window = *st.ready.window();
        let head = &st.ready.lane(lane).ready;
        let (mut want, paged_avg, in_memory, paged_start) = (
            head.refill_count(&window),
            head.paged_avg(),
            head.in_memory(),
            head.paged_start(),
        );
        let per = paged_avg + crate::broker::message::MESSAGE_OVERHEAD;
        // The budget's room is taken before the read (read-back messages are charged whether
        // they fit or not): other queues refilling meanwhile see what is left.
        let want_bytes = want.saturating_mul(per);
        let by_budget = st.share.claim(&self.deps.budget, want_bytes) / per;
        // A full budget still lets a queue refill up to the floor: in batches, not a disk
        // read per message.
        let floor = (REFILL_FLOOR_BYTES / per).clamp(1, REFILL_FLOOR);
        want = want.min(by_budget.max(floor.saturating_sub(in_memory)));
        if want == 0 {
            return None;
        }
        let (tails, bytes) = st.ready.take_tails();
        // A credit would hand back the room just claimed; the one after the read does.
        st.share.uncharge(bytes);
        Some(Plan {
            lane,
            want,
            paged_start,
            next_id: st.next_id,
            tails,
            epoch: st.epoch,
        })
    }

    /// Under the pager lock only: reads up to `plan.want` paged messages of the plan's lane in
    /// id order. Returns them, whether any source may have more, and how far the lane's paged
    /// persistent messages were read (its paged start moves past it).
    fn read_paged(&self, pager: &mut Pager, plan: &mut Plan) -> Result<ReadBack, StoreError> {
        let (lane, want, paged_start, next_id) =
            (plan.lane, plan.want, plan.paged_start, plan.next_id);
        // A tail goes behind what its spill file holds, or straight to the lookahead when the
        // file is empty and it is the lane being read (no I/O).
        for (i, tail) in std::mem::take(&mut plan.tails).into_iter().enumerate() {
            let spilled = pager.lanes.get(i).map_or(0, PagerLane::spilled);
            if spilled > 0 || i != lane {
                self.write_spill(pager, i, tail)?;
            } else if let Some(pl) = pager.lanes.get_mut(i) {
                pl.lookahead.extend(tail);
            }
        }
        let Some(pl) = pager.lanes.get_mut(lane) else {
            return Ok(ReadBack::default());
        };
        let need = want.saturating_sub(pl.lookahead.len());
        if need > 0
            && let Some(spill) = pl.spill.as_mut().filter(|s| !s.is_empty())
        {
            for (id, record) in spill.pop(need)? {
                let sm = StoredMessage {
                    id,
                    delivered: false,
                    delivery_count: 0,
                    record,
                };
                if let Some(qm) = to_queued(&self.name, sm, false) {
                    pl.lookahead.push_back(qm);
                }
            }
        }
        let spill_more = pl.spilled() > 0;
        let scan = match self.store() {
            Some(store) => self.scan_lane(&**store, lane, pager.lanes.len(), paged_start, want)?,
            None => Scan::default(),
        };
        let Some(pl) = pager.lanes.get_mut(lane) else {
            return Ok(ReadBack::default());
        };
        // Only messages up to the frontier keep id order; newer transient messages may be
        // in the tail taken after this plan, so nothing at or past `next_id` either.
        let mut frontier = next_id.saturating_sub(1);
        if scan.more
            && let Some(last) = scan.last
        {
            frontier = frontier.min(last);
        }
        if spill_more && let Some(last) = pl.lookahead.back() {
            frontier = frontier.min(last.id);
        }
        let mut out: Vec<QueuedMessage> = Vec::with_capacity(want);
        while pl.lookahead.front().is_some_and(|m| m.id <= frontier) {
            out.extend(pl.lookahead.pop_front());
        }
        let more_lookahead = !pl.lookahead.is_empty();
        out.extend(scan.found.into_iter().filter(|m| m.id <= frontier));
        out.sort_by_key(|m| m.id);
        let mut more = scan.more || spill_more || more_lookahead;
        if out.len() > want {
            // Both sources gave up to `want`: keep the window's worth, the oldest. Transient
            // ones beyond go back to the lookahead, persistent ones are read again later.
            let rest = out.split_off(want);
            frontier = out.last().map_or(frontier, |m| m.id);
            for m in rest.into_iter().rev().filter(|m| !m.persisted) {
                pl.lookahead.push_front(m);
            }
            more = true;
        }
        Ok(ReadBack {
            read: out,
            more,
            read_to: scan.last.map(|l| l.min(frontier)),
        })
    }

    /// Reads up to `want` persistent messages of `lane` from the store, from id `from` on. A
    /// queue of one lane reads them straight; a priority queue skips the other lanes'
    /// messages, scanning at most [`SCAN_LIMIT`] records per call.
    fn scan_lane(
        &self,
        store: &dyn crate::storage::QueueStore,
        lane: usize,
        lanes: usize,
        from: u64,
        want: usize,
    ) -> Result<Scan, StoreError> {
        let mut scan = Scan::default();
        let mut from = from;
        let mut scanned = 0;
        let batch = if lanes == 1 { want } else { want.max(256) };
        loop {
            let stored = store.read(from, batch)?;
            let full = stored.len() == batch;
            for sm in stored {
                scan.last = Some(sm.id);
                scanned += 1;
                if let Some(qm) = to_queued(&self.name, sm, true)
                    && (lanes == 1 || lane_of(&qm, lanes) == lane)
                {
                    scan.found.push(qm);
                    if scan.found.len() == want {
                        break;
                    }
                }
            }
            let stopped = scan.found.len() == want || scanned >= SCAN_LIMIT;
            if !full && !stopped {
                return Ok(scan);
            }
            match scan.last {
                Some(last) if !stopped => from = last + 1,
                _ => {
                    scan.more = true;
                    return Ok(scan);
                }
            }
        }
    }

    /// Under the queue lock: inserts what a refill read and updates the lane's books.
    fn insert_read(&self, st: &mut State, lane: usize, back: ReadBack) {
        let l = &mut st.ready.lane_mut(lane).ready;
        if let Some(to) = back.read_to {
            l.advance_paged_start(to);
        }
        if back.read.is_empty() {
            let tail_empty = st.ready.lane(lane).tail.is_empty();
            let l = &mut st.ready.lane_mut(lane).ready;
            if !back.more && tail_empty && l.paged() > 0 {
                tracing::error!(queue = %self.name, vhost = %self.vhost, paged = l.paged(), "paged messages missing from disk; forgetting them");
                let n = l.paged();
                l.note_unpaged(n, 0);
            }
            return;
        }
        let n = back.read.len();
        let bytes: usize = back.read.iter().map(|m| m.msg.body.len()).sum();
        for qm in back.read {
            if qm.expires_at != 0 {
                st.ttl_seen = true;
            }
            self.insert(st, qm);
        }
        st.ready.lane_mut(lane).ready.note_unpaged(n, bytes);
    }

    /// queue.purge: every ready message goes, in memory, in the tails, in the spill files and
    /// in the store. Holds the pager lock so that no refill runs meanwhile.
    pub(super) fn purge_all(&self) -> Result<u32, StoreError> {
        let mut pager = self.pager();
        let (drained, paged, next_id) = {
            let mut st = self.lock();
            st.epoch += 1;
            let (drained, paged) = st.ready.drain();
            let used = st.share.used();
            st.share.credit(&self.deps.budget, used);
            (drained, paged, st.next_id)
        };
        for pl in &mut pager.lanes {
            pl.lookahead.clear();
            if let Some(s) = pl.spill.as_mut() {
                s.clear()?;
            }
        }
        let paged_total: usize = paged.iter().map(|p| p.1).sum();
        if let Some(store) = self.store() {
            for m in drained.iter().filter(|m| m.persisted) {
                store.remove(m.id)?;
            }
            if let [(paged_start, n)] = paged[..] {
                if n > 0 {
                    // Every paged persistent message has an id in this range; messages
                    // published since have higher ids and stay.
                    for id in paged_start..next_id {
                        store.remove(id)?;
                    }
                }
            } else {
                self.purge_paged_lanes(&**store, &paged, next_id)?;
            }
            self.deps.commit.note_write();
        }
        Ok(u32::try_from(drained.len() + paged_total).unwrap_or(u32::MAX))
    }

    /// Purge of a priority queue's paged persistent messages: those of a lane at or past the
    /// lane's paged start (the others in that range are other lanes' or unacked).
    fn purge_paged_lanes(
        &self,
        store: &dyn crate::storage::QueueStore,
        paged: &[(u64, usize)],
        next_id: u64,
    ) -> Result<(), StoreError> {
        let Some(mut from) = paged.iter().filter(|p| p.1 > 0).map(|p| p.0).min() else {
            return Ok(());
        };
        loop {
            let batch = store.read(from, 4096)?;
            let Some(last) = batch.last().map(|m| m.id) else {
                return Ok(());
            };
            for sm in batch {
                let id = sm.id;
                if id >= next_id {
                    return Ok(());
                }
                if let Some(qm) = to_queued(&self.name, sm, true)
                    && let Some(&(start, n)) = paged.get(lane_of(&qm, paged.len()))
                    && n > 0
                    && id >= start
                {
                    store.remove(id)?;
                }
            }
            from = last + 1;
        }
    }
}

/// What a lane's store scan found.
#[derive(Default)]
struct Scan {
    found: Vec<QueuedMessage>,
    /// The last id scanned.
    last: Option<u64>,
    /// The store may hold more of the lane's messages past `last`.
    more: bool,
}

/// What one read-back round got.
#[derive(Default)]
struct ReadBack {
    read: Vec<QueuedMessage>,
    more: bool,
    /// The lane's paged persistent messages up to this id were read.
    read_to: Option<u64>,
}

/// The lane of a message in a queue of `lanes` lanes.
pub(super) fn lane_of(qm: &QueuedMessage, lanes: usize) -> usize {
    usize::from(qm.msg.properties.priority().unwrap_or(0)).min(lanes.saturating_sub(1))
}
