//! Output: the live line on stderr once a second, and the final summary on stdout, as text or
//! as one JSON object (written by hand: a flat schema, no extra dependency).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::histogram::Histogram;
use crate::stats::Counters;

/// Prints published / confirmed / delivered / acked rates to stderr every second until
/// `stop`.
pub(crate) async fn live(counters: Arc<Counters>, start: Instant, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start) + Duration::from_secs(1),
        Duration::from_secs(1),
    );
    let mut prev = counters.snapshot();
    let mut prev_t = start;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now = Instant::now();
        let cur = counters.snapshot();
        let dt = now.duration_since(prev_t).as_secs_f64().max(1e-9);
        let rate = |i: usize| group(((cur[i] - prev[i]) as f64 / dt) as u64);
        eprintln!(
            "[{:>4}s] published {}/s  confirmed {}/s  delivered {}/s  acked {}/s",
            now.duration_since(start).as_secs(),
            rate(0),
            rate(1),
            rate(2),
            rate(3),
        );
        prev = cur;
        prev_t = now;
    }
}

/// Digits grouped by thousands: 1234567 → "1,234,567".
pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Latency figures, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Latency {
    /// Samples.
    pub(crate) count: u64,
    /// Minimum.
    pub(crate) min: f64,
    /// Mean.
    pub(crate) mean: f64,
    /// Median.
    pub(crate) p50: f64,
    /// 99th percentile.
    pub(crate) p99: f64,
    /// 99.9th percentile.
    pub(crate) p999: f64,
    /// Maximum.
    pub(crate) max: f64,
}

