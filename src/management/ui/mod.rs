//! The management web UI: plain HTML, CSS and ES modules written for this project, embedded in
//! the binary and served by the management listener at `/` (the API stays under `/api`).
//!
//! No build step and no third-party code: the files under `ui/assets/` are the files served,
//! byte for byte (`include_bytes!`). Each answer carries a strong `ETag` (a SHA-256 prefix of the
//! content, computed once) and `Cache-Control: no-cache`, so browsers revalidate cheaply and a
//! new binary is picked up at once. A strict `Content-Security-Policy` (scripts and styles
//! only from this origin, nothing inline) backs up the UI's own rule of building the DOM with
//! `textContent` only: a queue named `<img src=x onerror=…>` is text either way.
//!
//! Owns the static side only; the pages talk to the API over `fetch` like any other client.

use super::ApiState;
use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

/// One embedded file.
struct Asset {
    /// File name under `assets/` (the URL is `/assets/<name>`, `index.html` is also `/`).
    name: &'static str,
    /// Its `Content-Type`.
    content_type: &'static str,
    /// Its bytes.
    body: &'static [u8],
}

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

macro_rules! asset {
    ($name:literal, $ct:expr) => {
        Asset {
            name: $name,
            content_type: $ct,
            body: include_bytes!(concat!("assets/", $name)),
        }
    };
}

/// Every file the UI is made of. `tests::every_file_is_embedded` checks this list against the
/// folder, so a new file cannot be forgotten.
const ASSETS: &[Asset] = &[
    asset!("index.html", HTML),
    asset!("app.css", CSS),
    asset!("favicon.svg", SVG),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("dom.js", JS),
    asset!("chart.js", JS),
    asset!("refresh.js", JS),
    asset!("list.js", JS),
    asset!("overview.js", JS),
    asset!("connections.js", JS),
    asset!("exchanges.js", JS),
    asset!("queues.js", JS),
    asset!("queue.js", JS),
    asset!("publish.js", JS),
    asset!("admin.js", JS),
    asset!("definitions.js", JS),
];

/// Files checked by `node --check` but not served (they only tell Node these are ES modules).
#[cfg(test)]
const NOT_SERVED: &[&str] = &["package.json"];

/// Scripts, styles, images and API calls from this origin only; nothing inline, no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

/// The ETag of each asset, in `ASSETS` order, computed on first use.
fn etags() -> &'static [HeaderValue] {
    static ETAGS: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                HeaderValue::from_str(&format!("\"{hex}\""))
                    .expect("invariant: hex digits make a valid header value")
            })
            .collect()
    })
}

/// Whether an `If-None-Match` value lists `etag` (or is `*`).
fn matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

fn serve(name: &str, headers: &HeaderMap) -> Response {
    let Some(i) = ASSETS.iter().position(|a| a.name == name) else {
        return (StatusCode::NOT_FOUND, "Not Found").into_response();
    };
    let asset = &ASSETS[i];
    let etag = etags()[i].clone();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches(v, etag.to_str().unwrap_or("")));
    let common = [
        (header::ETAG, etag),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, common).into_response();
    }
    (
        common,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(name): Path<String>, headers: HeaderMap) -> Response {
    serve(&name, &headers)
}

/// The UI's routes: `/` (and `/index.html`) and `/assets/{name}`.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(index))
        .route("/index.html", get(index))
        .route(
            "/favicon.ico",
            get(|h: HeaderMap| async move { serve("favicon.svg", &h) }),
        )
        .route("/assets/{name}", get(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_file_is_embedded() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/management/ui/assets");
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .expect("assets dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| !NOT_SERVED.contains(&n.as_str()))
            .collect();
        let embedded: BTreeSet<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(on_disk, embedded);
        // Names are unique, so each has one ETag.
        assert_eq!(embedded.len(), ASSETS.len());
    }

    #[test]
    fn etags_are_quoted_and_distinct() {
        let tags: BTreeSet<_> = etags().iter().map(|t| t.to_str().expect("ascii")).collect();
        assert_eq!(tags.len(), ASSETS.len());
        assert!(tags.iter().all(|t| t.starts_with('"') && t.ends_with('"')));
    }

    #[test]
    fn if_none_match_lists_and_weak_tags() {
        assert!(matches("\"a\", W/\"b\"", "\"b\""));
        assert!(matches("*", "\"x\""));
        assert!(!matches("\"a\"", "\"b\""));
    }
}
