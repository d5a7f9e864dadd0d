//! exchange.declare, exchange.delete, exchange.bind and exchange.unbind.

use crate::broker::BrokerError;
use crate::broker::access::{Perm, Resource};
use crate::broker::exchange::ExchangeKind;
use crate::broker::exchange::delayed::{DELAYED_TYPE, delayed_type};
use crate::broker::vhost::ExchangeSpec;
use crate::protocol::ReplyCode;
use crate::protocol::method::*;

use super::super::connection::Ctx;
use super::super::error::AmqpError;
use super::{Channel, err};

impl Channel {
    pub(super) fn exchange_declare(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeDeclare,
    ) -> Result<(), AmqpError> {
        let (ch, class, mid) = (
            self.id,
            ExchangeDeclare::CLASS_ID,
            ExchangeDeclare::METHOD_ID,
        );
        if m.exchange.is_empty() {
            // Passive or not, as RabbitMQ 3.10 answers.
            return Err(err(
                ch,
                ReplyCode::AccessRefused,
                "operation not permitted on the default exchange",
                class,
                mid,
            ));
        }
        // A delayed exchange's routing type is checked as its own type is (RabbitMQ's
        // `check_type` in the plugin's `validate`), when the exchange is new.
        let delayed_routing = (m.kind.as_str() == DELAYED_TYPE
            && ctx.vhost.find_exchange(&m.exchange).is_none())
        .then(|| delayed_type(&m.arguments).ok())
        .flatten();
        for t in std::iter::once(m.kind.as_str()).chain(delayed_routing) {
            if !m.passive && t != DELAYED_TYPE && ExchangeKind::parse(t).is_none() {
                return Err(AmqpError::connection(
                    ReplyCode::CommandInvalid,
                    format_args!("invalid exchange type '{t}'"),
                )
                .on(class, mid));
            }
        }
        if !m.passive {
            ctx.grant
                .check_exchange_declare(ctx.vhost, &m.exchange, &m.arguments)
                .map_err(|e| AmqpError::from_broker(ch, e).on(class, mid))?;
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
            .map_err(|e| AmqpError::from_broker(ch, e).on(class, mid))?;
        if !m.no_wait {
            ctx.send(ch, &ExchangeDeclareOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_delete(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeDelete,
    ) -> Result<(), AmqpError> {
        let on = |e| {
            AmqpError::from_broker(self.id, e)
                .on(ExchangeDelete::CLASS_ID, ExchangeDelete::METHOD_ID)
        };
        // The default and `amq.*` exchanges are refused by the vhost first, as in RabbitMQ.
        if !m.exchange.is_empty() && !m.exchange.starts_with("amq.") {
            ctx.grant
                .authorize(Perm::Configure, Resource::Exchange(&m.exchange))
                .map_err(on)?;
        }
        match ctx.vhost.delete_exchange(&m.exchange, m.if_unused) {
            // Deleting what does not exist succeeds, as in RabbitMQ.
            Ok(()) | Err(BrokerError::NotFound(_)) => {}
            Err(e) => return Err(on(e)),
        }
        if !m.no_wait {
            ctx.send(self.id, &ExchangeDeleteOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_bind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeBind,
    ) -> Result<(), AmqpError> {
        ctx.grant
            .check_bind(ctx.vhost, &m.source, &m.destination, true, &m.routing_key)
            .map_err(|e| {
                AmqpError::from_broker(self.id, e)
                    .on(ExchangeBind::CLASS_ID, ExchangeBind::METHOD_ID)
            })?;
        ctx.vhost
            .bind(
                &m.source,
                &m.destination,
                true,
                &m.routing_key,
                &m.arguments,
                ctx.conn,
            )
            .map_err(|e| {
                AmqpError::from_broker(self.id, e)
                    .on(ExchangeBind::CLASS_ID, ExchangeBind::METHOD_ID)
            })?;
        if !m.no_wait {
            ctx.send(self.id, &ExchangeBindOk.into());
        }
        Ok(())
    }

    pub(super) fn exchange_unbind(
        &mut self,
        ctx: &mut Ctx<'_>,
        m: ExchangeUnbind,
    ) -> Result<(), AmqpError> {
        ctx.grant
            .check_bind(ctx.vhost, &m.source, &m.destination, true, &m.routing_key)
            .map_err(|e| {
                AmqpError::from_broker(self.id, e)
                    .on(ExchangeUnbind::CLASS_ID, ExchangeUnbind::METHOD_ID)
            })?;
        ctx.vhost
            .unbind(
                &m.source,
                &m.destination,
                true,
                &m.routing_key,
                &m.arguments,
                ctx.conn,
            )
            .map_err(|e| {
                AmqpError::from_broker(self.id, e)
                    .on(ExchangeUnbind::CLASS_ID, ExchangeUnbind::METHOD_ID)
            })?;
        if !m.no_wait {
            ctx.send(self.id, &ExchangeUnbindOk.into());
        }
        Ok(())
    }
}
