//! Broker configuration: plain data loaded from a TOML file, `LAGOMORPH_*` environment variables and
//! command-line overrides.
//!
//! This module owns the shape of every setting, its default, its validation, the precedence rules
//! (built-in defaults, then the file, then the environment, then flags; each later source wins) and
//! the RabbitMQ-compatible password hashes that the file stores. It imports nothing else of the
//! crate and does no I/O beyond reading the config file: `main` calls [`Config::load`] and hands the
//! validated [`Config`] to the server and the management API.
//!
//! Every error names what is wrong and where (`config key `amqp.frame_max`: ...`, `unknown key
//! `amqp.bogus` in ./lagomorph.toml`, `environment variable LAGOMORPH_HEARTBEAT: ...`); `main`
//! prints it and exits with [`ConfigError::EXIT_CODE`].
//!
//! The shipped `config/lagomorph.toml` lists every key with its default; `tests/config.rs` checks
//! that it parses to exactly [`Config::default`].

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

mod env;
mod file;
mod tls_disk;
pub use env::{ENV_VARS, EnvVar};
use file::{parse_toml, read_file};
pub use tls_disk::{
    ByteSize, CertLoginFrom, DiskConfig, SanType, TlsConfig, TlsVerify, parse_byte_size,
};

pub use crate::password::{
    hash_password, hash_password_with_salt, is_password_hash, verify_password,
};
use serde::{Deserialize, Serialize};

/// The IANA port for AMQP 0-9-1 without TLS.
pub const DEFAULT_AMQP_PORT: u16 = 5672;
/// The IANA port for AMQP 0-9-1 over TLS (AMQPS).
pub const DEFAULT_AMQPS_PORT: u16 = 5671;
/// Login mechanisms the broker knows (`amqp.auth_mechanisms`).
pub const KNOWN_MECHANISMS: &[&str] = &["PLAIN", "AMQPLAIN", "EXTERNAL"];
/// RabbitMQ's management HTTP port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 15672;
/// The smallest `amqp.frame_max` we accept. AMQP 0-9-1 (section 4.2.3) lets a peer assume frames
/// of at least 4096 octets, so advertising less would break conforming clients.
pub const MIN_FRAME_MAX: u32 = 4096;
/// The largest `amqp.frame_max` we accept (2 GiB); frame sizes beyond that overflow the signed
/// 32-bit sizes many clients use.
pub const MAX_FRAME_MAX: u32 = 1 << 31;
/// The largest `amqp.max_message_size` we accept: RabbitMQ's hard cap of 512 MiB.
pub const MAX_MESSAGE_SIZE_LIMIT: u32 = 512 * 1024 * 1024;
/// AMQP short strings (virtual host names) hold at most 255 octets.
const MAX_SHORTSTR: usize = 255;
/// User tags RabbitMQ knows; `none` is accepted as an explicit "no tags".
pub const KNOWN_TAGS: &[&str] = &[
    "administrator",
    "management",
    "monitoring",
    "policymaker",
    "impersonator",
    "none",
];
/// Log levels accepted as bare words in `log.level` (other directives need `target=level`).
const LOG_LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// The built-in `guest` user's password hash: RabbitMQ's SHA-256 scheme applied to `"guest"` with
/// the fixed salt `ee cb b8 ba`.
///
/// The salt is fixed, not drawn at start-up, so that [`Config::default`] is deterministic and equal
/// to the shipped `config/lagomorph.toml`. That costs nothing: the password is public anyway, and
/// the default listeners are loopback only.
pub const DEFAULT_GUEST_PASSWORD_HASH: &str = "7su4utwuXx30jUmgTK5FXeRSfJJppGv5BwoHzo1kP779y9v/";

/// Environment variable naming the config file, used when `--config` is not given.
pub const ENV_CONFIG: &str = "LAGOMORPH_CONFIG";

