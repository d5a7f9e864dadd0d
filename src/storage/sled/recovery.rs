//! Opening the store: the body log's recovery, then one pass over the index that checks every
//! entry against its segment, rebuilds each queue's in-memory index and counts each segment's
//! live bytes, then deletes segments nothing live points into.
//!
//! Entries that do not decode, or point into a missing segment or past a segment's end (a
//! truncated file), are moved to the quarantine with a log line naming segment and offset;
//! entries of queues that no longer exist are dropped. Nothing here panics on any byte.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::super::StoreError;
use super::super::bodylog::format::SEGMENT_HEADER;
use super::super::bodylog::{BodyLog, CommitPoint};
use super::super::chunk::{Bits, Counts, Index};
use super::super::record::{self, DecodeError};
use super::flush::Space;
use super::quarantine::Quarantine;
use super::{COMMIT_KEY, INDEX, NEXT_QID_KEY, SledOptions, Trees, io};

/// What recovery found.
pub(super) struct Found {
    pub(super) log: BodyLog,
    pub(super) quarantine: Quarantine,
    pub(super) qids: HashMap<Vec<u8>, u64>,
    pub(super) next_qid: u64,
    pub(super) indexes: HashMap<u64, Index>,
    pub(super) space: Space,
}

/// Recovers the body log and the index. See the module docs.
pub(super) fn recover(path: &Path, trees: &Trees, opts: &SledOptions) -> Result<Found, StoreError> {
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
    let log = BodyLog::open(path, commit, &table, opts.segment_bytes)?;
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
    // Segments nothing live points into go now; the table follows the files.
    let mut seg_batch = sled::Batch::default();
    for seg in log.segments() {
        space.note_size(seg, log.size_at_open(seg).unwrap_or(0));
        if space.live(seg) == 0 {
            log.delete(seg)?;
            seg_batch.remove(&seg.to_be_bytes()[..]);
        }
    }
    let present: BTreeSet<u64> = log.segments().into_iter().collect();
    for seg in table.difference(&present) {
        seg_batch.remove(&seg.to_be_bytes()[..]);
    }
    trees.segments.apply_batch(seg_batch).map_err(io)?;
    Ok(Found {
        log,
        quarantine,
        qids,
        next_qid,
        indexes,
        space,
    })
}
