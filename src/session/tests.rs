//! Scripted conversations with the sans-IO session: bytes in at fixed instants, bytes out,
//! no sockets and no runtime. Each test drives a [`Connection`] over a broker on a
//! [`MemoryStore`], the way h2's mock-IO tests do.

use super::Connection;
use crate::broker::Now;
use crate::broker::{Broker, BrokerOptions, Outbound};
use crate::protocol::frame::{self, Frame, PROTOCOL_HEADER};
use crate::protocol::method::*;
use crate::protocol::properties::{BasicProperties, Properties};
use crate::protocol::types::{LongStr, ShortStr};
use crate::storage::MemoryStore;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

struct Script {
    conn: Connection,
    broker: Broker,
    mailbox: mpsc::UnboundedReceiver<Outbound>,
    now: Now,
    inbox: BytesMut,
}

impl Script {
    fn new() -> Script {
        let broker = Broker::new(Arc::new(MemoryStore::new()), BrokerOptions::default());
        let (tx, rx) = mpsc::unbounded_channel();
        let peer = "127.0.0.1:40000".parse().expect("addr");
        let info = broker.register_connection(peer, peer, tx, std::time::UNIX_EPOCH);
        let now = crate::clock::now();
        Script {
            conn: Connection::new(broker.clone(), info, now),
            broker,
            mailbox: rx,
            now,
            inbox: BytesMut::new(),
        }
    }

    fn send_bytes(&mut self, b: &[u8]) {
        let mut buf = BytesMut::from(b);
        self.conn.handle_bytes(&mut buf, self.now);
        assert!(buf.is_empty(), "session left {} bytes unread", buf.len());
    }

    fn send(&mut self, ch: u16, m: Method) {
        let mut b = BytesMut::new();
        frame::encode_method(ch, &m, &mut b);
        self.send_bytes(&b);
    }

    /// Everything the session wrote, as frames.
    fn output(&mut self) -> Vec<Frame> {
        if let Some(b) = self.conn.take_output(self.now) {
            self.inbox.extend_from_slice(&b.into_bytes());
        }
        let mut out = Vec::new();
        while let Some(f) = frame::decode(&mut self.inbox, 1 << 20).expect("valid output") {
            out.push(f);
        }
        out
    }

    fn methods(&mut self) -> Vec<Method> {
        self.output()
            .into_iter()
            .filter_map(|f| match f {
                Frame::Method { method, .. } => Some(method),
                _ => None,
            })
            .collect()
    }

    /// Delivers what the broker put in the mailbox.
    fn pump(&mut self) {
        while let Ok(m) = self.mailbox.try_recv() {
            self.conn.handle_outbound(m, self.now);
        }
    }

    fn open(heartbeat: u16) -> Script {
        let mut s = Script::new();
        s.send_bytes(PROTOCOL_HEADER);
        assert!(matches!(s.methods()[..], [Method::ConnectionStart(_)]));
        s.send(
            0,
            ConnectionStartOk {
                mechanism: ShortStr::from_static("PLAIN"),
                response: LongStr::from("\0guest\0guest"),
                locale: ShortStr::from_static("en_US"),
                ..Default::default()
            }
            .into(),
        );
        assert!(matches!(s.methods()[..], [Method::ConnectionTune(_)]));
        s.send(
            0,
            ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 4096,
                heartbeat,
            }
            .into(),
        );
        s.send(
            0,
            ConnectionOpen {
                virtual_host: ShortStr::from_static("/"),
                ..Default::default()
            }
            .into(),
        );
        assert!(matches!(s.methods()[..], [Method::ConnectionOpenOk(_)]));
        s.send(1, ChannelOpen::default().into());
        assert!(matches!(s.methods()[..], [Method::ChannelOpenOk(_)]));
        s
    }

    fn publish(&mut self, key: &str, body: &[u8]) {
        let mut b = BytesMut::new();
        frame::encode_method(
            1,
            &BasicPublish {
                routing_key: ShortStr::try_from(key).expect("key"),
                ..Default::default()
            }
            .into(),
            &mut b,
        );
        frame::encode_content(1, 60, &Properties::EMPTY, body, 4096, &mut b);
        self.send_bytes(&b);
    }
}

