//! Users: list, show, create or update, delete (closing the user's connections), bulk delete,
//! users without permissions. Administrators only, as in RabbitMQ. The records live in the
//! broker's access model and are stored; permissions are in `users_permissions`, limits in
//! `users_limits`.

use super::ApiState;
use crate::broker::User;
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{JsonBody, PathArgs, QueryArgs, get_str};
use crate::management::listing::ListQuery;
use crate::password;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// A user as the API and definitions show it (with its limits, as RabbitMQ 3.10 does).
pub(crate) fn user_dto(st: &ApiState, u: &User) -> dto::User {
    let limits: Map<String, Value> = st
        .broker
        .access()
        .user_limits(&u.name)
        .into_iter()
        .map(|(k, v)| (k, Value::from(v)))
        .collect();
    dto::User {
        name: u.name.clone(),
        password_hash: u.password_hash.clone(),
        hashing_algorithm: u.hashing_algorithm(),
        tags: u.tags.clone(),
        limits,
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
        None
        | Some("rabbit_password_hashing_sha256")
        | Some("rabbit_password_hashing_sha512")
        | Some("rabbit_password_hashing_md5") => {}
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
    user_list(&st, &q, |_| true)
}

/// Users passing `keep`, listed as the API lists them.
fn user_list(
    st: &ApiState,
    q: &std::collections::HashMap<String, String>,
    keep: impl Fn(&User) -> bool,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(q)?;
    let items = st
        .broker
        .access()
        .users()
        .iter()
        .filter(|u| keep(u))
        .map(|u| to_value(&user_dto(st, u)))
        .collect();
    Ok(Json(list.respond(items, &["name"])?))
}

/// GET /api/users/without-permissions: users with no permission in any vhost.
pub(crate) async fn without_permissions(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    user.require_admin()?;
    let with: std::collections::HashSet<String> = st
        .broker
        .access()
        .permissions()
        .into_iter()
        .map(|p| p.user)
        .collect();
    user_list(&st, &q, |u| !with.contains(&u.name))
}

/// GET /api/users/{name}.
pub(crate) async fn user(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<dto::User>> {
    auth.require_admin()?;
    st.broker
        .access()
        .user(&name)
        .map(|u| Json(user_dto(&st, &u)))
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
    let existing = st.broker.access().user(&name);
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
    st.broker.access().put_user(User {
        name,
        password_hash,
        tags,
    })?;
    Ok(if existing.is_some() {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// DELETE /api/users/{name}; its permissions and limits go too, its connections are closed.
pub(crate) async fn delete_user(
    State(st): State<ApiState>,
    auth: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<StatusCode> {
    auth.require_admin()?;
    if st.broker.delete_user(&name)? {
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
        if !st.broker.delete_user(name)? {
            let reason =
                serde_json::json!({"error": "bad_request", "reason": ["no_such_user", name]});
            return Ok((StatusCode::BAD_REQUEST, Json(reason)).into_response());
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
