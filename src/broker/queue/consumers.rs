//! A classic queue's consumers and which one gets the next message.
//!
//! Selection is round robin over consumers that have credit (`ConsumerHandle::try_reserve`):
//! the first consumer after the last one served that can take a delivery gets it. Exclusive
//! consumers are refused (403) as RabbitMQ refuses them. Consumer priorities and single active
//! consumer will change only [`Consumers::reserve_next`] (which consumers are eligible, in which
//! order) and [`Consumers::add`]/[`Consumers::remove`] (who is active); the queue calls nothing
//! else.

use super::super::consumer::{ConnId, ConsumerHandle};
use super::super::error::{BrokerError, BrokerResult};

/// See the module docs.
#[derive(Debug, Default)]
pub struct Consumers {
    list: Vec<ConsumerHandle>,
    /// Round-robin position: where the search for the next consumer starts.
    next: usize,
    /// Set once a consumer was ever added (auto-delete needs one to have come and gone).
    had_consumer: bool,
}

impl Consumers {
    /// Adds a consumer. 403 when the queue has an exclusive consumer, or when an exclusive one
    /// asks for a queue that has consumers (RabbitMQ's text).
    pub fn add(&mut self, c: ConsumerHandle, queue: &str, vhost: &str) -> BrokerResult<()> {
        if self.list.iter().any(|c| c.exclusive) || (c.exclusive && !self.list.is_empty()) {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{queue}' in vhost '{vhost}' in exclusive use"
            )));
        }
        self.list.push(c);
        self.had_consumer = true;
        Ok(())
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
        c
    }

    /// Picks the next consumer, round robin, that can take a delivery now, and takes that
    /// delivery's credit from it. The caller sends to it, or gives the credit back with
    /// `ConsumerHandle::unreserve`.
    pub fn reserve_next(&mut self) -> Option<usize> {
        let n = self.list.len();
        if n == 0 {
            return None;
        }
        let start = self.next % n;
        let idx = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| self.list[i].try_reserve())?;
        self.next = idx + 1;
        Some(idx)
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

    /// The consumers, in the order they came.
    pub fn iter(&self) -> impl Iterator<Item = &ConsumerHandle> {
        self.list.iter()
    }

    /// Takes every consumer (the queue is being deleted).
    pub fn take_all(&mut self) -> Vec<ConsumerHandle> {
        self.next = 0;
        std::mem::take(&mut self.list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::consumer::{Credit, TRANSIT_LIMIT};
    use crate::protocol::types::ShortStr;

    fn consumer(tag: &'static str, prefetch: u32, exclusive: bool) -> ConsumerHandle {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        ConsumerHandle {
            tag: ShortStr::from_static(tag),
            channel: 1,
            conn: ConnId(1),
            no_ack: false,
            exclusive,
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
}
