//! `[tls]` and `[disk]`: the AMQPS listeners with their certificates and client-certificate
//! logins, and the disk alarm's limit. Plain data and validation, like the rest of `config`.

use super::{ConfigError, DEFAULT_AMQPS_PORT, invalid};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

/// `[tls]`: AMQP over TLS (AMQPS). Off by default; `enabled = true` needs `cert_file` and
/// `key_file`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// Serve AMQPS on `listeners`.
    pub enabled: bool,
    /// AMQPS addresses; both loopback addresses on port 5671 by default.
    pub listeners: Vec<SocketAddr>,
    /// PEM certificate chain, the server's own certificate first.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA certificates that client certificates must chain to; needed unless `verify` is
    /// `none`.
    pub ca_file: PathBuf,
    /// Client certificates: `none` (not asked for), `optional` (verified when given:
    /// RabbitMQ's `verify_peer` with `fail_if_no_peer_cert = false`) or `required`.
    pub verify: TlsVerify,
    /// TLS versions offered: any of `"1.2"` and `"1.3"` (`"tlsv1.2"` and `"tlsv1.3"` too).
    pub versions: Vec<String>,
    /// Cipher suites by IANA name as rustls spells them (`TLS13_AES_256_GCM_SHA384`,
    /// `TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384`, ...); empty means rustls's defaults, all
    /// forward-secret AEAD suites.
    pub cipher_suites: Vec<String>,
    /// A client must finish the TLS handshake within this many milliseconds (RabbitMQ's
    /// `ssl_handshake_timeout`). At least 1.
    pub handshake_timeout_ms: u64,
    /// Where the EXTERNAL user name comes from (RabbitMQ's `ssl_cert_login_from`).
    pub cert_login_from: CertLoginFrom,
    /// With `subject_alternative_name`: which kind (`ssl_cert_login_san_type`).
    pub cert_login_san_type: SanType,
    /// With `subject_alternative_name`: which one of that kind, from 0
    /// (`ssl_cert_login_san_index`).
    pub cert_login_san_index: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            enabled: false,
            listeners: vec![
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_AMQPS_PORT),
                SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), DEFAULT_AMQPS_PORT),
            ],
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
            ca_file: PathBuf::new(),
            verify: TlsVerify::None,
            versions: vec!["1.2".to_owned(), "1.3".to_owned()],
            cipher_suites: Vec::new(),
            handshake_timeout_ms: 5000,
            cert_login_from: CertLoginFrom::CommonName,
            cert_login_san_type: SanType::Dns,
            cert_login_san_index: 0,
        }
    }
}

/// Client-certificate verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsVerify {
    /// No client certificate is asked for.
    #[default]
    None,
    /// Asked for and verified when given.
    Optional,
    /// Required and verified.
    Required,
}

/// `tls.cert_login_from`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CertLoginFrom {
    /// The subject's CN.
    #[default]
    CommonName,
    /// The whole subject, `CN=name,O=org,C=GB` (RabbitMQ's format and default).
    DistinguishedName,
    /// A subject alternative name.
    SubjectAlternativeName,
}

/// `tls.cert_login_san_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SanType {
    /// A DNS name.
    #[default]
    Dns,
    /// An IP address.
    Ip,
    /// An e-mail address.
    Email,
    /// A URI.
    Uri,
}

impl TlsConfig {
    /// The versions as (TLS 1.2, TLS 1.3) flags.
    pub fn version_flags(&self) -> (bool, bool) {
        let has = |v: &str| {
            self.versions
                .iter()
                .any(|x| x.trim_start_matches("tlsv") == v)
        };
        (has("1.2"), has("1.3"))
    }

    pub(super) fn validate(&self, amqp: &[SocketAddr]) -> Result<(), ConfigError> {
        for v in &self.versions {
            if !matches!(v.trim_start_matches("tlsv"), "1.2" | "1.3") {
                return Err(invalid(
                    "tls.versions",
                    format!("unknown TLS version `{v}`, expected \"1.2\" or \"1.3\""),
                ));
            }
        }
        if self.versions.is_empty() {
            return Err(invalid("tls.versions", "must list at least one version"));
        }
        if self.handshake_timeout_ms == 0 {
            return Err(invalid(
                "tls.handshake_timeout_ms",
                "must be at least 1, got 0",
            ));
        }
        if !self.enabled {
            return Ok(());
        }
        if self.listeners.is_empty() {
            return Err(invalid("tls.listeners", "must list at least one address"));
        }
        for (i, addr) in self.listeners.iter().enumerate() {
            if self.listeners[..i].contains(addr) || amqp.contains(addr) {
                return Err(invalid(
                    "tls.listeners",
                    format!("{addr} is listed twice (here or in amqp.listeners)"),
                ));
            }
        }
        self.require_files("tls.enabled = true")?;
        if self.verify != TlsVerify::None && self.ca_file.as_os_str().is_empty() {
            return Err(invalid(
                "tls.ca_file",
                "must be set when tls.verify is \"optional\" or \"required\"",
            ));
        }
        Ok(())
    }

    /// `cert_file` and `key_file` must be set for `what`.
    pub(super) fn require_files(&self, what: &str) -> Result<(), ConfigError> {
        if self.cert_file.as_os_str().is_empty() {
            return Err(invalid("tls.cert_file", format!("must be set with {what}")));
        }
        if self.key_file.as_os_str().is_empty() {
            return Err(invalid("tls.key_file", format!("must be set with {what}")));
        }
        Ok(())
    }
}

