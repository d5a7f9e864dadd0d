//! Tests of the frame codec.

use super::super::method::*;
use super::super::properties::BasicProperties;
use super::super::types::{FieldTable, FieldValue, LongStr, MAX_NESTING, ShortStr};
use super::*;
use bytes::BufMut;

fn s(v: &'static str) -> ShortStr {
    ShortStr::from_static(v)
}

fn round_trip(frame: Frame) {
    let mut buf = BytesMut::new();
    encode(&frame, &mut buf);
    let bytes = buf.clone();
    assert_eq!(decode(&mut buf, 131_072), Ok(Some(frame)), "{bytes:?}");
    assert!(buf.is_empty());
}

#[test]
fn protocol_header() {
    let mut buf = BytesMut::from(&b"AMQP\x00\x00"[..]);
    assert_eq!(decode_protocol_header(&mut buf), Ok(None));
    assert_eq!(buf.len(), 6);
    buf.extend_from_slice(b"\x09\x01rest");
    assert_eq!(decode_protocol_header(&mut buf), Ok(Some(())));
    assert_eq!(&buf[..], b"rest");

    for bad in [
        &b"AMQP\x00\x00\x09\x00"[..],
        b"AMQP\x01\x01\x00\x09",
        b"GET / HTTP/1.1",
    ] {
        let mut buf = BytesMut::from(bad);
        assert_eq!(
            decode_protocol_header(&mut buf),
            Err(FrameError::BadProtocolHeader)
        );
    }
    // Fewer than 8 bytes is always "need more", even when they already look wrong.
    let mut buf = BytesMut::from(&b"GE"[..]);
    assert_eq!(decode_protocol_header(&mut buf), Ok(None));
    let mut empty = BytesMut::new();
    assert_eq!(decode_protocol_header(&mut empty), Ok(None));
}

#[test]
fn heartbeat_bytes() {
    let mut buf = BytesMut::new();
    encode_heartbeat(&mut buf);
    assert_eq!(&buf[..], b"\x08\x00\x00\x00\x00\x00\x00\xce");
    assert_eq!(decode(&mut buf, 4096), Ok(Some(Frame::Heartbeat)));
    assert!(buf.is_empty());
}

#[test]
fn heartbeat_on_channel_or_with_payload() {
    let mut buf = BytesMut::from(&b"\x08\x00\x05\x00\x00\x00\x00\xce"[..]);
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(e.to_string(), "type 8, all octets = <<>>");
    assert_eq!(e.reply_code().code(), 505);
    let mut buf = BytesMut::from(&b"\x08\x00\x00\x00\x00\x00\x01x\xce"[..]);
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(e.to_string(), "type 8, all octets = <<\"x\">>");
    assert_eq!(e.reply_code().code(), 505);
}

#[test]
fn content_frames_on_channel_0_are_unexpected() {
    // RabbitMQ 3.10's answers (tests/fixtures/rabbitmq-3.10/compat.json).
    let mut buf = BytesMut::from(&b"\x03\x00\x00\x00\x00\x00\x01x\xce"[..]);
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(e.reply_code().code(), 505);
    assert_eq!(e.to_string(), "type 3, all octets = <<\"x\">>");
    let mut buf = BytesMut::new();
    encode(
        &Frame::Header {
            channel: 0,
            header: ContentHeader {
                class_id: 60,
                body_size: 1,
                properties: Properties::default(),
            },
        },
        &mut buf,
    );
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>"
    );
}

#[test]
fn method_frame_known_bytes() {
    // channel.open on channel 1: class 20, method 10, reserved-1 "".
    let wire = b"\x01\x00\x01\x00\x00\x00\x05\x00\x14\x00\x0a\x00\xce";
    let mut buf = BytesMut::new();
    encode_method(1, &ChannelOpen::default().into(), &mut buf);
    assert_eq!(&buf[..], &wire[..]);
    assert_eq!(
        decode(&mut buf, 4096),
        Ok(Some(Frame::Method {
            channel: 1,
            method: Method::ChannelOpen(ChannelOpen::default())
        }))
    );
}

