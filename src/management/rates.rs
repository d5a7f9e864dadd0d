//! Message rates. The hot path only bumps relaxed atomic counters (per queue in
//! `broker::queue::QueueStats`, broker-wide in `broker::BrokerStats`); a sampler task reads them
//! every few seconds (5 s by default) and keeps the per-second rate since the previous sample,
//! per queue and overall. Nothing here touches a queue's lock except [`crate::broker::Queue::counts`].
//!
//! Overall totals survive queue deletion: when a queue disappears between two samples, its last
//! counters are added to a retired total, so `deliver_get` and friends never go backwards.

use crate::broker::{Broker, Queue};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Counter values at one instant. The first five only grow; the last three are gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    /// Messages published (into the queue, or by clients for the overall figure).
    pub(crate) publish: u64,
    /// Deliveries to consumers plus basic.get answers.
    pub(crate) deliver_get: u64,
    /// Acknowledgements.
    pub(crate) ack: u64,
    /// Redeliveries.
    pub(crate) redeliver: u64,
    /// Publisher confirms sent (overall only).
    pub(crate) confirm: u64,
    /// Unroutable mandatory messages returned (overall only).
    pub(crate) returned: u64,
    /// Unroutable messages dropped (overall only).
    pub(crate) dropped: u64,
    /// Messages dead-lettered, for any reason (overall only).
    pub(crate) dead_lettered: u64,
    /// Ready plus unacked messages.
    pub(crate) messages: u64,
    /// Ready messages.
    pub(crate) ready: u64,
    /// Delivered, unacknowledged messages.
    pub(crate) unacked: u64,
}

impl Counters {
    /// A queue's counters and counts now.
    pub(crate) fn of_queue(q: &Queue) -> Counters {
        Self::with_counts(q, q.counts())
    }

    /// A queue's counters with counts already read by [`Queue::counts`] (one lock per answer).
    pub(crate) fn with_counts(q: &Queue, counts: crate::broker::queue::Counts) -> Counters {
        let (ready, unacked) = (counts.ready, counts.unacked);
        let s = &q.stats;
        Counters {
            publish: s.published.load(Ordering::Relaxed),
            deliver_get: s.delivered.load(Ordering::Relaxed),
            ack: s.acked.load(Ordering::Relaxed),
            redeliver: s.redelivered.load(Ordering::Relaxed),
            confirm: 0,
            returned: 0,
            dropped: 0,
            dead_lettered: 0,
            messages: (ready + unacked) as u64,
            ready: ready as u64,
            unacked: unacked as u64,
        }
    }

    /// Adds another queue's counters (sums over queues).
    pub(crate) fn add(&mut self, o: &Counters) {
        self.publish += o.publish;
        self.deliver_get += o.deliver_get;
        self.ack += o.ack;
        self.redeliver += o.redeliver;
        self.confirm += o.confirm;
        self.returned += o.returned;
        self.dropped += o.dropped;
        self.dead_lettered += o.dead_lettered;
        self.messages += o.messages;
        self.ready += o.ready;
        self.unacked += o.unacked;
    }

    /// Only the growing counters (what a deleted queue leaves to the overall totals).
    fn monotonic(&self) -> Counters {
        Counters {
            messages: 0,
            ready: 0,
            unacked: 0,
            ..*self
        }
    }
}

/// Messages dead-lettered so far, all reasons together.
pub(crate) fn dead_lettered(stats: &crate::broker::BrokerStats) -> u64 {
    stats
        .dead_lettered
        .iter()
        .map(|n| n.load(Ordering::Relaxed))
        .sum()
}

/// Per-second rates between two samples. Gauge rates may be negative (a draining queue).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct RateSet {
    /// Publishes per second.
    pub(crate) publish: f64,
    /// Deliveries and gets per second.
    pub(crate) deliver_get: f64,
    /// Acks per second.
    pub(crate) ack: f64,
    /// Redeliveries per second.
    pub(crate) redeliver: f64,
    /// Confirms per second.
    pub(crate) confirm: f64,
    /// Returns of unroutable mandatory messages per second.
    pub(crate) returned: f64,
    /// Unroutable messages dropped per second.
    pub(crate) dropped: f64,
    /// Dead-lettered messages per second.
    pub(crate) dead_lettered: f64,
    /// Change of `messages` per second.
    pub(crate) messages: f64,
    /// Change of `ready` per second.
    pub(crate) ready: f64,
    /// Change of `unacked` per second.
    pub(crate) unacked: f64,
}

