//! Behaviours client libraries rely on, each as RabbitMQ 3.10 answers it (recorded by
//! `interop/record/compat.py` in `tests/fixtures/rabbitmq-3.10/compat.json`; the case names
//! there are given with each test). Raw frames over a real socket where no client would send
//! the input; lapin where one would.

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use lagomorph::protocol::frame::{self, ContentHeader, Frame};
use lagomorph::protocol::method::*;
use lagomorph::protocol::types::ShortStr;
use lagomorph::session::{CLOSE_TIMEOUT, SILENT_CLOSE_DELAY};
use lapin::types::FieldTable;
use std::time::{Duration, Instant};
use support::raw::{Event, Raw};
use support::{assert_amqp_err, start, unique, within};

fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).expect("short string")
}

/// How long a test takes "nothing arrived" to mean the broker is waiting, not done.
const QUIET: Duration = Duration::from_millis(500);
/// Slack on top of a broker timeout before a test gives up.
const SLACK: Duration = Duration::from_secs(3);

// ---- unbind of missing things ----------------------------------------------------------------

/// compat.json: queue_unbind_missing_queue, queue_unbind_missing_exchange,
/// queue_unbind_missing_both, queue_unbind_not_bound, queue_unbind_after_queue_deleted,
/// exchange_unbind_missing_destination, exchange_unbind_missing_source, exchange_unbind_not_bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbinding_what_does_not_exist_is_unbind_ok() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let (q, x, missing) = (unique("q"), unique("x"), unique("missing"));
    let args = FieldTable::default;
    ch.queue_declare(q.as_str().into(), Default::default(), args())
        .await
        .expect("queue");
    ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Direct,
        Default::default(),
        args(),
    )
    .await
    .expect("exchange");
    let unbind = |queue: &str, exchange: &str| {
        ch.queue_unbind(queue.into(), exchange.into(), "k".into(), args())
    };
    within(unbind(&missing, &x)).await.expect("missing queue");
    within(unbind(&q, &missing))
        .await
        .expect("missing exchange");
    within(unbind(&missing, &missing))
        .await
        .expect("both missing");
    within(unbind(&q, &x)).await.expect("not bound");
    let xunbind = |dest: &str, source: &str| {
        ch.exchange_unbind(
            dest.into(),
            source.into(),
            "k".into(),
            Default::default(),
            args(),
        )
    };
    within(xunbind(&missing, &x))
        .await
        .expect("missing destination");
    within(xunbind(&x, &missing)).await.expect("missing source");
    within(xunbind(&x, "amq.direct")).await.expect("not bound");
    // A binding whose queue was deleted since: a client's cleanup after the queue is gone.
    ch.queue_bind(
        q.as_str().into(),
        x.as_str().into(),
        "k".into(),
        Default::default(),
        args(),
    )
    .await
    .expect("bind");
    ch.queue_delete(q.as_str().into(), Default::default())
        .await
        .expect("delete");
    within(unbind(&q, &x)).await.expect("queue deleted");
    // The channel is still open and usable.
    ch.queue_declare(q.as_str().into(), Default::default(), args())
        .await
        .expect("channel still open");
}

