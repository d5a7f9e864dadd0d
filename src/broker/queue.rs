//! A queue: ready messages in FIFO order, its consumers, and round-robin dispatch.
//!
//! All state sits behind one `std::sync::Mutex` held only for in-memory work: pushes, pops and
//! `send`s into mailboxes. A persistent message's id is allocated and its store append (a copy
//! into the store's open chunk) done under the lock, so the store sees ids in order; anything
//! that reaches the storage engine (writing a full chunk) happens after the lock is released, so
//! a slow disk never stalls a consumer of the same queue.
//!
//! Unacked messages are not kept here: the session that received a delivery holds it and hands it
//! back with [`Queue::ack`], [`Queue::requeue`] or [`Queue::discard`]. The queue only counts them.
//! Requeued messages return to their original place (the ready list is ordered by id), marked
//! redelivered, as RabbitMQ does.
//!
//! Extension points for TTL, dead-lettering, length limits and priorities: [`QueueArgs`] parses
//! arguments once; [`ReadyList`] is the only place that orders and stores ready messages;
//! [`Queue::discard`] is where dead-lettering hooks in.

use crate::protocol::types::FieldTable;
use crate::storage::{MessageView, PutOutcome, QueueStore, Spill, Store, StoreError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::consumer::{ConnId, ConsumerHandle, Outbound};
use super::error::{BrokerError, BrokerResult};
use super::group_commit::GroupCommit;
use super::message::{Delivery, Message, QueuedMessage};

/// Parsed queue arguments (x-* keys). Unknown keys are kept in `raw` and ignored, as RabbitMQ does.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueArgs {
    /// The table as declared (compared on redeclare, shown by management, persisted).
    pub raw: FieldTable,
}

impl QueueArgs {
    /// Parses the declare arguments.
    pub fn parse(raw: FieldTable) -> BrokerResult<Self> {
        Ok(QueueArgs { raw })
    }
}

/// Counters for management and metrics: updated with relaxed atomics, never under a lock.
#[derive(Debug, Default)]
pub struct QueueStats {
    /// Messages pushed into the queue.
    pub published: AtomicU64,
    /// Messages delivered to consumers or fetched by basic.get.
    pub delivered: AtomicU64,
    /// Deliveries that were redeliveries.
    pub redelivered: AtomicU64,
    /// Messages acknowledged.
    pub acked: AtomicU64,
}

/// How much of a queue's ready backlog stays in memory: at most `messages` messages and
/// `bytes` body bytes, whichever is reached first. The rest is paged to disk and read back as
/// consumers drain the queue, so memory does not grow with the backlog or with message size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryWindow {
    /// Ready messages kept in memory (at least 1).
    pub messages: usize,
    /// Body bytes kept in memory. One message is always allowed, however large.
    pub bytes: usize,
}

impl Default for MemoryWindow {
    fn default() -> Self {
        MemoryWindow {
            messages: 10_000,
            bytes: 32 << 20,
        }
    }
}

/// The ready messages of a queue, ordered by id: a head in memory and, when the queue holds
/// more than its [`MemoryWindow`], a tail paged out to the store.
///
/// Invariant: every paged message has an id >= `paged_start`, every message in memory an id
/// below it. A message is paged only when its id is above every id in memory, so the store's
/// ids from `paged_start` on are exactly the paged messages, and reading them back in id order
/// keeps the queue's order.
#[derive(Debug, Default)]
pub struct ReadyList {
    items: VecDeque<QueuedMessage>,
    bytes: usize,
    /// Messages in the store, not in memory.
    paged: usize,
    /// Body bytes of the paged messages (an estimate after a restart), to size refills.
    paged_bytes: usize,
    /// Lowest id that may be paged.
    paged_start: u64,
    /// Highest id ever held in memory (in `items`, delivered, or read back).
    max_mem_id: u64,
}

