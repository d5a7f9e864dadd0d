//! sled-only storage tests: damaged and missing records set aside, compaction, flushes in
//! order and racing writers, restarts of counts and objects, the data directory lock.

use super::sled::*;
use super::*;
use crate::storage::bodylog;

/// Flips one byte of a file.
fn flip_byte(path: &std::path::Path, at: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).expect("read");
    b[0] ^= 0x40;
    f.write_all_at(&b, at).expect("write");
}

/// Puts message `id` with a body of `len` bytes (no write ahead).
fn put_sized(q: &dyn QueueStore, id: u64, len: usize) -> PutOutcome {
    let m = MessageRecord {
        body: Bytes::from(vec![id as u8; len]),
        ..msg(id)
    };
    q.put(id, m.view()).expect("put")
}

/// Small segments, compacted under half live, one chunk moved per flush.
fn one_move_per_flush() -> SledOptions {
    SledOptions {
        cache_bytes: CACHE,
        segment_bytes: 16 << 10,
        compact_live_percent: 50,
        compact_bytes_per_flush: 1,
        ..SledOptions::default()
    }
}

/// Flushes (boundedly) until compaction picks a segment; returns it.
fn flush_until_compacting(s: &SledStore) -> u64 {
    for _ in 0..100 {
        if let Some(seg) = s.compaction_target() {
            return seg;
        }
        s.flush().expect("flush");
    }
    panic!("no segment picked for compaction");
}

fn segment_path(dir: &tempfile::TempDir, seg: u64) -> std::path::PathBuf {
    bodylog::segment_path(&dir.path().join(bodylog::DIR), seg)
}

/// The ids of the body-log segment files in the data directory `dir`.
fn segments_on_disk(dir: &tempfile::TempDir) -> Vec<u64> {
    std::fs::read_dir(dir.path().join(bodylog::DIR))
        .expect("list")
        .filter_map(|e| bodylog::parse_name(e.expect("entry").file_name().to_str()?))
        .collect()
}

#[test]
fn damaged_records_are_quarantined_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_exchange = exchange("/", "good", "direct");
    let victim;
    {
        let s = open(&dir);
        s.put_exchange(&good_exchange).expect("put");
        s.put_queue(&queue("/", "q")).expect("put");
        let q = s.open_queue("/", "q").expect("open");
        // Four chunks: 1..=4, 5..=8, 9..=12, 13..=16.
        for id in 1..=16 {
            put(&*q, id);
            if id % 4 == 0 {
                s.flush().expect("flush");
            }
        }
        q.mark_delivered(2).expect("mark");
        q.remove(11).expect("ack");
        s.flush().expect("flush");
        victim = raw_index(&s, "/", "q")[1].1;
        // Damage behind the store's back, through sled directly.
        let exchanges = s.raw_tree(b"exchanges");
        exchanges
            .insert(record::exchange_key("/", "bad"), &b"\x01garbage"[..])
            .expect("insert");
        // A well-formed record under the wrong key is damage too.
        exchanges
            .insert(
                record::exchange_key("/", "elsewhere"),
                record::encode_exchange(&good_exchange),
            )
            .expect("insert");
        s.raw_tree(b"queues")
            .insert(record::queue_key("/", "v9"), &b"\x09future"[..])
            .expect("insert");
        let qid = qid(&s, "/", "q");
        s.raw_tree(b"index")
            .insert(record::index_key(qid, 100), &b"\x02short"[..])
            .expect("insert");
        s.raw_tree(b"index")
            .insert(&b"bad key"[..], &b"x"[..])
            .expect("insert");
    }
    // Chunk 5's body: one byte flipped inside its record.
    flip_byte(&segment_path(&dir, victim.seg), victim.offset + 50);
    {
        let s = open(&dir);
        let d = s.load_definitions().expect("load survives damage");
        assert_eq!(d.exchanges, std::slice::from_ref(&good_exchange));
        assert_eq!(d.queues, [queue("/", "q")]);
        let q = s.open_queue("/", "q").expect("open");
        // Chunk 5 is counted until a read meets it.
        assert_eq!(q.len(), 15);
        let back = q.read(0, 100).expect("read skips the damaged chunk");
        assert_eq!(
            back.iter().map(|m| m.id).collect::<Vec<_>>(),
            [1, 2, 3, 4, 9, 10, 12, 13, 14, 15, 16]
        );
        for m in &back {
            assert_eq!(m.record, msg(m.id));
        }
        assert_eq!(delivered_ids(&*q), [2]);
        assert_eq!(q.len(), 11);
        // exchanges: bad + elsewhere; queues: v9; index: short entry, bad key; chunk 5.
        assert_eq!(s.quarantined(), 6);
        s.flush().expect("flush");
    }
    // Quarantined records stay aside; everything else is as it was.
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), [1, 2, 3, 4, 9, 10, 12, 13, 14, 15, 16]);
    assert_eq!(s.quarantined(), 6);
}

