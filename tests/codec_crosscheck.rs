//! An independent check of the codec against the `amq-protocol` crate (lapin's codec): for
//! every method, our bytes equal the bytes amq-protocol writes for the same values, and each
//! side decodes the other's output back to the same values. Likewise for content headers
//! with arbitrary properties, body frames and heartbeats.
//!
//! amq-protocol omits reserved fields and keeps field tables as sorted maps, so values here
//! are "canonical": reserved fields zero/empty, table keys sorted and unique.

mod codec_support;

use amq_protocol::frame::AMQPFrame;
use bytes::{Bytes, BytesMut};
use codec_support::methods::{from_amq, method_strategies, to_amq};
use codec_support::{amq_decode, amq_encode, amq_header, our_properties, properties};
use lagomorph::protocol::frame::{self, ContentHeader, Frame};
use lagomorph::protocol::method::{self, METHODS, Method};
use lagomorph::protocol::properties::Properties;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn ours(frame: &Frame) -> Vec<u8> {
    let mut buf = BytesMut::new();
    frame::encode(frame, &mut buf);
    buf.to_vec()
}

fn our_decode(bytes: &[u8]) -> Frame {
    let mut buf = BytesMut::from(bytes);
    let f = frame::decode(&mut buf, 0)
        .expect("we decode amq-protocol's bytes")
        .expect("a whole frame");
    assert!(buf.is_empty());
    f
}

#[test]
fn every_method_matches_amq_protocol() {
    let strategies = method_strategies(true);
    let names: Vec<&str> = strategies.iter().map(|(n, _)| *n).collect();
    let all: Vec<&str> = METHODS.iter().map(|(_, _, n)| *n).collect();
    assert_eq!(names, all, "one strategy per method");

    for (name, strategy) in strategies {
        let mut runner = TestRunner::new(Config::with_cases(32));
        let result = runner.run(&(strategy, any::<u16>()), |(m, channel)| {
            let frame = Frame::Method {
                channel,
                method: m.clone(),
            };
            let amq = AMQPFrame::Method(channel, to_amq(&m));
            let our_bytes = ours(&frame);
            let their_bytes = amq_encode(&amq);
            prop_assert_eq!(&our_bytes, &their_bytes, "bytes of {:?}", m);

            // Each side decodes the other's output.
            let AMQPFrame::Method(ch, class) = amq_decode(&our_bytes) else {
                return Err(TestCaseError::fail("amq-protocol saw no method frame"));
            };
            prop_assert_eq!(ch, channel);
            prop_assert_eq!(&from_amq(&class), &m);
            prop_assert_eq!(our_decode(&their_bytes), frame);
            Ok(())
        });
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }
}

proptest! {
    #[test]
    fn content_headers_match_amq_protocol(
        p in properties(true),
        body_size in any::<u64>(),
        // Content frames on channel 0 are a connection error, rejected by the decoder.
        channel in 1..=u16::MAX,
    ) {
        let frame = Frame::Header {
            channel,
            header: ContentHeader { class_id: 60, body_size, properties: Properties::from(&p) },
        };
        let amq = AMQPFrame::Header(channel, amq_header(60, body_size, &p));
        let our_bytes = ours(&frame);
        let their_bytes = amq_encode(&amq);
        prop_assert_eq!(&our_bytes, &their_bytes);

        let AMQPFrame::Header(ch, h) = amq_decode(&our_bytes) else {
            return Err(TestCaseError::fail("amq-protocol saw no header frame"));
        };
        prop_assert_eq!((ch, h.class_id, h.body_size), (channel, 60, body_size));
        prop_assert_eq!(our_properties(&h.properties), p.clone());
        // We keep their property bytes as they are, and they decode to the same values.
        let decoded = our_decode(&their_bytes);
        prop_assert_eq!(&decoded, &frame);
        let Frame::Header { header, .. } = decoded else {
            return Err(TestCaseError::fail("we saw no header frame"));
        };
        prop_assert_eq!(header.properties.decode(), p.clone());
        prop_assert_eq!(header.properties.delivery_mode(), p.delivery_mode);
        prop_assert_eq!(header.properties.user_id(), p.user_id.as_deref());
        prop_assert_eq!(header.properties.headers(), p.headers);
    }

    #[test]
    fn body_frames_match_amq_protocol(
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        // Content frames on channel 0 are a connection error, rejected by the decoder.
        channel in 1..=u16::MAX,
    ) {
        let frame = Frame::Body { channel, payload: Bytes::from(body.clone()) };
        let amq = AMQPFrame::Body(channel, body);
        let our_bytes = ours(&frame);
        prop_assert_eq!(&our_bytes, &amq_encode(&amq));
        prop_assert_eq!(amq_decode(&our_bytes), amq);
        prop_assert_eq!(our_decode(&our_bytes), frame);
    }
}

#[test]
fn heartbeat_and_protocol_header_match_amq_protocol() {
    assert_eq!(ours(&Frame::Heartbeat), amq_encode(&AMQPFrame::Heartbeat));
    assert_eq!(amq_decode(&ours(&Frame::Heartbeat)), AMQPFrame::Heartbeat);
    let header = amq_encode(&AMQPFrame::ProtocolHeader(
        amq_protocol::frame::ProtocolVersion::amqp_0_9_1(),
    ));
    assert_eq!(header, frame::PROTOCOL_HEADER);
    let mut buf = BytesMut::from(&header[..]);
    assert_eq!(frame::decode_protocol_header(&mut buf), Ok(Some(())));
}

/// A publish as lapin sends it, decoded by us field by field (a readable spot check).
#[test]
fn lapin_style_publish() {
    let m = Method::from(method::BasicPublish {
        reserved_1: 0,
        exchange: "amq.topic".try_into().expect("short"),
        routing_key: "a.b.c".try_into().expect("short"),
        mandatory: true,
        immediate: false,
    });
    let their_bytes = amq_encode(&AMQPFrame::Method(5, to_amq(&m)));
    assert_eq!(
        our_decode(&their_bytes),
        Frame::Method {
            channel: 5,
            method: m
        }
    );
}
