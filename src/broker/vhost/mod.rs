//! A virtual host: its exchanges, queues, bindings and policies, and the operations on them.
//!
//! # Reading and changing definitions
//! Exchanges and queues live in concurrent maps ([`DashMap`]): publishes, consumers and
//! management read them without any vhost lock. Changes (declare, delete, bind, unbind,
//! policies) take the definitions lock, change memory, and queue the matching store writes
//! (`persist::DefOp`); the writes are done after the lock is released, in the order they
//! were queued, under a separate lock that only orders them (`VHost::persist`). So no
//! storage-engine call is made while the definitions lock or a queue lock is held.
//!
//! # Files
//! `declare` (exchange and queue declare/delete), `bind` (bindings), `ops` (queue
//! operations and the follow-up work they return: dead letters, expired queues),
//! `persist` (ordered store writes), `restore` (startup). Publishing is
//! [`crate::broker::publish`], policies [`crate::broker::policy`].

pub(crate) mod bind;
pub(crate) mod declare;
pub(crate) mod dedup;
pub(crate) mod ops;
pub(crate) mod persist;
pub(crate) mod policies;
pub(crate) mod restore;

use crate::protocol::types::FieldTable;
use dashmap::DashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use super::Shared;
use super::consumer::ConnId;
use super::error::{BrokerError, BrokerResult, no_exchange, no_queue};
use super::exchange::{Exchange, ExchangeKind};
use super::policy::Policies;
use super::queue::Queue;

pub use declare::{ExchangeSpec, QueueSpec};

/// What changes hold under the definitions lock: the store writes they queued.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    pending: Vec<persist::DefOp>,
    /// Durable queues deleted so far (a declare that opened a store area before a delete of
    /// the same name was written opens it again).
    queue_deletes: u64,
}

/// A virtual host.
#[derive(Debug)]
pub struct VHost {
    /// Its name.
    pub name: Arc<str>,
    exchanges: DashMap<Arc<str>, Arc<Exchange>>,
    queues: DashMap<Arc<str>, Arc<Queue>>,
    /// The definitions lock: held while definitions change in memory, never during I/O.
    defs: Mutex<Changes>,
    /// Held while queued definition writes go to the store, in order.
    persisting: Mutex<()>,
    policies: RwLock<Policies>,
    shared: Arc<Shared>,
    /// Deduplication caches of exchanges and queues (see `dedup`).
    dedup: DashMap<dedup::Owner, Arc<crate::broker::exchange::dedup::Deduper>>,
    /// How many entries `dedup` has: read on every publish, where `DashMap::is_empty` would
    /// read-lock every shard.
    dedup_owners: std::sync::atomic::AtomicUsize,
    /// Bumped whenever an exchange or a queue is added or removed: a [`NameCache`] is good
    /// while it has not moved.
    generation: std::sync::atomic::AtomicU64,
}

/// A publishing channel's last exchange and queue looked up by name, so that a publisher
/// sending to one place does not hash and look up both names per message. Valid while the
/// vhost's generation is the one it was filled at (no exchange or queue added or removed
/// since); a publish racing a delete pushes to a deleted queue, which drops it, as a publish
/// that looked the queue up just before the delete would.
#[derive(Debug, Default)]
pub struct NameCache {
    generation: u64,
    exchange: Option<Arc<Exchange>>,
    queue: Option<Arc<Queue>>,
}

impl NameCache {
    fn check(&mut self, vh: &VHost) {
        let g = vh.generation.load(std::sync::atomic::Ordering::Acquire);
        if g != self.generation {
            *self = NameCache {
                generation: g,
                ..NameCache::default()
            };
        }
    }

    /// [`VHost::find_exchange`], from the cache when it is the last one looked up.
    pub(crate) fn exchange(&mut self, vh: &VHost, name: &str) -> Option<Arc<Exchange>> {
        self.check(vh);
        cached(
            &mut self.exchange,
            |x| *x.name == *name,
            || vh.find_exchange(name),
        )
    }

    /// [`VHost::find_queue`], from the cache when it is the last one looked up.
    pub(crate) fn queue(&mut self, vh: &VHost, name: &str) -> Option<Arc<Queue>> {
        self.check(vh);
        cached(
            &mut self.queue,
            |q| *q.name == *name,
            || vh.find_queue(name),
        )
    }
}

