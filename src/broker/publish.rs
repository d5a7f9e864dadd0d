//! Publishing: the one broker call a publish makes ([`VHost::publish`]), and routing.
//!
//! `publish` does, in RabbitMQ 3.10's order (`rabbit_channel`'s basic.publish): check the
//! user's write permission on the exchange (403), resolve the exchange (404), refuse an
//! internal one (403), check the topic permission on the routing key (403), `user-id` (406)
//! and `expiration` (406), read the `CC`/`BCC` routing headers (406 when not arrays; `BCC` is
//! removed from the message, see [`super::exchange::cc`]), then route with every key (following exchange-to-exchange bindings and alternate exchanges), push
//! into every queue found, and carry out what the pushes left (dead letters from length limits
//! or TTL 0). It returns what the session needs to answer: whether any queue took the message
//! (mandatory returns), whether a queue refused it (basic.nack in confirm mode), and the
//! group-commit sequence its confirm waits for. Exchanges are read from the vhost's concurrent
//! map, never under the definitions lock.
//!
//! A session may split the call in two: [`VHost::route_publish`] (everything up to the pushes)
//! per publish, then [`VHost::push_batch`] for the routed publishes of one read batch, which
//! takes each queue's lock once for all of its messages instead of once per message.
//!
//! A persistent message routed to several durable queues is stored in all of them or none:
//! the puts happen under one held flush, and if one fails, the copies already put are removed
//! before the flush can see them.

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, ShortStr};
use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::error::{BrokerError, BrokerResult, no_exchange};
use super::exchange::cc::sender_selected;
use super::exchange::delayed::{DelayMode, Due, delay_of};
use super::exchange::{Destination, Exchange, ExchangeKind};
use super::message::Message;
use super::queue::args::MAX_EXPIRY;
use super::queue::{Followups, Pushed, Queue};
use super::reply_to::{REPLY_PREFIX, REPLY_QUEUE};
use super::time::Now;
use super::vhost::{NameCache, VHost};

/// A complete basic.publish, as the session assembled it.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    /// Exchange name.
    pub exchange: ShortStr,
    /// Routing key.
    pub routing_key: ShortStr,
    /// Content properties, as sent.
    pub properties: Properties,
    /// Body.
    pub body: Bytes,
    /// The publishing connection's user (checked against `user-id`).
    pub user: &'a str,
    /// The publisher's rights in this vhost (write on the exchange, topic write on the key).
    pub grant: &'a super::access::Grant,
    /// Its confirm, to release early when every copy is consumed (see [`super::consumed`]).
    pub awaited: Option<super::consumed::Awaited>,
}

/// What happened to a publish.
#[derive(Debug)]
pub struct PublishOutcome {
    /// The message, as queued (a mandatory publish that reached no queue is returned).
    pub message: Arc<Message>,
    /// Some queue took it (or refused it: the message was routable).
    pub routed: bool,
    /// A queue refused it (`x-overflow` reject-publish): the confirm is a basic.nack.
    pub refused: bool,
    /// The group-commit sequence the confirm waits for (0: none).
    pub flush: u64,
    /// A queue it went to is falling behind its consumers (see `needs_flow` in the classic
    /// queue): the publisher's connection should pause reading briefly, as RabbitMQ's credit
    /// flow blocks a publisher's reader.
    pub flow: bool,
}

/// A publish routed to its queues and not yet pushed (see [`VHost::route_publish`]).
#[derive(Debug)]
pub struct Routed {
    message: Arc<Message>,
    queues: Targets,
}

/// The queues of a routed publish: one queue (most publishes) needs no allocation.
#[derive(Debug)]
enum Targets {
    One(Arc<Queue>),
    Many(Vec<Arc<Queue>>),
}

