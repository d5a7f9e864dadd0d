//! The disk alarm through real clients: a free-space limit larger than any disk
//! (`1000000TB`, set while running as `rabbitmqctl set_disk_free_limit` does) blocks a
//! publishing connection with RabbitMQ 3.10's `low on disk` (an idle one is not told), the
//! memory alarm on top gives `low on disk & memory` to a new publisher and nothing new to the
//! blocked one, the health checks answer 503 in RabbitMQ's shape, /metrics shows both alarms,
//! and lowering the limit unblocks (`tests/fixtures/rabbitmq-3.10/alarms.json`). Every wait
//! is on a protocol event or an HTTP answer, bounded in time.

mod support;

use futures_lite::StreamExt;
use lagomorph::config::parse_byte_size;
use lagomorph::server::{DiskLimit, disk_monitor};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Event};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// The next blocked / unblocked event of a connection, within 10 s.
async fn next_block_event(events: &mut (impl futures_lite::Stream<Item = Event> + Unpin)) -> Event {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let e = tokio::time::timeout(left, events.next())
            .await
            .expect("event in time")
            .expect("events go on");
        if matches!(e, Event::ConnectionBlocked(_) | Event::ConnectionUnblocked) {
            return e;
        }
    }
}

/// GETs `path` until its status is `want` (bounded), returning the body.
async fn until_status(base: &str, path: &str, want: u16) -> String {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = client
            .get(format!("{base}{path}"))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .expect("http");
        let status = r.status().as_u16();
        let body = r.text().await.expect("body");
        if status == want {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {want}: {status} {body}"
        );
        tokio::task::yield_now().await;
    }
}

async fn publish(ch: &lapin::Channel, body: &[u8]) -> lapin::PublisherConfirm {
    ch.basic_publish(
        "".into(),
        "disk".into(),
        BasicPublishOptions::default(),
        body,
        BasicProperties::default(),
    )
    .await
    .expect("publish")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_alarm_blocks_publishers_and_combines_with_memory() {
    let b = support::start().await;
    let token = CancellationToken::new();
    let limit = Arc::new(DiskLimit::new(parse_byte_size("50MB").expect("size")));
    tokio::spawn(disk_monitor(
        b.broker.clone(),
        b.dir.clone(),
        Arc::clone(&limit),
        Duration::from_millis(50),
        token.clone(),
    ));
    let http = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", http.local_addr().expect("addr"));
    tokio::spawn(lagomorph::management::serve(
        http,
        b.broker.clone(),
        token.clone(),
    ));
    until_status(&base, "/api/health/checks/alarms", 200).await;

    let (publisher, ch) = b.channel().await;
    let mut events = publisher.events_listener();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    ch.queue_declare(
        "disk".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (idle, _) = b.channel().await;
    let mut idle_events = idle.events_listener();

    limit.set(parse_byte_size("1000000TB").expect("size"));
    let body = until_status(&base, "/api/health/checks/alarms", 503).await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["status"], "failed");
    assert_eq!(v["reason"], "There are alarms in effect in the cluster");
    assert_eq!(v["alarms"][0]["resource"], "disk space");
    assert_eq!(v["alarms"].as_array().map(Vec::len), Some(1));
    let local = until_status(&base, "/api/health/checks/local-alarms", 503).await;
    assert!(
        local.contains("There are alarms in effect on the node"),
        "{local}"
    );

    // A publish under the alarm blocks the connection; its confirm waits for the unblock.
    let held = publish(&ch, b"under the alarm").await;
    match next_block_event(&mut events).await {
        Event::ConnectionBlocked(reason) => assert_eq!(reason, "low on disk"),
        e => panic!("expected connection.blocked, got {e:?}"),
    }

    // Memory as well: a new publisher is told both; the blocked one hears nothing new.
    b.broker.set_memory_alarm(true);
    let (second, ch2) = b.channel().await;
    let mut second_events = second.events_listener();
    let _held2 = ch2
        .basic_publish(
            "".into(),
            "disk".into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        )
        .await
        .expect("publish");
    match next_block_event(&mut second_events).await {
        Event::ConnectionBlocked(reason) => assert_eq!(reason, "low on disk & memory"),
        e => panic!("expected connection.blocked, got {e:?}"),
    }
    let metrics = until_status(&base, "/metrics", 200).await;
    assert!(
        metrics.contains("\nrabbitmq_alarms_free_disk_space_watermark 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\nrabbitmq_alarms_memory_used_watermark 1\n"),
        "{metrics}"
    );
    b.broker.set_memory_alarm(false);

    // Lowering the limit clears the alarm: unblocked, and the held publish is confirmed.
    limit.set(0);
    assert!(matches!(
        next_block_event(&mut events).await,
        Event::ConnectionUnblocked
    ));
    assert!(matches!(
        next_block_event(&mut second_events).await,
        Event::ConnectionUnblocked
    ));
    let confirmed = tokio::time::timeout(Duration::from_secs(10), held)
        .await
        .expect("confirmed in time")
        .expect("confirm");
    assert!(confirmed.is_ack());
    until_status(&base, "/api/health/checks/alarms", 200).await;
    let metrics = until_status(&base, "/metrics", 200).await;
    assert!(metrics.contains("\nrabbitmq_alarms_free_disk_space_watermark 0\n"));

    // The idle connection was never told (RabbitMQ 3.10 tells publishers only): a round trip
    // on it shows no blocked event queued before the answer.
    idle.create_channel()
        .await
        .expect("idle connection still served");
    let mut seen = Vec::new();
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(1), idle_events.next()).await
    {
        seen.push(format!("{e:?}"));
    }
    assert!(
        !seen.iter().any(|e| e.contains("Blocked")),
        "idle connection got {seen:?}"
    );
    token.cancel();
    b.stop().await;
}
