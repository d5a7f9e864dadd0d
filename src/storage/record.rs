//! The on-disk encoding of storage records and keys.
//!
//! Owns the byte layout that the stores write, and nothing else (no I/O). Every value starts with a
//! schema byte ([`SCHEMA_VERSION`]) so the format can evolve; fields are length-prefixed (`u32`
//! big-endian), booleans are one byte (0 or 1). Decoding is checked: it never panics on any input
//! and reports what was wrong as a [`DecodeError`], which the stores turn into
//! [`StoreError::Corrupt`](super::StoreError::Corrupt) or a quarantine.
//!
//! Keys are built so that different names never collide (every variable part is length-prefixed,
//! since vhost and queue names may contain any UTF-8, including `/`) and so that message ids sort
//! in queue order (big-endian `u64`).
//!
//! Layouts (after the schema byte):
//! - exchange: `vhost name kind auto_delete internal arguments`
//! - queue: `vhost name auto_delete arguments`
//! - binding: `vhost source destination destination_is_exchange routing_key arguments`
//! - message: `exchange routing_key properties` then the body, which runs to the end of the value.

use bytes::Bytes;

use super::{BindingRecord, ExchangeRecord, MessageRecord, MessageView, QueueRecord};

/// The schema byte every encoded value starts with.
pub const SCHEMA_VERSION: u8 = 1;

/// Length of a message key: the id, big-endian.
pub const MESSAGE_KEY_LEN: usize = 8;

/// Suffix byte that turns a message key into its delivered-marker key.
///
/// The marker for id `n` is `n` big-endian followed by this byte, so it sorts right after message
/// `n` and before message `n + 1`: a range scan meets each message, then its marker.
pub const DELIVERED_MARKER: u8 = 1;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

/// What a key in a message area is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKey {
    /// The record of message `id`.
    Message(u64),
    /// The delivered marker of message `id`.
    Delivered(u64),
}

/// The key of message `id`.
pub fn message_key(id: u64) -> [u8; MESSAGE_KEY_LEN] {
    id.to_be_bytes()
}

/// The key of message `id`'s delivered marker.
pub fn delivered_key(id: u64) -> [u8; MESSAGE_KEY_LEN + 1] {
    let mut k = [0u8; MESSAGE_KEY_LEN + 1];
    k[..MESSAGE_KEY_LEN].copy_from_slice(&id.to_be_bytes());
    k[MESSAGE_KEY_LEN] = DELIVERED_MARKER;
    k
}

/// Classifies a key found in a message area; `None` for anything malformed.
pub fn parse_message_key(key: &[u8]) -> Option<MessageKey> {
    let id = u64::from_be_bytes(key.get(..MESSAGE_KEY_LEN)?.try_into().ok()?);
    match key.get(MESSAGE_KEY_LEN..)? {
        [] => Some(MessageKey::Message(id)),
        [DELIVERED_MARKER] => Some(MessageKey::Delivered(id)),
        _ => None,
    }
}

/// Key of an exchange definition: `vhost name`, length-prefixed.
pub fn exchange_key(vhost: &str, name: &str) -> Vec<u8> {
    name_key(vhost, name)
}

/// Key of a queue definition: `vhost name`, length-prefixed.
pub fn queue_key(vhost: &str, name: &str) -> Vec<u8> {
    name_key(vhost, name)
}

/// Key of a binding: every field, since all of them together are the binding's identity.
pub fn binding_key(r: &BindingRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        5 * 4
            + 1
            + r.vhost.len()
            + r.source.len()
            + r.destination.len()
            + r.routing_key.len()
            + r.arguments.len(),
    );
    put_field(&mut out, r.vhost.as_bytes());
    put_field(&mut out, r.source.as_bytes());
    put_field(&mut out, r.destination.as_bytes());
    out.push(u8::from(r.destination_is_exchange));
    put_field(&mut out, r.routing_key.as_bytes());
    put_field(&mut out, &r.arguments);
    out
}

/// `vhost name`, length-prefixed: unambiguous for any two strings.
pub fn name_key(vhost: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + vhost.len() + name.len());
    put_field(&mut out, vhost.as_bytes());
    put_field(&mut out, name.as_bytes());
    out
}

/// Encodes an exchange definition.
pub fn encode_exchange(r: &ExchangeRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        1 + 4 * 4 + 2 + r.vhost.len() + r.name.len() + r.kind.len() + r.arguments.len(),
    );
    out.push(SCHEMA_VERSION);
    put_field(&mut out, r.vhost.as_bytes());
    put_field(&mut out, r.name.as_bytes());
    put_field(&mut out, r.kind.as_bytes());
    out.push(u8::from(r.auto_delete));
    out.push(u8::from(r.internal));
    put_field(&mut out, &r.arguments);
    out
}

