//! basic.ack, basic.nack, basic.reject and basic.recover: settling deliveries, in batches.

use crate::broker::{Credit, Queue, QueuedMessage};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use std::sync::Arc;

use super::super::error::AmqpError;
use super::{Channel, Settle, Unacked, err};

impl Channel {
    pub(super) fn basic_ack(&mut self, m: BasicAck) -> Result<(), AmqpError> {
        let ids = (BasicAck::CLASS_ID, BasicAck::METHOD_ID);
        self.settle(m.delivery_tag, m.multiple, Settle::Ack, ids)
    }

    pub(super) fn basic_reject(&mut self, m: BasicReject) -> Result<(), AmqpError> {
        let ids = (BasicReject::CLASS_ID, BasicReject::METHOD_ID);
        self.settle(m.delivery_tag, false, Settle::rejected(m.requeue), ids)
    }

    pub(super) fn basic_nack(&mut self, m: BasicNack) -> Result<(), AmqpError> {
        let ids = (BasicNack::CLASS_ID, BasicNack::METHOD_ID);
        self.settle(m.delivery_tag, m.multiple, Settle::rejected(m.requeue), ids)
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
        self.flush_acks();
        let mut taken = Vec::new();
        self.take_unacked(tag, multiple, how, &mut taken, (class, mid))?;
        self.apply_settles(&mut taken);
        Ok(())
    }

    /// Applies the acks deferred by this read batch.
    pub(crate) fn flush_acks(&mut self) {
        if self.pending_acks.is_empty() {
            return;
        }
        let mut pending = std::mem::take(&mut self.pending_acks);
        self.apply_settles(&mut pending);
        // Keep the allocation for the next batch.
        self.pending_acks = pending;
    }

    /// Settles (and empties) `items`, in order. Each run of consecutive deliveries from the same
    /// queue settled the same way is one queue call (one lock), and each run from the same
    /// consumer gives its prefetch credit back in one release; a queue whose consumer had no
    /// credit left dispatches once, at the end.
    pub(super) fn apply_settles(&mut self, items: &mut Vec<(Unacked, Settle)>) {
        if items.is_empty() {
            return;
        }
        let mut wake: Vec<Arc<Queue>> = Vec::new();
        let mut credited = 0u32;
        let mut run: Vec<QueuedMessage> = Vec::with_capacity(items.len());
        let mut run_of: Option<(Arc<Queue>, Settle)> = None;
        let mut credit_run: Option<(Arc<Credit>, Arc<Queue>, u32)> = None;
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
                        settle_run(&q, h, &mut run);
                    }
                }
            }
            run.push(u.msg);
        }
        if let Some((q, h)) = run_of {
            settle_run(&q, h, &mut run);
        }
        if let Some(done) = credit_run {
            release_prefetch(done, &mut wake);
        }
        if credited > 0 {
            self.release_channel_credit(credited);
        }
        for q in wake {
            q.dispatch();
        }
    }

    pub(super) fn release_channel_credit(&self, n: u32) {
        if self.credit.release(n) {
            self.dispatch_all();
        }
    }

    /// Asks every queue this channel consumes from to dispatch (credit became available).
    pub(super) fn dispatch_all(&self) {
        let mut seen: Vec<&Arc<Queue>> = Vec::new();
        for c in self.consumers.values() {
            if !seen.iter().any(|q| Arc::ptr_eq(q, &c.queue)) {
                seen.push(&c.queue);
                c.queue.dispatch();
            }
        }
    }

    /// basic.recover, and a channel's end: the acks already received are applied, then every
    /// other unacked delivery goes back to its queue.
    pub(super) fn recover(&mut self) {
        self.flush_acks();
        let mut all: Vec<(Unacked, Settle)> = self
            .unacked
            .drain(..)
            .map(|u| (u, Settle::Requeue))
            .collect();
        self.apply_settles(&mut all);
    }
}

/// Settles one run of deliveries from `q` (and empties `run`).
fn settle_run(q: &Arc<Queue>, how: Settle, run: &mut Vec<QueuedMessage>) {
    let r = match how {
        Settle::Ack => q.ack(run),
        Settle::Discard => q.discard(run),
        Settle::Requeue => {
            q.requeue(std::mem::take(run));
            Ok(())
        }
    };
    run.clear();
    if let Err(e) = r {
        tracing::error!(queue = %q.name, error = %e, "settling deliveries failed");
    }
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
