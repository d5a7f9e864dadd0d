//! The connection handshake: protocol header answered with connection.start, then start-ok
//! (PLAIN, AMQPLAIN or EXTERNAL login), tune / tune-ok (limits checked as RabbitMQ checks them)
//! and open / open-ok. A child of `connection`, whose state it moves forward.
//!
//! Which mechanisms are offered is the driver's [`Mechanisms`]: EXTERNAL is a name the
//! transport vouches for (a verified TLS client certificate), which the session only maps to a
//! user through the access model; it knows nothing of TLS.
//!
//! A failed login is answered (403, RabbitMQ's text) only after the access model's delay, so
//! a client guessing passwords gets no fast oracle: the refusal waits as a deadline that
//! [`Connection::poll_timeout`] reports, and other connections are not held up.
//! connection.open checks, in RabbitMQ's order, the vhost's and the user's connection limits
//! and the user's permission in the vhost (530), and compiles the connection's
//! [`crate::broker::Grant`].

use super::{ClientCaps, Connection, SILENT_CLOSE_DELAY, State};
use crate::broker::access::LoginError;
use crate::broker::{Now, User};
use crate::protocol::ReplyCode;
use crate::protocol::frame::{FRAME_MIN_SIZE, Frame, encode_method};
use crate::protocol::method::*;
use crate::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr, decode_table};
use crate::session::error::AmqpError;
use bytes::{BufMut, BytesMut};
use std::time::Duration;

/// The SASL mechanisms a connection offers in connection.start, set by the driver from the
/// configuration and the transport.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mechanisms {
    /// PLAIN (user and password).
    pub plain: bool,
    /// AMQPLAIN (user and password in a field table).
    pub amqplain: bool,
    /// EXTERNAL (RabbitMQ's `rabbit_auth_mechanism_ssl`): offered when `Some`, which the driver
    /// sets on TLS connections when EXTERNAL is configured, with the user name the verified
    /// client certificate maps to, or why there is none (logged; the client gets RabbitMQ's
    /// refusal). RabbitMQ offers it on every TLS connection, with or without a certificate.
    pub external: Option<Result<String, String>>,
}

impl Default for Mechanisms {
    /// PLAIN and AMQPLAIN, RabbitMQ's default `auth_mechanisms`.
    fn default() -> Self {
        Mechanisms {
            plain: true,
            amqplain: true,
            external: None,
        }
    }
}

impl Mechanisms {
    /// The mechanisms field of connection.start, in RabbitMQ 3.10's order (recorded in
    /// `tests/fixtures/rabbitmq-3.10/tls.json`): `EXTERNAL AMQPLAIN PLAIN`.
    fn offered(&self) -> String {
        let names = [
            (self.external.is_some(), "EXTERNAL"),
            (self.amqplain, "AMQPLAIN"),
            (self.plain, "PLAIN"),
        ];
        let on: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        on.join(" ")
    }
}

impl Connection {
    pub(super) fn start(&mut self) {
        let m = ConnectionStart {
            version_major: 0,
            version_minor: 9,
            server_properties: server_properties(),
            mechanisms: LongStr::from(self.mechanisms.offered().as_str()),
            locales: LongStr::from("en_US"),
        };
        encode_method(0, &m.into(), self.out.buf());
        self.state = State::StartOk;
    }

