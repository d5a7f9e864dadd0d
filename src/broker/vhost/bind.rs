//! queue.bind / exchange.bind and their unbinds. Unbinding what does not exist (binding,
//! queue or exchange) answers unbind-ok, as RabbitMQ 3.10 does.

use crate::protocol::types::FieldTable;
use crate::storage::BindingRecord;
use std::sync::Arc;

use super::declare::table_bytes;
use super::persist::DefOp;
use super::{Changes, VHost};
use crate::broker::consumer::ConnId;
use crate::broker::error::{BrokerError, BrokerResult, no_exchange, no_queue};
use crate::broker::exchange::{Destination, Exchange};

impl VHost {
    pub(super) fn binding_record(
        &self,
        source: &str,
        dest: &Destination,
        key: &str,
        args: &FieldTable,
    ) -> BindingRecord {
        BindingRecord {
            vhost: self.name.to_string(),
            source: source.to_string(),
            destination: dest.name().to_string(),
            destination_is_exchange: dest.is_exchange(),
            routing_key: key.to_string(),
            arguments: table_bytes(args),
        }
    }

    fn dest_durable(&self, dest: &Destination) -> bool {
        match dest {
            Destination::Queue(q) => q.durable,
            Destination::Exchange(n) => self.find_exchange(n).is_some_and(|x| x.durable),
        }
    }

    /// queue.bind and exchange.bind: binds `source` to a queue or exchange named `dest`.
    pub fn bind(
        &self,
        source: &str,
        dest: &str,
        dest_is_exchange: bool,
        key: &str,
        args: &FieldTable,
        conn: ConnId,
    ) -> BrokerResult<()> {
        self.change(|defs| {
            let (x, destination) = self.binding_ends(source, dest, dest_is_exchange, conn)?;
            let added = x
                .bind(destination.clone(), key, args.detached())
                .map_err(BrokerError::PreconditionFailed)?;
            if added && x.durable && self.dest_durable(&destination) {
                defs.push(DefOp::PutBinding(self.binding_record(
                    source,
                    &destination,
                    key,
                    args,
                )));
            }
            Ok(())
        })
    }

    /// The source exchange and the destination of a (un)bind: 403 for the default exchange,
    /// 404 for what does not exist, 405 for another connection's exclusive queue.
    fn binding_ends(
        &self,
        source: &str,
        dest: &str,
        dest_is_exchange: bool,
        conn: ConnId,
    ) -> BrokerResult<(Arc<Exchange>, Destination)> {
        if source.is_empty() || (dest_is_exchange && dest.is_empty()) {
            return Err(BrokerError::AccessRefused(
                "operation not permitted on the default exchange".into(),
            ));
        }
        let destination = if dest_is_exchange {
            let x = self
                .find_exchange(dest)
                .ok_or_else(|| no_exchange(dest, &self.name))?;
            Destination::Exchange(Arc::clone(&x.name))
        } else {
            let q = self
                .find_queue(dest)
                .ok_or_else(|| no_queue(dest, &self.name))?;
            self.check_exclusive(&q, conn)?;
            Destination::Queue(q)
        };
        let x = self
            .find_exchange(source)
            .ok_or_else(|| no_exchange(source, &self.name))?;
        Ok((x, destination))
    }

    /// queue.unbind and exchange.unbind. Unbinding what is not bound, or from or to what does
    /// not exist, is not an error (RabbitMQ 3.10).
    pub fn unbind(
        &self,
        source: &str,
        dest: &str,
        dest_is_exchange: bool,
        key: &str,
        args: &FieldTable,
        conn: ConnId,
    ) -> BrokerResult<()> {
        self.change(
            |defs| match self.binding_ends(source, dest, dest_is_exchange, conn) {
                Ok((x, destination)) => {
                    self.unbind_locked(defs, &x, &destination, key, args);
                    Ok(())
                }
                Err(BrokerError::NotFound(_)) => Ok(()),
                Err(e) => Err(e),
            },
        )
    }

    pub(super) fn unbind_locked(
        &self,
        defs: &mut Changes,
        x: &Arc<Exchange>,
        destination: &Destination,
        key: &str,
        args: &FieldTable,
    ) {
        if x.unbind(destination, key, args) {
            if x.durable {
                defs.push(DefOp::DeleteBinding(self.binding_record(
                    &x.name,
                    destination,
                    key,
                    args,
                )));
            }
            if x.auto_delete && x.binding_count() == 0 {
                self.remove_exchange_locked(defs, x);
            }
        }
    }
}