/// compat.json: queue_unbind_default_exchange, queue_bind_missing_queue_still_not_found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbind_from_the_default_exchange_and_bind_of_missing_things_still_fail() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("q");
    ch.queue_declare(q.as_str().into(), Default::default(), FieldTable::default())
        .await
        .expect("queue");
    let r = ch
        .queue_unbind(
            q.as_str().into(),
            "".into(),
            q.as_str().into(),
            FieldTable::default(),
        )
        .await;
    assert_amqp_err(
        r,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    let (_c, ch) = b.channel().await;
    let missing = unique("missing");
    let r = ch
        .queue_bind(
            missing.as_str().into(),
            "amq.direct".into(),
            "k".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await;
    assert_amqp_err(
        r,
        404,
        &format!("NOT_FOUND - no queue '{missing}' in vhost '/'"),
    );
}

// ---- connection.close ------------------------------------------------------------------------

/// basic.publish of `body` to the default exchange on channel 1, with its content.
fn publish_bytes(key: &str, body: &[u8], out: &mut BytesMut) {
    let m: Method = BasicPublish {
        routing_key: short(key),
        ..Default::default()
    }
    .into();
    frame::encode_method(1, &m, out);
    frame::encode_content(1, 60, &Default::default(), body, 131_072, out);
}

/// compat.json: client_close_keeps_reading (RabbitMQ holds the socket 30 s, or the heartbeat
/// interval if shorter; we hold it [`CLOSE_TIMEOUT`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_close_ok_the_broker_reads_on_until_the_client_closes() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    // connection.close with publishes queued behind it in the same write, as a client that
    // closes while another task still publishes.
    let mut out = BytesMut::new();
    let close: Method = ConnectionClose {
        reply_code: 200,
        reply_text: short("bye"),
        class_id: 0,
        method_id: 0,
    }
    .into();
    frame::encode_method(0, &close, &mut out);
    for _ in 0..50 {
        publish_bytes("late", b"late", &mut out);
    }
    r.send_bytes(&out).await;
    let got = r.next_event(Duration::from_secs(5)).await;
    assert!(
        matches!(
            got,
            Event::Frame(Frame::Method {
                channel: 0,
                method: Method::ConnectionCloseOk(_)
            })
        ),
        "{got:?}"
    );
    let closed_ok_at = Instant::now();
    // The socket stays open and the broker keeps reading what the client still sends.
    let mut more = BytesMut::new();
    for _ in 0..200 {
        publish_bytes("later", &[b'x'; 512], &mut more);
    }
    r.send_bytes(&more).await;
    let got = r.next_event(QUIET).await;
    assert!(matches!(got, Event::Silent), "socket closed early: {got:?}");
    // Then, the client never closing, the broker closes it cleanly (EOF, not a reset: every
    // byte sent was read).
    let got = r.next_event(CLOSE_TIMEOUT + SLACK).await;
    assert!(matches!(got, Event::Closed), "{got:?}");
    assert!(closed_ok_at.elapsed() >= CLOSE_TIMEOUT - Duration::from_millis(100));
    // Nothing published after the close reached a queue, and the broker forgot the connection.
    assert!(b.broker.connections().is_empty());
}

/// A connection that the broker has just closed (a second channel.open on channel 1: 504).
async fn closed_by_the_broker(b: &support::TestBroker) -> Raw {
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(1, ChannelOpen::default().into()).await;
    match r.recv().await {
        Frame::Method {
            channel: 0,
            method: Method::ConnectionClose(c),
        } => assert_eq!(c.reply_code, 504),
        f => panic!("expected connection.close, got {f:?}"),
    }
    r
}

/// compat.json: server_close_ignores_all_but_close_ok.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_brokers_close_only_close_ok_counts() {
    let b = start().await;
    let mut r = closed_by_the_broker(&b).await;
    let mut out = BytesMut::new();
    frame::encode_method(2, &ChannelOpen::default().into(), &mut out);
    let declare: Method = QueueDeclare {
        queue: short("q"),
        ..Default::default()
    }
    .into();
    frame::encode_method(1, &declare, &mut out);
    publish_bytes("k", b"x", &mut out);
    frame::encode_heartbeat(&mut out);
    frame::encode_method(1, &ChannelFlow { active: true }.into(), &mut out);
    r.send_bytes(&out).await;
    let got = r.next_event(QUIET).await;
    assert!(matches!(got, Event::Silent), "{got:?}");
    r.send(0, ConnectionCloseOk.into()).await;
    let got = r.next_event(SLACK).await;
    assert!(matches!(got, Event::Closed), "{got:?}");
}

/// compat.json: server_close_then_client_close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_close_crossing_the_brokers_gets_close_ok_and_the_socket_stays_open() {
    let b = start().await;
    let mut r = closed_by_the_broker(&b).await;
    r.send(
        0,
        ConnectionClose {
            reply_code: 200,
            reply_text: short("bye"),
            class_id: 0,
            method_id: 0,
        }
        .into(),
    )
    .await;
    let got = r.next_event(SLACK).await;
    assert!(
        matches!(
            got,
            Event::Frame(Frame::Method {
                method: Method::ConnectionCloseOk(_),
                ..
            })
        ),
        "{got:?}"
    );
    let got = r.next_event(QUIET).await;
    assert!(matches!(got, Event::Silent), "{got:?}");
    let got = r.next_event(CLOSE_TIMEOUT + SLACK).await;
    assert!(matches!(got, Event::Closed), "{got:?}");
}

// ---- channel.flow, the default exchange, frame_max ---------------------------------------------

/// compat.json: channel_flow_active_false, channel_flow_active_true.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_flow_false_is_not_implemented() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    let got = r.call(1, ChannelFlow { active: true }.into()).await;
    assert!(matches!(
        got,
        Method::ChannelFlowOk(ChannelFlowOk { active: true })
    ));
    r.send(1, ChannelFlow { active: false }.into()).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (540, "NOT_IMPLEMENTED - active=false", 20, 20)
    );
}

