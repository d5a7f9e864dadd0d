//! Connections, channels and consumers.
//!
//! Channels come from the connection registry's open channel numbers; prefetch values are
//! known from each channel's consumers.

use super::{
    ApiState, connection_name, connection_user, connection_vhost, visible_vhost, visible_vhosts,
};
use crate::broker::consumer::ConsumerHandle;
use crate::broker::{ConnId, ConnectionInfo, Outbound};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{PathArgs, QueryArgs, table_to_json};
use crate::management::listing::ListQuery;
use crate::protocol::ReplyCode;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::UNIX_EPOCH;

/// Whether `user` sees connections other than its own (RabbitMQ: administrators and
/// monitoring users).
fn sees_all(user: &AuthUser) -> bool {
    user.is_admin() || user.tags.iter().any(|t| t == "monitoring")
}

fn visible_connections(st: &ApiState, user: &AuthUser) -> Vec<Arc<ConnectionInfo>> {
    st.broker
        .connections()
        .into_iter()
        .filter(|c| sees_all(user) || connection_user(c) == user.name)
        .collect()
}

/// `flow` for a second after the connection's socket last went unread because a queue it
/// published to fell behind (RabbitMQ's `credit_flow:state/0` uses the same second), else
/// `running`.
fn connection_state(c: &ConnectionInfo) -> &'static str {
    let at = c.flow_at_ms.load(Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    if at != 0 && now.saturating_sub(at) < 1000 {
        "flow"
    } else {
        "running"
    }
}

fn connection_dto(st: &ApiState, c: &ConnectionInfo) -> dto::Connection {
    let limits = st.broker.limits();
    let props = c
        .client_properties
        .read()
        .unwrap_or_else(|e| e.into_inner());
    let user_provided_name = props
        .get("connection_name")
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let client_properties = match table_to_json(&props) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    drop(props);
    dto::Connection {
        name: connection_name(c),
        node: st.node.to_string(),
        kind: "network",
        state: connection_state(c),
        flow_pauses: c.flow_pauses.load(Ordering::Relaxed),
        protocol: "AMQP 0-9-1",
        auth_mechanism: c.auth_mechanism.get().copied().unwrap_or("PLAIN"),
        user: connection_user(c),
        vhost: connection_vhost(c),
        host: c.local.ip().to_string(),
        port: c.local.port(),
        peer_host: c.peer.ip().to_string(),
        peer_port: c.peer.port(),
        ssl: c.tls.load(Ordering::Relaxed),
        channels: u64::from(c.channels.load(Ordering::Relaxed)),
        channel_max: limits.channel_max,
        frame_max: limits.frame_max,
        timeout: limits.heartbeat,
        connected_at: c
            .connected_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        client_properties,
        user_provided_name,
    }
}

fn connection_items<'a>(
    st: &ApiState,
    conns: impl Iterator<Item = &'a Arc<ConnectionInfo>>,
) -> Vec<Value> {
    conns.map(|c| to_value(&connection_dto(st, c))).collect()
}

/// GET /api/connections.
pub(crate) async fn connections(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let conns = visible_connections(&st, &user);
    Ok(Json(
        list.respond(connection_items(&st, conns.iter()), &["name"])?,
    ))
}

/// GET /api/vhosts/{vhost}/connections.
pub(crate) async fn vhost_connections(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    visible_vhost(&st, &user, &vhost)?;
    let conns = visible_connections(&st, &user);
    let items = connection_items(&st, conns.iter().filter(|c| connection_vhost(c) == vhost));
    Ok(Json(list.respond(items, &["name"])?))
}

fn find_connection(st: &ApiState, user: &AuthUser, name: &str) -> ApiResult<Arc<ConnectionInfo>> {
    visible_connections(st, user)
        .into_iter()
        .find(|c| connection_name(c) == name)
        .ok_or_else(ApiError::not_found)
}

