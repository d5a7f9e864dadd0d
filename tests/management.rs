//! The management HTTP API against the real server: every endpoint and error status of issue 6,
//! RabbitMQ-shaped bodies, definitions from a real RabbitMQ 3.10.8 export, and /metrics parsed.

mod support;

use lagomorph::broker::vhost::QueueSpec;
use lagomorph::broker::{BrokerOptions, ConnId, User};
use lapin::options::*;
use lapin::types::FieldTable;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use support::{TestBroker, start, start_with, within};
use tokio_util::sync::CancellationToken;

/// A broker with its management API on another port 0.
struct Mgmt {
    base: String,
    http: reqwest::Client,
    b: TestBroker,
    token: CancellationToken,
}

impl Drop for Mgmt {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn mgmt_for(b: TestBroker) -> Mgmt {
    let (base, token) = support::serve_management(&b, Default::default()).await;
    Mgmt {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        b,
        token,
    }
}

async fn mgmt() -> Mgmt {
    mgmt_for(start().await).await
}

/// A response: status, headers we look at, and the body as JSON (Null when empty or not JSON).
struct Resp {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    text: String,
    json: Value,
}

impl Mgmt {
    async fn call_as(
        &self,
        user: Option<(&str, &str)>,
        method: Method,
        path: &str,
        body: Option<&str>,
    ) -> Resp {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("content-type", "application/json");
        if let Some((u, p)) = user {
            req = req.basic_auth(u, Some(p));
        }
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        let r = within(req.send()).await.expect("request");
        let status = r.status();
        let headers = r.headers().clone();
        let text = within(r.text()).await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            text,
            json,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let body = body.map(|b| b.to_string());
        self.call_as(Some(("guest", "guest")), method, path, body.as_deref())
            .await
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }
}

#[track_caller]
fn assert_error(r: &Resp, status: u16, error: &str, reason: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(
        r.json,
        json!({"error": error, "reason": reason}),
        "{}",
        r.text
    );
}

#[track_caller]
fn assert_status(r: &Resp, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
}

fn names(v: &Value) -> Vec<String> {
    let arr = v.get("items").unwrap_or(v).as_array().expect("array");
    arr.iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_string())
        .collect()
}

