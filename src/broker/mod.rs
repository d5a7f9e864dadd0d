//! The AMQP model: vhosts, exchanges, bindings, queues, consumers and policies. Knows no wire
//! and no sockets; imports `storage` (the trait and its records) and `protocol`'s value types
//! only, and never reads a clock: time comes in as [`Now`].
//!
//! [`Broker`] is a cheap handle (`Arc` inside) shared by every connection task and the
//! management API. All state is plain structs behind short `std::sync` locks; nothing here
//! awaits. Deliveries leave through connection mailboxes ([`consumer::Mailbox`]). Time-driven
//! work (TTL, `x-expires`) is armed in [`timers::Timers`] and done by [`Broker::tick`], which
//! a driver task in `server/` calls.
//!
//! Files: [`access`] (users, vhost metadata, permissions, topic permissions, limits, logins
//! and authorisation), [`vhost`] (definitions and queue operations), [`publish`] (the publish
//! entry point and routing), [`queue`] (the queue record and the queue-type seam, classic
//! queues), [`exchange`], [`consumer`], [`consumed`] (confirms of messages consumed before
//! they were written), [`message`], [`deadletter`] (x-death), [`policy`], [`budget`] (the
//! global memory budget), [`timers`], [`time`], [`group_commit`], [`alarm`] (memory and disk
//! alarms).

pub mod access;
pub mod alarm;
pub mod budget;
pub mod consumed;
pub mod consumer;
pub mod deadletter;
pub mod error;
pub mod exchange;
pub mod group_commit;
pub mod message;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod reply_to;
mod store_api;
pub mod time;
pub mod timers;
pub mod vhost;

use crate::storage::Store;
use dashmap::DashMap;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

pub use access::{Access, Grant, Permission, User};
pub use alarm::Alarm;
pub use budget::MemoryBudget;
pub use consumed::{Awaited, ConfirmTo, Consumed};
pub use consumer::{ConnId, Credit, Mailbox, Outbound};
pub use error::{BrokerError, BrokerResult};
pub use group_commit::{FlushPolicy, GroupCommit, StallWatch};
pub use message::{Delivery, Message, QueuedMessage};
pub use publish::{Prepared, PublishOutcome, PublishRequest, Routed};
pub use queue::{MemoryWindow, Queue};
pub use time::{Monotonic, Now};
pub use vhost::{NameCache, VHost};

/// The connection.blocked reason while only the memory alarm is set (RabbitMQ's wording; see
/// [`alarm`] for the others).
pub const MEMORY_ALARM_REASON: &str = "low on memory";

/// Protocol limits offered to clients.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest frame, overhead included.
    pub frame_max: u32,
    /// Highest channel number.
    pub channel_max: u16,
    /// Heartbeat interval offered, seconds (0 = off).
    pub heartbeat: u16,
    /// Largest message body accepted.
    pub max_message_size: u32,
    /// How long a delivery may stay unacknowledged before its channel is closed with 406
    /// (RabbitMQ's `consumer_timeout`); `None`: no limit. Queues may set their own.
    pub consumer_timeout: Option<std::time::Duration>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            consumer_timeout: Some(std::time::Duration::from_millis(
                DEFAULT_CONSUMER_TIMEOUT_MS,
            )),
        }
    }
}

/// RabbitMQ's default `consumer_timeout`: 30 minutes.
pub const DEFAULT_CONSUMER_TIMEOUT_MS: u64 = 1_800_000;

/// What a broker is built from.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// The vhost created at start ("/").
    pub default_vhost: String,
    /// Users seeded on first start (with full rights on the default vhost).
    pub users: Vec<User>,
    /// Users who may log in only from loopback addresses (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// How long a failed login waits before it is answered.
    pub failed_login_delay: std::time::Duration,
    /// Protocol limits.
    pub limits: Limits,
    /// When the store is flushed.
    pub flush: FlushPolicy,
    /// What each queue keeps in memory; the rest is paged to the store.
    pub queue_window: MemoryWindow,
    /// What to do when a store flush does not finish (none: nothing, it is waited for).
    pub stall_watch: Option<StallWatch>,
    /// Bytes of ready messages all queues together keep in memory (the global budget).
    pub queue_memory_budget: usize,
    /// The clock the group-commit flusher times its flushes with.
    pub clock: Monotonic,
}

