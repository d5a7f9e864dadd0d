//! A classic queue's consumers and which one gets the next message.
//!
//! Selection is round robin over consumers that have credit (`ConsumerHandle::try_reserve`):
//! the first consumer after the last one served that can take a delivery gets it.
//!
//! - **Consumer priorities** (`x-priority`, RabbitMQ's `consumer_priorities`): consumers are
//!   kept highest priority first (in arrival order within a priority); the highest priority
//!   level with a consumer that has credit is served, round robin within the level (a cursor
//!   per level), so a high-priority consumer whose prefetch is full lets lower ones work.
//! - **Single active consumer** (`x-single-active-consumer`): consumers are kept in arrival
//!   order and only the first receives; when it goes, the next registered one takes over
//!   (RabbitMQ 3.10's classic queues ignore consumer priorities here). An exclusive consumer
//!   is refused on such a queue (403, as RabbitMQ).
//! - Exclusive consumers are refused (403) when the queue has consumers, and others are
//!   refused while an exclusive one consumes, as RabbitMQ refuses them.
//!
//! The queue calls only [`Consumers::reserve_next`] (who gets the next message) and
//! [`Consumers::add`]/[`Consumers::remove`].

use super::super::consumer::{ConnId, ConsumerHandle};
use super::super::error::{BrokerError, BrokerResult};

/// See the module docs.
#[derive(Debug, Default)]
pub struct Consumers {
    list: Vec<ConsumerHandle>,
    /// Round-robin position: where the search for the next consumer starts (all consumers of
    /// one priority).
    next: usize,
    /// Round-robin positions within each priority level, when priorities differ: (priority,
    /// offset in its level).
    cursors: Vec<(i32, usize)>,
    /// Consumers have different priorities.
    mixed: bool,
    /// `x-single-active-consumer`: only the first consumer receives.
    single_active: bool,
    /// Set once a consumer was ever added (auto-delete needs one to have come and gone).
    had_consumer: bool,
}

impl Consumers {
    /// No consumers; with `single_active`, for a single-active-consumer queue.
    pub fn new(single_active: bool) -> Consumers {
        Consumers {
            single_active,
            ..Consumers::default()
        }
    }

