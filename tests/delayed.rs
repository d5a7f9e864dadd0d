//! Delayed messages through real clients: the delayed-message plugin's exchange type
//! (`x-delayed-message` + `x-delayed-type`, the `x-delay` header, its argument errors,
//! `messages_delayed` in management) and LavinMQ's `x-delayed-exchange` argument; release
//! order, restart survival, and a backlog larger than the in-memory window.

mod support;

use futures_lite::StreamExt;
use lagomorph::broker::BrokerOptions;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Consumer};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{amqp_error, next_delivery, start, start_in, unique, within};

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(k.to_string()), v.clone());
    }
    t
}

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.to_string().into())
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn declare_delayed(ch: &Channel, x: &str, durable: bool) {
    within(ch.exchange_declare(
        x.into(),
        lapin::ExchangeKind::Custom("x-delayed-message".into()),
        ExchangeDeclareOptions {
            durable,
            ..Default::default()
        },
        table(&[("x-delayed-type", text("direct"))]),
    ))
    .await
    .expect("declare delayed exchange");
}

async fn bound_queue(ch: &Channel, q: &str, x: &str, key: &str, durable: bool) {
    within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            durable,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("queue");
    within(ch.queue_bind(
        q.into(),
        x.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("bind");
}

fn delayed_props(delay: Option<i64>, persistent: bool) -> BasicProperties {
    let mut p = BasicProperties::default().with_delivery_mode(if persistent { 2 } else { 1 });
    if let Some(d) = delay {
        p = p.with_headers(table(&[("x-delay", AMQPValue::LongLongInt(d))]));
    }
    p
}

async fn publish(ch: &Channel, x: &str, key: &str, body: &str, props: BasicProperties) {
    within(ch.basic_publish(
        x.into(),
        key.into(),
        BasicPublishOptions::default(),
        body.as_bytes(),
        props,
    ))
    .await
    .expect("publish")
    .await
    .expect("confirm");
}

async fn consumer(ch: &Channel, q: &str) -> Consumer {
    within(ch.basic_consume(
        q.into(),
        "".into(),
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("consume")
}

fn body(d: &lapin::message::Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_messages_are_released_in_due_order() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirms");
    let (x, q) = (unique("dx"), unique("dq"));
    declare_delayed(&ch, &x, false).await;
    bound_queue(&ch, &q, &x, "k", false).await;
    let t0 = Instant::now();
    for (d, name) in [(600, "c"), (200, "a"), (400, "b")] {
        publish(&ch, &x, "k", name, delayed_props(Some(d), false)).await;
    }
    publish(&ch, &x, "k", "now", delayed_props(None, false)).await;
    publish(&ch, &x, "k", "zero", delayed_props(Some(0), false)).await;
    assert_eq!(b.broker.delayed().count("/", &x), 3);
    let mut c = consumer(&ch, &q).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = next_delivery(&mut c).await;
        let delay = d
            .properties
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get("x-delay").cloned());
        got.push((body(&d), t0.elapsed(), delay));
    }
    let names: Vec<&str> = got.iter().map(|g| g.0.as_str()).collect();
    assert_eq!(names, ["now", "zero", "a", "b", "c"]);
    for (name, at, header) in &got[2..] {
        let ms = match name.as_str() {
            "a" => 200,
            "b" => 400,
            _ => 600,
        };
        assert!(*at >= Duration::from_millis(ms), "{name} early: {at:?}");
        // The plugin's marker of a message that was delayed: x-delay = -delay.
        assert_eq!(header, &Some(AMQPValue::LongInt(-(ms as i32))), "{name}");
    }
    assert_eq!(b.broker.delayed().count("/", &x), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_argument_errors() {
    let b = start().await;
    let c = b.connect().await;
    let declare = |args: FieldTable, kind: &'static str| {
        let c = &c;
        async move {
            let ch = c.create_channel().await.expect("channel");
            within(ch.exchange_declare(
                unique("dx").as_str().into(),
                lapin::ExchangeKind::Custom(kind.into()),
                ExchangeDeclareOptions::default(),
                args,
            ))
            .await
            .map_err(|e| amqp_error(&e))
        }
    };
    // Texts from the plugin's source (rabbit_exchange_type_delayed_message:validate/1).
    assert_eq!(
        declare(FieldTable::default(), "x-delayed-message").await,
        Err(Some((
            406,
            "PRECONDITION_FAILED - Invalid argument, 'x-delayed-type' must be an existing \
             exchange type"
                .into()
        )))
    );
    assert_eq!(
        declare(
            table(&[("x-delayed-type", text("x-delayed-message"))]),
            "x-delayed-message"
        )
        .await,
        Err(Some((
            406,
            "PRECONDITION_FAILED - Invalid argument, 'x-delayed-message' can't be used for \
             'x-delayed-type'"
                .into()
        )))
    );
    let (_c2, ch) = b.channel().await;
    let x = unique("dx");
    declare_delayed(&ch, &x, false).await;
    let e = within(ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("inequivalent");
    assert_eq!(
        amqp_error(&e),
        Some((
            406,
            format!(
                "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': \
                 received 'direct' but current is 'x-delayed-message'"
            )
        ))
    );
    // An unknown routing type is an unknown exchange type (503, connection error).
    assert_eq!(
        declare(
            table(&[("x-delayed-type", text("nope"))]),
            "x-delayed-message"
        )
        .await,
        Err(Some((
            503,
            "COMMAND_INVALID - invalid exchange type 'nope'".into()
        )))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lavinmq_delayed_exchange_argument_and_management_count() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirms");
    let (x, q) = (unique("lx"), unique("lq"));
    within(ch.exchange_declare(
        x.as_str().into(),
        lapin::ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        table(&[("x-delayed-exchange", AMQPValue::Boolean(true))]),
    ))
    .await
    .expect("declare");
    bound_queue(&ch, &q, &x, "", false).await;
    publish(&ch, &x, "", "later", delayed_props(Some(300), false)).await;
    let (base, _token) = support::serve_management(&b, Default::default()).await;
    let v: serde_json::Value = reqwest::Client::new()
        .get(format!("{base}/api/exchanges/%2F/{x}"))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(v["messages_delayed"], 1);
    assert_eq!(v["type"], "fanout");
    let t0 = Instant::now();
    let mut c = consumer(&ch, &q).await;
    assert_eq!(body(&next_delivery(&mut c).await), "later");
    assert!(t0.elapsed() >= Duration::from_millis(150));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_delayed_messages_survive_a_restart() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (x, q) = ("dx-restart", "dq-restart");
    let due;
    {
        let b = start_in(tmp.path(), BrokerOptions::default()).await;
        let (_c, ch) = b.channel().await;
        within(ch.confirm_select(ConfirmSelectOptions::default()))
            .await
            .expect("confirms");
        declare_delayed(&ch, x, true).await;
        bound_queue(&ch, q, x, "k", true).await;
        due = unix_ms() + 1500;
        publish(&ch, x, "k", "kept", delayed_props(Some(1500), true)).await;
        publish(&ch, x, "k", "transient", delayed_props(Some(1500), false)).await;
        assert_eq!(b.broker.delayed().count("/", x), 2);
        b.stop().await;
    }
    let b = start_in(tmp.path(), BrokerOptions::default()).await;
    assert_eq!(b.broker.delayed().count("/", x), 1);
    let (_c, ch) = b.channel().await;
    let mut c = consumer(&ch, q).await;
    let d = next_delivery(&mut c).await;
    assert_eq!(body(&d), "kept");
    assert!(unix_ms() >= due, "released early");
    // Nothing else: the transient one went with the restart.
    let ok = within(ch.queue_declare(
        q.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive");
    assert_eq!(ok.message_count(), 0);
    assert_eq!(b.broker.delayed().count("/", x), 0);
    b.stop().await;
}

/// More delayed messages than the in-memory window holds: memory stays at the window, and
/// every message is released, none early.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_beyond_the_window_is_released_completely() {
    let n = lagomorph::broker::exchange::delayed::WINDOW_MAX + 5_000;
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let (x, q) = (unique("dx"), unique("dq"));
    declare_delayed(&ch, &x, false).await;
    bound_queue(&ch, &q, &x, "k", false).await;
    for i in 0..n {
        // Later messages are due earlier, so the window must keep the earliest, not the first.
        let delay = 1500 - (i as i64 * 1000 / n as i64);
        let due = unix_ms() + delay as u64;
        within(ch.basic_publish(
            x.as_str().into(),
            "k".into(),
            BasicPublishOptions::default(),
            due.to_string().as_bytes(),
            delayed_props(Some(delay), false),
        ))
        .await
        .expect("publish");
    }
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("sync");
    assert!(b.broker.delayed().in_memory() <= lagomorph::broker::exchange::delayed::WINDOW_MAX);
    let mut c = consumer(&ch, &q).await;
    for _ in 0..n {
        let d = tokio::time::timeout(Duration::from_secs(30), c.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("delivery");
        let due: u64 = body(&d).parse().expect("due");
        assert!(unix_ms() >= due, "released early");
    }
    assert_eq!(b.broker.delayed().count("/", &x), 0);
}
