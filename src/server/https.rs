//! HTTPS for the management API: a listener that axum serves like a `TcpListener`, whose
//! connections have finished their TLS handshake. Handshakes run in their own tasks (at most
//! `MAX_HANDSHAKES` (64) at once, each bounded by the handshake timeout), so a slow or silent
//! client never holds up the others.

use super::tls::{Tls, TlsStream};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

/// Handshakes in progress at once, at most.
const MAX_HANDSHAKES: usize = 64;

/// A TLS listener for `axum::serve`. Dropping it stops accepting.
#[derive(Debug)]
pub struct HttpsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl HttpsListener {
    /// Accepts on `tcp` and runs each handshake with `tls`.
    pub fn new(tcp: TcpListener, tls: Arc<Tls>) -> std::io::Result<HttpsListener> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(MAX_HANDSHAKES);
        let acceptor = tokio::spawn(accept_loop(tcp, tls, tx));
        Ok(HttpsListener {
            ready,
            local,
            acceptor,
        })
    }
}

impl Drop for HttpsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

async fn accept_loop(
    tcp: TcpListener,
    tls: Arc<Tls>,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = Arc::clone(&handshakes).acquire_owned().await else {
            return;
        };
        let (stream, peer) = tokio::select! {
            r = tcp.accept() => match r {
                Ok(a) => a,
                Err(e) => {
                    tracing::error!(error = %e, "management accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = tx.closed() => return,
        };
        let (tls, tx) = (Arc::clone(&tls), tx.clone());
        tokio::spawn(async move {
            match tls.accept(stream).await {
                Ok((stream, _)) => {
                    let _ = tx.send((stream, peer)).await;
                }
                Err(e) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
            }
            drop(permit);
        });
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The acceptor is gone (it only stops when this listener is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, HttpsListener>>
    for crate::management::ClientAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, HttpsListener>) -> Self {
        crate::management::ClientAddr(*stream.remote_addr())
    }
}
