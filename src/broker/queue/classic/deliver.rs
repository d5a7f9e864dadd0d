//! Messages going out and coming back: dispatch to consumers, consume and cancel, basic.get,
//! and settling deliveries (ack, requeue with the delivery counter and limit, reject with
//! dead-lettering).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::super::Queue;
use super::super::outcome::{Followups, GetResult, Reason, Settle};
use super::{ClassicQueue, State, Work};
use crate::broker::consumer::{ConnId, Outbound};
use crate::broker::message::{Delivery, QueuedMessage};
use crate::broker::time::Now;
use crate::storage::StoreError;

/// How often basic.get reads paged messages back before it answers get-empty.
const GET_REFILLS: usize = 3;

impl ClassicQueue {
    /// Pushes ready messages to consumers with credit, round robin, until either runs out.
    /// Expired messages met at the head are dropped, never delivered; a head that is paged out
    /// asks for a read-back.
    pub(super) fn dispatch_locked(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        now: Now,
        work: &mut Work,
        fx: &mut Followups,
    ) {
        while !st.consumers.is_empty() {
            if st.ready.wants_refill() {
                work.refill = true;
            }
            let Some(head) = st.ready.front() else {
                return;
            };
            if head.is_expired(now.unix_ms) {
                if let Some(qm) = self.pop(st) {
                    self.drop_message(q, st, qm, Reason::Expired, work, fx);
                }
                continue;
            }
            let Some(idx) = st.consumers.reserve_next() else {
                return;
            };
            let Some(qm) = self.pop(st) else {
                st.consumers.get(idx).unreserve();
                return;
            };
            if let Err(qm) = self.send_to(q, st, idx, qm, work) {
                // Its connection is gone: keep the message at the head.
                self.insert(st, qm);
            }
        }
    }

    /// Hands the message just published to a consumer with credit when nothing is ahead of
    /// it; gives it back when no consumer can take it.
    pub(super) fn deliver_first(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        mut qm: QueuedMessage,
        work: &mut Work,
    ) -> Result<(), QueuedMessage> {
        while let Some(idx) = st.consumers.reserve_next() {
            match self.send_to(q, st, idx, qm, work) {
                Ok(()) => return Ok(()),
                Err(back) => qm = back,
            }
        }
        Err(qm)
    }

    /// Sends `qm` to the consumer at `idx`, whose credit is reserved. On a closed mailbox the
    /// consumer is removed and the message returned.
    fn send_to(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        idx: usize,
        qm: QueuedMessage,
        work: &mut Work,
    ) -> Result<(), QueuedMessage> {
        let c = st.consumers.get(idx);
        let (no_ack, id, persisted, redelivered) = (c.no_ack, qm.id, qm.persisted, qm.redelivered);
        let delivery = Delivery {
            queue: Arc::clone(q),
            channel: c.channel,
            consumer_tag: c.tag.clone(),
            message: qm,
            no_ack,
            copy: false,
        };
        if let Err(returned) = c.mailbox.send(Outbound::Deliver(delivery)) {
            c.unreserve();
            st.consumers.remove_at(idx);
            return match returned.0 {
                Outbound::Deliver(d) => Err(d.message),
                // Only deliveries are sent here.
                _ => Ok(()),
            };
        }
        q.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if redelivered {
            q.stats.redelivered.fetch_add(1, Ordering::Relaxed);
        }
        if no_ack {
            q.stats.acked.fetch_add(1, Ordering::Relaxed);
            if persisted {
                work.remove.push(id);
            }
        } else {
            st.unacked += 1;
            if persisted && !redelivered {
                work.delivered.push(id);
            }
        }
        Ok(())
    }

    /// Removes a consumer. When it was the last one, the queue is unused from now on
    /// (`x-expires`); `Some(true)` tells the caller to delete an auto-delete queue.
    pub(super) fn cancel_consumer(
        &self,
        q: &Arc<Queue>,
        conn: ConnId,
        channel: u16,
        tag: &str,
        now: Now,
    ) -> Option<bool> {
        let mut work = Work::default();
        let last = {
            let mut st = self.lock();
            st.consumers.remove(conn, channel, tag)?;
            let last = st.consumers.is_empty();
            if last {
                self.mark_used(&mut st, now, &mut work);
            }
            last && st.consumers.had_consumer()
        };
        if let Some(at) = work.arm {
            self.deps.timers.arm(at, q);
        }
        Some(q.auto_delete && last)
    }

