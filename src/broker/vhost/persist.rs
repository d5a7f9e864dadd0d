//! Definition writes, done after the definitions lock, in the order the changes were made.
//!
//! A change queues its writes ([`DefOp`]) while it holds the definitions lock, so the queue's
//! order is the order of the changes in memory. [`VHost::persist`] then takes the queued
//! writes and does them under `persisting`, a lock that orders store writes and nothing else:
//! whoever persists first writes everyone's queued writes, and a caller returns only once its
//! own writes are done (it waits for `persisting`). Publishes, consumers and management never
//! take either lock.

use super::{Changes, VHost};
use crate::broker::error::BrokerResult;
use crate::storage::{BindingRecord, ExchangeRecord, QueueRecord, StoreError};

/// One definition write.
#[derive(Debug)]
pub(crate) enum DefOp {
    PutExchange(ExchangeRecord),
    DeleteExchange(String),
    PutQueue(QueueRecord),
    DeleteQueue(String),
    PutBinding(BindingRecord),
    DeleteBinding(BindingRecord),
    PutObject {
        kind: &'static str,
        key: String,
        value: Vec<u8>,
    },
    DeleteObject {
        kind: &'static str,
        key: String,
    },
}

impl Changes {
    /// Queues a write.
    pub(crate) fn push(&mut self, op: DefOp) {
        self.pending.push(op);
    }
}

impl VHost {
    /// Runs `f` under the definitions lock, then writes what it queued.
    pub(crate) fn change<T>(
        &self,
        f: impl FnOnce(&mut Changes) -> BrokerResult<T>,
    ) -> BrokerResult<T> {
        let t = {
            let mut defs = self.defs();
            f(&mut defs)?
        };
        self.persist()?;
        Ok(t)
    }

    /// Writes every queued definition write, in order. On a store error the writes not done
    /// stay queued (the next change retries them) and the error is returned.
    pub(crate) fn persist(&self) -> Result<(), StoreError> {
        let _order = self.persisting.lock().unwrap_or_else(|e| e.into_inner());
        let ops = std::mem::take(&mut self.defs().pending);
        if ops.is_empty() {
            return Ok(());
        }
        let store = &*self.shared.store;
        let mut ops = ops.into_iter();
        while let Some(op) = ops.next() {
            let r = match &op {
                DefOp::PutExchange(r) => store.put_exchange(r),
                DefOp::DeleteExchange(name) => store.delete_exchange(&self.name, name),
                DefOp::PutQueue(r) => store.put_queue(r),
                DefOp::DeleteQueue(name) => store.delete_queue(&self.name, name),
                DefOp::PutBinding(r) => store.put_binding(r),
                DefOp::DeleteBinding(r) => store.delete_binding(r),
                DefOp::PutObject { kind, key, value } => store.put_object(kind, key, value),
                DefOp::DeleteObject { kind, key } => store.delete_object(kind, key),
            };
            if let Err(e) = r {
                let mut defs = self.defs();
                let mut rest: Vec<DefOp> = std::iter::once(op).chain(ops).collect();
                rest.append(&mut defs.pending);
                defs.pending = rest;
                drop(defs);
                self.shared.commit.note_write();
                return Err(e);
            }
        }
        self.shared.commit.note_write();
        Ok(())
    }
}
