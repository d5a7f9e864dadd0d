//! Consumer priorities (`x-priority`) and single active consumer (`x-single-active-consumer`)
//! through lapin, with RabbitMQ 3.10's answers (tests/fixtures/rabbitmq-3.10/consumers.json),
//! and what the management API shows of them.

mod support;

use lapin::message::Delivery;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Consumer};
use serde_json::Value;
use support::table;
use support::{assert_amqp_err, next_delivery, rabbitmq, within};

fn priority(p: i32) -> FieldTable {
    table(&[("x-priority", AMQPValue::LongInt(p))])
}

fn sac() -> FieldTable {
    table(&[("x-single-active-consumer", AMQPValue::Boolean(true))])
}

async fn declare(ch: &Channel, name: &str, args: FieldTable) {
    within(ch.queue_declare(name.into(), QueueDeclareOptions::default(), args))
        .await
        .expect("declare");
}

async fn consume(ch: &Channel, queue: &str, tag: &str, no_ack: bool, args: FieldTable) -> Consumer {
    within(ch.basic_consume(
        queue.into(),
        tag.into(),
        BasicConsumeOptions {
            no_ack,
            ..Default::default()
        },
        args,
    ))
    .await
    .expect("consume")
}

async fn publish(ch: &Channel, queue: &str, body: &str) {
    within(
        within(ch.basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default(),
        ))
        .await
        .expect("publish"),
    )
    .await
    .expect("confirm");
}

fn text(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.data).into_owned()
}

