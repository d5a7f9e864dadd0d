//! The index record: one group commit's changes to sled's trees, written to the body log (record
//! kind [`KIND_INDEX`](super::super::bodylog::format::KIND_INDEX)) and synced with the chunks it
//! points at before sled sees any of it. The body log is the write-ahead log of the index: sled
//! is made durable only at checkpoints, and recovery applies the index records past sled's
//! commit point again, in order.
//!
//! Every change is a value, not a delta (a key set to a value, a key removed, every index entry
//! of a deleted queue removed), so applying a record twice leaves what applying it once does.
//!
//! Payload layout (inside a body-log record, whose header carries the CRC32C, length and lsn):
//! `version u8 (1)`, then changes one after the other until the end:
//! - `0x10 | tree`: `key length u32 | key | value length u32 | value` (insert);
//! - `0x20 | tree`: `key length u32 | key` (remove);
//! - `0x30`: `queue id u64` (remove every index entry of the queue, as sled holds them when the
//!   record is applied).
//!
//! Trees: 1 exchanges, 2 queues, 3 bindings, 4 objects, 5 qids, 6 meta, 7 segments,
//! 8 quarantine, 9 index. Integers big-endian. Decoding checks every length against what is
//! left, and never panics on any byte.

use std::collections::HashMap;

use super::super::StoreError;
use super::super::bodylog::CommitPoint;
use super::super::record::DecodeError;
use super::defs::Target;
use super::{COMMIT_KEY, Trees, io};

/// Version of the payload layout.
const VERSION: u8 = 1;
const PUT: u8 = 0x10;
const REMOVE: u8 = 0x20;
const DROP_QUEUE: u8 = 0x30;
/// Bounds on one key and one value (far above anything the store writes).
const MAX_KEY: usize = 1 << 20;
const MAX_VALUE: usize = 256 << 20;
/// Bytes [`add_segments`] writes per segment.
pub(super) const SEGMENT_ADD_BYTES: usize = 1 + 4 + 8 + 4;

/// One change to sled's trees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Change {
    /// Insert (`Some`) or remove (`None`) one key.
    Put(Target, Vec<u8>, Option<Vec<u8>>),
    /// Remove every index entry of a deleted queue.
    DropQueue(u64),
}

impl Change {
    /// Whether it changes the message index (applied to sled only at checkpoints).
    pub(super) fn is_index(&self) -> bool {
        matches!(self, Change::Put(Target::Index, ..) | Change::DropQueue(_))
    }
}

fn tree_code(t: Target) -> u8 {
    match t {
        Target::Exchanges => 1,
        Target::Queues => 2,
        Target::Bindings => 3,
        Target::Objects => 4,
        Target::Qids => 5,
        Target::Meta => 6,
        Target::Segments => 7,
        Target::Quarantine => 8,
        Target::Index => 9,
    }
}

