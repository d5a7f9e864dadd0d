//! The access model: users (RabbitMQ password hashes, tags), vhost metadata and limits,
//! permissions, topic permissions and user limits, persisted as durable objects; logins; and
//! authorisation through [`Grant`], the one check the AMQP session and the management API both
//! make. Below `session` and `management`; imports `storage` and the broker's own types.
//!
//! # Consistency
//! The records live behind one `RwLock`, changed only by the methods here. Every change bumps
//! the [generation](Access::generation) while it still holds the lock. A connection compiles a
//! [`Grant`] for its user and vhost at connection.open and [refreshes](Access::refresh) it
//! when the generation has moved (one atomic load per operation), so a changed or revoked
//! permission applies to open connections from their next operation, as in RabbitMQ, without
//! any cache that can go stale.
//!
//! # Persistence
//! Each record is a durable object (`Store::put_object`): kinds `access.user` (with its
//! limits), `access.vhost` (metadata and limits), `access.permission`,
//! `access.topic-permission`, and the marker `access.seeded`. Changes are written after the
//! records lock is released, in the order they were made (a separate lock orders them, like
//! [`crate::broker::VHost`]'s definition writes). The first start on an empty data directory
//! stores what the configuration seeds (its users with full rights on the default vhost) and
//! the marker; later starts load the store and ignore the configuration's users, as RabbitMQ's
//! definitions import on boot does not overwrite.
//!
//! # Logins
//! [`Access::authenticate`] verifies a password hash and RabbitMQ's `loopback_users` rule,
//! and counts attempts and failures (metrics). A failed login is answered after
//! [`Access::failed_login_delay`] by the caller (the session returns a deadline; the driver
//! waits it out without blocking other connections).
//!
//! Files: `model` (records), `pattern` (RabbitMQ's regex rules), `authorize` (grants and the
//! checks per operation), `tracking` (connection and channel counts under limits), `store`
//! (load, seed, object keys), `lifecycle` (broker-wide operations: deleting a user closes its
//! connections, deleting a vhost deletes its objects).

mod authorize;
mod lifecycle;
mod model;
mod pattern;
mod store;
#[cfg(test)]
mod tests;
mod tracking;

pub use authorize::{Grant, Perm, Resource};
pub use model::{
    LimitMap, Permission, TopicPermission, USER_LIMITS, User, VHOST_LIMITS, VhostInfo, check_limits,
};
pub use tracking::{ChannelSlot, ConnectionSlot};

use crate::broker::error::{BrokerError, BrokerResult};
use crate::broker::group_commit::GroupCommit;
use crate::storage::Store;
use authorize::Compiled;
use model::limit;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::Duration;
use store::Op;
use tracking::Tracking;

/// The default delay before a failed login is answered.
pub const DEFAULT_FAILED_LOGIN_DELAY: Duration = Duration::from_secs(1);

/// What the access model starts from (the configuration).
#[derive(Clone, Debug)]
pub struct AccessOptions {
    /// Users seeded on first start, with full rights on `default_vhost`.
    pub users: Vec<User>,
    /// The vhost created on first start.
    pub default_vhost: String,
    /// Users who may only log in from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// How long a failed login waits before it is answered.
    pub failed_login_delay: Duration,
}

/// Why a login failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginError {
    /// No such user, or the wrong password.
    BadCredentials,
    /// A loopback-only user connecting from elsewhere.
    LoopbackOnly,
}

/// Login counters (exposed on /metrics with RabbitMQ's names).
#[derive(Debug, Default)]
pub struct AuthStats {
    /// Login attempts.
    pub attempts: AtomicU64,
    /// Failed logins.
    pub failed: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    users: BTreeMap<String, User>,
    user_limits: BTreeMap<String, LimitMap>,
    vhosts: BTreeMap<String, VhostInfo>,
    /// By (vhost, user).
    permissions: BTreeMap<(String, String), (Permission, Arc<Compiled>)>,
    /// By (vhost, user, exchange).
    topic: BTreeMap<(String, String, String), TopicPermission>,
}

