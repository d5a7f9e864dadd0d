//! The access model over the management API: users, permissions, topic permissions, vhost and
//! user limits, whoami and the tag rules, compared with what RabbitMQ 3.10.8 answered in the
//! same calls (tests/fixtures/rabbitmq-3.10/access-api.json, interop/record/access_api.py);
//! a monitoring user changes nothing; restart keeps everything; definitions round trip; failed
//! logins are delayed and counted.

mod support;

use lagomorph::broker::BrokerOptions;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::{TestBroker, rabbitmq, start_in, start_with, within};
use tokio_util::sync::CancellationToken;

struct Api {
    base: String,
    http: reqwest::Client,
    b: Option<TestBroker>,
    token: CancellationToken,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Drop for Api {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn api_for(b: TestBroker) -> Api {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let server = tokio::spawn(lagomorph::management::serve(
        listener,
        b.broker.clone(),
        token.clone(),
    ));
    Api {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        b: Some(b),
        token,
        server: Some(server),
    }
}

/// A broker whose failed logins wait 200 ms (the default second slows the suite).
fn opts() -> BrokerOptions {
    BrokerOptions {
        failed_login_delay: Duration::from_millis(200),
        ..BrokerOptions::default()
    }
}

const GUEST: (&str, &str) = ("guest", "guest");

impl Api {
    /// `{"status": N, "body": ...}` as the recording has it (body left out when empty).
    async fn call(
        &self,
        user: (&str, &str),
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth(user.0, Some(user.1));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = within(req.send()).await.expect("request");
        let status = r.status().as_u16();
        let text = within(r.text()).await.expect("text");
        if text.is_empty() {
            return json!({"status": status});
        }
        json!({"status": status, "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))})
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        self.call(GUEST, method, path, body).await
    }
}

/// The recording's value with volatile fields as their types, as the recorder wrote them.
fn scrub(v: &Value) -> Value {
    const VOLATILE: [&str; 2] = ["password_hash", "cluster_state"];
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !k.ends_with("_details")
                        && !k.starts_with("message")
                        && !k.starts_with("messages")
                })
                .map(|(k, x)| {
                    let is_type_name =
                        |x: &Value| x.as_str().is_some_and(|t| t == "str" || t == "dict");
                    let x = if VOLATILE.contains(&k.as_str()) && !is_type_name(x) {
                        json!(if x.is_string() { "str" } else { "dict" })
                    } else {
                        scrub(x)
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(scrub).collect()),
        other => other.clone(),
    }
}

#[track_caller]
fn same(got: &Value, case: &str) {
    let fx = rabbitmq("access-api");
    let want = scrub(&fx[case]);
    assert_eq!(scrub(got), want, "{case}");
}

/// The recording's calls, in its order, as far as they do not depend on RabbitMQ-only state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_permissions_topic_permissions_and_limits_as_rabbitmq() {
    let api = api_for(start_with(opts()).await).await;
    use Method as M;
    same(
        &api.admin(
            M::PUT,
            "/api/users/ra-mon",
            Some(json!({"password": "p", "tags": "monitoring"})),
        )
        .await,
        "put_user_monitoring",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/users/ra-mon",
            Some(json!({"password": "p", "tags": "monitoring"})),
        )
        .await,
        "put_user_again",
    );
    for (u, t) in [
        ("ra-pol", "policymaker"),
        ("ra-mgmt", "management"),
        ("ra-none", ""),
    ] {
        api.admin(
            M::PUT,
            &format!("/api/users/{u}"),
            Some(json!({"password": "p", "tags": t})),
        )
        .await;
    }
    same(
        &api.admin(M::PUT, "/api/users/ra-x", Some(json!({"password": "p"})))
            .await,
        "put_user_no_tags_key",
    );
    same(
        &api.admin(M::GET, "/api/users/ra-mon", None).await,
        "get_user",
    );
    same(
        &api.admin(M::GET, "/api/users/ra-missing", None).await,
        "get_user_missing",
    );
    same(
        &api.admin(M::GET, "/api/users/without-permissions", None)
            .await,
        "users_without_permissions",
    );
    let meta = json!({"description": "team v", "tags": "a,b", "default_queue_type": "classic"});
    same(
        &api.admin(M::PUT, "/api/vhosts/ra-v", Some(meta)).await,
        "put_vhost_meta",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/vhosts/ra-v",
            Some(json!({"description": "team v2"})),
        )
        .await,
        "put_vhost_again",
    );
    let mut got = api.admin(M::GET, "/api/vhosts/ra-v", None).await;
    for k in ["messages", "messages_ready", "messages_unacknowledged"] {
        got["body"].as_object_mut().expect("vhost").remove(k);
    }
    same(&got, "get_vhost_meta");
    api.admin(M::PUT, "/api/vhosts/ra-w", Some(json!({}))).await;

