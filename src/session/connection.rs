//! The AMQP connection state machine, sans-IO: bytes and mailbox messages in, bytes out, time
//! passed in. The driver (`server::connection`) owns the socket and calls, in any order:
//!
//! - inputs: [`Connection::handle_bytes`], [`Connection::handle_outbound`],
//!   [`Connection::handle_timeout`], [`Connection::handle_flushed`];
//! - outputs: [`Connection::take_output`] (bytes to write), [`Connection::poll_timeout`] (when
//!   to call `handle_timeout`), [`Connection::needs_flush`] (a store flush to wait for before
//!   confirms can go out), [`Connection::is_closed`] (write what is left, then close the socket).
//!
//! Handshake (in the child module `handshake`): protocol header, start / start-ok (PLAIN,
//! AMQPLAIN or EXTERNAL, offered as the driver says), tune / tune-ok, open / open-ok.
//!
//! Closing, as RabbitMQ 3.10 does (recorded in `tests/fixtures/rabbitmq-3.10/compat.json`):
//! - the client sends connection.close: we release its channels, answer close-ok and keep
//!   reading (and discarding) until the client closes the socket, for at most
//!   [`CLOSE_TIMEOUT`]. Closing at once would leave the client's unread input in our kernel
//!   buffer, and Linux then answers with a reset, which can reach the client before close-ok;
//! - we send connection.close: everything but close and close-ok is discarded until close-ok
//!   arrives (then the socket closes) or [`CLOSE_TIMEOUT`] passes; a close from the client
//!   crossing ours is answered with close-ok, as above;
//! - a tune-ok RabbitMQ refuses (frame_max 0 or above ours, channel_max 0 or above ours,
//!   frame_max under 4096) closes the socket without a close method, after
//!   [`SILENT_CLOSE_DELAY`], as RabbitMQ does with errors before the connection is open.

use crate::broker::access::{ConnectionSlot, Grant};
use crate::broker::{
    Broker, ConnId, ConnectionInfo, Consumed, Mailbox, Now, Outbound, User, VHost,
};
use crate::protocol::ReplyCode;
use crate::protocol::frame::{
    ContentHeader, Frame, PROTOCOL_HEADER, decode, decode_protocol_header, encode_heartbeat,
    encode_method,
};
use crate::protocol::method::*;
use crate::protocol::types::ShortStr;
use bytes::BytesMut;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{Channel, open_ok};
use super::confirms::Confirm;
use super::error::{AmqpError, Scope};
use super::output::{Output, Transmit};

mod frames;
mod handshake;

pub use handshake::Mechanisms;

/// How long we wait for the peer's close-ok, and after our close-ok for the peer to close the
/// socket. RabbitMQ waits 30 s (or the heartbeat interval, if shorter); a few seconds are
/// enough for a client to read close-ok and close, and do not hold a connection slot for long.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a publisher's socket goes unread when a queue it published to is falling behind its
/// consumers (RabbitMQ's credit flow, in time rather than credits): about a millisecond's worth
/// of deliveries leaves the queue meanwhile, then the next read publishes again. A connection
/// that also consumes from that queue has its acks read late by as much, no more.
pub(crate) const FLOW_PAUSE: Duration = Duration::from_millis(1);
/// How long a connection refused before it is open (a bad tune-ok) waits before its socket is
/// closed, as RabbitMQ's `SILENT_CLOSE_DELAY` (3 s): a client cannot retry in a tight loop.
pub const SILENT_CLOSE_DELAY: Duration = Duration::from_secs(3);

/// What the session hands to channel handlers.
pub(crate) struct Ctx<'a> {
    pub(crate) vhost: &'a Arc<VHost>,
    pub(crate) conn: ConnId,
    pub(crate) mailbox: &'a Mailbox,
    pub(crate) info: &'a ConnectionInfo,
    pub(crate) out: &'a mut Output,
    pub(crate) frame_max: u32,
    pub(crate) user: &'a str,
    /// What the user may do in the vhost, current as of this input.
    pub(crate) grant: &'a Grant,
    /// The time of the input being handled.
    pub(crate) now: Now,
    /// Set by a publish whose queue is falling behind its consumers (see
    /// [`crate::broker::PublishOutcome::flow`]).
    pub(crate) flow: bool,
    /// Set by a publish that joined its channel's batch (see `Channel::flush_publishes`).
    pub(crate) batched: bool,
    /// Confirms released by consuming (see [`crate::broker::consumed`]).
    pub(crate) consumed: &'a mut Consumed,
}

