//! A producer: one connection, one channel, publishing pipelined batches.
//!
//! Each routing key gets a template (the basic.publish method frame and the content header,
//! encoded once with the project's codec); a message is then the template plus its body
//! frame(s), with the 16-byte body header filled in. Up to [`BATCH_BYTES`] of messages go out
//! in one `write`. A reader task takes confirms (basic.ack / basic.nack, single or multiple)
//! and broker errors off the socket; the writer waits only when the confirm window is full or
//! the rate limit says so.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::stream::{ReadHalf as OwnedReadHalf, WriteHalf as OwnedWriteHalf};
use bytes::BytesMut;
use lagomorph::protocol::frame::{self, ContentHeader, Frame};
use lagomorph::protocol::method::{BasicPublish, ConnectionClose, ConnectionCloseOk, Method};
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::ShortStr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, oneshot};
use tokio_util::sync::CancellationToken;

use crate::client::{self, ClientError, Conn, READ_CHUNK, Uri, put_body_frames, short};
use crate::stats::{self, Counters};

/// Bytes of messages per write.
const BATCH_BYTES: usize = 128 * 1024;
/// Messages per write at most (keeps timestamps and rate steps fine-grained).
const BATCH_MAX: u64 = 2000;
/// Bodies of at least this size are sent with writev from a shared tail (see [`interleave`]).
const VECTORED_MIN: usize = 1024;
/// Messages per writev: two slices each, under Linux's IOV_MAX of 1024.
const VECTORED_BATCH: u64 = 500;
/// The channel producers publish on.
const CHANNEL: u16 = 1;

/// What a producer publishes.
#[derive(Debug, Clone)]
pub(crate) struct ProducerConfig {
    /// Producer id (written into every body).
    pub(crate) id: u32,
    /// Exchange name.
    pub(crate) exchange: String,
    /// Routing keys, used in turn.
    pub(crate) keys: Vec<String>,
    /// Body size (>= 16).
    pub(crate) size: usize,
    /// Messages per second, 0 = unlimited.
    pub(crate) rate: u64,
    /// Confirm window, if publisher confirms are on.
    pub(crate) confirm: Option<u32>,
    /// delivery-mode 2.
    pub(crate) persistent: bool,
    /// Random priorities 0..=N.
    pub(crate) priority_random: Option<u8>,
    /// Stop after this many messages.
    pub(crate) limit: Option<u64>,
}

/// What a producer did.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerOutcome {
    /// The producer's id.
    pub(crate) id: u32,
    /// Messages written.
    pub(crate) published: u64,
    /// Messages confirmed by basic.ack.
    pub(crate) confirmed: u64,
    /// Messages refused by basic.nack.
    pub(crate) nacked: u64,
    /// When the last message was written.
    pub(crate) finished: Option<Instant>,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<String>,
}

/// A single confirm further than this above the lowest unsettled tag is ignored.
const MAX_GAP: usize = 1 << 24;

/// Unconfirmed delivery tags: everything below `low` is settled; `settled[i]` says whether
/// tag `low + i` was settled out of order. Never longer than the confirm window.
#[derive(Debug)]
pub(crate) struct ConfirmWindow {
    low: u64,
    settled: VecDeque<bool>,
}

impl Default for ConfirmWindow {
    fn default() -> Self {
        ConfirmWindow {
            low: 1,
            settled: VecDeque::new(),
        }
    }
}

impl ConfirmWindow {
    /// Settles `tag` (and with `multiple`, every tag below it); returns how many tags were
    /// newly settled. Tags already settled, and the `0` of an empty multiple, count nothing.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool) -> u64 {
        if tag < self.low {
            return 0;
        }
        let mut n = 0;
        if multiple {
            let upto = tag - self.low + 1;
            let k = usize::try_from(upto)
                .unwrap_or(usize::MAX)
                .min(self.settled.len());
            let already = self.settled.drain(..k).filter(|s| *s).count() as u64;
            n = upto - already;
            self.low = tag + 1;
        } else {
            let idx = usize::try_from(tag - self.low).unwrap_or(usize::MAX);
            if idx >= MAX_GAP {
                // Far beyond anything we published: a broker bug; do not grow for it.
                return 0;
            }
            if idx >= self.settled.len() {
                self.settled.resize(idx + 1, false);
            }
            if !self.settled[idx] {
                self.settled[idx] = true;
                n = 1;
            }
        }
        while self.settled.front() == Some(&true) {
            self.settled.pop_front();
            self.low += 1;
        }
        n
    }
}