impl RateSet {
    /// The rates from `prev` to `cur` over `secs` seconds.
    pub(crate) fn between(prev: &Counters, cur: &Counters, secs: f64) -> RateSet {
        if secs <= 0.0 {
            return RateSet::default();
        }
        let up = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
        let delta = |a: u64, b: u64| (b as f64 - a as f64) / secs;
        RateSet {
            publish: up(prev.publish, cur.publish),
            deliver_get: up(prev.deliver_get, cur.deliver_get),
            ack: up(prev.ack, cur.ack),
            redeliver: up(prev.redeliver, cur.redeliver),
            confirm: up(prev.confirm, cur.confirm),
            returned: up(prev.returned, cur.returned),
            dropped: up(prev.dropped, cur.dropped),
            dead_lettered: up(prev.dead_lettered, cur.dead_lettered),
            messages: delta(prev.messages, cur.messages),
            ready: delta(prev.ready, cur.ready),
            unacked: delta(prev.unacked, cur.unacked),
        }
    }

    /// Adds another set (per-vhost sums).
    pub(crate) fn add(&mut self, o: &RateSet) {
        self.publish += o.publish;
        self.deliver_get += o.deliver_get;
        self.ack += o.ack;
        self.redeliver += o.redeliver;
        self.confirm += o.confirm;
        self.returned += o.returned;
        self.dropped += o.dropped;
        self.dead_lettered += o.dead_lettered;
        self.messages += o.messages;
        self.ready += o.ready;
        self.unacked += o.unacked;
    }
}

#[derive(Debug)]
struct Sampled {
    /// The queue object, so a queue deleted and re-declared under the same name between
    /// samples is seen as a new queue. Weak: it does not keep the queue, but it keeps its
    /// address from being reused while we compare.
    queue: Weak<Queue>,
    last: Counters,
    rate: RateSet,
}

/// The rates of one vhost's queues at the last sample, shared by every listing until the next.
pub(crate) type VhostRates = Arc<HashMap<Arc<str>, RateSet>>;

#[derive(Debug, Default)]
struct Inner {
    at: Option<Instant>,
    /// vhost → queue name → sample. Keys share the queues' own names (no copies).
    queues: HashMap<Arc<str>, HashMap<Arc<str>, Sampled>>,
    /// vhost → queue name → rate, rebuilt at each sample, so a listing of 100,000 queues
    /// takes an `Arc` instead of copying a map.
    snapshot: HashMap<Arc<str>, VhostRates>,
    /// Counters of queues that were deleted.
    retired: Counters,
    overall_last: Counters,
    overall_rate: RateSet,
}

/// The sampled rates, shared by the sampler task and the handlers.
#[derive(Debug, Default)]
pub(crate) struct Rates {
    inner: Mutex<Inner>,
}

impl Rates {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a sample of every queue and the broker-wide counters at `now`.
    pub(crate) fn sample(&self, broker: &Broker, now: Instant) {
        // Read every counter before taking our lock: queue locks are never nested in it.
        let mut current: Vec<(Arc<str>, Arc<Queue>, Counters)> = Vec::new();
        for vh in broker.vhosts() {
            for q in vh.queues() {
                let c = Counters::of_queue(&q);
                current.push((Arc::clone(&vh.name), q, c));
            }
        }
        let stats = broker.stats();
        let published = stats.published.load(Ordering::Relaxed);
        let confirmed = stats.confirmed.load(Ordering::Relaxed);
        let returned = stats.returned.load(Ordering::Relaxed);
        let unroutable = stats.unroutable.load(Ordering::Relaxed);

        let mut inner = self.lock();
        let secs = inner
            .at
            .map_or(0.0, |at| now.saturating_duration_since(at).as_secs_f64());
        let old = std::mem::take(&mut inner.queues);
        let mut fresh: HashMap<Arc<str>, HashMap<Arc<str>, Sampled>> = HashMap::new();
        let mut live = Counters::default();
        let mut retired = inner.retired;
        for (vhost, q, cur) in current {
            let prev = match old.get(&vhost).and_then(|m| m.get(&q.name)) {
                Some(p) if std::ptr::eq(p.queue.as_ptr(), Arc::as_ptr(&q)) => Some(p),
                Some(replaced) => {
                    retired.add(&replaced.last.monotonic());
                    None
                }
                None => None,
            };
            let rate =
                prev.map_or_else(RateSet::default, |p| RateSet::between(&p.last, &cur, secs));
            live.add(&cur);
            fresh.entry(vhost).or_default().insert(
                Arc::clone(&q.name),
                Sampled {
                    queue: Arc::downgrade(&q),
                    last: cur,
                    rate,
                },
            );
        }
        // Old samples with no new one under their name were deleted since the last sample
        // (replaced ones were retired above).
        for (vhost, samples) in &old {
            let now_there = fresh.get(vhost);
            for (name, gone) in samples {
                if now_there.and_then(|m| m.get(name)).is_none() {
                    retired.add(&gone.last.monotonic());
                }
            }
        }
        let mut overall = live;
        overall.add(&retired);
        overall.publish = published;
        overall.confirm = confirmed;
        overall.returned = returned;
        overall.dropped = unroutable.saturating_sub(returned);
        overall.dead_lettered = dead_lettered(stats);
        if inner.at.is_some() {
            inner.overall_rate = RateSet::between(&inner.overall_last, &overall, secs);
        }
        inner.overall_last = overall;
        inner.retired = retired;
        inner.snapshot = fresh
            .iter()
            .map(|(vhost, m)| {
                let rates = m.iter().map(|(k, s)| (Arc::clone(k), s.rate)).collect();
                (Arc::clone(vhost), Arc::new(rates))
            })
            .collect();
        inner.queues = fresh;
        inner.at = Some(now);
    }