/// The access model (see the module docs).
pub struct Access {
    state: RwLock<State>,
    generation: AtomicU64,
    /// Orders store writes; held from a change until its writes are done.
    persisting: Mutex<()>,
    store: Arc<dyn Store>,
    commit: Arc<GroupCommit>,
    tracking: Arc<Tracking>,
    loopback_users: Vec<String>,
    failed_login_delay: Duration,
    stats: AuthStats,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

/// A verification hash for logins of unknown users, so they cost what known ones do.
const DUMMY_HASH: &str = "7su4utwuXx30jUmgTK5FXeRSfJJppGv5BwoHzo1kP779y9v/";

impl Access {
    /// The access model seeded in memory from `opts`; [`Access::load`] replaces it with what
    /// the store holds, if it holds anything.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        commit: Arc<GroupCommit>,
        opts: AccessOptions,
    ) -> Access {
        let access = Access {
            state: RwLock::new(State::default()),
            generation: AtomicU64::new(1),
            persisting: Mutex::new(()),
            store,
            commit,
            tracking: Arc::default(),
            loopback_users: opts.loopback_users.clone(),
            failed_login_delay: opts.failed_login_delay,
            stats: AuthStats::default(),
        };
        access.seed(&opts);
        access
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the records under the lock (queueing store writes in `ops`), bumps the
    /// generation, then does the writes in order after the lock is released.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Op>) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let _order = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        let mut ops = Vec::new();
        let t = {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            let t = f(&mut st, &mut ops)?;
            self.generation.fetch_add(1, Ordering::AcqRel);
            t
        };
        self.write(ops)?;
        Ok(t)
    }

    /// The generation: changes every time a record changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Login counters.
    pub fn stats(&self) -> &AuthStats {
        &self.stats
    }

    /// How long a failed login waits before it is answered.
    pub fn failed_login_delay(&self) -> Duration {
        self.failed_login_delay
    }

