//! Persistence behind a trait: durable definitions and queued messages, as opaque records.
//!
//! This module owns what survives a restart and what is paged out of memory:
//! - definitions of durable exchanges, queues and bindings ([`ExchangeRecord`], [`QueueRecord`],
//!   [`BindingRecord`]), written with `put_*`/`delete_*` and read back once with
//!   [`Store::load_definitions`];
//! - durable objects of any other kind ([`Store::put_object`]: policies, users, ...), opaque;
//! - one message area per durable queue ([`QueueStore`], from [`Store::open_queue`]): its
//!   persistent messages (with the broker's opaque metadata), keyed by `u64` ids the broker
//!   assigns in ascending queue order, with their delivered flags and delivery counts. Writes
//!   are cheap in-memory appends and bit flips; the on-disk store ([`SledStore`]) groups them
//!   into chunks (see [`chunk`]) appended to the node's body log ([`bodylog`]) and indexed in
//!   sled at [`Store::flush`];
//! - a spill file per queue ([`Spill`], from [`Store::open_spill`]) for transient messages paged
//!   out of a full in-memory window, emptied at every start;
//! - group commit: [`Store::flush`] makes everything written so far durable (for the on-disk
//!   store: the chunks and one index record appended to the body log and one fdatasync, then
//!   one sled transaction, not synced: the body log is sled's write-ahead log), all or nothing;
//!   [`Store::hold_flush`] keeps writes that belong together in one flush.
//!
//! What the broker may rely on: every write call (`put`, `remove`, `mark_delivered`,
//! `set_delivery_count`, `put_*`, `delete_*`, `*_object`) is in memory only, applied at the next
//! flush, so it may be made under a broker lock; [`QueueStore::read`],
//! [`QueueStore::write_sealed`], [`Store::open_queue`] and the `load_*` calls may do I/O and
//! must be made with no broker lock held.
//!
//! It knows records, not broker types: AMQP property lists and argument tables arrive already
//! encoded, as opaque [`Bytes`]. The on-disk encoding lives in [`record`] (versioned, checked
//! decoding). Two implementations: [`SledStore`] (on disk) and [`MemoryStore`] (tests, and a broker
//! run without a data directory).
//!
//! Layering: storage imports nothing from the rest of the crate (not the broker, session, server
//! or management layers) and never touches the network. Damaged records never panic:
//! they are logged with `tracing::error!`, moved aside into a quarantine and skipped.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

pub mod bodylog;
pub mod chunk;
pub mod delayed_log;
pub mod memory;
pub mod record;
pub mod sled;
pub mod spill;

pub use self::sled::{LogStats, SledOptions, SledStore};
pub use memory::MemoryStore;
pub use spill::Spill;

/// Locks a mutex of the stores. Every critical section leaves its data consistent before
/// anything can panic, so a poisoned lock is still safe to use.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// [`lock`] if the mutex is free now; `None` while another thread holds it.
fn try_lock<T>(m: &std::sync::Mutex<T>) -> Option<std::sync::MutexGuard<'_, T>> {
    match m.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    }
}

#[cfg(test)]
mod tests;

/// Why a storage operation failed. The broker treats every one of these as fatal for the
/// operation (connection error 541), except that a damaged record met while loading is
/// quarantined rather than returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another store in this one) holds the data directory's lock.
    #[error("data directory {path} is in use by another process")]
    Locked {
        /// The data directory that could not be locked.
        path: PathBuf,
    },
    /// The underlying storage engine or file system failed.
    #[error("storage I/O: {0}")]
    Io(String),
    /// [`QueueStore::put`] was given an id not above every id stored or put before: the store
    /// keeps messages in id order and never reorders or replaces them.
    #[error("message id {id} is not above the last one put ({last})")]
    OutOfOrder {
        /// The refused id.
        id: u64,
        /// The highest id put (or found at open) before it.
        last: u64,
    },
    /// A stored record could not be decoded.
    #[error("corrupt record {key}: {reason}")]
    Corrupt {
        /// A printable form of the record's key (tree and key bytes).
        key: String,
        /// What was wrong with it.
        reason: String,
    },
}

