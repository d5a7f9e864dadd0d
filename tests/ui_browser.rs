//! The management UI in a real browser (headless Debian chromium through chromedriver):
//! log in and out, a rate chart that moves while a client publishes, a queue created,
//! published to, read back, browsed and purged, a user that sees only its vhost, definitions
//! exported and imported, a queue named like an XSS payload shown as text, and a monitoring
//! user that cannot delete a queue. See tests/ui/mod.rs for when these skip.

mod support;
mod ui;

use lagomorph::broker::ConnId;
use lagomorph::broker::PublishRequest;
use lagomorph::broker::vhost::QueueSpec;
use lagomorph::protocol::types::ShortStr;
use lapin::BasicProperties;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ui::{WAIT, ui, ui_with};

fn declare(u: &ui::Ui, vhost: &str, name: &str) {
    u.b.broker.ensure_vhost(vhost);
    let vh = u.b.broker.vhost(vhost).expect("vhost");
    let spec = QueueSpec {
        name: name.into(),
        durable: true,
        ..Default::default()
    };
    vh.declare_queue(&spec, false, ConnId(0), lagomorph::clock::now())
        .expect("declare");
}

fn publish(u: &ui::Ui, vhost: &str, queue: &str, body: &'static [u8]) {
    let vh = u.b.broker.vhost(vhost).expect("vhost");
    let req = PublishRequest {
        exchange: ShortStr::EMPTY,
        routing_key: ShortStr::try_from(queue).expect("name"),
        properties: Default::default(),
        body: bytes::Bytes::from_static(body),
        user: "guest",
        grant: &lagomorph::broker::Grant::all("guest", vhost),
        awaited: None,
    };
    vh.publish(req, lagomorph::clock::now()).expect("publish");
}

