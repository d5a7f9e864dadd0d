//! Policies and operator policies through the management API, answered as RabbitMQ 3.10
//! answered the same requests (tests/fixtures/rabbitmq-3.10/queues.json, "policies"), applied
//! at once to existing and new queues, shown on /api/queues, and kept in definitions.

mod support;

use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestBroker, rabbitmq, start, within};
use tokio_util::sync::CancellationToken;

/// The management API of a test broker, on another port 0.
struct Api {
    base: String,
    http: reqwest::Client,
    token: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn api(b: &TestBroker) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let token = CancellationToken::new();
    tokio::spawn(lagomorph::management::serve(
        listener,
        b.broker.clone(),
        token.clone(),
    ));
    Api {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        token,
    }
}

impl Api {
    /// `{"status": …, "body": …}`, the recordings' shape (body null when empty).
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/api{path}", self.base))
            .basic_auth("guest", Some("guest"))
            .header("content-type", "application/json");
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let r = within(req.send()).await.expect("request");
        let status = r.status().as_u16();
        let text = within(r.text()).await.expect("body");
        json!({"status": status, "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)})
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_requests_are_answered_as_rabbitmq() {
    let fx = rabbitmq("queues");
    let rec = &fx["policies"];
    let b = start().await;
    let a = api(&b).await;
    use reqwest::Method;
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "ttl_negative",
            "policies",
            json!({"pattern": "^q", "definition": {"message-ttl": -1}}),
        ),
        (
            "unknown_key",
            "policies",
            json!({"pattern": "^q", "definition": {"foo": 1}}),
        ),
        (
            "unknown_and_bad_key",
            "policies",
            json!({"pattern": "^q", "definition": {"foo": 1, "max-length": -2}}),
        ),
        (
            "ttl_string_and_bad_max_length",
            "policies",
            json!({"pattern": "^q", "definition": {"message-ttl": "x", "max-length": -2}}),
        ),
        (
            "float_max_length",
            "policies",
            json!({"pattern": "^q", "definition": {"max-length": 1.5}}),
        ),
        (
            "dlx_int",
            "policies",
            json!({"pattern": "^q", "definition": {"dead-letter-exchange": 5}}),
        ),
        (
            "bad_overflow",
            "policies",
            json!({"pattern": "^q", "definition": {"overflow": "x"}}),
        ),
        (
            "expires_zero",
            "policies",
            json!({"pattern": "^q", "definition": {"expires": 0}}),
        ),
        (
            "delivery_limit_negative",
            "policies",
            json!({"pattern": "^q", "definition": {"delivery-limit": -1}}),
        ),
        (
            "empty_definition",
            "policies",
            json!({"pattern": "^q", "definition": {}}),
        ),
        (
            "no_pattern",
            "policies",
            json!({"definition": {"message-ttl": 1}}),
        ),
        (
            "bad_apply_to",
            "policies",
            json!({"pattern": "^q", "apply-to": "foo", "definition": {"message-ttl": 1}}),
        ),
        (
            "bad_priority",
            "policies",
            json!({"pattern": "^q", "priority": "x", "definition": {"message-ttl": 1}}),
        ),
        (
            "ha_and_queue_mode_accepted",
            "policies",
            json!({"pattern": "^zz-never", "definition": {"ha-mode": "all", "queue-mode": "lazy"}}),
        ),
        (
            "op_dlx_not_allowed",
            "operator-policies",
            json!({"pattern": "^q", "definition": {"dead-letter-exchange": "x"}}),
        ),
        (
            "op_overflow_not_allowed",
            "operator-policies",
            json!({"pattern": "^q", "definition": {"overflow": "reject-publish"}}),
        ),
        (
            "op_allowed_keys",
            "operator-policies",
            json!({"pattern": "^zz-never", "definition": {"expires": 1000, "message-ttl": 5,
                "max-length-bytes": 5, "delivery-limit": 3, "max-in-memory-length": 3,
                "max-in-memory-bytes": 3}}),
        ),
    ];
    for (label, kind, body) in cases {
        let name = format!("rec-{}", label.replace('_', "-"));
        let got = a
            .call(Method::PUT, &format!("/{kind}/%2F/{name}"), Some(body))
            .await;
        assert_eq!(got, rec[label], "{label}");
        a.call(Method::DELETE, &format!("/{kind}/%2F/{name}"), None)
            .await;
    }
    let body = json!({"pattern": "^q", "definition": {"message-ttl": 1}});
    assert_eq!(
        a.call(Method::PUT, "/policies/nosuch/p", Some(body)).await,
        rec["put_vhost_missing"]
    );
    assert_eq!(
        a.call(Method::GET, "/policies/%2F/nope", None).await,
        rec["get_missing"]
    );
    assert_eq!(
        a.call(Method::DELETE, "/policies/%2F/nope", None).await,
        rec["delete_missing"]
    );
}

fn s(v: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(v))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_apply_to_queues_as_rabbitmq_shows_them() {
    use reqwest::Method;
    let fx = rabbitmq("queues");
    let rec = &fx["policies"];
    let b = start().await;
    let a = api(&b).await;
    let pol = json!({"pattern": "^polq$", "apply-to": "queues", "priority": 3,
        "definition": {"message-ttl": 60000, "max-length": 100, "dead-letter-exchange": "pol-dlx"}});
    assert_eq!(
        a.call(Method::PUT, "/policies/%2F/pol", Some(pol.clone()))
            .await,
        rec["create_policy"]
    );
    assert_eq!(
        a.call(Method::PUT, "/policies/%2F/pol", Some(pol)).await,
        rec["update_policy"]
    );
    assert_eq!(
        a.call(
            Method::PUT,
            "/operator-policies/%2F/op",
            Some(
                json!({"pattern": "^polq", "definition": {"max-length": 10, "message-ttl": 90000}})
            )
        )
        .await,
        rec["create_operator_policy"]
    );
    let (_c, ch) = b.channel().await;
    let mut args = FieldTable::default();
    args.insert(
        ShortString::from("x-message-ttl"),
        AMQPValue::LongInt(120000),
    );
    args.insert(ShortString::from("x-dead-letter-exchange"), s("arg-dlx"));
    within(ch.queue_declare("polq".into(), QueueDeclareOptions::default(), args))
        .await
        .expect("declare");
    let q = a.call(Method::GET, "/queues/%2F/polq", None).await["body"].clone();
    let view: Value = [
        "name",
        "arguments",
        "policy",
        "operator_policy",
        "effective_policy_definition",
        "type",
    ]
    .iter()
    .map(|k| (k.to_string(), q[*k].clone()))
    .collect::<serde_json::Map<_, _>>()
    .into();
    assert_eq!(view, rec["queue_view"]);
    // What the queue runs with: the lowest TTL (policy 60 s, operator 90 s, argument 120 s),
    // the lowest length (operator 10), and the argument's dead-letter exchange.
    let queue = b
        .broker
        .vhost("/")
        .expect("vhost")
        .queue("polq")
        .expect("q");
    let st = queue.settings();
    assert_eq!(st.message_ttl, Some(60_000));
    assert_eq!(st.max_length, Some(10));
    assert_eq!(st.dead_letter_exchange.as_deref(), Some("arg-dlx"));
    for n in 0..12 {
        within(ch.basic_publish(
            "".into(),
            "polq".into(),
            BasicPublishOptions::default(),
            format!("{n}").as_bytes(),
            BasicProperties::default(),
        ))
        .await
        .expect("publish");
    }
    // The publishes have no reply: a passive declare on the same channel is answered after
    // they were all handled.
    let count = within(ch.queue_declare(
        "polq".into(),
        QueueDeclareOptions {
            passive: true,
            ..Default::default()
        },
        FieldTable::default(),
    ))
    .await
    .expect("passive declare")
    .message_count();
    assert_eq!(count, 10, "the operator policy's max-length applies");
    assert_eq!(queue.message_count(), 10);

    assert_eq!(
        a.call(Method::GET, "/policies", None).await,
        rec["list_policies"]
    );
    assert_eq!(
        a.call(Method::GET, "/policies/%2F/pol", None).await,
        rec["get_policy"]
    );
    let defs = a.call(Method::GET, "/definitions", None).await["body"].clone();
    assert_eq!(defs["policies"], rec["definitions_policies"]);
    assert_eq!(defs["parameters"][0]["component"], "operator_policy");
    assert_eq!(
        a.call(Method::DELETE, "/policies/%2F/pol", None).await,
        rec["delete_policy"]
    );
    a.call(Method::DELETE, "/operator-policies/%2F/op", None)
        .await;
    let q = a.call(Method::GET, "/queues/%2F/polq", None).await["body"].clone();
    let view: Value = ["policy", "operator_policy", "effective_policy_definition"]
        .iter()
        .map(|k| (k.to_string(), q[*k].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(view, rec["queue_view_after_delete"]);
    assert_eq!(queue.settings().max_length, None, "applied at once");

    // A definitions import brings policies back, and they apply to the queue again.
    let r = a
        .call(
            Method::POST,
            "/definitions",
            Some(json!({"policies": defs["policies"], "parameters": defs["parameters"]})),
        )
        .await;
    assert_eq!(r["status"], 204, "{r}");
    assert_eq!(queue.policy().policy.as_deref(), Some("pol"));
    assert_eq!(queue.policy().operator_policy.as_deref(), Some("op"));
}
