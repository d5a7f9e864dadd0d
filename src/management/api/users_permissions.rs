//! Permissions and topic permissions: `/api/permissions`, `/api/topic-permissions`, and their
//! per-user and per-vhost lists. Administrators only; shapes and statuses as RabbitMQ 3.10
//! (`tests/fixtures/rabbitmq-3.10/access-api.json`). Setting one takes effect on open
//! connections at their next operation (see [`crate::broker::access`]).

use super::ApiState;
use crate::broker::{Permission, access::TopicPermission};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs, QueryArgs, get_str, require_keys};
use crate::management::listing::ListQuery;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashMap;

/// A permission as the API and definitions show it.
pub(crate) fn permission_dto(p: &Permission) -> dto::Permission {
    dto::Permission {
        user: p.user.clone(),
        vhost: p.vhost.clone(),
        configure: p.configure.clone(),
        write: p.write.clone(),
        read: p.read.clone(),
    }
}

/// A topic permission as the API and definitions show it.
pub(crate) fn topic_dto(t: &TopicPermission) -> Value {
    json!({"user": t.user, "vhost": t.vhost, "exchange": t.exchange, "write": t.write, "read": t.read})
}

fn permission_list(
    st: &ApiState,
    q: &HashMap<String, String>,
    keep: impl Fn(&Permission) -> bool,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(q)?;
    let items = st
        .broker
        .access()
        .permissions()
        .iter()
        .filter(|p| keep(p))
        .map(|p| to_value(&permission_dto(p)))
        .collect();
    Ok(Json(list.respond(items, &["vhost", "user"])?))
}

fn topic_list(
    st: &ApiState,
    q: &HashMap<String, String>,
    keep: impl Fn(&TopicPermission) -> bool,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(q)?;
    let items = st
        .broker
        .access()
        .topic_permissions()
        .iter()
        .filter(|t| keep(t))
        .map(topic_dto)
        .collect();
    Ok(Json(list.respond(items, &["vhost", "user"])?))
}

fn require_user(st: &ApiState, name: &str) -> ApiResult<()> {
    st.broker
        .access()
        .user(name)
        .map(|_| ())
        .ok_or_else(ApiError::not_found)
}

/// GET /api/users/{name}/permissions.
pub(crate) async fn user_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    require_user(&st, &name)?;
    permission_list(&st, &q, |p| p.user == name)
}

/// GET /api/users/{name}/topic-permissions.
pub(crate) async fn user_topic_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    require_user(&st, &name)?;
    topic_list(&st, &q, |t| t.user == name)
}

/// GET /api/vhosts/{vhost}/permissions.
pub(crate) async fn vhost_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    super::vhost(&st, &vhost)?;
    permission_list(&st, &q, |p| p.vhost == vhost)
}

/// GET /api/vhosts/{vhost}/topic-permissions.
pub(crate) async fn vhost_topic_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    super::vhost(&st, &vhost)?;
    topic_list(&st, &q, |t| t.vhost == vhost)
}

/// GET /api/permissions.
pub(crate) async fn permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    permission_list(&st, &q, |_| true)
}

/// GET /api/permissions/{vhost}/{user}.
pub(crate) async fn permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
) -> ApiResult<Json<dto::Permission>> {
    auth.require_admin()?;
    st.broker
        .access()
        .permission(&vhost, &user)
        .map(|p| Json(permission_dto(&p)))
        .ok_or_else(ApiError::not_found)
}

/// Validates a permission body (the API's PUT and the definitions import): the three keys
/// must be there; the user, vhost and patterns are checked when it is set.
pub(crate) fn build_permission(user: &str, vhost: &str, body: &Value) -> ApiResult<Permission> {
    require_keys(body, &["configure", "write", "read"])?;
    let field = |k: &str| -> ApiResult<String> { Ok(get_str(body, k)?.unwrap_or("").to_string()) };
    Ok(Permission {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    })
}

/// Validates a topic permission body (the API's PUT and the definitions import).
pub(crate) fn build_topic_permission(
    user: &str,
    vhost: &str,
    body: &Value,
) -> ApiResult<TopicPermission> {
    require_keys(body, &["exchange", "write", "read"])?;
    let field = |k: &str| -> ApiResult<String> { Ok(get_str(body, k)?.unwrap_or("").to_string()) };
    Ok(TopicPermission {
        user: user.to_string(),
        vhost: vhost.to_string(),
        exchange: field("exchange")?,
        write: field("write")?,
        read: field("read")?,
    })
}

fn created(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    }
}

/// PUT /api/permissions/{vhost}/{user}: 201 when created, 204 when replaced.
pub(crate) async fn put_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let perm = build_permission(&user, &vhost, &body)?;
    Ok(created(st.broker.access().put_permission(perm)?))
}

/// DELETE /api/permissions/{vhost}/{user}.
pub(crate) async fn delete_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    if st.broker.access().delete_permission(&vhost, &user)? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// GET /api/topic-permissions.
pub(crate) async fn topic_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    topic_list(&st, &q, |_| true)
}

/// GET /api/topic-permissions/{vhost}/{user}: the user's topic permissions there (a list, one
/// per exchange); 404 when it has none.
pub(crate) async fn topic_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    let items: Vec<Value> = st
        .broker
        .access()
        .topic_permissions()
        .iter()
        .filter(|t| t.vhost == vhost && t.user == user)
        .map(topic_dto)
        .collect();
    if items.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Json(Value::Array(items)))
}

/// PUT /api/topic-permissions/{vhost}/{user} `{"exchange", "write", "read"}`: 201 when new
/// for that exchange, 204 when replaced.
pub(crate) async fn put_topic_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let t = build_topic_permission(&user, &vhost, &body)?;
    Ok(created(st.broker.access().put_topic_permission(t)?))
}

/// DELETE /api/topic-permissions/{vhost}/{user}: every exchange's; 404 when there were none.
pub(crate) async fn delete_topic_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    if st
        .broker
        .access()
        .delete_topic_permissions(&vhost, &user, None)?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
