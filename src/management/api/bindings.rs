//! Bindings: listings, create, show and delete by `properties_key`.
//!
//! A binding is named in URLs by its `properties_key`: the routing key, URL-quoted, and when
//! the binding has arguments, `~` and a short hash of them (RabbitMQ hashes with Erlang's
//! `phash2`; clients treat the key as opaque, so ours is an FNV-1a hash of the AMQP encoding).
//! The default exchange's implicit bindings (one per queue) are listed as RabbitMQ lists them.

use super::queues::owner_of;
use super::{ApiState, exchange_name, usable_vhost, visible_vhost, visible_vhosts};
use crate::broker::VHost;
use crate::management::auth::AuthUser;
use crate::management::dto::{self, to_value};
use crate::management::error::{ApiError, ApiResult};
use crate::management::json::{
    JsonBody, PathArgs, QueryArgs, get_str, json_to_table, table_to_json,
};
use crate::management::listing::ListQuery;
use crate::protocol::types::{FieldTable, encode_table};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::Value;

/// RabbitMQ's `quote_plus`: unreserved characters stay, space is `+`, the rest (including
/// `~`, which separates the parts of a properties key) is `%XX`.
pub(crate) fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => out.push(char::from(b)),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Percent-encodes one path segment (for the `Location` header).
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The `properties_key` of a binding.
pub(crate) fn properties_key(routing_key: &str, args: &FieldTable) -> String {
    if args.is_empty() {
        return if routing_key.is_empty() {
            "~".into()
        } else {
            quote_plus(routing_key)
        };
    }
    let mut buf = bytes::BytesMut::new();
    encode_table(args, &mut buf);
    // FNV-1a, 32 bits.
    let hash = buf.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(hash.to_be_bytes());
    format!("{}~{tag}", quote_plus(routing_key))
}

/// Every binding of a vhost: the default exchange's implicit ones first.
fn vhost_bindings(vh: &VHost) -> Vec<dto::Binding> {
    let vhost = vh.name.to_string();
    let mut queues = vh.queues();
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<dto::Binding> = queues
        .iter()
        .map(|q| dto::Binding {
            source: String::new(),
            vhost: vhost.clone(),
            destination: q.name.to_string(),
            destination_type: "queue",
            routing_key: q.name.to_string(),
            arguments: Value::Object(Default::default()),
            properties_key: properties_key(&q.name, &FieldTable::new()),
        })
        .collect();
    let mut exchanges = vh.exchanges();
    exchanges.sort_by(|a, b| a.name.cmp(&b.name));
    for x in exchanges {
        for b in x.bindings() {
            out.push(dto::Binding {
                source: x.name.to_string(),
                vhost: vhost.clone(),
                destination: b.destination.name().to_string(),
                destination_type: if b.destination.is_exchange() {
                    "exchange"
                } else {
                    "queue"
                },
                routing_key: b.routing_key.to_string(),
                arguments: table_to_json(&b.arguments),
                properties_key: properties_key(&b.routing_key, &b.arguments),
            });
        }
    }
    out
}

fn respond(list: &ListQuery, items: impl Iterator<Item = dto::Binding>) -> ApiResult<Json<Value>> {
    let items = items.map(|b| to_value(&b)).collect();
    // Bindings keep their natural order unless a sort is asked for.
    Ok(Json(list.respond(items, &[])?))
}

/// GET /api/bindings.
pub(crate) async fn list(
    State(st): State<ApiState>,
    user: AuthUser,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vhosts = visible_vhosts(&st, &user);
    respond(&list, vhosts.iter().flat_map(|vh| vhost_bindings(vh)))
}

/// GET /api/bindings/{vhost}.
pub(crate) async fn list_vhost(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs(vhost): PathArgs<String>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    respond(&list, vhost_bindings(&vh).into_iter())
}

/// GET /api/exchanges/{vhost}/{name}/bindings/source.
pub(crate) async fn source(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let name = exchange_name(&name).to_string();
    vh.exchange(&name).map_err(|_| ApiError::not_found())?;
    respond(
        &list,
        vhost_bindings(&vh).into_iter().filter(|b| b.source == name),
    )
}

/// GET /api/exchanges/{vhost}/{name}/bindings/destination.
pub(crate) async fn destination(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let name = exchange_name(&name).to_string();
    vh.exchange(&name).map_err(|_| ApiError::not_found())?;
    respond(
        &list,
        vhost_bindings(&vh)
            .into_iter()
            .filter(|b| b.destination_type == "exchange" && b.destination == name),
    )
}

/// GET /api/queues/{vhost}/{name}/bindings.
pub(crate) async fn of_queue(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, name)): PathArgs<(String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    vh.queue(&name).map_err(|_| ApiError::not_found())?;
    respond(
        &list,
        vhost_bindings(&vh)
            .into_iter()
            .filter(|b| b.destination_type == "queue" && b.destination == name),
    )
}

/// `q` or `e` in binding paths.
fn dest_is_exchange(kind: &str) -> ApiResult<bool> {
    match kind {
        "q" => Ok(false),
        "e" => Ok(true),
        _ => Err(ApiError::not_found()),
    }
}

fn between_list(
    vh: &VHost,
    source: &str,
    is_exchange: bool,
    dest: &str,
) -> impl Iterator<Item = dto::Binding> {
    let ty = if is_exchange { "exchange" } else { "queue" };
    let (source, dest) = (source.to_string(), dest.to_string());
    vhost_bindings(vh)
        .into_iter()
        .filter(move |b| b.source == source && b.destination_type == ty && b.destination == dest)
}

/// GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}.
pub(crate) async fn between(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, source, kind, dest)): PathArgs<(String, String, String, String)>,
    QueryArgs(q): QueryArgs,
) -> ApiResult<Json<Value>> {
    let list = ListQuery::parse(&q)?;
    let is_exchange = dest_is_exchange(&kind)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let dest = if is_exchange {
        exchange_name(&dest)
    } else {
        &dest
    };
    respond(
        &list,
        between_list(&vh, exchange_name(&source), is_exchange, dest),
    )
}

/// POST /api/bindings/{vhost}/e/{source}/{q|e}/{dest}: 201 with the new binding's `Location`.
pub(crate) async fn create(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, source, kind, dest)): PathArgs<(String, String, String, String)>,
    JsonBody(body): JsonBody,
) -> ApiResult<Response> {
    let is_exchange = dest_is_exchange(&kind)?;
    let vh = usable_vhost(&st, &user, &vhost)?;
    let source = exchange_name(&source);
    let dest = if is_exchange {
        exchange_name(&dest)
    } else {
        &dest
    };
    let key = get_str(&body, "routing_key")?.unwrap_or("");
    if key.len() > 255 {
        return Err(ApiError::bad_request("routing_key longer than 255 bytes"));
    }
    let args = json_to_table(body.get("arguments").unwrap_or(&Value::Null))?;
    user.grant(&st, &vhost)
        .check_bind(&vh, source, dest, is_exchange, key)?;
    let conn = if is_exchange {
        crate::broker::ConnId(0)
    } else {
        owner_of(&vh, dest)
    };
    vh.bind(source, dest, is_exchange, key, &args, conn)?;
    let location = format!(
        "{}/{}",
        encode_segment(dest),
        encode_segment(&properties_key(key, &args))
    );
    let mut resp = StatusCode::CREATED.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// Finds the binding a `properties_key` path segment names. The segment arrives decoded once;
/// clients send the key either as listed or URL-encoded once more, so both forms match.
fn find(
    vh: &VHost,
    source: &str,
    is_exchange: bool,
    dest: &str,
    props: &str,
) -> ApiResult<dto::Binding> {
    between_list(vh, source, is_exchange, dest)
        .find(|b| b.properties_key == props || percent_decode(&b.properties_key) == props)
        .ok_or_else(ApiError::not_found)
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| char::from(c).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// GET /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}.
pub(crate) async fn show(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, source, kind, dest, props)): PathArgs<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<Json<dto::Binding>> {
    let is_exchange = dest_is_exchange(&kind)?;
    let vh = visible_vhost(&st, &user, &vhost)?;
    let dest = if is_exchange {
        exchange_name(&dest)
    } else {
        &dest
    };
    Ok(Json(find(
        &vh,
        exchange_name(&source),
        is_exchange,
        dest,
        &props,
    )?))
}

/// DELETE /api/bindings/{vhost}/e/{source}/{q|e}/{dest}/{props}.
pub(crate) async fn delete(
    State(st): State<ApiState>,
    user: AuthUser,
    PathArgs((vhost, source, kind, dest, props)): PathArgs<(
        String,
        String,
        String,
        String,
        String,
    )>,
) -> ApiResult<StatusCode> {
    let is_exchange = dest_is_exchange(&kind)?;
    let vh = usable_vhost(&st, &user, &vhost)?;
    let source = exchange_name(&source);
    let dest = if is_exchange {
        exchange_name(&dest)
    } else {
        &dest
    };
    let b = find(&vh, source, is_exchange, dest, &props)?;
    if source.is_empty() {
        return Err(ApiError::access_refused());
    }
    user.grant(&st, &vhost)
        .check_bind(&vh, source, dest, is_exchange, &b.routing_key)?;
    // The binding's own arguments, in their AMQP types, from the exchange.
    let x = vh.exchange(source).map_err(|_| ApiError::not_found())?;
    let args = x
        .bindings()
        .into_iter()
        .find(|xb| {
            xb.destination.is_exchange() == is_exchange
                && xb.destination.name() == dest
                && properties_key(&xb.routing_key, &xb.arguments) == b.properties_key
        })
        .map(|xb| xb.arguments)
        .ok_or_else(ApiError::not_found)?;
    let conn = if is_exchange {
        crate::broker::ConnId(0)
    } else {
        owner_of(&vh, dest)
    };
    vh.unbind(source, dest, is_exchange, &b.routing_key, &args, conn)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_keys_match_rabbitmq_for_plain_keys() {
        assert_eq!(properties_key("", &FieldTable::new()), "~");
        assert_eq!(properties_key("a.#", &FieldTable::new()), "a.%23");
        assert_eq!(properties_key("a b~c", &FieldTable::new()), "a+b%7Ec");
        let mut t = FieldTable::new();
        t.insert(
            crate::protocol::types::ShortStr::from_static("k"),
            crate::protocol::types::FieldValue::Bool(true),
        );
        let k = properties_key("a.#", &t);
        assert!(
            k.starts_with("a.%23~") && k.len() == "a.%23~".len() + 6,
            "{k}"
        );
    }

    #[test]
    fn percent_decoding_is_total() {
        assert_eq!(percent_decode("a.%23~x"), "a.#~x");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