/// Truncating the last segment or deleting one: the entries pointing past the end or into the
/// missing file are set aside at open, every other message is served.
#[test]
fn truncated_and_missing_segments_set_their_chunks_aside() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SledOptions {
        cache_bytes: CACHE,
        segment_bytes: 4096,
        ..SledOptions::default()
    };
    let big = |id: u64| MessageRecord {
        body: Bytes::from(vec![id as u8; 1500]),
        ..msg(id)
    };
    let entries = {
        let s = SledStore::open_with(dir.path(), opts).expect("open");
        let q = s.open_queue("/", "q").expect("open");
        for id in 0..12 {
            let _ = q.put(id, big(id).view()).expect("put");
            s.flush().expect("flush");
        }
        raw_index(&s, "/", "q")
    };
    let segs: BTreeSet<u64> = entries.iter().map(|e| e.1.seg).collect();
    assert!(segs.len() >= 4, "{segs:?}");
    let (first_seg, last_seg) = (*segs.first().expect("seg"), *segs.last().expect("seg"));
    // Cut the last segment inside its last record; delete the first segment.
    let last = entries
        .iter()
        .rfind(|e| e.1.seg == last_seg)
        .expect("entry")
        .1;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(segment_path(&dir, last_seg))
        .expect("open");
    f.set_len(last.offset + u64::from(last.len) / 2)
        .expect("truncate");
    std::fs::remove_file(segment_path(&dir, first_seg)).expect("rm");
    let lost: BTreeSet<u64> = entries
        .iter()
        .filter(|e| e.1.seg == first_seg || e.1 == last)
        .map(|e| e.0)
        .collect();
    let s = SledStore::open_with(dir.path(), opts).expect("reopen");
    let q = s.open_queue("/", "q").expect("open");
    let expected: Vec<u64> = (0..12).filter(|id| !lost.contains(id)).collect();
    assert_eq!(ids(&*q), expected);
    for m in q.read(0, 100).expect("read") {
        assert_eq!(m.record, big(m.id));
    }
    assert_eq!(s.quarantined(), lost.len() as u64);
}

/// Segments kept alive by a few old messages are compacted: their live chunks are copied
/// forward (acked entries left out), the files deleted, and every message still reads back,
/// after a restart too.
#[test]
fn sparse_segments_are_compacted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SledOptions {
        cache_bytes: CACHE,
        segment_bytes: 64 << 10,
        compact_live_percent: 50,
        compact_bytes_per_flush: 1 << 20,
        ..SledOptions::default()
    };
    let sized = |id: u64| MessageRecord {
        body: Bytes::from(vec![id as u8; 2000]),
        ..msg(id)
    };
    let kept: Vec<u64> = (0..300).step_by(10).collect();
    {
        let s = SledStore::open_with(dir.path(), opts).expect("open");
        let q = s.open_queue("/", "q").expect("open");
        for id in 0..300 {
            if q.put(id, sized(id).view()).expect("put") == PutOutcome::WriteDue {
                q.write_sealed().expect("write");
            }
            if id % 10 == 9 {
                s.flush().expect("flush");
            }
        }
        let before = s.log_stats().segments;
        for id in (0..300).filter(|id| id % 10 != 0) {
            q.remove(id).expect("ack");
        }
        // Bounded: quiet segments are picked after a few idle flushes; emptied segments go at
        // the checkpoint after.
        for _ in 0..200 {
            s.flush().expect("flush");
            s.checkpoint().expect("checkpoint");
        }
        let stats = s.log_stats();
        assert!(
            stats.chunks_moved > 0 && stats.segments_compacted > 0,
            "{stats:?}"
        );
        assert!(
            stats.segments < before,
            "{stats:?}, {before} segments before"
        );
        let back = q.read(0, 1000).expect("read");
        assert_eq!(back.iter().map(|m| m.id).collect::<Vec<_>>(), kept);
        for m in &back {
            assert_eq!(m.record, sized(m.id));
        }
    }
    let s = SledStore::open_with(dir.path(), opts).expect("reopen");
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), kept);
    assert_eq!(s.quarantined(), 0);
}

