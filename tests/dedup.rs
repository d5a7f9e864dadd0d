//! Deduplication with LavinMQ's arguments through real clients: on exchanges and queues, the
//! cache size and TTL, a custom header, the argument errors, and the cache of durable owners
//! surviving a restart (beyond LavinMQ).

mod support;

use lagomorph::broker::BrokerOptions;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel};
use std::time::Duration;
use support::{amqp_error, start, start_in, unique, within};

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(k.to_string()), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.to_string().into())
}

fn on() -> (&'static str, AMQPValue) {
    ("x-message-deduplication", AMQPValue::Boolean(true))
}

fn with_id(header: &str, id: Option<&str>) -> BasicProperties {
    let p = BasicProperties::default().with_delivery_mode(2);
    match id {
        Some(id) => p.with_headers(table(&[(header, text(id))])),
        None => p,
    }
}

/// Publishes and waits for the confirm; true when it was an ack.
async fn publish(ch: &Channel, x: &str, key: &str, props: BasicProperties) -> bool {
    within(ch.basic_publish(
        x.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"m",
        props,
    ))
    .await
    .expect("publish")
    .await
    .expect("confirm")
    .is_ack()
}

async fn count(ch: &Channel, q: &str) -> u32 {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive")
    .message_count()
}

async fn queue(ch: &Channel, q: &str, durable: bool, args: FieldTable) {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("queue");
}

async fn exchange(ch: &Channel, x: &str, durable: bool, args: FieldTable) {
    within(ch.exchange_declare(
        x.into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("exchange");
}

async fn bind(ch: &Channel, q: &str, x: &str) {
    within(ch.queue_bind(
        q.into(),
        x.into(),
        "k".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("bind");
}

async fn confirming(b: &support::TestBroker) -> (lapin::Connection, Channel) {
    let (c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirms");
    (c, ch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_drops_duplicates_and_confirms_them() {
    let b = start().await;
    let (_c, ch) = confirming(&b).await;
    let (x, q) = (unique("ddx"), unique("ddq"));
    exchange(
        &ch,
        &x,
        false,
        table(&[on(), ("x-cache-size", AMQPValue::LongInt(2))]),
    )
    .await;
    queue(&ch, &q, false, FieldTable::default()).await;
    bind(&ch, &q, &x).await;
    let h = "x-deduplication-header";
    for id in [Some("a"), Some("a"), Some("b"), None, None, Some("b")] {
        assert!(
            publish(&ch, &x, "k", with_id(h, id)).await,
            "{id:?} not acked"
        );
    }
    assert_eq!(count(&ch, &q).await, 4, "a, b and the two without an id");
    // Size 2: "c" evicts "a", which is then new again.
    assert!(publish(&ch, &x, "k", with_id(h, Some("c"))).await);
    assert!(publish(&ch, &x, "k", with_id(h, Some("a"))).await);
    assert_eq!(count(&ch, &q).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_with_a_custom_header_and_a_ttl() {
    let b = start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("ddq");
    queue(
        &ch,
        &q,
        false,
        table(&[
            on(),
            ("x-deduplication-header", text("msg-id")),
            ("x-cache-ttl", AMQPValue::LongInt(300)),
        ]),
    )
    .await;
    assert!(publish(&ch, "", &q, with_id("msg-id", Some("1"))).await);
    assert!(publish(&ch, "", &q, with_id("msg-id", Some("1"))).await);
    // The default header means nothing to this queue.
    assert!(publish(&ch, "", &q, with_id("x-deduplication-header", Some("1"))).await);
    assert_eq!(count(&ch, &q).await, 2);
    // After the TTL the id counts as new (time-driven: poll with a deadline).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    tokio::time::sleep(Duration::from_millis(300)).await;
    loop {
        assert!(publish(&ch, "", &q, with_id("msg-id", Some("1"))).await);
        if count(&ch, &q).await == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "ttl never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_errors_have_lavinmq_texts() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let e = within(ch.queue_declare(
        unique("ddq").as_str().into(),
        QueueDeclareOptions::default(),
        table(&[on(), ("x-cache-size", text("ten"))]),
    ))
    .await
    .expect_err("refused");
    assert_eq!(
        amqp_error(&e),
        Some((
            406,
            "PRECONDITION_FAILED - x-cache-size header not a Int".into()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cache_of_durable_owners_survives_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (x, q, dq) = ("ddx-restart", "ddq-restart", "ddq-own-restart");
    let h = "x-deduplication-header";
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = confirming(&b).await;
        exchange(&ch, x, true, table(&[on()])).await;
        queue(&ch, q, true, FieldTable::default()).await;
        bind(&ch, q, x).await;
        queue(&ch, dq, true, table(&[on()])).await;
        assert!(publish(&ch, x, "k", with_id(h, Some("a"))).await);
        assert!(publish(&ch, "", dq, with_id(h, Some("a"))).await);
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let (_c, ch) = confirming(&b).await;
    // The retries after the restart are duplicates; new ids are not.
    assert!(publish(&ch, x, "k", with_id(h, Some("a"))).await);
    assert!(publish(&ch, "", dq, with_id(h, Some("a"))).await);
    assert_eq!(count(&ch, q).await, 1);
    assert_eq!(count(&ch, dq).await, 1);
    assert!(publish(&ch, x, "k", with_id(h, Some("b"))).await);
    assert!(publish(&ch, "", dq, with_id(h, Some("b"))).await);
    assert_eq!(count(&ch, q).await, 2);
    assert_eq!(count(&ch, dq).await, 2);
    // Deleting the exchange drops its stored cache: a new one of the same name starts empty.
    within(ch.exchange_delete(x.into(), ExchangeDeleteOptions::default()))
        .await
        .expect("delete");
    exchange(&ch, x, true, table(&[on()])).await;
    bind(&ch, q, x).await;
    assert!(publish(&ch, x, "k", with_id(h, Some("a"))).await);
    assert_eq!(count(&ch, q).await, 3);
    b.stop().await;
}
