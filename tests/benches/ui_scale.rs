//! The management UI and API at scale, against any broker with RabbitMQ's management API:
//! declares N queues over AMQP (many channels, one in-flight declare each), waits until the
//! API lists them, then measures `GET /api/queues?page=1&page_size=100` (default sort, sorted
//! by messages, regex-filtered), the Prometheus endpoint, the broker's RSS and how long the
//! queues page of the broker's own web UI takes in headless chromium until 100 rows show.
//! Prints one JSON object. `bench/ui-scale.sh` runs it against Lagomorph and RabbitMQ 3.10.
//!
//! cargo bench --bench ui_scale -- --label NAME --amqp URI --http URL [--metrics URL]
//!     [--queues 100000] [--pid PID] [--ui lagomorph|rabbitmq|none]

use fantoccini::{ClientBuilder, Locator};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Channels declaring at once.
const CHANNELS: usize = 64;

fn args() -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(k) = it.next() {
        if let Some(k) = k.strip_prefix("--") {
            out.insert(k.to_string(), it.next().unwrap_or_default());
        }
    }
    out
}

fn rss_mib(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

async fn declare_all(uri: &str, n: usize) -> f64 {
    let conn = lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
        .await
        .expect("connect");
    let t0 = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CHANNELS {
        let ch = conn.create_channel().await.expect("channel");
        tasks.spawn(async move {
            for i in (c..n).step_by(CHANNELS) {
                ch.queue_declare(
                    format!("bench-{i:06}").as_str().into(),
                    QueueDeclareOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("declare");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("declare task");
    }
    let secs = t0.elapsed().as_secs_f64();
    // The connection stays open only for the declares: the queues are not exclusive.
    let _ = conn.close(200, "done".into()).await;
    secs
}

struct Http {
    client: reqwest::Client,
}

impl Http {
    async fn get(&self, url: &str) -> Result<(u16, String, f64), String> {
        let t0 = Instant::now();
        let ms = |t0: Instant| t0.elapsed().as_secs_f64() * 1000.0;
        let r = self
            .client
            .get(url)
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .map_err(|e| format!("{e} after {:.0} ms", ms(t0)))?;
        let status = r.status().as_u16();
        let body = r
            .text()
            .await
            .map_err(|e| format!("{e} after {:.0} ms", ms(t0)))?;
        Ok((status, body, ms(t0)))
    }

    /// Median and best of `n` timed GETs and the last body, or what went wrong (a broker that
    /// drops the request is a result too).
    async fn timed(&self, url: &str, n: usize) -> (Value, String) {
        let mut times = Vec::new();
        let mut last = String::new();
        let t0 = Instant::now();
        for _ in 0..n {
            // A slow broker gets fewer tries (at least one, at most a minute's worth).
            if !times.is_empty() && t0.elapsed() > Duration::from_secs(60) {
                break;
            }
            match self.get(url).await {
                Ok((200, body, ms)) => {
                    times.push(ms);
                    last = body;
                }
                Ok((status, body, ms)) => {
                    let e = format!(
                        "HTTP {status} after {ms:.0} ms: {}",
                        &body[..body.len().min(200)]
                    );
                    return (json!({"error": e}), last);
                }
                Err(e) => return (json!({"error": e}), last),
            }
        }
        times.sort_by(f64::total_cmp);
        (
            json!({"median": times[times.len() / 2], "min": times[0]}),
            last,
        )
    }
}

/// Milliseconds from navigation start until the page shows `rows` rows matching `css`.
async fn page_load(base: &str, kind: &str) -> Value {
    let (chromium, driver) = ("/usr/bin/chromium", "/usr/bin/chromedriver");
    if !std::path::Path::new(chromium).exists() || !std::path::Path::new(driver).exists() {
        return json!({"error": "chromium or chromedriver not installed"});
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let profile = tempfile::tempdir().expect("profile");
    let caps = json!({"browserName": "chrome", "goog:chromeOptions": {"binary": chromium, "args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--window-size=1400,1000",
        format!("--user-data-dir={}", profile.path().display())]}});
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let mut client = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let c = client.expect("WebDriver session");
    let mut to = fantoccini::wd::TimeoutConfiguration::default();
    to.set_script(Some(Duration::from_secs(300)));
    to.set_page_load(Some(Duration::from_secs(300)));
    c.update_timeouts(to).await.expect("timeouts");
    // Log in through each UI's own form.
    c.goto(&format!("{base}/")).await.expect("goto");
    let (user_css, pass_css, submit_css, rows_css) = match kind {
        "rabbitmq" => (
            "input[name=username]",
            "input[name=password]",
            "input[type=submit]",
            "#main table.list tbody tr",
        ),
        _ => (
            "#login input[name=username]",
            "#login input[name=password]",
            "#login button[type=submit]",
            "[data-list=queues] tbody tr",
        ),
    };
    let wait = |css: &'static str| {
        let c = c.clone();
        async move {
            c.wait()
                .at_most(Duration::from_secs(60))
                .for_element(Locator::Css(css))
                .await
                .expect(css)
        }
    };
    wait(user_css).await.send_keys("guest").await.expect("user");
    wait(pass_css).await.send_keys("guest").await.expect("pass");
    wait(submit_css).await.click().await.expect("login");
    // Logged in (the nav of each UI), then a fresh load of the queues page.
    let _ = c
        .wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::Css(if kind == "rabbitmq" {
            "#tabs"
        } else {
            "#nav a"
        }))
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut loads = Vec::new();
    for _ in 0..3 {
        // A new document each time (a hash change alone would keep the old one), so
        // performance.now() counts from this page load's navigation start.
        c.goto("about:blank").await.expect("blank");
        c.goto(&format!("{base}/#/queues"))
            .await
            .expect("goto queues");
        let ms = c
            .execute_async(
                "const [css, n, done] = arguments;
                 const ok = () => document.querySelectorAll(css).length >= n;
                 if (ok()) { done(performance.now()); return; }
                 const obs = new MutationObserver(() => { if (ok()) { obs.disconnect(); done(performance.now()); } });
                 obs.observe(document.documentElement, {childList: true, subtree: true});",
                vec![json!(rows_css), json!(100)],
            )
            .await;
        match ms {
            Ok(ms) => loads.push(ms.as_f64().unwrap_or(f64::NAN)),
            Err(e) => {
                let _ = c.close().await;
                let _ = child.kill();
                let _ = child.wait();
                return json!({"error": format!("queues page: {e}"), "queues_page_ms_all": loads});
            }
        }
    }
    let _ = c.close().await;
    let _ = child.kill();
    let _ = child.wait();
    loads.sort_by(f64::total_cmp);
    json!({"queues_page_ms_median": loads[1], "queues_page_ms_all": loads})
}

#[tokio::main]
async fn main() {
    let a = args();
    let label = a.get("label").cloned().unwrap_or_else(|| "broker".into());
    // A plain `cargo bench` runs every bench: this one needs a broker to point at.
    let (Some(amqp), Some(http)) = (a.get("amqp").cloned(), a.get("http").cloned()) else {
        eprintln!(
            "ui_scale: needs --amqp URI and --http URL (bench/ui-scale.sh passes them); skipped"
        );
        return;
    };
    let n: usize = a
        .get("queues")
        .map_or(100_000, |v| v.parse().expect("--queues"));
    let pid = a.get("pid").cloned();
    let h = Http {
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .expect("client"),
    };
    let rss_before = pid.as_deref().and_then(rss_mib);
    eprintln!("[{label}] declaring {n} queues over {CHANNELS} channels");
    let declare_s = declare_all(&amqp, n).await;
    eprintln!("[{label}] declared in {declare_s:.1} s; waiting for the API to list them");
    let t0 = Instant::now();
    let listed_after_s = loop {
        let total = match h
            .get(&format!("{http}/api/queues?page=1&page_size=1"))
            .await
        {
            Ok((200, body, _)) => serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v["total_count"].as_u64())
                .unwrap_or(0),
            _ => 0,
        };
        if total as usize >= n {
            break t0.elapsed().as_secs_f64();
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1800),
            "API lists {total} of {n}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let page = |q: &str| format!("{http}/api/queues?page=1&page_size=100{q}");
    let (default_sort, body) = h.timed(&page(""), 7).await;
    let items = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["items"].as_array().map(Vec::len))
        .unwrap_or(0);
    let (by_messages, _) = h.timed(&page("&sort=messages&sort_reverse=true"), 7).await;
    let (by_regex, _) = h
        .timed(&page("&name=%5Ebench-0999&use_regex=true"), 7)
        .await;
    let (by_rate, _) = h
        .timed(
            &page("&sort=message_stats.publish_details.rate&sort_reverse=true"),
            7,
        )
        .await;
    let metrics = match a.get("metrics") {
        Some(url) => {
            let (mut t, text) = h.timed(url, 3).await;
            t["url"] = json!(url);
            t["bytes"] = json!(text.len());
            t
        }
        None => json!(null),
    };
    let ui = match a.get("ui").map(String::as_str) {
        Some("none") | None => json!(null),
        Some(kind) => page_load(&http, kind).await,
    };
    let out = json!({
        "label": label,
        "queues": n,
        "declare_s": declare_s,
        "declares_per_s": n as f64 / declare_s,
        "api_lists_all_after_s": listed_after_s,
        "page_items": items,
        "api_page_ms": default_sort,
        "api_page_sorted_by_messages_ms": by_messages,
        "api_page_sorted_by_publish_rate_ms": by_rate,
        "api_page_regex_filter_ms": by_regex,
        "metrics": metrics,
        "ui": ui,
        "rss_mib_before": rss_before,
        "rss_mib_after": pid.as_deref().and_then(rss_mib),
    });
    println!("{out}");
}
