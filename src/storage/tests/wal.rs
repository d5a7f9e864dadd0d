//! The body log as the write-ahead log of the index: flushes committed without a checkpoint
//! (sled never flushed) come back from the index records after a crash, and a damaged last
//! index record loses only its own flush.
//!
//! A crash is simulated by copying sled's files as the last checkpoint left them (sled writes
//! its transactions to its file without syncing them: a power loss may lose them all), and the
//! body log as the flushes since left it (synced), then opening the copy. No checkpoint runs by
//! itself in these tests.

use super::sled::*;
use super::*;

/// Options whose checkpoints never come by themselves during a test.
fn no_checkpoints() -> SledOptions {
    SledOptions {
        cache_bytes: CACHE,
        checkpoint_ms: 3_600_000,
        checkpoint_bytes: u64::MAX,
        ..SledOptions::default()
    }
}

/// Copies a directory tree but for `skip` (names at its top).
fn copy_dir(from: &std::path::Path, to: &std::path::Path, skip: &[&str]) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("list") {
        let entry = entry.expect("entry");
        if skip.iter().any(|s| entry.file_name() == **s) {
            continue;
        }
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target, &[]);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// Files of the data directory that are not sled's.
const NOT_SLED: [&str; 3] = ["bodies", "delayed", "lagomorph.lock"];

/// sled's files as the last checkpoint left them.
fn copy_sled(s: &SledStore, to: &std::path::Path) {
    s.checkpoint().expect("checkpoint");
    copy_dir(s.path(), to, &NOT_SLED);
}

/// The body log (and delayed messages) as the crash left them.
fn copy_log(s: &SledStore, to: &std::path::Path) {
    for d in &NOT_SLED[..2] {
        copy_dir(&s.path().join(d), &to.join(d), &[]);
    }
}

/// The state checked after a crash: definitions, messages, delivered marks, objects.
fn check(s: &SledStore) {
    let d = s.load_definitions().expect("definitions");
    assert_eq!(d.exchanges, [exchange("/", "x", "direct")]);
    assert_eq!(d.queues, [queue("/", "q")]);
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), (6..=20).collect::<Vec<_>>());
    assert_eq!(delivered_ids(&*q), [6]);
    for m in q.read(0, 100).expect("read") {
        assert_eq!(m.record, msg(m.id));
    }
    assert_eq!(
        s.load_objects("policy").expect("objects"),
        [("p1".to_string(), Bytes::from_static(b"v1"))]
    );
    assert!(
        s.raw_tree(b"qids")
            .get(record::queue_key("/", "gone"))
            .expect("get")
            .is_none()
    );
}

#[test]
fn committed_flushes_come_back_after_a_crash_between_checkpoints() {
    crash_between_checkpoints(false);
}

/// sled writes its buffers when they fill, not only at checkpoints: a crash may find the
/// definitions, queue ids and segment table that flushes applied at once on disk, ahead of the
/// commit point, and the message index as the last checkpoint left it. Replaying from the
/// commit point mends both.
#[test]
fn committed_flushes_come_back_with_sled_ahead_of_its_commit_point() {
    crash_between_checkpoints(true);
}

fn crash_between_checkpoints(sled_ahead: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let crashed = tempfile::tempdir().expect("tempdir");
    let gone_qid;
    {
        let s = SledStore::open_with(dir.path(), no_checkpoints()).expect("open");
        if !sled_ahead {
            copy_sled(&s, crashed.path());
        }
        s.put_exchange(&exchange("/", "x", "direct")).expect("put");
        s.put_queue(&queue("/", "q")).expect("put");
        s.put_queue(&queue("/", "gone")).expect("put");
        let q = s.open_queue("/", "q").expect("open");
        let gone = s.open_queue("/", "gone").expect("open");
        for id in 1..=10 {
            put(&*q, id);
            put(&*gone, id);
        }
        s.flush().expect("flush");
        gone_qid = qid(&s, "/", "gone");
        for id in 11..=20 {
            put(&*q, id);
        }
        s.flush().expect("flush");
        for id in 1..=5 {
            q.remove(id).expect("ack");
        }
        q.mark_delivered(6).expect("mark");
        s.put_object("policy", "p1", b"v1").expect("object");
        s.put_object("policy", "p2", b"v2").expect("object");
        s.flush().expect("flush");
        s.delete_queue("/", "gone").expect("delete");
        s.delete_object("policy", "p2").expect("delete");
        s.flush().expect("flush");
        assert!(s.last_index_record().is_some());
        if sled_ahead {
            let meta = s.raw_tree(b"meta");
            meta.flush().expect("sled flush");
            assert!(
                s.raw_tree(b"qids")
                    .get(record::queue_key("/", "q"))
                    .expect("get")
                    .is_some(),
                "queue ids reach sled at once"
            );
            assert_eq!(s.raw_tree(b"index").len(), 0, "the index waits");
            copy_dir(s.path(), crashed.path(), &NOT_SLED);
        }
        copy_log(&s, crashed.path());
    }
    let s = SledStore::open_with(crashed.path(), no_checkpoints()).expect("reopen");
    assert!(s.replayed() >= 4, "{}", s.replayed());
    check(&s);
    assert_eq!(
        s.raw_tree(b"index")
            .scan_prefix(gone_qid.to_be_bytes())
            .count(),
        0,
        "the deleted queue's entries are gone"
    );
    assert_eq!(s.quarantined(), 0);
    drop(s);
    // A clean shutdown checkpoints: nothing to replay, the same state.
    let s = SledStore::open_with(crashed.path(), no_checkpoints()).expect("reopen");
    assert_eq!(s.replayed(), 0);
    check(&s);
}

