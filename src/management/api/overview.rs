//! Overview, identity, nodes, vhosts, cluster name and the aliveness test.

use super::{ApiState, usable_vhost, visible_vhost, visible_vhosts};
use crate::broker::vhost::QueueSpec;
use crate::broker::{ConnId, PublishRequest, VHost};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs, QueryArgs, get_str};
use crate::management::listing::ListQuery;
use crate::management::rates::{Counters, RateSet};
use crate::process;
use crate::protocol::types::ShortStr;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

/// Our product, as the overview names it.
pub(crate) const PRODUCT_NAME: &str = "Lagomorph";
/// Our version.
pub(crate) const PRODUCT_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The RabbitMQ release whose management API shapes we follow (tools branch on
/// `rabbitmq_version` and `management_version`); checked against RabbitMQ 3.10.8.
pub(crate) const RABBITMQ_VERSION: &str = "3.10.8";

/// The exchange types, as RabbitMQ describes them.
pub(crate) fn exchange_types() -> Vec<dto::ExchangeType> {
    ["direct", "fanout", "headers", "topic"]
        .into_iter()
        .map(|name| dto::ExchangeType {
            name,
            description: match name {
                "direct" => "AMQP direct exchange, as per the AMQP specification",
                "fanout" => "AMQP fanout exchange, as per the AMQP specification",
                "headers" => "AMQP headers exchange, as per the AMQP specification",
                _ => "AMQP topic exchange, as per the AMQP specification",
            },
            enabled: true,
        })
        .collect()
}

/// Live counters of a vhost's queues and the sum of their rates.
pub(crate) fn vhost_totals(st: &ApiState, vh: &VHost) -> (Counters, RateSet) {
    let rates = st.rates.vhost_queues(&vh.name);
    let mut c = Counters::default();
    let mut r = RateSet::default();
    for q in vh.queues() {
        let qc = Counters::of_queue(&q);
        c.publish += qc.publish;
        c.deliver_get += qc.deliver_get;
        c.ack += qc.ack;
        c.redeliver += qc.redeliver;
        c.messages += qc.messages;
        c.ready += qc.ready;
        c.unacked += qc.unacked;
        if let Some(qr) = rates.get(&*q.name) {
            r.add(qr);
        }
    }
    (c, r)
}

/// GET /api/overview.
pub(crate) async fn overview(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vhosts = visible_vhosts(&st, &user);
    let mut totals = Counters::default();
    let mut queue_rates = RateSet::default();
    let (mut exchanges, mut queues) = (0u64, 0u64);
    for vh in &vhosts {
        let (c, r) = vhost_totals(&st, vh);
        totals.messages += c.messages;
        totals.ready += c.ready;
        totals.unacked += c.unacked;
        totals.deliver_get += c.deliver_get;
        totals.ack += c.ack;
        totals.redeliver += c.redeliver;
        queue_rates.add(&r);
        exchanges += vh.exchanges().len() as u64;
        queues += vh.queues().len() as u64;
    }
    // Counters of deleted queues keep the overall totals from going backwards.
    let retired = st.rates.retired();
    totals.deliver_get += retired.deliver_get;
    totals.ack += retired.ack;
    totals.redeliver += retired.redeliver;
    let stats = st.broker.stats();
    totals.publish = stats.published.load(Ordering::Relaxed);
    totals.confirm = stats.confirmed.load(Ordering::Relaxed);
    totals.returned = stats.returned.load(Ordering::Relaxed);
    totals.dropped = stats
        .unroutable
        .load(Ordering::Relaxed)
        .saturating_sub(totals.returned);
    totals.dead_lettered = crate::management::rates::dead_lettered(stats);
    let mut overall = st.rates.overall();
    overall.messages = queue_rates.messages;
    overall.ready = queue_rates.ready;
    overall.unacked = queue_rates.unacked;
    let conns = st.broker.connections();
    let visible: std::collections::HashSet<&str> = vhosts.iter().map(|v| &*v.name).collect();
    let conns: Vec<_> = conns
        .iter()
        .filter(|c| user.is_admin() || visible.contains(super::connection_vhost(c).as_str()))
        .collect();
    let body = dto::Overview {
        management_version: RABBITMQ_VERSION,
        rates_mode: "basic",
        exchange_types: exchange_types(),
        product_version: PRODUCT_VERSION,
        product_name: PRODUCT_NAME,
        rabbitmq_version: RABBITMQ_VERSION,
        cluster_name: cluster_name_of(&st),
        message_stats: dto::MessageStats::new(&totals, &overall, true),
        queue_totals: dto::MessageCounts::new(&totals, &overall),
        object_totals: dto::ObjectTotals {
            channels: conns
                .iter()
                .map(|c| u64::from(c.channels.load(Ordering::Relaxed)))
                .sum(),
            connections: conns.len() as u64,
            consumers: conns
                .iter()
                .map(|c| c.consumers.load(Ordering::Relaxed).max(0) as u64)
                .sum(),
            exchanges,
            queues,
        },
        statistics_db_event_queue: 0,
        node: st.node.to_string(),
        listeners: listeners(&st),
        contexts: contexts(&st),
    };
    Ok(Json(list.project_one(to_value(&body))))
}

/// GET /api/whoami.
pub(crate) async fn whoami(user: AuthUser) -> Json<dto::WhoAmI> {
    Json(dto::WhoAmI {
        name: user.name,
        tags: user.tags,
    })
}

fn node_dto(st: &ApiState) -> dto::Node {
    dto::Node {
        name: st.node.to_string(),
        kind: "disc",
        running: true,
        os_pid: std::process::id().to_string(),
        mem_used: process::resident_memory().unwrap_or(0),
        mem_limit: st.mem_limit,
        mem_alarm: st.broker.alarm(crate::broker::Alarm::Memory),
        disk_free_alarm: st.broker.alarm(crate::broker::Alarm::Disk),
        fd_used: process::open_fds().unwrap_or(0),
        fd_total: process::fd_limit().unwrap_or(0),
        disk_free: st.data_dir.as_deref().and_then(|d| process::disk_free(d)),
        processors: process::processors(),
        uptime: u64::try_from(st.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        run_queue: 0,
        rates_mode: "basic",
        partitions: Vec::new(),
        exchange_types: exchange_types(),
    }
}

/// GET /api/nodes.
pub(crate) async fn nodes(
    State(st): State<ApiState>,
    _user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    Ok(Json(
        list.respond(vec![to_value(&node_dto(&st))], &["name"])?,
    ))
}

/// GET /api/nodes/{node}.
pub(crate) async fn node(
    State(st): State<ApiState>,
    _user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::Node>> {
    if name != *st.node {
        return Err(ApiError::not_found());
    }
    Ok(Json(node_dto(&st)))
}

fn vhost_dto(st: &ApiState, vh: &VHost) -> dto::Vhost {
    let (c, r) = vhost_totals(st, vh);
    let mut cluster_state = Map::new();
    cluster_state.insert(st.node.to_string(), Value::from("running"));
    let info = st.broker.access().vhost_info(&vh.name).unwrap_or_default();
    dto::Vhost {
        name: vh.name.to_string(),
        metadata: json!({"description": info.description, "tags": info.tags}),
        description: info.description,
        tags: info.tags,
        default_queue_type: info
            .default_queue_type
            .unwrap_or_else(|| "undefined".into()),
        tracing: false,
        counts: dto::MessageCounts::new(&c, &r),
        message_stats: dto::MessageStats::new(&c, &r, false),
        cluster_state,
    }
}

/// GET /api/vhosts.
pub(crate) async fn vhosts(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let items = visible_vhosts(&st, &user)
        .iter()
        .map(|vh| to_value(&vhost_dto(&st, vh)))
        .collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/vhosts/{vhost}. A vhost the user may not see is RabbitMQ's 401 `Not
/// administrator user` here (not the `virtual host` text of the vhost's objects).
pub(crate) async fn vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::Vhost>> {
    let vh = visible_vhost(&st, &user, &name).map_err(|e| {
        if e.status == StatusCode::UNAUTHORIZED {
            ApiError::not_administrator()
        } else {
            e
        }
    })?;
    Ok(Json(vhost_dto(&st, &vh)))
}

/// PUT /api/vhosts/{vhost} `{"description", "tags", "default_queue_type"}`: 201 when
/// created, 204 when it existed. The metadata is replaced as a whole (what the body leaves out
/// is cleared), as RabbitMQ 3.10 does; `tracing` is accepted and ignored. The creating user
/// gets full permissions on a new vhost, as RabbitMQ's management API gives them.
pub(crate) async fn put_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    if ShortStr::try_from(name.as_str()).is_err() {
        return Err(ApiError::bad_request("vhost name longer than 255 bytes"));
    }
    let access = st.broker.access();
    let mut info = crate::broker::access::VhostInfo::named(&name);
    info.description = get_str(&body, "description")?.unwrap_or("").to_string();
    info.tags = super::users::parse_tags(body.get("tags").unwrap_or(&Value::Null))?;
    info.default_queue_type = get_str(&body, "default_queue_type")?.map(str::to_string);
    // Limits are set through /api/vhost-limits; a PUT keeps them.
    info.limits = access
        .vhost_info(&name)
        .map(|i| i.limits)
        .unwrap_or_default();
    let created = st.broker.put_vhost(info)?;
    if !created {
        return Ok(StatusCode::NO_CONTENT);
    }
    access.put_permission(crate::broker::Permission {
        user: user.name.clone(),
        vhost: name,
        configure: ".*".into(),
        write: ".*".into(),
        read: ".*".into(),
    })?;
    Ok(StatusCode::CREATED)
}

/// DELETE /api/vhosts/{vhost}: closes its connections (320 `vhost 'v' is down`), deletes its
/// objects, permissions and limits.
pub(crate) async fn delete_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    super::vhost(&st, &name)?;
    if st.broker.delete_vhost(&name)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// The overview's `listeners`: each AMQP listener, then this API, as RabbitMQ lists them.
fn listeners(st: &ApiState) -> Vec<dto::Listener> {
    let amqp = st.listeners.amqp.iter().map(|a| dto::Listener {
        node: st.node.to_string(),
        protocol: if st.listeners.amqps.contains(a) {
            "amqp/ssl"
        } else {
            "amqp"
        },
        ip_address: a.ip().to_string(),
        port: a.port(),
        socket_opts: json!({"nodelay": true}),
    });
    let http = st.listeners.http.iter().map(|a| dto::Listener {
        node: st.node.to_string(),
        protocol: if st.listeners.https { "https" } else { "http" },
        ip_address: a.ip().to_string(),
        port: a.port(),
        socket_opts: json!({"ip": a.ip().to_string(), "port": a.port()}),
    });
    amqp.chain(http).collect()
}

/// The overview's `contexts`: this API at `/`.
fn contexts(st: &ApiState) -> Vec<dto::Context> {
    st.listeners
        .http
        .iter()
        .map(|a| dto::Context {
            ssl_opts: Vec::new(),
            node: st.node.to_string(),
            description: "Lagomorph Management",
            path: "/",
            ip: a.ip().to_string(),
            port: a.port().to_string(),
        })
        .collect()
}

fn cluster_name_of(st: &ApiState) -> String {
    st.cluster_name
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// GET /api/cluster-name.
pub(crate) async fn cluster_name(
    State(st): State<ApiState>,
    _user: AuthUser,
) -> Json<dto::ClusterName> {
    Json(dto::ClusterName {
        name: cluster_name_of(&st),
    })
}

/// PUT /api/cluster-name `{"name": ...}`: 204 (administrators only).
pub(crate) async fn put_cluster_name(
    State(st): State<ApiState>,
    user: AuthUser,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    let Some(name) = get_str(&body, "name")? else {
        return Err(ApiError::keys_missing(&["name"]));
    };
    if name.is_empty() {
        return Err(ApiError::bad_request("cluster name must not be empty"));
    }
    *st.cluster_name.write().unwrap_or_else(|e| e.into_inner()) = name.to_string();
    Ok(StatusCode::NO_CONTENT)
}

/// The queue the aliveness test uses, as in RabbitMQ.
const ALIVENESS_QUEUE: &str = "aliveness-test";

/// GET /api/aliveness-test/{vhost}: declares `aliveness-test`, publishes to it and gets the
/// message back.
pub(crate) async fn aliveness(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Response> {
    let vh = usable_vhost(&st, &user, &name)?;
    let grant = user.grant(&st, &name);
    grant
        .check_queue_declare(&vh, ALIVENESS_QUEUE, &Default::default())
        .map_err(|_| ApiError::access_refused())?;
    let spec = QueueSpec {
        name: ALIVENESS_QUEUE.into(),
        ..Default::default()
    };
    let now = crate::clock::now();
    let q = vh.declare_queue(&spec, false, ConnId(0), now)?;
    let body = bytes::Bytes::from_static(b"test_message");
    let req = PublishRequest {
        exchange: ShortStr::EMPTY,
        routing_key: ShortStr::from_static(ALIVENESS_QUEUE),
        properties: Default::default(),
        body: body.clone(),
        user: &user.name,
        grant: &grant,
        awaited: None,
    };
    vh.publish(req, now)?;
    let got = vh.get(&q, true, now)?;
    Ok(match got {
        Some(g) if g.message.msg.body == body => super::health::health(StatusCode::OK, None),
        _ => super::health::health(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("aliveness test message was not returned".into()),
        ),
    })
}