impl Latency {
    /// From a histogram of nanoseconds.
    pub(crate) fn from_ns(h: &Histogram) -> Latency {
        let us = |ns: u64| ns as f64 / 1000.0;
        Latency {
            count: h.count(),
            min: us(h.min()),
            mean: us(h.mean()),
            p50: us(h.quantile(0.5)),
            p99: us(h.quantile(0.99)),
            p999: us(h.quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// Fill and drain phases of a backlog run.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Backlog {
    /// Messages in the backlog.
    pub(crate) messages: u64,
    /// Seconds to publish them (and have them confirmed / counted in the queue).
    pub(crate) fill_seconds: f64,
    /// Seconds from the consumers' start to the last delivery.
    pub(crate) drain_seconds: f64,
}

/// The final figures of a load run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Summary {
    /// A one-line description of the run's options.
    pub(crate) setup: String,
    /// Producers, consumers, queues.
    pub(crate) producers: u32,
    /// Consumers.
    pub(crate) consumers: u32,
    /// Queues.
    pub(crate) queues: u32,
    /// Body size.
    pub(crate) size: usize,
    /// Seconds from the producers' start to the last publish.
    pub(crate) publish_seconds: f64,
    /// Seconds from the consumers' start to the last delivery.
    pub(crate) consume_seconds: f64,
    /// Messages published.
    pub(crate) published: u64,
    /// Messages confirmed.
    pub(crate) confirmed: u64,
    /// Messages nacked.
    pub(crate) nacked: u64,
    /// Deliveries.
    pub(crate) delivered: u64,
    /// Deliveries acked.
    pub(crate) acked: u64,
    /// End-to-end latency.
    pub(crate) latency: Latency,
    /// Published messages never delivered to a queue's consumers.
    pub(crate) lost: u64,
    /// Deliveries of a message already delivered from the same queue.
    pub(crate) duplicated: u64,
    /// Deliveries that came before a lower sequence of the same producer (per consumer).
    pub(crate) out_of_order: u64,
    /// Deliveries whose body was not one of ours.
    pub(crate) malformed: u64,
    /// Deliveries with a sequence the producer never published.
    pub(crate) unexpected: u64,
    /// Backlog phases, for a --backlog run.
    pub(crate) backlog: Option<Backlog>,
    /// Errors from producers and consumers.
    pub(crate) errors: Vec<String>,
}

impl Summary {
    /// Published messages per second over the publish phase.
    pub(crate) fn publish_rate(&self) -> f64 {
        per_second(self.published, self.publish_seconds)
    }

    /// Deliveries per second over the consume phase.
    pub(crate) fn consume_rate(&self) -> f64 {
        per_second(self.delivered, self.consume_seconds)
    }

    /// Confirms per second over the publish phase.
    pub(crate) fn confirm_rate(&self) -> f64 {
        per_second(self.confirmed, self.publish_seconds)
    }

    /// True when nothing was lost, duplicated, reordered or malformed and nothing failed.
    pub(crate) fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.malformed == 0
            && self.unexpected == 0
            && self.nacked == 0
            && self.errors.is_empty()
    }

    /// The human-readable summary.
    pub(crate) fn text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "lagomorph-perf: {}", self.setup);
        let _ = writeln!(
            s,
            "published  {:>14} msg  {:>12} msg/s  over {:.2} s",
            group(self.published),
            group(self.publish_rate() as u64),
            self.publish_seconds
        );
        if self.confirmed + self.nacked > 0 {
            let _ = writeln!(
                s,
                "confirmed  {:>14} msg  {:>12} msg/s  ({} nacked)",
                group(self.confirmed),
                group(self.confirm_rate() as u64),
                self.nacked
            );
        }
        let _ = writeln!(
            s,
            "delivered  {:>14} msg  {:>12} msg/s  over {:.2} s",
            group(self.delivered),
            group(self.consume_rate() as u64),
            self.consume_seconds
        );
        let _ = writeln!(s, "acked      {:>14} msg", group(self.acked));
        if let Some(b) = &self.backlog {
            let _ = writeln!(
                s,
                "backlog    {} msg: fill {:.2} s ({} msg/s), drain {:.2} s ({} msg/s)",
                group(b.messages),
                b.fill_seconds,
                group(per_second(b.messages, b.fill_seconds) as u64),
                b.drain_seconds,
                group(per_second(self.delivered, b.drain_seconds) as u64)
            );
        }
        let l = &self.latency;
        if l.count > 0 {
            let _ = writeln!(
                s,
                "latency    p50 {}  p99 {}  p99.9 {}  max {}  (min {}, mean {}, {} samples)",
                micros(l.p50),
                micros(l.p99),
                micros(l.p999),
                micros(l.max),
                micros(l.min),
                micros(l.mean),
                group(l.count)
            );
        }
        let _ = writeln!(
            s,
            "check      {} lost, {} duplicated, {} out of order, {} malformed, {} unexpected{}",
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.malformed,
            self.unexpected,
            if self.clean() { "  [clean]" } else { "" }
        );
        for e in &self.errors {
            let _ = writeln!(s, "error      {e}");
        }
        s
    }

    /// The summary as one JSON object.
    pub(crate) fn json(&self) -> String {
        let l = &self.latency;
        let latency = Json::new()
            .uint("count", l.count)
            .float("min_us", l.min)
            .float("mean_us", l.mean)
            .float("p50_us", l.p50)
            .float("p99_us", l.p99)
            .float("p999_us", l.p999)
            .float("max_us", l.max);
        let mut j = Json::new()
            .str("setup", &self.setup)
            .uint("producers", u64::from(self.producers))
            .uint("consumers", u64::from(self.consumers))
            .uint("queues", u64::from(self.queues))
            .uint("size", self.size as u64)
            .uint("published", self.published)
            .uint("confirmed", self.confirmed)
            .uint("nacked", self.nacked)
            .uint("delivered", self.delivered)
            .uint("acked", self.acked)
            .float("publish_seconds", self.publish_seconds)
            .float("consume_seconds", self.consume_seconds)
            .float("publish_rate", self.publish_rate())
            .float("confirm_rate", self.confirm_rate())
            .float("consume_rate", self.consume_rate())
            .obj("latency", latency)
            .uint("lost", self.lost)
            .uint("duplicated", self.duplicated)
            .uint("out_of_order", self.out_of_order)
            .uint("malformed", self.malformed)
            .uint("unexpected", self.unexpected);
        if let Some(b) = &self.backlog {
            j = j.obj(
                "backlog",
                Json::new()
                    .uint("messages", b.messages)
                    .float("fill_seconds", b.fill_seconds)
                    .float("fill_rate", per_second(b.messages, b.fill_seconds))
                    .float("drain_seconds", b.drain_seconds)
                    .float("drain_rate", per_second(self.delivered, b.drain_seconds)),
            );
        }
        j.strs("errors", &self.errors)
            .bool("clean", self.clean())
            .finish()
    }
}

