//! Management API paths and shapes tools rely on, as RabbitMQ 3.10's management API answers
//! them (recorded by `interop/record/management_compat.py` in
//! `tests/fixtures/rabbitmq-3.10/management-compat.json`): trailing slashes, client_properties,
//! listeners and contexts, health checks, users/bulk-delete, cluster-name, unknown paths and
//! the body size limit.

mod support;

use lagomorph::management::{Options, serve_with};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;
use support::{TestBroker, start, within};
use tokio_util::sync::CancellationToken;

/// A broker with its management API, told about the broker's AMQP listener.
struct Api {
    base: String,
    http_port: u16,
    http: reqwest::Client,
    b: TestBroker,
    token: CancellationToken,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn api() -> Api {
    let b = start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    tokio::spawn(serve_with(
        listener,
        b.broker.clone(),
        token.clone(),
        Options {
            amqp_listeners: vec![b.addr],
            ..Default::default()
        },
    ));
    Api {
        base: format!("http://{addr}"),
        http_port: addr.port(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        b,
        token,
    }
}

impl Api {
    /// (status, JSON body or Null) as guest, or with no credentials.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: bool,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if auth {
            req = req.basic_auth("guest", Some("guest"));
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = within(req.send()).await.expect("request");
        let status = resp.status();
        let text = within(resp.text()).await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None, true).await
    }
}

/// management-compat.json: "trailing_slash ..." cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_with_a_trailing_slash_answer_as_without() {
    let a = api().await;
    for path in [
        "/api/queues/",
        "/api/connections/",
        "/api/vhosts/",
        "/api/exchanges/%2F/",
    ] {
        let (status, body) = a.get(path).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(body.is_array(), "{path}: {body}");
    }
    let (status, body) = a.get("/api/overview/").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["object_totals"].is_object());
    // The query string survives.
    let (status, body) = a.get("/api/exchanges/%2F/?columns=name").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0], json!({"name": ""}));
}

/// management-compat.json: connection_client_properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_list_their_client_properties() {
    let a = api().await;
    let props =
        lapin::ConnectionProperties::default().with_connection_name("billing-worker".into());
    let conn = lapin::Connection::connect(&a.b.uri(), props)
        .await
        .expect("connect");
    let (status, list) = a.get("/api/connections").await;
    assert_eq!(status, StatusCode::OK);
    let found: Vec<&Value> = list
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["client_properties"]["connection_name"] == "billing-worker")
        .collect();
    assert_eq!(found.len(), 1, "{list}");
    assert_eq!(found[0]["user_provided_name"], "billing-worker");
    assert!(found[0]["client_properties"]["capabilities"].is_object());
    assert!(found[0]["client_properties"]["product"].is_string());
    conn.close(200, "bye".into()).await.expect("close");
}

/// management-compat.json: overview_listeners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_lists_listeners_and_contexts() {
    let a = api().await;
    let (_, o) = a.get("/api/overview").await;
    let listeners = o["listeners"].as_array().expect("listeners");
    let amqp = listeners
        .iter()
        .find(|l| l["protocol"] == "amqp")
        .expect("amqp listener");
    assert_eq!(amqp["port"], json!(a.b.addr.port()));
    assert_eq!(amqp["ip_address"], "127.0.0.1");
    assert_eq!(amqp["node"], o["node"]);
    assert!(amqp["socket_opts"].is_object());
    let http = listeners
        .iter()
        .find(|l| l["protocol"] == "http")
        .expect("http listener");
    assert_eq!(http["port"], json!(a.http_port));
    let contexts = o["contexts"].as_array().expect("contexts");
    assert_eq!(contexts.len(), 1);
    assert_eq!(contexts[0]["path"], "/");
    // RabbitMQ writes a context's port as a string.
    assert_eq!(contexts[0]["port"], json!(a.http_port.to_string()));
    assert_eq!(contexts[0]["ssl_opts"], json!([]));
}

