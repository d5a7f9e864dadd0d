//! TLS for the AMQPS and HTTPS listeners: rustls through tokio-rustls, ring as the crypto
//! provider. Owns the certificate files, client-certificate verification, TLS versions and
//! cipher suites, the bounded handshake, reload on SIGHUP, and the EXTERNAL mechanism's user
//! name taken from a verified client certificate (see [`login_name`]).
//!
//! A [`Tls`] holds the current `rustls::ServerConfig` behind a lock that each handshake reads
//! once; [`Tls::reload`] builds a new one from the same files and swaps it in, so connections
//! already open keep the session they negotiated and new handshakes use the new certificate.
//! The sans-IO session never sees any of this: the driver hands it plain bytes, and the name
//! the certificate maps to as a [`crate::session::Mechanisms`] value.

mod cert_login;

pub use cert_login::{CertLogin, SanKind, login_name};

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

pub use tokio_rustls::server::TlsStream;

/// Whether and how clients present certificates (RabbitMQ's `verify` and
/// `fail_if_no_peer_cert`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificate is asked for (`verify_none`).
    None,
    /// One is asked for and verified against the CA file when given; a client without one is
    /// still accepted (`verify_peer`, `fail_if_no_peer_cert = false`).
    Optional,
    /// A verified client certificate is required (`fail_if_no_peer_cert = true`).
    Required,
}

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsVersion {
    /// TLS 1.2.
    V1_2,
    /// TLS 1.3.
    V1_3,
}

/// Everything a TLS listener is built from.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to (needed unless
    /// `client_auth` is [`ClientAuth::None`]).
    pub ca_file: Option<PathBuf>,
    /// Client certificates.
    pub client_auth: ClientAuth,
    /// Versions offered; empty means both.
    pub versions: Vec<TlsVersion>,
    /// Cipher suites by their IANA names as rustls spells them (`TLS13_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`); empty means rustls's defaults, all of them
    /// forward-secret AEAD suites.
    pub cipher_suites: Vec<String>,
    /// A client must finish the TLS handshake within this time (RabbitMQ's
    /// `ssl_handshake_timeout`, 5 s).
    pub handshake_timeout: Duration,
    /// ALPN protocols to offer (`http/1.1` for the management API; none for AMQP).
    pub alpn: Vec<Vec<u8>>,
    /// How a verified client certificate names its user for EXTERNAL.
    pub login: CertLogin,
}

/// Why a TLS configuration could not be built: the message names the file or setting.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// A TLS listener's configuration, reloadable. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Tls {
    options: TlsOptions,
    current: RwLock<Arc<ServerConfig>>,
}

/// A finished server-side handshake: the stream, and the EXTERNAL user name of a verified
/// client certificate (`None` without one, `Some(Err(why))` when it names no user).
pub type Accepted = (TlsStream<TcpStream>, Option<Result<String, String>>);

impl Tls {
    /// Reads the files and builds the configuration.
    pub fn new(options: TlsOptions) -> Result<Arc<Tls>, TlsError> {
        let config = build(&options)?;
        Ok(Arc::new(Tls {
            options,
            current: RwLock::new(Arc::new(config)),
        }))
    }

    /// Reads the files again and swaps the new configuration in for new handshakes; on error
    /// the old one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = Arc::new(build(&self.options)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// The options it was built from.
    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        tokio_rustls::TlsAcceptor::from(config)
    }

    /// Runs the server side of the handshake on `tcp`, for at most the handshake timeout. A
    /// client that does not speak TLS (a plain AMQP client on this port) fails at its first
    /// bytes: rustls answers with an alert and the socket is closed.
    pub async fn accept(&self, tcp: TcpStream) -> io::Result<Accepted> {
        let handshake = self.acceptor().accept(tcp);
        let stream = tokio::time::timeout(self.options.handshake_timeout, handshake)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        let login = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|leaf| login_name(leaf.as_ref(), &self.options.login));
        Ok((stream, login))
    }
}

/// The crypto provider with the configured cipher suites.
fn provider(options: &TlsOptions) -> Result<rustls::crypto::CryptoProvider, TlsError> {
    let mut provider = rustls::crypto::ring::default_provider();
    if options.cipher_suites.is_empty() {
        return Ok(provider);
    }
    let name = |s: &rustls::SupportedCipherSuite| s.suite().as_str().unwrap_or("").to_owned();
    for wanted in &options.cipher_suites {
        if !provider
            .cipher_suites
            .iter()
            .any(|s| name(s).eq_ignore_ascii_case(wanted))
        {
            let known: Vec<String> = provider.cipher_suites.iter().map(name).collect();
            return Err(TlsError(format!(
                "unknown cipher suite `{wanted}`, expected some of {}",
                known.join(", ")
            )));
        }
    }
    provider.cipher_suites.retain(|s| {
        options
            .cipher_suites
            .iter()
            .any(|w| name(s).eq_ignore_ascii_case(w))
    });
    Ok(provider)
}

fn build(options: &TlsOptions) -> Result<ServerConfig, TlsError> {
    let provider = Arc::new(provider(options)?);
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if options.versions.is_empty() || options.versions.contains(&TlsVersion::V1_2) {
        versions.push(&rustls::version::TLS12);
    }
    if options.versions.is_empty() || options.versions.contains(&TlsVersion::V1_3) {
        versions.push(&rustls::version::TLS13);
    }
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
        .map_err(|e| TlsError(format!("TLS versions and cipher suites do not fit: {e}")))?;
    let builder = match options.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let ca = options.ca_file.as_deref().ok_or_else(|| {
                TlsError("client certificates are verified but no CA file is given".into())
            })?;
            let mut roots = RootCertStore::empty();
            for cert in certificates(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if auth == ClientAuth::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError(format!("{}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = certificates(&options.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&options.key_file).map_err(|e| {
        TlsError(format!(
            "{}: no private key: {e}",
            options.key_file.display()
        ))
    })?;
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError(format!("{}: {e}", options.cert_file.display())))?;
    config.alpn_protocols = options.alpn.clone();
    Ok(config)
}

/// Every certificate in a PEM file; at least one.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reloads every TLS configuration on SIGHUP until `token` is cancelled; a failed reload is
/// logged and the old certificate stays in use. Unix only.
pub async fn reload_on_sighup(configs: Vec<Arc<Tls>>, token: tokio_util::sync::CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; TLS certificates will not be reloaded");
            return;
        };
        loop {
            tokio::select! {
                r = hup.recv() => if r.is_none() { return },
                _ = token.cancelled() => return,
            }
            for tls in &configs {
                match tls.reload() {
                    Ok(()) => tracing::info!(
                        cert = %tls.options.cert_file.display(),
                        "TLS certificate reloaded"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "TLS reload failed; the old certificate stays")
                    }
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (configs, token);
    }
}
