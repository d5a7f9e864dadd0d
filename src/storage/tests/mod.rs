//! The storage test suite: one generic suite written against [`Store`], instantiated for
//! [`MemoryStore`] and [`SledStore`] (on a temporary directory), then sled-only tests for what
//! only a disk store has: restarts, chunks and their states as sled holds them, damaged records,
//! conversion of older layouts, and the data directory lock. Files: this one (shared helpers
//! and the generic suite), [`sled`] (restarts, chunks, locking), [`damage`] (damaged and
//! missing records, compaction, pipelined and racing flushes), [`wal`] (crashes between
//! checkpoints: the index records replayed).

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::record;
use super::{
    BindingRecord, Definitions, ExchangeRecord, MemoryStore, MessageRecord, PutOutcome,
    QueueRecord, QueueStore, SledOptions, SledStore, Store, StoreError,
};

const CACHE: u64 = 8 << 20;

fn exchange(vhost: &str, name: &str, kind: &str) -> ExchangeRecord {
    ExchangeRecord {
        vhost: vhost.into(),
        name: name.into(),
        kind: kind.into(),
        auto_delete: name.len().is_multiple_of(2),
        internal: name.len().is_multiple_of(3),
        arguments: Bytes::from(format!("args-of-{name}")),
    }
}

fn queue(vhost: &str, name: &str) -> QueueRecord {
    QueueRecord {
        vhost: vhost.into(),
        name: name.into(),
        auto_delete: false,
        arguments: Bytes::from_static(b"\x00\x00\x00\x00"),
    }
}

fn binding(source: &str, dest: &str, rk: &str, args: &'static [u8]) -> BindingRecord {
    BindingRecord {
        vhost: "/".into(),
        source: source.into(),
        destination: dest.into(),
        destination_is_exchange: false,
        routing_key: rk.into(),
        arguments: Bytes::from_static(args),
    }
}

fn msg(n: u64) -> MessageRecord {
    MessageRecord {
        exchange: "amq.direct".into(),
        routing_key: format!("key.{n}"),
        properties: Bytes::from(vec![0x10, 0x00, 2]),
        meta: if n.is_multiple_of(3) {
            Bytes::new()
        } else {
            Bytes::from(n.to_be_bytes().to_vec())
        },
        body: Bytes::from(format!("body {n}")),
    }
}

/// Definitions in a canonical order, so the two stores' (different) orders compare equal.
fn sorted(mut d: Definitions) -> Definitions {
    d.exchanges
        .sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    d.queues
        .sort_by(|a, b| (&a.vhost, &a.name).cmp(&(&b.vhost, &b.name)));
    d.bindings.sort_by_key(record::binding_key);
    d
}

/// Puts `msg(id)`, writing full chunks as the broker does.
fn put(q: &dyn QueueStore, id: u64) {
    if q.put(id, msg(id).view()).expect("put") == PutOutcome::WriteDue {
        q.write_sealed().expect("write sealed");
    }
}

fn ids(q: &dyn QueueStore) -> Vec<u64> {
    q.read(0, usize::MAX)
        .expect("read")
        .iter()
        .map(|m| m.id)
        .collect()
}