    /// Adds a consumer. 403 when the queue has an exclusive consumer, or when an exclusive one
    /// asks for a queue that has consumers or a single active consumer (RabbitMQ's text).
    pub fn add(&mut self, c: ConsumerHandle, queue: &str, vhost: &str) -> BrokerResult<()> {
        if self.list.iter().any(|c| c.exclusive)
            || (c.exclusive && (!self.list.is_empty() || self.single_active))
        {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{queue}' in vhost '{vhost}' in exclusive use"
            )));
        }
        let pos = if self.single_active {
            self.list.len()
        } else {
            // After every consumer of the same or a higher priority.
            self.list.partition_point(|x| x.priority >= c.priority)
        };
        if pos <= self.next && pos < self.list.len() {
            self.next += 1;
        }
        self.list.insert(pos, c);
        self.had_consumer = true;
        self.note_priorities();
        Ok(())
    }

    fn note_priorities(&mut self) {
        self.mixed = !self.single_active
            && self
                .list
                .first()
                .is_some_and(|f| self.list.iter().any(|c| c.priority != f.priority));
        if !self.mixed {
            self.cursors.clear();
        }
    }

    /// Removes the consumer `tag` of `channel` on `conn`, if there is one.
    pub fn remove(&mut self, conn: ConnId, channel: u16, tag: &str) -> Option<ConsumerHandle> {
        let pos = self
            .list
            .iter()
            .position(|c| c.conn == conn && c.channel == channel && c.tag.as_str() == tag)?;
        Some(self.remove_at(pos))
    }

    /// Removes the consumer at `idx` (one whose connection has gone).
    pub fn remove_at(&mut self, idx: usize) -> ConsumerHandle {
        let c = self.list.remove(idx);
        if self.next > idx {
            self.next -= 1;
        }
        self.note_priorities();
        c
    }

    /// Picks the next consumer that can take a delivery now (see the module docs), and takes
    /// that delivery's credit from it. The caller sends to it, or gives the credit back with
    /// `ConsumerHandle::unreserve`.
    pub fn reserve_next(&mut self) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        if self.single_active {
            return self.list[0].try_reserve().then_some(0);
        }
        if self.mixed {
            return self.reserve_by_priority();
        }
        let start = self.next % n;
        let idx = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.list[i].try_reserve())?;
        self.next = idx + 1;
        Some(idx)
    }

    /// Round robin within the highest priority level that has a consumer with credit.
    fn reserve_by_priority(&mut self) -> Option<usize> {
        let n = self.list.len();
        let mut a = 0;
        while a < n {
            let p = self.list[a].priority;
            let len = self.list[a..]
                .iter()
                .take_while(|c| c.priority == p)
                .count();
            let slot = match self.cursors.iter().position(|(cp, _)| *cp == p) {
                Some(i) => i,
                None => {
                    self.cursors.push((p, 0));
                    self.cursors.len() - 1
                }
            };
            let start = self.cursors[slot].1 % len;
            if let Some(off) = (0..len)
                .map(|i| (start + i) % len)
                .find(|&i| self.list[a + i].try_reserve())
            {
                self.cursors[slot].1 = off + 1;
                return Some(a + off);
            }
            a += len;
        }
        None
    }

    /// The consumer that receives on a single-active-consumer queue (`None` on other queues
    /// or when there is none).
    pub fn active(&self) -> Option<&ConsumerHandle> {
        self.list.first().filter(|_| self.single_active)
    }

    /// True for a single-active-consumer queue.
    pub fn is_single_active(&self) -> bool {
        self.single_active
    }

    /// The consumer at `idx`.
    pub fn get(&self, idx: usize) -> &ConsumerHandle {
        &self.list[idx]
    }

    /// True when there is no consumer.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Number of consumers.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// True once a consumer was added, even if it has gone since.
    pub fn had_consumer(&self) -> bool {
        self.had_consumer
    }

    /// The consumers, highest priority first (single active consumer: in arrival order,
    /// the active one first).
    pub fn iter(&self) -> impl Iterator<Item = &ConsumerHandle> {
        self.list.iter()
    }

    /// Takes every consumer (the queue is being deleted).
    pub fn take_all(&mut self) -> Vec<ConsumerHandle> {
        self.next = 0;
        self.cursors.clear();
        self.mixed = false;
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::consumer::{Credit, TRANSIT_LIMIT};
    use crate::protocol::types::ShortStr;

    fn consumer(tag: &'static str, prefetch: u32, exclusive: bool) -> ConsumerHandle {
        with_priority(tag, prefetch, exclusive, 0)
    }

    fn with_priority(
        tag: &'static str,
        prefetch: u32,
        exclusive: bool,
        priority: i32,
    ) -> ConsumerHandle {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        ConsumerHandle {
            tag: ShortStr::from_static(tag),
            channel: 1,
            conn: ConnId(1),
            no_ack: false,
            exclusive,
            priority,
            browse: false,
            prefetch: Credit::new(prefetch),
            channel_credit: Credit::new(0),
            transit: Credit::new(TRANSIT_LIMIT),
            mailbox: tx,
        }
    }

    #[test]
    fn round_robin_skips_consumers_without_credit() {
        let mut cs = Consumers::default();
        cs.add(consumer("a", 1, false), "q", "/").expect("a");
        cs.add(consumer("b", 0, false), "q", "/").expect("b");
        cs.add(consumer("c", 0, false), "q", "/").expect("c");
        let mut order = Vec::new();
        for _ in 0..5 {
            let i = cs.reserve_next().expect("someone has credit");
            order.push(cs.get(i).tag.to_string());
        }
        // "a" has a prefetch of one: it takes one and is skipped after.
        assert_eq!(order, ["a", "b", "c", "b", "c"]);
        cs.get(0).prefetch.release(1);
        let i = cs.reserve_next().expect("credit back");
        assert_eq!(cs.get(i).tag.as_str(), "a");
    }

    #[test]
    fn removing_keeps_the_rotation_fair() {
        let mut cs = Consumers::default();
        for t in ["a", "b", "c"] {
            cs.add(consumer(t, 0, false), "q", "/").expect("add");
        }
        let i = cs.reserve_next().expect("a");
        assert_eq!(cs.get(i).tag.as_str(), "a");
        cs.remove(ConnId(1), 1, "a").expect("removed");
        let i = cs.reserve_next().expect("b");
        assert_eq!(cs.get(i).tag.as_str(), "b", "b is next, not skipped");
        assert!(cs.had_consumer());
    }

    #[test]
    fn exclusive_consumers_are_alone() {
        let mut cs = Consumers::default();
        cs.add(consumer("x", 0, true), "q", "/").expect("x");
        let e = cs
            .add(consumer("y", 0, false), "q", "/")
            .expect_err("exclusive");
        assert_eq!(e.to_string(), "queue 'q' in vhost '/' in exclusive use");
    }

    fn served(cs: &mut Consumers, n: usize) -> Vec<String> {
        (0..n)
            .map_while(|_| cs.reserve_next().map(|i| cs.get(i).tag.to_string()))
            .collect()
    }

    #[test]
    fn the_highest_priority_with_credit_is_served_round_robin() {
        let mut cs = Consumers::default();
        cs.add(with_priority("low", 0, false, -1), "q", "/")
            .expect("low");
        cs.add(with_priority("hi1", 2, false, 5), "q", "/")
            .expect("hi1");
        cs.add(with_priority("mid", 0, false, 0), "q", "/")
            .expect("mid");
        cs.add(with_priority("hi2", 1, false, 5), "q", "/")
            .expect("hi2");
        // hi1 (prefetch 2) and hi2 (prefetch 1) alternate until full, then mid takes all.
        assert_eq!(served(&mut cs, 5), ["hi1", "hi2", "hi1", "mid", "mid"]);
        cs.get(1).prefetch.release(1);
        assert_eq!(
            served(&mut cs, 1),
            ["hi2"],
            "credit back: the high level again"
        );
        cs.remove(ConnId(1), 1, "mid").expect("mid");
        assert_eq!(served(&mut cs, 2), ["low", "low"]);
    }

    #[test]
    fn single_active_consumer_serves_the_first_then_the_next() {
        let mut cs = Consumers::new(true);
        cs.add(with_priority("a", 1, false, 0), "q", "/")
            .expect("a");
        cs.add(with_priority("b", 0, false, 9), "q", "/")
            .expect("b");
        assert_eq!(cs.active().map(|c| c.tag.as_str()), Some("a"));
        assert_eq!(served(&mut cs, 3), ["a"], "a is full: nobody else gets it");
        cs.remove(ConnId(1), 1, "a").expect("a");
        assert_eq!(served(&mut cs, 2), ["b", "b"]);
        let e = cs
            .add(consumer("x", 0, true), "q", "/")
            .expect_err("exclusive on a single-active-consumer queue");
        assert_eq!(e.to_string(), "queue 'q' in vhost '/' in exclusive use");
    }
}
