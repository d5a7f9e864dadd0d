//! Authorisation: a [`Grant`] is what one user may do in one vhost, compiled from its
//! permission and topic permissions at one [generation](super::Access::generation) of the
//! access model. [`Grant::authorize`] is the one check the AMQP session and the management
//! API both make; the `check_*` helpers apply it to the operations RabbitMQ 3.10 checks,
//! in `rabbit_channel`'s order, with its refusal texts
//! (`tests/fixtures/rabbitmq-3.10/security.json`):
//!
//! | operation | needs |
//! |---|---|
//! | exchange.declare (not passive) | configure on it; new with `alternate-exchange`: read on it, write on the AE |
//! | exchange.delete | configure |
//! | queue.declare (not passive) | configure (server-named queues too); new with `x-dead-letter-exchange`: read on it, write on the DLX; new: the vhost's `max-queues` |
//! | queue.delete | configure |
//! | queue.bind / unbind | write on the queue, read on the exchange, topic read on the key |
//! | exchange.bind / unbind | write on the destination, read on the source, topic read on the key |
//! | basic.publish | write on the exchange (the default one is `amq.default`), topic write on the key |
//! | basic.consume / get, queue.purge | read |
//!
//! Passive declares need nothing. Topic permissions apply to topic exchanges only, and a user
//! without one for an exchange may use every routing key.

use super::model::{Permission, TopicPermission};
use super::pattern::{Matcher, expand};
use crate::broker::error::{BrokerError, BrokerResult};
use crate::broker::exchange::ExchangeKind;
use crate::broker::vhost::VHost;
use crate::protocol::types::{FieldTable, FieldValue, ShortStr};
use std::sync::Arc;

/// A kind of right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// Declare and delete.
    Configure,
    /// Publish to, bind to.
    Write,
    /// Consume, get, purge, bind from.
    Read,
}

/// What a right is checked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource<'a> {
    /// An exchange (the default exchange is `""`; it is checked as `amq.default`).
    Exchange(&'a str),
    /// A queue.
    Queue(&'a str),
}

/// A compiled permission.
#[derive(Debug)]
pub(crate) struct Compiled {
    configure: Matcher,
    write: Matcher,
    read: Matcher,
}

impl Compiled {
    /// Compiles `p`; the error names the field.
    pub(crate) fn new(p: &Permission) -> Result<Compiled, String> {
        let c =
            |k: &str, s: &str| Matcher::compile(s).map_err(|e| format!("invalid {k} regex: {e}"));
        Ok(Compiled {
            configure: c("configure", &p.configure)?,
            write: c("write", &p.write)?,
            read: c("read", &p.read)?,
        })
    }

    fn get(&self, perm: Perm) -> &Matcher {
        match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        }
    }
}

/// A topic permission's patterns, with the user's variables expanded.
#[derive(Debug)]
struct TopicGrant {
    exchange: String,
    write: Matcher,
    read: Matcher,
}

/// What one user may do in one vhost, as of one generation of the access model.
#[derive(Debug)]
pub struct Grant {
    user: Arc<str>,
    vhost: Arc<str>,
    generation: u64,
    perm: Option<Arc<Compiled>>,
    topics: Vec<TopicGrant>,
    max_queues: Option<u64>,
}

impl Grant {
    pub(crate) fn build(
        user: &str,
        vhost: &str,
        generation: u64,
        perm: Option<Arc<Compiled>>,
        topics: &[&TopicPermission],
        max_queues: Option<u64>,
    ) -> Grant {
        // AMQP 0-9-1 has no client id: `{client_id}` stays as text, as in RabbitMQ.
        let vars = [("username", user), ("vhost", vhost)];
        let compile = |p: &str| {
            let p = if p.is_empty() { "^$" } else { p };
            // A pattern that no longer compiles after expansion (a user name with regex
            // syntax in it) allows nothing.
            Matcher::compile(&expand(p, &vars)).unwrap_or(Matcher::Empty)
        };
        Grant {
            user: Arc::from(user),
            vhost: Arc::from(vhost),
            generation,
            perm,
            topics: topics
                .iter()
                .map(|t| TopicGrant {
                    exchange: t.exchange.clone(),
                    write: compile(&t.write),
                    read: compile(&t.read),
                })
                .collect(),
            max_queues,
        }
    }

