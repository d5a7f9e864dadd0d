//! Transactions: publishes and acks are held until commit; rollback drops them.

mod support;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use support::{assert_amqp_err, start, unique, within};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_wait_for_commit_and_rollback_drops_them() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("tx");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    within(ch.tx_select()).await.expect("select");
    let publish = || {
        ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        )
    };
    within(publish()).await.expect("publish");
    within(publish()).await.expect("publish");
    assert_eq!(count(&ch, &q).await, 0, "held until commit");
    within(ch.tx_commit()).await.expect("commit");
    assert_eq!(count(&ch, &q).await, 2);
    within(publish()).await.expect("publish");
    within(ch.tx_rollback()).await.expect("rollback");
    assert_eq!(count(&ch, &q).await, 2, "rolled back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_commit_and_rollback_keeps_them_unacked() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = unique("txack");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    for _ in 0..2 {
        within(ch.basic_publish(
            "".into(),
            q.as_str().into(),
            BasicPublishOptions::default(),
            b"m",
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
    within(ch.tx_select()).await.expect("select");
    let m1 = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
        .await
        .expect("get")
        .expect("m1");
    let m2 = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
        .await
        .expect("get")
        .expect("m2");
    within(ch.basic_ack(m1.delivery.delivery_tag, BasicAckOptions::default()))
        .await
        .expect("ack");
    within(ch.tx_rollback()).await.expect("rollback");
    within(ch.basic_ack(m2.delivery.delivery_tag, BasicAckOptions { multiple: true }))
        .await
        .expect("ack both");
    within(ch.tx_commit()).await.expect("commit");
    within(ch.close(200, "bye".into())).await.expect("close");
    // Had the rollback lost m1's delivery, closing would have requeued it.
    let ch2 = within(c.create_channel()).await.expect("channel");
    assert_eq!(count(&ch2, &q).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_without_select_is_precondition_failed() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    assert_amqp_err(
        within(ch.tx_commit()).await,
        406,
        "PRECONDITION_FAILED - channel is not transactional",
    );
}
