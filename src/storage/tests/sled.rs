//! sled-only storage tests: restarts, chunks and their states as sled holds them, locking.

use super::*;
use crate::storage::bodylog::Loc;

pub(super) fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), CACHE).expect("open")
}

/// The numeric id of a durable queue, as sled holds it.
pub(super) fn qid(s: &SledStore, vhost: &str, name: &str) -> u64 {
    let v = s
        .raw_tree(b"qids")
        .get(record::queue_key(vhost, name))
        .expect("get")
        .expect("queue has an id");
    u64::from_be_bytes(v.as_ref().try_into().expect("8 bytes"))
}

/// The index entries of a queue as sled holds them after a checkpoint (which applies the
/// committed flushes' index changes): (first id, location, live ids, delivered ids).
pub(super) fn raw_index(
    s: &SledStore,
    vhost: &str,
    name: &str,
) -> Vec<(u64, Loc, Vec<u64>, Vec<u64>)> {
    let set = |first: u64, bits: &[u8]| -> Vec<u64> {
        (0..bits.len() as u64 * 8)
            .filter(|i| bits[(*i / 8) as usize] >> (i % 8) & 1 == 1)
            .map(|i| first + i)
            .collect()
    };
    s.checkpoint().expect("checkpoint");
    s.raw_tree(b"index")
        .scan_prefix(qid(s, vhost, name).to_be_bytes())
        .map(|kv| {
            let (k, v) = kv.expect("item");
            let (_, first) = record::parse_index_key(&k).expect("key");
            let (loc, st) = record::decode_index_entry(first, &v).expect("entry");
            (first, loc, set(first, st.live), set(first, st.delivered))
        })
        .collect()
}

/// The chunks of a queue as the body log holds them: (first id, ids of the entries written).
pub(super) fn raw_chunks(s: &SledStore, vhost: &str, name: &str) -> Vec<(u64, Vec<u64>)> {
    let q = qid(s, vhost, name);
    raw_index(s, vhost, name)
        .into_iter()
        .map(|(first, loc, _, _)| {
            let body = s.raw_body(&loc, q, first);
            let ids = record::chunk_entries(&body)
                .expect("entries")
                .iter()
                .map(|e| e.id)
                .collect();
            (first, ids)
        })
        .collect()
}

/// Every id the queue's written chunks hold, in order.
fn written_ids(s: &SledStore, name: &str) -> Vec<u64> {
    raw_chunks(s, "/", name)
        .into_iter()
        .flat_map(|(_, ids)| ids)
        .collect()
}

/// The chunk states of a queue as sled holds them: (first id, live ids, delivered ids).
pub(super) fn raw_states(s: &SledStore, vhost: &str, name: &str) -> Vec<(u64, Vec<u64>, Vec<u64>)> {
    raw_index(s, vhost, name)
        .into_iter()
        .map(|(first, _, live, delivered)| (first, live, delivered))
        .collect()
}

#[test]
fn restart_keeps_durable_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let defs = Definitions {
        exchanges: vec![
            exchange("/", "logs", "topic"),
            exchange("v/1", "a/b", "fanout"),
        ],
        queues: vec![queue("/", "durable"), queue("v/1", "x")],
        bindings: vec![binding("logs", "durable", "#", b"\x00\x00\x00\x00")],
    };
    {
        let s = open(&dir);
        for e in &defs.exchanges {
            s.put_exchange(e).expect("put");
        }
        for q in &defs.queues {
            s.put_queue(q).expect("put");
        }
        for b in &defs.bindings {
            s.put_binding(b).expect("put");
        }
        s.put_exchange(&exchange("/", "gone", "direct"))
            .expect("put");
        s.delete_exchange("/", "gone").expect("delete");

        let q = s.open_queue("/", "durable").expect("open");
        for id in [1u64, 2, 3, 7, 10] {
            put(&*q, id);
        }
        q.mark_delivered(3).expect("mark");
        q.mark_delivered(10).expect("mark");
        q.mark_delivered(2).expect("mark");
        q.remove(2).expect("ack");
        // A scratch tree of an earlier version is dropped at the next open.
        s.raw_tree(b"tmp:\x00\x00\x00\x01/\x00\x00\x00\x01t")
            .insert(b"k", b"v")
            .expect("insert");
        s.flush().expect("flush");
    }
    {
        let s = open(&dir);
        assert_eq!(
            sorted(s.load_definitions().expect("load")),
            sorted(defs.clone())
        );
        assert!(!s.tree_names().iter().any(|n| n.starts_with(b"tmp:")));
        let q = s.open_queue("/", "durable").expect("open");
        assert_eq!((q.len(), q.last_id()), (4, Some(10)));
        let back = q.read(0, 100).expect("read");
        assert_eq!(back.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 3, 7, 10]);
        assert_eq!(delivered_ids(&*q), [3, 10]);
        for m in &back {
            assert_eq!(m.record, msg(m.id));
        }
        // The store keeps working after a restart, and a second one sees that too.
        assert!(q.put(10, msg(10).view()).is_err());
        put(&*q, 11);
        q.remove(1).expect("ack");
        s.flush().expect("flush");
    }
    let s = open(&dir);
    let q = s.open_queue("/", "durable").expect("open");
    assert_eq!(ids(&*q), [3, 7, 10, 11]);
    assert_eq!(delivered_ids(&*q), [3, 10]);
}

