//! Policies and operator policies (RabbitMQ's `rabbit_policy`): named patterns over queue and
//! exchange names that set queue features without touching the declare arguments.
//!
//! - A queue matches the policy of highest priority whose `apply-to` covers queues and whose
//!   pattern (a regular expression, unanchored) matches its name; equal priorities are broken
//!   by name (the first in byte order wins). The same, separately, for operator policies.
//! - The two merge per key: for the numeric keys the lower value wins
//!   ([`FeatureValues::merge_operator`]); the result then resolves against the queue's
//!   arguments ([`crate::broker::queue::QueueSettings::resolve`]).
//! - Definitions are checked as RabbitMQ 3.10 checks them, with its texts
//!   ([`PolicyError`]); keys of RabbitMQ features this broker does not implement (`ha-mode`,
//!   `queue-mode`, ...) are accepted and ignored, so definitions exported from RabbitMQ import.
//!   Operator policies accept RabbitMQ's short list of keys only.
//! - Changes apply at once to existing queues and to queues declared later, and are persisted
//!   (store objects of kind [`PolicyKind::store_kind`]).

use regex::Regex;
use serde_json::{Map, Value};
use std::sync::Arc;

use super::queue::args::MAX_EXPIRY;
use super::queue::{AppliedPolicy, FeatureValues, Overflow};

/// Policy or operator policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// `/api/policies`.
    Policy,
    /// `/api/operator-policies`.
    Operator,
}

impl PolicyKind {
    /// The store object kind they are persisted under.
    pub fn store_kind(self) -> &'static str {
        match self {
            PolicyKind::Policy => "policy",
            PolicyKind::Operator => "operator_policy",
        }
    }
}

/// What a policy applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApplyTo {
    /// Queues only.
    Queues,
    /// Exchanges only.
    Exchanges,
    /// Both.
    All,
}

impl ApplyTo {
    /// From the API's `apply-to`.
    pub fn parse(s: &str) -> Option<ApplyTo> {
        Some(match s {
            "queues" => ApplyTo::Queues,
            "exchanges" => ApplyTo::Exchanges,
            "all" => ApplyTo::All,
            _ => return None,
        })
    }

    /// The API's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::Queues => "queues",
            ApplyTo::Exchanges => "exchanges",
            ApplyTo::All => "all",
        }
    }

    fn queues(self) -> bool {
        self != ApplyTo::Exchanges
    }
}

/// One policy.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Its vhost.
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// The pattern, as given.
    pub pattern: String,
    /// What it applies to.
    pub apply_to: ApplyTo,
    /// Higher wins.
    pub priority: i64,
    /// The definition, as given.
    pub definition: Map<String, Value>,
    regex: Regex,
    /// The definition's queue keys, parsed.
    pub values: FeatureValues,
}

impl Policy {
    /// The policy as the management API and definitions files show it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "vhost": self.vhost,
            "name": self.name,
            "pattern": self.pattern,
            "apply-to": self.apply_to.as_str(),
            "definition": self.definition,
            "priority": self.priority,
        })
    }
}

/// A refused policy: RabbitMQ's validation text (without the "Validation failed" frame).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// An Erlang term as RabbitMQ's `~p` prints a JSON value it decoded.
fn term(v: &Value) -> String {
    match v {
        Value::String(s) => format!("<<\"{s}\">>"),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        Value::Array(a) => format!("[{}]", a.iter().map(term).collect::<Vec<_>>().join(",")),
        Value::Object(m) => format!(
            "#{{{}}}",
            m.iter()
                .map(|(k, v)| format!("<<\"{k}\">> => {}", term(v)))
                .collect::<Vec<_>>()
                .join(",")
        ),
    }
}

/// Keys of RabbitMQ 3.10 policies that this broker accepts but does not act on.
const IGNORED_KEYS: [&str; 22] = [
    "alternate-exchange",
    "federation-upstream",
    "federation-upstream-set",
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "queue-mode",
    "queue-master-locator",
    "queue-version",
    "max-age",
    "stream-max-segment-size-bytes",
    "queue-leader-locator",
    "initial-cluster-size",
    "shovel",
    "expires-ms",
    "delivery-limit-policy",
    "message-ttl-policy",
];