impl Ctx<'_> {
    /// Writes a method frame.
    pub(crate) fn send(&mut self, channel: u16, m: &Method) {
        encode_method(channel, m, self.out.buf());
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    StartOk,
    TuneOk,
    Open,
    Running,
    /// We sent connection.close and wait for close-ok.
    Closing,
    /// Nothing more will be answered: input is discarded until the peer closes the socket or
    /// `close_deadline` passes (after our close-ok, or a silent refusal).
    Draining,
    Closed,
}

/// What the client told us it understands (client-properties capabilities).
#[derive(Clone, Copy, Debug, Default)]
struct ClientCaps {
    consumer_cancel_notify: bool,
    connection_blocked: bool,
}

/// One client connection. See the module docs for the input/output contract.
pub struct Connection {
    broker: Broker,
    info: Arc<ConnectionInfo>,
    state: State,
    out: Output,
    frame_max: u32,
    channel_max: u16,
    heartbeat: Option<Duration>,
    last_recv: Instant,
    last_send: Instant,
    close_deadline: Option<Instant>,
    channels: HashMap<u16, Channel, ChannelHash>,
    vhost: Option<Arc<VHost>>,
    user: Option<User>,
    /// The user's rights in the vhost (from connection.open), refreshed when they change.
    grant: Option<Arc<Grant>>,
    /// This connection's place in the vhost's and the user's connection counts.
    admission: Option<ConnectionSlot>,
    /// A login refusal waiting for its deadline (see `handshake`).
    delayed_refusal: Option<(Instant, AmqpError)>,
    caps: ClientCaps,
    /// The login mechanisms offered (set by the driver).
    mechanisms: Mechanisms,
    flushed: u64,
    confirm_buf: Vec<Confirm>,
    /// Confirms that this connection's consumers released (they consumed every copy), for
    /// their publishers: sent before this connection's next output.
    consumed: Consumed,
    /// The resource alarms' blocked reason while any is set (see `broker::alarm`).
    blocked: Option<String>,
    /// The client published while an alarm was set: it has been sent connection.blocked (if
    /// it announced the capability) and is not read until the alarms clear. As RabbitMQ 3.10,
    /// a connection that does not publish is neither told nor stopped
    /// (`tests/fixtures/rabbitmq-3.10/alarms.json`).
    publish_blocked: bool,
    /// A queue this connection publishes to fell behind its consumers: the socket is not read
    /// until then (see [`FLOW_PAUSE`]).
    flow_until: Option<Instant>,
    cleaned: bool,
    /// Some channel holds acks of this read batch not yet applied (see `Channel::flush_acks`).
    acks_pending: bool,
    /// Some channel holds publishes of this read batch not yet pushed (see
    /// `Channel::flush_publishes`).
    publishes_pending: bool,
    /// The time of the input being handled (passed on to the broker).
    now: Now,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.info.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).unwrap_or_default()
}

/// A reply text as a short string: over 255 bytes it keeps the first 252 (at a character
/// boundary) and appends "...", as RabbitMQ does.
fn reply_text(s: &str) -> ShortStr {
    if s.len() <= 255 {
        return short(s);
    }
    let mut end = 252;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    short(&format!("{}...", &s[..end]))
}

/// Hashing for the channel table, looked up on every frame. Channel numbers are at most
/// channel_max (2047 by default), so a cheap multiplicative hash cannot be flooded the way a
/// peer could flood a table of arbitrary strings; SipHash cost more than the lookup.
type ChannelHash = std::hash::BuildHasherDefault<ChannelHasher>;

/// See [`ChannelHash`].
#[derive(Default)]
struct ChannelHasher(u64);

