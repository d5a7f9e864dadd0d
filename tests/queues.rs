//! Queue declare / bind / purge / delete semantics: counts, server names, exclusivity,
//! auto-delete, if-unused / if-empty.

mod support;

use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use support::{assert_amqp_err, publish_with, start, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_ok_carries_counts_and_server_names() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let anon = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    assert!(
        anon.name().as_str().starts_with("amq.gen-"),
        "{}",
        anon.name()
    );
    let q = unique("counts");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    for _ in 0..3 {
        within(ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
    let again = within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!((again.message_count(), again.consumer_count()), (3, 0));
    let purged = within(ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()))
        .await
        .expect("purge");
    assert_eq!(purged, 3);
    within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    let deleted = within(ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default()))
        .await
        .expect("delete");
    assert_eq!(deleted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_queue_is_locked_for_others_and_dies_with_its_connection() {
    let b = start().await;
    let (c1, ch1) = b.channel().await;
    let q = unique("excl");
    within(ch1.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let (_c2, ch2) = b.channel().await;
    assert_amqp_err(
        within(ch2.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        405,
        &format!(
            "RESOURCE_LOCKED - cannot obtain exclusive access to locked queue '{q}' in vhost '/'. It could be originally declared on another connection or the exclusive property value does not match that of the original declaration."
        ),
    );
    within(c1.close(200, "bye".into())).await.expect("close");
    let ch3 = within(_c2.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch3.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_queue_goes_with_its_last_consumer() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = unique("autodel");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            auto_delete: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    within(ch.basic_consume(
        q.as_str().into(),
        "c1".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    within(ch.basic_cancel("c1".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    let ch2 = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch2.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        404,
        &format!("NOT_FOUND - no queue '{q}' in vhost '/'"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_if_unused_and_if_empty() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = unique("guarded");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    assert_amqp_err(
        within(ch.queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_empty: true,
                ..Default::default()
            },
        ))
        .await,
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' not empty"),
    );
    let ch = within(c.create_channel()).await.expect("channel");
    // Kept alive: lapin cancels a consumer when it is dropped.
    let _consumer = within(ch.basic_consume(
        q.as_str().into(),
        "c".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let ch2 = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch2.queue_delete(
            q.as_str().into(),
            QueueDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        ))
        .await,
        406,
        &format!("PRECONDITION_FAILED - queue '{q}' in vhost '/' in use"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_cancels_its_consumers() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = unique("cancelled");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let consumer = within(ch.basic_consume(
        q.as_str().into(),
        "watch".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let ch2 = within(c.create_channel()).await.expect("channel");
    within(ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default()))
        .await
        .expect("delete");
    // lapin ends the consumer stream when the broker sends basic.cancel.
    use futures_lite::StreamExt;
    let mut consumer = consumer;
    let next = within(consumer.next()).await;
    assert!(
        next.is_none(),
        "consumer stream ended by basic.cancel, got {next:?}"
    );
}

/// A consumer acks deliveries of a durable queue that another client deleted meanwhile: the
/// acks settle nothing and the connection stays open, as RabbitMQ 3.10 does
/// (tests/fixtures/rabbitmq-3.10/queues.json, "acks_after_the_queue_is_deleted").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_after_the_queue_is_deleted_are_accepted() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = unique("acked-after-delete");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    for _ in 0..3 {
        publish_with(&ch, &q, "persistent", None, true).await;
    }
    let mut tags = Vec::new();
    for _ in 0..3 {
        let got = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
            .await
            .expect("get")
            .expect("a message");
        tags.push(got.delivery.delivery_tag);
    }
    let (_c2, ch2) = b.channel().await;
    within(ch2.queue_delete(q.as_str().into(), QueueDeleteOptions::default()))
        .await
        .expect("delete");
    within(ch.basic_ack(tags[0], BasicAckOptions::default()))
        .await
        .expect("ack one");
    within(ch.basic_ack(tags[2], BasicAckOptions { multiple: true }))
        .await
        .expect("ack the rest");
    // Still open: a round trip on the same channel answers.
    let again = within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare after the acks");
    assert_eq!(again.message_count(), 0);
    assert!(c.status().connected());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_if_unused() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("xdel");
    within(ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("q");
    within(ch.queue_bind(
        q.name().as_str().into(),
        x.as_str().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("bind");
    assert_amqp_err(
        within(ch.exchange_delete(
            x.as_str().into(),
            ExchangeDeleteOptions {
                if_unused: true,
                ..Default::default()
            },
        ))
        .await,
        406,
        &format!("PRECONDITION_FAILED - exchange '{x}' in vhost '/' in use"),
    );
}
