//! The ready list of a classic queue: messages waiting for a consumer, in id (publish) order.
//!
//! A head in memory and, when the queue holds more than its memory allows, a tail paged out
//! (persistent copies in the queue's store, transient ones in its spill file). This is the only
//! place that orders ready messages; it does no I/O and knows nothing of consumers, TTL or
//! limits: the queue decides what to page and when to read back, this keeps the books.
//!
//! Invariant: every paged message has an id >= `paged_start`, every message in memory an id
//! below it (requeued messages go back to memory, in their place). A message is paged only when
//! its id is above every id in memory, so the store's ids from `paged_start` on are exactly the
//! paged persistent messages, and reading them back in id order keeps the queue's order.
//! A priority queue keeps one of these per priority (see `lanes`).

use std::collections::VecDeque;

use super::MemoryWindow;
use crate::broker::message::QueuedMessage;

/// Slots a ready list keeps however few messages it holds (see [`ReadyList::pop_front`]).
const SHRINK_ABOVE: usize = 256;

/// See the module docs.
#[derive(Debug, Default)]
pub struct ReadyList {
    items: VecDeque<QueuedMessage>,
    /// Body bytes of `items`.
    bytes: usize,
    /// Messages paged out (not in `items`).
    paged: usize,
    /// Body bytes of the paged messages (estimated for those recovered from the store).
    paged_bytes: usize,
    /// Lowest id that may be paged.
    paged_start: u64,
    /// Highest id ever held in memory (in `items`, delivered, or read back).
    max_mem_id: u64,
}

impl ReadyList {
    /// Adds a message to memory in id order (almost always at the back).
    pub fn insert(&mut self, qm: QueuedMessage) {
        self.bytes += qm.msg.body.len();
        self.max_mem_id = self.max_mem_id.max(qm.id);
        match self.items.back() {
            Some(last) if last.id > qm.id => {
                let pos = self.items.partition_point(|m| m.id < qm.id);
                self.items.insert(pos, qm);
            }
            _ => self.items.push_back(qm),
        }
    }

