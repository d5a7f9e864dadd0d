//! The deduplication caches of a vhost's exchanges and queues (see
//! [`crate::broker::exchange::dedup`]), by owner. Kept here rather than on the queue record, so
//! the queue types need not know about them; publishing consults them only when the vhost has
//! any.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::VHost;
use crate::broker::error::{BrokerError, BrokerResult};
use crate::broker::exchange::dedup::{DedupSpec, Deduper, object_kind};
use crate::broker::time::Now;
use crate::protocol::types::FieldTable;

/// Which kind of owner a cache belongs to.
pub(crate) type Owner = (bool, Arc<str>);

impl VHost {
    /// The deduplication settings in declare arguments (406 with LavinMQ's text).
    pub(crate) fn dedup_spec(args: &FieldTable) -> BrokerResult<Option<DedupSpec>> {
        DedupSpec::parse(args).map_err(BrokerError::PreconditionFailed)
    }

    /// Gives a new exchange (`queue` false) or queue its cache; a durable owner's is persisted,
    /// and with `load` it is read back from the store first (startup only: it does I/O).
    pub(crate) fn attach_dedup(
        &self,
        queue: bool,
        name: &Arc<str>,
        durable: bool,
        spec: DedupSpec,
        load: Option<Now>,
    ) -> BrokerResult<()> {
        let persist = durable.then(|| {
            (
                Arc::clone(&self.shared.store),
                object_kind(&self.name, queue, name),
            )
        });
        let d = Deduper::new(spec, persist);
        if let Some(now) = load {
            d.load(now)?;
        }
        if self.dedup.insert((queue, Arc::clone(name)), d).is_none() {
            self.dedup_owners.fetch_add(1, Ordering::Release);
        }
        Ok(())
    }

    /// Drops an owner's cache, stored entries included (buffered deletes: no I/O).
    pub(crate) fn detach_dedup(&self, queue: bool, name: &Arc<str>) {
        if let Some((_, d)) = self.dedup.remove(&(queue, Arc::clone(name))) {
            self.dedup_owners.fetch_sub(1, Ordering::Release);
            if let Err(e) = d.clear() {
                tracing::error!(name = %name, error = %e, "clearing a deduplication cache failed");
            }
        }
    }

    /// The cache of an exchange or queue, if it deduplicates.
    pub(crate) fn deduper(&self, queue: bool, name: &Arc<str>) -> Option<Arc<Deduper>> {
        if self.no_dedup() {
            return None;
        }
        self.dedup
            .get(&(queue, Arc::clone(name)))
            .map(|d| Arc::clone(d.value()))
    }

    /// True when no exchange or queue of the vhost deduplicates (the publish fast path).
    pub(crate) fn no_dedup(&self) -> bool {
        self.dedup_owners.load(Ordering::Acquire) == 0
    }
}
