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
//! - message: `exchange routing_key properties meta` then the body, which runs to the end of the
//!   value (spill files);
//! - chunk (a body-log record's payload): entries one after the other, each `id: u64, len: u32`
//!   then `len` bytes of `exchange routing_key properties meta body` as in a message (the body
//!   runs to the end of the entry). Ids ascend strictly;
//! - chunk state: `last: u64`, then two bitmaps of `(last - first) / 8 + 1` bytes each, `live`
//!   then `delivered`, where bit `i` (byte `i / 8`, bit `i % 8`) is id `first + i`, then the
//!   delivery counts set, 8 bytes each (`i: u32, count: u32`). Ids in the chunk's span that are
//!   not live are acked, or were never in it;
//! - index entry (key [`index_key`]: the queue's numeric id, then the chunk's first id): the
//!   chunk's body-log location (segment, offset, length, CRC, lsn), then its state.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::{BindingRecord, ExchangeRecord, MessageRecord, MessageView, QueueRecord};

/// The schema byte every encoded definition starts with.
pub const SCHEMA_VERSION: u8 = 1;

/// The schema byte of message records, chunks and chunk states: version 2 added the broker's
/// metadata to messages and delivery counts to states (version 1 never shipped and is not read).
pub const MESSAGE_SCHEMA: u8 = 2;

/// Why a stored value could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

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

/// The two strings of a [`name_key`]; `None` for anything malformed.
pub fn parse_name_key(key: &[u8]) -> Option<(String, String)> {
    let mut r = Reader { buf: key, pos: 0 };
    let a = r.string("first").ok()?;
    let b = r.string("second").ok()?;
    r.finish().ok()?;
    Some((a, b))
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
    1 + fields_len(m)
}

/// Length of a message's fields (exchange, routing key, properties, body) as encoded.
fn fields_len(m: &MessageView<'_>) -> usize {
    4 * 4
        + m.exchange.len()
        + m.routing_key.len()
        + m.properties.len()
        + m.meta.len()
        + m.body.len()
}

fn put_fields(m: &MessageView<'_>, out: &mut Vec<u8>) {
    put_head_fields(m, out);
    out.extend_from_slice(m.body);
}

/// Every field but the body, which comes last and unprefixed (its length is what the entry or
/// record has left).
fn put_head_fields<B: BufMut>(m: &MessageView<'_>, out: &mut B) {
    put_field(out, m.exchange.as_bytes());
    put_field(out, m.routing_key.as_bytes());
    put_field(out, m.properties);
    put_field(out, m.meta);
}

/// Appends the encoding of a message record to `out` (reserve [`message_len`] first to write it
/// without reallocating).
pub fn encode_message_into(m: &MessageView<'_>, out: &mut Vec<u8>) {
    out.push(MESSAGE_SCHEMA);
    put_fields(m, out);
}

/// Encodes a message record into a buffer of exactly the right size.
pub fn encode_message(m: &MessageView<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message_len(m));
    encode_message_into(m, &mut out);
    out
}

/// Decodes a message record. `properties` and `body` are slices of `buf` (no copy).
pub fn decode_message(buf: Bytes) -> Result<MessageRecord, DecodeError> {
    let r = Reader::with_version(&buf, MESSAGE_SCHEMA)?;
    let pos = r.pos;
    decode_fields(&buf, pos..buf.len())
}

/// Decodes the message fields in `buf[range]`; `properties` and `body` are slices of `buf`.
fn decode_fields(buf: &Bytes, range: Range<usize>) -> Result<MessageRecord, DecodeError> {
    let f = field_ranges(buf, range)?;
    Ok(MessageRecord {
        exchange: f.exchange,
        routing_key: f.routing_key,
        properties: buf.slice(f.properties),
        meta: buf.slice(f.meta),
        body: buf.slice(f.body),
    })
}

/// An entry's names, and where its other fields are in the chunk.
struct FieldRanges {
    exchange: String,
    routing_key: String,
    properties: Range<usize>,
    meta: Range<usize>,
    body: Range<usize>,
}