#[test]
fn partially_acked_chunks_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        for id in 1..=10 {
            put(&*q, id);
        }
        s.flush().expect("flush");
        for id in [3, 4, 7] {
            q.remove(id).expect("ack");
        }
        s.flush().expect("flush");
        // One chunk, written once; its state says what is left.
        assert_eq!(raw_chunks(&s, "/", "q"), [(1, (1..=10).collect())]);
        assert_eq!(
            raw_states(&s, "/", "q"),
            [(1, vec![1, 2, 5, 6, 8, 9, 10], vec![])]
        );
    }
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        assert_eq!((q.len(), q.last_id()), (7, Some(10)));
        assert_eq!(ids(&*q), [1, 2, 5, 6, 8, 9, 10]);
        // Acking the tail lowers the last id, so a restart numbers on from 10 again: the new
        // chunk's span overlaps the old chunk's acked tail.
        q.remove(10).expect("ack");
        q.remove(9).expect("ack");
        s.flush().expect("flush");
    }
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        assert_eq!((q.len(), q.last_id()), (5, Some(8)));
        for id in 9..=12 {
            put(&*q, id);
        }
        q.remove(1).expect("ack");
        q.mark_delivered(9).expect("mark");
        s.flush().expect("flush");
        assert_eq!(ids(&*q), [2, 5, 6, 8, 9, 10, 11, 12]);
    }
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!((q.len(), q.last_id()), (8, Some(12)));
    assert_eq!(ids(&*q), [2, 5, 6, 8, 9, 10, 11, 12]);
    assert_eq!(delivered_ids(&*q), [9]);
    assert_eq!(
        raw_states(&s, "/", "q"),
        [
            (1, vec![2, 5, 6, 8], vec![]),
            (9, vec![9, 10, 11, 12], vec![9])
        ]
    );
}

#[test]
fn fully_acked_chunks_are_removed_with_their_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    for id in 1..=3 {
        put(&*q, id);
    }
    s.flush().expect("flush");
    for id in 4..=6 {
        put(&*q, id);
    }
    s.flush().expect("flush");
    assert_eq!(
        raw_chunks(&s, "/", "q"),
        [(1, vec![1, 2, 3]), (4, vec![4, 5, 6])]
    );
    for id in 1..=3 {
        q.remove(id).expect("ack");
    }
    q.remove(5).expect("ack");
    s.flush().expect("flush");
    assert_eq!(raw_chunks(&s, "/", "q"), [(4, vec![4, 5, 6])]);
    assert_eq!(raw_states(&s, "/", "q"), [(4, vec![4, 6], vec![])]);
    q.remove(4).expect("ack");
    q.remove(6).expect("ack");
    s.flush().expect("flush");
    assert!(raw_chunks(&s, "/", "q").is_empty());
    assert!(raw_states(&s, "/", "q").is_empty());
    assert!(q.is_empty());
}

#[test]
fn entries_acked_before_their_chunk_is_sealed_are_never_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    for id in 1..=5 {
        put(&*q, id);
        q.mark_delivered(id).expect("mark");
    }
    q.remove(2).expect("ack");
    q.remove(4).expect("ack");
    // Consumed and acked within one group commit: nothing of these reaches sled.
    for id in 6..=8 {
        put(&*q, id);
        q.remove(id).expect("ack");
    }
    s.flush().expect("flush");
    assert_eq!(raw_chunks(&s, "/", "q"), [(1, vec![1, 3, 5])]);
    assert_eq!(
        raw_states(&s, "/", "q"),
        [(1, vec![1, 3, 5], vec![1, 3, 5])]
    );
    for id in 9..=10 {
        put(&*q, id);
        q.remove(id).expect("ack");
    }
    s.flush().expect("flush");
    assert_eq!(raw_chunks(&s, "/", "q"), [(1, vec![1, 3, 5])]);
    assert_eq!(ids(&*q), [1, 3, 5]);
}