/// The whole broker configuration. Every field has a default, so an empty file (or none) is valid.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The AMQP 0-9-1 listeners and the limits negotiated with clients.
    pub amqp: AmqpConfig,
    /// Where and how messages and definitions are persisted.
    pub storage: StorageConfig,
    /// The users seeded on first start (each with full rights on `default_vhost`). Giving any
    /// `[[users]]` in the file replaces the built-in `guest`. Once the data directory holds
    /// users (after the first start), these are ignored: users then live in the store and
    /// change through the management API and definitions import.
    pub users: Vec<UserConfig>,
    /// The virtual host created at first start (RabbitMQ's is `/`).
    pub default_vhost: String,
    /// Users who may log in only from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Milliseconds a failed login (AMQP or HTTP) waits before it is answered.
    pub failed_login_delay_ms: u64,
    /// Log level and format.
    pub log: LogConfig,
    /// The HTTP management API.
    pub management: ManagementConfig,
    /// The memory alarm that blocks publishers.
    pub memory: MemoryConfig,
    /// The disk alarm that blocks publishers.
    pub disk: DiskConfig,
    /// TLS: the AMQPS listeners, certificates and client-certificate logins.
    pub tls: TlsConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            amqp: AmqpConfig::default(),
            storage: StorageConfig::default(),
            users: vec![UserConfig::default()],
            default_vhost: "/".to_owned(),
            loopback_users: vec!["guest".to_owned()],
            failed_login_delay_ms: 1000,
            log: LogConfig::default(),
            management: ManagementConfig::default(),
            memory: MemoryConfig::default(),
            disk: DiskConfig::default(),
            tls: TlsConfig::default(),
        }
    }
}

/// `[amqp]`: listeners and the limits the broker proposes in connection.tune.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpConfig {
    /// Addresses to accept AMQP connections on. The default is both loopback addresses,
    /// `127.0.0.1:5672` and `[::1]:5672`, because clients resolve `localhost` to either.
    pub listeners: Vec<SocketAddr>,
    /// Largest frame, in octets, proposed in connection.tune (4096..=2^31).
    pub frame_max: u32,
    /// Most channels per connection proposed in connection.tune (1..=65535).
    pub channel_max: u16,
    /// Heartbeat interval in seconds proposed in connection.tune; 0 turns heartbeats off.
    pub heartbeat: u16,
    /// Largest message body in octets; a bigger publish is refused (at most 512 MiB).
    pub max_message_size: u32,
    /// Most simultaneous client connections; further connections wait to be accepted.
    pub max_connections: u32,
    /// Login mechanisms offered, any of [`KNOWN_MECHANISMS`] (RabbitMQ's `auth_mechanisms`);
    /// EXTERNAL is offered on TLS connections only.
    pub auth_mechanisms: Vec<String>,
    /// How long in milliseconds a delivery may stay unacknowledged before its channel is
    /// closed with 406 PRECONDITION_FAILED and its messages requeued (RabbitMQ's
    /// `consumer_timeout`, 30 minutes by default); 0 turns the check off. Queues may set their
    /// own with `x-consumer-timeout` or a `consumer-timeout` policy.
    pub consumer_timeout: u64,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        AmqpConfig {
            listeners: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_AMQP_PORT),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DEFAULT_AMQP_PORT),
            ],
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            max_connections: 10_000,
            auth_mechanisms: vec!["PLAIN".to_owned(), "AMQPLAIN".to_owned()],
            consumer_timeout: 1_800_000,
        }
    }
}