fn delivered_ids(q: &dyn QueueStore) -> Vec<u64> {
    q.read(0, usize::MAX)
        .expect("read")
        .iter()
        .filter(|m| m.delivered)
        .map(|m| m.id)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The generic suite.

fn definitions_round_trip<S: Store>(s: &S) {
    assert_eq!(s.load_definitions().expect("load"), Definitions::default());
    let exchanges = vec![
        exchange("/", "amq.topic", "topic"),
        exchange("/", "a/b", "direct"),
        exchange("a", "b/", "fanout"),
        exchange("vh/ö", "", "headers"),
    ];
    let queues = vec![
        queue("/", "q1"),
        queue("/", "a/b"),
        queue("a/", "b"),
        queue("ü", ""),
    ];
    let bindings = vec![
        binding("amq.topic", "q1", "a.#", b""),
        binding("amq.topic", "q1", "a.*", b""),
    ];
    for e in &exchanges {
        s.put_exchange(e).expect("put exchange");
    }
    for q in &queues {
        s.put_queue(q).expect("put queue");
    }
    for b in &bindings {
        s.put_binding(b).expect("put binding");
    }
    let expected = sorted(Definitions {
        exchanges: exchanges.clone(),
        queues: queues.clone(),
        bindings: bindings.clone(),
    });
    assert_eq!(sorted(s.load_definitions().expect("load")), expected);

    // put replaces; delete removes exactly one; deleting the absent is fine.
    let mut changed = exchanges[1].clone();
    changed.kind = "topic".into();
    changed.arguments = Bytes::new();
    s.put_exchange(&changed).expect("replace");
    s.delete_exchange("/", "amq.topic").expect("delete");
    s.delete_exchange("/", "no-such").expect("delete absent");
    s.delete_exchange("a", "b")
        .expect("delete absent (a, b) while (a/, b) exists");
    let d = sorted(s.load_definitions().expect("load"));
    let names: Vec<_> = d
        .exchanges
        .iter()
        .map(|e| (e.vhost.as_str(), e.name.as_str()))
        .collect();
    assert_eq!(names, [("/", "a/b"), ("a", "b/"), ("vh/ö", "")]);
    assert_eq!(d.exchanges[0], changed);
    assert_eq!(d.queues, expected.queues);
}

fn bindings_are_identified_by_every_field<S: Store>(s: &S) {
    let b = binding("x", "q", "rk", b"\x00\x00\x00\x00");
    s.put_binding(&b).expect("put");
    s.put_binding(&b).expect("put again");
    let mut other_args = b.clone();
    other_args.arguments = Bytes::from_static(b"\x00\x00\x00\x01");
    let mut to_exchange = b.clone();
    to_exchange.destination_is_exchange = true;
    let mut other_key = b.clone();
    other_key.routing_key = "rk2".into();
    for v in [&other_args, &to_exchange, &other_key] {
        s.put_binding(v).expect("put variant");
    }
    assert_eq!(s.load_definitions().expect("load").bindings.len(), 4);
    s.delete_binding(&to_exchange).expect("delete");
    s.delete_binding(&to_exchange).expect("delete again");
    let left: BTreeSet<_> = s
        .load_definitions()
        .expect("load")
        .bindings
        .iter()
        .map(record::binding_key)
        .collect();
    let expected: BTreeSet<_> = [&b, &other_args, &other_key]
        .into_iter()
        .map(record::binding_key)
        .collect();
    assert_eq!(left, expected);
}

fn messages_come_back_in_id_order<S: Store>(s: &S) {
    let q = s.open_queue("/", "q").expect("open");
    assert_eq!((q.len(), q.last_id()), (0, None));
    assert!(q.is_empty());
    for id in [0u64, 1, 3, 5, 256, 300, u64::MAX] {
        put(&*q, id);
    }
    assert_eq!(q.len(), 7);
    assert_eq!(q.last_id(), Some(u64::MAX));
    let all = q.read(0, 100).expect("read");
    assert_eq!(
        all.iter().map(|m| m.id).collect::<Vec<_>>(),
        [0, 1, 3, 5, 256, 300, u64::MAX]
    );
    for m in &all {
        assert_eq!(m.record, msg(m.id));
        assert!(!m.delivered);
    }
    let window: Vec<_> = q.read(3, 2).expect("read").iter().map(|m| m.id).collect();
    assert_eq!(window, [3, 5]);
    let window: Vec<_> = q.read(4, 3).expect("read").iter().map(|m| m.id).collect();
    assert_eq!(window, [5, 256, 300]);
    assert!(q.read(0, 0).expect("read").is_empty());
    assert_eq!(q.read(u64::MAX, 10).expect("read").len(), 1);
}

fn puts_must_ascend<S: Store>(s: &S) {
    let q = s.open_queue("/", "q").expect("open");
    put(&*q, 10);
    for id in [10, 3] {
        match q.put(id, msg(id).view()) {
            Err(StoreError::OutOfOrder { id: got, last: 10 }) => assert_eq!(got, id),
            other => panic!("expected OutOfOrder for {id}, got {other:?}"),
        }
    }
    // An acked id is not reused either.
    q.remove(10).expect("ack");
    assert!(matches!(
        q.put(10, msg(10).view()),
        Err(StoreError::OutOfOrder { .. })
    ));
    put(&*q, 11);
    assert_eq!(ids(&*q), [11]);
}

fn delivered_flags_and_removal<S: Store>(s: &S) {
    let q = s.open_queue("/", "q").expect("open");
    for id in 1..=6 {
        put(&*q, id);
    }
    q.mark_delivered(2).expect("mark");
    q.mark_delivered(4).expect("mark");
    q.mark_delivered(4).expect("mark twice");
    q.mark_delivered(6).expect("mark last");
    assert_eq!(delivered_ids(&*q), [2, 4, 6]);
    assert_eq!(q.len(), 6);

    q.remove(2).expect("ack");
    q.remove(2).expect("ack absent");
    q.remove(6).expect("ack last");
    assert_eq!(ids(&*q), [1, 3, 4, 5]);
    assert_eq!(delivered_ids(&*q), [4]);
    assert_eq!((q.len(), q.last_id()), (4, Some(5)));

    // A removed (or never stored) id leaves no flag behind for a later message with that id.
    q.mark_delivered(2).expect("mark acked");
    q.mark_delivered(9).expect("mark absent");
    put(&*q, 9);
    assert_eq!(delivered_ids(&*q), [4]);
    assert_eq!((q.len(), q.last_id()), (5, Some(9)));
    // Flushing changes nothing that can be seen.
    s.flush().expect("flush");
    assert_eq!(ids(&*q), [1, 3, 4, 5, 9]);
    assert_eq!(delivered_ids(&*q), [4]);
}

fn windows_page_through_a_backlog<S: Store>(s: &S) {
    let q = s.open_queue("/", "backlog").expect("open");
    for id in 0..2500 {
        put(&*q, id);
        if id % 700 == 0 {
            // Some chunks sealed by flushes, some by size, one open.
            s.flush().expect("flush");
        }
    }
    // The last message of each window is delivered: its mark must not be lost at the edge.
    q.mark_delivered(999).expect("mark");
    q.mark_delivered(1000).expect("mark");
    q.mark_delivered(2499).expect("mark");
    let mut from = 0;
    let mut seen = Vec::new();
    let mut flagged = Vec::new();
    for _ in 0..10 {
        let batch = q.read(from, 1000).expect("read");
        let Some(last) = batch.last() else { break };
        from = last.id + 1;
        for m in &batch {
            assert_eq!(m.record, msg(m.id));
            seen.push(m.id);
            if m.delivered {
                flagged.push(m.id);
            }
        }
    }
    assert_eq!(seen, (0..2500).collect::<Vec<_>>());
    assert_eq!(flagged, [999, 1000, 2499]);
    // Draining as a consumer would: read a window, remove it.
    for m in q.read(0, 1000).expect("read") {
        q.remove(m.id).expect("remove");
    }
    assert_eq!(q.len(), 1500);
    assert_eq!(q.read(0, 1).expect("read")[0].id, 1000);
    s.flush().expect("flush");
    assert_eq!(q.read(0, 1).expect("read")[0].id, 1000);
}

fn clear_purges_one_queue<S: Store>(s: &S) {
    let q = s.open_queue("/", "q").expect("open");
    let other = s.open_queue("/", "other").expect("open");
    for id in 0..50 {
        put(&*q, id);
        put(&*other, id);
        q.mark_delivered(id).expect("mark");
        if id == 20 {
            s.flush().expect("flush");
        }
    }
    q.clear().expect("clear");
    assert_eq!((q.len(), q.last_id()), (0, None));
    assert!(q.read(0, 100).expect("read").is_empty());
    assert_eq!(other.len(), 50);
    s.flush().expect("flush");
    assert!(q.read(0, 100).expect("read").is_empty());
    // Ids keep ascending after a purge.
    assert!(q.put(7, msg(7).view()).is_err());
    put(&*q, 50);
    assert_eq!(ids(&*q), [50]);
    assert_eq!(delivered_ids(&*q), Vec::<u64>::new());
}

fn remove_from_drops_the_tail<S: Store>(s: &S) {
    let q = s.open_queue("/", "q").expect("open");
    for id in 0..30 {
        put(&*q, id);
        if id % 10 == 9 {
            s.flush().expect("flush");
        }
    }
    q.remove(25).expect("ack");
    q.mark_delivered(3).expect("mark");
    assert_eq!(q.remove_from(15).expect("remove_from"), 14);
    assert_eq!(q.remove_from(15).expect("again"), 0);
    assert_eq!(ids(&*q), (0..15).collect::<Vec<_>>());
    assert_eq!((q.len(), q.last_id()), (15, Some(14)));
    assert_eq!(delivered_ids(&*q), [3]);
    s.flush().expect("flush");
    put(&*q, 30);
    assert_eq!(q.read(14, 10).expect("read").len(), 2);
}

fn queue_areas_are_separate<S: Store>(s: &S) {
    let areas = [
        s.open_queue("a/b", "c").expect("open"),
        s.open_queue("a", "b/c").expect("open"),
        s.open_queue("/", "q").expect("open"),
        s.open_queue("other", "q").expect("open"),
    ];
    for (i, q) in areas.iter().enumerate() {
        for id in 0..=i as u64 {
            put(&**q, id);
        }
    }
    s.flush().expect("flush");
    for (i, q) in areas.iter().enumerate() {
        assert_eq!(q.len(), i + 1);
        assert_eq!(ids(&**q), (0..=i as u64).collect::<Vec<_>>());
    }
    // Opening again shares the handle (and its count).
    let again = s.open_queue("/", "q").expect("reopen");
    assert_eq!(again.len(), 3);
    put(&*again, 100);
    assert_eq!(areas[2].len(), 4);
}

fn delete_queue_removes_definition_and_messages<S: Store>(s: &S) {
    s.put_queue(&queue("/", "doomed")).expect("put");
    s.put_queue(&queue("/", "kept")).expect("put");
    let q = s.open_queue("/", "doomed").expect("open");
    let kept = s.open_queue("/", "kept").expect("open");
    for id in 0..10 {
        put(&*q, id);
        put(&*kept, id);
        if id == 4 {
            s.flush().expect("flush");
        }
    }
    q.mark_delivered(7).expect("mark");
    s.delete_queue("/", "doomed").expect("delete");
    s.delete_queue("/", "never-existed").expect("delete absent");
    let names: Vec<_> = s
        .load_definitions()
        .expect("load")
        .queues
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["kept"]);
    // A stale handle is refused rather than writing into a deleted area.
    assert!(matches!(q.put(99, msg(99).view()), Err(StoreError::Io(_))));
    assert!(matches!(q.read(0, 1), Err(StoreError::Io(_))));
    s.flush().expect("flush after delete");
    // Declared again, the queue starts empty, with fresh ids.
    let fresh = s.open_queue("/", "doomed").expect("reopen");
    assert_eq!((fresh.len(), fresh.last_id()), (0, None));
    assert!(fresh.read(0, 100).expect("read").is_empty());
    put(&*fresh, 0);
    assert_eq!(ids(&*fresh), [0]);
    assert_eq!(kept.len(), 10);
}