#[test]
fn handshake_publish_get_ack() {
    let mut s = Script::open(0);
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    assert!(matches!(&s.methods()[..], [Method::QueueDeclareOk(ok)] if ok.message_count == 0));
    // A body larger than frame_max arrives in several frames and leaves as several frames.
    let body = vec![7u8; 10_000];
    s.publish("q", &body);
    s.send(
        1,
        BasicGet {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    let out = s.output();
    assert!(
        matches!(&out[0], Frame::Method { method: Method::BasicGetOk(ok), .. } if ok.delivery_tag == 1 && ok.message_count == 0)
    );
    let got: Vec<u8> = out[2..]
        .iter()
        .flat_map(|f| match f {
            Frame::Body { payload, .. } => payload.to_vec(),
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(got, body);
    assert!(
        out[2..]
            .iter()
            .all(|f| matches!(f, Frame::Body { payload, .. } if payload.len() <= 4096 - 8))
    );
    assert_eq!(s.conn.unacked(1), 1);
    s.send(
        1,
        BasicAck {
            delivery_tag: 1,
            multiple: false,
        }
        .into(),
    );
    assert_eq!(s.conn.unacked(1), 0);
}

#[test]
fn confirms_coalesce_within_one_read() {
    let mut s = Script::open(0);
    s.send(1, ConfirmSelect { nowait: true }.into());
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            no_wait: true,
            ..Default::default()
        }
        .into(),
    );
    // Three publishes in one read: one ack with multiple for all three.
    let mut b = BytesMut::new();
    for _ in 0..3 {
        frame::encode_method(
            1,
            &BasicPublish {
                routing_key: ShortStr::from_static("q"),
                ..Default::default()
            }
            .into(),
            &mut b,
        );
        frame::encode_content(1, 60, &Properties::EMPTY, b"x", 4096, &mut b);
    }
    s.send_bytes(&b);
    assert_eq!(
        s.methods(),
        vec![
            BasicAck {
                delivery_tag: 3,
                multiple: true
            }
            .into()
        ]
    );
}

#[test]
fn consumer_gets_deliveries_through_the_mailbox() {
    let mut s = Script::open(0);
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    s.send(
        1,
        BasicConsume {
            queue: ShortStr::from_static("q"),
            consumer_tag: ShortStr::from_static("c"),
            no_ack: true,
            ..Default::default()
        }
        .into(),
    );
    let m = s.methods();
    assert!(
        matches!(&m[..], [Method::QueueDeclareOk(_), Method::BasicConsumeOk(ok)] if ok.consumer_tag == "c")
    );
    s.publish("q", b"hello");
    assert!(s.methods().is_empty(), "the delivery waits in the mailbox");
    s.pump();
    assert!(
        matches!(&s.methods()[..], [Method::BasicDeliver(d)] if d.delivery_tag == 1 && !d.redelivered)
    );
}

#[test]
fn heartbeats_go_out_and_a_silent_peer_is_dropped() {
    let mut s = Script::open(10);
    let start = s.now;
    assert_eq!(
        s.conn.poll_timeout(),
        Some(start.mono + Duration::from_secs(5))
    );
    s.now = start.after(Duration::from_secs(5));
    s.conn.handle_timeout(s.now);
    assert_eq!(s.output(), vec![Frame::Heartbeat]);
    assert!(!s.conn.is_closed());
    s.now = start.after(Duration::from_secs(20));
    s.conn.handle_timeout(s.now);
    assert!(
        s.conn.is_closed(),
        "two intervals of silence end the connection"
    );
}

#[test]
fn channel_error_closes_only_the_channel_and_discards_until_close_ok() {
    let mut s = Script::open(0);
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("missing"),
            passive: true,
            ..Default::default()
        }
        .into(),
    );
    assert!(
        matches!(&s.methods()[..], [Method::ChannelClose(c)] if c.reply_code == 404 && c.class_id == 50 && c.method_id == 10)
    );
    // Until close-ok, other methods on the channel are dropped.
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    assert!(s.methods().is_empty());
    s.send(1, ChannelCloseOk.into());
    s.send(1, ChannelOpen::default().into());
    assert!(matches!(s.methods()[..], [Method::ChannelOpenOk(_)]));
}

