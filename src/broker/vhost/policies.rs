//! A vhost's policies and operator policies: set, delete, list, persist, and apply to queues.

use std::sync::{RwLockReadGuard, RwLockWriteGuard};

use super::VHost;
use super::persist::DefOp;
use crate::broker::error::BrokerResult;
use crate::broker::policy::{Policies, Policy, PolicyKind, build};
use crate::broker::queue::Followups;
use crate::broker::time::Now;

/// The store key of a vhost's policy: the vhost's length, the vhost, then the name (no
/// separator a name could contain is needed).
fn object_key(vhost: &str, name: &str) -> String {
    format!("{}:{vhost}{name}", vhost.len())
}

impl VHost {
    pub(crate) fn policies(&self) -> RwLockReadGuard<'_, Policies> {
        self.policies.read().unwrap_or_else(|e| e.into_inner())
    }

    fn policies_mut(&self) -> RwLockWriteGuard<'_, Policies> {
        self.policies.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The policies of one kind, by name.
    pub fn policy_list(&self, kind: PolicyKind) -> Vec<Policy> {
        self.policies().list(kind).to_vec()
    }

    /// Adds or replaces a policy (already checked by [`build`]), persists it, and applies
    /// every policy again to every queue. True when it is new.
    pub fn put_policy(&self, kind: PolicyKind, p: Policy, now: Now) -> BrokerResult<bool> {
        let created = self.change(|defs| {
            defs.push(DefOp::PutObject {
                kind: kind.store_kind(),
                key: object_key(&self.name, &p.name),
                value: p.to_json().to_string().into_bytes(),
            });
            Ok(self.policies_mut().put(kind, p))
        })?;
        self.reapply_policies(now)?;
        Ok(created)
    }

    /// Removes a policy; false when there was none.
    pub fn delete_policy(&self, kind: PolicyKind, name: &str, now: Now) -> BrokerResult<bool> {
        let gone = self.change(|defs| {
            let gone = self.policies_mut().delete(kind, name);
            if gone {
                defs.push(DefOp::DeleteObject {
                    kind: kind.store_kind(),
                    key: object_key(&self.name, name),
                });
            }
            Ok(gone)
        })?;
        if gone {
            self.reapply_policies(now)?;
        }
        Ok(gone)
    }

    /// Every queue runs with what the policies say now.
    fn reapply_policies(&self, now: Now) -> BrokerResult<()> {
        for q in self.queues() {
            let applied = self.policies().applied_to(&q.name);
            let mut fx = Followups::default();
            let r = q.apply_policy(applied, now, &mut fx);
            self.run(fx, now)?;
            r?;
        }
        Ok(())
    }

    /// Loads this vhost's stored policies (startup). Stored policies that no longer pass the
    /// checks are logged and skipped.
    pub(super) fn load_policies(&self) -> BrokerResult<()> {
        for kind in [PolicyKind::Policy, PolicyKind::Operator] {
            let prefix = object_key(&self.name, "");
            let objects = self.shared.store.load_objects(kind.store_kind())?;
            for (key, value) in objects.into_iter().filter(|(k, _)| k.starts_with(&prefix)) {
                let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&value);
                let p = parsed.map_err(|e| e.to_string()).and_then(|v| {
                    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
                    build(
                        kind,
                        &self.name,
                        &s("name").unwrap_or_default(),
                        &s("pattern").unwrap_or_default(),
                        s("apply-to").as_deref(),
                        v.get("priority"),
                        v.get("definition").unwrap_or(&serde_json::Value::Null),
                    )
                    .map_err(|e| e.0)
                });
                match p {
                    Ok(p) => {
                        self.policies_mut().put(kind, p);
                    }
                    Err(e) => {
                        tracing::error!(vhost = %self.name, key, error = %e, "stored policy refused; skipped");
                    }
                }
            }
        }
        Ok(())
    }
}