/// A message of about 40 KB (seven fill a 256 KiB chunk).
fn big_message(byte: u8) -> MessageRecord {
    MessageRecord {
        body: Bytes::from(vec![byte; 40_000]),
        ..msg(0)
    }
}

/// Where each message read back from `q` sits relative to the one before it: the bytes between
/// one body's end and the next body's start.
fn body_gaps(q: &dyn QueueStore, from: u64, n: usize) -> Vec<isize> {
    let read = q.read(from, n).expect("read");
    assert_eq!(read.len(), n);
    read.windows(2)
        .map(|w| {
            let (a, b) = (&w[0].record, &w[1].record);
            b.body.as_ptr() as isize - (a.body.as_ptr() as isize + a.body.len() as isize)
        })
        .collect()
}

/// Messages read back do not keep their chunk alive (the entries not taken, their headers and
/// names) when they are a part of it: a part is copied out, packed one after the other (each
/// body follows the next one's properties and meta); a chunk read whole is sliced (an entry's
/// header and names sit between two bodies).
#[test]
fn messages_read_back_from_part_of_a_chunk_are_packed_copies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    let small = s.open_queue("/", "small").expect("open");
    for id in 1..=100 {
        put(&*small, id);
    }
    s.flush().expect("flush");
    let expected: Vec<isize> = (2..=10)
        .map(|n| (msg(n).properties.len() + msg(n).meta.len()) as isize)
        .collect();
    assert_eq!(body_gaps(&*small, 1, 10), expected, "packed copies");
    let packed_gap = expected.iter().max().copied().unwrap_or(0);
    assert!(
        body_gaps(&*small, 1, 100).iter().all(|g| *g > packed_gap),
        "a chunk read whole is sliced"
    );
}

/// Bytes in the body log's segment files.
fn logged_bytes(dir: &tempfile::TempDir) -> u64 {
    std::fs::read_dir(dir.path().join("bodies"))
        .map(|d| {
            d.map(|e| e.expect("entry").metadata().expect("meta").len())
                .sum()
        })
        .unwrap_or(0)
}

/// A publisher never waits for a group commit's append (it runs on a connection's task): it
/// hands the sealed chunk to the write-ahead thread, which writes it once the log is free.
#[test]
fn a_write_ahead_does_not_wait_for_a_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    s.set_hold(0, 0);
    let q = s.open_queue("/", "q").expect("open");
    let m = big_message(7);
    let logged = || logged_bytes(&dir);
    let before = logged();
    let mut due = false;
    for id in 0..7 {
        due |= q.put(id, m.view()).expect("put") == PutOutcome::WriteDue;
    }
    assert!(due, "the seventh message seals the first chunk");
    {
        let _held = s.hold_log_writer();
        let (tx, rx) = std::sync::mpsc::channel();
        let q2 = std::sync::Arc::clone(&q);
        std::thread::spawn(move || tx.send(q2.write_sealed().is_ok()));
        // Waiting here would be a deadlock; the guard goes with the panic, freeing the thread.
        let done = rx.recv_timeout(std::time::Duration::from_secs(10));
        assert_eq!(done, Ok(true), "the write ahead waited for the log");
        assert_eq!(logged(), before, "nothing written while the log is held");
    }
    s.wait_write_ahead();
    assert!(logged() > before + 240_000, "written once the log is free");
    s.flush().expect("flush");
    assert_eq!(raw_chunks(&s, "/", "q")[0].1, (0..6).collect::<Vec<_>>());
    assert_eq!(ids(&*q), (0..7).collect::<Vec<_>>());
}

