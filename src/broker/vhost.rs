//! A virtual host: its exchanges and queues, the operations that change them, and publishing.
//!
//! Definitions (which exchanges, queues and bindings exist) sit behind one `RwLock`: declares
//! take it for writing, publishes for reading only long enough to resolve names. Durable
//! definitions are written through to the store as they change.

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, FieldValue, ShortStr};
use crate::protocol::types::{decode_table, encode_table};
use crate::storage::{BindingRecord, ExchangeRecord, QueueRecord, Store};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::consumer::{ConnId, Outbound};
use super::error::{BrokerError, BrokerResult, no_exchange, no_queue};
use super::exchange::{Destination, Exchange, ExchangeKind};
use super::group_commit::GroupCommit;
use super::message::Message;
use super::queue::{MemoryWindow, Queue, QueueArgs};

#[derive(Debug, Default)]
struct Definitions {
    exchanges: HashMap<Arc<str>, Arc<Exchange>>,
    queues: HashMap<Arc<str>, Arc<Queue>>,
}

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

/// The outcome of routing one message.
#[derive(Debug, Default)]
pub struct PublishOutcome {
    /// How many queues took it.
    pub routed: usize,
    /// True when some queue wrote it to the store (its confirm waits for a flush).
    pub persisted: bool,
}

/// A virtual host.
#[derive(Debug)]
pub struct VHost {
    /// Its name.
    pub name: Arc<str>,
    defs: RwLock<Definitions>,
    store: Arc<dyn Store>,
    commit: Arc<GroupCommit>,
    /// Ready messages each queue keeps in memory before paging the rest to the store.
    queue_window: MemoryWindow,
}

impl std::fmt::Debug for dyn Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// Names of the exchanges every vhost has, with their types.
const PREDECLARED: [(&str, ExchangeKind); 6] = [
    ("", ExchangeKind::Direct),
    ("amq.direct", ExchangeKind::Direct),
    ("amq.fanout", ExchangeKind::Fanout),
    ("amq.topic", ExchangeKind::Topic),
    ("amq.headers", ExchangeKind::Headers),
    ("amq.match", ExchangeKind::Headers),
];

