//! Definitions export and import in RabbitMQ's JSON format: users, vhosts, permissions,
//! policies, operator policies (as RabbitMQ exports them: `parameters` of component
//! `operator_policy`), exchanges, queues and bindings. Other parameters and topic permissions
//! are exported empty and ignored on import.
//!
//! Export leaves out what RabbitMQ leaves out: the predeclared exchanges, exclusive queues and
//! the default exchange's implicit bindings. Import adds and updates; it deletes nothing.
//! The whole document is checked (shapes, vhosts, exchange types, password hashes) before
//! anything is applied, so a malformed file changes nothing.

use super::exchanges::exchange_dto;
use super::overview::{PRODUCT_NAME, PRODUCT_VERSION, RABBITMQ_VERSION};
use super::users::{build_permission, check_hash, parse_tags, permission_dto, user_dto};
use super::{ApiState, vhost};
use crate::broker::vhost::{ExchangeSpec, QueueSpec};
use crate::broker::{ConnId, User};
use crate::management::auth::AuthUser;
use crate::management::dto::to_value;
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{
    JsonBody, PathArgs, get_bool, get_str, json_to_table, table_to_json,
};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;

const EXCHANGE_TYPES: [&str; 4] = ["direct", "fanout", "topic", "headers"];

/// Objects of one vhost: (exchanges, queues, bindings), with or without `vhost` fields.
fn vhost_objects(
    st: &ApiState,
    name: &str,
    with_vhost: bool,
) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let Some(vh) = st.broker.vhost(name) else {
        return Default::default();
    };
    let strip = |mut v: Value| {
        if !with_vhost && let Value::Object(m) = &mut v {
            m.remove("vhost");
        }
        v
    };
    let mut exchanges = vh.exchanges();
    exchanges.retain(|x| !x.name.is_empty() && !x.name.starts_with("amq."));
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    let xs = exchanges
        .iter()
        .map(|x| {
            let d = exchange_dto(name, x);
            strip(json!({
                "name": d.name, "vhost": d.vhost, "type": d.kind, "durable": d.durable,
                "auto_delete": d.auto_delete, "internal": d.internal, "arguments": d.arguments,
            }))
        })
        .collect();
    let mut queues = vh.queues();
    queues.retain(|q| q.exclusive.is_none());
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let exported: HashSet<&str> = queues.iter().map(|q| &*q.name).collect();
    let qs = queues
        .iter()
        .map(|q| {
            strip(json!({
                "name": &*q.name, "vhost": name, "durable": q.durable,
                "auto_delete": q.auto_delete, "arguments": table_to_json(&q.args.raw),
            }))
        })
        .collect();
    let mut bs = Vec::new();
    for x in &exchanges {
        for b in x.bindings() {
            let is_x = b.destination.is_exchange();
            if !is_x && !exported.contains(b.destination.name()) {
                continue;
            }
            bs.push(strip(json!({
                "source": &*x.name, "vhost": name, "destination": b.destination.name(),
                "destination_type": if is_x { "exchange" } else { "queue" },
                "routing_key": &*b.routing_key, "arguments": table_to_json(&b.arguments),
            })));
        }
    }
    (xs, qs, bs)
}

