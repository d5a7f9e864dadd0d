//! The management HTTP API in RabbitMQ's shape (paths, methods, status codes, JSON field names
//! and error bodies), so RabbitMQ's tools work unchanged, plus Prometheus metrics at `/metrics`.
//!
//! Owns the HTTP side only. It reads and changes the broker through [`crate::broker`]'s public
//! API and its value types (`protocol::types` field tables, `protocol::properties`); it never
//! reaches into sessions or the server. Response types live in `dto`, apart from broker types.
//!
//! Files: `api/` (router and one file per resource, as lavinmq's `http/controller/*`), `auth`
//! (basic auth, tags), `dto` (JSON shapes), `json` (field tables and properties ↔ JSON, request
//! extractors), `listing` (pagination, filters, sorting, columns), `rates` (the sampler that
//! turns atomic counters into rates), `metrics` (Prometheus text), `error` (RabbitMQ's error
//! bodies), `sys` (process figures from `/proc`), `ui` (the web UI at `/`, embedded assets).

mod api;
mod auth;
mod dto;
mod error;
mod json;
mod listing;
mod metrics;
mod rates;
mod sys;
mod ui;

use crate::broker::Broker;
use rates::Rates;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Options of the management server.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often message rates are sampled (RabbitMQ's default is 5 s).
    pub sample_interval: Duration,
    /// The broker's data directory, whose file system's free space `/api/nodes` reports as
    /// `disk_free` (left out when `None`).
    pub data_dir: Option<PathBuf>,
    /// The memory high watermark in bytes (`mem_limit` of `/api/nodes`), 0 when there is none.
    pub mem_limit: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sample_interval: Duration::from_secs(5),
            data_dir: None,
            mem_limit: 0,
        }
    }
}

/// What every handler shares.
#[derive(Clone, Debug)]
pub(crate) struct ApiState {
    /// The broker.
    pub(crate) broker: Broker,
    /// Sampled rates.
    pub(crate) rates: Arc<Rates>,
    /// When the server started (node uptime).
    pub(crate) started: Instant,
    /// This node's name, `lagomorph@<host>`.
    pub(crate) node: Arc<str>,
    /// The data directory (for `disk_free`).
    pub(crate) data_dir: Option<Arc<PathBuf>>,
    /// The memory high watermark in bytes, 0 for none.
    pub(crate) mem_limit: u64,
}

/// Serves the management API on `listener` until `token` is cancelled, with default options.
pub async fn serve(
    listener: TcpListener,
    broker: Broker,
    token: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, broker, token, Options::default()).await
}

/// Serves the management API on `listener` until `token` is cancelled. Starts the rate sampler
/// too; both stop with the token.
pub async fn serve_with(
    listener: TcpListener,
    broker: Broker,
    token: CancellationToken,
    opts: Options,
) -> std::io::Result<()> {
    let state = ApiState {
        broker: broker.clone(),
        rates: Arc::new(Rates::default()),
        started: Instant::now(),
        node: Arc::from(format!("lagomorph@{}", sys::hostname()).as_str()),
        data_dir: opts.data_dir.clone().map(Arc::new),
        mem_limit: opts.mem_limit,
    };
    let sampler = tokio::spawn(Arc::clone(&state.rates).run(
        broker,
        opts.sample_interval.max(Duration::from_millis(100)),
        token.clone(),
    ));
    let app = api::router(state);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .await;
    token.cancel();
    let _ = sampler.await;
    result
}
