//! Criterion benchmarks of the frame codec's hot paths: a small publish (basic.publish +
//! content header + 16-byte body) decoded and encoded, and a 1 MiB message split into
//! frame_max-sized (131072) body frames; and basic.ack decode. Run: `cargo bench --bench codec`.
//!
//! Time is the benchmark thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`) rather than wall
//! time: the build machine is shared, and time spent descheduled is not the codec's.

use std::hint::black_box;
use std::time::Duration;

use bytes::BytesMut;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lagomorph::protocol::Frame;
use lagomorph::protocol::frame;
use lagomorph::protocol::method::{BasicAck, BasicPublish, Method};
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::ShortStr;

const FRAME_MAX: u32 = 131_072;
/// Publish commands per iteration of the small-message benchmarks.
const BATCH: usize = 1000;

/// CPU time of the current thread.
struct OnCpu;

static WALL: WallTime = WallTime;

fn cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

impl Measurement for OnCpu {
    type Intermediate = u64;
    type Value = Duration;

    fn start(&self) -> u64 {
        cpu_nanos()
    }
    fn end(&self, start: u64) -> Duration {
        Duration::from_nanos(cpu_nanos().saturating_sub(start))
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

fn publish() -> Method {
    Method::from(BasicPublish {
        reserved_1: 0,
        exchange: ShortStr::from_static("amq.direct"),
        routing_key: ShortStr::from_static("bench-queue"),
        mandatory: false,
        immediate: false,
    })
}

fn props() -> Properties {
    Properties::from(BasicProperties {
        content_type: Some(ShortStr::from_static("application/octet-stream")),
        delivery_mode: Some(2),
        ..Default::default()
    })
}

fn encode_publish(m: &Method, p: &Properties, body: &[u8], buf: &mut BytesMut) {
    frame::encode_method(1, m, buf);
    frame::encode_content(1, 60, p, body, FRAME_MAX, buf);
}

/// Decodes every frame in `buf`, returning how many there were. Frames are looked at where
/// `decode` returned them: moving a `Frame` out copies all of it (~160 bytes, the largest
/// method's size), which is a noticeable part of decoding a small frame.
fn decode_all(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    loop {
        match frame::decode(buf, FRAME_MAX) {
            Ok(Some(ref f)) => {
                black_box(f);
                n += 1;
            }
            Ok(None) => return n,
            Err(e) => panic!("valid frames: {e}"),
        }
    }
}

/// The same, moving each frame out of the result as `while let Some(f) = decode(..)?` does.
fn decode_all_moved(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(f) = frame::decode(buf, FRAME_MAX).expect("valid frames") {
        black_box(&f);
        n += 1;
    }
    n
}

fn small_publish(c: &mut Criterion<OnCpu>) {
    let (m, p, body) = (publish(), props(), [7u8; 16]);
    let mut wire = BytesMut::new();
    for _ in 0..BATCH {
        encode_publish(&m, &p, &body, &mut wire);
    }
    let mut g = c.benchmark_group("publish_16B");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| assert_eq!(decode_all(buf), 3 * BATCH),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("decode_moved", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| assert_eq!(decode_all_moved(buf), 3 * BATCH),
            BatchSize::LargeInput,
        )
    });
    let mut out = BytesMut::with_capacity(wire.len());
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            for _ in 0..BATCH {
                encode_publish(black_box(&m), black_box(&p), black_box(&body), &mut out);
            }
            black_box(out.len())
        })
    });
    g.finish();
}

/// basic.ack, the other per-message frame: fixed-size, decoded without a `Bytes` handle.
fn ack(c: &mut Criterion<OnCpu>) {
    let mut wire = BytesMut::new();
    for tag in 0..BATCH as u64 {
        let ack = BasicAck {
            delivery_tag: tag,
            multiple: false,
        };
        frame::encode_method(1, &ack.into(), &mut wire);
    }
    let mut g = c.benchmark_group("ack");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.bench_function("decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| assert_eq!(decode_all(buf), BATCH),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn large_message(c: &mut Criterion<OnCpu>) {
    let (m, p) = (publish(), props());
    let body: Vec<u8> = (0..1 << 20).map(|i: u32| i as u8).collect();
    let mut wire = BytesMut::new();
    encode_publish(&m, &p, &body, &mut wire);
    let mut g = c.benchmark_group("publish_1MiB");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                let mut size = 0;
                while let Some(f) = frame::decode(buf, FRAME_MAX).expect("valid frames") {
                    if let Frame::Body { payload, .. } = &f {
                        size += payload.len();
                    }
                }
                assert_eq!(size, 1 << 20);
            },
            BatchSize::LargeInput,
        )
    });
    let mut out = BytesMut::with_capacity(wire.len());
    g.bench_function("encode", |b| {
        b.iter(|| {
            out.clear();
            encode_publish(black_box(&m), black_box(&p), black_box(&body), &mut out);
            black_box(out.len())
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .with_measurement(OnCpu)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = small_publish, ack, large_message
}
criterion_main!(benches);
