//! Publisher confirms: sequence numbers, coalesced multiple acks, durable confirms after flush.

mod support;

use lagomorph::protocol::frame::{ContentHeader, Frame};
use lagomorph::protocol::method::*;
use lagomorph::protocol::properties::{BasicProperties as BasicProps, Properties as Props};
use lagomorph::protocol::types::ShortStr;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;
use support::raw::Raw;
use support::{assert_amqp_err, next_delivery, start, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_is_confirmed_with_lapin() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("select");
    let q = unique("conf");
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
    let mut pending = Vec::new();
    for i in 0..200u32 {
        let props = BasicProperties::default().with_delivery_mode(if i % 2 == 0 { 2 } else { 1 });
        pending.push(
            within(ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &i.to_be_bytes(),
                props,
            ))
            .await
            .expect("publish"),
        );
    }
    for p in pending {
        assert!(within(p).await.expect("confirm").is_ack());
    }
    // Persistent messages were confirmed, so a flush covered them (a store write sequence is
    // taken per queue pass of a publisher's read batch, not per message).
    assert!(
        b.broker.commit().flushed() >= 1,
        "flushed {}",
        b.broker.commit().flushed()
    );
}

/// Sends `n` publishes in one write, then reads confirms until `n` is covered.
async fn raw_confirms(r: &mut Raw, q: &str, n: u64, persistent: bool) -> Vec<BasicAck> {
    let mut out = bytes::BytesMut::new();
    let props = Props::from(BasicProps {
        delivery_mode: Some(if persistent { 2 } else { 1 }),
        ..Default::default()
    });
    for _ in 0..n {
        lagomorph::protocol::frame::encode_method(
            1,
            &BasicPublish {
                routing_key: ShortStr::try_from(q).expect("name"),
                ..Default::default()
            }
            .into(),
            &mut out,
        );
        lagomorph::protocol::frame::encode_content(1, 60, &props, b"hello", 131072, &mut out);
    }
    r.send_bytes(&out).await;
    let mut acks = Vec::new();
    loop {
        match r.recv().await {
            Frame::Method {
                method: Method::BasicAck(a),
                ..
            } => {
                let done = a.delivery_tag == n;
                acks.push(a);
                if done {
                    return acks;
                }
            }
            f => panic!("unexpected {f:?}"),
        }
    }
}

