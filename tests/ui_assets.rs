//! The management UI without a browser: every embedded file is served with its type, ETag,
//! `Cache-Control: no-cache`, 304 revalidation and the Content-Security-Policy; every module a
//! page imports is served; every API resource the pages call answers; and `node --check`
//! accepts every module as ES-module syntax.

mod support;

use regex::Regex;
use reqwest::StatusCode;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn assets_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/management/ui/assets")
}

/// (file name, contents) of every JavaScript module.
fn modules() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(assets_dir())
        .expect("assets")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "js"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    out.sort();
    out
}

struct Server {
    base: String,
    http: reqwest::Client,
    b: support::TestBroker,
    token: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn server() -> Server {
    let b = support::start().await;
    let (base, token) = support::serve_management(&b, Default::default()).await;
    Server {
        base,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        b,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_asset_is_served_with_caching_headers() {
    let s = server().await;
    let mut files: Vec<String> = std::fs::read_dir(assets_dir())
        .expect("assets")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "package.json")
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for (path, file) in files
        .iter()
        .map(|f| (format!("/assets/{f}"), f.clone()))
        .chain([("/".to_string(), "index.html".to_string())])
    {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .expect("get");
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        let h = r.headers().clone();
        let ct = h["content-type"].to_str().expect("ct").to_string();
        let want = match file.rsplit('.').next() {
            Some("html") => "text/html",
            Some("css") => "text/css",
            Some("js") => "text/javascript",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected asset type {other:?}"),
        };
        assert!(ct.starts_with(want), "{path}: {ct}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        let csp = h["content-security-policy"].to_str().expect("csp");
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        let etag = h["etag"].to_str().expect("etag").to_string();
        let body = r.bytes().await.expect("body");
        assert_eq!(
            &body[..],
            &std::fs::read(assets_dir().join(&file)).expect("file")[..],
            "{path} is not the file"
        );
        let again = s
            .http
            .get(format!("{}{path}", s.base))
            .header("if-none-match", &etag)
            .send()
            .await
            .expect("get");
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
        assert_eq!(again.headers()["etag"].to_str().expect("etag"), etag);
    }
    // Unknown files are plain 404s; unknown API paths keep RabbitMQ's JSON 404.
    let r = s
        .http
        .get(format!("{}/assets/nope.js", s.base))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = s
        .http
        .get(format!("{}/api/nope", s.base))
        .basic_auth("guest", Some("guest"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["error"],
        "Object Not Found"
    );
}

#[test]
fn every_imported_module_is_embedded() {
    let import = Regex::new(r#"(?:from|import\()\s*'\./([A-Za-z0-9_-]+\.js)'"#).expect("re");
    let served = include_str!("../src/management/ui/mod.rs");
    let names: BTreeSet<String> = modules().into_iter().map(|(n, _)| n).collect();
    for (file, text) in modules() {
        for cap in import.captures_iter(&text) {
            let target = &cap[1];
            assert!(names.contains(target), "{file} imports missing {target}");
            assert!(
                served.contains(&format!("asset!(\"{target}\"")),
                "{target} is not embedded"
            );
        }
        // The house rule that keeps data from becoming markup.
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
        ] {
            assert!(!text.contains(banned), "{file} uses {banned}");
        }
    }
}

/// API resources the UI calls that this broker does not have yet (other branches add them):
/// the pages show the API's 404 in words until then.
const WAITING: &[&str] = &[
    "topic-permissions",
    "policies",
    "operator-policies",
    "vhost-limits",
    "user-limits",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_api_resource_the_pages_use_answers() {
    let s = server().await;
    let (_c, ch) = s.b.channel().await;
    ch.queue_declare("q1".into(), Default::default(), Default::default())
        .await
        .expect("declare");
    // Resource names the modules call, from their /api/ paths.
    let re = Regex::new(r"/api/([a-z-]+)").expect("re");
    let used: BTreeSet<String> = modules()
        .iter()
        .flat_map(|(_, t)| {
            re.captures_iter(t)
                .map(|c| c[1].to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    // The GET each resource is checked with (the paths the pages build, filled in).
    let gets: &[(&str, &str)] = &[
        ("whoami", "/api/whoami"),
        ("overview", "/api/overview"),
        ("nodes", "/api/nodes"),
        ("health", "/api/health/checks/alarms"),
        ("vhosts", "/api/vhosts?columns=name"),
        (
            "queues",
            "/api/queues?page=1&page_size=100&name=q&use_regex=true&sort=messages&sort_reverse=true",
        ),
        (
            "queues",
            "/api/queues/%2F?page=1&page_size=20&sort=message_stats.publish_details.rate",
        ),
        ("queues", "/api/queues/%2F/q1"),
        ("queues", "/api/queues/%2F/q1/bindings"),
        ("exchanges", "/api/exchanges?page=1&page_size=100"),
        ("exchanges", "/api/exchanges/%2F/amq.default"),
        ("exchanges", "/api/exchanges/%2F/amq.direct/bindings/source"),
        (
            "exchanges",
            "/api/exchanges/%2F/amq.direct/bindings/destination",
        ),
        (
            "connections",
            "/api/connections?page=1&page_size=100&sort=name",
        ),
        ("channels", "/api/channels?page=1&page_size=100"),
        ("users", "/api/users"),
        ("permissions", "/api/permissions"),
        ("definitions", "/api/definitions"),
        ("definitions", "/api/definitions/%2F"),
        ("bindings", "/api/bindings/%2F"),
        ("topic-permissions", "/api/topic-permissions"),
        ("policies", "/api/policies"),
        ("operator-policies", "/api/operator-policies"),
        ("vhost-limits", "/api/vhost-limits"),
        ("user-limits", "/api/user-limits"),
    ];
    let covered: BTreeSet<String> = gets.iter().map(|(r, _)| r.to_string()).collect();
    let missing: Vec<_> = used.difference(&covered).collect();
    assert!(
        missing.is_empty(),
        "the UI calls /api/{missing:?}, which this test does not check"
    );
    for (resource, path) in gets {
        let r = s
            .http
            .get(format!("{}{path}", s.base))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .expect("get");
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap_or_default();
        if WAITING.contains(resource) && status == StatusCode::NOT_FOUND {
            eprintln!("WAITING: GET {path} answers 404 {body}; the admin page shows that in words");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        if path.contains("page=") {
            for k in [
                "items",
                "page",
                "page_count",
                "page_size",
                "filtered_count",
                "total_count",
                "item_count",
            ] {
                assert!(
                    body.get(k).is_some(),
                    "GET {path}: no {k} in the paged answer"
                );
            }
        }
    }
}

#[test]
fn node_accepts_every_module() {
    let node = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("node"))
            .find(|p| p.is_file())
    });
    let Some(node) = node else {
        assert!(
            std::env::var("LAGOMORPH_UI_TESTS").as_deref() != Ok("require"),
            "LAGOMORPH_UI_TESTS=require and node is not installed"
        );
        eprintln!("\n=== SKIPPED node --check: node is not installed ===\n");
        return;
    };
    // package.json's "type": "module" makes Node check ES-module syntax (it would let module
    // syntax errors through in a plain .js file otherwise).
    let pkg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(assets_dir().join("package.json")).expect("package.json"),
    )
    .expect("json");
    assert_eq!(pkg["type"], "module");
    for (file, _) in modules() {
        let out = std::process::Command::new(&node)
            .arg("--check")
            .arg(assets_dir().join(&file))
            .output()
            .expect("run node");
        assert!(
            out.status.success(),
            "node --check {file}:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