impl ReadyList {
    /// Adds a message to memory in id order (almost always at the back).
    fn insert(&mut self, qm: QueuedMessage) {
        self.bytes += qm.msg.body.len();
        self.max_mem_id = self.max_mem_id.max(qm.id);
        match self.items.back() {
            Some(last) if last.id > qm.id => {
                let pos = self.items.partition_point(|m| m.id < qm.id);
                self.items.insert(pos, qm);
            }
            _ => self.items.push_back(qm),
        }
    }

    fn pop_front(&mut self) -> Option<QueuedMessage> {
        let qm = self.items.pop_front()?;
        self.bytes -= qm.msg.body.len();
        Some(qm)
    }

    fn push_front(&mut self, qm: QueuedMessage) {
        self.bytes += qm.msg.body.len();
        self.items.push_front(qm);
    }

    /// True when a message with `id` must go to the store rather than to memory.
    fn must_page(&self, id: u64, w: &MemoryWindow) -> bool {
        id > self.max_mem_id
            && (self.paged > 0 || self.items.len() >= w.messages || self.bytes >= w.bytes)
    }

    /// Records that message `id`, of `size` body bytes, was written to the store instead of
    /// memory.
    fn note_paged(&mut self, id: u64, size: usize) {
        if self.paged == 0 {
            self.paged_start = id;
        }
        self.paged += 1;
        self.paged_bytes += size;
    }

    /// Records that `n` paged messages of `size` body bytes in all were read back (or lost).
    fn note_unpaged(&mut self, n: usize, size: usize) {
        self.paged = self.paged.saturating_sub(n);
        self.paged_bytes = if self.paged == 0 {
            0
        } else {
            self.paged_bytes.saturating_sub(size)
        };
    }

    /// True when memory has run low enough that paged messages should be read back: both
    /// limits below a quarter, so a refill reads a batch, not one message at a time.
    fn wants_refill(&self, w: &MemoryWindow) -> bool {
        self.paged > 0 && self.items.len() <= w.messages / 4 && self.bytes <= w.bytes / 4
    }

    /// How many paged messages to read back to fill the window again (at least one).
    fn refill_count(&self, w: &MemoryWindow) -> usize {
        let by_count = w.messages.saturating_sub(self.items.len());
        let avg = match self.paged_bytes.checked_div(self.paged) {
            Some(a) if a > 0 => a,
            _ => 1,
        };
        let by_bytes = w.bytes.saturating_sub(self.bytes) / avg;
        by_count.min(by_bytes).max(1)
    }

    /// Number of ready messages, in memory and paged.
    pub fn len(&self) -> usize {
        self.items.len() + self.paged
    }

    /// True when no message is ready.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.paged == 0
    }

    /// Ready messages held in memory.
    pub fn in_memory(&self) -> usize {
        self.items.len()
    }

    /// Ready messages paged out to the store.
    pub fn paged(&self) -> usize {
        self.paged
    }

    /// Body bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Takes the in-memory messages and forgets the paged ones (the caller clears the store).
    fn drain(&mut self) -> (Vec<QueuedMessage>, u64, usize) {
        self.bytes = 0;
        self.paged_bytes = 0;
        let paged = (self.paged_start, std::mem::take(&mut self.paged));
        (self.items.drain(..).collect(), paged.0, paged.1)
    }
}

impl std::fmt::Debug for QueueState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueState")
            .field("ready", &self.ready)
            .field("consumers", &self.consumers.len())
            .field("unacked", &self.unacked)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct QueueState {
    ready: ReadyList,
    /// Where paged-out transient messages wait (a FIFO file); opened on first use.
    spill: Option<Box<dyn Spill>>,
    consumers: Vec<ConsumerHandle>,
    /// Round-robin position in `consumers`.
    next_consumer: usize,
    unacked: usize,
    had_consumer: bool,
}

/// Store work decided under the lock, done after it.
#[derive(Default)]
struct StoreOps {
    remove: Vec<u64>,
    delivered: Vec<u64>,
}

