//! A consumer: one connection, one channel, one basic.consume.
//!
//! Every read is decoded in one pass (until the buffer runs dry; the hot frames by the
//! [`scan`](crate::scan) fast path, the rest by `frame::decode`), deliveries are reassembled
//! (deliver → header → bodies), checked by the [`Tracker`] against the receive time of that
//! read, and the acks they call for are written back with one `write` per read.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::stream::Stream as TcpStream;
use bytes::{Buf, BytesMut};
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::method::{BasicAck, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::client::{self, ClientError, Conn, READ_CHUNK, Uri, describe};
use crate::scan::{Scanned, scan};
use crate::stats::{self, BODY_HEADER, Counters, Tracker};

/// The channel consumers use.
const CHANNEL: u16 = 1;

/// How a consumer consumes.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerConfig {
    /// Consumer id (for the connection name).
    pub(crate) id: u32,
    /// Queue name.
    pub(crate) queue: String,
    /// Index of the queue in the topology.
    pub(crate) queue_index: usize,
    /// basic.qos prefetch count; 0 = none sent.
    pub(crate) prefetch: u16,
    /// no-ack consume.
    pub(crate) auto_ack: bool,
    /// Ack every N deliveries with multiple=true (1 = each one, multiple=false).
    pub(crate) multi_ack: u32,
    /// Stop after this many deliveries.
    pub(crate) limit: Option<u64>,
    /// Number of producers in the run (sizes the tracker).
    pub(crate) producers: u32,
}

/// What a consumer saw.
#[derive(Debug)]
pub(crate) struct ConsumerOutcome {
    /// Which queue it read.
    pub(crate) queue_index: usize,
    /// Continuity and latency.
    pub(crate) tracker: Tracker,
    /// When the last delivery arrived.
    pub(crate) last_delivery: Option<Instant>,
    /// Why it stopped early, if it did.
    pub(crate) error: Option<String>,
}

/// A connected consumer (consume-ok received).
#[derive(Debug)]
pub(crate) struct Consumer {
    cfg: ConsumerConfig,
    stream: TcpStream,
    rbuf: BytesMut,
    frame_max: u32,
}

/// Where the reassembly of the current delivery stands.
#[derive(Debug, Clone, Copy)]
enum Assembly {
    /// Between messages.
    Idle,
    /// basic.deliver seen; the content header comes next.
    Header { tag: u64 },
    /// Collecting body frames.
    Body {
        tag: u64,
        remaining: u64,
        head: [u8; BODY_HEADER],
        have: usize,
    },
}

impl Consumer {
    /// Connects, sets the prefetch and starts consuming.
    pub(crate) async fn connect(uri: &Uri, cfg: ConsumerConfig) -> client::Result<Consumer> {
        let mut c = Conn::connect(uri, &format!("lagomorph-perf consumer {}", cfg.id)).await?;
        c.open_channel(CHANNEL).await?;
        if cfg.prefetch > 0 && !cfg.auto_ack {
            c.qos(CHANNEL, cfg.prefetch).await?;
        }
        c.consume(CHANNEL, &cfg.queue, cfg.auto_ack).await?;
        let frame_max = c.frame_max();
        let parts = c.into_parts();
        Ok(Consumer {
            cfg,
            stream: parts.stream,
            rbuf: parts.rbuf,
            frame_max,
        })
    }

