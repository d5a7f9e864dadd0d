//! Queue arguments (`x-…` keys of queue.declare) and the settings a queue runs with.
//!
//! Owns RabbitMQ 3.10's rules for them (`rabbit_amqqueue:declare_args/0` and
//! `rabbit_misc:assert_args_equivalence/4`): which keys are checked, in which order, with which
//! error term in the 406 text; which keys must be equal on redeclare; and how a key set both as
//! an argument and by a policy or operator policy resolves (`args_policy_lookup`: the lower
//! number wins for limits and TTLs, the argument wins for the dead-letter exchange, its routing
//! key and the overflow mode). Unknown `x-` keys are kept and ignored, as RabbitMQ does.
//!
//! Imports only protocol value types; policies arrive already parsed as [`FeatureValues`].

use crate::protocol::types::{FieldTable, FieldValue};
use std::sync::Arc;

use crate::broker::error::{BrokerError, BrokerResult};

/// RabbitMQ 3.10's largest TTL and expiry, in milliseconds (ten years; recorded).
pub const MAX_EXPIRY: i64 = 315_360_000_000;
/// RabbitMQ's largest `x-max-priority` (`?MAX_SUPPORTED_PRIORITY`).
const MAX_PRIORITY: i64 = 255;

/// What a full queue does with a new message (`x-overflow`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop (or dead-letter) the oldest messages: the default.
    #[default]
    DropHead,
    /// Refuse the new message: basic.nack to a confirming publisher.
    RejectPublish,
    /// Refuse it and dead-letter it.
    RejectPublishDlx,
}

impl Overflow {
    /// From the argument or policy value.
    pub fn parse(s: &str) -> Option<Overflow> {
        Some(match s {
            "drop-head" => Overflow::DropHead,
            "reject-publish" => Overflow::RejectPublish,
            "reject-publish-dlx" => Overflow::RejectPublishDlx,
            _ => return None,
        })
    }

    /// The value's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Overflow::DropHead => "drop-head",
            Overflow::RejectPublish => "reject-publish",
            Overflow::RejectPublishDlx => "reject-publish-dlx",
        }
    }
}

/// The queue features this broker implements, as one source (the declare arguments, a policy,
/// an operator policy) sets them. `None`: that source does not set the key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeatureValues {
    /// `message-ttl`, milliseconds.
    pub message_ttl: Option<u64>,
    /// `expires`, milliseconds.
    pub expires: Option<u64>,
    /// `dead-letter-exchange`.
    pub dead_letter_exchange: Option<Arc<str>>,
    /// `dead-letter-routing-key`.
    pub dead_letter_routing_key: Option<Arc<str>>,
    /// `max-length`, messages.
    pub max_length: Option<u64>,
    /// `max-length-bytes`, body bytes.
    pub max_length_bytes: Option<u64>,
    /// `overflow`.
    pub overflow: Option<Overflow>,
    /// `delivery-limit`.
    pub delivery_limit: Option<u64>,
    /// `consumer-timeout`, milliseconds (`x-consumer-timeout`).
    pub consumer_timeout: Option<u64>,
}

impl FeatureValues {
    /// Merges a policy's values with an operator policy's: where both set a number, the lower
    /// wins (RabbitMQ's `merge_policy_value` for these keys); strings come from the policy.
    pub fn merge_operator(&self, op: &FeatureValues) -> FeatureValues {
        FeatureValues {
            message_ttl: min_opt(self.message_ttl, op.message_ttl),
            expires: min_opt(self.expires, op.expires),
            dead_letter_exchange: self
                .dead_letter_exchange
                .clone()
                .or_else(|| op.dead_letter_exchange.clone()),
            dead_letter_routing_key: self
                .dead_letter_routing_key
                .clone()
                .or_else(|| op.dead_letter_routing_key.clone()),
            max_length: min_opt(self.max_length, op.max_length),
            max_length_bytes: min_opt(self.max_length_bytes, op.max_length_bytes),
            overflow: self.overflow.or(op.overflow),
            delivery_limit: min_opt(self.delivery_limit, op.delivery_limit),
            consumer_timeout: self.consumer_timeout.or(op.consumer_timeout),
        }
    }
}

