//! `sink --relay`: the sink forwards every publish to a consumer as a delivery and does nothing
//! else (no queue, routing, storage, acks or flow control). The latency a load run measures
//! through it is the floor under any broker on this machine: this tool at both ends, loopback
//! TCP, and one process in between that must be woken to read and write.
//!
//! A producer's connection assembles each message from its raw frames ([`Assembler`]: the
//! content header and body frames as they arrived) and hands a read's messages to [`Relay`],
//! which gives them to the consumers in turn (tokio channels, one per consumer connection, as
//! a broker's connection tasks hand work to each other). The consumer's connection writes a
//! basic.deliver from its template, then the frames with their channel number rewritten
//! ([`deliver`]).

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

/// Messages kept while no consumer is there (a run starts its producers and consumers at
/// about the same time); past this, messages are dropped and the run reports them lost.
const PENDING_MAX: usize = 100_000;

/// The messages of one read of one producer connection.
pub(crate) type Batch = Vec<Bytes>;

/// The consumers messages go to, in turn.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    consumers: Vec<UnboundedSender<Batch>>,
    next: usize,
    pending: Batch,
}

impl Relay {
    /// A consumer connection's inbox; what arrived before any consumer comes first.
    pub(crate) fn subscribe(&self) -> UnboundedReceiver<Batch> {
        let (tx, rx) = unbounded_channel();
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut inner.pending);
        if !pending.is_empty() {
            let _ = tx.send(pending);
        }
        inner.consumers.push(tx);
        rx
    }

    /// Gives `batch` to the next consumer whose connection is still there.
    pub(crate) fn forward(&self, mut batch: Batch) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        while !inner.consumers.is_empty() {
            let i = inner.next % inner.consumers.len();
            match inner.consumers[i].send(batch) {
                Ok(()) => {
                    inner.next = i + 1;
                    return;
                }
                Err(e) => {
                    batch = e.0;
                    inner.consumers.swap_remove(i);
                }
            }
        }
        let room = PENDING_MAX.saturating_sub(inner.pending.len());
        batch.truncate(room);
        inner.pending.extend(batch);
    }
}

/// Collects a producer connection's messages from its frames: a basic.publish opens one, its
/// content header and body frames are kept as they arrived, and it is done when the body is.
#[derive(Debug, Default)]
pub(crate) struct Assembler {
    open: Option<Open>,
    done: Batch,
}

#[derive(Debug)]
struct Open {
    frames: BytesMut,
    /// Body bytes still to come; `None` until the content header.
    left: Option<u64>,
}

impl Assembler {
    /// A basic.publish: a new message starts (one left unfinished is dropped).
    pub(crate) fn publish(&mut self) {
        self.open = Some(Open {
            frames: BytesMut::new(),
            left: None,
        });
    }

    /// The content header frame `raw` announcing `body_size` bytes of body.
    pub(crate) fn header(&mut self, raw: &[u8], body_size: u64) {
        if let Some(m) = self.open.as_mut().filter(|m| m.left.is_none()) {
            m.frames.extend_from_slice(raw);
            m.left = Some(body_size);
            self.finish_if_done();
        }
    }

    /// A content body frame `raw` carrying `payload` bytes of body.
    pub(crate) fn body(&mut self, raw: &[u8], payload: usize) {
        if let Some(m) = self.open.as_mut()
            && let Some(left) = m.left
        {
            m.frames.extend_from_slice(raw);
            m.left = Some(left.saturating_sub(payload as u64));
            self.finish_if_done();
        }
    }

    fn finish_if_done(&mut self) {
        if self.open.as_ref().is_some_and(|m| m.left == Some(0))
            && let Some(m) = self.open.take()
        {
            self.done.push(m.frames.freeze());
        }
    }

    /// The messages completed since the last call.
    pub(crate) fn take(&mut self) -> Batch {
        std::mem::take(&mut self.done)
    }
}