#[test]
fn basic_publish_known_bytes() {
    let m = BasicPublish {
        reserved_1: 0,
        exchange: s("ex"),
        routing_key: s("rk"),
        mandatory: true,
        immediate: false,
    };
    let mut buf = BytesMut::new();
    encode_method(3, &m.clone().into(), &mut buf);
    let wire = b"\x01\x00\x03\x00\x00\x00\x0d\x00\x3c\x00\x28\x00\x00\x02ex\x02rk\x01\xce";
    assert_eq!(&buf[..], &wire[..]);
    let Ok(Some(Frame::Method { channel: 3, method })) = decode(&mut buf, 4096) else {
        panic!("decodes");
    };
    assert_eq!(method, Method::BasicPublish(m));
    assert_eq!(method.name(), "basic.publish");
    assert!(method.has_content());
}

#[test]
fn bit_packing_queue_declare() {
    let m = QueueDeclare {
        reserved_1: 0,
        queue: s("q"),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        no_wait: true,
        arguments: FieldTable::new(),
    };
    let mut buf = BytesMut::new();
    Method::from(m.clone()).encode(&mut buf);
    // class 50, method 10, reserved short, "q", bits durable(1)|auto-delete(3)|no-wait(4).
    assert_eq!(
        &buf[..],
        b"\x00\x32\x00\x0a\x00\x00\x01q\x1a\x00\x00\x00\x00"
    );
    assert_eq!(Method::decode(&buf.freeze()), Ok(Method::QueueDeclare(m)));
}

#[test]
fn connection_start_round_trip() {
    let caps = FieldTable(vec![(s("publisher_confirms"), FieldValue::Bool(true))]);
    let m = ConnectionStart {
        version_major: 0,
        version_minor: 9,
        server_properties: FieldTable(vec![
            (
                s("product"),
                FieldValue::LongStr(LongStr::from("Lagomorph")),
            ),
            (s("capabilities"), FieldValue::Table(caps)),
        ]),
        mechanisms: LongStr::from("PLAIN AMQPLAIN"),
        locales: LongStr::from("en_US"),
    };
    round_trip(Frame::Method {
        channel: 0,
        method: m.into(),
    });
}

#[test]
fn rabbitmq_extensions() {
    for (m, class, id) in [
        (
            Method::from(ConnectionBlocked {
                reason: s("low on memory"),
            }),
            10,
            60,
        ),
        (ConnectionUnblocked.into(), 10, 61),
        (
            ConnectionUpdateSecret {
                new_secret: LongStr::from("token"),
                reason: s("refresh"),
            }
            .into(),
            10,
            70,
        ),
        (ConnectionUpdateSecretOk.into(), 10, 71),
    ] {
        assert_eq!((m.class_id(), m.method_id()), (class, id));
        round_trip(Frame::Method {
            channel: 0,
            method: m,
        });
    }
    assert_eq!(ConfirmSelect::CLASS_ID, 85);
    let confirm = Method::from(ConfirmSelect { nowait: true });
    assert_eq!((confirm.class_id(), confirm.method_id()), (85, 10));
    assert_eq!(confirm.name(), "confirm.select");
}

