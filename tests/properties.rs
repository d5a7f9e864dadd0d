//! Message properties end to end. The broker keeps a message's properties as the publisher
//! encoded them (as RabbitMQ keeps `properties_bin`): a consumer receives those bytes
//! unchanged, live and after a restart from the store, and a real client reads back every
//! property it sent.

mod support;

use bytes::{BufMut, BytesMut};
use futures_lite::StreamExt;
use lagomorph::broker::BrokerOptions;
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::method::*;
use lagomorph::protocol::properties::Properties;
use lagomorph::protocol::types::ShortStr;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use support::raw::Raw;
use support::{start, start_in, unique, within};

/// A property list no encoder of ours would write: a needless continuation word and a headers
/// table whose keys are not sorted; content-type, headers, delivery-mode 2 (persistent),
/// user-id "guest" (the login, so the publish is accepted).
const ODD_PROPERTIES: &[u8] = b"\xb0\x11\x00\x00\
    \x0atext/plain\
    \x00\x00\x00\x0f\x01zI\x00\x00\x00\x01\x01aS\x00\x00\x00\x01x\
    \x02\
    \x05guest";

/// basic.publish to the default exchange, then a content header carrying `props` as is.
fn publish_raw(queue: &str, props: &[u8], body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    frame::encode_method(
        1,
        &BasicPublish {
            routing_key: ShortStr::try_from(queue).expect("name"),
            ..Default::default()
        }
        .into(),
        &mut b,
    );
    b.put_u8(frame::FRAME_HEADER);
    b.put_u16(1);
    b.put_u32(u32::try_from(12 + props.len()).expect("small"));
    b.put_u16(60);
    b.put_u16(0);
    b.put_u64(body.len() as u64);
    b.put_slice(props);
    b.put_u8(frame::FRAME_END);
    frame::encode(
        &Frame::Body {
            channel: 1,
            payload: bytes::Bytes::copy_from_slice(body),
        },
        &mut b,
    );
    b
}

/// basic.get on channel 1: the property bytes of the message and its redelivered flag.
async fn get(r: &mut Raw, queue: &str) -> (Vec<u8>, bool) {
    r.send(
        1,
        BasicGet {
            queue: ShortStr::try_from(queue).expect("name"),
            ..Default::default()
        }
        .into(),
    )
    .await;
    let Frame::Method {
        method: Method::BasicGetOk(ok),
        ..
    } = r.recv().await
    else {
        panic!("expected basic.get-ok");
    };
    let Frame::Header { header, .. } = r.recv().await else {
        panic!("expected a content header");
    };
    let Frame::Body { payload, .. } = r.recv().await else {
        panic!("expected a body");
    };
    assert_eq!(&payload[..], b"persistent");
    (header.properties.as_bytes().to_vec(), ok.redelivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_bytes_survive_delivery_and_restart() {
    let tmp = tempfile::tempdir().expect("tmp");
    let q = "props-durable";
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let mut r = Raw::connect(b.addr).await;
        r.open_channel(1).await;
        assert!(matches!(
            r.call(1, ConfirmSelect { nowait: false }.into()).await,
            Method::ConfirmSelectOk(_)
        ));
        assert!(matches!(
            r.call(
                1,
                QueueDeclare {
                    queue: ShortStr::from_static(q),
                    durable: true,
                    ..Default::default()
                }
                .into()
            )
            .await,
            Method::QueueDeclareOk(_)
        ));
        r.send_bytes(&publish_raw(q, ODD_PROPERTIES, b"persistent"))
            .await;
        // Confirmed: on disk (persistent message, durable queue).
        assert!(matches!(
            r.recv().await,
            Frame::Method {
                method: Method::BasicAck(_),
                ..
            }
        ));
        // Delivered (not acked), straight from memory.
        assert_eq!(get(&mut r, q).await, (ODD_PROPERTIES.to_vec(), false));
        drop(r);
        b.stop().await;
    }
    // After a restart the message comes from the store, redelivered. Its delivery came back
    // when the connection closed, so it carries x-delivery-count 1 (its headers re-encoded,
    // sorted by key as RabbitMQ leaves them); every other property is as sent.
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    let (bytes, redelivered) = get(&mut r, q).await;
    assert!(redelivered);
    let got = Properties::from_bytes(bytes.into())
        .expect("valid")
        .decode();
    let mut want = Properties::from_bytes(bytes::Bytes::from_static(ODD_PROPERTIES))
        .expect("valid")
        .decode();
    let mut headers = want.headers.take().unwrap_or_default();
    headers.insert(
        ShortStr::from_static("x-delivery-count"),
        lagomorph::protocol::types::FieldValue::I64(1),
    );
    headers.0.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    want.headers = Some(headers);
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_reads_back_every_property_it_sent() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("props");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let mut nested = FieldTable::default();
    nested.insert(ShortString::from("depth"), AMQPValue::LongInt(2));
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("x-trace"),
        AMQPValue::LongString("4bf92f35".into()),
    );
    headers.insert(ShortString::from("nested"), AMQPValue::FieldTable(nested));
    headers.insert(ShortString::from("flag"), AMQPValue::Boolean(true));
    let sent = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("gzip".into())
        .with_headers(headers)
        .with_delivery_mode(2)
        .with_priority(5)
        .with_correlation_id("c0ffee-0123-4567-89ab-cdef01234567".into())
        .with_reply_to("amq.gen-reply".into())
        .with_message_id("m-1".into())
        .with_timestamp(1_700_000_000)
        .with_type("order.created".into())
        .with_user_id("guest".into())
        .with_app_id("props-test".into());
    within(ch.basic_publish(
        "".into(),
        q.as_str().into(),
        BasicPublishOptions::default(),
        b"{}",
        sent.clone(),
    ))
    .await
    .expect("publish");
    let mut consumer = within(ch.basic_consume(
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
    let d = within(consumer.next())
        .await
        .expect("open")
        .expect("delivery");
    assert_eq!(&d.data[..], b"{}");
    assert_eq!(d.properties, sent);
}