#[test]
fn full_chunks_are_written_before_a_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    s.set_hold(0, 0);
    let q = s.open_queue("/", "q").expect("open");
    let m = big_message(9);
    let mut due = 0;
    for id in 0..20 {
        if q.put(id, m.view()).expect("put") == PutOutcome::WriteDue {
            due += 1;
            q.write_sealed().expect("write sealed");
        }
    }
    // 256 KiB chunks of ~40 KB messages: every 7th message starts the next (at 6, 12, 18).
    assert_eq!(due, 3);
    s.wait_write_ahead();
    // Three full chunks are in the body log already; the flush indexes them with the rest.
    assert!(s.raw_tree(b"index").is_empty());
    let logged = logged_bytes(&dir);
    assert!(logged > 3 * 240_000, "{logged}");
    s.flush().expect("flush");
    assert_eq!(raw_chunks(&s, "/", "q")[0].1.len(), 6);
    assert_eq!(written_ids(&s, "q"), (0..20).collect::<Vec<_>>());
}

/// Sealed chunks do not pile up behind a busy write-ahead thread: the publisher that seals the
/// fourth one waiting writes them all itself.
#[test]
fn a_publisher_writes_its_chunks_itself_when_four_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    s.set_hold(0, 0);
    let q = s.open_queue("/", "q").expect("open");
    let m = big_message(9);
    let before = logged_bytes(&dir);
    s.pause_write_ahead(true);
    let mut due = 0;
    // Chunks seal at ids 6, 12, 18 and 24: the fourth is written here, with the three before.
    for id in 0..25 {
        if q.put(id, m.view()).expect("put") == PutOutcome::WriteDue {
            due += 1;
            q.write_sealed().expect("write sealed");
            let written = logged_bytes(&dir) - before;
            if due < 4 {
                assert!(
                    written < 240_000,
                    "chunk {due} left to the thread: {written}"
                );
            } else {
                assert!(
                    written > 4 * 240_000,
                    "the fourth writes all four: {written}"
                );
            }
        }
    }
    assert_eq!(due, 4);
    s.pause_write_ahead(false);
    s.wait_write_ahead();
    s.flush().expect("flush");
    assert_eq!(written_ids(&s, "q"), (0..25).collect::<Vec<_>>());
}

/// A queue keeps its sealed chunks for the next flush: entries acked before it are never
/// written, and a chunk acked whole is not written at all.
#[test]
fn sealed_chunks_wait_for_the_flush_and_leave_acked_entries_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    let m = big_message(3);
    let before = logged_bytes(&dir);
    let mut due = 0;
    // Chunks seal at ids 6 and 12; a consumer takes each message as it comes, so both are kept.
    for id in 0..13 {
        let sealed = q.put(id, m.view()).expect("put") == PutOutcome::WriteDue;
        q.mark_delivered(id).expect("deliver");
        if sealed {
            due += 1;
            q.write_sealed().expect("write sealed");
        }
    }
    assert_eq!(due, 2);
    s.wait_write_ahead();
    assert_eq!(logged_bytes(&dir), before, "nothing written ahead");
    assert!(s.held_bytes() > 2 * 240_000, "{}", s.held_bytes());
    // A consumer acks the whole first chunk and half the second before the flush.
    for id in 0..9 {
        q.remove(id).expect("ack");
    }
    s.flush().expect("flush");
    assert_eq!(s.held_bytes(), 0);
    let chunks = raw_chunks(&s, "/", "q");
    assert_eq!(chunks.len(), 2, "{chunks:?}");
    assert_eq!(chunks[0].1, (9..12).collect::<Vec<_>>());
    assert_eq!(chunks[1].1, vec![12]);
    // Four 40 KB messages and some headers: the acked ones never reached the log.
    let written = logged_bytes(&dir) - before;
    assert!(written < 5 * 40_000, "{written}");
    assert_eq!(ids(&*q), (9..13).collect::<Vec<_>>());
}

