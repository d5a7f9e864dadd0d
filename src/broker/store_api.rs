//! The storage calls the broker makes with broker types on one side: a message's storage view
//! with its copy's metadata, and what a stored message carries back. One place, so the record
//! shape is decided once.

use crate::storage::{MessageRecord, MessageView, StoredMessage};

use super::message::Message;

/// The storage view of a message with its copy's metadata.
pub(crate) fn view<'a>(msg: &'a Message, meta: &'a [u8]) -> MessageView<'a> {
    MessageView {
        exchange: msg.exchange.as_str(),
        routing_key: msg.routing_key.as_str(),
        properties: msg.properties.as_bytes(),
        meta,
        body: &msg.body,
    }
}

/// The metadata stored with a record.
pub(crate) fn meta_of(record: &MessageRecord) -> &[u8] {
    &record.meta
}

/// The delivery count stored with a message.
pub(crate) fn delivery_count_of(sm: &StoredMessage) -> u32 {
    sm.delivery_count
}