/// The flusher appends the next flush's chunks while the committer finishes the flush before.
/// A segment that such an append wrote into and then left for a new one is not taken for
/// empty before those chunks count as live: here the segment holds only the first flush's
/// index record when the second flush's chunk goes in, and another queue's write ahead opens
/// the next segment while the first flush commits. The chunk survives the checkpoint and a
/// restart.
#[test]
fn a_segment_an_append_just_left_is_not_deleted_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SledOptions {
        cache_bytes: CACHE,
        segment_bytes: 64 << 10,
        ..SledOptions::default()
    };
    {
        let s = Arc::new(SledStore::open_with(dir.path(), opts).expect("open"));
        let a = s.open_queue("/", "a").expect("open");
        let b = s.open_queue("/", "b").expect("open");
        // A chunk larger than a segment gets one of its own; the flush's index record starts
        // the next one, which then holds nothing live.
        assert_eq!(put_sized(&*a, 0, 100 << 10), PutOutcome::Buffered);
        let first = s.flush_prepare().expect("prepare");
        assert_eq!(put_sized(&*a, 1, 1000), PutOutcome::Buffered);
        let (store, other) = (Arc::clone(&s), Arc::clone(&b));
        crate::storage::sled::WHILE_APPENDING.with(|h| {
            *h.borrow_mut() = Some(Box::new(move || {
                // Over a chunk's largest size: sealed by the next put, and written ahead.
                assert_eq!(put_sized(&*other, 0, 300 << 10), PutOutcome::Buffered);
                assert_eq!(put_sized(&*other, 1, 10), PutOutcome::WriteDue);
                other.write_sealed().expect("write ahead");
                store.flush_commit(first).expect("commit the first flush");
            }))
        });
        let second = s.flush_prepare().expect("prepare");
        s.flush_commit(second).expect("commit the second flush");
        s.flush().expect("flush");
        s.checkpoint().expect("checkpoint");
        assert_eq!(ids(&*a), [0, 1]);
        assert_eq!(s.quarantined(), 0);
    }
    let s = SledStore::open_with(dir.path(), opts).expect("reopen");
    assert_eq!(ids(&*s.open_queue("/", "a").expect("open")), [0, 1]);
    assert_eq!(ids(&*s.open_queue("/", "b").expect("open")), [0, 1]);
    assert_eq!(s.quarantined(), 0);
}