/// `[storage]`: the data directory and the durability policy.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for definitions and persistent messages; relative paths are relative to the
    /// working directory. Created if missing.
    pub data_dir: PathBuf,
    /// When writes reach the disk, see [`FlushMode`].
    pub flush: FlushMode,
    /// With [`FlushMode::Interval`]: the longest time in milliseconds between fsyncs (at least 1).
    /// Ignored with [`FlushMode::Batch`].
    pub flush_interval_ms: u64,
    /// sled's page cache in MiB (definitions and the message index; bodies live in the body log).
    pub cache_size_mb: u64,
    /// Messages kept in RAM per queue; older ones are paged out to disk and read back on demand,
    /// so a long backlog does not grow memory (at least 1).
    pub queue_memory_window: usize,
    /// Message body MiB kept in RAM per queue, besides the message count above: whichever is
    /// reached first pages the rest out (at least 1).
    pub queue_memory_window_mb: u64,
    /// MiB of ready messages that all queues together keep in memory (bodies plus about 300
    /// bytes each): the global budget each queue's window comes out of, lowered while the rest
    /// of the process holds memory beyond it (down to an eighth; see
    /// [`crate::broker::MemoryBudget`]) (at least 1).
    pub queue_memory_budget_mb: u64,
    /// Seconds a store flush may run before the broker takes its storage engine for stuck,
    /// logs it and exits with status 70 so that its supervisor restarts it (what was confirmed
    /// is on disk); 0 waits forever.
    pub flush_stall_exit_secs: u64,
    /// Largest body-log segment file in MiB (1..=1024): persistent message bodies are appended
    /// to segments of this size, and a segment is deleted once none of its messages is live.
    pub segment_size_mb: u64,
    /// A full segment whose live messages take less than this percentage of it is compacted
    /// (its live messages copied forward so the file can go); 0 turns compaction off (0..=100).
    pub compact_live_percent: u8,
    /// MiB that compaction may copy per group commit at most (at least 1), so that it never
    /// holds confirms up for long.
    pub compact_mb_per_flush: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            flush: FlushMode::Batch,
            flush_interval_ms: 0,
            cache_size_mb: 16,
            queue_memory_window: 10_000,
            queue_memory_window_mb: 32,
            queue_memory_budget_mb: 256,
            flush_stall_exit_secs: 120,
            segment_size_mb: 64,
            compact_live_percent: 50,
            compact_mb_per_flush: 4,
        }
    }
}

/// When persistent writes are forced to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlushMode {
    /// fsync once per batch of writes before confirming any publish in it (group commit): a
    /// confirmed message survives a crash. The default.
    #[default]
    Batch,
    /// fsync at most every `storage.flush_interval_ms`; confirms wait for that fsync, so
    /// throughput rises and confirm latency grows by up to the interval.
    Interval,
}

impl FlushMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            FlushMode::Batch => "batch",
            FlushMode::Interval => "interval",
        }
    }
}

impl fmt::Display for FlushMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FlushMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "batch" => Ok(FlushMode::Batch),
            "interval" => Ok(FlushMode::Interval),
            _ => Err(format!(
                "unknown flush mode `{s}`, expected `batch` or `interval`"
            )),
        }
    }
}

/// One `[[users]]` entry. `name` and `password_hash` are required; `tags` defaults to none.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    /// Login name (PLAIN / AMQPLAIN user).
    pub name: String,
    /// RabbitMQ-format salted hash, see [`hash_password`]; `lagomorph hash-password` prints one.
    pub password_hash: String,
    /// RabbitMQ user tags, each one of [`KNOWN_TAGS`].
    #[serde(default)]
    pub tags: Vec<String>,
}

impl UserConfig {
    /// A user with a freshly salted hash of `password`.
    pub fn new(name: &str, password: &str, tags: &[&str]) -> Self {
        UserConfig {
            name: name.to_owned(),
            password_hash: hash_password(password),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    /// Whether the user carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    /// Whether `password` is this user's password.
    pub fn check_password(&self, password: &str) -> bool {
        verify_password(&self.password_hash, password)
    }
}

/// The built-in user: `guest` / `guest`, tagged `administrator`, as RabbitMQ ships.
impl Default for UserConfig {
    fn default() -> Self {
        UserConfig {
            name: "guest".to_owned(),
            password_hash: DEFAULT_GUEST_PASSWORD_HASH.to_owned(),
            tags: vec!["administrator".to_owned()],
        }
    }
}

/// `[log]`: what is logged and how.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level (`error`, `warn`, `info`, `debug`, `trace`, `off`) or `RUST_LOG`-style directives
    /// such as `info,lagomorph::server=debug`. Targets need `=level`.
    pub level: String,
    /// Output format on stderr.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines. The default.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl LogFormat {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!(
                "unknown log format `{s}`, expected `text` or `json`"
            )),
        }
    }
}

/// `[management]`: the HTTP management API.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// Whether to serve the management API at all.
    pub enabled: bool,
    /// Address of the management HTTP listener.
    pub listen: SocketAddr,
    /// Serve HTTPS instead of HTTP, with `tls.cert_file` and `tls.key_file` (no client
    /// certificates are asked for).
    pub tls: bool,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        ManagementConfig {
            enabled: true,
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_MANAGEMENT_PORT),
            tls: false,
        }
    }
}