fn min_opt(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What a queue runs with: its arguments resolved against its policy and operator policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueSettings {
    /// Message TTL in milliseconds.
    pub message_ttl: Option<u64>,
    /// Queue expiry in milliseconds.
    pub expires: Option<u64>,
    /// Dead-letter exchange.
    pub dead_letter_exchange: Option<Arc<str>>,
    /// Dead-letter routing key (the message's own keys when `None`).
    pub dead_letter_routing_key: Option<Arc<str>>,
    /// Most ready messages.
    pub max_length: Option<u64>,
    /// Most ready body bytes.
    pub max_length_bytes: Option<u64>,
    /// What a full queue does.
    pub overflow: Overflow,
    /// Most returns of a message before it is dead-lettered (`delivery_limit`).
    pub delivery_limit: Option<u64>,
    /// How long a delivery may stay unacknowledged, milliseconds (none: the broker's
    /// `consumer_timeout`).
    pub consumer_timeout: Option<u64>,
}

impl QueueSettings {
    /// Resolves declare arguments against the merged policy values, as RabbitMQ's
    /// `args_policy_lookup`: numbers take the lower of the two, strings take the argument.
    pub fn resolve(args: &FeatureValues, policy: &FeatureValues) -> QueueSettings {
        QueueSettings {
            message_ttl: min_opt(args.message_ttl, policy.message_ttl),
            expires: min_opt(args.expires, policy.expires),
            dead_letter_exchange: args
                .dead_letter_exchange
                .clone()
                .or_else(|| policy.dead_letter_exchange.clone()),
            dead_letter_routing_key: args
                .dead_letter_routing_key
                .clone()
                .or_else(|| policy.dead_letter_routing_key.clone()),
            max_length: min_opt(args.max_length, policy.max_length),
            max_length_bytes: min_opt(args.max_length_bytes, policy.max_length_bytes),
            overflow: args.overflow.or(policy.overflow).unwrap_or_default(),
            delivery_limit: min_opt(args.delivery_limit, policy.delivery_limit),
            consumer_timeout: min_opt(args.consumer_timeout, policy.consumer_timeout),
        }
    }

    /// True when a length limit is set.
    pub fn has_length_limit(&self) -> bool {
        self.max_length.is_some() || self.max_length_bytes.is_some()
    }
}

/// A queue's declare arguments: the table as declared (compared on redeclare, shown by
/// management, persisted) and the values of the keys this broker implements.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QueueArgs {
    /// The table as declared.
    pub raw: FieldTable,
    /// The implemented keys' values.
    pub values: FeatureValues,
}

/// The checked keys, in RabbitMQ 3.10's order (`declare_args/0`, plus `x-delivery-limit`, which
/// RabbitMQ checks for quorum queues only), with their checks.
const CHECKS: [(&str, Check); 18] = [
    ("x-expires", Check::Expires),
    ("x-message-ttl", Check::Ttl),
    ("x-dead-letter-exchange", Check::LongStr),
    ("x-dead-letter-routing-key", Check::DlxRoutingKey),
    ("x-max-length", Check::NonNegInt),
    ("x-max-length-bytes", Check::NonNegInt),
    ("x-max-in-memory-length", Check::NonNegInt),
    ("x-max-in-memory-bytes", Check::NonNegInt),
    ("x-max-priority", Check::MaxPriority),
    ("x-overflow", Check::Overflow),
    (
        "x-queue-mode",
        Check::OneOf(&["default", "lazy"], "invalid_queue_mode"),
    ),
    ("x-single-active-consumer", Check::Bool),
    (
        "x-queue-type",
        Check::OneOf(&["classic", "quorum", "stream"], "invalid_queue_type"),
    ),
    ("x-quorum-initial-group-size", Check::PosInt),
    ("x-max-age", Check::LongStr),
    ("x-stream-max-segment-size-bytes", Check::NonNegInt),
    ("x-initial-cluster-size", Check::PosInt),
    ("x-delivery-limit", Check::NonNegInt),
];

