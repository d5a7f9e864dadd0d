//! `GET /metrics` and `GET /metrics/per-object`: Prometheus text exposition format (0.0.4).
//!
//! Metric names follow RabbitMQ's `rabbitmq_prometheus` plugin where it has one (so existing
//! dashboards work); what RabbitMQ lacks is `lagomorph_*`. Like RabbitMQ's plugin, the endpoints
//! need no login, and `/metrics` is aggregated (queue metrics summed, no per-queue series, so it
//! stays small and fast with 100,000 queues) while `/metrics/per-object` has one series per
//! queue (rabbitmq_prometheus's `return_per_object_metrics`). Everything is read from atomics
//! and the queues' counts; nothing is sampled.

use super::ApiState;
use super::rates::Counters;
use crate::broker::group_commit::FLUSH_BUCKETS_MICROS;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::fmt::Write as _;
use std::sync::atomic::Ordering;

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Escapes a label value: backslash, double quote and newline.
pub(crate) fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

struct Text(String);

impl Text {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }
}

/// Reads one figure of a queue's counters.
type Field = fn(&Counters) -> u64;

/// The per-queue metrics: name, help, and which counter.
const QUEUE_METRICS: [(&str, &str, Field); 3] = [
    (
        "rabbitmq_queue_messages_ready",
        "Messages ready to be delivered to consumers",
        |c| c.ready,
    ),
    (
        "rabbitmq_queue_messages_unacked",
        "Messages delivered to consumers but not yet acknowledged",
        |c| c.unacked,
    ),
    (
        "rabbitmq_queue_messages_published_total",
        "Messages published into the queue",
        |c| c.publish,
    ),
];

