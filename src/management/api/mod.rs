//! The router: RabbitMQ's management paths, one file per resource (as lavinmq's
//! `http/controller/*`), plus helpers the resources share.

mod bindings;
mod connections;
mod definitions;
mod exchanges;
mod health;
mod overview;
mod policies;
mod queues;
mod users;
mod users_limits;
mod users_permissions;

use super::ApiState;
use super::auth::AuthUser;
use super::error::{ApiError, ApiResult};
use crate::broker::access::{Perm, Resource};
use crate::broker::{ConnectionInfo, VHost};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::Uri;
use axum::routing::{get, post};
use std::collections::HashSet;
use std::sync::Arc;

/// Largest request body (definitions files, published payloads).
const BODY_LIMIT: usize = 64 * 1024 * 1024;

/// Builds the router over `state`.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/overview", get(overview::overview))
        .route("/api/whoami", get(overview::whoami))
        .route("/api/nodes", get(overview::nodes))
        .route("/api/nodes/{node}", get(overview::node))
        .route("/api/vhosts", get(overview::vhosts))
        .route(
            "/api/vhosts/{vhost}",
            get(overview::vhost)
                .put(overview::put_vhost)
                .delete(overview::delete_vhost),
        )
        .route(
            "/api/vhosts/{vhost}/permissions",
            get(users_permissions::vhost_permissions),
        )
        .route(
            "/api/vhosts/{vhost}/topic-permissions",
            get(users_permissions::vhost_topic_permissions),
        )
        .route(
            "/api/vhosts/{vhost}/connections",
            get(connections::vhost_connections),
        )
        .route(
            "/api/vhosts/{vhost}/channels",
            get(connections::vhost_channels),
        )
        .route(
            "/api/cluster-name",
            get(overview::cluster_name).put(overview::put_cluster_name),
        )
        .route("/api/healthchecks/node", get(health::node))
        .route("/api/healthchecks/node/{node}", get(health::named_node))
        .route("/api/health/checks/alarms", get(health::alarms))
        .route("/api/health/checks/local-alarms", get(health::local_alarms))
        .route(
            "/api/health/checks/virtual-hosts",
            get(health::virtual_hosts),
        )
        .route(
            "/api/health/checks/port-listener/{port}",
            get(health::port_listener),
        )
        .route(
            "/api/health/checks/node-is-quorum-critical",
            get(health::node_is_quorum_critical),
        )
        .route("/api/aliveness-test/{vhost}", get(overview::aliveness))
        .route("/api/connections", get(connections::connections))
        .route(
            "/api/connections/{name}",
            get(connections::connection).delete(connections::close_connection),
        )
        .route(
            "/api/connections/{name}/channels",
            get(connections::connection_channels),
        )
        .route("/api/channels", get(connections::channels))
        .route("/api/channels/{name}", get(connections::channel))
        .route("/api/consumers", get(connections::consumers))
        .route("/api/consumers/{vhost}", get(connections::vhost_consumers))
        .route("/api/exchanges", get(exchanges::list))
        .route("/api/exchanges/{vhost}", get(exchanges::list_vhost))
        .route(
            "/api/exchanges/{vhost}/{name}",
            get(exchanges::show)
                .put(exchanges::declare)
                .delete(exchanges::delete),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/publish",
            post(exchanges::publish),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/source",
            get(bindings::source),
        )
        .route(
            "/api/exchanges/{vhost}/{name}/bindings/destination",
            get(bindings::destination),
        )
        .route("/api/queues", get(queues::list))
        .route("/api/queues/{vhost}", get(queues::list_vhost))
        .route(
            "/api/queues/{vhost}/{name}",
            get(queues::show)
                .put(queues::declare)
                .delete(queues::delete),
        )
        .route(
            "/api/queues/{vhost}/{name}/contents",
            axum::routing::delete(queues::purge),
        )
        .route("/api/queues/{vhost}/{name}/get", post(queues::get_messages))
        .route("/api/queues/{vhost}/{name}/browse", post(queues::browse))
        .route(
            "/api/queues/{vhost}/{name}/bindings",
            get(bindings::of_queue),
        )
        .route("/api/bindings", get(bindings::list))
        .route("/api/bindings/{vhost}", get(bindings::list_vhost))
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}",
            get(bindings::between).post(bindings::create),
        )
        .route(
            "/api/bindings/{vhost}/e/{source}/{kind}/{dest}/{props}",
            get(bindings::show).delete(bindings::delete),
        )
        .route("/api/users", get(users::users))
        .route("/api/users/bulk-delete", post(users::bulk_delete))
        .route(
            "/api/users/without-permissions",
            get(users::without_permissions),
        )
        .route(
            "/api/users/{name}",
            get(users::user)
                .put(users::put_user)
                .delete(users::delete_user),
        )
        .route(
            "/api/users/{name}/permissions",
            get(users_permissions::user_permissions),
        )
        .route(
            "/api/users/{name}/topic-permissions",
            get(users_permissions::user_topic_permissions),
        )
        .route("/api/permissions", get(users_permissions::permissions))
        .route(
            "/api/permissions/{vhost}/{user}",
            get(users_permissions::permission)
                .put(users_permissions::put_permission)
                .delete(users_permissions::delete_permission),
        )
        .route(
            "/api/topic-permissions",
            get(users_permissions::topic_permissions),
        )
        .route(
            "/api/topic-permissions/{vhost}/{user}",
            get(users_permissions::topic_permission)
                .put(users_permissions::put_topic_permission)
                .delete(users_permissions::delete_topic_permission),
        )
        .route("/api/vhost-limits", get(users_limits::vhost_limits))
        .route(
            "/api/vhost-limits/{vhost}",
            get(users_limits::vhost_limits_of),
        )
        .route(
            "/api/vhost-limits/{vhost}/{name}",
            axum::routing::put(users_limits::put_vhost_limit)
                .delete(users_limits::delete_vhost_limit),
        )
        .route("/api/user-limits", get(users_limits::user_limits))
        .route("/api/user-limits/{user}", get(users_limits::user_limits_of))
        .route(
            "/api/user-limits/{user}/{name}",
            axum::routing::put(users_limits::put_user_limit)
                .delete(users_limits::delete_user_limit),
        )
        .route(
            "/api/definitions",
            get(definitions::export).post(definitions::import),
        )
        .route(
            "/api/definitions/{vhost}",
            get(definitions::export_vhost).post(definitions::import_vhost),
        )
        .route("/api/policies", get(policies::list))
        .route("/api/policies/{vhost}", get(policies::list_in))
        .route(
            "/api/policies/{vhost}/{name}",
            get(policies::get_one)
                .put(policies::put_one)
                .delete(policies::delete_one),
        )
        .route("/api/operator-policies", get(policies::op_list))
        .route("/api/operator-policies/{vhost}", get(policies::op_list_in))
        .route(
            "/api/operator-policies/{vhost}/{name}",
            get(policies::op_get_one)
                .put(policies::op_put_one)
                .delete(policies::op_delete_one),
        )
        .route("/metrics", get(super::metrics::metrics))
        .route("/metrics/per-object", get(super::metrics::per_object))
        .merge(super::ui::routes())
        .fallback(|| async { ApiError::not_found() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// The request with one trailing slash taken off its path (`/api/queues/` → `/api/queues`), as
/// RabbitMQ's router ignores it. Applied before routing.
pub(crate) fn trim_trailing_slash(mut req: Request) -> Request {
    let Some(trimmed) = req.uri().path().strip_suffix('/').filter(|p| !p.is_empty()) else {
        return req;
    };
    let path_and_query = match req.uri().query() {
        Some(q) => format!("{trimmed}?{q}"),
        None => trimmed.to_string(),
    };
    let mut parts = req.uri().clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(uri) = Uri::from_parts(parts) {
            *req.uri_mut() = uri;
        }
    }
    req
}

/// The vhost called `name`, or RabbitMQ's 404.
pub(crate) fn vhost(st: &ApiState, name: &str) -> ApiResult<Arc<VHost>> {
    st.broker.vhost(name).ok_or_else(ApiError::not_found)
}

/// The vhost called `name` if `user` may see it; 404 if it does not exist, 401 if hidden.
pub(crate) fn visible_vhost(st: &ApiState, user: &AuthUser, name: &str) -> ApiResult<Arc<VHost>> {
    let vh = vhost(st, name)?;
    if user.sees_vhost(st, name) {
        Ok(vh)
    } else {
        Err(ApiError::vhost_refused())
    }
}

/// The vhost called `name` if `user` may change things in it.
pub(crate) fn usable_vhost(st: &ApiState, user: &AuthUser, name: &str) -> ApiResult<Arc<VHost>> {
    let vh = vhost(st, name)?;
    user.require_vhost(st, name)?;
    Ok(vh)
}

/// The vhosts `user` may see, sorted by name.
pub(crate) fn visible_vhosts(st: &ApiState, user: &AuthUser) -> Vec<Arc<VHost>> {
    let all = st.broker.vhosts();
    let mut out: Vec<Arc<VHost>> = if user.is_monitor() {
        all
    } else {
        let allowed: HashSet<String> = st
            .broker
            .access()
            .permissions()
            .into_iter()
            .filter(|p| p.user == user.name)
            .map(|p| p.vhost)
            .collect();
        all.into_iter()
            .filter(|v| allowed.contains(&*v.name))
            .collect()
    };
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The one permission check of the API, as AMQP makes it ([`crate::broker::Grant`]): 401
/// `Access refused.` when `user`'s permissions in `vhost` refuse `perm` on `resource`.
pub(crate) fn authorize(
    st: &ApiState,
    user: &AuthUser,
    vhost: &str,
    perm: Perm,
    resource: Resource<'_>,
) -> ApiResult<()> {
    user.grant(st, vhost)
        .authorize(perm, resource)
        .map_err(|_| ApiError::access_refused())
}

/// RabbitMQ's management API calls the default exchange `amq.default` in paths.
pub(crate) fn exchange_name(path_name: &str) -> &str {
    if path_name == "amq.default" {
        ""
    } else {
        path_name
    }
}

/// `"peer -> local"`, RabbitMQ's connection name.
pub(crate) fn connection_name(c: &ConnectionInfo) -> String {
    format!("{} -> {}", c.peer, c.local)
}

/// The connection's user (empty before login).
pub(crate) fn connection_user(c: &ConnectionInfo) -> String {
    c.user.read().unwrap_or_else(|e| e.into_inner()).clone()
}

/// The connection's vhost (empty before connection.open).
pub(crate) fn connection_vhost(c: &ConnectionInfo) -> String {
    c.vhost.read().unwrap_or_else(|e| e.into_inner()).clone()
}
