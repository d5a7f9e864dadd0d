//! JSON in and out: AMQP field tables and message properties as RabbitMQ's management API shows
//! them, and the request extractors that turn malformed input into RabbitMQ's 400 bodies.
//!
//! RabbitMQ's own tools send booleans and numbers as strings (`"durable": "true"`,
//! `"count": "5"`), so request fields go through the lenient readers here.

use super::error::{ApiError, ApiResult};
use crate::protocol::properties::BasicProperties;
use crate::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::collections::HashMap;

/// A field-table value as JSON.
pub(crate) fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => (*n).into(),
        FieldValue::U8(n) => (*n).into(),
        FieldValue::I16(n) => (*n).into(),
        FieldValue::U16(n) => (*n).into(),
        FieldValue::I32(n) => (*n).into(),
        FieldValue::U32(n) => (*n).into(),
        FieldValue::I64(n) => (*n).into(),
        FieldValue::Timestamp(n) => (*n).into(),
        FieldValue::F32(f) => float(f64::from(*f)),
        FieldValue::F64(f) => float(*f),
        FieldValue::Decimal(d) => float(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        FieldValue::LongStr(s) => Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        FieldValue::ByteArray(b) => Value::String(String::from_utf8_lossy(b).into_owned()),
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Table(t) => table_to_json(t),
        FieldValue::Void => Value::Null,
    }
}

fn float(f: f64) -> Value {
    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// A field table as a JSON object.
pub(crate) fn table_to_json(t: &FieldTable) -> Value {
    Value::Object(
        t.iter()
            .map(|(k, v)| (k.to_string(), value_to_json(v)))
            .collect(),
    )
}

/// A JSON value as a field-table value: integers become `l` (signed 64-bit), as RabbitMQ's
/// management plugin encodes them.
pub(crate) fn json_to_value(v: &Value) -> ApiResult<FieldValue> {
    Ok(match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => FieldValue::I64(i),
            (None, Some(f)) => FieldValue::F64(f),
            (None, None) => return Err(ApiError::bad_request(format!("bad number {n}"))),
        },
        Value::String(s) => FieldValue::LongStr(LongStr::from(s.as_str())),
        Value::Array(items) => {
            FieldValue::Array(items.iter().map(json_to_value).collect::<ApiResult<_>>()?)
        }
        Value::Object(_) => FieldValue::Table(json_to_table(v)?),
    })
}

/// A JSON object (or null) as a field table; keys must fit a short string.
pub(crate) fn json_to_table(v: &Value) -> ApiResult<FieldTable> {
    let mut t = FieldTable::new();
    match v {
        Value::Null => {}
        Value::Object(m) => {
            for (k, v) in m {
                let key = ShortStr::try_from(k.as_str())
                    .map_err(|e| ApiError::bad_request(format!("argument '{k}': {e}")))?;
                t.insert(key, json_to_value(v)?);
            }
        }
        // RabbitMQ's UI sends "" for "no arguments".
        Value::String(s) if s.is_empty() => {}
        other => {
            return Err(ApiError::bad_request(format!(
                "arguments must be an object, got {other}"
            )));
        }
    }
    Ok(t)
}

/// A boolean field: JSON true/false or the strings "true"/"false"; absent is `default`.
pub(crate) fn get_bool(body: &Value, key: &str, default: bool) -> ApiResult<bool> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) if s == "true" => Ok(true),
        Some(Value::String(s)) if s == "false" => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a boolean, got {other}"
        ))),
    }
}

/// A non-negative integer field, also as a string; absent is `None`.
pub(crate) fn get_u64(body: &Value, key: &str) -> ApiResult<Option<u64>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(Value::String(s)) if s.parse::<u64>().is_ok() => Ok(s.parse().ok()),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a non-negative integer, got {other}"
        ))),
    }
}

/// A string field; absent is `None`.
pub(crate) fn get_str<'a>(body: &'a Value, key: &str) -> ApiResult<Option<&'a str>> {
    match body.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string, got {other}"
        ))),
    }
}

/// Fails with RabbitMQ's `key_missing` list when any of `keys` is absent.
pub(crate) fn require_keys(body: &Value, keys: &[&str]) -> ApiResult<()> {
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|k| body.get(k).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ApiError::keys_missing(&missing))
    }
}

fn short(key: &str, v: &Value) -> ApiResult<ShortStr> {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    ShortStr::try_from(s).map_err(|e| ApiError::bad_request(format!("property {key}: {e}")))
}

fn small(key: &str, v: &Value) -> ApiResult<u8> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| u8::try_from(n).ok())
        .ok_or_else(|| ApiError::bad_request(format!("property {key} must be 0-255, got {v}")))
}