impl std::hash::Hasher for ChannelHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) | u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u16(&mut self, n: u16) {
        // Fibonacci hashing: spreads the number into the high bits hashbrown groups by.
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

impl Connection {
    /// A new connection; the peer speaks first (protocol header).
    pub fn new(broker: Broker, info: Arc<ConnectionInfo>, now: Now) -> Self {
        let frame_max = broker.limits().frame_max;
        Connection {
            broker,
            info,
            state: State::Header,
            out: Output::with_capacity(super::output::START_CAPACITY),
            frame_max,
            channel_max: 0,
            heartbeat: None,
            last_recv: now.mono,
            last_send: now.mono,
            // The handshake must finish within a bounded time (RabbitMQ: 10 s).
            close_deadline: Some(now.mono + Duration::from_secs(10)),
            channels: HashMap::default(),
            vhost: None,
            user: None,
            grant: None,
            admission: None,
            delayed_refusal: None,
            caps: ClientCaps::default(),
            mechanisms: Mechanisms::default(),
            flushed: 0,
            confirm_buf: Vec::new(),
            consumed: Consumed::default(),
            blocked: None,
            publish_blocked: false,
            flow_until: None,
            cleaned: false,
            acks_pending: false,
            publishes_pending: false,
            now,
        }
    }

    /// The login mechanisms to offer instead of PLAIN and AMQPLAIN; call before the first
    /// bytes are handled.
    pub fn with_mechanisms(mut self, mechanisms: Mechanisms) -> Self {
        self.mechanisms = mechanisms;
        self
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.info.id
    }

    /// Test view: the capacity of the vector channel `ch` keeps for deferred acks.
    #[cfg(test)]
    pub(crate) fn pending_acks_capacity(&self, ch: u16) -> Option<usize> {
        self.channels.get(&ch).map(|c| c.pending_acks_capacity())
    }

    /// True when the socket should be closed once the output is written.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// False while a resource alarm blocks this connection: the driver stops reading its
    /// socket, so TCP pushes back on the publisher (RabbitMQ's connection.blocked behaviour).
    pub fn wants_read(&self) -> bool {
        (!self.publish_blocked && self.flow_until.is_none()) || self.state == State::Draining
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes to write: encoded frames, with large bodies referenced in between as
    /// parts of their own (write them with vectored writes of many parts: see
    /// [`Transmit`]).
    pub fn take_output(&mut self, now: Now) -> Option<Transmit> {
        self.send_consumed();
        let t = self.out.take()?;
        self.last_send = now.mono;
        Some(t)
    }

    /// When [`Connection::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let hb = self
            .heartbeat
            .filter(|_| self.state == State::Running)
            .map(|hb| {
                // Send a heartbeat after half an interval of silence; give up after two intervals.
                (self.last_send + hb / 2).min(self.last_recv + hb * 2)
            });
        [
            hb,
            self.close_deadline,
            self.delayed_refusal.as_ref().map(|r| r.0),
            self.ack_deadline().map(|(at, _, _)| at),
            self.flow_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The earliest consumer acknowledgement deadline of the open channels: when, on which
    /// channel, and the timeout used (milliseconds).
    fn ack_deadline(&self) -> Option<(Instant, u16, u64)> {
        if self.state != State::Running {
            return None;
        }
        let default = self
            .broker
            .limits()
            .consumer_timeout
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.channels
            .iter()
            .filter(|(_, c)| !c.closing)
            .filter_map(|(&id, c)| c.ack_deadline(default).map(|(at, ms)| (at, id, ms)))
            .min()
    }

    /// Consumer acknowledgement timeouts: a channel whose oldest delivery is unacked past its
    /// timeout is closed with 406 and RabbitMQ's text (class and method 0), which requeues
    /// its unacked messages.
    fn check_ack_deadlines(&mut self, now: Now) {
        while let Some((at, id, ms)) = self.ack_deadline()
            && now.mono >= at
        {
            tracing::warn!(
                conn = self.info.id.0,
                channel = id,
                timeout_ms = ms,
                "consumer acknowledgement timed out"
            );
            let e = AmqpError::channel(
                id,
                ReplyCode::PreconditionFailed,
                format_args!(
                    "delivery acknowledgement on channel {id} timed out. Timeout value used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more"
                ),
            );
            self.raise(e, now);
        }
    }

    /// Answers `e` at `deadline` instead of now; input meanwhile is discarded.
    fn refuse_later(&mut self, e: AmqpError, deadline: Instant) {
        self.delayed_refusal = Some((deadline, e));
    }

    /// Time passed: heartbeats, dead peers, close and handshake deadlines.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        if let Some((d, _)) = &self.delayed_refusal
            && now.mono >= *d
            && let Some((_, e)) = self.delayed_refusal.take()
        {
            self.raise(e, now);
        }
        let now = now.mono;
        if self.flow_until.is_some_and(|d| now >= d) {
            self.flow_until = None;
        }
        if let Some(d) = self.close_deadline
            && now >= d
        {
            if self.state != State::Closed {
                tracing::info!(conn = self.info.id.0, state = ?self.state, "connection timed out in handshake or close");
            }
            self.finish();
            return;
        }
        if !self.wants_read() {
            // We are not reading: the peer's silence is ours.
            self.last_recv = now;
        }
        self.check_ack_deadlines(self.now);
        if let (State::Running, Some(hb)) = (self.state, self.heartbeat) {
            if now >= self.last_recv + hb * 2 {
                tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, "missed heartbeats from client, timeout: {}s", hb.as_secs());
                self.finish();
                return;
            }
            if now >= self.last_send + hb / 2 && self.out.is_empty() {
                encode_heartbeat(self.out.buf());
            }
        }
    }

