//! Startup recovery: persistent messages of durable queues come back from the store in id
//! order; those that had been delivered come back marked redelivered.

use crate::protocol::properties::Properties;
use crate::protocol::types::ShortStr;
use crate::storage::{QueueStore, StoredMessage};
use std::sync::Arc;

use super::error::BrokerResult;
use super::message::{Message, QueuedMessage};
use super::queue::Queue;

/// Loads the first window of stored messages of `q` into memory; the rest stay paged in the
/// store and are read back as consumers drain the queue.
pub(crate) fn load_messages(q: &Queue, store: &dyn QueueStore) -> BrokerResult<()> {
    let stored = store.len();
    let batch = store.read(0, q.window())?;
    let restored: Vec<QueuedMessage> = batch
        .into_iter()
        .filter_map(|sm| to_queued(&q.name, sm, true))
        .collect();
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