    /// Consumes until `stop`, the delivery limit, or an error.
    pub(crate) async fn run(
        self,
        counters: Arc<Counters>,
        stop: CancellationToken,
    ) -> ConsumerOutcome {
        let Consumer {
            cfg,
            mut stream,
            mut rbuf,
            frame_max,
        } = self;
        let mut out = ConsumerOutcome {
            queue_index: cfg.queue_index,
            tracker: Tracker::new(cfg.producers),
            last_delivery: None,
            error: None,
        };
        if let Err(e) = consume(
            &cfg,
            &mut stream,
            &mut rbuf,
            frame_max,
            &counters,
            &stop,
            &mut out,
        )
        .await
        {
            out.error = Some(e.to_string());
        }
        // Close without waiting for close-ok: deliveries may still be in flight and the run
        // is over; the broker requeues unacked messages when the socket goes.
        let mut buf = BytesMut::new();
        frame::encode_method(
            0,
            &Method::ConnectionClose(lagomorph::protocol::method::ConnectionClose {
                reply_code: 200,
                reply_text: lagomorph::protocol::types::ShortStr::from_static("bye"),
                class_id: 0,
                method_id: 0,
            }),
            &mut buf,
        );
        let _ = stream.write_all(&buf).await;
        let _ = stream.flush().await;
        let _ = stream.shutdown().await;
        out
    }
}

/// One step of a delivery, from the scanner or the codec.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Deliver(u64),
    Header(u64),
    Body(&'a [u8]),
}

/// Advances the reassembly by one part; returns a finished delivery (tag, body head).
fn assemble(
    state: &mut Assembly,
    part: Part<'_>,
) -> Result<Option<(u64, [u8; BODY_HEADER], usize)>, ClientError> {
    match (*state, part) {
        (Assembly::Idle, Part::Deliver(tag)) => {
            *state = Assembly::Header { tag };
            Ok(None)
        }
        (Assembly::Header { tag }, Part::Header(0)) => {
            *state = Assembly::Idle;
            Ok(Some((tag, [0; BODY_HEADER], 0)))
        }
        (Assembly::Header { tag }, Part::Header(size)) => {
            *state = Assembly::Body {
                tag,
                remaining: size,
                head: [0; BODY_HEADER],
                have: 0,
            };
            Ok(None)
        }
        (
            Assembly::Body {
                tag,
                remaining,
                mut head,
                mut have,
            },
            Part::Body(payload),
        ) => {
            let take = (BODY_HEADER - have).min(payload.len());
            head[have..have + take].copy_from_slice(&payload[..take]);
            have += take;
            let remaining = remaining.saturating_sub(payload.len() as u64);
            if remaining == 0 {
                *state = Assembly::Idle;
                Ok(Some((tag, head, have)))
            } else {
                *state = Assembly::Body {
                    tag,
                    remaining,
                    head,
                    have,
                };
                Ok(None)
            }
        }
        (s, p) => Err(ClientError::Unexpected(format!(
            "{} while {}",
            match p {
                Part::Deliver(_) => "basic.deliver",
                Part::Header(_) => "a content header",
                Part::Body(_) => "a content body",
            },
            match s {
                Assembly::Idle => "between messages",
                Assembly::Header { .. } => "waiting for a content header",
                Assembly::Body { .. } => "waiting for a content body",
            }
        ))),
    }
}

