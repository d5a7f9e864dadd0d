//! Fuzzes `frame::decode` with arbitrary bytes: it must never panic, and every frame it
//! accepts must re-encode to bytes that decode to a frame which re-encodes identically
//! (compared as bytes, so NaN floats in field tables don't break equality).
//!
//! Content headers keep their property list encoded, checked at decode time by a walk that
//! builds nothing; so for every header accepted, the full decode of those bytes must succeed
//! and agree with what `Properties` answers from the bytes alone.
#![no_main]

use bytes::{Bytes, BytesMut};
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::properties::{decode_properties, encode_properties};
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
        if let Frame::Header { header, .. } = &f {
            let p = &header.properties;
            let full = decode_properties(&Bytes::copy_from_slice(p.as_bytes()))
                .expect("a validated property list decodes");
            let mut a = BytesMut::new();
            encode_properties(&full, &mut a);
            let mut b = BytesMut::new();
            encode_properties(&p.decode(), &mut b);
            assert_eq!(a, b, "Properties::decode agrees with the full decode");
            assert_eq!(p.delivery_mode(), full.delivery_mode);
            assert_eq!(p.user_id(), full.user_id.as_deref());
            assert_eq!(p.headers().is_some(), full.headers.is_some());
        }
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
