//! The classic queue type: a FIFO of ready messages with a window in memory and the rest paged
//! out, round-robin consumers, TTL, length limits, delivery limits and queue expiry, with
//! RabbitMQ 3.10's classic-queue semantics.
//!
//! # Locks and I/O
//! Two locks, always taken in this order: `pager` (the spill file and read-back state: held
//! while doing paging I/O), then `state` (everything else: held for in-memory work only).
//! Every operation decides under `state`, releases it, then does its `Work`: store writes,
//! writing full chunks, flushing the spill tail, reading paged messages back. A persistent
//! message's id is allocated and its store append (an in-memory copy, no I/O) done under
//! `state`, so the store sees ids in order. Cross-queue work (dead letters, queue expiry) goes
//! back to the vhost in [`Followups`].
//!
//! # Files
//! `enqueue` (push, overflow, TTL at the head, ticks, settings), `deliver` (dispatch,
//! consume/cancel, settle, get), `paging` (spill tail, refill), `recovery` (startup),
//! [`browse`] (reading without taking).

pub mod browse;
mod deliver;
mod enqueue;
mod paging;
pub(crate) mod recovery;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::consumers::Consumers;
use super::lanes::Lanes;
use super::outcome::{Counts, DeadLetter, Followups, Reason};
use super::{MemoryWindow, Queue, QueueSettings};
use crate::broker::budget::{BudgetShare, MemoryBudget};
use crate::broker::group_commit::GroupCommit;
use crate::broker::message::{Message, QueuedMessage};
use crate::broker::time::Now;
use crate::broker::timers::Timers;
use crate::storage::{MessageView, QueueStore, Store, StoreError};

use paging::Pager;

/// What a classic queue is built on.
#[derive(Clone, Debug)]
pub(crate) struct Deps {
    /// Its message store (durable queues only).
    pub(crate) store: Option<Arc<dyn QueueStore>>,
    /// The broker's store (for the spill file).
    pub(crate) root: Arc<dyn Store>,
    /// Group commit (store writes are noted there).
    pub(crate) commit: Arc<GroupCommit>,
    /// Its own memory window.
    pub(crate) window: MemoryWindow,
    /// The broker's memory budget.
    pub(crate) budget: Arc<MemoryBudget>,
    /// The broker's timers.
    pub(crate) timers: Arc<Timers>,
    /// `x-max-priority`: one ready lane per level up to it (`None`: one lane).
    pub(crate) max_priority: Option<u8>,
    /// `x-single-active-consumer`.
    pub(crate) single_active: bool,
}

/// See the module docs.
pub struct ClassicQueue {
    name: Arc<str>,
    vhost: Arc<str>,
    deps: Deps,
    state: Mutex<State>,
    pager: Mutex<Pager>,
    /// A refill was wanted while another one held the pager (see `paging`).
    refill_asked: AtomicBool,
    deleted: AtomicBool,
}

impl std::fmt::Debug for ClassicQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClassicQueue")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for dyn QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueStore")
    }
}

/// Everything behind the queue's lock.
#[derive(Debug)]
struct State {
    /// Ready messages, by priority lane (with their spill tails).
    ready: Lanes,
    consumers: Consumers,
    unacked: usize,
    settings: QueueSettings,
    /// The next message id.
    next_id: u64,
    /// This queue's part of the memory budget.
    share: BudgetShare,
    /// When the queue was last used (declared, fetched from, left by its last consumer): its
    /// `x-expires` counts from here.
    last_used: Instant,
    /// The earliest deadline armed in the broker's timers, if any.
    armed: Option<Instant>,
    /// Some message got a deadline: paged messages may be expired.
    ttl_seen: bool,
    deleted: bool,
    /// Bumped by purge and delete: a refill planned before drops what it read.
    epoch: u64,
}

/// What an operation decided under the lock and does after it.
#[derive(Debug, Default)]
struct Work {
    /// Ids to mark delivered in the store.
    delivered: Vec<u64>,
    /// Ids to remove from the store.
    remove: Vec<u64>,
    /// Delivery counts to store.
    counts: Vec<(u64, u32)>,
    /// A message was put in the store.
    put: bool,
    /// The store asked for its full chunks to be written.
    write_sealed: bool,
    /// The spill tail is due to be written.
    flush_tail: bool,
    /// Paged messages should be read back.
    refill: bool,
    /// A timer to arm.
    arm: Option<Instant>,
}

/// Spill tail bytes (in memory, charged to the budget) that make a write due.
const TAIL_FLUSH: usize = 256 * 1024;

