//! The write-ahead thread: appends the chunks that publishers seal to the body log, off the
//! publishers' tasks.
//!
//! A publish that fills its queue's open chunk seals it ([`QueueStore::put`] says
//! `WriteDue`); the chunk must reach the body log before its flush, or that flush writes it.
//! Writing it on the publisher's task (a CRC and a copy into the page cache, some 0.8 µs of a
//! 4 KiB message) made a single publisher's connection the bottleneck of persistent
//! publishing; here the publisher hands the queue to this thread instead and goes on reading.
//! Memory stays bounded: a queue with [`INLINE_AFTER`] sealed chunks waiting, or a publisher
//! that finds [`MAX_WAITING`] queues waiting here, writes its chunks itself, as before.
//!
//! Handing a chunk here changes nothing of what is durable when: the flush collects every
//! sealed chunk not yet written and writes it itself, and this thread skips a queue whose `io`
//! lock a flush holds.
//!
//! Before any of that, a queue whose consumer keeps up (it was delivered entries of chunks not
//! yet written, within the last few flushes) **keeps** up to [`HOLD_CHUNKS`] sealed chunks for
//! its next flush instead of writing them ahead (the node at most [`HOLD_BYTES`] of them,
//! counted in [`Hold`]): entries the consumer acks before that flush are left out of the chunks
//! it writes ([`compact`](super::super::chunk::compact)), as RabbitMQ does not write a message
//! consumed and acked before its turn came. Such a queue writes only what its consumers have
//! not acked within a flush or so. A queue nobody reads, or whose consumers are behind, writes
//! ahead at once: there holding would only move the writes into the flush, after the fsync
//! before it. Durability is the same: the confirm still waits for the flush that wrote, or left
//! out, every entry before it.
//!
//! [`QueueStore::put`]: super::super::QueueStore::put

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};

use super::super::lock;
use super::queue::SledQueue;

/// A queue with this many sealed chunks waiting writes them on the publisher's task.
pub(super) const INLINE_AFTER: usize = 4;

/// With this many queues waiting for the thread, publishers write their own chunks.
pub(super) const MAX_WAITING: usize = 32;

/// A queue keeps up to this many sealed chunks (4 MiB of 256 KiB chunks, a confirm window of
/// 1,000 4 KiB messages) for its next flush rather than writing them ahead.
pub(super) const HOLD_CHUNKS: usize = 16;

/// The node keeps at most this many bytes of sealed chunks for the next flush; beyond it,
/// sealed chunks are written ahead at once.
pub(super) const HOLD_BYTES: usize = 16 << 20;

/// How many sealed chunks queues keep for the next flush (see the module docs), and the bytes
/// they keep now, node-wide. Each queue reports its own share (under its area lock) when it
/// seals a chunk and when its sealed chunks are taken.
#[derive(Debug)]
pub(super) struct Hold {
    chunks: AtomicUsize,
    bytes: AtomicUsize,
    held: AtomicUsize,
}

impl Default for Hold {
    fn default() -> Self {
        Hold {
            chunks: AtomicUsize::new(HOLD_CHUNKS),
            bytes: AtomicUsize::new(HOLD_BYTES),
            held: AtomicUsize::new(0),
        }
    }
}

impl Hold {
    /// A queue that reported `old` bytes kept now keeps `new`; returns the node's total.
    pub(super) fn report(&self, old: usize, new: usize) -> usize {
        if new >= old {
            self.held.fetch_add(new - old, Ordering::AcqRel) + (new - old)
        } else {
            self.held.fetch_sub(old - new, Ordering::AcqRel) - (old - new)
        }
    }

    /// How many sealed chunks a queue may keep while the node keeps `total` bytes.
    pub(super) fn chunks(&self, total: usize) -> usize {
        if total <= self.bytes.load(Ordering::Relaxed) {
            self.chunks.load(Ordering::Relaxed)
        } else {
            0
        }
    }

    /// Bytes the node keeps for the next flush.
    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Sets the limits (tests: 0 writes every sealed chunk ahead at once).
    #[cfg(test)]
    pub(super) fn set(&self, chunks: usize, bytes: usize) {
        self.chunks.store(chunks, Ordering::Relaxed);
        self.bytes.store(bytes, Ordering::Relaxed);
    }
}

/// Queues waiting for the write-ahead thread, and whether it should stop.
#[derive(Default)]
struct Waiting {
    queues: Vec<Weak<SledQueue>>,
    stop: bool,
    /// The thread is writing a batch it took.
    busy: bool,
    /// Tests: the thread takes nothing until resumed.
    #[cfg(test)]
    paused: bool,
}

/// The hand-over between publishers and the write-ahead thread.
#[derive(Default)]
pub(super) struct Ahead {
    /// Sealed chunks kept for the next flush.
    pub(super) hold: Hold,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Signalled after every batch written.
    done: Condvar,
}

impl Ahead {
    /// Hands `queue` to the thread; false when too many wait (the caller writes itself).
    pub(super) fn hand(&self, queue: Weak<SledQueue>) -> bool {
        let mut w = lock(&self.waiting);
        if w.stop || w.queues.len() >= MAX_WAITING {
            return false;
        }
        w.queues.push(queue);
        drop(w);
        self.wake.notify_one();
        true
    }

    /// Ends [`Ahead::run`] once what waits is written.
    pub(super) fn stop(&self) {
        lock(&self.waiting).stop = true;
        self.wake.notify_one();
    }

    /// The thread's loop: writes ahead every queue handed over, until stopped.
    pub(super) fn run(self: Arc<Self>) {
        loop {
            let queues = {
                let mut w = lock(&self.waiting);
                while (w.queues.is_empty() || w.held()) && !w.stop {
                    w = self
                        .wake
                        .wait(w)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if w.queues.is_empty() {
                    return;
                }
                w.busy = true;
                std::mem::take(&mut w.queues)
            };
            for q in queues.iter().filter_map(Weak::upgrade) {
                q.write_handed();
            }
            lock(&self.waiting).busy = false;
            self.done.notify_all();
        }
    }

    /// Waits until every queue handed over is written (tests).
    #[cfg(test)]
    pub(super) fn wait_idle(&self) {
        let mut w = lock(&self.waiting);
        while !w.queues.is_empty() || w.busy {
            w = self
                .done
                .wait(w)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    /// Stops taking work until [`Ahead::resume`] (tests of what publishers do meanwhile).
    #[cfg(test)]
    pub(super) fn pause(&self) {
        lock(&self.waiting).paused = true;
    }

    /// Ends [`Ahead::pause`].
    #[cfg(test)]
    pub(super) fn resume(&self) {
        lock(&self.waiting).paused = false;
        self.wake.notify_one();
    }
}

impl Waiting {
    /// Whether the thread must leave the queues waiting.
    fn held(&self) -> bool {
        #[cfg(test)]
        return self.paused;
        #[cfg(not(test))]
        false
    }
}
