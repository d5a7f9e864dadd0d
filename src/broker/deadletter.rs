//! The dead-lettered copy of a message, as RabbitMQ 3.10's `rabbit_dead_letter` makes it, and
//! its cycle rule. Pure functions over message values; routing and storing the copy is the
//! vhost's (`vhost::ops`).
//!
//! The copy goes to the dead-letter exchange with the dead-letter routing key if the queue has
//! one (and then without its `CC` header), else with the message's own keys (its routing key
//! and its `CC`/`BCC` keys; `BCC` never shows in the copy's headers or its `x-death`). Its `expiration` is removed (kept as `original-expiration` in the
//! death record). The `x-death` header is an array of tables, newest first, one per
//! (queue, reason): `count`, `reason`, `queue`, `time`, `exchange`, `routing-keys` and, when
//! the message had one, `original-expiration`; a repeat death in the same queue for the same
//! reason increments `count` and moves that table to the front. The first death also sets
//! `x-first-death-reason`, `-queue` and `-exchange`; every death sets `x-last-death-reason`,
//! `-queue` and `-exchange` (as RabbitMQ 3.13 does; 3.10 writes only the first-death ones).
//! Headers tables come back sorted by key, as RabbitMQ's `set_table_value` leaves them.

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};

use super::message::Message;
use super::queue::{DeadLetter, Reason};
use super::time::Now;

fn key(s: &'static str) -> ShortStr {
    ShortStr::from_static(s)
}

fn text(s: &str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(s))
}

