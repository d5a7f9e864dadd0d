//! Opening the store: the body log's recovery and the replay of the index records written after
//! sled's last checkpoint (each applied again, in order, in a transaction of its own with its
//! commit point), then one pass over the index that checks every entry against its segment,
//! rebuilds each queue's in-memory index and counts each segment's live bytes, then a
//! checkpoint (sled flushed and synced, its commit point moved to where writing resumes), and
//! only then the deletion of segments nothing live points into.
//!
//! Entries that do not decode, or point into a missing segment or past a segment's end (a
//! truncated file), are moved to the quarantine with a log line naming segment and offset;
//! entries of queues that no longer exist are dropped. Nothing here panics on any byte.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::super::StoreError;
use super::super::bodylog::format::SEGMENT_HEADER;
use super::super::bodylog::{BodyLog, CommitPoint, Replay};
use super::super::chunk::{Bits, Counts, Index};
use super::super::record::{self, DecodeError};
use super::flush::Space;
use super::quarantine::Quarantine;
use super::{COMMIT_KEY, INDEX, NEXT_QID_KEY, SledOptions, Trees, io, wal};

/// What recovery found.
pub(super) struct Found {
    pub(super) log: BodyLog,
    pub(super) quarantine: Quarantine,
    pub(super) qids: HashMap<Vec<u8>, u64>,
    pub(super) next_qid: u64,
    pub(super) indexes: HashMap<u64, Index>,
    pub(super) space: Space,
    /// Index records replayed.
    pub(super) replayed: u64,
}

/// Recovers the body log and the index. See the module docs.
pub(super) fn recover(
    path: &Path,
    trees: &Trees,
    opts: &SledOptions,
    sync_sled: &dyn Fn() -> Result<(), StoreError>,
) -> Result<Found, StoreError> {
    let quarantine = Quarantine::new(trees.quarantine.clone());
    let commit = trees
        .meta
        .get(COMMIT_KEY)
        .map_err(io)?
        .and_then(|v| CommitPoint::decode(&v));
    let mut table = BTreeSet::new();
    for key in trees.segments.iter().keys() {
        let key = key.map_err(io)?;
        if let Ok(b) = <[u8; 8]>::try_from(key.as_ref()) {
            table.insert(u64::from_be_bytes(b));
        }
    }
    let (log, replay) = BodyLog::open(path, commit, &table, opts.segment_bytes)?;
    let replayed = replay_records(trees, &replay)?;
    let mut qids = HashMap::new();
    let mut known = BTreeSet::new();
    for item in trees.qids.iter() {
        let (k, v) = item.map_err(io)?;
        if let Ok(b) = <[u8; 8]>::try_from(v.as_ref()) {
            let qid = u64::from_be_bytes(b);
            known.insert(qid);
            qids.insert(k.to_vec(), qid);
        }
    }
    let next_qid = trees
        .meta
        .get(NEXT_QID_KEY)
        .map_err(io)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map_or(1, u64::from_be_bytes)
        .max(known.last().map_or(1, |q| q + 1));
    let mut space = Space::default();
    let mut indexes: HashMap<u64, Index> = HashMap::new();
    let mut batch = sled::Batch::default();
    for item in trees.index.iter() {
        let (key, value) = item.map_err(io)?;
        let Some((qid, first)) = record::parse_index_key(&key) else {
            quarantine.put(INDEX, &key, &value, DecodeError("malformed key"))?;
            batch.remove(key);
            continue;
        };
        if !known.contains(&qid) {
            // Left by a queue deleted in a flush that ... cannot happen (one transaction); an
            // entry of no queue is dropped all the same.
            batch.remove(key);
            continue;
        }
        let (loc, st) = match record::decode_index_entry(first, &value) {
            Ok(e) => e,
            Err(reason) => {
                quarantine.put(INDEX, &key, &value, reason)?;
                batch.remove(key);
                continue;
            }
        };
        let fits = log
            .size_at_open(loc.seg)
            .is_some_and(|size| loc.offset >= SEGMENT_HEADER && loc.end() <= size);
        if !fits {
            let why = if log.size_at_open(loc.seg).is_none() {
                "its body-log segment is missing"
            } else {
                "it points past the end of its body-log segment"
            };
            tracing::error!(
                segment = loc.seg,
                offset = loc.offset,
                qid,
                first,
                "index entry set aside: {why}"
            );
            quarantine.put(INDEX, &key, &value, DecodeError(why))?;
            batch.remove(key);
            continue;
        }
        let nbits = (st.last - first).saturating_add(1);
        let live = Bits::from_bytes(st.live, nbits);
        if live.last_set().is_none() {
            // Every entry acked: nothing to keep.
            batch.remove(key);
            continue;
        }
        space.add(&loc);
        indexes.entry(qid).or_default().recover(
            first,
            st.last,
            loc,
            live,
            Bits::from_bytes(st.delivered, nbits),
            Counts::from_pairs(st.counts()),
        );
    }
    trees.index.apply_batch(batch).map_err(io)?;
    // The segment table follows the files: those kept are listed (whatever the records said),
    // those about to go and those missing are not.
    let mut seg_batch = sled::Batch::default();
    let mut empty = Vec::new();
    for seg in log.segments() {
        if space.live(seg) == 0 {
            empty.push(seg);
            seg_batch.remove(&seg.to_be_bytes()[..]);
        } else {
            space.note_size(seg, log.size_at_open(seg).unwrap_or(0));
            seg_batch.insert(&seg.to_be_bytes()[..], &[][..]);
        }
    }
    let present: BTreeSet<u64> = log.segments().into_iter().collect();
    for seg in table.difference(&present) {
        seg_batch.remove(&seg.to_be_bytes()[..]);
    }
    trees.segments.apply_batch(seg_batch).map_err(io)?;
    // Everything replayed is in sled now: once synced, the log is read from where writing
    // resumes, and the segments nothing live points into may go.
    trees
        .meta
        .insert(COMMIT_KEY, log.resume_point().encode())
        .map_err(io)?;
    sync_sled()?;
    for seg in empty {
        log.delete(seg)?;
    }
    Ok(Found {
        log,
        quarantine,
        qids,
        next_qid,
        indexes,
        space,
        replayed,
    })
}

/// Applies the index records found past sled's commit point, in order; stops at one that does
/// not decode (it passed its CRC: a bug or a newer layout), with a log line.
fn replay_records(trees: &Trees, replay: &[Replay]) -> Result<u64, StoreError> {
    let mut n = 0;
    for r in replay {
        match wal::decode(&r.payload) {
            Ok(changes) => wal::apply(trees, &changes, Some(&r.commit))?,
            Err(e) => {
                tracing::error!(
                    segment = r.commit.seg,
                    offset = r.offset,
                    error = %e,
                    "index record does not decode: replay stops here"
                );
                break;
            }
        }
        n += 1;
    }
    if n > 0 {
        tracing::info!(
            records = n,
            "index records written after the last checkpoint applied again"
        );
    }
    Ok(n)
}
