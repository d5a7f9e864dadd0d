//! Queue arguments through lapin: every declare, redeclare and per-message expiration case
//! that interop/record/queues.py recorded from RabbitMQ 3.10 gets the same reply code and text
//! here (tests/fixtures/rabbitmq-3.10/queues.json), except where we chose to differ (said
//! below).

mod support;

use lapin::Channel;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString};
use serde_json::Value;
use support::table;
use support::{TestBroker, amqp_error, rabbitmq, start, within};

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

fn i(v: i32) -> AMQPValue {
    AMQPValue::LongInt(v)
}

fn l(v: i64) -> AMQPValue {
    AMQPValue::LongLongInt(v)
}

/// What RabbitMQ answered: `Ok(())` or `(code, text)`.
fn recorded(fixture: &Value, case: &str) -> Result<(), (u16, String)> {
    let c = &fixture[case];
    if c["ok"] == Value::Bool(true) {
        return Ok(());
    }
    let code = c["code"]
        .as_u64()
        .unwrap_or_else(|| panic!("{case}: no code in {c}"));
    Err((code as u16, c["text"].as_str().unwrap_or("").to_string()))
}

fn outcome<T>(r: lapin::Result<T>) -> Result<(), (u16, String)> {
    match r {
        Ok(_) => Ok(()),
        Err(e) => Err(amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP error: {e:?}"))),
    }
}

async fn channel(b: &TestBroker, conn: &lapin::Connection) -> Channel {
    let _ = b;
    within(conn.create_channel()).await.expect("channel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declare_checks_answer_as_rabbitmq() {
    let fx = rabbitmq("queues");
    let b = start().await;
    let conn = b.connect().await;
    let cases: Vec<(&str, FieldTable)> = vec![
        ("ttl_negative", table(&[("x-message-ttl", i(-1))])),
        ("ttl_string", table(&[("x-message-ttl", s("1000"))])),
        (
            "ttl_2_pow_32",
            table(&[("x-message-ttl", l(4_294_967_296))]),
        ),
        (
            "ttl_ten_years",
            table(&[("x-message-ttl", l(315_360_000_000))]),
        ),
        (
            "ttl_too_large",
            table(&[("x-message-ttl", l(315_360_000_001))]),
        ),
        ("ttl_zero", table(&[("x-message-ttl", i(0))])),
        ("expires_zero", table(&[("x-expires", i(0))])),
        ("expires_negative", table(&[("x-expires", i(-5))])),
        ("expires_string", table(&[("x-expires", s("x"))])),
        ("dlx_int", table(&[("x-dead-letter-exchange", i(5))])),
        (
            "dlrk_without_dlx",
            table(&[("x-dead-letter-routing-key", s("k"))]),
        ),
        (
            "dlrk_int",
            table(&[
                ("x-dead-letter-exchange", s("x")),
                ("x-dead-letter-routing-key", i(5)),
            ]),
        ),
        ("max_length_negative", table(&[("x-max-length", i(-1))])),
        ("max_length_string", table(&[("x-max-length", s("10"))])),
        (
            "max_length_bytes_negative",
            table(&[("x-max-length-bytes", i(-1))]),
        ),
        ("overflow_unknown", table(&[("x-overflow", s("nope"))])),
        ("overflow_int", table(&[("x-overflow", i(1))])),
        (
            "two_bad_ttl_and_max_length",
            table(&[("x-max-length", i(-2)), ("x-message-ttl", i(-1))]),
        ),
        ("unknown_x_arg", table(&[("x-whatever", s("kept"))])),
    ];
    for (label, args) in cases {
        let name = format!("args-{label}");
        let ch = channel(&b, &conn).await;
        let got = outcome(
            within(ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), args))
                .await,
        );
        assert_eq!(got, recorded(&fx, &format!("declare_{label}")), "{label}");
    }
    // Where we differ on purpose: every queue type has a delivery limit here (RabbitMQ's
    // classic queues refuse the argument), checked as a non-negative integer.
    let ch = channel(&b, &conn).await;
    within(ch.queue_declare(
        "args-delivery-limit".into(),
        QueueDeclareOptions::default(),
        table(&[("x-delivery-limit", i(5))]),
    ))
    .await
    .expect("x-delivery-limit on a classic queue");
    let got = outcome(
        within(ch.queue_declare(
            "args-delivery-limit-negative".into(),
            QueueDeclareOptions::default(),
            table(&[("x-delivery-limit", i(-1))]),
        ))
        .await,
    );
    assert_eq!(
        got,
        Err((
            406,
            "PRECONDITION_FAILED - invalid arg 'x-delivery-limit' for queue \
             'args-delivery-limit-negative' in vhost '/': {value_negative,-1}"
                .into()
        ))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclare_equivalence_answers_as_rabbitmq() {
    let fx = rabbitmq("queues");
    let b = start().await;
    let conn = b.connect().await;
    let cases: Vec<(&str, FieldTable, FieldTable)> = vec![
        (
            "ttl_changed",
            table(&[("x-message-ttl", i(1000))]),
            table(&[("x-message-ttl", i(2000))]),
        ),
        (
            "ttl_removed",
            table(&[("x-message-ttl", i(1000))]),
            table(&[]),
        ),
        (
            "ttl_added",
            table(&[]),
            table(&[("x-message-ttl", i(1000))]),
        ),
        (
            "ttl_same_value_other_int_type",
            table(&[("x-message-ttl", i(1000))]),
            table(&[("x-message-ttl", i(1000))]),
        ),
        (
            "ttl_long_vs_signedint_same_value",
            table(&[("x-message-ttl", i(1000))]),
            table(&[("x-message-ttl", l(1000))]),
        ),
        (
            "dlx_changed",
            table(&[("x-dead-letter-exchange", s("a"))]),
            table(&[("x-dead-letter-exchange", s("b"))]),
        ),
        (
            "max_length_changed",
            table(&[("x-max-length", i(1))]),
            table(&[("x-max-length", i(2))]),
        ),
        (
            "overflow_changed",
            table(&[("x-overflow", s("drop-head"))]),
            table(&[("x-overflow", s("reject-publish"))]),
        ),
        (
            "expires_changed",
            table(&[("x-expires", i(1000))]),
            table(&[("x-expires", i(2000))]),
        ),
        (
            "unknown_changed",
            table(&[("x-whatever", i(1))]),
            table(&[("x-whatever", i(2))]),
        ),
    ];
    for (label, first, second) in cases {
        let name = if label == "ttl_long_vs_signedint_same_value" {
            "redeclare-long".to_string()
        } else {
            format!("redeclare-{label}")
        };
        let ch = channel(&b, &conn).await;
        within(ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), first))
            .await
            .expect("first declare");
        let got = outcome(
            within(ch.queue_declare(name.as_str().into(), QueueDeclareOptions::default(), second))
                .await,
        );
        assert_eq!(got, recorded(&fx, &format!("redeclare_{label}")), "{label}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_expiration_is_checked_as_rabbitmq() {
    use lagomorph::protocol::method::{ChannelClose, Method, QueueDeclare};
    use lagomorph::protocol::properties::{BasicProperties as Props, Properties};
    use lagomorph::protocol::types::ShortStr;
    let fx = rabbitmq("queues");
    let b = start().await;
    let mut r = support::raw::Raw::connect(b.addr).await;
    for (n, (label, value)) in [
        ("foo", "foo"),
        ("negative", "-1"),
        ("suffix", "10ms"),
        ("2_pow_32", "4294967296"),
        ("too_large", "315360000001"),
        ("plus", "+5"),
        ("space", " 5"),
        ("empty", ""),
        ("zero", "0"),
    ]
    .into_iter()
    .enumerate()
    {
        let ch = n as u16 + 1;
        r.open_channel(ch).await;
        let declare: Method = QueueDeclare {
            queue: ShortStr::from_static("exp-q"),
            ..Default::default()
        }
        .into();
        assert!(matches!(
            r.call(ch, declare.clone()).await,
            Method::QueueDeclareOk(_)
        ));
        let props = Properties::from(&Props {
            expiration: Some(ShortStr::try_from(value).expect("short")),
            ..Default::default()
        });
        r.publish_with(ch, "", "exp-q", b"x", &props).await;
        // Accepted: the next method gets its reply; refused: the channel is closed.
        let got = match r.call(ch, declare).await {
            Method::QueueDeclareOk(_) => Ok(()),
            Method::ChannelClose(ChannelClose {
                reply_code,
                reply_text,
                ..
            }) => {
                r.send(ch, lagomorph::protocol::method::ChannelCloseOk.into())
                    .await;
                Err((reply_code, reply_text.to_string()))
            }
            other => panic!("{label}: unexpected {other:?}"),
        };
        assert_eq!(
            got,
            recorded(&fx, &format!("expiration_{label}")),
            "{label}"
        );
    }
}
