//! A published message, one queue's copy of it, and a delivery of it to one consumer.
//!
//! Also the per-copy metadata the store keeps opaque for us ([`QueuedMessage::meta`]: the TTL
//! deadline, so a message keeps its remaining TTL across a restart) and the `x-delivery-count`
//! header a redelivered copy carries.

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldValue, ShortStr};
use bytes::Bytes;
use std::borrow::Cow;
use std::sync::Arc;

use super::consumed::Awaited;
use super::queue::Queue;

/// An immutable published message. Shared (`Arc`) by every queue it was routed to, so a fanout
/// to N queues costs one allocation and one copy of nothing.
#[derive(Debug)]
pub struct Message {
    /// The exchange it was published to (for a dead-lettered copy: the dead-letter exchange).
    pub exchange: ShortStr,
    /// Its routing key.
    pub routing_key: ShortStr,
    /// Its properties as the publisher encoded them (validated at decode): deliveries,
    /// returns and storage use these bytes unchanged; [`Properties::decode`] gives values.
    pub properties: Properties,
    /// Its body: a slice of the read buffer when it came in one frame.
    pub body: Bytes,
    /// Its publisher's confirm, when that may go out once every copy is consumed (a
    /// persistent message on a confirm-mode channel; see [`super::consumed`]). Copies made
    /// from it (dead letters, delayed, read back) carry none.
    pub awaited: Option<Awaited>,
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

    /// A message with no properties (tests).
    #[cfg(test)]
    pub(crate) fn for_tests(exchange: &str, routing_key: &str, body: Vec<u8>) -> Message {
        Message {
            exchange: ShortStr::try_from(exchange).unwrap_or_default(),
            routing_key: ShortStr::try_from(routing_key).unwrap_or_default(),
            properties: Properties::EMPTY,
            body: Bytes::from(body),
            awaited: None,
        }
    }
}

/// Bytes a message in a queue costs beyond its body, for the memory budget: what the heap
/// really holds for it, or the budget bounds less than it says (measured with heaptrack on a
/// 1,000-queue backlog: 16 B messages read back from disk took 1.3x the old estimate). The
/// queue entry with the ready list's growth slack (half again), the shared message with its
/// reference counts, the body's shared header, and the allocator's header and rounding for
/// each of the three allocations (message, body, body header).
pub const MESSAGE_OVERHEAD: usize = std::mem::size_of::<QueuedMessage>() * 3 / 2
    + std::mem::size_of::<Message>()
    + 16
    + 32
    + 3 * 16;

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
    /// When it expires, wall-clock milliseconds since the epoch; 0 for never.
    pub expires_at: u64,
    /// How many times it came back to the queue after a delivery (`x-delivery-count`).
    pub delivery_count: u32,
}

/// Version tag of [`QueuedMessage::meta`].
const META_V1: u8 = 1;

impl QueuedMessage {
    /// A fresh copy: never delivered, no deadline.
    pub fn new(id: u64, msg: Arc<Message>, persisted: bool) -> QueuedMessage {
        QueuedMessage {
            id,
            msg,
            redelivered: false,
            persisted,
            expires_at: 0,
            delivery_count: 0,
        }
    }

    /// Bytes this copy counts for in the memory budget.
    pub fn cost(&self) -> usize {
        self.msg.body.len() + MESSAGE_OVERHEAD
    }

    /// True when its deadline has passed at wall-clock time `now_ms`.
    #[inline]
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now_ms
    }

    /// The metadata stored with a persisted copy: empty when there is none (no deadline), else
    /// a version byte and the deadline (u64, big-endian).
    pub fn meta(&self) -> MetaBytes {
        let mut m = MetaBytes::default();
        if self.expires_at != 0 {
            m.buf[0] = META_V1;
            m.buf[1..9].copy_from_slice(&self.expires_at.to_be_bytes());
            m.len = 9;
        }
        m
    }

    /// Reads [`QueuedMessage::meta`] back: the deadline (0 when none). Unknown versions and
    /// short records count as no deadline, logged.
    pub fn deadline_from_meta(meta: &[u8]) -> u64 {
        match meta {
            [] => 0,
            [META_V1, rest @ ..] if rest.len() >= 8 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&rest[..8]);
                u64::from_be_bytes(b)
            }
            other => {
                tracing::warn!(len = other.len(), "unknown message metadata; ignored");
                0
            }
        }
    }

    /// The properties to deliver this copy with: the publisher's bytes, unchanged, unless it
    /// came back before, when the headers carry `x-delivery-count` (RabbitMQ's quorum-queue
    /// header; its headers table comes back sorted by key, as RabbitMQ's `set_table_value`
    /// leaves it).
    pub fn delivery_properties(&self) -> Cow<'_, Properties> {
        if self.delivery_count == 0 {
            return Cow::Borrowed(&self.msg.properties);
        }
        let mut p = self.msg.properties.decode();
        let mut headers = p.headers.take().unwrap_or_default();
        headers.insert(
            ShortStr::from_static("x-delivery-count"),
            FieldValue::I64(i64::from(self.delivery_count)),
        );
        headers.0.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        p.headers = Some(headers);
        Cow::Owned(Properties::from(&p))
    }
}

/// A small inline buffer for [`QueuedMessage::meta`] (no allocation per stored message).
#[derive(Clone, Copy, Debug, Default)]
pub struct MetaBytes {
    buf: [u8; 9],
    len: usize,
}

impl std::ops::Deref for MetaBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
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
    /// A copy for a browsing consumer (`x-browse`): the message stays in the queue, so an
    /// undelivered copy is dropped, not put back.
    pub copy: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties::BasicProperties;
    use crate::protocol::types::FieldTable;

    #[test]
    fn meta_round_trips_the_deadline_and_is_empty_without_one() {
        let mut qm = QueuedMessage::new(1, Arc::new(Message::for_tests("", "q", vec![])), true);
        assert!(qm.meta().is_empty());
        qm.expires_at = 1_700_000_000_123;
        assert_eq!(
            QueuedMessage::deadline_from_meta(&qm.meta()),
            1_700_000_000_123
        );
        assert_eq!(QueuedMessage::deadline_from_meta(&[9, 9]), 0);
    }

    #[test]
    fn redelivered_copies_carry_x_delivery_count_with_sorted_headers() {
        let props = BasicProperties {
            headers: Some(FieldTable(vec![(
                ShortStr::from_static("zz"),
                FieldValue::Bool(true),
            )])),
            ..Default::default()
        };
        let msg = Message {
            properties: Properties::from(&props),
            ..Message::for_tests("", "q", vec![])
        };
        let mut qm = QueuedMessage::new(1, Arc::new(msg), false);
        assert!(matches!(qm.delivery_properties(), Cow::Borrowed(_)));
        qm.delivery_count = 2;
        let h = qm
            .delivery_properties()
            .headers()
            .expect("headers")
            .0
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Vec<_>>();
        assert_eq!(
            h,
            [
                ("x-delivery-count".to_string(), FieldValue::I64(2)),
                ("zz".to_string(), FieldValue::Bool(true))
            ]
        );
    }
}
