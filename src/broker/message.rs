//! A published message and a delivery of it to one consumer.

use crate::protocol::properties::Properties;
use crate::protocol::types::ShortStr;
use bytes::Bytes;
use std::sync::Arc;

use super::queue::Queue;

/// An immutable published message. Shared (`Arc`) by every queue it was routed to, so a fanout
/// to N queues costs one allocation and one copy of nothing.
#[derive(Debug)]
pub struct Message {
    /// The exchange it was published to.
    pub exchange: ShortStr,
    /// Its routing key.
    pub routing_key: ShortStr,
    /// Its properties as the publisher encoded them (validated at decode): deliveries,
    /// returns and storage use these bytes unchanged; [`Properties::decode`] gives values.
    pub properties: Properties,
    /// Its body: a slice of the read buffer when it came in one frame.
    pub body: Bytes,
}

impl Message {
    /// delivery-mode 2.
    pub fn is_persistent(&self) -> bool {
        self.properties.is_persistent()
    }

    /// Bytes this message holds in memory, roughly (for accounting, not exact).
    pub fn size(&self) -> usize {
        self.body.len() + self.exchange.len() + self.routing_key.len() + 64
    }
}

/// One message in one queue: the shared message plus its queue-local id and flags.
#[derive(Clone, Debug)]
pub struct QueuedMessage {
    /// Queue-local id, increasing in publish order; the storage key for persisted copies.
    pub id: u64,
    /// The message.
    pub msg: Arc<Message>,
    /// True once it has been delivered and came back (requeue, channel close, restart).
    pub redelivered: bool,
    /// True when this copy is in the queue's store (durable queue, persistent message).
    pub persisted: bool,
}

/// A message on its way to a consumer, sent to the consumer's connection mailbox.
#[derive(Debug)]
pub struct Delivery {
    /// The queue it came from (acks and requeues go back there).
    pub queue: Arc<Queue>,
    /// The channel the consumer lives on.
    pub channel: u16,
    /// The consumer's tag.
    pub consumer_tag: ShortStr,
    /// The message.
    pub message: QueuedMessage,
    /// Sent to a no-ack consumer (already counted as acked by the queue).
    pub no_ack: bool,
}