fn ready(u: &ui::Ui, vhost: &str, queue: &str) -> usize {
    let q =
        u.b.broker
            .vhost(vhost)
            .and_then(|v| v.queue(queue).ok())
            .expect("queue exists");
    q.counts().ready
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_and_logout() {
    let Some(u) = ui().await else { return };
    u.open("#/").await;
    u.type_into("#login input[name=username]", "guest").await;
    u.type_into("#login input[name=password]", "wrong").await;
    u.click("#login button[type=submit]").await;
    u.wait_text("#login-status", |t| t.contains("Login failed"))
        .await;
    // A user without a management tag cannot log in either.
    u.add_user("app", "app", &[], Some("/"));
    u.type_into("#login input[name=username]", "app").await;
    u.type_into("#login input[name=password]", "app").await;
    u.click("#login button[type=submit]").await;
    u.wait_text("#login-status", |t| t.contains("management tag"))
        .await;

    u.login("guest", "guest").await;
    let nav = u.wait_text("#nav", |t| t.contains("Queues")).await;
    for page in [
        "Overview",
        "Connections",
        "Exchanges",
        "Queues",
        "Admin",
        "Definitions",
    ] {
        assert!(
            nav.contains(page),
            "{page} missing from the administrator's nav: {nav}"
        );
    }
    u.wait_text("[data-stat=queues] .stat-value", |t| t == "0")
        .await;
    u.logout().await;
    // Logged out means the API is no longer called with the old login.
    let stored = u
        .js("return sessionStorage.getItem('lagomorph.auth')")
        .await;
    assert!(stored.is_null(), "credentials kept after logout: {stored}");
    u.finish().await;
}

/// Points of the overview's publish line.
async fn publish_line(u: &ui::Ui) -> String {
    u.js(
        "const l = document.querySelector('[data-chart=overview] polyline[data-series=publish]'); \
          return l ? l.getAttribute('points') : '';",
    )
    .await
    .as_str()
    .unwrap_or("")
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_chart_moves_while_a_client_publishes() {
    let Some(u) = ui_with(Duration::from_millis(250)).await else {
        return;
    };
    u.login("guest", "guest").await;
    u.choose("#refresh", "1").await;
    let (conn, ch) = u.b.channel().await;
    ch.queue_declare(
        "rates".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 2_000_000 {
                let _ = ch
                    .basic_publish(
                        "".into(),
                        "rates".into(),
                        BasicPublishOptions::default(),
                        b"tick",
                        BasicProperties::default(),
                    )
                    .await;
                n += 1;
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        })
    };
    // The legend shows a publish rate above zero, and the line's points change between
    // refreshes: the chart moves.
    u.wait_text(
        "[data-chart=overview] li[data-series=publish] .value",
        |t| {
            t.ends_with("/s")
                && t.trim_end_matches("/s")
                    .parse::<f64>()
                    .is_ok_and(|r| r > 0.0)
        },
    )
    .await;
    let first = publish_line(&u).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let now = publish_line(&u).await;
        if now != first && now.split(' ').count() >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the publish line never moved: {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = publisher.await;
    u.screenshot("overview-publishing").await;
    drop(conn);
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_create_publish_get_and_purge() {
    let Some(u) = ui().await else { return };
    u.login("guest", "guest").await;
    u.open("#/queues").await;
    u.wait_for("#add-queue select[name=vhost] option[value='/']")
        .await;
    u.type_into("#add-queue input[name=name]", "from-the-browser")
        .await;
    u.click("#add-queue button[type=submit]").await;
    u.wait_text("#add-queue .form-status", |t| t.contains("declared"))
        .await;
    assert_eq!(ready(&u, "/", "from-the-browser"), 0);
    // The list (refreshed after the declare) links to the queue's page.
    u.click("a[href='#/queues/%2F/from-the-browser']").await;
    u.wait_text("#queue-name", |t| t == "from-the-browser")
        .await;

    u.type_into(
        "form.publish textarea[name=payload]",
        "hello from the browser",
    )
    .await;
    u.type_into("form.publish textarea[name=headers]", "x-test=yes")
        .await;
    u.click("form.publish button[type=submit]").await;
    u.wait_text("form.publish .form-status", |t| t == "Message published.")
        .await;
    assert_eq!(ready(&u, "/", "from-the-browser"), 1);

    // Get with requeue: the message comes back and stays in the queue.
    u.choose("#get-messages select[name=ackmode]", "ack_requeue_true")
        .await;
    u.click("#get-messages button[type=submit]").await;
    u.wait_text("#got-messages pre.payload", |t| {
        t == "hello from the browser"
    })
    .await;
    u.wait_text("#got-messages", |t| t.contains("x-test")).await;
    assert_eq!(ready(&u, "/", "from-the-browser"), 1);

    // Purge asks twice.
    u.click("#purge-queue").await;
    u.wait_text("#purge-queue", |t| t.contains("Really")).await;
    u.click("#purge-queue").await;
    u.wait_text(".actions-status", |t| t.contains("Queue purged."))
        .await;
    assert_eq!(ready(&u, "/", "from-the-browser"), 0);
    u.finish().await;
}

/// Browsing (`POST /api/queues/{vhost}/{name}/browse`) shows the messages and leaves them in
/// the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_without_removing() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "browse-me");
    publish(&u, "/", "browse-me", b"first");
    publish(&u, "/", "browse-me", b"second");
    u.login("guest", "guest").await;
    u.open("#/queues/%2F/browse-me").await;
    u.wait_text("#queue-name", |t| t == "browse-me").await;
    u.click("#browse-messages button[type=submit]").await;
    let status = u
        .wait_text("#browse-messages .form-status", |t| !t.is_empty())
        .await;
    u.wait_text("#browsed-messages", |t| {
        t.contains("first") && t.contains("second")
    })
    .await;
    assert!(status.contains("stay in the queue"), "{status}");
    assert_eq!(ready(&u, "/", "browse-me"), 2, "browsing took messages");
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_with_one_permission_sees_only_its_vhost() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "root-queue");
    u.login("guest", "guest").await;
    u.open("#/admin").await;
    u.type_into("#add-vhost input[name=vhost]", "team-a").await;
    u.click("#add-vhost button[type=submit]").await;
    u.wait_text("#add-vhost .form-status", |t| t.contains("added"))
        .await;
    u.type_into("#add-user input[name=username]", "alice").await;
    u.type_into("#add-user input[name=password]", "s3cret")
        .await;
    u.type_into("#add-user input[name=tags]", "management")
        .await;
    u.click("#add-user button[type=submit]").await;
    u.wait_text("#add-user .form-status", |t| t.contains("saved"))
        .await;
    u.type_into("#set-permission input[name=user]", "alice")
        .await;
    u.type_into("#set-permission input[name=vhost]", "team-a")
        .await;
    u.click("#set-permission button[type=submit]").await;
    u.wait_text("#set-permission .form-status", |t| t.contains("set"))
        .await;
    u.wait_text("#permissions table", |t| {
        t.contains("alice") && t.contains("team-a")
    })
    .await;
    declare(&u, "team-a", "team-queue");

    u.logout().await;
    u.login("alice", "s3cret").await;
    let nav = u.wait_text("#nav", |t| t.contains("Queues")).await;
    assert!(
        !nav.contains("Admin") && !nav.contains("Definitions"),
        "{nav}"
    );
    u.open("#/queues").await;
    let list = u
        .wait_text("[data-list=queues] .list-body", |t| {
            t.contains("team-queue")
        })
        .await;
    assert!(
        !list.contains("root-queue"),
        "alice sees another vhost: {list}"
    );
    let vhosts = u
        .js("return [...document.querySelectorAll('[data-list=queues] select[name=vhost] option')].map(o => o.value)")
        .await;
    assert_eq!(vhosts, serde_json::json!(["", "team-a"]));
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_and_import() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "exported-queue");
    u.login("guest", "guest").await;
    u.open("#/definitions").await;
    u.click("#export button[type=submit]").await;
    u.wait_text("#export .form-status", |t| t.contains("Exported"))
        .await;
    let shown = u
        .js("return document.getElementById('exported').value")
        .await;
    assert!(shown.as_str().unwrap_or("").contains("exported-queue"));
    // The download lands in the browser's download folder.
    let deadline = Instant::now() + WAIT;
    let file = loop {
        let found = std::fs::read_dir(u.downloads.path())
            .expect("downloads")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "json"));
        if let Some(f) = found {
            break f;
        }
        assert!(Instant::now() < deadline, "no definitions file downloaded");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let text = std::fs::read_to_string(&file).expect("read download");
    let defs: serde_json::Value = serde_json::from_str(&text).expect("downloaded JSON");
    assert!(
        defs["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .any(|q| q["name"] == "exported-queue")
    );

    // Import a file that adds a queue.
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("import.json");
    let import = serde_json::json!({
        "queues": [{"name": "imported-queue", "vhost": "/", "durable": true, "auto_delete": false, "arguments": {}}],
    });
    std::fs::write(&path, import.to_string()).expect("write");
    u.wait_for("#import-file")
        .await
        .send_keys(&path.display().to_string())
        .await
        .expect("choose file");
    u.click("#import button[type=submit]").await;
    u.wait_text("#import .form-status", |t| {
        t.contains("Definitions imported.")
    })
    .await;
    assert_eq!(ready(&u, "/", "imported-queue"), 0);
    u.finish().await;
}

