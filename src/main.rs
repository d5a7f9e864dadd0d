//! The `lagomorph` binary: parse flags, load configuration, open the store, recover, serve AMQP
//! (and the management API) until SIGINT or SIGTERM, then shut down gracefully. No logic here.

use clap::Parser;
use lagomorph::broker::{Broker, BrokerOptions, FlushPolicy, Limits, StallWatch, User};
use lagomorph::cli::{Cli, Command};
use lagomorph::config::{CertLoginFrom, Config, FlushMode, SanType, TlsConfig, TlsVerify};
use lagomorph::server::tls::{CertLogin, ClientAuth, SanKind, Tls, TlsOptions, TlsVersion};
use lagomorph::storage::{SledOptions, SledStore, Store};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// jemalloc, with the defaults set in `.cargo/config.toml` (one arena, unused pages given back
/// after 100 ms by a background thread); `_RJEM_MALLOC_CONF` overrides them at run time.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Exit status when the storage engine is stuck (EX_SOFTWARE).
const EXIT_STALLED: i32 = 70;

/// The storage engine has not finished a flush for `running`: every confirm waits on it, so
/// the broker would hang. Exit so a supervisor restarts it; whatever was confirmed is on disk.
/// Written to stderr as well, since exiting skips the log writer's final flush.
fn exit_on_stall(running: Duration) {
    let secs = running.as_secs();
    tracing::error!(
        seconds = secs,
        "a store flush has not finished; the storage engine is stuck, exiting so that a restart recovers"
    );
    eprintln!(
        "lagomorph: a store flush has run for {secs} s; the storage engine is stuck. Exiting \
         with status {EXIT_STALLED} so that a restart recovers (confirmed messages are on disk)."
    );
    std::process::exit(EXIT_STALLED);
}

/// How long connections get to close after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword { password }) = &cli.command {
        println!("{}", lagomorph::password::hash_password(password));
        return ExitCode::SUCCESS;
    }
    let env = |k: &str| std::env::var(k).ok();
    let config = match Config::load(&cli.overrides(), &env) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("lagomorph: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = lagomorph::logging::init(&config.log) {
        eprintln!("lagomorph: cannot initialise logging: {e}");
        return ExitCode::from(2);
    }
    // Certificates are read before anything starts: a bad file is a configuration error.
    let tls = match tls_configs(&config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("lagomorph: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lagomorph: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, tls)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lagomorph: {e}");
            ExitCode::from(1)
        }
    }
}

/// The AMQPS and HTTPS TLS configurations, when enabled.
struct TlsConfigs {
    amqps: Option<Arc<Tls>>,
    https: Option<Arc<Tls>>,
}

fn tls_options(t: &TlsConfig, client_auth: ClientAuth, alpn: Vec<Vec<u8>>) -> TlsOptions {
    let (v12, v13) = t.version_flags();
    TlsOptions {
        cert_file: t.cert_file.clone(),
        key_file: t.key_file.clone(),
        ca_file: (!t.ca_file.as_os_str().is_empty()).then(|| t.ca_file.clone()),
        client_auth,
        versions: [(v12, TlsVersion::V1_2), (v13, TlsVersion::V1_3)]
            .into_iter()
            .filter_map(|(on, v)| on.then_some(v))
            .collect(),
        cipher_suites: t.cipher_suites.clone(),
        handshake_timeout: Duration::from_millis(t.handshake_timeout_ms),
        alpn,
        login: match t.cert_login_from {
            CertLoginFrom::CommonName => CertLogin::CommonName,
            CertLoginFrom::DistinguishedName => CertLogin::DistinguishedName,
            CertLoginFrom::SubjectAlternativeName => CertLogin::SubjectAlternativeName {
                kind: match t.cert_login_san_type {
                    SanType::Dns => SanKind::Dns,
                    SanType::Ip => SanKind::Ip,
                    SanType::Email => SanKind::Email,
                    SanType::Uri => SanKind::Uri,
                },
                index: t.cert_login_san_index,
            },
        },
    }
}

