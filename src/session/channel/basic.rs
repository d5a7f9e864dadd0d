//! basic.qos, basic.consume, basic.cancel, basic.publish (routing a whole message), basic.get,
//! and deliveries from the broker to this channel's consumers.

use crate::broker::access::{Perm, Resource};
use crate::broker::consumer::Outbound;
use crate::broker::consumer::{ConsumerHandle, TRANSIT_LIMIT};
use crate::broker::message::MESSAGE_OVERHEAD;
use crate::broker::queue::{ConsumerArgs, MAX_BROWSE_REACH};
use crate::broker::reply_to::REPLY_QUEUE;
use crate::broker::vhost::generate_name;
use crate::broker::{Credit, Delivery, Message, Prepared, PublishRequest, QueuedMessage};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use crate::protocol::types::ShortStr;
use std::sync::Arc;

use super::super::assembler::Publish;
use super::super::confirms::Confirms;
use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::acks::{dispatch, store_failure};
use super::{Channel, ConsumerState, Unacked};

/// Most publishes a channel batches before it pushes them (a read batch of small messages
/// is a few hundred).
const MAX_BATCH: usize = 512;

impl Channel {
    pub(super) fn basic_qos(&mut self, ctx: &mut Ctx<'_>, m: BasicQos) -> Result<(), AmqpError> {
        if m.prefetch_size != 0 {
            return Err(AmqpError::connection(
                ReplyCode::NotImplemented,
                format_args!("prefetch_size!=0 ({})", m.prefetch_size),
            )
            .on(BasicQos::CLASS_ID, BasicQos::METHOD_ID));
        }
        if m.global {
            if self.credit.set_limit(u32::from(m.prefetch_count)) {
                self.dispatch_all(ctx)?;
            }
        } else {
            self.consumer_prefetch = u32::from(m.prefetch_count);
        }
        ctx.send(self.id, &BasicQosOk.into());
        Ok(())
    }

