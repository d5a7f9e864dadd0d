//! The records of the access model (users, vhost metadata, permissions, topic permissions,
//! limits) and their stored form: one durable object per record, JSON in RabbitMQ's field
//! names, so a record reads like its definitions-file entry.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A user who may log in.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// Login name.
    pub name: String,
    /// RabbitMQ-style salted hash (see [`crate::password`]); empty: no password login.
    pub password_hash: String,
    /// Tags such as `administrator`.
    pub tags: Vec<String>,
}

/// Leaves the hash out: no secret reaches a log line through `{:?}`.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .finish_non_exhaustive()
    }
}

impl User {
    /// Whether the user carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// RabbitMQ's name of the hash scheme (`rabbit_password_hashing_sha256` for a user
    /// without a password, as RabbitMQ shows it).
    pub fn hashing_algorithm(&self) -> &'static str {
        crate::password::algorithm_of(&self.password_hash)
            .unwrap_or("rabbit_password_hashing_sha256")
    }
}

/// A user's rights in one vhost: RabbitMQ's configure, write and read regular expressions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// Resources the user may declare and delete.
    pub configure: String,
    /// Resources the user may publish to (and bind queues to).
    pub write: String,
    /// Resources the user may consume from (and bind from).
    pub read: String,
}

/// A user's rights on the routing keys of one topic exchange in one vhost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicPermission {
    /// The user.
    pub user: String,
    /// The vhost.
    pub vhost: String,
    /// The topic exchange (a name, not a pattern).
    pub exchange: String,
    /// Routing keys the user may publish with.
    pub write: String,
    /// Routing keys the user may bind (queue.bind / exchange.bind from this exchange) with.
    pub read: String,
}

/// Limits, by RabbitMQ's names (`max-connections`, `max-queues`, `max-channels`). A negative
/// value means "no limit", as RabbitMQ reads it; absent is no limit too.
pub type LimitMap = BTreeMap<String, i64>;

/// The names of vhost limits.
pub const VHOST_LIMITS: [&str; 2] = ["max-connections", "max-queues"];
/// The names of user limits.
pub const USER_LIMITS: [&str; 2] = ["max-connections", "max-channels"];

/// A vhost's metadata and limits (its exchanges and queues live in [`crate::broker::VHost`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VhostInfo {
    /// The name.
    pub name: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Free-form tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The queue type declared when a client names none (`classic`, `quorum`, `stream`);
    /// `None` is RabbitMQ's `undefined`. Kept and shown; only classic queues exist here.
    #[serde(default)]
    pub default_queue_type: Option<String>,
    /// `max-connections`, `max-queues`.
    #[serde(default)]
    pub limits: LimitMap,
}

impl VhostInfo {
    /// A vhost with no metadata.
    pub fn named(name: &str) -> Self {
        VhostInfo {
            name: name.to_string(),
            ..Default::default()
        }
    }
}

/// The stored form of a user: the user and its limits.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredUser {
    #[serde(flatten)]
    pub(crate) user: User,
    #[serde(default)]
    pub(crate) limits: LimitMap,
}

/// The limit `name` of `limits` as RabbitMQ enforces it: `Some(n)` for n ≥ 0.
pub(crate) fn limit(limits: &LimitMap, name: &str) -> Option<u64> {
    limits.get(name).and_then(|&v| u64::try_from(v).ok())
}

/// Checks a limit value set through the API or definitions: RabbitMQ's texts.
pub fn check_limits(
    known: &[&str],
    what: &str,
    value: &serde_json::Value,
) -> Result<LimitMap, String> {
    let Some(obj) = value.as_object() else {
        return Err(format!("{what} must be an object"));
    };
    let mut out = LimitMap::new();
    for (k, v) in obj {
        if !known.contains(&k.as_str()) {
            return Err(format!(
                "Unrecognised terms [{{<<\"{k}\">>,{v}}}] in {what}"
            ));
        }
        let Some(n) = v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)) else {
            let shown = match v {
                serde_json::Value::String(s) => format!("<<\"{s}\">>"),
                other => other.to_string(),
            };
            return Err(format!("{k} should be a number, actually was {shown}"));
        };
        out.insert(k.clone(), n);
    }
    Ok(out)
}