/// A raw connection with channel 1 open in confirm mode.
async fn confirming(b: &support::TestBroker) -> Raw {
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(1, ConfirmSelect { nowait: false }.into()).await;
    assert!(matches!(
        r.recv().await,
        Frame::Method {
            method: Method::ConfirmSelectOk(_),
            ..
        }
    ));
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_are_coalesced_in_order() {
    let b = start().await;
    let mut r = confirming(&b).await;
    let q = unique("coalesce");
    r.send(
        1,
        QueueDeclare {
            queue: ShortStr::try_from(q.as_str()).expect("name"),
            durable: true,
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(matches!(
        r.recv().await,
        Frame::Method {
            method: Method::QueueDeclareOk(_),
            ..
        }
    ));
    for persistent in [false, true] {
        let acks = raw_confirms(&mut r, &q, 500, persistent).await;
        assert!(
            acks.len() < 500,
            "{} acks for 500 publishes: not coalesced",
            acks.len()
        );
        let mut last = 0;
        for a in &acks {
            assert!(a.delivery_tag > last, "acks in order");
            assert_eq!(
                a.multiple,
                a.delivery_tag - last > 1,
                "multiple exactly when covering several"
            );
            last = a.delivery_tag;
        }
        // The second round continues the sequence: reset by starting a fresh channel.
        r.send(1, ChannelClose::default().into()).await;
        assert!(matches!(
            r.recv().await,
            Frame::Method {
                method: Method::ChannelCloseOk(_),
                ..
            }
        ));
        r.open_channel(1).await;
        r.send(1, ConfirmSelect { nowait: true }.into()).await;
    }
    let _ = ContentHeader {
        class_id: 60,
        body_size: 0,
        properties: Props::default(),
    };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_tx_exclude_each_other() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    within(ch.tx_select()).await.expect("tx");
    assert_amqp_err(
        within(ch.confirm_select(ConfirmSelectOptions::default())).await,
        406,
        "PRECONDITION_FAILED - cannot switch from tx to confirm mode",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm");
    assert_amqp_err(
        within(ch.tx_select()).await,
        406,
        "PRECONDITION_FAILED - cannot switch from confirm to tx mode",
    );
}

/// Appends one basic.publish (method, header, body) on channel 1 to `out`.
fn encode_publish(out: &mut bytes::BytesMut, key: &str, mandatory: bool, body: &[u8]) {
    lagomorph::protocol::frame::encode_method(
        1,
        &BasicPublish {
            routing_key: ShortStr::try_from(key).expect("name"),
            mandatory,
            ..Default::default()
        }
        .into(),
        out,
    );
    let props = Props::from(BasicProps {
        delivery_mode: Some(2),
        ..Default::default()
    });
    lagomorph::protocol::frame::encode_content(1, 60, &props, body, 131072, out);
}

/// The publishes of one read are pushed together, but nothing can tell: in a single write of
/// 50 publishes, a passive queue.declare, a mandatory publish no queue takes, and 50 more
/// publishes, the declare counts the first 50, the return comes before the ack covering its
/// publish, every publish is acked in order, and the queue ends with all 100 in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_batch_of_publishes_is_answered_in_order() {
    let b = start().await;
    let mut r = confirming(&b).await;
    let q = unique("batch");
    let declare = |passive| QueueDeclare {
        queue: ShortStr::try_from(q.as_str()).expect("name"),
        durable: true,
        passive,
        ..Default::default()
    };
    r.send(1, declare(false).into()).await;
    assert!(matches!(
        r.recv().await,
        Frame::Method {
            method: Method::QueueDeclareOk(_),
            ..
        }
    ));
    let mut out = bytes::BytesMut::new();
    for i in 0..50u32 {
        encode_publish(&mut out, &q, false, &i.to_be_bytes());
    }
    lagomorph::protocol::frame::encode_method(1, &declare(true).into(), &mut out);
    encode_publish(&mut out, "no-such-queue", true, b"returned");
    for i in 50..100u32 {
        encode_publish(&mut out, &q, false, &i.to_be_bytes());
    }
    r.send_bytes(&out).await;
    let (mut acked, mut returned_at) = (0u64, None);
    let mut count = None;
    while acked < 101 {
        match r.recv().await {
            Frame::Method {
                method: Method::QueueDeclareOk(ok),
                ..
            } => count = Some(ok.message_count),
            Frame::Method {
                method: Method::BasicReturn(ret),
                ..
            } => {
                assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
                returned_at = Some(acked);
                // Its header and body.
                r.recv().await;
                r.recv().await;
            }
            Frame::Method {
                method: Method::BasicAck(a),
                ..
            } => {
                assert!(a.delivery_tag > acked, "acks in order");
                acked = a.delivery_tag;
            }
            f => panic!("unexpected {f:?}"),
        }
    }
    assert_eq!(count, Some(50), "the declare saw the publishes before it");
    let returned_at = returned_at.expect("the mandatory publish came back");
    assert!(
        returned_at < 51,
        "return before the ack of its publish (tag 51)"
    );
    for i in 0..100u32 {
        let (_, _, body) = r.get(1, &q).await.expect("message");
        assert_eq!(body, i.to_be_bytes(), "message {i} in order");
    }
}

/// Declares `q` (durable or not, with `args`) and binds it to fanout exchange `x`.
async fn bound(ch: &lapin::Channel, x: &str, q: &str, durable: bool, args: FieldTable) {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("declare");
    within(ch.queue_bind(
        q.into(),
        x.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("bind");
}

/// Acknowledges a consumer's next delivery.
async fn ack_next(c: &mut lapin::Consumer) {
    next_delivery(c)
        .await
        .ack(BasicAckOptions::default())
        .await
        .expect("ack");
}

/// RabbitMQ confirms a persistent message "when it is persisted to disk or when it is consumed
/// on every queue". With every flush held back (so no confirm can come from the disk), a
/// message acknowledged on one queue and taken by a no-ack consumer on the other is confirmed;
/// one that a third queue refused is nacked although its other copy was acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_consumed_on_every_queue_is_confirmed_before_any_flush() {
    let b = start().await;
    let (_pc, publ) = support::confirming(&b).await;
    let (_cc, cons) = b.channel().await;
    let (x, refusing) = (unique("early-x"), unique("early-refusing"));
    let (stored, plain, full) = (unique("stored"), unique("plain"), unique("full"));
    for name in [&x, &refusing] {
        within(cons.exchange_declare(
            name.as_str().into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("exchange");
    }
    // One durable queue per exchange: a persistent message stored in several durable queues
    // holds the flush itself (all or none), which this test holds already.
    bound(&cons, &x, &stored, true, FieldTable::default()).await;
    bound(&cons, &x, &plain, false, FieldTable::default()).await;
    bound(&cons, &refusing, &stored, true, FieldTable::default()).await;
    let limit = support::table(&[
        ("x-max-length", lapin::types::AMQPValue::LongInt(0)),
        (
            "x-overflow",
            lapin::types::AMQPValue::LongString("reject-publish".into()),
        ),
    ]);
    bound(&cons, &refusing, &full, false, limit).await;
    let mut manual = within(cons.basic_consume(
        stored.as_str().into(),
        "".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let mut auto = within(cons.basic_consume(
        plain.as_str().into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    let publish = |x: &str| {
        publ.basic_publish(
            x.into(),
            "".into(),
            BasicPublishOptions::default(),
            b"m",
            persistent.clone(),
        )
    };

    let hold = b.store.hold_flush();
    let flushed = b.broker.commit().flushed();
    let confirm = within(publish(&x)).await.expect("publish");
    ack_next(&mut manual).await;
    next_delivery(&mut auto).await;
    assert!(within(confirm).await.expect("confirm").is_ack());

    let confirm = within(publish(&refusing)).await.expect("publish");
    ack_next(&mut manual).await;
    assert!(within(confirm).await.expect("confirm").is_nack());
    // And the channel goes on: the next consumed message is confirmed as the first was.
    let confirm = within(publish(&x)).await.expect("publish");
    ack_next(&mut manual).await;
    next_delivery(&mut auto).await;
    assert!(within(confirm).await.expect("confirm").is_ack());
    assert_eq!(
        b.broker.commit().flushed(),
        flushed,
        "no flush happened while held"
    );
    drop(hold);
}
