//! Publisher flow control: a publisher whose queue falls behind a consumer's connection is read
//! more slowly (RabbitMQ's credit flow; management shows the connection in state `flow`), and
//! a queue whose consumers are at their prefetch limit absorbs the publishers' peak instead;
//! and the queues' memory cap follows the process's resident memory.

mod support;

use lagomorph::protocol::method::{BasicConsume, Method};
use lagomorph::protocol::types::ShortStr;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};
use std::sync::atomic::Ordering;
use support::raw::Raw;
use support::{confirming, unique, within};

/// Publishes `n` messages of `size` bytes to `queue`, waiting for every confirm (in windows of
/// 1,000, so the publisher is never far ahead).
async fn publish_confirmed(ch: &Channel, queue: &str, n: usize, size: usize) {
    let body = vec![b'x'; size];
    let mut left = n;
    while left > 0 {
        let batch = left.min(1000);
        let mut confirms = Vec::with_capacity(batch);
        for _ in 0..batch {
            confirms.push(
                within(ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default(),
                ))
                .await
                .expect("publish"),
            );
        }
        for c in confirms {
            assert!(within(c).await.expect("confirm").is_ack());
        }
        left -= batch;
    }
}

/// A broker, a confirming channel and a fresh queue named after `prefix`.
async fn broker_with_queue(
    prefix: &str,
) -> (support::TestBroker, lapin::Connection, Channel, String) {
    let b = support::start().await;
    let q = unique(prefix);
    let (c, ch) = confirming(&b).await;
    within(ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default()))
        .await
        .expect("declare");
    (b, c, ch, q)
}

fn flow_pauses(b: &support::TestBroker) -> u64 {
    b.broker
        .connections()
        .iter()
        .map(|c| c.flow_pauses.load(Ordering::Relaxed))
        .sum()
}

#[tokio::test]
async fn a_publisher_is_slowed_while_a_consumer_connection_falls_behind() {
    let (b, _c, ch, q) = broker_with_queue("flow").await;
    // A no-ack consumer whose client never reads: deliveries pile up in its socket, then in
    // the broker's output for it, and the queue stops being able to hand it more.
    let mut stuck = Raw::connect(b.addr).await;
    stuck.open_channel(1).await;
    let consume: Method = BasicConsume {
        queue: ShortStr::try_from(q.as_str()).expect("name"),
        consumer_tag: ShortStr::from_static("stuck"),
        no_ack: true,
        ..Default::default()
    }
    .into();
    let ok = stuck.call(1, consume).await;
    assert!(matches!(ok, Method::BasicConsumeOk(_)), "{ok:?}");
    // 40 MB: more than the socket buffers and the broker's output can hold, so the queue
    // grows past half its memory window with the consumer held only by what is in transit.
    publish_confirmed(&ch, &q, 40_000, 1024).await;
    assert!(
        flow_pauses(&b) > 0,
        "the publisher was never paused while its queue fell behind"
    );
    let pub_conn = b
        .broker
        .connections()
        .into_iter()
        .find(|c| c.flow_pauses.load(Ordering::Relaxed) > 0)
        .expect("the paused connection");
    assert_eq!(
        pub_conn.consumers.load(Ordering::Relaxed),
        0,
        "the publisher, not the consumer, was paused"
    );
    drop(stuck);
}

#[tokio::test]
async fn a_queue_whose_consumers_are_at_their_prefetch_limit_absorbs_the_peak() {
    let (b, _c, ch, q) = broker_with_queue("absorb").await;
    let (_cc, cch) = b.channel().await;
    within(cch.basic_qos(10, BasicQosOptions::default()))
        .await
        .expect("qos");
    // A manual-ack consumer that never acks: it is at its prefetch limit, not behind.
    let _consumer = within(cch.basic_consume(
        q.as_str().into(),
        "slow".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    publish_confirmed(&ch, &q, 20_000, 16).await;
    assert_eq!(
        flow_pauses(&b),
        0,
        "a publisher was slowed by a prefetch-bound consumer"
    );
    let depth = within(ch.queue_declare(
        q.as_str().into(),
        lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive declare");
    assert_eq!(depth.message_count(), 20_000 - 10);
}

/// The queues' memory cap follows the process: with a budget smaller than what this test
/// process holds, the broker's budget monitor brings the cap down to its floor (an eighth of
/// the budget), a backlog published then stays mostly paged, and every message still comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queues_memory_cap_follows_the_process_and_a_backlog_pages_under_it() {
    let b = support::start_with(lagomorph::broker::BrokerOptions {
        queue_memory_budget: 4 << 20,
        ..Default::default()
    })
    .await;
    let token = tokio_util::sync::CancellationToken::new();
    tokio::spawn(lagomorph::server::budget_monitor(
        b.broker.clone(),
        token.clone(),
    ));
    let budget = b.broker.memory_budget();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while budget.cap() > budget.limit() / 8 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cap stayed at {} of {}",
            budget.cap(),
            budget.limit()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let q = unique("capped");
    let (_c, ch) = confirming(&b).await;
    within(ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default()))
        .await
        .expect("declare");
    // 1,000 x 4 KiB: about 4.4 MB at their charge, more than the whole budget.
    publish_confirmed(&ch, &q, 1000, 4096).await;
    let queue = b.queue(&q);
    let in_memory = queue.counts().in_memory;
    assert!(
        in_memory < 250,
        "{in_memory} of 1,000 messages in memory under a {} byte cap",
        budget.cap()
    );
    assert_eq!(support::drain(&ch, &q).await.len(), 1000);
    token.cancel();
}