/// A queue deleted while a flush in flight moves one of its chunks out of a segment being
/// compacted: the chunk's bytes stop counting in that segment once, not twice, so the segment
/// is not taken for empty while a chunk that compaction cannot move (its queue not opened
/// since the restart) is still live in it.
#[test]
fn deleting_a_queue_during_its_compaction_move_keeps_its_neighbours() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = one_move_per_flush();
    {
        let s = SledStore::open_with(dir.path(), opts).expect("open");
        let [a, b, c, d] = ["a", "b", "c", "d"].map(|n| s.open_queue("/", n).expect("open"));
        // One segment with a chunk of each of a, b and c; then d's chunk starts another.
        assert_eq!(put_sized(&*a, 0, 4000), PutOutcome::Buffered);
        assert_eq!(put_sized(&*b, 0, 1000), PutOutcome::Buffered);
        assert_eq!(put_sized(&*c, 0, 9000), PutOutcome::Buffered);
        s.flush().expect("flush");
        assert_eq!(put_sized(&*d, 0, 20_000), PutOutcome::Buffered);
        s.flush().expect("flush");
        // c's chunk acked: the first segment is a third live.
        c.remove(0).expect("ack");
        s.flush().expect("flush");
    }
    {
        // b is not opened after the restart: compaction cannot move its chunk.
        let s = SledStore::open_with(dir.path(), opts).expect("open");
        let a = s.open_queue("/", "a").expect("open");
        flush_until_compacting(&s);
        a.mark_delivered(0).expect("mark");
        let moving = s.flush_prepare().expect("prepare");
        s.delete_queue("/", "a").expect("delete");
        s.flush_commit(moving).expect("commit");
        assert_eq!(s.log_stats().chunks_moved, 1);
        for _ in 0..3 {
            s.flush().expect("flush");
            s.checkpoint().expect("checkpoint");
        }
    }
    let s = SledStore::open_with(dir.path(), opts).expect("reopen");
    assert_eq!(ids(&*s.open_queue("/", "b").expect("open")), [0]);
    assert_eq!(ids(&*s.open_queue("/", "d").expect("open")), [0]);
    assert_eq!(s.quarantined(), 0);
}

/// A chunk that a read sets aside (damaged where it was) while a flush in flight moves it: the
/// copy the flush wrote belongs to nothing, so it does not keep its segment alive. Once every
/// other message before the last one is acked, every segment before the last one goes.
#[test]
fn a_copy_of_a_chunk_set_aside_during_its_move_is_not_kept_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = SledStore::open_with(dir.path(), one_move_per_flush()).expect("open");
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(put_sized(&*q, 0, 4000), PutOutcome::Buffered);
    s.flush().expect("flush");
    assert_eq!(put_sized(&*q, 1, 9000), PutOutcome::Buffered);
    s.flush().expect("flush");
    // A chunk larger than a segment: the first segment is closed, then a third live.
    assert_eq!(put_sized(&*q, 2, 20_000), PutOutcome::Buffered);
    s.flush().expect("flush");
    q.remove(1).expect("ack");
    s.flush().expect("flush");
    let victim = raw_index(&s, "/", "q")[0].1;
    assert_eq!(flush_until_compacting(&s), victim.seg);
    let moving = s.flush_prepare().expect("prepare");
    // Damaged where it was: the read sets it aside while its copy is being written.
    flip_byte(&segment_path(&dir, victim.seg), victim.offset + 40);
    assert_eq!(ids(&*q), [2]);
    s.flush_commit(moving).expect("commit");
    assert_eq!(s.log_stats().chunks_moved, 1);
    q.remove(2).expect("ack");
    assert_eq!(put_sized(&*q, 3, 20_000), PutOutcome::Buffered);
    for _ in 0..5 {
        s.flush().expect("flush");
        s.checkpoint().expect("checkpoint");
    }
    let last = raw_index(&s, "/", "q")
        .into_iter()
        .find(|e| e.0 == 3)
        .expect("message 3 indexed")
        .1;
    let kept: Vec<u64> = segments_on_disk(&dir)
        .into_iter()
        .filter(|&seg| seg < last.seg)
        .collect();
    assert_eq!(kept, Vec::<u64>::new(), "segments before {} kept", last.seg);
}

/// Pipelined flushes: the second is prepared while the first is not yet committed; acks of
/// chunks the first one is writing wait for the flush after; everything lands, in order.
#[test]
fn pipelined_flushes_commit_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        for id in 0..5 {
            put(&*q, id);
        }
        let first = s.flush_prepare().expect("prepare");
        // The chunk of 0..5 is being written by `first`: this ack waits for a later flush.
        q.remove(1).expect("ack");
        q.mark_delivered(2).expect("mark");
        for id in 5..8 {
            put(&*q, id);
        }
        let second = s.flush_prepare().expect("prepare");
        s.flush_commit(first).expect("commit first");
        s.flush_commit(second).expect("commit second");
        assert_eq!(ids(&*q), [0, 2, 3, 4, 5, 6, 7]);
        // The next flush writes the deferred state.
        s.flush().expect("flush");
        assert_eq!(raw_states(&s, "/", "q")[0], (0, vec![0, 2, 3, 4], vec![2]));
    }
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), [0, 2, 3, 4, 5, 6, 7]);
    assert_eq!(delivered_ids(&*q), [2]);
}

