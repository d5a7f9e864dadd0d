//! Messages coming in, and leaving without a consumer: push (with RabbitMQ's overflow rules),
//! TTL at the head, the tick (expired messages, `x-expires`), and new settings from policies.
//!
//! RabbitMQ 3.10's classic-queue order on publish (`rabbit_amqqueue_process`): a queue that
//! would overflow with `reject-publish[-dlx]` refuses the message first (even when a consumer
//! waits); otherwise a waiting consumer gets it at once (so a TTL of 0 means "deliver now or
//! expire"); otherwise it is enqueued, the head is dropped while over a `drop-head` limit, and
//! expired messages are dropped from the head. Messages expire only from the head, but one is
//! never delivered after its deadline.

use std::sync::Arc;

use super::super::outcome::{Followups, Pushed, Reason};
use super::super::{Overflow, Queue, QueueSettings};
use super::{ClassicQueue, State, TAIL_FLUSH, Work, to_view};
use crate::broker::message::{Message, QueuedMessage};
use crate::broker::time::Now;
use crate::storage::{PutOutcome, StoreError};

/// Most messages one tick drops from a queue before it lets other work run; the rest waits
/// for an immediate next tick.
const TICK_BATCH: usize = 4096;

/// A message's own TTL (the `expiration` property), checked at publish.
pub(crate) fn message_ttl(msg: &Message) -> Option<u64> {
    msg.properties
        .expiration()
        .and_then(|s| crate::broker::publish::parse_expiration(s).ok())
        .flatten()
}

