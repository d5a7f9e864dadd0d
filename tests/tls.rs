//! AMQPS: lapin over TLS with a test CA made here (rcgen), EXTERNAL login with a client
//! certificate, the mechanisms offered, refusals as RabbitMQ 3.10 gives them
//! (`tests/fixtures/rabbitmq-3.10/tls.json`): an unknown user or no certificate (403), an
//! expired or untrusted client certificate (TLS alert), a plain-text client on the TLS port
//! (closed at once), a client that says nothing (closed after the handshake timeout); HTTPS
//! for management; and a certificate reload on SIGHUP of the real binary while an old
//! connection stays open.

mod support;

use bytes::BytesMut;
use lagomorph::broker::{Broker, BrokerOptions, User};
use lagomorph::protocol::frame::{self, Frame, PROTOCOL_HEADER};
use lagomorph::protocol::method::Method;
use lagomorph::server::tls::{CertLogin, ClientAuth, Tls, TlsOptions};
use lagomorph::server::{Listener, ServeOptions, Transport};
use lagomorph::session::Mechanisms;
use lagomorph::storage::MemoryStore;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_util::sync::CancellationToken;

/// RabbitMQ 3.10's refusal of an EXTERNAL login (unknown user, or no certificate).
const EXTERNAL_REFUSED: &str = "ACCESS_REFUSED - Login was refused using authentication mechanism EXTERNAL. For details see the broker logfile.";

/// A certificate and its key, PEM.
#[derive(Clone)]
struct Pem {
    cert: String,
    key: String,
}

/// A test CA and what it signed, written into a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: String,
    issuer: Issuer<'static, KeyPair>,
    server: Pem,
    client: Pem,
    nobody: Pem,
    expired: Pem,
    untrusted: Pem,
}

fn ca(cn: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("key");
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let cert = p.self_signed(&key).expect("self-signed");
    (cert.pem(), Issuer::new(p, key))
}

fn leaf(issuer: &Issuer<'_, KeyPair>, cn: &str, sans: &[&str], server: bool, expired: bool) -> Pem {
    let key = KeyPair::generate().expect("key");
    let sans: Vec<String> = sans.iter().map(|s| (*s).to_owned()).collect();
    let mut p = CertificateParams::new(sans).expect("params");
    p.distinguished_name.push(DnType::CountryName, "GB");
    p.distinguished_name
        .push(DnType::OrganizationName, "Lagomorph Tests");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).expect("signed");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    fn new() -> Pki {
        let (ca_pem, issuer) = ca("Lagomorph Test CA");
        let (_, other) = ca("Untrusted CA");
        let pki = Pki {
            dir: tempfile::tempdir().expect("tmp"),
            ca: ca_pem,
            server: leaf(
                &issuer,
                "localhost",
                &["localhost", "127.0.0.1"],
                true,
                false,
            ),
            client: leaf(&issuer, "tls-user", &["tls-user.example"], false, false),
            nobody: leaf(&issuer, "nobody", &[], false, false),
            expired: leaf(&issuer, "tls-user", &[], false, true),
            untrusted: leaf(&other, "tls-user", &[], false, false),
            issuer,
        };
        pki.write("ca.pem", &pki.ca);
        pki.write("server.pem", &pki.server.cert);
        pki.write("server.key", &pki.server.key);
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.path(name), text).expect("write");
    }

    fn options(&self, client_auth: ClientAuth, handshake_timeout: Duration) -> TlsOptions {
        TlsOptions {
            cert_file: self.path("server.pem"),
            key_file: self.path("server.key"),
            ca_file: Some(self.path("ca.pem")),
            client_auth,
            versions: Vec::new(),
            cipher_suites: Vec::new(),
            handshake_timeout,
            alpn: Vec::new(),
            login: CertLogin::CommonName,
        }
    }

    /// lapin's TLS settings: our CA, and a client certificate if given.
    fn lapin(&self, identity: Option<&Pem>) -> OwnedTLSConfig {
        OwnedTLSConfig {
            identity: identity.map(|p| OwnedIdentity::PKCS8 {
                pem: p.cert.clone().into_bytes(),
                key: p.key.clone().into_bytes(),
            }),
            cert_chain: Some(self.ca.clone()),
        }
    }

    /// A rustls client trusting our CA, presenting `identity` if given.
    fn client(&self, identity: Option<&Pem>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            roots.add(c.expect("ca")).expect("add");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match identity {
            Some(p) => {
                let chain = CertificateDer::pem_slice_iter(p.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .expect("chain");
                let key = PrivateKeyDer::from_pem_slice(p.key.as_bytes()).expect("key");
                builder
                    .with_client_auth_cert(chain, key)
                    .expect("client auth")
            }
            None => builder.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(config))
    }
}