/// compat.json: passive_declare_of_default_exchange, declare_of_default_exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_the_default_exchange_is_access_refused() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    for passive in [true, false] {
        r.send(
            1,
            ExchangeDeclare {
                exchange: ShortStr::EMPTY,
                kind: short("direct"),
                passive,
                ..Default::default()
            }
            .into(),
        )
        .await;
        let got = r.recv().await;
        let Frame::Method {
            method: Method::ChannelClose(c),
            ..
        } = got
        else {
            panic!("expected channel.close, got {got:?}");
        };
        assert_eq!(
            (c.reply_code, c.reply_text.as_str(), c.class_id, c.method_id),
            (
                403,
                "ACCESS_REFUSED - operation not permitted on the default exchange",
                40,
                10
            )
        );
        r.send(1, ChannelCloseOk.into()).await;
        r.open_channel(1).await;
    }
}

/// A body frame of `n` bytes of payload on channel 1.
fn body_frame(n: usize) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u8(frame::FRAME_BODY);
    b.put_u16(1);
    b.put_u32(u32::try_from(n).expect("size"));
    b.put_slice(&vec![b'x'; n]);
    b.put_u8(frame::FRAME_END);
    b
}

/// basic.publish to `key` and a content header announcing `size` bytes, on channel 1.
fn publish_and_header(key: &str, size: u64) -> BytesMut {
    let mut out = BytesMut::new();
    let m: Method = BasicPublish {
        routing_key: short(key),
        ..Default::default()
    }
    .into();
    frame::encode_method(1, &m, &mut out);
    frame::encode(
        &Frame::Header {
            channel: 1,
            header: ContentHeader {
                class_id: 60,
                body_size: size,
                properties: Default::default(),
            },
        },
        &mut out,
    );
    out
}

/// compat.json: frame_max_payload_equal_to_frame_max, frame_max_payload_over_frame_max.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_of_frame_max_bytes_is_accepted_and_one_more_is_a_frame_error() {
    let b = start().await;
    let mut r = Raw::connect_tuned(b.addr, 2047, 4096, 0).await;
    r.open_channel(1).await;
    let q = unique("q");
    r.call(
        1,
        QueueDeclare {
            queue: short(&q),
            ..Default::default()
        }
        .into(),
    )
    .await;
    let mut out = publish_and_header(&q, 4096);
    out.extend_from_slice(&body_frame(4096));
    r.send_bytes(&out).await;
    let got = r
        .call(
            1,
            QueueDeclare {
                queue: short(&q),
                passive: true,
                ..Default::default()
            }
            .into(),
        )
        .await;
    assert!(
        matches!(got, Method::QueueDeclareOk(ref ok) if ok.message_count == 1),
        "{got:?}"
    );
    let mut out = publish_and_header(&q, 4097);
    out.extend_from_slice(&body_frame(4097));
    r.send_bytes(&out).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (
            501,
            "FRAME_ERROR - type 3, all octets = <<>>: {frame_too_large,4097,4088}",
            0,
            0
        )
    );
}

// ---- channel 0 ---------------------------------------------------------------------------------

/// compat.json: basic_publish_on_channel_0, channel_open_on_channel_0, body_on_channel_0,
/// content_header_on_channel_0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_and_content_on_channel_0_are_channel_and_frame_errors() {
    let b = start().await;
    let running = "CHANNEL_ERROR - unexpected method in connection state running";
    let cases: [(Method, u16, u16); 3] = [
        (BasicPublish::default().into(), 60, 40),
        (ChannelOpen::default().into(), 20, 10),
        (QueueDeclare::default().into(), 50, 10),
    ];
    for (m, class, method) in cases {
        let mut r = Raw::connect(b.addr).await;
        r.send(0, m).await;
        let got = r.expect_connection_close().await;
        assert_eq!(got, (504, running.to_string(), class, method));
    }
    let mut r = Raw::connect(b.addr).await;
    r.send_bytes(&[3, 0, 0, 0, 0, 0, 1, b'x', 0xCE]).await;
    let got = r.expect_connection_close().await;
    assert_eq!(
        got,
        (
            505,
            "UNEXPECTED_FRAME - type 3, all octets = <<\"x\">>".to_string(),
            0,
            0
        )
    );
    let mut r = Raw::connect(b.addr).await;
    r.send_bytes(
        b"\x02\x00\x00\x00\x00\x00\x0e\x00\x3c\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\xce",
    )
    .await;
    let got = r.expect_connection_close().await;
    assert_eq!(
        got,
        (
            505,
            "UNEXPECTED_FRAME - type 2, all octets = <<0,60,0,0,0,0,0,0,0,0,0,1,0,0>>".to_string(),
            0,
            0
        )
    );
}

