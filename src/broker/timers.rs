//! When queues next need attention without any client doing anything: a message's TTL runs
//! out, an unused queue reaches its `x-expires`.
//!
//! Queues arm a timer at their next deadline ([`Timers::arm`]); the driver task in `server/`
//! sleeps until [`Timers::next`] (woken early through [`Timers::changed`] when an earlier
//! deadline is armed) and then calls [`crate::broker::Broker::tick`], which asks every queue
//! whose deadline passed to do its due work and re-arm. Entries are weak: a deleted queue's
//! timers fire into nothing. A queue arms only deadlines earlier than the one it already has,
//! so a stale later entry costs one early wake-up, never a missed deadline.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;
use tokio::sync::Notify;

use super::queue::Queue;

struct Entry {
    at: Instant,
    seq: u64,
    queue: Weak<Queue>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

#[derive(Default)]
struct Heap {
    entries: BinaryHeap<Reverse<Entry>>,
    seq: u64,
}

/// See the module docs.
#[derive(Default)]
pub struct Timers {
    heap: Mutex<Heap>,
    changed: Notify,
}

impl std::fmt::Debug for Timers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timers")
            .field("next", &self.next())
            .finish_non_exhaustive()
    }
}

impl Timers {
    fn heap(&self) -> std::sync::MutexGuard<'_, Heap> {
        self.heap.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks for `queue` to be ticked at `at`.
    pub fn arm(&self, at: Instant, queue: &Arc<Queue>) {
        let earliest = {
            let mut h = self.heap();
            h.seq += 1;
            let seq = h.seq;
            let before = h.entries.peek().map(|e| e.0.at);
            h.entries.push(Reverse(Entry {
                at,
                seq,
                queue: Arc::downgrade(queue),
            }));
            before.is_none_or(|b| at < b)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Asks for a broker tick at `at`, for work that belongs to no queue (delayed messages).
    pub fn wake_at(&self, at: Instant) {
        let earliest = {
            let mut h = self.heap();
            h.seq += 1;
            let seq = h.seq;
            let before = h.entries.peek().map(|e| e.0.at);
            h.entries.push(Reverse(Entry {
                at,
                seq,
                queue: Weak::new(),
            }));
            before.is_none_or(|b| at < b)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// The earliest armed deadline.
    pub fn next(&self) -> Option<Instant> {
        self.heap().entries.peek().map(|e| e.0.at)
    }

    /// Wakes the driver when an earlier deadline is armed.
    pub fn changed(&self) -> &Notify {
        &self.changed
    }

    /// Takes every queue whose deadline is at or before `now`, each once.
    pub fn due(&self, now: Instant) -> Vec<Arc<Queue>> {
        let mut out: Vec<Arc<Queue>> = Vec::new();
        let mut h = self.heap();
        while h.entries.peek().is_some_and(|e| e.0.at <= now) {
            let Some(Reverse(e)) = h.entries.pop() else {
                break;
            };
            if let Some(q) = e.queue.upgrade()
                && !out.iter().any(|o| Arc::ptr_eq(o, &q))
            {
                out.push(q);
            }
        }
        out
    }

    /// Number of armed entries (tests, metrics).
    pub fn len(&self) -> usize {
        self.heap().entries.len()
    }

    /// True when nothing is armed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
