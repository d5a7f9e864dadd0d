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
//! `moved` decodes with `while let Some(f) = decode(..)` instead (each frame moved out), and
//! `method`, `header` or `body` decodes 1000 frames of that kind only, to see where time goes.
//! Run natively (`cargo bench --bench codec_ir`), it prints a rough rate in thread CPU time
//! (the best of five runs of the rounds; use `benches/codec.rs` for figures with statistics).

use std::hint::black_box;

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
    let mode = args.next().unwrap_or_default();
    let moved = mode == "moved";

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
        let mut one = BytesMut::new();
        frame::encode_method(1, &m, &mut one);
        let method_len = one.len();
        frame::encode_content(1, 60, &p, &[7u8; 16], FRAME_MAX, &mut one);
        let header_len = 8 + 12 + p.len();
        match mode.as_str() {
            "method" => wire.extend_from_slice(&one[..method_len]),
            "header" => wire.extend_from_slice(&one[method_len..method_len + header_len]),
            "body" => wire.extend_from_slice(&one[method_len + header_len..]),
            _ => wire.extend_from_slice(&one),
        }
    }
    let per_round = if matches!(mode.as_str(), "method" | "header" | "body") {
        BATCH
    } else {
        3 * BATCH
    };

    let mut best = u64::MAX;
    // Under callgrind (100 rounds or fewer) one untimed run: its counts do not vary, and
    // rustix's vDSO lookup does not work under valgrind.
    let timed = rounds > 100;
    let runs = if timed { 5 } else { 1 };
    let now = || if timed { cpu_nanos() } else { 0 };
    for _ in 0..runs {
        let mut on_cpu = 0;
        let mut frames = 0;
        for _ in 0..rounds {
            let mut buf = BytesMut::from(&wire[..]);
            let start = now();
            frames += if moved {
                decode_all_moved(&mut buf)
            } else {
                decode_all(&mut buf)
            };
            on_cpu += now().saturating_sub(start);
        }
        assert_eq!(frames, per_round * rounds);
        best = best.min(on_cpu);
    }
    let publishes = (BATCH * rounds) as f64;
    if !timed {
        println!("{} publishes decoded", BATCH * rounds);
        return;
    }
    println!(
        "{} publishes ({}), {:.1} ns each on CPU (best of {runs}), {:.2} M/s",
        BATCH * rounds,
        if mode.is_empty() { "in place" } else { &mode },
        best as f64 / publishes,
        publishes / (best as f64 / 1e9) / 1e6
    );
}

/// CPU time of the current thread, as `benches/codec.rs` measures.
fn cpu_nanos() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}
