//! Users and permissions. Changes last until restart: users come from the configuration file,
//! and the API manages them at run time (as the definitions import does).

use super::ApiState;
use crate::broker::{Permission, User};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs, QueryArgs, get_str, require_keys};
use crate::management::listing::ListQuery;
use crate::password;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value};

/// RabbitMQ's name for the hashing scheme of a stored hash, from its decoded length.
pub(crate) fn hashing_algorithm(hash: &str) -> &'static str {
    match base64::engine::general_purpose::STANDARD.decode(hash) {
        Ok(b) if b.len() == 4 + 64 => "rabbit_password_hashing_sha512",
        _ => "rabbit_password_hashing_sha256",
    }
}

/// A user as the API and definitions show it.
pub(crate) fn user_dto(u: &User) -> dto::User {
    dto::User {
        name: u.name.clone(),
        password_hash: u.password_hash.clone(),
        hashing_algorithm: hashing_algorithm(&u.password_hash),
        tags: u.tags.clone(),
        limits: Map::new(),
    }
}

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

/// Tags as RabbitMQ accepts them: a comma-separated string or a list of strings.
pub(crate) fn parse_tags(v: &Value) -> ApiResult<Vec<String>> {
    let raw: Vec<String> = match v {
        Value::String(s) => s.split(',').map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .map(|t| {
                t.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| ApiError::bad_request("tags must be strings"))
            })
            .collect::<ApiResult<_>>()?,
        Value::Null => Vec::new(),
        _ => return Err(ApiError::bad_request("tags must be a string or a list")),
    };
    Ok(raw
        .into_iter()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect())
}

/// Checks a `password_hash` and its `hashing_algorithm` from a request or definitions file.
pub(crate) fn check_hash(hash: &str, algorithm: Option<&str>) -> ApiResult<()> {
    match algorithm {
        None | Some("rabbit_password_hashing_sha256") | Some("rabbit_password_hashing_sha512") => {}
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unsupported hashing_algorithm {other}"
            )));
        }
    }
    if hash.is_empty() || password::is_password_hash(hash) {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid password_hash"))
    }
}

/// GET /api/users.
pub(crate) async fn users(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    user.require_admin()?;
    let list = ListQuery::parse(&q)?;
    let items = st
        .broker
        .users()
        .iter()
        .map(|u| to_value(&user_dto(u)))
        .collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/users/{name}.
pub(crate) async fn user(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::User>> {
    auth.require_admin()?;
    st.broker
        .users()
        .iter()
        .find(|u| u.name == name)
        .map(|u| Json(user_dto(u)))
        .ok_or_else(ApiError::not_found)
}

/// PUT /api/users/{name}: `tags` plus `password` or `password_hash`. 201 when created, 204 when
/// updated. Without a password the existing hash is kept (a new user gets none and cannot log
/// in with a password).
pub(crate) async fn put_user(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let Some(tags) = body.get("tags") else {
        return Err(ApiError::bad_request("tags_not_present"));
    };
    let tags = parse_tags(tags)?;
    let existing = st.broker.users().into_iter().find(|u| u.name == name);
    let password_hash = if let Some(p) = get_str(&body, "password")? {
        password::hash_password(p)
    } else if let Some(h) = get_str(&body, "password_hash")? {
        check_hash(h, get_str(&body, "hashing_algorithm")?)?;
        h.to_string()
    } else {
        existing
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_default()
    };
    st.broker.put_user(User {
        name,
        password_hash,
        tags,
    });
    Ok(if existing.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// DELETE /api/users/{name}; its permissions go too.
pub(crate) async fn delete_user(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    if st.broker.delete_user(&name) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// POST /api/users/bulk-delete `{"users": [...]}`: deletes them in order; the first that does
/// not exist stops it with 400 `["no_such_user", name]` (those before it stay deleted), as
/// RabbitMQ 3.10 does.
pub(crate) async fn bulk_delete(
    State(st): State<ApiState>,
    auth: AuthUser,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    auth.require_admin()?;
    let Some(list) = body.get("users") else {
        return Err(ApiError::keys_missing(&["users"]));
    };
    let Some(names) = list.as_array() else {
        return Err(ApiError::bad_request("users must be a list of user names"));
    };
    for name in names {
        let Some(name) = name.as_str() else {
            return Err(ApiError::bad_request("users must be a list of user names"));
        };
        if !st.broker.delete_user(name) {
            let reason =
                serde_json::json!({"error": "bad_request", "reason": ["no_such_user", name]});
            return Ok((StatusCode::BAD_REQUEST, Json(reason)).into_response());
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn permission_list(
    st: &ApiState,
    q: &std::collections::HashMap<String, String>,
    keep: impl Fn(&Permission) -> bool,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(q)?;
    let items = st
        .broker
        .permissions()
        .iter()
        .filter(|p| keep(p))
        .map(|p| to_value(&permission_dto(p)))
        .collect();
    Ok(Json(list.respond(items, &["vhost", "user"])?))
}

/// GET /api/users/{name}/permissions.
pub(crate) async fn user_permissions(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    auth.require_admin()?;
    if !st.broker.users().iter().any(|u| u.name == name) {
        return Err(ApiError::not_found());
    }
    permission_list(&st, &q, |p| p.user == name)
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
        .permissions()
        .iter()
        .find(|p| p.vhost == vhost && p.user == user)
        .map(|p| Json(permission_dto(p)))
        .ok_or_else(ApiError::not_found)
}

/// Validates and builds a permission (the API's PUT and the definitions import).
pub(crate) fn build_permission(
    st: &ApiState,
    user: &str,
    vhost: &str,
    body: &Value,
) -> ApiResult<Permission> {
    require_keys(body, &["configure", "write", "read"])?;
    if st.broker.vhost(vhost).is_none() || !st.broker.users().iter().any(|u| u.name == user) {
        return Err(ApiError::bad_request("vhost_or_user_not_found"));
    }
    let field = |k: &str| -> ApiResult<String> {
        let s = get_str(body, k)?.unwrap_or("").to_string();
        regex::Regex::new(&s)
            .map_err(|e| ApiError::bad_request(format!("invalid {k} regex: {e}")))?;
        Ok(s)
    };
    Ok(Permission {
        user: user.to_string(),
        vhost: vhost.to_string(),
        configure: field("configure")?,
        write: field("write")?,
        read: field("read")?,
    })
}

/// PUT /api/permissions/{vhost}/{user}: 201 when created, 204 when replaced.
pub(crate) async fn put_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    let perm = build_permission(&st, &user, &vhost, &body)?;
    Ok(if st.broker.put_permission(perm) {
        StatusCode::CREATED
    } else {
        StatusCode::NO_CONTENT
    })
}

/// DELETE /api/permissions/{vhost}/{user}.
pub(crate) async fn delete_permission(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs((vhost, user)): PathArgs<(String, String)>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    if st.broker.delete_permission(&user, &vhost) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}
