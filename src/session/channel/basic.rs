//! basic.qos, basic.consume, basic.cancel, basic.publish (routing a whole message), basic.get,
//! and deliveries from the broker to this channel's consumers.

use crate::broker::consumer::{ConsumerHandle, TRANSIT_LIMIT};
use crate::broker::vhost::generate_name;
use crate::broker::{Credit, Delivery, Message};
use crate::protocol::ReplyCode;
use crate::protocol::method::*;
use crate::protocol::types::ShortStr;
use std::sync::Arc;

use super::super::assembler::Publish;
use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::{Channel, ConsumerState, Unacked, err};

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
                self.dispatch_all();
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

    pub(super) fn basic_cancel(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: BasicCancel,
    ) -> Result<(), AmqpError> {
        if let Some(c) = self.consumers.remove(m.consumer_tag.as_str()) {
            ctx.info.consumers_changed(-1);
            if c.queue.cancel(ctx.conn, self.id, &m.consumer_tag) == Some(true) {
                ctx.vhost.auto_delete_queue(&c.queue);
            }
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
        let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(on)?;
        let Some(got) = q.get(m.no_ack).map_err(on)? else {
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

    pub(super) fn route(&mut self, ctx: &mut Ctx<'_>, p: Publish) -> Result<(), AmqpError> {
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
                stats
                    .returned
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
}
