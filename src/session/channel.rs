//! One AMQP channel: its consumers, unacked deliveries, prefetch, confirms and transactions,
//! with one handler per method, grouped by class.

use crate::broker::consumer::{ConsumerHandle, TRANSIT_LIMIT};
use crate::broker::vhost::{ExchangeSpec, QueueSpec, generate_name};
use crate::broker::{Credit, Delivery, Message, Queue, QueuedMessage};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use crate::protocol::types::{LongStr, ShortStr};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

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
}

/// How a delivery is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
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
    /// basic.qos global=true and channel.flow.
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
    pub(crate) fn new(id: u16) -> Self {
        Channel {
            id,
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
        }
    }

    /// Number of unacked deliveries.
    pub(crate) fn unacked_count(&self) -> usize {
        self.unacked.len()
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

    /// Handles a method frame other than channel open/close (the connection does those).
    pub(crate) fn handle_method(
        &mut self,
        ctx: &mut Ctx<'_>,
        method: Method,
    ) -> Result<(), AmqpError> {
        let (class, mid) = (method.class_id(), method.method_id());
        let ch = self.id;
        let broker_err = |e| AmqpError::from_broker(ch, e).on(class, mid);
        match method {
            Method::ChannelFlow(m) => {
                if self.credit.set_paused(!m.active) {
                    self.dispatch_all();
                }
                ctx.send(ch, &ChannelFlowOk { active: m.active }.into());
            }
            Method::ChannelFlowOk(_) => {}
            Method::ExchangeDeclare(m) => {
                if m.exchange.is_empty() {
                    if m.passive {
                        if !m.no_wait {
                            ctx.send(ch, &ExchangeDeclareOk.into());
                        }
                        return Ok(());
                    }
                    return Err(err(
                        ch,
                        ReplyCode::AccessRefused,
                        "operation not permitted on the default exchange",
                        class,
                        mid,
                    ));
                }
                if !m.passive && crate::broker::exchange::ExchangeKind::parse(&m.kind).is_none() {
                    return Err(AmqpError::connection(
                        ReplyCode::CommandInvalid,
                        format_args!("invalid exchange type '{}'", m.kind),
                    )
                    .on(class, mid));
                }
                let spec = ExchangeSpec {
                    name: m.exchange.to_string(),
                    kind: m.kind.to_string(),
                    durable: m.durable,
                    auto_delete: m.auto_delete,
                    internal: m.internal,
                    arguments: m.arguments,
                };
                ctx.vhost
                    .declare_exchange(&spec, m.passive)
                    .map_err(broker_err)?;
                if !m.no_wait {
                    ctx.send(ch, &ExchangeDeclareOk.into());
                }
            }
            Method::ExchangeDelete(m) => {
                match ctx.vhost.delete_exchange(&m.exchange, m.if_unused) {
                    // Deleting what does not exist succeeds, as in RabbitMQ.
                    Ok(()) | Err(crate::broker::BrokerError::NotFound(_)) => {}
                    Err(e) => return Err(broker_err(e)),
                }
                if !m.no_wait {
                    ctx.send(ch, &ExchangeDeleteOk.into());
                }
            }
            Method::ExchangeBind(m) => {
                ctx.vhost
                    .bind(
                        &m.source,
                        &m.destination,
                        true,
                        &m.routing_key,
                        &m.arguments,
                        ctx.conn,
                    )
                    .map_err(broker_err)?;
                if !m.no_wait {
                    ctx.send(ch, &ExchangeBindOk.into());
                }
            }
            Method::ExchangeUnbind(m) => {
                ctx.vhost
                    .unbind(
                        &m.source,
                        &m.destination,
                        true,
                        &m.routing_key,
                        &m.arguments,
                        ctx.conn,
                    )
                    .map_err(broker_err)?;
                if !m.no_wait {
                    ctx.send(ch, &ExchangeUnbindOk.into());
                }
            }
            Method::QueueDeclare(m) => {
                let spec = QueueSpec {
                    name: m.queue.to_string(),
                    durable: m.durable,
                    exclusive: m.exclusive.then_some(ctx.conn),
                    auto_delete: m.auto_delete,
                    arguments: m.arguments,
                };
                let q = ctx
                    .vhost
                    .declare_queue(&spec, m.passive, ctx.conn)
                    .map_err(broker_err)?;
                self.last_queue = Some(Arc::clone(&q.name));
                if !m.no_wait {
                    ctx.send(
                        ch,
                        &QueueDeclareOk {
                            queue: ShortStr::try_from(&*q.name).unwrap_or_default(),
                            message_count: q.message_count(),
                            consumer_count: q.consumer_count(),
                        }
                        .into(),
                    );
                }
            }
            Method::QueueBind(m) => {
                let queue = self.queue_name(&m.queue, class, mid)?.to_string();
                ctx.vhost
                    .bind(
                        &m.exchange,
                        &queue,
                        false,
                        &m.routing_key,
                        &m.arguments,
                        ctx.conn,
                    )
                    .map_err(broker_err)?;
                if !m.no_wait {
                    ctx.send(ch, &QueueBindOk.into());
                }
            }
            Method::QueueUnbind(m) => {
                let queue = self.queue_name(&m.queue, class, mid)?.to_string();
                ctx.vhost
                    .unbind(
                        &m.exchange,
                        &queue,
                        false,
                        &m.routing_key,
                        &m.arguments,
                        ctx.conn,
                    )
                    .map_err(broker_err)?;
                ctx.send(ch, &QueueUnbindOk.into());
            }
            Method::QueuePurge(m) => {
                let queue = self.queue_name(&m.queue, class, mid)?;
                let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(broker_err)?;
                let n = q.purge().map_err(broker_err)?;
                if !m.no_wait {
                    ctx.send(ch, &QueuePurgeOk { message_count: n }.into());
                }
            }
            Method::QueueDelete(m) => {
                let queue = self.queue_name(&m.queue, class, mid)?.to_string();
                let n = match ctx
                    .vhost
                    .delete_queue(&queue, m.if_unused, m.if_empty, ctx.conn)
                {
                    Ok(n) => n,
                    // Deleting what does not exist succeeds, as in RabbitMQ.
                    Err(crate::broker::BrokerError::NotFound(_)) => 0,
                    Err(e) => return Err(broker_err(e)),
                };
                if !m.no_wait {
                    ctx.send(ch, &QueueDeleteOk { message_count: n }.into());
                }
            }
            Method::BasicQos(m) => {
                if m.prefetch_size != 0 {
                    return Err(AmqpError::connection(
                        ReplyCode::NotImplemented,
                        format_args!("prefetch_size!=0 ({})", m.prefetch_size),
                    )
                    .on(class, mid));
                }
                if m.global {
                    if self.credit.set_limit(u32::from(m.prefetch_count)) {
                        self.dispatch_all();
                    }
                } else {
                    self.consumer_prefetch = u32::from(m.prefetch_count);
                }
                ctx.send(ch, &BasicQosOk.into());
            }
            Method::BasicConsume(m) => self.consume(ctx, m)?,
            Method::BasicCancel(m) => {
                if let Some(c) = self.consumers.remove(m.consumer_tag.as_str()) {
                    ctx.info.consumers_changed(-1);
                    if c.queue.cancel(ctx.conn, ch, &m.consumer_tag) == Some(true) {
                        ctx.vhost.auto_delete_queue(&c.queue);
                    }
                }
                if !m.no_wait {
                    ctx.send(
                        ch,
                        &BasicCancelOk {
                            consumer_tag: m.consumer_tag,
                        }
                        .into(),
                    );
                }
            }
            Method::BasicPublish(m) => {
                if m.immediate {
                    return Err(
                        AmqpError::connection(ReplyCode::NotImplemented, "immediate=true")
                            .on(class, mid),
                    );
                }
                self.assembler.start(m);
            }
            Method::BasicGet(m) => {
                let queue = self.queue_name(&m.queue, class, mid)?;
                let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(broker_err)?;
                match q.get(m.no_ack).map_err(broker_err)? {
                    None => ctx.send(ch, &BasicGetEmpty::default().into()),
                    Some(got) => {
                        let tag = self.next_tag;
                        self.next_tag += 1;
                        let msg = Arc::clone(&got.message.msg);
                        ctx.send(
                            ch,
                            &BasicGetOk {
                                delivery_tag: tag,
                                redelivered: got.message.redelivered,
                                exchange: msg.exchange.clone(),
                                routing_key: msg.routing_key.clone(),
                                message_count: got.remaining,
                            }
                            .into(),
                        );
                        ctx.out
                            .put_content(ch, 60, &msg.properties, &msg.body, ctx.frame_max);
                        if m.no_ack {
                            q.stats
                                .acked
                                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        } else {
                            self.unacked.push_back(Unacked {
                                tag,
                                queue: q,
                                msg: got.message,
                                prefetch: None,
                            });
                        }
                    }
                }
            }
            Method::BasicAck(m) => {
                self.settle(m.delivery_tag, m.multiple, Settle::Ack, class, mid)?
            }
            Method::BasicReject(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(m.delivery_tag, false, how, class, mid)?;
            }
            Method::BasicNack(m) => {
                let how = if m.requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                };
                self.settle(m.delivery_tag, m.multiple, how, class, mid)?;
            }
            Method::BasicRecoverAsync(_) => self.recover(),
            Method::BasicRecover(_) => {
                self.recover();
                ctx.send(ch, &BasicRecoverOk.into());
            }
            Method::ConfirmSelect(m) => {
                if self.tx.is_some() {
                    return Err(err(
                        ch,
                        ReplyCode::PreconditionFailed,
                        "cannot switch from tx to confirm mode",
                        class,
                        mid,
                    ));
                }
                if self.confirms.is_none() {
                    self.confirms = Some(Confirms::default());
                }
                if !m.nowait {
                    ctx.send(ch, &ConfirmSelectOk.into());
                }
            }
            Method::TxSelect(_) => {
                if self.confirms.is_some() {
                    return Err(err(
                        ch,
                        ReplyCode::PreconditionFailed,
                        "cannot switch from confirm to tx mode",
                        class,
                        mid,
                    ));
                }
                if self.tx.is_none() {
                    self.tx = Some(Tx::default());
                }
                ctx.send(ch, &TxSelectOk.into());
            }
            Method::TxCommit(_) => {
                let Some(tx) = self.tx.take() else {
                    return Err(err(
                        ch,
                        ReplyCode::PreconditionFailed,
                        "channel is not transactional",
                        class,
                        mid,
                    ));
                };
                self.tx = Some(Tx::default());
                for p in tx.publishes {
                    self.route(ctx, p)?;
                }
                let mut settles = tx.settles;
                self.apply_settles(&mut settles);
                ctx.send(ch, &TxCommitOk.into());
            }
            Method::TxRollback(_) => {
                let Some(tx) = self.tx.take() else {
                    return Err(err(
                        ch,
                        ReplyCode::PreconditionFailed,
                        "channel is not transactional",
                        class,
                        mid,
                    ));
                };
                self.tx = Some(Tx::default());
                // Settlements are undone: the deliveries are unacked again.
                for (u, _) in tx.settles {
                    let pos = self.unacked.partition_point(|x| x.tag < u.tag);
                    self.unacked.insert(pos, u);
                }
                ctx.send(ch, &TxRollbackOk.into());
            }
            other => {
                return Err(AmqpError::connection(
                    ReplyCode::CommandInvalid,
                    format_args!("unexpected method {} on channel {}", other.name(), ch),
                )
                .on(class, mid));
            }
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &mut Ctx<'_>, m: BasicConsume) -> Result<(), AmqpError> {
        let (class, mid) = (BasicConsume::CLASS_ID, BasicConsume::METHOD_ID);
        let ch = self.id;
        let queue = self.queue_name(&m.queue, class, mid)?;
        let q = ctx
            .vhost
            .queue_for(queue, ctx.conn)
            .map_err(|e| AmqpError::from_broker(ch, e).on(class, mid))?;
        let tag = if m.consumer_tag.is_empty() {
            ShortStr::try_from(generate_name("amq.ctag-")).unwrap_or_default()
        } else {
            m.consumer_tag.clone()
        };
        if self.consumers.contains_key(tag.as_str()) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("attempt to reuse consumer tag '{tag}'"),
            )
            .on(class, mid));
        }
        let prefetch = Credit::new(self.consumer_prefetch);
        let transit = Credit::new(TRANSIT_LIMIT);
        let handle = ConsumerHandle {
            tag: tag.clone(),
            channel: ch,
            conn: ctx.conn,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            prefetch: Arc::clone(&prefetch),
            channel_credit: Arc::clone(&self.credit),
            transit: Arc::clone(&transit),
            mailbox: ctx.mailbox.clone(),
        };
        q.consume(handle)
            .map_err(|e| AmqpError::from_broker(ch, e).on(class, mid))?;
        // consume-ok goes out before the queue pushes anything into the mailbox.
        if !m.no_wait {
            ctx.send(
                ch,
                &BasicConsumeOk {
                    consumer_tag: tag.clone(),
                }
                .into(),
            );
        }
        ctx.info.consumers_changed(1);
        q.dispatch();
        self.consumers.insert(
            tag,
            ConsumerState {
                queue: q,
                prefetch,
                transit,
            },
        );
        Ok(())
    }

    /// A complete publish from the assembler.
    pub(crate) fn publish(&mut self, ctx: &mut Ctx<'_>, p: Publish) -> Result<(), AmqpError> {
        if let Some(tx) = &mut self.tx {
            // Check the exchange now, so the error comes with the publish, as RabbitMQ does.
            ctx.vhost
                .exchange(&p.method.exchange)
                .map_err(|e| AmqpError::from_broker(self.id, e).on(60, 40))?;
            tx.publishes.push(p);
            return Ok(());
        }
        self.route(ctx, p)
    }

    fn route(&mut self, ctx: &mut Ctx<'_>, p: Publish) -> Result<(), AmqpError> {
        let ch = self.id;
        let on = |e| AmqpError::from_broker(ch, e).on(60, 40);
        // Read straight from the encoded properties: the message is not decoded on publish.
        if let Some(uid) = p.header.properties.user_id()
            && uid != ctx.user
        {
            return Err(err(
                ch,
                ReplyCode::PreconditionFailed,
                format_args!(
                    "user_id property set to '{uid}' but authenticated user was '{}'",
                    ctx.user
                ),
                60,
                40,
            ));
        }
        let x = ctx.vhost.exchange(&p.method.exchange).map_err(on)?;
        if x.internal {
            return Err(err(
                ch,
                ReplyCode::AccessRefused,
                format_args!(
                    "cannot publish to internal exchange '{}' in vhost '{}'",
                    x.name, ctx.vhost.name
                ),
                60,
                40,
            ));
        }
        let mandatory = p.method.mandatory;
        let msg = Arc::new(Message {
            exchange: p.method.exchange,
            routing_key: p.method.routing_key,
            properties: p.header.properties,
            body: p.body,
        });
        let stats = ctx.broker.stats();
        stats
            .published
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = match ctx.vhost.publish_to(&x, Arc::clone(&msg)) {
            Ok(o) => o,
            Err(e) => {
                if let Some(c) = &mut self.confirms {
                    c.refuse();
                }
                return Err(on(e));
            }
        };
        if outcome.routed == 0 {
            stats
                .unroutable
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if mandatory {
                ctx.send(
                    ch,
                    &BasicReturn {
                        reply_code: ReplyCode::NoRoute.code(),
                        reply_text: ShortStr::from_static("NO_ROUTE"),
                        exchange: msg.exchange.clone(),
                        routing_key: msg.routing_key.clone(),
                    }
                    .into(),
                );
                ctx.out
                    .put_content(ch, 60, &msg.properties, &msg.body, ctx.frame_max);
            }
        }
        if let Some(c) = &mut self.confirms {
            let wait = if outcome.persisted {
                ctx.broker.commit().written()
            } else {
                0
            };
            c.publish(wait);
        }
        Ok(())
    }

    /// A delivery from the mailbox for a consumer of this channel.
    pub(crate) fn deliver(&mut self, ctx: &mut Ctx<'_>, d: Delivery) {
        let Some(c) = self
            .consumers
            .get(&d.consumer_tag)
            .filter(|_| !self.closing)
        else {
            // Cancelled or closing: the message goes back untouched.
            d.queue.undeliver(d.message, d.no_ack);
            if !d.no_ack {
                self.release_channel_credit(1);
            }
            return;
        };
        let tag = self.next_tag;
        self.next_tag += 1;
        let msg = &d.message.msg;
        ctx.send(
            self.id,
            &BasicDeliver {
                consumer_tag: d.consumer_tag,
                delivery_tag: tag,
                redelivered: d.message.redelivered,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            }
            .into(),
        );
        ctx.out
            .put_content(self.id, 60, &msg.properties, &msg.body, ctx.frame_max);
        if c.transit.release(1) {
            d.queue.dispatch();
        }
        if !d.no_ack {
            self.unacked.push_back(Unacked {
                tag,
                queue: d.queue,
                msg: d.message,
                prefetch: Some(Arc::clone(&c.prefetch)),
            });
        }
    }

    /// The queue of a consumer was deleted: forget the consumer; true if it was ours.
    pub(crate) fn consumer_cancelled(&mut self, tag: &str) -> bool {
        self.consumers.remove(tag).is_some()
    }

    /// Moves the deliveries `tag` (and, with `multiple`, all before it) from `unacked` to the end
    /// of `out`, tagged with `how`. An unknown tag is a channel error and takes nothing.
    fn take_unacked(
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
        class: u16,
        mid: u16,
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
    fn apply_settles(&mut self, items: &mut Vec<(Unacked, Settle)>) {
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

    fn release_channel_credit(&self, n: u32) {
        if self.credit.release(n) {
            self.dispatch_all();
        }
    }

    /// Asks every queue this channel consumes from to dispatch (credit became available).
    fn dispatch_all(&self) {
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
    fn recover(&mut self) {
        self.flush_acks();
        let mut all: Vec<(Unacked, Settle)> = self
            .unacked
            .drain(..)
            .map(|u| (u, Settle::Requeue))
            .collect();
        self.apply_settles(&mut all);
    }

    /// The channel is gone (closed by either side, or the connection ended): cancel consumers,
    /// requeue unacked deliveries, drop uncommitted work.
    pub(crate) fn cleanup(&mut self, ctx: &mut Ctx<'_>) {
        // Acks the client sent count, even when the channel closes right after them.
        self.flush_acks();
        self.assembler.reset();
        self.tx = None;
        for (tag, c) in self.consumers.drain() {
            ctx.info.consumers_changed(-1);
            if c.queue.cancel(ctx.conn, self.id, &tag) == Some(true) {
                ctx.vhost.auto_delete_queue(&c.queue);
            }
        }
        self.recover();
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

/// channel.open-ok's reserved long string.
pub(crate) fn open_ok() -> Method {
    ChannelOpenOk {
        reserved_1: LongStr::default(),
    }
    .into()
}