    let perm = json!({"configure": "^ra-.*", "write": ".*", "read": ".*"});
    same(
        &api.admin(M::PUT, "/api/permissions/ra-v/ra-mon", Some(perm.clone()))
            .await,
        "put_permission",
    );
    same(
        &api.admin(M::PUT, "/api/permissions/ra-v/ra-mon", Some(perm.clone()))
            .await,
        "put_permission_again",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/permissions/ra-v/ra-nobody",
            Some(perm.clone()),
        )
        .await,
        "put_permission_no_user",
    );
    same(
        &api.admin(M::PUT, "/api/permissions/ra-nov/ra-mon", Some(perm.clone()))
            .await,
        "put_permission_no_vhost",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/permissions/ra-v/ra-mon",
            Some(json!({"configure": ".*"})),
        )
        .await,
        "put_permission_missing_key",
    );
    for u in ["ra-pol", "ra-mgmt", "ra-none"] {
        let all = json!({"configure": ".*", "write": ".*", "read": ".*"});
        api.admin(M::PUT, &format!("/api/permissions/ra-v/{u}"), Some(all))
            .await;
    }
    same(
        &api.admin(M::GET, "/api/permissions/ra-v/ra-mon", None)
            .await,
        "get_permission",
    );
    same(
        &api.admin(M::GET, "/api/users/ra-mon/permissions", None)
            .await,
        "user_permissions",
    );
    same(
        &api.admin(M::GET, "/api/vhosts/ra-v/permissions", None)
            .await,
        "vhost_permissions",
    );

    let tp = json!({"exchange": "amq.topic", "write": "^{username}\\..*", "read": ".*"});
    same(
        &api.admin(
            M::PUT,
            "/api/topic-permissions/ra-v/ra-mon",
            Some(tp.clone()),
        )
        .await,
        "put_topic_permission",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/topic-permissions/ra-v/ra-mon",
            Some(tp.clone()),
        )
        .await,
        "put_topic_permission_again",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/topic-permissions/ra-v/ra-mon",
            Some(json!({"write": ".*", "read": ".*"})),
        )
        .await,
        "put_topic_permission_no_exchange_key",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/topic-permissions/ra-v/ra-nobody",
            Some(tp.clone()),
        )
        .await,
        "put_topic_permission_no_user",
    );
    let tp2 = json!({"exchange": "ra-x", "write": "", "read": "r"});
    api.admin(M::PUT, "/api/topic-permissions/ra-v/ra-mon", Some(tp2))
        .await;
    for (path, case) in [
        ("/api/topic-permissions", "topic_permissions"),
        ("/api/topic-permissions/ra-v/ra-mon", "topic_permission"),
        (
            "/api/topic-permissions/ra-w/ra-mon",
            "topic_permission_missing",
        ),
        (
            "/api/users/ra-mon/topic-permissions",
            "user_topic_permissions",
        ),
        (
            "/api/vhosts/ra-v/topic-permissions",
            "vhost_topic_permissions",
        ),
    ] {
        same(&api.admin(M::GET, path, None).await, case);
    }

    same(
        &api.admin(
            M::PUT,
            "/api/vhost-limits/ra-v/max-connections",
            Some(json!({"value": 10})),
        )
        .await,
        "put_vhost_limit",
    );
    api.admin(
        M::PUT,
        "/api/vhost-limits/ra-v/max-queues",
        Some(json!({"value": 5})),
    )
    .await;
    same(
        &api.admin(
            M::PUT,
            "/api/vhost-limits/ra-v/max-bogus",
            Some(json!({"value": 1})),
        )
        .await,
        "put_vhost_limit_bad_name",
    );
    same(
        &api.admin(M::PUT, "/api/vhost-limits/ra-v/max-queues", Some(json!({})))
            .await,
        "put_vhost_limit_no_value",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/vhost-limits/ra-v/max-queues",
            Some(json!({"value": "x"})),
        )
        .await,
        "put_vhost_limit_string",
    );
    same(
        &api.admin(M::GET, "/api/vhost-limits", None).await,
        "vhost_limits",
    );
    same(
        &api.admin(M::GET, "/api/vhost-limits/ra-v", None).await,
        "vhost_limits_one",
    );
    same(
        &api.admin(M::GET, "/api/vhost-limits/ra-w", None).await,
        "vhost_limits_none",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/user-limits/ra-mon/max-channels",
            Some(json!({"value": 5})),
        )
        .await,
        "put_user_limit",
    );
    api.admin(
        M::PUT,
        "/api/user-limits/ra-mon/max-connections",
        Some(json!({"value": 3})),
    )
    .await;
    same(
        &api.admin(
            M::PUT,
            "/api/user-limits/ra-mon/max-queues",
            Some(json!({"value": 1})),
        )
        .await,
        "put_user_limit_bad_name",
    );
    same(
        &api.admin(
            M::PUT,
            "/api/user-limits/ra-nobody/max-channels",
            Some(json!({"value": 1})),
        )
        .await,
        "put_user_limit_no_user",
    );
    same(
        &api.admin(M::GET, "/api/user-limits", None).await,
        "user_limits",
    );
    same(
        &api.admin(M::GET, "/api/user-limits/ra-mon", None).await,
        "user_limits_one",
    );
    same(
        &api.admin(M::GET, "/api/users/ra-mon", None).await,
        "user_with_limits",
    );

    // Tags.
    let (mon, pol, mgmt, none) = (
        ("ra-mon", "p"),
        ("ra-pol", "p"),
        ("ra-mgmt", "p"),
        ("ra-none", "p"),
    );
    same(
        &api.call(mon, M::GET, "/api/whoami", None).await,
        "whoami_monitoring",
    );
    same(
        &api.admin(M::GET, "/api/whoami", None).await,
        "whoami_admin",
    );
    same(
        &api.call(none, M::GET, "/api/overview", None).await,
        "no_tag_overview",
    );
    same(
        &api.call(none, M::GET, "/api/whoami", None).await,
        "no_tag_whoami",
    );
    same(
        &api.call(("ra-mon", "wrong"), M::GET, "/api/whoami", None)
            .await,
        "bad_password",
    );
    same(
        &api.call(mon, M::GET, "/api/vhosts?columns=name", None)
            .await,
        "monitoring_vhosts",
    );
    same(
        &api.call(mgmt, M::GET, "/api/vhosts?columns=name", None)
            .await,
        "management_vhosts",
    );
    for (who, path, case) in [
        (mgmt, "/api/users", "management_users"),
        (mon, "/api/users", "monitoring_users"),
        (mon, "/api/permissions", "monitoring_permissions"),
        (mon, "/api/definitions", "monitoring_definitions"),
        (mgmt, "/api/vhosts/ra-w", "management_get_vhost_other"),
        (mgmt, "/api/queues/ra-w", "management_queues_other"),
        (mgmt, "/api/vhost-limits", "management_vhost_limits"),
        (mon, "/api/vhost-limits", "monitoring_vhost_limits"),
        (
            mgmt,
            "/api/topic-permissions",
            "management_topic_permissions",
        ),
        (mgmt, "/api/user-limits", "management_user_limits"),
    ] {
        same(&api.call(who, M::GET, path, None).await, case);
    }
    let policy = json!({"pattern": "^x", "definition": {"max-length": 1}});
    same(
        &api.call(
            mon,
            M::PUT,
            "/api/queues/ra-v/ra-q1",
            Some(json!({"durable": false})),
        )
        .await,
        "monitoring_put_queue_own_vhost",
    );
    same(
        &api.call(
            mon,
            M::PUT,
            "/api/queues/ra-v/other-q",
            Some(json!({"durable": false})),
        )
        .await,
        "management_put_queue_denied_name",
    );
    same(
        &api.call(
            mgmt,
            M::PUT,
            "/api/queues/ra-v/ra-q2",
            Some(json!({"durable": false})),
        )
        .await,
        "management_put_queue_own_vhost",
    );
    same(
        &api.call(mgmt, M::PUT, "/api/policies/ra-v/p1", Some(policy.clone()))
            .await,
        "management_put_policy",
    );
    same(
        &api.call(pol, M::PUT, "/api/policies/ra-v/p1", Some(policy.clone()))
            .await,
        "policymaker_put_policy",
    );
    same(
        &api.call(pol, M::PUT, "/api/policies/ra-w/p1", Some(policy.clone()))
            .await,
        "policymaker_put_policy_other_vhost",
    );
    same(
        &api.call(
            pol,
            M::PUT,
            "/api/vhost-limits/ra-v/max-queues",
            Some(json!({"value": 1})),
        )
        .await,
        "policymaker_put_vhost_limit",
    );
    api.admin(
        M::PUT,
        "/api/exchanges/ra-v/other-x",
        Some(json!({"type": "direct"})),
    )
    .await;
    let msg =
        json!({"properties": {}, "routing_key": "k", "payload": "x", "payload_encoding": "string"});
    let publish = "/api/exchanges/ra-v/other-x/publish";
    same(
        &api.call(mon, M::POST, publish, Some(msg.clone())).await,
        "monitoring_publish_refused",
    );
    let narrower = json!({"configure": "^ra-.*", "write": "^ra-.*", "read": ".*"});
    api.admin(M::PUT, "/api/permissions/ra-v/ra-mon", Some(narrower))
        .await;
    same(
        &api.call(mon, M::POST, publish, Some(msg)).await,
        "monitoring_publish_refused_by_write",
    );

    // Deletions.
    for (path, case) in [
        (
            "/api/vhost-limits/ra-v/max-connections",
            "delete_vhost_limit",
        ),
        (
            "/api/vhost-limits/ra-v/max-connections",
            "delete_vhost_limit_again",
        ),
        ("/api/user-limits/ra-mon/max-channels", "delete_user_limit"),
        (
            "/api/topic-permissions/ra-v/ra-mon",
            "delete_topic_permission",
        ),
        (
            "/api/topic-permissions/ra-v/ra-mon",
            "delete_topic_permission_again",
        ),
        ("/api/permissions/ra-v/ra-mon", "delete_permission"),
        ("/api/permissions/ra-v/ra-mon", "delete_permission_again"),
        ("/api/users/ra-mon", "delete_user"),
        ("/api/users/ra-mon", "delete_user_again"),
    ] {
        same(&api.admin(M::DELETE, path, None).await, case);
    }
}

