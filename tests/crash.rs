//! Crash safety: the real binary is killed with SIGKILL at random moments while publishers wait
//! for confirms of bodies from 0 B to 1 MiB and a consumer holds deliveries unacked. After five
//! such cycles every confirmed message is there exactly once, whole, in per-publisher order,
//! and every message delivered before the kill comes back marked redelivered. A second test
//! adds a consumer that acks, in small segments, so that segments are emptied, deleted and
//! compacted across the kills; a third dead-letters between durable queues.

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

#[path = "support/process.rs"]
mod process;
use process::{connect, spawn};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

const QUEUE: &str = "crash";
const PUBLISHERS: usize = 2;
const CYCLES: u64 = 5;

/// A cheap deterministic mix (no extra crate).
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The body of publisher `p`'s message `seq`: `p:seq:` then a fill derived from both, 0 B to
/// 1 MiB in all (most small, some large).
fn body(p: usize, seq: u64) -> Vec<u8> {
    let h = mix((p as u64) << 48 ^ seq);
    let size = match h % 10 {
        0 => (h >> 8) as usize % (1 << 20),
        1..=3 => 0,
        _ => (h >> 8) as usize % 8192,
    };
    let mut b = format!("{p}:{seq}:").into_bytes();
    b.extend((0..size.saturating_sub(b.len())).map(|i| (h as usize + i) as u8));
    b
}

fn parse(data: &[u8]) -> (usize, u64) {
    let mut it = data.splitn(3, |&b| b == b':');
    let mut field = || {
        it.next()
            .and_then(|f| std::str::from_utf8(f).ok())
            .and_then(|s| s.parse::<u64>().ok())
    };
    let p = field().expect("publisher");
    let seq = field().expect("sequence");
    (p as usize, seq)
}

async fn declare(ch: &Channel) -> u32 {
    process::declare(ch, QUEUE, false).await
}

/// A cycle's confirms, counted as they come, so that the test can wait for the next ones.
type Confirms = Arc<tokio::sync::watch::Sender<u64>>;

/// Waits until `confirms` reaches `n`, or 30 s have passed (the kill comes either way).
async fn confirms_reach(confirms: &Confirms, n: u64) {
    let mut rx = confirms.subscribe();
    let _ = tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|&c| c >= n)).await;
}

/// Publishes in windows of 20 with confirms until the connection dies, each message to the
/// queue `route` names; returns the highest confirmed sequence and the next unused one.
/// `confirmed` counts confirms as they come.
async fn publish(
    ch: Channel,
    p: usize,
    start: u64,
    confirmed: Confirms,
    route: fn(usize, u64) -> &'static str,
) -> (Option<u64>, u64) {
    let mut last = None;
    let mut seq = start;
    'outer: for _ in 0..100_000 {
        let mut window = Vec::new();
        for _ in 0..20 {
            let props = BasicProperties::default().with_delivery_mode(2);
            match ch
                .basic_publish(
                    "".into(),
                    route(p, seq).into(),
                    BasicPublishOptions::default(),
                    &body(p, seq),
                    props,
                )
                .await
            {
                Ok(c) => window.push((seq, c)),
                Err(_) => break 'outer,
            }
            seq += 1;
        }
        for (s, c) in window {
            match c.await {
                Ok(conf) if conf.is_ack() => {
                    last = Some(s);
                    confirmed.send_modify(|c| *c += 1);
                }
                _ => break 'outer,
            }
        }
    }
    (last, seq)
}

