//! Permissions, topic permissions, limits, revocation and user deletion over AMQP, through
//! lapin, against the texts RabbitMQ 3.10.8 answered in the same cases
//! (tests/fixtures/rabbitmq-3.10/security.json, recorded by interop/record/security.py with
//! the same users, patterns and objects).

mod support;

use lagomorph::broker::access::{LimitMap, TopicPermission};
use lagomorph::broker::{Permission, User};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use support::{TestBroker, amqp_error, rabbitmq, start, within};

/// RabbitMQ's answer in case `name`: (code, text).
fn recorded(name: &str) -> (u16, String) {
    let fx = rabbitmq("security");
    let c = &fx[name];
    if let Some(code) = c["code"].as_u64() {
        return (code as u16, c["text"].as_str().expect("text").to_string());
    }
    // A refused connection.open, as pika words it: `...ConnectionClosedByBroker: (530)
    // "TEXT"...`, quotes inside escaped.
    let repr = c["repr"].as_str().expect("repr");
    let at = repr.find("ConnectionClosedByBroker: (").expect("code") + 27;
    let code: u16 = repr[at..at + 3].parse().expect("code");
    let text = &repr[at + 6..];
    let text = &text[..text.find('"').expect("end")];
    (code, text.replace("\\'", "'"))
}

fn perm(user: &str, vhost: &str, c: &str, w: &str, r: &str) -> Permission {
    Permission {
        user: user.into(),
        vhost: vhost.into(),
        configure: c.into(),
        write: w.into(),
        read: r.into(),
    }
}

