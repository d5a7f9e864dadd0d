//! Group commit: one fsync covers every store write since the previous one, from all connections.
//!
//! Writers bump a sequence number after each store write ([`GroupCommit::note_write`]). A session
//! whose publishes were persisted remembers the sequence it needs and asks for a flush; a single
//! flusher thread reads the current sequence and prepares a flush ([`Store::flush_prepare`]:
//! for the on-disk store, collect, append and sync the body log), and a committer thread
//! commits it ([`Store::flush_commit`]: sled) and publishes the sequence it covered on a watch
//! channel. Every write numbered at or below that is on disk, so every confirm waiting for it
//! may go out. The two halves overlap: the next flush is prepared while the previous one
//! commits (at most one prepared flush waits), and commits happen in order. Under load, one
//! fsync covers thousands of messages.
//!
//! A flush that never returns stops every confirm, and with them every confirming publisher.
//! sled 0.34 can do that: its IO thread pool never grows past seven threads (its count of idle
//! threads wraps below zero), and a thread that grows the log file while holding the segment
//! lock waits for a truncation queued behind seven jobs that wait for that lock. An optional
//! [`StallWatch`] thread notices a flush running longer than its limit and says so, so the
//! process can end and be restarted rather than hang: what was confirmed is on disk.

use crate::broker::Monotonic;
use crate::storage::{PreparedFlush, Store};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often writes that no confirm waits for are flushed anyway.
const BACKGROUND_FLUSH: Duration = Duration::from_millis(200);
/// Upper bounds, in microseconds, of the flush-latency histogram's buckets (see
/// [`GroupCommit::flush_buckets`]); flushes slower than the last bound are counted only in
/// [`GroupCommit::flush_count`].
pub const FLUSH_BUCKETS_MICROS: [u64; 12] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000,
];

/// When the flusher thread flushes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlushPolicy {
    /// As soon as someone waits for a flush (one flush per batch of waiting work).
    Batch,
    /// At most once per interval; waiting confirms are sent after that flush.
    Interval(Duration),
}

/// What to do about a flush that does not finish: after `limit`, `on_stall` is called once for
/// that flush, from a thread of its own, with the time the flush has been running.
#[derive(Clone)]
pub struct StallWatch {
    /// How long a flush may run before it counts as stalled.
    pub limit: Duration,
    /// Called once per stalled flush (the broker binary logs and exits).
    pub on_stall: Arc<dyn Fn(Duration) + Send + Sync>,
}

impl std::fmt::Debug for StallWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StallWatch")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

/// A prepared flush on its way to the committer: the write sequence it covers and when it
/// began.
struct Prepared {
    target: u64,
    started: Instant,
    prepared: PreparedFlush,
}

/// How often the stall watch looks at the flusher, at most.
const STALL_POLL: Duration = Duration::from_millis(250);

/// The group-commit coordinator. See the module docs.
pub struct GroupCommit {
    written: AtomicU64,
    flushed: watch::Sender<u64>,
    wake: Mutex<bool>,
    cond: Condvar,
    stop: AtomicBool,
    store: Arc<dyn Store>,
    policy: FlushPolicy,
    /// Flush latencies, for metrics (microseconds, total and count).
    pub flush_micros_total: AtomicU64,
    /// Number of flushes done.
    pub flush_count: AtomicU64,
    /// Flushes per latency bucket of [`FLUSH_BUCKETS_MICROS`] (not cumulative: a flush is
    /// counted in the first bucket whose bound it does not exceed).
    pub flush_buckets: [AtomicU64; FLUSH_BUCKETS_MICROS.len()],
    /// When the flush in progress started, in microseconds since `epoch` plus one; 0 when the
    /// flusher is not flushing.
    flush_started: AtomicU64,
    /// As `flush_started`, for the commit half of a pipelined flush.
    commit_started: AtomicU64,
    /// The write sequence the latest prepared flush covers.
    prepared: AtomicU64,
    epoch: Instant,
    clock: Monotonic,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    watch_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field("written", &self.written)
            .field("policy", &self.policy)
            .finish()
    }
}

