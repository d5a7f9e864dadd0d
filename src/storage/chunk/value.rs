//! A chunk's value as the parts it was built from: entry bytes encoded into buffers, and the
//! bodies of large messages referenced where they already are (the publisher's read buffer,
//! or a record read back), never copied on their way to the body log.
//!
//! A persistent 4 KiB message used to be copied into its chunk's buffer on the publisher's
//! task: some 6 % of the broker's CPU in scenario 4k, and a second copy of every body of a
//! chunk not yet written, while the message itself still held the first. A [`Value`] is the
//! same bytes as before (the on-disk layout is unchanged: the body log writes the parts with
//! one `pwritev` and checksums them in order); only reads of a chunk still in memory, which
//! parse one contiguous buffer, copy it into one ([`Value::to_bytes`]). Below [`SHARE_MIN`] a
//! body is copied: a copy costs less than another part and a reference count, and a small
//! message does not keep a whole read buffer alive.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

use super::super::MessageView;
use super::super::record::{self, ENTRY_HEADER_LEN};
use super::MAX_CHUNK_BYTES;

/// Bodies at least this long are referenced by the chunk, not copied into it.
pub(super) const SHARE_MIN: usize = 1024;

/// A chunk's value: the concatenation of its parts.
#[derive(Clone, Debug, Default)]
pub struct Value {
    parts: Vec<Bytes>,
    len: usize,
}

impl From<Bytes> for Value {
    fn from(b: Bytes) -> Value {
        Value::new(vec![b])
    }
}

impl Value {
    /// The value made of `parts`, in order (empty ones left out).
    pub fn new(mut parts: Vec<Bytes>) -> Value {
        parts.retain(|p| !p.is_empty());
        let len = parts.iter().map(Bytes::len).sum();
        Value { parts, len }
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[Bytes] {
        &self.parts
    }

    /// Bytes of the value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// No bytes at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The value as one buffer: its only part, or a copy of all of them.
    pub fn to_bytes(&self) -> Bytes {
        match self.parts.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            parts => concat(parts.iter().map(|p| &p[..]), self.len),
        }
    }

    /// Copies the bytes at `pos..pos + out.len()` into `out`; false if the value is shorter.
    fn read_at(&self, mut pos: usize, out: &mut [u8]) -> bool {
        let mut filled = 0;
        for p in &self.parts {
            if filled == out.len() {
                break;
            }
            if pos >= p.len() {
                pos -= p.len();
                continue;
            }
            let n = (p.len() - pos).min(out.len() - filled);
            out[filled..filled + n].copy_from_slice(&p[pos..pos + n]);
            filled += n;
            pos = 0;
        }
        filled == out.len()
    }

    /// Appends the parts that make up `range` of the value to `out` (slices, no copy).
    fn slice_into(&self, range: Range<usize>, out: &mut Vec<Bytes>) {
        let mut at = 0;
        for p in &self.parts {
            let (start, end) = (at, at + p.len());
            at = end;
            if end <= range.start {
                continue;
            }
            if start >= range.end {
                break;
            }
            let from = range.start.max(start) - start;
            let to = range.end.min(end) - start;
            out.push(p.slice(from..to));
        }
    }

    /// The entries of a chunk value (id, range of the whole entry), found by their headers
    /// (an entry's id and length lie in its encoded bytes, never in a referenced body).
    /// `None` if the value does not parse as a chunk.
    pub fn entries(&self) -> Option<Vec<(u64, Range<usize>)>> {
        let mut schema = [0u8; 1];
        if !self.read_at(0, &mut schema) || schema[0] != record::MESSAGE_SCHEMA {
            return None;
        }
        let mut out: Vec<(u64, Range<usize>)> = Vec::new();
        let mut pos = 1;
        while pos < self.len {
            let mut h = [0u8; ENTRY_HEADER_LEN];
            if !self.read_at(pos, &mut h) {
                return None;
            }
            let (id, len) = record::entry_header(&h);
            let end = pos.checked_add(ENTRY_HEADER_LEN)?.checked_add(len)?;
            if end > self.len || out.last().is_some_and(|e| e.0 >= id) {
                return None;
            }
            out.push((id, pos..end));
            pos = end;
        }
        Some(out)
    }