#[test]
fn counts_meta_and_objects_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        for id in 1..=5 {
            put(&*q, id);
        }
        s.flush().expect("flush");
        q.set_delivery_count(2, 4).expect("count");
        q.set_delivery_count(5, 1).expect("count");
        q.remove(5).expect("ack");
        s.put_object("policy", "p", b"v").expect("put");
        // No flush: dropping the store writes what is buffered.
    }
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    let back = q.read(0, 10).expect("read");
    assert_eq!(
        back.iter()
            .map(|m| (m.id, m.delivery_count))
            .collect::<Vec<_>>(),
        [(1, 0), (2, 4), (3, 0), (4, 0)]
    );
    for m in &back {
        assert_eq!(m.record, msg(m.id));
    }
    assert_eq!(
        s.load_objects("policy").expect("load"),
        [("p".to_owned(), Bytes::from_static(b"v"))]
    );
}

#[test]
fn interleaved_publishers_order_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        interleaved_publishers_keep_their_order(&s);
    }
    let s = open(&dir);
    check_interleaved(&*s.open_queue("/", "busy").expect("open"));
}

#[test]
fn second_open_of_a_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = open(&dir);
    match SledStore::open(dir.path(), CACHE) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    let msg = SledStore::open(dir.path(), CACHE)
        .expect_err("locked")
        .to_string();
    assert!(msg.contains("in use by another process"), "{msg}");
    drop(first);
    let again = open(&dir);
    assert_eq!(again.path(), dir.path());
}

#[test]
fn sled_lock_alone_also_maps_to_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Keep sled's database alive through a tree handle after the store (and its lock file) is
    // gone: sled's own lock must still refuse a second open, and be reported as Locked.
    let handle = {
        let s = open(&dir);
        s.raw_tree(b"index")
    };
    match SledStore::open(dir.path(), CACHE) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(handle);
    open(&dir);
}

#[test]
fn flushes_racing_puts_marks_and_acks_leave_exact_states() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut unacked_delivered = BTreeSet::new();
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        let done = std::sync::atomic::AtomicBool::new(false);
        // Both sides start together, so the flushes race the writes even when the machine is
        // busy and the flusher thread is scheduled late.
        let start = std::sync::Barrier::new(2);
        std::thread::scope(|scope| {
            let flusher = scope.spawn(|| {
                start.wait();
                let mut flushes = 0u32;
                // Bounded: stops when the writers are done, or after 10 000 flushes; at least
                // one flush either way.
                loop {
                    s.flush().expect("flush");
                    flushes += 1;
                    if done.load(std::sync::atomic::Ordering::Acquire) || flushes >= 10_000 {
                        break;
                    }
                }
                flushes
            });
            start.wait();
            for id in 0..3000u64 {
                put(&*q, id);
                q.mark_delivered(id).expect("mark");
                // Ack two of every three, some right away (often before a flush), some later
                // (often after one wrote their chunk).
                match id % 3 {
                    0 => q.remove(id).expect("ack"),
                    1 if id >= 30 => q.remove(id - 30).expect("ack later"),
                    _ => {}
                }
            }
            done.store(true, std::sync::atomic::Ordering::Release);
            assert!(flusher.join().expect("flusher") > 0);
        });
        for m in q.read(0, usize::MAX).expect("read") {
            assert!(m.delivered);
            unacked_delivered.insert(m.id);
        }
    }
    let s = open(&dir);
    let mut live = BTreeSet::new();
    let mut delivered = BTreeSet::new();
    for (_, l, d) in raw_states(&s, "/", "q") {
        assert!(!l.is_empty(), "a chunk with nothing live is deleted");
        live.extend(l);
        delivered.extend(d);
    }
    assert_eq!(live, unacked_delivered);
    assert_eq!(delivered, unacked_delivered);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(
        ids(&*q),
        unacked_delivered.iter().copied().collect::<Vec<_>>()
    );
}
