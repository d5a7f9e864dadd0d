//! The AMQP connection state machine, sans-IO: bytes and mailbox messages in, bytes out, time
//! passed in. The driver (`server::connection`) owns the socket and calls, in any order:
//!
//! - inputs: [`Connection::handle_bytes`], [`Connection::handle_outbound`],
//!   [`Connection::handle_timeout`], [`Connection::handle_flushed`];
//! - outputs: [`Connection::take_output`] (bytes to write), [`Connection::poll_timeout`] (when
//!   to call `handle_timeout`), [`Connection::needs_flush`] (a store flush to wait for before
//!   confirms can go out), [`Connection::is_closed`] (write what is left, then close the socket).
//!
//! Handshake: protocol header, start / start-ok (PLAIN or AMQPLAIN), tune / tune-ok, open /
//! open-ok. After a connection.close is sent, everything but close and close-ok is discarded.

use crate::broker::{Broker, ConnId, ConnectionInfo, Mailbox, Now, Outbound, User, VHost};
use crate::protocol::ReplyCode;
use crate::protocol::frame::{
    ContentHeader, FRAME_MIN_SIZE, Frame, PROTOCOL_HEADER, decode, decode_protocol_header,
    encode_heartbeat, encode_method,
};
use crate::protocol::method::*;
use crate::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr, decode_table};
use bytes::{BufMut, BytesMut};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::channel::{Channel, open_ok};
use super::confirms::Confirm;
use super::error::{AmqpError, Scope};
use super::output::{Output, Transmit};

/// How long we wait for the peer's close-ok before giving up on it.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the session hands to channel handlers.
pub(crate) struct Ctx<'a> {
    pub(crate) vhost: &'a Arc<VHost>,
    pub(crate) conn: ConnId,
    pub(crate) mailbox: &'a Mailbox,
    pub(crate) info: &'a ConnectionInfo,
    pub(crate) out: &'a mut Output,
    pub(crate) frame_max: u32,
    pub(crate) user: &'a str,
    /// The time of the input being handled.
    pub(crate) now: Now,
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
    Closing,
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
    caps: ClientCaps,
    flushed: u64,
    confirm_buf: Vec<Confirm>,
    blocked: Option<String>,
    /// Set once the client publishes: only publishers are blocked by the memory alarm.
    has_published: bool,
    cleaned: bool,
    /// Some channel holds acks of this read batch not yet applied (see `Channel::flush_acks`).
    acks_pending: bool,
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

fn key(s: &'static str) -> ShortStr {
    ShortStr::from_static(s)
}

fn text(s: &str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(s))
}