fn tls_configs(config: &Config) -> Result<TlsConfigs, String> {
    let t = &config.tls;
    let amqps = if t.enabled {
        let auth = match t.verify {
            TlsVerify::None => ClientAuth::None,
            TlsVerify::Optional => ClientAuth::Optional,
            TlsVerify::Required => ClientAuth::Required,
        };
        let tls = Tls::new(tls_options(t, auth, Vec::new())).map_err(|e| format!("tls: {e}"))?;
        Some(tls)
    } else {
        None
    };
    let https = if config.management.tls {
        let alpn = vec![b"http/1.1".to_vec()];
        let tls = Tls::new(tls_options(t, ClientAuth::None, alpn))
            .map_err(|e| format!("management.tls: {e}"))?;
        Some(tls)
    } else {
        None
    };
    Ok(TlsConfigs { amqps, https })
}

async fn run(config: Config, tls: TlsConfigs) -> Result<(), String> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let store = SledStore::open_with(
        data_dir,
        SledOptions {
            cache_bytes: config.storage.cache_size_mb << 20,
            segment_bytes: config.storage.segment_size_mb << 20,
            compact_live_percent: config.storage.compact_live_percent,
            compact_bytes_per_flush: config.storage.compact_mb_per_flush << 20,
            ..SledOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let store: Arc<dyn Store> = Arc::new(store);
    let opts = BrokerOptions {
        default_vhost: config.default_vhost.clone(),
        users: config
            .users
            .iter()
            .map(|u| User {
                name: u.name.clone(),
                password_hash: u.password_hash.clone(),
                tags: u.tags.clone(),
            })
            .collect(),
        loopback_users: config.loopback_users.clone(),
        failed_login_delay: Duration::from_millis(config.failed_login_delay_ms),
        limits: Limits {
            frame_max: config.amqp.frame_max,
            channel_max: config.amqp.channel_max,
            heartbeat: config.amqp.heartbeat,
            max_message_size: config.amqp.max_message_size,
            consumer_timeout: (config.amqp.consumer_timeout > 0)
                .then(|| Duration::from_millis(config.amqp.consumer_timeout)),
        },
        flush: match config.storage.flush {
            FlushMode::Batch => FlushPolicy::Batch,
            FlushMode::Interval => {
                FlushPolicy::Interval(Duration::from_millis(config.storage.flush_interval_ms))
            }
        },
        queue_window: lagomorph::broker::MemoryWindow {
            messages: config.storage.queue_memory_window,
            bytes: usize::try_from(config.storage.queue_memory_window_mb << 20)
                .unwrap_or(usize::MAX),
        },
        queue_memory_budget: usize::try_from(config.storage.queue_memory_budget_mb << 20)
            .unwrap_or(usize::MAX),
        stall_watch: (config.storage.flush_stall_exit_secs > 0).then(|| StallWatch {
            limit: Duration::from_secs(config.storage.flush_stall_exit_secs),
            on_stall: Arc::new(exit_on_stall),
        }),
        clock: lagomorph::broker::Monotonic::default(),
    };
    let broker = Broker::new(store, opts);
    broker
        .recover(lagomorph::clock::now())
        .map_err(|e| format!("recovery failed: {e}"))?;
    use lagomorph::server::{Listener, ServeOptions, Transport};
    let mut listeners: Vec<Listener> = lagomorph::server::bind_all(&config.amqp.listeners)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|tcp| Listener {
            tcp,
            transport: Transport::Plain,
        })
        .collect();
    if let Some(amqps) = &tls.amqps {
        for tcp in lagomorph::server::bind_all(&config.tls.listeners)
            .await
            .map_err(|e| e.to_string())?
        {
            let transport = Transport::Tls(Arc::clone(amqps));
            listeners.push(Listener { tcp, transport });
        }
    }
    let bound: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.tcp.local_addr().ok())
        .collect();
    let bound_tls: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter(|l| matches!(l.transport, Transport::Tls(_)))
        .filter_map(|l| l.tcp.local_addr().ok())
        .collect();
    let addrs: Vec<String> = listeners
        .iter()
        .filter_map(|l| {
            let scheme = match l.transport {
                Transport::Plain => "amqp",
                Transport::Tls(_) => "amqps",
            };
            Some(format!("{scheme}://{}", l.tcp.local_addr().ok()?))
        })
        .collect();
    // Installed before anything can see the broker as started: a SIGTERM that arrives in
    // between must shut down gracefully, not kill the process with the default action.
    let signals = ShutdownSignals::install();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listeners = %addrs.join(", "),
        data_dir = %data_dir.display(),
        "Lagomorph started"
    );
    let token = CancellationToken::new();
    let mechanisms = lagomorph::session::Mechanisms {
        plain: config.amqp.auth_mechanisms.iter().any(|m| m == "PLAIN"),
        amqplain: config.amqp.auth_mechanisms.iter().any(|m| m == "AMQPLAIN"),
        // Filled in per TLS connection from its certificate.
        external: config
            .amqp
            .auth_mechanisms
            .iter()
            .any(|m| m == "EXTERNAL")
            .then(|| Err("no peer certificate".to_owned())),
    };
    let server = tokio::spawn(lagomorph::server::serve_with(
        listeners,
        broker.clone(),
        ServeOptions {
            max_connections: usize::try_from(config.amqp.max_connections).unwrap_or(usize::MAX),
            mechanisms,
        },
        token.clone(),
    ));
    let reloadable: Vec<Arc<Tls>> = tls.amqps.iter().chain(&tls.https).cloned().collect();
    if !reloadable.is_empty() {
        tokio::spawn(lagomorph::server::tls::reload_on_sighup(
            reloadable,
            token.clone(),
        ));
    }
    let disk_limit = config
        .disk
        .free_limit_bytes(lagomorph::process::total_memory());
    tracing::info!(disk_free_limit = disk_limit, "disk alarm armed");
    tokio::spawn(lagomorph::server::disk_monitor(
        broker.clone(),
        data_dir.clone(),
        Arc::new(lagomorph::server::DiskLimit::new(disk_limit)),
        Duration::from_millis(config.disk.check_interval_ms),
        token.clone(),
    ));
    tokio::spawn(lagomorph::server::budget_monitor(
        broker.clone(),
        token.clone(),
    ));
    let high_watermark = config
        .memory
        .high_watermark_bytes(lagomorph::process::total_memory());
    if let Some(wm) = high_watermark {
        tracing::info!(high_watermark_mb = wm >> 20, "memory alarm armed");
        tokio::spawn(lagomorph::server::memory_monitor(
            broker.clone(),
            wm,
            token.clone(),
        ));
    }
    let management = if config.management.enabled {
        let listener = tokio::net::TcpListener::bind(config.management.listen)
            .await
            .map_err(|e| format!("cannot listen on {}: {e}", config.management.listen))?;
        let opts = lagomorph::management::Options {
            amqp_listeners: bound,
            amqps_listeners: bound_tls,
            https: tls.https.is_some(),
            data_dir: Some(data_dir.clone()),
            mem_limit: high_watermark.unwrap_or(0),
            ..Default::default()
        };
        let (broker, token) = (broker.clone(), token.clone());
        Some(match &tls.https {
            Some(https) => {
                let listener =
                    lagomorph::server::https::HttpsListener::new(listener, Arc::clone(https))
                        .map_err(|e| e.to_string())?;
                tracing::info!(listener = %config.management.listen, "management API started (HTTPS)");
                tokio::spawn(lagomorph::management::serve_with(
                    listener, broker, token, opts,
                ))
            }
            None => {
                tracing::info!(listener = %config.management.listen, "management API started");
                tokio::spawn(lagomorph::management::serve_with(
                    listener, broker, token, opts,
                ))
            }
        })
    } else {
        None
    };
    let signal = signals.wait().await;
    tracing::info!(signal, "shutting down");
    token.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, server).await.is_err() {
        tracing::warn!("connections did not close in time");
    }
    if let Some(m) = management
        && let Ok(Err(e)) = m.await
    {
        tracing::warn!(error = %e, "management API stopped with an error");
    }
    broker.shutdown_store();
    tracing::info!("stopped");
    Ok(())
}

/// The next delivery of a signal, or never when it could not be listened for.
#[cfg(unix)]
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

/// SIGTERM and SIGINT (Ctrl-C), listened for from [`ShutdownSignals::install`] on.
struct ShutdownSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    int: Option<tokio::signal::unix::Signal>,
}

impl ShutdownSignals {
    fn install() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            ShutdownSignals {
                term: signal(SignalKind::terminate()).ok(),
                int: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        ShutdownSignals {}
    }

    /// Waits for the first of them; names it.
    async fn wait(self) -> &'static str {
        #[cfg(unix)]
        {
            let (mut term, mut int) = (self.term, self.int);
            tokio::select! {
                _ = recv(&mut int) => "SIGINT",
                _ = recv(&mut term) => "SIGTERM",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}
