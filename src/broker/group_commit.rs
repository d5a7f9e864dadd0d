//! Group commit: one fsync covers every store write since the previous one, from all connections.
//!
//! Writers bump a sequence number after each store write ([`GroupCommit::note_write`]). A session
//! whose publishes were persisted remembers the sequence it needs and asks for a flush; a single
//! flusher thread reads the current sequence, calls [`Store::flush`], and publishes the sequence
//! it covered on a watch channel. Every write numbered at or below that is on disk, so every
//! confirm waiting for it may go out. Under load, one fsync covers thousands of messages.

use crate::storage::Store;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
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
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
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
    /// Starts the flusher thread.
    pub fn start(store: Arc<dyn Store>, policy: FlushPolicy) -> Arc<Self> {
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
            thread: Mutex::new(None),
        });
        let worker = Arc::clone(&gc);
        let handle = std::thread::Builder::new()
            .name("lagomorph-flusher".into())
            .spawn(move || worker.run())
            .expect("invariant: the OS can start one thread at startup");
        *gc.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        gc
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
    }

    fn flush_once(&self) {
        let target = self.written();
        if target <= self.flushed() {
            return;
        }
        let started = std::time::Instant::now();
        match self.store.flush() {
            Ok(()) => {
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.flush_micros_total.fetch_add(micros, Ordering::Relaxed);
                self.flush_count.fetch_add(1, Ordering::Relaxed);
                if let Some(i) = FLUSH_BUCKETS_MICROS.iter().position(|&b| micros <= b) {
                    self.flush_buckets[i].fetch_add(1, Ordering::Relaxed);
                }
                self.flushed.send_modify(|f| *f = (*f).max(target));
            }
            Err(e) => tracing::error!(error = %e, "store flush failed; confirms withheld"),
        }
    }

    fn run(self: Arc<Self>) {
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
            self.flush_once();
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            if let FlushPolicy::Interval(d) = self.policy {
                std::thread::sleep(d);
            }
        }
    }
}