#[test]
fn after_connection_close_only_close_ok_counts() {
    let mut s = Script::open(0);
    s.conn.close(
        crate::protocol::ReplyCode::ConnectionForced,
        "broker forced connection closure with reason 'shutdown'",
        s.now,
    );
    assert!(matches!(&s.methods()[..], [Method::ConnectionClose(c)] if c.reply_code == 320));
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    assert!(s.methods().is_empty(), "discarded while closing");
    s.send(0, ConnectionCloseOk.into());
    assert!(s.conn.is_closed());
}

#[test]
fn memory_alarm_stops_reading_publishers_only() {
    let mut s = Script::open(0);
    s.conn
        .handle_outbound(Outbound::Blocked(Some("low on memory".into())), s.now);
    assert!(
        s.conn.wants_read(),
        "a connection that never published is still read"
    );
    s.send(
        1,
        QueueDeclare {
            queue: ShortStr::from_static("q"),
            ..Default::default()
        }
        .into(),
    );
    s.publish("q", b"x");
    assert!(
        !s.conn.wants_read(),
        "a publisher is not read while the alarm is set"
    );
    s.conn.handle_outbound(Outbound::Blocked(None), s.now);
    assert!(s.conn.wants_read());
}

/// A publish whose content header carries `props`, a raw property list written as is (it may
/// be malformed, which `frame::encode_content` cannot express).
fn publish_raw(key: &str, mandatory: bool, props: &[u8], body: &[u8]) -> BytesMut {
    use bytes::BufMut;
    let mut b = BytesMut::new();
    frame::encode_method(
        1,
        &BasicPublish {
            routing_key: ShortStr::try_from(key).expect("key"),
            mandatory,
            ..Default::default()
        }
        .into(),
        &mut b,
    );
    b.put_u8(frame::FRAME_HEADER);
    b.put_u16(1);
    b.put_u32(u32::try_from(12 + props.len()).expect("small"));
    b.put_u16(60);
    b.put_u16(0);
    b.put_u64(body.len() as u64);
    b.put_slice(props);
    b.put_u8(frame::FRAME_END);
    frame::encode(
        &Frame::Body {
            channel: 1,
            payload: bytes::Bytes::copy_from_slice(body),
        },
        &mut b,
    );
    b
}

/// A property list no encoder of ours would write: a needless continuation word, and a
/// headers table whose keys are not sorted. content-type, headers, delivery-mode 2, user-id.
const ODD_PROPERTIES: &[u8] = b"\xb0\x11\x00\x00\
    \x0atext/plain\
    \x00\x00\x00\x0f\x01zI\x00\x00\x00\x01\x01aS\x00\x00\x00\x01x\
    \x02\
    \x05guest";

impl Script {
    /// Declares queue `q` with no_wait (no reply).
    fn declare_quietly(&mut self, q: &str) {
        self.send(
            1,
            QueueDeclare {
                queue: ShortStr::try_from(q).expect("name"),
                no_wait: true,
                ..Default::default()
            }
            .into(),
        );
    }

    /// Consumes `q` with auto-ack as consumer "c", and checks the consume-ok is all the reply.
    fn consume_no_ack(&mut self, q: &str) {
        self.send(
            1,
            BasicConsume {
                queue: ShortStr::try_from(q).expect("name"),
                consumer_tag: ShortStr::from_static("c"),
                no_ack: true,
                ..Default::default()
            }
            .into(),
        );
        assert!(matches!(&self.methods()[..], [Method::BasicConsumeOk(_)]));
    }
}