/// `[memory]`: the memory alarm. Above the watermark, publishing connections are blocked
/// (connection.blocked) until memory falls again, as in RabbitMQ.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// The watermark in MiB. 0, the default, means automatic: 40% of the machine's RAM,
    /// RabbitMQ's default (`vm_memory_high_watermark.relative = 0.4`).
    pub high_watermark_mb: u64,
}

impl MemoryConfig {
    /// The watermark in bytes, given the machine's total RAM (`None` if it cannot be read).
    /// `None` means no memory alarm: automatic mode on a machine whose RAM is unknown.
    pub fn high_watermark_bytes(&self, total_ram_bytes: Option<u64>) -> Option<u64> {
        if self.high_watermark_mb > 0 {
            Some(self.high_watermark_mb.saturating_mul(1024 * 1024))
        } else {
            total_ram_bytes.map(|ram| ram / 5 * 2)
        }
    }
}

/// Settings given on the command line; each, when present, beats the file and the environment.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--config`: the config file (beats `LAGOMORPH_CONFIG`).
    pub config: Option<PathBuf>,
    /// `--data-dir`: `storage.data_dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen` (repeatable): when non-empty, replaces `amqp.listeners`.
    pub listen: Vec<SocketAddr>,
    /// `--log-level`: `log.level`.
    pub log_level: Option<String>,
    /// `--management-listen`: `management.listen`.
    pub management_listen: Option<SocketAddr>,
}

/// Why a configuration was refused. Each message names the key, variable or file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("invalid TOML in {origin} at line {line}, column {column}: {message}")]
    Syntax {
        /// Where the text came from (a path, or "TOML input").
        origin: String,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// The file has a key the broker does not know (often a typo).
    #[error("unknown key `{key}` in {origin}")]
    UnknownKey {
        /// Dotted path of the key, e.g. `amqp.bogus` or `users[0].pasword`.
        key: String,
        /// Where the text came from.
        origin: String,
    },
    /// A value in the file has the wrong type or cannot be parsed.
    #[error("config key `{key}` in {origin}: {message}")]
    BadValue {
        /// Dotted path of the key.
        key: String,
        /// Where the text came from.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A `LAGOMORPH_*` environment variable cannot be parsed.
    #[error("environment variable {var}: {message}")]
    BadEnv {
        /// The variable, e.g. `LAGOMORPH_HEARTBEAT`.
        var: String,
        /// What is wrong.
        message: String,
    },
    /// The merged configuration breaks a rule (range, uniqueness, known names).
    #[error("config key `{key}`: {message}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// What is wrong, with the offending value.
        message: String,
    },
}

impl ConfigError {
    /// The process exit code for a bad configuration.
    pub const EXIT_CODE: i32 = 2;

    /// The config key at fault, when the error is about one key.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } | ConfigError::BadEnv { .. } => {
                None
            }
        }
    }
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

impl Config {
    /// Builds the configuration: built-in defaults, then the file (`overrides.config`, else
    /// `$LAGOMORPH_CONFIG`, else none), then the `LAGOMORPH_*` variables read through `env`, then
    /// `overrides`; then [`validate`](Self::validate)s the result.
    ///
    /// `env` is a lookup such as `|k| std::env::var(k).ok()`; tests pass a map instead of
    /// touching the process environment. An empty variable counts as unset.
    pub fn load(
        overrides: &Overrides,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let env = |name: &str| env(name).filter(|value| !value.is_empty());
        let path = overrides
            .config
            .clone()
            .or_else(|| env(ENV_CONFIG).map(PathBuf::from));
        let mut config = match &path {
            Some(path) => read_file(path)?,
            None => Config::default(),
        };
        config.apply_env(&env)?;
        config.apply_overrides(overrides);
        config.validate()?;
        Ok(config)
    }