/// Keys an operator policy may set (RabbitMQ 3.10's `rabbit_policies` operator validators).
const OPERATOR_KEYS: [&str; 7] = [
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

fn int_at_least(v: &Value, min: i64) -> Option<u64> {
    v.as_i64()
        .filter(|&n| n >= min)
        .and_then(|n| u64::try_from(n).ok())
}

/// Checks one known key (RabbitMQ's `validate_policy0`); `Ok(false)` for keys it does not know.
fn check_key(k: &str, v: &Value, out: &mut FeatureValues) -> Result<bool, String> {
    let bad = |what: &str| Err(format!("{} is not a valid {what}", term(v)));
    match k {
        "message-ttl" => match int_at_least(v, 0).filter(|&n| n <= MAX_EXPIRY as u64) {
            Some(n) => out.message_ttl = Some(n),
            None => return bad("message TTL"),
        },
        "expires" => match int_at_least(v, 1).filter(|&n| n <= MAX_EXPIRY as u64) {
            Some(n) => out.expires = Some(n),
            None => return bad("queue expiry"),
        },
        "max-length" => match int_at_least(v, 0) {
            Some(n) => out.max_length = Some(n),
            None => return bad("maximum length"),
        },
        "max-length-bytes" => match int_at_least(v, 0) {
            Some(n) => out.max_length_bytes = Some(n),
            None => return bad("maximum length in bytes"),
        },
        "consumer-timeout" => match int_at_least(v, 0) {
            Some(n) => out.consumer_timeout = Some(n),
            None => return bad("consumer timeout"),
        },
        "delivery-limit" => match int_at_least(v, 0) {
            Some(n) => out.delivery_limit = Some(n),
            None => return bad("delivery limit"),
        },
        "dead-letter-exchange" => match v.as_str() {
            Some(s) => out.dead_letter_exchange = Some(Arc::from(s)),
            None => return bad("dead letter exchange name"),
        },
        "dead-letter-routing-key" => match v.as_str() {
            Some(s) => out.dead_letter_routing_key = Some(Arc::from(s)),
            None => return bad("dead letter routing key"),
        },
        "overflow" => match v.as_str().and_then(Overflow::parse) {
            Some(o) => out.overflow = Some(o),
            None => return bad("overflow value"),
        },
        "max-in-memory-length" | "max-in-memory-bytes" => {
            if int_at_least(v, 0).is_none() {
                return bad("maximum memory");
            }
        }
        "alternate-exchange" => {
            if !v.is_string() {
                return bad("alternate exchange name");
            }
        }
        "queue-mode" => {
            if !matches!(v.as_str(), Some("default" | "lazy")) {
                return bad("queue-mode value");
            }
        }
        other => return Ok(IGNORED_KEYS.contains(&other)),
    }
    Ok(true)
}

/// Validates a policy as RabbitMQ 3.10 does and builds it.
pub fn build(
    kind: PolicyKind,
    vhost: &str,
    name: &str,
    pattern: &str,
    apply_to: Option<&str>,
    priority: Option<&Value>,
    definition: &Value,
) -> Result<Policy, PolicyError> {
    let err = |s: String| PolicyError(s);
    let apply_to = match apply_to {
        None => ApplyTo::All,
        Some(s) => ApplyTo::parse(s).ok_or_else(|| {
            err(format!(
                "apply-to '{s}' unrecognised; should be 'queues', 'exchanges' or 'all'"
            ))
        })?,
    };
    let priority = match priority {
        None => 0,
        Some(v) => v.as_i64().ok_or_else(|| {
            err(format!(
                "priority should be a number, actually was {}",
                term(v)
            ))
        })?,
    };
    let regex = Regex::new(pattern).map_err(|e| {
        err(format!(
            "pattern should be regular expression but is invalid: {{\"{}\",0}}",
            e.to_string().lines().last().unwrap_or("invalid")
        ))
    })?;
    let definition = match definition {
        Value::Object(m) if !m.is_empty() => m.clone(),
        _ => return Err(err("no policy provided".into())),
    };
    // Known keys first, in key order (RabbitMQ validates a sorted proplist), then the rest.
    let mut keys: Vec<&String> = definition.keys().collect();
    keys.sort();
    let mut values = FeatureValues::default();
    let mut unknown = Vec::new();
    for k in keys {
        let v = &definition[k.as_str()];
        let allowed = kind == PolicyKind::Policy || OPERATOR_KEYS.contains(&k.as_str());
        match check_key(k, v, &mut values).map_err(err)? {
            true if allowed => {}
            _ => unknown.push(format!("{{<<\"{k}\">>,{}}}", term(v))),
        }
    }
    if !unknown.is_empty() {
        return Err(err(format!(
            "[{}] are not recognised policy settings",
            unknown.join(",")
        )));
    }
    Ok(Policy {
        vhost: vhost.to_string(),
        name: name.to_string(),
        pattern: pattern.to_string(),
        apply_to,
        priority,
        definition,
        regex,
        values,
    })
}

/// A vhost's policies and operator policies.
#[derive(Debug, Default)]
pub struct Policies {
    policies: Vec<Policy>,
    operator: Vec<Policy>,
}

impl Policies {
    fn list_mut(&mut self, kind: PolicyKind) -> &mut Vec<Policy> {
        match kind {
            PolicyKind::Policy => &mut self.policies,
            PolicyKind::Operator => &mut self.operator,
        }
    }

    /// The policies of one kind, by name.
    pub fn list(&self, kind: PolicyKind) -> &[Policy] {
        match kind {
            PolicyKind::Policy => &self.policies,
            PolicyKind::Operator => &self.operator,
        }
    }

    /// Adds or replaces a policy; true when it is new.
    pub fn put(&mut self, kind: PolicyKind, p: Policy) -> bool {
        let list = self.list_mut(kind);
        let created = match list.iter().position(|x| x.name == p.name) {
            Some(i) => {
                list[i] = p;
                false
            }
            None => {
                list.push(p);
                true
            }
        };
        list.sort_by(|a, b| a.name.cmp(&b.name));
        created
    }

    /// Removes a policy; false when there was none.
    pub fn delete(&mut self, kind: PolicyKind, name: &str) -> bool {
        let list = self.list_mut(kind);
        let before = list.len();
        list.retain(|p| p.name != name);
        list.len() != before
    }

    /// The best matching policy of a list for queue `name`.
    fn best<'a>(list: &'a [Policy], name: &str) -> Option<&'a Policy> {
        list.iter()
            .filter(|p| p.apply_to.queues() && p.regex.is_match(name))
            .fold(None, |best: Option<&Policy>, p| match best {
                Some(b) if b.priority >= p.priority => Some(b),
                _ => Some(p),
            })
    }

    /// What applies to queue `name`.
    pub fn applied_to(&self, name: &str) -> AppliedPolicy {
        let p = Self::best(&self.policies, name);
        let op = Self::best(&self.operator, name);
        let values = match (p, op) {
            (Some(p), Some(op)) => p.values.merge_operator(&op.values),
            (Some(p), None) => p.values.clone(),
            (None, Some(op)) => op.values.clone(),
            (None, None) => FeatureValues::default(),
        };
        AppliedPolicy {
            policy: p.map(|p| p.name.clone()),
            operator_policy: op.map(|p| p.name.clone()),
            values,
            definition: effective_definition(p, op),
        }
    }
}

