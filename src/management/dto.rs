//! The JSON shapes of the management API: RabbitMQ's field names, kept apart from the broker's
//! own types so that the API stays stable when the broker changes. Handlers build these from
//! broker snapshots; listings turn them into `serde_json::Value` for sorting and `columns`.

use super::rates::{Counters, RateSet};
use serde::Serialize;
use serde_json::{Map, Value};

/// `{"rate": r}`, the `*_details` objects.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Rate {
    /// Per second.
    pub(crate) rate: f64,
}

/// `message_stats` of a queue, vhost or the overview.
#[derive(Debug, Serialize)]
pub(crate) struct MessageStats {
    pub(crate) publish: u64,
    pub(crate) publish_details: Rate,
    pub(crate) deliver_get: u64,
    pub(crate) deliver_get_details: Rate,
    pub(crate) ack: u64,
    pub(crate) ack_details: Rate,
    pub(crate) redeliver: u64,
    pub(crate) redeliver_details: Rate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) confirm: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) confirm_details: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) return_unroutable: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) return_unroutable_details: Option<Rate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drop_unroutable: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) drop_unroutable_details: Option<Rate>,
    /// Lagomorph's own (RabbitMQ 3.10's API has no such figure; its Prometheus plugin has
    /// `rabbitmq_global_messages_dead_lettered_*_total`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_lettered: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) dead_lettered_details: Option<Rate>,
}

impl MessageStats {
    /// From counters and rates; `confirm`, `return_unroutable` and `drop_unroutable` only
    /// where RabbitMQ shows them (the overview).
    pub(crate) fn new(c: &Counters, r: &RateSet, with_confirm: bool) -> Self {
        MessageStats {
            publish: c.publish,
            publish_details: Rate { rate: r.publish },
            deliver_get: c.deliver_get,
            deliver_get_details: Rate {
                rate: r.deliver_get,
            },
            ack: c.ack,
            ack_details: Rate { rate: r.ack },
            redeliver: c.redeliver,
            redeliver_details: Rate { rate: r.redeliver },
            confirm: with_confirm.then_some(c.confirm),
            confirm_details: with_confirm.then_some(Rate { rate: r.confirm }),
            return_unroutable: with_confirm.then_some(c.returned),
            return_unroutable_details: with_confirm.then_some(Rate { rate: r.returned }),
            drop_unroutable: with_confirm.then_some(c.dropped),
            drop_unroutable_details: with_confirm.then_some(Rate { rate: r.dropped }),
            dead_lettered: with_confirm.then_some(c.dead_lettered),
            dead_lettered_details: with_confirm.then_some(Rate {
                rate: r.dead_lettered,
            }),
        }
    }
}

/// Message counts with their rates of change (`queue_totals`, and the same fields on queues
/// and vhosts).
#[derive(Debug, Serialize)]
pub(crate) struct MessageCounts {
    pub(crate) messages: u64,
    pub(crate) messages_details: Rate,
    pub(crate) messages_ready: u64,
    pub(crate) messages_ready_details: Rate,
    pub(crate) messages_unacknowledged: u64,
    pub(crate) messages_unacknowledged_details: Rate,
}

impl MessageCounts {
    /// From counters and rates.
    pub(crate) fn new(c: &Counters, r: &RateSet) -> Self {
        MessageCounts {
            messages: c.messages,
            messages_details: Rate { rate: r.messages },
            messages_ready: c.ready,
            messages_ready_details: Rate { rate: r.ready },
            messages_unacknowledged: c.unacked,
            messages_unacknowledged_details: Rate { rate: r.unacked },
        }
    }
}

/// `object_totals` of the overview.
#[derive(Debug, Serialize)]
pub(crate) struct ObjectTotals {
    pub(crate) channels: u64,
    pub(crate) connections: u64,
    pub(crate) consumers: u64,
    pub(crate) exchanges: u64,
    pub(crate) queues: u64,
}

/// One entry of `exchange_types`.
#[derive(Debug, Serialize)]
pub(crate) struct ExchangeType {
    pub(crate) name: &'static str,
    pub(crate) description: &'static str,
    pub(crate) enabled: bool,
}

/// A listener of the overview.
#[derive(Debug, Serialize)]
pub(crate) struct Listener {
    pub(crate) node: String,
    pub(crate) protocol: &'static str,
    pub(crate) ip_address: String,
    pub(crate) port: u16,
    pub(crate) socket_opts: Value,
}