/// The default global memory budget for ready messages in memory: 256 MiB.
pub const DEFAULT_QUEUE_MEMORY_BUDGET: usize = 256 << 20;

impl Default for BrokerOptions {
    fn default() -> Self {
        BrokerOptions {
            default_vhost: "/".into(),
            users: vec![User {
                name: "guest".into(),
                password_hash: crate::password::hash_password("guest"),
                tags: vec!["administrator".into()],
            }],
            loopback_users: vec!["guest".into()],
            failed_login_delay: access::DEFAULT_FAILED_LOGIN_DELAY,
            limits: Limits::default(),
            flush: FlushPolicy::Batch,
            queue_window: MemoryWindow::default(),
            stall_watch: None,
            queue_memory_budget: DEFAULT_QUEUE_MEMORY_BUDGET,
            clock: Monotonic::default(),
        }
    }
}

/// A connection as the broker lists it (management, shutdown).
#[derive(Debug)]
pub struct ConnectionInfo {
    /// Id.
    pub id: ConnId,
    /// Client address.
    pub peer: SocketAddr,
    /// Server address.
    pub local: SocketAddr,
    /// Logged-in user ("" before login).
    pub user: RwLock<String>,
    /// Vhost ("" before open).
    pub vhost: RwLock<String>,
    /// The client-properties table of its connection.start-ok (management lists it; tools
    /// find connections by its `connection_name`).
    pub client_properties: RwLock<crate::protocol::types::FieldTable>,
    /// When it connected.
    pub connected_at: SystemTime,
    /// Open channels.
    pub channels: AtomicU32,
    /// Consumers on its channels.
    pub consumers: std::sync::atomic::AtomicI64,
    /// Numbers of its open channels (management lists them).
    pub open_channels: std::sync::Mutex<std::collections::BTreeSet<u16>>,
    /// Its mailbox (to close it).
    pub mailbox: Mailbox,
    /// Over TLS (AMQPS); set by the driver once the handshake is done.
    pub tls: std::sync::atomic::AtomicBool,
    /// The SASL mechanism it logged in with (management's `auth_mechanism`).
    pub auth_mechanism: std::sync::OnceLock<&'static str>,
    /// Times its socket went unread because a queue it published to fell behind (see
    /// [`PublishOutcome::flow`]).
    pub flow_pauses: std::sync::atomic::AtomicU64,
    /// When the latest of those pauses began, in Unix milliseconds (0: never). Management
    /// shows the connection in state `flow` for a second after, as RabbitMQ does.
    pub flow_at_ms: std::sync::atomic::AtomicU64,
}

impl ConnectionInfo {
    /// Records a channel opened (true) or closed (false).
    pub fn channel_changed(&self, number: u16, open: bool) {
        let mut set = self.open_channels.lock().unwrap_or_else(|e| e.into_inner());
        if open {
            set.insert(number);
        } else {
            set.remove(&number);
        }
        let n = u32::try_from(set.len()).unwrap_or(u32::MAX);
        self.channels.store(n, Ordering::Relaxed);
    }