fn field_ranges(buf: &[u8], range: Range<usize>) -> Result<FieldRanges, DecodeError> {
    let fields = buf
        .get(..range.end)
        .ok_or(DecodeError("entry out of bounds"))?;
    let mut r = Reader {
        buf: fields,
        pos: range.start,
    };
    let exchange = r.string("exchange")?;
    let routing_key = r.string("routing_key")?;
    let properties = r.range("properties")?;
    let meta = r.range("meta")?;
    Ok(FieldRanges {
        exchange,
        routing_key,
        properties,
        meta,
        body: r.pos..range.end,
    })
}

/// Bytes an entry adds to a chunk besides its message fields: its id and length.
pub const ENTRY_HEADER_LEN: usize = 8 + 4;

/// The bytes message `m` adds to a chunk.
pub fn entry_len(m: &MessageView<'_>) -> usize {
    ENTRY_HEADER_LEN + fields_len(m)
}

/// Appends message `id` to a chunk value (which begins with its schema byte,
/// [`MESSAGE_SCHEMA`]) up to its body, which the caller puts right after (copied, or as a part
/// of its own: see `chunk::value`).
pub fn encode_entry_head_into<B: BufMut>(id: u64, m: &MessageView<'_>, out: &mut B) {
    out.put_slice(&id.to_be_bytes());
    // Bounded like every field (see `put_field`).
    let len = u32::try_from(fields_len(m)).unwrap_or(u32::MAX);
    out.put_slice(&len.to_be_bytes());
    put_head_fields(m, out);
}

/// The id and entry length (id and length excluded) that an entry's first
/// [`ENTRY_HEADER_LEN`] bytes hold.
pub fn entry_header(h: &[u8; ENTRY_HEADER_LEN]) -> (u64, usize) {
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[..8]);
    let mut len = [0u8; 4];
    len.copy_from_slice(&h[8..]);
    let len = usize::try_from(u32::from_be_bytes(len)).unwrap_or(usize::MAX);
    (u64::from_be_bytes(id), len)
}

/// Where one entry sits in a chunk value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkEntry {
    /// The message's id.
    pub id: u64,
    /// The whole entry (id and length included), to copy it into another chunk.
    pub range: Range<usize>,
}

impl ChunkEntry {
    /// Decodes the entry's message; `properties` and `body` are slices of `chunk` (no copy).
    pub fn decode(&self, chunk: &Bytes) -> Result<MessageRecord, DecodeError> {
        decode_fields(chunk, self.range.start + ENTRY_HEADER_LEN..self.range.end)
    }
}

/// Most bytes [`decode_packed`] copies into one buffer.
pub const PACK_BYTES: usize = 64 * 1024;

/// Decodes `entries` of `chunk` with their properties, meta and bodies copied out of it, packed
/// one after the other into shared buffers of at most [`PACK_BYTES`] (a larger message gets one
/// of its own), and hands each to `emit` with its index in `entries`. A few messages taken from
/// a chunk do not keep the whole chunk alive, nor its entries' headers and names, and a
/// thousand small messages cost a few allocations, not a thousand; a message kept long
/// (requeued, unacked) keeps at most its buffer alive. All or nothing: every entry is decoded
/// before the first is handed out.
pub fn decode_packed(
    chunk: &Bytes,
    entries: &[ChunkEntry],
    mut emit: impl FnMut(usize, MessageRecord),
) -> Result<(), DecodeError> {
    let fields = entries
        .iter()
        .map(|e| field_ranges(chunk, e.range.start + ENTRY_HEADER_LEN..e.range.end))
        .collect::<Result<Vec<_>, _>>()?;
    let size = |f: &FieldRanges| f.properties.len() + f.meta.len() + f.body.len();
    // Runs of entries that fit one buffer (at least one entry each): (end, bytes).
    let mut runs = Vec::new();
    let mut bytes = 0;
    for (i, f) in fields.iter().enumerate() {
        if bytes > 0 && bytes + size(f) > PACK_BYTES {
            runs.push((i, bytes));
            bytes = 0;
        }
        bytes += size(f);
    }
    runs.push((fields.len(), bytes));
    let mut fields = fields.into_iter().enumerate();
    let mut start = 0;
    for (end, bytes) in runs {
        let mut buf = BytesMut::with_capacity(bytes);
        let mut copy = |r: &Range<usize>| {
            if r.is_empty() {
                return Bytes::new();
            }
            buf.extend_from_slice(chunk.get(r.clone()).unwrap_or_default());
            buf.split().freeze()
        };
        for (i, f) in fields.by_ref().take(end - start) {
            let record = MessageRecord {
                properties: copy(&f.properties),
                meta: copy(&f.meta),
                body: copy(&f.body),
                exchange: f.exchange,
                routing_key: f.routing_key,
            };
            emit(i, record);
        }
        start = end;
    }
    Ok(())
}

