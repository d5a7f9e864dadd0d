//! Basic-class content properties (the content header's property list) and their codec.
//!
//! On the wire: a 16-bit property-flags word (bit 15 = content-type ... bit 2 = cluster-id,
//! bit 0 = another flags word follows), then each present property in spec order.
//!
//! Two types, after RabbitMQ's `properties_bin`:
//! - [`Properties`]: the property list as it came off the wire, validated when the content
//!   header was decoded (so malformed lists are refused at publish, with the same error as a
//!   full decode) and otherwise left encoded. This is what a message carries: deliveries and
//!   returns write the bytes back unchanged, storage keeps them as they are, and the broker
//!   reads what it needs on every publish (delivery-mode, user-id) straight from the bytes.
//! - [`BasicProperties`]: the 14 properties as values, from [`Properties::decode`] when
//!   someone needs them all (management), or to build a [`Properties`] from values.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::be_u16;

use super::error::FrameError;
use super::small::SmallBytes;
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

/// Property lists of at most this many bytes are held inside the [`Properties`] value (no
/// reference count to update when it is cloned or dropped); longer ones are zero-copy slices
/// of the read buffer. 62 covers a content type, delivery mode, priority and a UUID
/// correlation id, and keeps `Properties` at 64 bytes.
pub const PROPERTIES_INLINE: usize = 62;

/// The wire type of one property.
#[derive(Clone, Copy)]
enum Kind {
    Short,
    Table,
    Octet,
    LongLong,
}

/// The flag bits of the short-string properties.
const SHORT_STRINGS: u16 = CONTENT_TYPE
    | CONTENT_ENCODING
    | CORRELATION_ID
    | REPLY_TO
    | EXPIRATION
    | MESSAGE_ID
    | KIND
    | USER_ID
    | APP_ID
    | CLUSTER_ID;
/// The flag bits of the one-octet properties.
const OCTETS: u16 = DELIVERY_MODE | PRIORITY;
// Short strings, octets, the table and the timestamp are each of the 14 properties once.
const _: () = assert!(
    SHORT_STRINGS | OCTETS | HEADERS | TIMESTAMP == 0xfffc
        && (SHORT_STRINGS & OCTETS) | ((SHORT_STRINGS | OCTETS) & (HEADERS | TIMESTAMP)) == 0
);

/// The properties in wire order: flag bit and type.
const LAYOUT: [(u16, Kind); 14] = [
    (CONTENT_TYPE, Kind::Short),
    (CONTENT_ENCODING, Kind::Short),
    (HEADERS, Kind::Table),
    (DELIVERY_MODE, Kind::Octet),
    (PRIORITY, Kind::Octet),
    (CORRELATION_ID, Kind::Short),
    (REPLY_TO, Kind::Short),
    (EXPIRATION, Kind::Short),
    (MESSAGE_ID, Kind::Short),
    (TIMESTAMP, Kind::LongLong),
    (KIND, Kind::Short),
    (USER_ID, Kind::Short),
    (APP_ID, Kind::Short),
    (CLUSTER_ID, Kind::Short),
];

/// A content header's property list in its wire encoding: the flags word(s), then the present
/// properties. Cheap to clone and move, validated on construction, decoded on demand.
///
/// Invariant: the bytes are a well-formed basic property list that fills them exactly (every
/// constructor checks, or encodes it itself), so [`Properties::decode`] cannot fail.
#[derive(Clone)]
pub struct Properties(SmallBytes<PROPERTIES_INLINE>);

impl Properties {
    /// No properties: a zero flags word.
    pub const EMPTY: Properties = Properties(SmallBytes::from_static(b"\x00\x00"));

    /// Checks that `raw` is a well-formed property list (as [`decode_properties`] would,
    /// with the same error) and keeps it, copied inline when short.
    pub fn from_bytes(raw: Bytes) -> Result<Properties, FrameError> {
        validate("basic properties", &raw)?;
        Ok(Properties(SmallBytes::from_bytes(raw)))
    }