/// A queue.
#[derive(Debug)]
pub struct Queue {
    /// Queue name.
    pub name: Arc<str>,
    /// Its vhost's name.
    pub vhost: Arc<str>,
    /// Survives restarts.
    pub durable: bool,
    /// Owning connection of an exclusive queue.
    pub exclusive: Option<ConnId>,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// Parsed arguments.
    pub args: QueueArgs,
    /// Counters.
    pub stats: QueueStats,
    store: Option<Arc<dyn QueueStore>>,
    root: Arc<dyn Store>,
    /// Ready messages kept in memory before the rest are paged to the store.
    window: MemoryWindow,
    commit: Arc<GroupCommit>,
    state: Mutex<QueueState>,
    next_id: AtomicU64,
    deleted: AtomicBool,
}

impl std::fmt::Debug for dyn QueueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QueueStore")
    }
}

/// What a basic.get found.
#[derive(Debug)]
pub struct GetResult {
    /// The message.
    pub message: QueuedMessage,
    /// Messages left ready after this one.
    pub remaining: u32,
}

impl Queue {
    /// A new queue. `store` is given for durable queues: persistent messages are written there.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        name: Arc<str>,
        vhost: Arc<str>,
        durable: bool,
        exclusive: Option<ConnId>,
        auto_delete: bool,
        args: QueueArgs,
        store: Option<Arc<dyn QueueStore>>,
        root: Arc<dyn Store>,
        window: MemoryWindow,
        commit: Arc<GroupCommit>,
    ) -> Arc<Queue> {
        let next_id = store
            .as_ref()
            .and_then(|s| s.last_id())
            .map_or(1, |id| id + 1);
        Arc::new(Queue {
            name,
            vhost,
            durable,
            exclusive,
            auto_delete,
            args,
            stats: QueueStats::default(),
            store,
            root,
            window: MemoryWindow {
                messages: window.messages.max(1),
                bytes: window.bytes,
            },
            commit,
            state: Mutex::new(QueueState::default()),
            next_id: AtomicU64::new(next_id),
            deleted: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A poisoned lock means a panic while holding it; the state is still structurally valid
        // (every mutation is a single container operation), so keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once deleted; late pushes are dropped.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Enqueues a message and dispatches. Returns true when it was written to the store, so the
    /// publisher's confirm must wait for the next flush.
    pub fn push(self: &Arc<Self>, msg: Arc<Message>) -> BrokerResult<bool> {
        if self.is_deleted() {
            return Ok(false);
        }
        let store = self.store.as_ref().filter(|_| msg.is_persistent());
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let mut ops = StoreOps::default();
        let mut write_due = false;
        {
            let mut st = self.lock();
            // Allocated under the lock that orders the appends: the store needs ascending ids.
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let persisted = match store {
                Some(store) => {
                    let props = stored_properties(&msg);
                    write_due = store.put(id, to_record(&msg, props))? == PutOutcome::WriteDue;
                    true
                }
                None => false,
            };
            let qm = QueuedMessage {
                id,
                msg,
                redelivered: false,
                persisted,
            };
            if st.ready.must_page(id, &self.window) {
                // Beyond the memory window: the message waits on disk. A persistent copy is in
                // the store already; a transient one is appended to the queue's spill file
                // (buffered: one write per 256 KiB).
                if !qm.persisted {
                    let props = stored_properties(&qm.msg);
                    self.spill(&mut st)?.push(id, to_record(&qm.msg, props))?;
                }
                st.ready.note_paged(id, qm.msg.body.len());
            } else {
                st.ready.insert(qm);
            }
            self.dispatch_locked(&mut st, &mut ops);
        }
        let persisted = store.is_some();
        if let Some(store) = store.filter(|_| write_due) {
            store.write_sealed()?;
        }
        if persisted {
            self.commit.note_write();
        }
        self.apply(ops)?;
        Ok(persisted)
    }

    fn spill<'a>(&self, st: &'a mut QueueState) -> Result<&'a mut Box<dyn Spill>, StoreError> {
        if st.spill.is_none() {
            st.spill = Some(self.root.open_spill(&self.vhost, &self.name)?);
        }
        st.spill
            .as_mut()
            .ok_or_else(|| StoreError::Io("spill file not open".into()))
    }

    /// Reads paged messages back into memory, up to the window: persistent ones from the
    /// durable store (ids from `paged_start` on), transient ones from the head of the spill
    /// FIFO. Both are inserted in id order. Called with the lock held when memory runs low:
    /// the spill is read sequentially in 1 MiB chunks, the store from sled's cache.
    fn refill_locked(&self, st: &mut QueueState) {
        let want = st.ready.refill_count(&self.window);
        let durable = match self
            .store
            .as_ref()
            .map(|s| s.read(st.ready.paged_start, want))
        {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                tracing::error!(queue = %self.name, error = %e, "reading paged messages failed");
                Vec::new()
            }
            None => Vec::new(),
        };
        let spilled = match st.spill.as_mut().map(|s| s.pop(want)) {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                tracing::error!(queue = %self.name, error = %e, "reading the spill file failed");
                Vec::new()
            }
            None => Vec::new(),
        };
        let taken = durable.len() + spilled.len();
        if taken == 0 {
            tracing::error!(queue = %self.name, paged = st.ready.paged, "paged messages missing from disk; forgetting them");
            st.ready.note_unpaged(st.ready.paged, 0);
            return;
        }
        let taken_bytes = durable.iter().map(|m| m.record.body.len()).sum::<usize>()
            + spilled.iter().map(|(_, r)| r.body.len()).sum::<usize>();
        if let Some(last) = durable.last() {
            st.ready.paged_start = last.id + 1;
        }
        for sm in durable {
            if let Some(qm) = super::recovery::to_queued(&self.name, sm, true) {
                st.ready.insert(qm);
            }
        }
        for (id, record) in spilled {
            let sm = crate::storage::StoredMessage {
                id,
                delivered: false,
                delivery_count: 0,
                record,
            };
            if let Some(qm) = super::recovery::to_queued(&self.name, sm, false) {
                st.ready.insert(qm);
            }
        }
        st.ready.note_unpaged(taken, taken_bytes);
    }

    /// Restores the first messages read back from the store at startup; `more` further ones,
    /// with ids above these, stay paged in the store.
    pub(crate) fn restore(&self, msgs: Vec<QueuedMessage>, more: usize) {
        let mut st = self.lock();
        let next = msgs.last().map_or(0, |m| m.id + 1);
        let avg = msgs
            .iter()
            .map(|m| m.msg.body.len())
            .sum::<usize>()
            .checked_div(msgs.len())
            .unwrap_or(0);
        for m in msgs {
            st.ready.insert(m);
        }
        if more > 0 {
            st.ready.paged = more;
            st.ready.paged_bytes = more.saturating_mul(avg);
            st.ready.paged_start = next;
        }
    }

    /// The queue's memory window (ready messages kept in RAM).
    pub fn window(&self) -> MemoryWindow {
        self.window
    }

    /// Pushes ready messages to consumers that have credit, round robin.
    pub fn dispatch(self: &Arc<Self>) {
        let mut ops = StoreOps::default();
        {
            let mut st = self.lock();
            self.dispatch_locked(&mut st, &mut ops);
        }
        if let Err(e) = self.apply(ops) {
            tracing::error!(queue = %self.name, error = %e, "store update after dispatch failed");
        }
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut QueueState, ops: &mut StoreOps) {
        while !st.ready.is_empty() && !st.consumers.is_empty() {
            if st.ready.wants_refill(&self.window) {
                self.refill_locked(st);
            }
            let n = st.consumers.len();
            let start = st.next_consumer % n;
            let Some(idx) = (0..n)
                .map(|i| (start + i) % n)
                .find(|&i| st.consumers[i].try_reserve())
            else {
                return;
            };
            st.next_consumer = idx + 1;
            let Some(qm) = st.ready.pop_front() else {
                st.consumers[idx].unreserve();
                return;
            };
            let c = &st.consumers[idx];
            let delivery = Delivery {
                queue: Arc::clone(self),
                channel: c.channel,
                consumer_tag: c.tag.clone(),
                message: qm,
                no_ack: c.no_ack,
            };
            let (no_ack, id, persisted, redelivered) = (
                c.no_ack,
                delivery.message.id,
                delivery.message.persisted,
                delivery.message.redelivered,
            );
            if let Err(returned) = c.mailbox.send(Outbound::Deliver(delivery)) {
                // The connection is gone; its cleanup will remove this consumer. Keep the message.
                c.unreserve();
                if let Outbound::Deliver(d) = returned.0 {
                    st.ready.push_front(d.message);
                }
                st.consumers.remove(idx);
                continue;
            }
            self.stats.delivered.fetch_add(1, Ordering::Relaxed);
            if redelivered {
                self.stats.redelivered.fetch_add(1, Ordering::Relaxed);
            }
            if no_ack {
                self.stats.acked.fetch_add(1, Ordering::Relaxed);
                if persisted {
                    ops.remove.push(id);
                }
            } else {
                st.unacked += 1;
                if persisted && !redelivered {
                    ops.delivered.push(id);
                }
            }
        }
    }

    fn apply(&self, ops: StoreOps) -> Result<(), StoreError> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        let touched = !ops.delivered.is_empty() || !ops.remove.is_empty();
        for id in ops.delivered {
            store.mark_delivered(id)?;
        }
        for id in ops.remove {
            store.remove(id)?;
        }
        if touched {
            self.commit.note_write();
        }
        Ok(())
    }

    /// Adds a consumer. Fails with 403 when an exclusive consumer is involved. Does not
    /// dispatch: the caller sends consume-ok first, then calls [`Queue::dispatch`].
    pub fn consume(self: &Arc<Self>, handle: ConsumerHandle) -> BrokerResult<()> {
        {
            let mut st = self.lock();
            if st.consumers.iter().any(|c| c.exclusive)
                || (handle.exclusive && !st.consumers.is_empty())
            {
                return Err(BrokerError::AccessRefused(format!(
                    "queue '{}' in vhost '{}' in exclusive use",
                    self.name, self.vhost
                )));
            }
            st.consumers.push(handle);
            st.had_consumer = true;
        }
        Ok(())
    }

    /// Removes a consumer. Returns `Some(true)` when it was the last one of an auto-delete
    /// queue (the caller deletes the queue), `None` when there was no such consumer.
    pub fn cancel(&self, conn: ConnId, channel: u16, tag: &str) -> Option<bool> {
        let mut st = self.lock();
        let pos = st
            .consumers
            .iter()
            .position(|c| c.conn == conn && c.channel == channel && c.tag.as_str() == tag)?;
        st.consumers.remove(pos);
        Some(self.auto_delete && st.had_consumer && st.consumers.is_empty())
    }

    /// Acknowledges delivered messages: they leave the queue for good.
    pub fn ack(&self, msgs: &[QueuedMessage]) -> BrokerResult<()> {
        self.settle(msgs)?;
        self.stats
            .acked
            .fetch_add(msgs.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Drops delivered messages without acking them (reject/nack with requeue=false). This is
    /// where dead-lettering will hook in.
    pub fn discard(&self, msgs: &[QueuedMessage]) -> BrokerResult<()> {
        self.settle(msgs)
    }

    fn settle(&self, msgs: &[QueuedMessage]) -> BrokerResult<()> {
        if let Some(store) = &self.store {
            let mut n = 0;
            for m in msgs.iter().filter(|m| m.persisted) {
                store.remove(m.id)?;
                n += 1;
            }
            if n > 0 {
                self.commit.note_write();
            }
        }
        let mut st = self.lock();
        st.unacked = st.unacked.saturating_sub(msgs.len());
        Ok(())
    }

    /// Puts delivered messages back in their original places, marked redelivered, and dispatches.
    pub fn requeue(self: &Arc<Self>, msgs: Vec<QueuedMessage>) {
        if msgs.is_empty() {
            return;
        }
        let mut ops = StoreOps::default();
        {
            let mut st = self.lock();
            st.unacked = st.unacked.saturating_sub(msgs.len());
            if !self.is_deleted() {
                for mut m in msgs {
                    m.redelivered = true;
                    st.ready.insert(m);
                }
            }
            self.dispatch_locked(&mut st, &mut ops);
        }
        if let Err(e) = self.apply(ops) {
            tracing::error!(queue = %self.name, error = %e, "store update after requeue failed");
        }
    }

    /// Takes back a delivery that never reached its consumer (cancelled, channel closed): the
    /// message returns to its place, not marked redelivered.
    pub fn undeliver(self: &Arc<Self>, qm: QueuedMessage, no_ack: bool) {
        let mut ops = StoreOps::default();
        {
            let mut st = self.lock();
            if !no_ack {
                st.unacked = st.unacked.saturating_sub(1);
            }
            if !self.is_deleted() {
                st.ready.insert(qm);
            }
            self.dispatch_locked(&mut st, &mut ops);
        }
        if let Err(e) = self.apply(ops) {
            tracing::error!(queue = %self.name, error = %e, "store update after undeliver failed");
        }
    }

    /// basic.get: takes the first ready message. With `no_ack` it leaves the queue at once.
    pub fn get(&self, no_ack: bool) -> BrokerResult<Option<GetResult>> {
        let (qm, remaining) = {
            let mut st = self.lock();
            if st.ready.in_memory() == 0 && st.ready.paged() > 0 {
                self.refill_locked(&mut st);
            }
            let Some(qm) = st.ready.pop_front() else {
                return Ok(None);
            };
            if !no_ack {
                st.unacked += 1;
            }
            (qm, st.ready.len())
        };
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if let Some(store) = &self.store
            && qm.persisted
        {
            if no_ack {
                store.remove(qm.id)?;
            } else if !qm.redelivered {
                store.mark_delivered(qm.id)?;
            }
            self.commit.note_write();
        }
        Ok(Some(GetResult {
            message: qm,
            remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        }))
    }

    /// Removes every ready message; returns how many.
    pub fn purge(&self) -> BrokerResult<u32> {
        let mut st = self.lock();
        let (drained, paged_start, paged) = st.ready.drain();
        if let Some(store) = &self.store {
            for m in drained.iter().filter(|m| m.persisted) {
                store.remove(m.id)?;
            }
            if paged > 0 {
                // Paged persistent messages are every stored id from paged_start on (unacked
                // ones all have lower ids: they were in memory).
                store.remove_from(paged_start)?;
            }
            self.commit.note_write();
        }
        if let Some(s) = st.spill.as_mut() {
            s.clear()?;
        }
        Ok(u32::try_from(drained.len() + paged).unwrap_or(u32::MAX))
    }

    /// Marks the queue deleted and returns its consumers (to notify) and its ready count.
    pub(crate) fn mark_deleted(&self) -> (Vec<ConsumerHandle>, u32) {
        self.deleted.store(true, Ordering::Release);
        let mut st = self.lock();
        let n = st.ready.len();
        let _ = st.ready.drain();
        st.spill = None;
        (
            std::mem::take(&mut st.consumers),
            u32::try_from(n).unwrap_or(u32::MAX),
        )
    }

    /// Ready messages.
    pub fn message_count(&self) -> u32 {
        u32::try_from(self.lock().ready.len()).unwrap_or(u32::MAX)
    }

    /// Consumers.
    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    /// A consistent snapshot of counts for management: (ready, unacked, consumers, ready bytes).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let st = self.lock();
        (
            st.ready.len(),
            st.unacked,
            st.consumers.len(),
            st.ready.bytes(),
        )
    }

    /// The consumers, for management listings.
    pub fn consumers(&self) -> Vec<ConsumerHandle> {
        self.lock().consumers.clone()
    }
}

/// A message's properties as the store keeps them: their AMQP encoding, as the publisher sent
/// it (not re-encoded), opaque to storage.
fn stored_properties(msg: &Message) -> &[u8] {
    msg.properties.as_bytes()
}

/// The storage record of a message, borrowing it and its [`stored_properties`].
fn to_record<'a>(msg: &'a Message, properties: &'a [u8]) -> MessageView<'a> {
    MessageView {
        exchange: msg.exchange.as_str(),
        routing_key: msg.routing_key.as_str(),
        properties,
        meta: &[],
        body: &msg.body,
    }
}