fn large_and_empty_messages<S: Store>(s: &S) {
    let q = s.open_queue("/", "big").expect("open");
    let big = MessageRecord {
        exchange: String::new(),
        routing_key: "ü/é".into(),
        properties: Bytes::new(),
        meta: Bytes::from_static(b"expires:123"),
        body: Bytes::from((0..(4 << 20)).map(|i: u32| i as u8).collect::<Vec<u8>>()),
    };
    let empty = MessageRecord {
        exchange: String::new(),
        routing_key: String::new(),
        properties: Bytes::new(),
        meta: Bytes::new(),
        body: Bytes::new(),
    };
    put(&*q, 0);
    let _ = q.put(1, big.view()).expect("put big");
    let _ = q.put(2, empty.view()).expect("put empty");
    put(&*q, 3);
    s.flush().expect("flush");
    let back = q.read(0, 10).expect("read");
    assert_eq!(back.len(), 4);
    assert_eq!(back[1].record, big);
    assert_eq!(back[2].record, empty);
    assert_eq!(back[3].record, msg(3));
}

/// Publishers on several threads allocate ids and put under one lock, as the broker's queue
/// does: the store keeps that order, and a reader running alongside sees ordered messages.
fn interleaved_publishers_keep_their_order<S: Store>(s: &S) {
    let q = s.open_queue("/", "busy").expect("open");
    let next = std::sync::Mutex::new(0u64);
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let (q, next) = (Arc::clone(&q), &next);
            scope.spawn(move || {
                for i in 0..500u64 {
                    let id = {
                        let mut n = next.lock().expect("lock");
                        let id = *n;
                        *n += 1;
                        let m = MessageRecord {
                            body: Bytes::from(format!("{t}:{i}")),
                            ..msg(id)
                        };
                        if q.put(id, m.view()).expect("put") == PutOutcome::WriteDue {
                            // The broker writes full chunks outside its lock; so do we.
                            drop(n);
                            q.write_sealed().expect("write sealed");
                        }
                        id
                    };
                    if i % 2 == 0 {
                        q.mark_delivered(id).expect("mark");
                        q.remove(id).expect("remove");
                    }
                }
            });
        }
        scope.spawn(|| {
            for _ in 0..50 {
                s.flush().expect("flush");
            }
        });
        // A reader running alongside sees only whole, ordered messages.
        for _ in 0..20 {
            let batch = q.read(0, 5000).expect("read");
            assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
        }
    });
    s.flush().expect("flush");
    check_interleaved(&*q);
}

