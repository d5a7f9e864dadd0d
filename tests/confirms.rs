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
use support::{assert_amqp_err, start, unique, within};

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
    // Persistent messages were confirmed, so a flush covered them.
    assert!(
        b.broker.commit().flushed() >= 100,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirms_are_coalesced_in_order() {
    let b = start().await;
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
