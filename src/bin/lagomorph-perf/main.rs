//! `lagomorph-perf`: the project's AMQP 0-9-1 load generator, for Lagomorph and RabbitMQ alike.
//!
//! - [`cli`]: flags; [`topology`]: what a run declares and where messages go;
//! - [`client`]: a small client on the project's codec; [`producer`], [`consumer`]: the loops;
//! - [`scan`]: the read fast path for deliver/publish, header and body frames;
//! - [`stats`], [`histogram`]: counters, body format, continuity and latency;
//! - [`run`]: a load run end to end; [`report`]: live rates and the summary (text or JSON);
//! - [`sink`]: a discard server for the tool's own ceiling, [`relay`] its forwarding mode (the
//!   latency floor); [`connections`]: many idle connections.
//!
//! Exit code: 0 for a clean run, 1 when messages were lost, duplicated, reordered or an error
//! occurred, 2 for bad flags.

mod cli;
mod client;
mod connections;
mod consumer;
mod delayed;
mod histogram;
mod producer;
mod relay;
mod report;
mod rpc;
mod run;
mod scan;
mod sink;
mod stats;
mod stream;
mod topology;

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lagomorph-perf: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    if (cli.tls_ca.is_some() || cli.tls_insecure)
        && let Err(e) = stream::configure(cli.tls_ca.as_deref(), cli.tls_insecure)
    {
        eprintln!("lagomorph-perf: TLS: {e}");
        return ExitCode::from(2);
    }
    match cli.command {
        Some(Command::Sink(a)) => {
            let listener = match tokio::net::TcpListener::bind(a.listen).await {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("lagomorph-perf sink: cannot listen on {}: {e}", a.listen);
                    return ExitCode::from(1);
                }
            };
            // The real address, so `--listen 127.0.0.1:0` is usable (tests read this line).
            match listener.local_addr() {
                Ok(addr) => eprintln!("sink: listening on {addr}"),
                Err(_) => eprintln!("sink: listening on {}", a.listen),
            }
            let stop = CancellationToken::new();
            if a.time > 0.0 {
                let stop = stop.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_secs_f64(a.time)).await;
                    stop.cancel();
                });
            }
            tokio::select! {
                _ = sink::serve(listener, stop.clone(), a.relay.then(Default::default)) => {}
                _ = tokio::signal::ctrl_c() => stop.cancel(),
            }
            ExitCode::SUCCESS
        }
        Some(Command::Rpc(a)) => match rpc::run(&a).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lagomorph-perf rpc: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Delayed(a)) => match delayed::run(&a).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lagomorph-perf delayed: {e}");
                ExitCode::from(1)
            }
        },
        Some(Command::Connections(a)) => match connections::run(&a).await {
            Ok(s) => {
                if a.json {
                    println!("{}", s.json());
                } else {
                    print!("{}", s.text());
                }
                if s.opened == s.requested {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("lagomorph-perf: {e}");
                ExitCode::from(1)
            }
        },
        None => {
            if let Err(e) = cli.run.validate() {
                eprintln!("lagomorph-perf: {e}");
                return ExitCode::from(2);
            }
            match run::run(&cli.run).await {
                Ok(s) => {
                    if cli.run.json {
                        println!("{}", s.json());
                    } else {
                        print!("{}", s.text());
                    }
                    if s.clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => {
                    eprintln!("lagomorph-perf: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
