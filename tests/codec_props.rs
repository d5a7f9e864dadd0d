//! Property tests of the wire codec: `decode(encode(x)) == x` for every method, for arbitrary
//! basic properties and nested field tables, and decoding never panics on arbitrary or
//! damaged bytes.

mod codec_support;

use bytes::{Bytes, BytesMut};
use codec_support::methods::method_strategies;
use codec_support::{field_table, properties};
use lagomorph::protocol::FrameError;
use lagomorph::protocol::frame::{self, ContentHeader, FRAME_OVERHEAD, Frame};
use lagomorph::protocol::method::{METHODS, Method};
use lagomorph::protocol::properties::{
    BasicProperties, Properties, decode_properties, encode_properties,
};
use lagomorph::protocol::types::{decode_table, encode_table};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Any method at all.
fn any_method() -> impl Strategy<Value = Method> {
    proptest::strategy::Union::new(method_strategies(false).into_iter().map(|(_, s)| s))
}

/// Runs `check` on `cases` values of every method's strategy, so each method is covered.
fn for_every_method(
    canonical: bool,
    cases: u32,
    check: impl Fn(&Method) -> Result<(), TestCaseError>,
) {
    let strategies = method_strategies(canonical);
    assert_eq!(strategies.len(), METHODS.len());
    for (name, strategy) in strategies {
        let mut runner = TestRunner::new(Config::with_cases(cases));
        if let Err(e) = runner.run(&strategy, |m| {
            prop_assert_eq!(m.name(), name);
            check(&m)
        }) {
            panic!("{name}: {e}");
        }
    }
}

#[test]
fn every_method_round_trips() {
    for_every_method(false, 48, |m| {
        let mut buf = BytesMut::new();
        m.encode(&mut buf);
        prop_assert_eq!(buf.len(), m.encoded_len());
        let payload = buf.freeze();
        prop_assert_eq!(&Method::decode(&payload)?, m);

        // Every strict prefix is an error, never a panic or a different method.
        for cut in [
            0,
            1,
            3,
            4,
            payload.len() / 2,
            payload.len().saturating_sub(1),
        ] {
            if cut < payload.len() {
                prop_assert!(Method::decode(&payload.slice(..cut)).is_err());
            }
        }

        // And as a whole frame on some channel.
        let mut buf = BytesMut::new();
        frame::encode_method(42, m, &mut buf);
        prop_assert_eq!(buf.len(), m.encoded_len() + FRAME_OVERHEAD);
        let decoded = frame::decode(&mut buf, 0)?;
        prop_assert_eq!(
            decoded,
            Some(Frame::Method {
                channel: 42,
                method: m.clone()
            })
        );
        prop_assert!(buf.is_empty());
        Ok(())
    });
}

/// A property list's encoding: equal exactly when the lists are, NaN floats included.
fn encoded(p: &BasicProperties) -> Vec<u8> {
    let mut buf = BytesMut::new();
    encode_properties(p, &mut buf);
    buf.to_vec()
}

