//! AMQP value types: short and long strings, field values, field tables.
//!
//! Field-table value tags follow RabbitMQ's errata, not the 0-9-1 spec's table, because that is
//! what real clients send (see `amqp-spec/README.md`). Short strings are held inline up to
//! [`SHORT_STR_INLINE`] bytes; longer strings, long strings and byte arrays are `Bytes` slices,
//! so a decoded frame borrows from the read buffer without copying.
//!
//! Also the field-table codec ([`encode_table`], [`decode_table`]): every value type of the
//! errata, nested to at most [`MAX_NESTING`] levels so hostile input cannot exhaust the stack.

use bytes::{BufMut, Bytes, BytesMut};
use nom::number::complete::{
    be_f32, be_f64, be_i8, be_i16, be_i32, be_i64, be_u8, be_u16, be_u32, be_u64,
};

use super::error::FrameError;
use super::small::SmallBytes;
use super::wire::{self, PResult, fail, finish};
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// The longest short string the wire can carry: its length is one octet.
pub const SHORT_STR_MAX: usize = 255;

/// Short strings of at most this many bytes are stored inside the [`ShortStr`] itself: exchange
/// names, routing keys, generated queue names (`amq.gen-` + 22) and UUIDs all fit, so cloning
/// and dropping them is a copy, not an atomic reference-count update. 38 keeps a `ShortStr` at
/// 40 bytes, 8 more than the `Bytes` it would otherwise be.
pub const SHORT_STR_INLINE: usize = 38;

/// An AMQP short string: at most 255 bytes of UTF-8.
///
/// Invariant: the bytes are valid UTF-8 and at most [`SHORT_STR_MAX`] long. Every constructor
/// checks this, so `as_str` never fails. Up to [`SHORT_STR_INLINE`] bytes are held inline;
/// longer strings are zero-copy `Bytes` slices (of the read buffer, when decoded).
#[derive(Clone)]
pub struct ShortStr(SmallBytes<SHORT_STR_INLINE>);

impl Default for ShortStr {
    fn default() -> Self {
        ShortStr::EMPTY
    }
}

// Equality and order are the bytes', whichever way they are stored.
impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ShortStr {}

impl PartialOrd for ShortStr {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ShortStr {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Hashes as the `str` it holds, so maps keyed by `ShortStr` can be queried with `&str`
/// (`Borrow<str>` requires equal hashes). Written out as `str`'s own `Hash` does it (`write_str`:
/// the bytes, then 0xff), from the bytes: going through [`ShortStr::as_str`] would check UTF-8
/// again on every lookup.
impl std::hash::Hash for ShortStr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

/// Why a value cannot be a [`ShortStr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShortStrError {
    /// More than 255 bytes.
    #[error("short string of {0} bytes is longer than 255")]
    TooLong(usize),
    /// Not UTF-8.
    #[error("short string is not valid UTF-8")]
    NotUtf8,
}

impl ShortStr {
    /// The empty string.
    pub const EMPTY: ShortStr = ShortStr(SmallBytes::EMPTY);