#[test]
fn content_round_trip_and_splitting() {
    let props = Properties::from(BasicProperties {
        content_type: Some(s("text/plain")),
        delivery_mode: Some(2),
        ..Default::default()
    });
    let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
    let mut buf = BytesMut::new();
    encode_content(7, 60, &props, &body, 4096, &mut buf);
    let mut frames = Vec::new();
    while let Some(f) = decode(&mut buf, 4096).expect("valid") {
        frames.push(f);
    }
    assert!(buf.is_empty());
    assert_eq!(frames.len(), 4, "header + 3 bodies of at most 4088 bytes");
    assert_eq!(
        frames[0],
        Frame::Header {
            channel: 7,
            header: ContentHeader {
                class_id: 60,
                body_size: 10_000,
                properties: props
            }
        }
    );
    let mut got = Vec::new();
    for f in &frames[1..] {
        let Frame::Body {
            channel: 7,
            payload,
        } = f
        else {
            panic!("body frame expected");
        };
        assert!(payload.len() + FRAME_OVERHEAD <= 4096);
        got.extend_from_slice(payload);
    }
    assert_eq!(got, body);

    let mut buf = BytesMut::new();
    encode_content(1, 60, &Properties::EMPTY, &[], 4096, &mut buf);
    assert_eq!(
        decode(&mut buf, 4096)
            .ok()
            .flatten()
            .map(|_| buf.is_empty()),
        Some(true),
        "an empty body is a header frame alone"
    );
}

#[test]
fn body_is_zero_copy() {
    let mut buf = BytesMut::new();
    encode(
        &Frame::Body {
            channel: 2,
            payload: Bytes::from_static(b"hello"),
        },
        &mut buf,
    );
    let start = buf.as_ptr();
    let Ok(Some(Frame::Body { payload, .. })) = decode(&mut buf, 4096) else {
        panic!("body");
    };
    assert_eq!(&payload[..], b"hello");
    assert_eq!(payload.as_ptr(), start.wrapping_add(7));
}

#[test]
fn partial_input_needs_more_and_leaves_buf() {
    let mut whole = BytesMut::new();
    encode_method(1, &BasicQos::default().into(), &mut whole);
    for n in 0..whole.len() {
        let mut part = BytesMut::from(&whole[..n]);
        assert_eq!(decode(&mut part, 4096), Ok(None), "prefix of {n}");
        assert_eq!(&part[..], &whole[..n]);
    }
}

#[test]
fn frame_max_is_checked_from_the_header_alone() {
    // Announces 4097 payload bytes; only the header has arrived.
    let mut buf = BytesMut::from(&b"\x03\x00\x01\x00\x00\x10\x01"[..]);
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(
        e,
        FrameError::TooLarge {
            kind: 3,
            size: 4097,
            max: 4096
        }
    );
    // RabbitMQ 3.10's text names the spec's limit on the payload, frame_max - 8.
    assert_eq!(
        e.to_string(),
        "type 3, all octets = <<>>: {frame_too_large,4097,4088}"
    );
    // A payload of exactly frame_max is accepted, as RabbitMQ does (whole frame
    // frame_max + 8).
    let mut buf = BytesMut::from(&b"\x03\x00\x01\x00\x00\x10\x00"[..]);
    assert_eq!(decode(&mut buf, 4096), Ok(None));
    let mut body = BytesMut::from(&b"\x03\x00\x01\x00\x00\x10\x00"[..]);
    body.extend_from_slice(&[b'x'; 4096]);
    body.put_u8(FRAME_END);
    assert!(matches!(
        decode(&mut body, 4096),
        Ok(Some(Frame::Body { payload, .. })) if payload.len() == 4096
    ));
    // A hostile 4 GiB announcement is refused without reserving anything.
    let mut buf = BytesMut::from(&b"\x03\x00\x01\xff\xff\xff\xff"[..]);
    assert!(matches!(
        decode(&mut buf, 131_072),
        Err(FrameError::TooLarge { .. })
    ));
    assert!(buf.capacity() < 1024);
}

#[test]
fn bad_type_and_bad_end() {
    let mut buf = BytesMut::from(&b"\x04\x00\x00\x00\x00\x00\x00\xce"[..]);
    assert_eq!(decode(&mut buf, 4096), Err(FrameError::UnknownFrameType(4)));
    let mut buf = BytesMut::from(&b"\x03\x00\x01\x00\x00\x00\x01xA"[..]);
    let e = decode(&mut buf, 4096).unwrap_err();
    assert_eq!(
        e.to_string(),
        "type 3, all octets = <<\"x\">>: {invalid_frame_end_marker,65}"
    );
    assert_eq!(e.reply_code().code(), 501);
}