/// management-compat.json: the health-check cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_checks_answer_in_rabbitmqs_shape() {
    let a = api().await;
    let ok = json!({"status": "ok"});
    for path in [
        "/api/healthchecks/node",
        "/api/health/checks/alarms",
        "/api/health/checks/local-alarms",
        "/api/health/checks/virtual-hosts",
    ] {
        assert_eq!(a.get(path).await, (StatusCode::OK, ok.clone()), "{path}");
    }
    let (_, o) = a.get("/api/overview").await;
    let node = o["node"].as_str().expect("node").to_string();
    assert_eq!(
        a.get(&format!("/api/healthchecks/node/{node}")).await,
        (StatusCode::OK, ok.clone())
    );
    assert_eq!(
        a.get("/api/health/checks/node-is-quorum-critical").await,
        (
            StatusCode::OK,
            json!({"status": "ok", "reason": "single node cluster"})
        )
    );
    let amqp = a.b.addr.port();
    assert_eq!(
        a.get(&format!("/api/health/checks/port-listener/{amqp}"))
            .await,
        (StatusCode::OK, json!({"status": "ok", "port": amqp}))
    );
    assert_eq!(
        a.get(&format!("/api/health/checks/port-listener/{}", a.http_port))
            .await
            .0,
        StatusCode::OK
    );
    let mut ports = vec![amqp, a.http_port];
    ports.sort_unstable();
    assert_eq!(
        a.get("/api/health/checks/port-listener/1").await,
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "failed", "reason": "No active listener", "missing": 1, "ports": ports})
        )
    );
    assert_eq!(
        a.get("/api/health/checks/port-listener/abc").await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "reason": "Invalid port"})
        )
    );
    assert_eq!(
        a.get("/api/health/checks/nope").await,
        (
            StatusCode::NOT_FOUND,
            json!({"error": "Object Not Found", "reason": "Not Found"})
        )
    );
    let (status, _) = a
        .call(Method::GET, "/api/healthchecks/node", None, false)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A resource alarm fails the node check as it fails the alarm checks.
    assert!(a.b.broker.set_memory_alarm(true));
    let (status, body) = a.get("/api/healthchecks/node").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "failed");
}

/// management-compat.json: bulk_delete, bulk_delete_missing_first, bulk_delete_without_users,
/// bulk_delete_empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_bulk_delete() {
    let a = api().await;
    for u in ["bd1", "bd2", "bd3"] {
        let (status, _) = a
            .call(
                Method::PUT,
                &format!("/api/users/{u}"),
                Some(json!({"password": "x", "tags": ""})),
                true,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let del = |users: Value| a.call(Method::POST, "/api/users/bulk-delete", Some(users), true);
    assert_eq!(
        del(json!({"users": ["bd1", "bd2"]})).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    assert_eq!(a.get("/api/users/bd1").await.0, StatusCode::NOT_FOUND);
    assert_eq!(a.get("/api/users/bd2").await.0, StatusCode::NOT_FOUND);
    // The first missing user stops it: those after it stay.
    assert_eq!(
        del(json!({"users": ["nobody", "bd3"]})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "reason": ["no_such_user", "nobody"]})
        )
    );
    assert_eq!(a.get("/api/users/bd3").await.0, StatusCode::OK);
    assert_eq!(
        del(json!({"nousers": 1})).await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "reason": "[{key_missing,users}]"})
        )
    );
    assert_eq!(
        del(json!({"users": []})).await,
        (StatusCode::NO_CONTENT, Value::Null)
    );
    // Only a POST: RabbitMQ answers 405 to a GET.
    assert_eq!(
        a.get("/api/users/bulk-delete").await.0,
        StatusCode::METHOD_NOT_ALLOWED
    );
}

/// management-compat.json: the cluster-name cases.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_name_can_be_read_and_set() {
    let a = api().await;
    let (status, body) = a.get("/api/cluster-name").await;
    assert_eq!(status, StatusCode::OK);
    let (_, o) = a.get("/api/overview").await;
    assert_eq!(body, json!({"name": o["cluster_name"]}));
    let (status, _) = a
        .call(
            Method::PUT,
            "/api/cluster-name",
            Some(json!({"name": "payments"})),
            true,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        a.get("/api/cluster-name").await,
        (StatusCode::OK, json!({"name": "payments"}))
    );
    assert_eq!(a.get("/api/overview").await.1["cluster_name"], "payments");
    assert_eq!(
        a.call(
            Method::PUT,
            "/api/cluster-name",
            Some(json!({"nam": "x"})),
            true
        )
        .await,
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "bad_request", "reason": "[{key_missing,name}]"})
        )
    );
    let (status, _) = a.call(Method::GET, "/api/cluster-name", None, false).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

/// management-compat.json: "GET /api/nope" cases. RabbitMQ 3.10 answers an oversized body with
/// 400 and the reason below; we answer 413 with the same body (see the fixture's notes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_are_json_404_and_oversized_bodies_413() {
    let a = api().await;
    let not_found = json!({"error": "Object Not Found", "reason": "Not Found"});
    for path in ["/api/nope", "/api/nope/", "/api/queues/%2F/q/nope/more"] {
        assert_eq!(
            a.get(path).await,
            (StatusCode::NOT_FOUND, not_found.clone()),
            "{path}"
        );
    }
    let huge = vec![b' '; 64 * 1024 * 1024 + 1];
    let resp = within(
        a.http
            .post(format!("{}/api/definitions", a.base))
            .basic_auth("guest", Some("guest"))
            .header("content-type", "application/json")
            .body(huge)
            .send(),
    )
    .await
    .expect("request");
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = within(resp.json()).await.expect("json body");
    assert_eq!(
        body,
        json!({"error": "bad_request", "reason": "Exceeded HTTP request body size limit"})
    );
}
