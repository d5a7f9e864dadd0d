//! Queues: the record every part of the broker holds ([`Queue`]: name, flags, arguments,
//! counters) and, behind it, the queue type that keeps the messages ([`QueueType`], RabbitMQ's
//! `rabbit_queue_type`).
//!
//! The rest of the broker talks to a queue only through [`Queue`]'s methods, which forward to
//! its type: push, consume and cancel, dispatch, settle, get, purge, tick, counts and info.
//! Classic queues ([`classic`], with priorities as lanes) are the one type today; stream or
//! replicated queues plug in as other implementations of [`QueueType`] without touching the code that holds an
//! `Arc<Queue>`.
//!
//! Rules every type follows (STYLE.md §5):
//! - time is passed in ([`Now`]); no clock is read;
//! - decide under the lock, act after it: a type's own store writes and reads happen after its
//!   lock is released, and work that crosses queues (dead letters to route, queues to delete)
//!   is handed back in [`Followups`] for the vhost to carry out with no queue lock held, so
//!   dead-lettering from A to B and back to A cannot deadlock;
//! - store errors are returned, never logged and dropped: the caller closes its connection with
//!   541.
//!
//! Files: [`args`] (argument checks, equivalence, policy resolution), [`ready`] (the ready
//! list), [`lanes`] (ready lists by priority), [`consumers`] (consumer selection),
//! [`outcome`] (what operations return), [`classic`] (the classic queue type).

pub mod args;
pub mod classic;
pub mod consumers;
pub mod lanes;
pub mod outcome;
pub mod ready;

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use super::consumer::{ConnId, ConsumerHandle};
use super::error::BrokerResult;
use super::message::{Message, QueuedMessage};
use super::time::Now;
use crate::storage::StoreError;

pub use args::{ConsumerArgs, FeatureValues, Overflow, QueueArgs, QueueSettings};
pub use classic::browse::{Browsed, MAX_BROWSE_REACH};
pub use outcome::{Counts, DeadLetter, Followups, GetResult, Pushed, Reason, Settle};

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
/// `bytes` body bytes, whichever is reached first (and what the global memory budget allows).
/// The rest is paged to disk and read back as consumers drain the queue, so memory does not
/// grow with the backlog or with message size.
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

/// The policies a queue matched, for management: names and the merged definition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppliedPolicy {
    /// The policy's name.
    pub policy: Option<String>,
    /// The operator policy's name.
    pub operator_policy: Option<String>,
    /// The merged values of both (what the queue takes from policies).
    pub values: FeatureValues,
    /// The merged definitions (management's `effective_policy_definition`).
    pub definition: serde_json::Map<String, serde_json::Value>,
}