/// Every mutating endpoint, for a monitoring user without permissions anywhere: all refused
/// (401), and nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_user_cannot_change_anything() {
    let api = api_for(start_with(opts()).await).await;
    use Method as M;
    api.admin(
        M::PUT,
        "/api/users/mon",
        Some(json!({"password": "p", "tags": "monitoring"})),
    )
    .await;
    api.admin(M::PUT, "/api/queues/%2F/q", Some(json!({})))
        .await;
    api.admin(
        M::PUT,
        "/api/exchanges/%2F/x",
        Some(json!({"type": "direct"})),
    )
    .await;
    let before = api.admin(M::GET, "/api/definitions", None).await;
    let guest_conn = api.b.as_ref().expect("broker").connect().await;
    let conns = api
        .admin(M::GET, "/api/connections?columns=name", None)
        .await;
    let name = conns["body"][0]["name"]
        .as_str()
        .expect("connection")
        .to_string();
    let conn_path = format!(
        "/api/connections/{}",
        name.replace(' ', "%20").replace('>', "%3E")
    );
    let mon = ("mon", "p");
    let any = json!({"configure": ".*", "write": ".*", "read": ".*"});
    let calls: Vec<(Method, &str, Option<Value>)> = vec![
        (M::PUT, "/api/vhosts/new", Some(json!({}))),
        (M::DELETE, "/api/vhosts/%2F", None),
        (
            M::PUT,
            "/api/users/x",
            Some(json!({"password": "p", "tags": ""})),
        ),
        (
            M::PUT,
            "/api/users/mon",
            Some(json!({"password": "p", "tags": "administrator"})),
        ),
        (M::DELETE, "/api/users/guest", None),
        (
            M::POST,
            "/api/users/bulk-delete",
            Some(json!({"users": ["guest"]})),
        ),
        (M::PUT, "/api/permissions/%2F/mon", Some(any.clone())),
        (M::DELETE, "/api/permissions/%2F/guest", None),
        (
            M::PUT,
            "/api/topic-permissions/%2F/mon",
            Some(json!({"exchange": "amq.topic", "write": ".*", "read": ".*"})),
        ),
        (M::DELETE, "/api/topic-permissions/%2F/guest", None),
        (
            M::PUT,
            "/api/vhost-limits/%2F/max-queues",
            Some(json!({"value": 1})),
        ),
        (M::DELETE, "/api/vhost-limits/%2F/max-queues", None),
        (
            M::PUT,
            "/api/user-limits/guest/max-channels",
            Some(json!({"value": 1})),
        ),
        (M::DELETE, "/api/user-limits/guest/max-channels", None),
        (M::POST, "/api/definitions", Some(json!({"users": []}))),
        (M::POST, "/api/definitions/%2F", Some(json!({"queues": []}))),
        (M::PUT, "/api/queues/%2F/q2", Some(json!({}))),
        (M::DELETE, "/api/queues/%2F/q", None),
        (M::DELETE, "/api/queues/%2F/q/contents", None),
        (
            M::POST,
            "/api/queues/%2F/q/get",
            Some(json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "auto"})),
        ),
        (
            M::PUT,
            "/api/exchanges/%2F/x2",
            Some(json!({"type": "direct"})),
        ),
        (M::DELETE, "/api/exchanges/%2F/x", None),
        (
            M::POST,
            "/api/exchanges/%2F/x/publish",
            Some(
                json!({"properties": {}, "routing_key": "q", "payload": "x", "payload_encoding": "string"}),
            ),
        ),
        (
            M::POST,
            "/api/bindings/%2F/e/x/q/q",
            Some(json!({"routing_key": "k"})),
        ),
        (M::DELETE, "/api/bindings/%2F/e/amq.direct/q/q/q", None),
        (
            M::PUT,
            "/api/policies/%2F/p",
            Some(json!({"pattern": ".*", "definition": {"max-length": 1}})),
        ),
        (M::DELETE, "/api/policies/%2F/p", None),
        (
            M::PUT,
            "/api/operator-policies/%2F/p",
            Some(json!({"pattern": ".*", "definition": {"max-length": 1}})),
        ),
        (M::PUT, "/api/cluster-name", Some(json!({"name": "x"}))),
        (M::DELETE, &conn_path, None),
    ];
    for (method, path, body) in calls {
        let r = api.call(mon, method.clone(), path, body).await;
        assert_eq!(r["status"], 401, "{method} {path}: {r}");
    }
    assert!(
        guest_conn.status().connected(),
        "guest's connection stays open"
    );
    // Reading is allowed.
    assert_eq!(
        api.call(mon, M::GET, "/api/queues", None).await["status"],
        200
    );
    assert_eq!(api.admin(M::GET, "/api/definitions", None).await, before);
}