/// Decodes an exchange definition.
pub fn decode_exchange(buf: &[u8]) -> Result<ExchangeRecord, DecodeError> {
    let mut r = Reader::versioned(buf)?;
    let rec = ExchangeRecord {
        vhost: r.string("vhost")?,
        name: r.string("name")?,
        kind: r.string("kind")?,
        auto_delete: r.bool("auto_delete")?,
        internal: r.bool("internal")?,
        arguments: r.bytes("arguments")?,
    };
    r.finish()?;
    Ok(rec)
}

/// Encodes a queue definition.
pub fn encode_queue(r: &QueueRecord) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(1 + 3 * 4 + 1 + r.vhost.len() + r.name.len() + r.arguments.len());
    out.push(SCHEMA_VERSION);
    put_field(&mut out, r.vhost.as_bytes());
    put_field(&mut out, r.name.as_bytes());
    out.push(u8::from(r.auto_delete));
    put_field(&mut out, &r.arguments);
    out
}

/// Decodes a queue definition.
pub fn decode_queue(buf: &[u8]) -> Result<QueueRecord, DecodeError> {
    let mut r = Reader::versioned(buf)?;
    let rec = QueueRecord {
        vhost: r.string("vhost")?,
        name: r.string("name")?,
        auto_delete: r.bool("auto_delete")?,
        arguments: r.bytes("arguments")?,
    };
    r.finish()?;
    Ok(rec)
}

/// Encodes a binding.
pub fn encode_binding(r: &BindingRecord) -> Vec<u8> {
    let key = binding_key(r);
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(SCHEMA_VERSION);
    out.extend_from_slice(&key);
    out
}

/// Decodes a binding.
pub fn decode_binding(buf: &[u8]) -> Result<BindingRecord, DecodeError> {
    let mut r = Reader::versioned(buf)?;
    let rec = BindingRecord {
        vhost: r.string("vhost")?,
        source: r.string("source")?,
        destination: r.string("destination")?,
        destination_is_exchange: r.bool("destination_is_exchange")?,
        routing_key: r.string("routing_key")?,
        arguments: r.bytes("arguments")?,
    };
    r.finish()?;
    Ok(rec)
}

/// The exact encoded length of a message record.
pub fn message_len(m: &MessageView<'_>) -> usize {
    1 + 3 * 4 + m.exchange.len() + m.routing_key.len() + m.properties.len() + m.body.len()
}

/// Appends the encoding of a message record to `out` (reserve [`message_len`] first to write it
/// without reallocating).
pub fn encode_message_into(m: &MessageView<'_>, out: &mut Vec<u8>) {
    out.push(SCHEMA_VERSION);
    put_field(out, m.exchange.as_bytes());
    put_field(out, m.routing_key.as_bytes());
    put_field(out, m.properties);
    out.extend_from_slice(m.body);
}

/// Encodes a message record into a buffer of exactly the right size.
pub fn encode_message(m: &MessageView<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message_len(m));
    encode_message_into(m, &mut out);
    out
}

