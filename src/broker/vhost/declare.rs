//! exchange.declare / exchange.delete and queue.declare / queue.delete, with RabbitMQ's
//! equivalence checks and texts. Memory changes under the definitions lock; store writes after.

use crate::protocol::types::{FieldTable, encode_table};
use crate::storage::{ExchangeRecord, QueueRecord};
use bytes::{Bytes, BytesMut};
use std::sync::Arc;

use super::persist::DefOp;
use super::{Changes, VHost, generate_name, locked};
use crate::broker::consumer::{ConnId, Outbound};
use crate::broker::error::{BrokerError, BrokerResult, no_exchange, no_queue};
use crate::broker::exchange::delayed::{DELAYED_TYPE, delayed_type};
use crate::broker::exchange::{Destination, Exchange, ExchangeKind};
use crate::broker::queue::classic::{ClassicQueue, Deps};
use crate::broker::queue::{Queue, QueueArgs, QueueSettings};
use crate::broker::time::Now;
use crate::storage::{QueueStore, StoreError};

/// Options of exchange.declare.
#[derive(Clone, Debug, Default)]
pub struct ExchangeSpec {
    /// Name.
    pub name: String,
    /// Type name as sent.
    pub kind: String,
    /// Durable.
    pub durable: bool,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Internal.
    pub internal: bool,
    /// Arguments.
    pub arguments: FieldTable,
}

/// Options of queue.declare.
#[derive(Clone, Debug, Default)]
pub struct QueueSpec {
    /// Name ("" asks for a server-generated one).
    pub name: String,
    /// Durable.
    pub durable: bool,
    /// Owning connection when exclusive.
    pub exclusive: Option<ConnId>,
    /// Auto-delete.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: FieldTable,
}

