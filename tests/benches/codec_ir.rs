//! A callgrind driver for the small-publish decode of `benches/codec.rs`: the same frames
//! (basic.publish + content header + 16-byte body), decoded by a function that is never
//! inlined, so callgrind can count exactly the instructions spent in it. Instruction counts
//! are deterministic, unlike times on a shared machine, so before/after claims rest on them.
//!
//! ```sh
//! cargo bench --bench codec_ir --no-run     # prints the binary's path
//! valgrind --tool=callgrind --toggle-collect='codec_ir::decode_all' \
//!     --callgrind-out-file=/tmp/cg.out target/release/deps/codec_ir-<hash> 100
//! callgrind_annotate /tmp/cg.out | head     # total Ir / (100 * 1000) = per publish
//! ```
//!
//! The argument is the number of rounds of 1000 publishes (default 100); a second argument
//! `moved` decodes with `while let Some(f) = decode(..)` instead (each frame moved out).
//! Run natively (`cargo bench --bench codec_ir`), it prints a rough wall-clock rate.

use std::hint::black_box;
use std::time::Instant;

use bytes::BytesMut;
use lagomorph::protocol::frame;
use lagomorph::protocol::method::{BasicPublish, Method};
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::ShortStr;

const FRAME_MAX: u32 = 131_072;
const BATCH: usize = 1000;

/// Decodes every frame of `buf` where `decode` returned it, as the criterion bench does.
#[inline(never)]
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

/// The same, moving each frame out of the result.
#[inline(never)]
fn decode_all_moved(buf: &mut BytesMut) -> usize {
    let mut n = 0;
    while let Some(f) = frame::decode(buf, FRAME_MAX).expect("valid frames") {
        black_box(&f);
        n += 1;
    }
    n
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100);
    let moved = args.next().is_some_and(|a| a == "moved");

    let m = Method::from(BasicPublish {
        reserved_1: 0,
        exchange: ShortStr::from_static("amq.direct"),
        routing_key: ShortStr::from_static("bench-queue"),
        mandatory: false,
        immediate: false,
    });
    let p = Properties::from(BasicProperties {
        content_type: Some(ShortStr::from_static("application/octet-stream")),
        delivery_mode: Some(2),
        ..Default::default()
    });
    let mut wire = BytesMut::new();
    for _ in 0..BATCH {
        frame::encode_method(1, &m, &mut wire);
        frame::encode_content(1, 60, &p, &[7u8; 16], FRAME_MAX, &mut wire);
    }

    let start = Instant::now();
    let mut frames = 0;
    for _ in 0..rounds {
        let mut buf = BytesMut::from(&wire[..]);
        frames += if moved {
            decode_all_moved(&mut buf)
        } else {
            decode_all(&mut buf)
        };
    }
    let elapsed = start.elapsed();
    assert_eq!(frames, 3 * BATCH * rounds);
    let publishes = (BATCH * rounds) as f64;
    println!(
        "{} publishes ({}), {:.1} ns each wall clock, {:.2} M/s",
        BATCH * rounds,
        if moved { "moved" } else { "in place" },
        elapsed.as_nanos() as f64 / publishes,
        publishes / elapsed.as_secs_f64() / 1e6
    );
}
