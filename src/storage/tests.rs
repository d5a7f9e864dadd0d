//! The storage test suite: one generic suite written against [`Store`], instantiated for
//! [`MemoryStore`] and [`SledStore`] (on a temporary directory), then sled-only tests for what
//! only a disk store has: restarts, damaged records, and the data directory lock.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;

use super::record;
use super::{
    BindingRecord, Definitions, ExchangeRecord, MemoryStore, MessageRecord, QueueRecord,
    QueueStore, SledStore, Store, StoreError,
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
    let q = s.open_queue("/", "q", true).expect("open");
    assert_eq!((q.len(), q.last_id()), (0, None));
    assert!(q.is_empty());
    for id in [5u64, 1, 300, 3, 256, u64::MAX, 0] {
        q.put(id, msg(id).view()).expect("put");
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

fn delivered_flags_and_removal<S: Store>(s: &S) {
    let q = s.open_queue("/", "q", true).expect("open");
    for id in 1..=6 {
        q.put(id, msg(id).view()).expect("put");
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
    q.mark_delivered(9).expect("mark absent");
    q.put(2, msg(2).view()).expect("put again");
    q.put(9, msg(9).view()).expect("put");
    assert_eq!(delivered_ids(&*q), [4]);

    // Replacing a record keeps its flag and the count.
    let mut changed = msg(4);
    changed.body = Bytes::from_static(b"changed");
    q.put(4, changed.view()).expect("replace");
    let four = q.read(4, 1).expect("read").remove(0);
    assert_eq!((four.id, four.delivered, four.record), (4, true, changed));
    assert_eq!(q.len(), 6);
}

fn windows_page_through_a_backlog<S: Store>(s: &S) {
    let q = s.open_queue("/", "backlog", true).expect("open");
    for id in 0..2500 {
        q.put(id, msg(id).view()).expect("put");
    }
    // The last message of each window is delivered: its marker must not be lost at the edge.
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
}

fn clear_purges_one_queue<S: Store>(s: &S) {
    let q = s.open_queue("/", "q", true).expect("open");
    let other = s.open_queue("/", "other", true).expect("open");
    for id in 0..50 {
        q.put(id, msg(id).view()).expect("put");
        other.put(id, msg(id).view()).expect("put");
        q.mark_delivered(id).expect("mark");
    }
    q.clear().expect("clear");
    assert_eq!((q.len(), q.last_id()), (0, None));
    assert!(q.read(0, 100).expect("read").is_empty());
    assert_eq!(other.len(), 50);
    q.put(7, msg(7).view()).expect("put after purge");
    assert_eq!(ids(&*q), [7]);
    assert_eq!(delivered_ids(&*q), Vec::<u64>::new());
}

fn queue_areas_are_separate<S: Store>(s: &S) {
    let areas = [
        s.open_queue("a/b", "c", true).expect("open"),
        s.open_queue("a", "b/c", true).expect("open"),
        s.open_queue("/", "q", true).expect("open"),
        s.open_queue("other", "q", true).expect("open"),
        s.open_queue("/", "q", false).expect("open scratch"),
    ];
    for (i, q) in areas.iter().enumerate() {
        for id in 0..=i as u64 {
            q.put(id, msg(id).view()).expect("put");
        }
    }
    for (i, q) in areas.iter().enumerate() {
        assert_eq!(q.len(), i + 1);
    }
    // Opening again shares the handle (and its count), and does not empty a live scratch area.
    let again = s.open_queue("/", "q", false).expect("reopen scratch");
    assert_eq!(again.len(), 5);
    again.put(100, msg(100).view()).expect("put");
    assert_eq!(areas[4].len(), 6);
    assert_eq!(s.open_queue("/", "q", true).expect("reopen").len(), 3);
}

fn delete_queue_removes_definition_and_messages<S: Store>(s: &S) {
    s.put_queue(&queue("/", "doomed")).expect("put");
    s.put_queue(&queue("/", "kept")).expect("put");
    let q = s.open_queue("/", "doomed", true).expect("open");
    let scratch = s.open_queue("/", "doomed", false).expect("open scratch");
    let kept = s.open_queue("/", "kept", true).expect("open");
    for id in 0..10 {
        q.put(id, msg(id).view()).expect("put");
        scratch.put(id, msg(id).view()).expect("put");
        kept.put(id, msg(id).view()).expect("put");
    }
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
    assert!(matches!(scratch.read(0, 1), Err(StoreError::Io(_))));
    // Declared again, the queue starts empty.
    let fresh = s.open_queue("/", "doomed", true).expect("reopen");
    assert_eq!((fresh.len(), fresh.last_id()), (0, None));
    assert!(fresh.read(0, 100).expect("read").is_empty());
    assert_eq!(s.open_queue("/", "doomed", false).expect("reopen").len(), 0);
    assert_eq!(kept.len(), 10);
}

fn large_and_empty_messages<S: Store>(s: &S) {
    let q = s.open_queue("/", "big", true).expect("open");
    let big = MessageRecord {
        exchange: String::new(),
        routing_key: "ü/é".into(),
        properties: Bytes::new(),
        body: Bytes::from((0..(4 << 20)).map(|i: u32| i as u8).collect::<Vec<u8>>()),
    };
    let empty = MessageRecord {
        exchange: String::new(),
        routing_key: String::new(),
        properties: Bytes::new(),
        body: Bytes::new(),
    };
    q.put(1, big.view()).expect("put big");
    q.put(2, empty.view()).expect("put empty");
    s.flush().expect("flush");
    let back = q.read(0, 10).expect("read");
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].record, big);
    assert_eq!(back[1].record, empty);
}

fn concurrent_writers_keep_an_exact_count<S: Store>(s: &S) {
    let q = s.open_queue("/", "busy", true).expect("open");
    std::thread::scope(|scope| {
        for t in 0..4u64 {
            let q = Arc::clone(&q);
            scope.spawn(move || {
                for i in 0..500 {
                    let id = t * 1_000_000 + i;
                    q.put(id, msg(id).view()).expect("put");
                    // Put again (a replace must not count twice), then remove every other one.
                    q.put(id, msg(id).view()).expect("put again");
                    if i % 2 == 0 {
                        q.mark_delivered(id).expect("mark");
                        q.remove(id).expect("remove");
                    }
                }
            });
        }
        // A reader running alongside sees only whole, ordered messages.
        for _ in 0..20 {
            let batch = q.read(0, 5000).expect("read");
            assert!(batch.windows(2).all(|w| w[0].id < w[1].id));
        }
    });
    assert_eq!(q.len(), 4 * 250);
    assert_eq!(ids(&*q).len(), 4 * 250);
    assert_eq!(delivered_ids(&*q), Vec::<u64>::new());
    s.flush().expect("flush");
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
    delivered_flags_and_removal,
    windows_page_through_a_backlog,
    clear_purges_one_queue,
    queue_areas_are_separate,
    delete_queue_removes_definition_and_messages,
    large_and_empty_messages,
    concurrent_writers_keep_an_exact_count,
);

// ---------------------------------------------------------------------------------------------
// sled only: restarts, damage, locking.

fn open(dir: &tempfile::TempDir) -> SledStore {
    SledStore::open(dir.path(), CACHE).expect("open")
}

#[test]
fn restart_keeps_durable_state_and_drops_scratch() {
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

        let q = s.open_queue("/", "durable", true).expect("open");
        for id in [10u64, 2, 7, 3, 1] {
            q.put(id, msg(id).view()).expect("put");
        }
        q.mark_delivered(3).expect("mark");
        q.mark_delivered(10).expect("mark");
        q.mark_delivered(2).expect("mark");
        q.remove(2).expect("ack");
        let scratch = s.open_queue("/", "transient", false).expect("open scratch");
        for id in 0..100 {
            scratch.put(id, msg(id).view()).expect("put");
        }
        s.flush().expect("flush");
    }
    {
        let s = open(&dir);
        assert_eq!(
            sorted(s.load_definitions().expect("load")),
            sorted(defs.clone())
        );
        let q = s.open_queue("/", "durable", true).expect("open");
        assert_eq!((q.len(), q.last_id()), (4, Some(10)));
        let back = q.read(0, 100).expect("read");
        assert_eq!(back.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 3, 7, 10]);
        assert_eq!(delivered_ids(&*q), [3, 10]);
        for m in &back {
            assert_eq!(m.record, msg(m.id));
        }
        let scratch = s.open_queue("/", "transient", false).expect("open scratch");
        assert_eq!((scratch.len(), scratch.last_id()), (0, None));
        assert!(scratch.read(0, 10).expect("read").is_empty());
        // The store keeps working after a restart, and a second one sees that too.
        q.put(11, msg(11).view()).expect("put");
        q.remove(1).expect("ack");
        s.flush().expect("flush");
    }
    let s = open(&dir);
    let q = s.open_queue("/", "durable", true).expect("open");
    assert_eq!(ids(&*q), [3, 7, 10, 11]);
    assert_eq!(delivered_ids(&*q), [3, 10]);
}