/// The server-properties table of connection.start.
fn server_properties() -> FieldTable {
    let caps = FieldTable(vec![
        (key("publisher_confirms"), FieldValue::Bool(true)),
        (key("exchange_exchange_bindings"), FieldValue::Bool(true)),
        (key("basic.nack"), FieldValue::Bool(true)),
        (key("consumer_cancel_notify"), FieldValue::Bool(true)),
        (key("connection.blocked"), FieldValue::Bool(true)),
        (key("authentication_failure_close"), FieldValue::Bool(true)),
        (key("per_consumer_qos"), FieldValue::Bool(true)),
        (key("direct_reply_to"), FieldValue::Bool(false)),
    ]);
    FieldTable(vec![
        (key("product"), text("Lagomorph")),
        (key("version"), text(env!("CARGO_PKG_VERSION"))),
        (key("platform"), text("Rust")),
        (key("cluster_name"), text("lagomorph")),
        (key("copyright"), text("Lagomorph contributors")),
        (
            key("information"),
            text("Licensed under the Apache License 2.0"),
        ),
        (key("capabilities"), FieldValue::Table(caps)),
    ])
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
            out: Output::with_capacity(16 * 1024),
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
            caps: ClientCaps::default(),
            flushed: 0,
            confirm_buf: Vec::new(),
            blocked: None,
            has_published: false,
            cleaned: false,
            acks_pending: false,
            now,
        }
    }

    /// This connection's id.
    pub fn id(&self) -> ConnId {
        self.info.id
    }

    /// True when the socket should be closed once the output is written.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// False while the memory alarm blocks this connection: the driver stops reading its
    /// socket, so TCP pushes back on the publisher (RabbitMQ's connection.blocked behaviour).
    pub fn wants_read(&self) -> bool {
        self.blocked.is_none() || !self.has_published
    }

    /// Bytes waiting to be written.
    pub fn pending_output(&self) -> usize {
        self.out.len()
    }

    /// Takes the bytes to write: encoded frames, with large bodies referenced in between as
    /// parts of their own (write them with vectored writes of many parts: see
    /// [`Transmit`]).
    pub fn take_output(&mut self, now: Now) -> Option<Transmit> {
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
        match (hb, self.close_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Time passed: heartbeats, dead peers, close and handshake deadlines.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        let now = now.mono;
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
        while self.state != State::Closed {
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
        self.flush_acks();
        self.emit_confirms();
    }

    /// Applies the acks every channel deferred during this read batch; a store failure closes
    /// the connection (541).
    fn flush_acks(&mut self) {
        if !std::mem::take(&mut self.acks_pending) {
            return;
        }
        let ids: Vec<u16> = self.channels.keys().copied().collect();
        let mut failed = None;
        for id in ids {
            if let Some(Err(e)) = self.on_channel(id, |ch, ctx| ch.flush_acks(ctx)) {
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
            Outbound::Blocked(reason) => {
                if self.caps.connection_blocked
                    && self.state == State::Running
                    && self.blocked != reason
                {
                    let m: Method = match &reason {
                        Some(r) => ConnectionBlocked { reason: short(r) }.into(),
                        None => ConnectionUnblocked.into(),
                    };
                    encode_method(0, &m, self.out.buf());
                }
                self.blocked = reason;
            }
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

    fn start(&mut self) {
        let m = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongStr::from("PLAIN AMQPLAIN"),
            locales: LongStr::from("en_US"),
        };
        encode_method(0, &m.into(), self.out.buf());
        self.state = State::StartOk;
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
                if matches!(self.state, State::Closing | State::Closed) {
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
                        method: Method::ConnectionCloseOk(_),
                        ..
                    } => self.finish(),
                    Frame::Method {
                        method: Method::ConnectionClose(_),
                        ..
                    } => {
                        encode_method(0, &ConnectionCloseOk.into(), self.out.buf());
                        self.finish();
                    }
                    _ => {}
                }
                Ok(())
            }
            State::StartOk | State::TuneOk | State::Open => self.handshake(frame, now),
            State::Header | State::Closed => Ok(()),
        }
    }

    fn handshake(&mut self, frame: Frame, _now: Now) -> Result<(), AmqpError> {
        let Frame::Method { channel: 0, method } = frame else {
            if matches!(frame, Frame::Heartbeat) {
                return Ok(());
            }
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                "expected a connection method on channel 0",
            ));
        };
        match (self.state, method) {
            (State::StartOk, Method::ConnectionStartOk(m)) => self.start_ok(m),
            (State::TuneOk, Method::ConnectionTuneOk(m)) => self.tune_ok(m),
            (State::Open, Method::ConnectionOpen(m)) => self.open(m),
            (_, Method::ConnectionClose(_)) => {
                encode_method(0, &ConnectionCloseOk.into(), self.out.buf());
                self.finish();
                Ok(())
            }
            (state, m) => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("unexpected {} during handshake ({state:?})", m.name()),
            )
            .on(m.class_id(), m.method_id())),
        }
    }

    fn start_ok(&mut self, m: ConnectionStartOk) -> Result<(), AmqpError> {
        if let Some(FieldValue::Table(caps)) = m.client_properties.get("capabilities") {
            let flag = |k: &str| caps.get(k).and_then(FieldValue::as_bool).unwrap_or(false);
            self.caps = ClientCaps {
                consumer_cancel_notify: flag("consumer_cancel_notify"),
                connection_blocked: flag("connection.blocked"),
            };
        }
        let refused = || {
            AmqpError::connection(
                ReplyCode::AccessRefused,
                format_args!(
                    "Login was refused using authentication mechanism {}. For details see the broker logfile.",
                    m.mechanism
                ),
            )
            .on(10, 11)
        };
        let (user, pass) = match m.mechanism.as_str() {
            "PLAIN" => {
                // authzid \0 authcid \0 password
                let mut parts = m.response.as_bytes().split(|&b| b == 0);
                let (_, u, p) = (parts.next(), parts.next(), parts.next());
                match (u.map(std::str::from_utf8), p.map(std::str::from_utf8)) {
                    (Some(Ok(u)), Some(Ok(p))) => (u.to_string(), p.to_string()),
                    _ => return Err(refused()),
                }
            }
            "AMQPLAIN" => {
                // A field table without its length prefix.
                let mut b = BytesMut::with_capacity(m.response.len() + 4);
                b.put_u32(u32::try_from(m.response.len()).unwrap_or(u32::MAX));
                b.extend_from_slice(m.response.as_bytes());
                let t = decode_table(&b.freeze()).map_err(|_| refused())?;
                let get = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
                match (get("LOGIN"), get("PASSWORD")) {
                    (Some(u), Some(p)) => (u, p),
                    _ => return Err(refused()),
                }
            }
            other => {
                return Err(AmqpError::connection(
                    ReplyCode::CommandInvalid,
                    format_args!("unknown authentication mechanism '{other}'"),
                ));
            }
        };
        let Some(u) = self.broker.authenticate(&user, &pass) else {
            tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, user = %user, "login refused: bad credentials");
            return Err(refused());
        };
        if u.name == "guest" && !self.info.peer.ip().is_loopback() {
            tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, "login refused: user 'guest' can only connect via localhost");
            return Err(refused());
        }
        *self.info.user.write().unwrap_or_else(|e| e.into_inner()) = u.name.clone();
        self.user = Some(u);
        let l = self.broker.limits();
        let m = ConnectionTune {
            channel_max: l.channel_max,
            frame_max: l.frame_max,
            heartbeat: l.heartbeat,
        };
        encode_method(0, &m.into(), self.out.buf());
        self.state = State::TuneOk;
        Ok(())
    }

    fn tune_ok(&mut self, m: ConnectionTuneOk) -> Result<(), AmqpError> {
        let l = self.broker.limits();
        let frame_max = if m.frame_max == 0 {
            l.frame_max
        } else {
            m.frame_max.min(l.frame_max)
        };
        if frame_max < FRAME_MIN_SIZE {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("frame_max={} < {} min size", m.frame_max, FRAME_MIN_SIZE),
            )
            .on(10, 31));
        }
        self.frame_max = frame_max;
        self.channel_max = if m.channel_max == 0 {
            l.channel_max
        } else {
            m.channel_max.min(l.channel_max)
        };
        self.heartbeat = (m.heartbeat > 0).then(|| Duration::from_secs(u64::from(m.heartbeat)));
        self.state = State::Open;
        Ok(())
    }

    fn open(&mut self, m: ConnectionOpen) -> Result<(), AmqpError> {
        let Some(vh) = self.broker.vhost(&m.virtual_host) else {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("vhost {} not found", m.virtual_host),
            )
            .on(10, 40));
        };
        *self.info.vhost.write().unwrap_or_else(|e| e.into_inner()) = vh.name.to_string();
        tracing::info!(
            conn = self.info.id.0,
            peer = %self.info.peer,
            user = %self.user.as_ref().map_or("", |u| u.name.as_str()),
            vhost = %vh.name,
            "connection open"
        );
        self.vhost = Some(vh);
        if self.broker.memory_alarm() {
            self.blocked = Some(crate::broker::MEMORY_ALARM_REASON.to_string());
        }
        encode_method(0, &ConnectionOpenOk::default().into(), self.out.buf());
        self.state = State::Running;
        self.close_deadline = None;
        if let Some(r) = self
            .blocked
            .clone()
            .filter(|_| self.caps.connection_blocked)
        {
            encode_method(
                0,
                &ConnectionBlocked { reason: short(&r) }.into(),
                self.out.buf(),
            );
        }
        Ok(())
    }

    fn running(&mut self, frame: Frame, _now: Now) -> Result<(), AmqpError> {
        let is_ack = matches!(
            &frame,
            Frame::Method {
                method: Method::BasicAck(_),
                ..
            }
        );
        if is_ack {
            self.acks_pending = true;
        } else {
            // Whatever else the client sends sees every earlier ack applied.
            self.flush_acks();
        }
        match frame {
            Frame::Heartbeat => Ok(()),
            Frame::Method { channel: 0, method } => self.connection_method(method),
            Frame::Method { channel, method } => self.channel_method(channel, method),
            Frame::Header { channel, header } => {
                self.has_published = true;
                self.content_header(channel, header)
            }
            Frame::Body { channel, payload } => {
                let Some(ch) = self.channels.get_mut(&channel) else {
                    return Err(AmqpError::connection(
                        ReplyCode::ChannelError,
                        "expected 'channel.open'",
                    ));
                };
                if ch.closing {
                    return Ok(());
                }
                match ch.assembler.body(payload)? {
                    Some(p) => self.with_channel(channel, |ch, ctx| ch.publish(ctx, p)),
                    None => Ok(()),
                }
            }
        }
    }

    fn connection_method(&mut self, method: Method) -> Result<(), AmqpError> {
        match method {
            Method::ConnectionClose(m) => {
                tracing::info!(
                    conn = self.info.id.0,
                    peer = %self.info.peer,
                    user = %self.user_name(),
                    vhost = %self.vhost_name(),
                    code = m.reply_code,
                    text = %m.reply_text,
                    "connection closed by client"
                );
                self.cleanup_all();
                encode_method(0, &ConnectionCloseOk.into(), self.out.buf());
                self.finish();
                Ok(())
            }
            Method::ConnectionCloseOk(_) => Ok(()),
            Method::ConnectionUpdateSecret(_) => {
                encode_method(0, &ConnectionUpdateSecretOk.into(), self.out.buf());
                Ok(())
            }
            m => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("unexpected {} on channel 0", m.name()),
            )
            .on(m.class_id(), m.method_id())),
        }
    }

    fn channel_method(&mut self, channel: u16, method: Method) -> Result<(), AmqpError> {
        let (class, mid) = (method.class_id(), method.method_id());
        match method {
            Method::ChannelOpen(_) => {
                if channel > self.channel_max {
                    return Err(AmqpError::connection(
                        ReplyCode::NotAllowed,
                        format_args!(
                            "channel number {channel} exceeds the negotiated channel_max {}",
                            self.channel_max
                        ),
                    )
                    .on(class, mid));
                }
                if self.channels.contains_key(&channel) {
                    return Err(AmqpError::connection(
                        ReplyCode::ChannelError,
                        "second 'channel.open' seen",
                    )
                    .on(class, mid));
                }
                self.channels.insert(channel, Channel::new(channel));
                self.info.channel_changed(channel, true);
                encode_method(channel, &open_ok(), self.out.buf());
                return Ok(());
            }
            Method::ChannelClose(_) => {
                if !self.channels.contains_key(&channel) {
                    return Err(AmqpError::connection(
                        ReplyCode::ChannelError,
                        "expected 'channel.open'",
                    )
                    .on(class, mid));
                }
                let cleaned = self.cleanup_channel(channel, false);
                encode_method(channel, &ChannelCloseOk.into(), self.out.buf());
                return cleaned;
            }
            Method::ChannelCloseOk(_) => {
                if self.channels.get(&channel).is_some_and(|c| c.closing) {
                    self.channels.remove(&channel);
                }
                return Ok(());
            }
            _ => {}
        }
        let Some(ch) = self.channels.get(&channel) else {
            return Err(
                AmqpError::connection(ReplyCode::ChannelError, "expected 'channel.open'")
                    .on(class, mid),
            );
        };
        if ch.closing {
            return Ok(());
        }
        if !ch.assembler.is_idle() {
            return Err(AmqpError::connection(
                ReplyCode::UnexpectedFrame,
                "expected content header for class 60, got non content header frame instead",
            )
            .on(class, mid));
        }
        if class == 10 {
            return Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("connection method on channel {channel}"),
            )
            .on(class, mid));
        }
        self.with_channel(channel, |ch, ctx| ch.handle_method(ctx, method))
    }

    fn content_header(&mut self, channel: u16, header: ContentHeader) -> Result<(), AmqpError> {
        let max = u64::from(self.broker.limits().max_message_size);
        let Some(ch) = self.channels.get_mut(&channel) else {
            return Err(AmqpError::connection(
                ReplyCode::ChannelError,
                "expected 'channel.open'",
            ));
        };
        if ch.closing {
            return Ok(());
        }
        let size = header.body_size;
        if size > max && !ch.assembler.is_idle() {
            ch.assembler.reset();
            return Err(AmqpError::channel(
                channel,
                ReplyCode::PreconditionFailed,
                format_args!("message size {size} is larger than configured max size {max}"),
            )
            .on(60, 40));
        }
        match ch.assembler.header(header)? {
            Some(p) => self.with_channel(channel, |ch, ctx| ch.publish(ctx, p)),
            None => Ok(()),
        }
    }

    /// Runs `f` on a channel with a context borrowed from the connection; `None` when the
    /// connection is not open or the channel does not exist.
    fn on_channel<R>(
        &mut self,
        channel: u16,
        f: impl FnOnce(&mut Channel, &mut Ctx<'_>) -> R,
    ) -> Option<R> {
        let vhost = self.vhost.clone()?;
        let ch = self.channels.get_mut(&channel)?;
        let mut ctx = Ctx {
            vhost: &vhost,
            conn: self.info.id,
            mailbox: &self.info.mailbox,
            info: &self.info,
            out: &mut self.out,
            frame_max: self.frame_max,
            user: self.user.as_ref().map_or("", |u| u.name.as_str()),
            now: self.now,
        };
        Some(f(ch, &mut ctx))
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
        if !self.cleaned {
            self.cleaned = true;
            self.cleanup_all();
            self.broker.unregister_connection(self.info.id);
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
        if self.state != State::Closed {
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
