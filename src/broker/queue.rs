//! A queue: ready messages in FIFO order, its consumers, and round-robin dispatch.
//!
//! All state sits behind one `std::sync::Mutex` held only for in-memory work: pushes, pops and
//! `send`s into mailboxes. Store writes happen outside the lock (ids are allocated before), so a
//! slow disk never stalls a consumer of the same queue.
//!
//! Unacked messages are not kept here: the session that received a delivery holds it and hands it
//! back with [`Queue::ack`], [`Queue::requeue`] or [`Queue::discard`]. The queue only counts them.
//! Requeued messages return to their original place (the ready list is ordered by id), marked
//! redelivered, as RabbitMQ does.
//!
//! Extension points for TTL, dead-lettering, length limits and priorities: [`QueueArgs`] parses
//! arguments once; [`ReadyList`] is the only place that orders and stores ready messages;
//! [`Queue::discard`] is where dead-lettering hooks in.

use crate::protocol::properties::encode_properties;
use crate::protocol::types::FieldTable;
use crate::storage::{MessageRecord, QueueStore, StoreError};
use bytes::BytesMut;
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

/// The ready messages of a queue, ordered by id.
#[derive(Debug, Default)]
pub struct ReadyList {
    items: VecDeque<QueuedMessage>,
    bytes: usize,
}

impl ReadyList {
    /// Adds a message in id order (almost always at the back).
    fn insert(&mut self, qm: QueuedMessage) {
        self.bytes += qm.msg.body.len();
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

    /// Number of ready messages.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// True when no message is ready.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Body bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn drain(&mut self) -> Vec<QueuedMessage> {
        self.bytes = 0;
        self.items.drain(..).collect()
    }
}

#[derive(Debug, Default)]
struct QueueState {
    ready: ReadyList,
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
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let persisted = match &self.store {
            Some(store) if msg.is_persistent() => {
                store.put(id, &to_record(&msg))?;
                self.commit.note_write();
                true
            }
            _ => false,
        };
        self.stats.published.fetch_add(1, Ordering::Relaxed);
        let qm = QueuedMessage {
            id,
            msg,
            redelivered: false,
            persisted,
        };
        let mut ops = StoreOps::default();
        {
            let mut st = self.lock();
            st.ready.insert(qm);
            self.dispatch_locked(&mut st, &mut ops);
        }
        self.apply(ops)?;
        Ok(persisted)
    }

    /// Restores messages read back from the store at startup.
    pub(crate) fn restore(&self, msgs: Vec<QueuedMessage>) {
        let mut st = self.lock();
        for m in msgs {
            st.ready.insert(m);
        }
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
        let drained = self.lock().ready.drain();
        if let Some(store) = &self.store {
            for m in drained.iter().filter(|m| m.persisted) {
                store.remove(m.id)?;
            }
        }
        Ok(u32::try_from(drained.len()).unwrap_or(u32::MAX))
    }

    /// Marks the queue deleted and returns its consumers (to notify) and its ready count.
    pub(crate) fn mark_deleted(&self) -> (Vec<ConsumerHandle>, u32) {
        self.deleted.store(true, Ordering::Release);
        let mut st = self.lock();
        let n = st.ready.len();
        st.ready.drain();
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

/// The storage record of a message: properties in their AMQP encoding, opaque to storage.
pub(crate) fn to_record(msg: &Message) -> MessageRecord {
    let mut props = BytesMut::with_capacity(64);
    encode_properties(&msg.properties, &mut props);
    MessageRecord {
        exchange: msg.exchange.to_string(),
        routing_key: msg.routing_key.to_string(),
        properties: props.freeze(),
        body: msg.body.clone(),
    }
}