/// Decodes a message record. `properties` and `body` are slices of `buf` (no copy).
pub fn decode_message(buf: Bytes) -> Result<MessageRecord, DecodeError> {
    let mut r = Reader::versioned(&buf)?;
    let exchange = r.string("exchange")?;
    let routing_key = r.string("routing_key")?;
    let props = r.range("properties")?;
    let body_start = r.pos;
    Ok(MessageRecord {
        exchange,
        routing_key,
        properties: buf.slice(props),
        body: buf.slice(body_start..),
    })
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) {
    // Field lengths are bounded far below 4 GiB (AMQP short strings, field tables, and message
    // bodies capped by the broker's max message size), so the length always fits in a u32.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

/// A checked cursor over an encoded value.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the schema byte and positions after it.
    fn versioned(buf: &'a [u8]) -> Result<Self, DecodeError> {
        match buf.first() {
            None => Err(DecodeError("empty value")),
            Some(&SCHEMA_VERSION) => Ok(Reader { buf, pos: 1 }),
            Some(_) => Err(DecodeError("unknown schema version")),
        }
    }

    fn range(&mut self, what: &'static str) -> Result<std::ops::Range<usize>, DecodeError> {
        let len_bytes: [u8; 4] = self
            .buf
            .get(self.pos..self.pos.saturating_add(4))
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError(what))?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| DecodeError(what))?;
        let start = self.pos + 4;
        let end = start.checked_add(len).ok_or(DecodeError(what))?;
        if end > self.buf.len() {
            return Err(DecodeError(what));
        }
        self.pos = end;
        Ok(start..end)
    }

    fn field(&mut self, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let range = self.range(what)?;
        self.buf.get(range).ok_or(DecodeError(what))
    }

    fn string(&mut self, what: &'static str) -> Result<String, DecodeError> {
        let raw = self.field(what)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError(what))
    }

    fn bytes(&mut self, what: &'static str) -> Result<Bytes, DecodeError> {
        self.field(what).map(Bytes::copy_from_slice)
    }

    fn bool(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        let b = self.buf.get(self.pos).copied().ok_or(DecodeError(what))?;
        self.pos += 1;
        match b {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError(what)),
        }
    }

    fn finish(self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_bytes() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
    }

    proptest! {
        #[test]
        fn exchange_round_trips(vhost in ".*", name in ".*", kind in ".*", ad: bool, int: bool, args in arb_bytes()) {
            let r = ExchangeRecord { vhost, name, kind, auto_delete: ad, internal: int, arguments: args };
            prop_assert_eq!(decode_exchange(&encode_exchange(&r)), Ok(r));
        }

        #[test]
        fn queue_round_trips(vhost in ".*", name in ".*", ad: bool, args in arb_bytes()) {
            let r = QueueRecord { vhost, name, auto_delete: ad, arguments: args };
            prop_assert_eq!(decode_queue(&encode_queue(&r)), Ok(r));
        }

        #[test]
        fn binding_round_trips(vhost in ".*", source in ".*", destination in ".*", x: bool, rk in ".*", args in arb_bytes()) {
            let r = BindingRecord { vhost, source, destination, destination_is_exchange: x, routing_key: rk, arguments: args };
            prop_assert_eq!(decode_binding(&encode_binding(&r)), Ok(r));
        }

        #[test]
        fn message_round_trips(exchange in ".*", rk in ".*", props in arb_bytes(), body in arb_bytes()) {
            let m = MessageRecord { exchange, routing_key: rk, properties: props, body };
            let enc = encode_message(&m.view());
            prop_assert_eq!(enc.len(), message_len(&m.view()));
            prop_assert_eq!(enc.capacity(), message_len(&m.view()));
            prop_assert_eq!(decode_message(Bytes::from(enc)), Ok(m));
        }

        #[test]
        fn decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_exchange(&buf);
            let _ = decode_queue(&buf);
            let _ = decode_binding(&buf);
            let _ = decode_message(Bytes::from(buf.clone()));
            let _ = parse_message_key(&buf);
        }

        #[test]
        fn decoders_never_panic_on_versioned_input(tail in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut buf = vec![SCHEMA_VERSION];
            buf.extend_from_slice(&tail);
            let _ = decode_exchange(&buf);
            let _ = decode_queue(&buf);
            let _ = decode_binding(&buf);
            let _ = decode_message(Bytes::from(buf));
        }

        #[test]
        fn name_keys_are_unambiguous(a in ".*", b in ".*", c in ".*", d in ".*") {
            prop_assume!((a.as_str(), b.as_str()) != (c.as_str(), d.as_str()));
            prop_assert_ne!(name_key(&a, &b), name_key(&c, &d));
        }

        #[test]
        fn message_keys_sort_in_id_order_with_markers_after(a: u64, b: u64) {
            prop_assume!(a < b);
            prop_assert!(message_key(a).as_slice() < delivered_key(a).as_slice());
            prop_assert!(delivered_key(a).as_slice() < message_key(b).as_slice());
            prop_assert_eq!(parse_message_key(&message_key(a)), Some(MessageKey::Message(a)));
            prop_assert_eq!(parse_message_key(&delivered_key(b)), Some(MessageKey::Delivered(b)));
        }
    }

    #[test]
    fn slash_names_do_not_collide() {
        assert_ne!(name_key("a/b", "c"), name_key("a", "b/c"));
        assert_ne!(name_key("", "ab"), name_key("a", "b"));
    }

    #[test]
    fn bad_values_are_rejected() {
        let r = QueueRecord {
            vhost: "/".into(),
            name: "q".into(),
            auto_delete: false,
            arguments: Bytes::new(),
        };
        let good = encode_queue(&r);
        assert_eq!(decode_queue(&[]), Err(DecodeError("empty value")));
        let mut v2 = good.clone();
        v2[0] = 2;
        assert_eq!(
            decode_queue(&v2),
            Err(DecodeError("unknown schema version"))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(decode_queue(&trailing), Err(DecodeError("trailing bytes")));
        assert!(decode_queue(&good[..good.len() - 1]).is_err());
        let mut bad_bool = good.clone();
        // vhost "/" (4+1) + name "q" (4+1) after the schema byte: the bool is at 11.
        bad_bool[11] = 7;
        assert_eq!(decode_queue(&bad_bool), Err(DecodeError("auto_delete")));
        let mut bad_utf8 = good;
        bad_utf8[5] = 0xff;
        assert_eq!(decode_queue(&bad_utf8), Err(DecodeError("vhost")));
        assert_eq!(parse_message_key(&[0; 7]), None);
        assert_eq!(parse_message_key(&[0; 10]), None);
        assert_eq!(parse_message_key(&[0, 0, 0, 0, 0, 0, 0, 0, 2]), None);
    }
}
