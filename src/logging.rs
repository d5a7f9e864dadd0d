//! Logging set-up: a `tracing` subscriber writing text or JSON lines to stderr.
//!
//! This module owns the global subscriber. The level is `EnvFilter` directives taken from
//! [`LogConfig::level`], which [`Config::load`](crate::config::Config::load) has already merged
//! from the file, `LAGOMORPH_LOG_LEVEL` and `--log-level` (`RUST_LOG` itself is not read, so there
//! is one precedence order). Records from crates that use the `log` facade (sled) are forwarded
//! into tracing and filtered the same way. It imports nothing but [`crate::config`].

use std::io::IsTerminal as _;

use tracing::Dispatch;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogConfig, LogFormat};

/// Installs the global subscriber: `cfg.format` on stderr (coloured when stderr is a terminal),
/// filtered by `cfg.level`. Fails on bad directives or if a subscriber is already installed.
pub fn init(cfg: &LogConfig) -> Result<(), String> {
    let ansi = std::io::stderr().is_terminal();
    build(cfg, std::io::stderr, ansi)?
        .try_init()
        .map_err(|e| format!("cannot install the logger: {e}"))
}

/// Builds the subscriber [`init`] installs, writing to `writer`; tests use it with
/// `tracing::dispatcher::with_default` and a buffer.
pub fn build<W>(cfg: &LogConfig, writer: W, ansi: bool) -> Result<Dispatch, String>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::builder().parse(&cfg.level).map_err(|e| {
        format!(
            "config key `log.level`: invalid directives `{}`: {e}",
            cfg.level
        )
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    Ok(match cfg.format {
        LogFormat::Text => Dispatch::new(builder.with_ansi(ansi).finish()),
        LogFormat::Json => Dispatch::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(true)
                .finish(),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};

    /// A `MakeWriter` appending to a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("buffer lock").clone()).expect("utf-8 logs")
        }
    }

    fn capture(level: &str, format: LogFormat) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let cfg = LogConfig {
            level: level.to_owned(),
            format,
        };
        let dispatch = build(&cfg, move || writer.clone(), false).expect("valid level");
        tracing::dispatcher::with_default(&dispatch, || {
            let span = tracing::info_span!("connection", peer = "127.0.0.1:1234");
            let _entered = span.enter();
            tracing::info!(channel = 1, "info-line");
            tracing::debug!("debug-line");
        });
        buffer.text()
    }

    #[test]
    fn text_format_respects_level() {
        let out = capture("info", LogFormat::Text);
        assert!(out.contains("info-line"), "{out}");
        assert!(out.contains("INFO"), "{out}");
        assert!(out.contains("peer"), "{out}");
        assert!(!out.contains("debug-line"), "{out}");
        assert!(!out.trim_start().starts_with('{'), "{out}");
    }

    #[test]
    fn directives_enable_debug_for_one_target() {
        let module = module_path!();
        let out = capture(&format!("warn,{module}=debug"), LogFormat::Text);
        assert!(
            out.contains("info-line") && out.contains("debug-line"),
            "{out}"
        );
        let out = capture("warn,some_other_crate=debug", LogFormat::Text);
        assert!(
            !out.contains("info-line") && !out.contains("debug-line"),
            "{out}"
        );
    }

    #[test]
    fn json_format_writes_one_object_per_line() {
        let out = capture("info", LogFormat::Json);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 1, "{out}");
        let line = lines[0];
        assert!(line.starts_with('{') && line.ends_with('}'), "{line}");
        assert!(line.contains("\"level\":\"INFO\""), "{line}");
        assert!(line.contains("\"message\":\"info-line\""), "{line}");
        assert!(line.contains("\"peer\":\"127.0.0.1:1234\""), "{line}");
    }

    #[test]
    fn bad_directives_are_an_error() {
        let cfg = LogConfig {
            level: "lagomorph=loud".to_owned(),
            format: LogFormat::Text,
        };
        let err = build(&cfg, io::sink, false).expect_err("bad level");
        assert!(err.contains("log.level"), "{err}");
    }
}
