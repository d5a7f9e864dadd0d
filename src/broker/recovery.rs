//! Startup recovery: persistent messages of durable queues come back from the store in id
//! order; those that had been delivered come back marked redelivered.

use crate::protocol::properties::Properties;
use crate::protocol::types::ShortStr;
use crate::storage::{QueueStore, StoredMessage};
use std::sync::Arc;

use super::error::BrokerResult;
use super::message::{Message, QueuedMessage};
use super::queue::Queue;

/// Loads the first window of stored messages of `q` into memory (its [`MemoryWindow`] in
/// messages and in body bytes); the rest stay paged in the store and are read back as consumers
/// drain the queue.
///
/// [`MemoryWindow`]: super::queue::MemoryWindow
pub(crate) fn load_messages(q: &Queue, store: &dyn QueueStore) -> BrokerResult<()> {
    let stored = store.len();
    let w = q.window();
    let mut restored: Vec<QueuedMessage> = Vec::new();
    let (mut bytes, mut read, mut from) = (0usize, 0usize, 0u64);
    // Message sizes are unknown until one is read: the first read takes one message, the next
    // as many as fit by its size (a window of small messages is two reads).
    let mut want = 1;
    while want > 0 {
        let batch = store.read(from, want)?;
        let Some(last) = batch.last() else {
            break;
        };
        from = last.id + 1;
        let full = batch.len() == want;
        for sm in batch {
            read += 1;
            bytes += sm.record.body.len();
            restored.extend(to_queued(&q.name, sm, true));
        }
        if !full || bytes >= w.bytes {
            break;
        }
        let avg = (bytes / read).max(1);
        want = w
            .messages
            .saturating_sub(read)
            .min((w.bytes - bytes).div_ceil(avg));
    }
    let more = stored.saturating_sub(restored.len());
    if stored > 0 {
        tracing::info!(queue = %q.name, vhost = %q.vhost, messages = stored, in_memory = restored.len(), "recovered messages");
    }
    q.restore(restored, more);
    Ok(())
}

/// A stored message as a queue entry. One whose properties are malformed is logged and
/// skipped (it stays in the store for inspection): they are validated, as a publish is, before
/// a consumer can receive them.
pub(crate) fn to_queued(queue: &str, sm: StoredMessage, persisted: bool) -> Option<QueuedMessage> {
    let properties = match Properties::from_bytes(sm.record.properties) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(queue, id = sm.id, error = %e, "stored message has bad properties; skipped");
            return None;
        }
    };
    let msg = Message {
        exchange: ShortStr::try_from(sm.record.exchange).unwrap_or_default(),
        routing_key: ShortStr::try_from(sm.record.routing_key).unwrap_or_default(),
        properties,
        body: sm.record.body,
    };
    Some(QueuedMessage {
        id: sm.id,
        msg: Arc::new(msg),
        redelivered: sm.delivered,
        persisted,
    })
}
