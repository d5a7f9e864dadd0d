//! Frames: the protocol header, and method / content-header / body / heartbeat frames.
//!
//! A frame is `type: u8, channel: u16, size: u32`, `size` bytes of payload, then 0xCE.
//! [`decode`] checks the type, the size against frame_max and the end octet from the 7-byte
//! header before it parses anything, so a peer cannot make us buffer more than frame_max, and
//! body payloads are split off the read buffer without copying. Which frame may follow which
//! (method, header, bodies) is the session's business, not this module's.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::{FrameError, Octets};
use super::method::{self, Method};
use super::properties::{self, Properties};
use super::small;
use super::types::SHORT_STR_INLINE;
use super::wire;

/// What a client sends first: AMQP 0-9-1. Also what we answer to any other header.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// The octet that ends every frame.
pub const FRAME_END: u8 = 0xCE;
/// Bytes a frame adds to its payload: the 7-byte header and the end octet.
pub const FRAME_OVERHEAD: usize = 8;
/// The smallest frame_max a peer may negotiate; frames up to this size are always allowed.
pub const FRAME_MIN_SIZE: u32 = 4096;

/// Frame type octet of a method frame.
pub const FRAME_METHOD: u8 = 1;
/// Frame type octet of a content header frame.
pub const FRAME_HEADER: u8 = 2;
/// Frame type octet of a content body frame.
pub const FRAME_BODY: u8 = 3;
/// Frame type octet of a heartbeat frame.
pub const FRAME_HEARTBEAT: u8 = 8;

/// Method payloads this short cannot hold a short string too long to keep inline: class and
/// method ids, a length octet, at most [`SHORT_STR_INLINE`] bytes.
const SMALL_PAYLOAD: usize = 4 + 1 + SHORT_STR_INLINE;

/// The empty `Bytes` the in-place decoders get instead of one of the frame. A static rather
/// than `Bytes::new()` at each call, which would be dropped (an indirect call) every time.
static NO_BYTES: Bytes = Bytes::new();

/// The basic class: the only one whose methods carry content.
const BASIC_CLASS_ID: u16 = 60;

/// A content header: the class and size of the content that follows, and its properties.
#[derive(Clone, Debug, PartialEq)]
pub struct ContentHeader {
    /// The class of the method this content belongs to (60, basic).
    pub class_id: u16,
    /// Total bytes of the body frames that follow.
    pub body_size: u64,
    /// The basic properties, validated and still encoded: [`Properties::decode`] gives values.
    pub properties: Properties,
}

/// One decoded frame.
///
/// At most 168 bytes, the size of the largest method (bind and unbind, with three short
/// strings and a table): properties stay encoded in [`Properties`] (64 bytes) instead of as
/// 14 decoded values (~460 bytes), so moving a frame is cheap.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A method frame.
    Method {
        /// The channel, 0 for the connection class.
        channel: u16,
        /// The method and its arguments.
        method: Method,
    },
    /// A content header frame.
    Header {
        /// The channel.
        channel: u16,
        /// The header.
        header: ContentHeader,
    },
    /// A content body frame: a slice of the message body.
    Body {
        /// The channel.
        channel: u16,
        /// The bytes, shared with the read buffer.
        payload: Bytes,
    },
    /// A heartbeat (always channel 0 on the wire).
    Heartbeat,
}

