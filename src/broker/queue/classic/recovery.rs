//! Startup recovery of a durable classic queue: its persistent messages come back from the
//! store in id order, those that had been delivered marked redelivered, each with its TTL
//! deadline (so it keeps its remaining TTL) and its delivery count. The first window is read
//! into memory; the rest stays paged in the store.

use std::sync::Arc;

use super::ClassicQueue;
use crate::broker::message::{Message, QueuedMessage};
use crate::broker::store_api;
use crate::protocol::properties::Properties;
use crate::protocol::types::ShortStr;
use crate::storage::{QueueStore, StoreError, StoredMessage};

impl ClassicQueue {
    /// Loads the first window of `store`'s messages (by count and body bytes); the rest stay
    /// paged. Called before the queue is shared, with no lock held during the reads.
    pub(crate) fn recover(&self, store: &dyn QueueStore) -> Result<(), StoreError> {
        if self.lock().ready.count() > 1 {
            return self.recover_lanes(store);
        }
        let stored = store.len();
        let w = self.deps.window;
        let mut restored: Vec<QueuedMessage> = Vec::new();
        let (mut bytes, mut read, mut from) = (0usize, 0usize, 0u64);
        // Message sizes are unknown until one is read: the first read takes one message, the
        // next as many as fit by its size (a window of small messages is two reads).
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
                restored.extend(to_queued(&self.name, sm, true));
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
        let more = stored.saturating_sub(read);
        if stored > 0 {
            tracing::info!(queue = %self.name, vhost = %self.vhost, messages = stored, in_memory = restored.len(), "recovered messages");
        }
        let avg = bytes.checked_div(read).unwrap_or(0);
        let mut st = self.lock();
        for m in restored {
            if m.expires_at != 0 {
                st.ttl_seen = true;
            }
            self.insert(&mut st, m);
        }
        if more > 0 {
            st.ready
                .lane_mut(0)
                .ready
                .restore_paged(more, more.saturating_mul(avg), from);
            // Paged messages may carry deadlines too.
            st.ttl_seen = true;
        }
        Ok(())
    }
}

impl ClassicQueue {
    /// Recovery of a priority queue: the whole store is scanned once, in id order, a batch at
    /// a time; each message goes to its lane, in memory while the lane's window has room,
    /// else counted as paged (the lane's paged start is its first paged message), so each
    /// lane's invariant holds and memory stays within the lanes' windows.
    fn recover_lanes(&self, store: &dyn QueueStore) -> Result<(), StoreError> {
        let (mut from, mut total, mut in_memory) = (0u64, 0usize, 0usize);
        loop {
            let batch = store.read(from, RECOVERY_BATCH)?;
            let Some(last) = batch.last().map(|m| m.id) else {
                break;
            };
            from = last + 1;
            let mut st = self.lock();
            for sm in batch {
                let Some(qm) = to_queued(&self.name, sm, true) else {
                    continue;
                };
                total += 1;
                if qm.expires_at != 0 {
                    st.ttl_seen = true;
                }
                let lane = st.ready.lane_of(&qm.msg);
                let window = *st.ready.window();
                let l = &mut st.ready.lane_mut(lane).ready;
                if l.must_page(qm.id, &window) {
                    l.note_paged(qm.id, qm.msg.body.len());
                } else {
                    in_memory += 1;
                    self.insert(&mut st, qm);
                }
            }
        }
        if total > 0 {
            tracing::info!(queue = %self.name, vhost = %self.vhost, messages = total, in_memory, "recovered messages");
        }
        Ok(())
    }
}

/// Store records a priority queue's recovery reads at a time.
const RECOVERY_BATCH: usize = 4096;

/// A stored message as a queue entry. One whose properties are malformed is logged and
/// skipped (it stays in the store for inspection): they are validated, as a publish is, before
/// a consumer can receive them.
pub(crate) fn to_queued(queue: &str, sm: StoredMessage, persisted: bool) -> Option<QueuedMessage> {
    let properties = match Properties::from_bytes(sm.record.properties.clone()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(queue, id = sm.id, error = %e, "stored message has bad properties; skipped");
            return None;
        }
    };
    let expires_at = QueuedMessage::deadline_from_meta(store_api::meta_of(&sm.record));
    let delivery_count = store_api::delivery_count_of(&sm);
    let msg = Message {
        exchange: ShortStr::try_from(sm.record.exchange.as_str()).unwrap_or_default(),
        routing_key: ShortStr::try_from(sm.record.routing_key.as_str()).unwrap_or_default(),
        properties,
        body: sm.record.body,
        awaited: None,
    };
    Some(QueuedMessage {
        id: sm.id,
        msg: Arc::new(msg),
        redelivered: sm.delivered,
        persisted,
        expires_at,
        delivery_count,
    })
}