/// How one argument is checked.
#[derive(Clone, Copy)]
enum Check {
    Expires,
    Ttl,
    LongStr,
    DlxRoutingKey,
    NonNegInt,
    PosInt,
    MaxPriority,
    Overflow,
    Bool,
    /// A long string from the list; otherwise the error atom.
    OneOf(&'static [&'static str], &'static str),
}

/// RabbitMQ's name of a field value's type (`rabbit_binary_parser`), as its error terms print it.
pub fn type_name(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::Bool(_) => "bool",
        FieldValue::I8(_) => "byte",
        FieldValue::U8(_) => "unsignedbyte",
        FieldValue::I16(_) => "short",
        FieldValue::U16(_) => "unsignedshort",
        FieldValue::I32(_) => "signedint",
        FieldValue::U32(_) => "unsignedint",
        FieldValue::I64(_) => "long",
        FieldValue::F32(_) => "float",
        FieldValue::F64(_) => "double",
        FieldValue::Decimal(_) => "decimal",
        FieldValue::LongStr(_) => "longstr",
        FieldValue::ByteArray(_) => "binary",
        FieldValue::Array(_) => "array",
        FieldValue::Timestamp(_) => "timestamp",
        FieldValue::Table(_) => "table",
        FieldValue::Void => "void",
    }
}

/// The integer value of one of RabbitMQ's integer argument types (`?INTEGER_ARG_TYPES`).
fn int_arg(v: &FieldValue) -> Option<i64> {
    match v {
        FieldValue::Timestamp(_) => None,
        other => other.as_i64(),
    }
}

/// An error term: `{unacceptable_type,longstr}` (string and boolean arguments).
fn unacceptable(v: &FieldValue) -> String {
    format!("{{unacceptable_type,{}}}", type_name(v))
}

/// The error of an integer argument of another type: `"expected integer, got longstr"`.
fn not_int(v: &FieldValue) -> String {
    format!("\"expected integer, got {}\"", type_name(v))
}

/// An integer argument's value, or its error.
fn int_or_err(v: &FieldValue) -> Result<i64, String> {
    int_arg(v).ok_or_else(|| not_int(v))
}

/// RabbitMQ's `check_expiry/1`.
fn check_expiry(n: i64) -> Result<(), String> {
    if n < 0 {
        Err(format!("{{value_negative,{n}}}"))
    } else if n > MAX_EXPIRY {
        Err(format!("{{value_too_large,{n}}}"))
    } else {
        Ok(())
    }
}

fn non_neg(v: &FieldValue) -> Result<i64, String> {
    let n = int_or_err(v)?;
    if n < 0 {
        return Err(format!("{{value_negative,{n}}}"));
    }
    Ok(n)
}

impl Check {
    /// The error term for a bad value, as RabbitMQ prints it.
    fn run(self, v: &FieldValue, table: &FieldTable) -> Result<(), String> {
        match self {
            Check::Expires => {
                let n = int_or_err(v)?;
                if n == 0 {
                    return Err(format!("{{value_zero,{n}}}"));
                }
                check_expiry(n)
            }
            Check::Ttl => check_expiry(int_or_err(v)?),
            Check::LongStr => match v {
                FieldValue::LongStr(_) => Ok(()),
                _ => Err(unacceptable(v)),
            },
            Check::DlxRoutingKey => match v {
                FieldValue::LongStr(_) if table.get("x-dead-letter-exchange").is_none() => {
                    Err("routing_key_but_no_dlx_defined".into())
                }
                FieldValue::LongStr(_) => Ok(()),
                _ => Err(unacceptable(v)),
            },
            Check::NonNegInt => non_neg(v).map(|_| ()),
            Check::PosInt => {
                let n = int_or_err(v)?;
                if n <= 0 {
                    return Err(format!("{{value_zero_or_less,{n}}}"));
                }
                Ok(())
            }
            Check::MaxPriority => {
                let n = non_neg(v)?;
                if n > MAX_PRIORITY {
                    return Err(format!("{{max_value_exceeded,{n}}}"));
                }
                Ok(())
            }
            Check::Overflow => match v {
                FieldValue::LongStr(s) if s.to_str().and_then(Overflow::parse).is_some() => Ok(()),
                FieldValue::LongStr(_) => Err("invalid_overflow".into()),
                _ => Err(unacceptable(v)),
            },
            Check::Bool => match v {
                FieldValue::Bool(_) => Ok(()),
                _ => Err(unacceptable(v)),
            },
            Check::OneOf(allowed, atom) => match v {
                FieldValue::LongStr(s) if s.to_str().is_some_and(|s| allowed.contains(&s)) => {
                    Ok(())
                }
                FieldValue::LongStr(_) => Err(atom.into()),
                _ => Err(unacceptable(v)),
            },
        }
    }
}