/// Message properties from the `properties` object of a publish request. Unknown keys are
/// refused, as RabbitMQ does.
pub(crate) fn json_to_properties(v: &Value) -> ApiResult<BasicProperties> {
    let mut p = BasicProperties::default();
    let map = match v {
        Value::Object(m) => m,
        Value::Null => return Ok(p),
        Value::String(s) if s.is_empty() => return Ok(p),
        other => {
            return Err(ApiError::bad_request(format!(
                "properties must be an object, got {other}"
            )));
        }
    };
    for (k, v) in map {
        match k.as_str() {
            "content_type" => p.content_type = Some(short(k, v)?),
            "content_encoding" => p.content_encoding = Some(short(k, v)?),
            "headers" => p.headers = Some(json_to_table(v)?),
            "delivery_mode" => p.delivery_mode = Some(small(k, v)?),
            "priority" => p.priority = Some(small(k, v)?),
            "correlation_id" => p.correlation_id = Some(short(k, v)?),
            "reply_to" => p.reply_to = Some(short(k, v)?),
            "expiration" => p.expiration = Some(short(k, v)?),
            "message_id" => p.message_id = Some(short(k, v)?),
            "timestamp" => {
                p.timestamp = Some(
                    match v {
                        Value::Number(n) => n.as_u64(),
                        Value::String(s) => s.parse().ok(),
                        _ => None,
                    }
                    .ok_or_else(|| {
                        ApiError::bad_request("property timestamp must be an integer")
                    })?,
                );
            }
            "type" => p.kind = Some(short(k, v)?),
            "user_id" => p.user_id = Some(short(k, v)?),
            "app_id" => p.app_id = Some(short(k, v)?),
            "cluster_id" => p.cluster_id = Some(short(k, v)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid message property '{other}'"
                )));
            }
        }
    }
    Ok(p)
}

/// Message properties as RabbitMQ's get shows them: only the ones that are set.
pub(crate) fn properties_to_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    let s = |x: &Option<ShortStr>| x.as_ref().map(|s| Value::String(s.to_string()));
    put("content_type", s(&p.content_type));
    put("content_encoding", s(&p.content_encoding));
    put("headers", p.headers.as_ref().map(table_to_json));
    put("delivery_mode", p.delivery_mode.map(Value::from));
    put("priority", p.priority.map(Value::from));
    put("correlation_id", s(&p.correlation_id));
    put("reply_to", s(&p.reply_to));
    put("expiration", s(&p.expiration));
    put("message_id", s(&p.message_id));
    put("timestamp", p.timestamp.map(Value::from));
    put("type", s(&p.kind));
    put("user_id", s(&p.user_id));
    put("app_id", s(&p.app_id));
    put("cluster_id", s(&p.cluster_id));
    Value::Object(m)
}

/// A JSON request body: malformed JSON is RabbitMQ's 400 `not_json`; an empty body is `{}`.
#[derive(Debug)]
pub(crate) struct JsonBody(pub(crate) Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                // RabbitMQ 3.10 answers 400 with this reason; 413 says what happened.
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "bad_request",
                    "Exceeded HTTP request body size limit",
                )
            } else {
                ApiError::bad_request(e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonBody(Value::Object(Map::new())));
        }
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(v @ Value::Object(_)) => Ok(JsonBody(v)),
            Ok(_) | Err(_) => Err(ApiError::bad_request("not_json")),
        }
    }
}

/// Path parameters, percent-decoded (`%2F` is the vhost `/`); undecodable ones are a 404.
#[derive(Debug)]
pub(crate) struct PathArgs<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathArgs(p.0))
            .map_err(|_| ApiError::not_found())
    }
}

/// The query string as a map; a malformed one is a 400.
#[derive(Debug, Default)]
pub(crate) struct QueryArgs(pub(crate) HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryArgs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map(|q| QueryArgs(q.0))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_round_trip_through_json() {
        let v = json!({"x-max-length": 10, "s": "text", "b": true, "f": 1.5,
                       "nested": {"a": [1, "two", null]}});
        let t = json_to_table(&v).expect("table");
        assert_eq!(table_to_json(&t), v);
    }

    #[test]
    fn amqp_values_show_as_rabbitmq_does() {
        assert_eq!(value_to_json(&FieldValue::U8(3)), json!(3));
        assert_eq!(value_to_json(&FieldValue::F64(f64::NAN)), Value::Null);
        assert_eq!(
            value_to_json(&FieldValue::Decimal(crate::protocol::types::Decimal {
                scale: 2,
                value: 150
            })),
            json!(1.5)
        );
    }

    #[test]
    fn lenient_fields_accept_strings() {
        let b = json!({"durable": "true", "count": "5", "bad": 3});
        assert!(get_bool(&b, "durable", false).expect("bool"));
        assert!(!get_bool(&b, "absent", false).expect("default"));
        assert!(get_bool(&b, "bad", false).is_err());
        assert_eq!(get_u64(&b, "count").expect("n"), Some(5));
        assert!(get_u64(&b, "bad").is_ok());
        assert!(get_u64(&json!({"n": -1}), "n").is_err());
    }

    #[test]
    fn properties_round_trip_and_refuse_unknown_keys() {
        let v = json!({"delivery_mode": 2, "headers": {"h": 1}, "type": "t", "timestamp": 7,
                       "content_type": "text/plain"});
        let p = json_to_properties(&v).expect("props");
        assert!(p.is_persistent());
        assert_eq!(properties_to_json(&p), v);
        assert!(json_to_properties(&json!({"bogus": 1})).is_err());
        assert!(json_to_properties(&json!({"priority": 300})).is_err());
    }

    #[test]
    fn missing_keys_are_listed() {
        let e = require_keys(&json!({"configure": ".*"}), &["configure", "write", "read"])
            .expect_err("missing");
        assert_eq!(e.reason, "[{key_missing,write},{key_missing,read}]");
    }
}
