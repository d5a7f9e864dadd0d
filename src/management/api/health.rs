//! Health checks: `/api/health/checks/*` and the older `/api/healthchecks/node`, with
//! RabbitMQ 3.10's bodies and status codes (recorded in
//! `tests/fixtures/rabbitmq-3.10/management-compat.json`): 200 `{"status":"ok"}`, or 503
//! `{"status":"failed","reason":...}`.

use super::ApiState;
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

/// 503 while the memory alarm is set, as RabbitMQ with a resource alarm in effect.
fn alarm_state(st: &ApiState) -> Response {
    if st.broker.memory_alarm() {
        return health(
            StatusCode::SERVICE_UNAVAILABLE,
            Some("resource alarm(s) in effect: memory".into()),
        );
    }
    health(StatusCode::OK, None)
}

/// GET /api/health/checks/alarms and /local-alarms (one node: the same).
pub(crate) async fn alarms(State(st): State<ApiState>, _user: AuthUser) -> Response {
    alarm_state(&st)
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