/// `queue 'q' in vhost '/'`, RabbitMQ's `rs/1` of a queue.
fn resource(queue: &str, vhost: &str) -> String {
    format!("queue '{queue}' in vhost '{vhost}'")
}

impl QueueArgs {
    /// Checks the declare arguments as RabbitMQ 3.10 does (406 naming the first bad key) and
    /// reads the implemented keys.
    pub fn parse(raw: FieldTable, queue: &str, vhost: &str) -> BrokerResult<Self> {
        // RabbitMQ's channel looks at the dead-letter exchange first (to check permissions on
        // it), with a text of its own.
        if let Some(v) = raw.get("x-dead-letter-exchange")
            && !matches!(v, FieldValue::LongStr(_))
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid type '{}' for arg 'x-dead-letter-exchange' in {}",
                type_name(v),
                resource(queue, vhost)
            )));
        }
        for (key, check) in CHECKS {
            if let Some(v) = raw.get(key)
                && let Err(term) = check.run(v, &raw)
            {
                return Err(BrokerError::PreconditionFailed(format!(
                    "invalid arg '{key}' for {}: {term}",
                    resource(queue, vhost)
                )));
            }
        }
        let values = Self::values_of(&raw);
        Ok(QueueArgs { raw, values })
    }

    /// Arguments read back from the store: checked when they were declared, so a value that
    /// no longer passes is logged and ignored rather than failing the start.
    pub fn restored(raw: FieldTable, queue: &str, vhost: &str) -> Self {
        match Self::parse(raw.clone(), queue, vhost) {
            Ok(a) => a,
            Err(e) => {
                tracing::error!(queue, vhost, error = %e, "stored queue arguments no longer valid; ignored");
                QueueArgs {
                    raw,
                    values: FeatureValues::default(),
                }
            }
        }
    }

    /// `x-max-priority` (checked at declare to be 0-255); `None` without it. RabbitMQ 3.10
    /// makes a queue with `x-max-priority: 0` a priority queue of one level, which orders as a
    /// plain queue: so does this.
    pub fn max_priority(&self) -> Option<u8> {
        self.raw
            .get("x-max-priority")
            .and_then(int_arg)
            .and_then(|n| u8::try_from(n).ok())
    }

    /// `x-single-active-consumer: true`.
    pub fn single_active(&self) -> bool {
        matches!(
            self.raw.get("x-single-active-consumer"),
            Some(FieldValue::Bool(true))
        )
    }

    fn values_of(raw: &FieldTable) -> FeatureValues {
        let num = |k: &str| {
            raw.get(k)
                .and_then(int_arg)
                .and_then(|n| u64::try_from(n).ok())
        };
        let text = |k: &str| raw.get(k).and_then(FieldValue::as_str).map(Arc::from);
        FeatureValues {
            message_ttl: num("x-message-ttl"),
            expires: num("x-expires"),
            dead_letter_exchange: text("x-dead-letter-exchange"),
            dead_letter_routing_key: text("x-dead-letter-routing-key"),
            max_length: num("x-max-length"),
            max_length_bytes: num("x-max-length-bytes"),
            overflow: raw
                .get("x-overflow")
                .and_then(FieldValue::as_str)
                .and_then(Overflow::parse),
            delivery_limit: num("x-delivery-limit"),
            // Not checked at declare: RabbitMQ 3.10 accepts any value (it does not know the
            // key); a non-integer one is ignored.
            consumer_timeout: num("x-consumer-timeout"),
        }
    }

    /// Redeclare with `new` arguments: every checked key must be equivalent (same value, and
    /// integer types count as one), else 406 with RabbitMQ's text. Unknown keys are not
    /// compared.
    pub fn check_equivalent(&self, new: &FieldTable, queue: &str, vhost: &str) -> BrokerResult<()> {
        for (key, _) in CHECKS {
            let (cur, got) = (self.raw.get(key), new.get(key));
            if equivalent(cur, got) {
                continue;
            }
            // Both set: the bare values; one missing: the other with its type.
            let (got, cur) = match (got, cur) {
                (Some(g), Some(c)) => (
                    format!("'{}'", value_text(g)),
                    format!("'{}'", value_text(c)),
                ),
                (g, c) => (describe(g), describe(c)),
            };
            return Err(BrokerError::PreconditionFailed(format!(
                "inequivalent arg '{key}' for {}: received {got} but current is {cur}",
                resource(queue, vhost),
            )));
        }
        Ok(())
    }
}

