//! Run-wide counters, the shared clock origin, message bodies, and the per-producer continuity
//! check each consumer runs on every delivery.
//!
//! A body starts with 16 bytes: `[u32 producer id][u32 sequence][u64 send time]`, big-endian,
//! the time in nanoseconds since [`origin`] (one monotonic origin per process, so producers and
//! consumers of one run agree). A [`Tracker`] keeps, per producer, a bitmap of the sequences
//! seen (duplicates are exact) and the last sequence (out-of-order); the bitmaps of consumers
//! sharing a queue are merged at the end and compared with what was published to find losses.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::histogram::Histogram;

/// Length of the body header: producer id, sequence, send time.
pub(crate) const BODY_HEADER: usize = 16;
/// Sequences at or above this are treated as garbage rather than grown into a bitmap.
const SEQ_LIMIT: u32 = 1 << 31;
/// Producer ids at or above this are treated as garbage.
const PRODUCER_LIMIT: u32 = 1 << 16;

/// The process-wide monotonic origin of body timestamps.
pub(crate) fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Nanoseconds from [`origin`] to `t` (0 if before it).
pub(crate) fn ns_since_origin(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// Writes the 16-byte body header.
pub(crate) fn put_body_header(body: &mut [u8], producer: u32, seq: u32, sent_ns: u64) {
    body[0..4].copy_from_slice(&producer.to_be_bytes());
    body[4..8].copy_from_slice(&seq.to_be_bytes());
    body[8..16].copy_from_slice(&sent_ns.to_be_bytes());
}

/// Reads the 16-byte body header, if the body is long enough.
pub(crate) fn parse_body_header(body: &[u8]) -> Option<(u32, u32, u64)> {
    let h: &[u8; BODY_HEADER] = body.first_chunk()?;
    let producer = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
    let seq = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    let sent = u64::from_be_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
    Some((producer, seq, sent))
}

/// Counters shared by every task of a run, read once a second for the live rates. Tasks add
/// once per batch, not once per message.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// Messages written to the socket by producers.
    pub(crate) published: AtomicU64,
    /// Publishes the broker confirmed (basic.ack).
    pub(crate) confirmed: AtomicU64,
    /// Publishes the broker refused (basic.nack).
    pub(crate) nacked: AtomicU64,
    /// Messages delivered to consumers.
    pub(crate) delivered: AtomicU64,
    /// Deliveries acknowledged (by basic.ack, or implicitly with auto-ack).
    pub(crate) acked: AtomicU64,
}

impl Counters {
    /// A consistent-enough snapshot: (published, confirmed, delivered, acked).
    pub(crate) fn snapshot(&self) -> [u64; 4] {
        [
            self.published.load(Ordering::Relaxed),
            self.confirmed.load(Ordering::Relaxed),
            self.delivered.load(Ordering::Relaxed),
            self.acked.load(Ordering::Relaxed),
        ]
    }
}

/// A growable bitmap of sequence numbers.
#[derive(Debug, Default, Clone)]
pub(crate) struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Marks `seq`; true if it was already marked.
    pub(crate) fn insert(&mut self, seq: u32) -> bool {
        let (w, b) = ((seq / 64) as usize, seq % 64);
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let mask = 1u64 << b;
        let had = self.words[w] & mask != 0;
        self.words[w] |= mask;
        had
    }

    /// How many sequences are marked.
    pub(crate) fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// How many sequences at or above `limit` are marked.
    pub(crate) fn count_from(&self, limit: u64) -> u64 {
        let mut n = 0;
        for (i, w) in self.words.iter().enumerate() {
            let base = i as u64 * 64;
            if base + 64 <= limit {
                continue;
            }
            let skip = limit.saturating_sub(base);
            let masked = if skip == 0 {
                *w
            } else {
                *w & !((1u64 << skip) - 1)
            };
            n += u64::from(masked.count_ones());
        }
        n
    }

    /// Highest marked sequence + 1 (0 when empty).
    pub(crate) fn end(&self) -> u64 {
        for (i, w) in self.words.iter().enumerate().rev() {
            if *w != 0 {
                return i as u64 * 64 + 64 - u64::from(w.leading_zeros());
            }
        }
        0
    }

    /// Adds `other` into this set; returns how many sequences both had (duplicates).
    pub(crate) fn union(&mut self, other: &SeqSet) -> u64 {
        if self.words.len() < other.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut both = 0;
        for (a, b) in self.words.iter_mut().zip(other.words.iter()) {
            both += u64::from((*a & *b).count_ones());
            *a |= *b;
        }
        both
    }
}