    /// Checks a password login from a loopback (`true`) or other address.
    pub fn authenticate(
        &self,
        name: &str,
        password: &str,
        loopback: bool,
    ) -> Result<User, LoginError> {
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let user = self.user(name);
        let hash = user
            .as_ref()
            .map_or(DUMMY_HASH, |u| u.password_hash.as_str());
        let ok = crate::password::verify_password(hash, password);
        let result = match user {
            Some(u) if ok => {
                if !loopback && self.loopback_users.contains(&u.name) {
                    Err(LoginError::LoopbackOnly)
                } else {
                    Ok(u)
                }
            }
            _ => Err(LoginError::BadCredentials),
        };
        if result.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// A login whose identity was proven elsewhere (the `EXTERNAL` mechanism: a verified client
    /// certificate): the user must exist; no password is checked; `loopback_users` and the
    /// counters apply as to [`Access::authenticate`].
    pub fn authenticate_external(&self, name: &str, loopback: bool) -> Result<User, LoginError> {
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        let result = match self.user(name) {
            None => Err(LoginError::BadCredentials),
            Some(u) if !loopback && self.is_loopback_only(&u.name) => Err(LoginError::LoopbackOnly),
            Some(u) => Ok(u),
        };
        if result.is_err() {
            self.stats.failed.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Whether `user` may only log in from loopback addresses.
    pub fn is_loopback_only(&self, user: &str) -> bool {
        self.loopback_users.iter().any(|l| l == user)
    }

    // ---- users ----

    /// The user called `name`.
    pub fn user(&self, name: &str) -> Option<User> {
        self.read().users.get(name).cloned()
    }

    /// Every user, by name.
    pub fn users(&self) -> Vec<User> {
        self.read().users.values().cloned().collect()
    }

    /// Adds or replaces a user (its permissions and limits stay); true when it is new.
    pub fn put_user(&self, user: User) -> BrokerResult<bool> {
        self.change(|st, ops| {
            let limits = st.user_limits.get(&user.name).cloned().unwrap_or_default();
            ops.push(Op::user(&user, &limits));
            Ok(st.users.insert(user.name.clone(), user).is_none())
        })
    }

    /// Removes a user with its permissions, topic permissions and limits; false if there was
    /// none. Its connections are the caller's (see [`crate::broker::Broker::delete_user`]).
    pub(crate) fn remove_user(&self, name: &str) -> BrokerResult<bool> {
        self.change(|st, ops| {
            if st.users.remove(name).is_none() {
                return Ok(false);
            }
            ops.push(Op::delete_user(name));
            st.user_limits.remove(name);
            st.permissions.retain(|(v, u), _| {
                let keep = u != name;
                if !keep {
                    ops.push(Op::delete_permission(v, u));
                }
                keep
            });
            st.topic.retain(|(v, u, x), _| {
                let keep = u != name;
                if !keep {
                    ops.push(Op::delete_topic(v, u, x));
                }
                keep
            });
            Ok(true)
        })
    }

    /// A user's limits.
    pub fn user_limits(&self, user: &str) -> LimitMap {
        self.read()
            .user_limits
            .get(user)
            .cloned()
            .unwrap_or_default()
    }

    /// Every user's limits (users without any are left out), by user.
    pub fn all_user_limits(&self) -> Vec<(String, LimitMap)> {
        let st = self.read();
        st.user_limits
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(u, l)| (u.clone(), l.clone()))
            .collect()
    }

    /// Replaces a user's limits (checked with [`check_limits`]); `NotFound` if no such user.
    pub fn set_user_limits(&self, user: &str, limits: LimitMap) -> BrokerResult<()> {
        self.change(|st, ops| {
            let Some(u) = st.users.get(user) else {
                return Err(BrokerError::NotFound(format!("no user '{user}'")));
            };
            ops.push(Op::user(u, &limits));
            st.user_limits.insert(user.to_string(), limits);
            Ok(())
        })
    }

    // ---- vhosts ----

    /// A vhost's metadata and limits.
    pub fn vhost_info(&self, name: &str) -> Option<VhostInfo> {
        self.read().vhosts.get(name).cloned()
    }

    /// Every vhost's metadata, by name.
    pub fn vhost_infos(&self) -> Vec<VhostInfo> {
        self.read().vhosts.values().cloned().collect()
    }

    /// Adds or replaces a vhost's record; true when it is new. Its runtime objects are the
    /// broker's (see [`crate::broker::Broker::put_vhost`]).
    pub(crate) fn put_vhost_info(&self, info: VhostInfo) -> BrokerResult<bool> {
        self.change(|st, ops| {
            ops.push(Op::vhost(&info));
            Ok(st.vhosts.insert(info.name.clone(), info).is_none())
        })
    }

    /// Removes a vhost's record with every permission and topic permission in it.
    pub(crate) fn remove_vhost_info(&self, name: &str) -> BrokerResult<bool> {
        self.change(|st, ops| {
            let existed = st.vhosts.remove(name).is_some();
            ops.push(Op::delete_vhost(name));
            st.permissions.retain(|(v, u), _| {
                let keep = v != name;
                if !keep {
                    ops.push(Op::delete_permission(v, u));
                }
                keep
            });
            st.topic.retain(|(v, u, x), _| {
                let keep = v != name;
                if !keep {
                    ops.push(Op::delete_topic(v, u, x));
                }
                keep
            });
            Ok(existed)
        })
    }

    /// Replaces a vhost's limits; `NotFound` if no such vhost.
    pub fn set_vhost_limits(&self, vhost: &str, limits: LimitMap) -> BrokerResult<()> {
        self.change(|st, ops| {
            let Some(info) = st.vhosts.get_mut(vhost) else {
                return Err(BrokerError::NotFound(format!("no vhost '{vhost}'")));
            };
            info.limits = limits;
            ops.push(Op::vhost(info));
            Ok(())
        })
    }

    // ---- permissions ----

    /// Every permission, by vhost then user.
    pub fn permissions(&self) -> Vec<Permission> {
        self.read()
            .permissions
            .values()
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// `user`'s permission in `vhost`.
    pub fn permission(&self, vhost: &str, user: &str) -> Option<Permission> {
        let st = self.read();
        st.permissions
            .get(&(vhost.to_string(), user.to_string()))
            .map(|(p, _)| p.clone())
    }

    /// Whether `user` has a permission in `vhost`.
    pub fn has_permission(&self, vhost: &str, user: &str) -> bool {
        self.read()
            .permissions
            .contains_key(&(vhost.to_string(), user.to_string()))
    }

    /// Sets a permission; true when the user had none in that vhost. Refused (406 text) when
    /// the user or vhost does not exist (`vhost_or_user_not_found`) or a pattern does not
    /// compile.
    pub fn put_permission(&self, p: Permission) -> BrokerResult<bool> {
        let compiled = Arc::new(Compiled::new(&p).map_err(BrokerError::PreconditionFailed)?);
        self.change(|st, ops| {
            if !st.users.contains_key(&p.user) || !st.vhosts.contains_key(&p.vhost) {
                return Err(BrokerError::PreconditionFailed(
                    "vhost_or_user_not_found".into(),
                ));
            }
            ops.push(Op::permission(&p));
            let key = (p.vhost.clone(), p.user.clone());
            Ok(st.permissions.insert(key, (p, compiled)).is_none())
        })
    }

    /// Removes a permission; false if there was none.
    pub fn delete_permission(&self, vhost: &str, user: &str) -> BrokerResult<bool> {
        self.change(|st, ops| {
            let gone = st
                .permissions
                .remove(&(vhost.to_string(), user.to_string()))
                .is_some();
            if gone {
                ops.push(Op::delete_permission(vhost, user));
            }
            Ok(gone)
        })
    }

    // ---- topic permissions ----

    /// Every topic permission, by vhost, user, exchange.
    pub fn topic_permissions(&self) -> Vec<TopicPermission> {
        self.read().topic.values().cloned().collect()
    }

    /// Sets a topic permission; true when new. Refused like [`Access::put_permission`].
    pub fn put_topic_permission(&self, t: TopicPermission) -> BrokerResult<bool> {
        for p in [&t.write, &t.read] {
            // Checked with the variables in place, as they may be set; invalid is 400.
            pattern::Matcher::compile(&pattern::expand(p, &[("username", "u"), ("vhost", "v")]))
                .map_err(|e| BrokerError::PreconditionFailed(format!("invalid regex: {e}")))?;
        }
        self.change(|st, ops| {
            if !st.users.contains_key(&t.user) || !st.vhosts.contains_key(&t.vhost) {
                return Err(BrokerError::PreconditionFailed(
                    "vhost_or_user_not_found".into(),
                ));
            }
            ops.push(Op::topic(&t));
            let key = (t.vhost.clone(), t.user.clone(), t.exchange.clone());
            Ok(st.topic.insert(key, t).is_none())
        })
    }

    /// Removes `user`'s topic permissions in `vhost` (of one exchange, or all); false if there
    /// were none.
    pub fn delete_topic_permissions(
        &self,
        vhost: &str,
        user: &str,
        exchange: Option<&str>,
    ) -> BrokerResult<bool> {
        self.change(|st, ops| {
            let before = st.topic.len();
            st.topic.retain(|(v, u, x), _| {
                let hit = v == vhost && u == user && exchange.is_none_or(|e| e == x);
                if hit {
                    ops.push(Op::delete_topic(v, u, x));
                }
                !hit
            });
            Ok(st.topic.len() != before)
        })
    }

    // ---- authorisation ----

    /// What `user` may do in `vhost`, compiled now.
    pub fn grant(&self, user: &str, vhost: &str) -> Arc<Grant> {
        let st = self.read();
        let generation = self.generation();
        let perm = st
            .permissions
            .get(&(vhost.to_string(), user.to_string()))
            .map(|(_, c)| Arc::clone(c));
        let topics: Vec<&TopicPermission> = st
            .topic
            .range((vhost.to_string(), user.to_string(), String::new())..)
            .take_while(|((v, u, _), _)| v == vhost && u == user)
            .map(|(_, t)| t)
            .collect();
        let max_queues = st
            .vhosts
            .get(vhost)
            .and_then(|i| limit(&i.limits, "max-queues"));
        Arc::new(Grant::build(
            user, vhost, generation, perm, &topics, max_queues,
        ))
    }

    /// Recompiles `grant` if the access model changed since it was compiled.
    pub fn refresh(&self, grant: &mut Arc<Grant>) {
        if grant.generation() != self.generation() {
            *grant = self.grant(grant.user(), grant.vhost());
        }
    }

    /// connection.open: admits `user` to `vhost` unless the vhost's or the user's connection
    /// limit is reached or the user has no permission there. The refusal is the text of a 530
    /// NOT_ALLOWED, RabbitMQ's, checked in its order.
    pub fn open_connection(
        &self,
        user: &str,
        vhost: &str,
    ) -> Result<(ConnectionSlot, Arc<Grant>), String> {
        let (vlimit, ulimit) = {
            let st = self.read();
            (
                st.vhosts
                    .get(vhost)
                    .and_then(|i| limit(&i.limits, "max-connections")),
                st.user_limits
                    .get(user)
                    .and_then(|l| limit(l, "max-connections")),
            )
        };
        let grant = self.grant(user, vhost);
        let slot = self.tracking.admit_connection(user, vhost, |nv, nu| {
            if let Some(l) = vlimit.filter(|&l| nv >= l) {
                return Err(format!(
                    "access to vhost '{vhost}' refused for user '{user}': connection limit ({l}) is reached"
                ));
            }
            if let Some(l) = ulimit.filter(|&l| nu >= l) {
                return Err(format!(
                    "connection refused for user '{user}': user connection limit ({l}) is reached"
                ));
            }
            if !grant.has_vhost_access() {
                return Err(format!("access to vhost '{vhost}' refused for user '{user}'"));
            }
            Ok(())
        })?;
        Ok((slot, grant))
    }

    /// channel.open: admits a channel of `user` unless its `max-channels` is reached (the 530
    /// text as RabbitMQ's).
    pub fn open_channel(&self, user: &str) -> Result<ChannelSlot, String> {
        let l = self
            .read()
            .user_limits
            .get(user)
            .and_then(|l| limit(l, "max-channels"));
        self.tracking.admit_channel(user, l).map_err(|l| {
            format!(
                "number of channels opened for user '{user}' has reached the maximum allowed user limit of ({l})"
            )
        })
    }

    /// Open connections and channels of `user` (as the limits count them).
    pub fn usage(&self, user: &str) -> (u64, u64) {
        (
            self.tracking.user_connections(user),
            self.tracking.user_channels(user),
        )
    }
}
