//! A small AMQP 0-9-1 client on the project's own codec (`lagomorph::protocol`): URI parsing,
//! the handshake (PLAIN), synchronous requests (open, declare, bind, qos, consume, select) and
//! a graceful close. Producers and consumers take the socket and buffers apart afterwards
//! ([`Conn::into_parts`]) and drive them directly, batching many frames per syscall.
//!
//! Why not lapin: lapin allocates and goes through a future per publish and per delivery; the
//! project's codec lets a producer write a thousand publishes with one `write`, from a
//! pre-encoded template, and lets a consumer decode every frame of a read in one pass. The
//! tool's own cost must stay well below the broker's (see `sink`).

use std::io;
use std::time::Duration;

use crate::stream::Stream;
use bytes::{BufMut, BytesMut};
use lagomorph::protocol::FrameError;
use lagomorph::protocol::frame::{self, Frame, PROTOCOL_HEADER};
use lagomorph::protocol::method::*;
use lagomorph::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The largest frame we ask for; larger bodies are split.
const FRAME_MAX: u32 = 131_072;
/// Any single request/reply (handshake step, declare, consume...) must finish within this.
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful close waits for close-ok.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// Read buffer growth step.
pub(crate) const READ_CHUNK: usize = 256 * 1024;

/// What talking to the broker can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// The URI could not be parsed.
    #[error("bad URI: {0}")]
    Uri(String),
    /// The socket failed.
    #[error(transparent)]
    Io(#[from] io::Error),
    /// The broker sent bytes the codec rejects.
    #[error("bad frame from the broker: {0}")]
    Frame(#[from] FrameError),
    /// The broker closed the channel or the connection.
    #[error("broker closed the {scope}: {code} {text}")]
    Closed {
        /// "channel" or "connection".
        scope: &'static str,
        /// The reply code.
        code: u16,
        /// The reply text.
        text: String,
    },
    /// A frame that makes no sense at this point.
    #[error("unexpected {0} from the broker")]
    Unexpected(String),
    /// The broker closed the TCP connection.
    #[error("the broker closed the TCP connection")]
    Eof,
    /// A request got no answer in time.
    #[error("no answer to {0} within {RPC_TIMEOUT:?}")]
    Timeout(&'static str),
}

/// Shorthand for results of this module.
pub(crate) type Result<T> = std::result::Result<T, ClientError>;

/// A parsed `amqp://user:pass@host:port/vhost` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Uri {
    /// Host name or address (brackets removed for IPv6).
    pub(crate) host: String,
    /// Port, 5672 by default.
    pub(crate) port: u16,
    /// User name, "guest" by default.
    pub(crate) user: String,
    /// Password, "guest" by default.
    pub(crate) password: String,
    /// Virtual host, "/" by default.
    pub(crate) vhost: String,
    /// `amqps://`: TLS (see `stream`).
    pub(crate) tls: bool,
}

impl Uri {
    /// Parses an AMQP URI, `amqp://` or `amqps://` (TLS, port 5671 by default); user,
    /// password and vhost are percent-decoded; an empty path means vhost "/".
    pub(crate) fn parse(s: &str) -> Result<Uri> {
        let (rest, tls) = match (s.strip_prefix("amqp://"), s.strip_prefix("amqps://")) {
            (Some(r), _) => (r, false),
            (_, Some(r)) => (r, true),
            _ => {
                return Err(ClientError::Uri(format!(
                    "{s}: only amqp:// and amqps:// are supported"
                )));
            }
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(&rest[i + 1..])),
            None => (rest, None),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(u) => match u.split_once(':') {
                Some((a, b)) => (decode_pct(a)?, decode_pct(b)?),
                None => (decode_pct(u)?, String::new()),
            },
            None => ("guest".to_string(), "guest".to_string()),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| ClientError::Uri(format!("{s}: unclosed [")))?;
            (h.to_string(), after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        let port = match port {
            Some(p) => p
                .parse()
                .map_err(|_| ClientError::Uri(format!("{s}: bad port {p:?}")))?,
            None if tls => 5671,
            None => 5672,
        };
        let host = if host.is_empty() {
            "127.0.0.1".to_string()
        } else {
            host
        };
        let vhost = match path {
            None | Some("") => "/".to_string(),
            Some(p) => decode_pct(p)?,
        };
        Ok(Uri {
            host,
            port,
            user,
            password,
            vhost,
            tls,
        })
    }
}

/// Percent-decoding of one URI component.
fn decode_pct(s: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| ClientError::Uri(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| ClientError::Uri(format!("{s:?} is not UTF-8")))
}

/// A short string from run-time text (names we build ourselves, at most 255 bytes).
pub(crate) fn short(s: &str) -> Result<ShortStr> {
    ShortStr::try_from(s).map_err(|e| ClientError::Uri(format!("{s:?}: {e}")))
}

/// The reply code and text of a close method.
fn closed(scope: &'static str, code: u16, text: &ShortStr) -> ClientError {
    ClientError::Closed {
        scope,
        code,
        text: text.to_string(),
    }
}

/// An open AMQP connection with its buffers.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    frame_max: u32,
}

