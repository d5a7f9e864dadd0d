//! Test support: a real broker on 127.0.0.1:0 with a temporary data directory, and lapin
//! helpers. Each integration test file does `mod support;`.
#![allow(dead_code, unreachable_pub)]

use lagomorph::broker::{Broker, BrokerOptions};
use lagomorph::storage::{SledStore, Store};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running broker.
pub struct TestBroker {
    pub addr: SocketAddr,
    pub broker: Broker,
    /// Its store (to hold flushes back).
    pub store: Arc<dyn Store>,
    pub dir: PathBuf,
    token: CancellationToken,
    handle: Option<JoinHandle<()>>,
    _tmp: Option<tempfile::TempDir>,
}

/// Starts a broker on a fresh temporary sled directory.
pub async fn start() -> TestBroker {
    start_with(BrokerOptions::default()).await
}

/// Starts a broker with options on a fresh temporary directory.
pub async fn start_with(opts: BrokerOptions) -> TestBroker {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let mut b = start_in(&dir, opts).await;
    b._tmp = Some(tmp);
    b
}

/// Starts a broker on `dir` (for restart tests).
pub async fn start_in(dir: &Path, opts: BrokerOptions) -> TestBroker {
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, 16 << 20).expect("open store"));
    let broker = Broker::new(Arc::clone(&store), opts);
    broker.recover(lagomorph::clock::now()).expect("recover");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    let handle = tokio::spawn(lagomorph::server::serve(
        vec![listener],
        broker.clone(),
        1000,
        token.clone(),
    ));
    TestBroker {
        addr,
        broker,
        store,
        dir: dir.to_path_buf(),
        token,
        handle: Some(handle),
        _tmp: None,
    }
}

impl TestBroker {
    /// The broker's queue `name` in vhost `/` (it must exist).
    pub fn queue(&self, name: &str) -> Arc<lagomorph::broker::Queue> {
        self.broker
            .vhost("/")
            .expect("vhost")
            .queue(name)
            .expect("queue")
    }

    /// amqp://guest:guest@addr/%2f
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    /// A lapin connection.
    pub async fn connect(&self) -> lapin::Connection {
        lapin::Connection::connect(&self.uri(), lapin::ConnectionProperties::default())
            .await
            .expect("connect")
    }

    /// A connection and a channel.
    pub async fn channel(&self) -> (lapin::Connection, lapin::Channel) {
        let c = self.connect().await;
        let ch = c.create_channel().await.expect("channel");
        (c, ch)
    }

    /// Graceful stop: connections get 320, the store is flushed. Returns the data dir's TempDir
    /// (kept alive) so a restart can reuse it.
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        self.token.cancel();
        if let Some(h) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(10), h).await;
        }
        self.broker.shutdown_store();
        self._tmp.take()
    }
}

/// Serves `b`'s management API (and UI) on 127.0.0.1:0 until the returned token is
/// cancelled; returns the base URL (`http://127.0.0.1:PORT`).
pub async fn serve_management(
    b: &TestBroker,
    opts: lagomorph::management::Options,
) -> (String, CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let token = CancellationToken::new();
    tokio::spawn(lagomorph::management::serve_with(
        listener,
        b.broker.clone(),
        token.clone(),
        opts,
    ));
    (format!("http://{addr}"), token)
}

/// Bounded wait for a future, so a broken broker fails a test instead of hanging it.
pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .expect("timed out after 10 s")
}

/// The reply code and text of an AMQP error, if `e` is one.
pub fn amqp_error(e: &lapin::Error) -> Option<(u16, String)> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(a) => {
            Some((a.get_id(), a.get_message().as_str().to_string()))
        }
        _ => None,
    }
}

/// Asserts that `r` failed with `code` and `text`.
#[track_caller]
pub fn assert_amqp_err<T: std::fmt::Debug>(r: lapin::Result<T>, code: u16, text: &str) {
    let e = r.expect_err("expected an AMQP error");
    let got = amqp_error(&e).unwrap_or_else(|| panic!("not an AMQP error: {e:?}"));
    assert_eq!(got, (code, text.to_string()));
}

/// A unique name for test objects.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A recording of RabbitMQ 3.10's answers: tests/fixtures/rabbitmq-3.10/{topic}.json.
pub fn rabbitmq(topic: &str) -> serde_json::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rabbitmq-3.10")
        .join(format!("{topic}.json"));
    let text = std::fs::read_to_string(&path).expect("fixture");
    serde_json::from_str(&text).expect("fixture JSON")
}