impl ClassicQueue {
    /// A new, empty classic queue, run with `settings` from `now`.
    pub(crate) fn new(
        name: Arc<str>,
        vhost: Arc<str>,
        deps: Deps,
        settings: QueueSettings,
        now: Now,
    ) -> ClassicQueue {
        let next_id = deps
            .store
            .as_ref()
            .and_then(|s| s.last_id())
            .map_or(1, |id| id + 1);
        let deps = Deps {
            window: MemoryWindow {
                messages: deps.window.messages.max(1),
                bytes: deps.window.bytes,
            },
            ..deps
        };
        let lanes = deps.max_priority.map_or(1, |m| usize::from(m) + 1);
        let ready = Lanes::new(deps.max_priority, deps.window);
        let consumers = Consumers::new(deps.single_active);
        ClassicQueue {
            name,
            vhost,
            deps,
            state: Mutex::new(State {
                ready,
                consumers,
                unacked: 0,
                settings,
                next_id,
                share: BudgetShare::default(),
                last_used: now.mono,
                armed: None,
                ttl_seen: false,
                deleted: false,
                epoch: 0,
            }),
            pager: Mutex::new(Pager::new(lanes)),
            refill_asked: AtomicBool::new(false),
            deleted: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a panic while holding it; the state is still structurally valid
        // (every mutation is a single container operation), so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self) -> Option<&Arc<dyn QueueStore>> {
        self.deps.store.as_ref()
    }

    /// The store writes decided under the lock; the group-commit sequence that covers them (0
    /// when there were none).
    fn store_work(&self, work: &Work) -> Result<u64, StoreError> {
        let Some(store) = self.store() else {
            return Ok(0);
        };
        for &id in &work.delivered {
            store.mark_delivered(id)?;
        }
        for &(id, n) in &work.counts {
            store.set_delivery_count(id, n)?;
        }
        for &id in &work.remove {
            store.remove(id)?;
        }
        if work.write_sealed {
            store.write_sealed()?;
        }
        Ok(
            if work.put
                || !work.delivered.is_empty()
                || !work.counts.is_empty()
                || !work.remove.is_empty()
            {
                self.deps.commit.note_write()
            } else {
                0
            },
        )
    }

    /// `r`, the result of store writes decided under the lock, or 0 (no group commit to wait
    /// for) when they failed because the queue was deleted since: its flag is set before its
    /// store is deleted, and its stored messages went with it.
    fn unless_deleted(&self, r: Result<u64, StoreError>) -> Result<u64, StoreError> {
        match r {
            Err(_) if self.deleted.load(Ordering::Acquire) => Ok(0),
            r => r,
        }
    }

    /// Does what was decided under the lock: store writes, timers, the spill tail, read-back.
    /// Returns the group-commit sequence of the store writes (0 when there were none).
    fn finish(
        &self,
        q: &Arc<Queue>,
        work: Work,
        now: Now,
        fx: &mut Followups,
    ) -> Result<u64, StoreError> {
        let seq = self.unless_deleted(self.store_work(&work))?;
        if let Some(at) = work.arm {
            self.deps.timers.arm(at, q);
        }
        if work.flush_tail {
            self.flush_tail()?;
        }
        if work.refill {
            self.refill(q, now, fx, false)?;
        }
        Ok(seq)
    }

    /// Takes the first ready message in memory, giving its memory back to the budget.
    fn pop(&self, st: &mut State) -> Option<QueuedMessage> {
        let qm = st.ready.pop_front()?;
        st.share.credit(&self.deps.budget, qm.cost());
        Some(qm)
    }

    /// Puts a message back in memory in its place (requeued, undelivered, read back): it was
    /// in memory before, so the budget takes it whether it fits or not.
    fn insert(&self, st: &mut State, qm: QueuedMessage) {
        st.share.force(&self.deps.budget, qm.cost());
        st.ready.insert(qm);
    }

    /// A message leaves the queue for good without being delivered: dead-lettered when the
    /// queue has a dead-letter exchange, else dropped (and removed from the store).
    fn drop_message(
        &self,
        q: &Arc<Queue>,
        st: &State,
        qm: QueuedMessage,
        reason: Reason,
        work: &mut Work,
        fx: &mut Followups,
    ) {
        match &st.settings.dead_letter_exchange {
            Some(dlx) => fx.dead.push(DeadLetter {
                source: Arc::clone(q),
                in_source_store: qm.persisted,
                message: qm,
                reason,
                exchange: Arc::clone(dlx),
                routing_key: st.settings.dead_letter_routing_key.clone(),
            }),
            None => {
                if qm.persisted {
                    work.remove.push(qm.id);
                }
            }
        }
    }

    /// The next time this queue needs a tick: its head's TTL, or its `x-expires` while it has
    /// no consumers.
    fn next_deadline(st: &State, now: Now) -> Option<Instant> {
        let ttl = st.ready.earliest_deadline().map(|at| now.mono_at(at));
        let expiry = st
            .settings
            .expires
            .filter(|_| st.consumers.is_empty())
            .map(|ms| st.last_used + std::time::Duration::from_millis(ms));
        match (ttl, expiry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Arms a timer at the next deadline when it is earlier than the one armed.
    fn rearm(st: &mut State, now: Now, work: &mut Work) {
        if let Some(at) = Self::next_deadline(st, now)
            && st.armed.is_none_or(|a| at < a)
        {
            st.armed = Some(at);
            work.arm = Some(at);
        }
    }
}

/// The storage view of a message: the message's own bytes, borrowed, and the copy's `meta`.
fn to_view<'a>(msg: &'a Message, meta: &'a [u8]) -> MessageView<'a> {
    crate::broker::store_api::view(msg, meta)
}

impl super::QueueType for ClassicQueue {
    fn push(
        &self,
        q: &Arc<Queue>,
        msg: &Arc<Message>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<super::Pushed, StoreError> {
        self.push_message(q, msg, now, fx)
    }

    fn push_many(
        &self,
        q: &Arc<Queue>,
        msgs: &[&Arc<Message>],
        now: Now,
        fx: &mut Followups,
        out: &mut Vec<super::Pushed>,
    ) -> Result<(), StoreError> {
        self.push_messages(q, msgs, now, fx, out)
    }

    fn consume(
        &self,
        _q: &Arc<Queue>,
        c: crate::broker::consumer::ConsumerHandle,
        _now: Now,
    ) -> crate::broker::error::BrokerResult<()> {
        self.lock().consumers.add(c, &self.name, &self.vhost)
    }

    fn cancel(
        &self,
        q: &Arc<Queue>,
        conn: crate::broker::consumer::ConnId,
        channel: u16,
        tag: &str,
        now: Now,
    ) -> Option<bool> {
        self.cancel_consumer(q, conn, channel, tag, now)
    }

    fn dispatch(&self, q: &Arc<Queue>, now: Now, fx: &mut Followups) -> Result<(), StoreError> {
        let mut work = Work::default();
        {
            let mut st = self.lock();
            self.dispatch_locked(q, &mut st, now, &mut work, fx);
        }
        self.finish(q, work, now, fx).map(|_| ())
    }

    fn settle(
        &self,
        q: &Arc<Queue>,
        how: super::Settle,
        msgs: Vec<QueuedMessage>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        self.settle_messages(q, how, msgs, now, fx)
    }

    fn undeliver(
        &self,
        q: &Arc<Queue>,
        msg: QueuedMessage,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        self.take_back(q, msg, no_ack, now, fx)
    }

    fn get(
        &self,
        q: &Arc<Queue>,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Option<super::GetResult>, StoreError> {
        self.get_message(q, no_ack, now, fx)
    }

    fn purge(&self, _q: &Arc<Queue>, _now: Now) -> Result<u32, StoreError> {
        self.purge_all()
    }

    fn tick(&self, q: &Arc<Queue>, now: Now, fx: &mut Followups) -> Result<(), StoreError> {
        self.tick_due(q, now, fx)
    }

    fn apply_settings(
        &self,
        q: &Arc<Queue>,
        settings: QueueSettings,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        self.set_settings(q, settings, now, fx)
    }

    fn settings(&self) -> QueueSettings {
        self.lock().settings.clone()
    }

    fn touch(&self, q: &Arc<Queue>, now: Now) {
        let mut work = Work::default();
        {
            let mut st = self.lock();
            self.mark_used(&mut st, now, &mut work);
        }
        if let Some(at) = work.arm {
            self.deps.timers.arm(at, q);
        }
    }

    fn forget_stored(&self, id: u64) -> Result<(), StoreError> {
        if let Some(store) = self.store()
            && !self.deleted.load(Ordering::Acquire)
        {
            self.unless_deleted(store.remove(id).map(|()| self.deps.commit.note_write()))?;
        }
        Ok(())
    }

    fn delete(&self) -> (Vec<crate::broker::consumer::ConsumerHandle>, u32) {
        self.deleted.store(true, Ordering::Release);
        let (consumers, n) = {
            let mut st = self.lock();
            st.deleted = true;
            st.epoch += 1;
            let n = st.ready.len();
            let _ = st.ready.drain();
            st.share.release_all(&self.deps.budget);
            (st.consumers.take_all(), n)
        };
        // The spill file goes with the queue; a refill holding the pager drops it after.
        if let Ok(mut p) = self.pager.try_lock() {
            p.close();
        }
        (consumers, u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    fn counts(&self) -> Counts {
        let st = self.lock();
        Counts {
            ready: st.ready.len(),
            unacked: st.unacked,
            consumers: st.consumers.len(),
            ready_bytes: st.ready.total_bytes(),
            in_memory: st.ready.in_memory(),
            in_memory_bytes: st.ready.bytes(),
            memory: st.share.used(),
        }
    }

    fn consumers(&self) -> Vec<crate::broker::consumer::ConsumerHandle> {
        self.lock().consumers.iter().cloned().collect()
    }

    fn kind(&self) -> &'static str {
        "classic"
    }

    fn browse(&self, offset: usize, count: usize) -> Result<browse::Browsed, StoreError> {
        self.browse_messages(offset, count)
    }
}

#[cfg(test)]
mod tests;