/// Renders every metric; `per_object` gives one series per queue instead of their sum.
pub(crate) fn render(st: &ApiState, per_object: bool) -> String {
    let b = &st.broker;
    let mut t = Text(String::with_capacity(4096));
    let auth = b.access().stats();
    t.single(
        "rabbitmq_auth_attempts_total",
        "counter",
        "Login attempts (AMQP and management API)",
        auth.attempts.load(Ordering::Relaxed),
    );
    t.single(
        "rabbitmq_auth_attempts_failed_total",
        "counter",
        "Failed login attempts (AMQP and management API); each is answered after a delay",
        auth.failed.load(Ordering::Relaxed),
    );
    let conns = b.connections();
    t.single(
        "rabbitmq_connections",
        "gauge",
        "Connections currently open",
        conns.len(),
    );
    t.single(
        "rabbitmq_channels",
        "gauge",
        "Channels currently open",
        conns
            .iter()
            .map(|c| u64::from(c.channels.load(Ordering::Relaxed)))
            .sum::<u64>(),
    );
    t.single(
        "rabbitmq_consumers",
        "gauge",
        "Consumers currently connected",
        conns
            .iter()
            .map(|c| c.consumers.load(Ordering::Relaxed).max(0))
            .sum::<i64>(),
    );

    // One pass over the queues: their counters (one short lock each), kept with their names
    // only when each queue gets its own series.
    let mut sum = Counters::default();
    let mut count = 0usize;
    let mut queues = Vec::new();
    for vh in b.vhosts() {
        for q in vh.queues() {
            let c = Counters::of_queue(&q);
            sum.add(&c);
            count += 1;
            if per_object {
                queues.push((escape_label(&vh.name), escape_label(&q.name), c));
            }
        }
    }
    queues.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    t.single("rabbitmq_queues", "gauge", "Queues available", count);
    for (name, help, get) in QUEUE_METRICS {
        let kind = if name.ends_with("_total") {
            "counter"
        } else {
            "gauge"
        };
        t.header(name, kind, help);
        if !per_object {
            let _ = writeln!(t.0, "{name} {}", get(&sum));
            continue;
        }
        for (vhost, queue, c) in &queues {
            let _ = writeln!(
                t.0,
                "{name}{{vhost=\"{vhost}\",queue=\"{queue}\"}} {}",
                get(c)
            );
        }
    }

    let stats = b.stats();
    let retired = st.rates.retired();
    t.single(
        "rabbitmq_global_messages_received_total",
        "counter",
        "Messages received from publishers",
        stats.published.load(Ordering::Relaxed),
    );
    t.single(
        "rabbitmq_global_messages_confirmed_total",
        "counter",
        "Messages confirmed to publishers",
        stats.confirmed.load(Ordering::Relaxed),
    );
    t.single(
        "rabbitmq_global_messages_delivered_total",
        "counter",
        "Messages delivered to consumers or fetched with basic.get",
        sum.deliver_get + retired.deliver_get,
    );
    t.single(
        "rabbitmq_global_messages_redelivered_total",
        "counter",
        "Messages redelivered to consumers",
        sum.redeliver + retired.redeliver,
    );
    t.single(
        "rabbitmq_global_messages_acknowledged_total",
        "counter",
        "Messages acknowledged by consumers",
        sum.ack + retired.ack,
    );
    t.single(
        "lagomorph_messages_unroutable_total",
        "counter",
        "Published messages that no queue took",
        stats.unroutable.load(Ordering::Relaxed),
    );
    for reason in crate::broker::queue::Reason::ALL {
        let name = format!(
            "rabbitmq_global_messages_dead_lettered_{}_total",
            reason.as_str()
        );
        t.header(
            &name,
            "counter",
            "Messages dead-lettered, by reason (RabbitMQ 3.12's names)",
        );
        let n = stats.dead_lettered[reason.index()].load(Ordering::Relaxed);
        let _ = writeln!(t.0, "{name}{{queue_type=\"rabbit_classic_queue\"}} {n}");
    }
    t.single(
        "lagomorph_dead_letters_dropped_total",
        "counter",
        "Dead letters no queue took (missing exchange, no binding, or a cycle)",
        stats.dead_letter_dropped.load(Ordering::Relaxed),
    );
    t.single(
        "lagomorph_store_quarantined_records_total",
        "counter",
        "Damaged store records set aside (index entries past the synced log or with a bad checksum)",
        b.quarantined_records(),
    );
    let budget = b.memory_budget();
    t.single(
        "lagomorph_queue_memory_budget_bytes",
        "gauge",
        "The global budget for ready messages kept in memory",
        budget.limit() as u64,
    );
    t.single(
        "lagomorph_queue_memory_cap_bytes",
        "gauge",
        "What the queues may keep in memory now: the budget less what the rest of the process holds, at least an eighth of it",
        budget.cap() as u64,
    );
    t.single(
        "lagomorph_queue_memory_used_bytes",
        "gauge",
        "Bytes of ready messages kept in memory, charged to the budget",
        budget.used() as u64,
    );

    let gc = b.commit();
    let name = "lagomorph_store_flush_duration_seconds";
    t.header(name, "histogram", "Latency of store flushes (fsync)");
    let mut cumulative = 0u64;
    for (bound, count) in FLUSH_BUCKETS_MICROS.iter().zip(&gc.flush_buckets) {
        cumulative += count.load(Ordering::Relaxed);
        let le = *bound as f64 / 1e6;
        let _ = writeln!(t.0, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let count = gc.flush_count.load(Ordering::Relaxed).max(cumulative);
    let _ = writeln!(t.0, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let micros = gc.flush_micros_total.load(Ordering::Relaxed);
    let _ = writeln!(t.0, "{name}_sum {}", micros as f64 / 1e6);
    let _ = writeln!(t.0, "{name}_count {count}");

    // rabbitmq_prometheus's alarm gauges: 1 while the alarm is in effect.
    t.single(
        "rabbitmq_alarms_free_disk_space_watermark",
        "gauge",
        "is 1 if free disk space watermark alarm is in effect",
        u8::from(b.alarm(crate::broker::Alarm::Disk)),
    );
    t.single(
        "rabbitmq_alarms_memory_used_watermark",
        "gauge",
        "is 1 if VM memory watermark alarm is in effect",
        u8::from(b.alarm(crate::broker::Alarm::Memory)),
    );
    t.single(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes",
        crate::process::resident_memory().unwrap_or(0),
    );
    t.single(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors",
        crate::process::open_fds().unwrap_or(0),
    );
    t.0
}

/// Renders off the async workers: with many queues this is a long loop of short locks.
async fn respond(st: ApiState, per_object: bool) -> Response {
    match tokio::task::spawn_blocking(move || render(&st, per_object)).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// GET /metrics: aggregated.
pub(crate) async fn metrics(State(st): State<ApiState>) -> Response {
    respond(st, false).await
}

/// GET /metrics/per-object: one series per queue.
pub(crate) async fn per_object(State(st): State<ApiState>) -> Response {
    respond(st, true).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn label_values_are_escaped() {
        assert_eq!(super::escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