/// A field value in the recordings' typed form: `{"type": tag, "value": ...}`, tables as lists
/// of `[name, typed]` in wire order (see interop/record/queues.py).
pub fn typed(v: &lagomorph::protocol::types::FieldValue) -> serde_json::Value {
    use lagomorph::protocol::types::FieldValue as F;
    use serde_json::json;
    let tag = (v.tag() as char).to_string();
    let value = match v {
        F::LongStr(s) => json!(String::from_utf8_lossy(s)),
        F::Array(a) => json!(a.iter().map(typed).collect::<Vec<_>>()),
        F::Table(t) => typed_table(t),
        F::Timestamp(t) => json!(t),
        F::Bool(b) => json!(b),
        other => match other.as_i64() {
            Some(n) => json!(n),
            None => json!(format!("{other:?}")),
        },
    };
    json!({"type": tag, "value": value})
}

/// A table in the recordings' typed form.
pub fn typed_table(t: &lagomorph::protocol::types::FieldTable) -> serde_json::Value {
    serde_json::Value::Array(
        t.iter()
            .map(|(k, v)| serde_json::json!([k.as_str(), typed(v)]))
            .collect(),
    )
}

/// `N` distinct free loopback ports (bound all at once, then released), for a broker binary
/// started with explicit addresses. Ports taken one at a time may repeat: the kernel may hand a
/// port just released out again (a crash test once got its AMQP port for management too).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let held: Vec<std::net::TcpListener> = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    std::array::from_fn(|i| held[i].local_addr().expect("addr").port())
}

/// One free loopback port (see [`free_ports`] for more than one).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// The stderr lines of a spawned broker binary, read on a thread.
pub struct LogLines(std::sync::mpsc::Receiver<String>);

impl LogLines {
    /// Takes `child`'s piped stderr.
    pub fn of(child: &mut std::process::Child) -> LogLines {
        use std::io::{BufRead, BufReader};
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        LogLines(rx)
    }

    /// The next line containing `what`, within 30 s.
    pub fn wait_for(&self, what: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = self
                .0
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("log line `{what}` within 30 s"));
            if line.contains(what) {
                return line;
            }
        }
    }
}

pub mod raw {
    //! A raw AMQP client built on our own codec, for what real clients refuse to send.
    use bytes::BytesMut;
    use lagomorph::protocol::frame::{self, Frame, PROTOCOL_HEADER};
    use lagomorph::protocol::method::*;
    use lagomorph::protocol::types::{FieldTable, LongStr, ShortStr};
    use std::net::SocketAddr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    /// What [`Raw::next_event`] saw.
    #[derive(Debug)]
    pub enum Event {
        /// A frame.
        Frame(Frame),
        /// The broker closed the socket cleanly (EOF).
        Closed,
        /// Reading failed (a reset, for instance).
        Failed(std::io::ErrorKind),
        /// Nothing arrived in time; the socket is still open.
        Silent,
    }

    pub struct Raw {
        pub stream: TcpStream,
        buf: BytesMut,
    }

    impl Raw {
        /// Connects and sends the protocol header only.
        pub async fn connect_bare(addr: SocketAddr) -> Raw {
            let stream = TcpStream::connect(addr).await.expect("connect");
            Raw {
                stream,
                buf: BytesMut::new(),
            }
        }

        /// Connects and completes the handshake as guest on "/", accepting the broker's
        /// channel_max and frame_max, with no heartbeats.
        pub async fn connect(addr: SocketAddr) -> Raw {
            let (mut r, tune) = Self::until_tune(addr).await;
            r.tune_ok_and_open(tune.channel_max, tune.frame_max, 0)
                .await;
            r.expect_open_ok().await;
            r
        }

        /// Connects and completes the handshake with these tune-ok values.
        pub async fn connect_tuned(
            addr: SocketAddr,
            channel_max: u16,
            frame_max: u32,
            heartbeat: u16,
        ) -> Raw {
            let (mut r, _) = Self::until_tune(addr).await;
            r.tune_ok_and_open(channel_max, frame_max, heartbeat).await;
            r.expect_open_ok().await;
            r
        }

        /// Protocol header, start / start-ok as guest; returns the broker's connection.tune.
        pub async fn until_tune(addr: SocketAddr) -> (Raw, ConnectionTune) {
            let mut r = Self::connect_bare(addr).await;
            r.send_bytes(PROTOCOL_HEADER).await;
            match r.recv().await {
                Frame::Method {
                    method: Method::ConnectionStart(_),
                    ..
                } => {}
                f => panic!("expected start, got {f:?}"),
            }
            r.send(
                0,
                ConnectionStartOk {
                    client_properties: FieldTable::new(),
                    mechanism: ShortStr::from_static("PLAIN"),
                    response: LongStr::from("\0guest\0guest"),
                    locale: ShortStr::from_static("en_US"),
                }
                .into(),
            )
            .await;
            match r.recv().await {
                Frame::Method {
                    method: Method::ConnectionTune(t),
                    ..
                } => (r, t),
                f => panic!("expected tune, got {f:?}"),
            }
        }