/// A connection taken apart for a producer or consumer loop.
#[derive(Debug)]
pub(crate) struct Parts {
    /// The socket.
    pub(crate) stream: Stream,
    /// Bytes already read but not decoded.
    pub(crate) rbuf: BytesMut,
    /// The negotiated frame_max.
    pub(crate) frame_max: u32,
}

impl Conn {
    /// Connects and runs the handshake: protocol header, start-ok (PLAIN), tune-ok (no
    /// heartbeats, frame_max at most 128 KiB), open.
    pub(crate) async fn connect(uri: &Uri, name: &str) -> Result<Conn> {
        let stream = tokio::time::timeout(
            RPC_TIMEOUT,
            TcpStream::connect((uri.host.as_str(), uri.port)),
        )
        .await
        .map_err(|_| ClientError::Timeout("TCP connect"))??;
        stream.set_nodelay(true)?;
        let stream = if uri.tls {
            tokio::time::timeout(RPC_TIMEOUT, crate::stream::tls(stream, &uri.host))
                .await
                .map_err(|_| ClientError::Timeout("TLS handshake"))??
        } else {
            Stream::Plain(stream)
        };
        let mut c = Conn {
            stream,
            rbuf: BytesMut::with_capacity(8192),
            wbuf: BytesMut::with_capacity(8192),
            frame_max: frame::FRAME_MIN_SIZE,
        };
        c.wbuf.extend_from_slice(PROTOCOL_HEADER);
        c.flush().await?;
        match c.expect_method(0, "connection.start").await? {
            Method::ConnectionStart(_) => {}
            m => return Err(ClientError::Unexpected(m.name().into())),
        }
        let mut response = Vec::with_capacity(uri.user.len() + uri.password.len() + 2);
        response.push(0);
        response.extend_from_slice(uri.user.as_bytes());
        response.push(0);
        response.extend_from_slice(uri.password.as_bytes());
        c.send(
            0,
            &Method::ConnectionStartOk(ConnectionStartOk {
                client_properties: client_properties(name)?,
                mechanism: ShortStr::from_static("PLAIN"),
                response: LongStr::from(response),
                locale: ShortStr::from_static("en_US"),
            }),
        );
        c.flush().await?;
        let tune = match c.expect_method(0, "connection.tune").await? {
            Method::ConnectionTune(t) => t,
            m => return Err(ClientError::Unexpected(m.name().into())),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            m => m.min(FRAME_MAX),
        };
        c.send(
            0,
            &Method::ConnectionTuneOk(ConnectionTuneOk {
                channel_max: tune.channel_max,
                frame_max,
                heartbeat: 0,
            }),
        );
        c.frame_max = frame_max;
        c.send(
            0,
            &Method::ConnectionOpen(ConnectionOpen {
                virtual_host: short(&uri.vhost)?,
                reserved_1: ShortStr::EMPTY,
                reserved_2: false,
            }),
        );
        c.flush().await?;
        match c.expect_method(0, "connection.open").await? {
            Method::ConnectionOpenOk(_) => Ok(c),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// The negotiated frame_max.
    pub(crate) fn frame_max(&self) -> u32 {
        self.frame_max
    }

    /// Encodes a method into the write buffer (sent by the next [`Conn::flush`]).
    pub(crate) fn send(&mut self, channel: u16, m: &Method) {
        frame::encode_method(channel, m, &mut self.wbuf);
    }

    /// Writes out the write buffer.
    pub(crate) async fn flush(&mut self) -> io::Result<()> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.stream.flush().await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// Encodes a content header and body frames into the write buffer.
    pub(crate) fn send_content(
        &mut self,
        channel: u16,
        properties: &lagomorph::protocol::properties::Properties,
        body: &[u8],
    ) {
        frame::encode_content_header(channel, 60, properties, body.len() as u64, &mut self.wbuf);
        put_body_frames(channel, body, self.frame_max, &mut self.wbuf);
    }

    /// The next frame, reading as needed.
    pub(crate) async fn next_frame(&mut self) -> Result<Frame> {
        loop {
            if let Some(f) = frame::decode(&mut self.rbuf, self.frame_max)? {
                return Ok(f);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 4096 {
                self.rbuf.reserve(8192);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(ClientError::Eof);
            }
        }
    }

    /// The next method on `channel` (heartbeats skipped), as the answer to `what`; a close
    /// from the broker becomes [`ClientError::Closed`] (after we answer it with close-ok).
    async fn expect_method(&mut self, channel: u16, what: &'static str) -> Result<Method> {
        let fut = async {
            loop {
                match self.next_frame().await? {
                    Frame::Heartbeat => continue,
                    Frame::Method {
                        method: Method::ConnectionClose(c),
                        ..
                    } => {
                        self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk));
                        let _ = self.flush().await;
                        return Err(closed("connection", c.reply_code, &c.reply_text));
                    }
                    Frame::Method {
                        channel: ch,
                        method: Method::ChannelClose(c),
                    } => {
                        self.send(ch, &Method::ChannelCloseOk(ChannelCloseOk));
                        let _ = self.flush().await;
                        return Err(closed("channel", c.reply_code, &c.reply_text));
                    }
                    Frame::Method {
                        channel: ch,
                        method,
                    } if ch == channel => return Ok(method),
                    other => return Err(ClientError::Unexpected(describe(&other))),
                }
            }
        };
        tokio::time::timeout(RPC_TIMEOUT, fut)
            .await
            .map_err(|_| ClientError::Timeout(what))?
    }

    /// Sends a synchronous method and waits for its reply on the same channel.
    pub(crate) async fn rpc(&mut self, channel: u16, m: Method) -> Result<Method> {
        let what = m.name();
        self.send(channel, &m);
        self.flush().await?;
        self.expect_method(channel, what).await
    }

    /// Opens `channel`.
    pub(crate) async fn open_channel(&mut self, channel: u16) -> Result<()> {
        match self
            .rpc(
                channel,
                Method::ChannelOpen(ChannelOpen {
                    reserved_1: ShortStr::EMPTY,
                }),
            )
            .await?
        {
            Method::ChannelOpenOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Puts `channel` in confirm mode.
    pub(crate) async fn confirm_select(&mut self, channel: u16) -> Result<()> {
        match self
            .rpc(
                channel,
                Method::ConfirmSelect(ConfirmSelect { nowait: false }),
            )
            .await?
        {
            Method::ConfirmSelectOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// basic.qos with a prefetch count.
    pub(crate) async fn qos(&mut self, channel: u16, prefetch: u16) -> Result<()> {
        match self
            .rpc(
                channel,
                Method::BasicQos(BasicQos {
                    prefetch_size: 0,
                    prefetch_count: prefetch,
                    global: false,
                }),
            )
            .await?
        {
            Method::BasicQosOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Declares an exchange (not durable unless asked).
    pub(crate) async fn exchange_declare(
        &mut self,
        channel: u16,
        name: &str,
        kind: &str,
        durable: bool,
    ) -> Result<()> {
        self.exchange_declare_with(channel, name, kind, durable, FieldTable::new())
            .await
    }

    /// Declares an exchange with arguments.
    pub(crate) async fn exchange_declare_with(
        &mut self,
        channel: u16,
        name: &str,
        kind: &str,
        durable: bool,
        arguments: FieldTable,
    ) -> Result<()> {
        let m = Method::ExchangeDeclare(ExchangeDeclare {
            reserved_1: 0,
            exchange: short(name)?,
            kind: short(kind)?,
            passive: false,
            durable,
            auto_delete: false,
            internal: false,
            no_wait: false,
            arguments,
        });
        match self.rpc(channel, m).await? {
            Method::ExchangeDeclareOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Declares a queue (or, with `passive`, checks it); returns its message count.
    pub(crate) async fn queue_declare(
        &mut self,
        channel: u16,
        name: &str,
        durable: bool,
        passive: bool,
        args: &[(String, String)],
    ) -> Result<u32> {
        let mut arguments = FieldTable::new();
        for (k, v) in args {
            let value = match (v.parse::<i64>(), v.as_str()) {
                (Ok(n), _) => FieldValue::I64(n),
                (_, "true") => FieldValue::Bool(true),
                (_, "false") => FieldValue::Bool(false),
                _ => FieldValue::LongStr(LongStr::from(v.as_str())),
            };
            arguments.insert(short(k)?, value);
        }
        let m = Method::QueueDeclare(QueueDeclare {
            reserved_1: 0,
            queue: short(name)?,
            passive,
            durable,
            exclusive: false,
            auto_delete: false,
            no_wait: false,
            arguments,
        });
        match self.rpc(channel, m).await? {
            Method::QueueDeclareOk(ok) => Ok(ok.message_count),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Purges a queue.
    pub(crate) async fn queue_purge(&mut self, channel: u16, name: &str) -> Result<()> {
        let m = Method::QueuePurge(QueuePurge {
            reserved_1: 0,
            queue: short(name)?,
            no_wait: false,
        });
        match self.rpc(channel, m).await? {
            Method::QueuePurgeOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Deletes a queue.
    pub(crate) async fn queue_delete(&mut self, channel: u16, name: &str) -> Result<()> {
        let m = Method::QueueDelete(QueueDelete {
            reserved_1: 0,
            queue: short(name)?,
            if_unused: false,
            if_empty: false,
            no_wait: false,
        });
        match self.rpc(channel, m).await? {
            Method::QueueDeleteOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Binds a queue to an exchange.
    pub(crate) async fn queue_bind(
        &mut self,
        channel: u16,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<()> {
        let m = Method::QueueBind(QueueBind {
            reserved_1: 0,
            queue: short(queue)?,
            exchange: short(exchange)?,
            routing_key: short(key)?,
            no_wait: false,
            arguments: FieldTable::new(),
        });
        match self.rpc(channel, m).await? {
            Method::QueueBindOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Starts a consumer; returns once consume-ok arrived.
    pub(crate) async fn consume(&mut self, channel: u16, queue: &str, no_ack: bool) -> Result<()> {
        let m = Method::BasicConsume(BasicConsume {
            reserved_1: 0,
            queue: short(queue)?,
            consumer_tag: ShortStr::EMPTY,
            no_local: false,
            no_ack,
            exclusive: false,
            no_wait: false,
            arguments: FieldTable::new(),
        });
        match self.rpc(channel, m).await? {
            Method::BasicConsumeOk(_) => Ok(()),
            m => Err(ClientError::Unexpected(m.name().into())),
        }
    }

    /// Closes the connection: connection.close, then waits (bounded) for close-ok,
    /// discarding whatever else arrives meanwhile.
    pub(crate) async fn close(mut self) -> Result<()> {
        self.send(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: 200,
                reply_text: ShortStr::from_static("bye"),
                class_id: 0,
                method_id: 0,
            }),
        );
        self.flush().await?;
        let wait = async {
            loop {
                match self.next_frame().await {
                    Ok(Frame::Method {
                        method: Method::ConnectionCloseOk(_) | Method::ConnectionClose(_),
                        ..
                    })
                    | Err(_) => return,
                    Ok(_) => continue,
                }
            }
        };
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, wait).await;
        Ok(())
    }

    /// Takes the connection apart for a producer or consumer loop.
    pub(crate) fn into_parts(self) -> Parts {
        Parts {
            stream: self.stream,
            rbuf: self.rbuf,
            frame_max: self.frame_max,
        }
    }
}

/// Our client-properties: product name and the capabilities we handle.
fn client_properties(name: &str) -> Result<FieldTable> {
    let mut caps = FieldTable::new();
    for c in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "exchange_exchange_bindings",
    ] {
        caps.insert(short(c)?, FieldValue::Bool(true));
    }
    let mut t = FieldTable::new();
    t.insert(
        ShortStr::from_static("product"),
        FieldValue::LongStr(LongStr::from("lagomorph-perf")),
    );
    t.insert(
        ShortStr::from_static("version"),
        FieldValue::LongStr(LongStr::from(env!("CARGO_PKG_VERSION"))),
    );
    t.insert(
        ShortStr::from_static("connection_name"),
        FieldValue::LongStr(LongStr::from(name)),
    );
    t.insert(
        ShortStr::from_static("capabilities"),
        FieldValue::Table(caps),
    );
    Ok(t)
}

/// A frame, named for an error message (never its body).
pub(crate) fn describe(f: &Frame) -> String {
    match f {
        Frame::Method { channel, method } => format!("{} on channel {channel}", method.name()),
        Frame::Header { channel, .. } => format!("content header on channel {channel}"),
        Frame::Body { channel, .. } => format!("content body on channel {channel}"),
        Frame::Heartbeat => "heartbeat".into(),
    }
}

/// Writes one body frame per `frame_max - 8` bytes of `body` (no frames for an empty body),
/// copying the payload once, straight into `out`. Checked against `frame::decode` below.
pub(crate) fn put_body_frames(channel: u16, body: &[u8], frame_max: u32, out: &mut BytesMut) {
    let chunk = (frame_max.max(frame::FRAME_MIN_SIZE) as usize) - frame::FRAME_OVERHEAD;
    out.reserve(body.len() + body.len().div_ceil(chunk) * frame::FRAME_OVERHEAD);
    for part in body.chunks(chunk) {
        out.put_u8(frame::FRAME_BODY);
        out.put_u16(channel);
        // A part is at most frame_max - 8 bytes, so it fits in u32.
        out.put_u32(part.len() as u32);
        out.put_slice(part);
        out.put_u8(frame::FRAME_END);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_defaults_and_escapes() {
        let u = Uri::parse("amqp://guest:guest@127.0.0.1:5673/%2f").expect("uri");
        assert_eq!(
            u,
            Uri {
                host: "127.0.0.1".into(),
                port: 5673,
                user: "guest".into(),
                password: "guest".into(),
                vhost: "/".into(),
                tls: false,
            }
        );
        let u = Uri::parse("amqp://localhost").expect("uri");
        assert_eq!(
            (u.port, u.vhost.as_str(), u.user.as_str()),
            (5672, "/", "guest")
        );
        let u = Uri::parse("amqp://a%40b:p%3Aw@[::1]:1/v%2Fh").expect("uri");
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.password.as_str()
            ),
            ("::1", 1, "a@b", "p:w")
        );
        assert_eq!(u.vhost, "v/h");
        let u = Uri::parse("amqps://x").expect("amqps");
        assert_eq!((u.tls, u.port), (true, 5671));
        assert!(Uri::parse("http://x").is_err());
        assert!(Uri::parse("amqp://x:notaport/").is_err());
        assert!(Uri::parse("amqp://x/%zz").is_err());
    }

    #[test]
    fn body_frames_split_at_frame_max_and_decode() {
        let body: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        put_body_frames(3, &body, 4096, &mut out);
        let mut got = Vec::new();
        while let Some(f) = frame::decode(&mut out, 4096).expect("decode") {
            match f {
                Frame::Body {
                    channel: 3,
                    payload,
                } => {
                    assert!(payload.len() <= 4088);
                    got.extend_from_slice(&payload);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, body);
        let mut out = BytesMut::new();
        put_body_frames(1, &[], 4096, &mut out);
        assert!(out.is_empty());
    }
}
