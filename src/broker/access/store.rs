//! The access model in the store: object kinds and keys, the writes a change queues, the
//! first-start seed and loading at start.

use super::model::{LimitMap, Permission, StoredUser, TopicPermission, User, VhostInfo};
use super::{Access, AccessOptions, Compiled, State};
use crate::broker::error::BrokerResult;
use crate::storage::StoreError;
use std::sync::Arc;

const USER: &str = "access.user";
const VHOST: &str = "access.vhost";
const PERMISSION: &str = "access.permission";
const TOPIC: &str = "access.topic-permission";
/// Present once the seed is stored: later starts load, never seed again.
const SEEDED: &str = "access.seeded";

/// `len:a` then `b`: a key no name can make ambiguous.
fn pair(a: &str, b: &str) -> String {
    format!("{}:{a}{b}", a.len())
}

/// One store write.
#[derive(Debug)]
pub(super) enum Op {
    Put(&'static str, String, Vec<u8>),
    Delete(&'static str, String),
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Plain structs of strings and maps: serialising cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Op {
    pub(super) fn user(u: &User, limits: &LimitMap) -> Op {
        let stored = StoredUser {
            user: u.clone(),
            limits: limits.clone(),
        };
        Op::Put(USER, u.name.clone(), json(&stored))
    }
    pub(super) fn delete_user(name: &str) -> Op {
        Op::Delete(USER, name.to_string())
    }
    pub(super) fn vhost(v: &VhostInfo) -> Op {
        Op::Put(VHOST, v.name.clone(), json(v))
    }
    pub(super) fn delete_vhost(name: &str) -> Op {
        Op::Delete(VHOST, name.to_string())
    }
    pub(super) fn permission(p: &Permission) -> Op {
        Op::Put(PERMISSION, pair(&p.vhost, &p.user), json(p))
    }
    pub(super) fn delete_permission(vhost: &str, user: &str) -> Op {
        Op::Delete(PERMISSION, pair(vhost, user))
    }
    pub(super) fn topic(t: &TopicPermission) -> Op {
        Op::Put(TOPIC, pair(&t.vhost, &pair(&t.user, &t.exchange)), json(t))
    }
    pub(super) fn delete_topic(vhost: &str, user: &str, exchange: &str) -> Op {
        Op::Delete(TOPIC, pair(vhost, &pair(user, exchange)))
    }
}

/// Decodes stored records of one kind; a damaged one is logged and skipped.
fn load<T: serde::de::DeserializeOwned>(access: &Access, kind: &str) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for (key, value) in access.store.load_objects(kind)? {
        match serde_json::from_slice(&value) {
            Ok(v) => out.push(v),
            Err(e) => {
                tracing::error!(kind, key, error = %e, "stored access record unreadable; skipped")
            }
        }
    }
    Ok(out)
}

impl Access {
    /// Does queued writes in order.
    pub(super) fn write(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        for op in ops {
            match op {
                Op::Put(kind, key, value) => self.store.put_object(kind, &key, &value)?,
                Op::Delete(kind, key) => self.store.delete_object(kind, &key)?,
            }
        }
        self.commit.note_write();
        Ok(())
    }

    /// The configuration's records, in memory: its users with full rights on the default vhost
    /// (RabbitMQ's default user and vhost).
    pub(super) fn seed(&self, opts: &AccessOptions) {
        let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
        *st = State::default();
        let mut vhost = VhostInfo::named(&opts.default_vhost);
        vhost.description = "Default virtual host".into();
        st.vhosts.insert(vhost.name.clone(), vhost);
        for u in &opts.users {
            st.users.insert(u.name.clone(), u.clone());
            let p = Permission {
                user: u.name.clone(),
                vhost: opts.default_vhost.clone(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            };
            if let Ok(c) = Compiled::new(&p) {
                st.permissions
                    .insert((p.vhost.clone(), p.user.clone()), (p, Arc::new(c)));
            }
        }
    }

    /// Start-up: loads the stored records, or on the first start stores the seed. Returns the
    /// names of the vhosts, whose runtime objects the broker creates.
    pub(crate) fn load(&self) -> BrokerResult<Vec<String>> {
        let _order = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        if self.store.load_objects(SEEDED)?.is_empty() {
            let ops = {
                let st = self.read();
                let mut ops: Vec<Op> = st.vhosts.values().map(Op::vhost).collect();
                ops.extend(st.users.values().map(|u| Op::user(u, &LimitMap::new())));
                ops.extend(st.permissions.values().map(|(p, _)| Op::permission(p)));
                ops.push(Op::Put(SEEDED, String::new(), b"1".to_vec()));
                ops
            };
            self.write(ops)?;
            return Ok(self.read().vhosts.keys().cloned().collect());
        }
        let mut st = State::default();
        for v in load::<VhostInfo>(self, VHOST)? {
            st.vhosts.insert(v.name.clone(), v);
        }
        for s in load::<StoredUser>(self, USER)? {
            if !s.limits.is_empty() {
                st.user_limits.insert(s.user.name.clone(), s.limits);
            }
            st.users.insert(s.user.name.clone(), s.user);
        }
        for p in load::<Permission>(self, PERMISSION)? {
            match Compiled::new(&p) {
                Ok(c) => {
                    st.permissions
                        .insert((p.vhost.clone(), p.user.clone()), (p, Arc::new(c)));
                }
                Err(e) => {
                    tracing::error!(user = %p.user, vhost = %p.vhost, error = %e, "stored permission refused; skipped")
                }
            }
        }
        for t in load::<TopicPermission>(self, TOPIC)? {
            st.topic
                .insert((t.vhost.clone(), t.user.clone(), t.exchange.clone()), t);
        }
        let names = st.vhosts.keys().cloned().collect();
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = st;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Ok(names)
    }

    /// Creates the record of a vhost that has stored objects but no record (a data directory
    /// from before vhosts were stored).
    pub(crate) fn adopt_vhost(&self, name: &str) -> BrokerResult<()> {
        if self.vhost_info(name).is_none() {
            self.put_vhost_info(VhostInfo::named(name))?;
        }
        Ok(())
    }
}