    /// Every right, no topic restriction: for the broker's own operations and tests.
    pub fn all(user: &str, vhost: &str) -> Grant {
        let any = Compiled {
            configure: Matcher::Any,
            write: Matcher::Any,
            read: Matcher::Any,
        };
        Grant::build(user, vhost, 0, Some(Arc::new(any)), &[], None)
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The vhost.
    pub fn vhost(&self) -> &str {
        &self.vhost
    }

    /// The generation of the access model this grant was compiled at.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the user has a permission in the vhost at all (connection.open needs one).
    pub fn has_vhost_access(&self) -> bool {
        self.perm.is_some()
    }

    /// The one check: may the user do `perm` on `resource`? 403 ACCESS_REFUSED with
    /// RabbitMQ's text if not.
    pub fn authorize(&self, perm: Perm, resource: Resource<'_>) -> BrokerResult<()> {
        let (kind, name) = match resource {
            Resource::Exchange("") => ("exchange", "amq.default"),
            Resource::Exchange(n) => ("exchange", n),
            Resource::Queue(n) => ("queue", n),
        };
        if self
            .perm
            .as_ref()
            .is_some_and(|p| p.get(perm).is_match(name))
        {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "access to {kind} '{name}' in vhost '{}' refused for user '{}'",
            self.vhost, self.user
        )))
    }

    /// Topic permission: may the user use `routing_key` on topic exchange `exchange` for
    /// `perm` (write: publish, read: bind)? Allowed when the user has no topic permission for
    /// that exchange.
    pub fn authorize_topic(
        &self,
        perm: Perm,
        exchange: &str,
        routing_key: &str,
    ) -> BrokerResult<()> {
        let Some(t) = self.topics.iter().find(|t| t.exchange == exchange) else {
            return Ok(());
        };
        let m = if perm == Perm::Write {
            &t.write
        } else {
            &t.read
        };
        if m.is_match(routing_key) {
            return Ok(());
        }
        Err(BrokerError::AccessRefused(format!(
            "access to topic '{routing_key}' in exchange '{exchange}' in vhost '{}' refused for user '{}'",
            self.vhost, self.user
        )))
    }

    /// basic.publish: write on the exchange, then (once it is known to be a topic exchange)
    /// topic write on the routing key. `kind` is `None` while the exchange is not looked up.
    /// The routing key is read (as a `str`, which checks its UTF-8) only when a topic
    /// permission needs it.
    pub fn check_publish(
        &self,
        exchange: &str,
        kind: Option<ExchangeKind>,
        routing_key: &ShortStr,
    ) -> BrokerResult<()> {
        match kind {
            None => self.authorize(Perm::Write, Resource::Exchange(exchange)),
            Some(ExchangeKind::Topic) if !self.topics.is_empty() => {
                self.authorize_topic(Perm::Write, exchange, routing_key.as_str())
            }
            Some(_) => Ok(()),
        }
    }

    /// queue.declare (not passive) of `name` in `vh`: configure; for a new queue also the DLX
    /// rights and the vhost's queue limit (406, RabbitMQ's text).
    pub fn check_queue_declare(
        &self,
        vh: &VHost,
        name: &str,
        args: &FieldTable,
    ) -> BrokerResult<()> {
        self.authorize(Perm::Configure, Resource::Queue(name))?;
        if vh.find_queue(name).is_some() {
            return Ok(());
        }
        if let Some(limit) = self.max_queues
            && vh.queues().len() as u64 >= limit
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "cannot declare queue '{name}': queue limit in vhost '{}' ({limit}) is reached",
                self.vhost
            )));
        }
        if let Some(dlx) = text_arg(args, "x-dead-letter-exchange") {
            self.authorize(Perm::Read, Resource::Queue(name))?;
            self.authorize(Perm::Write, Resource::Exchange(dlx))?;
        }
        Ok(())
    }

    /// exchange.declare (not passive): configure; a new exchange with an alternate exchange
    /// also needs read on itself and write on the alternate.
    pub fn check_exchange_declare(
        &self,
        vh: &VHost,
        name: &str,
        args: &FieldTable,
    ) -> BrokerResult<()> {
        self.authorize(Perm::Configure, Resource::Exchange(name))?;
        if vh.find_exchange(name).is_some() {
            return Ok(());
        }
        if let Some(ae) = text_arg(args, "alternate-exchange") {
            self.authorize(Perm::Read, Resource::Exchange(name))?;
            self.authorize(Perm::Write, Resource::Exchange(ae))?;
        }
        Ok(())
    }

    /// queue.bind / exchange.bind and their unbinds: write on the destination, read on the
    /// source, and topic read on the routing key if the source is a topic exchange.
    pub fn check_bind(
        &self,
        vh: &VHost,
        source: &str,
        destination: &str,
        to_exchange: bool,
        routing_key: &str,
    ) -> BrokerResult<()> {
        let dest = if to_exchange {
            Resource::Exchange(destination)
        } else {
            Resource::Queue(destination)
        };
        self.authorize(Perm::Write, dest)?;
        if source.is_empty() || (to_exchange && destination.is_empty()) {
            // The vhost refuses bindings of the default exchange with its own text.
            return Ok(());
        }
        self.authorize(Perm::Read, Resource::Exchange(source))?;
        if !self.topics.is_empty()
            && let Some(x) = vh.find_exchange(source)
            && x.kind == ExchangeKind::Topic
        {
            self.authorize_topic(Perm::Read, source, routing_key)?;
        }
        Ok(())
    }
}

/// A string argument of a declare (`x-dead-letter-exchange`, `alternate-exchange`).
fn text_arg<'a>(args: &'a FieldTable, key: &str) -> Option<&'a str> {
    args.get(key).and_then(FieldValue::as_str)
}