/// Consumes one whole frame from the front of `buf`. `Ok(None)` when more bytes are needed
/// (`buf` is then untouched, apart from capacity reserved for the announced frame).
///
/// Checks the type, that the payload is at most `frame_max` bytes, and the end octet, all
/// before parsing; `frame_max == 0` means no limit beyond the u32 size field. (The spec limits
/// the whole frame, 8 bytes of overhead included, to frame_max; RabbitMQ accepts 8 bytes more
/// because many clients size frames by their payload, and so do we. What we send stays within
/// the spec's limit.) Content frames on channel 0 and heartbeats on other channels are
/// refused here, as RabbitMQ's reader does, with the payload's first octets in the error.
/// Body payloads are zero-copy (`split_to().freeze()`); short strings and small property
/// lists are copied inline, and longer ones are zero-copy slices too. A small publish (method,
/// header, one body frame) therefore costs no allocation and two atomic reference-count
/// updates: the body's.
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Frame>, FrameError> {
    let Some(head) = buf.first_chunk::<7>() else {
        return Ok(None);
    };
    let kind = head[0];
    let channel = u16::from_be_bytes([head[1], head[2]]);
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]);
    if !matches!(
        kind,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Err(FrameError::UnknownFrameType(kind));
    }
    let too_large = || FrameError::TooLarge {
        kind,
        size: u64::from(size),
        max: frame_max,
    };
    if frame_max != 0 && size > frame_max {
        return Err(too_large());
    }
    // Cannot fail where usize is 64 bits; on 32 bits a frame this large is refused.
    let Ok(whole) = usize::try_from(u64::from(size) + FRAME_OVERHEAD as u64) else {
        return Err(too_large());
    };
    if buf.len() < whole {
        // The size is within frame_max, so reserving it is bounded by configuration.
        buf.reserve(whole - buf.len());
        return Ok(None);
    }
    let payload = &buf[7..whole - 1];
    let end = buf[whole - 1];
    if end != FRAME_END {
        return Err(FrameError::BadFrameEnd {
            kind,
            octets: Octets::of(payload),
            end,
        });
    }
    let misplaced = match kind {
        FRAME_HEADER | FRAME_BODY => channel == 0,
        FRAME_HEARTBEAT => channel != 0 || size != 0,
        _ => false,
    };
    if misplaced {
        return Err(FrameError::UnexpectedFrame {
            kind,
            octets: Octets::of(payload),
        });
    }
    match kind {
        FRAME_METHOD => decode_method(buf, channel, whole),
        FRAME_HEADER => decode_header(buf, channel, whole),
        FRAME_BODY => Ok(Some(Frame::Body {
            channel,
            payload: frame_payload(buf, whole),
        })),
        _ => {
            buf.advance(whole);
            Ok(Some(Frame::Heartbeat))
        }
    }
}

/// A whole method frame of `whole` bytes at the front of `buf`, consumed on success.
///
/// Methods made of numbers, bits and short strings (publish, ack, qos...: all but those that
/// [`method::needs_bytes`]) are parsed in place with no `Bytes` handle on the frame, their
/// short strings copied inline, so the frame costs no atomic reference-count update at all.
/// Should a string be too long to hold inline (it is then a slice of the frame), the frame is
/// parsed again from a `Bytes` of the payload, as the other methods are from the start.
///
/// A frame is up to 168 bytes, and copying one is a noticeable part of decoding it: the
/// decoder builds the frame where it returns it, and the common case returns that as is.
fn decode_method(
    buf: &mut BytesMut,
    channel: u16,
    whole: usize,
) -> Result<Option<Frame>, FrameError> {
    let frame = |method| Some(Frame::Method { channel, method });
    let payload = &buf[7..whole - 1];
    let in_place = payload.first_chunk::<4>().is_some_and(|head| {
        !method::needs_bytes(
            u16::from_be_bytes([head[0], head[1]]),
            u16::from_be_bytes([head[2], head[3]]),
        )
    });
    if in_place && payload.len() <= SMALL_PAYLOAD {
        // Too short to hold a string too long to keep inline: the result is final, error or
        // not. The payload (a few dozen bytes) is copied to the stack so the frame can be
        // consumed first and the decoder's result returned as it is, not copied out.
        let mut copy = [0u8; SMALL_PAYLOAD];
        let n = payload.len();
        small::copy_into(&mut copy, payload);
        buf.advance(whole);
        return Method::decode_with(&NO_BYTES, copy.get(..n).unwrap_or_default(), frame);
    }
    if in_place {
        let r = Method::decode_with(&NO_BYTES, payload, frame);
        if r.is_ok() {
            buf.advance(whole);
            return r;
        }
    }
    let payload = frame_payload(buf, whole);
    Method::decode_with(&payload, &payload, frame)
}