const XSS: &str = "<img src=x onerror=alert(1)>";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_headers_with_html_render_as_text() {
    let Some(u) = ui().await else { return };
    let (_c, ch) = u.b.channel().await;
    ch.queue_declare(
        XSS.into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("<b>h</b>"),
        AMQPValue::LongString(
            "<script>window.__pwned = 1</script><img src=y onerror=alert(2)>".into(),
        ),
    );
    ch.basic_publish(
        "".into(),
        XSS.into(),
        BasicPublishOptions::default(),
        b"<i>payload</i>",
        BasicProperties::default().with_headers(headers),
    )
    .await
    .expect("publish");
    u.login("guest", "guest").await;
    u.open("#/queues").await;
    let cell = u
        .wait_text("[data-list=queues] td.qname", |t| t == XSS)
        .await;
    assert_eq!(cell, XSS);
    u.click("[data-list=queues] td.qname a").await;
    u.wait_text("#queue-name", |t| t == XSS).await;
    u.click("#get-messages button[type=submit]").await;
    u.wait_text("#got-messages pre.payload", |t| t == "<i>payload</i>")
        .await;
    u.wait_text("#got-messages", |t| {
        t.contains("<script>window.__pwned = 1</script>")
    })
    .await;
    let injected = u
        .js("return document.querySelectorAll('main img, main script, main i, main b').length")
        .await;
    assert_eq!(
        injected,
        serde_json::json!(0),
        "markup from data became elements"
    );
    assert!(
        u.js("return window.__pwned === undefined")
            .await
            .as_bool()
            .unwrap_or(false)
    );
    assert!(u.c.get_alert_text().await.is_err(), "an alert opened");
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_monitoring_user_cannot_delete_a_queue() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "keep-me");
    u.add_user("watcher", "watcher", &["monitoring"], None);
    u.login("watcher", "watcher").await;
    let nav = u.wait_text("#nav", |t| t.contains("Queues")).await;
    assert!(!nav.contains("Admin"), "{nav}");
    u.open("#/queues/%2F/keep-me").await;
    u.wait_text("#queue-name", |t| t == "keep-me").await;
    u.click("#delete-queue").await;
    u.wait_text("#delete-queue", |t| t.contains("Really")).await;
    u.click("#delete-queue").await;
    // RabbitMQ 3.10's refusal for a vhost the user has no permissions in
    // (tests/fixtures/rabbitmq-3.10/access-api.json, monitoring_put_queue_other_vhost).
    u.wait_text(".actions-status", |t| {
        t.contains("User not authorised to access virtual host")
    })
    .await;
    assert_eq!(ready(&u, "/", "keep-me"), 0, "queue gone");
    u.finish().await;
}

