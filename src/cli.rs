//! The command line: flags that override the configuration, and the `hash-password` helper.
//!
//! This module owns argument parsing only (clap derive). It turns flags into
//! [`config::Overrides`](crate::config::Overrides) and leaves merging and validation to
//! [`Config::load`](crate::config::Config::load); it imports nothing but [`crate::config`].
//! Environment variables are deliberately not read through clap's `env` feature: `Config::load`
//! reads them through an injected lookup, so precedence is testable and a bad value names its
//! variable.
//!
//! `main` does: `let cli = Cli::parse();` then either `command.run(&mut stdout)` or
//! `Config::load(&cli.overrides(), &|k| std::env::var(k).ok())`. clap exits with code 2 on a
//! malformed flag, the same code as a bad configuration.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Overrides, hash_password};

/// Text shown after `--help`: where else settings come from.
const AFTER_HELP: &str = "\
Settings come from, lowest to highest precedence: built-in defaults, the config file
(--config, else $LAGOMORPH_CONFIG, else none), environment variables, then flags.

Environment variables:
  LAGOMORPH_CONFIG               config file
  LAGOMORPH_LISTEN               amqp.listeners, comma-separated addresses
  LAGOMORPH_FRAME_MAX            amqp.frame_max
  LAGOMORPH_CHANNEL_MAX          amqp.channel_max
  LAGOMORPH_HEARTBEAT            amqp.heartbeat
  LAGOMORPH_MAX_MESSAGE_SIZE     amqp.max_message_size
  LAGOMORPH_MAX_CONNECTIONS      amqp.max_connections
  LAGOMORPH_CONSUMER_TIMEOUT     amqp.consumer_timeout (ms, 0 = off)
  LAGOMORPH_DATA_DIR             storage.data_dir
  LAGOMORPH_FLUSH                storage.flush (batch | interval)
  LAGOMORPH_FLUSH_INTERVAL_MS    storage.flush_interval_ms
  LAGOMORPH_CACHE_SIZE_MB        storage.cache_size_mb
  LAGOMORPH_QUEUE_MEMORY_WINDOW  storage.queue_memory_window
  LAGOMORPH_QUEUE_MEMORY_WINDOW_MB
                                 storage.queue_memory_window_mb
  LAGOMORPH_QUEUE_MEMORY_BUDGET_MB
                                 storage.queue_memory_budget_mb
  LAGOMORPH_FLUSH_STALL_EXIT_SECS
                                 storage.flush_stall_exit_secs (0: never exit)
  LAGOMORPH_SEGMENT_SIZE_MB      storage.segment_size_mb
  LAGOMORPH_DEFAULT_VHOST        default_vhost
  LAGOMORPH_LOG_LEVEL            log.level
  LAGOMORPH_LOG_FORMAT           log.format (text | json)
  LAGOMORPH_MANAGEMENT_ENABLED   management.enabled (true | false)
  LAGOMORPH_MANAGEMENT_LISTEN    management.listen
  LAGOMORPH_HIGH_WATERMARK_MB    memory.high_watermark_mb
  LAGOMORPH_DISK_FREE_LIMIT      disk.free_limit (50MB, 2GiB or bytes)
  LAGOMORPH_TLS_ENABLED          tls.enabled (true | false)
  LAGOMORPH_TLS_LISTEN           tls.listeners, comma-separated
  LAGOMORPH_TLS_CERT_FILE        tls.cert_file
  LAGOMORPH_TLS_KEY_FILE         tls.key_file
  LAGOMORPH_TLS_CA_FILE          tls.ca_file

A bad configuration is reported with the key at fault and exit code 2.";