/// GET /api/definitions.
pub(crate) async fn export(State(st): State<ApiState>, user: AuthUser) -> ApiResult<Json<Value>> {
    user.require_admin()?;
    let mut vhosts: Vec<String> = st
        .broker
        .vhosts()
        .iter()
        .map(|v| v.name.to_string())
        .collect();
    vhosts.sort();
    let mut users = st.broker.users();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    let mut perms = st.broker.permissions();
    perms.sort_by(|a, b| (&a.vhost, &a.user).cmp(&(&b.vhost, &b.user)));
    let (mut xs, mut qs, mut bs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pols, mut params) = (Vec::new(), Vec::new());
    for v in &vhosts {
        let (x, q, b) = vhost_objects(&st, v, true);
        xs.extend(x);
        qs.extend(q);
        bs.extend(b);
        let (p, o) = super::policies::export(&st, v, true);
        pols.extend(p);
        params.extend(o);
    }
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "rabbitmq_version": RABBITMQ_VERSION,
        "product_name": PRODUCT_NAME,
        "product_version": PRODUCT_VERSION,
        "users": users.iter().map(|u| to_value(&user_dto(u))).collect::<Vec<_>>(),
        "vhosts": vhosts.iter().map(|v| json!({"name": v})).collect::<Vec<_>>(),
        "permissions": perms.iter().map(|p| to_value(&permission_dto(p))).collect::<Vec<_>>(),
        "topic_permissions": [],
        "parameters": params,
        "global_parameters": [],
        "policies": pols,
        "queues": qs,
        "exchanges": xs,
        "bindings": bs,
    })))
}

/// GET /api/definitions/{vhost}: that vhost's objects, without `vhost` fields.
pub(crate) async fn export_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
) -> ApiResult<Json<Value>> {
    user.require_admin()?;
    vhost(&st, &name)?;
    let (xs, qs, bs) = vhost_objects(&st, &name, false);
    let (pols, params) = super::policies::export(&st, &name, false);
    Ok(Json(json!({
        "rabbit_version": RABBITMQ_VERSION,
        "parameters": params,
        "policies": pols,
        "queues": qs,
        "exchanges": xs,
        "bindings": bs,
    })))
}

/// The array at `key` (absent is empty).
fn section<'a>(doc: &'a Value, key: &str) -> ApiResult<&'a [Value]> {
    match doc.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(a)) => Ok(a),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a list"))),
    }
}

fn text<'a>(item: &'a Value, key: &str, what: &str) -> ApiResult<&'a str> {
    get_str(item, key)?.ok_or_else(|| ApiError::bad_request(format!("{what} without {key}")))
}

/// The vhost of an object: its own field, or the one the URL names.
fn object_vhost<'a>(item: &'a Value, scope: Option<&'a str>) -> ApiResult<&'a str> {
    match scope {
        Some(v) => Ok(v),
        None => text(item, "vhost", "object"),
    }
}

