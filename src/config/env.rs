//! The `LAGOMORPH_*` environment variables: which key each sets and how its value is parsed.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use super::*;

/// One `LAGOMORPH_*` environment variable and the key it sets.
#[derive(Clone, Copy)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// The config key it sets.
    pub key: &'static str,
    pub(super) apply: fn(&mut Config, &str) -> Result<(), String>,
}

impl fmt::Debug for EnvVar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EnvVar")
            .field("name", &self.name)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

pub(super) fn parse_value<T: FromStr>(value: &str) -> Result<T, String>
where
    T::Err: fmt::Display,
{
    value
        .parse()
        .map_err(|e| format!("invalid value `{value}`: {e}"))
}

pub(super) fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("invalid value `{value}`: expected true or false")),
    }
}

pub(super) fn parse_addr_list(value: &str) -> Result<Vec<SocketAddr>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_value)
        .collect()
}

/// Every environment variable the broker reads besides [`ENV_CONFIG`]. Each beats the file and
/// loses to a flag. `config/lagomorph.toml` documents the same list.
pub const ENV_VARS: &[EnvVar] = &[
    EnvVar {
        name: "LAGOMORPH_LISTEN",
        key: "amqp.listeners",
        apply: |c, v| {
            c.amqp.listeners = parse_addr_list(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_FRAME_MAX",
        key: "amqp.frame_max",
        apply: |c, v| {
            c.amqp.frame_max = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_CHANNEL_MAX",
        key: "amqp.channel_max",
        apply: |c, v| {
            c.amqp.channel_max = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_HEARTBEAT",
        key: "amqp.heartbeat",
        apply: |c, v| {
            c.amqp.heartbeat = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_MAX_MESSAGE_SIZE",
        key: "amqp.max_message_size",
        apply: |c, v| {
            c.amqp.max_message_size = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_MAX_CONNECTIONS",
        key: "amqp.max_connections",
        apply: |c, v| {
            c.amqp.max_connections = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_CONSUMER_TIMEOUT",
        key: "amqp.consumer_timeout",
        apply: |c, v| {
            c.amqp.consumer_timeout = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_DATA_DIR",
        key: "storage.data_dir",
        apply: |c, v| {
            c.storage.data_dir = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_FLUSH",
        key: "storage.flush",
        apply: |c, v| {
            c.storage.flush = v.parse()?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_FLUSH_INTERVAL_MS",
        key: "storage.flush_interval_ms",
        apply: |c, v| {
            c.storage.flush_interval_ms = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_CACHE_SIZE_MB",
        key: "storage.cache_size_mb",
        apply: |c, v| {
            c.storage.cache_size_mb = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_QUEUE_MEMORY_WINDOW",
        key: "storage.queue_memory_window",
        apply: |c, v| {
            c.storage.queue_memory_window = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_QUEUE_MEMORY_WINDOW_MB",
        key: "storage.queue_memory_window_mb",
        apply: |c, v| {
            c.storage.queue_memory_window_mb = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_QUEUE_MEMORY_BUDGET_MB",
        key: "storage.queue_memory_budget_mb",
        apply: |c, v| {
            c.storage.queue_memory_budget_mb = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_FLUSH_STALL_EXIT_SECS",
        key: "storage.flush_stall_exit_secs",
        apply: |c, v| {
            c.storage.flush_stall_exit_secs = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_SEGMENT_SIZE_MB",
        key: "storage.segment_size_mb",
        apply: |c, v| {
            c.storage.segment_size_mb = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_DEFAULT_VHOST",
        key: "default_vhost",
        apply: |c, v| {
            c.default_vhost = v.to_owned();
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_LOG_LEVEL",
        key: "log.level",
        apply: |c, v| {
            c.log.level = v.to_owned();
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_LOG_FORMAT",
        key: "log.format",
        apply: |c, v| {
            c.log.format = v.parse()?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_MANAGEMENT_ENABLED",
        key: "management.enabled",
        apply: |c, v| {
            c.management.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_MANAGEMENT_LISTEN",
        key: "management.listen",
        apply: |c, v| {
            c.management.listen = parse_value(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_DISK_FREE_LIMIT",
        key: "disk.free_limit",
        apply: |c, v| {
            c.disk.free_limit = ByteSize::parse(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_TLS_ENABLED",
        key: "tls.enabled",
        apply: |c, v| {
            c.tls.enabled = parse_bool(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_TLS_LISTEN",
        key: "tls.listeners",
        apply: |c, v| {
            c.tls.listeners = parse_addr_list(v)?;
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_TLS_CERT_FILE",
        key: "tls.cert_file",
        apply: |c, v| {
            c.tls.cert_file = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_TLS_KEY_FILE",
        key: "tls.key_file",
        apply: |c, v| {
            c.tls.key_file = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_TLS_CA_FILE",
        key: "tls.ca_file",
        apply: |c, v| {
            c.tls.ca_file = PathBuf::from(v);
            Ok(())
        },
    },
    EnvVar {
        name: "LAGOMORPH_HIGH_WATERMARK_MB",
        key: "memory.high_watermark_mb",
        apply: |c, v| {
            c.memory.high_watermark_mb = parse_value(v)?;
            Ok(())
        },
    },
];
