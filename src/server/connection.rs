//! One task per connection: read → session → write, plus the mailbox, timers, store flushes and
//! shutdown, in one `select!`. All protocol logic lives in the session.
//!
//! Generic over the stream: a plain `TcpStream` or a TLS stream over one. Reads (inside the
//! `select!`) and writes (before it) never overlap, so the task owns the stream whole with no
//! split and no lock; the plain path compiles to the same code as before TLS existed.

use crate::broker::Broker;
use crate::clock;
use crate::protocol::ReplyCode;
use crate::session::{Connection, Mechanisms};
use bytes::BytesMut;
use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Stop taking deliveries from the mailbox while this much output waits to be written.
const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Read buffer growth step, at most.
const READ_CHUNK: usize = 64 * 1024;
/// Read buffer growth step at first: it doubles (up to [`READ_CHUNK`]) each time a read fills
/// the buffer, so a busy publisher soon reads 64 KiB at a time (after six full reads) while
/// each of a thousand connections that only send acks keeps 1 KiB, not 64. The handshake's
/// largest frame, a client's connection.start-ok, is a few hundred bytes.
const READ_START: usize = 1024;
/// Consecutive small reads (at most an eighth of the step) after which the step halves.
const SMALL_READS: u32 = 16;

/// Where a connection came from and what it offers.
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// Our address.
    pub(crate) local: SocketAddr,
    /// The login mechanisms to offer.
    pub(crate) mechanisms: Mechanisms,
    /// Over TLS.
    pub(crate) tls: bool,
}

/// Runs one client connection to its end. `stream` has `TCP_NODELAY` set already.
#[tracing::instrument(name = "conn", skip_all, fields(peer = %peer.addr))]
pub(crate) async fn run<S>(mut stream: S, peer: Peer, broker: Broker, token: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (tx, mut rx) = mpsc::unbounded_channel();
    let info = broker.register_connection(peer.addr, peer.local, tx, std::time::SystemTime::now());
    info.tls
        .store(peer.tls, std::sync::atomic::Ordering::Relaxed);
    let commit = std::sync::Arc::clone(broker.commit());
    let mut flushed_rx = commit.subscribe();
    let mut session = Connection::new(broker, info, clock::now()).with_mechanisms(peer.mechanisms);
    let mut rb = ReadBuffer::default();
    let mut requested = 0u64;
    let mut shutting_down = false;
    // One timer for the connection's life. It is moved only when the session's deadline comes
    // earlier than where it is set: every read moves the heartbeat deadline later, and
    // re-registering a timer per loop would cost more than the rare early wake-up, which finds
    // nothing due and re-arms at the real deadline.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        while let Some(mut out) = session.take_output(clock::now()) {
            // Vectored: large bodies are separate parts, written where they lie.
            if let Err(e) = write_all_vectored(&mut stream, &mut out).await {
                tracing::debug!(error = %e, "write failed");
                session.handle_disconnect();
                return;
            }
        }
        if session.is_closed() {
            let _ = stream.shutdown().await;
            return;
        }
        let wants_flush = session.needs_flush();
        if let Some(seq) = wants_flush
            && seq > requested
        {
            requested = seq;
            commit.request_flush();
        }
        if let Some(d) = session.poll_timeout().map(Instant::from_std)
            && armed.is_none_or(|a| d < a)
        {
            timer.as_mut().reset(d);
            armed = Some(d);
        }
        let spare = rb.prepare();
        tokio::select! {
            r = stream.read_buf(&mut rb.buf), if session.wants_read() => match r {
                Ok(0) | Err(_) => {
                    session.handle_disconnect();
                    return;
                }
                Ok(n) => {
                    rb.read(n, spare);
                    session.handle_bytes(&mut rb.buf, clock::now());
                    rb.settle();
                }
            },
            Some(msg) = rx.recv(), if session.pending_output() < OUTPUT_HIGH_WATER => {
                let now = clock::now();
                session.handle_outbound(msg, now);
                // Drain what else is waiting, in one batch, up to the output high-water mark.
                while session.pending_output() < OUTPUT_HIGH_WATER {
                    match rx.try_recv() {
                        Ok(m) => session.handle_outbound(m, now),
                        Err(_) => break,
                    }
                }
            }
            r = flushed_rx.changed(), if wants_flush.is_some() => {
                if r.is_ok() {
                    let f = *flushed_rx.borrow_and_update();
                    session.handle_flushed(f);
                }
            }
            _ = &mut timer, if armed.is_some() => {
                armed = None;
                session.handle_timeout(clock::now());
            }
            _ = token.cancelled(), if !shutting_down => {
                shutting_down = true;
                session.close(
                    ReplyCode::ConnectionForced,
                    "broker forced connection closure with reason 'shutdown'",
                    clock::now(),
                );
            }
        }
    }
}