    /// Sets the bytes to `raw`, a list that [`validate`] accepted, copied into this value's
    /// own storage; `false` (unchanged) when it is longer than [`PROPERTIES_INLINE`].
    #[inline]
    pub(super) fn set_validated_inline(&mut self, raw: &[u8]) -> bool {
        self.0.set_inline(raw)
    }

    /// Wraps `raw`, a list that [`validate`] accepted, as a shared slice.
    pub(super) fn from_validated_shared(raw: Bytes) -> Properties {
        Properties(SmallBytes::from_bytes(raw))
    }

    /// The encoded list, flags word first: what a content header frame carries after the body
    /// size.
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The encoded list as a `Bytes` (for storage): shared when it is a slice, one small
    /// allocation when it is held inline.
    pub fn to_bytes(&self) -> Bytes {
        self.0.to_bytes()
    }

    /// Bytes of the encoded list.
    #[inline]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no property is present (the flags word says none).
    pub fn is_empty(&self) -> bool {
        self.flags() & !(CONTINUATION | 2) == 0
    }

    /// The first property-flags word.
    #[inline]
    pub fn flags(&self) -> u16 {
        match self.as_bytes() {
            [a, b, ..] => u16::from_be_bytes([*a, *b]),
            _ => 0,
        }
    }

    /// The delivery-mode property (1 transient, 2 persistent), read from the bytes.
    #[inline]
    pub fn delivery_mode(&self) -> Option<u8> {
        let raw = self.as_bytes();
        raw.get(field_offset(raw, DELIVERY_MODE)?).copied()
    }

    /// True when delivery-mode is 2 (persistent).
    #[inline]
    pub fn is_persistent(&self) -> bool {
        self.delivery_mode() == Some(2)
    }

    /// The priority property, read from the bytes.
    #[inline]
    pub fn priority(&self) -> Option<u8> {
        let raw = self.as_bytes();
        raw.get(field_offset(raw, PRIORITY)?).copied()
    }

    /// The user-id property, read from the bytes without copying.
    pub fn user_id(&self) -> Option<&str> {
        let raw = self.as_bytes();
        let (&len, rest) = raw.get(field_offset(raw, USER_ID)?..)?.split_first()?;
        std::str::from_utf8(rest.get(..usize::from(len))?).ok()
    }

    /// The reply-to property, read from the bytes without copying.
    pub fn reply_to(&self) -> Option<&str> {
        let raw = self.as_bytes();
        let (&len, rest) = raw.get(field_offset(raw, REPLY_TO)?..)?.split_first()?;
        std::str::from_utf8(rest.get(..usize::from(len))?).ok()
    }

    /// The expiration property (a per-message TTL in milliseconds, as text), read from the
    /// bytes without copying; `None` when absent or not UTF-8.
    pub fn expiration(&self) -> Option<&str> {
        let raw = self.as_bytes();
        let (&len, rest) = raw.get(field_offset(raw, EXPIRATION)?..)?.split_first()?;
        std::str::from_utf8(rest.get(..usize::from(len))?).ok()
    }

    /// The headers table, decoded now (the headers exchange asks for it; nothing else on the
    /// publish path does).
    pub fn headers(&self) -> Option<FieldTable> {
        let at = field_offset(self.as_bytes(), HEADERS)?;
        self.parse(
            |p, raw| match types::parse_table(p, raw.get(at..).unwrap_or_default(), 1) {
                Ok((_, table)) => Ok(table),
                Err(_) => Err(FrameError::Truncated("basic properties")),
            },
        )
    }

    /// All properties as values.
    pub fn decode(&self) -> BasicProperties {
        self.parse(|p, raw| finish("basic properties", parse_properties(p, raw)))
            .unwrap_or_default()
    }

    /// Runs a decoder over the bytes with a `Bytes` to slice long strings from: the shared
    /// buffer when there is one; for inline bytes, first none at all (short strings are copied
    /// anyway), then, only if a long string or table value needs one, a copy. `None`, with a
    /// debug assertion, if the invariant were ever broken; never a panic.
    fn parse<T>(&self, f: impl Fn(&Bytes, &[u8]) -> Result<T, FrameError>) -> Option<T> {
        let r = match &self.0 {
            SmallBytes::Shared(b) => f(b, b),
            SmallBytes::Inline { .. } => {
                let raw = self.as_bytes();
                f(&Bytes::new(), raw).or_else(|_| {
                    let copy = Bytes::copy_from_slice(raw);
                    f(&copy, &copy)
                })
            }
        };
        debug_assert!(
            r.is_ok(),
            "invariant: validated properties decode: {:?}",
            r.as_ref().err()
        );
        r.ok()
    }
}