/// Checks and applies a definitions document; `scope` is the vhost of a vhost-scoped import.
fn import_doc(st: &ApiState, doc: &Value, scope: Option<&str>) -> ApiResult<()> {
    if !doc.is_object() {
        return Err(ApiError::bad_request("not_json"));
    }
    let (users, vhosts, perms) = if scope.is_some() {
        (&[][..], &[][..], &[][..])
    } else {
        (
            section(doc, "users")?,
            section(doc, "vhosts")?,
            section(doc, "permissions")?,
        )
    };
    let (exchanges, queues, bindings) = (
        section(doc, "exchanges")?,
        section(doc, "queues")?,
        section(doc, "bindings")?,
    );

    // Check everything first.
    let mut known: HashSet<String> = st
        .broker
        .vhosts()
        .iter()
        .map(|v| v.name.to_string())
        .collect();
    for v in vhosts {
        known.insert(text(v, "name", "vhost")?.to_string());
    }
    let mut new_users = Vec::new();
    for u in users {
        let name = text(u, "name", "user")?;
        let hash = get_str(u, "password_hash")?.unwrap_or("");
        check_hash(hash, get_str(u, "hashing_algorithm")?)?;
        new_users.push(User {
            name: name.to_string(),
            password_hash: hash.to_string(),
            tags: parse_tags(u.get("tags").unwrap_or(&Value::Null))?,
        });
    }
    for item in exchanges.iter().chain(queues).chain(bindings).chain(perms) {
        let vh = object_vhost(item, scope)?;
        if !known.contains(vh) {
            return Err(ApiError::bad_request(format!("no_such_vhost: {vh}")));
        }
    }
    let mut xspecs = Vec::new();
    for x in exchanges {
        let name = text(x, "name", "exchange")?;
        let kind = get_str(x, "type")?.unwrap_or("direct");
        if !EXCHANGE_TYPES.contains(&kind) {
            return Err(ApiError::bad_request(format!(
                "unknown exchange type '{kind}'"
            )));
        }
        let spec = ExchangeSpec {
            name: name.to_string(),
            kind: kind.to_string(),
            durable: get_bool(x, "durable", true)?,
            auto_delete: get_bool(x, "auto_delete", false)?,
            internal: get_bool(x, "internal", false)?,
            arguments: json_to_table(x.get("arguments").unwrap_or(&Value::Null))?,
        };
        xspecs.push((object_vhost(x, scope)?, spec));
    }
    let mut qspecs = Vec::new();
    for q in queues {
        let spec = QueueSpec {
            name: text(q, "name", "queue")?.to_string(),
            durable: get_bool(q, "durable", true)?,
            exclusive: None,
            auto_delete: get_bool(q, "auto_delete", false)?,
            arguments: json_to_table(q.get("arguments").unwrap_or(&Value::Null))?,
        };
        if spec.name.is_empty() {
            return Err(ApiError::bad_request("queue without name"));
        }
        qspecs.push((object_vhost(q, scope)?, spec));
    }
    let policies = super::policies::import_check(
        section(doc, "policies")?,
        section(doc, "parameters")?,
        |item| {
            let vh = object_vhost(item, scope)?;
            if !known.contains(vh) {
                return Err(ApiError::bad_request(format!("no_such_vhost: {vh}")));
            }
            Ok(vh.to_string())
        },
    )?;
    let mut bspecs = Vec::new();
    for b in bindings {
        let is_x = match get_str(b, "destination_type")?.unwrap_or("queue") {
            "queue" => false,
            "exchange" => true,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown destination_type '{other}'"
                )));
            }
        };
        bspecs.push((
            object_vhost(b, scope)?,
            text(b, "source", "binding")?,
            text(b, "destination", "binding")?,
            is_x,
            get_str(b, "routing_key")?.unwrap_or(""),
            json_to_table(b.get("arguments").unwrap_or(&Value::Null))?,
        ));
    }

    // Then apply, in dependency order.
    for u in new_users {
        st.broker.put_user(u);
    }
    for v in vhosts {
        st.broker.ensure_vhost(text(v, "name", "vhost")?);
    }
    for p in perms {
        let perm = build_permission(
            st,
            text(p, "user", "permission")?,
            object_vhost(p, scope)?,
            p,
        )?;
        st.broker.put_permission(perm);
    }
    for (vh, kind, policy) in policies {
        vhost(st, &vh)?.put_policy(kind, policy, crate::clock::now())?;
    }
    for (vh, spec) in xspecs {
        vhost(st, vh)?.declare_exchange(&spec, false)?;
    }
    for (vh, spec) in qspecs {
        vhost(st, vh)?.declare_queue(&spec, false, ConnId(0), crate::clock::now())?;
    }
    for (vh, source, dest, is_x, key, args) in bspecs {
        vhost(st, vh)?.bind(source, dest, is_x, key, &args, ConnId(0))?;
    }
    let ignored: Vec<&str> = ["global_parameters", "topic_permissions"]
        .into_iter()
        .filter(|k| {
            doc.get(k)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        })
        .collect();
    if !ignored.is_empty() {
        tracing::warn!(sections = ?ignored, "definitions import: sections not supported, ignored");
    }
    Ok(())
}

/// POST /api/definitions: 204 on success.
pub(crate) async fn import(
    State(st): State<ApiState>,
    user: AuthUser,
    JsonBody(doc): JsonBody,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    import_doc(&st, &doc, None)?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/definitions/{vhost}: imports objects into that vhost.
pub(crate) async fn import_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(name): PathArgs<String>,
    JsonBody(doc): JsonBody,
) -> ApiResult<StatusCode> {
    user.require_admin()?;
    vhost(&st, &name)?;
    import_doc(&st, &doc, Some(&name))?;
    Ok(StatusCode::NO_CONTENT)
}