/// What `slot` holds when it is the one wanted (`is`), else what `find` finds, kept in `slot`.
fn cached<T>(
    slot: &mut Option<Arc<T>>,
    is: impl Fn(&T) -> bool,
    find: impl FnOnce() -> Option<Arc<T>>,
) -> Option<Arc<T>> {
    if let Some(v) = slot.as_ref().filter(|v| is(v)) {
        return Some(Arc::clone(v));
    }
    let v = find()?;
    *slot = Some(Arc::clone(&v));
    Some(v)
}

/// Names of the exchanges every vhost has, with their types.
const PREDECLARED: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

impl VHost {
    /// A vhost with the pre-declared exchanges.
    pub(crate) fn new(name: &str, shared: Arc<Shared>) -> Arc<Self> {
        let exchanges = DashMap::new();
        for (n, kind) in PREDECLARED {
            exchanges.insert(
                Arc::from(n),
                Exchange::new(Arc::from(n), kind, true, false, false, FieldTable::new()),
            );
        }
        Arc::new(VHost {
            name: Arc::from(name),
            exchanges,
            queues: DashMap::new(),
            defs: Mutex::new(Changes::default()),
            persisting: Mutex::new(()),
            policies: RwLock::new(Policies::default()),
            shared,
            dedup: DashMap::new(),
            dedup_owners: std::sync::atomic::AtomicUsize::new(0),
            generation: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// An exchange or a queue was added or removed: every [`NameCache`] is stale.
    pub(super) fn names_changed(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    fn defs(&self) -> MutexGuard<'_, Changes> {
        self.defs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The exchange called `name`, if any (no error built: the publish path).
    pub(crate) fn find_exchange(&self, name: &str) -> Option<Arc<Exchange>> {
        self.exchanges.get(name).map(|e| Arc::clone(e.value()))
    }

    /// The queue called `name`, if any.
    pub(crate) fn find_queue(&self, name: &str) -> Option<Arc<Queue>> {
        self.queues.get(name).map(|e| Arc::clone(e.value()))
    }

    /// The exchange called `name`.
    pub fn exchange(&self, name: &str) -> BrokerResult<Arc<Exchange>> {
        self.find_exchange(name)
            .ok_or_else(|| no_exchange(name, &self.name))
    }

    /// The queue called `name`.
    pub fn queue(&self, name: &str) -> BrokerResult<Arc<Queue>> {
        self.find_queue(name)
            .ok_or_else(|| no_queue(name, &self.name))
    }

    /// The queue called `name`, checking exclusive ownership (405 for other connections).
    pub fn queue_for(&self, name: &str, conn: ConnId) -> BrokerResult<Arc<Queue>> {
        let q = self.queue(name)?;
        self.check_exclusive(&q, conn)?;
        Ok(q)
    }

    fn check_exclusive(&self, q: &Queue, conn: ConnId) -> BrokerResult<()> {
        match q.exclusive {
            Some(owner) if owner != conn => Err(locked(&q.name, &self.name)),
            _ => Ok(()),
        }
    }

    /// All exchanges.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect()
    }

    /// All queues.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// What the vhost shares with the broker.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// 405: another connection's exclusive queue (RabbitMQ's text).
fn locked(queue: &str, vhost: &str) -> BrokerError {
    BrokerError::ResourceLocked(format!(
        "cannot obtain exclusive access to locked queue '{queue}' in vhost '{vhost}'. It could be \
         originally declared on another connection or the exclusive property value does not \
         match that of the original declaration."
    ))
}

/// A random name with a prefix, like RabbitMQ's `amq.gen-…` and `amq.ctag-…` (22 base64url chars).
pub fn generate_name(prefix: &str) -> String {
    use base64::Engine;
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes())
    )
}

/// 16 random bytes (names, direct reply-to keys).
pub(crate) fn random_bytes() -> [u8; 16] {
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness: fall back to the process id and a counter; names only need to be
        // unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        raw[..8].copy_from_slice(&n.to_be_bytes());
        raw[8..12].copy_from_slice(&std::process::id().to_be_bytes());
    }
    raw
}