/// GET /api/connections/{name}.
pub(crate) async fn connection(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::Connection>> {
    let c = find_connection(&st, &user, &name)?;
    Ok(Json(connection_dto(&st, &c)))
}

/// DELETE /api/connections/{name}: closes it with 320 CONNECTION_FORCED; the `X-Reason`
/// header, if any, is the reply text.
pub(crate) async fn close_connection(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let c = find_connection(&st, &user, &name)?;
    // Seeing a connection (monitoring users see all) is not closing it: administrators and
    // the connection's own user may, as RabbitMQ's is_authorized_user decides.
    if !user.is_admin() && connection_user(&c) != user.name {
        return Err(ApiError::object_refused());
    }
    let text = headers
        .get("x-reason")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("Closed via management plugin")
        .chars()
        .take(200)
        .collect();
    // A send error means the connection is already going away.
    let _ = c.mailbox.send(Outbound::Close {
        code: ReplyCode::ConnectionForced,
        text,
    });
    Ok(StatusCode::NO_CONTENT)
}

/// Consumers of the given vhosts, with their queue's name and vhost.
fn all_consumers(
    vhosts: &[Arc<crate::broker::VHost>],
) -> Vec<(Arc<str>, Arc<str>, ConsumerHandle)> {
    let mut out = Vec::new();
    for vh in vhosts {
        for q in vh.queues() {
            for c in q.consumers() {
                out.push((Arc::clone(&vh.name), Arc::clone(&q.name), c));
            }
        }
    }
    out
}

/// Channels known through their consumers, keyed by (connection, channel number).
fn channel_dtos(
    st: &ApiState,
    conns: &[Arc<ConnectionInfo>],
    consumers: &[(Arc<str>, Arc<str>, ConsumerHandle)],
) -> Vec<dto::Channel> {
    let by_id: HashMap<ConnId, &Arc<ConnectionInfo>> = conns.iter().map(|c| (c.id, c)).collect();
    let mut chans: BTreeMap<(ConnId, u16), dto::Channel> = BTreeMap::new();
    // Every open channel, then its consumers' counts and prefetch.
    for ci in conns {
        for number in ci.channel_numbers() {
            let cname = connection_name(ci);
            chans.insert(
                (ci.id, number),
                dto::Channel {
                    name: format!("{cname} ({number})"),
                    node: st.node.to_string(),
                    number,
                    user: connection_user(ci),
                    vhost: connection_vhost(ci),
                    state: "running",
                    consumer_count: 0,
                    prefetch_count: 0,
                    global_prefetch_count: 0,
                    connection_details: dto::ConnectionDetails {
                        name: cname,
                        peer_host: ci.peer.ip().to_string(),
                        peer_port: ci.peer.port(),
                    },
                },
            );
        }
    }
    for (_, _, h) in consumers {
        let Some(ci) = by_id.get(&h.conn) else {
            continue;
        };
        let entry = chans.entry((h.conn, h.channel)).or_insert_with(|| {
            let cname = connection_name(ci);
            dto::Channel {
                name: format!("{cname} ({})", h.channel),
                node: st.node.to_string(),
                number: h.channel,
                user: connection_user(ci),
                vhost: connection_vhost(ci),
                state: "running",
                consumer_count: 0,
                prefetch_count: h.prefetch.limit(),
                global_prefetch_count: h.channel_credit.limit(),
                connection_details: dto::ConnectionDetails {
                    name: cname,
                    peer_host: ci.peer.ip().to_string(),
                    peer_port: ci.peer.port(),
                },
            }
        });
        entry.consumer_count += 1;
        entry.prefetch_count = h.prefetch.limit();
        entry.global_prefetch_count = h.channel_credit.limit();
    }
    chans.into_values().collect()
}

fn channel_items(st: &ApiState, user: &AuthUser) -> Vec<dto::Channel> {
    let vhosts = visible_vhosts(st, user);
    let conns = visible_connections(st, user);
    channel_dtos(st, &conns, &all_consumers(&vhosts))
}

/// GET /api/channels.
pub(crate) async fn channels(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let items = channel_items(&st, &user).iter().map(to_value).collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/vhosts/{vhost}/channels.
pub(crate) async fn vhost_channels(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    visible_vhost(&st, &user, &vhost)?;
    let items = channel_items(&st, &user)
        .iter()
        .filter(|c| c.vhost == vhost)
        .map(to_value)
        .collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/connections/{name}/channels.
pub(crate) async fn connection_channels(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    find_connection(&st, &user, &name)?;
    let items = channel_items(&st, &user)
        .iter()
        .filter(|c| c.connection_details.name == name)
        .map(to_value)
        .collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/channels/{name}.
pub(crate) async fn channel(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::Channel>> {
    channel_items(&st, &user)
        .into_iter()
        .find(|c| c.name == name)
        .map(Json)
        .ok_or_else(ApiError::not_found)
}

fn consumer_items(
    st: &ApiState,
    user: &AuthUser,
    vhosts: &[Arc<crate::broker::VHost>],
) -> Vec<Value> {
    let conns: HashMap<ConnId, Arc<ConnectionInfo>> = visible_connections(st, user)
        .into_iter()
        .map(|c| (c.id, c))
        .collect();
    let mut out = Vec::new();
    for vh in vhosts {
        for q in vh.queues() {
            for (i, h) in q.consumers().iter().enumerate() {
                if let Some(ci) = conns.get(&h.conn) {
                    let act = activity(&q, i);
                    out.push(to_value(&consumer_dto(st, ci, &vh.name, &q.name, h, act)));
                }
            }
        }
    }
    out
}

/// A consumer's `active` and `activity_status`, as RabbitMQ 3.10 shows them: on a
/// single-active-consumer queue the first consumer (`index` 0 in [`Queue::consumers`]'s
/// order) is `single_active` and the others `waiting`; elsewhere every consumer is `up`.
pub(crate) fn activity(q: &crate::broker::queue::Queue, index: usize) -> (bool, &'static str) {
    match (q.args.single_active(), index) {
        (false, _) => (true, "up"),
        (true, 0) => (true, "single_active"),
        (true, _) => (false, "waiting"),
    }
}

/// The arguments a consumer was given, as far as this broker keeps them.
fn consumer_arguments(h: &ConsumerHandle) -> Map<String, Value> {
    let mut m = Map::new();
    if h.priority != 0 {
        m.insert("x-priority".into(), Value::from(h.priority));
    }
    if h.browse {
        m.insert("x-browse".into(), Value::Bool(true));
    }
    m
}

/// One consumer of `queue` in `vhost`, on connection `ci`.
pub(crate) fn consumer_dto(
    st: &ApiState,
    ci: &ConnectionInfo,
    vhost: &str,
    queue: &str,
    h: &ConsumerHandle,
    (active, activity_status): (bool, &'static str),
) -> dto::Consumer {
    let cname = connection_name(ci);
    dto::Consumer {
        consumer_tag: h.tag.to_string(),
        queue: dto::QueueRef {
            name: queue.to_string(),
            vhost: vhost.to_string(),
        },
        channel_details: dto::ChannelDetails {
            name: format!("{cname} ({})", h.channel),
            connection_name: cname,
            node: st.node.to_string(),
            number: h.channel,
            peer_host: ci.peer.ip().to_string(),
            peer_port: ci.peer.port(),
            user: connection_user(ci),
        },
        ack_required: !h.no_ack,
        exclusive: h.exclusive,
        prefetch_count: h.prefetch.limit(),
        active,
        activity_status,
        arguments: consumer_arguments(h),
    }
}

/// GET /api/consumers.
pub(crate) async fn consumers(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vhosts = visible_vhosts(&st, &user);
    let items = consumer_items(&st, &user, &vhosts);
    Ok(Json(list.respond(
        items,
        &["queue.vhost", "queue.name", "consumer_tag"],
    )?))
}

/// GET /api/consumers/{vhost}.
pub(crate) async fn vhost_consumers(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let items = consumer_items(&st, &user, &[vh]);
    Ok(Json(list.respond(
        items,
        &["queue.vhost", "queue.name", "consumer_tag"],
    )?))
}