    /// The chunk value with only the entries `keep` accepts (the value itself when it keeps
    /// them all), still referencing the bodies. `None` if the value does not parse.
    pub fn retain(&self, keep: impl Fn(u64) -> bool) -> Option<Value> {
        let entries = self.entries()?;
        if entries.iter().all(|e| keep(e.0)) {
            return Some(self.clone());
        }
        let mut parts = vec![Bytes::from_static(&[record::MESSAGE_SCHEMA])];
        // Runs of kept entries are sliced whole: fewer parts to write.
        let mut run: Option<Range<usize>> = None;
        for (_, range) in entries.into_iter().filter(|e| keep(e.0)) {
            match &mut run {
                Some(r) if r.end == range.start => r.end = range.end,
                _ => {
                    if let Some(r) = run.replace(range) {
                        self.slice_into(r, &mut parts);
                    }
                }
            }
        }
        if let Some(r) = run {
            self.slice_into(r, &mut parts);
        }
        Some(Value::new(parts))
    }
}

/// The open chunk's value being built: entries encoded into `buf`, large bodies referenced.
#[derive(Debug, Default)]
pub(super) struct Builder {
    /// Finished parts: encoded bytes split off `buf`, and referenced bodies.
    done: Vec<Bytes>,
    done_len: usize,
    /// Bytes of the referenced bodies among `done`.
    shared: usize,
    /// Where entries are encoded; always after every part.
    buf: BytesMut,
}

impl Builder {
    /// An empty chunk (its schema byte) whose buffer starts with room for `capacity` bytes.
    pub(super) fn with_capacity(capacity: usize) -> Builder {
        let mut buf = BytesMut::with_capacity(capacity.max(1));
        buf.put_u8(record::MESSAGE_SCHEMA);
        Builder {
            buf,
            ..Builder::default()
        }
    }

    /// Bytes of the value so far.
    pub(super) fn len(&self) -> usize {
        self.done_len + self.buf.len()
    }

    /// Bytes of the value so far that were encoded (all but the referenced bodies).
    pub(super) fn encoded(&self) -> usize {
        self.len() - self.shared
    }

    /// Makes room for `n` more encoded bytes: a new buffer twice what was encoded so far, but
    /// not past a chunk's cap unless the entry needs it (a split-off buffer's own capacity says
    /// nothing of how busy the chunk is, and `BytesMut::reserve` would double past the cap).
    fn make_room(&mut self, n: usize) {
        let len = self.buf.len();
        if self.buf.capacity() - len >= n {
            return;
        }
        let want = (len + n)
            .max(self.encoded() * 2)
            .min(MAX_CHUNK_BYTES.max(len + n));
        let mut grown = BytesMut::with_capacity(want);
        grown.put_slice(&self.buf);
        self.buf = grown;
    }

    /// The bytes message `id` adds to the encoding buffer (its whole entry, or all but a
    /// referenced body).
    pub(super) fn encoded_len(m: &MessageView<'_>) -> usize {
        let entry = record::entry_len(m);
        if m.body.len() >= SHARE_MIN {
            entry - m.body.len()
        } else {
            entry
        }
    }

    /// Appends message `id`'s entry.
    pub(super) fn push(&mut self, id: u64, m: &MessageView<'_>) {
        self.make_room(Self::encoded_len(m));
        record::encode_entry_head_into(id, m, &mut self.buf);
        if m.body.len() < SHARE_MIN {
            self.buf.put_slice(m.body);
            return;
        }
        let head = self.buf.split().freeze();
        self.done_len += head.len() + m.body.len();
        self.shared += m.body.len();
        self.done.push(head);
        self.done.push(m.body.clone());
    }

    /// A copy of the value so far as one buffer (a read of the open chunk).
    pub(super) fn to_bytes(&self) -> Bytes {
        let parts = self.done.iter().map(|p| &p[..]);
        concat(parts.chain([&self.buf[..]]), self.len())
    }

    /// The finished value.
    pub(super) fn finish(mut self) -> Value {
        let rest = self.buf.split().freeze();
        self.done.push(rest);
        Value::new(self.done)
    }
}