/// A field table as the store keeps it (encoded).
pub(crate) fn table_bytes(t: &FieldTable) -> Bytes {
    let mut b = BytesMut::new();
    encode_table(t, &mut b);
    b.freeze()
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// `inequivalent arg 'durable' for queue 'q' in vhost '/': received 'true' but current is
/// 'false'` (RabbitMQ's `assert_field_equivalence`).
fn inequivalent(
    arg: &str,
    what: &str,
    name: &str,
    vhost: &str,
    got: bool,
    cur: bool,
) -> BrokerError {
    BrokerError::PreconditionFailed(format!(
        "inequivalent arg '{arg}' for {what} '{name}' in vhost '{vhost}': received '{}' but \
         current is '{}'",
        bool_text(got),
        bool_text(cur)
    ))
}

impl VHost {
    /// exchange.declare.
    pub fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> BrokerResult<()> {
        let vh = &self.name;
        if passive {
            self.exchange(&spec.name)?;
            return Ok(());
        }
        let type_name = spec.kind.as_str();
        if type_name != DELAYED_TYPE && ExchangeKind::parse(type_name).is_none() {
            return Err(BrokerError::NotImplemented(format!(
                "invalid exchange type '{}'",
                spec.kind
            )));
        }
        let dedup = Self::dedup_spec(&spec.arguments)?;
        self.change(|defs| {
            if let Some(x) = self.find_exchange(&spec.name) {
                let name = &spec.name;
                if x.type_name() != type_name {
                    return Err(BrokerError::PreconditionFailed(format!(
                        "inequivalent arg 'type' for exchange '{name}' in vhost '{vh}': received \
                         '{type_name}' but current is '{}'",
                        x.type_name()
                    )));
                }
                for (arg, got, cur) in [
                    ("durable", spec.durable, x.durable),
                    ("auto_delete", spec.auto_delete, x.auto_delete),
                    ("internal", spec.internal, x.internal),
                ] {
                    if got != cur {
                        return Err(inequivalent(arg, "exchange", name, vh, got, cur));
                    }
                }
                return Ok(());
            }
            if spec.name.starts_with("amq.") {
                return Err(BrokerError::AccessRefused(format!(
                    "exchange name '{}' contains reserved prefix 'amq.*'",
                    spec.name
                )));
            }
            if type_name == DELAYED_TYPE {
                // The plugin's `validate`, for a new exchange only.
                let routing =
                    delayed_type(&spec.arguments).map_err(BrokerError::PreconditionFailed)?;
                if ExchangeKind::parse(routing).is_none() {
                    return Err(BrokerError::NotImplemented(format!(
                        "invalid exchange type '{routing}'"
                    )));
                }
            }
            let x = Exchange::of_type(
                Arc::from(spec.name.as_str()),
                type_name,
                spec.durable,
                spec.auto_delete,
                spec.internal,
                spec.arguments.detached(),
            )
            .ok_or_else(|| {
                BrokerError::NotImplemented(format!("invalid exchange type '{type_name}'"))
            })?;
            if spec.durable {
                defs.push(DefOp::PutExchange(ExchangeRecord {
                    vhost: vh.to_string(),
                    name: spec.name.clone(),
                    kind: type_name.to_string(),
                    auto_delete: spec.auto_delete,
                    internal: spec.internal,
                    arguments: table_bytes(&spec.arguments),
                }));
            }
            if let Some(d) = dedup.clone() {
                self.attach_dedup(false, &x.name, spec.durable, d, None)?;
            }
            self.exchanges.insert(Arc::clone(&x.name), x);
            self.names_changed();
            Ok(())
        })
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> BrokerResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(access_default_or_reserved(name));
        }
        self.change(|defs| {
            let Some(x) = self.find_exchange(name) else {
                return Err(no_exchange(name, &self.name));
            };
            if if_unused && x.binding_count() > 0 {
                return Err(BrokerError::PreconditionFailed(format!(
                    "exchange '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            self.remove_exchange_locked(defs, &x);
            Ok(())
        })
    }

    pub(super) fn remove_exchange_locked(&self, defs: &mut Changes, x: &Arc<Exchange>) {
        self.exchanges.remove(&*x.name);
        self.names_changed();
        x.mark_deleted();
        self.detach_dedup(false, &x.name);
        if x.delay.is_some() {
            self.shared.delayed.forget(&self.name, &x.name);
        }
        if x.durable {
            for b in x.bindings() {
                defs.push(DefOp::DeleteBinding(self.binding_record(
                    &x.name,
                    &b.destination,
                    &b.routing_key,
                    &b.arguments,
                )));
            }
            defs.push(DefOp::DeleteExchange(x.name.to_string()));
        }
        // Bindings into this exchange from others go too.
        let dest = Destination::Exchange(Arc::clone(&x.name));
        for s in self.exchanges() {
            for b in s.bindings().into_iter().filter(|b| b.destination == dest) {
                self.unbind_locked(defs, &s, &dest, &b.routing_key, &b.arguments);
            }
        }
    }

    /// queue.declare (passive or not): the queue, created or existing. Arguments are checked
    /// as RabbitMQ 3.10 checks them, then compared with an existing queue's; a declare uses
    /// the queue (its `x-expires` starts over).
    pub fn declare_queue(
        &self,
        spec: &QueueSpec,
        passive: bool,
        conn: ConnId,
        now: Now,
    ) -> BrokerResult<Arc<Queue>> {
        if passive {
            let q = self.queue_for(&spec.name, conn)?;
            self.touch(&q, now)?;
            return Ok(q);
        }
        let name: Arc<str> = if spec.name.is_empty() {
            Arc::from(generate_name("amq.gen-").as_str())
        } else {
            Arc::from(spec.name.as_str())
        };
        let args = QueueArgs::parse(spec.arguments.detached(), &name, &self.name)?;
        let dedup = Self::dedup_spec(&spec.arguments)?;
        if let Some(q) = self.find_queue(&name) {
            return self.redeclare(&q, spec, conn, now);
        }
        if spec.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        // Exclusive queues never outlive their connection, so they are never stored.
        let stored = spec.durable && spec.exclusive.is_none();
        loop {
            // The store area is opened before the definitions lock (it may read the disk).
            // Writes queued earlier (a delete of the same name) are done first, and if one is
            // queued meanwhile, the area is opened again.
            let (area, deletes) = if stored {
                self.persist()?;
                let deletes = self.defs().queue_deletes;
                (
                    Some(self.shared.store.open_queue(&self.name, &name)?),
                    deletes,
                )
            } else {
                (None, 0)
            };
            let created = self.change(|defs| {
                if let Some(q) = self.find_queue(&name) {
                    return Ok(Some(Err(q)));
                }
                if stored && defs.queue_deletes != deletes {
                    return Ok(None);
                }
                let q = self.new_queue(&name, spec, args.clone(), area.clone(), now, false)?;
                if stored {
                    defs.push(DefOp::PutQueue(QueueRecord {
                        vhost: self.name.to_string(),
                        name: name.to_string(),
                        auto_delete: spec.auto_delete,
                        arguments: table_bytes(&spec.arguments),
                    }));
                }
                if let Some(d) = dedup.clone() {
                    self.attach_dedup(true, &name, stored, d, None)?;
                }
                self.queues.insert(Arc::clone(&name), Arc::clone(&q));
                self.names_changed();
                Ok(Some(Ok(q)))
            })?;
            match created {
                Some(Ok(q)) => {
                    self.tick(&q, now)?;
                    return Ok(q);
                }
                Some(Err(existing)) => return self.redeclare(&existing, spec, conn, now),
                None => continue,
            }
        }
    }

    /// A queue record and its classic queue type, with the policies that match it; with
    /// `recover`, loaded with what its store area holds (startup).
    pub(super) fn new_queue(
        &self,
        name: &Arc<str>,
        spec: &QueueSpec,
        args: QueueArgs,
        area: Option<Arc<dyn QueueStore>>,
        now: Now,
        recover: bool,
    ) -> Result<Arc<Queue>, StoreError> {
        let applied = self.policies().applied_to(name);
        let settings = QueueSettings::resolve(&args.values, &applied.values);
        let deps = Deps {
            store: area.clone(),
            root: Arc::clone(&self.shared.store),
            commit: Arc::clone(&self.shared.commit),
            window: self.shared.window,
            budget: Arc::clone(&self.shared.budget),
            timers: Arc::clone(&self.shared.timers),
            max_priority: args.max_priority(),
            single_active: args.single_active(),
        };
        let imp = ClassicQueue::new(
            Arc::clone(name),
            Arc::clone(&self.name),
            deps,
            settings,
            now,
        );
        if let Some(area) = area.filter(|_| recover) {
            imp.recover(&*area)?;
        }
        let q = Queue::new(
            Arc::clone(name),
            Arc::clone(&self.name),
            spec.durable,
            spec.exclusive,
            spec.auto_delete,
            args,
            Box::new(imp),
        );
        q.record_policy(applied);
        Ok(q)
    }

    /// queue.declare of an existing queue: the flags and checked arguments must be equivalent
    /// (RabbitMQ's order: exclusive owner, durable, auto_delete, arguments).
    fn redeclare(
        &self,
        q: &Arc<Queue>,
        spec: &QueueSpec,
        conn: ConnId,
        now: Now,
    ) -> BrokerResult<Arc<Queue>> {
        self.check_exclusive(q, conn)?;
        let (vh, name) = (&*self.name, &*q.name);
        if q.durable != spec.durable {
            return Err(inequivalent(
                "durable",
                "queue",
                name,
                vh,
                spec.durable,
                q.durable,
            ));
        }
        if q.auto_delete != spec.auto_delete {
            return Err(inequivalent(
                "auto_delete",
                "queue",
                name,
                vh,
                spec.auto_delete,
                q.auto_delete,
            ));
        }
        if q.exclusive.is_some() != spec.exclusive.is_some() {
            return Err(locked(name, vh));
        }
        q.args.check_equivalent(&spec.arguments, name, vh)?;
        self.touch(q, now)?;
        Ok(Arc::clone(q))
    }

    /// queue.delete. Returns the number of ready messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn: ConnId,
    ) -> BrokerResult<u32> {
        self.change(|defs| {
            let Some(q) = self.find_queue(name) else {
                return Err(no_queue(name, &self.name));
            };
            self.check_exclusive(&q, conn)?;
            if if_unused && q.consumer_count() > 0 {
                return Err(BrokerError::PreconditionFailed(format!(
                    "queue '{name}' in vhost '{}' in use",
                    self.name
                )));
            }
            if if_empty && q.message_count() > 0 {
                return Err(BrokerError::PreconditionFailed(format!(
                    "queue '{name}' in vhost '{}' not empty",
                    self.name
                )));
            }
            Ok(self.remove_queue_locked(defs, &q))
        })
    }

    /// Removes a queue under the definitions lock: its bindings, its messages, its consumers
    /// (told with a cancel notification), and, after the lock, its stored definition and
    /// messages.
    pub(super) fn remove_queue_locked(&self, defs: &mut Changes, q: &Arc<Queue>) -> u32 {
        if self
            .queues
            .remove_if(&*q.name, |_, cur| Arc::ptr_eq(cur, q))
            .is_none()
        {
            return 0;
        }
        self.names_changed();
        self.detach_dedup(true, &q.name);
        let dest = Destination::Queue(Arc::clone(q));
        for x in self.exchanges() {
            for b in x.bindings().into_iter().filter(|b| b.destination == dest) {
                self.unbind_locked(defs, &x, &dest, &b.routing_key, &b.arguments);
            }
        }
        let (consumers, count) = q.mark_deleted();
        for c in consumers {
            let _ = c.mailbox.send(Outbound::ConsumerCancelled {
                channel: c.channel,
                consumer_tag: c.tag.clone(),
            });
        }
        if q.durable && q.exclusive.is_none() {
            defs.push(DefOp::DeleteQueue(q.name.to_string()));
            defs.queue_deletes += 1;
        }
        count
    }

    /// Deletes an auto-delete queue whose last consumer went, if it is still that queue and
    /// still has none.
    pub fn auto_delete_queue(&self, q: &Arc<Queue>) -> BrokerResult<()> {
        self.change(|defs| {
            if q.consumer_count() == 0 {
                self.remove_queue_locked(defs, q);
            }
            Ok(())
        })
    }

    /// Deletes the exclusive queues of a closing connection.
    pub fn drop_exclusive(&self, conn: ConnId) -> BrokerResult<()> {
        self.change(|defs| {
            for q in self
                .queues()
                .into_iter()
                .filter(|q| q.exclusive == Some(conn))
            {
                self.remove_queue_locked(defs, &q);
            }
            Ok(())
        })
    }
}

fn access_default_or_reserved(name: &str) -> BrokerError {
    if name.is_empty() {
        BrokerError::AccessRefused("operation not permitted on the default exchange".into())
    } else {
        BrokerError::AccessRefused(format!(
            "exchange name '{name}' contains reserved prefix 'amq.*'"
        ))
    }
}
