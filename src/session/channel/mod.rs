//! One AMQP channel: its consumers, unacked deliveries, prefetch, confirms and transactions.
//!
//! [`Channel::handle_method`] is a dispatcher of one-line calls, as `rabbit_channel`'s
//! `handle_method` clauses are; the handlers live by class: [`exchange`] (exchange.*), [`queue`]
//! (queue.*), [`basic`] (basic.qos / consume / cancel / publish / get and deliveries), [`acks`]
//! (basic.ack / nack / reject / recover and settling), [`tx_confirm`] (tx.* and confirm.select).

mod acks;
mod basic;
mod exchange;
mod queue;
mod tx_confirm;

use crate::broker::access::ChannelSlot;
use crate::broker::{Credit, NameCache, Queue, QueuedMessage, Routed};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use crate::protocol::types::{LongStr, ShortStr};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use super::assembler::{Assembler, Publish};
use super::confirms::Confirms;
use super::connection::Ctx;
use super::error::AmqpError;

/// A consumer on this channel.
#[derive(Debug)]
struct ConsumerState {
    queue: Arc<Queue>,
    prefetch: Arc<Credit>,
    transit: Arc<Credit>,
}

/// A delivery the client has not settled yet.
#[derive(Debug)]
struct Unacked {
    tag: u64,
    queue: Arc<Queue>,
    msg: QueuedMessage,
    /// The consumer's prefetch credit; `None` for basic.get (which takes no credit).
    prefetch: Option<Arc<Credit>>,
    /// When it was sent.
    at: Instant,
    /// Its queue's consumer timeout, milliseconds (`None`: the broker's).
    timeout: Option<u64>,
}

/// Deferred acks whose vector a channel keeps between read batches, at most (about 100 bytes
/// each): a burst's larger vector is let go, so that a thousand consumers' channels do not each
/// keep their largest batch's worth.
pub(crate) const KEEP_PENDING_ACKS: usize = 64;

/// How a delivery is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
}

impl Settle {
    /// basic.reject / basic.nack with the given requeue flag.
    fn rejected(requeue: bool) -> Self {
        if requeue {
            Settle::Requeue
        } else {
            Settle::Discard
        }
    }
}

/// Work held by an open transaction.
#[derive(Debug, Default)]
struct Tx {
    publishes: Vec<Publish>,
    settles: Vec<(Unacked, Settle)>,
}

/// Channel state.
#[derive(Debug)]
pub(crate) struct Channel {
    pub(crate) id: u16,
    /// We sent channel.close and wait for close-ok; everything else is dropped.
    pub(crate) closing: bool,
    pub(crate) assembler: Assembler,
    consumers: HashMap<ShortStr, ConsumerState>,
    unacked: VecDeque<Unacked>,
    next_tag: u64,
    /// basic.qos global=false: prefetch for consumers created from now on.
    consumer_prefetch: u32,
    /// basic.qos global=true.
    credit: Arc<Credit>,
    pub(crate) confirms: Option<Confirms>,
    tx: Option<Tx>,
    /// The queue most recently declared here (AMQP's "current queue" for empty names).
    last_queue: Option<Arc<str>>,
    /// Acks taken out of `unacked` but not yet applied to their queues: the acks of one read
    /// batch are applied together (one queue lock, one credit release, one dispatch) by
    /// [`Channel::flush_acks`], which the connection calls before any other frame and at the
    /// end of every read batch.
    pending_acks: Vec<(Unacked, Settle)>,
    /// Publishes routed but not yet pushed: the publishes of one read batch are pushed
    /// together (one lock per queue) by [`Channel::flush_publishes`], which runs before this
    /// channel answers anything else and, from the connection, before any frame that is not
    /// part of a publish and at the end of every read batch.
    batch: Vec<Routed>,
    /// The exchange and queue this channel last published to.
    names: NameCache,
    /// The direct reply-to consumer: its tag and the suffix of its reply key.
    reply: Option<(ShortStr, String)>,
    /// This channel's place in its user's channel count (`max-channels`).
    _slot: ChannelSlot,
}

fn err(
    ch: u16,
    code: ReplyCode,
    text: impl std::fmt::Display,
    class: u16,
    method: u16,
) -> AmqpError {
    AmqpError::channel(ch, code, text).on(class, method)
}

impl Channel {
    pub(crate) fn new(id: u16, slot: ChannelSlot) -> Self {
        Channel {
            id,
            _slot: slot,
            closing: false,
            assembler: Assembler::default(),
            consumers: HashMap::new(),
            unacked: VecDeque::new(),
            next_tag: 1,
            consumer_prefetch: 0,
            credit: Credit::new(0),
            confirms: None,
            tx: None,
            last_queue: None,
            pending_acks: Vec::new(),
            batch: Vec::new(),
            names: NameCache::default(),
            reply: None,
        }
    }

    /// Number of unacked deliveries.
    pub(crate) fn unacked_count(&self) -> usize {
        self.unacked.len()
    }