/// Users, permissions, topic permissions, vhost metadata, an empty vhost and limits made over
/// HTTP survive a restart; the configuration's users do not come back over them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_access_model_and_definitions_round_trip() {
    let tmp = tempfile::tempdir().expect("tmp");
    let api = api_for(start_in(tmp.path(), opts()).await).await;
    use Method as M;
    api.admin(
        M::PUT,
        "/api/vhosts/empty",
        Some(json!({"description": "d", "tags": ["t1"], "default_queue_type": "classic"})),
    )
    .await;
    api.admin(
        M::PUT,
        "/api/users/alice",
        Some(json!({"password": "pw", "tags": "management"})),
    )
    .await;
    api.admin(
        M::PUT,
        "/api/permissions/empty/alice",
        Some(json!({"configure": "^a", "write": "^b", "read": "^c"})),
    )
    .await;
    api.admin(
        M::PUT,
        "/api/topic-permissions/empty/alice",
        Some(json!({"exchange": "amq.topic", "write": "^{username}", "read": ".*"})),
    )
    .await;
    api.admin(
        M::PUT,
        "/api/vhost-limits/empty/max-queues",
        Some(json!({"value": 7})),
    )
    .await;
    api.admin(
        M::PUT,
        "/api/user-limits/alice/max-channels",
        Some(json!({"value": 3})),
    )
    .await;
    // guest is deleted: a restart must not bring the configured guest back.
    api.admin(
        M::PUT,
        "/api/users/root",
        Some(json!({"password": "r", "tags": "administrator"})),
    )
    .await;
    let root = ("root", "r");
    assert_eq!(
        api.call(root, M::DELETE, "/api/users/guest", None).await["status"],
        204
    );
    let before = api.call(root, M::GET, "/api/definitions", None).await;
    // The API's handle on the broker (and so on the store) goes before the restart.
    let mut api = api;
    api.token.cancel();
    if let Some(server) = api.server.take() {
        let _ = within(server).await;
    }
    api.b.take().expect("broker").stop().await;
    drop(api);

    let api = api_for(start_in(tmp.path(), opts()).await).await;
    let after = api.call(root, M::GET, "/api/definitions", None).await;
    assert_eq!(after, before);
    assert_eq!(
        api.call(GUEST, M::GET, "/api/whoami", None).await["status"],
        401
    );
    assert_eq!(
        api.call(("alice", "pw"), M::GET, "/api/whoami", None).await["status"],
        200
    );
    let body = &after["body"];
    assert_eq!(
        body["vhosts"]
            .as_array()
            .expect("vhosts")
            .iter()
            .find(|v| v["name"] == "empty"),
        Some(
            &json!({"name": "empty", "metadata": {"description": "d", "tags": ["t1"], "default_queue_type": "classic"}})
        )
    );
    assert_eq!(
        body["topic_permissions"],
        json!([{"user": "alice", "vhost": "empty", "exchange": "amq.topic", "write": "^{username}", "read": ".*"}])
    );
    assert_eq!(
        body["parameters"],
        json!([{"vhost": "empty", "component": "vhost-limits", "name": "limits", "value": {"max-queues": 7}}])
    );
    let alice = body["users"]
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["name"] == "alice")
        .cloned();
    assert_eq!(alice.expect("alice")["limits"], json!({"max-channels": 3}));

    // The export imports into a fresh broker and exports the same again.
    let doc = body.clone();
    let fresh = api_for(start_with(opts()).await).await;
    assert_eq!(
        fresh
            .admin(M::POST, "/api/definitions", Some(doc.clone()))
            .await["status"],
        204
    );
    let again = fresh.call(root, M::GET, "/api/definitions", None).await;
    let strip = |mut v: Value| {
        // guest comes from the fresh broker's seed; compare the imported sections.
        let b = v["body"].as_object_mut().expect("doc");
        b.retain(|k, _| {
            [
                "users",
                "vhosts",
                "permissions",
                "topic_permissions",
                "parameters",
            ]
            .contains(&k.as_str())
        });
        for key in ["users", "permissions"] {
            if let Some(a) = b.get_mut(key).and_then(Value::as_array_mut) {
                a.retain(|x| x["name"] != "guest" && x["user"] != "guest");
            }
        }
        if let Some(a) = b.get_mut("vhosts").and_then(Value::as_array_mut) {
            a.retain(|x| x["name"] != "/");
        }
        v
    };
    assert_eq!(strip(again), strip(after));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_delayed_and_counted() {
    let api = api_for(start_with(opts()).await).await;
    let started = Instant::now();
    let r = api
        .call(("guest", "wrong"), Method::GET, "/api/whoami", None)
        .await;
    assert_eq!(r["status"], 401);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered after the delay"
    );
    let uri = format!(
        "amqp://guest:wrong@{}/%2f",
        api.b.as_ref().expect("broker").addr
    );
    let started = Instant::now();
    let e = within(lapin::Connection::connect(
        &uri,
        lapin::ConnectionProperties::default(),
    ))
    .await
    .expect_err("refused");
    assert_eq!(support::amqp_error(&e).map(|e| e.0), Some(403));
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "answered after the delay"
    );
    let text = within(api.http.get(format!("{}/metrics", api.base)).send())
        .await
        .expect("metrics");
    let text = within(text.text()).await.expect("text");
    assert!(
        text.contains("\nrabbitmq_auth_attempts_failed_total 2\n"),
        "{text}"
    );
    // No secret in the API's user view beyond RabbitMQ's hash fields.
    let users = api.admin(Method::GET, "/api/users", None).await;
    let s = users.to_string();
    assert!(!s.contains("\"password\""), "{s}");
}