/// A seed for a test's random choices, printed so that a failure can be read against it.
fn seed(fallback: u64) -> u64 {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(fallback, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("crash test seed {seed}");
    seed
}

/// A cycle's publishers: (publisher, first sequence, last confirmed, next unused).
type Publishers = Vec<tokio::task::JoinHandle<(usize, u64, Option<u64>, u64)>>;

/// What the publishers of the cycles so far have had confirmed.
#[derive(Default)]
struct Ledger {
    /// Per publisher, the ranges of sequences confirmed in each cycle (a cycle's unconfirmed
    /// tail may be lost; the next cycle starts after it).
    confirmed: BTreeMap<usize, Vec<std::ops::Range<u64>>>,
    next_seq: BTreeMap<usize, u64>,
}

impl Ledger {
    /// Starts the publishers, each on a channel of its own with confirms, where its last cycle
    /// ended; `count` counts their confirms.
    async fn start(
        &self,
        conn: &lapin::Connection,
        count: &Confirms,
        route: fn(usize, u64) -> &'static str,
    ) -> Publishers {
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("select");
            let start = *self.next_seq.get(&p).unwrap_or(&0);
            let count = Arc::clone(count);
            tasks.push(tokio::spawn(async move {
                let (last, seq) = publish(ch, p, start, count, route).await;
                (p, start, last, seq)
            }));
        }
        tasks
    }

    /// Waits (boundedly) for the publishers of a cycle whose broker was killed, and notes
    /// what they had confirmed.
    async fn finish(&mut self, tasks: Publishers) {
        for t in tasks {
            let (p, start, last, seq) = tokio::time::timeout(Duration::from_secs(60), t)
                .await
                .expect("a publisher ends after the kill")
                .expect("publisher");
            if let Some(l) = last {
                self.confirmed.entry(p).or_default().push(start..l + 1);
            }
            self.next_seq.insert(p, seq);
        }
    }

    /// Every confirmed (publisher, sequence).
    fn each_confirmed(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.confirmed.iter().flat_map(|(&p, ranges)| {
            ranges
                .iter()
                .flat_map(move |r| r.clone().map(move |s| (p, s)))
        })
    }
}

/// Each publisher's messages in `seen` (read from `queue`) came in ascending order, none twice.
fn assert_in_order(seen: &BTreeMap<usize, Vec<u64>>, queue: &str) {
    for (p, got) in seen {
        assert!(
            got.windows(2).all(|w| w[0] < w[1]),
            "{queue}: publisher {p}: out of order or duplicated"
        );
    }
}

/// Confirmed message `p:s` is among `seen` (read from `queue`).
fn assert_kept(seen: &BTreeMap<usize, Vec<u64>>, queue: &str, p: usize, s: u64) {
    assert!(
        seen.get(&p).is_some_and(|g| g.binary_search(&s).is_ok()),
        "{queue}: publisher {p}: confirmed message {s} lost"
    );
}