proptest! {
    #[test]
    fn properties_round_trip(p in properties(false)) {
        let mut buf = BytesMut::new();
        encode_properties(&p, &mut buf);
        prop_assert_eq!(buf.len(), p.encoded_len());
        prop_assert_eq!(decode_properties(&buf.freeze())?, p);
    }

    /// Properties built from values keep the encoding `encode_properties` writes, decode back
    /// to the values, and answer the broker's questions from the bytes alone.
    #[test]
    fn encoded_properties_round_trip(p in properties(false)) {
        let props = Properties::from(&p);
        let mut buf = BytesMut::new();
        encode_properties(&p, &mut buf);
        prop_assert_eq!(props.as_bytes(), &buf[..]);
        let again = Properties::from_bytes(buf.freeze())?;
        prop_assert_eq!(&again, &props);
        prop_assert_eq!(again.decode(), p.clone());
        prop_assert_eq!(again.flags(), p.flags());
        prop_assert_eq!(again.delivery_mode(), p.delivery_mode);
        prop_assert_eq!(again.is_persistent(), p.is_persistent());
        prop_assert_eq!(again.user_id(), p.user_id.as_deref());
        prop_assert_eq!(again.headers(), p.headers.clone());
        prop_assert_eq!(again.is_empty(), p == BasicProperties::default());
        prop_assert_eq!(again.to_bytes(), Bytes::copy_from_slice(props.as_bytes()));
    }

    /// The allocation-free check at decode time accepts exactly what a full decode accepts, and
    /// fails with the same error: on arbitrary bytes, and on valid lists with bytes damaged.
    #[test]
    fn property_validation_agrees_with_full_decode(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        p in properties(false),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut damaged = Properties::from(&p).as_bytes().to_vec();
        for (at, byte) in flips {
            let i = at.index(damaged.len());
            damaged[i] = byte;
        }
        for raw in [bytes, damaged] {
            let raw = Bytes::from(raw);
            let full = decode_properties(&raw);
            let checked = Properties::from_bytes(raw.clone());
            // Compared encoded: damaged bytes can make a float NaN, which equals nothing.
            prop_assert_eq!(checked.map(|c| encoded(&c.decode())), full.clone().map(|v| encoded(&v)));
            // The same list in a content header frame: the same verdict, named for the frame.
            let mut frame = BytesMut::new();
            frame.extend_from_slice(&[2, 0, 1]);
            frame.extend_from_slice(&u32::try_from(12 + raw.len()).expect("small").to_be_bytes());
            frame.extend_from_slice(&[0, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            frame.extend_from_slice(&raw);
            frame.extend_from_slice(&[0xce]);
            match (frame::decode(&mut frame, 0), full) {
                (Ok(Some(Frame::Header { header, .. })), Ok(v)) => {
                    prop_assert_eq!(header.properties.as_bytes(), &raw[..]);
                    prop_assert_eq!(encoded(&header.properties.decode()), encoded(&v));
                }
                (Err(got), Err(want)) => prop_assert_eq!(got, rename(want)),
                (got, want) => {
                    return Err(TestCaseError::fail(format!("frame {got:?}, full decode {want:?}")));
                }
            }
        }
    }

    #[test]
    fn field_tables_round_trip(t in field_table(false)) {
        let mut buf = BytesMut::new();
        encode_table(&t, &mut buf);
        prop_assert_eq!(buf.len(), t.encoded_len());
        prop_assert_eq!(decode_table(&buf.freeze())?, t);
    }

    #[test]
    fn content_round_trips_split_by_frame_max(
        p in properties(false),
        body in proptest::collection::vec(any::<u8>(), 0..20_000),
        frame_max in 4096u32..12_000,
        // Content frames on channel 0 are a connection error, rejected by the decoder.
        channel in 1..=u16::MAX,
    ) {
        let mut buf = BytesMut::new();
        let props = Properties::from(&p);
        frame::encode_content(channel, 60, &props, &body, frame_max, &mut buf);
        // The header may exceed a small frame_max when properties are large; read it unbounded.
        let header = frame::decode(&mut buf, 0)?;
        prop_assert_eq!(&header, &Some(Frame::Header {
            channel,
            header: ContentHeader { class_id: 60, body_size: body.len() as u64, properties: props },
        }));
        let Some(Frame::Header { header, .. }) = header else {
            return Err(TestCaseError::fail("header frame expected"));
        };
        prop_assert_eq!(header.properties.decode(), p);
        let mut got = Vec::new();
        while let Some(f) = frame::decode(&mut buf, frame_max)? {
            let Frame::Body { channel: c, payload } = f else {
                return Err(TestCaseError::fail("body frame expected"));
            };
            prop_assert_eq!(c, channel);
            prop_assert!(!payload.is_empty());
            got.extend_from_slice(&payload);
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, body);
    }

    #[test]
    fn frame_decode_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
        frame_max in prop_oneof![Just(0u32), Just(4096), 0u32..1024],
    ) {
        let mut buf = BytesMut::from(&bytes[..]);
        // Each Ok(Some) consumes at least 8 bytes, so this ends.
        while let Ok(Some(_)) = frame::decode(&mut buf, frame_max) {}
        let mut buf = BytesMut::from(&bytes[..]);
        let _ = frame::decode_protocol_header(&mut buf);
    }

    #[test]
    fn payload_decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let b = Bytes::from(bytes);
        let _ = Method::decode(&b);
        let _ = decode_table(&b);
        let _ = decode_properties(&b);
        if let Ok(p) = Properties::from_bytes(b) {
            let _ = (p.decode(), p.headers(), p.user_id(), p.delivery_mode());
        }
    }

    /// However the frame decoder takes a method frame apart (in place from a stack copy, in
    /// place from the read buffer, or from a `Bytes` of it), it gives what the payload
    /// decoder gives: the same method or the same error. Compared as re-encoded bytes, so NaN
    /// floats made by the damage do not break equality.
    #[test]
    fn frame_decoding_agrees_with_payload_decoding(
        m in any_method(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
    ) {
        let mut payload = BytesMut::new();
        m.encode(&mut payload);
        for (at, byte) in flips {
            let i = at.index(payload.len());
            payload[i] = byte;
        }
        let payload = payload.freeze();
        let mut frame = BytesMut::new();
        frame.extend_from_slice(&[1, 0, 3]);
        frame.extend_from_slice(&u32::try_from(payload.len()).expect("small").to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.extend_from_slice(&[0xce]);
        let bytes = |m: &Method| {
            let mut b = BytesMut::new();
            m.encode(&mut b);
            b
        };
        match (frame::decode(&mut frame, 0), Method::decode(&payload)) {
            (Ok(Some(Frame::Method { channel: 3, method })), Ok(want)) => {
                prop_assert_eq!(bytes(&method), bytes(&want));
                prop_assert!(frame.is_empty());
            }
            (Err(got), Err(want)) => prop_assert_eq!(got, want),
            (got, want) => {
                return Err(TestCaseError::fail(format!("frame {got:?}, payload {want:?}")));
            }
        }
    }

    /// Plausible frames with a few bytes damaged reach deep into the decoders.
    #[test]
    fn damaged_frames_never_panic(
        m in any_method(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let mut wire = BytesMut::new();
        frame::encode_method(1, &m, &mut wire);
        for (at, byte) in flips {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        while let Ok(Some(_)) = frame::decode(&mut wire, 0) {}
    }
}

/// A properties error as a content header frame names it.
fn rename(e: FrameError) -> FrameError {
    const WHAT: &str = "content header";
    match e {
        FrameError::Truncated(_) => FrameError::Truncated(WHAT),
        FrameError::NotUtf8(_) => FrameError::NotUtf8(WHAT),
        FrameError::TrailingBytes { extra, .. } => FrameError::TrailingBytes { what: WHAT, extra },
        other => other,
    }
}

/// Table value types by tag, including RabbitMQ's `L`, so no tag is silently missing.
#[test]
fn every_errata_tag_decodes() {
    let values: [(&[u8], u8); 18] = [
        (b"t\x01", b't'),
        (b"b\xff", b'b'),
        (b"B\xff", b'B'),
        (b"s\xff\xff", b's'),
        (b"u\xff\xff", b'u'),
        (b"I\x00\x00\x00\x01", b'I'),
        (b"i\x00\x00\x00\x01", b'i'),
        (b"l\x00\x00\x00\x00\x00\x00\x00\x01", b'l'),
        (b"L\x00\x00\x00\x00\x00\x00\x00\x01", b'l'),
        (b"f\x3f\x80\x00\x00", b'f'),
        (b"d\x3f\xf0\x00\x00\x00\x00\x00\x00", b'd'),
        (b"D\x02\x00\x00\x00\x07", b'D'),
        (b"S\x00\x00\x00\x01a", b'S'),
        (b"x\x00\x00\x00\x01a", b'x'),
        (b"A\x00\x00\x00\x02t\x00", b'A'),
        (b"T\x00\x00\x00\x00\x00\x00\x00\x01", b'T'),
        (b"F\x00\x00\x00\x00", b'F'),
        (b"V", b'V'),
    ];
    for (value, tag) in values {
        let mut wire = Vec::new();
        wire.extend_from_slice(&u32::try_from(value.len() + 2).unwrap().to_be_bytes());
        wire.extend_from_slice(b"\x01k");
        wire.extend_from_slice(value);
        let t = decode_table(&Bytes::from(wire)).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert_eq!(t.get("k").map(|v| v.tag()), Some(tag), "{value:?}");
    }
}
