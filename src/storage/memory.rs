//! [`MemoryStore`]: a [`Store`] that keeps everything in RAM.
//!
//! Owns nothing but its maps; used by the broker's and session's tests, and by a broker run without
//! a data directory. It behaves like [`SledStore`](super::SledStore) in every observable way except
//! that nothing survives the process (and `flush` has nothing to do). Keys are the same encoded keys
//! as on disk ([`record`]), so identity rules (e.g. a binding is all its fields)
//! cannot drift between the two stores.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

use super::record;
use super::{
    BindingRecord, Definitions, ExchangeRecord, FlushGate, FlushHold, MessageRecord, MessageView,
    PutOutcome, QueueRecord, QueueStore, Store, StoreError, StoredMessage,
};

/// Definitions keyed by their encoded keys (ordered, so loading is deterministic).
#[derive(Default)]
struct Defs {
    exchanges: BTreeMap<Vec<u8>, ExchangeRecord>,
    queues: BTreeMap<Vec<u8>, QueueRecord>,
    bindings: BTreeMap<Vec<u8>, BindingRecord>,
    /// Durable objects by (kind, key).
    objects: BTreeMap<(String, String), Bytes>,
    /// Open message areas by vhost/name key.
    areas: HashMap<Vec<u8>, Arc<MemoryQueue>>,
    /// Delayed messages by key.
    delayed: BTreeMap<super::DelayKey, Bytes>,
}

/// An in-memory [`Store`]. Cheap to create; `Default` gives an empty one.
#[derive(Default)]
pub struct MemoryStore {
    defs: Mutex<Defs>,
    gate: FlushGate,
    #[cfg(test)]
    reads: Arc<ReadGate>,
}

/// Tests only: holds the next `n` message reads until all `n` wait, so that a test can have
/// several queues' refills planned before any of them reads (as on a busy broker).
#[cfg(test)]
#[derive(Default)]
pub(crate) struct ReadGate {
    waiting: Mutex<usize>,
    all_there: std::sync::Condvar,
}

#[cfg(test)]
impl ReadGate {
    fn pass(&self) {
        let mut left = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if *left == 0 {
            return;
        }
        *left -= 1;
        if *left == 0 {
            self.all_there.notify_all();
            return;
        }
        // Bounded: a test whose reads never all come fails on its assertions, not by hanging.
        let _ = self
            .all_there
            .wait_timeout_while(left, std::time::Duration::from_secs(30), |l| *l > 0);
    }
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Tests only: the next `n` message reads wait for each other (see [`ReadGate`]).
    #[cfg(test)]
    pub(crate) fn hold_reads(&self, n: usize) {
        *self
            .reads
            .waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = n;
    }

    fn defs(&self) -> MutexGuard<'_, Defs> {
        // A panic while holding this lock cannot leave the maps half-updated (each operation is a
        // single map insert/remove), so a poisoned lock is still consistent.
        self.defs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn open_spill(&self, _vhost: &str, _name: &str) -> Result<Box<dyn super::Spill>, StoreError> {
        Ok(Box::new(super::spill::MemorySpill::default()))
    }

    fn put_delayed(&self, key: super::DelayKey, value: &[u8]) -> Result<(), StoreError> {
        self.defs()
            .delayed
            .insert(key, Bytes::copy_from_slice(value));
        Ok(())
    }

    fn remove_delayed(&self, keys: &[super::DelayKey]) -> Result<(), StoreError> {
        let mut defs = self.defs();
        for k in keys {
            defs.delayed.remove(k);
        }
        Ok(())
    }

    fn read_delayed(
        &self,
        from: super::DelayKey,
        limit: usize,
    ) -> Result<super::DelayedPage, StoreError> {
        let defs = self.defs();
        let mut it = defs.delayed.range(from..);
        let entries: Vec<_> = it
            .by_ref()
            .take(limit)
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let resume = it.next().map(|(k, _)| *k);
        Ok(super::DelayedPage {
            entries,
            complete: resume.is_none(),
            resume,
        })
    }

    fn put_exchange(&self, r: &ExchangeRecord) -> Result<(), StoreError> {
        let key = record::exchange_key(&r.vhost, &r.name);
        self.defs().exchanges.insert(key, r.clone());
        Ok(())
    }

    fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        self.defs()
            .exchanges
            .remove(&record::exchange_key(vhost, name));
        Ok(())
    }

    fn put_queue(&self, r: &QueueRecord) -> Result<(), StoreError> {
        let key = record::queue_key(&r.vhost, &r.name);
        self.defs().queues.insert(key, r.clone());
        Ok(())
    }

    fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        let key = record::queue_key(vhost, name);
        let mut defs = self.defs();
        if let Some(area) = defs.areas.remove(&key) {
            area.deleted.store(true, Ordering::Release);
            area.messages().map.clear();
        }
        defs.queues.remove(&key);
        Ok(())
    }

    fn put_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        self.defs()
            .bindings
            .insert(record::binding_key(r), r.clone());
        Ok(())
    }

    fn delete_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        self.defs().bindings.remove(&record::binding_key(r));
        Ok(())
    }

    fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let defs = self.defs();
        Ok(Definitions {
            exchanges: defs.exchanges.values().cloned().collect(),
            queues: defs.queues.values().cloned().collect(),
            bindings: defs.bindings.values().cloned().collect(),
        })
    }

    fn open_queue(&self, vhost: &str, name: &str) -> Result<Arc<dyn QueueStore>, StoreError> {
        let key = record::queue_key(vhost, name);
        let area = self
            .defs()
            .areas
            .entry(key)
            .or_insert_with(|| {
                Arc::new(MemoryQueue {
                    #[cfg(test)]
                    reads: Arc::clone(&self.reads),
                    ..MemoryQueue::default()
                })
            })
            .clone();
        Ok(area)
    }

    fn put_object(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.defs().objects.insert(
            (kind.to_owned(), key.to_owned()),
            Bytes::copy_from_slice(value),
        );
        Ok(())
    }

    fn delete_object(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.defs()
            .objects
            .remove(&(kind.to_owned(), key.to_owned()));
        Ok(())
    }

    fn load_objects(&self, kind: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
        Ok(self
            .defs()
            .objects
            .range((kind.to_owned(), String::new())..)
            .take_while(|((k, _), _)| k == kind)
            .map(|((_, key), v)| (key.clone(), v.clone()))
            .collect())
    }

    fn hold_flush(&self) -> FlushHold<'_> {
        self.gate.hold()
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Nothing to write; taking the gate keeps `hold_flush` meaning the same as on disk.
        drop(self.gate.exclusive());
        Ok(())
    }
}

/// One stored message: its delivered flag and record.
struct Entry {
    delivered: bool,
    delivery_count: u32,
    record: MessageRecord,
}

/// A queue's messages, and the highest id put (puts must ascend, as in the sled store).
#[derive(Default)]
struct Messages {
    map: BTreeMap<u64, Entry>,
    last_put: Option<u64>,
}

/// A queue's message area in memory.
#[derive(Default)]
struct MemoryQueue {
    messages: Mutex<Messages>,
    /// Set by `delete_queue`: further use is an error, as with the sled store.
    deleted: AtomicBool,
    #[cfg(test)]
    reads: Arc<ReadGate>,
}

impl MemoryQueue {
    fn check_live(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Io(
                "message store used after its queue was deleted".into(),
            ));
        }
        Ok(())
    }

    fn messages(&self) -> MutexGuard<'_, Messages> {
        // Each operation is one map call, so a poisoned map is still consistent.
        self.messages.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl QueueStore for MemoryQueue {
    fn put(&self, id: u64, m: MessageView<'_>) -> Result<PutOutcome, StoreError> {
        self.check_live()?;
        let mut msgs = self.messages();
        if let Some(last) = msgs.last_put
            && id <= last
        {
            return Err(StoreError::OutOfOrder { id, last });
        }
        msgs.last_put = Some(id);
        msgs.map.insert(
            id,
            Entry {
                delivered: false,
                delivery_count: 0,
                record: MessageRecord::from_view(&m),
            },
        );
        Ok(PutOutcome::Buffered)
    }

    fn write_sealed(&self) -> Result<(), StoreError> {
        self.check_live()
    }

    fn mark_delivered(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        if let Some(e) = self.messages().map.get_mut(&id) {
            e.delivered = true;
        }
        Ok(())
    }

    fn set_delivery_count(&self, id: u64, count: u32) -> Result<(), StoreError> {
        self.check_live()?;
        if let Some(e) = self.messages().map.get_mut(&id) {
            e.delivery_count = count;
        }
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        self.messages().map.remove(&id);
        Ok(())
    }

    fn remove_from(&self, from_id: u64) -> Result<usize, StoreError> {
        self.check_live()?;
        Ok(self.messages().map.split_off(&from_id).len())
    }

    fn read(&self, from_id: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        #[cfg(test)]
        self.reads.pass();
        self.check_live()?;
        Ok(self
            .messages()
            .map
            .range(from_id..)
            .take(limit)
            .map(|(&id, e)| StoredMessage {
                id,
                delivered: e.delivered,
                delivery_count: e.delivery_count,
                record: e.record.clone(),
            })
            .collect())
    }

    fn len(&self) -> usize {
        self.messages().map.len()
    }

    fn last_id(&self) -> Option<u64> {
        self.messages().map.last_key_value().map(|(&id, _)| id)
    }
}