    /// A short string from a constant. Panics if `s` is longer than 255 bytes, which for a
    /// literal is a programming error caught by the first test that runs it.
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= SHORT_STR_MAX,
            "invariant: static short string <= 255 bytes"
        );
        ShortStr(SmallBytes::from_static(s.as_bytes()))
    }

    /// Checks length and UTF-8, then wraps without copying (or copies inline when short).
    pub fn from_bytes(b: Bytes) -> Result<Self, ShortStrError> {
        if b.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(b.len()));
        }
        if std::str::from_utf8(&b).is_err() {
            return Err(ShortStrError::NotUtf8);
        }
        Ok(ShortStr(SmallBytes::from_bytes(b)))
    }

    /// Length in bytes. Cheaper than `.as_str().len()`, which re-checks UTF-8 (as does
    /// every `Deref` to `str`), so this inherent method is what `s.len()` calls.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string (without the UTF-8 check `Deref` would do).
    pub fn is_empty(&self) -> bool {
        self.0.len() == 0
    }

    /// A short string's bytes from the wire (at most 255: one length octet), checked for
    /// UTF-8: inline when short, else a zero-copy slice of `p`, which `s` must lie in (an error
    /// when it does not, as when the frame decoder parses in place with an empty `p`).
    #[inline]
    pub(super) fn from_wire(p: &Bytes, s: &[u8]) -> Result<Self, FrameError> {
        let mut v = ShortStr::EMPTY;
        v.set_from_wire(p, s)?;
        Ok(v)
    }

    /// [`ShortStr::from_wire`] into `self`: a short string is written straight into this
    /// value's inline buffer (the method being decoded, in the frame being returned) rather
    /// than built elsewhere and moved in. Always inlined: it runs twice per publish.
    #[inline(always)]
    pub(super) fn set_from_wire(&mut self, p: &Bytes, s: &[u8]) -> Result<(), FrameError> {
        // Names and routing keys are nearly always ASCII; only other text needs the full check.
        if !super::small::is_ascii_short(s) && std::str::from_utf8(s).is_err() {
            return Err(FrameError::NotUtf8(""));
        }
        if self.0.set_inline(s) {
            return Ok(());
        }
        match SmallBytes::from_slice_of(p, s) {
            Some(v) => {
                self.0 = v;
                Ok(())
            }
            None => Err(FrameError::Syntax("field outside its frame")),
        }
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // Every constructor checked UTF-8; fall back to "" rather than panic if that ever broke.
        std::str::from_utf8(self.0.as_slice()).unwrap_or_default()
    }

    /// The raw bytes (as they go on the wire, without the length octet).
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The string as a `Bytes`: shared when it is a slice, copied when it is held inline.
    pub fn into_bytes(self) -> Bytes {
        self.0.into_bytes()
    }

    /// True when held inline (no reference count); for tests of the decoder.
    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        self.0.is_inline()
    }
}

impl TryFrom<&str> for ShortStr {
    type Error = ShortStrError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(s.len()));
        }
        Ok(ShortStr(SmallBytes::inline(s.as_bytes()).unwrap_or_else(
            || SmallBytes::Shared(Bytes::copy_from_slice(s.as_bytes())),
        )))
    }
}

impl TryFrom<String> for ShortStr {
    type Error = ShortStrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(s.len()));
        }
        Ok(ShortStr(SmallBytes::from_bytes(Bytes::from(
            s.into_bytes(),
        ))))
    }
}

impl Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for ShortStr {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortStr {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for ShortStr {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An AMQP long string: up to 2^32-1 arbitrary bytes (not necessarily UTF-8).
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LongStr(pub Bytes);

impl LongStr {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The bytes as UTF-8, if they are.
    pub fn to_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }
}

impl Deref for LongStr {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Bytes> for LongStr {
    fn from(b: Bytes) -> Self {
        LongStr(b)
    }
}

impl From<&str> for LongStr {
    fn from(s: &str) -> Self {
        LongStr(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for LongStr {
    fn from(s: String) -> Self {
        LongStr(Bytes::from(s.into_bytes()))
    }
}

impl From<Vec<u8>> for LongStr {
    fn from(v: Vec<u8>) -> Self {
        LongStr(Bytes::from(v))
    }
}

impl fmt::Debug for LongStr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_str() {
            Some(s) => fmt::Debug::fmt(s, f),
            None => write!(f, "<{} bytes>", self.0.len()),
        }
    }
}

/// An AMQP decimal: `value / 10^scale`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// Number of decimal digits after the point.
    pub scale: u8,
    /// The unscaled value.
    pub value: u32,
}

/// One value in a field table or array, with RabbitMQ's errata type tags.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldValue {
    /// `t`: boolean.
    Bool(bool),
    /// `b`: signed 8-bit.
    I8(i8),
    /// `B`: unsigned 8-bit.
    U8(u8),
    /// `s`: signed 16-bit.
    I16(i16),
    /// `u`: unsigned 16-bit.
    U16(u16),
    /// `I`: signed 32-bit.
    I32(i32),
    /// `i`: unsigned 32-bit.
    U32(u32),
    /// `l`: signed 64-bit.
    I64(i64),
    /// `f`: 32-bit float.
    F32(f32),
    /// `d`: 64-bit float.
    F64(f64),
    /// `D`: decimal.
    Decimal(Decimal),
    /// `S`: long string.
    LongStr(LongStr),
    /// `x`: byte array.
    ByteArray(Bytes),
    /// `A`: array of values.
    Array(Vec<FieldValue>),
    /// `T`: timestamp, seconds since the epoch.
    Timestamp(u64),
    /// `F`: nested table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
}

impl FieldValue {
    /// The value as an integer, when it is one of the integer types.
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            FieldValue::I8(v) => v.into(),
            FieldValue::U8(v) => v.into(),
            FieldValue::I16(v) => v.into(),
            FieldValue::U16(v) => v.into(),
            FieldValue::I32(v) => v.into(),
            FieldValue::U32(v) => v.into(),
            FieldValue::I64(v) => v,
            FieldValue::Timestamp(v) => i64::try_from(v).ok()?,
            _ => return None,
        })
    }

    /// The value as text, when it is a long string holding UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongStr(s) => s.to_str(),
            _ => None,
        }
    }

    /// The value as a boolean, when it is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            FieldValue::Bool(b) => Some(*b),
            _ => None,
        }
    }
}

