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