/// A durable exchange's definition.
#[derive(Clone, Debug, PartialEq)]
pub struct ExchangeRecord {
    /// Virtual host the exchange lives in.
    pub vhost: String,
    /// Exchange name.
    pub name: String,
    /// Exchange type (`direct`, `fanout`, `topic`, `headers`, ...).
    pub kind: String,
    /// Delete when the last binding from it goes.
    pub auto_delete: bool,
    /// Clients may not publish to it directly.
    pub internal: bool,
    /// AMQP-encoded argument table, opaque here.
    pub arguments: Bytes,
}

/// A durable queue's definition (exclusive queues are never stored).
#[derive(Clone, Debug, PartialEq)]
pub struct QueueRecord {
    /// Virtual host the queue lives in.
    pub vhost: String,
    /// Queue name.
    pub name: String,
    /// Delete when the last consumer goes.
    pub auto_delete: bool,
    /// AMQP-encoded argument table, opaque here.
    pub arguments: Bytes,
}

/// A durable binding. All fields together are its identity: binding twice is one binding.
#[derive(Clone, Debug, PartialEq)]
pub struct BindingRecord {
    /// Virtual host of both ends.
    pub vhost: String,
    /// Source exchange.
    pub source: String,
    /// Destination queue or exchange.
    pub destination: String,
    /// Whether `destination` names an exchange (exchange-to-exchange binding).
    pub destination_is_exchange: bool,
    /// Binding key.
    pub routing_key: String,
    /// AMQP-encoded argument table, opaque here.
    pub arguments: Bytes,
}

/// Everything [`Store::load_definitions`] found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Definitions {
    /// Durable exchanges.
    pub exchanges: Vec<ExchangeRecord>,
    /// Durable queues.
    pub queues: Vec<QueueRecord>,
    /// Durable bindings.
    pub bindings: Vec<BindingRecord>,
}

/// A message to store, borrowed from the caller: writing it allocates nothing per message
/// beyond the store's own buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MessageView<'a> {
    /// Exchange it was published to.
    pub exchange: &'a str,
    /// Routing key it was published with.
    pub routing_key: &'a str,
    /// AMQP-encoded content-header property flags and property list, opaque here.
    pub properties: &'a [u8],
    /// Broker-owned metadata stored with the message (e.g. an expiry deadline), opaque here:
    /// [`QueueStore::read`] returns it unchanged.
    pub meta: &'a [u8],
    /// Message body (a large one is referenced by its chunk, not copied: `chunk::value`).
    pub body: &'a Bytes,
}

/// One stored copy of a message, as read back.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageRecord {
    /// Exchange it was published to.
    pub exchange: String,
    /// Routing key it was published with.
    pub routing_key: String,
    /// AMQP-encoded content-header property flags and property list, opaque here.
    pub properties: Bytes,
    /// Broker-owned metadata, exactly as given in [`MessageView::meta`].
    pub meta: Bytes,
    /// Message body.
    pub body: Bytes,
}

impl MessageRecord {
    /// An owned copy of a borrowed message.
    pub fn from_view(m: &MessageView<'_>) -> Self {
        MessageRecord {
            exchange: m.exchange.to_owned(),
            routing_key: m.routing_key.to_owned(),
            properties: Bytes::copy_from_slice(m.properties),
            meta: Bytes::copy_from_slice(m.meta),
            body: Bytes::copy_from_slice(m.body),
        }
    }

    /// The record as a [`MessageView`], to store it again.
    pub fn view(&self) -> MessageView<'_> {
        MessageView {
            exchange: &self.exchange,
            routing_key: &self.routing_key,
            properties: &self.properties,
            meta: &self.meta,
            body: &self.body,
        }
    }
}

