//! Allocation counts on the publish hot path, with a counting global allocator: decoding a
//! small publish (method + content header + body frames) allocates nothing per frame (strings
//! and bodies are `Bytes` slices of the read buffer), and encoding into a buffer with room
//! allocates nothing. One test in this binary, so no other test's allocations are counted.

use std::alloc::System;

use bytes::BytesMut;
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::method::{BasicPublish, Method};
use lagomorph::protocol::properties::BasicProperties;
use lagomorph::protocol::types::ShortStr;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn publish_path_does_not_allocate_per_frame() {
    let m = Method::from(BasicPublish {
        reserved_1: 0,
        exchange: ShortStr::from_static("amq.direct"),
        routing_key: ShortStr::from_static("a-routing-key"),
        mandatory: true,
        immediate: false,
    });
    let p = BasicProperties {
        content_type: Some(ShortStr::from_static("text/plain")),
        message_id: Some(ShortStr::from_static("id-1")),
        delivery_mode: Some(2),
        ..Default::default()
    };
    let body = [1u8; 16];
    const N: usize = 500;

    // Warm up, so one-off allocations (the test harness's, lazy statics) are not counted.
    let mut scratch = BytesMut::with_capacity(4096);
    frame::encode_method(1, &m, &mut scratch);
    frame::encode_content(1, 60, &p, &body, 131_072, &mut scratch);
    let _ = frame::decode(&mut scratch, 131_072);

    // Per-frame allocations would show as N or more; allow a few unrelated ones.
    const SLACK: usize = 8;
    let mut wire = BytesMut::with_capacity(N * 128);
    let region = Region::new(GLOBAL);
    for _ in 0..N {
        frame::encode_method(1, &m, &mut wire);
        frame::encode_content(1, 60, &p, &body, 131_072, &mut wire);
    }
    let encoded = region.change();
    assert!(
        encoded.allocations < SLACK,
        "encoding into room: {encoded:?}"
    );

    let mut buf = BytesMut::from(&wire[..]);
    let region = Region::new(GLOBAL);
    let mut frames = 0;
    let mut publishes = 0;
    while let Some(f) = frame::decode(&mut buf, 131_072).expect("valid") {
        if let Frame::Method {
            method: Method::BasicPublish(ref publish),
            ..
        } = f
        {
            assert_eq!(publish.routing_key, "a-routing-key");
            publishes += 1;
        }
        frames += 1;
    }
    let decoded = region.change();
    eprintln!("encode {N} publishes: {encoded:?}\ndecode {frames} frames: {decoded:?}");
    assert_eq!((frames, publishes), (3 * N, N));
    // The first split_to turns the read buffer into a shared one: one allocation per buffer,
    // none per frame.
    assert!(
        decoded.allocations < SLACK,
        "{} allocations for {frames} frames: {decoded:?}",
        decoded.allocations
    );
}