#[test]
fn restart_after_delete_and_purge() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        for name in ["a", "b"] {
            s.put_queue(&queue("/", name)).expect("put");
            let q = s.open_queue("/", name, true).expect("open");
            for id in 0..20 {
                q.put(id, msg(id).view()).expect("put");
            }
        }
        s.delete_queue("/", "a").expect("delete");
        s.open_queue("/", "b", true)
            .expect("open")
            .clear()
            .expect("purge");
        s.flush().expect("flush");
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
        let q = s.open_queue("/", name, true).expect("open");
        assert_eq!((q.len(), q.last_id()), (0, None), "{name}");
    }
}

#[test]
fn damaged_records_are_quarantined_and_the_rest_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good_exchange = exchange("/", "good", "direct");
    let bad_exchange = exchange("/", "bad", "direct");
    {
        let s = open(&dir);
        s.put_exchange(&good_exchange).expect("put");
        s.put_exchange(&bad_exchange).expect("put");
        s.put_queue(&queue("/", "q")).expect("put");
        let q = s.open_queue("/", "q", true).expect("open");
        for id in 1..=4 {
            q.put(id, msg(id).view()).expect("put");
        }
        q.mark_delivered(2).expect("mark");
        s.flush().expect("flush");
    }
    {
        // Damage the store behind the broker's back, through sled directly (before anything
        // reads the records in this run).
        let s = open(&dir);
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
        let msgs = s.raw_tree(&area_name("/", "q"));
        msgs.insert(record::message_key(2), &b"\x01\xff\xff\xff\xff"[..])
            .expect("insert");
        msgs.insert(&b"short"[..], &b"x"[..])
            .expect("insert malformed key");
        // A delivered marker whose message is gone (a crash between an ack's two removals).
        msgs.insert(record::delivered_key(9), &b""[..])
            .expect("insert orphan marker");
        s.flush().expect("flush");
    }
    {
        let s = open(&dir);
        let d = s.load_definitions().expect("load survives damage");
        assert_eq!(d.exchanges, std::slice::from_ref(&good_exchange));
        assert_eq!(d.queues, [queue("/", "q")]);
        let q = s.open_queue("/", "q", true).expect("open");
        // The malformed key went at open; the damaged message is counted until read meets it.
        assert_eq!(q.len(), 4);
        let back = q.read(0, 10).expect("read skips the damaged message");
        assert_eq!(back.iter().map(|m| m.id).collect::<Vec<_>>(), [1, 3, 4]);
        assert_eq!(q.len(), 3);
        assert_eq!(q.last_id(), Some(4));
        // Message 2's marker stays behind, an orphan now; the one for 9 was cleaned at open.
        q.put(9, msg(9).view()).expect("put");
        assert_eq!(delivered_ids(&*q), Vec::<u64>::new());
        // exchanges: bad + elsewhere; queues: v9; messages: 2 + malformed key.
        assert_eq!(s.quarantined(), 5);
        s.flush().expect("flush");
    }
    // Quarantined records stay aside; everything else is as it was.
    let s = open(&dir);
    let d = s.load_definitions().expect("load");
    assert_eq!(d.exchanges, [good_exchange]);
    let q = s.open_queue("/", "q", true).expect("open");
    assert_eq!(ids(&*q), [1, 3, 4, 9]);
    assert_eq!(delivered_ids(&*q), Vec::<u64>::new());
    assert_eq!(s.quarantined(), 5);
}