/// What a queue type does. See the module docs for the rules; `q` is the record that owns
/// the type (deliveries carry it, so acks come back to it).
pub trait QueueType: Send + Sync + std::fmt::Debug {
    /// Enqueues a message, or hands it to a consumer at once. Refused messages
    /// (`reject-publish`) are reported in [`Pushed::refused`].
    fn push(
        &self,
        q: &Arc<Queue>,
        msg: &Arc<Message>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Pushed, StoreError>;
    /// Pushes several messages in order, appending one [`Pushed`] per message to `out` (a
    /// type may take its lock once for all of them). A store error stops at that message.
    fn push_many(
        &self,
        q: &Arc<Queue>,
        msgs: &[&Arc<Message>],
        now: Now,
        fx: &mut Followups,
        out: &mut Vec<Pushed>,
    ) -> Result<(), StoreError> {
        for m in msgs {
            out.push(self.push(q, m, now, fx)?);
        }
        Ok(())
    }
    /// Adds a consumer (no dispatch: the caller sends consume-ok first, then dispatches).
    fn consume(&self, q: &Arc<Queue>, c: ConsumerHandle, now: Now) -> BrokerResult<()>;
    /// Removes a consumer; `Some(true)` when it was the last of an auto-delete queue, `None`
    /// when there was no such consumer.
    fn cancel(
        &self,
        q: &Arc<Queue>,
        conn: ConnId,
        channel: u16,
        tag: &str,
        now: Now,
    ) -> Option<bool>;
    /// Pushes ready messages to consumers that have credit.
    fn dispatch(&self, q: &Arc<Queue>, now: Now, fx: &mut Followups) -> Result<(), StoreError>;
    /// Settles delivered messages (ack, requeue, or reject without requeue).
    fn settle(
        &self,
        q: &Arc<Queue>,
        how: Settle,
        msgs: Vec<QueuedMessage>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError>;
    /// Takes back a delivery that never reached its consumer: back in place, not redelivered.
    fn undeliver(
        &self,
        q: &Arc<Queue>,
        msg: QueuedMessage,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError>;
    /// basic.get.
    fn get(
        &self,
        q: &Arc<Queue>,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Option<GetResult>, StoreError>;
    /// Removes every ready message; returns how many.
    fn purge(&self, q: &Arc<Queue>, now: Now) -> Result<u32, StoreError>;
    /// Time-driven work that is due (expired messages, queue expiry); re-arms the timer.
    fn tick(&self, q: &Arc<Queue>, now: Now, fx: &mut Followups) -> Result<(), StoreError>;
    /// Runs with new settings from now on (a policy changed).
    fn apply_settings(
        &self,
        q: &Arc<Queue>,
        settings: QueueSettings,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError>;
    /// The settings it runs with.
    fn settings(&self) -> QueueSettings;
    /// The queue was used (declared again): its `x-expires` period starts over.
    fn touch(&self, q: &Arc<Queue>, now: Now);
    /// Removes a message's stored copy that left the queue under lock earlier (dead-lettered:
    /// called once the targets hold the new copy).
    fn forget_stored(&self, id: u64) -> Result<(), StoreError>;
    /// Marks the queue deleted, drops its messages, and returns its consumers (to notify) and
    /// how many messages were ready.
    fn delete(&self) -> (Vec<ConsumerHandle>, u32);
    /// True once deleted.
    fn is_deleted(&self) -> bool;
    /// A consistent snapshot of its counts.
    fn counts(&self) -> Counts;
    /// Its consumers, for listings.
    fn consumers(&self) -> Vec<ConsumerHandle>;
    /// The type's name in management (`classic`).
    /// Up to `count` ready messages from position `offset` in delivery order, left in the
    /// queue unchanged (not taken, reordered or marked redelivered).
    fn browse(&self, offset: usize, count: usize) -> Result<Browsed, StoreError>;
    fn kind(&self) -> &'static str;
}

/// A queue as the rest of the broker holds it: identity, flags, declared arguments and
/// counters, plus the queue type that keeps its messages.
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
    /// Declared arguments.
    pub args: QueueArgs,
    /// Counters.
    pub stats: QueueStats,
    policy: RwLock<AppliedPolicy>,
    /// The settings' `consumer_timeout` (`u64::MAX`: none), read per delivery without a lock.
    consumer_timeout: AtomicU64,
    imp: Box<dyn QueueType>,
}

impl Queue {
    /// A queue record over a queue type.
    pub(crate) fn new(
        name: Arc<str>,
        vhost: Arc<str>,
        durable: bool,
        exclusive: Option<ConnId>,
        auto_delete: bool,
        args: QueueArgs,
        imp: Box<dyn QueueType>,
    ) -> Arc<Queue> {
        let consumer_timeout = AtomicU64::new(imp.settings().consumer_timeout.unwrap_or(u64::MAX));
        Arc::new(Queue {
            name,
            vhost,
            durable,
            exclusive,
            auto_delete,
            args,
            stats: QueueStats::default(),
            policy: RwLock::new(AppliedPolicy::default()),
            consumer_timeout,
            imp,
        })
    }

    /// See [`QueueType::push`].
    pub fn push(
        self: &Arc<Self>,
        msg: &Arc<Message>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Pushed, StoreError> {
        self.imp.push(self, msg, now, fx)
    }

    /// See [`QueueType::push_many`].
    pub fn push_many(
        self: &Arc<Self>,
        msgs: &[&Arc<Message>],
        now: Now,
        fx: &mut Followups,
        out: &mut Vec<Pushed>,
    ) -> Result<(), StoreError> {
        self.imp.push_many(self, msgs, now, fx, out)
    }

    /// See [`QueueType::consume`].
    pub fn consume(self: &Arc<Self>, c: ConsumerHandle, now: Now) -> BrokerResult<()> {
        self.imp.consume(self, c, now)
    }

    /// See [`QueueType::cancel`].
    pub fn cancel(
        self: &Arc<Self>,
        conn: ConnId,
        channel: u16,
        tag: &str,
        now: Now,
    ) -> Option<bool> {
        self.imp.cancel(self, conn, channel, tag, now)
    }

    /// See [`QueueType::dispatch`].
    pub fn dispatch(self: &Arc<Self>, now: Now, fx: &mut Followups) -> Result<(), StoreError> {
        self.imp.dispatch(self, now, fx)
    }

    /// See [`QueueType::settle`].
    pub fn settle(
        self: &Arc<Self>,
        how: Settle,
        msgs: Vec<QueuedMessage>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        if msgs.is_empty() {
            return Ok(());
        }
        self.imp.settle(self, how, msgs, now, fx)
    }

    /// See [`QueueType::undeliver`].
    pub fn undeliver(
        self: &Arc<Self>,
        msg: QueuedMessage,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        self.imp.undeliver(self, msg, no_ack, now, fx)
    }

    /// See [`QueueType::get`].
    pub fn get(
        self: &Arc<Self>,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Option<GetResult>, StoreError> {
        self.imp.get(self, no_ack, now, fx)
    }

    /// See [`QueueType::purge`].
    pub fn purge(self: &Arc<Self>, now: Now) -> Result<u32, StoreError> {
        self.imp.purge(self, now)
    }

    /// See [`QueueType::tick`].
    pub fn tick(self: &Arc<Self>, now: Now, fx: &mut Followups) -> Result<(), StoreError> {
        self.imp.tick(self, now, fx)
    }

    /// Applies policies: records what matched and runs with the resolved settings.
    pub(crate) fn apply_policy(
        self: &Arc<Self>,
        applied: AppliedPolicy,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        let settings = QueueSettings::resolve(&self.args.values, &applied.values);
        self.record_policy(applied);
        self.consumer_timeout.store(
            settings.consumer_timeout.unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
        if settings != self.imp.settings() {
            self.imp.apply_settings(self, settings, now, fx)?;
        }
        Ok(())
    }

    /// Records the policies it matched (its settings were resolved with them).
    pub(crate) fn record_policy(&self, applied: AppliedPolicy) {
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = applied;
    }

    /// See [`QueueType::touch`].
    pub fn touch(self: &Arc<Self>, now: Now) {
        self.imp.touch(self, now);
    }

    /// See [`QueueType::browse`].
    pub fn browse(&self, offset: usize, count: usize) -> Result<Browsed, StoreError> {
        self.imp.browse(offset, count)
    }

    /// See [`QueueType::forget_stored`].
    pub fn forget_stored(&self, id: u64) -> Result<(), StoreError> {
        self.imp.forget_stored(id)
    }

    /// The policies it matched.
    pub fn policy(&self) -> AppliedPolicy {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How long its deliveries may stay unacknowledged, milliseconds (`x-consumer-timeout`
    /// or policy `consumer-timeout`); `None`: the broker's `consumer_timeout` applies.
    pub fn consumer_timeout(&self) -> Option<u64> {
        match self
            .consumer_timeout
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            u64::MAX => None,
            ms => Some(ms),
        }
    }

    /// The settings it runs with (arguments resolved against policies).
    pub fn settings(&self) -> QueueSettings {
        self.imp.settings()
    }

    /// See [`QueueType::delete`].
    pub(crate) fn mark_deleted(&self) -> (Vec<ConsumerHandle>, u32) {
        self.imp.delete()
    }

    /// True once deleted; late pushes are dropped.
    pub fn is_deleted(&self) -> bool {
        self.imp.is_deleted()
    }

    /// Ready messages.
    pub fn message_count(&self) -> u32 {
        u32::try_from(self.imp.counts().ready).unwrap_or(u32::MAX)
    }

    /// Consumers.
    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.imp.counts().consumers).unwrap_or(u32::MAX)
    }

    /// A consistent snapshot of its counts (one lock).
    pub fn counts(&self) -> Counts {
        self.imp.counts()
    }

    /// The consumers, for management listings.
    pub fn consumers(&self) -> Vec<ConsumerHandle> {
        self.imp.consumers()
    }

    /// The queue type's name (`classic`).
    pub fn kind(&self) -> &'static str {
        self.imp.kind()
    }
}
