//! Fuzzes `frame::decode` with arbitrary bytes: it must never panic, and every frame it
//! accepts must re-encode to bytes that decode to a frame which re-encodes identically
//! (compared as bytes, so NaN floats in field tables don't break equality).
#![no_main]

use bytes::BytesMut;
use lagomorph::protocol::frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes pick frame_max, so the size check is exercised at many limits.
    let (frame_max, input) = match data {
        [a, b, rest @ ..] => (u32::from(u16::from_be_bytes([*a, *b])) * 4, rest),
        _ => (frame::FRAME_MIN_SIZE, data),
    };
    let mut header = BytesMut::from(input);
    let _ = frame::decode_protocol_header(&mut header);

    let mut buf = BytesMut::from(input);
    // Each decoded frame consumes at least 8 bytes, so this loop is bounded by the input.
    while let Ok(Some(f)) = frame::decode(&mut buf, frame_max) {
        let mut once = BytesMut::new();
        frame::encode(&f, &mut once);
        let mut again = once.clone();
        let g = frame::decode(&mut again, 0)
            .expect("re-encoded frame decodes")
            .expect("re-encoded frame is complete");
        assert!(again.is_empty(), "re-encoded frame decodes exactly");
        let mut twice = BytesMut::new();
        frame::encode(&g, &mut twice);
        assert_eq!(once, twice, "encoding is stable");
    }
});
