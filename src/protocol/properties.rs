//! Basic-class content properties (the content header's property list).

use super::types::{FieldTable, ShortStr};

/// The 14 properties of the basic class, in spec order. `None` means the flag bit is clear.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasicProperties {
    /// MIME content type.
    pub content_type: Option<ShortStr>,
    /// MIME content encoding.
    pub content_encoding: Option<ShortStr>,
    /// Application headers (used by the headers exchange).
    pub headers: Option<FieldTable>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Priority 0-9.
    pub priority: Option<u8>,
    /// Application correlation identifier.
    pub correlation_id: Option<ShortStr>,
    /// Address to reply to.
    pub reply_to: Option<ShortStr>,
    /// Per-message TTL in milliseconds, as a decimal string (RabbitMQ's meaning).
    pub expiration: Option<ShortStr>,
    /// Application message identifier.
    pub message_id: Option<ShortStr>,
    /// Message timestamp, seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Message type name (the spec's `type`).
    pub kind: Option<ShortStr>,
    /// Creating user id (RabbitMQ validates it against the connection's user).
    pub user_id: Option<ShortStr>,
    /// Creating application id.
    pub app_id: Option<ShortStr>,
    /// Deprecated `cluster-id` (the XML's `reserved`).
    pub cluster_id: Option<ShortStr>,
}

impl BasicProperties {
    /// True when delivery-mode is 2 (persistent).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}