fn not_found(r: &Resp) {
    assert_error(r, 404, "Object Not Found", "Not Found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_and_tags() {
    let b = start_with(BrokerOptions {
        users: vec![
            User {
                name: "guest".into(),
                password_hash: lagomorph::password::hash_password("guest"),
                tags: vec!["administrator".into()],
            },
            User {
                name: "app".into(),
                password_hash: lagomorph::password::hash_password("app"),
                tags: vec![],
            },
            User {
                name: "viewer".into(),
                password_hash: lagomorph::password::hash_password("viewer"),
                tags: vec!["management".into()],
            },
        ],
        ..Default::default()
    })
    .await;
    let m = mgmt_for(b).await;
    let r = m.call_as(None, Method::GET, "/api/overview", None).await;
    assert_error(&r, 401, "not_authorized", "Login failed");
    assert_eq!(
        r.headers["www-authenticate"],
        "Basic realm=\"RabbitMQ Management\""
    );
    let r = m
        .call_as(Some(("guest", "wrong")), Method::GET, "/api/overview", None)
        .await;
    assert_error(&r, 401, "not_authorized", "Login failed");
    // No management tag: RabbitMQ 3.10 says so once the password is right
    // (tests/fixtures/rabbitmq-3.10/access-api.json, no_tag_overview).
    let r = m
        .call_as(Some(("app", "app")), Method::GET, "/api/overview", None)
        .await;
    assert_error(&r, 401, "not_authorised", "Not management user");
    // A management user gets in, but not into admin resources.
    let viewer = Some(("viewer", "viewer"));
    let r = m.call_as(viewer, Method::GET, "/api/whoami", None).await;
    assert_eq!(r.json, json!({"name": "viewer", "tags": ["management"]}));
    for path in ["/api/users", "/api/permissions", "/api/definitions"] {
        let r = m.call_as(viewer, Method::GET, path, None).await;
        assert_error(&r, 401, "not_authorised", "Not administrator user");
    }
    // It sees only vhosts it has permissions in. Configured users start with full rights on
    // the default vhost; take them away, then give them back.
    m.put("/api/queues/%2F/q", json!({})).await;
    let r = m.call_as(viewer, Method::GET, "/api/queues", None).await;
    assert_eq!(names(&r.json), ["q"]);
    assert_status(&m.delete("/api/permissions/%2F/viewer").await, 204);
    let r = m.call_as(viewer, Method::GET, "/api/queues", None).await;
    assert_eq!(r.json, json!([]));
    let r = m
        .call_as(viewer, Method::GET, "/api/queues/%2F/q", None)
        .await;
    // RabbitMQ 3.10's text for a vhost without permissions (access-api.json).
    let vhost_refused = "User not authorised to access virtual host";
    assert_error(&r, 401, "not_authorised", vhost_refused);
    let r = m
        .call_as(viewer, Method::PUT, "/api/queues/%2F/mine", Some("{}"))
        .await;
    assert_error(&r, 401, "not_authorised", vhost_refused);
    let p = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_status(&m.put("/api/permissions/%2F/viewer", p).await, 201);
    let r = m.call_as(viewer, Method::GET, "/api/queues", None).await;
    assert_eq!(names(&r.json), ["q"]);
    let r = m
        .call_as(viewer, Method::PUT, "/api/queues/%2F/mine", Some("{}"))
        .await;
    assert_status(&r, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_whoami_nodes_and_unknown_paths() {
    let m = mgmt().await;
    let r = m.get("/api/overview").await;
    assert_status(&r, 200);
    let o = &r.json;
    assert_eq!(o["product_name"], "Lagomorph");
    assert_eq!(o["product_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(o["rabbitmq_version"], "3.10.8");
    assert_eq!(o["object_totals"]["exchanges"], 6);
    assert_eq!(o["object_totals"]["queues"], 0);
    for k in ["messages", "messages_ready", "messages_unacknowledged"] {
        assert_eq!(o["queue_totals"][k], 0, "{k}");
        assert!(o["queue_totals"][format!("{k}_details")]["rate"].is_number());
    }
    for k in ["publish", "deliver_get", "ack", "redeliver", "confirm"] {
        assert!(o["message_stats"][k].is_u64(), "{k}");
        assert!(o["message_stats"][format!("{k}_details")]["rate"].is_number());
    }
    let node = o["node"].as_str().expect("node").to_string();
    assert!(node.starts_with("lagomorph@"));

    let r = m.get("/api/whoami").await;
    assert_eq!(r.json, json!({"name": "guest", "tags": ["administrator"]}));

    let r = m.get("/api/nodes").await;
    assert_eq!(names(&r.json), std::slice::from_ref(&node));
    assert_eq!(r.json[0]["running"], true);
    assert!(r.json[0]["mem_used"].as_u64().expect("mem") > 0);
    let r = m.get(&format!("/api/nodes/{node}")).await;
    assert_eq!(r.json["name"], node.as_str());
    not_found(&m.get("/api/nodes/rabbit@elsewhere").await);

    not_found(&m.get("/api/nothing").await);
    not_found(&m.get("/nothing").await);
    let r = m.call(Method::PATCH, "/api/queues", None).await;
    assert_status(&r, 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts() {
    let m = mgmt().await;
    let r = m.get("/api/vhosts").await;
    assert_eq!(names(&r.json), ["/"]);
    assert_eq!(r.json[0]["messages"], 0);
    assert!(r.json[0]["message_stats"]["publish"].is_u64());
    assert_status(
        &m.put("/api/vhosts/dev", json!({"description": "x"})).await,
        201,
    );
    assert_status(&m.put("/api/vhosts/dev", json!({})).await, 204);
    assert_eq!(m.get("/api/vhosts/dev").await.json["name"], "dev");
    assert_eq!(names(&m.get("/api/vhosts").await.json), ["/", "dev"]);
    assert_status(
        &m.put("/api/queues/dev/q", json!({"durable": true})).await,
        201,
    );
    assert_status(&m.delete("/api/vhosts/dev").await, 204);
    not_found(&m.get("/api/vhosts/dev").await);
    not_found(&m.delete("/api/vhosts/dev").await);
    not_found(&m.get("/api/queues/dev").await);
    // A vhost name with a slash in it, encoded.
    assert_status(&m.put("/api/vhosts/a%2Fb", json!({})).await, 201);
    assert!(m.b.broker.vhost("a/b").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_declare_list_delete_purge() {
    let m = mgmt().await;
    let body = json!({"durable": true, "arguments": {"x-max-length": 10}});
    assert_status(&m.put("/api/queues/%2F/q1", body.clone()).await, 201);
    assert_status(&m.put("/api/queues/%2F/q1", body).await, 204);
    // rabbitmqadmin sends booleans as strings.
    assert_status(
        &m.put(
            "/api/queues/%2F/q2",
            json!({"durable": "false", "auto_delete": "true"}),
        )
        .await,
        201,
    );
    let r = m.put("/api/queues/%2F/q1", json!({"durable": false})).await;
    assert_error(
        &r,
        400,
        "bad_request",
        "inequivalent arg 'durable' for queue 'q1' in vhost '/': received 'false' but current is 'true'",
    );
    let r = m.put("/api/queues/%2F/amq.q", json!({})).await;
    assert_error(&r, 401, "not_authorised", "Access refused.");
    let r = m
        .call_as(
            Some(("guest", "guest")),
            Method::PUT,
            "/api/queues/%2F/q3",
            Some("{\"durable\":tru"),
        )
        .await;
    assert_error(&r, 400, "bad_request", "not_json");
    let r = m.put("/api/queues/%2F/q3", json!({"durable": 7})).await;
    assert_status(&r, 400);
    not_found(&m.put("/api/queues/nohost/q", json!({})).await);

    let r = m.get("/api/queues/%2F/q1").await;
    let q = &r.json;
    assert_eq!(q["name"], "q1");
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["durable"], true);
    assert_eq!(q["auto_delete"], false);
    assert_eq!(q["exclusive"], false);
    assert_eq!(q["arguments"], json!({"x-max-length": 10}));
    assert_eq!(q["type"], "classic");
    for k in [
        "messages",
        "messages_ready",
        "messages_unacknowledged",
        "consumers",
    ] {
        assert_eq!(q[k], 0, "{k}");
    }
    assert!(q["memory"].as_u64().expect("memory") > 0);
    for k in ["publish", "deliver_get", "ack", "redeliver"] {
        assert_eq!(q["message_stats"][k], 0, "{k}");
        assert!(q["message_stats"][format!("{k}_details")]["rate"].is_number());
    }
    assert_eq!(names(&m.get("/api/queues").await.json), ["q1", "q2"]);
    assert_eq!(names(&m.get("/api/queues/%2F").await.json), ["q1", "q2"]);
    not_found(&m.get("/api/queues/nohost").await);
    not_found(&m.get("/api/queues/%2F/nope").await);
    not_found(&m.get("/api/queues/nohost/q").await);

    // Publish two, purge, publish one.
    for i in 0..2 {
        let r = m
            .post(
                "/api/exchanges/%2F/amq.default/publish",
                json!({"properties": {}, "routing_key": "q1", "payload": format!("m{i}"),
                       "payload_encoding": "string"}),
            )
            .await;
        assert_eq!(r.json, json!({"routed": true}));
    }
    let q = m.get("/api/queues/%2F/q1").await.json;
    assert_eq!(q["messages_ready"], 2);
    assert_eq!(q["message_bytes"], 4);
    assert_eq!(q["message_stats"]["publish"], 2);
    assert_status(&m.delete("/api/queues/%2F/q1/contents").await, 204);
    assert_eq!(m.get("/api/queues/%2F/q1").await.json["messages"], 0);
    not_found(&m.delete("/api/queues/%2F/nope/contents").await);

    m.post(
        "/api/exchanges/%2F/amq.default/publish",
        json!({"properties": {}, "routing_key": "q2", "payload": "x", "payload_encoding": "string"}),
    )
    .await;
    let r = m.delete("/api/queues/%2F/q2?if-empty=true").await;
    assert_error(&r, 400, "bad_request", "queue 'q2' in vhost '/' not empty");
    assert_status(&m.delete("/api/queues/%2F/q2").await, 204);
    not_found(&m.delete("/api/queues/%2F/q2").await);
    assert_status(&m.delete("/api/queues/%2F/q1?if-unused=true").await, 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_get_ack_modes_and_encodings() {
    let m = mgmt().await;
    m.put("/api/queues/%2F/g", json!({})).await;
    let publish = |payload: Value, enc: &str| {
        json!({"properties": {"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain"},
               "routing_key": "g", "payload": payload, "payload_encoding": enc})
    };
    m.post(
        "/api/exchanges/%2F/amq.default/publish",
        publish(json!("hello"), "string"),
    )
    .await;
    // Not UTF-8: "/w==" is 0xff.
    m.post(
        "/api/exchanges/%2F/amq.default/publish",
        publish(json!("/w=="), "base64"),
    )
    .await;

    let get = |count: u64, ackmode: &str, encoding: &str| json!({"count": count, "ackmode": ackmode, "encoding": encoding, "truncate": 3});
    let r = m
        .post("/api/queues/%2F/g/get", get(5, "ack_requeue_true", "auto"))
        .await;
    assert_status(&r, 200);
    assert_eq!(
        r.json[0],
        json!({"payload_bytes": 5, "redelivered": false, "exchange": "", "routing_key": "g",
               "message_count": 1, "payload": "hel", "payload_encoding": "string",
               "properties": {"delivery_mode": 2, "headers": {"h": 1}, "content_type": "text/plain"}})
    );
    assert_eq!(r.json[1]["payload"], "/w==");
    assert_eq!(r.json[1]["payload_encoding"], "base64");
    // Requeued: both are back, now redelivered.
    let r = m
        .post(
            "/api/queues/%2F/g/get",
            get(1, "reject_requeue_true", "base64"),
        )
        .await;
    assert_eq!(r.json[0]["redelivered"], true);
    assert_eq!(r.json[0]["payload"], "aGVs");
    let r = m
        .post(
            "/api/queues/%2F/g/get",
            json!({"count": "1", "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await;
    assert_eq!(r.json[0]["payload"], "hello");
    let r = m
        .post(
            "/api/queues/%2F/g/get",
            get(3, "reject_requeue_false", "auto"),
        )
        .await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(1));
    let r = m
        .post("/api/queues/%2F/g/get", get(3, "ack_requeue_false", "auto"))
        .await;
    assert_eq!(r.json, json!([]));
    let q = m.get("/api/queues/%2F/g").await.json;
    assert_eq!(q["messages"], 0);
    assert_eq!(q["message_stats"]["deliver_get"], 5);
    assert_eq!(q["message_stats"]["ack"], 1);

    let r = m.post("/api/queues/%2F/g/get", json!({"count": 1})).await;
    assert_error(
        &r,
        400,
        "bad_request",
        "[{key_missing,ackmode},{key_missing,encoding}]",
    );
    let r = m
        .post("/api/queues/%2F/g/get", get(1, "bogus", "auto"))
        .await;
    assert_status(&r, 400);
    let r = m
        .post("/api/queues/%2F/g/get", get(1, "ack_requeue_true", "hex"))
        .await;
    assert_status(&r, 400);
    let r = m
        .post(
            "/api/queues/%2F/nope/get",
            get(1, "ack_requeue_true", "auto"),
        )
        .await;
    assert_error(
        &r,
        404,
        "not_found",
        "NOT_FOUND - no queue 'nope' in vhost '/'",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchanges_declare_list_delete_publish() {
    let m = mgmt().await;
    let r = m.get("/api/exchanges/%2F").await;
    assert_eq!(
        names(&r.json),
        [
            "",
            "amq.direct",
            "amq.fanout",
            "amq.headers",
            "amq.match",
            "amq.topic"
        ]
    );
    let x = json!({"type": "topic", "durable": true, "arguments": {"alternate-exchange": "ae"}});
    assert_status(&m.put("/api/exchanges/%2F/x1", x.clone()).await, 201);
    assert_status(&m.put("/api/exchanges/%2F/x1", x).await, 204);
    assert_status(&m.put("/api/exchanges/%2F/x2", json!({})).await, 201);
    let r = m.get("/api/exchanges/%2F/x2").await;
    assert_eq!(r.json["type"], "direct");
    assert_eq!(r.json["durable"], false);
    let r = m.get("/api/exchanges/%2F/x1").await;
    assert_eq!(
        (&r.json["type"], &r.json["arguments"]),
        (&json!("topic"), &json!({"alternate-exchange": "ae"}))
    );
    assert_eq!(
        m.get("/api/exchanges/%2F/amq.default").await.json["name"],
        ""
    );
    let r = m
        .put("/api/exchanges/%2F/x3", json!({"type": "bogus"}))
        .await;
    assert_error(&r, 400, "bad_request", "unknown exchange type 'bogus'");
    let r = m
        .put(
            "/api/exchanges/%2F/x1",
            json!({"type": "fanout", "durable": true}),
        )
        .await;
    assert_error(
        &r,
        400,
        "bad_request",
        "inequivalent arg 'type' for exchange 'x1' in vhost '/': received 'fanout' but current is 'topic'",
    );
    for path in [
        "/api/exchanges/%2F/amq.foo",
        "/api/exchanges/%2F/amq.default",
    ] {
        let r = m.put(path, json!({})).await;
        assert_error(&r, 401, "not_authorised", "Access refused.");
    }
    let r = m.delete("/api/exchanges/%2F/amq.direct").await;
    assert_error(&r, 401, "not_authorised", "Access refused.");
    not_found(&m.get("/api/exchanges/%2F/nope").await);
    not_found(&m.get("/api/exchanges/nohost").await);
    not_found(&m.delete("/api/exchanges/%2F/nope").await);
    assert_eq!(
        m.get("/api/exchanges").await.json.as_array().map(Vec::len),
        Some(8)
    );

    // Publish: routed or not.
    m.put("/api/queues/%2F/q", json!({})).await;
    m.post("/api/bindings/%2F/e/x1/q/q", json!({"routing_key": "a.#"}))
        .await;
    let msg = |rk: &str| json!({"properties": {}, "routing_key": rk, "payload": "aGk=", "payload_encoding": "base64"});
    let r = m.post("/api/exchanges/%2F/x1/publish", msg("a.b")).await;
    assert_eq!(r.json, json!({"routed": true}));
    let r = m.post("/api/exchanges/%2F/x1/publish", msg("z")).await;
    assert_eq!(r.json, json!({"routed": false}));
    let r = m.post("/api/exchanges/%2F/nope/publish", msg("z")).await;
    assert_error(
        &r,
        400,
        "bad_request",
        "404 NOT_FOUND - no exchange 'nope' in vhost '/'",
    );
    let r = m
        .post(
            "/api/exchanges/%2F/x1/publish",
            json!({"properties": {}, "routing_key": "", "payload": "x"}),
        )
        .await;
    assert_error(&r, 400, "bad_request", "[{key_missing,payload_encoding}]");
    let mut bad = msg("a");
    bad["properties"] = json!({"bogus": 1});
    assert_status(&m.post("/api/exchanges/%2F/x1/publish", bad).await, 400);
    // Headers nested deeper than any peer accepts are refused, not stored or delivered.
    let mut deep = json!({});
    for _ in 0..70 {
        deep = json!({ "n": deep });
    }
    let mut bad = msg("a");
    bad["properties"] = json!({ "headers": deep });
    assert_status(&m.post("/api/exchanges/%2F/x1/publish", bad).await, 400);
    let mut bad = msg("a");
    bad["payload"] = json!("!!!");
    assert_status(&m.post("/api/exchanges/%2F/x1/publish", bad).await, 400);
    let r = m.get("/api/queues/%2F/q").await;
    assert_eq!(r.json["messages"], 1);
    let got = m
        .post(
            "/api/queues/%2F/q/get",
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
        )
        .await;
    assert_eq!(got.json[0]["payload"], "hi");
    assert_eq!(got.json[0]["exchange"], "x1");

    let r = m.delete("/api/exchanges/%2F/x1?if-unused=true").await;
    assert_error(&r, 400, "bad_request", "exchange 'x1' in vhost '/' in use");
    assert_status(&m.delete("/api/exchanges/%2F/x1").await, 204);
    not_found(&m.get("/api/exchanges/%2F/x1").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bindings() {
    let m = mgmt().await;
    m.put("/api/queues/%2F/q", json!({"durable": true})).await;
    m.put(
        "/api/exchanges/%2F/x",
        json!({"type": "topic", "durable": true}),
    )
    .await;
    m.put(
        "/api/exchanges/%2F/h",
        json!({"type": "headers", "durable": true}),
    )
    .await;
    let r = m
        .post("/api/bindings/%2F/e/x/q/q", json!({"routing_key": "a.#"}))
        .await;
    assert_status(&r, 201);
    assert_eq!(r.headers["location"], "q/a.%2523");
    let r = m
        .post(
            "/api/bindings/%2F/e/h/q/q",
            json!({"routing_key": "", "arguments": {"x-match": "any", "k": "v"}}),
        )
        .await;
    assert_status(&r, 201);
    assert_status(&m.post("/api/bindings/%2F/e/x/e/h", json!({})).await, 201);
    let r = m.post("/api/bindings/%2F/e/x/q/nope", json!({})).await;
    assert_error(&r, 404, "not_found", "no queue 'nope' in vhost '/'");
    let r = m.post("/api/bindings/%2F/e/nope/q/q", json!({})).await;
    assert_error(&r, 404, "not_found", "no exchange 'nope' in vhost '/'");
    let r = m
        .post("/api/bindings/%2F/e/x/q/q", json!({"arguments": 5}))
        .await;
    assert_status(&r, 400);
    let r = m
        .post("/api/bindings/%2F/e/amq.default/q/q", json!({}))
        .await;
    assert_error(&r, 401, "not_authorised", "Access refused.");
    not_found(&m.post("/api/bindings/nohost/e/x/q/q", json!({})).await);
    not_found(&m.get("/api/bindings/%2F/e/x/z/q").await);

    let r = m.get("/api/bindings/%2F/e/x/q/q").await;
    assert_eq!(
        r.json,
        json!([{"source": "x", "vhost": "/", "destination": "q", "destination_type": "queue",
                "routing_key": "a.#", "arguments": {}, "properties_key": "a.%23"}])
    );
    let all = m.get("/api/bindings/%2F").await.json;
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 4);
    // The default exchange's implicit binding comes first, as in RabbitMQ.
    assert_eq!(
        all[0],
        json!({"source": "", "vhost": "/", "destination": "q", "destination_type": "queue",
               "routing_key": "q", "arguments": {}, "properties_key": "q"})
    );
    assert_eq!(
        m.get("/api/bindings").await.json.as_array().map(Vec::len),
        Some(4)
    );
    let h = m.get("/api/bindings/%2F/e/h/q/q").await.json;
    let hkey = h[0]["properties_key"].as_str().expect("key").to_string();
    assert!(hkey.starts_with("~"), "{hkey}");
    assert_eq!(h[0]["arguments"], json!({"x-match": "any", "k": "v"}));

    // Show and delete by properties key, sent as listed or encoded once more.
    let r = m.get("/api/bindings/%2F/e/x/q/q/a.%23").await;
    assert_eq!(r.json["routing_key"], "a.#");
    let r = m.get("/api/bindings/%2F/e/x/q/q/a.%2523").await;
    assert_eq!(r.json["routing_key"], "a.#");
    not_found(&m.get("/api/bindings/%2F/e/x/q/q/zzz").await);
    assert_status(
        &m.delete(&format!("/api/bindings/%2F/e/h/q/q/{hkey}")).await,
        204,
    );
    assert_status(&m.delete("/api/bindings/%2F/e/x/q/q/a.%2523").await, 204);
    not_found(&m.delete("/api/bindings/%2F/e/x/q/q/a.%2523").await);
    let e2e = m.get("/api/bindings/%2F/e/x/e/h").await.json;
    assert_eq!(e2e[0]["properties_key"], "~");
    assert_eq!(e2e[0]["destination_type"], "exchange");
    let r = m.get("/api/exchanges/%2F/x/bindings/source").await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(1));
    let r = m.get("/api/exchanges/%2F/h/bindings/destination").await;
    assert_eq!(r.json[0]["source"], "x");
    let r = m.get("/api/queues/%2F/q/bindings").await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(1));
    not_found(&m.get("/api/queues/%2F/nope/bindings").await);
    assert_status(&m.delete("/api/bindings/%2F/e/x/e/h/~").await, 204);
    assert_eq!(
        m.get("/api/bindings/%2F")
            .await
            .json
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_channels_consumers_and_forced_close() {
    let m = mgmt().await;
    let (conn, ch) = m.b.channel().await;
    within(ch.queue_declare(
        "cq".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("declare");
    within(ch.basic_qos(7, BasicQosOptions::default()))
        .await
        .expect("qos");
    let _consumer = within(ch.basic_consume(
        "cq".into(),
        "ctag1".into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    ))
    .await
    .expect("consume");

    let r = m.get("/api/connections").await;
    let c = &r.json[0];
    let name = c["name"].as_str().expect("name").to_string();
    assert!(name.ends_with(&format!(" -> {}", m.b.addr)), "{name}");
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    assert_eq!(c["channels"], 1);
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    assert_eq!(c["port"], m.b.addr.port());
    assert!(c["connected_at"].as_u64().expect("connected_at") > 1_600_000_000_000);
    let encoded = name.replace(' ', "%20").replace('>', "%3E");
    assert_eq!(
        m.get(&format!("/api/connections/{encoded}")).await.json["name"],
        name.as_str()
    );
    assert_eq!(
        m.get("/api/vhosts/%2F/connections").await.json[0]["name"],
        name.as_str()
    );
    not_found(&m.get("/api/connections/nope").await);
    not_found(&m.get("/api/vhosts/nohost/connections").await);

    let r = m.get("/api/channels").await;
    assert_eq!(r.json[0]["name"], format!("{name} (1)"));
    assert_eq!(r.json[0]["number"], 1);
    assert_eq!(r.json[0]["consumer_count"], 1);
    assert_eq!(r.json[0]["prefetch_count"], 7);
    assert_eq!(r.json[0]["connection_details"]["name"], name.as_str());
    let chan = format!("{encoded}%20(1)");
    assert_eq!(
        m.get(&format!("/api/channels/{chan}")).await.json["number"],
        1
    );
    assert_eq!(
        m.get(&format!("/api/connections/{encoded}/channels"))
            .await
            .json[0]["number"],
        1
    );
    assert_eq!(m.get("/api/vhosts/%2F/channels").await.json[0]["number"], 1);
    not_found(&m.get("/api/channels/nope").await);
    // A channel with no consumer is listed too.
    let idle = conn.create_channel().await.expect("idle channel");
    let r = m.get("/api/channels").await;
    assert_eq!(r.json.as_array().map(Vec::len), Some(2));
    assert_eq!(r.json[1]["number"], idle.id());
    assert_eq!(r.json[1]["consumer_count"], 0);
    idle.close(200, "done".into()).await.expect("close idle");

    let r = m.get("/api/consumers").await;
    assert_eq!(r.json[0]["consumer_tag"], "ctag1");
    assert_eq!(r.json[0]["queue"], json!({"name": "cq", "vhost": "/"}));
    assert_eq!(r.json[0]["ack_required"], true);
    assert_eq!(r.json[0]["prefetch_count"], 7);
    assert_eq!(
        r.json[0]["channel_details"]["connection_name"],
        name.as_str()
    );
    assert_eq!(
        m.get("/api/consumers/%2F").await.json[0]["consumer_tag"],
        "ctag1"
    );
    not_found(&m.get("/api/consumers/nohost").await);
    assert_eq!(m.get("/api/queues/%2F/cq").await.json["consumers"], 1);
    let o = m.get("/api/overview").await.json;
    assert_eq!(
        o["object_totals"],
        json!({"channels": 1, "connections": 1, "consumers": 1, "exchanges": 6, "queues": 1})
    );

    // Forced close: the client sees 320 with our reason.
    let r = m
        .http
        .delete(format!("{}/api/connections/{encoded}", m.base))
        .basic_auth("guest", Some("guest"))
        .header("X-Reason", "maintenance")
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let closed = within(async {
        loop {
            match ch
                .queue_declare(
                    "cq".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
            {
                Err(e) => return e,
                Ok(_) => tokio::task::yield_now().await,
            }
        }
    })
    .await;
    let code = support::amqp_error(&closed);
    assert!(
        code.is_none() || code == Some((320, "CONNECTION_FORCED - maintenance".into())),
        "{closed:?}"
    );
    assert!(!conn.status().connected());
    not_found(&m.delete("/api/connections/nope").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_close_sends_320_on_the_wire() {
    let m = mgmt().await;
    let mut raw = support::raw::Raw::connect(m.b.addr).await;
    let name = m.get("/api/connections").await.json[0]["name"]
        .as_str()
        .expect("name")
        .replace(' ', "%20");
    assert_status(&m.delete(&format!("/api/connections/{name}")).await, 204);
    let (code, text, _, _) = raw.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (320, "CONNECTION_FORCED - Closed via management plugin")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_permissions() {
    let m = mgmt().await;
    let r = m.get("/api/users").await;
    assert_eq!(names(&r.json), ["guest"]);
    assert_eq!(
        r.json[0]["hashing_algorithm"],
        "rabbit_password_hashing_sha256"
    );
    assert_eq!(r.json[0]["tags"], json!(["administrator"]));
    assert_eq!(r.json[0]["limits"], json!({}));

    assert_status(
        &m.put(
            "/api/users/bob",
            json!({"password": "pw", "tags": "management"}),
        )
        .await,
        201,
    );
    assert_status(
        &m.put(
            "/api/users/bob",
            json!({"password": "pw", "tags": ["management", "monitoring"]}),
        )
        .await,
        204,
    );
    assert_eq!(
        m.get("/api/users/bob").await.json["tags"],
        json!(["management", "monitoring"])
    );
    let r = m.put("/api/users/carol", json!({"password": "x"})).await;
    assert_error(&r, 400, "bad_request", "tags_not_present");
    let r = m
        .put(
            "/api/users/carol",
            json!({"password_hash": "nonsense", "tags": ""}),
        )
        .await;
    assert_status(&r, 400);
    let hash = lagomorph::password::hash_password("carol-pw");
    let r = m
        .put(
            "/api/users/carol",
            json!({"password_hash": hash, "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": "administrator"}),
        )
        .await;
    assert_status(&r, 201);
    let r = m
        .call_as(
            Some(("carol", "carol-pw")),
            Method::GET,
            "/api/whoami",
            None,
        )
        .await;
    assert_eq!(r.json["name"], "carol");
    not_found(&m.get("/api/users/nobody").await);

    // Permissions.
    let p = json!({"configure": ".*", "write": "^w", "read": ".*"});
    assert_status(&m.put("/api/permissions/%2F/bob", p.clone()).await, 201);
    assert_status(&m.put("/api/permissions/%2F/bob", p.clone()).await, 204);
    let r = m.get("/api/permissions/%2F/bob").await;
    assert_eq!(
        r.json,
        json!({"user": "bob", "vhost": "/", "configure": ".*", "write": "^w", "read": ".*"})
    );
    let r = m.put("/api/permissions/nohost/bob", p.clone()).await;
    assert_error(&r, 400, "bad_request", "vhost_or_user_not_found");
    let r = m.put("/api/permissions/%2F/nobody", p).await;
    assert_error(&r, 400, "bad_request", "vhost_or_user_not_found");
    let r = m
        .put("/api/permissions/%2F/bob", json!({"configure": ".*"}))
        .await;
    assert_error(
        &r,
        400,
        "bad_request",
        "[{key_missing,write},{key_missing,read}]",
    );
    let r = m
        .put(
            "/api/permissions/%2F/bob",
            json!({"configure": "(", "write": "", "read": ""}),
        )
        .await;
    assert_status(&r, 400);
    let all = m.get("/api/permissions").await.json;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    assert_eq!(
        m.get("/api/users/bob/permissions").await.json[0]["write"],
        "^w"
    );
    assert_eq!(
        m.get("/api/vhosts/%2F/permissions")
            .await
            .json
            .as_array()
            .map(Vec::len),
        Some(2)
    );
    not_found(&m.get("/api/users/nobody/permissions").await);
    not_found(&m.get("/api/vhosts/nohost/permissions").await);
    assert_status(&m.delete("/api/permissions/%2F/bob").await, 204);
    not_found(&m.delete("/api/permissions/%2F/bob").await);
    not_found(&m.get("/api/permissions/%2F/bob").await);

    m.put(
        "/api/permissions/%2F/bob",
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await;
    assert_status(&m.delete("/api/users/bob").await, 204);
    not_found(&m.delete("/api/users/bob").await);
    assert!(
        m.b.broker
            .access()
            .permissions()
            .iter()
            .all(|p| p.user != "bob")
    );
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/rabbitmq-definitions.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_definitions_import_and_round_trip() {
    let m = mgmt().await;
    let doc = fixture();
    assert_eq!(doc["rabbitmq_version"], "3.10.8");
    assert_status(&m.post("/api/definitions", doc.clone()).await, 204);

    // Users keep RabbitMQ's password hashes: alice logs in with her RabbitMQ password.
    let r = m
        .call_as(
            Some(("alice", "alice-secret")),
            Method::GET,
            "/api/whoami",
            None,
        )
        .await;
    assert_eq!(r.json, json!({"name": "alice", "tags": ["management"]}));
    assert!(
        m.b.broker
            .access()
            .authenticate("monitor", "mon", true)
            .is_ok()
    );
    assert_eq!(names(&m.get("/api/vhosts").await.json), ["/", "staging"]);
    let r = m.get("/api/permissions/staging/alice").await;
    assert_eq!(r.json["write"], "^orders$");

    let q = m.get("/api/queues/%2F/orders.created").await.json;
    assert_eq!(q["durable"], true);
    assert_eq!(
        q["arguments"],
        json!({"x-dead-letter-exchange": "orders.dlx", "x-max-length": 1000, "x-queue-type": "classic"})
    );
    assert_eq!(
        m.get("/api/queues/%2F/transient").await.json["auto_delete"],
        true
    );
    let x = m.get("/api/exchanges/%2F/audit").await.json;
    assert_eq!(
        (&x["type"], &x["internal"]),
        (&json!("headers"), &json!(true))
    );
    let x = m.get("/api/exchanges/%2F/events").await.json;
    assert_eq!(x["arguments"], json!({"alternate-exchange": "orders.dlx"}));
    assert_eq!(
        m.get("/api/exchanges/staging/orders").await.json["type"],
        "direct"
    );

    // Routing works through the imported bindings (topic → queue, topic → headers → queue).
    let publish = |rk: &str, headers: Value| {
        json!({"properties": {"headers": headers}, "routing_key": rk, "payload": "p",
               "payload_encoding": "string"})
    };
    let r = m
        .post(
            "/api/exchanges/%2F/orders/publish",
            publish("order.eu.created", json!({})),
        )
        .await;
    assert_eq!(r.json["routed"], true);
    let r = m
        .post(
            "/api/exchanges/%2F/orders/publish",
            publish("x", json!({"kind": "audit"})),
        )
        .await;
    assert_eq!(r.json["routed"], true);
    assert_eq!(
        m.get("/api/queues/%2F/orders.created").await.json["messages"],
        1
    );
    assert_eq!(m.get("/api/queues/%2F/audit.log").await.json["messages"], 1);

    // Export has everything the fixture had, in the same format.
    let out = m.get("/api/definitions").await.json;
    for section in [
        "users",
        "vhosts",
        "permissions",
        "queues",
        "exchanges",
        "bindings",
    ] {
        let mut want: Vec<String> = doc[section]
            .as_array()
            .expect("section")
            .iter()
            .map(|v| {
                let mut v = v.clone();
                // Tags are a list in both; limits empty in both; vhosts carry their metadata
                // in our export (RabbitMQ 3.11's shape; 3.10 leaves it out).
                if let Some(m) = v.as_object_mut() {
                    m.remove("limits");
                    m.remove("metadata");
                }
                v.to_string()
            })
            .collect();
        let mut got: Vec<String> = out[section]
            .as_array()
            .expect("section")
            .iter()
            .map(|v| {
                let mut v = v.clone();
                if let Some(m) = v.as_object_mut() {
                    m.remove("limits");
                    m.remove("metadata");
                }
                v.to_string()
            })
            .collect();
        want.sort();
        got.sort();
        if section == "users" {
            // guest's hash differs (ours was made at start); compare names and the rest of alice.
            got.retain(|u| !u.contains("\"guest\""));
            want.retain(|u| !u.contains("\"guest\""));
        }
        assert_eq!(got, want, "{section}");
    }

    // Lagomorph's export imports into a fresh Lagomorph and exports identically.
    let m2 = mgmt().await;
    assert_status(&m2.post("/api/definitions", out.clone()).await, 204);
    let mut again = m2.get("/api/definitions").await.json;
    let mut first = out;
    for d in [&mut again, &mut first] {
        d["users"] = json!(null);
    }
    assert_eq!(again, first);

    // Vhost-scoped export and import.
    let staging = m.get("/api/definitions/staging").await.json;
    assert_eq!(
        staging["queues"],
        json!([{"name": "orders", "durable": true, "auto_delete": false, "arguments": {}}])
    );
    m2.put("/api/vhosts/other", json!({})).await;
    assert_status(&m2.post("/api/definitions/other", staging).await, 204);
    assert_eq!(
        m2.get("/api/bindings/other/e/orders/q/orders").await.json[0]["routing_key"],
        "new"
    );
    not_found(&m2.get("/api/definitions/nohost").await);
    not_found(&m2.post("/api/definitions/nohost", json!({})).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_errors_change_nothing() {
    let m = mgmt().await;
    let r = m
        .call_as(
            Some(("guest", "guest")),
            Method::POST,
            "/api/definitions",
            Some("{bad"),
        )
        .await;
    assert_error(&r, 400, "bad_request", "not_json");
    let doc = json!({"queues": [{"name": "a", "vhost": "/", "durable": true}],
                     "exchanges": [{"name": "zz", "vhost": "nope", "type": "direct"}]});
    let r = m.post("/api/definitions", doc).await;
    assert_error(&r, 400, "bad_request", "no_such_vhost: nope");
    let doc = json!({"queues": [{"name": "a", "vhost": "/"}],
                     "exchanges": [{"name": "zz", "vhost": "/", "type": "bogus"}]});
    assert_status(&m.post("/api/definitions", doc).await, 400);
    let doc = json!({"users": [{"name": "u", "password_hash": "short", "tags": []}]});
    assert_status(&m.post("/api/definitions", doc).await, 400);
    assert_status(&m.post("/api/definitions", json!({"queues": 3})).await, 400);
    assert_eq!(m.get("/api/queues").await.json, json!([]));
    assert_eq!(names(&m.get("/api/users").await.json), ["guest"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_and_aliveness() {
    let m = mgmt().await;
    for path in [
        "/api/health/checks/alarms",
        "/api/health/checks/local-alarms",
        "/api/health/checks/virtual-hosts",
        "/api/aliveness-test/%2F",
    ] {
        let r = m.get(path).await;
        assert_eq!(
            (r.status.as_u16(), &r.json),
            (200, &json!({"status": "ok"})),
            "{path}"
        );
    }
    not_found(&m.get("/api/aliveness-test/nohost").await);
    // With the memory alarm set, the alarm checks fail with 503 in RabbitMQ 3.10's shape
    // (tests/fixtures/rabbitmq-3.10/alarms.json).
    m.b.broker.set_memory_alarm(true);
    let r = m.get("/api/health/checks/alarms").await;
    let node = r.json["alarms"][0]["node"].clone();
    assert_eq!(
        (r.status.as_u16(), &r.json),
        (
            503,
            &json!({
                "status": "failed",
                "reason": "There are alarms in effect in the cluster",
                "alarms": [{"node": node, "resource": "memory"}],
            })
        )
    );
    assert!(node.as_str().is_some_and(|n| n.starts_with("lagomorph@")));
    m.b.broker.set_memory_alarm(false);
    assert_eq!(
        m.get("/api/health/checks/alarms").await.status.as_u16(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_parameters() {
    let m = mgmt().await;
    for n in ["alpha", "beta", "gamma", "delta", "Alphabet"] {
        m.put(&format!("/api/queues/%2F/{n}"), json!({})).await;
    }
    m.post(
        "/api/exchanges/%2F/amq.default/publish",
        json!({"properties": {}, "routing_key": "gamma", "payload": "x", "payload_encoding": "string"}),
    )
    .await;
    let r = m.get("/api/queues?page=1&page_size=2").await;
    assert_eq!(
        (
            &r.json["filtered_count"],
            &r.json["item_count"],
            &r.json["page"],
            &r.json["page_count"],
            &r.json["page_size"],
            &r.json["total_count"]
        ),
        (
            &json!(5),
            &json!(2),
            &json!(1),
            &json!(3),
            &json!(2),
            &json!(5)
        )
    );
    assert_eq!(names(&r.json), ["Alphabet", "alpha"]);
    let r = m.get("/api/queues?page=3&page_size=2").await;
    assert_eq!(names(&r.json), ["gamma"]);
    let r = m.get("/api/queues?page=1&name=ALPHA").await;
    assert_eq!(names(&r.json), ["Alphabet", "alpha"]);
    let r = m.get("/api/queues?name=%5E.a&use_regex=true").await;
    assert_eq!(names(&r.json), ["gamma"]);
    let r = m
        .get("/api/queues?sort=messages&sort_reverse=true&columns=name,messages")
        .await;
    assert_eq!(r.json[0], json!({"name": "gamma", "messages": 1}));
    let r = m
        .get("/api/queues?columns=name,message_stats.publish&name=gamma")
        .await;
    assert_eq!(
        r.json,
        json!([{"name": "gamma", "message_stats": {"publish": 1}}])
    );
    let r = m.get("/api/queues/%2F/gamma?columns=name").await;
    assert_eq!(r.json, json!({"name": "gamma"}));

    let r = m.get("/api/queues?page=0").await;
    assert_error(
        &r,
        400,
        "invalid_pagination_parameters",
        "Invalid pagination parameters: page number 0, page size undefined",
    );
    let r = m.get("/api/queues?page=1&page_size=501").await;
    assert_error(
        &r,
        400,
        "invalid_pagination_parameters",
        "Invalid pagination parameters: page number 1, page size 501",
    );
    let r = m.get("/api/queues?page=abc").await;
    assert_error(&r, 400, "bad_request", "Pagination parameters are invalid");
    let r = m.get("/api/queues?page=9").await;
    assert_error(
        &r,
        400,
        "page_out_of_range",
        "Page out of range, page: 9 page size: 100, len: 5",
    );
    let r = m.get("/api/exchanges?page=1&name=(&use_regex=true").await;
    assert_error(&r, 400, "bad_request", "Pagination parameters are invalid");
    // Every listing takes the parameters.
    for path in [
        "/api/exchanges",
        "/api/bindings",
        "/api/vhosts",
        "/api/users",
        "/api/permissions",
        "/api/connections",
        "/api/channels",
        "/api/consumers",
        "/api/nodes",
    ] {
        let r = m.get(&format!("{path}?page=1&page_size=1")).await;
        assert_eq!(r.json["page_size"], 1, "{path}");
        assert_status(&m.get(&format!("{path}?page=0")).await, 400);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_ten_thousand_queues() {
    let m = mgmt().await;
    let vh = m.b.broker.vhost("/").expect("vhost");
    for i in 0..10_000 {
        let spec = QueueSpec {
            name: format!("q{i:05}"),
            ..Default::default()
        };
        vh.declare_queue(&spec, false, ConnId(0), lagomorph::clock::now())
            .expect("declare");
    }
    let started = Instant::now();
    let r = m.get("/api/queues?page=1&page_size=500&sort=name").await;
    let paged = started.elapsed();
    assert_eq!(r.json["total_count"], 10_000);
    assert_eq!(r.json["items"].as_array().map(Vec::len), Some(500));
    let started = Instant::now();
    let r = m.get("/api/queues").await;
    let full = started.elapsed();
    assert_eq!(r.json.as_array().map(Vec::len), Some(10_000));
    let bytes = r.text.len();
    let started = Instant::now();
    let r = m.get("/api/overview").await;
    let overview = started.elapsed();
    assert_eq!(r.json["object_totals"]["queues"], 10_000);
    println!(
        "10,000 queues (client parse included): page of 500 in {paged:?}, full list ({bytes} bytes) in {full:?}, overview in {overview:?}"
    );
}

/// A small parser of the Prometheus text format (0.0.4): checks every line and returns the
/// samples as name{labels} → value, and the declared type of every family.
fn parse_prometheus(text: &str) -> (HashMap<String, f64>, HashMap<String, String>) {
    let mut samples = HashMap::new();
    let mut types = HashMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kw = parts.next().expect("keyword");
            let name = parts.next().expect("metric name");
            assert!(name_ok(name), "bad name in {line:?}");
            if kw == "TYPE" {
                let t = parts.next().expect("type");
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                    "{line:?}"
                );
                assert!(
                    types.insert(name.to_string(), t.to_string()).is_none(),
                    "dup TYPE {name}"
                );
            } else {
                assert_eq!(kw, "HELP", "{line:?}");
            }
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let name = series.split('{').next().expect("name");
        assert!(name_ok(name), "bad name in {line:?}");
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(
            types.contains_key(family),
            "sample before its TYPE: {line:?}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            let inner = labels
                .strip_prefix('{')
                .and_then(|l| l.strip_suffix('}'))
                .expect("braces");
            // label="value" pairs; values may hold escaped quotes.
            let mut rest = inner;
            while !rest.is_empty() {
                let (lname, after) = rest.split_once("=\"").expect("label=\"");
                assert!(name_ok(lname), "bad label {lname:?}");
                let mut end = None;
                let mut escaped = false;
                for (i, c) in after.char_indices() {
                    match (escaped, c) {
                        (true, _) => escaped = false,
                        (false, '\\') => escaped = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.expect("closing quote");
                rest = after[end + 1..]
                    .strip_prefix(',')
                    .unwrap_or(&after[end + 1..]);
            }
        }
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            samples.insert(series.to_string(), v).is_none(),
            "duplicate {series}"
        );
    }
    (samples, types)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics() {
    let m = mgmt().await;
    m.put("/api/queues/%2F/m\"q", json!({"durable": true}))
        .await;
    for _ in 0..3 {
        m.post(
            "/api/exchanges/%2F/amq.default/publish",
            json!({"properties": {"delivery_mode": 2}, "routing_key": "m\"q", "payload": "x",
                   "payload_encoding": "string"}),
        )
        .await;
    }
    m.post(
        "/api/queues/%2F/m%22q/get",
        json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"}),
    )
    .await;
    let (_c, _ch) = m.b.channel().await;
    // No login needed, as RabbitMQ's prometheus endpoint.
    let r = m.call_as(None, Method::GET, "/metrics", None).await;
    assert_status(&r, 200);
    assert!(
        r.headers["content-type"]
            .to_str()
            .expect("ct")
            .starts_with("text/plain; version=0.0.4")
    );
    let (s, types) = parse_prometheus(&r.text);
    assert_eq!(s["rabbitmq_connections"], 1.0);
    assert_eq!(s["rabbitmq_channels"], 1.0);
    assert_eq!(s["rabbitmq_consumers"], 0.0);
    assert_eq!(s["rabbitmq_queues"], 1.0);
    // Aggregated, as rabbitmq_prometheus's /metrics: one sum per queue metric, no labels.
    assert_eq!(s["rabbitmq_queue_messages_ready"], 2.0);
    assert_eq!(s["rabbitmq_queue_messages_unacked"], 0.0);
    assert!(!r.text.contains("queue=\""), "per-queue series in /metrics");
    // One series per queue on /metrics/per-object.
    let per = m
        .call_as(None, Method::GET, "/metrics/per-object", None)
        .await;
    assert_status(&per, 200);
    let (p, _) = parse_prometheus(&per.text);
    assert_eq!(
        p["rabbitmq_queue_messages_ready{vhost=\"/\",queue=\"m\\\"q\"}"],
        2.0
    );
    assert_eq!(
        p["rabbitmq_queue_messages_unacked{vhost=\"/\",queue=\"m\\\"q\"}"],
        0.0
    );
    assert_eq!(p["rabbitmq_global_messages_received_total"], 3.0);
    assert_eq!(s["rabbitmq_global_messages_received_total"], 3.0);
    assert_eq!(s["rabbitmq_global_messages_delivered_total"], 1.0);
    assert_eq!(s["rabbitmq_global_messages_acknowledged_total"], 1.0);
    assert!(s["process_resident_memory_bytes"] > 0.0);
    assert_eq!(types["lagomorph_store_flush_duration_seconds"], "histogram");
    assert!(s.contains_key("lagomorph_store_flush_duration_seconds_bucket{le=\"+Inf\"}"));
    assert_eq!(
        s["lagomorph_store_flush_duration_seconds_bucket{le=\"+Inf\"}"],
        s["lagomorph_store_flush_duration_seconds_count"]
    );

    // promtool, when the machine has it (Debian: `apt-get install prometheus`).
    match std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    {
        Ok(mut child) => {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(r.text.as_bytes())
                .expect("write");
            let out = child.wait_with_output().expect("promtool");
            assert!(
                out.status.success(),
                "promtool check metrics failed:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Err(e) => println!("promtool not available ({e}); checked with the built-in parser only"),
    }
}