/// Appends one delivery: the basic.deliver method frame `method` (already carrying its
/// delivery tag and the consumer's channel), then the message's frames on `channel`.
pub(crate) fn deliver(method: &[u8], channel: u16, message: &[u8], out: &mut BytesMut) {
    out.extend_from_slice(method);
    let start = out.len();
    out.extend_from_slice(message);
    let frames = &mut out[start..];
    let mut at = 0;
    // The frames were checked when they were read: type, channel, size, payload, end octet.
    while let Some(head) = frames.get_mut(at..at + 7) {
        head[1..3].copy_from_slice(&channel.to_be_bytes());
        let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
        at += 7 + size + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lagomorph::protocol::frame;
    use lagomorph::protocol::properties::{BasicProperties, Properties};

    fn content(channel: u16, body: &[u8], frame_max: u32) -> BytesMut {
        let mut b = BytesMut::new();
        let p = Properties::from(BasicProperties::default());
        frame::encode_content(channel, 60, &p, body, frame_max, &mut b);
        b
    }

    /// `raw` split into its frames.
    fn frames(raw: &[u8]) -> Vec<&[u8]> {
        let mut v = Vec::new();
        let mut at = 0;
        while at < raw.len() {
            let size = u32::from_be_bytes(raw[at + 3..at + 7].try_into().unwrap()) as usize;
            v.push(&raw[at..at + 8 + size]);
            at += 8 + size;
        }
        v
    }

    /// Gives content frames to `a` one by one, as the sink does.
    fn feed(a: &mut Assembler, frames: &[&[u8]], body_size: u64) {
        for f in frames {
            if f[0] == frame::FRAME_HEADER {
                a.header(f, body_size);
            } else {
                a.body(f, f.len() - 8);
            }
        }
    }

    #[test]
    fn a_message_is_done_with_its_last_body_frame_and_delivered_on_the_consumers_channel() {
        let body = vec![7u8; 10_000];
        let raw = content(3, &body, 4096);
        let split = frames(&raw);
        assert_eq!(split.len(), 4, "a header and three body frames");
        let mut a = Assembler::default();
        a.publish();
        feed(&mut a, &split[..3], 10_000);
        assert!(a.take().is_empty(), "not done before its last body frame");
        a.publish(); // a publish in the middle drops the unfinished message
        feed(&mut a, &split, 10_000);
        a.publish();
        feed(&mut a, &frames(&content(3, b"", 4096)), 0);
        let done = a.take();
        assert_eq!(done.len(), 2);
        assert_eq!(&done[0][..], &raw[..]);

        let mut out = BytesMut::new();
        deliver(b"M", 9, &done[0], &mut out);
        let mut rbuf = out.split_off(1);
        assert_eq!(&out[..], b"M");
        let mut got = Vec::new();
        while let Some(f) = frame::decode(&mut rbuf, 4096).expect("valid frames") {
            match f {
                frame::Frame::Header { channel, header } => {
                    assert_eq!((channel, header.body_size), (9, 10_000));
                }
                frame::Frame::Body { channel, payload } => {
                    assert_eq!(channel, 9);
                    got.extend_from_slice(&payload);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, body);
    }

    #[test]
    fn messages_wait_for_a_consumer_and_go_to_consumers_in_turn() {
        let relay = Relay::default();
        relay.forward(vec![Bytes::from_static(b"a")]);
        let mut one = relay.subscribe();
        let mut two = relay.subscribe();
        relay.forward(vec![Bytes::from_static(b"b")]);
        relay.forward(vec![Bytes::from_static(b"c")]);
        assert_eq!(one.try_recv().unwrap(), vec![Bytes::from_static(b"a")]);
        assert_eq!(one.try_recv().unwrap(), vec![Bytes::from_static(b"b")]);
        assert_eq!(two.try_recv().unwrap(), vec![Bytes::from_static(b"c")]);
        drop(one);
        relay.forward(vec![Bytes::from_static(b"d")]);
        relay.forward(vec![Bytes::from_static(b"e")]);
        assert_eq!(two.try_recv().unwrap(), vec![Bytes::from_static(b"d")]);
        assert_eq!(two.try_recv().unwrap(), vec![Bytes::from_static(b"e")]);
    }
}
