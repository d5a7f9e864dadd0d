//! Direct reply-to (RabbitMQ's `amq.rabbitmq.reply-to` pseudo-queue): a requester consumes
//! from `amq.rabbitmq.reply-to` (no-ack only, one such consumer per channel), publishes requests
//! with `reply_to` set to that name, and the broker rewrites it to
//! `amq.rabbitmq.reply-to.<channel>.<key>`. A reply published to the default exchange with that
//! routing key goes straight to the requester's channel, through no queue.
//!
//! `<channel>` encodes the requester's connection id and channel number (base64url of
//! `conn u64 ‖ channel u16`, big-endian); `<key>` is 16 random bytes (base64url), so a reply
//! key cannot be guessed from another. A reply whose channel or key no longer matches (the
//! requester is gone, or cancelled and consumed again) is dropped silently, as RabbitMQ does.
//! The registry lives in the broker, not a vhost: RabbitMQ routes replies by channel process,
//! whatever vhost the reply is published in.
//!
//! Deliveries go through the requester connection's mailbox ([`Outbound::Reply`]); at most
//! [`REPLY_TRANSIT_LIMIT`] replies per reply consumer may wait there. Beyond that a reply is
//! dropped (counted in `replies_dropped`): a requester that stops reading cannot make the
//! broker hold unbounded replies. RabbitMQ has no such bound.

use crate::protocol::types::ShortStr;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::consumer::{ConnId, Credit, Mailbox, Outbound};
use super::message::Message;

/// The pseudo-queue's name.
pub const REPLY_QUEUE: &str = "amq.rabbitmq.reply-to";
/// What a rewritten `reply_to` starts with.
pub const REPLY_PREFIX: &str = "amq.rabbitmq.reply-to.";
/// Replies that may wait in one requester's mailbox.
pub const REPLY_TRANSIT_LIMIT: u32 = 8192;

#[derive(Debug)]
struct Entry {
    tag: ShortStr,
    key: String,
    mailbox: Mailbox,
    transit: Arc<Credit>,
}

/// The reply consumers of the node, by (connection, channel).
#[derive(Debug, Default)]
pub struct ReplyConsumers {
    map: DashMap<(ConnId, u16), Entry>,
    /// Replies dropped because the requester's mailbox was full.
    pub replies_dropped: AtomicU64,
}

fn channel_part(conn: ConnId, channel: u16) -> String {
    let mut raw = [0u8; 10];
    raw[..8].copy_from_slice(&conn.0.to_be_bytes());
    raw[8..].copy_from_slice(&channel.to_be_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

/// `(conn, channel, key)` of a reply routing key, if it has the shape.
fn decode(routing_key: &str) -> Option<(ConnId, u16, &str)> {
    let rest = routing_key.strip_prefix(REPLY_PREFIX)?;
    let (ch, key) = rest.split_once('.')?;
    let raw = URL_SAFE_NO_PAD.decode(ch).ok()?;
    let raw: [u8; 10] = raw.try_into().ok()?;
    let mut conn = [0u8; 8];
    conn.copy_from_slice(&raw[..8]);
    Some((
        ConnId(u64::from_be_bytes(conn)),
        u16::from_be_bytes([raw[8], raw[9]]),
        key,
    ))
}

impl ReplyConsumers {
    /// Registers the reply consumer of a channel; returns the suffix its requests' `reply_to`
    /// gets (after [`REPLY_PREFIX`]).
    pub fn register(&self, conn: ConnId, channel: u16, tag: ShortStr, mailbox: Mailbox) -> String {
        let key = URL_SAFE_NO_PAD.encode(super::vhost::random_bytes());
        let suffix = format!("{}.{key}", channel_part(conn, channel));
        self.map.insert(
            (conn, channel),
            Entry {
                tag,
                key,
                mailbox,
                transit: Credit::new(REPLY_TRANSIT_LIMIT),
            },
        );
        suffix
    }

    /// Forgets a channel's reply consumer (cancel, channel close).
    pub fn unregister(&self, conn: ConnId, channel: u16) {
        self.map.remove(&(conn, channel));
    }

    /// True when `name` is the pseudo-queue or a live reply key (queue.declare answers for it).
    pub fn exists(&self, name: &str) -> bool {
        name == REPLY_QUEUE
            || decode(name).is_some_and(|(conn, ch, key)| {
                self.map.get(&(conn, ch)).is_some_and(|e| e.key == key)
            })
    }

    /// Sends `msg` to the reply consumer `routing_key` names. Unknown, stale or full: dropped.
    pub fn deliver(&self, routing_key: &str, msg: &Arc<Message>) {
        let Some((conn, channel, key)) = decode(routing_key) else {
            return;
        };
        let Some(e) = self.map.get(&(conn, channel)) else {
            return;
        };
        if e.key != key {
            return;
        }
        if !e.transit.try_acquire() {
            self.replies_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                conn = conn.0,
                channel,
                "reply dropped: requester's mailbox full"
            );
            return;
        }
        let _ = e.mailbox.send(Outbound::Reply {
            channel,
            consumer_tag: e.tag.clone(),
            message: Arc::clone(msg),
            transit: Arc::clone(&e.transit),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_stale_keys_are_not_found() {
        let r = ReplyConsumers::default();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let suffix = r.register(ConnId(7), 3, ShortStr::from_static("t"), tx.clone());
        let name = format!("{REPLY_PREFIX}{suffix}");
        assert!(r.exists(&name) && r.exists(REPLY_QUEUE));
        assert!(!r.exists(&format!("{name}x")));
        let msg = Arc::new(Message::for_tests("", &name, b"r".to_vec()));
        r.deliver(&name, &msg);
        assert!(matches!(
            rx.try_recv(),
            Ok(Outbound::Reply { channel: 3, .. })
        ));
        // Consumed again: the old key is dead.
        r.register(ConnId(7), 3, ShortStr::from_static("t"), tx);
        r.deliver(&name, &msg);
        assert!(rx.try_recv().is_err());
        assert!(!r.exists(&name));
        r.deliver("amq.rabbitmq.reply-to.bogus", &msg);
        assert!(rx.try_recv().is_err());
    }
}