/// A message read back from a [`QueueStore`].
#[derive(Clone, Debug, PartialEq)]
pub struct StoredMessage {
    /// Its id in the queue (queue order).
    pub id: u64,
    /// Whether it was delivered at least once ([`QueueStore::mark_delivered`]): it comes back with
    /// `redelivered = true`.
    pub delivered: bool,
    /// How many times it was delivered, as last set by [`QueueStore::set_delivery_count`]
    /// (RabbitMQ's `x-delivery-count`); 0 if never set.
    pub delivery_count: u32,
    /// The message itself.
    pub record: MessageRecord,
}

/// The broker's persistent store: definitions plus one [`QueueStore`] per queue.
///
/// Writes (including delivered marks) are guaranteed durable only after the next [`Store::flush`];
/// nothing here fsyncs on its own hot path.
pub trait Store: Send + Sync + 'static {
    /// Stores (or replaces) a durable exchange's definition.
    fn put_exchange(&self, r: &ExchangeRecord) -> Result<(), StoreError>;
    /// Removes an exchange's definition; absent is not an error.
    fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), StoreError>;
    /// Stores (or replaces) a durable queue's definition.
    fn put_queue(&self, r: &QueueRecord) -> Result<(), StoreError>;
    /// Deletes the queue's definition AND all its stored messages.
    ///
    /// A [`QueueStore`] handle obtained earlier for this queue must not be used afterwards; open a
    /// new one if the queue is declared again.
    fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), StoreError>;
    /// Stores a binding; idempotent.
    fn put_binding(&self, r: &BindingRecord) -> Result<(), StoreError>;
    /// Removes the binding equal to `r` in every field (arguments included); absent is not an error.
    fn delete_binding(&self, r: &BindingRecord) -> Result<(), StoreError>;
    /// All stored definitions. Damaged records are logged, quarantined and left out.
    fn load_definitions(&self) -> Result<Definitions, StoreError>;
    /// A handle for one durable queue's persistent messages, with whatever a previous run left.
    ///
    /// Opening the same queue again while a handle is alive returns the same handle.
    fn open_queue(&self, vhost: &str, name: &str) -> Result<Arc<dyn QueueStore>, StoreError>;
    /// A spill file for one queue's paged-out transient messages: a FIFO on disk, emptied at
    /// every start. The queue owns it; dropping it removes the file.
    fn open_spill(&self, vhost: &str, name: &str) -> Result<Box<dyn Spill>, StoreError>;

    /// Stores (or replaces) a durable object: a definition other than exchanges, queues and
    /// bindings (policies, users, permissions, limits, ...), keyed by `kind` and `key`, with a
    /// value opaque to storage. Durable at the next [`Store::flush`]. It costs the caller what
    /// [`Store::put_exchange`] does: no fsync, nothing that waits for a flush.
    fn put_object(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError>;
    /// Removes a durable object; absent is not an error. Durable at the next flush.
    fn delete_object(&self, kind: &str, key: &str) -> Result<(), StoreError>;
    /// Every object of `kind`, as `(key, value)`, in key order.
    fn load_objects(&self, kind: &str) -> Result<Vec<(String, Bytes)>, StoreError>;

    /// Stores a delayed message (see [`DelayedPage`]) under `key`: buffered, durable at the
    /// next [`Store::flush`], like [`Store::put_object`].
    fn put_delayed(&self, key: DelayKey, value: &[u8]) -> Result<(), StoreError> {
        let _ = (key, value);
        Err(StoreError::Io(
            "this store keeps no delayed messages".into(),
        ))
    }
    /// Removes released delayed messages; absent ones are not an error. Durable at the next
    /// flush. The broker releases in key order, so `keys` is always a prefix of what is
    /// stored: the on-disk store keeps only a watermark (the largest key released).
    fn remove_delayed(&self, keys: &[DelayKey]) -> Result<(), StoreError> {
        let _ = keys;
        Ok(())
    }
    /// Up to `limit` delayed messages with keys at or above `from`, in key order (buffered
    /// writes included). May do I/O: call with no broker lock held.
    fn read_delayed(&self, from: DelayKey, limit: usize) -> Result<DelayedPage, StoreError> {
        let _ = (from, limit);
        Ok(DelayedPage {
            entries: Vec::new(),
            complete: true,
            resume: None,
        })
    }

    /// Holds back the next flush: while the returned guard lives, no [`Store::flush`] begins
    /// collecting work, so every write made under one guard (say a put into queue B and the
    /// removal of the same message from queue A, when dead-lettering) lands in the same flush,
    /// and a flush is all-or-nothing after a crash. Cheap (a read lock); a flush already
    /// collecting finishes collecting first. Never take a second guard on the same thread while
    /// holding one (a flush waiting between them would deadlock), and keep the guard short:
    /// a waiting flush holds back every confirm.
    fn hold_flush(&self) -> FlushHold<'_>;

    /// Damaged records moved aside since the store was created (this run and earlier ones),
    /// for metrics.
    fn quarantined(&self) -> u64 {
        0
    }

    /// Whether the store has work of its own for a flush (deleting or compacting body-log
    /// segments, buffered definitions) even when no write was counted: the group commit then
    /// flushes on its background tick.
    fn wants_flush(&self) -> bool {
        false
    }

    /// The first half of a pipelined [`Store::flush`]: collects what was written so far and
    /// makes the part that must be durable first durable (for the on-disk store: appends to
    /// the body log and syncs it). Nothing is durable as a whole until [`Store::flush_commit`]
    /// of the result returns; the next flush may be prepared meanwhile. Every prepared flush
    /// must be committed, in the order prepared. The default does the whole flush here.
    fn flush_prepare(&self) -> Result<PreparedFlush, StoreError> {
        self.flush().map(|()| PreparedFlush::new(()))
    }

    /// The second half of a pipelined flush: when it returns `Ok`, every write that returned
    /// before the matching [`Store::flush_prepare`] began is durable. A flush prepared before
    /// one whose commit failed fails too.
    fn flush_commit(&self, prepared: PreparedFlush) -> Result<(), StoreError> {
        let _ = prepared;
        Ok(())
    }

    /// Writes out everything buffered so far (messages, acks, delivered marks, delivery counts,
    /// objects) and fsyncs it (group commit): every write that returned before this call began
    /// is durable when it returns, and a crash leaves either all or none of one flush's writes.
    /// Called from a dedicated thread, never under a lock.
    fn flush(&self) -> Result<(), StoreError>;
}