/// Reads `total` messages from `queue` with automatic acks, checking each body.
async fn drain(ch: &Channel, queue: &str, total: u32) -> Vec<lapin::message::Delivery> {
    let mut cons = ch
        .basic_consume(
            queue.into(),
            format!("drain-{queue}").as_str().into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut out = Vec::new();
    for _ in 0..total {
        let d = tokio::time::timeout(Duration::from_secs(30), cons.next())
            .await
            .expect("timely")
            .expect("open")
            .expect("delivery");
        let (p, seq) = parse(&d.data);
        assert_eq!(d.data, body(p, seq), "message {p}:{seq} damaged");
        out.push(d);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seed = seed(7);
    let mut ledger = Ledger::default();
    let mut delivered: BTreeSet<(usize, u64)> = BTreeSet::new();
    for _cycle in 0..CYCLES {
        seed = mix(seed);
        let mut b = spawn(dir.path(), 4, None);
        let conn = connect(&b).await;
        declare(&conn.create_channel().await.expect("channel")).await;
        let count: Confirms = Arc::new(tokio::sync::watch::Sender::new(0));
        let tasks = ledger.start(&conn, &count, |_, _| QUEUE).await;
        // A consumer that takes a few messages and never acks them.
        let cons_ch = conn.create_channel().await.expect("channel");
        cons_ch
            .basic_qos(20, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut cons = cons_ch
            .basic_consume(
                QUEUE.into(),
                "holder".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let mut held = Vec::new();
        while held.len() < 20 {
            match tokio::time::timeout(Duration::from_secs(30), cons.next()).await {
                Ok(Some(Ok(d))) => held.push(parse(&d.data)),
                other => panic!("no delivery: {:?}", other.map(|o| o.map(|r| r.map(|_| ())))),
            }
        }
        cons_ch
            .basic_cancel("holder".into(), BasicCancelOptions::default())
            .await
            .expect("cancel");
        // Two flushes after the deliveries (a publisher's next window waits for the flush of
        // the one before; a mark on a chunk that a flush in flight is writing waits for the
        // flush after it): their delivered marks are on disk.
        let after = *count.borrow();
        confirms_reach(&count, after + 100).await;
        delivered.extend(held);
        // Then kill at a random moment.
        tokio::time::sleep(Duration::from_millis(mix(seed) % 1500)).await;
        b.child.kill().expect("SIGKILL");
        let _ = b.child.wait();
        ledger.finish(tasks).await;
        drop(conn);
    }
    // Final restart: read everything back.
    let mut b = spawn(dir.path(), 4, None);
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    let total = declare(&ch).await;
    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut redelivered = BTreeSet::new();
    for d in drain(&ch, QUEUE, total).await {
        let (p, seq) = parse(&d.data);
        if d.redelivered {
            redelivered.insert((p, seq));
        }
        seen.entry(p).or_default().push(seq);
    }
    b.child.kill().expect("kill");
    let _ = b.child.wait();
    assert_in_order(&seen, QUEUE);
    let mut total_confirmed = 0;
    for (p, s) in ledger.each_confirmed() {
        total_confirmed += 1;
        assert_kept(&seen, QUEUE, p, s);
    }
    assert!(total_confirmed > 0, "something was confirmed");
    let missing: Vec<_> = delivered.difference(&redelivered).collect();
    assert!(
        missing.is_empty(),
        "delivered before a kill, not marked redelivered: {missing:?}"
    );
    assert!(
        redelivered.is_subset(&delivered),
        "marked redelivered without a delivery"
    );
}

/// Where a message goes in the acks test: a quarter to a queue nobody consumes, the rest to
/// one a consumer drains with acks.
fn kept_or_drained(p: usize, seq: u64) -> &'static str {
    if mix((p as u64) << 40 ^ seq ^ 0x5eed).is_multiple_of(4) {
        "kept"
    } else {
        "drained"
    }
}

/// Space given back under kill -9: publishers with confirms spread bodies from 0 B to 1 MiB over
/// two durable queues in 1 MiB body-log segments; a consumer acks everything in one of them, so
/// segments empty, are deleted, or (a quarter live) are compacted while the broker is killed at
/// random moments. After five cycles every confirmed message of the kept queue is there once,
/// in per-publisher order, and so is every confirmed message of the drained queue whose ack the
/// consumer had not sent (an acked one may come back: the ack may not have reached the disk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_and_compaction_under_kill_9_keep_every_unacked_confirmed_message() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seed = seed(13);
    let mut ledger = Ledger::default();
    let acked = Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    for _cycle in 0..CYCLES {
        seed = mix(seed);
        let mut b = spawn(dir.path(), 1, None);
        let conn = connect(&b).await;
        let ch = conn.create_channel().await.expect("channel");
        for q in ["kept", "drained"] {
            process::declare(&ch, q, false).await;
        }
        let count: Confirms = Arc::new(tokio::sync::watch::Sender::new(0));
        let tasks = ledger.start(&conn, &count, kept_or_drained).await;
        ch.basic_qos(50, BasicQosOptions::default())
            .await
            .expect("qos");
        let mut cons = ch
            .basic_consume(
                "drained".into(),
                "acker".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let acker = {
            let acked = Arc::clone(&acked);
            tokio::spawn(async move {
                while let Ok(Some(Ok(d))) =
                    tokio::time::timeout(Duration::from_secs(30), cons.next()).await
                {
                    // Noted before it is sent: from then on the broker may have it. (An ack on
                    // a connection that has just died may never return: bounded.)
                    acked.lock().expect("acked").insert(parse(&d.data));
                    let ack = d.ack(BasicAckOptions::default());
                    if !matches!(
                        tokio::time::timeout(Duration::from_secs(5), ack).await,
                        Ok(Ok(_))
                    ) {
                        break;
                    }
                }
            })
        };
        // Kill at a random moment once publishing is under way (bounded in time).
        confirms_reach(&count, 200).await;
        tokio::time::sleep(Duration::from_millis(300 + mix(seed) % 1500)).await;
        b.child.kill().expect("SIGKILL");
        let _ = b.child.wait();
        ledger.finish(tasks).await;
        tokio::time::timeout(Duration::from_secs(60), acker)
            .await
            .expect("the consumer ends after the kill")
            .expect("acker");
        drop(conn);
    }
    // Final restart: read both queues back.
    let mut b = spawn(dir.path(), 1, None);
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    let mut seen: BTreeMap<&str, BTreeMap<usize, Vec<u64>>> = BTreeMap::new();
    for q in ["kept", "drained"] {
        let total = process::declare(&ch, q, true).await;
        let by_publisher = seen.entry(q).or_default();
        for d in drain(&ch, q, total).await {
            let (p, seq) = parse(&d.data);
            assert_eq!(kept_or_drained(p, seq), q, "{p}:{seq} in the wrong queue");
            by_publisher.entry(p).or_default().push(seq);
        }
        assert_in_order(by_publisher, q);
    }
    b.child.kill().expect("kill");
    let _ = b.child.wait();
    let acked = acked.lock().expect("acked");
    let mut total_confirmed = 0;
    for (p, s) in ledger.each_confirmed() {
        let q = kept_or_drained(p, s);
        if q == "drained" && acked.contains(&(p, s)) {
            continue;
        }
        total_confirmed += 1;
        assert_kept(&seen[q], q, p, s);
    }
    assert!(total_confirmed > 0, "something was confirmed and kept");
    assert!(!acked.is_empty(), "something was acked");
}

/// Dead-lettering between durable queues keeps every persistent message in exactly one of the
/// two across a crash: SIGKILL while messages expire from a durable queue into another; after
/// the restart every confirmed message is in exactly one of them (the source's removal and the
/// target's put land in the same store flush), and none is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_between_durable_queues_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seed = seed(11);
    const CYCLES: usize = 3;
    const MESSAGES: u64 = 3000;
    let durable = || QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let source_args = |target: &str| {
        let mut t = FieldTable::default();
        t.insert(
            "x-message-ttl".into(),
            lapin::types::AMQPValue::LongInt(100),
        );
        t.insert(
            "x-dead-letter-exchange".into(),
            lapin::types::AMQPValue::LongString("".into()),
        );
        t.insert(
            "x-dead-letter-routing-key".into(),
            lapin::types::AMQPValue::LongString(target.into()),
        );
        t
    };
    // Per cycle, the sequences confirmed before the kill.
    let mut confirmed: Vec<std::collections::BTreeSet<u64>> = Vec::new();
    for cycle in 0..CYCLES {
        let (src, dst) = (format!("dl-src-{cycle}"), format!("dl-dst-{cycle}"));
        let mut b = spawn(dir.path(), 64, None);
        let conn = connect(&b).await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(dst.as_str().into(), durable(), FieldTable::default())
            .await
            .expect("target");
        ch.queue_declare(src.as_str().into(), durable(), source_args(&dst))
            .await
            .expect("source");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("select");
        let publisher = {
            let src = src.clone();
            tokio::spawn(async move {
                let mut ok = std::collections::BTreeSet::new();
                'outer: for start in (0..MESSAGES).step_by(100) {
                    let mut window = Vec::new();
                    for seq in start..start + 100 {
                        match ch
                            .basic_publish(
                                "".into(),
                                src.as_str().into(),
                                BasicPublishOptions::default(),
                                format!("{cycle}:{seq}").as_bytes(),
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await
                        {
                            Ok(c) => window.push((seq, c)),
                            Err(_) => break 'outer,
                        }
                    }
                    for (seq, c) in window {
                        match c.await {
                            Ok(conf) if conf.is_ack() => {
                                ok.insert(seq);
                            }
                            _ => break 'outer,
                        }
                    }
                }
                ok
            })
        };
        // Kill once some of them have been dead-lettered (bounded in time).
        seed = mix(seed);
        let kill_at = 1 + seed % (MESSAGES / 2);
        let watch = conn.create_channel().await.expect("channel");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let moved = watch
                .queue_declare(
                    dst.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive")
                .message_count();
            if u64::from(moved) >= kill_at || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        b.child.kill().expect("SIGKILL");
        let _ = b.child.wait();
        confirmed.push(publisher.await.expect("publisher"));
        drop(conn);
    }
    let mut b = spawn(dir.path(), 64, None);
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    for (cycle, ok) in confirmed.iter().enumerate() {
        let (src, dst) = (format!("dl-src-{cycle}"), format!("dl-dst-{cycle}"));
        // What is left in the source expires into the target now.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = ch
                .queue_declare(src.as_str().into(), durable(), source_args(&dst))
                .await
                .expect("source")
                .message_count();
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{left} never expired from {src}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut seen = std::collections::BTreeMap::<u64, u32>::new();
        while let Some(m) = ch
            .basic_get(dst.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            let s = String::from_utf8(m.delivery.data.clone()).expect("utf8");
            let (c, n) = s.split_once(':').expect("c:n");
            assert_eq!(c, cycle.to_string());
            *seen.entry(n.parse().expect("n")).or_default() += 1;
        }
        for seq in ok {
            assert_eq!(
                seen.get(seq),
                Some(&1),
                "cycle {cycle}: confirmed message {seq} not exactly once"
            );
        }
        assert!(
            seen.values().all(|&n| n == 1),
            "cycle {cycle}: a message is there twice"
        );
        assert!(!ok.is_empty(), "cycle {cycle}: something was confirmed");
    }
    b.child.kill().expect("kill");
    let _ = b.child.wait();
}
