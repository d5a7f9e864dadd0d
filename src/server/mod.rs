//! The only socket code: accept loops and one task per connection that shuttles bytes between
//! the socket and a sans-IO [`crate::session::Connection`]. Imports `session`, `broker`.

mod connection;

use crate::broker::Broker;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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

/// Serves AMQP on `listeners` until `token` is cancelled, then waits for every connection task
/// to finish (each sends connection.close 320 and waits briefly for close-ok).
pub async fn serve(
    listeners: Vec<TcpListener>,
    broker: Broker,
    max_connections: usize,
    token: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(max_connections.max(1)));
    let tracker = TaskTracker::new();
    for listener in listeners {
        let (broker, limit, token, conns) = (
            broker.clone(),
            Arc::clone(&limit),
            token.clone(),
            tracker.clone(),
        );
        tracker.spawn(accept_loop(listener, broker, limit, token, conns));
    }
    tracker.spawn(ticker(broker.clone(), token.clone()));
    tracker.close();
    token.cancelled().await;
    tracker.wait().await;
}

async fn accept_loop(
    listener: TcpListener,
    broker: Broker,
    limit: Arc<Semaphore>,
    token: CancellationToken,
    tracker: TaskTracker,
) {
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
                let (broker, token) = (broker.clone(), token.clone());
                tracker.spawn(async move {
                    connection::run(stream, peer, local, broker, token).await;
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

/// Watches the process's resident memory once a second and raises the broker's memory alarm
/// above `high_watermark` bytes (clearing it below), like RabbitMQ's vm_memory_high_watermark.
/// Linux only (reads /proc, see [`crate::process`]); elsewhere it does nothing.
pub async fn memory_monitor(broker: Broker, high_watermark: u64, token: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = token.cancelled() => return,
        }
        let Some(rss) = crate::process::resident_memory() else {
            return;
        };
        broker.set_memory_alarm(rss > high_watermark);
    }
}