/// The key of a delayed message: its due time (wall-clock ms) and a sequence number, both
/// big-endian, so that key order is release order.
pub type DelayKey = [u8; 16];

/// What [`Store::read_delayed`] found: delayed messages (values opaque to storage) in key
/// order, and whether they are all there are from the requested key on.
#[derive(Clone, Debug, Default)]
pub struct DelayedPage {
    /// `(key, value)` in key order.
    pub entries: Vec<(DelayKey, Bytes)>,
    /// No stored key above the last entry's (or above `from`, when empty).
    pub complete: bool,
    /// When not complete: the key to read the next page from (every stored key below it at the
    /// time of the read is in this page).
    pub resume: Option<DelayKey>,
}

/// A flush between [`Store::flush_prepare`] and [`Store::flush_commit`], opaque.
pub struct PreparedFlush(Box<dyn std::any::Any + Send>);

impl PreparedFlush {
    /// Wraps a store's own prepared state.
    pub fn new<T: Send + 'static>(state: T) -> Self {
        PreparedFlush(Box::new(state))
    }

    /// The store's own state back, if it is a `T`.
    pub fn take<T: 'static>(self) -> Option<T> {
        self.0.downcast::<T>().ok().map(|b| *b)
    }
}

impl std::fmt::Debug for PreparedFlush {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedFlush")
    }
}