/// RabbitMQ's `type_class/1`: integer types are one class, floats another.
fn type_class(v: &FieldValue) -> &'static str {
    match v {
        FieldValue::I8(_)
        | FieldValue::U8(_)
        | FieldValue::I16(_)
        | FieldValue::U16(_)
        | FieldValue::I32(_)
        | FieldValue::U32(_)
        | FieldValue::I64(_)
        | FieldValue::Decimal(_) => "int",
        FieldValue::F32(_) | FieldValue::F64(_) => "float",
        other => type_name(other),
    }
}

fn equivalent(a: Option<&FieldValue>, b: Option<&FieldValue>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a == b
                || (type_class(a) == type_class(b)
                    && match (int_arg(a), int_arg(b)) {
                        (Some(x), Some(y)) => x == y,
                        _ => false,
                    })
        }
        _ => false,
    }
}

/// A value as RabbitMQ's `~p`/`~s` prints it in equivalence errors.
fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(l) => String::from_utf8_lossy(l).into_owned(),
        FieldValue::Bool(b) => b.to_string(),
        FieldValue::F32(f) => format!("{f:?}"),
        FieldValue::F64(f) => format!("{f:?}"),
        other => match int_arg(other) {
            Some(n) => n.to_string(),
            None => format!("{other:?}"),
        },
    }
}

/// RabbitMQ's `val/1` for a value compared with a missing one: `none`, or
/// `the value 'V' of type 'T'`.
fn describe(v: Option<&FieldValue>) -> String {
    match v {
        None => "none".into(),
        Some(v) => format!("the value '{}' of type '{}'", value_text(v), type_name(v)),
    }
}

/// basic.consume's arguments as this broker reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConsumerArgs {
    /// `x-priority` (0 when absent).
    pub priority: i32,
    /// `x-browse`: deliver copies, leave the messages in the queue.
    pub browse: bool,
}

