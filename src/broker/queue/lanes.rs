//! The ready messages of a classic queue by priority: one [`ReadyList`] ("lane") per priority
//! level, highest delivered first, FIFO within a lane (`x-max-priority`, RabbitMQ's
//! `rabbit_priority_queue`, which also keeps one backing queue per priority).
//!
//! A queue without `x-max-priority` has one lane and behaves exactly as a plain ready list. A
//! priority queue with a maximum of `m` has `m + 1` lanes; a message's priority above `m`
//! counts as `m`, no priority counts as 0. Each lane pages on its own, with its share of the
//! queue's memory window (the window divided by the number of lanes, at least
//! [`MIN_LANE_WINDOW`] messages), so the memory a queue holds stays bounded whatever the
//! priorities, and the lane being delivered from reads its paged messages back in batches.
//!
//! Transient messages paged from a lane wait in the lane's own tail and spill file (see
//! `classic::paging`); persistent ones are in the queue's one store, in id order across lanes,
//! and a lane reads its own back by scanning from its paged start and keeping those of its
//! priority. Like the ready list, this keeps the books and does no I/O.

use super::MemoryWindow;
use super::ready::ReadyList;
use crate::broker::message::{Message, QueuedMessage};

/// Fewest messages a lane may keep in memory (a window split over many lanes still reads
/// back in batches).
pub const MIN_LANE_WINDOW: usize = 64;

/// One priority level: its ready list and the transient messages paged from it that wait to
/// be written to its spill file (oldest first).
#[derive(Debug, Default)]
pub struct Lane {
    /// The lane's ready list.
    pub ready: ReadyList,
    /// Paged transient messages not yet written to the spill file.
    pub tail: Vec<QueuedMessage>,
    /// Memory cost of `tail`.
    pub tail_bytes: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct Lanes {
    lanes: Vec<Lane>,
    /// Each lane's memory window.
    window: MemoryWindow,
}

impl Lanes {
    /// Lanes for a queue with `max_priority` (`None`: one lane) sharing `window`.
    pub fn new(max_priority: Option<u8>, window: MemoryWindow) -> Lanes {
        let n = max_priority.map_or(1, |m| usize::from(m) + 1);
        let window = if n == 1 {
            window
        } else {
            MemoryWindow {
                messages: (window.messages / n).max(MIN_LANE_WINDOW),
                bytes: (window.bytes / n).max(1),
            }
        };
        Lanes {
            lanes: (0..n).map(|_| Lane::default()).collect(),
            window,
        }
    }

    /// Number of lanes (1 for a queue without priorities).
    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// A lane's memory window.
    pub fn window(&self) -> &MemoryWindow {
        &self.window
    }

    /// The lane a message goes to: its priority, at most the queue's maximum.
    pub fn lane_of(&self, msg: &Message) -> usize {
        if self.lanes.len() == 1 {
            return 0;
        }
        usize::from(msg.properties.priority().unwrap_or(0)).min(self.lanes.len() - 1)
    }

    /// Lane `i`.
    pub fn lane(&self, i: usize) -> &Lane {
        &self.lanes[i]
    }

    /// Lane `i`, to change.
    pub fn lane_mut(&mut self, i: usize) -> &mut Lane {
        &mut self.lanes[i]
    }

    /// The lanes, lowest priority first.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Lane> {
        self.lanes.iter_mut()
    }

    /// The lane delivered from next: the highest with a ready message (in memory or paged);
    /// the lowest when all are empty.
    pub fn head(&self) -> usize {
        self.lanes
            .iter()
            .rposition(|l| !l.ready.is_empty())
            .unwrap_or(0)
    }

    /// The next message to deliver, when it is in memory (`None` also when the head lane's
    /// messages are all paged: see [`Lanes::needs_refill`]).
    pub fn front(&self) -> Option<&QueuedMessage> {
        self.lanes[self.head()].ready.front()
    }

    /// Takes the next message to deliver, when it is in memory.
    pub fn pop_front(&mut self) -> Option<QueuedMessage> {
        let h = self.head();
        self.lanes[h].ready.pop_front()
    }

    /// Takes the first in-memory message of the highest lane whose first message expired by
    /// `now_ms` (TTL expires messages at the head of every lane, as RabbitMQ's priority
    /// queue drops from each priority's head).
    pub fn pop_expired(&mut self, now_ms: u64) -> Option<QueuedMessage> {
        let lane = self
            .lanes
            .iter()
            .rposition(|l| l.ready.front().is_some_and(|m| m.is_expired(now_ms)))?;
        self.lanes[lane].ready.pop_front()
    }

    /// The earliest TTL deadline (unix ms) of the lanes' first messages in memory.
    pub fn earliest_deadline(&self) -> Option<u64> {
        self.lanes
            .iter()
            .filter_map(|l| l.ready.front().map(|m| m.expires_at))
            .filter(|&at| at != 0)
            .min()
    }

