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
//! [`QueueStore::put`]: super::super::QueueStore::put

use std::sync::{Arc, Condvar, Mutex, Weak};

use super::super::lock;
use super::queue::SledQueue;

/// A queue with this many sealed chunks waiting writes them on the publisher's task.
pub(super) const INLINE_AFTER: usize = 4;

/// With this many queues waiting for the thread, publishers write their own chunks.
pub(super) const MAX_WAITING: usize = 32;

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
