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
use crate::broker::message::QueuedMessage;
use crate::broker::time::Now;
use crate::storage::{Spill, StoreError, StoredMessage};

/// The spill file and what was read from it but not yet inserted.
#[derive(Default)]
pub(super) struct Pager {
    spill: Option<Box<dyn Spill>>,
    /// Transient messages read back (or taken from the tail) beyond the last merge frontier;
    /// all older than anything in the spill file.
    lookahead: VecDeque<QueuedMessage>,
}

impl Pager {
    /// Drops the spill file (the queue is gone).
    pub(super) fn close(&mut self) {
        self.spill = None;
        self.lookahead.clear();
    }

    /// Messages in the spill file.
    fn spilled(&self) -> usize {
        self.spill.as_ref().map_or(0, |s| s.len())
    }
}

/// What one refill round reads.
struct Plan {
    want: usize,
    paged_start: u64,
    next_id: u64,
    tail: Vec<QueuedMessage>,
    epoch: u64,
}

impl ClassicQueue {
    fn pager(&self) -> MutexGuard<'_, Pager> {
        self.pager.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the spill tail to the spill file (opened on first use).
    pub(super) fn flush_tail(&self) -> Result<(), StoreError> {
        let mut pager = self.pager();
        let tail = {
            let mut st = self.lock();
            let tail = std::mem::take(&mut st.tail);
            let bytes = std::mem::take(&mut st.tail_bytes);
            st.share.credit(&self.deps.budget, bytes);
            tail
        };
        self.write_spill(&mut pager, tail)
    }