/// n / seconds, 0 when no time passed.
pub(crate) fn per_second(n: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        n as f64 / seconds
    } else {
        0.0
    }
}

/// Microseconds, printed in the unit that suits them.
fn micros(us: f64) -> String {
    if us >= 1_000_000.0 {
        format!("{:.2} s", us / 1_000_000.0)
    } else if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// A minimal JSON object writer.
#[derive(Debug, Default)]
pub(crate) struct Json(String);

impl Json {
    /// An empty object.
    pub(crate) fn new() -> Json {
        Json(String::from("{"))
    }

    fn key(&mut self, k: &str) {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        escape(k, &mut self.0);
        self.0.push(':');
    }

    /// An unsigned integer member.
    pub(crate) fn uint(mut self, k: &str, v: u64) -> Json {
        self.key(k);
        let _ = write!(self.0, "{v}");
        self
    }

    /// A number member (non-finite values become null).
    pub(crate) fn float(mut self, k: &str, v: f64) -> Json {
        self.key(k);
        if v.is_finite() {
            let _ = write!(self.0, "{:.3}", v);
        } else {
            self.0.push_str("null");
        }
        self
    }

    /// A string member.
    pub(crate) fn str(mut self, k: &str, v: &str) -> Json {
        self.key(k);
        escape(v, &mut self.0);
        self
    }

    /// A boolean member.
    pub(crate) fn bool(mut self, k: &str, v: bool) -> Json {
        self.key(k);
        self.0.push_str(if v { "true" } else { "false" });
        self
    }

    /// An array-of-strings member.
    pub(crate) fn strs(mut self, k: &str, v: &[String]) -> Json {
        self.key(k);
        self.0.push('[');
        for (i, s) in v.iter().enumerate() {
            if i > 0 {
                self.0.push(',');
            }
            escape(s, &mut self.0);
        }
        self.0.push(']');
        self
    }

    /// A nested object member.
    pub(crate) fn obj(mut self, k: &str, v: Json) -> Json {
        self.key(k);
        self.0.push_str(&v.finish());
        self
    }

    /// The JSON text.
    pub(crate) fn finish(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// Appends `s` as a JSON string literal.
fn escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1000), "1,000");
        assert_eq!(group(1_234_567), "1,234,567");
    }

    #[test]
    fn json_escapes_and_nests() {
        let j = Json::new()
            .str("a\"b", "x\\y\n\u{1}")
            .uint("n", 3)
            .float("f", 1.5)
            .float("nan", f64::NAN)
            .bool("t", true)
            .strs("e", &["p".into(), "q".into()])
            .obj("o", Json::new().uint("z", 0))
            .finish();
        assert_eq!(
            j,
            r#"{"a\"b":"x\\y\n\u0001","n":3,"f":1.500,"nan":null,"t":true,"e":["p","q"],"o":{"z":0}}"#
        );
    }

    #[test]
    fn clean_summary_json() {
        let s = Summary {
            published: 10,
            delivered: 10,
            publish_seconds: 2.0,
            consume_seconds: 2.0,
            ..Summary::default()
        };
        assert!(s.clean());
        let j = s.json();
        assert!(j.contains(r#""publish_rate":5.000"#), "{j}");
        assert!(j.contains(r#""clean":true"#), "{j}");
        assert!(s.text().contains("[clean]"));
    }
}
