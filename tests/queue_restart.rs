//! What queue features keep across a restart on the same data directory: a message's remaining
//! TTL (its deadline is stored), x-expires (counted again from the start, as RabbitMQ does),
//! exact counts under a length limit, delivery counts, and policies.

mod support;

use lagomorph::broker::BrokerOptions;
use lagomorph::broker::policy::{PolicyKind, build};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel};
use std::time::{Duration, Instant};
use support::{confirming, table};
use support::{start_in, within};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

async fn durable(ch: &Channel, name: &str, args: FieldTable) -> u32 {
    within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("declare")
    .message_count()
}

async fn publish_persistent(ch: &Channel, queue: &str, body: &str) {
    within(
        within(ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        ))
        .await
        .expect("publish"),
    )
    .await
    .expect("confirm");
}

/// The ready count as the channel sees it, after everything sent before on that channel.
async fn passive_count(ch: &Channel, name: &str) -> u32 {
    within(ch.queue_declare(
        name.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive declare")
    .message_count()
}

fn ready(b: &support::TestBroker, q: &str) -> Option<u32> {
    b.broker
        .vhost("/")
        .and_then(|v| v.queue(q).ok())
        .map(|q| q.message_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_keeps_its_remaining_ttl_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let published;
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = confirming(&b).await;
        durable(
            &ch,
            "ttl-restart",
            table(&[("x-message-ttl", AMQPValue::LongInt(2000))]),
        )
        .await;
        durable(
            &ch,
            "expired-before",
            table(&[("x-message-ttl", AMQPValue::LongInt(100))]),
        )
        .await;
        published = Instant::now();
        publish_persistent(&ch, "ttl-restart", "m").await;
        publish_persistent(&ch, "expired-before", "gone").await;
        b.stop().await;
    }
    // Down for longer than the short TTL.
    while published.elapsed() < Duration::from_millis(150) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    assert_eq!(
        ready(&b, "expired-before"),
        Some(0),
        "expired while the broker was down"
    );
    assert_eq!(ready(&b, "ttl-restart"), Some(1));
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&b, "ttl-restart") != Some(0) {
        assert!(Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = published.elapsed();
    assert!(
        took >= Duration::from_millis(2000) && took < Duration::from_millis(3500),
        "expired {took:?} after its publish: the TTL counted from the publish, not the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_expires_counts_again_from_the_start() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = b.channel().await;
        durable(
            &ch,
            "expiring",
            table(&[("x-expires", AMQPValue::LongInt(600))]),
        )
        .await;
        b.stop().await;
    }
    let started = Instant::now();
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    assert!(ready(&b, "expiring").is_some(), "still there at start");
    let deadline = Instant::now() + Duration::from_secs(10);
    while ready(&b, "expiring").is_some() {
        assert!(Instant::now() < deadline, "never expired after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(600));
    // And it stays deleted through the next restart.
    b.stop().await;
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    assert_eq!(ready(&b, "expiring"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_limits_keep_exact_counts_across_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = || table(&[("x-max-length", AMQPValue::LongInt(5))]);
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = confirming(&b).await;
        durable(&ch, "limited", args()).await;
        for n in 0..10 {
            publish_persistent(&ch, "limited", &n.to_string()).await;
        }
        assert_eq!(ready(&b, "limited"), Some(5));
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let (_c, ch) = confirming(&b).await;
    assert_eq!(durable(&ch, "limited", args()).await, 5);
    publish_persistent(&ch, "limited", "10").await;
    let mut got = Vec::new();
    while let Some(m) = within(ch.basic_get("limited".into(), BasicGetOptions { no_ack: true }))
        .await
        .expect("get")
    {
        got.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    assert_eq!(got, ["6", "7", "8", "9", "10"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_counts_and_the_limit_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let args = || {
        table(&[
            ("x-delivery-limit", AMQPValue::LongInt(2)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("poison")),
        ])
    };
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = confirming(&b).await;
        durable(&ch, "poison", FieldTable::default()).await;
        durable(&ch, "work", args()).await;
        publish_persistent(&ch, "work", "m").await;
        for _ in 0..2 {
            let m = within(ch.basic_get("work".into(), BasicGetOptions { no_ack: false }))
                .await
                .expect("get")
                .expect("message");
            within(m.delivery.nack(BasicNackOptions {
                requeue: true,
                ..Default::default()
            }))
            .await
            .expect("nack");
        }
        assert_eq!(passive_count(&ch, "work").await, 1);
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let (_c, ch) = confirming(&b).await;
    durable(&ch, "work", args()).await;
    let m = within(ch.basic_get("work".into(), BasicGetOptions { no_ack: false }))
        .await
        .expect("get")
        .expect("message");
    let count = m
        .delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    assert_eq!(count, Some(AMQPValue::LongLongInt(2)));
    within(m.delivery.nack(BasicNackOptions {
        requeue: true,
        ..Default::default()
    }))
    .await
    .expect("nack");
    // The third return is past the limit of 2: dead-lettered. The nack has no reply: a
    // passive declare on the same channel is answered only after it was handled.
    assert_eq!(passive_count(&ch, "poison").await, 1);
    assert_eq!(ready(&b, "work"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_survive_a_restart_and_apply_to_recovered_queues() {
    let tmp = tempfile::tempdir().expect("tmp");
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = b.channel().await;
        durable(&ch, "pol-target", FieldTable::default()).await;
        let vh = b.broker.vhost("/").expect("vhost");
        for (kind, name, def) in [
            (
                PolicyKind::Policy,
                "cap",
                serde_json::json!({"max-length": 3}),
            ),
            (
                PolicyKind::Operator,
                "ttl",
                serde_json::json!({"message-ttl": 60000}),
            ),
        ] {
            let p = build(kind, "/", name, "^pol-", Some("queues"), None, &def).expect("policy");
            vh.put_policy(kind, p, lagomorph::clock::now())
                .expect("put");
        }
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let vh = b.broker.vhost("/").expect("vhost");
    assert_eq!(vh.policy_list(PolicyKind::Policy).len(), 1);
    assert_eq!(vh.policy_list(PolicyKind::Operator).len(), 1);
    let q = vh.queue("pol-target").expect("queue");
    assert_eq!(q.policy().policy.as_deref(), Some("cap"));
    assert_eq!(q.policy().operator_policy.as_deref(), Some("ttl"));
    assert_eq!(q.settings().max_length, Some(3));
    assert_eq!(q.settings().message_ttl, Some(60_000));
}
