//! `sink`: a server that speaks just enough AMQP for producers and discards every message. It
//! measures this tool's own ceiling: a load generator that cannot publish much faster into a
//! sink than into a broker is measuring itself, not the broker.
//!
//! It answers the handshake (start, tune, open), channel.open, confirm.select, exchange and
//! queue declares, binds, purges, deletes, basic.qos and basic.consume, and in confirm mode
//! acks every publish with one basic.ack (multiple) per read. Frames are fully decoded with
//! the project's codec, as a broker would. A consumer gets an endless stream of 16-byte
//! deliveries, as fast as it reads them (prefetch is ignored), which measures the consumer
//! side's ceiling the same way. With `--relay` consumers get what producers publish instead
//! ([`crate::relay`]): the latency floor.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use lagomorph::protocol::frame::{self, Frame};
use lagomorph::protocol::method::*;
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::{FieldTable, LongStr, ShortStr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::client::READ_CHUNK;
use crate::relay::{self, Assembler, Relay};
use crate::report::group;
use crate::scan::{Scanned, scan};
use crate::stats;

/// The frame_max the sink offers.
const FRAME_MAX: u32 = 131_072;

/// Runs the sink until `stop`; prints the message rate to stderr once a second. With a
/// `relay`, publishes go to consumers instead of being discarded.
pub(crate) async fn serve(
    listener: TcpListener,
    stop: CancellationToken,
    relay: Option<Arc<Relay>>,
) {
    let received = Arc::new(AtomicU64::new(0));
    let rate = {
        let (received, stop) = (Arc::clone(&received), stop.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            let mut prev = 0;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let cur = received.load(Ordering::Relaxed);
                if cur != prev {
                    eprintln!("sink: {} msg/s", group(cur - prev));
                }
                prev = cur;
            }
        })
    };
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((s, _)) => {
                    let (received, stop) = (Arc::clone(&received), stop.clone());
                    let relay = relay.clone();
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = connection(s, received, relay) => {}
                            _ = stop.cancelled() => {}
                        }
                    });
                }
                Err(e) => {
                    eprintln!("sink: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            _ = stop.cancelled() => break,
        }
    }
    let _ = rate.await;
}

/// Per-channel confirm state.
#[derive(Debug, Default, Clone, Copy)]
struct ChannelState {
    confirm: bool,
    published: u64,
    acked: u64,
}

/// A consumer the sink feeds: one delivery (method, header, 16-byte body) encoded once, of
/// which only the delivery tag and the sequence change.
#[derive(Debug)]
struct Feed {
    channel: u16,
    template: Vec<u8>,
    /// Bytes of the basic.deliver method frame at the start of `template`.
    method_len: usize,
    tag_at: usize,
    seq_at: usize,
    next_seq: u32,
    delivery_tag: u64,
}

impl Feed {
    fn new(channel: u16, tag: &ShortStr) -> Feed {
        let mut b = BytesMut::new();
        frame::encode_method(
            channel,
            &Method::BasicDeliver(BasicDeliver {
                consumer_tag: tag.clone(),
                delivery_tag: 0,
                redelivered: false,
                exchange: ShortStr::EMPTY,
                routing_key: ShortStr::from_static("sink"),
            }),
            &mut b,
        );
        let method_len = b.len();
        // frame header (7), class and method ids (4), the tag's length octet and bytes
        let tag_at = 7 + 4 + 1 + tag.len();
        let properties = Properties::from(BasicProperties {
            delivery_mode: Some(1),
            ..BasicProperties::default()
        });
        let mut body = [0u8; stats::BODY_HEADER];
        stats::put_body_header(&mut body, 0, 0, 0);
        frame::encode_content(channel, 60, &properties, &body, FRAME_MAX, &mut b);
        // the body is the last 16 bytes before the end octet; the sequence is its bytes 4..8
        let seq_at = b.len() - 1 - stats::BODY_HEADER + 4;
        Feed {
            channel,
            template: b.to_vec(),
            method_len,
            tag_at,
            seq_at,
            next_seq: 0,
            delivery_tag: 0,
        }
    }

    /// Appends the relayed `messages` as deliveries (with the next delivery tags).
    fn relay(&mut self, messages: &[bytes::Bytes], out: &mut BytesMut) {
        for m in messages {
            self.delivery_tag += 1;
            let t = self.tag_at;
            self.template[t..t + 8].copy_from_slice(&self.delivery_tag.to_be_bytes());
            relay::deliver(&self.template[..self.method_len], self.channel, m, out);
        }
    }
}

/// Bytes of deliveries per write when feeding consumers.
const FEED_BYTES: usize = 128 * 1024;