    /// The store has flushed every write up to `flushed`: pending confirms may go out.
    pub fn handle_flushed(&mut self, flushed: u64) {
        self.flushed = self.flushed.max(flushed);
        self.emit_confirms();
    }

    /// The store write a pending confirm waits for, if it is not yet flushed.
    pub fn needs_flush(&self) -> Option<u64> {
        self.channels
            .values()
            .filter_map(|c| c.confirms.as_ref()?.needs_flush(self.flushed))
            .max()
    }

    /// Bytes from the socket: consumes every complete frame in `buf`.
    pub fn handle_bytes(&mut self, buf: &mut BytesMut, now: Now) {
        self.now = now;
        self.last_recv = now.mono;
        if self.state == State::Draining || self.delayed_refusal.is_some() {
            buf.clear();
            return;
        }
        if self.state == State::Header {
            match decode_protocol_header(buf) {
                Ok(None) => return,
                Ok(Some(())) => self.start(),
                Err(e) => {
                    tracing::info!(conn = self.info.id.0, peer = %self.info.peer, error = %e, "bad protocol header");
                    self.out.buf().extend_from_slice(PROTOCOL_HEADER);
                    buf.clear();
                    self.finish();
                    return;
                }
            }
        }
        while !matches!(self.state, State::Closed | State::Draining) {
            match decode(buf, self.frame_max) {
                Ok(Some(frame)) => {
                    if let Err(e) = self.handle_frame(frame, now) {
                        self.raise(e, now);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    buf.clear();
                    self.raise(AmqpError::from_frame(&e), now);
                    break;
                }
            }
        }
        if self.state == State::Draining {
            buf.clear();
        }
        self.flush_publishes();
        self.flush_acks();
        self.emit_confirms();
    }

    /// Applies the acks every channel deferred during this read batch; a store failure closes
    /// the connection (541).
    fn flush_acks(&mut self) {
        if std::mem::take(&mut self.acks_pending) {
            self.flush_channels(|ch, ctx| ch.flush_acks(ctx));
        }
    }

    /// Pushes the publishes every channel batched during this read batch; a store failure
    /// closes the connection (541).
    fn flush_publishes(&mut self) {
        if std::mem::take(&mut self.publishes_pending) {
            self.flush_channels(|ch, ctx| ch.flush_publishes(ctx));
        }
    }

    /// Runs `f` on every channel; the first error is raised.
    fn flush_channels(&mut self, f: impl Fn(&mut Channel, &mut Ctx<'_>) -> Result<(), AmqpError>) {
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        let mut failed = None;
        for id in ids {
            if let Some(Err(e)) = self.on_channel(id, &f) {
                failed.get_or_insert(e);
            }
        }
        if let Some(e) = failed {
            self.raise(e, self.now);
        }
    }

    /// A message from the broker (delivery, cancel notification, forced close).
    pub fn handle_outbound(&mut self, msg: Outbound, now: Now) {
        self.now = now;
        match msg {
            Outbound::Deliver(d) => {
                if self.state != State::Running || !self.channels.contains_key(&d.channel) {
                    if let Some(vh) = &self.vhost
                        && let Err(e) = vh.undeliver(d, now)
                    {
                        tracing::error!(conn = self.info.id.0, error = %e, "store failure taking back a delivery");
                    }
                    return;
                }
                let channel = d.channel;
                if let Some(Err(e)) = self.on_channel(channel, |ch, ctx| ch.deliver(ctx, d)) {
                    self.raise(e, now);
                }
            }
            Outbound::ConsumerCancelled {
                channel,
                consumer_tag,
            } => {
                if let Some(ch) = self.channels.get_mut(&channel)
                    && ch.consumer_cancelled(&consumer_tag)
                {
                    self.info.consumers_changed(-1);
                    if self.caps.consumer_cancel_notify
                        && !ch.closing
                        && self.state == State::Running
                    {
                        encode_method(
                            channel,
                            &BasicCancel {
                                consumer_tag,
                                no_wait: true,
                            }
                            .into(),
                            self.out.buf(),
                        );
                    }
                }
            }
            Outbound::Close { code, text } => {
                if matches!(
                    self.state,
                    State::Running | State::Open | State::TuneOk | State::StartOk
                ) {
                    self.raise(AmqpError::connection(code, text), now);
                }
            }
            Outbound::Reply {
                channel,
                consumer_tag,
                message,
                transit,
            } => {
                transit.release(1);
                if self.state == State::Running {
                    self.on_channel(channel, |ch, ctx| {
                        ch.deliver_reply(ctx, consumer_tag, &message);
                    });
                }
            }
            Outbound::Consumed { to, tags } => {
                if let Some(c) = self
                    .channels
                    .get_mut(&to.channel)
                    .and_then(|ch| ch.confirms.as_mut())
                    && c.consumed(&to, &tags)
                {
                    self.emit_confirms();
                }
            }
            Outbound::Blocked(reason) => {
                // A second alarm or one of two clearing changes nothing on the wire; the last
                // one clearing unblocks.
                if reason.is_none() && self.publish_blocked {
                    self.publish_blocked = false;
                    if self.caps.connection_blocked && self.state == State::Running {
                        encode_method(0, &ConnectionUnblocked.into(), self.out.buf());
                    }
                }
                self.blocked = reason;
            }
        }
    }

    /// Sends the confirms this connection's consumers released to their publishers.
    fn send_consumed(&mut self) {
        std::mem::take(&mut self.consumed).send();
    }

    /// A publish arrived: under an alarm, block this connection (once) and tell the client.
    fn block_publisher(&mut self) {
        if self.publish_blocked {
            return;
        }
        // The broker's own state too (one atomic load while no alarm is set): a publish right
        // after an alarm was raised is blocked even while the mailbox notice is still queued.
        let Some(reason) = self
            .blocked
            .clone()
            .or_else(|| self.broker.blocked_reason())
        else {
            return;
        };
        self.publish_blocked = true;
        if self.caps.connection_blocked {
            let m = ConnectionBlocked {
                reason: short(&reason),
            };
            encode_method(0, &m.into(), self.out.buf());
        }
    }

    /// Closes the connection from our side (shutdown, management): connection.close `code`.
    pub fn close(&mut self, code: ReplyCode, text: &str, now: Now) {
        self.handle_outbound(
            Outbound::Close {
                code,
                text: text.to_string(),
            },
            now,
        );
    }

    /// Reports an error to the peer: channel.close or connection.close.
    fn raise(&mut self, e: AmqpError, now: Now) {
        match e.scope {
            Scope::Channel(id) if self.channels.contains_key(&id) => {
                tracing::warn!(conn = self.info.id.0, channel = id, code = e.code.code(), text = %e.text, "channel error");
                let m = ChannelClose {
                    reply_code: e.code.code(),
                    reply_text: reply_text(&e.text),
                    class_id: e.class_id,
                    method_id: e.method_id,
                };
                encode_method(id, &m.into(), self.out.buf());
                if let Err(e) = self.cleanup_channel(id, true) {
                    self.raise(e, now);
                }
            }
            _ => {
                if matches!(self.state, State::Closing | State::Draining | State::Closed) {
                    return;
                }
                if e.code == ReplyCode::ConnectionForced {
                    tracing::info!(conn = self.info.id.0, peer = %self.info.peer, text = %e.text, "closing connection");
                } else {
                    tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, user = %self.user_name(), vhost = %self.vhost_name(), code = e.code.code(), text = %e.text, "connection error; closing");
                }
                let m = ConnectionClose {
                    reply_code: e.code.code(),
                    reply_text: reply_text(&e.text),
                    class_id: e.class_id,
                    method_id: e.method_id,
                };
                encode_method(0, &m.into(), self.out.buf());
                self.cleanup_all();
                self.state = State::Closing;
                self.close_deadline = Some(now.mono + CLOSE_TIMEOUT);
            }
        }
    }

    fn handle_frame(&mut self, frame: Frame, now: Now) -> Result<(), AmqpError> {
        match self.state {
            State::Running => self.running(frame, now),
            State::Closing => {
                match frame {
                    Frame::Method {
                        channel: 0,
                        method: Method::ConnectionCloseOk(_),
                    } => self.finish(),
                    Frame::Method {
                        channel: 0,
                        method: Method::ConnectionClose(_),
                    } => self.close_ok(now),
                    _ => {}
                }
                Ok(())
            }
            State::StartOk | State::TuneOk | State::Open => self.handshake(frame, now),
            State::Header | State::Draining | State::Closed => Ok(()),
        }
    }

    /// Answers the client's connection.close: close-ok, then wait for the client to close.
    fn close_ok(&mut self, now: Now) {
        self.release();
        encode_method(0, &ConnectionCloseOk.into(), self.out.buf());
        self.drain(now.mono + CLOSE_TIMEOUT);
    }

    /// Discards input from now on and closes the socket when the peer does or at `deadline`.
    fn drain(&mut self, deadline: Instant) {
        self.state = State::Draining;
        self.close_deadline = Some(deadline);
    }

    /// Runs `f` on a channel with a context borrowed from the connection; `None` when the
    /// connection is not open or the channel does not exist.
    fn on_channel<R>(
        &mut self,
        channel: u16,
        f: impl FnOnce(&mut Channel, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        if let Some(g) = self.grant.as_mut() {
            // A changed permission applies from this operation on.
            self.broker.access().refresh(g);
        }
        // Disjoint fields borrowed apart: no reference count is touched per frame.
        let vhost = self.vhost.as_ref()?;
        let grant = self.grant.as_deref()?;
        let ch = self.channels.get_mut(&channel)?;
        let mut ctx = Ctx {
            vhost,
            conn: self.info.id,
            mailbox: &self.info.mailbox,
            info: &self.info,
            out: &mut self.out,
            frame_max: self.frame_max,
            user: self.user.as_ref().map_or("", |u| u.name.as_str()),
            grant,
            now: self.now,
            flow: false,
            batched: false,
            consumed: &mut self.consumed,
        };
        let r = f(ch, &mut ctx);
        self.publishes_pending |= ctx.batched;
        if ctx.flow && self.flow_until.is_none() {
            self.flow_until = Some(self.now.mono + FLOW_PAUSE);
            self.info
                .flow_pauses
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.info
                .flow_at_ms
                .store(self.now.unix_ms, std::sync::atomic::Ordering::Relaxed);
        }
        Some(r)
    }

    /// [`Connection::on_channel`] for methods: a missing channel is a connection error.
    fn with_channel<R>(
        &mut self,
        channel: u16,
        f: impl FnOnce(&mut Channel, &mut Ctx<'_>) -> Result<R, AmqpError>,
    ) -> Result<R, AmqpError> {
        self.on_channel(channel, f).unwrap_or_else(|| {
            Err(AmqpError::connection(
                ReplyCode::ChannelError,
                "expected 'channel.open'",
            ))
        })
    }

    /// Sends the confirms whose writes are flushed.
    fn emit_confirms(&mut self) {
        if self.state != State::Running {
            return;
        }
        let flushed = self.flushed.max(self.broker.commit().flushed());
        self.flushed = flushed;
        let mut confirmed = 0u64;
        for (id, ch) in self.channels.iter_mut() {
            // A channel we closed says nothing more (no ack or nack of the publish that
            // closed it), as in RabbitMQ: a client drops a closed channel's id at close-ok.
            if ch.closing {
                continue;
            }
            let Some(c) = ch.confirms.as_mut().filter(|c| !c.is_idle()) else {
                continue;
            };
            self.confirm_buf.clear();
            c.take_ready(flushed, &mut self.confirm_buf);
            for cf in &self.confirm_buf {
                let m: Method = if cf.nack {
                    BasicNack {
                        delivery_tag: cf.tag,
                        multiple: cf.multiple,
                        requeue: false,
                    }
                    .into()
                } else {
                    BasicAck {
                        delivery_tag: cf.tag,
                        multiple: cf.multiple,
                    }
                    .into()
                };
                encode_method(*id, &m, self.out.buf());
                confirmed += 1;
            }
        }
        if confirmed > 0 {
            self.broker
                .stats()
                .confirmed
                .fetch_add(confirmed, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Releases what a channel holds; a store failure meanwhile is returned (541).
    fn cleanup_channel(&mut self, id: u16, keep_closing: bool) -> Result<(), AmqpError> {
        let Some(result) = self.on_channel(id, |ch, ctx| ch.cleanup(ctx)) else {
            return Ok(());
        };
        if keep_closing {
            if let Some(ch) = self.channels.get_mut(&id) {
                ch.closing = true;
            }
        } else {
            self.channels.remove(&id);
        }
        self.info.channel_changed(id, false);
        result
    }

    fn cleanup_all(&mut self) {
        let ids: Vec<u16> = self
            .channels
            .iter()
            .filter(|(_, c)| !c.closing)
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            // The connection is going: store failures were logged where they happened.
            let _ = self.cleanup_channel(id, false);
        }
        self.channels.clear();
        if let Some(vh) = &self.vhost
            && let Err(e) = vh.drop_exclusive(self.info.id)
        {
            tracing::error!(conn = self.info.id.0, error = %e, "deleting exclusive queues failed");
        }
    }

    /// Ends the connection: releases everything it holds. Idempotent.
    fn finish(&mut self) {
        self.state = State::Closed;
        self.close_deadline = None;
        self.release();
    }

    /// Releases the channels, exclusive queues and the broker's record of this connection,
    /// once; the socket may stay open a little longer (see the module docs).
    fn release(&mut self) {
        if !self.cleaned {
            self.cleaned = true;
            self.cleanup_all();
            self.broker.unregister_connection(self.info.id);
            self.admission = None;
        }
    }

    fn user_name(&self) -> &str {
        self.user.as_ref().map_or("", |u| u.name.as_str())
    }

    fn vhost_name(&self) -> &str {
        self.vhost.as_ref().map_or("", |v| &v.name)
    }

    /// The socket ended (peer closed, IO error): release everything.
    pub fn handle_disconnect(&mut self) {
        self.send_consumed();
        if !matches!(self.state, State::Closed | State::Draining) {
            tracing::info!(
                conn = self.info.id.0,
                peer = %self.info.peer,
                user = %self.user_name(),
                vhost = %self.vhost_name(),
                "connection closed: client went away without connection.close"
            );
        }
        self.finish();
    }

    /// Deliveries and consumers, for tests and management.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Unacked deliveries on a channel (tests).
    pub fn unacked(&self, channel: u16) -> usize {
        self.channels.get(&channel).map_or(0, |c| c.unacked_count())
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.finish();
    }
}

/// RabbitMQ's answer to a content frame where a method frame belongs (no publish in progress,
/// or a channel that is not open).
fn expected_method_frame() -> AmqpError {
    AmqpError::connection(
        ReplyCode::UnexpectedFrame,
        "expected method frame, got non method frame instead",
    )
}

#[cfg(test)]
mod text_tests {
    use super::reply_text;

    #[test]
    fn long_reply_texts_are_cut_like_rabbitmq() {
        let long = format!("NOT_FOUND - {}", "é".repeat(200));
        let t = reply_text(&long);
        assert!(t.len() <= 255);
        assert!(t.as_str().ends_with("..."));
        assert_eq!(reply_text("short").as_str(), "short");
    }
}