impl GroupCommit {
    /// Starts the flusher thread, and with `watch` a thread that watches it for stalls.
    pub fn start(
        store: Arc<dyn Store>,
        policy: FlushPolicy,
        watch: Option<StallWatch>,
        clock: Monotonic,
    ) -> Arc<Self> {
        let (flushed, _) = watch::channel(0);
        let gc = Arc::new(GroupCommit {
            written: AtomicU64::new(0),
            flushed,
            wake: Mutex::new(false),
            cond: Condvar::new(),
            stop: AtomicBool::new(false),
            store,
            policy,
            flush_micros_total: AtomicU64::new(0),
            flush_count: AtomicU64::new(0),
            flush_buckets: Default::default(),
            flush_started: AtomicU64::new(0),
            commit_started: AtomicU64::new(0),
            prepared: AtomicU64::new(0),
            committer: Mutex::new(None),
            epoch: clock.read(),
            clock,
            thread: Mutex::new(None),
            watch_thread: Mutex::new(None),
        });
        // Flushes are pipelined: this thread prepares the next flush (collect, append, sync the
        // body log) while the committer commits the previous one (sled); at most one prepared
        // flush waits between them.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Prepared>(1);
        let worker = Arc::clone(&gc);
        let handle = std::thread::Builder::new()
            .name("lagomorph-flusher".into())
            .spawn(move || worker.run(&tx))
            .expect("invariant: the OS can start one thread at startup");
        *gc.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        let committer = Arc::clone(&gc);
        let handle = std::thread::Builder::new()
            .name("lagomorph-committer".into())
            .spawn(move || {
                for p in rx {
                    committer.commit_one(p);
                }
            })
            .expect("invariant: the OS can start one thread at startup");
        *gc.committer.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        if let Some(watch) = watch {
            let watcher = Arc::clone(&gc);
            let handle = std::thread::Builder::new()
                .name("lagomorph-stall-watch".into())
                .spawn(move || watcher.watch(&watch))
                .expect("invariant: the OS can start one thread at startup");
            *gc.watch_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        gc
    }

    /// Microseconds since `epoch`, plus one (so that 0 can mean "not flushing").
    fn stamp(&self) -> u64 {
        let since = self.clock.read().saturating_duration_since(self.epoch);
        u64::try_from(since.as_micros())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// The stall watch: until stopped, reports each flush that runs past `watch.limit`, once.
    fn watch(&self, watch: &StallWatch) {
        let mut reported = 0;
        while !self.stop.load(Ordering::Acquire) {
            std::thread::park_timeout(STALL_POLL.min(watch.limit));
            let started = match (
                self.flush_started.load(Ordering::Acquire),
                self.commit_started.load(Ordering::Acquire),
            ) {
                (0, c) => c,
                (p, 0) => p,
                (p, c) => p.min(c),
            };
            if started == 0 || started == reported {
                continue;
            }
            let running = Duration::from_micros(self.stamp().saturating_sub(started));
            if running >= watch.limit {
                reported = started;
                (watch.on_stall)(running);
            }
        }
    }

    /// Records that a store write finished; returns its sequence number.
    pub fn note_write(&self) -> u64 {
        self.written.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// The sequence of the latest finished write.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// The sequence covered by the latest flush.
    pub fn flushed(&self) -> u64 {
        *self.flushed.borrow()
    }

    /// A receiver that sees every flush's sequence.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.flushed.subscribe()
    }

    /// Asks the flusher to flush soon.
    pub fn request_flush(&self) {
        let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
        *wake = true;
        self.cond.notify_one();
    }

    /// Flushes on the caller's thread (shutdown), whether or not writes were counted.
    pub fn flush_now(&self) {
        if let Err(e) = self.store.flush() {
            tracing::error!(error = %e, "final store flush failed");
        }
    }

    /// Stops the flusher thread after one last flush, and waits for it, so the store is
    /// released when the broker is dropped.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.request_flush();
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(h) = handle
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
        // The flusher is gone, so the channel is closed: the committer commits what is left.
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = committer
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
        let watcher = self
            .watch_thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(h) = watcher
            && h.thread().id() != std::thread::current().id()
        {
            h.thread().unpark();
            let _ = h.join();
        }
    }

    /// Prepares a flush if there is anything to flush, and hands it to the committer.
    fn flush_once(&self, tx: &std::sync::mpsc::SyncSender<Prepared>) {
        let target = self.written();
        // The store may have work of its own (deleting or compacting body-log segments) even
        // when nothing was written.
        if target <= self.prepared.load(Ordering::Acquire) && !self.store.wants_flush() {
            return;
        }
        let started = self.clock.read();
        self.flush_started.store(self.stamp(), Ordering::Release);
        let result = self.store.flush_prepare();
        self.flush_started.store(0, Ordering::Release);
        match result {
            Ok(prepared) => {
                self.prepared.fetch_max(target, Ordering::AcqRel);
                // Blocks while the committer is busy and one flush already waits: back-pressure.
                let _ = tx.send(Prepared {
                    target,
                    started,
                    prepared,
                });
            }
            Err(e) => tracing::error!(error = %e, "store flush failed; confirms withheld"),
        }
    }

    /// Commits a prepared flush and releases the confirms it covers.
    fn commit_one(&self, p: Prepared) {
        self.commit_started.store(self.stamp(), Ordering::Release);
        let result = self.store.flush_commit(p.prepared);
        self.commit_started.store(0, Ordering::Release);
        match result {
            Ok(()) => {
                let took = self.clock.read().saturating_duration_since(p.started);
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                self.flush_micros_total.fetch_add(micros, Ordering::Relaxed);
                self.flush_count.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = FLUSH_BUCKETS_MICROS.iter().position(|&b| micros <= b) {
                    self.flush_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
                self.flushed.send_modify(|f| *f = (*f).max(p.target));
            }
            Err(e) => {
                // Its writes (and those of a flush prepared meanwhile) go into a later flush.
                self.prepared.store(self.flushed(), Ordering::Release);
                tracing::error!(error = %e, "store flush failed; confirms withheld");
            }
        }
    }

    fn run(&self, tx: &std::sync::mpsc::SyncSender<Prepared>) {
        loop {
            {
                let mut wake = self.wake.lock().unwrap_or_else(|e| e.into_inner());
                match self.policy {
                    FlushPolicy::Batch => {
                        // Someone waits for a flush, or writes nobody waits for (publishes
                        // without confirms, acks, delivered marks) are due one anyway.
                        if !*wake {
                            wake = self
                                .cond
                                .wait_timeout(wake, BACKGROUND_FLUSH)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                    FlushPolicy::Interval(d) => {
                        if !*wake {
                            wake = self
                                .cond
                                .wait_timeout(wake, d)
                                .unwrap_or_else(|e| e.into_inner())
                                .0;
                        }
                    }
                }
                *wake = false;
            }
            self.flush_once(tx);
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if let FlushPolicy::Interval(d) = self.policy {
                std::thread::sleep(d);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{
        BindingRecord, Definitions, ExchangeRecord, FlushHold, MemoryStore, QueueRecord,
        QueueStore, Spill, StoreError,
    };
    use std::sync::mpsc;

    /// A [`MemoryStore`] whose flushes wait until the test opens the gate.
    struct GatedFlush {
        inner: MemoryStore,
        open: Mutex<bool>,
        opened: Condvar,
    }

    impl GatedFlush {
        fn open_gate(&self) {
            *self.open.lock().expect("gate") = true;
            self.opened.notify_all();
        }
    }

    impl Store for GatedFlush {
        fn put_exchange(&self, r: &ExchangeRecord) -> Result<(), StoreError> {
            self.inner.put_exchange(r)
        }
        fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
            self.inner.delete_exchange(vhost, name)
        }
        fn put_queue(&self, r: &QueueRecord) -> Result<(), StoreError> {
            self.inner.put_queue(r)
        }
        fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
            self.inner.delete_queue(vhost, name)
        }
        fn put_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
            self.inner.put_binding(r)
        }
        fn delete_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
            self.inner.delete_binding(r)
        }
        fn load_definitions(&self) -> Result<Definitions, StoreError> {
            self.inner.load_definitions()
        }
        fn open_queue(&self, vhost: &str, name: &str) -> Result<Arc<dyn QueueStore>, StoreError> {
            self.inner.open_queue(vhost, name)
        }
        fn open_spill(&self, vhost: &str, name: &str) -> Result<Box<dyn Spill>, StoreError> {
            self.inner.open_spill(vhost, name)
        }
        fn put_object(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.put_object(kind, key, value)
        }
        fn delete_object(&self, kind: &str, key: &str) -> Result<(), StoreError> {
            self.inner.delete_object(kind, key)
        }
        fn load_objects(&self, kind: &str) -> Result<Vec<(String, bytes::Bytes)>, StoreError> {
            self.inner.load_objects(kind)
        }
        fn hold_flush(&self) -> FlushHold<'_> {
            self.inner.hold_flush()
        }
        fn wants_flush(&self) -> bool {
            false
        }
        fn flush(&self) -> Result<(), StoreError> {
            let mut open = self.open.lock().expect("gate");
            while !*open {
                open = self.opened.wait(open).expect("gate");
            }
            self.inner.flush()
        }
    }

    fn gated() -> Arc<GatedFlush> {
        Arc::new(GatedFlush {
            inner: MemoryStore::new(),
            open: Mutex::new(false),
            opened: Condvar::new(),
        })
    }

    #[test]
    fn a_flush_that_does_not_finish_is_reported_once_and_a_finished_one_never() {
        let store = gated();
        let (tx, rx) = mpsc::channel();
        let tx = Mutex::new(tx);
        let watch = StallWatch {
            limit: Duration::from_millis(200),
            on_stall: Arc::new(move |running| {
                let _ = tx.lock().expect("tx").send(running);
            }),
        };
        let gc = GroupCommit::start(
            Arc::clone(&store) as Arc<dyn Store>,
            FlushPolicy::Batch,
            Some(watch),
            Monotonic::default(),
        );
        gc.note_write();
        gc.request_flush();
        // The flush hangs at the gate: reported once it has run past the limit.
        let running = rx.recv_timeout(Duration::from_secs(30)).expect("reported");
        assert!(running >= Duration::from_millis(200), "{running:?}");
        assert_eq!(gc.flushed(), 0, "nothing confirmed while stuck");
        // Once, not on every look: nothing more while the same flush hangs on for three more
        // looks (one every 200 ms).
        assert!(rx.recv_timeout(Duration::from_millis(600)).is_err());
        store.open_gate();
        let mut flushed = gc.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        let mut flushed_to = |n: u64| {
            rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(30), flushed.wait_for(|&f| f >= n))
                    .await
                    .expect("flushed in time")
                    .expect("flusher alive");
            });
        };
        flushed_to(1);
        // Flushes that finish promptly are never reported: once the next one is done and the
        // watch thread has been joined, every report it made is in the channel.
        gc.note_write();
        gc.request_flush();
        flushed_to(2);
        gc.stop();
        assert!(rx.try_recv().is_err());
    }
}
