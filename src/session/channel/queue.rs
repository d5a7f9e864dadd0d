//! queue.declare, queue.bind, queue.unbind, queue.purge and queue.delete.

use crate::broker::BrokerError;
use crate::broker::access::{Perm, Resource};
use crate::broker::reply_to::REPLY_QUEUE;
use crate::broker::vhost::QueueSpec;
use crate::broker::vhost::generate_name;
use crate::protocol::method::*;
use crate::protocol::types::ShortStr;
use std::sync::Arc;

use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::Channel;

impl Channel {
    pub(super) fn queue_declare(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueDeclare,
    ) -> Result<(), AmqpError> {
        if m.queue.as_str().starts_with(REPLY_QUEUE) {
            return self.reply_queue_declare(ctx, m);
        }
        if !m.passive {
            // A server-named queue is checked under a name of the shape it will get
            // (`amq.gen-…`): RabbitMQ checks the name it generated, equally random.
            let name = if m.queue.is_empty() {
                generate_name("amq.gen-")
            } else {
                m.queue.to_string()
            };
            ctx.grant
                .check_queue_declare(ctx.vhost, &name, &m.arguments)
                .map_err(|e| {
                    AmqpError::from_broker(self.id, e)
                        .on(QueueDeclare::CLASS_ID, QueueDeclare::METHOD_ID)
                })?;
        }
        let spec = QueueSpec {
            name: m.queue.to_string(),
            durable: m.durable,
            exclusive: m.exclusive.then_some(ctx.conn),
            auto_delete: m.auto_delete,
            arguments: m.arguments,
        };
        let q = ctx
            .vhost
            .declare_queue(&spec, m.passive, ctx.conn, ctx.now)
            .map_err(|e| {
                AmqpError::from_broker(self.id, e)
                    .on(QueueDeclare::CLASS_ID, QueueDeclare::METHOD_ID)
            })?;
        self.last_queue = Some(Arc::clone(&q.name));
        if !m.no_wait {
            ctx.send(
                self.id,
                &QueueDeclareOk {
                    queue: ShortStr::try_from(&*q.name).unwrap_or_default(),
                    message_count: q.message_count(),
                    consumer_count: q.consumer_count(),
                }
                .into(),
            );
        }
        Ok(())
    }

    /// queue.declare of `amq.rabbitmq.reply-to` or of a reply key: declare-ok with no message
    /// and one consumer when it exists, else 404 (RabbitMQ's `declare_fast_reply_to`, passive
    /// or not).
    fn reply_queue_declare(&mut self, ctx: &mut Ctx<'_>, m: QueueDeclare) -> Result<(), AmqpError> {
        if !ctx.vhost.shared().replies.exists(&m.queue) {
            return Err(AmqpError::from_broker(
                self.id,
                crate::broker::error::no_queue(&m.queue, &ctx.vhost.name),
            )
            .on(QueueDeclare::CLASS_ID, QueueDeclare::METHOD_ID));
        }
        if !m.no_wait {
            ctx.send(
                self.id,
                &QueueDeclareOk {
                    queue: m.queue,
                    message_count: 0,
                    consumer_count: 1,
                }
                .into(),
            );
        }
        Ok(())
    }

    pub(super) fn queue_bind(&mut self, ctx: &mut Ctx<'_>, m: QueueBind) -> Result<(), AmqpError> {
        let (class, mid) = (QueueBind::CLASS_ID, QueueBind::METHOD_ID);
        let queue = self.queue_name(&m.queue, class, mid)?.to_string();
        ctx.grant
            .check_bind(ctx.vhost, &m.exchange, &queue, false, &m.routing_key)
            .map_err(|e| AmqpError::from_broker(self.id, e).on(class, mid))?;
        ctx.vhost
            .bind(
                &m.exchange,
                &queue,
                false,
                &m.routing_key,
                &m.arguments,
                ctx.conn,
            )
            .map_err(|e| AmqpError::from_broker(self.id, e).on(class, mid))?;
        if !m.no_wait {
            ctx.send(self.id, &QueueBindOk.into());
        }
        Ok(())
    }

    pub(super) fn queue_unbind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueUnbind,
    ) -> Result<(), AmqpError> {
        let (class, mid) = (QueueUnbind::CLASS_ID, QueueUnbind::METHOD_ID);
        let queue = self.queue_name(&m.queue, class, mid)?.to_string();
        ctx.grant
            .check_bind(ctx.vhost, &m.exchange, &queue, false, &m.routing_key)
            .map_err(|e| AmqpError::from_broker(self.id, e).on(class, mid))?;
        ctx.vhost
            .unbind(
                &m.exchange,
                &queue,
                false,
                &m.routing_key,
                &m.arguments,
                ctx.conn,
            )
            .map_err(|e| AmqpError::from_broker(self.id, e).on(class, mid))?;
        ctx.send(self.id, &QueueUnbindOk.into());
        Ok(())
    }

    pub(super) fn queue_purge(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueuePurge,
    ) -> Result<(), AmqpError> {
        let (class, mid) = (QueuePurge::CLASS_ID, QueuePurge::METHOD_ID);
        let on = |e| AmqpError::from_broker(self.id, e).on(class, mid);
        let queue = self.queue_name(&m.queue, class, mid)?;
        ctx.grant
            .authorize(Perm::Read, Resource::Queue(queue))
            .map_err(on)?;
        let q = ctx.vhost.queue_for(queue, ctx.conn).map_err(on)?;
        let n = ctx.vhost.purge(&q, ctx.now).map_err(on)?;
        if !m.no_wait {
            ctx.send(self.id, &QueuePurgeOk { message_count: n }.into());
        }
        Ok(())
    }

    pub(super) fn queue_delete(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: QueueDelete,
    ) -> Result<(), AmqpError> {
        let (class, mid) = (QueueDelete::CLASS_ID, QueueDelete::METHOD_ID);
        let queue = self.queue_name(&m.queue, class, mid)?.to_string();
        ctx.grant
            .authorize(Perm::Configure, Resource::Queue(&queue))
            .map_err(|e| AmqpError::from_broker(self.id, e).on(class, mid))?;
        let n = match ctx
            .vhost
            .delete_queue(&queue, m.if_unused, m.if_empty, ctx.conn)
        {
            Ok(n) => n,
            // Deleting what does not exist succeeds, as in RabbitMQ.
            Err(BrokerError::NotFound(_)) => 0,
            Err(e) => return Err(AmqpError::from_broker(self.id, e).on(class, mid)),
        };
        if !m.no_wait {
            ctx.send(self.id, &QueueDeleteOk { message_count: n }.into());
        }
        Ok(())
    }
}