    /// Settles delivered messages. A requeued message counts one more delivery
    /// (`x-delivery-count`); past the queue's delivery limit it is dead-lettered with reason
    /// `delivery_limit` instead of requeued, as RabbitMQ's quorum queues do.
    pub(super) fn settle_messages(
        &self,
        q: &Arc<Queue>,
        how: Settle,
        msgs: Vec<QueuedMessage>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        let mut work = Work::default();
        {
            let mut st = self.lock();
            st.unacked = st.unacked.saturating_sub(msgs.len());
            match how {
                Settle::Ack => {
                    q.stats
                        .acked
                        .fetch_add(msgs.len() as u64, Ordering::Relaxed);
                    // A deleted queue's stored messages went with it.
                    if !st.deleted {
                        work.remove
                            .extend(msgs.iter().filter(|m| m.persisted).map(|m| m.id));
                    }
                }
                Settle::Reject => {
                    for m in msgs {
                        if st.deleted {
                            break;
                        }
                        self.drop_message(q, &st, m, Reason::Rejected, &mut work, fx);
                    }
                }
                Settle::Requeue => {
                    if !st.deleted {
                        for m in msgs {
                            self.requeue_one(q, &mut st, m, &mut work, fx);
                        }
                        self.expire_head(q, &mut st, now, &mut work, fx, usize::MAX);
                        self.dispatch_locked(q, &mut st, now, &mut work, fx);
                        Self::rearm(&mut st, now, &mut work);
                    }
                }
            }
        }
        self.finish(q, work, now, fx).map(|_| ())
    }

    fn requeue_one(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        mut m: QueuedMessage,
        work: &mut Work,
        fx: &mut Followups,
    ) {
        m.redelivered = true;
        m.delivery_count = m.delivery_count.saturating_add(1);
        if st
            .settings
            .delivery_limit
            .is_some_and(|limit| u64::from(m.delivery_count) > limit)
        {
            self.drop_message(q, st, m, Reason::DeliveryLimit, work, fx);
            return;
        }
        if m.persisted {
            work.counts.push((m.id, m.delivery_count));
        }
        self.insert(st, m);
    }

    /// A delivery that never reached its consumer comes back to its place, unchanged.
    pub(super) fn take_back(
        &self,
        q: &Arc<Queue>,
        mut qm: QueuedMessage,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        let mut work = Work::default();
        {
            let mut st = self.lock();
            if no_ack {
                // Its store copy was removed when it was sent; it now lives in memory only.
                qm.persisted = false;
            } else {
                st.unacked = st.unacked.saturating_sub(1);
            }
            if !st.deleted {
                self.insert(&mut st, qm);
                self.dispatch_locked(q, &mut st, now, &mut work, fx);
            }
        }
        self.finish(q, work, now, fx).map(|_| ())
    }

    /// basic.get: the first ready message that has not expired, reading paged messages back
    /// when none is in memory. A get uses the queue (`x-expires` starts over).
    pub(super) fn get_message(
        &self,
        q: &Arc<Queue>,
        no_ack: bool,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Option<GetResult>, StoreError> {
        for _ in 0..=GET_REFILLS {
            let mut work = Work::default();
            let got = {
                let mut st = self.lock();
                self.mark_used(&mut st, now, &mut work);
                self.expire_head(q, &mut st, now, &mut work, fx, usize::MAX);
                match self.pop(&mut st) {
                    Some(qm) => {
                        if !no_ack {
                            st.unacked += 1;
                        }
                        if qm.persisted {
                            if no_ack {
                                work.remove.push(qm.id);
                            } else if !qm.redelivered {
                                work.delivered.push(qm.id);
                            }
                        }
                        if st.ready.wants_refill() {
                            work.refill = true;
                        }
                        Self::rearm(&mut st, now, &mut work);
                        let remaining = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
                        Some(GetResult {
                            message: qm,
                            remaining,
                        })
                    }
                    None => None,
                }
            };
            let refill = got.is_none() && std::mem::take(&mut work.refill);
            self.finish(q, work, now, fx)?;
            if let Some(got) = got {
                q.stats.delivered.fetch_add(1, Ordering::Relaxed);
                if got.message.redelivered {
                    q.stats.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                if no_ack {
                    q.stats.acked.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(Some(got));
            }
            if !refill && !self.lock().ready.needs_refill() {
                return Ok(None);
            }
            self.refill(q, now, fx, true)?;
        }
        Ok(None)
    }
}
