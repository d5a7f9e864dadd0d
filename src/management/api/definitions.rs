//! Definitions export and import in RabbitMQ's JSON format: users (with their `limits`),
//! vhosts, permissions, topic permissions, vhost limits (`parameters` of component
//! `vhost-limits`, as RabbitMQ exports them), policies, operator policies (`parameters` of
//! component `operator_policy`), exchanges, queues and bindings. Other parameters are ignored.
//!
//! Vhosts are exported with their `metadata` (description, tags, default queue type), the
//! shape RabbitMQ 3.11 exports and imports; RabbitMQ 3.10 exports only `name` and ignores the
//! extra keys on import, so the file still loads there.
//!
//! Export leaves out what RabbitMQ leaves out: the predeclared exchanges, exclusive queues and
//! the default exchange's implicit bindings. Import adds and updates; it deletes nothing.
//! The whole document is checked (shapes, vhosts, exchange types, password hashes) before
//! anything is applied, so a malformed file changes nothing.

use super::exchanges::exchange_dto;
use super::overview::{PRODUCT_NAME, PRODUCT_VERSION, RABBITMQ_VERSION};
use super::users::{check_hash, parse_tags, user_dto};
use super::users_permissions::{
    build_permission, build_topic_permission, permission_dto, topic_dto,
};
use super::{ApiState, vhost};
use crate::broker::access::{USER_LIMITS, VHOST_LIMITS, VhostInfo, check_limits};
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

const EXCHANGE_TYPES: [&str; 5] = ["direct", "fanout", "topic", "headers", "x-delayed-message"];

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
    let access = st.broker.access();
    let users = access.users();
    let perms = access.permissions();
    let topics = access.topic_permissions();
    let (mut xs, mut qs, mut bs) = (Vec::new(), Vec::new(), Vec::new());
    let (mut pols, mut params) = (Vec::new(), Vec::new());
    for info in access.vhost_infos() {
        if !info.limits.is_empty() {
            params.push(json!({"vhost": info.name, "component": "vhost-limits", "name": "limits", "value": info.limits}));
        }
    }
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
        "users": users.iter().map(|u| to_value(&user_dto(&st, u))).collect::<Vec<_>>(),
        "vhosts": vhosts.iter().map(|v| vhost_entry(&st, v)).collect::<Vec<_>>(),
        "permissions": perms.iter().map(|p| to_value(&permission_dto(p))).collect::<Vec<_>>(),
        "topic_permissions": topics.iter().map(topic_dto).collect::<Vec<_>>(),
        "parameters": params,
        "global_parameters": [],
        "policies": pols,
        "queues": qs,
        "exchanges": xs,
        "bindings": bs,
    })))
}

/// A vhost's definitions entry: its name and metadata.
fn vhost_entry(st: &ApiState, name: &str) -> Value {
    let info = st.broker.access().vhost_info(name).unwrap_or_default();
    let mut meta = json!({"description": info.description, "tags": info.tags});
    if let Some(dqt) = &info.default_queue_type {
        meta["default_queue_type"] = json!(dqt);
    }
    json!({"name": name, "metadata": meta})
}

/// A vhost record from a definitions entry: `metadata` (RabbitMQ 3.11) or top-level
/// `description` / `tags` / `default_queue_type`.
fn vhost_info(st: &ApiState, item: &Value) -> ApiResult<VhostInfo> {
    let name = text(item, "name", "vhost")?;
    let meta = item.get("metadata").unwrap_or(item);
    let mut info = VhostInfo::named(name);
    info.description = get_str(meta, "description")?.unwrap_or("").to_string();
    info.tags = parse_tags(meta.get("tags").unwrap_or(&Value::Null))?;
    info.default_queue_type = get_str(meta, "default_queue_type")?.map(str::to_string);
    info.limits = st
        .broker
        .access()
        .vhost_info(name)
        .map(|i| i.limits)
        .unwrap_or_default();
    Ok(info)
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
    let (users, vhosts, perms, topics) = if scope.is_some() {
        (&[][..], &[][..], &[][..], &[][..])
    } else {
        (
            section(doc, "users")?,
            section(doc, "vhosts")?,
            section(doc, "permissions")?,
            section(doc, "topic_permissions")?,
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
    let mut new_vhosts = Vec::new();
    for v in vhosts {
        let info = vhost_info(st, v)?;
        known.insert(info.name.clone());
        new_vhosts.push(info);
    }
    let mut new_users = Vec::new();
    for u in users {
        let name = text(u, "name", "user")?;
        let hash = get_str(u, "password_hash")?.unwrap_or("");
        check_hash(hash, get_str(u, "hashing_algorithm")?)?;
        let limits = match u.get("limits") {
            None | Some(Value::Null) => None,
            Some(l) => {
                Some(check_limits(&USER_LIMITS, "user-limits", l).map_err(ApiError::bad_request)?)
            }
        };
        new_users.push((
            User {
                name: name.to_string(),
                password_hash: hash.to_string(),
                tags: parse_tags(u.get("tags").unwrap_or(&Value::Null))?,
            },
            limits,
        ));
    }
    let mut vhost_limits = Vec::new();
    for p in section(doc, "parameters")? {
        if get_str(p, "component")? != Some("vhost-limits") {
            continue;
        }
        let vh = object_vhost(p, scope)?;
        let limits = check_limits(
            &VHOST_LIMITS,
            "limits",
            p.get("value").unwrap_or(&Value::Null),
        )
        .map_err(|e| ApiError::bad_request(format!("Validation failed\n\n{e}\n")))?;
        vhost_limits.push((vh.to_string(), limits));
    }
    let mut new_perms = Vec::new();
    for p in perms {
        new_perms.push(build_permission(
            text(p, "user", "permission")?,
            object_vhost(p, scope)?,
            p,
        )?);
    }
    let mut new_topics = Vec::new();
    for t in topics {
        new_topics.push(build_topic_permission(
            text(t, "user", "topic permission")?,
            object_vhost(t, scope)?,
            t,
        )?);
    }
    // Permissions name users of this file or existing ones: checked before anything changes.
    let user_known = |name: &str| {
        new_users.iter().any(|(u, _)| u.name == name) || st.broker.access().user(name).is_some()
    };
    if let Some(p) = new_perms.iter().find(|p| !user_known(&p.user)) {
        return Err(ApiError::bad_request(format!("no_such_user: {}", p.user)));
    }
    if let Some(t) = new_topics.iter().find(|t| !user_known(&t.user)) {
        return Err(ApiError::bad_request(format!("no_such_user: {}", t.user)));
    }
    for item in exchanges
        .iter()
        .chain(queues)
        .chain(bindings)
        .chain(perms)
        .chain(topics)
        .chain(section(doc, "parameters")?)
    {
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
    let access = st.broker.access();
    for (u, limits) in new_users {
        let name = u.name.clone();
        access.put_user(u)?;
        if let Some(l) = limits {
            access.set_user_limits(&name, l)?;
        }
    }
    for v in new_vhosts {
        st.broker.put_vhost(v)?;
    }
    for (vh, limits) in vhost_limits {
        access.set_vhost_limits(&vh, limits)?;
    }
    for p in new_perms {
        access.put_permission(p)?;
    }
    for t in new_topics {
        access.put_topic_permission(t)?;
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
    let ignored: Vec<&str> = ["global_parameters"]
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