#[test]
fn a_damaged_last_index_record_loses_only_its_flush() {
    for torn in [false, true] {
        let dir = tempfile::tempdir().expect("tempdir");
        let crashed = tempfile::tempdir().expect("tempdir");
        {
            let s = SledStore::open_with(dir.path(), no_checkpoints()).expect("open");
            copy_sled(&s, crashed.path());
            let q = s.open_queue("/", "q").expect("open");
            for id in 1..=4 {
                put(&*q, id);
            }
            s.flush().expect("flush");
            for id in 5..=8 {
                put(&*q, id);
            }
            s.flush().expect("flush");
            q.remove(1).expect("ack");
            put(&*q, 9);
            s.flush().expect("flush");
            let last = s.last_index_record().expect("an index record");
            copy_log(&s, crashed.path());
            let path = crashed
                .path()
                .join("bodies")
                .join(format!("seg-{:016x}", last.seg));
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .expect("open");
            if torn {
                // Cut inside the record: a write the crash interrupted.
                f.set_len(last.offset + u64::from(last.len) / 2)
                    .expect("truncate");
            } else {
                use std::os::unix::fs::FileExt;
                let at = last.end() - 1;
                let mut b = [0u8; 1];
                f.read_exact_at(&mut b, at).expect("read");
                f.write_all_at(&[b[0] ^ 0x5a], at).expect("flip");
            }
        }
        let s = SledStore::open_with(crashed.path(), no_checkpoints()).expect("reopen");
        assert_eq!(s.replayed(), 2, "torn: {torn}");
        let q = s.open_queue("/", "q").expect("open");
        assert_eq!(ids(&*q), (1..=8).collect::<Vec<_>>(), "torn: {torn}");
        assert_eq!(s.quarantined(), 0);
        // Writing resumes after the damage; the next restart is clean.
        q.remove(2).expect("ack");
        put(&*q, 10);
        drop(q);
        drop(s);
        let s = SledStore::open_with(crashed.path(), no_checkpoints()).expect("reopen");
        assert_eq!(s.replayed(), 0);
        let q = s.open_queue("/", "q").expect("open");
        let mut want: Vec<u64> = (1..=8).filter(|&i| i != 2).collect();
        want.push(10);
        assert_eq!(ids(&*q), want, "torn: {torn}");
    }
}

/// Emptied segments are deleted only by a checkpoint that lies past them, and the data
/// directory shrinks once one has run.
#[test]
fn emptied_segments_wait_for_a_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SledOptions {
        segment_bytes: 16 << 10,
        ..no_checkpoints()
    };
    let s = SledStore::open_with(dir.path(), opts).expect("open");
    let q = s.open_queue("/", "q").expect("open");
    let big = |id: u64| MessageRecord {
        body: Bytes::from(vec![id as u8; 3000]),
        ..msg(id)
    };
    for id in 0..40 {
        let _ = q.put(id, big(id).view()).expect("put");
        s.flush().expect("flush");
    }
    let before = s.log_stats().segments;
    assert!(before >= 6, "{before}");
    for id in 0..40 {
        q.remove(id).expect("ack");
    }
    for _ in 0..3 {
        s.flush().expect("flush");
    }
    assert_eq!(
        s.log_stats().segments_deleted,
        0,
        "nothing goes before a checkpoint"
    );
    for _ in 0..3 {
        s.checkpoint().expect("checkpoint");
        s.flush().expect("flush");
    }
    let after = s.log_stats().segments;
    assert!(after <= 2, "{after} of {before} left");
    // A crash after more flushes, sled as that checkpoint left it: the deleted segments are
    // not needed, the new flushes come back from their index records.
    let crashed = tempfile::tempdir().expect("tempdir");
    copy_sled(&s, crashed.path());
    for id in 100..110 {
        let _ = q.put(id, big(id).view()).expect("put");
        s.flush().expect("flush");
    }
    q.remove(100).expect("ack");
    s.flush().expect("flush");
    copy_log(&s, crashed.path());
    drop(q);
    drop(s);
    let s = SledStore::open_with(dir.path(), opts).expect("reopen");
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), (101..110).collect::<Vec<_>>());
    assert_eq!(s.quarantined(), 0);
    let s = SledStore::open_with(crashed.path(), opts).expect("reopen the crashed copy");
    assert!(s.replayed() >= 11, "{}", s.replayed());
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!(ids(&*q), (101..110).collect::<Vec<_>>());
    for m in q.read(0, 100).expect("read") {
        assert_eq!(m.record, big(m.id));
    }
    assert_eq!(s.quarantined(), 0);
}