/// The entries of a chunk value, checked for structure (schema byte, lengths within the value,
/// ids strictly ascending) but not decoded.
pub fn chunk_entries(chunk: &[u8]) -> Result<Vec<ChunkEntry>, DecodeError> {
    let mut r = Reader::with_version(chunk, MESSAGE_SCHEMA)?;
    let mut out = Vec::new();
    while r.pos < chunk.len() {
        let start = r.pos;
        let id = r.u64("entry id")?;
        if out.last().is_some_and(|e: &ChunkEntry| e.id >= id) {
            return Err(DecodeError("entry ids out of order"));
        }
        let fields = r.range("entry")?;
        out.push(ChunkEntry {
            id,
            range: start..fields.end,
        });
    }
    Ok(out)
}

/// The index key of the chunk of queue `queue` (numeric id) whose first id is `first`: both
/// big-endian, so a queue's chunks sort together and in id order.
pub fn index_key(queue: u64, first: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&queue.to_be_bytes());
    k[8..].copy_from_slice(&first.to_be_bytes());
    k
}

/// The queue and first id of an index key; `None` for anything malformed.
pub fn parse_index_key(key: &[u8]) -> Option<(u64, u64)> {
    if key.len() != 16 {
        return None;
    }
    let (q, f) = key.split_at(8);
    Some((
        u64::from_be_bytes(q.try_into().ok()?),
        u64::from_be_bytes(f.try_into().ok()?),
    ))
}

/// Encodes an index entry: the chunk's location, then its state ([`encode_state`]).
pub fn encode_index_entry(loc: &crate::storage::bodylog::Loc, state: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + crate::storage::bodylog::format::LOC_LEN + state.len());
    out.push(MESSAGE_SCHEMA);
    loc.encode(&mut out);
    out.extend_from_slice(state);
    out
}

/// Decodes an index entry into the location and the state of the chunk at `first`.
pub fn decode_index_entry(
    first: u64,
    value: &[u8],
) -> Result<(crate::storage::bodylog::Loc, StateRecord<'_>), DecodeError> {
    let r = Reader::with_version(value, MESSAGE_SCHEMA)?;
    let rest = value.get(r.pos..).ok_or(DecodeError("index entry"))?;
    let loc_len = crate::storage::bodylog::format::LOC_LEN;
    let loc = crate::storage::bodylog::Loc::decode(rest.get(..loc_len).unwrap_or_default())
        .ok_or(DecodeError("index entry location"))?;
    let state = decode_state(first, rest.get(loc_len..).unwrap_or_default())?;
    Ok((loc, state))
}

/// Bytes of each bitmap in the state of a chunk spanning ids `first..=last`.
pub fn bitmap_len(first: u64, last: u64) -> usize {
    usize::try_from((last.saturating_sub(first)) / 8 + 1).unwrap_or(usize::MAX)
}

/// Encodes a chunk's state: `live` and `delivered` are bitmaps of [`bitmap_len`] bytes,
/// `counts` the delivery counts set, as (id - first, count), ascending.
pub fn encode_state(last: u64, live: &[u8], delivered: &[u8], counts: &[(u32, u32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 8 + 4 + live.len() + delivered.len() + 8 * counts.len());
    out.push(MESSAGE_SCHEMA);
    out.extend_from_slice(&last.to_be_bytes());
    out.extend_from_slice(live);
    out.extend_from_slice(delivered);
    for (offset, count) in counts {
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(&count.to_be_bytes());
    }
    out
}

/// A decoded chunk state, borrowing its bitmaps from the value.
#[derive(Debug, PartialEq, Eq)]
pub struct StateRecord<'a> {
    /// The chunk's last id.
    pub last: u64,
    /// Live (stored, unacked) ids, one bit each from `first`.
    pub live: &'a [u8],
    /// Delivered ids, one bit each from `first`.
    pub delivered: &'a [u8],
    /// Delivery counts: 8 bytes each, `id - first` then the count, both `u32` big-endian.
    pub counts: &'a [u8],
}

