//! basic.ack, basic.nack, basic.reject and basic.recover: settling deliveries, in batches.

use crate::broker::queue::Settle as Settled;
use crate::broker::{Credit, Queue, QueuedMessage};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use std::sync::Arc;

use super::super::confirms::EARLY_BYTES;
use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::{Channel, KEEP_PENDING_ACKS, Settle, Unacked, err};

impl Channel {
    pub(super) fn basic_ack(&mut self, ctx: &mut Ctx<'_>, m: BasicAck) -> Result<(), AmqpError> {
        let ids = (BasicAck::CLASS_ID, BasicAck::METHOD_ID);
        self.settle(ctx, m.delivery_tag, m.multiple, Settle::Ack, ids)
    }

    pub(super) fn basic_reject(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicReject,
    ) -> Result<(), AmqpError> {
        let ids = (BasicReject::CLASS_ID, BasicReject::METHOD_ID);
        self.settle(ctx, m.delivery_tag, false, Settle::rejected(m.requeue), ids)
    }

    pub(super) fn basic_nack(&mut self, ctx: &mut Ctx<'_>, m: BasicNack) -> Result<(), AmqpError> {
        let ids = (BasicNack::CLASS_ID, BasicNack::METHOD_ID);
        self.settle(
            ctx,
            m.delivery_tag,
            m.multiple,
            Settle::rejected(m.requeue),
            ids,
        )
    }

    /// Moves the deliveries `tag` (and, with `multiple`, all before it) from `unacked` to the end
    /// of `out`, tagged with `how`. An unknown tag is a channel error and takes nothing.
    pub(super) fn take_unacked(
        &mut self,
        tag: u64,
        multiple: bool,
        how: Settle,
        out: &mut Vec<(Unacked, Settle)>,
        (class, mid): (u16, u16),
    ) -> Result<(), AmqpError> {
        let unknown = || {
            err(
                self.id,
                ReplyCode::PreconditionFailed,
                format_args!("unknown delivery tag {tag}"),
                class,
                mid,
            )
        };
        // The common case: acking the oldest delivery, one at a time.
        if !multiple && self.unacked.front().is_some_and(|u| u.tag == tag) {
            out.extend(self.unacked.pop_front().map(|u| (u, how)));
            return Ok(());
        }
        let range = if multiple {
            if tag == 0 {
                0..self.unacked.len()
            } else {
                let end = self.unacked.partition_point(|u| u.tag <= tag);
                if end == 0 || self.unacked[end - 1].tag != tag {
                    return Err(unknown());
                }
                0..end
            }
        } else {
            let pos = self.unacked.partition_point(|u| u.tag < tag);
            if self.unacked.get(pos).is_none_or(|u| u.tag != tag) {
                return Err(unknown());
            }
            pos..pos + 1
        };
        out.extend(self.unacked.drain(range).map(|u| (u, how)));
        Ok(())
    }

    fn settle(
        &mut self,
        ctx: &mut Ctx<'_>,
        tag: u64,
        multiple: bool,
        how: Settle,
        (class, mid): (u16, u16),
    ) -> Result<(), AmqpError> {
        if let Some(mut tx) = self.tx.take() {
            let r = self.take_unacked(tag, multiple, how, &mut tx.settles, (class, mid));
            self.tx = Some(tx);
            return r;
        }
        if how == Settle::Ack {
            // Applied with the rest of this read batch's acks (see `pending_acks`).
            let mut pending = std::mem::take(&mut self.pending_acks);
            let r = self.take_unacked(tag, multiple, how, &mut pending, (class, mid));
            self.pending_acks = pending;
            return r;
        }
        self.flush_acks(ctx)?;
        let mut taken = Vec::new();
        self.take_unacked(tag, multiple, how, &mut taken, (class, mid))?;
        self.apply_settles(ctx, &mut taken)
    }

    /// Test view: see [`Connection::pending_acks_capacity`].
    ///
    /// [`Connection::pending_acks_capacity`]: super::super::Connection::pending_acks_capacity
    #[cfg(test)]
    pub(crate) fn pending_acks_capacity(&self) -> usize {
        self.pending_acks.capacity()
    }

    /// Applies the acks deferred by this read batch.
    pub(crate) fn flush_acks(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        if self.pending_acks.is_empty() {
            return Ok(());
        }
        let mut pending = std::mem::take(&mut self.pending_acks);
        let r = self.apply_settles(ctx, &mut pending);
        // Keep the allocation for the next batch, unless a burst made it large.
        pending.clear();
        if pending.capacity() <= KEEP_PENDING_ACKS {
            self.pending_acks = pending;
        }
        r
    }