/// An AMQP field table: named values, in the order they were sent.
///
/// A `Vec` rather than a map: tables are small, order is kept for exact re-encoding, and lookups
/// are rare outside declare arguments and the headers exchange.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldTable(pub Vec<(ShortStr, FieldValue)>);

impl FieldTable {
    /// An empty table.
    pub const fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value under `key`, if any (the first, should a peer send a key twice).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing an existing entry in place.
    pub fn insert(&mut self, key: ShortStr, value: FieldValue) {
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Removes and returns the value under `key`.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let pos = self.0.iter().position(|(k, _)| k.as_str() == key)?;
        Some(self.0.remove(pos).1)
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&ShortStr, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<(ShortStr, FieldValue)>> for FieldTable {
    fn from(v: Vec<(ShortStr, FieldValue)>) -> Self {
        FieldTable(v)
    }
}

/// The deepest nesting of field tables and arrays the decoder accepts (the top-level table
/// is level 1). Real clients nest two or three levels; the cap keeps recursion bounded.
pub const MAX_NESTING: usize = 64;

/// Writes `t` as the wire carries it: a u32 byte length, then each entry as short-string
/// name, type tag and value.
pub fn encode_table(t: &FieldTable, buf: &mut BytesMut) {
    buf.reserve(t.encoded_len());
    put_table(t, buf);
}

/// Decodes one field table that fills all of `payload`, u32 length prefix included.
/// Strings and byte arrays are slices of `payload`.
pub fn decode_table(payload: &Bytes) -> Result<FieldTable, FrameError> {
    finish("field table", parse_table(payload, payload, 1))
}

impl FieldTable {
    /// The table with its strings and byte arrays moved into one allocation of its own.
    ///
    /// A decoded table's values are slices of the read buffer they came in, and a slice keeps
    /// the whole buffer (up to 64 KiB) alive: a table kept for a connection's or a binding's life
    /// must not pin one. Re-encoding gives one buffer of the table's size.
    pub fn detached(&self) -> FieldTable {
        let mut buf = BytesMut::with_capacity(self.encoded_len());
        put_table(self, &mut buf);
        decode_table(&buf.freeze()).unwrap_or_else(|_| self.clone())
    }

    /// Bytes this table takes on the wire, its u32 length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .0
            .iter()
            .map(|(k, v)| 1 + k.len() + v.encoded_len())
            .sum::<usize>()
    }
}

impl FieldValue {
    /// The errata type tag this value is written with.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal(_) => b'D',
            FieldValue::LongStr(_) => b'S',
            FieldValue::ByteArray(_) => b'x',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
        }
    }

    /// Bytes this value takes on the wire, its type tag included.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => 1,
            FieldValue::I16(_) | FieldValue::U16(_) => 2,
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => 4,
            FieldValue::I64(_) | FieldValue::F64(_) | FieldValue::Timestamp(_) => 8,
            FieldValue::Decimal(_) => 5,
            FieldValue::LongStr(s) => 4 + s.len(),
            FieldValue::ByteArray(b) => 4 + b.len(),
            FieldValue::Array(a) => 4 + a.iter().map(FieldValue::encoded_len).sum::<usize>(),
            FieldValue::Table(t) => t.encoded_len(),
            FieldValue::Void => 0,
        }
    }
}

