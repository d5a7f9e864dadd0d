//! Restarts on the same data directory: durable topology and persistent messages survive,
//! transient ones do not; unacked messages come back redelivered, in order.

mod support;

use futures_lite::StreamExt;
use lagomorph::broker::BrokerOptions;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, ExchangeKind};
use support::{start_in, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_durable_things_and_drops_transient_ones() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (c, ch) = b.channel().await;
        within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect("confirms");
        within(ch.exchange_declare(
            "dx".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .expect("dx");
        within(ch.exchange_declare(
            "tx".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("tx");
        for (q, durable) in [("dq", true), ("tq", false)] {
            within(ch.queue_declare(
                q.into(),
                QueueDeclareOptions {
                    durable,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .await
            .expect("queue");
        }
        within(ch.queue_bind(
            "dq".into(),
            "dx".into(),
            "a.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("bind");
        for i in 0..10u32 {
            let mode = if i % 2 == 0 { 2 } else { 1 };
            let p = within(ch.basic_publish(
                "dx".into(),
                "a.b".into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default().with_delivery_mode(mode),
            ))
            .await
            .expect("publish");
            assert!(within(p).await.expect("confirm").is_ack());
        }
        // Take two messages without acking them (m0 persistent, m1 transient): m0 comes back
        // redelivered, m1 is gone with the restart.
        for _ in 0..2 {
            within(ch.basic_get("dq".into(), BasicGetOptions::default()))
                .await
                .expect("get")
                .expect("msg");
        }
        drop(c);
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let (c, ch) = b.channel().await;
    within(ch.exchange_declare(
        "dx".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("durable exchange survives");
    let gone = within(ch.exchange_declare(
        "tx".into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    assert!(gone.is_err(), "transient exchange is gone");
    let ch = within(c.create_channel()).await.expect("channel");
    let gone = within(ch.queue_declare(
        "tq".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await;
    assert!(gone.is_err(), "transient queue is gone");
    let ch = within(c.create_channel()).await.expect("channel");
    let mut cons = within(ch.basic_consume(
        "dq".into(),
        "c".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = within(cons.next()).await.expect("open").expect("delivery");
        got.push((String::from_utf8_lossy(&d.data).into_owned(), d.redelivered));
    }
    assert_eq!(
        got,
        vec![
            ("m0".to_string(), true),
            ("m2".to_string(), false),
            ("m4".to_string(), false),
            ("m6".to_string(), false),
            ("m8".to_string(), false),
        ],
        "persistent messages only, in order, the delivered ones redelivered"
    );
    // The binding survived too.
    let p = within(ch.basic_publish(
        "dx".into(),
        "a.z".into(),
        BasicPublishOptions::default(),
        b"after",
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    drop(p);
    let d = within(cons.next()).await.expect("open").expect("delivery");
    assert_eq!(d.data, b"after");
}

fn small_window() -> BrokerOptions {
    BrokerOptions {
        queue_window: lagomorph::broker::MemoryWindow {
            messages: 16,
            ..Default::default()
        },
        ..BrokerOptions::default()
    }
}

/// A connection and a channel in confirm mode, with the durable queue `q` declared.
async fn confirming_durable_queue(
    b: &support::TestBroker,
    q: &str,
) -> (lapin::Connection, lapin::Channel) {
    let (c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirms");
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    (c, ch)
}

/// Publishes each (body, delivery mode) to `q` through the default exchange, then waits until
/// every one is confirmed (acked, not nacked).
async fn publish_confirmed(ch: &lapin::Channel, q: &str, messages: Vec<(Vec<u8>, u8)>) {
    let mut pending = Vec::new();
    for (body, mode) in messages {
        pending.push(
            within(ch.basic_publish(
                "".into(),
                q.into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(mode),
            ))
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(within(p).await.expect("confirm").is_ack());
    }
}

/// Declares the transient queue `q` and publishes `bodies` to it (transient, no confirms).
async fn declare_and_publish(ch: &lapin::Channel, q: &str, bodies: impl Iterator<Item = Vec<u8>>) {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    for body in bodies {
        within(ch.basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
}

async fn drain_bodies(ch: &lapin::Channel, q: &str, n: usize) -> Vec<(String, bool)> {
    let mut cons = within(ch.basic_consume(
        q.into(),
        "drain".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let mut got = Vec::new();
    for _ in 0..n {
        let d = within(cons.next()).await.expect("open").expect("delivery");
        got.push((String::from_utf8_lossy(&d.data).into_owned(), d.redelivered));
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_memory_window_pages_out_and_comes_back_in_order() {
    let b = support::start_with(small_window()).await;
    let (_c, ch) = b.channel().await;
    declare_and_publish(
        &ch,
        "backlog",
        (0..500u32).map(|i| format!("{i}").into_bytes()),
    )
    .await;
    let q = b.queue("backlog");
    let seen = within(ch.queue_declare(
        "backlog".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(seen.message_count(), 500, "paged messages count as ready");
    let c = q.counts();
    let (ready, in_memory_bytes) = (c.ready, c.in_memory_bytes);
    assert_eq!(ready, 500);
    assert!(
        in_memory_bytes <= 16 * 3,
        "only the window is in memory: {in_memory_bytes} body bytes"
    );
    // basic.get reads the paged tail back once memory runs out, and a consumer drains the rest.
    for i in 0..20u32 {
        let m = within(ch.basic_get("backlog".into(), BasicGetOptions { no_ack: true }))
            .await
            .expect("get")
            .expect("message");
        assert_eq!(m.delivery.data, i.to_string().as_bytes());
    }
    let got = drain_bodies(&ch, "backlog", 480).await;
    let want: Vec<(String, bool)> = (20..500).map(|i| (i.to_string(), false)).collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_backlog_larger_than_the_window_survives_restart_in_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let b = start_in(tmp.path(), small_window()).await;
        let (_c, ch) = confirming_durable_queue(&b, "big").await;
        let mut batch = Vec::new();
        for i in 0..300u32 {
            // Mixed: transient ones are paged to the scratch area and lost on restart.
            let mode = if i % 3 == 0 { 1 } else { 2 };
            batch.push((format!("{i}").into_bytes(), mode));
        }
        publish_confirmed(&ch, "big", batch).await;
        b.stop().await;
    }
    let b = start_in(tmp.path(), small_window()).await;
    let (_c, ch) = b.channel().await;
    let q = within(ch.queue_declare(
        "big".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    assert_eq!(q.message_count(), 200);
    let got = drain_bodies(&ch, "big", 200).await;
    let want: Vec<(String, bool)> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| (i.to_string(), false))
        .collect();
    assert_eq!(got, want);
}

/// A window of many messages but only 8 KiB of bodies: large messages page by bytes.
fn byte_window() -> BrokerOptions {
    BrokerOptions {
        queue_window: lagomorph::broker::MemoryWindow {
            messages: 10_000,
            bytes: 8 * 1024,
        },
        ..BrokerOptions::default()
    }
}

/// A 1 KiB body that starts with its number.
fn numbered_kib(i: u32) -> Vec<u8> {
    let mut body = format!("{i}:").into_bytes();
    body.resize(1024, b'.');
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_window_is_bounded_in_bytes_too_before_and_after_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let b = start_in(tmp.path(), byte_window()).await;
        let (_c, ch) = confirming_durable_queue(&b, "kib").await;
        let mut batch = Vec::new();
        for i in 0..200u32 {
            batch.push((numbered_kib(i), 2));
        }
        publish_confirmed(&ch, "kib", batch).await;
        let q = b.queue("kib");
        let c = q.counts();
        let (ready, in_memory_bytes) = (c.ready, c.in_memory_bytes);
        assert_eq!(ready, 200);
        assert!(
            in_memory_bytes <= 8 * 1024,
            "200 KiB published, {in_memory_bytes} body bytes in memory"
        );
        b.stop().await;
    }
    let b = start_in(tmp.path(), byte_window()).await;
    let q = b.queue("kib");
    let c = q.counts();
    let (ready, in_memory_bytes) = (c.ready, c.in_memory_bytes);
    assert_eq!(
        ready, 200,
        "every message is back, most of them still paged"
    );
    assert!(
        (1024..=9 * 1024).contains(&in_memory_bytes),
        "recovery loads one window: {in_memory_bytes} body bytes"
    );
    let (_c, ch) = b.channel().await;
    let got = drain_bodies(&ch, "kib", 200).await;
    for (i, (body, redelivered)) in got.iter().enumerate() {
        assert!(body.starts_with(&format!("{i}:")), "message {i} in order");
        assert!(!redelivered);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_backlog_of_large_messages_keeps_only_the_byte_window_in_memory() {
    let b = support::start_with(byte_window()).await;
    let (_c, ch) = b.channel().await;
    declare_and_publish(&ch, "big-transient", (0..200u32).map(numbered_kib)).await;
    // A passive declare is answered after every publish before it was handled.
    let seen = within(ch.queue_declare(
        "big-transient".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(seen.message_count(), 200);
    let q = b.queue("big-transient");
    let in_memory_bytes = q.counts().in_memory_bytes;
    assert!(
        in_memory_bytes <= 8 * 1024,
        "{in_memory_bytes} body bytes in memory"
    );
    let got = drain_bodies(&ch, "big-transient", 200).await;
    for (i, (body, _)) in got.iter().enumerate() {
        assert!(body.starts_with(&format!("{i}:")), "message {i} in order");
    }
}