    /// Takes the first message in memory.
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let qm = self.items.pop_front()?;
        self.bytes -= qm.msg.body.len();
        // A list that held many and now holds few gives half its room back (amortized: at
        // least a quarter of the room was popped since the last change), so that a thousand
        // queues that held a window each at the start of a drain do not keep its slots.
        let cap = self.items.capacity();
        if cap > SHRINK_ABOVE && self.items.len() < cap / 4 {
            self.items.shrink_to(cap / 2);
        }
        Some(qm)
    }

    /// The first message in memory.
    pub fn front(&self) -> Option<&QueuedMessage> {
        self.items.front()
    }

    /// The messages in memory, in order.
    pub fn iter(&self) -> impl Iterator<Item = &QueuedMessage> {
        self.items.iter()
    }

    /// True when the message with `id` is above every id in memory, so it may be paged.
    pub fn may_page(&self, id: u64) -> bool {
        id > self.max_mem_id
    }

    /// True when a new message with `id` must be paged because older ones are, or because the
    /// queue's own window is full (the global budget is the queue's business).
    pub fn must_page(&self, id: u64, w: &MemoryWindow) -> bool {
        self.may_page(id)
            && (self.paged > 0 || self.items.len() >= w.messages || self.bytes >= w.bytes)
    }

    /// Records that message `id`, of `size` body bytes, was paged instead of kept in memory.
    pub fn note_paged(&mut self, id: u64, size: usize) {
        if self.paged == 0 {
            self.paged_start = id;
        }
        self.paged += 1;
        self.paged_bytes += size;
    }

    /// Records that `n` paged messages of `size` body bytes in all left the paged tail (read
    /// back, dropped, or lost).
    pub fn note_unpaged(&mut self, n: usize, size: usize) {
        self.paged = self.paged.saturating_sub(n);
        self.paged_bytes = if self.paged == 0 {
            0
        } else {
            self.paged_bytes.saturating_sub(size)
        };
    }

    /// Moves the start of the paged tail past `id` (persistent messages up to it were read).
    pub fn advance_paged_start(&mut self, id: u64) {
        self.paged_start = self.paged_start.max(id.saturating_add(1));
    }

    /// The lowest id that may be paged.
    pub fn paged_start(&self) -> u64 {
        self.paged_start
    }

    /// Restores a paged tail of `n` messages, about `bytes` body bytes, from `start` on
    /// (recovery: what did not fit in memory stays in the store).
    pub fn restore_paged(&mut self, n: usize, bytes: usize, start: u64) {
        self.paged = n;
        self.paged_bytes = bytes;
        self.paged_start = start;
    }

    /// True when memory has run low enough that paged messages should be read back: both
    /// limits below a quarter, so a refill reads a batch, not one message at a time.
    pub fn wants_refill(&self, w: &MemoryWindow) -> bool {
        self.paged > 0 && self.items.len() <= w.messages / 4 && self.bytes <= w.bytes / 4
    }

    /// True when nothing is in memory but something is paged: nothing can be delivered before
    /// a refill.
    pub fn needs_refill(&self) -> bool {
        self.items.is_empty() && self.paged > 0
    }

    /// How many paged messages to read back to fill the window again (at least one).
    pub fn refill_count(&self, w: &MemoryWindow) -> usize {
        let by_count = w.messages.saturating_sub(self.items.len());
        let avg = match self.paged_bytes.checked_div(self.paged) {
            Some(a) if a > 0 => a,
            _ => 1,
        };
        let by_bytes = w.bytes.saturating_sub(self.bytes) / avg;
        by_count.min(by_bytes).min(self.paged).max(1)
    }

    /// Average body size of the paged messages (at least 1).
    pub fn paged_avg(&self) -> usize {
        self.paged_bytes.checked_div(self.paged).unwrap_or(0).max(1)
    }

    /// Number of ready messages, in memory and paged.
    pub fn len(&self) -> usize {
        self.items.len() + self.paged
    }

    /// True when no message is ready.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty() && self.paged == 0
    }

    /// Ready messages held in memory.
    pub fn in_memory(&self) -> usize {
        self.items.len()
    }

    /// Ready messages paged out.
    pub fn paged(&self) -> usize {
        self.paged
    }

    /// Body bytes held in memory.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Body bytes of every ready message, in memory and paged (`x-max-length-bytes`).
    pub fn total_bytes(&self) -> usize {
        self.bytes + self.paged_bytes
    }

    /// Takes the in-memory messages and forgets the paged ones; returns the paged tail's
    /// start and size (the caller clears the store and the spill).
    pub fn drain(&mut self) -> (Vec<QueuedMessage>, u64, usize) {
        self.bytes = 0;
        self.paged_bytes = 0;
        let paged = (self.paged_start, std::mem::take(&mut self.paged));
        (self.items.drain(..).collect(), paged.0, paged.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::message::Message;
    use std::sync::Arc;

    fn qm(id: u64, size: usize) -> QueuedMessage {
        QueuedMessage::new(
            id,
            Arc::new(Message::for_tests("", "k", vec![0; size])),
            false,
        )
    }

    #[test]
    fn a_list_that_held_many_gives_its_room_back_as_it_empties() {
        let mut l = ReadyList::default();
        for id in 1..=5000 {
            l.insert(qm(id, 1));
        }
        let full = l.items.capacity();
        assert!(full >= 5000);
        for id in 1..=4990 {
            assert_eq!(l.pop_front().map(|m| m.id), Some(id));
        }
        assert!(
            l.items.capacity() <= 4 * SHRINK_ABOVE,
            "{} slots kept for 10 messages (had {full})",
            l.items.capacity()
        );
        let rest: Vec<u64> = std::iter::from_fn(|| l.pop_front().map(|m| m.id)).collect();
        assert_eq!(rest, (4991..=5000).collect::<Vec<_>>());
    }

    const W: MemoryWindow = MemoryWindow {
        messages: 4,
        bytes: 1000,
    };

    #[test]
    fn keeps_id_order_when_requeued_messages_come_back() {
        let mut r = ReadyList::default();
        for id in [1, 2, 5] {
            r.insert(qm(id, 10));
        }
        r.insert(qm(3, 10));
        let ids: Vec<u64> = std::iter::from_fn(|| r.pop_front().map(|m| m.id)).collect();
        assert_eq!(ids, [1, 2, 3, 5]);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn pages_past_the_window_and_refills_in_batches() {
        let mut r = ReadyList::default();
        for id in 1..=4 {
            assert!(!r.must_page(id, &W));
            r.insert(qm(id, 10));
        }
        assert!(r.must_page(5, &W), "window of 4 messages is full");
        r.note_paged(5, 10);
        r.note_paged(6, 10);
        assert!(
            r.must_page(7, &W),
            "once paged, every newer message is paged"
        );
        assert_eq!((r.len(), r.paged(), r.total_bytes()), (6, 2, 60));
        assert!(!r.wants_refill(&W));
        for _ in 0..3 {
            r.pop_front();
        }
        assert!(r.wants_refill(&W), "one left of four: read back");
        assert_eq!(r.refill_count(&W), 2, "no more than is paged");
        r.note_unpaged(2, 20);
        assert_eq!((r.paged(), r.total_bytes()), (0, 10));
    }

    #[test]
    fn a_byte_window_bounds_memory_too() {
        let mut r = ReadyList::default();
        r.insert(qm(1, 1000));
        assert!(r.must_page(2, &W), "1000 bytes reached");
        r.note_paged(2, 400);
        r.pop_front();
        assert!(r.needs_refill());
        assert_eq!(r.refill_count(&W), 1);
    }
}
