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
mod tests;
