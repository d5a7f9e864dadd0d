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
//! bodies), `ui` (the web UI at `/`, embedded assets). Process figures come from
//! [`crate::process`].

mod api;
mod auth;
mod dto;
mod error;
mod json;
mod listing;
mod metrics;
mod rates;
mod ui;

use crate::broker::Broker;
use rates::Rates;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower::util::MapRequestLayer;

/// Options of the management server.
#[derive(Clone, Debug)]
pub struct Options {
    /// How often message rates are sampled (RabbitMQ's default is 5 s).
    pub sample_interval: Duration,
    /// The broker's AMQP listeners, for `/api/overview`'s `listeners` and the port-listener
    /// health check (the management listener is added to them).
    pub amqp_listeners: Vec<SocketAddr>,
    /// Which of `amqp_listeners` speak TLS (AMQPS): listed as `amqp/ssl`, as RabbitMQ does.
    pub amqps_listeners: Vec<SocketAddr>,
    /// The management listener serves HTTPS (listed as `https`).
    pub https: bool,
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
            amqp_listeners: Vec::new(),
            amqps_listeners: Vec::new(),
            https: false,
            data_dir: None,
            mem_limit: 0,
        }
    }
}

/// The addresses this node listens on.
#[derive(Debug, Default)]
pub(crate) struct Listeners {
    /// AMQP.
    pub(crate) amqp: Vec<SocketAddr>,
    /// Those of `amqp` that speak TLS.
    pub(crate) amqps: Vec<SocketAddr>,
    /// This management API.
    pub(crate) http: Option<SocketAddr>,
    /// It serves HTTPS.
    pub(crate) https: bool,
}

impl Listeners {
    /// Every port listened on, sorted (RabbitMQ's port-listener check lists them).
    pub(crate) fn ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .amqp
            .iter()
            .chain(self.http.iter())
            .map(SocketAddr::port)
            .collect();
        ports.sort_unstable();
        ports.dedup();
        ports
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
    /// The addresses this node listens on.
    pub(crate) listeners: Arc<Listeners>,
    /// The cluster name (`PUT /api/cluster-name`); the node name until set. Kept in memory
    /// only, and not the `cluster_name` of AMQP's server properties.
    pub(crate) cluster_name: Arc<RwLock<String>>,
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

/// Serves the management API on `listener` (a `TcpListener`, or `server::https::HttpsListener`
/// for HTTPS) until `token` is cancelled. Starts the rate sampler too; both stop with the token.
pub async fn serve_with<L>(
    listener: L,
    broker: Broker,
    token: CancellationToken,
    opts: Options,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
    ClientAddr: for<'a> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'a, L>>,
{
    let node = format!("lagomorph@{}", crate::process::hostname());
    let state = ApiState {
        broker: broker.clone(),
        rates: Arc::new(Rates::default()),
        started: Instant::now(),
        node: Arc::from(node.as_str()),
        listeners: Arc::new(Listeners {
            amqp: opts.amqp_listeners.clone(),
            amqps: opts.amqps_listeners.clone(),
            http: listener.local_addr().ok(),
            https: opts.https,
        }),
        cluster_name: Arc::new(RwLock::new(node)),
        data_dir: opts.data_dir.clone().map(Arc::new),
        mem_limit: opts.mem_limit,
    };
    let sampler = tokio::spawn(Arc::clone(&state.rates).run(
        broker,
        opts.sample_interval.max(Duration::from_millis(100)),
        token.clone(),
    ));
    // RabbitMQ answers `/api/queues/` as `/api/queues`: the slash goes before routing.
    let app = MapRequestLayer::new(api::trim_trailing_slash).layer(api::router(state));
    // The client's address reaches the handlers (loopback_users applies to HTTP logins too).
    let app = axum::ServiceExt::<axum::extract::Request>::into_make_service_with_connect_info::<
        ClientAddr,
    >(app);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(token.clone().cancelled_owned())
        .await;
    token.cancel();
    let _ = sampler.await;
    result
}

/// The client's address as the management handlers see it (`ConnectInfo<ClientAddr>`): every
/// listener the API is served on says how to get it (plain TCP here, HTTPS in `server::https`).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::SocketAddr);

impl
    axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>>
    for ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Self {
        ClientAddr(*stream.remote_addr())
    }
}