/// RabbitMQ's `effective_policy_definition`: the policy's definition with the operator
/// policy's keys merged in (the lower number where both set one).
fn effective_definition(p: Option<&Policy>, op: Option<&Policy>) -> Map<String, Value> {
    let mut out = p.map(|p| p.definition.clone()).unwrap_or_default();
    if let Some(op) = op {
        for (k, v) in &op.definition {
            let merged = match (out.get(k).and_then(Value::as_i64), v.as_i64()) {
                (Some(a), Some(b)) => Value::from(a.min(b)),
                _ => v.clone(),
            };
            out.insert(k.clone(), merged);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(name: &str, pattern: &str, priority: i64, def: Value) -> Policy {
        build(
            PolicyKind::Policy,
            "/",
            name,
            pattern,
            Some("queues"),
            Some(&json!(priority)),
            &def,
        )
        .expect("valid")
    }

    fn refused(kind: PolicyKind, def: Value) -> String {
        build(kind, "/", "p", "^q", None, None, &def)
            .expect_err("invalid")
            .0
    }

    #[test]
    fn definitions_are_checked_with_rabbitmq_texts() {
        assert_eq!(
            refused(PolicyKind::Policy, json!({"message-ttl": -1})),
            "-1 is not a valid message TTL"
        );
        assert_eq!(
            refused(PolicyKind::Policy, json!({"foo": 1, "max-length": -2})),
            "-2 is not a valid maximum length"
        );
        assert_eq!(
            refused(PolicyKind::Policy, json!({"foo": 1})),
            "[{<<\"foo\">>,1}] are not recognised policy settings"
        );
        assert_eq!(
            refused(PolicyKind::Policy, json!({"overflow": "x"})),
            "<<\"x\">> is not a valid overflow value"
        );
        assert_eq!(refused(PolicyKind::Policy, json!({})), "no policy provided");
        assert_eq!(
            refused(PolicyKind::Operator, json!({"dead-letter-exchange": "x"})),
            "[{<<\"dead-letter-exchange\">>,<<\"x\">>}] are not recognised policy settings"
        );
        build(
            PolicyKind::Policy,
            "/",
            "p",
            "^q",
            None,
            None,
            &json!({"ha-mode": "all", "queue-mode": "lazy"}),
        )
        .expect("RabbitMQ keys we ignore are accepted");
    }

    #[test]
    fn the_highest_priority_matching_policy_wins_and_operator_values_merge() {
        let mut ps = Policies::default();
        ps.put(
            PolicyKind::Policy,
            policy("low", "^q", 0, json!({"message-ttl": 100})),
        );
        ps.put(
            PolicyKind::Policy,
            policy(
                "high",
                "^q\\.",
                5,
                json!({"message-ttl": 900, "max-length": 50}),
            ),
        );
        ps.put(
            PolicyKind::Operator,
            build(
                PolicyKind::Operator,
                "/",
                "op",
                ".*",
                None,
                None,
                &json!({"max-length": 10}),
            )
            .expect("op"),
        );
        let a = ps.applied_to("q.1");
        assert_eq!(a.policy.as_deref(), Some("high"));
        assert_eq!(a.operator_policy.as_deref(), Some("op"));
        assert_eq!(a.values.message_ttl, Some(900));
        assert_eq!(
            a.values.max_length,
            Some(10),
            "the lower of policy and operator"
        );
        assert_eq!(a.definition["max-length"], json!(10));
        let b = ps.applied_to("qq");
        assert_eq!(b.policy.as_deref(), Some("low"));
        assert_eq!(ps.applied_to("other").policy, None);
    }
}