/// State shared by the writer and its reader task.
#[derive(Debug, Default)]
struct Shared {
    confirmed: AtomicU64,
    nacked: AtomicU64,
    /// Woken on every confirm batch and on error.
    wake: Notify,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, e: String) {
        if let Ok(mut g) = self.error.lock()
            && g.is_none()
        {
            *g = Some(e);
        }
        self.wake.notify_one();
    }

    fn error(&self) -> Option<String> {
        self.error.lock().ok().and_then(|g| g.clone())
    }
}

/// A connected producer, ready to run.
#[derive(Debug)]
pub(crate) struct Producer {
    cfg: ProducerConfig,
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    rbuf: BytesMut,
    frame_max: u32,
}

impl Producer {
    /// Connects, opens the channel and, for confirms, selects confirm mode.
    pub(crate) async fn connect(uri: &Uri, cfg: ProducerConfig) -> client::Result<Producer> {
        let mut c = Conn::connect(uri, &format!("lagomorph-perf producer {}", cfg.id)).await?;
        c.open_channel(CHANNEL).await?;
        if cfg.confirm.is_some() {
            c.confirm_select(CHANNEL).await?;
        }
        let parts = c.into_parts();
        let (rd, wr) = parts.stream.into_split();
        Ok(Producer {
            cfg,
            rd,
            wr,
            rbuf: parts.rbuf,
            frame_max: parts.frame_max,
        })
    }

    /// Publishes until `stop`, the message limit or an error; then waits (at most `drain`)
    /// for outstanding confirms and reports its outcome on `done`. It keeps the connection
    /// open until `close_gate` (the coordinator opens it once consumers have drained), then
    /// closes it and returns any error of the close.
    ///
    /// Keeping it open matters: a broker under flow control may still hold unrouted publishes
    /// of this connection, and RabbitMQ drops those when the connection goes ("client
    /// unexpectedly closed TCP connection") or is closed before it caught up.
    pub(crate) async fn run(
        self,
        counters: Arc<Counters>,
        stop: CancellationToken,
        drain: Duration,
        done: oneshot::Sender<ProducerOutcome>,
        close_gate: CancellationToken,
    ) -> Option<String> {
        let Producer {
            cfg,
            rd,
            mut wr,
            rbuf,
            frame_max,
        } = self;
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_confirms(
            rd,
            rbuf,
            frame_max,
            Arc::clone(&shared),
            Arc::clone(&counters),
        ));
        let mut out = ProducerOutcome {
            id: cfg.id,
            ..ProducerOutcome::default()
        };
        if let Err(e) = publish(
            &cfg, &mut wr, frame_max, &shared, &counters, &stop, &mut out,
        )
        .await
        {
            shared.fail(e.to_string());
        }
        out.finished = Some(Instant::now());
        // Wait for the last confirms.
        if cfg.confirm.is_some() {
            let deadline = tokio::time::Instant::now() + drain;
            while shared.error().is_none()
                && shared.confirmed.load(Ordering::Relaxed) + shared.nacked.load(Ordering::Relaxed)
                    < out.published
            {
                if tokio::time::timeout_at(deadline, shared.wake.notified())
                    .await
                    .is_err()
                {
                    shared.fail(format!(
                        "{} publishes still unconfirmed after {drain:?}",
                        out.published
                            - shared.confirmed.load(Ordering::Relaxed)
                            - shared.nacked.load(Ordering::Relaxed)
                    ));
                    break;
                }
            }
        }
        out.confirmed = shared.confirmed.load(Ordering::Relaxed);
        out.nacked = shared.nacked.load(Ordering::Relaxed);
        out.error = shared.error();
        let failed = out.error.is_some();
        let _ = done.send(out);
        if !failed {
            close_gate.cancelled().await;
        }
        // Graceful close; the reader task ends on close-ok (or EOF).
        let mut buf = BytesMut::new();
        frame::encode_method(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: 200,
                reply_text: ShortStr::from_static("bye"),
                class_id: 0,
                method_id: 0,
            }),
            &mut buf,
        );
        let _ = wr.write_all(&buf).await;
        let _ = wr.flush().await;
        // On timeout the reader task is left to end with the socket.
        if tokio::time::timeout(drain, reader).await.is_err() {
            return Some(format!("no connection.close-ok within {drain:?}"));
        }
        if failed { None } else { shared.error() }
    }
}