fn table_bytes(t: &FieldTable) -> Bytes {
    let mut b = BytesMut::new();
    encode_table(t, &mut b);
    b.freeze()
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

impl VHost {
    /// A vhost with the pre-declared exchanges.
    pub(crate) fn new(
        name: &str,
        store: Arc<dyn Store>,
        commit: Arc<GroupCommit>,
        queue_window: MemoryWindow,
    ) -> Arc<Self> {
        let mut defs = Definitions::default();
        for (n, kind) in PREDECLARED {
            defs.exchanges.insert(
                Arc::from(n),
                Exchange::new(Arc::from(n), kind, true, false, false, FieldTable::new()),
            );
        }
        Arc::new(VHost {
            name: Arc::from(name),
            defs: RwLock::new(defs),
            store,
            commit,
            queue_window,
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, Definitions> {
        self.defs.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Definitions> {
        self.defs.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The exchange called `name`.
    pub fn exchange(&self, name: &str) -> BrokerResult<Arc<Exchange>> {
        self.read()
            .exchanges
            .get(name)
            .cloned()
            .ok_or_else(|| no_exchange(name, &self.name))
    }

    /// The queue called `name`.
    pub fn queue(&self, name: &str) -> BrokerResult<Arc<Queue>> {
        self.read()
            .queues
            .get(name)
            .cloned()
            .ok_or_else(|| no_queue(name, &self.name))
    }

    /// The queue called `name`, checking exclusive ownership (405 for other connections).
    pub fn queue_for(&self, name: &str, conn: ConnId) -> BrokerResult<Arc<Queue>> {
        let q = self.queue(name)?;
        self.check_exclusive(&q, conn)?;
        Ok(q)
    }

    fn check_exclusive(&self, q: &Queue, conn: ConnId) -> BrokerResult<()> {
        match q.exclusive {
            Some(owner) if owner != conn => Err(BrokerError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'. It could be \
                 originally declared on another connection or the exclusive property value does \
                 not match that of the original declaration.",
                q.name, self.name
            ))),
            _ => Ok(()),
        }
    }

    /// All exchanges.
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.read().exchanges.values().cloned().collect()
    }

    /// All queues.
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.read().queues.values().cloned().collect()
    }

    /// exchange.declare.
    pub fn declare_exchange(&self, spec: &ExchangeSpec, passive: bool) -> BrokerResult<()> {
        let vh = &self.name;
        if passive {
            self.exchange(&spec.name)?;
            return Ok(());
        }
        let Some(kind) = ExchangeKind::parse(&spec.kind) else {
            return Err(BrokerError::NotImplemented(format!(
                "invalid exchange type '{}'",
                spec.kind
            )));
        };
        let mut defs = self.write();
        if let Some(x) = defs.exchanges.get(spec.name.as_str()) {
            let name = &spec.name;
            let mismatch = |arg: &str, got: &str, cur: &str| {
                BrokerError::PreconditionFailed(format!(
                    "inequivalent arg '{arg}' for exchange '{name}' in vhost '{vh}': received \
                     '{got}' but current is '{cur}'"
                ))
            };
            if x.kind != kind {
                return Err(mismatch("type", kind.as_str(), x.kind.as_str()));
            }
            if x.durable != spec.durable {
                return Err(mismatch(
                    "durable",
                    bool_text(spec.durable),
                    bool_text(x.durable),
                ));
            }
            if x.auto_delete != spec.auto_delete {
                return Err(mismatch(
                    "auto_delete",
                    bool_text(spec.auto_delete),
                    bool_text(x.auto_delete),
                ));
            }
            if x.internal != spec.internal {
                return Err(mismatch(
                    "internal",
                    bool_text(spec.internal),
                    bool_text(x.internal),
                ));
            }
            return Ok(());
        }
        if spec.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "exchange name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let x = Exchange::new(
            Arc::from(spec.name.as_str()),
            kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.arguments.clone(),
        );
        if spec.durable {
            self.store.put_exchange(&ExchangeRecord {
                vhost: vh.to_string(),
                name: spec.name.clone(),
                kind: kind.as_str().to_string(),
                auto_delete: spec.auto_delete,
                internal: spec.internal,
                arguments: table_bytes(&spec.arguments),
            })?;
            self.commit.note_write();
        }
        defs.exchanges.insert(Arc::clone(&x.name), x);
        Ok(())
    }

    /// exchange.delete.
    pub fn delete_exchange(&self, name: &str, if_unused: bool) -> BrokerResult<()> {
        if name.is_empty() || name.starts_with("amq.") {
            return Err(access_default_or_reserved(name));
        }
        let mut defs = self.write();
        let Some(x) = defs.exchanges.get(name).cloned() else {
            return Err(no_exchange(name, &self.name));
        };
        if if_unused && x.binding_count() > 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "exchange '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        self.remove_exchange_locked(&mut defs, &x)
    }

    fn remove_exchange_locked(
        &self,
        defs: &mut Definitions,
        x: &Arc<Exchange>,
    ) -> BrokerResult<()> {
        defs.exchanges.remove(&*x.name);
        x.mark_deleted();
        if x.durable {
            for b in x.bindings() {
                self.store.delete_binding(&self.binding_record(
                    &x.name,
                    &b.destination,
                    &b.routing_key,
                    &b.arguments,
                ))?;
            }
            self.store.delete_exchange(&self.name, &x.name)?;
            self.commit.note_write();
        }
        // Bindings into this exchange from others go too.
        let dest = Destination::Exchange(Arc::clone(&x.name));
        let sources: Vec<Arc<Exchange>> = defs.exchanges.values().cloned().collect();
        for s in sources {
            for b in s.bindings().into_iter().filter(|b| b.destination == dest) {
                self.unbind_locked(defs, &s, &dest, &b.routing_key, &b.arguments)?;
            }
        }
        Ok(())
    }

    fn binding_record(
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

    fn dest_durable(defs: &Definitions, dest: &Destination) -> bool {
        match dest {
            Destination::Queue(q) => q.durable,
            Destination::Exchange(n) => defs.exchanges.get(n).is_some_and(|x| x.durable),
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
        let defs = self.write();
        let (x, destination) = self.binding_ends(&defs, source, dest, dest_is_exchange, conn)?;
        let added = x
            .bind(destination.clone(), key, args.clone())
            .map_err(BrokerError::PreconditionFailed)?;
        if added && x.durable && Self::dest_durable(&defs, &destination) {
            self.store
                .put_binding(&self.binding_record(source, &destination, key, args))?;
            self.commit.note_write();
        }
        Ok(())
    }

    /// The source exchange and the destination of a (un)bind: 403 for the default exchange,
    /// 404 for what does not exist, 405 for another connection's exclusive queue.
    fn binding_ends(
        &self,
        defs: &Definitions,
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
        let destination = self.resolve_dest(defs, dest, dest_is_exchange, conn)?;
        let x = defs
            .exchanges
            .get(source)
            .cloned()
            .ok_or_else(|| no_exchange(source, &self.name))?;
        Ok((x, destination))
    }

    fn resolve_dest(
        &self,
        defs: &Definitions,
        dest: &str,
        dest_is_exchange: bool,
        conn: ConnId,
    ) -> BrokerResult<Destination> {
        if dest_is_exchange {
            let x = defs
                .exchanges
                .get(dest)
                .ok_or_else(|| no_exchange(dest, &self.name))?;
            Ok(Destination::Exchange(Arc::clone(&x.name)))
        } else {
            let q = defs
                .queues
                .get(dest)
                .cloned()
                .ok_or_else(|| no_queue(dest, &self.name))?;
            self.check_exclusive(&q, conn)?;
            Ok(Destination::Queue(q))
        }
    }

    /// queue.unbind and exchange.unbind. Unbinding what is not bound is not an error, and
    /// neither is a source or destination that does not exist (RabbitMQ 3.10 answers unbind-ok;
    /// clients unbind in their cleanup after the queue is gone). The default exchange (403)
    /// and another connection's exclusive queue (405) are still refused.
    pub fn unbind(
        &self,
        source: &str,
        dest: &str,
        dest_is_exchange: bool,
        key: &str,
        args: &FieldTable,
        conn: ConnId,
    ) -> BrokerResult<()> {
        let mut defs = self.write();
        let (x, destination) = match self.binding_ends(&defs, source, dest, dest_is_exchange, conn)
        {
            Ok(ends) => ends,
            Err(BrokerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        self.unbind_locked(&mut defs, &x, &destination, key, args)
    }

    fn unbind_locked(
        &self,
        defs: &mut Definitions,
        x: &Arc<Exchange>,
        destination: &Destination,
        key: &str,
        args: &FieldTable,
    ) -> BrokerResult<()> {
        if x.unbind(destination, key, args) {
            if x.durable {
                self.store
                    .delete_binding(&self.binding_record(&x.name, destination, key, args))?;
                self.commit.note_write();
            }
            if x.auto_delete && x.binding_count() == 0 {
                self.remove_exchange_locked(defs, x)?;
            }
        }
        Ok(())
    }

    /// queue.declare. Returns the queue and whether it was created.
    pub fn declare_queue(
        &self,
        spec: &QueueSpec,
        passive: bool,
        conn: ConnId,
    ) -> BrokerResult<Arc<Queue>> {
        if passive {
            return self.queue_for(&spec.name, conn);
        }
        let mut defs = self.write();
        if let Some(q) = defs.queues.get(spec.name.as_str()).cloned() {
            self.check_exclusive(&q, conn)?;
            let vh = &self.name;
            let name = &q.name;
            if q.durable != spec.durable {
                return Err(BrokerError::PreconditionFailed(format!(
                    "inequivalent arg 'durable' for queue '{name}' in vhost '{vh}': received \
                     '{}' but current is '{}'",
                    bool_text(spec.durable),
                    bool_text(q.durable)
                )));
            }
            if q.auto_delete != spec.auto_delete {
                return Err(BrokerError::PreconditionFailed(format!(
                    "inequivalent arg 'auto_delete' for queue '{name}' in vhost '{vh}': received \
                     '{}' but current is '{}'",
                    bool_text(spec.auto_delete),
                    bool_text(q.auto_delete)
                )));
            }
            if q.exclusive.is_some() != spec.exclusive.is_some() {
                return Err(BrokerError::ResourceLocked(format!(
                    "cannot obtain exclusive access to locked queue '{name}' in vhost '{vh}'. It \
                     could be originally declared on another connection or the exclusive \
                     property value does not match that of the original declaration."
                )));
            }
            return Ok(q);
        }
        if spec.name.starts_with("amq.") {
            return Err(BrokerError::AccessRefused(format!(
                "queue name '{}' contains reserved prefix 'amq.*'",
                spec.name
            )));
        }
        let name: Arc<str> = if spec.name.is_empty() {
            Arc::from(generate_name("amq.gen-").as_str())
        } else {
            Arc::from(spec.name.as_str())
        };
        let args = QueueArgs::parse(spec.arguments.clone())?;
        // Exclusive queues never outlive their connection, so they are never stored.
        let durable_stored = spec.durable && spec.exclusive.is_none();
        let store = if durable_stored {
            self.store.put_queue(&QueueRecord {
                vhost: self.name.to_string(),
                name: name.to_string(),
                auto_delete: spec.auto_delete,
                arguments: table_bytes(&spec.arguments),
            })?;
            self.commit.note_write();
            Some(self.store.open_queue(&self.name, &name)?)
        } else {
            None
        };
        let q = Queue::new(
            Arc::clone(&name),
            Arc::clone(&self.name),
            spec.durable,
            spec.exclusive,
            spec.auto_delete,
            args,
            store,
            Arc::clone(&self.store),
            self.queue_window,
            Arc::clone(&self.commit),
        );
        defs.queues.insert(name, Arc::clone(&q));
        Ok(q)
    }

    /// queue.delete. Returns the number of ready messages it held.
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        conn: ConnId,
    ) -> BrokerResult<u32> {
        let mut defs = self.write();
        let Some(q) = defs.queues.get(name).cloned() else {
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
        self.remove_queue_locked(&mut defs, &q)
    }

    fn remove_queue_locked(&self, defs: &mut Definitions, q: &Arc<Queue>) -> BrokerResult<u32> {
        defs.queues.remove(&*q.name);
        let dest = Destination::Queue(Arc::clone(q));
        let sources: Vec<Arc<Exchange>> = defs.exchanges.values().cloned().collect();
        for x in sources {
            for b in x.bindings().into_iter().filter(|b| b.destination == dest) {
                self.unbind_locked(defs, &x, &dest, &b.routing_key, &b.arguments)?;
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
            self.store.delete_queue(&self.name, &q.name)?;
            self.commit.note_write();
        }
        Ok(count)
    }

    /// Deletes an auto-delete queue whose last consumer went, if it is still that queue.
    pub fn auto_delete_queue(&self, q: &Arc<Queue>) {
        let mut defs = self.write();
        if defs
            .queues
            .get(&*q.name)
            .is_some_and(|cur| Arc::ptr_eq(cur, q))
            && q.consumer_count() == 0
            && let Err(e) = self.remove_queue_locked(&mut defs, q)
        {
            tracing::error!(queue = %q.name, error = %e, "auto-delete failed");
        }
    }

    /// Deletes the exclusive queues of a closing connection.
    pub fn drop_exclusive(&self, conn: ConnId) {
        let mut defs = self.write();
        let mine: Vec<Arc<Queue>> = defs
            .queues
            .values()
            .filter(|q| q.exclusive == Some(conn))
            .cloned()
            .collect();
        for q in mine {
            if let Err(e) = self.remove_queue_locked(&mut defs, &q) {
                tracing::error!(queue = %q.name, error = %e, "deleting exclusive queue failed");
            }
        }
    }

    /// Finds the queues a message goes to: follows exchange-to-exchange bindings (each exchange
    /// visited once, so cycles end) and the alternate exchange when nothing matched.
    ///
    /// The message's headers table is decoded only if a headers exchange is on the way, and
    /// then once: no other exchange type looks at properties.
    pub fn route(
        &self,
        exchange: &Arc<Exchange>,
        routing_key: &str,
        properties: &Properties,
        out: &mut Vec<Arc<Queue>>,
    ) {
        let decoded = std::cell::OnceCell::new();
        let headers = |x: &Exchange| match x.kind {
            ExchangeKind::Headers => decoded.get_or_init(|| properties.headers()).as_ref(),
            _ => None,
        };
        if exchange.name.is_empty() {
            if let Some(q) = self.read().queues.get(routing_key) {
                out.push(Arc::clone(q));
            }
            return;
        }
        let mut dests = Vec::new();
        let mut visited: Vec<Arc<str>> = vec![Arc::clone(&exchange.name)];
        exchange.route(routing_key, headers(exchange), &mut dests);
        let mut alternate = exchange.alternate.clone();
        let mut i = 0;
        loop {
            while i < dests.len() {
                match &dests[i] {
                    Destination::Queue(q) => {
                        if !out.iter().any(|o| Arc::ptr_eq(o, q)) {
                            out.push(Arc::clone(q));
                        }
                    }
                    Destination::Exchange(name) => {
                        if !visited.iter().any(|v| v == name) {
                            visited.push(Arc::clone(name));
                            if let Ok(x) = self.exchange(name) {
                                x.route(routing_key, headers(&x), &mut dests);
                            }
                        }
                    }
                }
                i += 1;
            }
            // Alternate exchange: only when nothing at all was routed (RabbitMQ's rule).
            match alternate.take() {
                Some(ae) if out.is_empty() && !visited.contains(&ae) => {
                    visited.push(Arc::clone(&ae));
                    if let Ok(x) = self.exchange(&ae) {
                        alternate = x.alternate.clone();
                        x.route(routing_key, headers(&x), &mut dests);
                    }
                }
                _ => break,
            }
        }
    }

    /// Publishes a message to an exchange: 404 if missing, 403 if internal.
    pub fn publish(&self, exchange: &str, msg: Arc<Message>) -> BrokerResult<PublishOutcome> {
        let x = self.exchange(exchange)?;
        if x.internal {
            return Err(BrokerError::AccessRefused(format!(
                "cannot publish to internal exchange '{exchange}' in vhost '{}'",
                self.name
            )));
        }
        self.publish_to(&x, msg)
    }

    /// Publishes to a resolved exchange (no internal check: exchange-to-exchange delivery).
    pub fn publish_to(&self, x: &Arc<Exchange>, msg: Arc<Message>) -> BrokerResult<PublishOutcome> {
        let mut queues = Vec::new();
        self.route(x, &msg.routing_key, &msg.properties, &mut queues);
        let mut outcome = PublishOutcome {
            routed: queues.len(),
            persisted: false,
        };
        for q in queues {
            outcome.persisted |= q.push(Arc::clone(&msg))?;
        }
        Ok(outcome)
    }

    /// Rebuilds durable definitions from the store (startup). Undecodable arguments are logged
    /// and replaced by an empty table rather than failing the whole start.
    pub(crate) fn restore(&self, defs: &crate::storage::Definitions) -> BrokerResult<()> {
        let vh = &*self.name;
        let args = |b: &Bytes, what: &str| match decode_table(b) {
            Ok(t) => t,
            Err(e) => {
                tracing::error!(vhost = vh, object = what, error = %e, "bad stored arguments");
                FieldTable::new()
            }
        };
        for x in defs.exchanges.iter().filter(|x| x.vhost == vh) {
            let Some(kind) = ExchangeKind::parse(&x.kind) else {
                tracing::error!(exchange = %x.name, kind = %x.kind, "unknown stored exchange type");
                continue;
            };
            let e = Exchange::new(
                Arc::from(x.name.as_str()),
                kind,
                true,
                x.auto_delete,
                x.internal,
                args(&x.arguments, &x.name),
            );
            self.write().exchanges.insert(Arc::clone(&e.name), e);
        }
        for q in defs.queues.iter().filter(|q| q.vhost == vh) {
            let store = self.store.open_queue(vh, &q.name)?;
            let queue = Queue::new(
                Arc::from(q.name.as_str()),
                Arc::clone(&self.name),
                true,
                None,
                q.auto_delete,
                QueueArgs::parse(args(&q.arguments, &q.name))?,
                Some(Arc::clone(&store)),
                Arc::clone(&self.store),
                self.queue_window,
                Arc::clone(&self.commit),
            );
            super::recovery::load_messages(&queue, &*store)?;
            self.write().queues.insert(Arc::clone(&queue.name), queue);
        }
        for b in defs.bindings.iter().filter(|b| b.vhost == vh) {
            let defs = self.read();
            let Some(x) = defs.exchanges.get(b.source.as_str()).cloned() else {
                continue;
            };
            let dest = if b.destination_is_exchange {
                match defs.exchanges.get(b.destination.as_str()) {
                    Some(d) => Destination::Exchange(Arc::clone(&d.name)),
                    None => continue,
                }
            } else {
                match defs.queues.get(b.destination.as_str()) {
                    Some(q) => Destination::Queue(Arc::clone(q)),
                    None => continue,
                }
            };
            drop(defs);
            if let Err(e) = x.bind(dest, &b.routing_key, args(&b.arguments, &b.source)) {
                tracing::error!(source = %b.source, error = %e, "stored binding refused");
            }
        }
        Ok(())
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

/// A random name with a prefix, like RabbitMQ's `amq.gen-…` and `amq.ctag-…` (22 base64url chars).
pub fn generate_name(prefix: &str) -> String {
    use base64::Engine;
    let mut raw = [0u8; 16];
    if getrandom::fill(&mut raw).is_err() {
        // No OS randomness: fall back to time and a counter; names only need to be unique.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        raw[..8].copy_from_slice(&n.to_be_bytes());
        raw[8..].copy_from_slice(&(t as u64).to_be_bytes());
    }
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    )
}

/// A field-table value as text, for error messages.
pub fn value_text(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(s) => String::from_utf8_lossy(s).into_owned(),
        other => format!("{other:?}"),
    }
}

/// A short string from a name that is known to fit (names come from short strings).
pub fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).unwrap_or_default()
}