        /// Sends tune-ok with these values and connection.open of "/" in one write.
        pub async fn tune_ok_and_open(&mut self, channel_max: u16, frame_max: u32, heartbeat: u16) {
            let mut b = BytesMut::new();
            let tune_ok: Method = ConnectionTuneOk {
                channel_max,
                frame_max,
                heartbeat,
            }
            .into();
            frame::encode_method(0, &tune_ok, &mut b);
            let open: Method = ConnectionOpen {
                virtual_host: ShortStr::from_static("/"),
                ..Default::default()
            }
            .into();
            frame::encode_method(0, &open, &mut b);
            self.send_bytes(&b).await;
        }

        async fn expect_open_ok(&mut self) {
            match self.recv().await {
                Frame::Method {
                    method: Method::ConnectionOpenOk(_),
                    ..
                } => {}
                f => panic!("expected open-ok, got {f:?}"),
            }
        }

        pub async fn send_bytes(&mut self, b: &[u8]) {
            self.stream.write_all(b).await.expect("write");
        }

        pub async fn send(&mut self, ch: u16, m: Method) {
            let mut b = BytesMut::new();
            frame::encode_method(ch, &m, &mut b);
            self.send_bytes(&b).await;
        }

        pub async fn send_frame(&mut self, f: &Frame) {
            let mut b = BytesMut::new();
            frame::encode(f, &mut b);
            self.send_bytes(&b).await;
        }

        /// Next frame, skipping heartbeats; panics after 10 s or on EOF.
        pub async fn recv(&mut self) -> Frame {
            self.try_recv()
                .await
                .expect("connection closed while a frame was expected")
        }

        /// Next frame, or None on EOF.
        pub async fn try_recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) =
                    frame::decode(&mut self.buf, 1 << 24).expect("valid frame from broker")
                {
                    if matches!(f, Frame::Heartbeat) {
                        continue;
                    }
                    return Some(f);
                }
                let n = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    self.stream.read_buf(&mut self.buf),
                )
                .await
                .expect("timed out waiting for a frame")
                .ok()?;
                if n == 0 {
                    return None;
                }
            }
        }

        /// The next frame (heartbeats skipped) within `within`, or what happened instead.
        pub async fn next_event(&mut self, within: std::time::Duration) -> Event {
            let deadline = tokio::time::Instant::now() + within;
            loop {
                match frame::decode(&mut self.buf, 1 << 24) {
                    Ok(Some(Frame::Heartbeat)) => continue,
                    Ok(Some(f)) => return Event::Frame(f),
                    Ok(None) => {}
                    Err(e) => panic!("invalid frame from broker: {e}"),
                }
                match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                    Err(_) => return Event::Silent,
                    Ok(Ok(0)) => return Event::Closed,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Event::Failed(e.kind()),
                }
            }
        }

        /// Reads until a connection.close arrives; answers close-ok; returns (code, text, class, method).
        pub async fn expect_connection_close(&mut self) -> (u16, String, u16, u16) {
            loop {
                match self.recv().await {
                    Frame::Method {
                        method: Method::ConnectionClose(c),
                        ..
                    } => {
                        self.send(0, ConnectionCloseOk.into()).await;
                        return (
                            c.reply_code,
                            c.reply_text.to_string(),
                            c.class_id,
                            c.method_id,
                        );
                    }
                    _ => continue,
                }
            }
        }

        /// Reads until a channel.close arrives on `ch`; returns (code, text).
        pub async fn expect_channel_close(&mut self, ch: u16) -> (u16, String) {
            loop {
                match self.recv().await {
                    Frame::Method {
                        channel,
                        method: Method::ChannelClose(c),
                    } if channel == ch => {
                        self.send(ch, ChannelCloseOk.into()).await;
                        return (c.reply_code, c.reply_text.to_string());
                    }
                    Frame::Method {
                        method: Method::ConnectionClose(c),
                        ..
                    } => {
                        panic!(
                            "connection closed instead: {} {}",
                            c.reply_code, c.reply_text
                        )
                    }
                    _ => continue,
                }
            }
        }

        /// basic.publish with a content header and one body frame.
        pub async fn publish(
            &mut self,
            ch: u16,
            exchange: &str,
            key: &str,
            body: &[u8],
            immediate: bool,
        ) {
            let mut b = BytesMut::new();
            let m: Method = BasicPublish {
                exchange: ShortStr::try_from(exchange).expect("name"),
                routing_key: ShortStr::try_from(key).expect("key"),
                immediate,
                ..Default::default()
            }
            .into();
            frame::encode_method(ch, &m, &mut b);
            frame::encode_content(ch, 60, &Default::default(), body, 131072, &mut b);
            self.send_bytes(&b).await;
        }

        /// basic.publish with the given properties and one body frame.
        pub async fn publish_with(
            &mut self,
            ch: u16,
            exchange: &str,
            key: &str,
            body: &[u8],
            properties: &lagomorph::protocol::properties::Properties,
        ) {
            let mut b = BytesMut::new();
            let m: Method = BasicPublish {
                exchange: ShortStr::try_from(exchange).expect("name"),
                routing_key: ShortStr::try_from(key).expect("key"),
                ..Default::default()
            }
            .into();
            frame::encode_method(ch, &m, &mut b);
            frame::encode_content(ch, 60, properties, body, 131072, &mut b);
            self.send_bytes(&b).await;
        }

        /// Sends a method and waits for the reply on that channel.
        pub async fn call(&mut self, ch: u16, m: Method) -> Method {
            self.send(ch, m).await;
            match self.recv().await {
                Frame::Method { method, .. } => method,
                f => panic!("expected a method, got {f:?}"),
            }
        }

        /// basic.get with no-ack: the get-ok, the properties and the body, or None on
        /// get-empty.
        pub async fn get(
            &mut self,
            ch: u16,
            queue: &str,
        ) -> Option<(
            BasicGetOk,
            lagomorph::protocol::properties::Properties,
            Vec<u8>,
        )> {
            self.send(
                ch,
                BasicGet {
                    queue: ShortStr::try_from(queue).expect("name"),
                    no_ack: true,
                    ..Default::default()
                }
                .into(),
            )
            .await;
            let ok = match self.recv().await {
                Frame::Method {
                    method: Method::BasicGetOk(ok),
                    ..
                } => ok,
                Frame::Method {
                    method: Method::BasicGetEmpty(_),
                    ..
                } => return None,
                f => panic!("expected get-ok or get-empty, got {f:?}"),
            };
            let Frame::Header { header, .. } = self.recv().await else {
                panic!("expected a content header");
            };
            let mut body = Vec::new();
            while (body.len() as u64) < header.body_size {
                match self.recv().await {
                    Frame::Body { payload, .. } => body.extend_from_slice(&payload),
                    f => panic!("expected a body frame, got {f:?}"),
                }
            }
            Some((ok, header.properties, body))
        }

        pub async fn open_channel(&mut self, ch: u16) {
            self.send(ch, ChannelOpen::default().into()).await;
            match self.recv().await {
                Frame::Method {
                    method: Method::ChannelOpenOk(_),
                    channel,
                } if channel == ch => {}
                f => panic!("expected channel.open-ok, got {f:?}"),
            }
        }
    }
}

