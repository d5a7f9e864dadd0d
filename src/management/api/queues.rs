//! Queues: listing, declare, delete, purge and get.

use super::connections::{activity, consumer_dto};
use super::{ApiState, authorize, connection_name, usable_vhost, visible_vhost, visible_vhosts};
use crate::broker::access::{Perm, Resource};
use crate::broker::queue::Settle;
use crate::broker::vhost::QueueSpec;
use crate::broker::{ConnId, ConnectionInfo, Queue, VHost};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{
    JsonBody, PathArgs, QueryArgs, get_bool, get_str, get_u64, json_to_table, properties_to_json,
    require_keys, table_to_json,
};
use crate::management::listing::{ListQuery, SortKey};
use crate::management::rates::{Counters, RateSet, VhostRates};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

/// Bytes a queue takes with no messages, in the memory estimate.
const QUEUE_BASE_MEMORY: u64 = 1024;
/// Most messages one get request may take.
const MAX_GET_COUNT: u64 = 10_000;

fn queue_dto(
    st: &ApiState,
    q: &Queue,
    rate: RateSet,
    conns: &HashMap<ConnId, Arc<ConnectionInfo>>,
) -> dto::Queue {
    let counts = q.counts();
    let applied = q.policy();
    let (consumers, ready_bytes) = (counts.consumers, counts.ready_bytes);
    let c = Counters::with_counts(q, counts);
    let owner = q
        .exclusive
        .and_then(|id| conns.get(&id))
        .map(|ci| dto::OwnerDetails {
            name: connection_name(ci),
            peer_host: ci.peer.ip().to_string(),
            peer_port: ci.peer.port(),
        });
    dto::Queue {
        name: q.name.to_string(),
        vhost: q.vhost.to_string(),
        durable: q.durable,
        auto_delete: q.auto_delete,
        exclusive: q.exclusive.is_some(),
        arguments: table_to_json(&q.args.raw),
        node: st.node.to_string(),
        state: "running",
        kind: q.kind(),
        policy: applied.policy,
        operator_policy: applied.operator_policy,
        effective_policy_definition: Value::Object(applied.definition),
        exclusive_consumer_tag: None,
        single_active_consumer_tag: q
            .args
            .single_active()
            .then(|| q.consumers().first().map(|c| c.tag.to_string()))
            .flatten(),
        consumers: consumers as u64,
        memory: QUEUE_BASE_MEMORY + counts.memory as u64,
        message_bytes: ready_bytes as u64,
        message_bytes_ready: ready_bytes as u64,
        counts: dto::MessageCounts::new(&c, &rate),
        message_stats: dto::MessageStats::new(&c, &rate, false),
        owner_pid_details: owner,
    }
}

fn conn_map(st: &ApiState) -> HashMap<ConnId, Arc<ConnectionInfo>> {
    st.broker
        .connections()
        .into_iter()
        .map(|c| (c.id, c))
        .collect()
}

/// Queues of the given vhosts, answered with lazy pagination: a queue's rates are looked up
/// only when its page is built or a rate is the sort key.
fn respond(st: &ApiState, list: &ListQuery, vhosts: &[Arc<VHost>]) -> ApiResult<Response> {
    let conns = conn_map(st);
    let mut items: Vec<(Arc<Queue>, VhostRates)> = Vec::new();
    for vh in vhosts {
        let rates = st.rates.vhost_queues(&vh.name);
        items.extend(vh.queues().into_iter().map(|q| (q, Arc::clone(&rates))));
    }
    let rate = |q: &Queue, r: &VhostRates| r.get(&*q.name).copied().unwrap_or_default();
    list.respond_lazy(
        items,
        |(q, _)| (&*q.vhost, &*q.name),
        |(q, r), path| sort_key(q, || rate(q, r), path),
        |(q, r)| queue_dto(st, q, rate(q, r), &conns),
    )
}

/// The value a queue's JSON has at `path`, for the fields the queues page sorts by, read
/// without building the JSON (`None` for other fields: those sorts build it).
fn sort_key(q: &Queue, rate: impl Fn() -> RateSet, path: &[String]) -> Option<SortKey> {
    let counts = || {
        let c = q.counts();
        (c.ready, c.unacked, c.consumers)
    };
    let num = |n: usize| Some(SortKey::Num(n as f64));
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    match path.as_slice() {
        ["name"] => Some(SortKey::Str(Arc::clone(&q.name))),
        ["vhost"] => Some(SortKey::Str(Arc::clone(&q.vhost))),
        ["durable"] => Some(SortKey::Bool(q.durable)),
        ["auto_delete"] => Some(SortKey::Bool(q.auto_delete)),
        ["exclusive"] => Some(SortKey::Bool(q.exclusive.is_some())),
        ["messages"] => {
            let (ready, unacked, _) = counts();
            num(ready + unacked)
        }
        ["messages_ready"] => num(counts().0),
        ["messages_unacknowledged"] => num(counts().1),
        ["consumers"] => num(counts().2),
        ["messages_details", "rate"] => Some(SortKey::Num(rate().messages)),
        ["messages_ready_details", "rate"] => Some(SortKey::Num(rate().ready)),
        ["messages_unacknowledged_details", "rate"] => Some(SortKey::Num(rate().unacked)),
        ["message_stats", field, "rate"] => {
            let r = rate();
            Some(SortKey::Num(match *field {
                "publish_details" => r.publish,
                "deliver_get_details" => r.deliver_get,
                "ack_details" => r.ack,
                "redeliver_details" => r.redeliver,
                _ => return None,
            }))
        }
        _ => None,
    }
}