    /// Settles (and empties) `items`, in order. Each run of consecutive deliveries from the same
    /// queue settled the same way is one queue call (one lock), and each run from the same
    /// consumer gives its prefetch credit back in one release; a queue whose consumer had no
    /// credit left dispatches once, at the end. A store error is a connection error (541).
    pub(super) fn apply_settles(
        &mut self,
        ctx: &mut Ctx<'_>,
        items: &mut Vec<(Unacked, Settle)>,
    ) -> Result<(), AmqpError> {
        if items.is_empty() {
            return Ok(());
        }
        let mut wake: Vec<Arc<Queue>> = Vec::new();
        let mut credited = 0u32;
        let mut run: Vec<QueuedMessage> = Vec::with_capacity(items.len());
        let mut run_of: Option<(Arc<Queue>, Settle)> = None;
        let mut credit_run: Option<(Arc<Credit>, Arc<Queue>, u32)> = None;
        // Whether the last queue seen keeps up with its publishers (see `keeps_up`).
        let mut keeping_up: Option<(Arc<Queue>, bool)> = None;
        let mut result = Ok(());
        for (u, how) in items.drain(..) {
            if let Some(p) = u.prefetch {
                credited += 1;
                match &mut credit_run {
                    Some((c, _, n)) if Arc::ptr_eq(c, &p) => *n += 1,
                    _ => {
                        if let Some(done) = credit_run.replace((p, Arc::clone(&u.queue), 1)) {
                            release_prefetch(done, &mut wake);
                        }
                    }
                }
            }
            match &run_of {
                Some((q, h)) if *h == how && Arc::ptr_eq(q, &u.queue) => {}
                _ => {
                    if let Some((q, h)) = run_of.replace((Arc::clone(&u.queue), how)) {
                        result = result.and(settle_run(ctx, &q, h, &mut run));
                    }
                }
            }
            if how != Settle::Requeue && u.msg.msg.awaited.is_some() {
                let ok = match &keeping_up {
                    Some((q, ok)) if Arc::ptr_eq(q, &u.queue) => *ok,
                    _ => {
                        let ok = keeps_up(&u.queue);
                        keeping_up = Some((Arc::clone(&u.queue), ok));
                        ok
                    }
                };
                if ok {
                    super::basic::consumed(ctx, &u.msg);
                }
            }
            run.push(u.msg);
        }
        if let Some((q, h)) = run_of {
            result = result.and(settle_run(ctx, &q, h, &mut run));
        }
        if let Some(done) = credit_run {
            release_prefetch(done, &mut wake);
        }
        if credited > 0 {
            result = result.and(self.release_channel_credit(ctx, credited));
        }
        for q in wake {
            result = result.and(dispatch(ctx, &q));
        }
        result
    }

    pub(super) fn release_channel_credit(
        &self,
        ctx: &mut Ctx<'_>,
        n: u32,
    ) -> Result<(), AmqpError> {
        if self.credit.release(n) {
            return self.dispatch_all(ctx);
        }
        Ok(())
    }

    /// Asks every queue this channel consumes from to dispatch (credit became available).
    pub(super) fn dispatch_all(&self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let mut seen: Vec<&Arc<Queue>> = Vec::new();
        let mut result = Ok(());
        for c in self.consumers.values() {
            if !seen.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                seen.push(&c.queue);
                result = result.and(dispatch(ctx, &c.queue));
            }
        }
        result
    }

    /// basic.recover, and a channel's end: the acks already received are applied, then every
    /// other unacked delivery goes back to its queue.
    pub(super) fn recover(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        let r = self.flush_acks(ctx);
        let mut all: Vec<(Unacked, Settle)> = self
            .unacked
            .drain(..)
            .map(|u| (u, Settle::Requeue))
            .collect();
        r.and(self.apply_settles(ctx, &mut all))
    }
}

/// A store failure while settling or dispatching: logged, and the connection closes (541).
pub(super) fn store_failure(e: crate::broker::BrokerError) -> AmqpError {
    tracing::error!(error = %e, "store failure; closing the connection");
    AmqpError::connection(e.reply_code(), e)
}

/// Asks `q` to dispatch.
pub(super) fn dispatch(ctx: &Ctx<'_>, q: &Arc<Queue>) -> Result<(), AmqpError> {
    ctx.vhost.dispatch(q, ctx.now).map_err(store_failure)
}

/// Settles one run of deliveries from `q` (and empties `run`).
fn settle_run(
    ctx: &Ctx<'_>,
    q: &Arc<Queue>,
    how: Settle,
    run: &mut Vec<QueuedMessage>,
) -> Result<(), AmqpError> {
    let how = match how {
        Settle::Ack => Settled::Ack,
        Settle::Discard => Settled::Reject,
        Settle::Requeue => Settled::Requeue,
    };
    ctx.vhost
        .settle(q, how, std::mem::take(run), ctx.now)
        .map_err(store_failure)
}

/// Gives `n` slots back to a consumer's prefetch credit; notes its queue for a dispatch when
/// the credit was exhausted (the queue may hold messages for it).
fn release_prefetch(
    (credit, queue, n): (Arc<Credit>, Arc<Queue>, u32),
    wake: &mut Vec<Arc<Queue>>,
) {
    if credit.release(n) && !wake.iter().any(|q| Arc::ptr_eq(q, &queue)) {
        wake.push(queue);
    }
}

/// Whether `q`'s consumers keep up with its publishers: at most [`EARLY_BYTES`] of ready
/// messages wait. Only then may an ack release its publisher's confirm before the flush (see
/// [`crate::broker::consumed`]); a queue that builds a backlog lets its publishers go only as
/// fast as the disk, or a publisher matched to its consumer's rate would grow the backlog with
/// every pause of the consumer and never drain it. One look at the queue per read batch.
fn keeps_up(q: &Queue) -> bool {
    q.counts().ready_bytes <= EARLY_BYTES
}