/// The sled tree name of a durable queue's messages (see `sled_store`'s layout).
fn area_name(vhost: &str, name: &str) -> Vec<u8> {
    let mut n = b"msg:".to_vec();
    n.extend_from_slice(&record::name_key(vhost, name));
    n
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
    // Keep sled's database alive through a queue handle after the store (and its lock file) is
    // gone: sled's own lock must still refuse a second open, and be reported as Locked.
    let handle = {
        let s = open(&dir);
        s.open_queue("/", "q", true).expect("open")
    };
    match SledStore::open(dir.path(), CACHE) {
        Err(StoreError::Locked { path }) => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(handle);
    open(&dir);
}

/// The delivered-marker keys on disk in a durable queue's tree, read with sled directly in a
/// freshly opened store (before `open_queue` cleans anything up).
fn raw_markers(dir: &tempfile::TempDir, vhost: &str, name: &str) -> Vec<u64> {
    let s = open(dir);
    s.raw_tree(&area_name(vhost, name))
        .iter()
        .keys()
        .filter_map(|k| match record::parse_message_key(&k.expect("key")) {
            Some(record::MessageKey::Delivered(id)) => Some(id),
            _ => None,
        })
        .collect()
}

#[test]
fn delivered_marks_are_written_at_flush_only_for_unacked_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q", true).expect("open");
        for id in 1..=5 {
            q.put(id, msg(id).view()).expect("put");
            q.mark_delivered(id).expect("mark");
        }
        // Acked within the batch: its mark never reaches the disk.
        q.remove(2).expect("ack");
        s.flush().expect("flush");
        // Acked after the flush wrote its mark: the marker goes with it.
        q.remove(3).expect("ack");
        s.flush().expect("flush");
    }
    assert_eq!(raw_markers(&dir, "/", "q"), [1, 4, 5]);
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q", true).expect("open");
        assert_eq!(ids(&*q), [1, 4, 5]);
        assert_eq!(delivered_ids(&*q), [1, 4, 5]);
        q.put(6, msg(6).view()).expect("put");
        q.mark_delivered(6).expect("mark");
        q.remove(4).expect("ack");
        // No explicit flush: dropping the store writes the pending mark.
    }
    assert_eq!(raw_markers(&dir, "/", "q"), [1, 5, 6]);
    let s = open(&dir);
    let q = s.open_queue("/", "q", true).expect("open");
    assert_eq!(delivered_ids(&*q), [1, 5, 6]);
}

#[test]
fn flushes_racing_marks_and_acks_leave_no_orphan_markers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut unacked_delivered = BTreeSet::new();
    {
        let s = open(&dir);
        let q = s.open_queue("/", "q", true).expect("open");
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let flusher = scope.spawn(|| {
                let mut flushes = 0u32;
                // Bounded: stops when the writers are done, or after 10 000 flushes.
                while !done.load(std::sync::atomic::Ordering::Acquire) && flushes < 10_000 {
                    s.flush().expect("flush");
                    flushes += 1;
                }
                flushes
            });
            for id in 0..3000u64 {
                q.put(id, msg(id).view()).expect("put");
                q.mark_delivered(id).expect("mark");
                // Ack two of every three, some right away (often before a flush), some later
                // (often after one wrote their mark).
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
    let markers: BTreeSet<u64> = raw_markers(&dir, "/", "q").into_iter().collect();
    assert_eq!(markers, unacked_delivered);
}
