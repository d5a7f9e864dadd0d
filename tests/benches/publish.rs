//! The broker's publish call for a read batch of small messages to one queue with a consumer
//! (`broker::publish`): one `VHost::publish` per message (a queue lock, a store pass and two
//! name lookups each) against `route_publish` per message with the channel's `NameCache`, then
//! one `push_batch` (one queue lock for the batch), as the session does since the batching.
//!
//! `cargo bench --bench publish`. One thread, so it shows what a message costs without the
//! contention a consumer's connection on the other core adds (which the batch removes too:
//! see the scenario 2 figures in the commit that introduced it).

use criterion::{Criterion, criterion_group, criterion_main};
use lagomorph::broker::consumer::{ConnId, ConsumerHandle, Credit, Outbound, TRANSIT_LIMIT};
use lagomorph::broker::vhost::QueueSpec;
use lagomorph::broker::{
    Broker, BrokerOptions, Grant, NameCache, Now, Prepared, PublishRequest, Queue, VHost,
};
use lagomorph::protocol::properties::Properties;
use lagomorph::protocol::types::ShortStr;
use lagomorph::storage::MemoryStore;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages per read batch (about what a 64 KiB read of 16 B publishes holds).
const BATCH: usize = 512;

struct Setup {
    _broker: Broker,
    vh: Arc<VHost>,
    grant: Grant,
    key: ShortStr,
    rx: mpsc::UnboundedReceiver<Outbound>,
    transit: Arc<Credit>,
    now: Now,
}

fn setup() -> Setup {
    let broker = Broker::new(Arc::new(MemoryStore::new()), BrokerOptions::default());
    let vh = broker.vhost("/").expect("default vhost");
    let now = Now::new(std::time::Instant::now(), 1_700_000_000_000);
    let spec = QueueSpec {
        name: "bench".into(),
        ..Default::default()
    };
    let q: Arc<Queue> = vh
        .declare_queue(&spec, false, ConnId(0), now)
        .expect("declare");
    let (tx, rx) = mpsc::unbounded_channel();
    let transit = Credit::new(TRANSIT_LIMIT);
    let handle = ConsumerHandle {
        tag: ShortStr::from_static("c"),
        channel: 1,
        conn: ConnId(0),
        no_ack: true,
        exclusive: false,
        priority: 0,
        browse: false,
        prefetch: Credit::new(0),
        channel_credit: Credit::new(0),
        transit: Arc::clone(&transit),
        mailbox: tx,
    };
    vh.consume(&q, handle, now).expect("consume");
    Setup {
        _broker: broker,
        vh,
        grant: Grant::all("guest", "/"),
        key: ShortStr::from_static("bench"),
        rx,
        transit,
        now,
    }
}

impl Setup {
    fn request(&self, body: &bytes::Bytes) -> PublishRequest<'_> {
        PublishRequest {
            exchange: ShortStr::EMPTY,
            routing_key: self.key.clone(),
            properties: Properties::default(),
            body: body.clone(),
            user: "guest",
            grant: &self.grant,
            awaited: None,
        }
    }

    /// Takes the deliveries as the consumer's connection would, giving its credit back.
    fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Ok(m) = self.rx.try_recv() {
            if matches!(m, Outbound::Deliver(_)) {
                n += 1;
            }
        }
        self.transit.release(u32::try_from(n).unwrap_or(u32::MAX));
        n
    }
}

fn publish(c: &mut Criterion) {
    let body = bytes::Bytes::from_static(&[7u8; 16]);
    let mut g = c.benchmark_group("publish_512_to_one_queue");
    g.throughput(criterion::Throughput::Elements(BATCH as u64));

    let mut s = setup();
    g.bench_function("one_at_a_time", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                let out = s.vh.publish(s.request(&body), s.now).expect("publish");
                assert!(out.routed);
            }
            assert_eq!(s.drain(), BATCH);
        })
    });

    let mut s = setup();
    let mut names = NameCache::default();
    let mut batch = Vec::with_capacity(BATCH);
    let mut pushed = Vec::with_capacity(BATCH);
    g.bench_function("batched", |b| {
        b.iter(|| {
            for _ in 0..BATCH {
                match s
                    .vh
                    .route_publish(s.request(&body), None, &mut names, s.now)
                {
                    Ok(Prepared::Routed(r)) => batch.push(r),
                    other => panic!("not routed: {other:?}"),
                }
            }
            s.vh.push_batch(&batch, s.now, &mut pushed).expect("push");
            batch.clear();
            assert_eq!(s.drain(), BATCH);
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = publish
}
criterion_main!(benches);