/// Writes a table without reserving: the length prefix is back-filled once the entries are
/// written, so nested tables cost one pass.
pub(super) fn put_table(t: &FieldTable, buf: &mut BytesMut) {
    let at = buf.len();
    buf.put_u32(0);
    for (k, v) in &t.0 {
        wire::put_short_str(buf, k);
        put_value(v, buf);
    }
    backfill_len(buf, at);
}

fn put_array(a: &[FieldValue], buf: &mut BytesMut) {
    let at = buf.len();
    buf.put_u32(0);
    for v in a {
        put_value(v, buf);
    }
    backfill_len(buf, at);
}

/// Writes the length of what follows the u32 placeholder at `at`.
fn backfill_len(buf: &mut BytesMut, at: usize) {
    let len = wire::len_u32(buf.len() - at - 4);
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_value(v: &FieldValue, buf: &mut BytesMut) {
    buf.put_u8(v.tag());
    match v {
        FieldValue::Bool(b) => buf.put_u8(u8::from(*b)),
        FieldValue::I8(x) => buf.put_i8(*x),
        FieldValue::U8(x) => buf.put_u8(*x),
        FieldValue::I16(x) => buf.put_i16(*x),
        FieldValue::U16(x) => buf.put_u16(*x),
        FieldValue::I32(x) => buf.put_i32(*x),
        FieldValue::U32(x) => buf.put_u32(*x),
        FieldValue::I64(x) => buf.put_i64(*x),
        FieldValue::F32(x) => buf.put_f32(*x),
        FieldValue::F64(x) => buf.put_f64(*x),
        FieldValue::Decimal(d) => {
            buf.put_u8(d.scale);
            buf.put_u32(d.value);
        }
        FieldValue::LongStr(s) => wire::put_long_str(buf, s),
        FieldValue::ByteArray(b) => {
            buf.put_u32(wire::len_u32(b.len()));
            buf.put_slice(b);
        }
        FieldValue::Array(a) => put_array(a, buf),
        FieldValue::Timestamp(t) => buf.put_u64(*t),
        FieldValue::Table(t) => put_table(t, buf),
        FieldValue::Void => {}
    }
}

/// Parses a table (u32 length, then entries) at nesting level `depth` (1 = top level).
/// The declared length must fit in the remaining input before any entry is looked at.
pub(super) fn parse_table<'a>(p: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldTable> {
    if depth > MAX_NESTING {
        return fail(FrameError::TooDeep(MAX_NESTING));
    }
    let (rest, mut body) = wire::long_data(i)?;
    let mut entries = Vec::new();
    while !body.is_empty() {
        let (r, key) = wire::short_str(p, body)?;
        let (r, value) = parse_value(p, r, depth)?;
        entries.push((key, value));
        body = r;
    }
    Ok((rest, FieldTable(entries)))
}

/// Walks a table like [`parse_table`], with the same checks in the same order and so the
/// same errors, but builds nothing: content headers are validated with it at decode time and
/// their tables decoded only when someone asks (the headers exchange, management).
pub(super) fn check_table(i: &[u8], depth: usize) -> PResult<'_, ()> {
    if depth > MAX_NESTING {
        return fail(FrameError::TooDeep(MAX_NESTING));
    }
    let (rest, mut body) = wire::long_data(i)?;
    while !body.is_empty() {
        let (r, _key) = wire::short_str_slice(body)?;
        let (r, ()) = check_value(r, depth)?;
        body = r;
    }
    Ok((rest, ()))
}

/// [`parse_array`] without building anything, as [`check_table`].
fn check_array(i: &[u8], depth: usize) -> PResult<'_, ()> {
    if depth > MAX_NESTING {
        return fail(FrameError::TooDeep(MAX_NESTING));
    }
    let (rest, mut body) = wire::long_data(i)?;
    while !body.is_empty() {
        let (r, ()) = check_value(body, depth)?;
        body = r;
    }
    Ok((rest, ()))
}