/// GET /api/queues.
pub(crate) async fn list(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Response> {
    let list = ListQuery::parse(&q)?;
    respond(&st, &list, &visible_vhosts(&st, &user))
}

/// GET /api/queues/{vhost}.
pub(crate) async fn list_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Response> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    respond(&st, &list, &[vh])
}

fn find(vh: &VHost, name: &str) -> ApiResult<Arc<Queue>> {
    vh.queue(name).map_err(|_| ApiError::not_found())
}

/// GET /api/queues/{vhost}/{name}.
pub(crate) async fn show(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let queue = find(&vh, &name)?;
    let conns = conn_map(&st);
    let dto = queue_dto(&st, &queue, st.rates.queue(&vhost, &name), &conns);
    let mut value = to_value(&dto);
    // One queue's page also lists its consumers, as RabbitMQ's does.
    let consumers: Vec<Value> = queue
        .consumers()
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let ci = conns.get(&h.conn)?;
            let act = activity(&queue, i);
            Some(to_value(&consumer_dto(&st, ci, &vhost, &name, h, act)))
        })
        .collect();
    if let Value::Object(m) = &mut value {
        m.insert("consumer_details".into(), Value::Array(consumers));
    }
    Ok(Json(list.project_one(value)))
}

/// PUT /api/queues/{vhost}/{name}: 201 when created, 204 when an equivalent queue existed,
/// 400 when it differs.
pub(crate) async fn declare(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    if name.starts_with("amq.") {
        return Err(ApiError::access_refused());
    }
    if crate::protocol::types::ShortStr::try_from(name.as_str()).is_err() {
        return Err(ApiError::bad_request("queue name longer than 255 bytes"));
    }
    let spec = QueueSpec {
        name: name.clone(),
        durable: get_bool(&body, "durable", false)?,
        exclusive: None,
        auto_delete: get_bool(&body, "auto_delete", false)?,
        arguments: json_to_table(body.get("arguments").unwrap_or(&Value::Null))?,
    };
    // Configure, the DLX rights and the vhost's queue limit, as queue.declare checks them.
    user.grant(&st, &vhost)
        .check_queue_declare(&vh, &name, &spec.arguments)?;
    let existed = vh.queue(&name).is_ok();
    vh.declare_queue(&spec, false, owner_of(&vh, &name), crate::clock::now())?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// The connection id to act as on `name`: its owner for an exclusive queue (the management
/// API may act on any queue, as in RabbitMQ), nobody otherwise.
pub(crate) fn owner_of(vh: &VHost, name: &str) -> ConnId {
    vh.queue(name)
        .ok()
        .and_then(|q| q.exclusive)
        .unwrap_or(ConnId(0))
}

/// DELETE /api/queues/{vhost}/{name}[?if-unused=true&if-empty=true].
pub(crate) async fn delete(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    find(&vh, &name)?;
    authorize(&st, &user, &vhost, Perm::Configure, Resource::Queue(&name))?;
    let flag = |k: &str| q.get(k).is_some_and(|v| v == "true");
    vh.delete_queue(
        &name,
        flag("if-unused"),
        flag("if-empty"),
        owner_of(&vh, &name),
    )?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/queues/{vhost}/{name}/contents: purge.
pub(crate) async fn purge(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    authorize(&st, &user, &vhost, Perm::Read, Resource::Queue(&name))?;
    vh.purge(&find(&vh, &name)?, crate::clock::now())?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a get does with the messages it took.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AckMode {
    /// Put them back (they become redelivered).
    Requeue,
    /// Acknowledge them: they leave the queue.
    Ack,
    /// Reject without requeue: they leave the queue (dead-lettered when it has a
    /// dead-letter exchange).
    Discard,
}

/// A message in the shape of RabbitMQ's `/get` answer, with `remaining` as its
/// `message_count`.
fn got_message(
    qm: &crate::broker::QueuedMessage,
    remaining: u32,
    truncate: Option<u64>,
    base64_only: bool,
) -> dto::GotMessage {
    let m = &qm.msg;
    let mut payload: &[u8] = &m.body;
    if let Some(t) = truncate {
        payload = &payload[..payload.len().min(usize::try_from(t).unwrap_or(usize::MAX))];
    }
    let (payload, payload_encoding) = match std::str::from_utf8(payload) {
        Ok(s) if !base64_only => (s.to_string(), "string"),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            "base64",
        ),
    };
    dto::GotMessage {
        payload_bytes: m.body.len(),
        redelivered: qm.redelivered,
        exchange: m.exchange.to_string(),
        routing_key: m.routing_key.to_string(),
        message_count: remaining,
        // Decoded only here, to show them.
        properties: properties_to_json(&m.properties.decode()),
        payload,
        payload_encoding,
    }
}

/// The `encoding` of a get or browse body: `auto` (the default for browse) or `base64`.
fn base64_only(body: &Value, required: bool) -> ApiResult<bool> {
    match get_str(body, "encoding")? {
        Some("auto") => Ok(false),
        None if !required => Ok(false),
        Some("base64") => Ok(true),
        other => Err(ApiError::bad_request(format!(
            "invalid encoding {}",
            other.unwrap_or("")
        ))),
    }
}

/// POST /api/queues/{vhost}/{name}/browse: `{"offset": N, "count": M}` (also `encoding`
/// and `truncate` as for `/get`). Up to `count` messages from position `offset` (0 = the
/// next to be delivered, in delivery order: highest priority first), in `/get`'s shape, left
/// in the queue as they were: not taken, reordered or marked redelivered. A message's
/// `message_count` is the number of ready messages after it. Lagomorph's own; RabbitMQ has
/// no such endpoint.
pub(crate) async fn browse(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Vec<dto::GotMessage>>> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    authorize(&st, &user, &vhost, Perm::Read, Resource::Queue(&name))?;
    let base64_only = base64_only(&body, false)?;
    let offset = get_u64(&body, "offset")?.unwrap_or(0);
    let count = get_u64(&body, "count")?.unwrap_or(1);
    if count > MAX_GET_COUNT {
        return Err(ApiError::bad_request(format!(
            "count must be at most {MAX_GET_COUNT}"
        )));
    }
    let reach = crate::broker::queue::MAX_BROWSE_REACH as u64;
    if offset.saturating_add(count) > reach {
        return Err(ApiError::bad_request(format!(
            "offset + count must be at most {reach}"
        )));
    }
    let truncate = get_u64(&body, "truncate")?;
    let queue = vh.queue(&name).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("NOT_FOUND - {e}"),
        )
    })?;
    // Both fit in usize: they are at most MAX_BROWSE_REACH.
    let (offset, count) = (offset as usize, count as usize);
    let browsed = vh.browse(&queue, offset, count)?;
    let out = browsed
        .messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let after = browsed.ready.saturating_sub(offset + i + 1);
            got_message(
                m,
                u32::try_from(after).unwrap_or(u32::MAX),
                truncate,
                base64_only,
            )
        })
        .collect();
    Ok(Json(out))
}

