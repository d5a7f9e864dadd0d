//! What queue operations return: how a push went, what a get found, the counts, and the
//! follow-up work that crosses queues ([`Followups`]) for the vhost to carry out once no queue
//! lock is held.

use std::sync::Arc;

use super::Queue;
use crate::broker::message::QueuedMessage;

/// How delivered messages are settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settle {
    /// basic.ack: they leave the queue.
    Ack,
    /// Back to the queue (nack/reject with requeue, recover, channel close).
    Requeue,
    /// Rejected without requeue: dead-lettered (reason `rejected`) or dropped.
    Reject,
}

/// How a push went.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// The queue refused it (`x-overflow` reject-publish or reject-publish-dlx): a confirming
    /// publisher gets basic.nack.
    pub refused: bool,
    /// The group-commit sequence number its store write got: its confirm waits until the store
    /// has flushed that far. 0: nothing to wait for.
    pub flush: u64,
    /// Its id in the queue's store, when it was stored.
    pub stored: Option<u64>,
    /// The queue is falling behind its consumers' connections: the publisher should pause
    /// reading for a moment (see [`crate::broker::PublishOutcome::flow`]).
    pub flow: bool,
}

/// Why a message is dead-lettered (x-death's `reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Rejected or nacked without requeue.
    Rejected,
    /// Its TTL ran out.
    Expired,
    /// Dropped or refused by a length limit.
    Maxlen,
    /// Returned more often than the delivery limit allows.
    DeliveryLimit,
}

impl Reason {
    /// Every reason, in the order metrics list them.
    pub const ALL: [Reason; 4] = [
        Reason::Rejected,
        Reason::Expired,
        Reason::Maxlen,
        Reason::DeliveryLimit,
    ];

    /// RabbitMQ's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::Expired => "expired",
            Reason::Maxlen => "maxlen",
            Reason::DeliveryLimit => "delivery_limit",
        }
    }

    /// Index into [`Reason::ALL`].
    pub fn index(self) -> usize {
        match self {
            Reason::Rejected => 0,
            Reason::Expired => 1,
            Reason::Maxlen => 2,
            Reason::DeliveryLimit => 3,
        }
    }
}

/// A message leaving a queue to be dead-lettered.
#[derive(Debug)]
pub struct DeadLetter {
    /// The queue it leaves.
    pub source: Arc<Queue>,
    /// Its copy in that queue.
    pub message: QueuedMessage,
    /// Why.
    pub reason: Reason,
    /// Where to: the queue's dead-letter exchange at the time.
    pub exchange: Arc<str>,
    /// The routing key to use instead of the message's own keys.
    pub routing_key: Option<Arc<str>>,
    /// The copy is in the source's store and must be removed from it once the targets hold
    /// the new one (never before: at-least-once).
    pub in_source_store: bool,
}

/// Work a queue operation leaves for the vhost, done with no queue lock held.
#[derive(Debug, Default)]
#[must_use]
pub struct Followups {
    /// Messages to dead-letter, in order.
    pub dead: Vec<DeadLetter>,
    /// Queues whose `x-expires` ran out: delete them.
    pub expired_queues: Vec<Arc<Queue>>,
}

impl Followups {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.dead.is_empty() && self.expired_queues.is_empty()
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

/// A consistent snapshot of a queue's counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Ready messages (in memory and paged).
    pub ready: usize,
    /// Delivered, not yet settled.
    pub unacked: usize,
    /// Consumers.
    pub consumers: usize,
    /// Body bytes of the ready messages.
    pub ready_bytes: usize,
    /// Ready messages held in memory.
    pub in_memory: usize,
    /// Body bytes of the ready messages held in memory.
    pub in_memory_bytes: usize,
    /// Bytes of memory charged to the global budget.
    pub memory: usize,
}