/// Pre-encoded method + header frames, one per routing key (per routing key and priority with
/// random priorities: key-major).
fn templates(cfg: &ProducerConfig) -> client::Result<Vec<BytesMut>> {
    let exchange = short(&cfg.exchange)?;
    let priorities: Vec<Option<u8>> = match cfg.priority_random {
        Some(n) => (0..=n).map(Some).collect(),
        None => vec![None],
    };
    cfg.keys
        .iter()
        .flat_map(|k| priorities.iter().map(move |p| (k, *p)))
        .map(|(k, priority)| {
            let properties = Properties::from(BasicProperties {
                delivery_mode: Some(if cfg.persistent { 2 } else { 1 }),
                priority,
                ..BasicProperties::default()
            });
            let mut b = BytesMut::new();
            frame::encode_method(
                CHANNEL,
                &Method::BasicPublish(BasicPublish {
                    reserved_1: 0,
                    exchange: exchange.clone(),
                    routing_key: short(k)?,
                    mandatory: false,
                    immediate: false,
                }),
                &mut b,
            );
            frame::encode(
                &Frame::Header {
                    channel: CHANNEL,
                    header: ContentHeader {
                        class_id: 60,
                        body_size: cfg.size as u64,
                        properties: properties.clone(),
                    },
                },
                &mut b,
            );
            Ok(b)
        })
        .collect()
}