/// A frame the scanner left to the codec: a part of a delivery, nothing, or the end.
fn other_frame(f: Frame) -> Result<Option<OwnedPart>, ClientError> {
    match f {
        Frame::Method {
            method: Method::BasicDeliver(d),
            ..
        } => Ok(Some(OwnedPart::Deliver(d.delivery_tag))),
        Frame::Header { header, .. } => Ok(Some(OwnedPart::Header(header.body_size))),
        Frame::Body { payload, .. } => Ok(Some(OwnedPart::Body(payload))),
        Frame::Heartbeat => Ok(None),
        Frame::Method {
            method: Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_),
            ..
        } => Ok(None),
        Frame::Method {
            method: Method::ChannelClose(c),
            ..
        } => Err(ClientError::Closed {
            scope: "channel",
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        Frame::Method {
            method: Method::ConnectionClose(c),
            ..
        } => Err(ClientError::Closed {
            scope: "connection",
            code: c.reply_code,
            text: c.reply_text.to_string(),
        }),
        Frame::Method {
            method: Method::BasicCancel(_),
            ..
        } => Err(ClientError::Unexpected(
            "basic.cancel (the queue went away)".into(),
        )),
        other => Err(ClientError::Unexpected(describe(&other))),
    }
}

/// A [`Part`] that owns its body bytes (from the codec).
enum OwnedPart {
    Deliver(u64),
    Header(u64),
    Body(bytes::Bytes),
}

/// The read-decode-ack loop.
async fn consume(
    cfg: &ConsumerConfig,
    stream: &mut TcpStream,
    rbuf: &mut BytesMut,
    frame_max: u32,
    counters: &Counters,
    stop: &CancellationToken,
    out: &mut ConsumerOutcome,
) -> Result<(), ClientError> {
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut state = Assembly::Idle;
    let mut pending_acks: u32 = 0;
    let mut last_tag: u64 = 0;
    let mut received: u64 = 0;
    let mut now = Instant::now();
    let limit = cfg.limit.unwrap_or(u64::MAX);
    loop {
        let now_ns = stats::ns_since_origin(now);
        let mut batch: u64 = 0;
        let mut acked: u64 = 0;
        let mut pos = 0;
        while received < limit {
            let done = match scan(&rbuf[pos..], frame_max)? {
                Scanned::Incomplete => break,
                Scanned::Deliver { delivery_tag, len } => {
                    pos += len;
                    assemble(&mut state, Part::Deliver(delivery_tag))?
                }
                Scanned::Header { body_size, len } => {
                    pos += len;
                    assemble(&mut state, Part::Header(body_size))?
                }
                Scanned::Body { payload, len } => {
                    let p = &rbuf[pos + payload.start..pos + payload.end];
                    pos += len;
                    assemble(&mut state, Part::Body(p))?
                }
                Scanned::Publish { .. } | Scanned::Other => {
                    rbuf.advance(pos);
                    pos = 0;
                    let Some(f) = frame::decode(rbuf, frame_max)? else {
                        // The scanner saw a whole frame, so the codec does too.
                        return Err(ClientError::Unexpected("frame vanished".into()));
                    };
                    match other_frame(f)? {
                        None => None,
                        Some(OwnedPart::Deliver(t)) => assemble(&mut state, Part::Deliver(t))?,
                        Some(OwnedPart::Header(n)) => assemble(&mut state, Part::Header(n))?,
                        Some(OwnedPart::Body(b)) => assemble(&mut state, Part::Body(&b))?,
                    }
                }
            };
            let Some((tag, head, have)) = done else {
                continue;
            };
            out.tracker.record(&head[..have], now_ns);
            batch += 1;
            received += 1;
            if !cfg.auto_ack {
                pending_acks += 1;
                last_tag = tag;
                if pending_acks >= cfg.multi_ack {
                    frame::encode_method(
                        CHANNEL,
                        &Method::BasicAck(BasicAck {
                            delivery_tag: tag,
                            multiple: cfg.multi_ack > 1,
                        }),
                        &mut wbuf,
                    );
                    acked += u64::from(pending_acks);
                    pending_acks = 0;
                }
            }
        }
        rbuf.advance(pos);
        if batch > 0 {
            out.last_delivery = Some(now);
            counters.delivered.fetch_add(batch, Ordering::Relaxed);
            counters
                .acked
                .fetch_add(if cfg.auto_ack { batch } else { acked }, Ordering::Relaxed);
        }
        if received >= limit {
            // Ack what is left, then stop.
            if pending_acks > 0 {
                frame::encode_method(
                    CHANNEL,
                    &Method::BasicAck(BasicAck {
                        delivery_tag: last_tag,
                        multiple: true,
                    }),
                    &mut wbuf,
                );
                counters
                    .acked
                    .fetch_add(u64::from(pending_acks), Ordering::Relaxed);
            }
            if !wbuf.is_empty() {
                stream.write_all(&wbuf).await?;
                stream.flush().await?;
            }
            return Ok(());
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            stream.flush().await?;
            wbuf.clear();
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        tokio::select! {
            r = stream.read_buf(rbuf) => {
                if r? == 0 {
                    return Err(ClientError::Eof);
                }
                now = Instant::now();
            }
            _ = stop.cancelled() => return Ok(()),
        }
    }
}