/// `lagomorph [FLAGS] [COMMAND]`: runs the broker, or a helper command.
#[derive(Parser, Debug, Clone, PartialEq, Eq)]
#[command(name = "lagomorph", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// Config file (TOML); without one, built-in defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (storage.data_dir).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// AMQP listen address, IPv4 or IPv6, e.g. 0.0.0.0:5672; repeat for several. Replaces
    /// amqp.listeners.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,
    /// Log level or RUST_LOG-style directives, e.g. debug or info,lagomorph::server=trace.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Management HTTP listen address (management.listen).
    #[arg(long, value_name = "ADDR")]
    pub management_listen: Option<SocketAddr>,
    /// A helper command instead of running the broker.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Helper commands; without one, `lagomorph` runs the broker.
#[derive(Subcommand, Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Print a salted password hash (RabbitMQ's SHA-256 scheme) for a user in the config file.
    HashPassword {
        /// The password to hash. It may start with '-'.
        #[arg(allow_hyphen_values = true)]
        password: String,
    },
}

impl Cli {
    /// The flags as overrides for [`Config::load`](crate::config::Config::load).
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            data_dir: self.data_dir.clone(),
            listen: self.listen.clone(),
            log_level: self.log_level.clone(),
            management_listen: self.management_listen,
        }
    }
}

impl Command {
    /// Runs the command, writing its output (one line) to `out`.
    pub fn run(&self, out: &mut dyn std::io::Write) -> std::io::Result<()> {
        match self {
            Command::HashPassword { password } => writeln!(out, "{}", hash_password(password)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ENV_VARS, verify_password};
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_overrides() {
        let cli = Cli::try_parse_from([
            "lagomorph",
            "--config",
            "/etc/lagomorph.toml",
            "--data-dir",
            "/var/lib/lagomorph",
            "--listen",
            "0.0.0.0:5673",
            "--listen",
            "[::]:5673",
            "--log-level",
            "debug",
            "--management-listen",
            "127.0.0.1:15673",
        ])
        .expect("valid flags");
        let o = cli.overrides();
        assert_eq!(o.config, Some(PathBuf::from("/etc/lagomorph.toml")));
        assert_eq!(o.data_dir, Some(PathBuf::from("/var/lib/lagomorph")));
        let expected: Vec<SocketAddr> = vec![
            "0.0.0.0:5673".parse().expect("addr"),
            "[::]:5673".parse().expect("addr"),
        ];
        assert_eq!(o.listen, expected);
        assert_eq!(o.log_level.as_deref(), Some("debug"));
        assert_eq!(
            o.management_listen,
            Some("127.0.0.1:15673".parse().expect("addr"))
        );
        assert_eq!(cli.command, None);
    }

    #[test]
    fn no_flags_no_overrides() {
        let cli = Cli::try_parse_from(["lagomorph"]).expect("no flags");
        let o = cli.overrides();
        assert!(o.config.is_none() && o.data_dir.is_none() && o.listen.is_empty());
        assert!(o.log_level.is_none() && o.management_listen.is_none());
    }

    #[test]
    fn bad_listen_address_is_a_usage_error() {
        let err = Cli::try_parse_from(["lagomorph", "--listen", "localhost"])
            .expect_err("not a socket address");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--listen"), "{err}");
    }

    #[test]
    fn hash_password_prints_a_verifiable_hash() {
        let cli = Cli::try_parse_from(["lagomorph", "hash-password", "-s3cret"]).expect("valid");
        let Some(command) = cli.command else {
            panic!("expected a command");
        };
        let mut out = Vec::new();
        command.run(&mut out).expect("write to a Vec");
        let line = String::from_utf8(out).expect("utf-8");
        assert!(line.ends_with('\n'));
        assert!(verify_password(line.trim_end(), "-s3cret"), "{line}");
    }

    #[test]
    fn help_lists_every_environment_variable() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains(crate::config::ENV_CONFIG));
        for var in ENV_VARS {
            assert!(
                help.contains(var.name),
                "--help does not mention {}",
                var.name
            );
            assert!(
                help.contains(var.key),
                "--help does not mention {}",
                var.key
            );
        }
    }
}