    /// The rates of one queue (zero until it has been sampled twice).
    pub(crate) fn queue(&self, vhost: &str, name: &str) -> RateSet {
        self.lock()
            .snapshot
            .get(vhost)
            .and_then(|m| m.get(name))
            .copied()
            .unwrap_or_default()
    }

    /// The rates of every queue of `vhost` at the last sample (a shared snapshot).
    pub(crate) fn vhost_queues(&self, vhost: &str) -> VhostRates {
        self.lock().snapshot.get(vhost).cloned().unwrap_or_default()
    }

    /// Counters of deleted queues, which overall totals add to the live queues' counters.
    pub(crate) fn retired(&self) -> Counters {
        self.lock().retired
    }

    /// Overall rates.
    pub(crate) fn overall(&self) -> RateSet {
        self.lock().overall_rate
    }

    /// Samples every `interval` until `token` is cancelled.
    pub(crate) async fn run(
        self: Arc<Self>,
        broker: Broker,
        interval: Duration,
        token: CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = tick.tick() => {
                    let (rates, broker) = (Arc::clone(&self), broker.clone());
                    // Sampling locks every queue briefly; keep it off the async workers.
                    let now = Instant::now();
                    if tokio::task::spawn_blocking(move || rates.sample(&broker, now))
                        .await
                        .is_err()
                    {
                        tracing::error!("rate sampler panicked");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::vhost::QueueSpec;
    use crate::broker::{BrokerOptions, ConnId, PublishRequest};
    use crate::protocol::types::ShortStr;
    use crate::storage::MemoryStore;

    fn publish(broker: &Broker, queue: &str, n: usize) {
        let vh = broker.vhost("/").expect("vhost");
        for _ in 0..n {
            let req = PublishRequest {
                exchange: ShortStr::EMPTY,
                routing_key: ShortStr::try_from(queue).expect("name"),
                properties: Default::default(),
                body: bytes::Bytes::from_static(b"x"),
                user: "guest",
                grant: &crate::broker::Grant::all("guest", "/"),
                awaited: None,
            };
            vh.publish(req, crate::clock::now()).expect("publish");
        }
    }

    #[test]
    fn rates_are_deltas_per_second_and_totals_survive_deletion() {
        let broker = Broker::new(Arc::new(MemoryStore::new()), BrokerOptions::default());
        let vh = broker.vhost("/").expect("vhost");
        let spec = QueueSpec {
            name: "q".into(),
            ..Default::default()
        };
        vh.declare_queue(&spec, false, ConnId(0), crate::clock::now())
            .expect("declare");
        let rates = Rates::default();
        let t0 = Instant::now();
        rates.sample(&broker, t0);
        assert_eq!(rates.queue("/", "q"), RateSet::default());
        publish(&broker, "q", 10);
        let q = vh.queue("q").expect("queue");
        let _ = vh.get(&q, true, crate::clock::now()).expect("get");
        rates.sample(&broker, t0 + Duration::from_secs(5));
        let r = rates.queue("/", "q");
        assert_eq!(r.publish, 2.0);
        assert_eq!(r.deliver_get, 0.2);
        assert_eq!(r.ready, 9.0 / 5.0);
        assert_eq!(rates.overall().deliver_get, 0.2);

        // Delete and re-declare under the same name: a new queue, old counts retired.
        vh.delete_queue("q", false, false, ConnId(0))
            .expect("delete");
        vh.declare_queue(&spec, false, ConnId(0), crate::clock::now())
            .expect("declare");
        rates.sample(&broker, t0 + Duration::from_secs(10));
        assert_eq!(rates.queue("/", "q"), RateSet::default());
        assert_eq!(rates.retired().publish, 10);
        assert_eq!(rates.retired().deliver_get, 1);
        assert_eq!(rates.overall().deliver_get, 0.0);
    }
}