/// An HTTP context of the overview (RabbitMQ writes its port as a string).
#[derive(Debug, Serialize)]
pub(crate) struct Context {
    pub(crate) ssl_opts: Vec<Value>,
    pub(crate) node: String,
    pub(crate) description: &'static str,
    pub(crate) path: &'static str,
    pub(crate) ip: String,
    pub(crate) port: String,
}

/// GET /api/overview.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    pub(crate) management_version: &'static str,
    pub(crate) rates_mode: &'static str,
    pub(crate) exchange_types: Vec<ExchangeType>,
    pub(crate) product_version: &'static str,
    pub(crate) product_name: &'static str,
    pub(crate) rabbitmq_version: &'static str,
    pub(crate) cluster_name: String,
    pub(crate) message_stats: MessageStats,
    pub(crate) queue_totals: MessageCounts,
    pub(crate) object_totals: ObjectTotals,
    pub(crate) statistics_db_event_queue: u64,
    pub(crate) node: String,
    pub(crate) listeners: Vec<Listener>,
    pub(crate) contexts: Vec<Context>,
}

/// GET /api/whoami.
#[derive(Debug, Serialize)]
pub(crate) struct WhoAmI {
    pub(crate) name: String,
    pub(crate) tags: Vec<String>,
}

/// GET /api/nodes entries.
#[derive(Debug, Serialize)]
pub(crate) struct Node {
    pub(crate) name: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) running: bool,
    pub(crate) os_pid: String,
    pub(crate) mem_used: u64,
    pub(crate) mem_limit: u64,
    pub(crate) mem_alarm: bool,
    pub(crate) disk_free_alarm: bool,
    pub(crate) fd_used: u64,
    pub(crate) fd_total: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) disk_free: Option<u64>,
    pub(crate) processors: u64,
    pub(crate) uptime: u64,
    pub(crate) run_queue: u64,
    pub(crate) rates_mode: &'static str,
    pub(crate) partitions: Vec<String>,
    pub(crate) exchange_types: Vec<ExchangeType>,
}

/// GET /api/vhosts entries.
#[derive(Debug, Serialize)]
pub(crate) struct Vhost {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) tags: Vec<String>,
    pub(crate) default_queue_type: String,
    pub(crate) tracing: bool,
    pub(crate) metadata: Value,
    #[serde(flatten)]
    pub(crate) counts: MessageCounts,
    pub(crate) message_stats: MessageStats,
    pub(crate) cluster_state: Map<String, Value>,
}

/// Owner of an exclusive queue.
#[derive(Debug, Serialize)]
pub(crate) struct OwnerDetails {
    pub(crate) name: String,
    pub(crate) peer_host: String,
    pub(crate) peer_port: u16,
}

/// GET /api/queues entries.
#[derive(Debug, Serialize)]
pub(crate) struct Queue {
    pub(crate) name: String,
    pub(crate) vhost: String,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
    pub(crate) exclusive: bool,
    pub(crate) arguments: Value,
    pub(crate) node: String,
    pub(crate) state: &'static str,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) policy: Option<String>,
    pub(crate) operator_policy: Option<String>,
    /// The merged definitions of its policy and operator policy (`{}` for none).
    pub(crate) effective_policy_definition: Value,
    pub(crate) exclusive_consumer_tag: Option<String>,
    /// The consumer receiving on a single-active-consumer queue (`null` otherwise).
    pub(crate) single_active_consumer_tag: Option<String>,
    pub(crate) consumers: u64,
    /// Estimated bytes held (message bodies plus per-message bookkeeping).
    pub(crate) memory: u64,
    pub(crate) message_bytes: u64,
    pub(crate) message_bytes_ready: u64,
    #[serde(flatten)]
    pub(crate) counts: MessageCounts,
    pub(crate) message_stats: MessageStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) owner_pid_details: Option<OwnerDetails>,
}

/// GET /api/exchanges entries.
#[derive(Debug, Serialize)]
pub(crate) struct Exchange {
    pub(crate) name: String,
    pub(crate) vhost: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) durable: bool,
    pub(crate) auto_delete: bool,
    pub(crate) internal: bool,
    pub(crate) arguments: Value,
    pub(crate) user_who_performed_action: &'static str,
    pub(crate) policy: Option<String>,
    /// Delayed exchanges only: messages waiting (the delayed-message plugin's field).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) messages_delayed: Option<u64>,
}

