//! Queue operations as the session and management call them, and the follow-up work they
//! return, carried out here with no queue lock held.
//!
//! Every operation is `queue.op(..., &mut fx)` followed by [`VHost::run`]`(fx)`: dead letters
//! are routed through their dead-letter exchange and pushed into the target queues (which may
//! return more follow-ups: a loop, not recursion), and queues whose `x-expires` ran out are
//! deleted. Dead-lettering a persistent message from a durable queue removes it from the
//! source's store only after the targets took the copy, under one held flush, so a crash leaves
//! it in exactly one of the two (at-least-once, where RabbitMQ's classic queues are
//! at-most-once).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::VHost;
use crate::broker::consumer::ConsumerHandle;
use crate::broker::deadletter::{dead_letter_copy, is_cycle};
use crate::broker::error::BrokerResult;
use crate::broker::message::{Delivery, Message, QueuedMessage};
use crate::broker::queue::{DeadLetter, Followups, GetResult, Queue, Reason, Settle};
use crate::broker::time::Now;
use crate::storage::StoreError;

/// Dead letters handled under one held flush at most.
const DEAD_LETTER_BATCH: usize = 1024;
/// Rounds of follow-ups one call carries out before it logs and stops (a safety net: cycles
/// are dropped, so real chains are short).
const MAX_ROUNDS: usize = 10_000;

impl VHost {
    /// basic.consume: adds the consumer (the caller dispatches after consume-ok).
    pub fn consume(&self, q: &Arc<Queue>, c: ConsumerHandle, now: Now) -> BrokerResult<()> {
        q.consume(c, now)
    }

    /// basic.cancel (or a channel's end): removes the consumer; an auto-delete queue whose
    /// last consumer went is deleted.
    pub fn cancel(
        &self,
        q: &Arc<Queue>,
        conn: crate::broker::ConnId,
        channel: u16,
        tag: &str,
        now: Now,
    ) -> BrokerResult<()> {
        if q.cancel(conn, channel, tag, now) == Some(true) {
            self.auto_delete_queue(q)?;
        }
        Ok(())
    }

    /// Pushes ready messages of `q` to consumers with credit.
    pub fn dispatch(&self, q: &Arc<Queue>, now: Now) -> BrokerResult<()> {
        let mut fx = Followups::default();
        let r = q.dispatch(now, &mut fx);
        self.run(fx, now)?;
        Ok(r?)
    }

    /// Settles delivered messages of `q`.
    pub fn settle(
        &self,
        q: &Arc<Queue>,
        how: Settle,
        msgs: Vec<QueuedMessage>,
        now: Now,
    ) -> BrokerResult<()> {
        let mut fx = Followups::default();
        let r = q.settle(how, msgs, now, &mut fx);
        self.run(fx, now)?;
        Ok(r?)
    }

    /// Takes back a delivery that never reached its consumer.
    pub fn undeliver(&self, d: Delivery, now: Now) -> BrokerResult<()> {
        if d.copy {
            // A browsed copy: the message never left its queue.
            return Ok(());
        }
        let mut fx = Followups::default();
        let r = d.queue.undeliver(d.message, d.no_ack, now, &mut fx);
        self.run(fx, now)?;
        Ok(r?)
    }

    /// basic.get.
    pub fn get(&self, q: &Arc<Queue>, no_ack: bool, now: Now) -> BrokerResult<Option<GetResult>> {
        let mut fx = Followups::default();
        let r = q.get(no_ack, now, &mut fx);
        self.run(fx, now)?;
        Ok(r?)
    }

    /// Reads up to `count` ready messages of `q` from position `offset` without taking them
    /// (see [`Queue::browse`]).
    pub fn browse(
        &self,
        q: &Arc<Queue>,
        offset: usize,
        count: usize,
    ) -> BrokerResult<crate::broker::queue::Browsed> {
        Ok(q.browse(offset, count)?)
    }

    /// queue.purge.
    pub fn purge(&self, q: &Arc<Queue>, now: Now) -> BrokerResult<u32> {
        Ok(q.purge(now)?)
    }

    /// Due time-driven work of `q` (expired messages, `x-expires`).
    pub fn tick(&self, q: &Arc<Queue>, now: Now) -> BrokerResult<()> {
        let mut fx = Followups::default();
        let r = q.tick(now, &mut fx);
        self.run(fx, now)?;
        Ok(r?)
    }

    /// Marks `q` used (a declare): its `x-expires` period starts over.
    pub(crate) fn touch(&self, q: &Arc<Queue>, now: Now) -> BrokerResult<()> {
        q.touch(now);
        Ok(())
    }