#[test]
fn malformed_method_payloads() {
    let cases: [(&[u8], FrameError); 4] = [
        (b"\x00\x3c", FrameError::Truncated("method frame")),
        (
            b"\x00\x3c\x00\x28\x00\x00\x05ab",
            FrameError::Truncated("basic.publish"),
        ),
        (
            b"\x00\x3c\x00\x28\x00\x00\x00\x00\x00\x00",
            FrameError::TrailingBytes {
                what: "basic.publish",
                extra: 1,
            },
        ),
        (
            b"\x00\x3c\x03\xe7",
            FrameError::UnknownMethod {
                class_id: 60,
                method_id: 999,
            },
        ),
    ];
    for (payload, want) in cases {
        assert_eq!(Method::decode(&Bytes::copy_from_slice(payload)), Err(want));
    }
    let bad_utf8 = Bytes::from_static(b"\x00\x3c\x00\x28\x00\x00\x01\xff\x00\x00");
    let e = Method::decode(&bad_utf8).unwrap_err();
    assert_eq!(e, FrameError::NotUtf8("basic.publish"));
    assert_eq!(e.reply_code().code(), 501);
}

#[test]
fn content_header_checks() {
    let mut ok = BytesMut::new();
    encode(
        &Frame::Header {
            channel: 1,
            header: ContentHeader {
                class_id: 60,
                body_size: 3,
                properties: Properties::default(),
            },
        },
        &mut ok,
    );
    assert_eq!(
        &ok[..],
        b"\x02\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00\x00\xce"
    );
    let mut wrong_class = ok.clone();
    wrong_class[8] = 50;
    // Another class comes through (the session names the class it expected).
    assert!(matches!(
        decode(&mut wrong_class, 4096),
        Ok(Some(Frame::Header { header, .. })) if header.class_id == 50 && header.body_size == 3
    ));
    assert!(wrong_class.is_empty());
    let mut weight = ok.clone();
    weight[10] = 1;
    assert_eq!(decode(&mut weight, 4096), Err(FrameError::NonZeroWeight(1)));
    let mut short = BytesMut::from(&b"\x02\x00\x01\x00\x00\x00\x02\x00\x3c\xce"[..]);
    assert_eq!(
        decode(&mut short, 4096),
        Err(FrameError::Truncated("content header"))
    );
}

/// A content header frame of `props` (a raw property list) for 3 body bytes.
fn header_frame(props: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(FRAME_HEADER);
    b.put_u16(1);
    b.put_u32(u32::try_from(12 + props.len()).expect("small"));
    b.put_slice(b"\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03");
    b.put_slice(props);
    b.put_u8(FRAME_END);
    b
}

#[test]
fn properties_stay_encoded_inline_or_sliced() {
    // Short: held inline, the frame's bytes consumed with no `Bytes` taken.
    let mut buf = header_frame(b"\x90\x00\x01a\x02");
    let Ok(Some(Frame::Header { header, .. })) = decode(&mut buf, 4096) else {
        panic!("header");
    };
    assert!(buf.is_empty());
    assert_eq!(header.properties.as_bytes(), b"\x90\x00\x01a\x02");
    assert_eq!(header.properties.delivery_mode(), Some(2));
    assert_eq!(header.properties.decode().content_type, Some(s("a")));

    // Long: a zero-copy slice of the read buffer, starting after the 12-byte header.
    let long = Properties::from(BasicProperties {
        message_id: Some(ShortStr::try_from("m".repeat(100)).expect("short")),
        user_id: Some(s("guest")),
        ..Default::default()
    });
    let mut buf = header_frame(long.as_bytes());
    let start = buf.as_ptr();
    let Ok(Some(Frame::Header { header, .. })) = decode(&mut buf, 4096) else {
        panic!("header");
    };
    assert!(buf.is_empty());
    assert_eq!(header.properties, long);
    assert_eq!(
        header.properties.as_bytes().as_ptr(),
        start.wrapping_add(19)
    );
    assert_eq!(header.properties.user_id(), Some("guest"));
}