    /// Reads and validates one config file over the defaults (no environment, no flags).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let config = read_file(path)?;
        config.validate()?;
        Ok(config)
    }

    /// Parses TOML text over the defaults and validates it.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        let config = parse_toml(s, "TOML input")?;
        config.validate()?;
        Ok(config)
    }

    /// Applies the `LAGOMORPH_*` variables of [`ENV_VARS`] found by `env` (unset or empty ones
    /// are skipped). Does not validate.
    pub fn apply_env(&mut self, env: &dyn Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        for var in ENV_VARS {
            if let Some(value) = env(var.name).filter(|v| !v.is_empty()) {
                (var.apply)(self, value.trim()).map_err(|message| ConfigError::BadEnv {
                    var: var.name.to_owned(),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Applies command-line overrides. Does not validate.
    pub fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(dir) = &overrides.data_dir {
            self.storage.data_dir = dir.clone();
        }
        if !overrides.listen.is_empty() {
            self.amqp.listeners = overrides.listen.clone();
        }
        if let Some(level) = &overrides.log_level {
            self.log.level = level.clone();
        }
        if let Some(addr) = overrides.management_listen {
            self.management.listen = addr;
        }
    }

    /// Checks every rule the types cannot express; the error names the first key that breaks one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_amqp()?;
        self.validate_storage()?;
        self.validate_users()?;
        if self.default_vhost.is_empty() || self.default_vhost.len() > MAX_SHORTSTR {
            return Err(invalid(
                "default_vhost",
                format!(
                    "must be 1 to {MAX_SHORTSTR} bytes long, got {} bytes",
                    self.default_vhost.len()
                ),
            ));
        }
        validate_log_level(&self.log.level).map_err(|message| invalid("log.level", message))?;
        self.disk.validate()?;
        self.tls.validate(&self.amqp.listeners)?;
        if self.management.tls {
            self.tls.require_files("management.tls = true")?;
        }
        for m in &self.amqp.auth_mechanisms {
            if !KNOWN_MECHANISMS.contains(&m.as_str()) {
                return Err(invalid(
                    "amqp.auth_mechanisms",
                    format!(
                        "unknown mechanism `{m}`, expected some of {}",
                        KNOWN_MECHANISMS.join(", ")
                    ),
                ));
            }
        }
        if self.amqp.auth_mechanisms.iter().any(|m| m == "EXTERNAL")
            && (!self.tls.enabled || self.tls.verify == TlsVerify::None)
        {
            return Err(invalid(
                "amqp.auth_mechanisms",
                "EXTERNAL needs client certificates: tls.enabled = true and tls.verify = \"optional\" or \"required\"",
            ));
        }
        if self.management.enabled && self.amqp.listeners.contains(&self.management.listen) {
            return Err(invalid(
                "management.listen",
                format!(
                    "{} is also an AMQP listener (amqp.listeners)",
                    self.management.listen
                ),
            ));
        }
        Ok(())
    }

    fn validate_amqp(&self) -> Result<(), ConfigError> {
        let amqp = &self.amqp;
        if amqp.listeners.is_empty() {
            return Err(invalid("amqp.listeners", "must list at least one address"));
        }
        for (i, addr) in amqp.listeners.iter().enumerate() {
            if amqp.listeners[..i].contains(addr) {
                return Err(invalid("amqp.listeners", format!("{addr} is listed twice")));
            }
        }
        if amqp.frame_max < MIN_FRAME_MAX {
            return Err(invalid(
                "amqp.frame_max",
                format!("must be at least {MIN_FRAME_MAX}, got {}", amqp.frame_max),
            ));
        }
        if amqp.frame_max > MAX_FRAME_MAX {
            return Err(invalid(
                "amqp.frame_max",
                format!("must be at most {MAX_FRAME_MAX}, got {}", amqp.frame_max),
            ));
        }
        if amqp.channel_max == 0 {
            return Err(invalid(
                "amqp.channel_max",
                "must be between 1 and 65535, got 0",
            ));
        }
        if amqp.max_message_size == 0 || amqp.max_message_size > MAX_MESSAGE_SIZE_LIMIT {
            return Err(invalid(
                "amqp.max_message_size",
                format!(
                    "must be between 1 and {MAX_MESSAGE_SIZE_LIMIT} (512 MiB), got {}",
                    amqp.max_message_size
                ),
            ));
        }
        if amqp.max_connections == 0 {
            return Err(invalid("amqp.max_connections", "must be at least 1, got 0"));
        }
        Ok(())
    }

    fn validate_storage(&self) -> Result<(), ConfigError> {
        let storage = &self.storage;
        if storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        if storage.flush == FlushMode::Interval && storage.flush_interval_ms == 0 {
            return Err(invalid(
                "storage.flush_interval_ms",
                "must be at least 1 when storage.flush = \"interval\", got 0",
            ));
        }
        if storage.queue_memory_window == 0 {
            return Err(invalid(
                "storage.queue_memory_window",
                "must be at least 1, got 0",
            ));
        }
        if !(1..=1024).contains(&storage.segment_size_mb) {
            return Err(invalid(
                "storage.segment_size_mb",
                format!("must be 1..=1024, got {}", storage.segment_size_mb),
            ));
        }
        if storage.compact_live_percent > 100 {
            return Err(invalid(
                "storage.compact_live_percent",
                format!("must be 0..=100, got {}", storage.compact_live_percent),
            ));
        }
        if storage.compact_mb_per_flush == 0 {
            return Err(invalid(
                "storage.compact_mb_per_flush",
                "must be at least 1, got 0",
            ));
        }
        if storage.queue_memory_window_mb == 0 {
            return Err(invalid(
                "storage.queue_memory_window_mb",
                "must be at least 1, got 0",
            ));
        }
        if storage.queue_memory_budget_mb == 0 {
            return Err(invalid(
                "storage.queue_memory_budget_mb",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }

    fn validate_users(&self) -> Result<(), ConfigError> {
        for (i, user) in self.users.iter().enumerate() {
            if user.name.is_empty() {
                return Err(invalid(format!("users[{i}].name"), "must not be empty"));
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err(invalid(
                    format!("users[{i}].name"),
                    format!("user `{}` is defined twice", user.name),
                ));
            }
            if !is_password_hash(&user.password_hash) {
                return Err(invalid(
                    format!("users[{i}].password_hash"),
                    format!(
                        "user `{}`: not a RabbitMQ SHA-256 password hash (base64 of 36 bytes); \
                         make one with `lagomorph hash-password <password>`",
                        user.name
                    ),
                ));
            }
            if let Some(tag) = user.tags.iter().find(|t| !KNOWN_TAGS.contains(&t.as_str())) {
                return Err(invalid(
                    format!("users[{i}].tags"),
                    format!(
                        "user `{}`: unknown tag `{tag}`, expected one of {}",
                        user.name,
                        KNOWN_TAGS.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The user called `name`, if configured.
    pub fn find_user(&self, name: &str) -> Option<&UserConfig> {
        self.users.iter().find(|u| u.name == name)
    }
}

/// Checks `log.level`: non-empty, valid `EnvFilter` directives, and a bare word must be a level
/// (a bare target like `verbose` would parse, but silently mean "target verbose at trace").
fn validate_log_level(level: &str) -> Result<(), String> {
    if level.trim().is_empty() {
        return Err("must not be empty; use a level such as `info`".to_owned());
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare = !directive.contains('=') && !directive.contains('[');
        if bare && !LOG_LEVELS.contains(&directive.to_ascii_lowercase().as_str()) {
            return Err(format!(
                "unknown level `{directive}`, expected one of {} or `target=level` directives",
                LOG_LEVELS.join(", ")
            ));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(level)
        .map(drop)
        .map_err(|e| format!("invalid directives `{level}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::file::{Segment, line_column, render_path};
    use super::*;

    #[test]
    fn default_guest_hash_is_guest() {
        assert!(verify_password(DEFAULT_GUEST_PASSWORD_HASH, "guest"));
        assert_eq!(
            hash_password_with_salt([0xee, 0xcb, 0xb8, 0xba], "guest"),
            DEFAULT_GUEST_PASSWORD_HASH
        );
    }

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().expect("defaults validate");
    }

    #[test]
    fn render_path_quotes_odd_keys() {
        let path = [
            Segment::Key("users".into()),
            Segment::Index(2),
            Segment::Key("a.b".into()),
        ];
        assert_eq!(render_path(&path), "users[2].\"a.b\"");
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("ab", 99), (1, 3));
        // An offset inside a multi-byte character counts from the character's start.
        assert_eq!(line_column("é\nx", 1), (1, 1));
    }

    #[test]
    fn watermark() {
        let auto = MemoryConfig::default();
        assert_eq!(auto.high_watermark_bytes(Some(1000)), Some(400));
        assert_eq!(auto.high_watermark_bytes(None), None);
        let fixed = MemoryConfig {
            high_watermark_mb: 2,
        };
        assert_eq!(fixed.high_watermark_bytes(None), Some(2 * 1024 * 1024));
    }
}