/// A connection's read buffer, sized by how the peer sends: the step doubles (up to
/// [`READ_CHUNK`]) while reads fill it and halves (down to [`READ_START`]) after a run of small
/// reads, and an empty buffer much larger than the step is let go. A burst of acks from each of
/// a thousand consumers grows their buffers; without the way back each would keep 16-64 KiB for
/// the connection's life.
#[derive(Debug)]
struct ReadBuffer {
    buf: BytesMut,
    step: usize,
    small: u32,
}

impl Default for ReadBuffer {
    fn default() -> Self {
        ReadBuffer {
            buf: BytesMut::with_capacity(READ_START),
            step: READ_START,
            small: 0,
        }
    }
}

impl ReadBuffer {
    /// Makes room for the next read; returns the spare capacity it may fill.
    fn prepare(&mut self) -> usize {
        if self.buf.capacity() - self.buf.len() < self.step / 4 {
            self.buf.reserve(self.step);
        }
        self.buf.capacity() - self.buf.len()
    }

    /// A read of `n` bytes into `spare` bytes of room.
    fn read(&mut self, n: usize, spare: usize) {
        if n == spare {
            self.step = (self.step * 2).min(READ_CHUNK);
            self.small = 0;
        } else if n <= self.step / 8 {
            self.small += 1;
            if self.small >= SMALL_READS {
                self.step = (self.step / 2).max(READ_START);
                self.small = 0;
            }
        } else {
            self.small = 0;
        }
    }

    /// After the session took what it could: an empty buffer over twice the step is dropped
    /// for one of the step (frames split off it keep their part alive on their own).
    fn settle(&mut self) {
        if self.buf.is_empty() && self.buf.capacity() > 2 * self.step {
            self.buf = BytesMut::with_capacity(self.step);
        }
    }
}

/// Writes all of `out` with vectored writes of up to [`IOV_BATCH`] parts each (tokio's
/// `write_all_buf` passes at most 64: a syscall per 32 large deliveries), then flushes (a no-op
/// on TCP; TLS may hold the last record until flushed).
async fn write_all_vectored<W: AsyncWrite + Unpin>(
    wr: &mut W,
    out: &mut crate::session::Transmit,
) -> std::io::Result<()> {
    use bytes::Buf;
    while out.has_remaining() {
        let written = {
            // Per write, not kept in the task: the future stays small for idle connections.
            let mut slices = vec![std::io::IoSlice::new(&[]); IOV_BATCH.min(out.parts())];
            let n = out.chunks_vectored(&mut slices);
            wr.write_vectored(&slices[..n]).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        out.advance(written);
    }
    wr.flush().await
}

/// Parts per vectored write at most (Linux takes up to 1024).
const IOV_BATCH: usize = 512;

#[cfg(test)]
mod tests {
    use super::*;

    /// One read of `n` bytes (at most the spare room), consumed whole by the session.
    fn read(rb: &mut ReadBuffer, n: usize) {
        let spare = rb.prepare();
        let n = n.min(spare);
        rb.buf.extend_from_slice(&vec![0; n]);
        rb.read(n, spare);
        rb.buf.clear();
        rb.settle();
    }

    #[test]
    fn the_read_buffer_grows_with_full_reads_and_shrinks_back_after_small_ones() {
        let mut rb = ReadBuffer::default();
        for _ in 0..10 {
            read(&mut rb, usize::MAX);
        }
        assert_eq!(rb.step, READ_CHUNK, "full reads grow the step to the most");
        assert!(rb.buf.capacity() >= READ_CHUNK / 4);
        // Acks trickling in: 13 bytes a read.
        for _ in 0..(SMALL_READS as usize * 8) {
            read(&mut rb, 13);
        }
        assert_eq!(rb.step, READ_START, "small reads bring the step back down");
        assert!(
            rb.buf.capacity() <= 2 * READ_START,
            "the large buffer was let go: {} bytes kept",
            rb.buf.capacity()
        );
        // Reads of a middling size keep the step where it is.
        let mut rb = ReadBuffer::default();
        for _ in 0..4 {
            read(&mut rb, usize::MAX);
        }
        let step = rb.step;
        for _ in 0..100 {
            read(&mut rb, step / 5);
        }
        assert_eq!(rb.step, step);
    }
}