/// What [`interleaved_publishers_keep_their_order`] left: 4 x 250 messages, ids ascending, each
/// publisher's sequence ascending, none delivered.
fn check_interleaved(q: &dyn QueueStore) {
    let all = q.read(0, usize::MAX).expect("read");
    assert_eq!(all.len(), 4 * 250);
    assert_eq!(q.len(), 4 * 250);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let mut last = [None::<u64>; 4];
    for m in &all {
        assert!(!m.delivered);
        let text = std::str::from_utf8(&m.record.body).expect("utf8");
        let (t, i) = text.split_once(':').expect("t:i");
        let (t, i): (usize, u64) = (t.parse().expect("t"), i.parse().expect("i"));
        assert!(last[t].is_none_or(|l| l < i), "publisher {t} out of order");
        assert_eq!(i % 2, 1);
        last[t] = Some(i);
    }
}

fn delivery_counts_are_kept_per_message<S: Store>(s: &S) {
    let q = s.open_queue("/", "counts").expect("open");
    for id in 0..10 {
        put(&*q, id);
        if id == 4 {
            s.flush().expect("flush");
        }
    }
    q.set_delivery_count(1, 3).expect("count");
    q.set_delivery_count(7, 1).expect("count");
    q.set_delivery_count(7, 2).expect("count again");
    q.set_delivery_count(99, 5).expect("absent ids are ignored");
    q.mark_delivered(7).expect("mark");
    let counts = |q: &dyn QueueStore| -> Vec<(u64, u32, bool)> {
        q.read(0, 100)
            .expect("read")
            .iter()
            .filter(|m| m.delivery_count > 0 || m.delivered)
            .map(|m| (m.id, m.delivery_count, m.delivered))
            .collect()
    };
    assert_eq!(counts(&*q), [(1, 3, false), (7, 2, true)]);
    s.flush().expect("flush");
    assert_eq!(counts(&*q), [(1, 3, false), (7, 2, true)]);
    // An acked message takes its count with it; a count of 0 clears it.
    q.remove(1).expect("ack");
    q.set_delivery_count(7, 0).expect("reset");
    q.set_delivery_count(8, u32::MAX).expect("count");
    s.flush().expect("flush");
    assert_eq!(counts(&*q), [(7, 0, true), (8, u32::MAX, false)]);
    // The metadata comes back untouched whatever happened to the counts.
    for m in q.read(0, 100).expect("read") {
        assert_eq!(m.record, msg(m.id));
    }
}