    fn write_spill(&self, pager: &mut Pager, tail: Vec<QueuedMessage>) -> Result<(), StoreError> {
        if tail.is_empty() {
            return Ok(());
        }
        if pager.spill.is_none() {
            pager.spill = Some(self.deps.root.open_spill(&self.vhost, &self.name)?);
        }
        if let Some(spill) = pager.spill.as_mut() {
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
                let (read, more) = self.read_paged(&mut pager, &mut plan)?;
                let mut work = Work::default();
                {
                    let mut st = self.lock();
                    if st.epoch != plan.epoch || st.deleted {
                        return Ok(());
                    }
                    let progress = !read.is_empty();
                    self.insert_read(&mut st, read, more);
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
        if st.deleted || !(st.ready.wants_refill(&self.deps.window) || st.ready.needs_refill()) {
            return None;
        }
        let mut want = st.ready.refill_count(&self.deps.window);
        let free = self
            .deps
            .budget
            .limit()
            .saturating_sub(self.deps.budget.used());
        let by_budget = free / (st.ready.paged_avg() + crate::broker::message::MESSAGE_OVERHEAD);
        if st.ready.in_memory() > 0 {
            want = want.min(by_budget);
            if want == 0 {
                return None;
            }
        } else {
            want = want.min(by_budget.max(1));
        }
        let tail = std::mem::take(&mut st.tail);
        let bytes = std::mem::take(&mut st.tail_bytes);
        st.share.credit(&self.deps.budget, bytes);
        Some(Plan {
            want,
            paged_start: st.ready.paged_start(),
            next_id: st.next_id,
            tail,
            epoch: st.epoch,
        })
    }

    /// Under the pager lock only: reads up to `plan.want` paged messages in id order. Returns
    /// them and whether any source may have more.
    fn read_paged(
        &self,
        pager: &mut Pager,
        plan: &mut Plan,
    ) -> Result<(Vec<QueuedMessage>, bool), StoreError> {
        let (want, paged_start, next_id) = (plan.want, plan.paged_start, plan.next_id);
        // The tail goes behind what the spill file holds, or straight to the lookahead when
        // the file is empty (no I/O).
        let tail = std::mem::take(&mut plan.tail);
        if pager.spilled() > 0 {
            self.write_spill(pager, tail)?;
        } else {
            pager.lookahead.extend(tail);
        }
        let need = want.saturating_sub(pager.lookahead.len());
        if need > 0
            && let Some(spill) = pager.spill.as_mut().filter(|s| !s.is_empty())
        {
            for (id, record) in spill.pop(need)? {
                let sm = StoredMessage {
                    id,
                    delivered: false,
                    delivery_count: 0,
                    record,
                };
                if let Some(qm) = to_queued(&self.name, sm, false) {
                    pager.lookahead.push_back(qm);
                }
            }
        }
        let spill_more = pager.spilled() > 0;
        let stored = match self.store() {
            Some(store) => store.read(paged_start, want)?,
            None => Vec::new(),
        };
        let store_more = stored.len() == want;
        // Only messages up to the frontier keep id order; newer transient messages may be
        // in the tail taken after this plan, so nothing at or past `next_id` either.
        let mut frontier = next_id.saturating_sub(1);
        if store_more && let Some(last) = stored.last() {
            frontier = frontier.min(last.id);
        }
        if spill_more && let Some(last) = pager.lookahead.back() {
            frontier = frontier.min(last.id);
        }
        let mut out: Vec<QueuedMessage> = Vec::with_capacity(want);
        while pager.lookahead.front().is_some_and(|m| m.id <= frontier) {
            out.extend(pager.lookahead.pop_front());
        }
        let more_lookahead = !pager.lookahead.is_empty();
        out.extend(
            stored
                .into_iter()
                .filter(|sm| sm.id <= frontier)
                .filter_map(|sm| to_queued(&self.name, sm, true)),
        );
        out.sort_by_key(|m| m.id);
        Ok((out, store_more || spill_more || more_lookahead))
    }

    /// Under the queue lock: inserts what a refill read and updates the paged tail's books.
    fn insert_read(&self, st: &mut State, read: Vec<QueuedMessage>, more: bool) {
        if read.is_empty() {
            if !more && st.tail.is_empty() && st.ready.paged() > 0 {
                tracing::error!(queue = %self.name, vhost = %self.vhost, paged = st.ready.paged(), "paged messages missing from disk; forgetting them");
                let n = st.ready.paged();
                st.ready.note_unpaged(n, 0);
            }
            return;
        }
        let n = read.len();
        let bytes: usize = read.iter().map(|m| m.msg.body.len()).sum();
        if let Some(last) = read.iter().filter(|m| m.persisted).map(|m| m.id).max() {
            st.ready.advance_paged_start(last);
        }
        for qm in read {
            if qm.expires_at != 0 {
                st.ttl_seen = true;
            }
            self.insert(st, qm);
        }
        st.ready.note_unpaged(n, bytes);
    }

    /// queue.purge: every ready message goes, in memory, in the tail, in the spill file and in
    /// the store. Holds the pager lock so that no refill runs meanwhile.
    pub(super) fn purge_all(&self) -> Result<u32, StoreError> {
        let mut pager = self.pager();
        let (drained, paged_start, paged, next_id) = {
            let mut st = self.lock();
            st.epoch += 1;
            let (drained, paged_start, paged) = st.ready.drain();
            st.tail.clear();
            st.tail_bytes = 0;
            let used = st.share.used();
            st.share.credit(&self.deps.budget, used);
            (drained, paged_start, paged, st.next_id)
        };
        pager.lookahead.clear();
        if let Some(s) = pager.spill.as_mut() {
            s.clear()?;
        }
        if let Some(store) = self.store() {
            for m in drained.iter().filter(|m| m.persisted) {
                store.remove(m.id)?;
            }
            if paged > 0 {
                // Every paged persistent message has an id in this range; messages published
                // since have higher ids and stay.
                for id in paged_start..next_id {
                    store.remove(id)?;
                }
            }
            self.deps.commit.note_write();
        }
        Ok(u32::try_from(drained.len() + paged).unwrap_or(u32::MAX))
    }
}