/// One consumer's view: latency histogram and per-producer continuity.
#[derive(Debug)]
pub(crate) struct Tracker {
    /// Per producer id: sequences seen.
    pub(crate) seen: Vec<SeqSet>,
    /// Per producer id: the last sequence seen.
    last: Vec<Option<u32>>,
    /// End-to-end latency in nanoseconds.
    pub(crate) latency: Histogram,
    /// Deliveries whose sequence was already seen by this consumer.
    pub(crate) duplicated: u64,
    /// Deliveries whose sequence was lower than the previous one from the same producer.
    pub(crate) out_of_order: u64,
    /// Deliveries whose body is not ours (too short, unknown producer, absurd sequence).
    pub(crate) malformed: u64,
    /// Deliveries recorded.
    pub(crate) received: u64,
}

impl Tracker {
    /// A tracker sized for `producers` producers (it grows for other ids, such as the
    /// producers of an earlier run in a consumer-only run).
    pub(crate) fn new(producers: u32) -> Tracker {
        Tracker {
            seen: vec![SeqSet::default(); producers as usize],
            last: vec![None; producers as usize],
            latency: Histogram::default(),
            duplicated: 0,
            out_of_order: 0,
            malformed: 0,
            received: 0,
        }
    }

    /// Checks one delivered body received at `now_ns` (since [`origin`]).
    pub(crate) fn record(&mut self, body: &[u8], now_ns: u64) {
        self.received += 1;
        let Some((p, seq, sent)) = parse_body_header(body) else {
            self.malformed += 1;
            return;
        };
        if p >= PRODUCER_LIMIT || seq >= SEQ_LIMIT {
            self.malformed += 1;
            return;
        }
        let p = p as usize;
        if p >= self.seen.len() {
            self.seen.resize(p + 1, SeqSet::default());
            self.last.resize(p + 1, None);
        }
        let (set, last) = (&mut self.seen[p], &mut self.last[p]);
        if set.insert(seq) {
            self.duplicated += 1;
        }
        if let Some(l) = *last
            && seq < l
        {
            self.out_of_order += 1;
        }
        *last = Some(seq);
        self.latency.record(now_ns.saturating_sub(sent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(p: u32, s: u32, t: u64) -> [u8; 16] {
        let mut b = [0u8; 16];
        put_body_header(&mut b, p, s, t);
        b
    }

    #[test]
    fn body_header_round_trip() {
        let b = body(7, 42, 123_456_789);
        assert_eq!(parse_body_header(&b), Some((7, 42, 123_456_789)));
        assert_eq!(parse_body_header(&b[..15]), None);
    }

    #[test]
    fn tracker_counts_duplicates_reordering_and_garbage() {
        let mut t = Tracker::new(2);
        for s in [0, 1, 2, 2, 1, 5] {
            t.record(&body(0, s, 100), 150);
        }
        t.record(&body(1, 0, 100), 300);
        t.record(&body(9, 0, 100), 300);
        t.record(&body(1 << 20, 0, 100), 300);
        t.record(&body(1, 1 << 31, 100), 300);
        t.record(b"short", 300);
        assert_eq!(t.received, 11);
        assert_eq!(t.duplicated, 2);
        assert_eq!(t.out_of_order, 1);
        assert_eq!(t.malformed, 3);
        assert_eq!(t.seen.len(), 10, "grown for producer 9");
        assert_eq!(t.seen[0].len(), 4);
        assert_eq!(t.seen[0].end(), 6);
        assert_eq!(t.latency.count(), 8);
        assert_eq!(t.latency.max(), 200);
    }

    #[test]
    fn seqset_union_counts_overlap() {
        let mut a = SeqSet::default();
        let mut b = SeqSet::default();
        for s in [0, 1, 64, 200] {
            a.insert(s);
        }
        for s in [1, 2, 200, 300] {
            b.insert(s);
        }
        assert_eq!(a.union(&b), 2);
        assert_eq!(a.len(), 6);
        assert_eq!(a.end(), 301);
        assert_eq!(a.count_from(200), 2);
        assert_eq!(a.count_from(2), 4);
        assert_eq!(a.count_from(0), 6);
        assert_eq!(SeqSet::default().end(), 0);
    }
}
