//! AMQP value types: short and long strings, field values, field tables.
//!
//! Field-table value tags follow RabbitMQ's errata, not the 0-9-1 spec's table, because that is
//! what real clients send (see `amqp-spec/README.md`). Strings are `Bytes` slices so a decoded
//! frame can borrow from the read buffer without copying.

use bytes::Bytes;
use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;

/// The longest short string the wire can carry: its length is one octet.
pub const SHORT_STR_MAX: usize = 255;

/// An AMQP short string: at most 255 bytes of UTF-8.
///
/// Invariant: the bytes are valid UTF-8 and at most [`SHORT_STR_MAX`] long. Every constructor
/// checks this, so `as_str` never fails.
#[derive(Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShortStr(Bytes);

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
    pub const EMPTY: ShortStr = ShortStr(Bytes::new());

    /// A short string from a constant. Panics if `s` is longer than 255 bytes, which for a
    /// literal is a programming error caught by the first test that runs it.
    pub const fn from_static(s: &'static str) -> Self {
        assert!(
            s.len() <= SHORT_STR_MAX,
            "invariant: static short string <= 255 bytes"
        );
        ShortStr(Bytes::from_static(s.as_bytes()))
    }

    /// Checks length and UTF-8, then wraps without copying.
    pub fn from_bytes(b: Bytes) -> Result<Self, ShortStrError> {
        if b.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(b.len()));
        }
        if std::str::from_utf8(&b).is_err() {
            return Err(ShortStrError::NotUtf8);
        }
        Ok(ShortStr(b))
    }

    /// The string.
    pub fn as_str(&self) -> &str {
        // Every constructor checked UTF-8; fall back to "" rather than panic if that ever broke.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The raw bytes (as they go on the wire, without the length octet).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying buffer, shared.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }
}

impl TryFrom<&str> for ShortStr {
    type Error = ShortStrError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        if s.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(s.len()));
        }
        Ok(ShortStr(Bytes::copy_from_slice(s.as_bytes())))
    }
}

impl TryFrom<String> for ShortStr {
    type Error = ShortStrError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() > SHORT_STR_MAX {
            return Err(ShortStrError::TooLong(s.len()));
        }
        Ok(ShortStr(Bytes::from(s.into_bytes())))
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
