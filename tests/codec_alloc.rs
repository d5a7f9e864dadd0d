//! Allocation counts on the publish hot path, with a counting global allocator: decoding a
//! small publish (method + content header + body frames) allocates nothing per frame (short
//! strings and small property lists are copied inline, bodies and longer values are `Bytes`
//! slices of the read buffer), reading the properties the broker needs on every publish
//! allocates nothing, and encoding into a buffer with room allocates nothing. One test in this
//! binary, so no other test's allocations are counted.

use std::alloc::System;

use bytes::BytesMut;
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::method::{BasicPublish, Method};
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::{FieldTable, FieldValue, ShortStr};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Publishes of each shape the decoder treats differently.
fn cases() -> Vec<(&'static str, Method, Properties)> {
    let publish = |rk: &str| {
        Method::from(BasicPublish {
            reserved_1: 0,
            exchange: ShortStr::from_static("amq.direct"),
            routing_key: ShortStr::try_from(rk).expect("short"),
            mandatory: true,
            immediate: false,
        })
    };
    let small = Properties::from(BasicProperties {
        content_type: Some(ShortStr::from_static("text/plain")),
        message_id: Some(ShortStr::from_static("id-1")),
        delivery_mode: Some(2),
        ..Default::default()
    });
    let large = Properties::from(BasicProperties {
        content_type: Some(ShortStr::from_static("application/json")),
        headers: Some(FieldTable(vec![(
            ShortStr::from_static("x-trace-id"),
            FieldValue::LongStr("4bf92f3577b34da6a3ce929d0e0e4736".into()),
        )])),
        delivery_mode: Some(2),
        user_id: Some(ShortStr::from_static("guest")),
        ..Default::default()
    });
    assert!(small.len() <= lagomorph::protocol::properties::PROPERTIES_INLINE);
    assert!(large.len() > lagomorph::protocol::properties::PROPERTIES_INLINE);
    vec![
        (
            "short names, small properties",
            publish("a-routing-key"),
            small,
        ),
        (
            "short names, large properties",
            publish("a-routing-key"),
            large,
        ),
        // Longer than a ShortStr holds inline: decoded again from a `Bytes` of the frame.
        (
            "long routing key",
            publish(&"r".repeat(100)),
            Properties::EMPTY,
        ),
    ]
}

#[test]
fn publish_path_does_not_allocate_per_frame() {
    let body = [1u8; 16];
    const N: usize = 500;
    // Per-frame allocations would show as N or more; allow a few unrelated ones.
    const SLACK: usize = 8;

    for (what, m, p) in cases() {
        // Warm up, so one-off allocations (the test harness's, lazy statics) are not counted.
        let mut scratch = BytesMut::with_capacity(4096);
        frame::encode_method(1, &m, &mut scratch);
        frame::encode_content(1, 60, &p, &body, 131_072, &mut scratch);
        let _ = frame::decode(&mut scratch, 131_072);

        let mut wire = BytesMut::with_capacity(N * 512);
        let region = Region::new(GLOBAL);
        for _ in 0..N {
            frame::encode_method(1, &m, &mut wire);
            frame::encode_content(1, 60, &p, &body, 131_072, &mut wire);
        }
        let encoded = region.change();
        assert!(
            encoded.allocations < SLACK,
            "{what}: encoding into room: {encoded:?}"
        );

        let mut buf = BytesMut::from(&wire[..]);
        let region = Region::new(GLOBAL);
        let (mut frames, mut publishes, mut persistent) = (0, 0, 0);
        while let Some(f) = frame::decode(&mut buf, 131_072).expect("valid") {
            match f {
                Frame::Method {
                    method: Method::BasicPublish(ref publish),
                    ..
                } => {
                    assert_eq!(publish.exchange, "amq.direct");
                    publishes += 1;
                }
                // What the broker reads on every publish, straight from the bytes.
                Frame::Header { ref header, .. } => {
                    assert!(header.properties.user_id().is_none_or(|u| u == "guest"));
                    persistent += usize::from(header.properties.is_persistent());
                }
                _ => {}
            }
            frames += 1;
        }
        let decoded = region.change();
        eprintln!("{what}: encode {N} publishes: {encoded:?}\ndecode {frames} frames: {decoded:?}");
        assert_eq!((frames, publishes), (3 * N, N), "{what}");
        assert_eq!(persistent, if p.is_persistent() { N } else { 0 });
        // The first split_to turns the read buffer into a shared one: one allocation per
        // buffer, none per frame.
        assert!(
            decoded.allocations < SLACK,
            "{what}: {} allocations for {frames} frames: {decoded:?}",
            decoded.allocations
        );
    }
}