fn objects_are_kept_by_kind_and_key<S: Store>(s: &S) {
    assert!(s.load_objects("policy").expect("load").is_empty());
    s.put_object("policy", "/:ttl", b"one").expect("put");
    s.put_object("policy", "/:dlx", b"two").expect("put");
    s.put_object("policy2", "x", b"other kind").expect("put");
    s.put_object("polic", "y/x", b"prefix kind").expect("put");
    s.put_object("user", "", b"").expect("empty key and value");
    s.put_object("policy", "/:ttl", b"replaced")
        .expect("replace");
    s.delete_object("policy", "absent").expect("delete absent");
    let got = s.load_objects("policy").expect("load");
    assert_eq!(
        got,
        [
            ("/:dlx".to_owned(), Bytes::from_static(b"two")),
            ("/:ttl".to_owned(), Bytes::from_static(b"replaced")),
        ]
    );
    s.delete_object("policy", "/:dlx").expect("delete");
    s.flush().expect("flush");
    assert_eq!(s.load_objects("policy").expect("load").len(), 1);
    assert_eq!(
        s.load_objects("user").expect("load"),
        [(String::new(), Bytes::new())]
    );
    assert_eq!(s.load_objects("polic").expect("load").len(), 1);
}

/// A flush waits for every `hold_flush` guard; what was written under one guard (a message
/// moved from one queue to another) is in that flush as a whole.
fn flushes_wait_for_held_guards<S: Store>(s: &S) {
    let a = s.open_queue("/", "a").expect("open");
    let b = s.open_queue("/", "b").expect("open");
    put(&*a, 1);
    s.flush().expect("flush");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        let hold = s.hold_flush();
        scope.spawn(|| {
            s.flush().expect("flush");
            let _ = tx.send(());
        });
        // Bounded: the flush must still be waiting after 200 ms.
        assert!(
            rx.recv_timeout(std::time::Duration::from_millis(200))
                .is_err(),
            "a flush ran while a guard was held"
        );
        put(&*b, 1);
        a.remove(1).expect("remove");
        drop(hold);
        rx.recv_timeout(std::time::Duration::from_secs(30))
            .expect("the flush ran once the guard was gone");
    });
    assert_eq!((ids(&*a), ids(&*b)), (vec![], vec![1]));
    // Guards on several threads at once are fine.
    std::thread::scope(|scope| {
        let _h = s.hold_flush();
        scope.spawn(|| drop(s.hold_flush())).join().expect("join");
    });
}