impl Default for Properties {
    fn default() -> Self {
        Properties::EMPTY
    }
}

/// Equal when the encodings are: what a consumer would receive.
impl PartialEq for Properties {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Properties {}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Properties")
            .field("bytes", &self.as_bytes())
            .field("decoded", &self.decode())
            .finish()
    }
}

/// Encodes values the program made. The values must be within what the wire allows, as
/// [`BasicProperties`]' types ensure except for one thing: header tables nested deeper than
/// [`types::MAX_NESTING`], which no peer (and not this codec) would accept. For values from
/// outside (the management API), use [`Properties::encode`].
impl From<&BasicProperties> for Properties {
    fn from(p: &BasicProperties) -> Self {
        let mut buf = BytesMut::with_capacity(p.encoded_len());
        put_properties(p, &mut buf);
        Properties(SmallBytes::from_bytes(buf.freeze()))
    }
}

impl Properties {
    /// Encodes `p` and checks the result as a received list is checked: an error (502, too
    /// deep) for header tables nested deeper than the codec accepts, which must not be stored
    /// or delivered.
    pub fn encode(p: &BasicProperties) -> Result<Properties, FrameError> {
        let props = Properties::from(p);
        validate("basic properties", props.as_bytes())?;
        Ok(props)
    }
}

impl From<BasicProperties> for Properties {
    fn from(p: BasicProperties) -> Self {
        Properties::from(&p)
    }
}

/// Checks that `raw` is exactly one well-formed property list: the same checks in the same
/// order as a full decode, so the same [`FrameError`] (with `what` as the context), but
/// building nothing and allocating nothing.
#[inline]
pub(super) fn validate(what: &'static str, raw: &[u8]) -> Result<(), FrameError> {
    finish(what, check_properties(raw))
}

/// Where the property `want` (one flag bit) starts in a validated list, if present. Skips the
/// properties before it by their length prefixes, without checking them again.
fn field_offset(raw: &[u8], want: u16) -> Option<usize> {
    let (head, _) = raw.split_first_chunk::<2>()?;
    let flags = u16::from_be_bytes(*head);
    if flags & want == 0 {
        return None;
    }
    let mut at = 2;
    let mut word = flags;
    // Each continuation word takes 2 bytes, so this ends by the end of `raw`.
    while word & CONTINUATION != 0 {
        let w = raw.get(at..)?.first_chunk::<2>()?;
        word = u16::from_be_bytes(*w);
        at += 2;
    }
    for (bit, kind) in LAYOUT {
        if bit == want {
            return Some(at);
        }
        if flags & bit != 0 {
            let here = raw.get(at..)?;
            at += match kind {
                Kind::Short => 1 + usize::from(*here.first()?),
                Kind::Table => {
                    let len = u32::from_be_bytes(*here.first_chunk::<4>()?);
                    4 + usize::try_from(len).ok()?
                }
                Kind::Octet => 1,
                Kind::LongLong => 8,
            };
        }
    }
    None
}

/// The walk behind [`validate`]: flags word(s), then each present property checked as
/// [`parse_properties_into`] would parse it.
fn check_properties(i: &[u8]) -> PResult<'_, ()> {
    let (i, flags) = flags_words(i)?;
    let mut i = i;
    // Only the set bits, highest (first on the wire) first: most lists have two or three
    // properties of the fourteen.
    let mut present = flags & !(CONTINUATION | 2);
    while present != 0 {
        let bit = 0x8000 >> present.leading_zeros();
        present &= !bit;
        i = if bit & SHORT_STRINGS != 0 {
            wire::short_str_slice(i)?.0
        } else if bit & OCTETS != 0 {
            wire::fixed::<1>(i)?.0
        } else if bit == HEADERS {
            types::check_table(i, 1)?.0
        } else {
            wire::fixed::<8>(i)?.0
        };
    }
    Ok((i, ()))
}

