//! Message TTL, queue expiry and length limits through lapin, with the outcomes RabbitMQ 3.10
//! gave for the same steps (tests/fixtures/rabbitmq-3.10/queues.json), and the delay-queue
//! pattern end to end. Waits for TTLs are bounded polls, never sleeps as synchronisation.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use serde_json::Value;
use std::time::{Duration, Instant};
use support::table;
use support::{amqp_error, rabbitmq, start, within};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn i(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) -> u32 {
    within(ch.queue_declare(name.into(), QueueDeclareOptions::default(), args))
        .await
        .expect("declare")
        .message_count()
}

async fn count(ch: &Channel, name: &str) -> u32 {
    within(ch.queue_declare(
        name.into(),
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

/// Polls `count` until it is `want` (bounded: 5 s).
async fn count_becomes(ch: &Channel, name: &str, want: u32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = count(ch, name).await;
        if n == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name}: {n} messages, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn publish(ch: &Channel, queue: &str, body: &str, props: BasicProperties) {
    within(ch.basic_publish(
        "".into(),
        queue.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    ))
    .await
    .expect("publish");
}

async fn get(ch: &Channel, queue: &str) -> Option<String> {
    within(ch.basic_get(queue.into(), BasicGetOptions { no_ack: true }))
        .await
        .expect("get")
        .map(|m| String::from_utf8_lossy(&m.delivery.data).into_owned())
}

fn result(fx: &Value, case: &str) -> Value {
    fx[case]["result"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttl_zero_delivers_now_or_expires() {
    let fx = rabbitmq("queues");
    let rec = result(&fx, "ttl_zero");
    let b = start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "ttl0", table(&[("x-message-ttl", i(0))])).await;
    publish(&ch, "ttl0", "nobody", BasicProperties::default()).await;
    assert_eq!(
        Value::from(count(&ch, "ttl0").await),
        rec["left_without_consumer"]
    );
    let mut consumer = within(ch.basic_consume(
        "ttl0".into(),
        "c".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    publish(&ch, "ttl0", "taken", BasicProperties::default()).await;
    let d = within(consumer.next())
        .await
        .expect("open")
        .expect("delivery");
    assert_eq!(
        Value::from(vec![String::from_utf8_lossy(&d.data)]),
        rec["delivered_with_consumer"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lower_ttl_wins_and_expiry_is_from_the_head() {
    let fx = rabbitmq("queues");
    let b = start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "ttl-low", table(&[("x-message-ttl", i(300))])).await;
    let exp = |ms: &str| BasicProperties::default().with_expiration(ShortString::from(ms));
    publish(&ch, "ttl-low", "long-msg-ttl", exp("60000")).await;
    publish(&ch, "ttl-low", "short-msg-ttl", exp("100")).await;
    let rec = result(&fx, "ttl_lower_of_queue_and_message_wins");
    count_becomes(
        &ch,
        "ttl-low",
        rec["left_after_500ms"].as_u64().unwrap_or(9) as u32,
    )
    .await;

    // A short TTL behind a long one stays counted until it reaches the head, and is never
    // delivered after its deadline.
    declare(&ch, "ttl-head", FieldTable::default()).await;
    publish(&ch, "ttl-head", "long", exp("60000")).await;
    publish(&ch, "ttl-head", "short", exp("50")).await;
    let rec = result(&fx, "ttl_expires_from_the_head_only");
    let deadline_passed = Instant::now() + Duration::from_millis(60);
    while Instant::now() < deadline_passed {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        Value::from(count(&ch, "ttl-head").await),
        rec["count_before_get"]
    );
    assert_eq!(
        get(&ch, "ttl-head").await.as_deref(),
        rec["first_get"].as_str()
    );
    assert_eq!(
        get(&ch, "ttl-head").await.as_deref(),
        rec["second_get"].as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn length_limits_and_overflow_modes_as_rabbitmq() {
    let fx = rabbitmq("queues");
    let b = start().await;
    let (_c, ch) = b.channel().await;

    declare(&ch, "max-bytes", table(&[("x-max-length-bytes", i(10))])).await;
    for m in ["12345", "67890", "abc"] {
        publish(&ch, "max-bytes", m, BasicProperties::default()).await;
    }
    let mut kept = Vec::new();
    while let Some(m) = get(&ch, "max-bytes").await {
        kept.push(m);
    }
    assert_eq!(
        Value::from(kept),
        result(&fx, "max_length_bytes_drop_head")["kept"]
    );

    for (case, mode) in [
        ("overflow_reject_publish", "reject-publish"),
        ("overflow_reject_publish_dlx", "reject-publish-dlx"),
    ] {
        let rec = result(&fx, case);
        let (c2, ch2) = b.channel().await;
        let q = format!("rp-{mode}");
        declare(
            &ch2,
            &q,
            table(&[("x-max-length", i(1)), ("x-overflow", s(mode))]),
        )
        .await;
        publish(&ch2, &q, "first", BasicProperties::default()).await;
        publish(&ch2, &q, "silently-refused", BasicProperties::default()).await;
        assert_eq!(
            Value::from(count(&ch2, &q).await),
            rec["count_after_plain_publishes"]
        );
        within(ch2.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect("confirm");
        let confirm = within(
            within(ch2.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"nacked",
                BasicProperties::default(),
            ))
            .await
            .expect("publish"),
        )
        .await
        .expect("confirm");
        let got = if confirm.is_nack() { "nack" } else { "ack" };
        assert_eq!(Value::from(got), rec["confirm_when_full"], "{case}");
        assert_eq!(Value::from(count(&ch2, &q).await), rec["count"]);
        drop(c2);
    }

    // max-length 0: reject-publish refuses even what a waiting consumer would take;
    // drop-head lets the consumer have it.
    for (case, args) in [
        (
            "overflow_reject_publish_max_length_0_with_consumer",
            table(&[("x-max-length", i(0)), ("x-overflow", s("reject-publish"))]),
        ),
        (
            "max_length_0_drop_head_with_consumer",
            table(&[("x-max-length", i(0))]),
        ),
    ] {
        let rec = result(&fx, case);
        let (c2, ch2) = b.channel().await;
        let q = format!("zero-{case}");
        declare(&ch2, &q, args).await;
        if let Some(n) = rec.get("count_without_consumer") {
            publish(&ch2, &q, "nobody", BasicProperties::default()).await;
            assert_eq!(&Value::from(count(&ch2, &q).await), n);
        }
        let mut consumer = within(ch2.basic_consume(
            q.as_str().into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .expect("consume");
        within(ch2.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect("confirm");
        let confirm = within(
            within(ch2.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                b"to-consumer",
                BasicProperties::default(),
            ))
            .await
            .expect("publish"),
        )
        .await
        .expect("confirm");
        if let Some(c) = rec.get("confirm") {
            let got = if confirm.is_nack() { "nack" } else { "ack" };
            assert_eq!(&Value::from(got), c, "{case}");
        }
        let want = rec["delivered"].as_array().map_or(0, Vec::len);
        if want > 0 {
            let d = within(consumer.next())
                .await
                .expect("open")
                .expect("delivery");
            assert_eq!(&d.data[..], b"to-consumer");
        } else {
            // Nothing was delivered: the queue is empty and the consumer has nothing.
            assert_eq!(count(&ch2, &q).await, 0);
        }
        drop(c2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unused_queue_expires_and_its_last_consumer_starts_the_clock() {
    let fx = rabbitmq("queues");
    let b = start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "exp-queue", table(&[("x-expires", i(300))])).await;
    let gone = |case: &str| {
        let r = result(&fx, case);
        let r = r.get("after_cancel").cloned().unwrap_or(r);
        (
            r["code"].as_u64().unwrap_or(0) as u16,
            r["text"].as_str().unwrap_or("").to_string(),
        )
    };
    let vh = b.broker.vhost("/").expect("vhost");
    let deadline = Instant::now() + Duration::from_secs(5);
    while vh.queue("exp-queue").is_ok() {
        assert!(
            Instant::now() < deadline,
            "x-expires did not delete the queue"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = within(ch.queue_declare(
        "exp-queue".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect_err("expired");
    assert_eq!(amqp_error(&e), Some(gone("queue_expires_when_unused")));

    let (_c2, ch) = b.channel().await;
    declare(&ch, "exp-consumed", table(&[("x-expires", i(300))])).await;
    let consumer = within(ch.basic_consume(
        "exp-consumed".into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    // Well past its expiry, the consumer keeps it.
    let until = Instant::now() + Duration::from_millis(600);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(vh.queue("exp-consumed").is_ok());
    drop(consumer);
    within(ch.basic_cancel("c".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    let deadline = Instant::now() + Duration::from_secs(5);
    while vh.queue("exp-consumed").is_ok() {
        assert!(
            Instant::now() < deadline,
            "not deleted after its consumer left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let e = within(ch.queue_declare(
        "exp-consumed".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect_err("expired");
    assert_eq!(
        amqp_error(&e),
        Some(gone("queue_expires_after_its_last_consumer"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delay_queue_pattern_end_to_end() {
    // Messages wait in "delay" for its TTL, then dead-letter into "work", where a consumer
    // takes them: the classic RabbitMQ delay queue.
    let b = start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "work", FieldTable::default()).await;
    declare(
        &ch,
        "delay",
        table(&[
            ("x-message-ttl", i(300)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("work")),
        ]),
    )
    .await;
    let mut consumer = within(ch.basic_consume(
        "work".into(),
        "worker".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let sent = Instant::now();
    for n in 0..5 {
        publish(
            &ch,
            "delay",
            &format!("job-{n}"),
            BasicProperties::default(),
        )
        .await;
    }
    for n in 0..5 {
        let d = within(consumer.next())
            .await
            .expect("open")
            .expect("delivery");
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "delivered before its delay"
        );
        assert_eq!(String::from_utf8_lossy(&d.data), format!("job-{n}"));
        let headers = d.properties.headers().clone().unwrap_or_default();
        let deaths = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().len(),
            other => panic!("x-death: {other:?}"),
        };
        assert_eq!(deaths, 1);
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    assert!(sent.elapsed() < Duration::from_secs(3), "delivered late");
}

/// Messages that expire together are dead-lettered as a batch, and the broker reuses the
/// copy's headers for messages that differ only in their bodies: each copy must still carry
/// its own body and its own headers, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_expiries_keeps_each_message_its_own_headers_and_body() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "batch-dlq", FieldTable::default()).await;
    declare(
        &ch,
        "batch-ttl",
        table(&[
            ("x-message-ttl", i(300)),
            ("x-dead-letter-exchange", s("")),
            ("x-dead-letter-routing-key", s("batch-dlq")),
        ]),
    )
    .await;
    // Two runs of identical properties and one odd one out between them.
    let kinds = ["a", "a", "b", "a", "a"];
    for (n, kind) in kinds.iter().enumerate() {
        let props = BasicProperties::default().with_headers(table(&[("kind", s(kind))]));
        within(ch.basic_publish(
            "".into(),
            "batch-ttl".into(),
            BasicPublishOptions::default(),
            n.to_string().as_bytes(),
            props,
        ))
        .await
        .expect("publish");
    }
    count_becomes(&ch, "batch-dlq", kinds.len() as u32).await;
    for (n, kind) in kinds.iter().enumerate() {
        let m = within(ch.basic_get("batch-dlq".into(), BasicGetOptions { no_ack: true }))
            .await
            .expect("get")
            .expect("a message");
        assert_eq!(m.delivery.data, n.to_string().as_bytes());
        let headers = m.delivery.properties.headers().clone().expect("headers");
        assert_eq!(headers.inner().get("kind"), Some(&s(kind)), "message {n}");
        let deaths = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().len(),
            other => panic!("x-death of message {n}: {other:?}"),
        };
        assert_eq!(deaths, 1, "message {n}");
    }
}