impl StateRecord<'_> {
    /// The delivery counts, as (id - first, count).
    pub fn counts(&self) -> Vec<(u32, u32)> {
        self.counts
            .chunks_exact(8)
            .map(|c| {
                let (a, b) = c.split_at(4);
                let word = |x: &[u8]| x.try_into().map_or(0, u32::from_be_bytes);
                (word(a), word(b))
            })
            .collect()
    }
}

/// Decodes the state of the chunk whose first id is `first`.
pub fn decode_state(first: u64, value: &[u8]) -> Result<StateRecord<'_>, DecodeError> {
    let mut r = Reader::with_version(value, MESSAGE_SCHEMA)?;
    let last = r.u64("last id")?;
    if last < first {
        return Err(DecodeError("last id below first"));
    }
    let n = bitmap_len(first, last);
    let rest = value.get(r.pos..).ok_or(DecodeError("bitmaps"))?;
    let bitmaps = n.checked_mul(2).ok_or(DecodeError("bitmaps"))?;
    if rest.len() < bitmaps || !(rest.len() - bitmaps).is_multiple_of(8) {
        return Err(DecodeError("bitmap length does not match the id span"));
    }
    let (live, rest) = rest.split_at(n);
    let (delivered, counts) = rest.split_at(n);
    Ok(StateRecord {
        last,
        live,
        delivered,
        counts,
    })
}

fn put_field<B: BufMut>(out: &mut B, field: &[u8]) {
    // Field lengths are bounded far below 4 GiB (AMQP short strings, field tables, and message
    // bodies capped by the broker's max message size), so the length always fits in a u32.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.put_slice(&len.to_be_bytes());
    out.put_slice(field);
}