#[test]
fn malformed_property_lists_are_refused_at_decode() {
    let cases: [(&[u8], FrameError, u16); 7] = [
        // content-type announces 5 bytes, 2 follow.
        (
            b"\x80\x00\x05ab",
            FrameError::Truncated("content header"),
            501,
        ),
        // A content type that is not UTF-8.
        (
            b"\x80\x00\x02\xff\xfe",
            FrameError::NotUtf8("content header"),
            501,
        ),
        // A property byte after the last present property.
        (
            b"\x10\x00\x02\x00",
            FrameError::TrailingBytes {
                what: "content header",
                extra: 1,
            },
            501,
        ),
        // Headers with an unknown field type.
        (
            b"\x20\x00\x00\x00\x00\x03\x01kZ",
            FrameError::UnknownFieldType(b'Z'),
            502,
        ),
        // Headers whose entry runs past the table's declared length.
        (
            b"\x20\x00\x00\x00\x00\x03\x01kI\x00\x00\x00\x01",
            FrameError::Truncated("content header"),
            501,
        ),
        // A continuation word naming a property basic does not have.
        (
            b"\x00\x01\x80\x00",
            FrameError::Syntax("property flags name a property the basic class does not have"),
            502,
        ),
        // Flags only, cut in half.
        (b"\x80", FrameError::Truncated("content header"), 501),
    ];
    for (props, want, code) in cases {
        let mut buf = header_frame(props);
        let got = decode(&mut buf, 4096);
        assert_eq!(got, Err(want.clone()), "{props:?}");
        assert_eq!(want.reply_code().code(), code);
        // The stand-alone check agrees (with its own context name).
        assert!(Properties::from_bytes(Bytes::copy_from_slice(props)).is_err());
    }
    // Nested deeper than the cap.
    let mut deep = FieldTable::new();
    for _ in 0..MAX_NESTING {
        deep = FieldTable(vec![(s("n"), FieldValue::Table(deep))]);
    }
    let p = Properties::from(BasicProperties {
        headers: Some(deep),
        ..Default::default()
    });
    let mut buf = header_frame(p.as_bytes());
    assert_eq!(decode(&mut buf, 0), Err(FrameError::TooDeep(MAX_NESTING)));
}