// ---- tune-ok -----------------------------------------------------------------------------------

/// compat.json: tune_ok_frame_max_0, tune_ok_frame_max_above_offer,
/// tune_ok_frame_max_below_minimum, tune_ok_channel_max_0, tune_ok_channel_max_above_offer:
/// RabbitMQ sends nothing and closes the socket 3 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_ok_beyond_the_offer_closes_the_socket_silently() {
    let b = start().await;
    let cases: [(u16, u32); 5] = [
        (2047, 0),
        (2047, 131_073),
        (2047, 1024),
        (0, 131_072),
        (2048, 131_072),
    ];
    let tasks: Vec<_> = cases
        .into_iter()
        .map(|(channel_max, frame_max)| {
            let addr = b.addr;
            tokio::spawn(async move {
                let (mut r, tune) = Raw::until_tune(addr).await;
                assert_eq!((tune.channel_max, tune.frame_max), (2047, 131_072));
                let sent = Instant::now();
                r.tune_ok_and_open(channel_max, frame_max, 0).await;
                let got = r.next_event(SILENT_CLOSE_DELAY + SLACK).await;
                assert!(
                    matches!(got, Event::Closed),
                    "channel_max {channel_max}, frame_max {frame_max}: {got:?}"
                );
                assert!(sent.elapsed() >= SILENT_CLOSE_DELAY - Duration::from_millis(100));
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("case");
    }
    // Values within the offer are fine.
    let mut r = Raw::connect_tuned(b.addr, 10, 8192, 0).await;
    r.open_channel(10).await;
}

// ---- content frames ----------------------------------------------------------------------------

async fn content_error(b: &support::TestBroker, bytes: &[u8]) -> (u16, String, u16, u16) {
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send_bytes(bytes).await;
    r.expect_connection_close().await
}

/// compat.json: method_instead_of_content_header, method_instead_of_content_body,
/// header_of_another_class, body_without_publish, header_without_publish,
/// body_on_unopened_channel, header_on_unopened_channel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_frame_errors_name_the_publish_as_rabbitmq_does() {
    let b = start().await;
    let mut declare = BytesMut::new();
    frame::encode_method(1, &QueueDeclare::default().into(), &mut declare);
    let header_text = "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead";
    let body_text = "UNEXPECTED_FRAME - expected content body, got non content body frame instead";
    let method_text = "UNEXPECTED_FRAME - expected method frame, got non method frame instead";

    let mut publish_only = BytesMut::new();
    frame::encode_method(
        1,
        &BasicPublish {
            routing_key: short("k"),
            ..Default::default()
        }
        .into(),
        &mut publish_only,
    );
    let mut bytes = publish_only.clone();
    bytes.extend_from_slice(&declare);
    assert_eq!(
        content_error(&b, &bytes).await,
        (505, header_text.to_string(), 60, 40)
    );

    let mut bytes = publish_and_header("k", 10);
    bytes.extend_from_slice(&declare);
    assert_eq!(
        content_error(&b, &bytes).await,
        (505, body_text.to_string(), 60, 40)
    );

    let mut bytes = publish_only.clone();
    bytes.extend_from_slice(
        b"\x02\x00\x01\x00\x00\x00\x0e\x00\x32\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\xce",
    );
    assert_eq!(
        content_error(&b, &bytes).await,
        (
            505,
            "UNEXPECTED_FRAME - expected content header for class 60, got one for class 50 instead"
                .to_string(),
            60,
            40
        )
    );

    let body = Frame::Body {
        channel: 1,
        payload: Bytes::from_static(b"x"),
    };
    let mut bytes = BytesMut::new();
    frame::encode(&body, &mut bytes);
    assert_eq!(
        content_error(&b, &bytes).await,
        (505, method_text.to_string(), 0, 0)
    );
    let header = publish_and_header("k", 1).split_off(publish_only.len());
    assert_eq!(
        content_error(&b, &header).await,
        (505, method_text.to_string(), 0, 0)
    );
    // On a channel that was never opened: 505 too, not 504.
    let mut bytes = BytesMut::new();
    frame::encode(
        &Frame::Body {
            channel: 5,
            payload: Bytes::from_static(b"x"),
        },
        &mut bytes,
    );
    assert_eq!(
        content_error(&b, &bytes).await,
        (505, method_text.to_string(), 0, 0)
    );
}
