//! Exchanges and their bindings: each kind keeps an index that answers "which destinations does
//! this message go to" without scanning every binding.
//!
//! - direct: a hash map from routing key to destinations.
//! - fanout: a list.
//! - topic: a word trie ([`topic::TopicTrie`]).
//! - headers: a list of parsed bindings ([`headers::HeadersBinding`]).
//!
//! Every kind also keeps the full binding list (for unbind, listing and persistence).

pub mod cc;
pub mod dedup;
pub mod delayed;
pub mod headers;
pub mod topic;

use crate::protocol::types::FieldTable;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use super::queue::Queue;
use headers::HeadersBinding;
use topic::TopicTrie;

/// The four exchange types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExchangeKind {
    /// Routing key equals binding key.
    Direct,
    /// Every binding.
    Fanout,
    /// Dotted word patterns with `*` and `#`.
    Topic,
    /// Header values.
    Headers,
}

impl ExchangeKind {
    /// From the declare `type` field; `None` for unknown types (RabbitMQ: 503 command invalid).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            _ => return None,
        })
    }

    /// The type name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding leads.
#[derive(Clone, Debug)]
pub enum Destination {
    /// A queue (held directly so routing needs no second lookup).
    Queue(Arc<Queue>),
    /// Another exchange, by name (exchange-to-exchange binding).
    Exchange(Arc<str>),
}

impl Destination {
    /// The destination's name.
    pub fn name(&self) -> &str {
        match self {
            Destination::Queue(q) => &q.name,
            Destination::Exchange(e) => e,
        }
    }

    /// True for an exchange destination.
    pub fn is_exchange(&self) -> bool {
        matches!(self, Destination::Exchange(_))
    }
}

impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => a == b,
            _ => false,
        }
    }
}

impl Eq for Destination {}

impl Hash for Destination {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.is_exchange().hash(state);
        self.name().hash(state);
    }
}

/// One binding from this exchange.
#[derive(Clone, Debug)]
pub struct Binding {
    /// Where it leads.
    pub destination: Destination,
    /// The binding key.
    pub routing_key: Arc<str>,
    /// Binding arguments (the headers exchange matches on them).
    pub arguments: FieldTable,
}

impl Binding {
    fn same(&self, destination: &Destination, routing_key: &str, arguments: &FieldTable) -> bool {
        self.destination == *destination
            && &*self.routing_key == routing_key
            && self.arguments == *arguments
    }
}

#[derive(Debug, Default)]
struct Bindings {
    all: Vec<Binding>,
    direct: HashMap<Arc<str>, Vec<Destination>>,
    topic: TopicTrie<Destination>,
    headers: Vec<(HeadersBinding, Destination)>,
}

/// An exchange.
#[derive(Debug)]
pub struct Exchange {
    /// Name ("" for the default exchange).
    pub name: Arc<str>,
    /// Type.
    pub kind: ExchangeKind,
    /// Survives restarts.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Cannot be published to directly.
    pub internal: bool,
    /// Declare arguments.
    pub arguments: FieldTable,
    /// `alternate-exchange` argument: where unroutable messages go.
    pub alternate: Option<Arc<str>>,
    /// Whether (and how) it delays messages with an `x-delay` header; `kind` is then the
    /// routing type.
    pub delay: Option<delayed::DelayMode>,
    bindings: RwLock<Bindings>,
    deleted: AtomicBool,
}