impl ConsumerArgs {
    /// Checks basic.consume's arguments as RabbitMQ 3.10's `check_consume_arguments` does
    /// (`x-priority` must be an integer: 406 with its text) and reads them. `x-browse` is ours
    /// and must be a boolean.
    pub fn parse(t: &FieldTable, queue: &str, vhost: &str) -> BrokerResult<ConsumerArgs> {
        let bad = |key: &str, term: String| {
            BrokerError::PreconditionFailed(format!(
                "invalid arg '{key}' for {}: {term}",
                resource(queue, vhost)
            ))
        };
        let priority = match t.get("x-priority") {
            None => 0,
            Some(v) => {
                let n = int_or_err(v).map_err(|e| bad("x-priority", e))?;
                i32::try_from(n.clamp(i64::from(i32::MIN), i64::from(i32::MAX))).unwrap_or(0)
            }
        };
        let browse = match t.get("x-browse") {
            None => false,
            Some(FieldValue::Bool(b)) => *b,
            Some(v) => return Err(bad("x-browse", unacceptable(v))),
        };
        Ok(ConsumerArgs { priority, browse })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::{LongStr, ShortStr};

    fn table(entries: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(
            entries
                .iter()
                .map(|(k, v)| (ShortStr::try_from(*k).expect("key"), v.clone()))
                .collect(),
        )
    }

    fn text(s: &str) -> FieldValue {
        FieldValue::LongStr(LongStr::from(s))
    }

    fn refused(t: FieldTable) -> String {
        match QueueArgs::parse(t, "q", "/") {
            Err(BrokerError::PreconditionFailed(s)) => s,
            other => panic!("expected a 406, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_are_refused_with_rabbitmq_terms() {
        assert_eq!(
            refused(table(&[("x-message-ttl", FieldValue::I32(-1))])),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
        assert_eq!(
            refused(table(&[("x-message-ttl", text("1000"))])),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            refused(table(&[("x-dead-letter-exchange", FieldValue::I32(5))])),
            "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        assert_eq!(
            refused(table(&[("x-expires", FieldValue::I32(0))])),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            refused(table(&[(
                "x-message-ttl",
                FieldValue::I64(315_360_000_001)
            )])),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \
             {value_too_large,315360000001}"
        );
        assert_eq!(
            refused(table(&[("x-dead-letter-routing-key", text("k"))])),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': \
             routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            refused(table(&[("x-overflow", text("nope"))])),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': invalid_overflow"
        );
        // The first bad key in RabbitMQ's order is named, not the first in the table.
        assert_eq!(
            refused(table(&[
                ("x-max-length", FieldValue::I32(-2)),
                ("x-message-ttl", FieldValue::I32(-1))
            ])),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': {value_negative,-1}"
        );
    }

    #[test]
    fn good_values_parse_and_unknown_keys_are_kept() {
        let a = QueueArgs::parse(
            table(&[
                ("x-message-ttl", FieldValue::I32(1000)),
                ("x-dead-letter-exchange", text("dlx")),
                ("x-overflow", text("reject-publish")),
                ("x-whatever", FieldValue::Bool(true)),
            ]),
            "q",
            "/",
        )
        .expect("valid");
        assert_eq!(a.values.message_ttl, Some(1000));
        assert_eq!(a.values.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!(a.values.overflow, Some(Overflow::RejectPublish));
        assert_eq!(a.raw.len(), 4);
    }

    #[test]
    fn equivalence_treats_integer_types_as_one() {
        let a = QueueArgs::parse(table(&[("x-message-ttl", FieldValue::I32(1000))]), "q", "/")
            .expect("valid");
        a.check_equivalent(
            &table(&[("x-message-ttl", FieldValue::I64(1000))]),
            "q",
            "/",
        )
        .expect("same value, other integer type");
        a.check_equivalent(
            &table(&[
                ("x-message-ttl", FieldValue::I16(1000)),
                ("x-unknown", FieldValue::Bool(false)),
            ]),
            "q",
            "/",
        )
        .expect("unknown keys are not compared");
        let e = a
            .check_equivalent(
                &table(&[("x-message-ttl", FieldValue::I32(2000))]),
                "q",
                "/",
            )
            .expect_err("changed");
        assert_eq!(
            e.to_string(),
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received '2000' but \
             current is '1000'"
        );
        let e = a
            .check_equivalent(&table(&[]), "q", "/")
            .expect_err("missing");
        assert_eq!(
            e.to_string(),
            "inequivalent arg 'x-message-ttl' for queue 'q' in vhost '/': received none but \
             current is the value '1000' of type 'signedint'"
        );
    }

    #[test]
    fn policy_and_arguments_resolve_as_rabbitmq() {
        let args = FeatureValues {
            message_ttl: Some(5000),
            dead_letter_exchange: Some(Arc::from("from-args")),
            ..Default::default()
        };
        let policy = FeatureValues {
            message_ttl: Some(9000),
            max_length: Some(10),
            dead_letter_exchange: Some(Arc::from("from-policy")),
            ..Default::default()
        };
        let op = FeatureValues {
            max_length: Some(5),
            ..Default::default()
        };
        let s = QueueSettings::resolve(&args, &policy.merge_operator(&op));
        assert_eq!(s.message_ttl, Some(5000), "the lower TTL wins");
        assert_eq!(
            s.max_length,
            Some(5),
            "the operator policy's lower limit wins"
        );
        assert_eq!(s.dead_letter_exchange.as_deref(), Some("from-args"));
        assert_eq!(s.overflow, Overflow::DropHead);
    }
}