    /// Numbers of the open channels.
    pub fn channel_numbers(&self) -> Vec<u16> {
        self.open_channels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    /// Adjusts the consumer count.
    pub fn consumers_changed(&self, delta: i64) {
        self.consumers.fetch_add(delta, Ordering::Relaxed);
    }
}

/// Broker-wide counters.
#[derive(Debug, Default)]
pub struct BrokerStats {
    /// Messages published (accepted from clients).
    pub published: AtomicU64,
    /// Messages confirmed to publishers.
    pub confirmed: AtomicU64,
    /// Unroutable messages.
    pub unroutable: AtomicU64,
    /// Unroutable mandatory messages returned to their publisher (basic.return); the rest of
    /// `unroutable` were dropped. RabbitMQ's `return_unroutable` and `drop_unroutable`.
    pub returned: AtomicU64,
    /// Messages dead-lettered, by reason (indexed by [`queue::Reason::index`]).
    pub dead_lettered: [AtomicU64; 4],
    /// Dead letters that reached no queue (no such exchange, no binding, or a cycle).
    pub dead_letter_dropped: AtomicU64,
}

/// What every vhost shares with the broker.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) commit: Arc<GroupCommit>,
    pub(crate) window: MemoryWindow,
    pub(crate) budget: Arc<MemoryBudget>,
    pub(crate) timers: Arc<timers::Timers>,
    pub(crate) stats: BrokerStats,
    pub(crate) replies: reply_to::ReplyConsumers,
    pub(crate) delayed: exchange::delayed::DelayedMessages,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

struct Inner {
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    shared: Arc<Shared>,
    access: Access,
    connections: DashMap<ConnId, Arc<ConnectionInfo>>,
    next_conn: AtomicU64,
    limits: Limits,
    default_vhost: String,
    alarms: alarm::Alarms,
}

/// The broker: a cheap, cloneable handle.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").finish_non_exhaustive()
    }
}

impl Broker {
    /// A broker over `store` with the default vhost. Call [`Broker::recover`] to load what the
    /// store holds.
    pub fn new(store: Arc<dyn Store>, opts: BrokerOptions) -> Broker {
        let commit = GroupCommit::start(
            Arc::clone(&store),
            opts.flush,
            opts.stall_watch.clone(),
            opts.clock,
        );
        let timers = Arc::new(timers::Timers::default());
        let delayed = exchange::delayed::DelayedMessages::new(
            Arc::clone(&store),
            Arc::clone(&commit),
            Arc::clone(&timers),
        );
        let shared = Arc::new(Shared {
            store,
            commit,
            window: opts.queue_window,
            budget: Arc::new(MemoryBudget::new(opts.queue_memory_budget)),
            timers,
            stats: BrokerStats::default(),
            replies: reply_to::ReplyConsumers::default(),
            delayed,
        });
        let mut vhosts = HashMap::new();
        vhosts.insert(
            opts.default_vhost.clone(),
            VHost::new(&opts.default_vhost, Arc::clone(&shared)),
        );
        let access = Access::new(
            Arc::clone(&shared.store),
            Arc::clone(&shared.commit),
            access::AccessOptions {
                users: opts.users,
                default_vhost: opts.default_vhost.clone(),
                loopback_users: opts.loopback_users,
                failed_login_delay: opts.failed_login_delay,
            },
        );
        Broker {
            inner: Arc::new(Inner {
                vhosts: RwLock::new(vhosts),
                shared,
                access,
                connections: DashMap::new(),
                next_conn: AtomicU64::new(1),
                limits: opts.limits,
                default_vhost: opts.default_vhost,
                alarms: alarm::Alarms::default(),
            }),
        }
    }