/// The README's screenshots: set `LAGOMORPH_UI_SCREENSHOTS=docs` to write docs/ui-overview.png
/// and docs/ui-queue.png from a broker with a few busy queues (about a minute of traffic).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshots_for_the_readme() {
    let Ok(out) = std::env::var("LAGOMORPH_UI_SCREENSHOTS") else {
        return;
    };
    let Some(u) = ui_with(Duration::from_secs(1)).await else {
        return;
    };
    for (q, n) in [("invoices", 1200), ("emails", 0), ("audit.log", 5400)] {
        declare(&u, "/", q);
        for _ in 0..n {
            publish(&u, "/", q, b"{\"id\": 42}");
        }
    }
    u.b.broker
        .put_vhost(lagomorph::broker::access::VhostInfo::named("staging"))
        .expect("vhost");
    declare(&u, "staging", "orders");
    let (_c, ch) = u.b.channel().await;
    ch.queue_declare(
        "orders".into(),
        QueueDeclareOptions {
            durable: true,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let (_c2, consumer_ch) = u.b.channel().await;
    consumer_ch
        .basic_qos(50, Default::default())
        .await
        .expect("qos");
    let mut consumer = consumer_ch
        .basic_consume(
            "orders".into(),
            "order-worker-1".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let acker = tokio::spawn(async move {
        use futures_lite::StreamExt;
        let mut n = 0u64;
        while let Some(Ok(d)) = consumer.next().await {
            n += 1;
            // A slower consumer: the backlog grows and shrinks with the publish rate.
            if n.is_multiple_of(4) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let _ = d.ack(Default::default()).await;
        }
    });
    let traffic = tokio::spawn(async move {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(100) {
            let phase = t0.elapsed().as_secs_f64() / 12.0;
            let per_tick = (8.0 + 6.0 * phase.sin()) as usize;
            for _ in 0..per_tick {
                let _ = ch
                    .basic_publish(
                        "".into(),
                        "orders".into(),
                        BasicPublishOptions::default(),
                        b"{\"order\": 1001, \"items\": 3}",
                        BasicProperties::default().with_content_type("application/json".into()),
                    )
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    u.login("guest", "guest").await;
    u.js("localStorage.setItem('lagomorph.chart-minutes', '1')")
        .await;
    u.choose("#refresh", "1").await;
    // Each page keeps the history it saw: let both see most of a minute.
    u.open("#/queues/%2F/orders").await;
    u.wait_text("#queue-name", |t| t == "orders").await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let png = u.screenshot("queue").await;
    std::fs::write(format!("{out}/ui-queue.png"), png).expect("write queue png");
    u.open("#/").await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let png = u.screenshot("overview").await;
    std::fs::write(format!("{out}/ui-overview.png"), png).expect("write overview png");
    u.open("#/queues").await;
    u.wait_text("[data-list=queues] .list-body", |t| t.contains("orders"))
        .await;
    let png = u.screenshot("queues").await;
    std::fs::write(format!("{out}/ui-queues.png"), png).expect("write queues png");
    traffic.abort();
    acker.abort();
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_a_connection_with_a_reason() {
    let Some(u) = ui().await else { return };
    let mut raw = support::raw::Raw::connect(u.b.addr).await;
    u.login("guest", "guest").await;
    u.choose("#refresh", "1").await;
    u.open("#/connections").await;
    u.click("[data-list=connections] .close-conn button").await;
    u.type_into(
        "[data-list=connections] .close-conn input[name=reason]",
        "maintenance window",
    )
    .await;
    // Refreshes (every second here) hold off while a reason is being typed: after a few
    // seconds the input and its text are still there.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let typed = u
        .js("const i = document.querySelector('.close-conn input[name=reason]'); return i ? i.value : null")
        .await;
    assert_eq!(
        typed,
        serde_json::json!("maintenance window"),
        "a refresh wiped the reason"
    );
    u.click("[data-list=connections] .close-conn button.danger")
        .await;
    u.wait_text("#page-connections .close-status", |t| {
        t.contains("closed: maintenance window")
    })
    .await;
    // The client hears 320 CONNECTION_FORCED with the reason as reply text.
    let (code, text, _, _) = raw.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (320, "CONNECTION_FORCED - maintenance window")
    );
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_page_binds_and_publishes_with_a_routing_key() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "routed-here");
    u.login("guest", "guest").await;
    u.open("#/exchanges/%2F/amq.direct").await;
    u.wait_text("h1", |t| t.contains("amq.direct")).await;
    u.type_into("form.bind input[name=destination]", "routed-here")
        .await;
    u.type_into("form.bind input[name=routing_key]", "key.a")
        .await;
    u.click("form.bind button[type=submit]").await;
    u.wait_text("form.bind .form-status", |t| t.contains("Bound."))
        .await;
    // The binding shows on this exchange's page, as source.
    u.wait_text("main", |t| t.contains("key.a") && t.contains("routed-here"))
        .await;
    u.type_into("form.publish input[name=routing_key]", "key.a")
        .await;
    u.type_into(
        "form.publish textarea[name=properties]",
        "content_type=text/plain",
    )
    .await;
    u.type_into("form.publish textarea[name=payload]", "via amq.direct")
        .await;
    u.click("form.publish button[type=submit]").await;
    u.wait_text("form.publish .form-status", |t| t == "Message published.")
        .await;
    assert_eq!(ready(&u, "/", "routed-here"), 1);
    // A key nothing is bound with: published, but not routed.
    u.type_into("form.publish input[name=routing_key]", "nowhere")
        .await;
    u.click("form.publish button[type=submit]").await;
    u.wait_text("form.publish .form-status", |t| t.contains("not routed"))
        .await;
    u.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_added_in_admin_shows_on_its_queue() {
    let Some(u) = ui().await else { return };
    declare(&u, "/", "limited.orders");
    u.login("guest", "guest").await;
    u.open("#/admin").await;
    u.type_into("#add-policies input[name=name]", "cap-orders")
        .await;
    u.type_into("#add-policies input[name=pattern]", "^limited\\.")
        .await;
    u.type_into(
        "#add-policies textarea[name=definition]",
        "{\"max-length\": 10}",
    )
    .await;
    u.click("#add-policies button[type=submit]").await;
    u.wait_text("#add-policies .form-status", |t| t.contains("saved"))
        .await;
    u.wait_text("#policies table", |t| {
        t.contains("cap-orders") && t.contains("max-length")
    })
    .await;
    u.open("#/queues/%2F/limited.orders").await;
    u.wait_text("#queue-name", |t| t == "limited.orders").await;
    u.wait_text("main", |t| {
        t.contains("cap-orders") && t.contains("max-length")
    })
    .await;
    u.finish().await;
}