#[test]
fn method_frames_decode_by_every_path() {
    let publish = |ex: &str, rk: &str| BasicPublish {
        reserved_1: 0,
        exchange: ShortStr::try_from(ex).expect("short"),
        routing_key: ShortStr::try_from(rk).expect("short"),
        mandatory: true,
        immediate: false,
    };
    let cases = [
        // Small payload: copied to the stack, decoded in place.
        Method::from(publish("amq.topic", "a.b")),
        // Larger payload, every string short enough to hold inline: in place.
        publish(&"e".repeat(38), &"r".repeat(38)).into(),
        // A string too long to hold inline: decoded again from a `Bytes` of the frame.
        publish("x", &"r".repeat(200)).into(),
        // A table: from a `Bytes` from the start.
        QueueDeclare {
            queue: s("q"),
            arguments: FieldTable(vec![(s("x-k"), FieldValue::LongStr("v".into()))]),
            ..Default::default()
        }
        .into(),
    ];
    for m in cases {
        // Room for both frames, so the heartbeat does not move the method's bytes.
        let mut buf = BytesMut::with_capacity(1024);
        encode_method(7, &m, &mut buf);
        let start = buf.as_ptr();
        encode_heartbeat(&mut buf);
        let Ok(Some(Frame::Method { channel: 7, method })) = decode(&mut buf, 0) else {
            panic!("decodes: {m:?}");
        };
        assert_eq!(method, m);
        assert_eq!(
            decode(&mut buf, 0),
            Ok(Some(Frame::Heartbeat)),
            "consumed exactly"
        );
        if let Method::BasicPublish(p) = &method
            && p.routing_key.len() > SHORT_STR_INLINE
        {
            // Zero-copy: a slice of the read buffer, after header, ids, reserved and "x".
            assert_eq!(
                p.routing_key.as_bytes().as_ptr(),
                start.wrapping_add(7 + 4 + 2 + 2 + 1)
            );
        }
    }
    // Malformed, each way: the error is the payload decoder's.
    for payload in [
        &b"\x00\x3c\x00\x28\x00\x00\x05ab"[..],
        b"\x00\x3c\x00\x28\x00\x00\x00\x00\x00\x00",
        b"\x00\x3c\x00\x28\x00\x00\x01\xff\x00\x00",
        b"\x00\x3c\x00\x28\x00\x00\xc8aaaa",
    ] {
        let mut buf = BytesMut::new();
        buf.put_u8(FRAME_METHOD);
        buf.put_u16(1);
        buf.put_u32(u32::try_from(payload.len()).expect("small"));
        buf.put_slice(payload);
        buf.put_u8(FRAME_END);
        let want = Method::decode(&Bytes::copy_from_slice(payload)).map(|_| ());
        assert!(want.is_err());
        assert_eq!(decode(&mut buf, 0).map(|_| ()), want, "{payload:?}");
    }
}

#[test]
fn frames_are_small_to_move() {
    // Was ~470 bytes while properties were decoded inline.
    assert!(
        std::mem::size_of::<Frame>() <= 168,
        "{}",
        std::mem::size_of::<Frame>()
    );
    assert!(std::mem::size_of::<ContentHeader>() <= 80);
}

#[test]
fn fixed_size_methods_decode_in_place() {
    let ack = BasicAck {
        delivery_tag: u64::MAX - 1,
        multiple: true,
    };
    let mut buf = BytesMut::new();
    encode_method(9, &ack.clone().into(), &mut buf);
    encode_heartbeat(&mut buf);
    assert_eq!(
        decode(&mut buf, 4096),
        Ok(Some(Frame::Method {
            channel: 9,
            method: ack.into()
        }))
    );
    assert_eq!(decode(&mut buf, 4096), Ok(Some(Frame::Heartbeat)));
    // Still checked exactly: one byte too many.
    let mut bad = BytesMut::from(
        &b"\x01\x00\x01\x00\x00\x00\x0e\x00\x3c\x00\x50\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\xce"[..],
    );
    assert_eq!(
        decode(&mut bad, 4096),
        Err(FrameError::TrailingBytes {
            what: "basic.ack",
            extra: 1
        })
    );
}

#[test]
fn several_frames_in_one_buffer() {
    let mut buf = BytesMut::new();
    encode_method(
        1,
        &BasicAck {
            delivery_tag: 5,
            multiple: true,
        }
        .into(),
        &mut buf,
    );
    encode_heartbeat(&mut buf);
    encode_method(0, &ConnectionCloseOk.into(), &mut buf);
    let mut n = 0;
    while let Some(_f) = decode(&mut buf, 4096).expect("valid") {
        n += 1;
    }
    assert_eq!(n, 3);
    assert!(buf.is_empty());
}

#[test]
fn content_frames_on_channel_zero_are_unexpected() {
    for frame in [
        Frame::Body {
            channel: 0,
            payload: Bytes::from_static(b"x"),
        },
        Frame::Header {
            channel: 0,
            header: ContentHeader {
                class_id: 60,
                body_size: 1,
                properties: Properties::EMPTY,
            },
        },
    ] {
        let mut buf = BytesMut::new();
        encode(&frame, &mut buf);
        let got = decode(&mut buf, 4096);
        assert!(
            matches!(got, Err(FrameError::UnexpectedFrame { .. })),
            "{got:?}"
        );
    }
}
