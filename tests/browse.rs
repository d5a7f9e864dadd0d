//! Browsing without taking: `POST /api/queues/{vhost}/{name}/browse` and the `x-browse`
//! consumer argument. Messages stay in the queue in their order, not marked redelivered; the
//! order is the delivery order (priorities, paged messages included).

mod support;

use futures_lite::StreamExt;
use lagomorph::broker::{BrokerOptions, MemoryWindow};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Value, json};
use support::{assert_amqp_err, start_with, within};
use support::{confirming, drain, publish_with, table};

/// A small window: messages are paged early, and transient ones reach the spill files.
fn small_window() -> BrokerOptions {
    BrokerOptions {
        queue_window: MemoryWindow {
            messages: 128,
            bytes: 2048,
        },
        ..Default::default()
    }
}

async fn browse(base: &str, queue: &str, offset: u64, count: u64) -> Vec<Value> {
    let r = within(
        reqwest::Client::new()
            .post(format!("{base}/api/queues/%2f/{queue}/browse"))
            .basic_auth("guest", Some("guest"))
            .json(&json!({"offset": offset, "count": count}))
            .send(),
    )
    .await
    .expect("http");
    assert!(r.status().is_success(), "{}", r.status());
    within(r.json::<Vec<Value>>()).await.expect("json")
}

fn payloads(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|m| m["payload"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browse_endpoint_shows_messages_in_delivery_order_and_leaves_them() {
    let b = start_with(small_window()).await;
    let (base, token) = support::serve_management(&b, Default::default()).await;
    let (_c, ch) = confirming(&b).await;
    within(ch.queue_declare(
        "browsed".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        table(&[("x-max-priority", AMQPValue::LongInt(3))]),
    ))
    .await
    .expect("declare");
    // 400 messages over priorities 0-3, half persistent: most of them paged.
    const N: usize = 400;
    for n in 0..N {
        let p = (n % 4) as u8;
        publish_with(&ch, "browsed", &format!("{p}:{n:03}"), Some(p), n % 2 == 0).await;
    }
    let first = browse(&base, "browsed", 0, 3).await;
    assert_eq!(payloads(&first), ["3:003", "3:007", "3:011"]);
    assert_eq!(first[0]["message_count"], N - 1);
    assert_eq!(first[2]["message_count"], N - 3);
    assert_eq!(first[0]["redelivered"], false);
    assert_eq!(first[0]["routing_key"], "browsed");
    assert_eq!(first[0]["payload_encoding"], "string");
    assert_eq!(first[0]["properties"]["priority"], 3);
    // Deep in the paged part, across lanes.
    let deep = browse(&base, "browsed", 98, 4).await;
    assert_eq!(payloads(&deep), ["3:395", "3:399", "2:002", "2:006"]);
    let all = browse(&base, "browsed", 0, N as u64).await;
    assert_eq!(all.len(), N);
    // Nothing moved: draining gives the same order, none redelivered.
    let drained = drain(&ch, "browsed").await;
    assert_eq!(
        drained.iter().map(|m| m.0.clone()).collect::<Vec<_>>(),
        payloads(&all)
    );
    assert!(
        drained.iter().all(|m| !m.1),
        "browsing marks nothing redelivered"
    );
    assert!(browse(&base, "browsed", 0, 10).await.is_empty());
    token.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_browse_consumer_gets_copies_then_is_cancelled() {
    let b = support::start().await;
    let (c, ch) = confirming(&b).await;
    within(ch.queue_declare(
        "browsed-amqp".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    for n in 0..5 {
        publish_with(&ch, "browsed-amqp", &format!("m{n}"), None, false).await;
    }
    // Take one and requeue it: it is redelivered; browsing shows it as it is.
    let first = within(ch.basic_get("browsed-amqp".into(), BasicGetOptions { no_ack: false }))
        .await
        .expect("get")
        .expect("a message");
    within(first.delivery.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    }))
    .await
    .expect("nack");
    let bch = within(c.create_channel()).await.expect("channel");
    let mut browser = within(bch.basic_consume(
        "browsed-amqp".into(),
        "browser".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        table(&[("x-browse", AMQPValue::Boolean(true))]),
    ))
    .await
    .expect("consume");
    let mut seen = Vec::new();
    // The broker cancels the consumer after the copies: the stream ends.
    while let Some(d) = within(browser.next()).await {
        let d = d.expect("delivery");
        seen.push((String::from_utf8_lossy(&d.data).into_owned(), d.redelivered));
    }
    assert_eq!(
        seen,
        [
            ("m0".to_string(), true),
            ("m1".to_string(), false),
            ("m2".to_string(), false),
            ("m3".to_string(), false),
            ("m4".to_string(), false),
        ]
    );
    let drained = drain(&ch, "browsed-amqp").await;
    assert_eq!(drained, seen, "all still there, in order, unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_x_browse_consumer_must_be_no_ack() {
    let b = support::start().await;
    let (_c, ch) = b.channel().await;
    within(ch.queue_declare(
        "browse-ack".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let r = ch
        .basic_consume(
            "browse-ack".into(),
            "b".into(),
            BasicConsumeOptions::default(),
            table(&[("x-browse", AMQPValue::Boolean(true))]),
        )
        .await;
    assert_amqp_err(
        r,
        406,
        "PRECONDITION_FAILED - x-browse requires no-ack: browsed messages are copies and are not acknowledged",
    );
}