impl ClassicQueue {
    pub(super) fn push_message(
        &self,
        q: &Arc<Queue>,
        msg: &Arc<Message>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<Pushed, StoreError> {
        let mut work = Work::default();
        // The guard is a temporary: the lock is released before `finish`.
        let pushed = self.push_locked(q, &mut self.lock(), msg, now, &mut work, fx);
        let seq = self.finish(q, work, now, fx)?;
        let mut p = pushed?;
        if p.stored.is_some() {
            p.flush = seq;
        }
        Ok(p)
    }

    /// Pushes `msgs` in order under one lock and one store bookkeeping pass (the messages of a
    /// publisher's read batch bound for this queue), appending one [`Pushed`] per message to
    /// `out`. A store error stops the batch: what was pushed before it is kept and accounted.
    pub(super) fn push_messages(
        &self,
        q: &Arc<Queue>,
        msgs: &[&Arc<Message>],
        now: Now,
        fx: &mut Followups,
        out: &mut Vec<Pushed>,
    ) -> Result<(), StoreError> {
        let first = out.len();
        let mut work = Work::default();
        let mut failed = None;
        {
            let mut st = self.lock();
            for msg in msgs {
                match self.push_locked(q, &mut st, msg, now, &mut work, fx) {
                    Ok(p) => out.push(p),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
        }
        let seq = self.finish(q, work, now, fx)?;
        for p in &mut out[first..] {
            if p.stored.is_some() {
                p.flush = seq;
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// One message of [`Self::push_messages`], under the queue's lock (its confirm's flush
    /// sequence is filled in by the caller, after the lock).
    fn push_locked(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        msg: &Arc<Message>,
        now: Now,
        work: &mut Work,
        fx: &mut Followups,
    ) -> Result<Pushed, StoreError> {
        let mut pushed = Pushed::default();
        if st.deleted {
            return Ok(pushed);
        }
        if st.settings.overflow != Overflow::DropHead && would_overflow(st, msg) {
            pushed.refused = true;
            if st.settings.overflow == Overflow::RejectPublishDlx {
                let refused = QueuedMessage::new(0, Arc::clone(msg), false);
                self.drop_message(q, st, refused, Reason::Maxlen, work, fx);
            }
            return Ok(pushed);
        }
        let store = self.store().filter(|_| msg.is_persistent());
        q.stats
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = st.next_id;
        st.next_id += 1;
        let mut qm = QueuedMessage::new(id, Arc::clone(msg), store.is_some());
        let ttl = match (st.settings.message_ttl, message_ttl(msg)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        if let Some(ttl) = ttl {
            qm.expires_at = now.unix_ms.saturating_add(ttl).max(1);
            st.ttl_seen = true;
        }
        if let Some(store) = store {
            let meta = qm.meta();
            if store.put(id, to_view(msg, &meta))? == PutOutcome::WriteDue {
                work.write_sealed = true;
            }
            work.put = true;
            pushed.stored = Some(id);
        }
        if st.ready.is_empty() && st.ready.tails_empty() {
            // Nothing ahead of it: a consumer with credit takes it now, TTL 0 included.
            match self.deliver_first(q, st, qm, work) {
                Ok(()) => {}
                Err(qm) => self.enqueue(q, st, qm, now, work, fx),
            }
        } else {
            self.enqueue(q, st, qm, now, work, fx);
            pushed.flow = needs_flow(st);
        }
        Self::rearm(st, now, work);
        Ok(pushed)
    }

    /// Adds a message to the ready list (in memory, or paged when the window or the budget is
    /// full), then applies `drop-head` limits, drops expired heads and dispatches.
    fn enqueue(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        qm: QueuedMessage,
        now: Now,
        work: &mut Work,
        fx: &mut Followups,
    ) {
        let cost = qm.cost();
        let lane = st.ready.lane_of(&qm.msg);
        let window = *st.ready.window();
        let in_memory = if st.ready.lane(lane).ready.must_page(qm.id, &window) {
            false
        } else if st.share.charge(&self.deps.budget, cost) {
            true
        } else if st.ready.in_memory() == 0 {
            // The budget is spent, but every queue may keep one message in memory.
            st.share.force(&self.deps.budget, cost);
            true
        } else {
            false
        };
        if in_memory {
            st.ready.insert(qm);
        } else {
            let l = st.ready.lane_mut(lane);
            l.ready.note_paged(qm.id, qm.msg.body.len());
            if !qm.persisted {
                // Written to the spill file after the lock; meanwhile it waits here.
                l.tail_bytes += cost;
                l.tail.push(qm);
                st.share.force(&self.deps.budget, cost);
                if st.ready.tail_bytes() >= TAIL_FLUSH.min(self.deps.window.bytes)
                    || self.deps.budget.used() > self.deps.budget.cap()
                {
                    work.flush_tail = true;
                }
            }
        }
        self.drop_over_limit(q, st, work, fx);
        self.expire_head(q, st, now, work, fx, usize::MAX);
        self.dispatch_locked(q, st, now, work, fx);
    }

    /// `drop-head`: while over `x-max-length` or `x-max-length-bytes`, the oldest messages go
    /// (dead-lettered with reason `maxlen`). A head that is paged is read back first.
    pub(super) fn drop_over_limit(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        work: &mut Work,
        fx: &mut Followups,
    ) {
        if st.settings.overflow != Overflow::DropHead || !st.settings.has_length_limit() {
            return;
        }
        while over_limit(&st.settings, st) {
            match self.pop(st) {
                Some(qm) => self.drop_message(q, st, qm, Reason::Maxlen, work, fx),
                None => match self.pop_tail(st) {
                    Some(qm) => self.drop_message(q, st, qm, Reason::Maxlen, work, fx),
                    None => {
                        if st.ready.lane(st.ready.head()).ready.paged() > 0 {
                            work.refill = true;
                        }
                        return;
                    }
                },
            }
        }
    }

    /// The oldest message of the head lane's spill tail when nothing older is paged (a lane
    /// whose whole backlog is still in the tail).
    fn pop_tail(&self, st: &mut State) -> Option<QueuedMessage> {
        let head = st.ready.head();
        let l = st.ready.lane_mut(head);
        if l.tail.is_empty() || l.ready.paged() != l.tail.len() {
            return None;
        }
        let qm = l.tail.remove(0);
        let cost = qm.cost();
        l.tail_bytes -= cost;
        l.ready.note_unpaged(1, qm.msg.body.len());
        st.share.credit(&self.deps.budget, cost);
        Some(qm)
    }

    /// Drops expired messages from the head (of each priority lane), at most `limit`; true
    /// when it stopped at the limit. A paged head is read back when TTLs are in use.
    pub(super) fn expire_head(
        &self,
        q: &Arc<Queue>,
        st: &mut State,
        now: Now,
        work: &mut Work,
        fx: &mut Followups,
        limit: usize,
    ) -> bool {
        if !st.ttl_seen {
            // No message ever had a deadline: nothing to look for.
            return false;
        }
        let mut n = 0;
        while st
            .ready
            .earliest_deadline()
            .is_some_and(|at| at <= now.unix_ms)
        {
            if n == limit {
                return true;
            }
            let Some(qm) = st.ready.pop_expired(now.unix_ms) else {
                break;
            };
            st.share.credit(&self.deps.budget, qm.cost());
            self.drop_message(q, st, qm, Reason::Expired, work, fx);
            n += 1;
        }
        if st.ttl_seen && st.ready.needs_refill() {
            work.refill = true;
        }
        false
    }

    /// The timer fired: drop what expired (a batch at a time), delete the queue if its
    /// `x-expires` ran out, and re-arm.
    pub(super) fn tick_due(
        &self,
        q: &Arc<Queue>,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        // A few rounds of (drop a batch, read back) per tick; then yield with a timer at once.
        for _ in 0..4 {
            let mut work = Work::default();
            let more = {
                let mut st = self.lock();
                if st.deleted {
                    return Ok(());
                }
                if st.armed.is_some_and(|a| a <= now.mono) {
                    st.armed = None;
                }
                if let Some(ms) = st.settings.expires
                    && st.consumers.is_empty()
                    && now.mono >= st.last_used + std::time::Duration::from_millis(ms)
                {
                    fx.expired_queues.push(Arc::clone(q));
                    return Ok(());
                }
                let more = self.expire_head(q, &mut st, now, &mut work, fx, TICK_BATCH);
                self.dispatch_locked(q, &mut st, now, &mut work, fx);
                if more {
                    st.armed = Some(now.mono);
                    work.arm = Some(now.mono);
                } else {
                    Self::rearm(&mut st, now, &mut work);
                }
                more
            };
            let refill = std::mem::take(&mut work.refill);
            self.finish(q, work, now, fx)?;
            if more {
                return Ok(());
            }
            if !refill {
                break;
            }
            self.refill(q, now, fx, true)?;
        }
        Ok(())
    }

    /// Runs with new settings: a lowered `drop-head` limit applies at once, a new `x-expires`
    /// arms its timer. Messages already queued keep their deadlines (RabbitMQ computes a
    /// message's expiry when it is enqueued).
    pub(super) fn set_settings(
        &self,
        q: &Arc<Queue>,
        settings: QueueSettings,
        now: Now,
        fx: &mut Followups,
    ) -> Result<(), StoreError> {
        let mut work = Work::default();
        {
            let mut st = self.lock();
            st.settings = settings;
            self.drop_over_limit(q, &mut st, &mut work, fx);
            Self::rearm(&mut st, now, &mut work);
        }
        self.finish(q, work, now, fx).map(|_| ())
    }

    /// Marks the queue used now: a new `x-expires` period starts.
    pub(super) fn mark_used(&self, st: &mut State, now: Now, work: &mut Work) {
        st.last_used = now.mono;
        if st.settings.expires.is_some() {
            // The armed expiry is now too early; it fires, finds the queue used, and re-arms.
            Self::rearm(st, now, work);
        }
    }
}

/// `reject-publish`: would one more message take the queue over a limit? (RabbitMQ's
/// `will_overflow`: ready messages and their body bytes, the new one included.)
fn would_overflow(st: &State, msg: &Message) -> bool {
    st.settings
        .max_length
        .is_some_and(|max| st.ready.len() as u64 + 1 > max)
        || st
            .settings
            .max_length_bytes
            .is_some_and(|max| (st.ready.total_bytes() + msg.body.len()) as u64 > max)
}

/// Over a length limit now?
fn over_limit(s: &QueueSettings, st: &State) -> bool {
    s.max_length.is_some_and(|max| st.ready.len() as u64 > max)
        || s.max_length_bytes
            .is_some_and(|max| st.ready.total_bytes() as u64 > max)
}

/// Consumers looked at by [`needs_flow`]: enough to see that a queue's consumers are behind,
/// few enough that a deep queue with many consumers costs little per publish.
const FLOW_SAMPLE: usize = 8;

/// Ready body bytes that count as a queue falling behind (see [`needs_flow`]), whatever its
/// window: a few milliseconds of deliveries of large bodies at full speed, so consumers never
/// run dry while publishers pause, and 4 KiB messages do not pile up 20 MB before they do.
const FLOW_BYTES: usize = 4 << 20;

/// Whether publishers to this queue should pause for a moment: half its memory window of ready
/// messages (or [`FLOW_BYTES`] of bodies) waits while a consumer that could take them is held
/// only by what is already on its way to its connection. The broker is delivering slower than publishers publish, and the
/// excess would be paged out and read back. RabbitMQ's credit flow does the same. A queue whose
/// consumers are at their prefetch limit (or that has none) absorbs the peak instead.
fn needs_flow(st: &State) -> bool {
    let window = st.ready.window();
    (st.ready.len() >= window.messages / 2
        || st.ready.total_bytes() >= FLOW_BYTES.min(window.bytes / 2))
        && st
            .consumers
            .iter()
            .take(FLOW_SAMPLE)
            .any(|c| c.held_by_transit())
}