fn tree_of(code: u8) -> Option<Target> {
    Some(match code {
        1 => Target::Exchanges,
        2 => Target::Queues,
        3 => Target::Bindings,
        4 => Target::Objects,
        5 => Target::Qids,
        6 => Target::Meta,
        7 => Target::Segments,
        8 => Target::Quarantine,
        9 => Target::Index,
        _ => return None,
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Keys and values are far below 4 GiB (bounded by MAX_KEY and MAX_VALUE when read).
    out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(b);
}

/// The payload of an index record holding `changes`.
pub(super) fn encode(changes: &[Change]) -> Vec<u8> {
    let size: usize = changes
        .iter()
        .map(|c| match c {
            Change::Put(_, k, v) => 9 + k.len() + v.as_ref().map_or(0, Vec::len),
            Change::DropQueue(_) => 9,
        })
        .sum();
    let mut out = Vec::with_capacity(1 + size);
    out.push(VERSION);
    for c in changes {
        encode_one(c, &mut out);
    }
    out
}

fn encode_one(c: &Change, out: &mut Vec<u8>) {
    match c {
        Change::Put(t, k, Some(v)) => {
            out.push(PUT | tree_code(*t));
            put_bytes(out, k);
            put_bytes(out, v);
        }
        Change::Put(t, k, None) => {
            out.push(REMOVE | tree_code(*t));
            put_bytes(out, k);
        }
        Change::DropQueue(qid) => {
            out.push(DROP_QUEUE);
            out.extend_from_slice(&qid.to_be_bytes());
        }
    }
}

/// The segment-table additions of `segs`, as changes and appended to a payload.
pub(super) fn add_segments(out: &mut Vec<u8>, segs: &[u64]) -> Vec<Change> {
    let changes: Vec<Change> = segs
        .iter()
        .map(|seg| {
            Change::Put(
                Target::Segments,
                seg.to_be_bytes().to_vec(),
                Some(Vec::new()),
            )
        })
        .collect();
    for c in &changes {
        encode_one(c, out);
    }
    changes
}

/// Reads `n` bytes at `*at`, advancing it.
fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
    let end = at
        .checked_add(n)
        .ok_or(DecodeError("index record: length overflow"))?;
    let s = b
        .get(*at..end)
        .ok_or(DecodeError("index record: change cut short"))?;
    *at = end;
    Ok(s)
}

fn take_bytes(b: &[u8], at: &mut usize, max: usize) -> Result<Vec<u8>, DecodeError> {
    let len = take(b, at, 4)?;
    let len = u32::from_be_bytes(
        len.try_into()
            .map_err(|_| DecodeError("index record: length"))?,
    ) as usize;
    if len > max {
        return Err(DecodeError("index record: key or value over its bound"));
    }
    Ok(take(b, at, len)?.to_vec())
}

/// Decodes [`encode`]'s bytes (with [`add_segments`]' after them).
pub(super) fn decode(payload: &[u8]) -> Result<Vec<Change>, DecodeError> {
    match payload.first() {
        Some(&VERSION) => {}
        Some(_) => return Err(DecodeError("index record: unknown version")),
        None => return Err(DecodeError("index record: empty")),
    }
    let mut at = 1;
    let mut out = Vec::new();
    while at < payload.len() {
        let tag = take(payload, &mut at, 1)?[0];
        let change = match (tag & 0xf0, tree_of(tag & 0x0f)) {
            (PUT, Some(t)) => {
                let k = take_bytes(payload, &mut at, MAX_KEY)?;
                Change::Put(t, k, Some(take_bytes(payload, &mut at, MAX_VALUE)?))
            }
            (REMOVE, Some(t)) => Change::Put(t, take_bytes(payload, &mut at, MAX_KEY)?, None),
            (DROP_QUEUE, _) if tag == DROP_QUEUE => {
                let q = take(payload, &mut at, 8)?;
                Change::DropQueue(u64::from_be_bytes(
                    q.try_into()
                        .map_err(|_| DecodeError("index record: queue id"))?,
                ))
            }
            _ => return Err(DecodeError("index record: unknown change")),
        };
        out.push(change);
    }
    Ok(out)
}

/// Applies `changes`, and the commit point `commit` if given, to sled in one transaction (no
/// flush). A deleted queue's entries are those sled holds now, before this transaction.
pub(super) fn apply(
    trees: &Trees,
    changes: &[Change],
    commit: Option<&CommitPoint>,
) -> Result<(), StoreError> {
    if changes.is_empty() && commit.is_none() {
        return Ok(());
    }
    let mut batches: HashMap<Target, sled::Batch> = HashMap::new();
    let mut put = |t: Target, k: &[u8], v: Option<&[u8]>| {
        let b = batches.entry(t).or_default();
        match v {
            Some(v) => b.insert(k, v),
            None => b.remove(k),
        }
    };
    for c in changes {
        match c {
            Change::Put(t, k, v) => put(*t, k, v.as_deref()),
            Change::DropQueue(qid) => {
                for key in trees.index.scan_prefix(qid.to_be_bytes()).keys() {
                    put(Target::Index, &key.map_err(io)?, None);
                }
            }
        }
    }
    if let Some(commit) = commit {
        put(Target::Meta, COMMIT_KEY, Some(&commit.encode()));
    }
    transact(trees, batches)
}

/// Applies batches to their trees in one sled transaction.
fn transact(trees: &Trees, batches: HashMap<Target, sled::Batch>) -> Result<(), StoreError> {
    use sled::Transactional;
    use sled::transaction::TransactionError;
    let order: Vec<(Target, sled::Batch)> = batches.into_iter().collect();
    let tree_list: Vec<sled::Tree> = order.iter().map(|(t, _)| trees.of(*t).clone()).collect();
    tree_list
        .as_slice()
        .transaction(|txs| {
            for ((_, batch), tx) in order.iter().zip(txs) {
                tx.apply_batch(batch)?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            TransactionError::Storage(e) => io(e),
            TransactionError::Abort(()) => StoreError::Io("sled: transaction aborted".into()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TARGETS: [Target; 9] = [
        Target::Exchanges,
        Target::Queues,
        Target::Bindings,
        Target::Objects,
        Target::Qids,
        Target::Meta,
        Target::Segments,
        Target::Quarantine,
        Target::Index,
    ];

    fn change() -> impl Strategy<Value = Change> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
        prop_oneof![
            (0..9usize, bytes(), proptest::option::of(bytes()))
                .prop_map(|(t, k, v)| Change::Put(TARGETS[t], k, v)),
            any::<u64>().prop_map(Change::DropQueue),
        ]
    }

    proptest! {
        #[test]
        fn changes_round_trip(changes in proptest::collection::vec(change(), 0..20), segs in proptest::collection::vec(any::<u64>(), 0..4)) {
            let mut payload = encode(&changes);
            let before = payload.len();
            let added = add_segments(&mut payload, &segs);
            prop_assert_eq!(payload.len() - before, segs.len() * SEGMENT_ADD_BYTES);
            let mut all = changes.clone();
            all.extend(added);
            prop_assert_eq!(decode(&payload), Ok(all));
            // Every proper prefix past the version byte either decodes to fewer changes or fails.
            for cut in 1..payload.len() {
                if let Ok(d) = decode(&payload[..cut]) {
                    prop_assert!(d.len() < changes.len() + segs.len());
                }
            }
        }

        #[test]
        fn the_decoder_never_panics(buf in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode(&buf);
        }

        #[test]
        fn the_decoder_never_panics_on_near_valid_bytes(
            changes in proptest::collection::vec(change(), 1..8),
            at in any::<proptest::sample::Index>(),
            byte: u8,
        ) {
            let mut payload = encode(&changes);
            let i = at.index(payload.len());
            payload[i] = byte;
            let _ = decode(&payload);
        }
    }

    #[test]
    fn lengths_over_their_bounds_are_refused() {
        let mut p = vec![VERSION, PUT | 1];
        p.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&p).is_err());
        assert_eq!(decode(&[VERSION]), Ok(Vec::new()));
        assert!(decode(&[]).is_err());
        assert!(decode(&[2]).is_err());
        assert!(decode(&[VERSION, 0x40]).is_err());
        assert!(decode(&[VERSION, PUT]).is_err());
        assert!(decode(&[VERSION, DROP_QUEUE | 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }
}