/// One connection; ends on EOF, error or connection.close.
async fn connection(
    mut s: TcpStream,
    received: Arc<AtomicU64>,
    relay: Option<Arc<Relay>>,
) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut rbuf = BytesMut::with_capacity(READ_CHUNK);
    let mut out = BytesMut::with_capacity(FEED_BYTES * 2);
    loop {
        match frame::decode_protocol_header(&mut rbuf) {
            Ok(Some(())) => break,
            Ok(None) => {
                if s.read_buf(&mut rbuf).await? == 0 {
                    return Ok(());
                }
            }
            Err(_) => {
                s.write_all(frame::PROTOCOL_HEADER).await?;
                return Ok(());
            }
        }
    }
    frame::encode_method(
        0,
        &Method::ConnectionStart(ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: FieldTable::new(),
            mechanisms: LongStr::from("PLAIN AMQPLAIN"),
            locales: LongStr::from("en_US"),
        }),
        &mut out,
    );
    let mut channels: Vec<ChannelState> = vec![ChannelState::default(); 2];
    let mut feeds: Vec<Feed> = Vec::new();
    let mut assembler = relay.as_ref().map(|_| Assembler::default());
    let mut inbox = None;
    loop {
        let closing = process(
            &mut rbuf,
            &mut channels,
            &mut feeds,
            &mut out,
            &received,
            assembler.as_mut(),
        );
        if closing {
            s.write_all(&out).await?;
            return Ok(());
        }
        if let (Some(relay), Some(a)) = (&relay, assembler.as_mut()) {
            let batch = a.take();
            if !batch.is_empty() {
                relay.forward(batch);
            }
            if inbox.is_none() && !feeds.is_empty() {
                inbox = Some(relay.subscribe());
            }
        }
        if inbox.is_none() && !feeds.is_empty() {
            feed(&mut feeds, &mut out);
        }
        if !out.is_empty() {
            s.write_all(&out).await?;
            out.clear();
        }
        if rbuf.capacity() - rbuf.len() < READ_CHUNK / 4 {
            rbuf.reserve(READ_CHUNK);
        }
        if let Some(rx) = inbox.as_mut() {
            // A relay consumer gets what producers publish, as it comes, on its first consumer.
            tokio::select! {
                r = s.read_buf(&mut rbuf) => if r? == 0 { return Ok(()) },
                m = rx.recv() => match (m, feeds.first_mut()) {
                    (Some(batch), Some(f)) => f.relay(&batch, &mut out),
                    (Some(_), None) => {} // its consumers were cancelled
                    (None, _) => return Ok(()),
                },
            }
        } else if feeds.is_empty() {
            if s.read_buf(&mut rbuf).await? == 0 {
                return Ok(());
            }
        } else {
            match s.try_read_buf(&mut rbuf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Appends about [`FEED_BYTES`] of deliveries, round-robin over the consumers. Bodies are 16
/// bytes: producer 0, the consumer's next sequence, send time 0 (latency is meaningless
/// against the sink; continuity is not).
fn feed(feeds: &mut [Feed], out: &mut BytesMut) {
    while out.len() < FEED_BYTES {
        for f in feeds.iter_mut() {
            f.delivery_tag += 1;
            let t = f.tag_at;
            f.template[t..t + 8].copy_from_slice(&f.delivery_tag.to_be_bytes());
            let q = f.seq_at;
            f.template[q..q + 4].copy_from_slice(&f.next_seq.to_be_bytes());
            f.next_seq = f.next_seq.wrapping_add(1);
            out.extend_from_slice(&f.template);
        }
    }
}

/// A content frame the scanner left to the codec, given to the assembler as it was sent.
fn assemble_decoded(a: &mut Assembler, f: &Frame) {
    let mut raw = BytesMut::new();
    frame::encode(f, &mut raw);
    match f {
        Frame::Header { header, .. } => a.header(&raw, header.body_size),
        Frame::Body { payload, .. } => a.body(&raw, payload.len()),
        _ => {}
    }
}

/// Decodes every frame in `rbuf` and encodes the replies into `out`; true once the client
/// sent connection.close (close-ok is then in `out`). Messages go to the `assembler` of a relay.
fn process(
    rbuf: &mut BytesMut,
    channels: &mut Vec<ChannelState>,
    feeds: &mut Vec<Feed>,
    out: &mut BytesMut,
    received: &AtomicU64,
    mut assembler: Option<&mut Assembler>,
) -> bool {
    let mut messages = 0u64;
    let mut pos = 0;
    loop {
        // Publishes, headers and bodies are counted or skipped in place; the rest is decoded.
        match scan(&rbuf[pos..], FRAME_MAX) {
            Ok(Scanned::Incomplete) => break,
            Ok(Scanned::Publish { channel, len }) => {
                pos += len;
                messages += 1;
                if let Some(a) = assembler.as_deref_mut() {
                    a.publish();
                }
                let ch = usize::from(channel);
                if ch >= channels.len() {
                    channels.resize(ch + 1, ChannelState::default());
                }
                channels[ch].published += 1;
                continue;
            }
            Ok(Scanned::Header { body_size, len }) => {
                if let Some(a) = assembler.as_deref_mut() {
                    a.header(&rbuf[pos..pos + len], body_size);
                }
                pos += len;
                continue;
            }
            Ok(Scanned::Body { payload, len }) => {
                if let Some(a) = assembler.as_deref_mut() {
                    a.body(&rbuf[pos..pos + len], payload.len());
                }
                pos += len;
                continue;
            }
            Ok(Scanned::Deliver { len, .. }) => {
                pos += len;
                continue;
            }
            Ok(Scanned::Other) | Err(_) => {
                rbuf.advance(pos);
                pos = 0;
            }
        }
        let f = match frame::decode(rbuf, FRAME_MAX) {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                // Not worth an error reply: the sink only ever talks to this tool.
                frame::encode_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk), out);
                return true;
            }
        };
        let (channel, method) = match f {
            Frame::Method { channel, method } => (channel, method),
            Frame::Header { .. } | Frame::Body { .. } => {
                if let Some(a) = assembler.as_deref_mut() {
                    assemble_decoded(a, &f);
                }
                continue; // without a relay: discarded
            }
            Frame::Heartbeat => continue,
        };
        let ch = usize::from(channel);
        if ch >= channels.len() {
            channels.resize(ch + 1, ChannelState::default());
        }
        let reply = match method {
            Method::BasicPublish(_) => {
                messages += 1;
                if let Some(a) = assembler.as_deref_mut() {
                    a.publish();
                }
                channels[ch].published += 1;
                None
            }
            Method::ConnectionStartOk(_) => Some(Method::ConnectionTune(ConnectionTune {
                channel_max: 2047,
                frame_max: FRAME_MAX,
                heartbeat: 0,
            })),
            Method::ConnectionOpen(_) => Some(Method::ConnectionOpenOk(ConnectionOpenOk {
                reserved_1: ShortStr::EMPTY,
            })),
            Method::ConnectionClose(_) => {
                frame::encode_method(0, &Method::ConnectionCloseOk(ConnectionCloseOk), out);
                return true;
            }
            Method::ChannelOpen(_) => {
                channels[ch] = ChannelState::default();
                Some(Method::ChannelOpenOk(ChannelOpenOk {
                    reserved_1: LongStr::default(),
                }))
            }
            Method::ChannelClose(_) => {
                feeds.retain(|f| f.channel != channel);
                Some(Method::ChannelCloseOk(ChannelCloseOk))
            }
            Method::ConfirmSelect(_) => {
                channels[ch].confirm = true;
                Some(Method::ConfirmSelectOk(ConfirmSelectOk))
            }
            Method::ExchangeDeclare(_) => Some(Method::ExchangeDeclareOk(ExchangeDeclareOk)),
            Method::QueueDeclare(q) => Some(Method::QueueDeclareOk(QueueDeclareOk {
                queue: q.queue,
                message_count: 0,
                consumer_count: 0,
            })),
            Method::QueueBind(_) => Some(Method::QueueBindOk(QueueBindOk)),
            Method::QueuePurge(_) => Some(Method::QueuePurgeOk(QueuePurgeOk { message_count: 0 })),
            Method::QueueDelete(_) => {
                Some(Method::QueueDeleteOk(QueueDeleteOk { message_count: 0 }))
            }
            Method::BasicQos(_) => Some(Method::BasicQosOk(BasicQosOk)),
            Method::BasicConsume(c) => {
                let tag = if c.consumer_tag.is_empty() {
                    ShortStr::from_static("sink")
                } else {
                    c.consumer_tag
                };
                feeds.push(Feed::new(channel, &tag));
                Some(Method::BasicConsumeOk(BasicConsumeOk { consumer_tag: tag }))
            }
            _ => None, // acks, tune-ok...
        };
        if let Some(m) = reply {
            frame::encode_method(channel, &m, out);
        }
    }
    rbuf.advance(pos);
    for (ch, st) in channels.iter_mut().enumerate() {
        if st.confirm && st.published > st.acked {
            frame::encode_method(
                ch as u16,
                &Method::BasicAck(BasicAck {
                    delivery_tag: st.published,
                    multiple: true,
                }),
                out,
            );
            st.acked = st.published;
        }
    }
    if messages > 0 {
        received.fetch_add(messages, Ordering::Relaxed);
    }
    false
}