/// A broker with a plain listener and an AMQPS one (EXTERNAL offered), users guest and
/// tls-user.
struct TlsBroker {
    plain: SocketAddr,
    tls: SocketAddr,
    broker: Broker,
    token: CancellationToken,
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        self.token.cancel();
    }
}

async fn start(pki: &Pki, auth: ClientAuth, handshake_timeout: Duration) -> TlsBroker {
    let mut opts = BrokerOptions::default();
    opts.users.push(User {
        name: "tls-user".into(),
        password_hash: lagomorph::password::hash_password("unused"),
        tags: Vec::new(),
    });
    let broker = Broker::new(Arc::new(MemoryStore::default()), opts);
    let tls = Tls::new(pki.options(auth, handshake_timeout)).expect("tls");
    let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let secure = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let (plain_addr, tls_addr) = (
        plain.local_addr().expect("addr"),
        secure.local_addr().expect("addr"),
    );
    let token = CancellationToken::new();
    let listeners = vec![
        Listener {
            tcp: plain,
            transport: Transport::Plain,
        },
        Listener {
            tcp: secure,
            transport: Transport::Tls(tls),
        },
    ];
    let mechanisms = Mechanisms {
        external: Some(Err("no peer certificate".into())),
        ..Mechanisms::default()
    };
    tokio::spawn(lagomorph::server::serve_with(
        listeners,
        broker.clone(),
        ServeOptions {
            max_connections: 100,
            mechanisms,
        },
        token.clone(),
    ));
    TlsBroker {
        plain: plain_addr,
        tls: tls_addr,
        broker,
        token,
    }
}

async fn lapin_connect(uri: &str, tls: OwnedTLSConfig) -> lapin::Result<Connection> {
    let runtime = lapin::runtime::default_runtime().expect("runtime");
    let connect =
        Connection::connect_with_config(uri, ConnectionProperties::default(), tls, runtime);
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .expect("lapin answers in time")
}

/// The mechanisms field of connection.start read over `stream`.
async fn mechanisms<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(mut s: S) -> String {
    s.write_all(PROTOCOL_HEADER).await.expect("header");
    let mut buf = BytesMut::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(f) = frame::decode(&mut buf, 1 << 20).expect("frame") {
            let Frame::Method {
                method: Method::ConnectionStart(m),
                ..
            } = f
            else {
                panic!("expected connection.start, got {f:?}");
            };
            return m.mechanisms.to_str().expect("utf-8").to_owned();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, s.read_buf(&mut buf))
            .await
            .expect("start in time")
            .expect("read");
        assert!(n > 0, "closed before connection.start");
    }
}