impl Targets {
    fn as_slice(&self) -> &[Arc<Queue>] {
        match self {
            Targets::One(q) => std::slice::from_ref(q),
            Targets::Many(v) => v,
        }
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

/// Most queues a publish may go to and still be pushed with the rest of its batch.
const BATCH_FANOUT: usize = 64;

impl Routed {
    /// The message being published.
    pub fn message(&self) -> &Arc<Message> {
        &self.message
    }

    /// Whether it may be pushed with other publishes ([`VHost::push_batch`]): not a persistent
    /// message bound for several durable queues (stored in all or none, on its own), nor one
    /// routed to so many queues that grouping would cost more than it saves.
    pub fn batchable(&self) -> bool {
        let queues = self.queues.as_slice();
        queues.len() <= BATCH_FANOUT && !stored_in_several(queues, &self.message)
    }
}

/// A persistent message bound for several durable queues: stored in all of them or none.
fn stored_in_several(queues: &[Arc<Queue>], msg: &Message) -> bool {
    queues.len() > 1 && msg.is_persistent() && queues.iter().filter(|q| q.durable).count() > 1
}

/// What [`VHost::route_publish`] decided.
#[derive(Debug)]
pub enum Prepared {
    /// Nothing to push (unroutable, a duplicate, delayed): the outcome is final.
    Done(PublishOutcome),
    /// Queues to push into: now ([`VHost::push_routed`]) or with others ([`VHost::push_batch`]).
    Routed(Routed),
}

/// RabbitMQ's `parse_expiration`: the `expiration` property as milliseconds, or the error
/// term of its 406 (`no_integer`, `{leftover_string,"…"}`, `{value_negative,N}`,
/// `{value_too_large,N}` above ten years).
pub fn parse_expiration(s: &str) -> Result<Option<u64>, String> {
    let b = s.as_bytes();
    let (neg, digits_at) = match b.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let end = b[digits_at..]
        .iter()
        .position(|c| !c.is_ascii_digit())
        .map_or(b.len(), |p| digits_at + p);
    if end == digits_at {
        return Err("no_integer".into());
    }
    if end < b.len() {
        return Err(format!("{{leftover_string,\"{}\"}}", &s[end..]));
    }
    let digits = s[digits_at..end].trim_start_matches('0');
    let shown = if digits.is_empty() { "0" } else { digits };
    let value: Option<u64> = digits.parse().ok().or(digits.is_empty().then_some(0));
    match (neg, value) {
        (true, Some(0)) => Ok(Some(0)),
        (true, _) => Err(format!("{{value_negative,-{shown}}}")),
        (false, Some(n)) if n <= MAX_EXPIRY as u64 => Ok(Some(n)),
        (false, _) => Err(format!("{{value_too_large,{shown}}}")),
    }
}

impl VHost {
    /// Publishes a message: see the module docs.
    pub fn publish(&self, req: PublishRequest<'_>, now: Now) -> BrokerResult<PublishOutcome> {
        self.publish_from(req, None, now)
    }

    /// [`VHost::publish`] from a channel: `reply_suffix` is the key of its direct reply-to
    /// consumer, if it has one; a `reply_to` of `amq.rabbitmq.reply-to` is rewritten with it
    /// (406 `fast reply consumer does not exist` without one, RabbitMQ's
    /// `maybe_set_fast_reply_to`).
    pub fn publish_from(
        &self,
        req: PublishRequest<'_>,
        reply_suffix: Option<&str>,
        now: Now,
    ) -> BrokerResult<PublishOutcome> {
        match self.route_publish(req, reply_suffix, &mut NameCache::default(), now)? {
            Prepared::Done(outcome) => Ok(outcome),
            Prepared::Routed(r) => self.push_routed(r, now),
        }
    }

    /// Everything [`VHost::publish_from`] does before the pushes: the checks, deduplication,
    /// delayed messages, direct replies and routing. A publisher's session may then push a
    /// read batch of routed publishes together ([`VHost::push_batch`]). `names` is the
    /// publisher's cache of the exchange and queue it last published to.
    pub fn route_publish(
        &self,
        mut req: PublishRequest<'_>,
        reply_suffix: Option<&str>,
        names: &mut NameCache,
        now: Now,
    ) -> BrokerResult<Prepared> {
        let x = {
            // Read as a `str` once (each read checks its UTF-8).
            let exchange = req.exchange.as_str();
            req.grant.check_publish(exchange, None, &req.routing_key)?;
            let x = names
                .exchange(self, exchange)
                .ok_or_else(|| no_exchange(exchange, &self.name))?;
            if x.internal {
                return Err(BrokerError::AccessRefused(format!(
                    "cannot publish to internal exchange '{}' in vhost '{}'",
                    x.name, self.name
                )));
            }
            req.grant
                .check_publish(exchange, Some(x.kind), &req.routing_key)?;
            x
        };
        if req.properties.reply_to() == Some(REPLY_QUEUE) {
            let Some(suffix) = reply_suffix else {
                return Err(BrokerError::PreconditionFailed(
                    "fast reply consumer does not exist".into(),
                ));
            };
            let mut p = req.properties.decode();
            p.reply_to = ShortStr::try_from(format!("{REPLY_PREFIX}{suffix}")).ok();
            req.properties = Properties::from(&p);
        }
        if let Some(uid) = req.properties.user_id()
            && uid != req.user
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "user_id property set to '{uid}' but authenticated user was '{}'",
                req.user
            )));
        }
        if let Some(exp) = req.properties.expiration()
            && let Err(term) = parse_expiration(exp)
        {
            return Err(BrokerError::PreconditionFailed(format!(
                "invalid expiration '{exp}': {term}"
            )));
        }
        let cc = sender_selected(&req.properties).map_err(BrokerError::PreconditionFailed)?;
        let stats = &self.shared().stats;
        stats.published.fetch_add(1, Ordering::Relaxed);
        let msg = Arc::new(Message {
            exchange: req.exchange,
            routing_key: req.routing_key,
            properties: cc.stripped.unwrap_or(req.properties),
            body: req.body,
            awaited: req.awaited,
        });
        if !self.no_dedup()
            && let Some(d) = self.deduper(false, &x.name)
            && d.check(&msg.properties, now)?
        {
            // A duplicate goes nowhere: confirmed, and returned when mandatory (LavinMQ counts
            // it unroutable).
            stats.unroutable.fetch_add(1, Ordering::Relaxed);
            return Ok(Prepared::Done(PublishOutcome {
                message: msg,
                routed: false,
                refused: false,
                flow: false,
                flush: 0,
            }));
        }
        if x.delay.is_some()
            && let Some((delay, props)) = delay_of(&msg.properties)
        {
            return self.delay(&x, msg, props, delay, now).map(Prepared::Done);
        }
        let (queues, routed) = self.targets(&x, &msg, &cc.keys, names, now)?;
        if x.name.is_empty() {
            self.deliver_replies(&msg, &cc.keys);
        }
        if queues.is_empty() {
            if !routed {
                stats.unroutable.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(Prepared::Done(PublishOutcome {
                routed,
                refused: false,
                flow: false,
                flush: 0,
                message: msg,
            }));
        }
        if let Some(a) = &msg.awaited {
            // Before any push: a consumer may take the first copy while the rest are pushed.
            a.expect(queues.as_slice().len());
        }
        Ok(Prepared::Routed(Routed {
            message: msg,
            queues,
        }))
    }

    /// The queues `msg` goes to from `x` (with its `CC`/`BCC` keys), less the deduplicating
    /// queues that already had it; and whether any queue matched before that.
    fn targets(
        &self,
        x: &Arc<Exchange>,
        msg: &Message,
        cc: &[ShortStr],
        names: &mut NameCache,
        now: Now,
    ) -> BrokerResult<(Targets, bool)> {
        if x.name.is_empty() && cc.is_empty() && self.no_dedup() {
            // The default exchange: the queue named by the key (what `route_to` finds).
            return Ok(match names.queue(self, &msg.routing_key) {
                Some(q) => (Targets::One(q), true),
                None => (Targets::Many(Vec::new()), false),
            });
        }
        let mut queues = Vec::new();
        if cc.is_empty() {
            self.route_to(x, &msg.routing_key, &msg.properties, &mut queues);
        } else {
            let mut keys: Vec<&str> = vec![&msg.routing_key];
            keys.extend(cc.iter().map(|k| k.as_str()));
            self.route_keys(x, &keys, &msg.properties, &mut queues);
        }
        let routed = !queues.is_empty();
        if !self.no_dedup() {
            self.drop_queue_duplicates(&mut queues, msg, now)?;
        }
        Ok((Targets::Many(queues), routed))
    }

    /// Pushes one routed publish into its queues: a persistent message bound for several
    /// durable queues is stored in all of them or none.
    pub fn push_routed(&self, r: Routed, now: Now) -> BrokerResult<PublishOutcome> {
        let mut outcome = PublishOutcome {
            routed: true,
            refused: false,
            flow: false,
            flush: 0,
            message: Arc::clone(&r.message),
        };
        let mut fx = Followups::default();
        let pushed = self.push_all(r.queues.as_slice(), &r.message, now, &mut fx, &mut outcome);
        self.run(fx, now)?;
        pushed?;
        Ok(outcome)
    }

    /// Pushes a batch of [`Routed::batchable`] publishes, in order within each queue, taking
    /// each queue's lock once for all the batch's messages bound for it; `out` gets one
    /// [`Pushed`] per publish (refused by any queue, the flush its confirm waits for, flow).
    /// A store error stops the batch and is returned (the connection closes with 541).
    pub fn push_batch(
        &self,
        batch: &[Routed],
        now: Now,
        out: &mut Vec<Pushed>,
    ) -> BrokerResult<()> {
        out.clear();
        out.resize_with(batch.len(), Pushed::default);
        // (queue, publish, the queue's place in the publish's list): grouped by queue, each
        // group in publish order.
        let mut order: Vec<(usize, usize, usize)> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            for (j, q) in r.queues.as_slice().iter().enumerate() {
                order.push((Arc::as_ptr(q) as usize, i, j));
            }
        }
        order.sort_unstable_by_key(|&(q, i, _)| (q, i));
        let mut fx = Followups::default();
        let mut msgs = Vec::new();
        let mut pushed = Vec::new();
        let mut result = Ok(());
        for group in order.chunk_by(|a, b| a.0 == b.0) {
            let (_, i, j) = group[0];
            let q = &batch[i].queues.as_slice()[j];
            msgs.clear();
            msgs.extend(group.iter().map(|&(_, i, _)| &batch[i].message));
            pushed.clear();
            let r = q.push_many(&msgs, now, &mut fx, &mut pushed);
            for (&(_, i, _), p) in group.iter().zip(&pushed) {
                let o = &mut out[i];
                o.refused |= p.refused;
                o.flow |= p.flow;
                o.flush = o.flush.max(p.flush);
            }
            if let Err(e) = r {
                result = Err(e.into());
                break;
            }
        }
        self.run(fx, now)?;
        result
    }

    /// Leaves out the deduplicating queues that already had this message.
    fn drop_queue_duplicates(
        &self,
        queues: &mut Vec<Arc<Queue>>,
        msg: &Message,
        now: Now,
    ) -> BrokerResult<()> {
        let mut err = None;
        queues.retain(|q| match self.deduper(true, &q.name) {
            None => true,
            Some(d) => match d.check(&msg.properties, now) {
                Ok(dup) => !dup,
                Err(e) => {
                    err = Some(e);
                    true
                }
            },
        });
        match err {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Keeps a message with an `x-delay` in its delayed exchange (see
    /// [`super::exchange::delayed`]).
    fn delay(
        &self,
        x: &Arc<Exchange>,
        msg: Arc<Message>,
        props: Properties,
        delay: u64,
        now: Now,
    ) -> BrokerResult<PublishOutcome> {
        let msg = Arc::new(Message {
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
            properties: props,
            body: msg.body.clone(),
            awaited: None,
        });
        let flush = self.shared().delayed.delay(
            &self.name,
            &x.name,
            x.durable,
            Arc::clone(&msg),
            delay,
            now,
        )?;
        Ok(PublishOutcome {
            message: msg,
            // The plugin routes a delayed message to no queue (a mandatory one is returned);
            // LavinMQ's delayed exchange counts it as routed.
            routed: x.delay != Some(DelayMode::Plugin),
            refused: false,
            flow: false,
            flush,
        })
    }

    /// Routes a delayed message whose time has come through its exchange, as it is now.
    /// Dropped when the exchange is gone.
    pub fn publish_delayed(&self, d: &Due, now: Now) -> BrokerResult<()> {
        let Some(x) = self.find_exchange(&d.exchange) else {
            tracing::debug!(exchange = %d.exchange, "delayed message of a deleted exchange dropped");
            return Ok(());
        };
        let msg = &d.msg;
        let cc = sender_selected(&msg.properties).unwrap_or_default();
        let mut queues = Vec::new();
        let mut keys: Vec<&str> = vec![&msg.routing_key];
        keys.extend(cc.keys.iter().map(|k| k.as_str()));
        self.route_keys(&x, &keys, &msg.properties, &mut queues);
        if queues.is_empty() {
            self.shared()
                .stats
                .unroutable
                .fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if !self.no_dedup() {
            self.drop_queue_duplicates(&mut queues, msg, now)?;
        }
        let mut outcome = PublishOutcome {
            message: Arc::clone(msg),
            routed: true,
            refused: false,
            flow: false,
            flush: 0,
        };
        let mut fx = Followups::default();
        let r = self.push_all(&queues, msg, now, &mut fx, &mut outcome);
        self.run(fx, now)?;
        r
    }

    /// Direct reply-to: a message to the default exchange whose key (or a `CC`/`BCC` key) is
    /// a reply key goes to that requester's channel. Routing finds no queue for it (no queue
    /// name starts with `amq.`), so a mandatory reply is also returned, as RabbitMQ 3.10 does.
    fn deliver_replies(&self, msg: &Arc<Message>, cc: &[ShortStr]) {
        let replies = &self.shared().replies;
        std::iter::once(msg.routing_key.as_str())
            .chain(cc.iter().map(|k| k.as_str()))
            .filter(|k| k.starts_with(REPLY_PREFIX))
            .for_each(|k| replies.deliver(k, msg));
    }

    /// Pushes into every queue; a persistent message into several durable queues is stored
    /// in all or none (one held flush; copies already stored are removed on a failure).
    fn push_all(
        &self,
        queues: &[Arc<Queue>],
        msg: &Arc<Message>,
        now: Now,
        fx: &mut Followups,
        outcome: &mut PublishOutcome,
    ) -> BrokerResult<()> {
        let several = stored_in_several(queues, msg);
        let _hold = several.then(|| self.shared().store.hold_flush());
        let mut stored: Vec<(&Arc<Queue>, u64)> = Vec::new();
        for q in queues {
            match q.push(msg, now, fx) {
                Ok(p) => {
                    outcome.refused |= p.refused;
                    outcome.flow |= p.flow;
                    outcome.flush = outcome.flush.max(p.flush);
                    if several && let Some(id) = p.stored {
                        stored.push((q, id));
                    }
                }
                Err(e) => {
                    for (q, id) in stored {
                        if let Err(e2) = q.forget_stored(id) {
                            tracing::error!(queue = %q.name, error = %e2, "removing a partly stored publish failed");
                        }
                    }
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// Finds the queues a message goes to: follows exchange-to-exchange bindings (each
    /// exchange visited once, so cycles end) and the alternate exchange when nothing matched.
    ///
    /// The message's headers table is decoded only if a headers exchange is on the way, and
    /// then once: no other exchange type looks at properties.
    pub fn route_to(
        &self,
        exchange: &Arc<Exchange>,
        routing_key: &str,
        properties: &Properties,
        out: &mut Vec<Arc<Queue>>,
    ) {
        self.route_keys(exchange, &[routing_key], properties, out);
    }

    /// [`VHost::route_to`] with several routing keys (a message's own key and its `CC`/`BCC`
    /// keys): every exchange on the way matches each key.
    pub fn route_keys(
        &self,
        exchange: &Arc<Exchange>,
        keys: &[&str],
        properties: &Properties,
        out: &mut Vec<Arc<Queue>>,
    ) {
        let decoded: std::cell::OnceCell<Option<FieldTable>> = std::cell::OnceCell::new();
        let headers = |x: &Exchange| match x.kind {
            ExchangeKind::Headers => decoded.get_or_init(|| properties.headers()).as_ref(),
            _ => None,
        };
        if exchange.name.is_empty() {
            for k in keys {
                if let Some(q) = self.find_queue(k)
                    && !out.iter().any(|o| Arc::ptr_eq(o, &q))
                {
                    out.push(q);
                }
            }
            return;
        }
        let mut dests = Vec::new();
        let mut visited: Vec<Arc<str>> = vec![Arc::clone(&exchange.name)];
        exchange.route_keys(keys, headers(exchange), &mut dests);
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
                            if let Some(x) = self.find_exchange(name) {
                                x.route_keys(keys, headers(&x), &mut dests);
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
                    if let Some(x) = self.find_exchange(&ae) {
                        alternate = x.alternate.clone();
                        x.route_keys(keys, headers(&x), &mut dests);
                    }
                }
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::parse_expiration;

    #[test]
    fn expiration_parses_as_rabbitmq() {
        assert_eq!(parse_expiration("1000"), Ok(Some(1000)));
        assert_eq!(parse_expiration("0"), Ok(Some(0)));
        assert_eq!(parse_expiration("+5"), Ok(Some(5)));
        assert_eq!(parse_expiration("foo"), Err("no_integer".into()));
        assert_eq!(parse_expiration(""), Err("no_integer".into()));
        assert_eq!(
            parse_expiration("10ms"),
            Err("{leftover_string,\"ms\"}".into())
        );
        assert_eq!(parse_expiration("-1"), Err("{value_negative,-1}".into()));
        assert_eq!(parse_expiration("4294967296"), Ok(Some(4_294_967_296)));
        assert_eq!(
            parse_expiration("1099511627776"),
            Err("{value_too_large,1099511627776}".into())
        );
    }
}