    /// Puts a message in memory, in its place in its lane.
    pub fn insert(&mut self, qm: QueuedMessage) {
        let i = self.lane_of(&qm.msg);
        self.lanes[i].ready.insert(qm);
    }

    /// True when the head lane should read paged messages back.
    pub fn wants_refill(&self) -> bool {
        self.lanes[self.head()].ready.wants_refill(&self.window)
    }

    /// True when nothing can be delivered before the head lane reads paged messages back.
    pub fn needs_refill(&self) -> bool {
        self.lanes[self.head()].ready.needs_refill()
    }

    /// Number of ready messages, in memory and paged.
    pub fn len(&self) -> usize {
        self.lanes.iter().map(|l| l.ready.len()).sum()
    }

    /// True when no message is ready.
    pub fn is_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.ready.is_empty())
    }

    /// Ready messages in memory.
    pub fn in_memory(&self) -> usize {
        self.lanes.iter().map(|l| l.ready.in_memory()).sum()
    }

    /// Ready messages paged out.
    pub fn paged(&self) -> usize {
        self.lanes.iter().map(|l| l.ready.paged()).sum()
    }

    /// Body bytes in memory.
    pub fn bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.ready.bytes()).sum()
    }

    /// Body bytes of every ready message.
    pub fn total_bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.ready.total_bytes()).sum()
    }

    /// True when no lane has transient messages waiting for the spill file.
    pub fn tails_empty(&self) -> bool {
        self.lanes.iter().all(|l| l.tail.is_empty())
    }

    /// Memory cost of every lane's tail.
    pub fn tail_bytes(&self) -> usize {
        self.lanes.iter().map(|l| l.tail_bytes).sum()
    }

    /// Takes every lane's tail (to write to the spill files), with their total cost.
    pub fn take_tails(&mut self) -> (Vec<Vec<QueuedMessage>>, usize) {
        let mut bytes = 0;
        let tails = self
            .lanes
            .iter_mut()
            .map(|l| {
                bytes += std::mem::take(&mut l.tail_bytes);
                std::mem::take(&mut l.tail)
            })
            .collect();
        (tails, bytes)
    }

    /// Takes the in-memory messages and forgets tails and paged ones; returns, per lane, its
    /// paged tail's start and size (the caller clears the store and the spill files).
    pub fn drain(&mut self) -> (Vec<QueuedMessage>, Vec<(u64, usize)>) {
        let mut out = Vec::new();
        let mut paged = Vec::with_capacity(self.lanes.len());
        for l in &mut self.lanes {
            let (items, start, n) = l.ready.drain();
            out.extend(items);
            paged.push((start, n));
            l.tail.clear();
            l.tail_bytes = 0;
        }
        (out, paged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties::{BasicProperties, Properties};
    use std::sync::Arc;

    fn qm(id: u64, priority: Option<u8>) -> QueuedMessage {
        let mut m = Message::for_tests("", "k", vec![0; 10]);
        m.properties = Properties::from(&BasicProperties {
            priority,
            ..Default::default()
        });
        QueuedMessage::new(id, Arc::new(m), false)
    }

    #[test]
    fn highest_lane_first_fifo_within_and_clamped() {
        let mut l = Lanes::new(Some(5), MemoryWindow::default());
        for (id, p) in [
            (1, Some(1)),
            (2, None),
            (3, Some(9)),
            (4, Some(5)),
            (5, Some(1)),
        ] {
            l.insert(qm(id, p));
        }
        assert_eq!(l.len(), 5);
        let ids: Vec<u64> = std::iter::from_fn(|| l.pop_front().map(|m| m.id)).collect();
        // 9 counts as 5 and is FIFO with the 5.
        assert_eq!(ids, [3, 4, 1, 5, 2]);
    }

    #[test]
    fn a_queue_without_priorities_ignores_them() {
        let mut l = Lanes::new(None, MemoryWindow::default());
        l.insert(qm(1, Some(1)));
        l.insert(qm(2, Some(9)));
        assert_eq!(l.count(), 1);
        assert_eq!(l.pop_front().map(|m| m.id), Some(1));
    }

    #[test]
    fn a_paged_head_lane_blocks_lower_lanes() {
        let w = MemoryWindow {
            messages: 2 * MIN_LANE_WINDOW,
            bytes: 1 << 20,
        };
        let mut l = Lanes::new(Some(1), w);
        l.insert(qm(1, Some(0)));
        l.lane_mut(1).ready.note_paged(2, 10);
        assert!(l.front().is_none(), "lane 1 is paged: nothing to deliver");
        assert!(l.needs_refill());
        assert_eq!(l.window().messages, MIN_LANE_WINDOW);
    }
}
