//! Reply codes and texts for refused operations, as RabbitMQ words them.

mod support;

use lagomorph::broker::BrokerOptions;
use lapin::ExchangeKind;
use lapin::options::*;
use lapin::types::FieldTable;
use support::raw::Raw;
use support::{assert_amqp_err, start, start_with, unique, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declares_of_missing_objects() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    assert_amqp_err(
        within(ch.exchange_declare(
            "ghost".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        404,
        "NOT_FOUND - no exchange 'ghost' in vhost '/'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch.queue_declare(
            "ghost".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        404,
        "NOT_FOUND - no queue 'ghost' in vhost '/'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch.queue_bind(
            "ghost".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await,
        404,
        "NOT_FOUND - no queue 'ghost' in vhost '/'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("q");
    assert_amqp_err(
        within(ch.queue_bind(
            q.name().as_str().into(),
            "ghost-x".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await,
        404,
        "NOT_FOUND - no exchange 'ghost-x' in vhost '/'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch.basic_consume(
            "ghost".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ))
        .await,
        404,
        "NOT_FOUND - no queue 'ghost' in vhost '/'",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inequivalent_redeclares_are_precondition_failed() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    let x = unique("x");
    within(ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    assert_amqp_err(
        within(ch.exchange_declare(
            x.as_str().into(),
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'type' for exchange '{x}' in vhost '/': received 'fanout' but current is 'direct'"
        ),
    );
    let ch = within(c.create_channel()).await.expect("channel");
    let q = unique("q");
    within(ch.queue_declare(
        q.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    assert_amqp_err(
        within(ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await,
        406,
        &format!(
            "PRECONDITION_FAILED - inequivalent arg 'durable' for queue '{q}' in vhost '/': received 'true' but current is 'false'"
        ),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_names_and_the_default_exchange_are_refused() {
    let b = start().await;
    let (c, ch) = b.channel().await;
    assert_amqp_err(
        within(ch.exchange_declare(
            "amq.mine".into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403,
        "ACCESS_REFUSED - exchange name 'amq.mine' contains reserved prefix 'amq.*'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch.queue_declare(
            "amq.q".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403,
        "ACCESS_REFUSED - queue name 'amq.q' contains reserved prefix 'amq.*'",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    assert_amqp_err(
        within(ch.exchange_delete("".into(), ExchangeDeleteOptions::default())).await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    let ch = within(c.create_channel()).await.expect("channel");
    let q = within(ch.queue_declare(
        "".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("q");
    assert_amqp_err(
        within(ch.queue_bind(
            q.name().as_str().into(),
            "".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ))
        .await,
        403,
        "ACCESS_REFUSED - operation not permitted on the default exchange",
    );
    // The pre-declared exchanges exist and may be redeclared as they are.
    let ch = within(c.create_channel()).await.expect("channel");
    for (name, kind) in [
        ("amq.direct", ExchangeKind::Direct),
        ("amq.fanout", ExchangeKind::Fanout),
        ("amq.topic", ExchangeKind::Topic),
        ("amq.headers", ExchangeKind::Headers),
        ("amq.match", ExchangeKind::Headers),
    ] {
        within(ch.exchange_declare(
            name.into(),
            kind,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_exchange_type_is_command_invalid() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let e = within(ch.exchange_declare(
        "weird".into(),
        ExchangeKind::Custom("x-nothing".into()),
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect_err("refused");
    assert_eq!(
        support::amqp_error(&e),
        Some((
            503,
            "COMMAND_INVALID - invalid exchange type 'x-nothing'".into()
        ))
    );
}

// Errors caused by asynchronous methods (publish, ack) close the channel later; the raw client
// sees the exact channel.close, with no race against the client library's own state.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_to_missing_exchange_is_not_found() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.publish(1, "nope", "k", b"x", false).await;
    assert_eq!(
        r.expect_channel_close(1).await,
        (404, "NOT_FOUND - no exchange 'nope' in vhost '/'".into())
    );
    // The connection survives a channel error.
    r.open_channel(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishing_to_an_internal_exchange_is_refused() {
    let b = start().await;
    let (_c, ch) = b.channel().await;
    let x = unique("internal");
    within(ch.exchange_declare(
        x.as_str().into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions {
            internal: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.publish(1, &x, "", b"x", false).await;
    assert_eq!(
        r.expect_channel_close(1).await,
        (
            403,
            format!("ACCESS_REFUSED - cannot publish to internal exchange '{x}' in vhost '/'")
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn immediate_is_not_implemented() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.publish(1, "", "q", b"x", true).await;
    let (code, text, class, method) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str(), class, method),
        (540, "NOT_IMPLEMENTED - immediate=true", 60, 40)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_precondition_failed() {
    let mut opts = BrokerOptions::default();
    opts.limits.max_message_size = 1000;
    let b = start_with(opts).await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.publish(1, "", "q", &[0u8; 2000], false).await;
    assert_eq!(
        r.expect_channel_close(1).await,
        (
            406,
            "PRECONDITION_FAILED - message size 2000 is larger than configured max size 1000"
                .into()
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_delivery_tag_is_precondition_failed() {
    let b = start().await;
    let mut r = Raw::connect(b.addr).await;
    r.open_channel(1).await;
    r.send(
        1,
        lagomorph::protocol::method::BasicAck {
            delivery_tag: 82,
            multiple: false,
        }
        .into(),
    )
    .await;
    assert_eq!(
        r.expect_channel_close(1).await,
        (406, "PRECONDITION_FAILED - unknown delivery tag 82".into())
    );
}
