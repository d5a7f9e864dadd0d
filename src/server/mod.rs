//! The only socket code: accept loops and one task per connection that shuttles bytes between
//! the socket (plain TCP, or TLS in [`tls`]) and a sans-IO [`crate::session::Connection`]; the
//! clock-driven tasks: the broker's timer [`ticker`], the [`memory_monitor`], the
//! [`budget_monitor`] and the [`disk`] monitor. Imports `session`, `broker`.

mod connection;
pub mod disk;
pub mod https;
pub mod tls;

pub use disk::{DiskLimit, disk_monitor};

use crate::broker::Broker;
use crate::session::Mechanisms;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Binds every address; fails on the first that cannot be bound. An IPv6 loopback that the
/// machine does not have is skipped with a warning when other listeners remain.
pub async fn bind_all(addrs: &[SocketAddr]) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    for addr in addrs {
        match TcpListener::bind(addr).await {
            Ok(l) => out.push(l),
            Err(e)
                if addr.is_ipv6()
                    && addrs.len() > 1
                    && e.kind() == std::io::ErrorKind::AddrNotAvailable =>
            {
                tracing::warn!(%addr, error = %e, "IPv6 listener unavailable; skipped");
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on {addr}: {e}"),
                ));
            }
        }
    }
    Ok(out)
}

/// What a listener speaks.
#[derive(Clone, Debug)]
pub enum Transport {
    /// AMQP over plain TCP.
    Plain,
    /// AMQP over TLS (AMQPS).
    Tls(Arc<tls::Tls>),
}

/// An AMQP listener and what it speaks.
#[derive(Debug)]
pub struct Listener {
    /// The bound socket.
    pub tcp: TcpListener,
    /// Plain or TLS.
    pub transport: Transport,
}

/// How connections are served.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Most connections open at once; more wait to be accepted.
    pub max_connections: usize,
    /// The login mechanisms; EXTERNAL (`external` set to anything) is offered on TLS
    /// listeners only, with the name from the client's certificate.
    pub mechanisms: Mechanisms,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_connections: 10_000,
            mechanisms: Mechanisms::default(),
        }
    }
}

/// Serves AMQP on plain `listeners` until `token` is cancelled, then waits for every
/// connection task to finish (each sends connection.close 320 and waits briefly for close-ok).
pub async fn serve(
    listeners: Vec<TcpListener>,
    broker: Broker,
    max_connections: usize,
    token: CancellationToken,
) {
    let listeners = listeners
        .into_iter()
        .map(|tcp| Listener {
            tcp,
            transport: Transport::Plain,
        })
        .collect();
    let opts = ServeOptions {
        max_connections,
        ..ServeOptions::default()
    };
    serve_with(listeners, broker, opts, token).await;
}

/// Serves AMQP and AMQPS on `listeners` until `token` is cancelled, as [`serve`].
pub async fn serve_with(
    listeners: Vec<Listener>,
    broker: Broker,
    opts: ServeOptions,
    token: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(opts.max_connections.max(1)));
    let tracker = TaskTracker::new();
    let opts = Arc::new(opts);
    for listener in listeners {
        let (broker, limit, token, conns, opts) = (
            broker.clone(),
            Arc::clone(&limit),
            token.clone(),
            tracker.clone(),
            Arc::clone(&opts),
        );
        tracker.spawn(accept_loop(listener, broker, limit, token, conns, opts));
    }
    tracker.spawn(ticker(broker.clone(), token.clone()));
    tracker.close();
    token.cancelled().await;
    tracker.wait().await;
}

async fn accept_loop(
    listener: Listener,
    broker: Broker,
    limit: Arc<Semaphore>,
    token: CancellationToken,
    tracker: TaskTracker,
    opts: Arc<ServeOptions>,
) {
    let Listener {
        tcp: listener,
        transport,
    } = listener;
    let local = listener.local_addr().ok();
    let mut backoff = Duration::from_millis(5);
    loop {
        let permit = tokio::select! {
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = token.cancelled() => return,
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = token.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                let local = stream.local_addr().ok().or(local).unwrap_or(peer);
                let (broker, token, transport) = (broker.clone(), token.clone(), transport.clone());
                let peer = connection::Peer {
                    addr: peer,
                    local,
                    mechanisms: opts.mechanisms.clone(),
                    tls: false,
                };
                tracker.spawn(async move {
                    serve_connection(stream, peer, transport, broker, token).await;
                    drop(permit);
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::error!(error = %e, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One accepted socket: the TLS handshake first on an AMQPS listener (bounded in time; a
/// client that does not speak TLS fails at once), then the AMQP connection.
async fn serve_connection(
    stream: TcpStream,
    mut peer: connection::Peer,
    transport: Transport,
    broker: Broker,
    token: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    match transport {
        Transport::Plain => {
            peer.mechanisms.external = None;
            connection::run(stream, peer, broker, token).await;
        }
        Transport::Tls(tls) => {
            let accepted = tokio::select! {
                r = tls.accept(stream) => r,
                _ = token.cancelled() => return,
            };
            match accepted {
                Ok((stream, login)) => {
                    peer.tls = true;
                    if peer.mechanisms.external.is_some() {
                        peer.mechanisms.external =
                            Some(login.unwrap_or_else(|| Err("no peer certificate".to_owned())));
                    }
                    connection::run(stream, peer, broker, token).await;
                }
                Err(e) => {
                    tracing::info!(peer = %peer.addr, error = %e, "TLS handshake failed");
                }
            }
        }
    }
}

/// The broker's clock driver: sleeps until the earliest armed timer (message TTL, queue
/// expiry), woken early when an earlier one is armed, then lets the broker do what is due.
pub async fn ticker(broker: Broker, token: CancellationToken) {
    loop {
        let next = broker.timers().next();
        let sleep = async {
            match next {
                Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = broker.timers().changed().notified() => continue,
            _ = token.cancelled() => return,
        }
        broker.tick(crate::clock::now());
    }
}

/// Steers the queues' memory cap from the process's resident memory ten times a second (see
/// [`MemoryBudget::follow`]), so that the process stays near the queue memory budget. Linux
/// only (reads /proc); elsewhere it does nothing and the cap stays the budget.
///
/// [`MemoryBudget::follow`]: crate::broker::MemoryBudget::follow
pub async fn budget_monitor(broker: Broker, token: CancellationToken) {
    on_resident_memory(Duration::from_millis(100), token, |rss| {
        broker
            .memory_budget()
            .follow(usize::try_from(rss).unwrap_or(usize::MAX));
    })
    .await;
}

/// Watches the process's resident memory once a second and raises the broker's memory alarm
/// above `high_watermark` bytes (clearing it below), like RabbitMQ's vm_memory_high_watermark.
/// Linux only (reads /proc, see [`crate::process`]); elsewhere it does nothing.
pub async fn memory_monitor(broker: Broker, high_watermark: u64, token: CancellationToken) {
    on_resident_memory(Duration::from_secs(1), token, |rss| {
        broker.set_memory_alarm(rss > high_watermark);
    })
    .await;
}

/// Calls `on` with the process's resident memory every `period` until `token` is cancelled;
/// returns at once where it cannot be read (not Linux).
async fn on_resident_memory(period: Duration, token: CancellationToken, mut on: impl FnMut(u64)) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let Some(rss) = crate::process::resident_memory() else {
            return;
        };
        on(rss);
    }
}