/// The payload of the whole frame of `whole` bytes at the front of `buf`, split off without
/// copying (one reference-count update), the frame consumed.
#[inline]
fn frame_payload(buf: &mut BytesMut, whole: usize) -> Bytes {
    let mut frame = buf.split_to(whole);
    frame.advance(7);
    frame.truncate(whole - FRAME_OVERHEAD);
    frame.freeze()
}

/// A whole content header frame of `whole` bytes at the front of `buf`, consumed on success:
/// class id (must be basic), weight (must be 0), body size, then the property list, which is
/// validated here (malformed lists are refused at publish, as RabbitMQ does) but not decoded.
/// A list of up to [`properties::PROPERTIES_INLINE`] bytes is copied into the [`Properties`];
/// a longer one becomes a zero-copy slice of the read buffer. Built in place, as
/// [`decode_method`] is.
fn decode_header(
    buf: &mut BytesMut,
    channel: u16,
    whole: usize,
) -> Result<Option<Frame>, FrameError> {
    const WHAT: &str = "content header";
    let payload = &buf[7..whole - 1];
    let Some((head, raw)) = payload.split_first_chunk::<12>() else {
        return Err(FrameError::Truncated(WHAT));
    };
    let class_id = u16::from_be_bytes([head[0], head[1]]);
    let weight = u16::from_be_bytes([head[2], head[3]]);
    if class_id != BASIC_CLASS_ID {
        // No other class has content. Which error that is depends on what the channel
        // expects (RabbitMQ names the class it wanted), so the session decides: the header
        // comes through with its class and no properties.
        let body_size = u64::from_be_bytes([
            head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
        ]);
        buf.advance(whole);
        return Ok(Some(Frame::Header {
            channel,
            header: ContentHeader {
                class_id,
                body_size,
                properties: Properties::EMPTY,
            },
        }));
    }
    if weight != 0 {
        return Err(FrameError::NonZeroWeight(weight));
    }
    properties::validate(WHAT, raw)?;
    let mut frame = Frame::Header {
        channel,
        header: ContentHeader {
            class_id,
            body_size: u64::from_be_bytes([
                head[4], head[5], head[6], head[7], head[8], head[9], head[10], head[11],
            ]),
            properties: Properties::EMPTY,
        },
    };
    if let Frame::Header { header, .. } = &mut frame {
        // Copied once, into the frame that is returned.
        if header.properties.set_validated_inline(raw) {
            buf.advance(whole);
        } else {
            buf.advance(7 + 12);
            let shared = buf.split_to(whole - FRAME_OVERHEAD - 12).freeze();
            buf.advance(1);
            header.properties = Properties::from_validated_shared(shared);
        }
    }
    Ok(Some(frame))
}

/// Writes a 7-byte frame header with a size placeholder; [`end_frame`] fills it in.
fn begin_frame(kind: u8, channel: u16, buf: &mut BytesMut) -> usize {
    let at = buf.len();
    buf.put_u8(kind);
    buf.put_u16(channel);
    buf.put_u32(0);
    at
}

/// Back-fills the size of the frame begun at `at` and writes the end octet.
fn end_frame(at: usize, buf: &mut BytesMut) {
    let size = wire::len_u32(buf.len() - at - 7);
    buf[at + 3..at + 7].copy_from_slice(&size.to_be_bytes());
    buf.put_u8(FRAME_END);
}

/// Writes any frame. Body payloads are copied into `buf`; frame_max is the caller's concern
/// (use [`encode_content`] to split a body).
pub fn encode(frame: &Frame, buf: &mut BytesMut) {
    match frame {
        Frame::Method { channel, method } => encode_method(*channel, method, buf),
        Frame::Header { channel, header } => {
            buf.reserve(FRAME_OVERHEAD + 12 + header.properties.len());
            let at = begin_frame(FRAME_HEADER, *channel, buf);
            buf.put_u16(header.class_id);
            buf.put_u16(0);
            buf.put_u64(header.body_size);
            buf.put_slice(header.properties.as_bytes());
            end_frame(at, buf);
        }
        Frame::Body { channel, payload } => encode_body(*channel, payload, buf),
        Frame::Heartbeat => encode_heartbeat(buf),
    }
}