    /// When the oldest unacked delivery times out, and the timeout used (milliseconds), with
    /// `default` (the broker's `consumer_timeout`) where its queue sets none. As RabbitMQ's
    /// channel, only the oldest delivery is looked at; a timeout of 0 is none.
    pub(crate) fn ack_deadline(&self, default: Option<u64>) -> Option<(Instant, u64)> {
        let u = self.unacked.front()?;
        let ms = u.timeout.or(default).filter(|&ms| ms > 0)?;
        Some((u.at + std::time::Duration::from_millis(ms), ms))
    }

    fn queue_name<'a>(
        &'a self,
        name: &'a str,
        class: u16,
        method: u16,
    ) -> Result<&'a str, AmqpError> {
        if !name.is_empty() {
            return Ok(name);
        }
        self.last_queue.as_deref().ok_or_else(|| {
            err(
                self.id,
                ReplyCode::NotFound,
                "no previously declared queue",
                class,
                method,
            )
        })
    }

    /// Handles a method frame other than channel open/close (the connection does those): one
    /// call per method.
    pub(crate) fn handle_method(
        &mut self,
        ctx: &mut Ctx<'_>,
        method: Method,
    ) -> Result<(), AmqpError> {
        match method {
            Method::ChannelFlow(m) => self.channel_flow(ctx, m),
            Method::ChannelFlowOk(_) => Ok(()),
            Method::ExchangeDeclare(m) => self.exchange_declare(ctx, m),
            Method::ExchangeDelete(m) => self.exchange_delete(ctx, m),
            Method::ExchangeBind(m) => self.exchange_bind(ctx, m),
            Method::ExchangeUnbind(m) => self.exchange_unbind(ctx, m),
            Method::QueueDeclare(m) => self.queue_declare(ctx, m),
            Method::QueueBind(m) => self.queue_bind(ctx, m),
            Method::QueueUnbind(m) => self.queue_unbind(ctx, m),
            Method::QueuePurge(m) => self.queue_purge(ctx, m),
            Method::QueueDelete(m) => self.queue_delete(ctx, m),
            Method::BasicQos(m) => self.basic_qos(ctx, m),
            Method::BasicConsume(m) => self.basic_consume(ctx, m),
            Method::BasicCancel(m) => self.basic_cancel(ctx, m),
            Method::BasicPublish(m) => self.basic_publish(m),
            Method::BasicGet(m) => self.basic_get(ctx, m),
            Method::BasicAck(m) => self.basic_ack(ctx, m),
            Method::BasicReject(m) => self.basic_reject(ctx, m),
            Method::BasicNack(m) => self.basic_nack(ctx, m),
            Method::BasicRecoverAsync(_) => self.recover(ctx),
            Method::BasicRecover(_) => {
                self.recover(ctx)?;
                ctx.send(self.id, &BasicRecoverOk.into());
                Ok(())
            }
            Method::ConfirmSelect(m) => self.confirm_select(ctx, m),
            Method::TxSelect(_) => self.tx_select(ctx),
            Method::TxCommit(_) => self.tx_commit(ctx),
            Method::TxRollback(_) => self.tx_rollback(ctx),
            other => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("unexpected method {} on channel {}", other.name(), self.id),
            )
            .on(other.class_id(), other.method_id())),
        }
    }

    /// channel.flow: active=true is accepted; active=false is 540 NOT_IMPLEMENTED, as in
    /// RabbitMQ 3.x (clients are written against that answer; prefetch is the way to pause).
    fn channel_flow(&mut self, ctx: &mut Ctx<'_>, m: ChannelFlow) -> Result<(), AmqpError> {
        if !m.active {
            return Err(
                AmqpError::connection(ReplyCode::NotImplemented, "active=false")
                    .on(ChannelFlow::CLASS_ID, ChannelFlow::METHOD_ID),
            );
        }
        ctx.send(self.id, &ChannelFlowOk { active: true }.into());
        Ok(())
    }

    /// The channel is gone (closed by either side, or the connection ended): cancel consumers,
    /// requeue unacked deliveries, drop uncommitted work. Store errors meanwhile are logged
    /// (the channel is going anyway) and returned, so the connection can close with 541.
    pub(crate) fn cleanup(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        // Publishes and acks the client sent count, even when the channel closes right after.
        let mut result = self.flush_publishes(ctx).and(self.flush_acks(ctx));
        self.assembler.reset();
        self.tx = None;
        if self.reply.take().is_some() {
            ctx.vhost.shared().replies.unregister(ctx.conn, self.id);
        }
        for (tag, c) in self.consumers.drain() {
            ctx.info.consumers_changed(-1);
            result = result.and(
                ctx.vhost
                    .cancel(&c.queue, ctx.conn, self.id, &tag, ctx.now)
                    .map_err(acks::store_failure),
            );
        }
        result.and(self.recover(ctx))
    }
}

/// channel.open-ok's reserved long string.
pub(crate) fn open_ok() -> Method {
    ChannelOpenOk {
        reserved_1: LongStr::default(),
    }
    .into()
}