/// A guard from [`Store::hold_flush`]: no flush begins collecting work while it lives.
#[must_use = "the flush is held back only while the guard lives"]
pub struct FlushHold<'a> {
    _guard: std::sync::RwLockReadGuard<'a, ()>,
}

impl std::fmt::Debug for FlushHold<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FlushHold")
    }
}

/// The lock behind [`Store::hold_flush`]: writers that must land in one flush share it, the
/// flush takes it exclusively while it collects work.
#[derive(Debug, Default)]
pub struct FlushGate {
    lock: std::sync::RwLock<()>,
}

impl FlushGate {
    /// A guard for [`Store::hold_flush`].
    pub fn hold(&self) -> FlushHold<'_> {
        FlushHold {
            // The lock guards no data, so a poisoned one is as good as a clean one.
            _guard: self
                .lock
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Held by a flush while it collects work: waits for every [`FlushHold`] to go.
    pub fn exclusive(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.lock
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// What [`QueueStore::put`] asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum PutOutcome {
    /// Nothing: the message waits in memory for the next [`Store::flush`].
    Buffered,
    /// This put sealed a full chunk of messages: call [`QueueStore::write_sealed`] once no
    /// lock of the caller's is held. That hands it to the storage engine (no fsync) and bounds
    /// the memory held by unwritten messages.
    WriteDue,
}

/// One queue's stored messages, keyed by the broker's `u64` ids (ascending = queue order).
///
/// Writes are buffered: they become durable at the next [`Store::flush`] (with pipelined
/// flushes, an ack, delivered mark or count on a chunk that a flush in flight is writing waits
/// for the flush after that one). Every method takes
/// only short in-memory locks, except [`QueueStore::read`] of messages that are not in memory and
/// [`QueueStore::write_sealed`], which hand work to the storage engine (still never an fsync).
pub trait QueueStore: Send + Sync + 'static {
    /// Appends message `id`. Ids must ascend: `id` must be above every id put through this
    /// handle and above [`QueueStore::last_id`] at open, or the put fails with
    /// [`StoreError::OutOfOrder`] (callers allocate ids and put under one lock to keep this).
    fn put(&self, id: u64, m: MessageView<'_>) -> Result<PutOutcome, StoreError>;
    /// Writes chunks that [`QueueStore::put`] reported full (see [`PutOutcome::WriteDue`]).
    fn write_sealed(&self) -> Result<(), StoreError>;
    /// Records that message `id` was delivered, so it comes back with `redelivered = true`
    /// (durable, like every write, after the next [`Store::flush`]). Absent ids are ignored.
    fn mark_delivered(&self, id: u64) -> Result<(), StoreError>;
    /// Sets message `id`'s delivery count (RabbitMQ's `x-delivery-count`), returned by
    /// [`QueueStore::read`] as [`StoredMessage::delivery_count`]: in memory now, durable at
    /// the next [`Store::flush`]. Absent ids are ignored. Independent of the delivered flag.
    fn set_delivery_count(&self, id: u64, count: u32) -> Result<(), StoreError>;
    /// Removes message `id` (ack); absent is not an error.
    fn remove(&self, id: u64) -> Result<(), StoreError>;
    /// Removes every message with an id of `from_id` or more (purge of paged messages);
    /// returns how many there were.
    fn remove_from(&self, from_id: u64) -> Result<usize, StoreError>;
    /// Up to `limit` messages with id >= from_id, in id order (damaged ones quarantined and
    /// skipped). A message removed while the read runs may still be returned.
    fn read(&self, from_id: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError>;
    /// Number of messages stored.
    fn len(&self) -> usize;
    /// Whether no message is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The highest id stored (to continue numbering after restart), `None` when empty.
    fn last_id(&self) -> Option<u64>;
    /// Removes every message (queue.purge of a whole queue).
    fn clear(&self) -> Result<(), StoreError> {
        self.remove_from(0).map(|_| ())
    }
}
