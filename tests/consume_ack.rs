//! Consumers, delivery tags, prefetch, acks, nacks, rejects, requeue and redelivery.

mod support;

use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use support::{assert_amqp_err, next_delivery, start, unique, within};

async fn declare(ch: &Channel) -> String {
    let q = unique("q");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    q
}

async fn publish_n(ch: &Channel, q: &str, n: usize) {
    for i in 0..n {
        within(ch.basic_publish(
            "".into(),
            q.into(),
            BasicPublishOptions::default(),
            i.to_string().as_bytes(),
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
}

fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_tags_from_one_and_server_consumer_tags() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 5).await;
    let mut c = within(ch.basic_consume(
        q.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    assert!(c.tag().as_str().starts_with("amq.ctag-"), "{}", c.tag());
    for i in 0..5u64 {
        let d = next_delivery(&mut c).await;
        assert_eq!(body(&d), i.to_string());
        assert_eq!(d.delivery_tag, i + 1);
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.expect("ack");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_across_consumers() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    let mut a = within(ch.basic_consume(
        q.as_str().into(),
        "a".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("a");
    let mut z = within(ch.basic_consume(
        q.as_str().into(),
        "z".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("z");
    publish_n(&ch, &q, 4).await;
    let got_a = [
        body(&next_delivery(&mut a).await),
        body(&next_delivery(&mut a).await),
    ];
    let got_z = [
        body(&next_delivery(&mut z).await),
        body(&next_delivery(&mut z).await),
    ];
    assert_eq!(got_a, ["0", "2"]);
    assert_eq!(got_z, ["1", "3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_limits_unacked_deliveries() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 10).await;
    within(ch.basic_qos(3, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut c = within(ch.basic_consume(
        q.as_str().into(),
        "p".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let first: Vec<Delivery> = vec![
        next_delivery(&mut c).await,
        next_delivery(&mut c).await,
        next_delivery(&mut c).await,
    ];
    // Three unacked: the queue must hold the other seven. Passive declare shows it.
    let ch2 = within(_c.create_channel()).await.expect("channel");
    let seen = within(ch2.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(seen.message_count(), 7);
    // Acking one (multiple) frees three slots.
    within(ch.basic_ack(first[2].delivery_tag, BasicAckOptions { multiple: true }))
        .await
        .expect("ack");
    for want in ["3", "4", "5"] {
        assert_eq!(body(&next_delivery(&mut c).await), want);
    }
    let seen = within(ch2.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(seen.message_count(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_and_nack_requeue_mark_redelivered_and_keep_order() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 3).await;
    let g = |no_ack| ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack });
    let m0 = within(g(false)).await.expect("get").expect("m0");
    assert_eq!(m0.message_count, 2);
    let m1 = within(g(false)).await.expect("get").expect("m1");
    within(ch.basic_reject(
        m1.delivery.delivery_tag,
        BasicRejectOptions { requeue: true },
    ))
    .await
    .expect("reject");
    within(ch.basic_nack(
        m0.delivery.delivery_tag,
        BasicNackOptions {
            requeue: true,
            multiple: false,
        },
    ))
    .await
    .expect("nack");
    // Both go back to their original places, ahead of "2".
    let again: Vec<(String, bool)> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            let m = within(g(true)).await.expect("get").expect("msg");
            v.push((body(&m.delivery), m.delivery.redelivered));
        }
        v
    };
    assert_eq!(
        again,
        vec![("0".into(), true), ("1".into(), true), ("2".into(), false)]
    );
    assert!(within(g(true)).await.expect("get").is_none(), "get-empty");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_without_requeue_drops() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 2).await;
    let m = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
        .await
        .expect("get")
        .expect("m");
    within(ch.basic_nack(
        m.delivery.delivery_tag,
        BasicNackOptions {
            requeue: false,
            multiple: false,
        },
    ))
    .await
    .expect("nack");
    let left = within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(left.message_count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_return_when_the_channel_closes() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 3).await;
    let mut cons = within(ch.basic_consume(
        q.as_str().into(),
        "x".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    for _ in 0..3 {
        next_delivery(&mut cons).await;
    }
    within(ch.close(200, "bye".into())).await.expect("close");
    let ch2 = within(c.create_channel()).await.expect("channel");
    let mut got = Vec::new();
    while let Some(m) = within(ch2.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
        .await
        .expect("get")
    {
        got.push((body(&m.delivery), m.delivery.redelivered));
    }
    assert_eq!(
        got,
        vec![("0".into(), true), ("1".into(), true), ("2".into(), true)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recover_requeues_unacked() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    publish_n(&ch, &q, 1).await;
    let m = within(ch.basic_get(q.as_str().into(), BasicGetOptions::default()))
        .await
        .expect("get")
        .expect("m");
    assert!(!m.delivery.redelivered);
    within(ch.basic_recover(BasicRecoverOptions { requeue: true }))
        .await
        .expect("recover");
    let m = within(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
        .await
        .expect("get")
        .expect("again");
    assert!(m.delivery.redelivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_consumer_tag_is_not_allowed() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    // Kept alive: lapin cancels a consumer when it is dropped.
    let _first = within(ch.basic_consume(
        q.as_str().into(),
        "dup".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("first");
    assert_amqp_err(
        within(ch.basic_consume(
            q.as_str().into(),
            "dup".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await,
        530,
        "NOT_ALLOWED - attempt to reuse consumer tag 'dup'",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exclusive_consumer_locks_out_others() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let q = declare(&ch).await;
    let _only = within(ch.basic_consume(
        q.as_str().into(),
        "only".into(),
        BasicConsumeOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("exclusive");
    let ch2 = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch2.basic_consume(
            q.as_str().into(),
            "other".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403,
        &format!("ACCESS_REFUSED - queue '{q}' in vhost '/' in exclusive use"),
    );
}

/// channel.flow active=true is accepted; active=false is 540 NOT_IMPLEMENTED, as RabbitMQ 3.x
/// answers (tests/fixtures/rabbitmq-3.10/compat.json, channel_flow_*).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flow_on_is_accepted_and_off_is_not_implemented() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = declare(&ch).await;
    within(ch.channel_flow(ChannelFlowOptions { active: true }))
        .await
        .expect("flow on");
    let mut c = within(ch.basic_consume(
        q.as_str().into(),
        "f".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    publish_n(&ch, &q, 1).await;
    assert_eq!(body(&next_delivery(&mut c).await), "0");
    let r = within(ch.channel_flow(ChannelFlowOptions { active: false })).await;
    support::assert_amqp_err(r, 540, "NOT_IMPLEMENTED - active=false");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_does_not_read_leaves_the_backlog_in_the_queue() {
    use lagomorph::protocol::method::{BasicConsume, QueueDeclare};
    use lagomorph::protocol::types::ShortStr;
    let b = start().await;
    let q = unique("slow");
    // A no-ack consumer that never reads its socket.
    let mut r = support::raw::Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.call(
        1,
        QueueDeclare {
            queue: ShortStr::try_from(q.as_str()).expect("name"),
            ..Default::default()
        }
        .into(),
    )
    .await;
    r.call(
        1,
        BasicConsume {
            queue: ShortStr::try_from(q.as_str()).expect("name"),
            no_ack: true,
            ..Default::default()
        }
        .into(),
    )
    .await;
    // 16 MiB published with confirms: when the last confirm is in, every message is routed.
    let (_c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirms");
    let body = vec![0u8; 4096];
    let mut pending = Vec::new();
    for _ in 0..4096 {
        pending.push(
            within(ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            ))
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        within(p).await.expect("confirm");
    }
    // Socket buffers, the session's output cap and the mailbox credit hold a few MiB at most;
    // the rest must still be ready in the queue, not buffered for the stalled client.
    let queue = b.queue(&q);
    let ready = queue.counts().ready;
    assert!(
        ready > 1024,
        "only {ready} of 4096 messages left in the queue"
    );
    drop(r);
}