/// GET /api/bindings entries.
#[derive(Debug, Serialize)]
pub(crate) struct Binding {
    pub(crate) source: String,
    pub(crate) vhost: String,
    pub(crate) destination: String,
    pub(crate) destination_type: &'static str,
    pub(crate) routing_key: String,
    pub(crate) arguments: Value,
    pub(crate) properties_key: String,
}

/// GET /api/connections entries.
#[derive(Debug, Serialize)]
pub(crate) struct Connection {
    pub(crate) name: String,
    pub(crate) node: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) state: &'static str,
    /// Ours: how often its socket went unread because a queue it published to fell behind.
    pub(crate) flow_pauses: u64,
    pub(crate) protocol: &'static str,
    pub(crate) auth_mechanism: &'static str,
    pub(crate) user: String,
    pub(crate) vhost: String,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) peer_host: String,
    pub(crate) peer_port: u16,
    pub(crate) ssl: bool,
    pub(crate) channels: u64,
    pub(crate) channel_max: u16,
    pub(crate) frame_max: u32,
    pub(crate) timeout: u16,
    pub(crate) connected_at: u64,
    pub(crate) client_properties: Map<String, Value>,
    /// The client's `connection_name` property, as RabbitMQ repeats it (absent when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_provided_name: Option<String>,
}

/// Connection fields repeated in channel listings.
#[derive(Debug, Serialize)]
pub(crate) struct ConnectionDetails {
    pub(crate) name: String,
    pub(crate) peer_host: String,
    pub(crate) peer_port: u16,
}

/// GET /api/channels entries.
#[derive(Debug, Serialize)]
pub(crate) struct Channel {
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) number: u16,
    pub(crate) user: String,
    pub(crate) vhost: String,
    pub(crate) state: &'static str,
    pub(crate) consumer_count: u64,
    pub(crate) prefetch_count: u32,
    pub(crate) global_prefetch_count: u32,
    pub(crate) connection_details: ConnectionDetails,
}

/// Channel fields repeated in consumer listings.
#[derive(Debug, Serialize)]
pub(crate) struct ChannelDetails {
    pub(crate) connection_name: String,
    pub(crate) name: String,
    pub(crate) node: String,
    pub(crate) number: u16,
    pub(crate) peer_host: String,
    pub(crate) peer_port: u16,
    pub(crate) user: String,
}

/// A queue reference in consumer listings.
#[derive(Debug, Serialize)]
pub(crate) struct QueueRef {
    pub(crate) name: String,
    pub(crate) vhost: String,
}

/// GET /api/consumers entries.
#[derive(Debug, Serialize)]
pub(crate) struct Consumer {
    pub(crate) consumer_tag: String,
    pub(crate) queue: QueueRef,
    pub(crate) channel_details: ChannelDetails,
    pub(crate) ack_required: bool,
    pub(crate) exclusive: bool,
    pub(crate) prefetch_count: u32,
    pub(crate) active: bool,
    pub(crate) activity_status: &'static str,
    pub(crate) arguments: Map<String, Value>,
}

/// GET /api/users entries (also the definitions' `users`).
#[derive(Debug, Serialize)]
pub(crate) struct User {
    pub(crate) name: String,
    pub(crate) password_hash: String,
    pub(crate) hashing_algorithm: &'static str,
    pub(crate) tags: Vec<String>,
    pub(crate) limits: Map<String, Value>,
}

/// GET /api/permissions entries (also the definitions' `permissions`).
#[derive(Debug, Serialize)]
pub(crate) struct Permission {
    pub(crate) user: String,
    pub(crate) vhost: String,
    pub(crate) configure: String,
    pub(crate) write: String,
    pub(crate) read: String,
}

/// One message of POST /api/queues/{vhost}/{name}/get.
#[derive(Debug, Serialize)]
pub(crate) struct GotMessage {
    pub(crate) payload_bytes: usize,
    pub(crate) redelivered: bool,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) message_count: u32,
    pub(crate) properties: Value,
    pub(crate) payload: String,
    pub(crate) payload_encoding: &'static str,
}

/// `{"status": "ok"}` or `{"status": "failed", "reason": …}` of the health checks.
#[derive(Debug, Serialize)]
pub(crate) struct Health {
    pub(crate) status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
}

/// GET /api/cluster-name, and the body of its PUT.
#[derive(Debug, Serialize)]
pub(crate) struct ClusterName {
    pub(crate) name: String,
}

/// Serializes a DTO to a JSON value. Our DTOs have string keys and finite numbers only, so
/// this cannot fail; `Null` would be the answer if it ever did.
pub(crate) fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}