/// The keys of a routing header (`CC` or `BCC`): long strings in an array; other value types
/// are ignored.
pub fn header_routes(headers: &FieldTable, name: &str) -> Vec<String> {
    match headers.get(name) {
        Some(FieldValue::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn sort(t: &mut FieldTable) {
    t.0.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
}

/// The dead-lettered copy of `dl`'s message at `now`, and the routing keys to route it with.
pub fn dead_letter_copy(dl: &DeadLetter, now: Now) -> (Message, Vec<String>) {
    let m = &dl.message.msg;
    let mut props = m.properties.decode();
    let mut headers = props.headers.take().unwrap_or_default();
    // RabbitMQ strips BCC when a message is published but keeps its keys with the message:
    // they route the copy, and appear neither in its headers nor in x-death.
    let bcc = header_routes(&headers, "BCC");
    headers.remove("BCC");
    let mut own_keys = vec![m.routing_key.to_string()];
    own_keys.extend(header_routes(&headers, "CC"));
    let mut info = vec![
        (key("reason"), text(dl.reason.as_str())),
        (key("queue"), text(&dl.source.name)),
        (key("time"), FieldValue::Timestamp(now.unix_secs())),
        (key("exchange"), text(m.exchange.as_str())),
        (
            key("routing-keys"),
            FieldValue::Array(own_keys.iter().map(|k| text(k)).collect()),
        ),
    ];
    if let Some(exp) = props.expiration.take() {
        info.push((key("original-expiration"), text(exp.as_str())));
    }
    update_x_death(
        &mut headers,
        info,
        &dl.source.name,
        dl.reason,
        m.exchange.as_str(),
    );
    let keys = match &dl.routing_key {
        Some(k) => {
            headers.remove("CC");
            vec![k.to_string()]
        }
        None => own_keys.into_iter().chain(bcc).collect(),
    };
    props.headers = Some(headers);
    let msg = Message {
        exchange: ShortStr::try_from(&*dl.exchange).unwrap_or_default(),
        routing_key: keys
            .first()
            .and_then(|k| ShortStr::try_from(k.as_str()).ok())
            .unwrap_or_default(),
        properties: Properties::from(&props),
        body: m.body.clone(),
        awaited: None,
    };
    (msg, keys)
}

/// Adds one death to the headers (RabbitMQ's `update_x_death_header`).
fn update_x_death(
    headers: &mut FieldTable,
    info: Vec<(ShortStr, FieldValue)>,
    queue: &str,
    reason: Reason,
    exchange: &str,
) {
    let deaths = match headers.get("x-death") {
        Some(FieldValue::Array(tables)) => Some(tables.clone()),
        _ => None,
    };
    let entry_of = |v: &FieldValue| match v {
        FieldValue::Table(t) => Some(t.clone()),
        _ => None,
    };
    let new_deaths = match deaths {
        None => {
            for (k, v) in [
                ("x-first-death-reason", reason.as_str()),
                ("x-first-death-queue", queue),
                ("x-first-death-exchange", exchange),
            ] {
                headers.insert(ShortStr::try_from(k).unwrap_or_default(), text(v));
            }
            // The first table keeps the order it was built in (RabbitMQ does not sort it).
            let mut first = vec![(key("count"), FieldValue::I64(1))];
            first.extend(info);
            vec![FieldValue::Table(FieldTable(first))]
        }
        Some(tables) => {
            let grouped = group_by_queue_and_reason(tables.iter().filter_map(entry_of).collect());
            let (matches, others): (Vec<FieldTable>, Vec<FieldTable>) = grouped
                .into_iter()
                .partition(|t| same_event(t, queue, reason.as_str()));
            let mut entry = match matches.into_iter().next() {
                Some(mut t) => {
                    let n = t.get("count").and_then(FieldValue::as_i64).unwrap_or(0);
                    t.insert(key("count"), FieldValue::I64(n + 1));
                    t
                }
                None => {
                    let mut t = vec![(key("count"), FieldValue::I64(1))];
                    t.extend(info);
                    FieldTable(t)
                }
            };
            sort(&mut entry);
            std::iter::once(entry)
                .chain(others)
                .map(FieldValue::Table)
                .collect()
        }
    };
    headers.insert(key("x-death"), FieldValue::Array(new_deaths));
    for (k, v) in [
        ("x-last-death-reason", reason.as_str()),
        ("x-last-death-queue", queue),
        ("x-last-death-exchange", exchange),
    ] {
        headers.insert(ShortStr::try_from(k).unwrap_or_default(), text(v));
    }
    sort(headers);
}

fn same_event(t: &FieldTable, queue: &str, reason: &str) -> bool {
    t.get("queue").and_then(FieldValue::as_str) == Some(queue)
        && t.get("reason").and_then(FieldValue::as_str) == Some(reason)
}

/// Merges tables of the same (queue, reason), keeping the first (RabbitMQ's
/// `group_by_queue_and_reason`, for headers written before RabbitMQ grouped them).
fn group_by_queue_and_reason(tables: Vec<FieldTable>) -> Vec<FieldTable> {
    if tables.len() < 2 {
        return tables;
    }
    let mut out: Vec<FieldTable> = Vec::new();
    for t in &tables {
        let q = t.get("queue").and_then(FieldValue::as_str).unwrap_or("");
        let r = t.get("reason").and_then(FieldValue::as_str).unwrap_or("");
        if out.iter().any(|o| same_event(o, q, r)) {
            continue;
        }
        let n = tables.iter().filter(|o| same_event(o, q, r)).count();
        let mut first = t.clone();
        if first.get("count").is_none() {
            first.insert(key("count"), FieldValue::I64(n as i64));
        }
        out.push(first);
    }
    out
}

/// True when routing the copy to queue `target` would close a cycle that no client took part
/// in (RabbitMQ's `is_cycle`): the copy already died in `target`, and no death since then,
/// that one included, was a rejection. Rejected messages never count as cycling.
pub fn is_cycle(copy: &Message, reason: Reason, target: &str) -> bool {
    if reason == Reason::Rejected {
        return false;
    }
    let Some(headers) = copy.properties.headers() else {
        return false;
    };
    let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
        return false;
    };
    for d in deaths {
        let FieldValue::Table(t) = d else {
            // Something a client put there: not a fully automatic cycle.
            return false;
        };
        if t.get("reason").and_then(FieldValue::as_str) == Some("rejected") {
            return false;
        }
        if t.get("queue").and_then(FieldValue::as_str) == Some(target) {
            return true;
        }
    }
    false
}