/// `parts` (`len` bytes in all) copied into one buffer.
fn concat<'a>(parts: impl Iterator<Item = &'a [u8]>, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len);
    for p in parts {
        out.put_slice(p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn view(body: &Bytes) -> MessageView<'_> {
        MessageView {
            exchange: "x",
            routing_key: "key",
            properties: &[0x10, 0, 2],
            meta: b"meta",
            body,
        }
    }

    /// A chunk of messages `10 + i` with these bodies, built as the open chunk builds it.
    fn built(bodies: &[Bytes]) -> Value {
        let mut b = Builder::with_capacity(64);
        for (i, body) in bodies.iter().enumerate() {
            b.push(10 + i as u64, &view(body));
        }
        b.finish()
    }

    fn body(len: usize, seed: u8) -> Bytes {
        Bytes::from(
            (0..len)
                .map(|i| seed.wrapping_add(i as u8))
                .collect::<Vec<u8>>(),
        )
    }

    #[test]
    fn large_bodies_are_referenced_small_ones_copied_and_the_bytes_are_a_chunk() {
        let bodies = [
            body(10, 1),
            body(SHARE_MIN, 2),
            body(0, 3),
            body(5000, 4),
            body(3, 5),
        ];
        let v = built(&bodies);
        // The two large bodies are parts of their own, the very bytes the messages hold.
        let shared: Vec<&Bytes> = v.parts().iter().filter(|p| p.len() >= SHARE_MIN).collect();
        assert_eq!(shared.len(), 2);
        assert_eq!(shared[0].as_ptr(), bodies[1].as_ptr());
        assert_eq!(shared[1].as_ptr(), bodies[3].as_ptr());
        assert_eq!(v.len(), v.to_bytes().len());
        // One buffer of it parses as the chunk it always was.
        let flat = v.to_bytes();
        let entries = record::chunk_entries(&flat).expect("parses");
        assert_eq!(entries.len(), bodies.len());
        for (e, (i, b)) in entries.iter().zip(bodies.iter().enumerate()) {
            assert_eq!(e.id, 10 + i as u64);
            let m = e.decode(&flat).expect("decodes");
            assert_eq!((m.exchange.as_str(), m.routing_key.as_str()), ("x", "key"));
            assert_eq!(&m.body[..], &b[..]);
            assert_eq!(&m.meta[..], b"meta");
        }
    }

    #[test]
    fn a_value_that_is_not_a_chunk_keeps_no_entries() {
        assert_eq!(Value::from(Bytes::from_static(b"\x07abc")).entries(), None);
        let v = built(&[body(2000, 1), body(5, 2)]);
        // Cut inside the second entry.
        let flat = v.to_bytes();
        let cut = Value::from(flat.slice(..flat.len() - 2));
        assert_eq!(cut.entries(), None);
        assert!(cut.retain(|_| false).is_none());
    }

    proptest! {
        /// However the value is cut into parts, its entries and what `retain` keeps are those
        /// of the one contiguous buffer, and kept bodies stay referenced.
        #[test]
        fn parts_anywhere_read_as_the_contiguous_chunk(
            sizes in proptest::collection::vec(0usize..3000, 0..12),
            cuts in proptest::collection::vec(0usize..40_000, 0..8),
            keep in proptest::collection::vec(any::<bool>(), 12),
        ) {
            let bodies: Vec<Bytes> =
                sizes.iter().enumerate().map(|(i, &n)| body(n, i as u8)).collect();
            let v = built(&bodies);
            let flat = v.to_bytes();
            let want: Vec<(u64, Range<usize>)> = record::chunk_entries(&flat)
                .expect("parses")
                .into_iter()
                .map(|e| (e.id, e.range))
                .collect();
            prop_assert_eq!(v.entries(), Some(want.clone()));
            // The same bytes cut anywhere.
            let mut at: Vec<usize> = cuts.iter().map(|c| c % (flat.len() + 1)).collect();
            at.sort_unstable();
            let mut parts = Vec::new();
            let mut from = 0;
            for c in at.into_iter().chain([flat.len()]) {
                parts.push(flat.slice(from..c));
                from = c;
            }
            let cut = Value::new(parts);
            prop_assert_eq!(cut.to_bytes(), flat.clone());
            prop_assert_eq!(cut.entries(), Some(want.clone()));
            let kept = |id: u64| keep[(id - 10) as usize];
            let mut expect = vec![record::MESSAGE_SCHEMA];
            for (id, r) in &want {
                if kept(*id) {
                    expect.extend_from_slice(&flat[r.clone()]);
                }
            }
            for value in [&v, &cut] {
                let r = value.retain(kept).expect("parses");
                prop_assert_eq!(&r.to_bytes()[..], &expect[..]);
            }
            // Kept large bodies are still the messages' own bytes.
            let r = v.retain(kept).expect("parses");
            for (i, b) in bodies.iter().enumerate() {
                if b.len() >= SHARE_MIN && kept(10 + i as u64) {
                    prop_assert!(r.parts().iter().any(|p| p.as_ptr() == b.as_ptr()));
                }
            }
        }
    }
}