/// A checked cursor over an encoded value.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Checks the schema byte and positions after it.
    fn versioned(buf: &'a [u8]) -> Result<Self, DecodeError> {
        Self::with_version(buf, SCHEMA_VERSION)
    }

    /// Checks that the schema byte is `version` and positions after it.
    fn with_version(buf: &'a [u8], version: u8) -> Result<Self, DecodeError> {
        match buf.first() {
            None => Err(DecodeError("empty value")),
            Some(&v) if v == version => Ok(Reader { buf, pos: 1 }),
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

    fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b: [u8; 8] = self
            .buf
            .get(self.pos..self.pos.saturating_add(8))
            .and_then(|s| s.try_into().ok())
            .ok_or(DecodeError(what))?;
        self.pos += 8;
        Ok(u64::from_be_bytes(b))
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
        fn message_round_trips(exchange in ".*", rk in ".*", props in arb_bytes(), meta in arb_bytes(), body in arb_bytes()) {
            let m = MessageRecord { exchange, routing_key: rk, properties: props, meta, body };
            let enc = encode_message(&m.view());
            prop_assert_eq!(enc.len(), message_len(&m.view()));
            prop_assert_eq!(enc.capacity(), message_len(&m.view()));
            prop_assert_eq!(decode_message(Bytes::from(enc)), Ok(m));
        }

        #[test]
        fn chunks_round_trip(
            msgs in proptest::collection::vec((1u64..1000, ".*", ".*", arb_bytes(), arb_bytes()), 0..20),
            start: u64,
        ) {
            let mut chunk = vec![MESSAGE_SCHEMA];
            let mut id = start;
            let mut expected = Vec::new();
            for (gap, exchange, rk, props, body) in msgs {
                id = id.saturating_add(gap);
                if expected.last().is_some_and(|(last, _)| *last >= id) {
                    break;
                }
                let m = MessageRecord { exchange, routing_key: rk, meta: props.slice(..props.len() / 2), properties: props, body };
                let before = chunk.len();
                encode_entry_head_into(id, &m.view(), &mut chunk);
                chunk.extend_from_slice(&m.body);
                prop_assert_eq!(chunk.len() - before, entry_len(&m.view()));
                expected.push((id, m));
            }
            let chunk = Bytes::from(chunk);
            let entries = chunk_entries(&chunk).expect("entries");
            prop_assert_eq!(entries.len(), expected.len());
            for (e, (id, m)) in entries.iter().zip(&expected) {
                prop_assert_eq!(e.id, *id);
                prop_assert_eq!(&e.decode(&chunk).expect("decode"), m);
            }
            // The packed decoding is equal and shares no memory with the chunk.
            let mut packed = Vec::new();
            decode_packed(&chunk, &entries, |i, r| packed.push((i, r))).expect("decode packed");
            prop_assert!(packed.iter().enumerate().all(|(k, (i, _))| k == *i));
            let packed: Vec<MessageRecord> = packed.into_iter().map(|(_, r)| r).collect();
            prop_assert_eq!(packed.len(), expected.len());
            let inside = chunk.as_ptr_range();
            for (owned, (_, m)) in packed.iter().zip(&expected) {
                prop_assert_eq!(owned, m);
                for part in [&owned.properties, &owned.meta, &owned.body] {
                    prop_assert!(part.is_empty() || !inside.contains(&part.as_ptr()));
                }
            }
        }

        #[test]
        fn states_round_trip(first: u64, span in 0u64..5000, seed: u64) {
            let last = first.saturating_add(span);
            let n = bitmap_len(first, last);
            let live: Vec<u8> = (0..n).map(|i| (seed >> (i % 8)) as u8).collect();
            let delivered: Vec<u8> = live.iter().map(|b| b.rotate_left(3)).collect();
            let counts: Vec<(u32, u32)> = (0..(seed % 5) as u32).map(|i| (i * 3, i + 1)).collect();
            let enc = encode_state(last, &live, &delivered, &counts);
            let st = decode_state(first, &enc).expect("decodes");
            prop_assert_eq!((st.last, st.live, st.delivered), (last, &live[..], &delivered[..]));
            prop_assert_eq!(st.counts(), counts);
            prop_assert!(decode_state(first, &enc[..enc.len() - 1]).is_err());
            if first > 0 {
                prop_assert!(decode_state(last + 1, &enc).is_err());
            }
        }

        #[test]
        fn decoders_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode_exchange(&buf);
            let _ = decode_queue(&buf);
            let _ = decode_binding(&buf);
            let _ = decode_message(Bytes::from(buf.clone()));
            let _ = parse_index_key(&buf);
            let _ = decode_index_entry(3, &buf);
            let _ = decode_state(0, &buf);
            let chunk = Bytes::from(buf.clone());
            if let Ok(entries) = chunk_entries(&chunk) {
                for e in entries {
                    let _ = e.decode(&chunk);
                }
            }
        }

        #[test]
        fn decoders_never_panic_on_versioned_input(tail in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut buf = vec![if tail.len() % 2 == 0 { SCHEMA_VERSION } else { MESSAGE_SCHEMA }];
            buf.extend_from_slice(&tail);
            let _ = decode_exchange(&buf);
            let _ = decode_queue(&buf);
            let _ = decode_binding(&buf);
            let _ = decode_message(Bytes::from(buf.clone()));
            let _ = decode_state(7, &buf);
            let chunk = Bytes::from(buf);
            if let Ok(entries) = chunk_entries(&chunk) {
                for e in entries {
                    let _ = e.decode(&chunk);
                }
            }
        }

        #[test]
        fn name_keys_are_unambiguous(a in ".*", b in ".*", c in ".*", d in ".*") {
            prop_assert_eq!(parse_name_key(&name_key(&a, &b)), Some((a.clone(), b.clone())));
            prop_assume!((a.as_str(), b.as_str()) != (c.as_str(), d.as_str()));
            prop_assert_ne!(name_key(&a, &b), name_key(&c, &d));
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
    }
}
