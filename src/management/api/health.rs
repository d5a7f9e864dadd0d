//! Health checks: `/api/health/checks/*` and the older `/api/healthchecks/node`, with
//! RabbitMQ 3.10's bodies and status codes (recorded in
//! `tests/fixtures/rabbitmq-3.10/management-compat.json`): 200 `{"status":"ok"}`, or 503
//! `{"status":"failed","reason":...}`.

use super::ApiState;
use crate::broker::Alarm;
use crate::management::auth::AuthUser;
use crate::management::dto;
use crate::management::error::ApiError;
use crate::management::json::PathArgs;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// `{"status": "ok"}` with 200, or `{"status": "failed", "reason": ...}` with `status`.
pub(crate) fn health(status: StatusCode, reason: Option<String>) -> Response {
    let s = if reason.is_some() { "failed" } else { "ok" };
    (status, Json(dto::Health { status: s, reason })).into_response()
}

/// The alarms in effect, in RabbitMQ's order (`disk space`, then `memory`).
fn alarms_in_effect(st: &ApiState) -> Vec<Alarm> {
    Alarm::ALL
        .into_iter()
        .filter(|a| st.broker.alarm(*a))
        .collect()
}

/// 200 `{"status":"ok"}`, or 503 with the alarms listed per node, as RabbitMQ 3.10 answers
/// (`tests/fixtures/rabbitmq-3.10/alarms.json`): `reason` says "in the cluster" for
/// `alarms` and "on the node" for `local-alarms`.
fn alarm_check(st: &ApiState, scope: &str) -> Response {
    let alarms = alarms_in_effect(st);
    if alarms.is_empty() {
        return health(StatusCode::OK, None);
    }
    let list: Vec<_> = alarms
        .iter()
        .map(|a| json!({"node": &*st.node, "resource": a.resource()}))
        .collect();
    let body = json!({
        "status": "failed",
        "reason": format!("There are alarms in effect {scope}"),
        "alarms": list,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// 503 while a resource alarm is set (the older `/api/healthchecks/node`).
fn alarm_state(st: &ApiState) -> Response {
    let alarms = alarms_in_effect(st);
    if !alarms.is_empty() {
        let names: Vec<&str> = alarms.iter().map(|a| a.resource()).collect();
        return health(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!("resource alarm(s) in effect: {}", names.join(", "))),
        );
    }
    health(StatusCode::OK, None)
}

/// GET /api/health/checks/alarms.
pub(crate) async fn alarms(State(st): State<ApiState>, _user: AuthUser) -> Response {
    alarm_check(&st, "in the cluster")
}

/// GET /api/health/checks/local-alarms (one node: the same alarms).
pub(crate) async fn local_alarms(State(st): State<ApiState>, _user: AuthUser) -> Response {
    alarm_check(&st, "on the node")
}

/// GET /api/healthchecks/node (and /api/healthchecks/node/{node}): RabbitMQ's older check,
/// which fails on an alarm too.
pub(crate) async fn node(State(st): State<ApiState>, _user: AuthUser) -> Response {
    alarm_state(&st)
}

/// GET /api/healthchecks/node/{node}: this node, or 404.
pub(crate) async fn named_node(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> Response {
    if name != *st.node {
        return ApiError::not_found().into_response();
    }
    node(State(st), user).await
}

/// GET /api/health/checks/virtual-hosts: every vhost runs inside this process, so all are up.
pub(crate) async fn virtual_hosts(State(st): State<ApiState>, _user: AuthUser) -> Response {
    if st.broker.vhosts().is_empty() {
        return health(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("no virtual hosts".into()),
        );
    }
    health(StatusCode::OK, None)
}

/// GET /api/health/checks/port-listener/{port}: 200 when this node listens on the port (AMQP
/// or this API), else 503 naming the ports it does listen on; 400 for a port that is not one.
pub(crate) async fn port_listener(
    State(st): State<ApiState>,
    _user: AuthUser,
    PathArgs(port): PathArgs<String>,
) -> Response {
    let Ok(port) = port.parse::<u16>() else {
        return ApiError::bad_request("Invalid port").into_response();
    };
    let ports = st.listeners.ports();
    if ports.contains(&port) {
        return Json(json!({"status": "ok", "port": port})).into_response();
    }
    let body = json!({
        "status": "failed",
        "reason": "No active listener",
        "missing": port,
        "ports": ports,
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// GET /api/health/checks/node-is-quorum-critical: one node has no quorum to lose.
pub(crate) async fn node_is_quorum_critical(_user: AuthUser) -> Json<dto::Health> {
    Json(dto::Health {
        status: "ok",
        reason: Some("single node cluster".into()),
    })
}
