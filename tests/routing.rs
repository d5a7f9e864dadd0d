//! Exchanges and routing through real clients: default, direct, fanout, topic, headers,
//! exchange-to-exchange bindings (with a cycle), alternate exchanges, mandatory returns.

mod support;

use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, ExchangeKind};
use support::{start, unique, within};

async fn queue(ch: &Channel) -> String {
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions {
            exclusive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    q.name().to_string()
}

async fn bind(ch: &Channel, q: &str, x: &str, key: &str, args: FieldTable) {
    within(ch.queue_bind(
        q.into(),
        x.into(),
        key.into(),
        QueueBindOptions::default(),
        args,
    ))
    .await
    .expect("bind");
}

async fn publish(ch: &Channel, x: &str, key: &str, body: &[u8], props: BasicProperties) {
    within(ch.basic_publish(
        x.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    ))
    .await
    .expect("publish");
}

/// Drains a queue with basic.get; returns the bodies.
async fn drain(ch: &Channel, q: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = within(ch.basic_get(q.into(), BasicGetOptions { no_ack: true }))
        .await
        .expect("get")
    {
        out.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    out
}

async fn declare_x(ch: &Channel, name: &str, kind: ExchangeKind) {
    within(ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions {
            auto_delete: false,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("exchange declare");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_and_direct_exchanges() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = queue(&ch).await;
    publish(&ch, "", &q, b"by-name", BasicProperties::default()).await;
    let x = unique("direct");
    declare_x(&ch, &x, ExchangeKind::Direct).await;
    bind(&ch, &q, &x, "k1", FieldTable::default()).await;
    publish(&ch, &x, "k1", b"k1", BasicProperties::default()).await;
    publish(&ch, &x, "k2", b"k2", BasicProperties::default()).await;
    publish(
        &ch,
        "amq.direct",
        &q,
        b"not-bound",
        BasicProperties::default(),
    )
    .await;
    // Publishes on one channel are ordered with later methods on it, so basic.get sees them.
    assert_eq!(drain(&ch, &q).await, vec!["by-name", "k1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_reaches_every_bound_queue_once() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("fan");
    declare_x(&ch, &x, ExchangeKind::Fanout).await;
    let (q1, q2) = (queue(&ch).await, queue(&ch).await);
    bind(&ch, &q1, &x, "", FieldTable::default()).await;
    bind(&ch, &q1, &x, "other-key", FieldTable::default()).await;
    bind(&ch, &q2, &x, "ignored", FieldTable::default()).await;
    publish(&ch, &x, "whatever", b"m", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &q1).await, vec!["m"], "two bindings, one copy");
    assert_eq!(drain(&ch, &q2).await, vec!["m"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_wildcards() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("topic");
    declare_x(&ch, &x, ExchangeKind::Topic).await;
    // Keys are published in this order; "" is zero words (so "*" does not match it, "#" does).
    let cases: [(&str, &[&str]); 4] = [
        ("a.*.c", &["a.b.c", "a..c"]),
        ("a.#", &["a.b.c", "a..c", "a", "a.b"]),
        ("#", &["a.b.c", "a..c", "a", "a.b", "", "x.y", "x", "b.a"]),
        ("*", &["a", "x"]),
    ];
    let keys = ["a.b.c", "a..c", "a", "a.b", "", "x.y", "x", "b.a"];
    for (pattern, expected) in cases {
        let q = queue(&ch).await;
        bind(&ch, &q, &x, pattern, FieldTable::default()).await;
        for k in keys {
            publish(&ch, &x, k, k.as_bytes(), BasicProperties::default()).await;
        }
        let got = drain(&ch, &q).await;
        assert_eq!(
            got,
            expected.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            "pattern {pattern}"
        );
        within(ch.queue_unbind(
            q.as_str().into(),
            x.as_str().into(),
            pattern.into(),
            FieldTable::default(),
        ))
        .await
        .expect("unbind");
    }
}

fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert(ShortString::from(k.to_string()), v.clone());
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_all_and_any() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("hdr");
    declare_x(&ch, &x, ExchangeKind::Headers).await;
    let s = |v: &str| AMQPValue::LongString(v.into());
    let (q_all, q_any) = (queue(&ch).await, queue(&ch).await);
    bind(
        &ch,
        &q_all,
        &x,
        "",
        table(&[
            ("x-match", s("all")),
            ("a", s("1")),
            ("b", AMQPValue::LongInt(2)),
        ]),
    )
    .await;
    bind(
        &ch,
        &q_any,
        &x,
        "",
        table(&[
            ("x-match", s("any")),
            ("a", s("1")),
            ("b", AMQPValue::LongInt(2)),
        ]),
    )
    .await;
    let props = |t: FieldTable| BasicProperties::default().with_headers(t);
    publish(
        &ch,
        &x,
        "",
        b"both",
        props(table(&[("a", s("1")), ("b", AMQPValue::LongInt(2))])),
    )
    .await;
    publish(&ch, &x, "", b"only-a", props(table(&[("a", s("1"))]))).await;
    publish(&ch, &x, "", b"wrong", props(table(&[("a", s("2"))]))).await;
    publish(&ch, &x, "", b"none", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &q_all).await, vec!["both"]);
    assert_eq!(drain(&ch, &q_any).await, vec!["both", "only-a"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_bindings_and_cycles() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let (x1, x2) = (unique("e2e-a"), unique("e2e-b"));
    declare_x(&ch, &x1, ExchangeKind::Fanout).await;
    declare_x(&ch, &x2, ExchangeKind::Fanout).await;
    for (dst, src) in [(&x2, &x1), (&x1, &x2)] {
        within(ch.exchange_bind(
            dst.as_str().into(),
            src.as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("exchange.bind");
    }
    let q = queue(&ch).await;
    bind(&ch, &q, &x2, "", FieldTable::default()).await;
    publish(&ch, &x1, "", b"through", BasicProperties::default()).await;
    assert_eq!(
        drain(&ch, &q).await,
        vec!["through"],
        "one copy despite the cycle"
    );
    within(ch.exchange_unbind(
        x2.as_str().into(),
        x1.as_str().into(),
        "".into(),
        ExchangeUnbindOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("exchange.unbind");
    publish(&ch, &x1, "", b"cut", BasicProperties::default()).await;
    assert!(drain(&ch, &q).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_exchange_takes_unroutable_messages() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let (main, alt) = (unique("main"), unique("alt"));
    declare_x(&ch, &alt, ExchangeKind::Fanout).await;
    within(ch.exchange_declare(
        main.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        table(&[(
            "alternate-exchange",
            AMQPValue::LongString(alt.as_str().into()),
        )]),
    ))
    .await
    .expect("declare");
    let (routed, fallback) = (queue(&ch).await, queue(&ch).await);
    bind(&ch, &routed, &main, "yes", FieldTable::default()).await;
    bind(&ch, &fallback, &alt, "", FieldTable::default()).await;
    publish(&ch, &main, "yes", b"1", BasicProperties::default()).await;
    publish(&ch, &main, "no", b"2", BasicProperties::default()).await;
    assert_eq!(drain(&ch, &routed).await, vec!["1"]);
    assert_eq!(drain(&ch, &fallback).await, vec!["2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_unroutable_is_returned_then_confirmed() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    within(ch.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    let confirm = within(ch.basic_publish(
        "".into(),
        "no-such-queue".into(),
        BasicPublishOptions {
            mandatory: true,
            ..Default::default()
        },
        b"lost?",
        BasicProperties::default(),
    ))
    .await
    .expect("publish");
    let confirmation = within(confirm).await.expect("confirm");
    let ret = confirmation.take_message().expect("returned message");
    assert_eq!(ret.delivery.data, b"lost?");
    assert_eq!(ret.reply_code, 312);
    assert_eq!(ret.reply_text.as_str(), "NO_ROUTE");
}

fn keys(items: &[&str]) -> AMQPValue {
    AMQPValue::FieldArray(
        items
            .iter()
            .map(|k| AMQPValue::LongString(k.to_string().into()))
            .collect::<Vec<_>>()
            .into(),
    )
}

/// Sender-selected distribution (RabbitMQ's `CC`/`BCC`): the extra keys route through the same
/// exchange; a queue matched by several keys gets one copy; `BCC` is gone on delivery, `CC`
/// stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cc_and_bcc_route_to_extra_keys_and_bcc_is_removed() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let (main, cc, bcc, both, none) = (
        queue(&ch).await,
        queue(&ch).await,
        queue(&ch).await,
        queue(&ch).await,
        queue(&ch).await,
    );
    for (q, k) in [
        (&main, "k.main"),
        (&cc, "k.cc"),
        (&bcc, "k.bcc"),
        (&both, "k.main"),
        (&both, "k.cc"),
        (&none, "k.other"),
    ] {
        bind(&ch, q, "amq.direct", k, FieldTable::default()).await;
    }
    let headers = table(&[
        ("CC", keys(&["k.cc"])),
        ("BCC", keys(&["k.bcc"])),
        ("keep", AMQPValue::LongString("v".into())),
    ]);
    publish(
        &ch,
        "amq.direct",
        "k.main",
        b"m",
        BasicProperties::default().with_headers(headers),
    )
    .await;
    for q in [&main, &cc, &bcc, &both] {
        let m = within(ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }))
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{q} got nothing"));
        assert_eq!(m.delivery.routing_key.as_str(), "k.main");
        let h = m.delivery.properties.headers().clone().expect("headers");
        let h = h.inner();
        assert!(h.contains_key("CC") && h.contains_key("keep"), "{h:?}");
        assert!(!h.contains_key("BCC"), "BCC delivered: {h:?}");
    }
    // One copy each, and nothing for the unrelated key.
    for q in [&main, &cc, &bcc, &both, &none] {
        assert!(drain(&ch, q).await.is_empty(), "{q} got a second copy");
    }

    // Topic patterns and the default exchange match CC keys too.
    let t = queue(&ch).await;
    bind(&ch, &t, "amq.topic", "cc.*", FieldTable::default()).await;
    let d = queue(&ch).await;
    let h = table(&[("CC", keys(&["cc.x", &d]))]);
    publish(
        &ch,
        "amq.topic",
        "nothing",
        b"t",
        BasicProperties::default().with_headers(h.clone()),
    )
    .await;
    publish(
        &ch,
        "",
        "no-such-queue",
        b"d",
        BasicProperties::default().with_headers(h),
    )
    .await;
    assert_eq!(drain(&ch, &t).await, ["t"]);
    assert_eq!(drain(&ch, &d).await, ["d"]);
}

/// A `CC` header that is not an array refuses the publish with RabbitMQ's 406
/// (tests/fixtures/rabbitmq-3.10/routing_headers.json).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cc_header_of_the_wrong_type_is_a_precondition_failure() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let q = queue(&ch).await;
    // The publish has no reply and the channel closes later: the raw client reads the close
    // off the wire (through lapin, the next method races it and may fail without its reason).
    use lagomorph::protocol::properties::{BasicProperties as Props, Properties};
    use lagomorph::protocol::types::{FieldTable as Table, FieldValue, LongStr, ShortStr};
    let props = Properties::from(&Props {
        headers: Some(Table(vec![(
            ShortStr::from_static("CC"),
            FieldValue::LongStr(LongStr::from("k")),
        )])),
        ..Default::default()
    });
    let mut raw = support::raw::Raw::connect(b.addr).await;
    raw.open_channel(1).await;
    raw.publish_with(1, "", &q, b"x", &props).await;
    let (code, text) = raw.expect_channel_close(1).await;
    assert_eq!(code, 406);
    assert_eq!(
        text,
        support::rabbitmq("routing_headers")["cc_header_not_an_array"]["text"]
            .as_str()
            .expect("recorded text")
    );
}

/// A publishing channel remembers the exchange and queue it last published to; deleting and
/// declaring them again from another channel must not leave it publishing to the old ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_follows_exchanges_and_queues_declared_again() {
    let b = start().await;
    let (_c, p) = b.channel().await;
    within(p.confirm_select(ConfirmSelectOptions::default()))
        .await
        .expect("confirm mode");
    // Confirmed: routed and pushed before anything else happens.
    let publish = |x: &str, key: &str, body: &'static [u8]| {
        let (p, x, key) = (p.clone(), x.to_string(), key.to_string());
        async move {
            let confirm = within(p.basic_publish(
                x.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            ))
            .await
            .expect("publish");
            assert!(within(confirm).await.expect("confirm").is_ack());
        }
    };
    let (_c2, admin) = b.channel().await;
    let named = |n: &str| {
        let n = n.to_string();
        let admin = admin.clone();
        async move {
            within(admin.queue_declare(
                n.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            ))
            .await
            .expect("declare");
        }
    };
    let q = unique("again");
    named(&q).await;
    publish("", &q, b"one").await;
    within(admin.queue_delete(q.as_str().into(), QueueDeleteOptions::default()))
        .await
        .expect("delete");
    named(&q).await;
    publish("", &q, b"two").await;
    assert_eq!(drain(&admin, &q).await, ["two"]);

    let x = unique("again-x");
    let (q1, q2) = (queue(&admin).await, queue(&admin).await);
    declare_x(&admin, &x, ExchangeKind::Fanout).await;
    bind(&admin, &q1, &x, "", FieldTable::default()).await;
    publish(&x, "", b"one").await;
    within(admin.exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default()))
        .await
        .expect("delete exchange");
    declare_x(&admin, &x, ExchangeKind::Fanout).await;
    bind(&admin, &q2, &x, "", FieldTable::default()).await;
    publish(&x, "", b"two").await;
    assert_eq!(drain(&admin, &q1).await, ["one"]);
    assert_eq!(drain(&admin, &q2).await, ["two"]);
}