fn delay_key(due: u64, seq: u64) -> super::DelayKey {
    ((u128::from(due) << 64) | u128::from(seq)).to_be_bytes()
}

/// Delayed messages come back in key order, page by page, and go when removed.
fn delayed_messages_page_in_key_order<S: Store>(s: &S) {
    for (due, seq) in [(30, 1), (10, 2), (20, 3), (10, 4)] {
        s.put_delayed(delay_key(due, seq), format!("{due}/{seq}").as_bytes())
            .expect("put");
    }
    let page = s.read_delayed([0; 16], 3).expect("read");
    let got: Vec<&[u8]> = page.entries.iter().map(|(_, v)| v.as_ref()).collect();
    assert_eq!(got, [&b"10/2"[..], b"10/4", b"20/3"]);
    assert!(!page.complete);
    let rest = s
        .read_delayed(page.resume.expect("resume"), 3)
        .expect("read");
    assert_eq!(rest.entries.len(), 1);
    assert!(rest.complete && rest.resume.is_none());
    // Released keys are always the smallest (the broker releases in key order).
    s.remove_delayed(&[delay_key(10, 2), delay_key(10, 4)])
        .expect("remove");
    let left = s.read_delayed([0; 16], 10).expect("read");
    assert_eq!(left.entries.len(), 2);
    assert_eq!(left.entries[0].0, delay_key(20, 3));
}

/// Instantiates each generic test for both stores.
macro_rules! generic_suite {
    ($($name:ident),* $(,)?) => {
        mod memory_store {
            $(
                #[test]
                fn $name() {
                    super::$name(&super::MemoryStore::new());
                }
            )*
        }
        mod sled_store {
            $(
                #[test]
                fn $name() {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let store = super::SledStore::open(dir.path(), super::CACHE).expect("open");
                    super::$name(&store);
                }
            )*
        }
    };
}

generic_suite!(
    definitions_round_trip,
    bindings_are_identified_by_every_field,
    messages_come_back_in_id_order,
    puts_must_ascend,
    delivered_flags_and_removal,
    windows_page_through_a_backlog,
    clear_purges_one_queue,
    remove_from_drops_the_tail,
    queue_areas_are_separate,
    delete_queue_removes_definition_and_messages,
    large_and_empty_messages,
    interleaved_publishers_keep_their_order,
    delivery_counts_are_kept_per_message,
    objects_are_kept_by_kind_and_key,
    flushes_wait_for_held_guards,
    delayed_messages_page_in_key_order,
);

mod damage;
mod sled;
mod wal;