/// The property bytes of every content header in `out`.
fn header_bytes(out: &[Frame]) -> Vec<Vec<u8>> {
    out.iter()
        .filter_map(|f| match f {
            Frame::Header { header, .. } => Some(header.properties.as_bytes().to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn deliveries_returns_and_gets_carry_the_published_property_bytes() {
    let decoded = Properties::from_bytes(bytes::Bytes::from_static(ODD_PROPERTIES))
        .expect("well-formed")
        .decode();
    assert_eq!(decoded.user_id, Some(ShortStr::from_static("guest")));
    assert_ne!(
        Properties::from(&decoded).as_bytes(),
        ODD_PROPERTIES,
        "re-encoding would change these bytes"
    );

    let mut s = Script::open(0);
    for q in ["q", "g"] {
        s.declare_quietly(q);
    }
    s.consume_no_ack("q");

    // Delivered to a consumer.
    s.send_bytes(&publish_raw("q", false, ODD_PROPERTIES, b"one"));
    s.pump();
    let out = s.output();
    assert!(matches!(
        &out[0],
        Frame::Method {
            method: Method::BasicDeliver(_),
            ..
        }
    ));
    assert_eq!(header_bytes(&out), vec![ODD_PROPERTIES.to_vec()]);

    // Returned, mandatory and unroutable.
    s.send_bytes(&publish_raw("nowhere", true, ODD_PROPERTIES, b"two"));
    let out = s.output();
    assert!(
        matches!(&out[0], Frame::Method { method: Method::BasicReturn(r), .. } if r.reply_code == 312)
    );
    assert_eq!(header_bytes(&out), vec![ODD_PROPERTIES.to_vec()]);

    // Fetched with basic.get.
    s.send_bytes(&publish_raw("g", false, ODD_PROPERTIES, b"three"));
    s.send(
        1,
        BasicGet {
            queue: ShortStr::from_static("g"),
            no_ack: true,
            ..Default::default()
        }
        .into(),
    );
    let out = s.output();
    assert!(matches!(
        &out[0],
        Frame::Method {
            method: Method::BasicGetOk(_),
            ..
        }
    ));
    assert_eq!(header_bytes(&out), vec![ODD_PROPERTIES.to_vec()]);
}

#[test]
fn a_user_id_other_than_the_login_is_refused() {
    let mut s = Script::open(0);
    let props = Properties::from(BasicProperties {
        user_id: Some(ShortStr::from_static("mallory")),
        ..Default::default()
    });
    s.send_bytes(&publish_raw("q", false, props.as_bytes(), b"x"));
    assert!(
        matches!(&s.methods()[..], [Method::ChannelClose(c)] if c.reply_code == 406
            && c.reply_text.contains("user_id property set to 'mallory'")
            && (c.class_id, c.method_id) == (60, 40))
    );
}

#[test]
fn malformed_properties_close_the_connection_and_reach_no_consumer() {
    // content-type announces 9 bytes, 2 follow: 501; an unknown field type in headers: 502.
    for (props, code) in [
        (&b"\x80\x00\x09ab"[..], 501),
        (&b"\x20\x00\x00\x00\x00\x03\x01kZ"[..], 502),
    ] {
        let mut s = Script::open(0);
        s.declare_quietly("q");
        s.consume_no_ack("q");
        s.send_bytes(&publish_raw("q", false, props, b"x"));
        s.pump();
        let m = s.methods();
        assert!(
            matches!(&m[..], [Method::ConnectionClose(c)] if c.reply_code == code),
            "{props:?}: {m:?}"
        );
    }
}

impl Script {
    /// Declares queue `q`, consumes it with manual acks and `prefetch`, publishes `n` messages
    /// and takes their deliveries (tags 1..=n).
    fn consume_manual(&mut self, prefetch: u16, n: usize) {
        self.send(
            1,
            QueueDeclare {
                queue: ShortStr::from_static("q"),
                ..Default::default()
            }
            .into(),
        );
        self.send(
            1,
            BasicQos {
                prefetch_count: prefetch,
                ..Default::default()
            }
            .into(),
        );
        self.send(
            1,
            BasicConsume {
                queue: ShortStr::from_static("q"),
                consumer_tag: ShortStr::from_static("c"),
                ..Default::default()
            }
            .into(),
        );
        for _ in 0..n {
            self.publish("q", b"m");
        }
        self.pump();
        let delivered = self
            .methods()
            .iter()
            .filter(|m| matches!(m, Method::BasicDeliver(_)))
            .count();
        assert_eq!(delivered, n.min(usize::from(prefetch)));
    }

    /// (ready, unacked) of queue `q`, as the queue itself counts them.
    fn counts(&self) -> (usize, usize) {
        let q = self
            .broker
            .vhost("/")
            .expect("vhost")
            .queue("q")
            .expect("q");
        let c = q.counts();
        let (ready, unacked) = (c.ready, c.unacked);
        (ready, unacked)
    }

    fn acked(&self) -> u64 {
        let q = self
            .broker
            .vhost("/")
            .expect("vhost")
            .queue("q")
            .expect("q");
        q.stats.acked.load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn ack(tag: u64, multiple: bool, out: &mut BytesMut) {
    frame::encode_method(
        1,
        &BasicAck {
            delivery_tag: tag,
            multiple,
        }
        .into(),
        out,
    );
}

#[test]
fn acks_of_one_read_are_applied_together_and_free_prefetch() {
    let mut s = Script::open(0);
    s.consume_manual(2, 4);
    assert_eq!(s.counts(), (2, 2));
    let mut b = BytesMut::new();
    ack(1, false, &mut b);
    ack(2, false, &mut b);
    s.send_bytes(&b);
    assert_eq!(s.acked(), 2, "both acks applied by the end of the read");
    // The freed prefetch let the queue push the last two.
    s.pump();
    let tags: Vec<u64> = s
        .methods()
        .iter()
        .filter_map(|m| match m {
            Method::BasicDeliver(d) => Some(d.delivery_tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, [3, 4]);
    assert_eq!(s.counts(), (0, 2));
}

/// Sends one ack (not multiple) for each of `tags`, all in one read.
fn ack_each(s: &mut Script, tags: std::ops::RangeInclusive<u64>) {
    let mut b = BytesMut::new();
    for tag in tags {
        ack(tag, false, &mut b);
    }
    s.send_bytes(&b);
}

#[test]
fn a_channel_keeps_a_small_ack_batch_vector_and_lets_a_large_one_go() {
    let mut s = Script::open(0);
    s.consume_manual(1000, 300);
    ack_each(&mut s, 1..=8);
    assert_eq!(s.acked(), 8);
    let kept = s.conn.pending_acks_capacity(1).expect("channel 1");
    assert!(
        kept >= 8,
        "a small batch's vector is kept for the next: {kept}"
    );
    // A burst of acks in one read: its vector is not kept for the channel's life.
    ack_each(&mut s, 9..=300);
    assert_eq!(s.acked(), 300);
    let kept = s.conn.pending_acks_capacity(1).expect("channel 1");
    assert!(kept <= super::channel::KEEP_PENDING_ACKS, "kept {kept}");
}

#[test]
fn acks_followed_by_channel_close_in_the_same_read_still_count() {
    let mut s = Script::open(0);
    s.consume_manual(10, 3);
    let mut b = BytesMut::new();
    ack(1, false, &mut b);
    ack(2, false, &mut b);
    frame::encode_method(1, &ChannelClose::default().into(), &mut b);
    s.send_bytes(&b);
    assert!(matches!(s.methods()[..], [Method::ChannelCloseOk(_)]));
    assert_eq!(s.acked(), 2);
    assert_eq!(
        s.counts(),
        (1, 0),
        "only the unacked third message is requeued"
    );
}

#[test]
fn an_unknown_tag_after_good_acks_closes_the_channel_and_keeps_the_good_ones() {
    let mut s = Script::open(0);
    s.consume_manual(10, 3);
    let mut b = BytesMut::new();
    ack(1, false, &mut b);
    ack(99, false, &mut b);
    ack(2, false, &mut b);
    s.send_bytes(&b);
    let m = s.methods();
    assert!(
        matches!(&m[..], [Method::ChannelClose(c)] if c.reply_code == 406 && c.reply_text == "PRECONDITION_FAILED - unknown delivery tag 99"),
        "{m:?}"
    );
    assert_eq!(
        s.acked(),
        1,
        "the ack before the bad one counts, none after it"
    );
    assert_eq!(s.counts(), (2, 0));
}

#[test]
fn a_get_after_acks_in_the_same_read_sees_them_applied() {
    let mut s = Script::open(0);
    s.consume_manual(1, 2);
    let mut b = BytesMut::new();
    ack(1, true, &mut b);
    frame::encode_method(
        1,
        &BasicGet {
            queue: ShortStr::from_static("q"),
            no_ack: true,
            ..Default::default()
        }
        .into(),
        &mut b,
    );
    s.send_bytes(&b);
    // The ack is applied before basic.get runs, as if it had come alone: its freed credit sends
    // the second message to the consumer, and the get finds the queue empty.
    let m = s.methods();
    assert!(matches!(&m[..], [Method::BasicGetEmpty(_)]), "{m:?}");
    s.pump();
    assert!(
        matches!(&s.methods()[..], [Method::BasicDeliver(d)] if d.delivery_tag == 2),
        "the consumer got it"
    );
    assert_eq!(s.acked(), 1);
}

#[test]
fn acks_before_a_connection_error_in_the_same_read_still_count() {
    let mut s = Script::open(0);
    s.consume_manual(10, 3);
    let mut b = BytesMut::new();
    ack(1, false, &mut b);
    // A method frame whose end octet is wrong: a connection error (501) mid-batch.
    let mut bad = BytesMut::new();
    frame::encode_method(1, &BasicAck::default().into(), &mut bad);
    let last = bad.len() - 1;
    bad[last] = 0;
    b.extend_from_slice(&bad);
    s.send_bytes(&b);
    let m = s.methods();
    assert!(
        matches!(&m[..], [Method::ConnectionClose(c)] if c.reply_code == 501),
        "{m:?}"
    );
    assert_eq!(s.acked(), 1);
    assert_eq!(s.counts(), (2, 0), "the two unacked ones are requeued");
}

/// A failed login is answered only at its deadline (the broker's delay), which poll_timeout
/// reports to the driver; input meanwhile is discarded.
#[test]
fn a_failed_login_is_refused_at_its_deadline() {
    let mut s = Script::new();
    s.send_bytes(PROTOCOL_HEADER);
    assert!(matches!(s.methods()[..], [Method::ConnectionStart(_)]));
    s.send(
        0,
        ConnectionStartOk {
            mechanism: ShortStr::from_static("PLAIN"),
            response: LongStr::from("\0guest\0wrong"),
            locale: ShortStr::from_static("en_US"),
            ..Default::default()
        }
        .into(),
    );
    assert!(s.methods().is_empty(), "nothing before the deadline");
    let delay = s.broker.access().failed_login_delay();
    let deadline = s.conn.poll_timeout().expect("a deadline");
    assert_eq!(deadline, s.now.mono + delay);
    s.send_bytes(&[1, 0, 0, 0, 0, 0, 0, 0xCE]); // discarded, not a second answer
    let early = Now {
        mono: deadline - Duration::from_millis(1),
        ..s.now
    };
    s.conn.handle_timeout(early);
    assert!(s.methods().is_empty());
    s.now = Now {
        mono: deadline,
        ..s.now
    };
    s.conn.handle_timeout(s.now);
    match &s.methods()[..] {
        [Method::ConnectionClose(c)] => assert_eq!(
            (c.reply_code, c.reply_text.as_str()),
            (
                403,
                "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile."
            )
        ),
        other => panic!("expected connection.close, got {other:?}"),
    }
    assert_eq!(
        s.broker
            .access()
            .stats()
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}