/// The recording's setup: user u/p with `^u-conf.*`, `^u-write.*|^amq\.default$`,
/// `^u-read.*` in `/`, vhost `/x` without permissions for u, and the queues and exchanges
/// made by guest.
async fn setup() -> TestBroker {
    let b = start().await;
    let a = b.broker.access();
    a.put_user(User {
        name: "u".into(),
        password_hash: lagomorph::password::hash_password("p"),
        tags: vec![],
    })
    .expect("user");
    a.put_permission(perm(
        "u",
        "/",
        "^u-conf.*",
        "^u-write.*|^amq\\.default$",
        "^u-read.*",
    ))
    .expect("perm");
    b.broker
        .put_vhost(lagomorph::broker::access::VhostInfo::named("/x"))
        .expect("vhost");
    let (c, ch) = b.channel().await;
    for q in ["u-conf-q", "u-write-q", "u-read-q", "other-q"] {
        within(ch.queue_declare(
            q.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("queue");
    }
    for x in ["u-read-x", "u-write-x", "other-x"] {
        within(ch.exchange_declare(
            x.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await
        .expect("exchange");
    }
    // Closed (not dropped): the connection limits count it until the broker has seen it go.
    within(c.close(200, "bye".into())).await.expect("close");
    b
}

async fn connect_as(b: &TestBroker, user: &str, vhost: &str) -> lapin::Result<Connection> {
    let vhost = vhost.replace('/', "%2f");
    let uri = format!("amqp://{user}:p@{}/{vhost}", b.addr);
    within(Connection::connect(&uri, ConnectionProperties::default())).await
}

async fn channel(c: &Connection) -> Channel {
    within(c.create_channel()).await.expect("channel")
}

#[track_caller]
fn refused<T: std::fmt::Debug>(r: lapin::Result<T>, case: &str) {
    let e = r.expect_err("expected a refusal");
    assert_eq!(amqp_error(&e), Some(recorded(case)), "{case}");
}

/// Publishes with confirms; Ok(()) when acked, the channel's error otherwise.
async fn publish(ch: &Channel, exchange: &str, key: &str) -> lapin::Result<()> {
    within(ch.confirm_select(ConfirmSelectOptions::default())).await?;
    let confirm = within(ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    ))
    .await?;
    within(confirm).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_permission_kind_allows_and_refuses_as_rabbitmq() {
    let b = setup().await;
    refused(
        connect_as(&b, "u", "/x").await,
        "open_vhost_without_permissions",
    );
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let no = QueueDeclareOptions::default();
    let none = FieldTable::default;

    // configure
    let ch = channel(&c).await;
    within(ch.queue_declare("u-conf-new".into(), no, none()))
        .await
        .expect("allowed");
    refused(
        within(ch.queue_declare("other-new".into(), no, none())).await,
        "queue_declare_refused",
    );
    let ch = channel(&c).await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..no
    };
    within(ch.queue_declare("other-q".into(), passive, none()))
        .await
        .expect("a passive declare needs no configure");
    let xopts = ExchangeDeclareOptions::default();
    refused(
        within(ch.exchange_declare("other-new-x".into(), ExchangeKind::Direct, xopts, none()))
            .await,
        "exchange_declare_refused",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.queue_delete("other-q".into(), QueueDeleteOptions::default())).await,
        "queue_delete_refused",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.exchange_delete("other-x".into(), ExchangeDeleteOptions::default())).await,
        "exchange_delete_refused",
    );

    // write
    let ch = channel(&c).await;
    publish(&ch, "u-write-x", "k").await.expect("allowed");
    publish(&ch, "", "other-q")
        .await
        .expect("the default exchange is amq.default");
    refused(
        publish(&ch, "other-x", "k").await,
        "publish_refused_other_exchange",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.queue_bind(
            "u-read-q".into(),
            "u-read-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            none(),
        ))
        .await,
        "bind_needs_write_on_queue",
    );

    // read
    let ch = channel(&c).await;
    refused(
        within(ch.queue_bind(
            "u-write-q".into(),
            "u-write-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            none(),
        ))
        .await,
        "bind_needs_read_on_exchange",
    );
    let ch = channel(&c).await;
    within(ch.basic_get("u-read-q".into(), BasicGetOptions::default()))
        .await
        .expect("get allowed");
    within(ch.queue_purge("u-read-q".into(), QueuePurgeOptions::default()))
        .await
        .expect("purge allowed");
    refused(
        within(ch.basic_get("other-q".into(), BasicGetOptions::default())).await,
        "get_refused",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.queue_purge("other-q".into(), QueuePurgeOptions::default())).await,
        "purge_refused",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.basic_consume(
            "other-q".into(),
            "".into(),
            BasicConsumeOptions::default(),
            none(),
        ))
        .await,
        "consume_refused",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_exchange_bind_dlx_and_server_named_queues() {
    let b = setup().await;
    b.broker
        .access()
        .put_permission(perm("u", "/", "^u-conf.*", "^u-write.*", "^u-read.*"))
        .expect("perm");
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let ch = channel(&c).await;
    refused(
        publish(&ch, "", "other-q").await,
        "publish_default_exchange_refused",
    );
    let ch = channel(&c).await;
    let xb = ExchangeBindOptions::default;
    within(ch.exchange_bind(
        "u-write-x".into(),
        "u-read-x".into(),
        "k".into(),
        xb(),
        FieldTable::default(),
    ))
    .await
    .expect("allowed");
    refused(
        within(ch.exchange_bind(
            "u-read-x".into(),
            "u-read-x".into(),
            "k".into(),
            xb(),
            FieldTable::default(),
        ))
        .await,
        "exchange_bind_needs_write_on_destination",
    );
    let ch = channel(&c).await;
    refused(
        within(ch.exchange_bind(
            "u-write-x".into(),
            "u-write-x".into(),
            "k".into(),
            xb(),
            FieldTable::default(),
        ))
        .await,
        "exchange_bind_needs_read_on_source",
    );
    let ch = channel(&c).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        lapin::types::AMQPValue::LongString("other-x".into()),
    );
    refused(
        within(ch.queue_declare("u-conf-dlx".into(), QueueDeclareOptions::default(), args)).await,
        "queue_declare_dlx_needs_write",
    );
    let ch = channel(&c).await;
    let e = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("server-named needs configure on amq.gen-…");
    let (code, text) = amqp_error(&e).expect("amqp error");
    let (rcode, rtext) = recorded("server_named_queue_refused");
    assert_eq!(code, rcode);
    let shape = |t: &str| {
        let start = t.find("amq.gen-").expect("generated name");
        format!("{}{}", &t[..start], &t[start + "amq.gen-".len() + 22..])
    };
    assert_eq!(shape(&text), shape(&rtext));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions_on_publish_and_bind() {
    let b = setup().await;
    let a = b.broker.access();
    a.put_permission(perm("u", "/", ".*", ".*", ".*"))
        .expect("perm");
    a.put_topic_permission(TopicPermission {
        user: "u".into(),
        vhost: "/".into(),
        exchange: "amq.topic".into(),
        write: "^{username}\\..*".into(),
        read: "^r\\..*".into(),
    })
    .expect("topic");
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let ch = channel(&c).await;
    publish(&ch, "amq.topic", "u.a").await.expect("allowed");
    refused(
        publish(&ch, "amq.topic", "v.a").await,
        "topic_write_refused",
    );
    let ch = channel(&c).await;
    let bind = |key: &'static str| {
        ch.queue_bind(
            "u-read-q".into(),
            "amq.topic".into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
    };
    within(bind("r.y")).await.expect("allowed");
    refused(within(bind("x.y")).await, "topic_read_bind_refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_permission_applies_to_an_open_connection() {
    let b = setup().await;
    let a = b.broker.access();
    a.put_permission(perm("u", "/", ".*", ".*", ".*"))
        .expect("perm");
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let ch = channel(&c).await;
    within(ch.queue_declare(
        "u-conf-before".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("allowed before");
    assert!(a.delete_permission("/", "u").expect("revoke"));
    let e = within(ch.queue_declare(
        "u-conf-after".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("refused after");
    let want = &rabbitmq("security")["revoke_permissions_open_connection"]["result"]["declare"];
    assert_eq!(
        amqp_error(&e),
        Some((
            want["code"].as_u64().expect("code") as u16,
            want["text"].as_str().expect("text").into()
        ))
    );
    assert!(
        c.status().connected(),
        "the connection stays open, as in RabbitMQ"
    );
    // Given back, the next operation on the same connection is allowed again.
    a.put_permission(perm("u", "/", ".*", ".*", ".*"))
        .expect("perm");
    let ch = channel(&c).await;
    within(ch.queue_declare(
        "u-conf-after".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("allowed again");
}

/// The code and text of the connection error the broker sent (bounded wait).
async fn closed_by_broker(
    events: &mut (impl futures_lite::Stream<Item = lapin::Event> + Unpin),
) -> Option<(u16, String)> {
    use futures_lite::StreamExt;
    loop {
        match within(events.next()).await? {
            lapin::Event::Error(e) => return amqp_error(&e),
            _ => continue,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections_with_320() {
    let b = setup().await;
    b.broker
        .access()
        .put_permission(perm("u", "/", ".*", ".*", ".*"))
        .expect("perm");
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let mut events = Box::pin(c.events_listener());
    let other = b.connect().await;
    assert!(b.broker.delete_user("u").expect("delete"));
    let got = closed_by_broker(&mut events).await;
    let want = &rabbitmq("security")["delete_user_closes_connection"]["result"];
    assert_eq!(
        got,
        Some((
            want["code"].as_u64().expect("code") as u16,
            want["text"].as_str().expect("text").into()
        ))
    );
    assert!(other.status().connected(), "other users' connections stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_with_320() {
    let b = setup().await;
    b.broker
        .access()
        .put_permission(perm("u", "/x", ".*", ".*", ".*"))
        .expect("perm");
    let c = connect_as(&b, "u", "/x").await.expect("connect");
    let mut events = Box::pin(c.events_listener());
    assert!(b.broker.delete_vhost("/x").expect("delete"));
    let got = closed_by_broker(&mut events).await;
    // RabbitMQ's text names the recorded vhost '/y'.
    let want = &rabbitmq("security")["delete_vhost_closes_connection"]["result"];
    let text = want["text"].as_str().expect("text").replace("'/y'", "'/x'");
    assert_eq!(
        got,
        Some((want["code"].as_u64().expect("code") as u16, text))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_and_user_limits_with_rabbitmq_texts() {
    let b = setup().await;
    let a = b.broker.access();
    a.put_permission(perm("u", "/", ".*", ".*", ".*"))
        .expect("perm");
    let existing = b.broker.vhost("/").expect("/").queues().len() as i64;
    a.set_vhost_limits("/", LimitMap::from([("max-queues".into(), existing + 1)]))
        .expect("limits");
    let c = connect_as(&b, "u", "/").await.expect("connect");
    let ch = channel(&c).await;
    within(ch.queue_declare(
        "u-q1".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("under the limit");
    let e = within(ch.queue_declare(
        "u-q2".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("over the limit");
    let (code, text) = recorded("vhost_max_queues");
    let text = text
        .replace("'u-q1'", "'u-q2'")
        .replace("(1)", &format!("({})", existing + 1));
    assert_eq!(amqp_error(&e), Some((code, text)));
    within(c.close(200, "bye".into())).await.expect("close");
    a.set_vhost_limits("/", LimitMap::from([("max-connections".into(), 1)]))
        .expect("limits");
    let keep = b.connect().await;
    let uri = format!("amqp://guest:guest@{}/%2f", b.addr);
    refused(
        within(Connection::connect(&uri, ConnectionProperties::default())).await,
        "vhost_max_connections",
    );
    within(keep.close(200, "bye".into())).await.expect("close");
    a.set_vhost_limits("/", LimitMap::new()).expect("clear");

    a.set_user_limits(
        "u",
        LimitMap::from([("max-connections".into(), 1), ("max-channels".into(), 2)]),
    )
    .expect("user limits");
    let keep = connect_as(&b, "u", "/").await.expect("first");
    refused(connect_as(&b, "u", "/").await, "user_max_connections");
    // Held: lapin closes a dropped channel.
    let _c1 = channel(&keep).await;
    let _c2 = channel(&keep).await;
    refused(within(keep.create_channel()).await, "user_max_channels");
}
