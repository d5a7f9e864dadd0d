//! What a run declares and where each producer's messages go: queue names, the exchange,
//! bindings, and per producer the routing keys it rotates over and the queues that receive
//! every one of its messages. The loss check relies on that last part: a queue either gets
//! all of a producer's messages or none.

use crate::cli::{ExchangeType, RunArgs};

/// One producer's destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// Routing keys, used in turn; each matches exactly one binding of each target queue.
    pub(crate) keys: Vec<String>,
    /// Indexes into [`Topology::queues`] of the queues every message reaches.
    pub(crate) queues: Vec<usize>,
}

/// Queues, exchange, bindings and routes of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    /// Exchange name; empty for the default exchange (nothing to declare or bind).
    pub(crate) exchange: String,
    /// Exchange type.
    pub(crate) kind: ExchangeType,
    /// Durable exchange and queues (persistent runs).
    pub(crate) durable: bool,
    /// Queue names.
    pub(crate) queues: Vec<String>,
    /// (queue index, binding key).
    pub(crate) bindings: Vec<(usize, String)>,
    /// Route of producer i.
    pub(crate) routes: Vec<Route>,
    /// Queue arguments (`--queue-arg`), as given.
    pub(crate) queue_args: Vec<(String, String)>,
}

impl Topology {
    /// The topology the options describe.
    pub(crate) fn new(a: &RunArgs) -> Topology {
        let exchange = a.exchange_name();
        let queues: Vec<String> = (0..a.queues)
            .map(|i| format!("{}-{i}", a.queue_prefix))
            .collect();
        let per_queue_keys = |q: &str| -> Vec<(String, String)> {
            // (binding key, a routing key matching it and nothing else of this run)
            match (a.exchange_type, a.bindings) {
                (ExchangeType::Fanout, _) => vec![(String::new(), String::new())],
                (ExchangeType::Direct, 1) => vec![(q.to_string(), q.to_string())],
                (ExchangeType::Direct, n) => (0..n)
                    .map(|j| (format!("{q}.{j}"), format!("{q}.{j}")))
                    .collect(),
                (ExchangeType::Topic, n) => (0..n)
                    .map(|j| (format!("{q}.{j}.*"), format!("{q}.{j}.x")))
                    .collect(),
            }
        };
        let mut bindings = Vec::new();
        let mut keys_of = Vec::new();
        for (i, q) in queues.iter().enumerate() {
            let pairs = if exchange.is_empty() {
                // The default exchange routes by queue name; nothing to bind.
                vec![(String::new(), q.clone())]
            } else {
                per_queue_keys(q)
            };
            if !exchange.is_empty() {
                bindings.extend(pairs.iter().map(|(b, _)| (i, b.clone())));
            }
            keys_of.push(pairs.into_iter().map(|(_, r)| r).collect::<Vec<_>>());
        }
        let fanout = !exchange.is_empty() && a.exchange_type == ExchangeType::Fanout;
        let routes = (0..a.producers as usize)
            .map(|p| {
                let q = p % queues.len();
                if fanout {
                    Route {
                        keys: vec![String::new()],
                        queues: (0..queues.len()).collect(),
                    }
                } else {
                    Route {
                        keys: keys_of[q].clone(),
                        queues: vec![q],
                    }
                }
            })
            .collect();
        Topology {
            exchange,
            kind: a.exchange_type,
            durable: a.persistent,
            queues,
            bindings,
            routes,
            queue_args: a.queue_args.clone(),
        }
    }

    /// The queue consumer `c` reads.
    pub(crate) fn queue_of_consumer(&self, c: u32) -> usize {
        c as usize % self.queues.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    fn topo(args: &[&str]) -> Topology {
        let cli =
            Cli::try_parse_from(std::iter::once("p").chain(args.iter().copied())).expect("parse");
        Topology::new(&cli.run)
    }

    #[test]
    fn default_exchange_routes_by_queue_name() {
        let t = topo(&["-x", "3", "-Q", "2", "--queue-prefix", "q"]);
        assert_eq!(t.exchange, "");
        assert!(t.bindings.is_empty());
        assert_eq!(t.queues, ["q-0", "q-1"]);
        assert_eq!(t.routes[2].keys, ["q-0"]);
        assert_eq!(t.routes[2].queues, [0]);
        assert_eq!(t.routes[1].queues, [1]);
    }

    #[test]
    fn fanout_reaches_every_queue() {
        let t = topo(&["-t", "fanout", "-Q", "10"]);
        assert_eq!(t.exchange, "lagomorph-perf.fanout");
        assert_eq!(t.bindings.len(), 10);
        assert_eq!(t.routes[0].queues.len(), 10);
    }

    #[test]
    fn topic_bindings_each_match_one_key() {
        let t = topo(&["-t", "topic", "--bindings", "1000", "--queue-prefix", "q"]);
        assert_eq!(t.bindings.len(), 1000);
        assert_eq!(t.bindings[7], (0, "q-0.7.*".to_string()));
        assert_eq!(t.routes[0].keys.len(), 1000);
        assert_eq!(t.routes[0].keys[7], "q-0.7.x");
    }

    #[test]
    fn named_direct_binds_queue_names() {
        let t = topo(&["-e", "ex", "-Q", "2", "--queue-prefix", "q"]);
        assert_eq!(t.bindings, [(0, "q-0".to_string()), (1, "q-1".to_string())]);
        assert_eq!(t.queue_of_consumer(3), 1);
    }
}