    pub(super) fn basic_consume(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicConsume,
    ) -> Result<(), AmqpError> {
        let (class, mid) = (BasicConsume::CLASS_ID, BasicConsume::METHOD_ID);
        let ch = self.id;
        if m.queue.as_str() == REPLY_QUEUE {
            return self.reply_consume(ctx, m);
        }
        let queue = self.queue_name(&m.queue, class, mid)?;
        let on = |e| AmqpError::from_broker(ch, e).on(class, mid);
        ctx.grant
            .authorize(Perm::Read, Resource::Queue(queue))
            .map_err(on)?;
        let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(on)?;
        let args = ConsumerArgs::parse(&m.arguments, queue, &ctx.vhost.name).map_err(on)?;
        let tag = if m.consumer_tag.is_empty() {
            ShortStr::try_from(generate_name("amq.ctag-")).unwrap_or_default()
        } else {
            m.consumer_tag.clone()
        };
        if self.consumers.contains_key(tag.as_str()) || self.is_reply_tag(&tag) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("attempt to reuse consumer tag '{tag}'"),
            )
            .on(class, mid));
        }
        if args.browse {
            return self.browse_consume(ctx, m, q, tag);
        }
        let prefetch = Credit::new(self.consumer_prefetch);
        let transit = Credit::new(TRANSIT_LIMIT);
        let handle = ConsumerHandle {
            tag: tag.clone(),
            channel: ch,
            conn: ctx.conn,
            no_ack: m.no_ack,
            exclusive: m.exclusive,
            priority: args.priority,
            browse: args.browse,
            prefetch: Arc::clone(&prefetch),
            channel_credit: Arc::clone(&self.credit),
            transit: Arc::clone(&transit),
            mailbox: ctx.mailbox.clone(),
        };
        ctx.vhost
            .consume(&q, handle, ctx.now)
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
        let dispatched = dispatch(ctx, &q);
        self.consumers.insert(
            tag,
            ConsumerState {
                queue: q,
                prefetch,
                transit,
            },
        );
        dispatched
    }

    /// basic.consume with `x-browse: true` (Lagomorph's own): the consumer receives copies of
    /// the queue's ready messages as they are now, in delivery order (at most
    /// [`MAX_BROWSE_REACH`]), which stay in the queue untouched; then the broker cancels it
    /// (basic.cancel, so the client knows the browse is complete). Copies are not
    /// acknowledged, so the consumer must be no-ack (406 otherwise). The consumer is not
    /// registered with the queue: it takes nothing and no new messages.
    fn browse_consume(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicConsume,
        q: Arc<crate::broker::Queue>,
        tag: ShortStr,
    ) -> Result<(), AmqpError> {
        let (ch, class, mid) = (self.id, BasicConsume::CLASS_ID, BasicConsume::METHOD_ID);
        if !m.no_ack {
            return Err(AmqpError::channel(
                ch,
                ReplyCode::PreconditionFailed,
                "x-browse requires no-ack: browsed messages are copies and are not acknowledged",
            )
            .on(class, mid));
        }
        if m.exclusive {
            return Err(AmqpError::channel(
                ch,
                ReplyCode::PreconditionFailed,
                "x-browse consumers cannot be exclusive",
            )
            .on(class, mid));
        }
        let browsed = ctx
            .vhost
            .browse(&q, 0, MAX_BROWSE_REACH)
            .map_err(|e| AmqpError::from_broker(ch, e).on(class, mid))?;
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
        // The copies and the end go through the mailbox, after consume-ok, like any delivery
        // (a cancel by the client meanwhile drops the rest).
        for message in browsed.messages {
            let _ = ctx.mailbox.send(Outbound::Deliver(Delivery {
                queue: Arc::clone(&q),
                channel: ch,
                consumer_tag: tag.clone(),
                message,
                no_ack: true,
                copy: true,
            }));
        }
        let _ = ctx.mailbox.send(Outbound::ConsumerCancelled {
            channel: ch,
            consumer_tag: tag.clone(),
        });
        self.consumers.insert(
            tag,
            ConsumerState {
                queue: q,
                prefetch: Credit::new(0),
                transit: Credit::new(0),
            },
        );
        Ok(())
    }

    pub(super) fn basic_cancel(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicCancel,
    ) -> Result<(), AmqpError> {
        if self.is_reply_tag(&m.consumer_tag) {
            self.reply = None;
            ctx.vhost.shared().replies.unregister(ctx.conn, self.id);
        } else if let Some(c) = self.consumers.remove(m.consumer_tag.as_str()) {
            ctx.info.consumers_changed(-1);
            ctx.vhost
                .cancel(&c.queue, ctx.conn, self.id, &m.consumer_tag, ctx.now)
                .map_err(store_failure)?;
            // A single active consumer's successor, or lower-priority consumers, may take
            // what it left.
            dispatch(ctx, &c.queue)?;
        }
        if !m.no_wait {
            ctx.send(
                self.id,
                &BasicCancelOk {
                    consumer_tag: m.consumer_tag,
                }
                .into(),
            );
        }
        Ok(())
    }

    /// basic.publish: the method starts a message; its header and bodies follow.
    pub(super) fn basic_publish(&mut self, m: BasicPublish) -> Result<(), AmqpError> {
        if m.immediate {
            return Err(
                AmqpError::connection(ReplyCode::NotImplemented, "immediate=true")
                    .on(BasicPublish::CLASS_ID, BasicPublish::METHOD_ID),
            );
        }
        self.assembler.start(m);
        Ok(())
    }

    pub(super) fn basic_get(&mut self, ctx: &mut Ctx<'_>, m: BasicGet) -> Result<(), AmqpError> {
        let (ch, class, mid) = (self.id, BasicGet::CLASS_ID, BasicGet::METHOD_ID);
        let on = |e| AmqpError::from_broker(ch, e).on(class, mid);
        let queue = self.queue_name(&m.queue, class, mid)?;
        ctx.grant
            .authorize(Perm::Read, Resource::Queue(queue))
            .map_err(on)?;
        let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(on)?;
        let Some(got) = ctx.vhost.get(&q, m.no_ack, ctx.now).map_err(on)? else {
            ctx.send(ch, &BasicGetEmpty::default().into());
            return Ok(());
        };
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
        ctx.out.put_content(
            ch,
            60,
            &got.message.delivery_properties(),
            &msg.body,
            ctx.frame_max,
        );
        if m.no_ack {
            consumed(ctx, &got.message);
        } else {
            self.unacked.push_back(Unacked {
                tag,
                timeout: q.consumer_timeout(),
                queue: q,
                msg: got.message,
                prefetch: None,
                at: ctx.now.mono,
            });
        }
        Ok(())
    }

    /// A complete publish from the assembler.
    pub(crate) fn publish(&mut self, ctx: &mut Ctx<'_>, p: Publish) -> Result<(), AmqpError> {
        if let Some(tx) = &mut self.tx {
            // Check the right and the exchange now, so the error comes with the publish, as
            // RabbitMQ does.
            let on = |e| AmqpError::from_broker(self.id, e).on(60, 40);
            ctx.grant
                .check_publish(&p.method.exchange, None, &p.method.routing_key)
                .map_err(on)?;
            ctx.vhost.exchange(&p.method.exchange).map_err(on)?;
            tx.publishes.push(p);
            return Ok(());
        }
        self.route_with(ctx, p, true)
    }

    /// Publishes now (a committed transaction's publishes, whose returns and confirms go out
    /// before commit-ok): see [`Channel::route_with`].
    pub(super) fn route(&mut self, ctx: &mut Ctx<'_>, p: Publish) -> Result<(), AmqpError> {
        self.route_with(ctx, p, false)
    }

    /// Publishes through the broker and turns the outcome into replies: basic.return for a
    /// mandatory message no queue took, the confirm (ack after the flush it waits for, nack
    /// when a queue refused it). With `may_batch`, a publish routed to queues joins the
    /// channel's batch instead (pushed by [`Channel::flush_publishes`]); anything answered at
    /// once first pushes the batch, so confirms and returns keep the publishes' order.
    fn route_with(
        &mut self,
        ctx: &mut Ctx<'_>,
        p: Publish,
        may_batch: bool,
    ) -> Result<(), AmqpError> {
        let ch = self.id;
        let mandatory = p.method.mandatory;
        // A persistent message's confirm may go out early, once every copy is consumed; its
        // sequence number comes after those of the publishes batched before it.
        let awaited = self
            .confirms
            .as_ref()
            .filter(|_| p.header.properties.is_persistent())
            .map(|c| c.awaited(self.batch.len()));
        let req = PublishRequest {
            exchange: p.method.exchange,
            routing_key: p.method.routing_key,
            properties: p.header.properties,
            body: p.body,
            user: ctx.user,
            grant: ctx.grant,
            awaited,
        };
        let reply = self.reply.as_ref().map(|(_, suffix)| suffix.as_str());
        let outcome = match ctx
            .vhost
            .route_publish(req, reply, &mut self.names, ctx.now)
        {
            Ok(Prepared::Routed(r)) if may_batch && r.batchable() => {
                self.batch.push(r);
                ctx.batched = true;
                if self.batch.len() >= MAX_BATCH {
                    return self.flush_publishes(ctx);
                }
                return Ok(());
            }
            prepared => self.flush_publishes(ctx).and_then(|()| {
                prepared
                    .and_then(|p| match p {
                        Prepared::Done(o) => Ok(o),
                        Prepared::Routed(r) => ctx.vhost.push_routed(r, ctx.now),
                    })
                    .map_err(|e| AmqpError::from_broker(ch, e).on(60, 40))
            }),
        };
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                if let Some(c) = &mut self.confirms {
                    c.refuse();
                }
                return Err(e);
            }
        };
        if !outcome.routed && mandatory {
            ctx.vhost
                .shared()
                .stats
                .returned
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let msg = &outcome.message;
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
        ctx.flow |= outcome.flow;
        if let Some(c) = &mut self.confirms {
            if outcome.refused {
                c.refuse();
            } else {
                record(c, &outcome.message, outcome.flush);
            }
        }
        Ok(())
    }

    /// Pushes the batched publishes (see [`Channel::route_with`]) and records their
    /// confirms, in publish order. A store failure closes the connection (541).
    pub(crate) fn flush_publishes(&mut self, ctx: &mut Ctx<'_>) -> Result<(), AmqpError> {
        if self.batch.is_empty() {
            return Ok(());
        }
        // Taken, not kept: an idle channel holds no batch-sized buffers.
        let batch = std::mem::take(&mut self.batch);
        let mut out = Vec::with_capacity(batch.len());
        let pushed = ctx.vhost.push_batch(&batch, ctx.now, &mut out);
        for (r, p) in batch.iter().zip(&out) {
            ctx.flow |= p.flow;
            if let Some(c) = &mut self.confirms {
                if p.refused {
                    c.refuse();
                } else {
                    record(c, r.message(), p.flush);
                }
            }
        }
        drop(batch);
        pushed.map_err(|e| AmqpError::from_broker(self.id, e).on(60, 40))
    }

    /// A delivery from the mailbox for a consumer of this channel.
    pub(crate) fn deliver(&mut self, ctx: &mut Ctx<'_>, d: Delivery) -> Result<(), AmqpError> {
        let Some(c) = self
            .consumers
            .get(&d.consumer_tag)
            .filter(|_| !self.closing)
        else {
            // Cancelled or closing: the message goes back untouched.
            let no_ack = d.no_ack;
            let r = ctx.vhost.undeliver(d, ctx.now).map_err(store_failure);
            if !no_ack {
                return r.and(self.release_channel_credit(ctx, 1));
            }
            return r;
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
        ctx.out.put_content(
            self.id,
            60,
            &d.message.delivery_properties(),
            &msg.body,
            ctx.frame_max,
        );
        // The delivery is recorded before the queue is asked for more, which may fail.
        let wake = c.transit.release(1).then(|| Arc::clone(&d.queue));
        if !d.no_ack {
            self.unacked.push_back(Unacked {
                tag,
                timeout: d.queue.consumer_timeout(),
                at: ctx.now.mono,
                queue: d.queue,
                msg: d.message,
                prefetch: Some(Arc::clone(&c.prefetch)),
            });
        } else if !d.copy {
            consumed(ctx, &d.message);
        }
        match wake {
            Some(q) => dispatch(ctx, &q),
            None => Ok(()),
        }
    }

    /// basic.consume on `amq.rabbitmq.reply-to` (RabbitMQ's checks and texts, in its order:
    /// tag reuse, no-ack required, one per channel).
    fn reply_consume(&mut self, ctx: &mut Ctx<'_>, m: BasicConsume) -> Result<(), AmqpError> {
        let (class, mid) = (BasicConsume::CLASS_ID, BasicConsume::METHOD_ID);
        if self.consumers.contains_key(m.consumer_tag.as_str()) {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("attempt to reuse consumer tag '{}'", m.consumer_tag),
            )
            .on(class, mid));
        }
        let refuse = |text| {
            Err(AmqpError::channel(self.id, ReplyCode::PreconditionFailed, text).on(class, mid))
        };
        if !m.no_ack {
            return refuse("reply consumer cannot acknowledge");
        }
        if self.reply.is_some() {
            return refuse("reply consumer already set");
        }
        let tag = if m.consumer_tag.is_empty() {
            ShortStr::try_from(generate_name("amq.ctag-")).unwrap_or_default()
        } else {
            m.consumer_tag
        };
        let suffix = ctx.vhost.shared().replies.register(
            ctx.conn,
            self.id,
            tag.clone(),
            ctx.mailbox.clone(),
        );
        self.reply = Some((tag.clone(), suffix));
        if !m.no_wait {
            ctx.send(self.id, &BasicConsumeOk { consumer_tag: tag }.into());
        }
        Ok(())
    }

    fn is_reply_tag(&self, tag: &str) -> bool {
        self.reply.as_ref().is_some_and(|(t, _)| t.as_str() == tag)
    }

    /// A direct reply-to reply for this channel's reply consumer: delivered with the next
    /// delivery tag, needing no ack. Dropped if the consumer is gone or was replaced.
    pub(crate) fn deliver_reply(
        &mut self,
        ctx: &mut Ctx<'_>,
        consumer_tag: ShortStr,
        msg: &crate::broker::Message,
    ) {
        if self.closing || !self.is_reply_tag(&consumer_tag) {
            return;
        }
        let tag = self.next_tag;
        self.next_tag += 1;
        ctx.send(
            self.id,
            &BasicDeliver {
                consumer_tag,
                delivery_tag: tag,
                redelivered: false,
                exchange: msg.exchange.clone(),
                routing_key: msg.routing_key.clone(),
            }
            .into(),
        );
        ctx.out
            .put_content(self.id, 60, &msg.properties, &msg.body, ctx.frame_max);
    }

    /// The queue of a consumer was deleted: forget the consumer; true if it was ours.
    pub(crate) fn consumer_cancelled(&mut self, tag: &str) -> bool {
        self.consumers.remove(tag).is_some()
    }
}

/// Records a publish the queues took: its confirm waits for the flush of `flush`, or for
/// nothing when every copy was consumed before the last queue took it.
fn record(c: &mut Confirms, msg: &Message, flush: u64) {
    let (flush, early_bytes) = match &msg.awaited {
        // The publisher's guard goes; every copy consumed already means no flush to wait for.
        Some(a) => (
            if a.pushed() { 0 } else { flush },
            msg.body.len() + MESSAGE_OVERHEAD,
        ),
        None => (flush, 0),
    };
    let seq = c.publish(flush, early_bytes);
    debug_assert!(
        msg.awaited.as_ref().is_none_or(|a| a.tag() == seq),
        "a publish's early confirm carries its sequence number"
    );
}

/// A copy of a message left its queue, consumed: its publisher's confirm may be due.
pub(super) fn consumed(ctx: &mut Ctx<'_>, qm: &QueuedMessage) {
    if let Some(a) = &qm.msg.awaited {
        ctx.consumed.copy(a);
    }
}
