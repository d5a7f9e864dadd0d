//! Startup: the vhost's durable definitions, policies and persistent messages come back from
//! the store. Runs before any client connects, so it reads the store directly.

use crate::protocol::types::{FieldTable, decode_table};
use bytes::Bytes;
use std::sync::Arc;

use super::VHost;
use super::declare::QueueSpec;
use crate::broker::error::BrokerResult;
use crate::broker::exchange::{Destination, Exchange};
use crate::broker::queue::QueueArgs;
use crate::broker::time::Now;

impl VHost {
    /// Rebuilds durable definitions, policies and messages from the store. Undecodable
    /// arguments are logged and replaced by an empty table rather than failing the start.
    pub(crate) fn restore(&self, defs: &crate::storage::Definitions, now: Now) -> BrokerResult<()> {
        let vh = &*self.name;
        let args = |b: &Bytes, what: &str| match decode_table(b) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(vhost = vh, object = what, error = %e, "bad stored arguments");
                FieldTable::new()
            }
        };
        self.load_policies()?;
        for x in defs.exchanges.iter().filter(|x| x.vhost == vh) {
            let Some(e) = Exchange::of_type(
                Arc::from(x.name.as_str()),
                &x.kind,
                true,
                x.auto_delete,
                x.internal,
                args(&x.arguments, &x.name),
            ) else {
                tracing::error!(exchange = %x.name, kind = %x.kind, "unknown stored exchange type");
                continue;
            };
            if let Ok(Some(d)) = Self::dedup_spec(&e.arguments) {
                self.attach_dedup(false, &e.name, true, d, Some(now))?;
            }
            self.exchanges.insert(Arc::clone(&e.name), e);
            self.names_changed();
        }
        for r in defs.queues.iter().filter(|q| q.vhost == vh) {
            let area = self.shared.store.open_queue(vh, &r.name)?;
            let name: Arc<str> = Arc::from(r.name.as_str());
            let table = args(&r.arguments, &r.name);
            let spec = QueueSpec {
                name: r.name.clone(),
                durable: true,
                exclusive: None,
                auto_delete: r.auto_delete,
                arguments: table.clone(),
            };
            let queue_args = QueueArgs::restored(table, &r.name, vh);
            let q = self.new_queue(&name, &spec, queue_args, Some(area), now, true)?;
            if let Ok(Some(d)) = Self::dedup_spec(&spec.arguments) {
                self.attach_dedup(true, &name, true, d, Some(now))?;
            }
            self.queues.insert(name, q);
            self.names_changed();
        }
        for b in defs.bindings.iter().filter(|b| b.vhost == vh) {
            let Some(x) = self.find_exchange(&b.source) else {
                continue;
            };
            let dest = if b.destination_is_exchange {
                match self.find_exchange(&b.destination) {
                    Some(d) => Destination::Exchange(Arc::clone(&d.name)),
                    None => continue,
                }
            } else {
                match self.find_queue(&b.destination) {
                    Some(q) => Destination::Queue(q),
                    None => continue,
                }
            };
            if let Err(e) = x.bind(dest, &b.routing_key, args(&b.arguments, &b.source)) {
                tracing::error!(source = %b.source, error = %e, "stored binding refused");
            }
        }
        // Arm each queue's timers: messages whose TTL ran out while the broker was down
        // expire now, and x-expires counts from the start.
        for q in self.queues() {
            self.tick(&q, now)?;
        }
        Ok(())
    }
}
