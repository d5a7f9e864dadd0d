//! Vhost and user limits: `/api/vhost-limits` (`max-connections`, `max-queues`) and
//! `/api/user-limits` (`max-connections`, `max-channels`). Setting and clearing is for
//! administrators; vhost limits are listed to whoever sees the vhost. Texts and statuses as
//! RabbitMQ 3.10 (`tests/fixtures/rabbitmq-3.10/access-api.json`).

use super::{ApiState, visible_vhost, visible_vhosts};
use crate::broker::access::{LimitMap, USER_LIMITS, VHOST_LIMITS, check_limits};
use crate::management::auth::AuthUser;
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

fn limits_json(l: &LimitMap) -> Value {
    Value::Object(
        l.iter()
            .map(|(k, v)| (k.clone(), Value::from(*v)))
            .collect::<Map<_, _>>(),
    )
}

fn vhost_entry(st: &ApiState, vhost: &str) -> Option<Value> {
    let info = st.broker.access().vhost_info(vhost)?;
    (!info.limits.is_empty()).then(|| json!({"vhost": vhost, "value": limits_json(&info.limits)}))
}

/// GET /api/vhost-limits: `[{"vhost", "value": {...}}]` for the visible vhosts with limits.
pub(crate) async fn vhost_limits(State(st): State<ApiState>, user: AuthUser) -> Json<Value> {
    let items: Vec<Value> = visible_vhosts(&st, &user)
        .iter()
        .filter_map(|vh| vhost_entry(&st, &vh.name))
        .collect();
    Json(Value::Array(items))
}

/// GET /api/vhost-limits/{vhost}: the same for one vhost (`[]` without limits).
pub(crate) async fn vhost_limits_of(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
) -> ApiResult<Json<Value>> {
    visible_vhost(&st, &user, &vhost)?;
    Ok(Json(Value::Array(
        vhost_entry(&st, &vhost).into_iter().collect(),
    )))
}

/// The `value` of a limit PUT, checked as one limit called `name`.
fn limit_value(body: &Value, known: &[&str], what: &str, name: &str) -> Result<i64, String> {
    let v = body.get("value").cloned().unwrap_or(Value::Null);
    let one = json!({ name: v });
    let parsed = check_limits(known, what, &one)?;
    Ok(parsed.get(name).copied().unwrap_or(-1))
}

/// PUT /api/vhost-limits/{vhost}/{name} `{"value": N}`: 204.
pub(crate) async fn put_vhost_limit(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    super::vhost(&st, &vhost)?;
    if body.get("value").is_none() {
        return Err(ApiError::keys_missing(&["value"]));
    }
    let value = limit_value(&body, &VHOST_LIMITS, "limits", &name)
        .map_err(|e| ApiError::bad_request(format!("Validation failed\n\n{e}\n")))?;
    let access = st.broker.access();
    let mut limits = access
        .vhost_info(&vhost)
        .map(|i| i.limits)
        .unwrap_or_default();
    limits.insert(name, value);
    access.set_vhost_limits(&vhost, limits)?;
    Ok(StatusCode::NO_CONTENT)
}

/// DELETE /api/vhost-limits/{vhost}/{name}: 204, whether it was set or not.
pub(crate) async fn delete_vhost_limit(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    let access = st.broker.access();
    let Some(info) = access.vhost_info(&vhost) else {
        return Err(ApiError::not_found());
    };
    if info.limits.contains_key(&name) {
        let mut limits = info.limits;
        limits.remove(&name);
        access.set_vhost_limits(&vhost, limits)?;
    }
    Ok(StatusCode::NO_CONTENT)
}

fn user_entry(user: &str, l: &LimitMap) -> Value {
    json!({"user": user, "value": limits_json(l)})
}

/// GET /api/user-limits: `[{"user", "value": {...}}]` for users with limits. Any management
/// user may list them, as in RabbitMQ 3.10 (access-api.json, management_user_limits).
pub(crate) async fn user_limits(
    State(st): State<ApiState>,
    _user: AuthUser,
) -> ApiResult<Json<Value>> {
    let items = st
        .broker
        .access()
        .all_user_limits()
        .iter()
        .map(|(u, l)| user_entry(u, l))
        .collect();
    Ok(Json(Value::Array(items)))
}

/// GET /api/user-limits/{user}.
pub(crate) async fn user_limits_of(
    State(st): State<ApiState>,
    _auth: AuthUser,
    PathArgs(user): PathArgs<String>,
) -> ApiResult<Json<Value>> {
    let l = st.broker.access().user_limits(&user);
    let items = if l.is_empty() {
        Vec::new()
    } else {
        vec![user_entry(&user, &l)]
    };
    Ok(Json(Value::Array(items)))
}

/// PUT /api/user-limits/{user}/{name} `{"value": N}`: 204; an unknown user is RabbitMQ's
/// 400 `["no_such_user", name]`.
pub(crate) async fn put_user_limit(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((user, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    auth.require_admin()?;
    if body.get("value").is_none() {
        return Err(ApiError::keys_missing(&["value"]));
    }
    let value =
        limit_value(&body, &USER_LIMITS, "user-limits", &name).map_err(ApiError::bad_request)?;
    let access = st.broker.access();
    if access.user(&user).is_none() {
        let reason = json!({"error": "bad_request", "reason": ["no_such_user", user]});
        return Ok((StatusCode::BAD_REQUEST, Json(reason)).into_response());
    }
    let mut limits = access.user_limits(&user);
    limits.insert(name, value);
    access.set_user_limits(&user, limits)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE /api/user-limits/{user}/{name}: 204.
pub(crate) async fn delete_user_limit(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((user, name)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let access = st.broker.access();
    let mut limits = access.user_limits(&user);
    if limits.remove(&name).is_some() {
        access.set_user_limits(&user, limits)?;
    }
    Ok(StatusCode::NO_CONTENT)
}
