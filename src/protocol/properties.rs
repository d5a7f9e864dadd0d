//! Basic-class content properties (the content header's property list) and their codec.
//!
//! On the wire: a 16-bit property-flags word (bit 15 = content-type ... bit 2 = cluster-id,
//! bit 0 = another flags word follows), then each present property in spec order. The
//! storage layer keeps properties as these opaque bytes ([`encode_properties`],
//! [`decode_properties`]).

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::be_u16;

use super::error::FrameError;
use super::types::{self, FieldTable, ShortStr};
use super::wire::{self, PResult, fail, finish};

/// The 14 properties of the basic class, in spec order. `None` means the flag bit is clear.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BasicProperties {
    /// MIME content type.
    pub content_type: Option<ShortStr>,
    /// MIME content encoding.
    pub content_encoding: Option<ShortStr>,
    /// Application headers (used by the headers exchange).
    pub headers: Option<FieldTable>,
    /// 1 = transient, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Priority 0-9.
    pub priority: Option<u8>,
    /// Application correlation identifier.
    pub correlation_id: Option<ShortStr>,
    /// Address to reply to.
    pub reply_to: Option<ShortStr>,
    /// Per-message TTL in milliseconds, as a decimal string (RabbitMQ's meaning).
    pub expiration: Option<ShortStr>,
    /// Application message identifier.
    pub message_id: Option<ShortStr>,
    /// Message timestamp, seconds since the epoch.
    pub timestamp: Option<u64>,
    /// Message type name (the spec's `type`).
    pub kind: Option<ShortStr>,
    /// Creating user id (RabbitMQ validates it against the connection's user).
    pub user_id: Option<ShortStr>,
    /// Creating application id.
    pub app_id: Option<ShortStr>,
    /// Deprecated `cluster-id` (the XML's `reserved`).
    pub cluster_id: Option<ShortStr>,
}

impl BasicProperties {
    /// True when delivery-mode is 2 (persistent).
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode == Some(2)
    }
}

// Flag bits, spec order from the most significant bit.
const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const KIND: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bit 0 of a flags word: another flags word follows.
const CONTINUATION: u16 = 1;

impl BasicProperties {
    /// The property-flags word: one bit per present property.
    pub fn flags(&self) -> u16 {
        let mut f = 0;
        let mut set = |present: bool, bit: u16| {
            if present {
                f |= bit;
            }
        };
        set(self.content_type.is_some(), CONTENT_TYPE);
        set(self.content_encoding.is_some(), CONTENT_ENCODING);
        set(self.headers.is_some(), HEADERS);
        set(self.delivery_mode.is_some(), DELIVERY_MODE);
        set(self.priority.is_some(), PRIORITY);
        set(self.correlation_id.is_some(), CORRELATION_ID);
        set(self.reply_to.is_some(), REPLY_TO);
        set(self.expiration.is_some(), EXPIRATION);
        set(self.message_id.is_some(), MESSAGE_ID);
        set(self.timestamp.is_some(), TIMESTAMP);
        set(self.kind.is_some(), KIND);
        set(self.user_id.is_some(), USER_ID);
        set(self.app_id.is_some(), APP_ID);
        set(self.cluster_id.is_some(), CLUSTER_ID);
        f
    }

    /// Bytes the flags word and present properties take on the wire.
    pub fn encoded_len(&self) -> usize {
        let s = |v: &Option<ShortStr>| v.as_ref().map_or(0, |s| 1 + s.len());
        2 + s(&self.content_type)
            + s(&self.content_encoding)
            + self.headers.as_ref().map_or(0, FieldTable::encoded_len)
            + usize::from(self.delivery_mode.is_some())
            + usize::from(self.priority.is_some())
            + s(&self.correlation_id)
            + s(&self.reply_to)
            + s(&self.expiration)
            + s(&self.message_id)
            + self.timestamp.map_or(0, |_| 8)
            + s(&self.kind)
            + s(&self.user_id)
            + s(&self.app_id)
            + s(&self.cluster_id)
    }
}

/// Writes the flags word and the present properties, in spec order.
pub fn encode_properties(p: &BasicProperties, buf: &mut BytesMut) {
    buf.reserve(p.encoded_len());
    put_properties(p, buf);
}

/// Decodes a flags word and properties that fill all of `payload`. Strings are slices of it.
pub fn decode_properties(payload: &Bytes) -> Result<BasicProperties, FrameError> {
    finish("basic properties", parse_properties(payload, payload))
}

/// [`encode_properties`] without the reservation, for callers that reserved already.
pub(super) fn put_properties(p: &BasicProperties, buf: &mut BytesMut) {
    buf.put_u16(p.flags());
    let s = |buf: &mut BytesMut, v: &Option<ShortStr>| {
        if let Some(v) = v {
            wire::put_short_str(buf, v);
        }
    };
    s(buf, &p.content_type);
    s(buf, &p.content_encoding);
    if let Some(h) = &p.headers {
        types::put_table(h, buf);
    }
    if let Some(v) = p.delivery_mode {
        buf.put_u8(v);
    }
    if let Some(v) = p.priority {
        buf.put_u8(v);
    }
    s(buf, &p.correlation_id);
    s(buf, &p.reply_to);
    s(buf, &p.expiration);
    s(buf, &p.message_id);
    if let Some(v) = p.timestamp {
        buf.put_u64(v);
    }
    s(buf, &p.kind);
    s(buf, &p.user_id);
    s(buf, &p.app_id);
    s(buf, &p.cluster_id);
}