    /// Loads the access model (or stores its first-start seed), durable definitions, policies
    /// and persistent messages from the store, as of `now` (messages whose TTL ran out
    /// meanwhile expire at once).
    pub fn recover(&self, now: Now) -> BrokerResult<()> {
        let stored = self.inner.access.load()?;
        // The runtime vhosts follow the records: the seeded default vhost goes if the stored
        // records say it was deleted, a stored empty vhost comes back.
        self.inner
            .vhosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| stored.contains(name));
        for n in &stored {
            self.ensure_vhost(n);
        }
        let defs = self.inner.shared.store.load_definitions()?;
        let mut names: Vec<String> = defs
            .exchanges
            .iter()
            .map(|x| x.vhost.clone())
            .chain(defs.queues.iter().map(|q| q.vhost.clone()))
            .collect();
        names.sort();
        names.dedup();
        for n in names {
            self.inner.access.adopt_vhost(&n)?;
            self.ensure_vhost(&n);
        }
        for vh in self.vhosts() {
            vh.restore(&defs, now)?;
        }
        let keeps = |vhost: &str, name: &str| {
            self.vhost(vhost)
                .and_then(|vh| vh.find_exchange(name))
                .is_some_and(|x| x.durable && x.delay.is_some())
        };
        self.inner.shared.delayed.recover(keeps, now)?;
        Ok(())
    }

    /// Does the time-driven work that is due at `now` (expired messages, expired queues).
    /// Errors are logged here: no client is waiting on a tick.
    pub fn tick(&self, now: Now) {
        // Due entries are taken before delayed messages re-arm: a re-arm at `now` (more are due
        // at once) must survive this tick.
        let due = self.inner.shared.timers.due(now.mono);
        self.release_delayed(now);
        for q in due {
            let Some(vh) = self.vhost(&q.vhost) else {
                continue;
            };
            if let Err(e) = vh.tick(&q, now) {
                tracing::error!(queue = %q.name, vhost = %q.vhost, error = %e, "timed queue work failed");
            }
        }
    }

    /// Routes the delayed messages that are due (see [`exchange::delayed`]).
    fn release_delayed(&self, now: Now) {
        let delayed = &self.inner.shared.delayed;
        let due = match delayed.take_due(now) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading delayed messages failed");
                return;
            }
        };
        let mut vhost: Option<Arc<VHost>> = None;
        for d in &due {
            if vhost.as_ref().is_none_or(|v| v.name != d.vhost) {
                vhost = self.vhost(&d.vhost);
            }
            if let Some(vh) = &vhost
                && let Err(e) = vh.publish_delayed(d, now)
            {
                // Dropped (a store failure of the queues it was routed to).
                tracing::error!(exchange = %d.exchange, vhost = %d.vhost, error = %e, "routing a delayed message failed");
            }
        }
        if let Err(e) = delayed.released(&due) {
            tracing::error!(error = %e, "removing released delayed messages failed");
        }
    }

    /// The delayed messages of the node.
    pub fn delayed(&self) -> &exchange::delayed::DelayedMessages {
        &self.inner.shared.delayed
    }

    /// The timers the driver waits on.
    pub fn timers(&self) -> &timers::Timers {
        &self.inner.shared.timers
    }

    /// The direct reply-to consumers of the node.
    pub fn replies(&self) -> &reply_to::ReplyConsumers {
        &self.inner.shared.replies
    }

    /// The global memory budget of queues.
    pub fn memory_budget(&self) -> &MemoryBudget {
        &self.inner.shared.budget
    }

    /// The vhost called `name`, creating its runtime objects if missing. A vhost made here
    /// has no stored record: create vhosts with [`Broker::put_vhost`].
    pub fn ensure_vhost(&self, name: &str) -> Arc<VHost> {
        let mut map = self.inner.vhosts.write().unwrap_or_else(|e| e.into_inner());
        Arc::clone(
            map.entry(name.to_string())
                .or_insert_with(|| VHost::new(name, Arc::clone(&self.inner.shared))),
        )
    }

    /// The vhost called `name`.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.inner
            .vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// All vhosts.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.inner
            .vhosts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The default vhost's name.
    pub fn default_vhost(&self) -> &str {
        &self.inner.default_vhost
    }

    /// The access model: users, vhost metadata, permissions, limits, logins, grants.
    pub fn access(&self) -> &Access {
        &self.inner.access
    }

    /// Forgets a vhost's runtime objects (its stored ones are deleted by the caller).
    fn forget_vhost(&self, name: &str) {
        self.inner
            .vhosts
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }

    /// Protocol limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The group-commit coordinator.
    pub fn commit(&self) -> &Arc<GroupCommit> {
        &self.inner.shared.commit
    }

    /// Damaged store records moved aside (quarantined) so far, this run and earlier ones.
    pub fn quarantined_records(&self) -> u64 {
        self.inner.shared.store.quarantined()
    }

    /// Broker-wide counters.
    pub fn stats(&self) -> &BrokerStats {
        &self.inner.shared.stats
    }

    /// Registers a new connection and returns its info.
    pub fn register_connection(
        &self,
        peer: SocketAddr,
        local: SocketAddr,
        mailbox: Mailbox,
        connected_at: SystemTime,
    ) -> Arc<ConnectionInfo> {
        let id = ConnId(self.inner.next_conn.fetch_add(1, Ordering::Relaxed));
        let info = Arc::new(ConnectionInfo {
            id,
            peer,
            local,
            user: RwLock::new(String::new()),
            vhost: RwLock::new(String::new()),
            client_properties: RwLock::new(Default::default()),
            connected_at,
            channels: AtomicU32::new(0),
            consumers: std::sync::atomic::AtomicI64::new(0),
            open_channels: std::sync::Mutex::new(std::collections::BTreeSet::new()),
            mailbox,
            tls: std::sync::atomic::AtomicBool::new(false),
            auth_mechanism: std::sync::OnceLock::new(),
            flow_pauses: std::sync::atomic::AtomicU64::new(0),
            flow_at_ms: std::sync::atomic::AtomicU64::new(0),
        });
        self.inner.connections.insert(id, Arc::clone(&info));
        info
    }

    /// Forgets a connection.
    pub fn unregister_connection(&self, id: ConnId) {
        self.inner.connections.remove(&id);
    }

    /// Open connections.
    pub fn connections(&self) -> Vec<Arc<ConnectionInfo>> {
        self.inner
            .connections
            .iter()
            .map(|e| Arc::clone(e.value()))
            .collect()
    }

    /// Asks every connection to close with `code` (shutdown: 320).
    pub fn close_all(&self, code: crate::protocol::ReplyCode, text: &str) {
        for c in self.connections() {
            let _ = c.mailbox.send(Outbound::Close {
                code,
                text: text.to_string(),
            });
        }
    }

    /// Raises or clears the memory alarm (see [`Broker::set_alarm`]).
    pub fn set_memory_alarm(&self, on: bool) -> bool {
        self.set_alarm(Alarm::Memory, on)
    }

    /// Raises or clears a resource alarm. Every connection is told the new blocked reason
    /// (`low on memory`, `low on disk`, `low on memory & disk`, or none); publishing
    /// connections stop being read while any alarm is set, as in RabbitMQ. Returns true when
    /// the alarm changed.
    pub fn set_alarm(&self, alarm: Alarm, on: bool) -> bool {
        let Some((_, reason)) = self.inner.alarms.set(alarm, on) else {
            return false;
        };
        if on {
            tracing::warn!(
                resource = alarm.resource(),
                "resource alarm set: publishers are blocked"
            );
        } else {
            tracing::info!(resource = alarm.resource(), "resource alarm cleared");
        }
        for c in self.connections() {
            let _ = c.mailbox.send(Outbound::Blocked(reason.clone()));
        }
        true
    }

    /// True while the memory alarm is set.
    pub fn memory_alarm(&self) -> bool {
        self.alarm(Alarm::Memory)
    }

    /// True while `alarm` is set.
    pub fn alarm(&self, alarm: Alarm) -> bool {
        self.inner.alarms.is_set(alarm)
    }

    /// The connection.blocked reason while any alarm is set.
    pub fn blocked_reason(&self) -> Option<String> {
        self.inner.alarms.reason()
    }

    /// Final flush and stop of the flusher (shutdown).
    pub fn shutdown_store(&self) {
        self.inner.shared.commit.flush_now();
        self.inner.shared.commit.stop();
    }
}