    /// Carries out follow-up work until none is left.
    pub(crate) fn run(&self, mut fx: Followups, now: Now) -> Result<(), StoreError> {
        let mut rounds = 0;
        while !fx.is_empty() {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                tracing::error!(vhost = %self.name, "dead-letter follow-ups did not settle; dropped");
                return Ok(());
            }
            let mut next = Followups::default();
            for q in std::mem::take(&mut fx.expired_queues) {
                self.expire_queue(&q);
            }
            let dead = std::mem::take(&mut fx.dead);
            let mut dead = dead.into_iter().peekable();
            while dead.peek().is_some() {
                let batch: Vec<DeadLetter> = dead.by_ref().take(DEAD_LETTER_BATCH).collect();
                self.dead_letter(batch, now, &mut next)?;
            }
            fx = next;
        }
        Ok(())
    }

    /// Deletes a queue whose `x-expires` ran out, if it is still that queue and still unused.
    fn expire_queue(&self, q: &Arc<Queue>) {
        let r = self.change(|defs| {
            if q.consumer_count() == 0 {
                tracing::debug!(queue = %q.name, vhost = %self.name, "queue expired");
                self.remove_queue_locked(defs, q);
            }
            Ok(())
        });
        if let Err(e) = r {
            tracing::error!(queue = %q.name, vhost = %self.name, error = %e, "deleting an expired queue failed");
        }
    }

    /// Routes dead letters to their exchanges and pushes them into the target queues; then
    /// removes the sources' stored copies. Under one held flush, so that both land in the same
    /// store flush.
    ///
    /// A batch (messages expiring together, a purge into a dead-letter exchange) is mostly
    /// messages that differ only in their bodies: same source, reason, exchange, routing key and
    /// properties, in the same second. For those the copy's properties (with its `x-death`), its
    /// keys and the targets (after the cycle check) are worked out once and reused; only the
    /// body differs. Measured (bench/ttl_expiry.py, 1M x 16 B expiring): see the commit.
    fn dead_letter(
        &self,
        batch: Vec<DeadLetter>,
        now: Now,
        next: &mut Followups,
    ) -> Result<(), StoreError> {
        let stats = &self.shared.stats;
        let _hold = batch
            .iter()
            .any(|d| d.in_source_store)
            .then(|| self.shared.store.hold_flush());
        let mut last: Option<(DeathShape, Message, Vec<Arc<Queue>>)> = None;
        for dl in batch {
            stats.dead_lettered[dl.reason.index()].fetch_add(1, Ordering::Relaxed);
            let shape = DeathShape::of(&dl, now);
            let reuse = last.as_ref().filter(|(s, _, _)| *s == shape);
            let (copy, targets) = match reuse {
                Some((_, template, targets)) => (
                    with_body(template, dl.message.msg.body.clone()),
                    targets.clone(),
                ),
                None => {
                    let (copy, targets) = self.dead_letter_targets(&dl, now);
                    let template = with_body(&copy, bytes::Bytes::new());
                    last = Some((shape, template, targets.clone()));
                    (copy, targets)
                }
            };
            if targets.is_empty() {
                stats.dead_letter_dropped.fetch_add(1, Ordering::Relaxed);
            }
            let copy = Arc::new(copy);
            for t in &targets {
                t.push(&copy, now, next)?;
            }
            if dl.in_source_store {
                dl.source.forget_stored(dl.message.id)?;
            }
        }
        Ok(())
    }

    /// The dead-lettered copy of one message and the queues it goes to (cycles removed).
    fn dead_letter_targets(&self, dl: &DeadLetter, now: Now) -> (Message, Vec<Arc<Queue>>) {
        let (copy, keys) = dead_letter_copy(dl, now);
        let mut targets: Vec<Arc<Queue>> = Vec::new();
        match self.find_exchange(&dl.exchange) {
            Some(x) => {
                for k in &keys {
                    self.route_to(&x, k, &copy.properties, &mut targets);
                }
            }
            None => {
                tracing::debug!(exchange = %dl.exchange, queue = %dl.source.name, "dead-letter exchange missing; message dropped");
            }
        }
        targets.retain(|t| {
            let cycle = is_cycle(&copy, dl.reason, &t.name);
            if cycle {
                tracing::debug!(queue = %t.name, "dead-letter cycle; message dropped for this queue");
            }
            !cycle
        });
        (copy, targets)
    }
}

/// `m` with another body.
fn with_body(m: &Message, body: bytes::Bytes) -> Message {
    Message {
        exchange: m.exchange.clone(),
        routing_key: m.routing_key.clone(),
        properties: m.properties.clone(),
        body,
        awaited: None,
    }
}

/// What a dead-lettered copy's properties, keys and targets depend on, apart from the body:
/// two dead letters of the same shape get the same copy but for the body.
#[derive(PartialEq)]
struct DeathShape {
    source: *const Queue,
    reason: Reason,
    exchange: Arc<str>,
    routing_key: Option<Arc<str>>,
    from_exchange: crate::protocol::types::ShortStr,
    from_key: crate::protocol::types::ShortStr,
    properties: crate::protocol::properties::Properties,
    second: u64,
}

impl DeathShape {
    fn of(dl: &DeadLetter, now: Now) -> Self {
        let m = &dl.message.msg;
        DeathShape {
            source: Arc::as_ptr(&dl.source),
            reason: dl.reason,
            exchange: Arc::clone(&dl.exchange),
            routing_key: dl.routing_key.clone(),
            from_exchange: m.exchange.clone(),
            from_key: m.routing_key.clone(),
            properties: m.properties.clone(),
            second: now.unix_secs(),
        }
    }
}
