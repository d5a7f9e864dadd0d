//! The `lagomorph` binary: parse flags, load configuration, open the store, recover, serve AMQP
//! (and the management API) until SIGINT or SIGTERM, then shut down gracefully. No logic here.

use clap::Parser;
use lagomorph::broker::{Broker, BrokerOptions, FlushPolicy, Limits, StallWatch, User};
use lagomorph::cli::{Cli, Command};
use lagomorph::config::{Config, FlushMode};
use lagomorph::storage::{SledOptions, SledStore, Store};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

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
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("lagomorph: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(config: Config) -> Result<(), String> {
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
    };
    let broker = Broker::new(store, opts);
    broker
        .recover(lagomorph::clock::now())
        .map_err(|e| format!("recovery failed: {e}"))?;
    let listeners = lagomorph::server::bind_all(&config.amqp.listeners)
        .await
        .map_err(|e| e.to_string())?;
    let bound: Vec<std::net::SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let addrs: Vec<String> = bound.iter().map(|a| a.to_string()).collect();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        listeners = %addrs.join(", "),
        data_dir = %data_dir.display(),
        "Lagomorph started"
    );
    let token = CancellationToken::new();
    let server = tokio::spawn(lagomorph::server::serve(
        listeners,
        broker.clone(),
        usize::try_from(config.amqp.max_connections).unwrap_or(usize::MAX),
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
        tracing::info!(listener = %config.management.listen, "management API started");
        Some(tokio::spawn(lagomorph::management::serve_with(
            listener,
            broker.clone(),
            token.clone(),
            lagomorph::management::Options {
                amqp_listeners: bound,
                data_dir: Some(data_dir.clone()),
                mem_limit: high_watermark.unwrap_or(0),
                ..Default::default()
            },
        )))
    } else {
        None
    };
    let signal = shutdown_signal().await;
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

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
