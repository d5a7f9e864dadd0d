//! Direct reply-to through real clients: the round trip (requester and responder on different
//! connections), RabbitMQ 3.10's misuse errors and texts (tests/fixtures/rabbitmq-3.10/
//! consumers.json, `reply_to_*`), replies to a gone requester, and the pseudo-queue's declare.

mod support;

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Consumer};
use support::{amqp_error, rabbitmq, start, unique, within};

const REPLY_TO: &str = "amq.rabbitmq.reply-to";

async fn reply_consumer(ch: &Channel) -> Consumer {
    within(ch.basic_consume(
        REPLY_TO.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume reply-to")
}

async fn declare(ch: &Channel, q: &str, passive: bool) -> lapin::Result<lapin::Queue> {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive,
            auto_delete: !passive,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
}

async fn request(ch: &Channel, q: &str, body: &[u8]) {
    within(ch.basic_publish(
        "".into(),
        q.into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default().with_reply_to(REPLY_TO.into()),
    ))
    .await
    .expect("publish request");
}

/// The request's rewritten reply_to, as a responder sees it (basic.get, bounded).
async fn take_reply_to(ch: &Channel, q: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if let Some(m) = within(ch.basic_get(q.into(), BasicGetOptions { no_ack: true }))
            .await
            .expect("get")
        {
            return m
                .delivery
                .properties
                .reply_to()
                .as_ref()
                .expect("reply_to")
                .to_string();
        }
        assert!(std::time::Instant::now() < deadline, "request never queued");
        tokio::task::yield_now().await;
    }
}

fn expected(case: &str) -> (u16, String) {
    let fx = rabbitmq("consumers");
    let r = &fx[case];
    (
        r["code"].as_u64().expect("code") as u16,
        r["text"].as_str().expect("text").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_between_two_connections() {
    let rec = &rabbitmq("consumers")["reply_to_round_trip"]["result"];
    let b = start().await;
    let (requester, ch) = b.channel().await;
    let q = unique("rpcq");
    declare(&ch, &q, false).await.expect("declare");
    let mut replies = reply_consumer(&ch).await;
    request(&ch, &q, b"req").await;

    let (_server, sch) = b.channel().await;
    let reply_to = take_reply_to(&sch, &q).await;
    assert!(reply_to.starts_with(rec["reply_to_prefix"].as_str().expect("prefix")));
    assert_ne!(reply_to, REPLY_TO);
    // The reply key answers a declare while its requester consumes.
    let ok = declare(&sch, &reply_to, true)
        .await
        .expect("declare reply key");
    assert_eq!((ok.message_count(), ok.consumer_count()), (0, 1));

    // A mandatory reply is delivered and (as RabbitMQ 3.10, whose routing finds no queue for
    // it) returned too; the confirm is an ack.
    within(sch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm");
    let confirm = within(sch.basic_publish(
        "".into(),
        reply_to.as_str().into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"resp",
        BasicProperties::default(),
    ))
    .await
    .expect("publish reply");
    let confirmation = within(confirm).await.expect("confirmation");
    assert!(confirmation.is_ack());
    assert!(confirmation.take_message().is_some(), "RabbitMQ returns it");

    let d = within(replies.next())
        .await
        .expect("open")
        .expect("reply delivery");
    assert_eq!(d.data, b"resp");
    assert_eq!(
        d.exchange.as_str(),
        rec["delivery"]["exchange"].as_str().expect("x")
    );
    assert_eq!(d.routing_key.as_str(), reply_to);
    assert_eq!(
        d.redelivered,
        rec["delivery"]["redelivered"].as_bool().expect("r")
    );
    assert_eq!(d.delivery_tag, 1);

    // The pseudo-queue itself answers a passive declare with RabbitMQ's counts.
    let p = declare(&ch, REPLY_TO, true).await.expect("passive declare");
    let pd = &rec["passive_declare"];
    assert_eq!(
        (p.message_count(), p.consumer_count()),
        (
            pd["message_count"].as_u64().expect("m") as u32,
            pd["consumer_count"].as_u64().expect("c") as u32
        )
    );

    // The requester goes: its reply key is gone (404) and a late reply is dropped silently.
    within(requester.close(200, "bye".into()))
        .await
        .expect("close");
    within(sch.basic_publish(
        "".into(),
        reply_to.as_str().into(),
        BasicPublishOptions::default(),
        b"late",
        BasicProperties::default(),
    ))
    .await
    .expect("publish")
    .await
    .expect("late reply confirmed");
    let e = declare(&sch, &reply_to, true).await.expect_err("gone");
    assert_eq!(amqp_error(&e).map(|x| x.0), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_gets_rabbitmq_errors() {
    let b = start().await;
    let (_c, conn_ch) = b.channel().await;
    let c = b.connect().await;

    // Publishing a request without a reply consumer on the channel. The publish has no reply
    // and the channel closes later: read the close off the wire with the raw client (through
    // lapin, a method sent after it races the close and may fail without its reason).
    let q = unique("rpcq0");
    declare(&conn_ch, &q, false).await.expect("declare");
    let mut raw = support::raw::Raw::connect(b.addr).await;
    raw.open_channel(1).await;
    let props = lagomorph::protocol::properties::Properties::from(
        &lagomorph::protocol::properties::BasicProperties {
            reply_to: Some(lagomorph::protocol::types::ShortStr::from_static(REPLY_TO)),
            ..Default::default()
        },
    );
    raw.publish_with(1, "", &q, b"req", &props).await;
    assert_eq!(
        raw.expect_channel_close(1).await,
        expected("reply_to_publish_without_consumer")
    );

    // Consuming with acks.
    let ch = c.create_channel().await.expect("channel");
    let e = within(ch.basic_consume(
        REPLY_TO.into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("acks refused");
    assert_eq!(amqp_error(&e), Some(expected("reply_to_consume_with_acks")));

    // Consuming twice on one channel.
    let ch = c.create_channel().await.expect("channel");
    let _first = reply_consumer(&ch).await;
    let e = within(ch.basic_consume(
        REPLY_TO.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect_err("second refused");
    assert_eq!(amqp_error(&e), Some(expected("reply_to_consume_twice")));

    // A made-up reply key is not a queue; a reply to it goes nowhere.
    let e = declare(&conn_ch, "amq.rabbitmq.reply-to.bogus", true)
        .await
        .expect_err("404");
    assert_eq!(amqp_error(&e).map(|x| x.0), Some(404));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_the_reply_consumer_and_a_new_one_gets_a_new_key() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("rpcq");
    declare(&ch, &q, false).await.expect("declare");
    let replies = reply_consumer(&ch).await;
    request(&ch, &q, b"1").await;
    let first = take_reply_to(&ch, &q).await;
    within(ch.basic_cancel(replies.tag(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    // A new reply consumer gets a new key...
    let ch2 = b.connect().await.create_channel().await.expect("ch");
    let mut again = reply_consumer(&ch).await;
    request(&ch, &q, b"2").await;
    let second = take_reply_to(&ch, &q).await;
    assert_ne!(first, second);
    // ...and a reply to the old key is dropped, one to the new key arrives.
    for (key, body) in [(&first, b"old"), (&second, b"new")] {
        within(ch2.basic_publish(
            "".into(),
            key.as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
    let d = within(again.next()).await.expect("open").expect("reply");
    assert_eq!(d.data, b"new");
}
