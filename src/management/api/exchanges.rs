//! Exchanges: listing, declare, delete and publish.

use super::{ApiState, authorize, exchange_name, usable_vhost, visible_vhost, visible_vhosts};
use crate::broker::access::{Perm, Resource};
use crate::broker::exchange::Exchange;
use crate::broker::vhost::ExchangeSpec;
use crate::broker::{BrokerError, PublishRequest, VHost};
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{
    JsonBody, PathArgs, QueryArgs, get_bool, get_str, json_to_properties, json_to_table,
    require_keys, table_to_json,
};
use crate::management::listing::ListQuery;
use crate::protocol::properties::Properties;
use crate::protocol::types::ShortStr;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine as _;
use serde_json::{Value, json};

/// The exchange types that can be declared.
const TYPES: [&str; 5] = ["direct", "fanout", "topic", "headers", "x-delayed-message"];

pub(crate) fn exchange_dto(vhost: &str, x: &Exchange) -> dto::Exchange {
    dto::Exchange {
        name: x.name.to_string(),
        vhost: vhost.to_string(),
        kind: x.type_name(),
        durable: x.durable,
        auto_delete: x.auto_delete,
        internal: x.internal,
        arguments: table_to_json(&x.arguments),
        user_who_performed_action: "rmq-internal",
        policy: None,
        messages_delayed: None,
    }
}

/// [`exchange_dto`] with the live figures a listing shows (`messages_delayed`).
fn listed(vh: &VHost, x: &Exchange) -> Value {
    let mut d = exchange_dto(&vh.name, x);
    if x.delay.is_some() {
        d.messages_delayed = Some(vh.shared().delayed.count(&vh.name, &x.name));
    }
    to_value(&d)
}

fn vhost_items(vh: &VHost) -> Vec<Value> {
    vh.exchanges().iter().map(|x| listed(vh, x)).collect()
}

/// GET /api/exchanges.
pub(crate) async fn list(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let items = visible_vhosts(&st, &user)
        .iter()
        .flat_map(|vh| vhost_items(vh))
        .collect();
    Ok(Json(list.respond(items, &["vhost", "name"])?))
}

/// GET /api/exchanges/{vhost}.
pub(crate) async fn list_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    Ok(Json(list.respond(vhost_items(&vh), &["vhost", "name"])?))
}

/// GET /api/exchanges/{vhost}/{name}.
pub(crate) async fn show(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let x = vh
        .exchange(exchange_name(&name))
        .map_err(|_| ApiError::not_found())?;
    Ok(Json(list.project_one(listed(&vh, &x))))
}

/// PUT /api/exchanges/{vhost}/{name}: 201 when created, 204 when an equivalent exchange
/// existed, 400 when it differs or the type is unknown, 401 for reserved names.
pub(crate) async fn declare(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    let name = exchange_name(&name);
    if name.is_empty() || name.starts_with("amq.") {
        return Err(ApiError::access_refused());
    }
    if ShortStr::try_from(name).is_err() {
        return Err(ApiError::bad_request("exchange name longer than 255 bytes"));
    }
    let kind = get_str(&body, "type")?.unwrap_or("direct");
    if !TYPES.contains(&kind) {
        return Err(ApiError::bad_request(format!(
            "unknown exchange type '{kind}'"
        )));
    }
    let spec = ExchangeSpec {
        name: name.to_string(),
        kind: kind.to_string(),
        durable: get_bool(&body, "durable", false)?,
        auto_delete: get_bool(&body, "auto_delete", false)?,
        internal: get_bool(&body, "internal", false)?,
        arguments: json_to_table(body.get("arguments").unwrap_or(&Value::Null))?,
    };
    user.grant(&st, &vhost)
        .check_exchange_declare(&vh, name, &spec.arguments)
        .map_err(|_| ApiError::access_refused())?;
    let existed = vh.exchange(name).is_ok();
    vh.declare_exchange(&spec, false)?;
    Ok(if existed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::CREATED
    })
}

/// DELETE /api/exchanges/{vhost}/{name}[?if-unused=true].
pub(crate) async fn delete(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<StatusCode> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    let name = exchange_name(&name);
    if name.is_empty() || name.starts_with("amq.") {
        return Err(ApiError::access_refused());
    }
    vh.exchange(name).map_err(|_| ApiError::not_found())?;
    authorize(
        &st,
        &user,
        &vhost,
        Perm::Configure,
        Resource::Exchange(name),
    )?;
    let if_unused = q.get("if-unused").is_some_and(|v| v == "true");
    vh.delete_exchange(name, if_unused)?;
    Ok(StatusCode::NO_CONTENT)
}

/// POST /api/exchanges/{vhost}/{name}/publish: `{"routed": bool}`. A missing or internal
/// exchange is a 400 carrying the AMQP error, as RabbitMQ answers.
pub(crate) async fn publish(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Value>> {
    let vh = usable_vhost(&st, &user, &vhost)?;
    let name = exchange_name(&name);
    // Write (and topic) rights are checked by the publish itself: a refusal is RabbitMQ's 400
    // carrying the AMQP error (access-api.json, monitoring_publish_refused_by_write).
    let grant = user.grant(&st, &vhost);
    require_keys(
        &body,
        &["properties", "routing_key", "payload", "payload_encoding"],
    )?;
    let routing_key = get_str(&body, "routing_key")?.unwrap_or("");
    let routing_key = ShortStr::try_from(routing_key)
        .map_err(|e| ApiError::bad_request(format!("routing_key: {e}")))?;
    let payload = get_str(&body, "payload")?.unwrap_or("");
    let payload = match get_str(&body, "payload_encoding")? {
        Some("string") => bytes::Bytes::copy_from_slice(payload.as_bytes()),
        Some("base64") => base64::engine::general_purpose::STANDARD
            .decode(payload)
            .map(bytes::Bytes::from)
            .map_err(|_| ApiError::bad_request("payload is not valid base64"))?,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid payload_encoding {}",
                other.unwrap_or("")
            )));
        }
    };
    if payload.len() as u64 > u64::from(st.broker.limits().max_message_size) {
        return Err(ApiError::bad_request(format!(
            "message size {} is larger than the maximum {}",
            payload.len(),
            st.broker.limits().max_message_size
        )));
    }
    // Encoded once here, as a client's publish arrives: the message carries the wire bytes,
    // checked as a client's would be (headers nested too deep are refused).
    let properties = json_to_properties(body.get("properties").unwrap_or(&Value::Null))?;
    let properties = Properties::encode(&properties)
        .map_err(|e| ApiError::bad_request(format!("properties: {e}")))?;
    let req = PublishRequest {
        exchange: ShortStr::try_from(name).unwrap_or_default(),
        routing_key,
        properties,
        body: payload,
        user: &user.name,
        grant: &grant,
        awaited: None,
    };
    let outcome = vh.publish(req, crate::clock::now()).map_err(|e| {
        let code = e.reply_code();
        match e {
            BrokerError::Store(_) => ApiError::from(e),
            e => ApiError::bad_request(format!("{} {} - {e}", code.code(), code.name())),
        }
    })?;
    if outcome.flush > 0 {
        st.broker.commit().request_flush();
    }
    Ok(Json(json!({ "routed": outcome.routed })))
}