/// Parses the flags word(s) and the present properties.
pub(super) fn parse_properties<'a>(p: &Bytes, i: &'a [u8]) -> PResult<'a, BasicProperties> {
    let mut out = BasicProperties::default();
    let (rest, ()) = parse_properties_into(p, i, &mut out)?;
    Ok((rest, out))
}

/// Parses the flags word(s) and the present properties into `out`, which is all `None`.
/// Filling the caller's value in place matters: `BasicProperties` is about 380 bytes, and
/// returning it through `Result` layers costs a copy per layer on the publish path.
///
/// Basic has 14 properties, so a continuation word may only carry further continuation
/// bits; bit 1 of the first word (no property) is ignored, as RabbitMQ does.
#[inline]
pub(super) fn parse_properties_into<'a>(
    p: &Bytes,
    i: &'a [u8],
    out: &mut BasicProperties,
) -> PResult<'a, ()> {
    let (mut i, flags) = be_u16(i)?;
    let mut more = flags & CONTINUATION != 0;
    while more {
        let (r, extra) = be_u16(i)?;
        if extra & !CONTINUATION != 0 {
            return fail(FrameError::Syntax(
                "property flags name a property the basic class does not have",
            ));
        }
        more = extra & CONTINUATION != 0;
        i = r;
    }
    if flags & !(CONTINUATION | 2) == 0 {
        return Ok((i, ()));
    }
    macro_rules! opt {
        ($bit:expr, $parse:expr) => {
            if flags & $bit != 0 {
                let (r, v) = $parse?;
                i = r;
                Some(v)
            } else {
                None
            }
        };
    }
    use nom::number::complete::{be_u8, be_u64};
    out.content_type = opt!(CONTENT_TYPE, wire::short_str(p, i));
    out.content_encoding = opt!(CONTENT_ENCODING, wire::short_str(p, i));
    out.headers = opt!(HEADERS, types::parse_table(p, i, 1));
    out.delivery_mode = opt!(DELIVERY_MODE, be_u8(i));
    out.priority = opt!(PRIORITY, be_u8(i));
    out.correlation_id = opt!(CORRELATION_ID, wire::short_str(p, i));
    out.reply_to = opt!(REPLY_TO, wire::short_str(p, i));
    out.expiration = opt!(EXPIRATION, wire::short_str(p, i));
    out.message_id = opt!(MESSAGE_ID, wire::short_str(p, i));
    out.timestamp = opt!(TIMESTAMP, be_u64(i));
    out.kind = opt!(KIND, wire::short_str(p, i));
    out.user_id = opt!(USER_ID, wire::short_str(p, i));
    out.app_id = opt!(APP_ID, wire::short_str(p, i));
    out.cluster_id = opt!(CLUSTER_ID, wire::short_str(p, i));
    Ok((i, ()))
}

#[cfg(test)]
mod tests {
    use super::super::types::FieldValue;
    use super::*;

    fn s(v: &'static str) -> Option<ShortStr> {
        Some(ShortStr::from_static(v))
    }

    fn all() -> BasicProperties {
        BasicProperties {
            content_type: s("text/plain"),
            content_encoding: s("gzip"),
            headers: Some(FieldTable(vec![(
                ShortStr::from_static("x"),
                FieldValue::I32(1),
            )])),
            delivery_mode: Some(2),
            priority: Some(9),
            correlation_id: s("c"),
            reply_to: s("r"),
            expiration: s("60000"),
            message_id: s("m"),
            timestamp: Some(1_700_000_000),
            kind: s("k"),
            user_id: s("guest"),
            app_id: s("a"),
            cluster_id: s("cl"),
        }
    }

    #[test]
    fn all_fourteen_round_trip() {
        let p = all();
        assert_eq!(p.flags(), 0xfffc);
        let mut buf = BytesMut::new();
        encode_properties(&p, &mut buf);
        assert_eq!(buf.len(), p.encoded_len());
        assert_eq!(decode_properties(&buf.freeze()), Ok(p));
    }

    #[test]
    fn empty_is_a_zero_flags_word() {
        let mut buf = BytesMut::new();
        encode_properties(&BasicProperties::default(), &mut buf);
        assert_eq!(&buf[..], b"\x00\x00");
        assert_eq!(
            decode_properties(&buf.freeze()),
            Ok(BasicProperties::default())
        );
    }

    #[test]
    fn known_bytes() {
        // content-type "a" + delivery-mode 2.
        let wire = Bytes::from_static(b"\x90\x00\x01a\x02");
        let p = decode_properties(&wire).expect("decodes");
        assert_eq!(p.content_type, s("a"));
        assert_eq!(p.delivery_mode, Some(2));
        assert!(p.is_persistent());
        let mut buf = BytesMut::new();
        encode_properties(&p, &mut buf);
        assert_eq!(buf.freeze(), wire);
    }

    #[test]
    fn continuation_words() {
        // delivery-mode present, continuation set, then an empty continuation word.
        let wire = Bytes::from_static(b"\x10\x01\x00\x00\x01");
        assert_eq!(
            decode_properties(&wire).map(|p| p.delivery_mode),
            Ok(Some(1))
        );
        let bad = Bytes::from_static(b"\x00\x01\x80\x00");
        assert!(matches!(
            decode_properties(&bad),
            Err(FrameError::Syntax(_))
        ));
    }

    #[test]
    fn truncated_and_trailing() {
        assert_eq!(
            decode_properties(&Bytes::from_static(b"\x80\x00\x05ab")),
            Err(FrameError::Truncated("basic properties"))
        );
        assert!(matches!(
            decode_properties(&Bytes::from_static(b"\x00\x00\x00")),
            Err(FrameError::TrailingBytes { .. })
        ));
    }
}