/// A round trip on `ch`: everything sent on it before (acks) has been handled.
async fn sync(ch: &Channel, queue: &str) -> u32 {
    within(ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive declare")
    .consumer_count()
}

async fn confirming(c: &lapin::Connection) -> Channel {
    let ch = within(c.create_channel()).await.expect("channel");
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    ch
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_integer_consumer_priority_is_refused_as_rabbitmq_does() {
    let b = support::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "cpq", FieldTable::default()).await;
    let r = ch
        .basic_consume(
            "cpq".into(),
            "".into(),
            BasicConsumeOptions::default(),
            table(&[(
                "x-priority",
                AMQPValue::LongString(LongString::from("high")),
            )]),
        )
        .await;
    let want = &rabbitmq("consumers")["consumer_priority_string"];
    assert_amqp_err(
        r,
        want["code"].as_u64().expect("code") as u16,
        want["text"].as_str().expect("text"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_highest_priority_consumer_with_credit_gets_messages() {
    let b = support::start().await;
    let c = b.connect().await;
    let publisher = confirming(&c).await;
    declare(&publisher, "cp", FieldTable::default()).await;
    // "hi" has a prefetch of 2, "lo" none; "lo" registered first.
    let lo_ch = within(c.create_channel()).await.expect("channel");
    let mut lo = consume(&lo_ch, "cp", "lo", false, priority(0)).await;
    let hi_ch = within(c.create_channel()).await.expect("channel");
    within(hi_ch.basic_qos(2, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut hi = consume(&hi_ch, "cp", "hi", false, priority(10)).await;
    for n in 0..5 {
        publish(&publisher, "cp", &format!("m{n}")).await;
    }
    let h: Vec<Delivery> = vec![next_delivery(&mut hi).await, next_delivery(&mut hi).await];
    assert_eq!(h.iter().map(text).collect::<Vec<_>>(), ["m0", "m1"]);
    let mut l = Vec::new();
    for _ in 0..3 {
        l.push(text(&next_delivery(&mut lo).await));
    }
    assert_eq!(l, ["m2", "m3", "m4"], "hi is full: lo works meanwhile");
    // hi has room again: the next message is its.
    within(h[0].ack(BasicAckOptions::default()))
        .await
        .expect("ack");
    sync(&hi_ch, "cp").await;
    publish(&publisher, "cp", "m5").await;
    assert_eq!(text(&next_delivery(&mut hi).await), "m5");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_equal_priority_take_turns() {
    let b = support::start().await;
    let c = b.connect().await;
    let publisher = confirming(&c).await;
    declare(&publisher, "cp-rr", FieldTable::default()).await;
    let ch = within(c.create_channel()).await.expect("channel");
    let mut a = consume(&ch, "cp-rr", "a", true, priority(5)).await;
    let mut low = consume(&ch, "cp-rr", "low", true, priority(1)).await;
    let mut bb = consume(&ch, "cp-rr", "b", true, priority(5)).await;
    for n in 0..4 {
        publish(&publisher, "cp-rr", &format!("m{n}")).await;
    }
    assert_eq!(text(&next_delivery(&mut a).await), "m0");
    assert_eq!(text(&next_delivery(&mut bb).await), "m1");
    assert_eq!(text(&next_delivery(&mut a).await), "m2");
    assert_eq!(text(&next_delivery(&mut bb).await), "m3");
    // The low one got nothing: cancelling the others hands it the next one.
    within(ch.basic_cancel("a".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    within(ch.basic_cancel("b".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    publish(&publisher, "cp-rr", "m4").await;
    assert_eq!(text(&next_delivery(&mut low).await), "m4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_active_consumer_fails_over_on_cancel_as_rabbitmq_does() {
    let b = support::start().await;
    let c = b.connect().await;
    let ch = confirming(&c).await;
    declare(&ch, "sacq", sac()).await;
    let mut c1 = consume(&ch, "sacq", "c1", true, FieldTable::default()).await;
    let mut c2 = consume(&ch, "sacq", "c2", true, FieldTable::default()).await;
    let mut seen = Vec::new();
    for i in 0..3 {
        publish(&ch, "sacq", &format!("a{i}")).await;
    }
    for _ in 0..3 {
        seen.push(("c1".to_string(), text(&next_delivery(&mut c1).await)));
    }
    within(ch.basic_cancel("c1".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    for i in 0..3 {
        publish(&ch, "sacq", &format!("b{i}")).await;
    }
    for _ in 0..3 {
        seen.push(("c2".to_string(), text(&next_delivery(&mut c2).await)));
    }
    let want = &rabbitmq("consumers")["single_active_consumer_failover"]["result"];
    let want_seen: Vec<(String, String)> =
        serde_json::from_value(want["seen"].clone()).expect("seen");
    assert_eq!(seen, want_seen);
    assert_eq!(
        u64::from(sync(&ch, "sacq").await),
        want["consumer_count_after_cancel"].as_u64().expect("count")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_consumer_is_refused_on_a_single_active_consumer_queue() {
    let b = support::start().await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "sacq2", sac()).await;
    let r = ch
        .basic_consume(
            "sacq2".into(),
            "".into(),
            BasicConsumeOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    let want = &rabbitmq("consumers")["single_active_consumer_exclusive_consume"];
    assert_amqp_err(
        r,
        want["code"].as_u64().expect("code") as u16,
        want["text"].as_str().expect("text"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_connection_loss_the_next_consumer_gets_the_unacked_first() {
    let b = support::start().await;
    let pc = b.connect().await;
    let publisher = confirming(&pc).await;
    declare(&publisher, "sac-loss", sac()).await;
    let c1_conn = b.connect().await;
    let c1_ch = within(c1_conn.create_channel()).await.expect("channel");
    // c1 takes four at most: the fifth stays in the queue.
    within(c1_ch.basic_qos(4, BasicQosOptions::default()))
        .await
        .expect("qos");
    let mut c1 = consume(&c1_ch, "sac-loss", "c1", false, FieldTable::default()).await;
    let (c2_conn, c2_ch) = b.channel().await;
    let mut c2 = consume(&c2_ch, "sac-loss", "c2", false, FieldTable::default()).await;
    for n in 0..3 {
        publish(&publisher, "sac-loss", &format!("m{n}")).await;
    }
    for n in 0..3 {
        assert_eq!(text(&next_delivery(&mut c1).await), format!("m{n}"));
    }
    // More arrive while c1 holds three unacked.
    publish(&publisher, "sac-loss", "m3").await;
    assert_eq!(text(&next_delivery(&mut c1).await), "m3");
    publish(&publisher, "sac-loss", "m4").await;
    within(c1_conn.close(200, "bye".into()))
        .await
        .expect("close");
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = next_delivery(&mut c2).await;
        got.push((text(&d), d.redelivered));
    }
    assert_eq!(
        got,
        [
            ("m0".to_string(), true),
            ("m1".to_string(), true),
            ("m2".to_string(), true),
            ("m3".to_string(), true),
            ("m4".to_string(), false),
        ]
    );
    drop(c2_conn);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_shows_the_single_active_consumer() {
    let b = support::start().await;
    let (base, token) = support::serve_management(&b, Default::default()).await;
    let (_c, ch) = b.channel().await;
    declare(&ch, "sac-mgmt", sac()).await;
    declare(&ch, "plain-mgmt", FieldTable::default()).await;
    // Kept: lapin cancels a consumer it drops.
    let _first = consume(&ch, "sac-mgmt", "first", false, FieldTable::default()).await;
    let _second = consume(&ch, "sac-mgmt", "second", false, priority(3)).await;
    let _other = consume(&ch, "plain-mgmt", "other", false, FieldTable::default()).await;
    let http = reqwest::Client::new();
    let get = |path: &str| {
        let req = http
            .get(format!("{base}{path}"))
            .basic_auth("guest", Some("guest"));
        async move {
            let r = within(req.send()).await.expect("http");
            assert!(r.status().is_success(), "{}", r.status());
            within(r.json::<Value>()).await.expect("json")
        }
    };
    // RabbitMQ 3.10's answers (consumers.json, single_active_consumer_management): the
    // queue's tag, and each consumer's active / activity_status / arguments.
    let want = &rabbitmq("consumers")["single_active_consumer_management"]["result"];
    let view = |q: &Value| {
        let mut details: Vec<Value> = q["consumer_details"]
            .as_array()
            .expect("details")
            .iter()
            .map(|d| {
                serde_json::json!({
                    "consumer_tag": d["consumer_tag"],
                    "active": d["active"],
                    "activity_status": d["activity_status"],
                    "arguments": d["arguments"],
                })
            })
            .collect();
        details.sort_by_key(|d| d["consumer_tag"].as_str().unwrap_or_default().to_string());
        serde_json::json!({
            "single_active_consumer_tag": q["single_active_consumer_tag"],
            "consumer_details": details,
        })
    };
    let q = get("/api/queues/%2f/sac-mgmt").await;
    assert_eq!(view(&q), want["before"], "{q}");
    let plain = get("/api/queues/%2f/plain-mgmt").await;
    assert_eq!(
        plain["single_active_consumer_tag"],
        want["plain_queue"]["single_active_consumer_tag"]
    );
    assert_eq!(
        plain["consumer_details"][0]["activity_status"],
        want["plain_queue"]["activity_status"][0]
    );
    let all = get("/api/consumers").await;
    let mut listed: Vec<Value> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|c| {
            serde_json::json!({
                "consumer_tag": c["consumer_tag"],
                "active": c["active"],
                "activity_status": c["activity_status"],
            })
        })
        .collect();
    listed.sort_by_key(|d| d["consumer_tag"].as_str().unwrap_or_default().to_string());
    assert_eq!(Value::Array(listed), want["api_consumers"]);
    // The active one cancels: the waiting one is active now.
    within(ch.basic_cancel("first".into(), BasicCancelOptions::default()))
        .await
        .expect("cancel");
    let q = get("/api/queues/%2f/sac-mgmt").await;
    assert_eq!(view(&q), want["after_cancel"], "{q}");
    token.cancel();
}

// ---- consumer acknowledgement timeout -------------------------------------------------------

mod timeout {
    use super::support::raw::{Event, Raw};
    use super::support::{self, rabbitmq, within};
    use super::*;
    use lagomorph::broker::{BrokerOptions, Limits};
    use lagomorph::protocol::frame::Frame;
    use lagomorph::protocol::method::*;
    use lagomorph::protocol::types::{FieldTable as Table, FieldValue, ShortStr};
    use std::time::{Duration, Instant};

    fn short(s: &str) -> ShortStr {
        ShortStr::try_from(s).expect("short string")
    }

    fn with_timeout(ms: Option<u64>) -> BrokerOptions {
        BrokerOptions {
            limits: Limits {
                consumer_timeout: ms.map(Duration::from_millis),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// RabbitMQ's text (consumers.json, consumer_timeout_text) for `channel` and `ms`.
    fn rabbitmq_text(channel: u16, ms: u64) -> String {
        let want = &rabbitmq("consumers")["consumer_timeout_text"];
        want["text"]
            .as_str()
            .expect("text")
            .replace("channel 1", &format!("channel {channel}"))
            .replace("1800000 ms", &format!("{ms} ms"))
    }

    /// Declares `queue` with `args`, publishes one message and consumes it with acks on
    /// channel `ch`; returns when the delivery arrived.
    async fn consume_one(r: &mut Raw, ch: u16, queue: &str, args: Table) -> Instant {
        r.open_channel(ch).await;
        let ok = r
            .call(
                ch,
                QueueDeclare {
                    queue: short(queue),
                    arguments: args,
                    ..Default::default()
                }
                .into(),
            )
            .await;
        assert!(matches!(ok, Method::QueueDeclareOk(_)), "{ok:?}");
        r.publish(ch, "", queue, b"m", false).await;
        r.send(
            ch,
            BasicConsume {
                queue: short(queue),
                consumer_tag: short("c"),
                ..Default::default()
            }
            .into(),
        )
        .await;
        loop {
            match r.recv().await {
                Frame::Method {
                    method: Method::BasicDeliver(_),
                    ..
                } => return Instant::now(),
                Frame::Method {
                    method: Method::ChannelClose(c),
                    ..
                } => panic!("channel closed: {} {}", c.reply_code, c.reply_text),
                _ => continue,
            }
        }
    }

    /// Waits (bounded) for the broker's channel.close on `ch`; answers close-ok.
    async fn closed(r: &mut Raw, ch: u16) -> ChannelClose {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match r.next_event(left).await {
                Event::Frame(Frame::Method {
                    channel,
                    method: Method::ChannelClose(c),
                }) if channel == ch => {
                    r.send(ch, ChannelCloseOk.into()).await;
                    return c;
                }
                Event::Frame(_) => continue,
                other => panic!("no channel.close: {other:?}"),
            }
        }
    }

    async fn ready(r: &mut Raw, ch: u16, queue: &str) -> u32 {
        match r
            .call(
                ch,
                QueueDeclare {
                    queue: short(queue),
                    passive: true,
                    ..Default::default()
                }
                .into(),
            )
            .await
        {
            Method::QueueDeclareOk(ok) => ok.message_count,
            m => panic!("expected declare-ok, got {m:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unacked_delivery_past_the_timeout_closes_the_channel_and_is_requeued() {
        let b = support::start_with(with_timeout(Some(300))).await;
        let mut r = Raw::connect(b.addr).await;
        let sent = consume_one(&mut r, 3, "slow", Table::default()).await;
        let c = closed(&mut r, 3).await;
        let took = sent.elapsed();
        assert_eq!(
            (
                c.reply_code,
                c.reply_text.to_string(),
                c.class_id,
                c.method_id
            ),
            (406, rabbitmq_text(3, 300), 0, 0)
        );
        assert!(took >= Duration::from_millis(250), "closed after {took:?}");
        r.open_channel(4).await;
        assert_eq!(ready(&mut r, 4, "slow").await, 1, "requeued");
        // The connection and its other channels stay open.
        assert_eq!(ready(&mut r, 4, "slow").await, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_queue_argument_or_a_policy_sets_the_timeout() {
        // The broker's own timeout is off; the queue's argument applies.
        let b = support::start_with(with_timeout(None)).await;
        let mut r = Raw::connect(b.addr).await;
        let args = Table(vec![(short("x-consumer-timeout"), FieldValue::I32(200))]);
        consume_one(&mut r, 1, "arg-timeout", args).await;
        let c = closed(&mut r, 1).await;
        assert_eq!(c.reply_text.to_string(), rabbitmq_text(1, 200));
        // A policy's consumer-timeout.
        let vh = b.broker.vhost("/").expect("vhost");
        let p = lagomorph::broker::policy::build(
            lagomorph::broker::policy::PolicyKind::Policy,
            "/",
            "ct",
            "^pol-",
            Some("queues"),
            None,
            &serde_json::json!({"consumer-timeout": 250}),
        )
        .expect("policy");
        vh.put_policy(
            lagomorph::broker::policy::PolicyKind::Policy,
            p,
            support_now(),
        )
        .expect("set policy");
        consume_one(&mut r, 2, "pol-timeout", Table::default()).await;
        let c = closed(&mut r, 2).await;
        assert_eq!(c.reply_text.to_string(), rabbitmq_text(2, 250));
        // Without either, nothing closes.
        consume_one(&mut r, 5, "no-timeout", Table::default()).await;
        loop {
            match r.next_event(Duration::from_millis(600)).await {
                Event::Silent => break,
                Event::Frame(Frame::Header { .. } | Frame::Body { .. }) => continue,
                other => panic!("expected nothing more, got {other:?}"),
            }
        }
    }

    fn support_now() -> lagomorph::broker::Now {
        lagomorph::clock::now()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn acked_in_time_nothing_happens_and_lapin_sees_the_close() {
        let b = support::start_with(with_timeout(Some(400))).await;
        let (_c, ch) = b.channel().await;
        declare(&ch, "lapin-timeout", FieldTable::default()).await;
        let mut c = consume(&ch, "lapin-timeout", "c", false, FieldTable::default()).await;
        within(ch.basic_publish(
            "".into(),
            "lapin-timeout".into(),
            BasicPublishOptions::default(),
            b"a",
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
        let d = next_delivery(&mut c).await;
        within(d.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
        sync(&ch, "lapin-timeout").await;
        within(ch.basic_publish(
            "".into(),
            "lapin-timeout".into(),
            BasicPublishOptions::default(),
            b"b",
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
        let d = next_delivery(&mut c).await;
        assert_eq!(text(&d), "b");
        // Not acked: the channel goes (polled with a deadline), the message is requeued.
        let deadline = Instant::now() + Duration::from_secs(10);
        while ch.status().connected() {
            assert!(Instant::now() < deadline, "channel never closed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ch2 = within(_c.create_channel()).await.expect("channel");
        let ok = within(ch2.queue_declare(
            "lapin-timeout".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .expect("passive");
        assert_eq!(ok.message_count(), 1);
    }
}