/// Writes a method frame, reserving its exact size first.
pub fn encode_method(channel: u16, method: &Method, buf: &mut BytesMut) {
    buf.reserve(FRAME_OVERHEAD + method.encoded_len());
    let at = begin_frame(FRAME_METHOD, channel, buf);
    method.encode(buf);
    end_frame(at, buf);
}

fn encode_body(channel: u16, body: &[u8], buf: &mut BytesMut) {
    buf.reserve(FRAME_OVERHEAD + body.len());
    encode_body_head(channel, body.len(), buf);
    buf.put_slice(body);
    buf.put_u8(FRAME_END);
}

/// Writes the 7-byte head of a body frame of `len` payload bytes. The payload and
/// [`FRAME_END`] must follow: this is for writers that hand the payload over by reference
/// instead of copying it (see [`encode_content`] for the rules on sizes).
pub fn encode_body_head(channel: u16, len: usize, buf: &mut BytesMut) {
    buf.put_u8(FRAME_BODY);
    buf.put_u16(channel);
    buf.put_u32(wire::len_u32(len));
}

/// Payload bytes per body frame under `frame_max` (frame overhead excluded). A `frame_max`
/// of 0 means no limit, and one below [`FRAME_MIN_SIZE`] is raised to it (every peer accepts
/// that much).
pub fn body_frame_payload(frame_max: u32) -> usize {
    match frame_max {
        0 => u32::MAX as usize - FRAME_OVERHEAD,
        m => m.max(FRAME_MIN_SIZE) as usize - FRAME_OVERHEAD,
    }
}

/// Writes a content header frame: the class, the body size and the properties, as they are
/// encoded (a delivery carries the publisher's bytes unchanged). The header frame is not
/// split: properties must fit in one frame.
pub fn encode_content_header(
    channel: u16,
    class_id: u16,
    properties: &Properties,
    body_size: u64,
    buf: &mut BytesMut,
) {
    let at = begin_frame(FRAME_HEADER, channel, buf);
    buf.put_u16(class_id);
    buf.put_u16(0);
    buf.put_u64(body_size);
    buf.put_slice(properties.as_bytes());
    end_frame(at, buf);
}

/// Writes a content header frame and the body frames, each frame (overhead included) at
/// most `frame_max` bytes (see [`body_frame_payload`]); an empty body has no body frames.
pub fn encode_content(
    channel: u16,
    class_id: u16,
    properties: &Properties,
    body: &[u8],
    frame_max: u32,
    buf: &mut BytesMut,
) {
    let chunk = body_frame_payload(frame_max);
    let frames = body.len().div_ceil(chunk);
    buf.reserve(FRAME_OVERHEAD + 12 + properties.len() + body.len() + frames * FRAME_OVERHEAD);
    encode_content_header(channel, class_id, properties, body.len() as u64, buf);
    for part in body.chunks(chunk) {
        encode_body(channel, part, buf);
    }
}

/// Writes a heartbeat frame (channel 0, empty payload).
pub fn encode_heartbeat(buf: &mut BytesMut) {
    buf.put_slice(&[FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END]);
}

/// The 8-byte protocol header at the start of a connection: `Ok(None)` if fewer than 8
/// bytes; `Ok(Some(()))` and consumed when it is AMQP 0-9-1; [`FrameError::BadProtocolHeader`]
/// otherwise (the driver then writes [`PROTOCOL_HEADER`] and closes, as the spec asks and
/// RabbitMQ does; RabbitMQ's extra acceptance of the 0-9 header is not copied).
pub fn decode_protocol_header(buf: &mut BytesMut) -> Result<Option<()>, FrameError> {
    let Some(head) = buf.first_chunk::<8>() else {
        return Ok(None);
    };
    if head != PROTOCOL_HEADER {
        return Err(FrameError::BadProtocolHeader);
    }
    buf.advance(8);
    Ok(Some(()))
}

#[cfg(test)]
mod tests {
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
}