impl Exchange {
    /// A new exchange with no bindings.
    pub fn new(
        name: Arc<str>,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Arc<Self> {
        let alternate = arguments
            .get("alternate-exchange")
            .and_then(|v| v.as_str())
            .map(Arc::from);
        let delay =
            delayed::delayed_by_argument(&arguments).then_some(delayed::DelayMode::Argument);
        Arc::new(Exchange {
            name,
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            alternate,
            delay,
            bindings: RwLock::new(Bindings::default()),
            deleted: AtomicBool::new(false),
        })
    }

    /// An exchange of the declared type `type_name`: one of the four, or `x-delayed-message`
    /// with its routing type in `x-delayed-type`. `None` for an unknown type (or a delayed
    /// type whose routing type is not one of the four).
    pub fn of_type(
        name: Arc<str>,
        type_name: &str,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Option<Arc<Self>> {
        if type_name != delayed::DELAYED_TYPE {
            let kind = ExchangeKind::parse(type_name)?;
            return Some(Exchange::new(
                name,
                kind,
                durable,
                auto_delete,
                internal,
                arguments,
            ));
        }
        let kind = ExchangeKind::parse(delayed::delayed_type(&arguments).ok()?)?;
        let x = Exchange::new(name, kind, durable, auto_delete, internal, arguments);
        let mut x = Arc::into_inner(x)?;
        x.delay = Some(delayed::DelayMode::Plugin);
        Some(Arc::new(x))
    }

    /// The type name it was declared with (`x-delayed-message` for the plugin's type).
    pub fn type_name(&self) -> &'static str {
        match self.delay {
            Some(delayed::DelayMode::Plugin) => delayed::DELAYED_TYPE,
            _ => self.kind.as_str(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// True after deletion.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
    }

    /// Adds a binding; false if the same one exists. Headers bindings with a bad `x-match`
    /// are refused with RabbitMQ's text.
    pub fn bind(
        &self,
        destination: Destination,
        routing_key: &str,
        arguments: FieldTable,
    ) -> Result<bool, String> {
        let headers = match self.kind {
            ExchangeKind::Headers => Some(HeadersBinding::parse(&arguments)?),
            _ => None,
        };
        let mut b = self.write();
        if b.all
            .iter()
            .any(|x| x.same(&destination, routing_key, &arguments))
        {
            return Ok(false);
        }
        let key: Arc<str> = Arc::from(routing_key);
        match self.kind {
            ExchangeKind::Direct => b
                .direct
                .entry(Arc::clone(&key))
                .or_default()
                .push(destination.clone()),
            ExchangeKind::Fanout => {}
            ExchangeKind::Topic => {
                b.topic.insert(routing_key, destination.clone());
            }
            ExchangeKind::Headers => {
                if let Some(h) = headers {
                    b.headers.push((h, destination.clone()));
                }
            }
        }
        b.all.push(Binding {
            destination,
            routing_key: key,
            arguments,
        });
        Ok(true)
    }

    /// Removes a binding; false if there was none.
    pub fn unbind(
        &self,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) -> bool {
        let mut b = self.write();
        let Some(pos) = b
            .all
            .iter()
            .position(|x| x.same(destination, routing_key, arguments))
        else {
            return false;
        };
        b.all.remove(pos);
        Self::unindex(&mut b, self.kind, destination, routing_key, arguments);
        true
    }

    fn unindex(
        b: &mut Bindings,
        kind: ExchangeKind,
        destination: &Destination,
        routing_key: &str,
        arguments: &FieldTable,
    ) {
        match kind {
            ExchangeKind::Direct => {
                if let Some(v) = b.direct.get_mut(routing_key) {
                    if let Some(i) = v.iter().position(|d| d == destination) {
                        v.remove(i);
                    }
                    if v.is_empty() {
                        b.direct.remove(routing_key);
                    }
                }
            }
            ExchangeKind::Fanout => {}
            ExchangeKind::Topic => {
                // The trie holds one entry per (pattern, destination); remove it only when no
                // other binding (differing in arguments) still needs it.
                let still = b
                    .all
                    .iter()
                    .any(|x| x.destination == *destination && &*x.routing_key == routing_key);
                if !still {
                    b.topic.remove(routing_key, destination);
                }
            }
            ExchangeKind::Headers => {
                if let Ok(h) = HeadersBinding::parse(arguments)
                    && let Some(i) = b
                        .headers
                        .iter()
                        .position(|(hb, d)| d == destination && *hb == h)
                {
                    b.headers.remove(i);
                }
            }
        }
    }

    /// Removes every binding to `destination`; returns how many there were.
    pub fn unbind_destination(&self, destination: &Destination) -> usize {
        let mut b = self.write();
        let gone: Vec<Binding> = {
            let (gone, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut b.all)
                .into_iter()
                .partition(|x| x.destination == *destination);
            b.all = keep;
            gone
        };
        for g in &gone {
            Self::unindex(&mut b, self.kind, destination, &g.routing_key, &g.arguments);
        }
        gone.len()
    }

    /// Number of bindings from this exchange.
    pub fn binding_count(&self) -> usize {
        self.read().all.len()
    }

    /// The bindings from this exchange.
    pub fn bindings(&self) -> Vec<Binding> {
        self.read().all.clone()
    }

    /// Appends the destinations a message with these routing keys (its own and its `CC`/`BCC`
    /// keys) goes to: direct and topic match each key, fanout and headers ignore keys. May
    /// contain duplicates; the caller dedups.
    pub fn route_keys(
        &self,
        keys: &[&str],
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        match (self.kind, keys) {
            (ExchangeKind::Direct | ExchangeKind::Topic, [_, _, ..]) => {
                for k in keys {
                    self.route(k, headers, out);
                }
            }
            (_, [first, ..]) => self.route(first, headers, out),
            (_, []) => {}
        }
    }

    /// Appends the destinations a message with this key and headers goes to. May contain
    /// duplicates; the caller dedups.
    pub fn route(
        &self,
        routing_key: &str,
        headers: Option<&FieldTable>,
        out: &mut Vec<Destination>,
    ) {
        let b = self.read();
        match self.kind {
            ExchangeKind::Direct => {
                if let Some(v) = b.direct.get(routing_key) {
                    out.extend(v.iter().cloned());
                }
            }
            ExchangeKind::Fanout => out.extend(b.all.iter().map(|x| x.destination.clone())),
            ExchangeKind::Topic => b.topic.route(routing_key, &mut |d| out.push(d.clone())),
            ExchangeKind::Headers => out.extend(
                b.headers
                    .iter()
                    .filter(|(h, _)| h.matches(headers))
                    .map(|(_, d)| d.clone()),
            ),
        }
    }
}