/// A queue keeps at most its share of chunks, and the node at most its bytes: past either,
/// sealed chunks are written ahead as before.
#[test]
fn kept_chunks_are_bounded_per_queue_and_per_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    s.set_hold(2, 600_000);
    let m = big_message(5);
    let before = logged_bytes(&dir);
    let a = s.open_queue("/", "a").expect("open");
    let b = s.open_queue("/", "b").expect("open");
    let put_chunks = |q: &std::sync::Arc<dyn QueueStore>, from: u64, n: u64| {
        for id in from..from + 7 * n {
            let sealed = q.put(id, m.view()).expect("put") == PutOutcome::WriteDue;
            q.mark_delivered(id).expect("deliver");
            if sealed {
                q.write_sealed().expect("write sealed");
            }
        }
        s.wait_write_ahead();
    };
    // Queue a seals two chunks (at ids 6 and 12) and keeps both.
    put_chunks(&a, 0, 2);
    assert_eq!(logged_bytes(&dir), before);
    // Its third goes ahead with the two before it.
    put_chunks(&a, 14, 1);
    let after_a = logged_bytes(&dir);
    assert!(after_a > before + 3 * 240_000, "{}", after_a - before);
    // Queue b keeps one chunk (some 280 KB of the node's 600 KB); a keeps one more; then the
    // node is past its bytes and b's second chunk goes ahead at once.
    put_chunks(&b, 0, 1);
    put_chunks(&a, 21, 1);
    assert_eq!(logged_bytes(&dir), after_a);
    put_chunks(&b, 7, 1);
    assert!(logged_bytes(&dir) > after_a + 2 * 240_000);
    s.flush().expect("flush");
    assert_eq!(s.held_bytes(), 0);
    assert_eq!(written_ids(&s, "a"), (0..28).collect::<Vec<_>>());
    assert_eq!(written_ids(&s, "b"), (0..14).collect::<Vec<_>>());
}

/// Chunks of a queue nobody reads (or whose consumers are behind) are written ahead at once:
/// keeping them would only move their writes into the flush.
#[test]
fn chunks_nobody_reads_yet_are_written_ahead_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    let m = big_message(4);
    let before = logged_bytes(&dir);
    for id in 0..7 {
        if q.put(id, m.view()).expect("put") == PutOutcome::WriteDue {
            q.write_sealed().expect("write sealed");
        }
    }
    s.wait_write_ahead();
    assert!(logged_bytes(&dir) > before + 240_000, "written ahead");
    assert_eq!(s.held_bytes(), 0);
    // A consumer far behind (reading what is written) does not make the queue keep chunks.
    s.flush().expect("flush");
    q.mark_delivered(0).expect("deliver");
    let after = logged_bytes(&dir);
    // The open chunk starts at 7 and seals at 13.
    for id in 7..14 {
        if q.put(id, m.view()).expect("put") == PutOutcome::WriteDue {
            q.write_sealed().expect("write sealed");
        }
    }
    s.wait_write_ahead();
    assert!(logged_bytes(&dir) > after + 240_000, "written ahead");
}

#[test]
fn delivered_marks_survive_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        for id in 1..=3 {
            put(&*q, id);
        }
        s.flush().expect("flush");
        for id in 4..=6 {
            put(&*q, id);
        }
        q.mark_delivered(2).expect("mark");
        q.mark_delivered(5).expect("mark");
        s.flush().expect("flush");
        q.mark_delivered(6).expect("mark");
        q.remove(5).expect("ack");
        // No explicit flush: dropping the store writes what is buffered.
    }
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q").expect("open");
        assert_eq!(ids(&*q), [1, 2, 3, 4, 6]);
        assert_eq!(delivered_ids(&*q), [2, 6]);
        q.remove(2).expect("ack");
        s.flush().expect("flush");
    }
    let s = open(&dir);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(delivered_ids(&*q), [6]);
    assert_eq!(ids(&*q), [1, 3, 4, 6]);
}

#[test]
fn restart_after_delete_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        for name in ["a", "b"] {
            s.put_queue(&queue("/", name)).expect("put");
            let q = s.open_queue("/", name).expect("open");
            for id in 0..20 {
                put(&*q, id);
                if id == 9 {
                    s.flush().expect("flush");
                }
            }
        }
        let qa = qid(&s, "/", "a");
        s.delete_queue("/", "a").expect("delete");
        s.flush().expect("flush");
        s.checkpoint().expect("checkpoint");
        assert_eq!(
            s.raw_tree(b"index").scan_prefix(qa.to_be_bytes()).count(),
            0
        );
        s.open_queue("/", "b")
            .expect("open")
            .clear()
            .expect("purge");
        s.flush().expect("flush");
        assert!(raw_chunks(&s, "/", "b").is_empty());
        assert!(raw_states(&s, "/", "b").is_empty());
    }
    let s = open(&dir);
    let names: Vec<_> = s
        .load_definitions()
        .expect("load")
        .queues
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["b"]);
    for name in ["a", "b"] {
        let q = s.open_queue("/", name).expect("open");
        assert_eq!((q.len(), q.last_id()), (0, None), "{name}");
    }
}