/// The first flags word, after reading any continuation words. Basic has 14 properties, so a
/// continuation word may only carry further continuation bits; bit 1 of the first word (no
/// property) is ignored, as RabbitMQ does.
#[inline]
fn flags_words(i: &[u8]) -> PResult<'_, u16> {
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
    Ok((i, flags))
}

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

/// Decodes a flags word and properties that fill all of `payload`. Long strings are slices of
/// it. [`Properties::from_bytes`] checks the same bytes without decoding them.
pub fn decode_properties(payload: &Bytes) -> Result<BasicProperties, FrameError> {
    finish("basic properties", parse_properties(payload, payload))
}

/// [`encode_properties`] without the reservation, for callers that reserved already.
fn put_properties(p: &BasicProperties, buf: &mut BytesMut) {
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
fn parse_properties<'a>(p: &Bytes, i: &'a [u8]) -> PResult<'a, BasicProperties> {
    let mut out = BasicProperties::default();
    let (rest, ()) = parse_properties_into(p, i, &mut out)?;
    Ok((rest, out))
}

/// Parses the flags word(s) and the present properties into `out`, which is all `None`.
#[inline]
fn parse_properties_into<'a>(p: &Bytes, i: &'a [u8], out: &mut BasicProperties) -> PResult<'a, ()> {
    let (mut i, flags) = flags_words(i)?;
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
    fn properties_answer_from_the_bytes() {
        let p = Properties::from(all());
        assert_eq!(p.decode(), all());
        assert_eq!(p.flags(), 0xfffc);
        assert_eq!(p.delivery_mode(), Some(2));
        assert!(p.is_persistent() && !p.is_empty());
        assert_eq!(p.user_id(), Some("guest"));
        assert_eq!(p.headers(), all().headers);
        assert!(!p.0.is_inline(), "{} bytes", p.len());

        let e = Properties::default();
        assert_eq!((e.as_bytes(), e.flags()), (&b"\x00\x00"[..], 0));
        assert!(e.is_empty() && e.0.is_inline());
        assert_eq!(
            (e.delivery_mode(), e.user_id(), e.headers()),
            (None, None, None)
        );
        assert_eq!(e.decode(), BasicProperties::default());

        // Continuation words are skipped by the accessors too.
        let c =
            Properties::from_bytes(Bytes::from_static(b"\x10\x11\x00\x01\x00\x00\x01\x05guest"))
                .expect("valid");
        assert_eq!((c.delivery_mode(), c.user_id()), (Some(1), Some("guest")));
        assert!(!c.is_persistent());
        assert_eq!(std::mem::size_of::<Properties>(), 64);
    }

    #[test]
    fn encode_refuses_what_a_peer_would_refuse() {
        assert_eq!(Properties::encode(&all()).map(|p| p.decode()), Ok(all()));
        let mut deep = FieldTable::new();
        for _ in 0..types::MAX_NESTING {
            deep = FieldTable(vec![(ShortStr::from_static("n"), FieldValue::Table(deep))]);
        }
        let too_deep = BasicProperties {
            headers: Some(deep),
            ..Default::default()
        };
        let e = Properties::encode(&too_deep).unwrap_err();
        assert_eq!(e, FrameError::TooDeep(types::MAX_NESTING));
        assert_eq!(e.reply_code().code(), 502);
    }

    #[test]
    fn inline_properties_with_long_values_decode() {
        // A 45-byte message id fits the 62-byte inline list but not a ShortStr's 38.
        let p = BasicProperties {
            message_id: Some(ShortStr::try_from("m".repeat(45)).expect("short")),
            headers: Some(FieldTable(vec![(
                ShortStr::from_static("k"),
                FieldValue::LongStr("v".into()),
            )])),
            ..Default::default()
        };
        let props = Properties::from(&p);
        assert!(props.0.is_inline());
        assert_eq!(props.decode(), p);
        assert_eq!(props.headers(), p.headers);
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