/// `[disk]`: the disk alarm. While the data directory's filesystem has less free space than
/// the limit, publishing connections are blocked (connection.blocked), as in RabbitMQ.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskConfig {
    /// The limit (RabbitMQ's `disk_free_limit.absolute`): bytes, or a string with a unit as
    /// RabbitMQ writes them (`50MB`, `2GiB`; kB/MB/GB/TB are powers of 1000, k/KiB, M/MiB,
    /// G/GiB, T/TiB powers of 1024). 0 turns the alarm off. Default `50MB`, RabbitMQ's.
    pub free_limit: ByteSize,
    /// When above 0, the limit is this multiple of the machine's RAM instead
    /// (`disk_free_limit.relative`, e.g. 1.0 or 1.5).
    pub free_limit_relative: f64,
    /// How often the free space is read, in milliseconds. At least 1.
    pub check_interval_ms: u64,
}

impl Default for DiskConfig {
    fn default() -> Self {
        DiskConfig {
            free_limit: ByteSize::parse("50MB").unwrap_or(ByteSize(50_000_000, String::new())),
            free_limit_relative: 0.0,
            check_interval_ms: 1000,
        }
    }
}

impl DiskConfig {
    /// The limit in bytes, given the machine's RAM (`None` if unknown: then a relative limit
    /// falls back to the absolute one).
    pub fn free_limit_bytes(&self, total_ram_bytes: Option<u64>) -> u64 {
        match total_ram_bytes {
            Some(ram) if self.free_limit_relative > 0.0 => {
                // Rounded down; f64 holds any realistic RAM size exactly enough.
                (ram as f64 * self.free_limit_relative) as u64
            }
            _ => self.free_limit.bytes(),
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !self.free_limit_relative.is_finite() || self.free_limit_relative < 0.0 {
            return Err(invalid(
                "disk.free_limit_relative",
                format!("must be 0 or more, got {}", self.free_limit_relative),
            ));
        }
        if self.check_interval_ms == 0 {
            return Err(invalid(
                "disk.check_interval_ms",
                "must be at least 1, got 0",
            ));
        }
        Ok(())
    }
}

/// A size in bytes written as RabbitMQ writes information units: a number of bytes or a
/// string such as `"50MB"` or `"2GiB"`. Compares by value.
#[derive(Clone, Debug)]
pub struct ByteSize(u64, String);

impl ByteSize {
    /// Parses `50000000`, `"50MB"`, `"1GiB"`, `"1000000TB"` (see [`DiskConfig::free_limit`]).
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        parse_byte_size(text).map(|n| ByteSize(n, text.trim().to_owned()))
    }

    /// The value in bytes.
    pub fn bytes(&self) -> u64 {
        self.0
    }
}

impl PartialEq for ByteSize {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.1.is_empty() {
            write!(f, "{}", self.0)
        } else {
            f.write_str(&self.1)
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n, String::new())),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// Bytes in `text`: digits, then optionally a unit (RabbitMQ's
/// `rabbit_resource_monitor_misc:parse_information_unit`, with terabytes added).
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("invalid size `{text}`: expected a number of bytes and a unit"))?;
    let multiplier: u64 = match unit.trim() {
        "" => 1,
        "k" | "K" | "kiB" | "KiB" | "KIB" | "kib" => 1 << 10,
        "m" | "M" | "MiB" | "MIB" | "mib" => 1 << 20,
        "g" | "G" | "GiB" | "GIB" | "gib" => 1 << 30,
        "t" | "T" | "TiB" | "TIB" | "tib" => 1 << 40,
        "kB" | "KB" | "kb" | "Kb" => 1_000,
        "MB" | "mB" | "mb" | "Mb" => 1_000_000,
        "GB" | "gB" | "gb" | "Gb" => 1_000_000_000,
        "TB" | "tB" | "tb" | "Tb" => 1_000_000_000_000,
        other => {
            return Err(format!(
                "invalid size `{text}`: unknown unit `{other}` (use kB, MB, GB, TB, KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(multiplier)
        .ok_or_else(|| format!("invalid size `{text}`: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_as_rabbitmq() {
        assert_eq!(parse_byte_size("50MB"), Ok(50_000_000));
        assert_eq!(parse_byte_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_byte_size("1000000TB"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_byte_size("123"), Ok(123));
        assert_eq!(parse_byte_size("1k"), Ok(1024));
        assert!(parse_byte_size("12 parsecs").is_err());
        assert!(parse_byte_size("MB").is_err());
        assert!(parse_byte_size("99999999999TB").is_err());
    }

    #[test]
    fn relative_limit() {
        let d = DiskConfig {
            free_limit_relative: 1.5,
            ..DiskConfig::default()
        };
        assert_eq!(d.free_limit_bytes(Some(1000)), 1500);
        assert_eq!(d.free_limit_bytes(None), 50_000_000);
        assert_eq!(
            DiskConfig::default().free_limit_bytes(Some(1000)),
            50_000_000
        );
    }

    #[test]
    fn versions() {
        let t = TlsConfig {
            versions: vec!["tlsv1.3".into()],
            ..TlsConfig::default()
        };
        assert_eq!(t.version_flags(), (false, true));
        assert!(t.validate(&[]).is_ok());
        let bad = TlsConfig {
            versions: vec!["1.1".into()],
            ..TlsConfig::default()
        };
        assert!(bad.validate(&[]).is_err());
    }
}