/// The writer loop.
async fn publish(
    cfg: &ProducerConfig,
    wr: &mut OwnedWriteHalf,
    frame_max: u32,
    shared: &Shared,
    counters: &Counters,
    stop: &CancellationToken,
    out: &mut ProducerOutcome,
) -> Result<(), ClientError> {
    let templates = templates(cfg)?;
    let keys = cfg.keys.len().max(1);
    let per_key = templates.len() / keys;
    // The template of routing key `key` for message `seq`: a pseudo-random priority (a hash of
    // the sequence number) when there are several per key.
    let pick = |key: usize, seq: u64| {
        if per_key <= 1 {
            return key;
        }
        let mut h = seq.wrapping_add(u64::from(cfg.id) << 40);
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 33;
        key * per_key + (h % per_key as u64) as usize
    };
    let per_msg = templates.first().map_or(0, |t| t.len()) + cfg.size + frame::FRAME_OVERHEAD;
    let batch_max = ((BATCH_BYTES / per_msg.max(1)) as u64).clamp(1, BATCH_MAX);
    let mut body = vec![0u8; cfg.size];
    let single_frame =
        cfg.size + frame::FRAME_OVERHEAD <= frame_max.max(frame::FRAME_MIN_SIZE) as usize;
    let tail = (cfg.size >= VECTORED_MIN && single_frame)
        .then(|| vec![0u8; cfg.size - stats::BODY_HEADER]);
    let mut buf = BytesMut::with_capacity(BATCH_BYTES + per_msg * 2);
    let start = Instant::now();
    let mut seq: u64 = 0;
    let mut key = 0usize;
    loop {
        if stop.is_cancelled() || shared.error().is_some() {
            return Ok(());
        }
        let mut n = batch_max;
        if let Some(limit) = cfg.limit {
            if seq >= limit {
                return Ok(());
            }
            n = n.min(limit - seq);
        }
        if cfg.rate > 0 {
            let elapsed = start.elapsed().as_secs_f64();
            let due = (elapsed * cfg.rate as f64) as u64 + 1;
            if due <= seq {
                let next = start + Duration::from_secs_f64(seq as f64 / cfg.rate as f64);
                tokio::select! {
                    _ = tokio::time::sleep_until(next.into()) => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            n = n.min(due - seq);
        }
        if let Some(window) = cfg.confirm {
            let settled =
                shared.confirmed.load(Ordering::Relaxed) + shared.nacked.load(Ordering::Relaxed);
            let outstanding = seq - settled.min(seq);
            let room = u64::from(window).saturating_sub(outstanding);
            if room == 0 {
                tokio::select! {
                    _ = shared.wake.notified() => {}
                    _ = stop.cancelled() => {}
                }
                continue;
            }
            n = n.min(room);
        }
        let sent_ns = stats::ns_since_origin(Instant::now());
        if let Some(tail) = &tail {
            // Large bodies: copy only the templates and the 16-byte body headers; the rest of
            // every body is one shared slice of zeros, written with writev.
            let n = n.min(VECTORED_BATCH);
            let mut ends = Vec::with_capacity(n as usize);
            for _ in 0..n {
                let s = u32::try_from(seq).map_err(|_| {
                    ClientError::Unexpected("more than 2^32 messages from one producer".into())
                })?;
                stats::put_body_header(&mut body, cfg.id, s, sent_ns);
                put_message_head(
                    &mut buf,
                    &templates[pick(key, seq)],
                    &body[..stats::BODY_HEADER],
                    cfg.size,
                );
                ends.push(buf.len());
                key = (key + 1) % keys;
                seq += 1;
            }
            buf.extend_from_slice(&[frame::FRAME_END]);
            let mut slices = interleave(&buf, &ends, tail);
            write_all_vectored(wr, &mut slices).await?;
            wr.flush().await?;
            buf.clear();
            out.published = seq;
            counters.published.fetch_add(n, Ordering::Relaxed);
            continue;
        }
        for _ in 0..n {
            let s = u32::try_from(seq).map_err(|_| {
                ClientError::Unexpected("more than 2^32 messages from one producer".into())
            })?;
            stats::put_body_header(&mut body, cfg.id, s, sent_ns);
            buf.extend_from_slice(&templates[pick(key, seq)]);
            put_body_frames(CHANNEL, &body, frame_max, &mut buf);
            key += 1;
            if key == keys {
                key = 0;
            }
            seq += 1;
        }
        wr.write_all(&buf).await?;
        wr.flush().await?;
        buf.clear();
        out.published = seq;
        counters.published.fetch_add(n, Ordering::Relaxed);
    }
}

/// Appends a message's copied part for the vectored path: the template (method and header
/// frames), the body frame's 7-byte header and the first 16 body bytes. The frame goes on
/// with the shared tail of the body, and its end octet starts the next copied part.
fn put_message_head(buf: &mut BytesMut, template: &[u8], head: &[u8], size: usize) {
    if !buf.is_empty() {
        buf.extend_from_slice(&[frame::FRAME_END]);
    }
    buf.extend_from_slice(template);
    buf.extend_from_slice(&[frame::FRAME_BODY]);
    buf.extend_from_slice(&CHANNEL.to_be_bytes());
    // size + 8 <= frame_max, so it fits in u32.
    buf.extend_from_slice(&(size as u32).to_be_bytes());
    buf.extend_from_slice(head);
}

/// The write list: each message's copied part, then the shared tail; the last part of `buf`
/// (after the final end) is the last end octet.
fn interleave<'a>(buf: &'a [u8], ends: &[usize], tail: &'a [u8]) -> Vec<IoSlice<'a>> {
    let mut v = Vec::with_capacity(ends.len() * 2 + 1);
    let mut from = 0;
    for &e in ends {
        v.push(IoSlice::new(&buf[from..e]));
        v.push(IoSlice::new(tail));
        from = e;
    }
    v.push(IoSlice::new(&buf[from..]));
    v
}

/// `write_all` for a list of slices (writev), resuming after partial writes.
async fn write_all_vectored(
    wr: &mut OwnedWriteHalf,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    while !slices.is_empty() {
        let n = wr.write_vectored(slices).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    Ok(())
}

/// Reads confirms and broker errors until the connection ends.
async fn read_confirms(
    mut rd: OwnedReadHalf,
    mut rbuf: BytesMut,
    frame_max: u32,
    shared: Arc<Shared>,
    counters: Arc<Counters>,
) {
    let mut window = ConfirmWindow::default();
    loop {
        let (mut acked, mut nacked) = (0, 0);
        loop {
            let f = match frame::decode(&mut rbuf, frame_max) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    shared.fail(format!("bad frame from the broker: {e}"));
                    return;
                }
            };
            // basic.return content (we never set mandatory) and heartbeats: nothing to do.
            let Frame::Method { method, .. } = f else {
                continue;
            };
            match method {
                Method::BasicAck(a) => acked += window.settle(a.delivery_tag, a.multiple),
                Method::BasicNack(a) => nacked += window.settle(a.delivery_tag, a.multiple),
                Method::ConnectionClose(c) => {
                    if c.reply_code != 200 {
                        shared.fail(format!(
                            "broker closed the connection: {} {}",
                            c.reply_code, c.reply_text
                        ));
                    }
                    return;
                }
                Method::ConnectionCloseOk(ConnectionCloseOk) => return,
                Method::ChannelClose(c) => {
                    shared.fail(format!(
                        "broker closed the channel: {} {}",
                        c.reply_code, c.reply_text
                    ));
                    return;
                }
                // connection.blocked / unblocked and the like: nothing to do.
                _ => {}
            }
        }
        if acked + nacked > 0 {
            shared.confirmed.fetch_add(acked, Ordering::Relaxed);
            shared.nacked.fetch_add(nacked, Ordering::Relaxed);
            counters.confirmed.fetch_add(acked, Ordering::Relaxed);
            counters.nacked.fetch_add(nacked, Ordering::Relaxed);
            shared.wake.notify_one();
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        match rd.read_buf(&mut rbuf).await {
            Ok(0) => {
                shared.fail("the broker closed the TCP connection".into());
                return;
            }
            Ok(_) => {}
            Err(e) => {
                shared.fail(format!("read failed: {e}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Buf;

    #[test]
    fn confirm_window_settles_single_and_multiple() {
        let mut w = ConfirmWindow::default();
        assert_eq!(w.settle(3, false), 1);
        assert_eq!(w.settle(3, false), 0, "duplicate");
        assert_eq!(w.settle(5, true), 4, "1, 2, 4, 5");
        assert_eq!(w.settle(5, true), 0);
        assert_eq!(w.settle(6, false), 1);
        assert_eq!(w.low, 7);
        assert!(w.settled.is_empty());
        assert_eq!(w.settle(8, false), 1);
        assert_eq!(w.settle(7, false), 1);
        assert_eq!(w.low, 9);
    }

    #[test]
    fn vectored_batches_decode_as_whole_messages() {
        let template = [1u8, 2, 3];
        let tail = vec![7u8; 2000];
        let mut buf = BytesMut::new();
        let mut ends = Vec::new();
        for i in 0..3u8 {
            put_message_head(&mut buf, &template, &[i; 16], 2016);
            ends.push(buf.len());
        }
        buf.extend_from_slice(&[frame::FRAME_END]);
        let wire: Vec<u8> = interleave(&buf, &ends, &tail)
            .iter()
            .flat_map(|s| s.iter().copied())
            .collect();
        let mut b = BytesMut::from(&wire[..]);
        for i in 0..3u8 {
            assert_eq!(&b[..3], &template);
            b.advance(3);
            match frame::decode(&mut b, 4096).expect("decode") {
                Some(Frame::Body {
                    channel: 1,
                    payload,
                }) => {
                    assert_eq!(payload.len(), 2016);
                    assert_eq!(&payload[..16], &[i; 16]);
                    assert!(payload[16..].iter().all(|x| *x == 7));
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(b.is_empty());
    }

    #[test]
    fn templates_decode_as_publish_and_header() {
        let cfg = ProducerConfig {
            id: 1,
            exchange: "ex".into(),
            keys: vec!["a".into(), "b".into()],
            size: 32,
            rate: 0,
            confirm: None,
            persistent: true,
            priority_random: None,
            limit: None,
        };
        let t = templates(&cfg).expect("templates");
        assert_eq!(t.len(), 2);
        let with_priorities = ProducerConfig {
            priority_random: Some(9),
            ..cfg.clone()
        };
        let tp = templates(&with_priorities).expect("templates");
        assert_eq!(tp.len(), 20, "ten priorities per key");
        let mut b = tp[13].clone();
        let _ = frame::decode(&mut b, 4096).expect("method");
        match frame::decode(&mut b, 4096).expect("decode") {
            Some(Frame::Header { header, .. }) => assert_eq!(header.properties.priority(), Some(3)),
            f => panic!("expected a header, got {f:?}"),
        }
        let mut b = t[1].clone();
        match frame::decode(&mut b, 4096).expect("decode") {
            Some(Frame::Method {
                channel: 1,
                method: Method::BasicPublish(p),
            }) => {
                assert_eq!((p.exchange.as_str(), p.routing_key.as_str()), ("ex", "b"));
            }
            other => panic!("unexpected {other:?}"),
        }
        match frame::decode(&mut b, 4096).expect("decode") {
            Some(Frame::Header { header, .. }) => {
                assert_eq!(header.body_size, 32);
                assert!(header.properties.is_persistent());
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(b.is_empty());
    }
}
