//! Priority queues (`x-max-priority`) through lapin: highest priority first, FIFO within a
//! priority, priorities above the maximum count as the maximum, requeued messages go back to
//! their place in their priority, and the order holds for a paged backlog and after a restart.

mod support;

use lagomorph::broker::{BrokerOptions, MemoryWindow};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use support::{confirming, drain, publish_with};
use support::{start_in, start_with, within};

fn max_priority(n: i32) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert(ShortString::from("x-max-priority"), AMQPValue::LongInt(n));
    t
}

async fn declare(ch: &Channel, name: &str, durable: bool, args: FieldTable) {
    within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("declare");
}

fn bodies(v: &[(String, bool)]) -> Vec<&str> {
    v.iter().map(|(b, _)| b.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn highest_first_fifo_within_a_priority_and_clamped_to_the_maximum() {
    let b = support::start().await;
    let (_c, ch) = confirming(&b).await;
    declare(&ch, "prio", false, max_priority(5)).await;
    for (body, p) in [
        ("none-1", None),
        ("p1-1", Some(1)),
        ("p5-1", Some(5)),
        ("p9", Some(9)),
        ("p3", Some(3)),
        ("p5-2", Some(5)),
        ("p0", Some(0)),
        ("p1-2", Some(1)),
        ("p255", Some(255)),
    ] {
        publish_with(&ch, "prio", body, p, false).await;
    }
    let got = drain(&ch, "prio").await;
    // 9 and 255 count as 5, FIFO with the real 5s; no priority counts as 0.
    assert_eq!(
        bodies(&got),
        [
            "p5-1", "p9", "p5-2", "p255", "p3", "p1-1", "p1-2", "none-1", "p0"
        ]
    );

    // A queue without x-max-priority ignores priorities.
    declare(&ch, "plain", false, FieldTable::default()).await;
    publish_with(&ch, "plain", "a", Some(1), false).await;
    publish_with(&ch, "plain", "b", Some(9), false).await;
    assert_eq!(bodies(&drain(&ch, "plain").await), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_go_back_to_their_place_in_their_priority() {
    let b = support::start().await;
    let (_c, ch) = confirming(&b).await;
    declare(&ch, "prio-requeue", false, max_priority(10)).await;
    for (body, p) in [("a1", 1), ("b5", 5), ("c5", 5), ("d1", 1), ("e5", 5)] {
        publish_with(&ch, "prio-requeue", body, Some(p), false).await;
    }
    let mut tags = Vec::new();
    for want in ["b5", "c5"] {
        let m = within(ch.basic_get("prio-requeue".into(), BasicGetOptions { no_ack: false }))
            .await
            .expect("get")
            .expect("a message");
        assert_eq!(m.delivery.data, want.as_bytes());
        tags.push(m.delivery.delivery_tag);
    }
    // A later priority-9 message goes ahead of them; the requeued ones go back before e5.
    publish_with(&ch, "prio-requeue", "f9", Some(9), false).await;
    for tag in tags.into_iter().rev() {
        within(ch.basic_nack(
            tag,
            BasicNackOptions {
                requeue: true,
                ..Default::default()
            },
        ))
        .await
        .expect("nack");
    }
    let got = drain(&ch, "prio-requeue").await;
    assert_eq!(
        got,
        [
            ("f9".to_string(), false),
            ("b5".to_string(), true),
            ("c5".to_string(), true),
            ("e5".to_string(), false),
            ("a1".to_string(), false),
            ("d1".to_string(), false),
        ]
    );
}

/// A small window: a priority queue's lanes each keep 64 messages in memory.
fn small_window() -> BrokerOptions {
    BrokerOptions {
        queue_window: MemoryWindow {
            messages: 128,
            bytes: 1 << 20,
        },
        ..Default::default()
    }
}

/// A deterministic spread of priorities 0..=9.
fn priority_of(n: usize) -> u8 {
    ((n * 7 + n / 3) % 10) as u8
}

/// Checks a drained backlog: priorities never rise, sequence numbers rise within a priority,
/// and every message came once.
fn assert_priority_order(got: &[(String, bool)], total: usize) {
    assert_eq!(got.len(), total, "every message once");
    let mut last: Option<(u8, usize)> = None;
    for (body, _) in got {
        let (p, n) = body.split_once(':').expect("p:n");
        let (p, n): (u8, usize) = (p.parse().expect("p"), n.parse().expect("n"));
        assert_eq!(p, priority_of(n), "body {body}");
        if let Some((lp, ln)) = last {
            assert!(
                p < lp || (p == lp && n > ln),
                "{body} after {lp}:{ln}: out of order"
            );
        }
        last = Some((p, n));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paged_backlog_is_delivered_highest_first_within_the_window() {
    let b = start_with(small_window()).await;
    let (_c, ch) = confirming(&b).await;
    declare(&ch, "prio-paged", true, max_priority(9)).await;
    const N: usize = 3000;
    for n in 0..N {
        // Half persistent (paged in the store), half transient (paged to the spill files).
        let p = priority_of(n);
        publish_with(&ch, "prio-paged", &format!("{p}:{n}"), Some(p), n % 2 == 0).await;
    }
    let q = b
        .broker
        .vhost("/")
        .expect("vhost")
        .queue("prio-paged")
        .expect("q");
    let counts = q.counts();
    assert_eq!(counts.ready, N);
    assert!(
        counts.in_memory <= 10 * 64,
        "{} in memory: more than ten lanes of 64",
        counts.in_memory
    );
    // Drain through a consumer, acking one at a time with a small prefetch.
    within(ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut consumer = within(ch.basic_consume(
        "prio-paged".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let mut got = Vec::new();
    use futures_lite::StreamExt;
    while got.len() < N {
        let d = within(consumer.next())
            .await
            .expect("a delivery")
            .expect("delivery ok");
        got.push((String::from_utf8_lossy(&d.data).into_owned(), d.redelivered));
        let in_memory = q.counts().in_memory;
        assert!(
            in_memory <= 10 * 64 + 10,
            "{in_memory} in memory after {} delivered: more than the lanes' windows",
            got.len()
        );
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    assert_priority_order(&got, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priorities_and_their_order_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    const N: usize = 1500;
    {
        let b = start_in(tmp.path(), small_window()).await;
        let (_c, ch) = confirming(&b).await;
        declare(&ch, "prio-durable", true, max_priority(9)).await;
        for n in 0..N {
            let p = priority_of(n);
            publish_with(&ch, "prio-durable", &format!("{p}:{n}"), Some(p), true).await;
        }
        // Take the first (priority 9) and requeue it: it comes back redelivered, first.
        let first = within(ch.basic_get("prio-durable".into(), BasicGetOptions { no_ack: false }))
            .await
            .expect("get")
            .expect("a message");
        within(first.delivery.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        }))
        .await
        .expect("nack");
        b.stop().await;
    }
    let b = start_in(tmp.path(), small_window()).await;
    let (_c, ch) = b.channel().await;
    let q = b
        .broker
        .vhost("/")
        .expect("vhost")
        .queue("prio-durable")
        .expect("q");
    assert_eq!(q.counts().ready, N);
    assert!(q.counts().in_memory <= 10 * 64);
    let got = drain(&ch, "prio-durable").await;
    assert_priority_order(&got, N);
    assert!(got[0].1, "the requeued head comes back redelivered");
    assert!(!got[1].1);
    drop(q);
    // Nothing is left in the store after the no-ack drain: a second restart finds it empty.
    b.stop().await;
    let b = start_in(tmp.path(), small_window()).await;
    let q = b
        .broker
        .vhost("/")
        .expect("vhost")
        .queue("prio-durable")
        .expect("q");
    assert_eq!(q.counts().ready, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_paged_priority_queue_keeps_only_the_unacked() {
    let tmp = tempfile::tempdir().expect("tmp");
    const N: usize = 800;
    {
        let b = start_in(tmp.path(), small_window()).await;
        let (_c, ch) = confirming(&b).await;
        declare(&ch, "prio-purge", true, max_priority(9)).await;
        for n in 0..N {
            let p = priority_of(n);
            publish_with(&ch, "prio-purge", &format!("{p}:{n}"), Some(p), true).await;
        }
        let held = within(ch.basic_get("prio-purge".into(), BasicGetOptions { no_ack: false }))
            .await
            .expect("get")
            .expect("a message");
        let purged = within(ch.queue_purge("prio-purge".into(), QueuePurgeOptions::default()))
            .await
            .expect("purge");
        assert_eq!(purged as usize, N - 1);
        // Still usable: a new message is the only one.
        publish_with(&ch, "prio-purge", "9:new", Some(9), true).await;
        drop(held);
        b.stop().await;
    }
    let b = start_in(tmp.path(), small_window()).await;
    let (_c, ch) = b.channel().await;
    let got = drain(&ch, "prio-purge").await;
    // The unacked one (the first priority 9) comes back redelivered, then the new one.
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got[0].1 && got[0].0.starts_with("9:"));
    assert_eq!(got[1], ("9:new".to_string(), false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_expires_at_the_head_of_its_own_priority() {
    let b = support::start().await;
    let (_c, ch) = confirming(&b).await;
    declare(&ch, "prio-ttl", false, max_priority(5)).await;
    publish_with(&ch, "prio-ttl", "high", Some(5), false).await;
    within(
        within(
            ch.basic_publish(
                "".into(),
                "prio-ttl".into(),
                BasicPublishOptions::default(),
                b"low-short-lived",
                BasicProperties::default()
                    .with_priority(1)
                    .with_expiration("50".into()),
            ),
        )
        .await
        .expect("publish"),
    )
    .await
    .expect("confirm");
    // The low one expires behind the high one (time-driven: polled with a deadline).
    let q = b
        .broker
        .vhost("/")
        .expect("vhost")
        .queue("prio-ttl")
        .expect("q");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while q.message_count() != 1 {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(bodies(&drain(&ch, "prio-ttl").await), ["high"]);
}