/// [`parse_value`] without building anything, as [`check_table`].
fn check_value(i: &[u8], depth: usize) -> PResult<'_, ()> {
    let (i, tag) = be_u8(i)?;
    let skip = |n: usize| match i.get(n..) {
        Some(rest) => Ok((rest, ())),
        None => Err(nom::Err::Error(wire::WireError::Short)),
    };
    match tag {
        b't' | b'b' | b'B' => skip(1),
        b's' | b'u' => skip(2),
        b'I' | b'i' | b'f' => skip(4),
        b'l' | b'L' | b'd' | b'T' => skip(8),
        b'D' => skip(5),
        b'S' | b'x' => wire::long_data(i).map(|(i, _)| (i, ())),
        b'A' => check_array(i, depth + 1),
        b'F' => check_table(i, depth + 1),
        b'V' => Ok((i, ())),
        other => fail(FrameError::UnknownFieldType(other)),
    }
}

fn parse_array<'a>(p: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, Vec<FieldValue>> {
    if depth > MAX_NESTING {
        return fail(FrameError::TooDeep(MAX_NESTING));
    }
    let (rest, mut body) = wire::long_data(i)?;
    let mut values = Vec::new();
    while !body.is_empty() {
        let (r, value) = parse_value(p, body, depth)?;
        values.push(value);
        body = r;
    }
    Ok((rest, values))
}