    pub(super) fn handshake(&mut self, frame: Frame, now: Now) -> Result<(), AmqpError> {
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
            (State::StartOk, Method::ConnectionStartOk(m)) => self.start_ok(m, now),
            (State::TuneOk, Method::ConnectionTuneOk(m)) => {
                self.tune_ok(m, now);
                Ok(())
            }
            (State::Open, Method::ConnectionOpen(m)) => self.open(m),
            (_, Method::ConnectionClose(_)) => {
                self.close_ok(now);
                Ok(())
            }
            (state, m) => Err(AmqpError::connection(
                ReplyCode::CommandInvalid,
                format_args!("unexpected {} during handshake ({state:?})", m.name()),
            )
            .on(m.class_id(), m.method_id())),
        }
    }

    fn start_ok(&mut self, m: ConnectionStartOk, now: Now) -> Result<(), AmqpError> {
        *self
            .info
            .client_properties
            .write()
            .unwrap_or_else(|e| e.into_inner()) = m.client_properties.detached();
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
        let access = self.broker.access();
        let loopback = self.info.peer.ip().is_loopback();
        let (user, result) = match m.mechanism.as_str() {
            "EXTERNAL" if self.mechanisms.external.is_some() => match self.external_name() {
                Some(name) => (name.clone(), access.authenticate_external(&name, loopback)),
                None => (String::new(), Err(LoginError::BadCredentials)),
            },
            "PLAIN" if self.mechanisms.plain => {
                // authzid \0 authcid \0 password
                let mut parts = m.response.as_bytes().split(|&b| b == 0);
                let (_, u, p) = (parts.next(), parts.next(), parts.next());
                match (u.map(std::str::from_utf8), p.map(std::str::from_utf8)) {
                    (Some(Ok(u)), Some(Ok(p))) => {
                        (u.to_string(), access.authenticate(u, p, loopback))
                    }
                    _ => return Err(refused()),
                }
            }
            "AMQPLAIN" if self.mechanisms.amqplain => {
                // A field table without its length prefix.
                let mut b = BytesMut::with_capacity(m.response.len() + 4);
                b.put_u32(u32::try_from(m.response.len()).unwrap_or(u32::MAX));
                b.extend_from_slice(m.response.as_bytes());
                let t = decode_table(&b.freeze()).map_err(|_| refused())?;
                let get = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
                match (get("LOGIN"), get("PASSWORD")) {
                    (Some(u), Some(p)) => {
                        let r = access.authenticate(&u, &p, loopback);
                        (u, r)
                    }
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
        let u = match result {
            Ok(u) => u,
            Err(why) => {
                match why {
                    LoginError::BadCredentials => {
                        tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, user = %user, mechanism = %m.mechanism, "login refused: bad credentials")
                    }
                    LoginError::LoopbackOnly => {
                        tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, "login refused: user '{user}' can only connect via localhost")
                    }
                }
                self.refuse_later(refused(), now.mono + access.failed_login_delay());
                return Ok(());
            }
        };
        let mechanism = match m.mechanism.as_str() {
            "EXTERNAL" => "EXTERNAL",
            "AMQPLAIN" => "AMQPLAIN",
            _ => "PLAIN",
        };
        let _ = self.info.auth_mechanism.set(mechanism);
        self.logged_in(u);
        Ok(())
    }

    /// EXTERNAL: the user name the transport's verified peer certificate gives; `None` (refused)
    /// without a certificate or when no name could be read from it, as RabbitMQ.
    fn external_name(&self) -> Option<String> {
        match &self.mechanisms.external {
            Some(Ok(name)) => Some(name.clone()),
            Some(Err(why)) => {
                tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, reason = %why, "EXTERNAL login refused");
                None
            }
            None => None,
        }
    }

    /// A login succeeded: connection.tune.
    fn logged_in(&mut self, u: User) {
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
    }

    /// connection.tune-ok: the client's values must be within ours, as RabbitMQ checks them
    /// (`rabbit_reader:validate_negotiated_integer_value`); 0 means "no limit", which is above
    /// any limit we offered. A refusal closes the socket silently (see the module docs).
    fn tune_ok(&mut self, m: ConnectionTuneOk, now: Now) {
        let l = self.broker.limits();
        let refusal = negotiation_error("frame_max", FRAME_MIN_SIZE, l.frame_max, m.frame_max)
            .or_else(|| {
                negotiation_error(
                    "channel_max",
                    1,
                    u32::from(l.channel_max),
                    u32::from(m.channel_max),
                )
            });
        if let Some(why) = refusal {
            tracing::warn!(conn = self.info.id.0, peer = %self.info.peer, reason = %why, "handshake error in connection.tune-ok; closing the socket silently");
            self.release();
            self.drain(now.mono + SILENT_CLOSE_DELAY);
            return;
        }
        self.frame_max = m.frame_max;
        self.channel_max = m.channel_max;
        self.heartbeat = (m.heartbeat > 0).then(|| Duration::from_secs(u64::from(m.heartbeat)));
        self.state = State::Open;
    }

    fn open(&mut self, m: ConnectionOpen) -> Result<(), AmqpError> {
        let Some(vh) = self.broker.vhost(&m.virtual_host) else {
            return Err(AmqpError::connection(
                ReplyCode::NotAllowed,
                format_args!("vhost {} not found", m.virtual_host),
            )
            .on(10, 40));
        };
        let user = self.user.as_ref().map_or("", |u| u.name.as_str());
        let (slot, grant) = self
            .broker
            .access()
            .open_connection(user, &vh.name)
            .map_err(|text| AmqpError::connection(ReplyCode::NotAllowed, text).on(10, 40))?;
        self.admission = Some(slot);
        self.grant = Some(grant);
        *self.info.vhost.write().unwrap_or_else(|e| e.into_inner()) = vh.name.to_string();
        tracing::info!(
            conn = self.info.id.0,
            peer = %self.info.peer,
            user = %self.user.as_ref().map_or("", |u| u.name.as_str()),
            vhost = %vh.name,
            "connection open"
        );
        self.vhost = Some(vh);
        self.blocked = self.broker.blocked_reason();
        encode_method(0, &ConnectionOpenOk::default().into(), self.out.buf());
        self.state = State::Running;
        self.close_deadline = None;
        Ok(())
    }
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
        (key("consumer_priorities"), FieldValue::Bool(true)),
        (key("connection.blocked"), FieldValue::Bool(true)),
        (key("authentication_failure_close"), FieldValue::Bool(true)),
        (key("per_consumer_qos"), FieldValue::Bool(true)),
        (key("direct_reply_to"), FieldValue::Bool(true)),
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

/// Why RabbitMQ refuses the client's value of a tune-ok field, if it does: 0 ("no limit") or
/// more than the `server` value, or less than `min`.
fn negotiation_error(field: &str, min: u32, server: u32, client: u32) -> Option<String> {
    if client != 0 && client < min {
        return Some(format!(
            "NOT_ALLOWED - negotiated {field} = {client} is lower than the minimum allowed value ({min})"
        ));
    }
    if client == 0 || client > server {
        let detail = if client == 0 && field == "channel_max" {
            " (no limit)"
        } else {
            ""
        };
        return Some(format!(
            "NOT_ALLOWED - negotiated {field} = {client}{detail} is higher than the maximum allowed value ({server})"
        ));
    }
    None
}