/// Connects with rustls and reads until the server answers or closes: the error text of a
/// refused handshake (rustls reports the server's alert), or `None` if connection.start came.
async fn handshake_outcome(b: &TlsBroker, pki: &Pki, identity: Option<&Pem>) -> Option<String> {
    let tcp = TcpStream::connect(b.tls).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let run = async {
        let mut s = pki.client(identity).connect(name, tcp).await?;
        // TLS 1.3 refuses a client certificate after the client's side finished: the alert
        // arrives on the first read.
        s.write_all(PROTOCOL_HEADER).await?;
        let mut b = [0u8; 64];
        s.read(&mut b).await
    };
    match tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("outcome in time")
    {
        Ok(n) if n > 0 => None,
        Ok(_) => Some("closed".into()),
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lapin_publishes_and_gets_over_amqps() {
    let pki = Pki::new();
    let b = start(&pki, ClientAuth::Optional, Duration::from_secs(5)).await;
    let uri = format!("amqps://guest:guest@localhost:{}/%2f", b.tls.port());
    let conn = lapin_connect(&uri, pki.lapin(None)).await.expect("amqps");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "tls-q".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let body = vec![7u8; 300_000];
    ch.basic_publish(
        "".into(),
        "tls-q".into(),
        BasicPublishOptions::default(),
        &body,
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let got = loop {
        if let Some(m) = ch
            .basic_get("tls-q".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            break m;
        }
    };
    assert_eq!(
        got.delivery.data, body,
        "a large body crosses TLS records intact"
    );
    conn.close(200, "bye".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_is_offered_on_tls_only_in_rabbitmq_order() {
    let pki = Pki::new();
    let b = start(&pki, ClientAuth::Optional, Duration::from_secs(5)).await;
    let plain = TcpStream::connect(b.plain).await.expect("plain");
    assert_eq!(mechanisms(plain).await, "AMQPLAIN PLAIN");
    for identity in [Some(&pki.client), None] {
        let tcp = TcpStream::connect(b.tls).await.expect("tls");
        let name = ServerName::try_from("localhost").expect("name");
        let s = pki
            .client(identity)
            .connect(name, tcp)
            .await
            .expect("handshake");
        assert_eq!(mechanisms(s).await, "EXTERNAL AMQPLAIN PLAIN");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_login_maps_the_certificate_to_its_user() {
    let pki = Pki::new();
    let b = start(&pki, ClientAuth::Optional, Duration::from_secs(5)).await;
    let uri = format!(
        "amqps://localhost:{}/%2f?auth_mechanism=external",
        b.tls.port()
    );
    let conn = lapin_connect(&uri, pki.lapin(Some(&pki.client)))
        .await
        .expect("EXTERNAL login");
    let ch = conn.create_channel().await.expect("channel");
    ch.queue_declare(
        "".into(),
        QueueDeclareOptions::default().into_exclusive(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    let users: Vec<String> = b
        .broker
        .connections()
        .iter()
        .map(|c| c.user.read().expect("lock").clone())
        .collect();
    assert_eq!(users, ["tls-user"]);
    // What /api/connections shows as `ssl` and `auth_mechanism`.
    let c = &b.broker.connections()[0];
    assert!(c.tls.load(std::sync::atomic::Ordering::Relaxed), "ssl");
    assert_eq!(c.auth_mechanism.get().copied(), Some("EXTERNAL"));

    // A certificate for a user that does not exist, and no certificate at all: refused as
    // RabbitMQ refuses them.
    for identity in [Some(&pki.nobody), None] {
        let err = lapin_connect(&uri, pki.lapin(identity))
            .await
            .expect_err("refused");
        assert!(err.to_string().contains(EXTERNAL_REFUSED), "{err}");
    }
}

trait Exclusive {
    fn into_exclusive(self) -> Self;
}

impl Exclusive for QueueDeclareOptions {
    fn into_exclusive(mut self) -> Self {
        self.exclusive = true;
        self
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_client_certificates_are_refused_in_the_handshake() {
    let pki = Pki::new();
    let b = start(&pki, ClientAuth::Optional, Duration::from_secs(5)).await;
    assert_eq!(handshake_outcome(&b, &pki, Some(&pki.client)).await, None);
    let expired = handshake_outcome(&b, &pki, Some(&pki.expired)).await;
    assert!(
        expired
            .as_deref()
            .is_some_and(|e| e.contains("CertificateExpired")),
        "RabbitMQ answers an expired certificate with alert certificate_expired: {expired:?}"
    );
    let untrusted = handshake_outcome(&b, &pki, Some(&pki.untrusted)).await;
    assert!(
        untrusted
            .as_deref()
            .is_some_and(|e| e.contains("UnknownCA")),
        "RabbitMQ answers an unknown issuer with alert unknown_ca: {untrusted:?}"
    );
    drop(b);

    let b = start(&pki, ClientAuth::Required, Duration::from_secs(5)).await;
    let missing = handshake_outcome(&b, &pki, None).await;
    assert!(
        missing
            .as_deref()
            .is_some_and(|e| e.contains("CertificateRequired")),
        "{missing:?}"
    );
    assert_eq!(handshake_outcome(&b, &pki, Some(&pki.client)).await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_text_client_on_the_tls_port_is_closed_at_once() {
    let pki = Pki::new();
    // A long handshake timeout: only the refusal of the first bytes can close it in time.
    let b = start(&pki, ClientAuth::None, Duration::from_secs(60)).await;
    let mut s = TcpStream::connect(b.tls).await.expect("connect");
    let started = Instant::now();
    s.write_all(PROTOCOL_HEADER).await.expect("header");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "closed within 5 s, not after the 60 s handshake timeout"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    // RabbitMQ answers with a fatal alert record too (0x15) and closes.
    assert_eq!(got.first(), Some(&0x15), "a TLS alert: {got:02x?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_client_on_the_tls_port_is_closed_after_the_handshake_timeout() {
    let pki = Pki::new();
    let b = start(&pki, ClientAuth::None, Duration::from_millis(300)).await;
    let mut s = TcpStream::connect(b.tls).await.expect("connect");
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "closed after the handshake timeout");
    assert!(b.broker.connections().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn management_serves_https() {
    let pki = Pki::new();
    let broker = Broker::new(Arc::new(MemoryStore::default()), BrokerOptions::default());
    let mut options = pki.options(ClientAuth::None, Duration::from_secs(5));
    options.alpn = vec![b"http/1.1".to_vec()];
    let tls = Tls::new(options).expect("tls");
    let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = tcp.local_addr().expect("addr");
    let listener = lagomorph::server::https::HttpsListener::new(tcp, tls).expect("https");
    let token = CancellationToken::new();
    tokio::spawn(lagomorph::management::serve_with(
        listener,
        broker,
        token.clone(),
        lagomorph::management::Options::default(),
    ));
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut s = pki
        .client(None)
        .connect(name, tcp)
        .await
        .expect("handshake");
    s.write_all(
        b"GET /api/health/checks/alarms HTTP/1.1\r\nHost: localhost\r\n\
          Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut response))
        .await
        .expect("response in time")
        .ok();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("{\"status\":\"ok\"}"), "{text}");
    token.cancel();
}

/// The certificate a new handshake with `addr` is served (DER).
async fn served_certificate(addr: SocketAddr, pki: &Pki) -> Vec<u8> {
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let s = pki
        .client(None)
        .connect(name, tcp)
        .await
        .expect("handshake");
    let certs = s
        .get_ref()
        .1
        .peer_certificates()
        .expect("server certificate");
    certs[0].as_ref().to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("pem")
        .as_ref()
        .to_vec()
}

fn write_config(path: &Path, pki: &Pki, amqp: u16, amqps: u16, http: u16) {
    let text = format!(
        "[amqp]\nlisteners = [\"127.0.0.1:{amqp}\"]\n\
         [management]\nlisten = \"127.0.0.1:{http}\"\n\
         [tls]\nenabled = true\nlisteners = [\"127.0.0.1:{amqps}\"]\n\
         cert_file = {:?}\nkey_file = {:?}\n",
        pki.path("server.pem"),
        pki.path("server.key"),
    );
    std::fs::write(path, text).expect("config");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_open_connections() {
    use std::process::{Command, Stdio};
    use support::{LogLines, free_ports};
    let pki = Pki::new();
    let data = tempfile::tempdir().expect("tmp");
    let [amqp, amqps, http] = free_ports();
    let config = pki.path("lagomorph.toml");
    write_config(&config, &pki, amqp, amqps, http);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lagomorph"))
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data.path())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let log = LogLines::of(&mut child);
    let wait_for = |what: &str| log.wait_for(what);
    let banner = wait_for("Lagomorph started");
    assert!(
        banner.contains(&format!("amqps://127.0.0.1:{amqps}")),
        "{banner}"
    );
    let addr: SocketAddr = format!("127.0.0.1:{amqps}").parse().expect("addr");
    let old_cert = der_of(&pki.server.cert);
    assert_eq!(served_certificate(addr, &pki).await, old_cert);

    let uri = format!("amqps://guest:guest@localhost:{amqps}/%2f");
    let old = lapin_connect(&uri, pki.lapin(None)).await.expect("amqps");
    let ch = old.create_channel().await.expect("channel");
    ch.queue_declare(
        "kept".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");

    // A new certificate (new key) from the same CA, then SIGHUP.
    let renewed = leaf(
        &pki.issuer,
        "localhost",
        &["localhost", "127.0.0.1"],
        true,
        false,
    );
    pki.write("server.pem", &renewed.cert);
    pki.write("server.key", &renewed.key);
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    wait_for("TLS certificate reloaded");
    let new_cert = der_of(&renewed.cert);
    assert_ne!(new_cert, old_cert);
    assert_eq!(
        served_certificate(addr, &pki).await,
        new_cert,
        "new handshakes get the new certificate"
    );

    // The connection made before the reload still works.
    ch.basic_publish(
        "".into(),
        "kept".into(),
        BasicPublishOptions::default(),
        b"after reload",
        BasicProperties::default(),
    )
    .await
    .expect("publish");
    let got = loop {
        if let Some(m) = ch
            .basic_get("kept".into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get on the old connection")
        {
            break m;
        }
    };
    assert_eq!(got.delivery.data, b"after reload");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}
