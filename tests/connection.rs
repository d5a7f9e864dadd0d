//! Connection handshake, limits, heartbeats and connection-level errors.

mod support;

use lagomorph::protocol::frame::{Frame, PROTOCOL_HEADER};
use lagomorph::protocol::method::*;
use lagomorph::protocol::types::{LongStr, ShortStr};
use support::raw::Raw;
use support::{amqp_error, start, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_connects_and_closes() {
    let b = start().await;
    let conn = within(b.connect()).await;
    let ch = within(conn.create_channel()).await.expect("channel");
    within(ch.close(200, "bye".into()))
        .await
        .expect("channel close");
    within(conn.close(200, "bye".into())).await.expect("close");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_properties_announce_capabilities() {
    let b = start().await;
    let mut r = Raw::connect_bare(b.addr).await;
    r.send_bytes(PROTOCOL_HEADER).await;
    let Frame::Method {
        method: Method::ConnectionStart(s),
        ..
    } = r.recv().await
    else {
        panic!("expected connection.start")
    };
    assert_eq!((s.version_major, s.version_minor), (0, 9));
    // RabbitMQ 3.10's order (tests/fixtures/rabbitmq-3.10/alarms.json, mechanisms_default_config).
    assert_eq!(s.mechanisms.to_str(), Some("AMQPLAIN PLAIN"));
    assert_eq!(s.locales.to_str(), Some("en_US"));
    assert_eq!(
        s.server_properties.get("product").and_then(|v| v.as_str()),
        Some("Lagomorph")
    );
    let Some(lagomorph::protocol::types::FieldValue::Table(caps)) =
        s.server_properties.get("capabilities")
    else {
        panic!("no capabilities")
    };
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        assert_eq!(caps.get(cap).and_then(|v| v.as_bool()), Some(true), "{cap}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tune_offers_limits_and_amqplain_works() {
    let b = start().await;
    let mut r = Raw::connect_bare(b.addr).await;
    r.send_bytes(PROTOCOL_HEADER).await;
    r.recv().await;
    // AMQPLAIN: a field table without its length prefix.
    let mut t = bytes::BytesMut::new();
    lagomorph::protocol::types::encode_table(
        &lagomorph::protocol::types::FieldTable(vec![
            (
                ShortStr::from_static("LOGIN"),
                lagomorph::protocol::types::FieldValue::LongStr(LongStr::from("guest")),
            ),
            (
                ShortStr::from_static("PASSWORD"),
                lagomorph::protocol::types::FieldValue::LongStr(LongStr::from("guest")),
            ),
        ]),
        &mut t,
    );
    r.send(
        0,
        ConnectionStartOk {
            mechanism: ShortStr::from_static("AMQPLAIN"),
            response: LongStr::from(t[4..].to_vec()),
            locale: ShortStr::from_static("en_US"),
            ..Default::default()
        }
        .into(),
    )
    .await;
    let Frame::Method {
        method: Method::ConnectionTune(t),
        ..
    } = r.recv().await
    else {
        panic!("expected tune")
    };
    assert_eq!(
        (t.channel_max, t.frame_max, t.heartbeat),
        (2047, 131072, 60)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_login_is_access_refused() {
    let b = start().await;
    let uri = format!("amqp://guest:wrong@{}/%2f", b.addr);
    let e = within(lapin::Connection::connect(
        &uri,
        lapin::ConnectionProperties::default(),
    ))
    .await
    .expect_err("login must fail");
    assert_eq!(
        amqp_error(&e),
        Some((403, "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_vhost_is_not_allowed() {
    let b = start().await;
    let uri = format!("amqp://guest:guest@{}/nope", b.addr);
    let e = within(lapin::Connection::connect(
        &uri,
        lapin::ConnectionProperties::default(),
    ))
    .await
    .expect_err("open must fail");
    assert_eq!(
        amqp_error(&e),
        Some((530, "NOT_ALLOWED - vhost nope not found".into()))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_protocol_header_gets_ours_back() {
    let b = start().await;
    let mut r = Raw::connect_bare(b.addr).await;
    r.send_bytes(b"AMQP\x01\x01\x00\x0a").await;
    let mut got = [0u8; 8];
    use tokio::io::AsyncReadExt;
    within(r.stream.read_exact(&mut got))
        .await
        .expect("header back");
    assert_eq!(&got, PROTOCOL_HEADER);
    let mut rest = Vec::new();
    let n = within(r.stream.read_to_end(&mut rest)).await.expect("eof");
    assert_eq!(n, 0, "socket closed after the header");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_above_channel_max_is_not_allowed() {
    let b = start().await;
    let mut r = Raw::connect_tuned(b.addr, 10, 131072, 0).await;
    r.send(11, ChannelOpen::default().into()).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(code, 530);
    assert_eq!(
        text,
        "NOT_ALLOWED - channel number 11 exceeds the negotiated channel_max 10"
    );
    assert_eq!((class, method), (20, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_an_open_channel_is_a_channel_error() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(1, ChannelOpen::default().into()).await;
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (504, "CHANNEL_ERROR - second 'channel.open' seen")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_on_unopened_channel_is_a_channel_error() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.send(
        3,
        BasicQos {
            prefetch_count: 1,
            ..Default::default()
        }
        .into(),
    )
    .await;
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (504, "CHANNEL_ERROR - expected 'channel.open'")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_frame_max_is_a_frame_error() {
    let b = start().await;
    let mut r = Raw::connect_tuned(b.addr, 2047, 4096, 0).await;
    r.open_channel(1).await;
    r.send_frame(&Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from(vec![0u8; 10_000]),
    })
    .await;
    let (code, _, _, _) = r.expect_connection_close().await;
    assert_eq!(code, 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frame_end_is_a_frame_error() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    // A heartbeat frame with a wrong end octet.
    r.send_bytes(&[8, 0, 0, 0, 0, 0, 0, 0x00]).await;
    let (code, _, _, _) = r.expect_connection_close().await;
    assert_eq!(code, 501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_instead_of_content_header_is_unexpected_frame() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(
        1,
        BasicPublish {
            routing_key: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    )
    .await;
    r.send(1, BasicQos::default().into()).await;
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(code, 505);
    assert_eq!(
        text,
        "UNEXPECTED_FRAME - expected content header for class 60, got non content header frame instead"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_without_header_is_unexpected_frame() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send_frame(&Frame::Body {
        channel: 1,
        payload: bytes::Bytes::from_static(b"x"),
    })
    .await;
    let (code, _, _, _) = r.expect_connection_close().await;
    assert_eq!(code, 505);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_sends_heartbeats_and_drops_silent_peers() {
    let b = start().await;
    let mut r = Raw::connect_tuned(b.addr, 2047, 131072, 1).await;
    // With a 1 s heartbeat the broker speaks within a second and gives up on us after two.
    let started = std::time::Instant::now();
    let mut saw_heartbeat = false;
    let mut buf = bytes::BytesMut::new();
    use tokio::io::AsyncReadExt;
    loop {
        let n = within(r.stream.read_buf(&mut buf)).await.expect("read");
        if n == 0 {
            break;
        }
        while let Some(f) = lagomorph::protocol::frame::decode(&mut buf, 131072).expect("frame") {
            saw_heartbeat |= matches!(f, Frame::Heartbeat);
        }
    }
    assert!(saw_heartbeat, "a heartbeat came before the close");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1500),
        "not dropped before two intervals"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_sends_connection_forced() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    let stopper = tokio::spawn(b.stop());
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(code, 320);
    assert_eq!(
        text,
        "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
    );
    within(stopper).await.expect("stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefetch_size_is_not_implemented() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(
        1,
        BasicQos {
            prefetch_size: 10,
            prefetch_count: 0,
            global: false,
        }
        .into(),
    )
    .await;
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (540, "NOT_IMPLEMENTED - prefetch_size!=0 (10)")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_and_unblocks_clients_that_asked() {
    use lagomorph::protocol::types::{FieldTable, FieldValue};
    let b = start().await;
    let mut r = Raw::connect_bare(b.addr).await;
    r.send_bytes(PROTOCOL_HEADER).await;
    r.recv().await;
    let caps = FieldTable(vec![(
        ShortStr::from_static("connection.blocked"),
        FieldValue::Bool(true),
    )]);
    r.send(
        0,
        ConnectionStartOk {
            client_properties: FieldTable(vec![(
                ShortStr::from_static("capabilities"),
                FieldValue::Table(caps),
            )]),
            mechanism: ShortStr::from_static("PLAIN"),
            response: LongStr::from("\0guest\0guest"),
            locale: ShortStr::from_static("en_US"),
        }
        .into(),
    )
    .await;
    r.recv().await;
    r.send(
        0,
        ConnectionTuneOk {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 0,
        }
        .into(),
    )
    .await;
    r.send(
        0,
        ConnectionOpen {
            virtual_host: ShortStr::from_static("/"),
            ..Default::default()
        }
        .into(),
    )
    .await;
    assert!(matches!(
        r.recv().await,
        Frame::Method {
            method: Method::ConnectionOpenOk(_),
            ..
        }
    ));
    assert!(b.broker.set_memory_alarm(true));
    // As RabbitMQ 3.10, connection.blocked comes when the client publishes under the alarm
    // (tests/fixtures/rabbitmq-3.10/alarms.json), not to idle connections.
    r.open_channel(1).await;
    r.publish(1, "", "nowhere", b"x", false).await;
    match r.recv().await {
        Frame::Method {
            method: Method::ConnectionBlocked(m),
            ..
        } => assert_eq!(m.reason.as_str(), "low on memory"),
        f => panic!("expected connection.blocked, got {f:?}"),
    }
    assert!(b.broker.set_memory_alarm(false));
    assert!(matches!(
        r.recv().await,
        Frame::Method {
            method: Method::ConnectionUnblocked(_),
            ..
        }
    ));
}
