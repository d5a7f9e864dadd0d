//! Startup recovery: persistent messages of durable queues come back from the store in id
//! order; those that had been delivered come back marked redelivered.

use crate::protocol::properties::decode_properties;
use crate::protocol::types::ShortStr;
use crate::storage::QueueStore;
use std::sync::Arc;

use super::error::BrokerResult;
use super::message::{Message, QueuedMessage};
use super::queue::Queue;

const BATCH: usize = 10_000;

/// Loads every stored message of `q`. A message whose properties do not decode is logged and
/// skipped (it stays in the store for inspection).
pub(crate) fn load_messages(q: &Queue, store: &dyn QueueStore) -> BrokerResult<()> {
    let mut from = 0;
    let mut restored = Vec::new();
    loop {
        let batch = store.read(from, BATCH)?;
        let Some(last) = batch.last() else { break };
        from = last.id + 1;
        for sm in batch {
            let properties = match decode_properties(&sm.record.properties) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(queue = %q.name, id = sm.id, error = %e, "stored message has bad properties; skipped");
                    continue;
                }
            };
            let msg = Message {
                exchange: ShortStr::try_from(sm.record.exchange).unwrap_or_default(),
                routing_key: ShortStr::try_from(sm.record.routing_key).unwrap_or_default(),
                properties,
                body: sm.record.body,
            };
            restored.push(QueuedMessage {
                id: sm.id,
                msg: Arc::new(msg),
                redelivered: sm.delivered,
                persisted: true,
            });
        }
    }
    if !restored.is_empty() {
        tracing::info!(queue = %q.name, vhost = %q.vhost, messages = restored.len(), "recovered messages");
    }
    q.restore(restored);
    Ok(())
}