/// One tagged value inside a table or array at nesting level `depth`.
fn parse_value<'a>(p: &Bytes, i: &'a [u8], depth: usize) -> PResult<'a, FieldValue> {
    let (i, tag) = be_u8(i)?;
    match tag {
        b't' => be_u8(i).map(|(i, v)| (i, FieldValue::Bool(v != 0))),
        b'b' => be_i8(i).map(|(i, v)| (i, FieldValue::I8(v))),
        b'B' => be_u8(i).map(|(i, v)| (i, FieldValue::U8(v))),
        b's' => be_i16(i).map(|(i, v)| (i, FieldValue::I16(v))),
        b'u' => be_u16(i).map(|(i, v)| (i, FieldValue::U16(v))),
        b'I' => be_i32(i).map(|(i, v)| (i, FieldValue::I32(v))),
        b'i' => be_u32(i).map(|(i, v)| (i, FieldValue::U32(v))),
        // RabbitMQ reads both `l` and the spec's `L` as signed 64-bit (errata, issue 1093).
        b'l' | b'L' => be_i64(i).map(|(i, v)| (i, FieldValue::I64(v))),
        b'f' => be_f32(i).map(|(i, v)| (i, FieldValue::F32(v))),
        b'd' => be_f64(i).map(|(i, v)| (i, FieldValue::F64(v))),
        b'D' => {
            let (i, f) = wire::fixed::<5>(i)?;
            let value = u32::from_be_bytes([f[1], f[2], f[3], f[4]]);
            Ok((i, FieldValue::Decimal(Decimal { scale: f[0], value })))
        }
        b'S' => wire::long_str(p, i).map(|(i, s)| (i, FieldValue::LongStr(s))),
        b'x' => {
            let (i, b) = wire::long_data(i)?;
            Ok((i, FieldValue::ByteArray(wire::sub_bytes(p, b)?)))
        }
        b'A' => parse_array(p, i, depth + 1).map(|(i, a)| (i, FieldValue::Array(a))),
        b'T' => be_u64(i).map(|(i, v)| (i, FieldValue::Timestamp(v))),
        b'F' => parse_table(p, i, depth + 1).map(|(i, t)| (i, FieldValue::Table(t))),
        b'V' => Ok((i, FieldValue::Void)),
        other => fail(FrameError::UnknownFieldType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_str_hashes_like_the_str_it_holds() {
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        let long = "x".repeat(200);
        for s in [
            "",
            "q",
            "amq.direct",
            "a-routing-key-of-exactly-38-bytes-long",
            &long,
        ] {
            let short = ShortStr::try_from(s).expect("fits");
            assert_eq!(state.hash_one(&short), state.hash_one(s), "{s:?}");
            let shared = ShortStr::try_from(s.to_string()).expect("fits");
            assert_eq!(state.hash_one(&shared), state.hash_one(s), "{s:?}");
            let map: std::collections::HashMap<ShortStr, u8> = [(shared, 1)].into();
            assert_eq!(map.get(s), Some(&1), "found by &str: {s:?}");
        }
    }

    fn key(s: &'static str) -> ShortStr {
        ShortStr::from_static(s)
    }

    #[test]
    fn a_detached_table_is_equal_and_keeps_nothing_of_its_read_buffer() {
        // A table as a client sends it, at the front of a large read buffer.
        let mut buf = BytesMut::with_capacity(64 * 1024);
        encode_table(&every_type(), &mut buf);
        let len = buf.len();
        buf.resize(64 * 1024, 0);
        let read = buf.freeze();
        let table = decode_table(&read.slice(..len)).expect("decodes");
        let detached = table.detached();
        assert_eq!(detached, table);
        let inside = read.as_ptr_range();
        fn slices(t: &FieldTable, out: &mut Vec<*const u8>) {
            for (_, v) in &t.0 {
                match v {
                    FieldValue::LongStr(s) => out.push(s.0.as_ptr()),
                    FieldValue::ByteArray(b) => out.push(b.as_ptr()),
                    FieldValue::Table(t) => slices(t, out),
                    _ => {}
                }
            }
        }
        let (mut before, mut after) = (Vec::new(), Vec::new());
        slices(&table, &mut before);
        slices(&detached, &mut after);
        assert!(
            before.iter().any(|p| inside.contains(p)),
            "decoding slices the read buffer"
        );
        assert!(
            after.iter().all(|p| !inside.contains(p)),
            "the detached table does not"
        );
    }

    fn every_type() -> FieldTable {
        let inner = FieldTable(vec![(key("deep"), FieldValue::Bool(false))]);
        FieldTable(vec![
            (key("t"), FieldValue::Bool(true)),
            (key("b"), FieldValue::I8(-5)),
            (key("B"), FieldValue::U8(250)),
            (key("s"), FieldValue::I16(-300)),
            (key("u"), FieldValue::U16(60000)),
            (key("I"), FieldValue::I32(-70000)),
            (key("i"), FieldValue::U32(4_000_000_000)),
            (key("l"), FieldValue::I64(-5_000_000_000)),
            (key("f"), FieldValue::F32(1.5)),
            (key("d"), FieldValue::F64(-2.25)),
            (
                key("D"),
                FieldValue::Decimal(Decimal {
                    scale: 2,
                    value: 12345,
                }),
            ),
            (key("S"), FieldValue::LongStr(LongStr::from("hello"))),
            (
                key("x"),
                FieldValue::ByteArray(Bytes::from_static(&[0, 255])),
            ),
            (
                key("A"),
                FieldValue::Array(vec![FieldValue::U8(1), FieldValue::Table(inner.clone())]),
            ),
            (key("T"), FieldValue::Timestamp(1_700_000_000)),
            (key("F"), FieldValue::Table(inner)),
            (key("V"), FieldValue::Void),
        ])
    }

    #[test]
    fn short_str_compares_by_content_however_stored() {
        use std::hash::{BuildHasher, RandomState};
        let inline = ShortStr::try_from("abc").expect("short");
        let shared = ShortStr(SmallBytes::Shared(Bytes::from_static(b"abc")));
        assert!(inline.is_inline() && !shared.is_inline());
        assert_eq!(inline, shared);
        assert_eq!(inline.cmp(&shared), std::cmp::Ordering::Equal);
        assert!(shared < ShortStr::from_static("abd"));
        let h = RandomState::new();
        assert_eq!(h.hash_one(&inline), h.hash_one(&shared));
        assert_eq!(h.hash_one(&inline), h.hash_one("abc"));

        let long = "k".repeat(SHORT_STR_INLINE + 1);
        let a = ShortStr::try_from(long.as_str()).expect("short");
        let b = ShortStr::from_bytes(Bytes::from(long.clone())).expect("short");
        assert!(!a.is_inline() && !b.is_inline());
        assert_eq!((a.as_str(), &b), (long.as_str(), &a));
        let edge = ShortStr::try_from("k".repeat(SHORT_STR_INLINE)).expect("short");
        assert!(edge.is_inline());
        assert_eq!(ShortStr::default(), ShortStr::EMPTY);
        assert!(ShortStr::try_from("k".repeat(256)).is_err());
        // Inline up to 38 bytes, for 8 bytes more than a `Bytes`.
        assert_eq!(std::mem::size_of::<ShortStr>(), 40);
    }

    #[test]
    fn every_value_type_round_trips() {
        let t = every_type();
        let mut buf = BytesMut::new();
        encode_table(&t, &mut buf);
        assert_eq!(buf.len(), t.encoded_len());
        assert_eq!(decode_table(&buf.freeze()), Ok(t));
    }

    #[test]
    fn known_bytes() {
        // {"a": 'S' "xy", "n": 'I' 7}
        let wire = b"\x00\x00\x00\x10\x01aS\x00\x00\x00\x02xy\x01nI\x00\x00\x00\x07";
        let t = FieldTable(vec![
            (key("a"), FieldValue::LongStr(LongStr::from("xy"))),
            (key("n"), FieldValue::I32(7)),
        ]);
        let mut buf = BytesMut::new();
        encode_table(&t, &mut buf);
        assert_eq!(&buf[..], &wire[..]);
        assert_eq!(decode_table(&Bytes::from_static(wire)), Ok(t));
    }

    #[test]
    fn capital_l_reads_as_signed_64() {
        let wire = b"\x00\x00\x00\x0b\x01kL\xff\xff\xff\xff\xff\xff\xff\xfe";
        let t = decode_table(&Bytes::from_static(wire)).expect("decodes");
        assert_eq!(t.get("k"), Some(&FieldValue::I64(-2)));
    }

    #[test]
    fn unknown_type_tag_is_a_syntax_error() {
        let wire = b"\x00\x00\x00\x03\x01kZ";
        let e = decode_table(&Bytes::from_static(wire)).unwrap_err();
        assert_eq!(e, FrameError::UnknownFieldType(b'Z'));
        assert_eq!(e.reply_code().code(), 502);
    }

    #[test]
    fn declared_length_must_fit() {
        let wire = b"\x00\x00\x10\x00\x01kV";
        assert_eq!(
            decode_table(&Bytes::from_static(wire)),
            Err(FrameError::Truncated("field table"))
        );
        // An entry that runs past the table's own length, though not past the payload.
        let wire = b"\x00\x00\x00\x03\x01kI\x00\x00\x00\x01";
        assert!(decode_table(&Bytes::from_static(wire)).is_err());
    }

    fn nested(levels: usize) -> FieldTable {
        let mut t = FieldTable::new();
        for _ in 1..levels {
            t = FieldTable(vec![(key("n"), FieldValue::Table(t))]);
        }
        t
    }

    #[test]
    fn nesting_is_capped() {
        let ok = nested(MAX_NESTING);
        let mut buf = BytesMut::new();
        encode_table(&ok, &mut buf);
        assert_eq!(decode_table(&buf.freeze()), Ok(ok));

        let mut buf = BytesMut::new();
        encode_table(&nested(MAX_NESTING + 1), &mut buf);
        assert_eq!(
            decode_table(&buf.freeze()),
            Err(FrameError::TooDeep(MAX_NESTING))
        );
    }

    #[test]
    fn very_deep_hostile_nesting_does_not_overflow_the_stack() {
        // 100k levels of arrays, each `A` + length: far past the cap, small in bytes.
        let levels = 100_000usize;
        let mut v = Vec::new();
        v.extend_from_slice(&(0u32).to_be_bytes()); // patched below
        for l in 0..levels {
            v.push(b'A');
            let remaining = (levels - l - 1) * 5;
            v.extend_from_slice(&u32::try_from(remaining).unwrap_or(0).to_be_bytes());
        }
        let total = u32::try_from(v.len() - 4 + 2).unwrap_or(0);
        let mut wire = total.to_be_bytes().to_vec();
        wire.extend_from_slice(b"\x01k");
        wire.extend_from_slice(&v[4..]);
        let e = decode_table(&Bytes::from(wire)).unwrap_err();
        assert_eq!(e, FrameError::TooDeep(MAX_NESTING));
    }
}