/// A field table of arguments.
pub fn table(entries: &[(&str, lapin::types::AMQPValue)]) -> lapin::types::FieldTable {
    let mut t = lapin::types::FieldTable::default();
    for (k, v) in entries {
        t.insert(lapin::types::ShortString::from(*k), v.clone());
    }
    t
}

/// A consumer's next delivery (bounded wait).
pub async fn next_delivery(c: &mut lapin::Consumer) -> lapin::message::Delivery {
    use futures_lite::StreamExt;
    within(c.next())
        .await
        .expect("stream open")
        .expect("delivery")
}

/// A connection and a channel in confirm mode.
pub async fn confirming(b: &TestBroker) -> (lapin::Connection, lapin::Channel) {
    let (c, ch) = b.channel().await;
    within(ch.confirm_select(lapin::options::ConfirmSelectOptions::default()))
        .await
        .expect("confirm.select");
    (c, ch)
}

/// Publishes `body` to `queue` through the default exchange on a confirming channel, with an
/// optional priority, persistent or not, and waits for the confirm.
pub async fn publish_with(
    ch: &lapin::Channel,
    queue: &str,
    body: &str,
    priority: Option<u8>,
    persistent: bool,
) {
    let mut props = lapin::BasicProperties::default();
    if let Some(p) = priority {
        props = props.with_priority(p);
    }
    if persistent {
        props = props.with_delivery_mode(2);
    }
    within(
        within(ch.basic_publish(
            "".into(),
            queue.into(),
            lapin::options::BasicPublishOptions::default(),
            body.as_bytes(),
            props,
        ))
        .await
        .expect("publish"),
    )
    .await
    .expect("confirm");
}

/// Every message of `queue`, by basic.get with no-ack: (body, redelivered).
pub async fn drain(ch: &lapin::Channel, queue: &str) -> Vec<(String, bool)> {
    let mut got = Vec::new();
    while let Some(m) = within(ch.basic_get(
        queue.into(),
        lapin::options::BasicGetOptions { no_ack: true },
    ))
    .await
    .expect("get")
    {
        got.push((
            String::from_utf8_lossy(&m.delivery.data).into_owned(),
            m.delivery.redelivered,
        ));
    }
    got
}