/// POST /api/queues/{vhost}/{name}/get.
pub(crate) async fn get_messages(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Vec<dto::GotMessage>>> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    authorize(&st, &user, &vhost, Perm::Read, Resource::Queue(&name))?;
    require_keys(&body, &["ackmode", "encoding"])?;
    let mode = match get_str(&body, "ackmode")? {
        Some("ack_requeue_true" | "reject_requeue_true") => AckMode::Requeue,
        Some("ack_requeue_false") => AckMode::Ack,
        Some("reject_requeue_false") => AckMode::Discard,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid ackmode {}",
                other.unwrap_or("")
            )));
        }
    };
    let base64_only = base64_only(&body, true)?;
    let count = get_u64(&body, "count")?.unwrap_or(1);
    if count > MAX_GET_COUNT {
        return Err(ApiError::bad_request(format!(
            "count must be at most {MAX_GET_COUNT}"
        )));
    }
    let truncate = get_u64(&body, "truncate")?;
    let queue = vh.queue(&name).map_err(|e| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("NOT_FOUND - {e}"),
        )
    })?;
    let now = crate::clock::now();
    let mut taken = Vec::new();
    let mut out = Vec::new();
    for _ in 0..count {
        let got = match vh.get(&queue, false, now) {
            Ok(Some(got)) => got,
            Ok(None) => break,
            Err(e) => {
                // The store failed: what was taken goes back, as far as it can.
                let _ = vh.settle(&queue, Settle::Requeue, taken, now);
                return Err(e.into());
            }
        };
        out.push(got_message(
            &got.message,
            got.remaining,
            truncate,
            base64_only,
        ));
        taken.push(got.message);
    }
    let how = match mode {
        AckMode::Requeue => Settle::Requeue,
        AckMode::Ack => Settle::Ack,
        AckMode::Discard => Settle::Reject,
    };
    vh.settle(&queue, how, taken, now)?;
    Ok(Json(out))
}
