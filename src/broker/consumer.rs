//! Consumers as queues see them, the credit that bounds what a queue may push to one, and the
//! mailbox through which the broker reaches a connection.
//!
//! The broker never awaits: it `send`s into a connection's unbounded mailbox, and bounds what the
//! mailbox can hold with [`Credit`]s that the queue takes before sending and the session gives
//! back (on ack for prefetch, on encoding for transit). A queue that finds no credit keeps the
//! message; whoever gives credit back calls [`super::queue::Queue::dispatch`] again.

use crate::protocol::ReplyCode;
use crate::protocol::types::ShortStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use tokio::sync::mpsc;

use super::message::Delivery;

/// Identifies a client connection within the broker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What the broker sends to a connection's task.
#[derive(Debug)]
pub enum Outbound {
    /// A message for one of its consumers.
    Deliver(Delivery),
    /// The queue of one of its consumers went away (consumer cancel notification).
    ConsumerCancelled {
        /// Channel of the consumer.
        channel: u16,
        /// Its tag.
        consumer_tag: ShortStr,
    },
    /// Close the connection (management, shutdown).
    Close {
        /// Reply code, e.g. 320.
        code: ReplyCode,
        /// Reply text, without the code's name.
        text: String,
    },
    /// A direct reply-to reply for the reply consumer of a channel (no queue, no ack).
    Reply {
        /// Channel of the reply consumer.
        channel: u16,
        /// Its tag.
        consumer_tag: ShortStr,
        /// The reply.
        message: Arc<super::message::Message>,
        /// The reply consumer's mailbox credit: one slot to give back once handled.
        transit: Arc<Credit>,
    },
    /// The memory alarm changed: `Some(reason)` blocks publishers, `None` unblocks.
    Blocked(Option<String>),
    /// Publishes of a confirm-mode channel whose every copy was consumed: their confirms need
    /// no flush (see [`super::consumed`]).
    Consumed {
        /// The publisher's channel (its session checks it is still the same channel).
        to: Arc<super::consumed::ConfirmTo>,
        /// Their sequence numbers.
        tags: Vec<u64>,
    },
}

/// The sending side of a connection's mailbox.
pub type Mailbox = mpsc::UnboundedSender<Outbound>;

/// A counter with a limit: how many messages may be outstanding somewhere.
///
/// `limit == 0` means unlimited (AMQP's prefetch-count 0). A `paused` credit grants nothing
/// (channel.flow active=false).
#[derive(Debug, Default)]
pub struct Credit {
    limit: AtomicU32,
    used: AtomicU32,
    paused: AtomicBool,
}

impl Credit {
    /// A credit with `limit` slots (0 = unlimited).
    pub fn new(limit: u32) -> Arc<Self> {
        Arc::new(Credit {
            limit: AtomicU32::new(limit),
            used: AtomicU32::new(0),
            paused: AtomicBool::new(false),
        })
    }

    /// Takes one slot if there is room.
    pub fn try_acquire(&self) -> bool {
        if self.paused.load(Ordering::Acquire) {
            return false;
        }
        let limit = self.limit.load(Ordering::Acquire);
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if limit != 0 && used >= limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + 1,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    /// Gives `n` slots back. True when the credit was full before, i.e. a queue may be waiting.
    pub fn release(&self, n: u32) -> bool {
        let before = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            })
            .unwrap_or(0);
        let limit = self.limit.load(Ordering::Acquire);
        limit != 0 && before >= limit
    }

    /// Changes the limit (basic.qos). Returns true when this made room.
    pub fn set_limit(&self, limit: u32) -> bool {
        let old = self.limit.swap(limit, Ordering::AcqRel);
        limit == 0 || (old != 0 && limit > old)
    }

    /// Pauses or resumes (channel.flow). Returns true when resumed.
    pub fn set_paused(&self, paused: bool) -> bool {
        let was = self.paused.swap(paused, Ordering::AcqRel);
        was && !paused
    }

    /// Whether [`Credit::try_acquire`] would succeed now.
    pub fn has_room(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        !self.paused.load(Ordering::Acquire)
            && (limit == 0 || self.used.load(Ordering::Acquire) < limit)
    }

    /// Slots in use.
    pub fn used(&self) -> u32 {
        self.used.load(Ordering::Acquire)
    }

    /// The limit (0 = unlimited).
    pub fn limit(&self) -> u32 {
        self.limit.load(Ordering::Acquire)
    }
}

/// How many deliveries may sit in a connection's mailbox for one consumer before the queue stops
/// pushing to it. Bounds a slow no-ack consumer's memory: the queue, not the socket, holds the rest.
pub const TRANSIT_LIMIT: u32 = 512;

/// A consumer as its queue sees it.
#[derive(Debug, Clone)]
pub struct ConsumerHandle {
    /// Consumer tag, unique on its channel.
    pub tag: ShortStr,
    /// Channel number.
    pub channel: u16,
    /// Owning connection.
    pub conn: ConnId,
    /// Deliveries need no ack.
    pub no_ack: bool,
    /// Exclusive consumer: no other consumer may use the queue.
    pub exclusive: bool,
    /// `x-priority`: higher-priority consumers with credit get messages first.
    pub priority: i32,
    /// `x-browse`: receives copies of the messages, which stay in the queue.
    pub browse: bool,
    /// basic.qos global=false: per-consumer prefetch.
    pub prefetch: Arc<Credit>,
    /// basic.qos global=true and channel.flow: shared by the channel's consumers.
    pub channel_credit: Arc<Credit>,
    /// Deliveries in the mailbox not yet encoded (see [`TRANSIT_LIMIT`]).
    pub transit: Arc<Credit>,
    /// Where deliveries go.
    pub mailbox: Mailbox,
}

impl ConsumerHandle {
    /// Takes the credit one delivery needs, all or nothing.
    pub(crate) fn try_reserve(&self) -> bool {
        if !self.transit.try_acquire() {
            return false;
        }
        if self.no_ack {
            // Prefetch does not apply to no-ack consumers, but channel.flow does.
            if self.channel_credit.paused.load(Ordering::Acquire) {
                self.transit.release(1);
                return false;
            }
            return true;
        }
        if !self.channel_credit.try_acquire() {
            self.transit.release(1);
            return false;
        }
        if !self.prefetch.try_acquire() {
            self.channel_credit.release(1);
            self.transit.release(1);
            return false;
        }
        true
    }

    /// Whether the consumer would take a delivery now but for the deliveries already on their
    /// way to its connection (its `transit` credit): the connection is behind, not the client
    /// (a client at its prefetch limit, or paused by channel.flow, is not held by transit).
    pub(crate) fn held_by_transit(&self) -> bool {
        !self.transit.has_room()
            && if self.no_ack {
                !self.channel_credit.paused.load(Ordering::Acquire)
            } else {
                self.channel_credit.has_room() && self.prefetch.has_room()
            }
    }

    /// Gives back what [`Self::try_reserve`] took, when the delivery could not be sent.
    pub(crate) fn unreserve(&self) {
        self.transit.release(1);
        if !self.no_ack {
            self.channel_credit.release(1);
            self.prefetch.release(1);
        }
    }
}
