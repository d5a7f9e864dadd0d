//! `delayed`: fills a delayed-message exchange (`x-delayed-message`, routing type direct) with
//! `--count` messages whose `x-delay` puts them all after the fill (`--min-delay` plus a uniform
//! spread of `--spread`), then consumes them as they are released and reports the release
//! lateness (arrival minus due time, the due time computed by this tool just before publishing,
//! so it is never later than the broker's; publishes are synchronised every 500 messages, so
//! it is never earlier by more than a round trip) and, with `--pid`, the broker's peak RSS during the
//! fill and the release.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lagomorph::protocol::frame::Frame;
use lagomorph::protocol::method::*;
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};

use crate::cli::DelayedArgs;
use crate::client::{Conn, Uri};

const CH: u16 = 1;

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The VmRSS of `pid`, bytes.
fn rss(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A tiny xorshift generator: delays need spread, not quality.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Peak RSS sampler: `phase` 0 = fill, 1 = release.
struct Sampler {
    peaks: [AtomicU64; 2],
    phase: AtomicU64,
    stop: AtomicBool,
}

/// Runs the fill and the release; prints the report.
pub(crate) async fn run(a: &DelayedArgs) -> Result<(), String> {
    let e = |e: crate::client::ClientError| e.to_string();
    let uri = Uri::parse(&a.uri).map_err(e)?;
    let (x, q) = ("perf.delayed", "perf.delayed.q");
    let mut setup = Conn::connect(&uri, "lagomorph-perf delayed setup")
        .await
        .map_err(e)?;
    setup.open_channel(CH).await.map_err(e)?;
    let _ = setup.queue_delete(CH, q).await;
    let mut args = FieldTable::new();
    args.insert(
        ShortStr::from_static("x-delayed-type"),
        FieldValue::LongStr(LongStr::from("direct")),
    );
    setup
        .exchange_declare_with(CH, x, "x-delayed-message", a.durable, args)
        .await
        .map_err(e)?;
    setup
        .queue_declare(CH, q, a.durable, false, &[])
        .await
        .map_err(e)?;
    setup.queue_bind(CH, q, x, "k").await.map_err(e)?;

    let sampler = Arc::new(Sampler {
        peaks: [AtomicU64::new(0), AtomicU64::new(0)],
        phase: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    if let Some(pid) = a.pid {
        let s = Arc::clone(&sampler);
        tokio::spawn(async move {
            while !s.stop.load(Ordering::Relaxed) {
                if let Some(r) = rss(pid) {
                    let p = s.phase.load(Ordering::Relaxed) as usize;
                    s.peaks[p.min(1)].fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
    }

    // Fill.
    let mut pubc = Conn::connect(&uri, "lagomorph-perf delayed producer")
        .await
        .map_err(e)?;
    pubc.open_channel(CH).await.map_err(e)?;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let body_pad = vec![b'x'; a.size.saturating_sub(8)];
    let started = Instant::now();
    for i in 0..a.count {
        let delay = a.min_delay + rng.next() % a.spread.max(1);
        let due_us = unix_us() + delay * 1000;
        let mut headers = FieldTable::new();
        headers.insert(
            ShortStr::from_static("x-delay"),
            FieldValue::I64(delay as i64),
        );
        let props = Properties::from(&BasicProperties {
            headers: Some(headers),
            delivery_mode: Some(if a.persistent { 2 } else { 1 }),
            ..Default::default()
        });
        let mut body = due_us.to_be_bytes().to_vec();
        body.extend_from_slice(&body_pad);
        pubc.send(
            CH,
            &Method::BasicPublish(BasicPublish {
                reserved_1: 0,
                exchange: ShortStr::from_static("perf.delayed"),
                routing_key: ShortStr::from_static("k"),
                mandatory: false,
                immediate: false,
            }),
        );
        pubc.send_content(CH, &props, &body);
        if (i + 1) % 500 == 0 || i + 1 == a.count {
            // A round trip every 500 publishes: the broker's due times (its receive time plus
            // the delay) stay within a round trip of the ones this tool stamps, so the
            // measured lateness is the release's, not a publish backlog's.
            pubc.queue_declare(CH, q, a.durable, true, &[])
                .await
                .map_err(e)?;
        }
    }
    // A round trip on the same channel: every publish before it was handled.
    pubc.queue_declare(CH, q, a.durable, true, &[])
        .await
        .map_err(e)?;
    let fill_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "delayed: filled {} in {fill_secs:.2} s ({:.0} msg/s)",
        a.count,
        a.count as f64 / fill_secs
    );
    sampler.phase.store(1, Ordering::Relaxed);

    // Release.
    let mut cons = Conn::connect(&uri, "lagomorph-perf delayed consumer")
        .await
        .map_err(e)?;
    cons.open_channel(CH).await.map_err(e)?;
    cons.consume(CH, q, true).await.map_err(e)?;
    let mut late_us: Vec<u64> = Vec::with_capacity(a.count as usize);
    let mut early = 0u64;
    let deadline = Instant::now() + Duration::from_millis(a.min_delay + a.spread + 60_000);
    let mut want_body = false;
    while (late_us.len() as u64) < a.count {
        let f = match tokio::time::timeout_at(deadline.into(), cons.next_frame()).await {
            Ok(f) => f.map_err(e)?,
            Err(_) => break,
        };
        match f {
            Frame::Method {
                method: Method::BasicDeliver(_),
                ..
            } => want_body = true,
            Frame::Body { payload, .. } if want_body => {
                want_body = false;
                let now = unix_us();
                let mut due = [0u8; 8];
                due.copy_from_slice(&payload[..8]);
                let due = u64::from_be_bytes(due);
                if now + 1000 < due {
                    early += 1;
                }
                late_us.push(now.saturating_sub(due));
            }
            _ => {}
        }
    }
    sampler.stop.store(true, Ordering::Relaxed);
    late_us.sort_unstable();
    let pct = |p: f64| -> f64 {
        if late_us.is_empty() {
            return 0.0;
        }
        let i = ((late_us.len() as f64 - 1.0) * p).round() as usize;
        late_us[i] as f64 / 1000.0
    };
    let mb = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "delayed: count={} received={} early(>1ms)={early} fill={fill_secs:.2}s ({:.0} msg/s) \
         lateness_ms p50={:.1} p99={:.1} p99.9={:.1} max={:.1} broker_peak_rss_mb fill={:.1} \
         release={:.1}",
        a.count,
        late_us.len(),
        a.count as f64 / fill_secs,
        pct(0.5),
        pct(0.99),
        pct(0.999),
        pct(1.0),
        mb(sampler.peaks[0].load(Ordering::Relaxed)),
        mb(sampler.peaks[1].load(Ordering::Relaxed)),
    );
    let _ = pubc.close().await;
    let _ = cons.close().await;
    let _ = setup.queue_delete(CH, q).await;
    let _ = setup.close().await;
    if late_us.len() as u64 == a.count {
        Ok(())
    } else {
        Err(format!("{} of {} released in time", late_us.len(), a.count))
    }
}
