//! Storage hot paths: put + flush (group commit) in batches, publish + deliver + ack with a
//! group commit every 100 messages (what a confirming publisher and an acking consumer cost the
//! store), put/remove between flushes, and read-ahead windows of 1000, on the sled store (on
//! disk, under cargo's target tmp dir) and, for scale, the in-memory store.
//!
//! Run: `cargo bench --bench storage`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lagomorph::storage::{
    MemoryStore, MessageRecord, PutOutcome, QueueStore, SledStore, Store, StoreError,
};

const CACHE: u64 = 64 << 20;

fn message() -> MessageRecord {
    MessageRecord {
        exchange: "amq.direct".into(),
        routing_key: "bench".into(),
        properties: Bytes::from_static(&[0x10, 0x00, 2]),
        meta: Bytes::new(),
        body: Bytes::from_static(&[0xab; 16]),
    }
}

fn sled_store() -> (tempfile::TempDir, SledStore) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir");
    let store = SledStore::open(dir.path(), CACHE).expect("open store");
    (dir, store)
}

/// Puts as the broker does: a full chunk is written right after the put.
fn put(q: &dyn QueueStore, id: u64, m: &MessageRecord) -> Result<(), StoreError> {
    if q.put(id, m.view())? == PutOutcome::WriteDue {
        q.write_sealed()?;
    }
    Ok(())
}

/// put `batch` 16-byte messages then one flush; the batch is removed afterwards (and that
/// flushed), untimed, so the store stays the same size across iterations.
fn put_flush(c: &mut Criterion) {
    let (_dir, store) = sled_store();
    let q = store.open_queue("/", "put_flush").expect("open");
    let m = message();
    let mut next = 0u64;
    let mut group = c.benchmark_group("sled/put_flush");
    group.measurement_time(Duration::from_secs(5));
    for batch in [1u64, 100, 1000] {
        group.throughput(Throughput::Elements(batch));
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let first = next;
                    let start = Instant::now();
                    for _ in 0..batch {
                        put(&*q, next, &m).expect("put");
                        next += 1;
                    }
                    store.flush().expect("flush");
                    timed += start.elapsed();
                    for id in first..next {
                        q.remove(id).expect("remove");
                    }
                    store.flush().expect("flush");
                }
                timed
            });
        });
    }
    group.finish();
}

/// Publish, deliver (mark) and ack each message, with a flush every 100 messages: everything
/// the store does for a persistent message that a consumer takes about as fast as it comes,
/// group commits included. The ack of message `n` comes 50 messages after its publish, so half
/// the messages of a batch are acked before the flush that would write them and half after.
fn publish_ack_flush(c: &mut Criterion) {
    let (_dir, store) = sled_store();
    let q = store.open_queue("/", "publish_ack_flush").expect("open");
    let m = message();
    let mut next = 0u64;
    let mut group = c.benchmark_group("sled/publish_ack_flush_100");
    group.throughput(Throughput::Elements(100));
    group.bench_function("16B", |b| {
        b.iter(|| {
            for _ in 0..100 {
                put(&*q, next, &m).expect("put");
                if let Some(acked) = next.checked_sub(50) {
                    q.mark_delivered(acked).expect("mark");
                    q.remove(acked).expect("remove");
                }
                next += 1;
            }
            store.flush().expect("flush");
        });
    });
    group.finish();
}

/// Publish + ack with no flush in between: the per-message cost the broker pays between group
/// commits. Also with a delivery mark in between (publish, deliver, ack).
fn put_remove(c: &mut Criterion) {
    let (_dir, sled) = sled_store();
    let memory = MemoryStore::new();
    let stores: [(&str, &dyn Store); 2] = [("sled", &sled), ("memory", &memory)];
    let m = message();
    let mut group = c.benchmark_group("put_remove");
    group.throughput(Throughput::Elements(1));
    for (name, store) in stores {
        let q = store.open_queue("/", "put_remove").expect("open");
        let mut next = 0u64;
        group.bench_function(BenchmarkId::new("put_remove", name), |b| {
            b.iter(|| {
                put(&*q, next, &m).expect("put");
                q.remove(black_box(next)).expect("remove");
                next += 1;
            });
        });
        group.bench_function(BenchmarkId::new("put_mark_remove", name), |b| {
            b.iter(|| {
                put(&*q, next, &m).expect("put");
                q.mark_delivered(next).expect("mark");
                q.remove(black_box(next)).expect("remove");
                next += 1;
            });
        });
        // With a backlog behind the head, as a queue that is being drained while published to.
        let backlog = store.open_queue("/", "backlog").expect("open");
        fill(&*backlog, 0, 100_000);
        let mut head = 0u64;
        let mut tail = 100_000u64;
        group.bench_function(
            BenchmarkId::new("put_remove_with_100k_backlog", name),
            |b| {
                b.iter(|| {
                    put(&*backlog, tail, &m).expect("put");
                    backlog.remove(head).expect("remove");
                    tail += 1;
                    head += 1;
                });
            },
        );
    }
    group.finish();
    sled.flush().expect("flush");
}

fn fill(q: &dyn QueueStore, from: u64, n: u64) {
    let m = message();
    for id in from..from + n {
        put(q, id, &m).expect("put");
    }
}

/// read(from, 1000) windows through a 100k backlog, as a queue paging messages back in.
fn read_window(c: &mut Criterion) {
    let (_dir, sled) = sled_store();
    let memory = MemoryStore::new();
    let stores: [(&str, &dyn Store); 2] = [("sled", &sled), ("memory", &memory)];
    let mut group = c.benchmark_group("read_1000");
    group.throughput(Throughput::Elements(1000));
    for (name, store) in stores {
        let q: Arc<dyn QueueStore> = store.open_queue("/", "read").expect("open");
        fill(&*q, 0, 100_000);
        for id in (0..100_000).step_by(3) {
            q.mark_delivered(id).expect("mark");
        }
        store.flush().expect("flush");
        let mut from = 0u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                let batch = q.read(from, 1000).expect("read");
                assert_eq!(batch.len(), 1000);
                from = (from + 1000) % 99_000;
                black_box(batch)
            });
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    put_flush,
    publish_ack_flush,
    put_remove,
    read_window
);
criterion_main!(benches);
