//! `rpc`: request/reply round trips over direct reply-to. `--callers` connections each consume
//! from `amq.rabbitmq.reply-to` (no-ack), publish a request with `reply_to` set to it to the
//! queue `perf.rpc`, and wait for the reply before sending the next; `--servers` connections
//! consume `perf.rpc` (no-ack) and publish each reply to the default exchange with the request's
//! rewritten `reply_to` as routing key. Reports round trips per second and the round-trip
//! latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lagomorph::protocol::frame::Frame;
use lagomorph::protocol::method::*;
use lagomorph::protocol::properties::{BasicProperties, Properties};
use lagomorph::protocol::types::ShortStr;

use crate::cli::RpcArgs;
use crate::client::{ClientError, Conn, Uri};

const CH: u16 = 1;
const QUEUE: &str = "perf.rpc";
const REPLY_TO: &str = "amq.rabbitmq.reply-to";

fn publish(conn: &mut Conn, key: &str, props: &Properties, body: &[u8]) -> Result<(), String> {
    conn.send(
        CH,
        &Method::BasicPublish(BasicPublish {
            reserved_1: 0,
            exchange: ShortStr::EMPTY,
            routing_key: ShortStr::try_from(key).map_err(|e| e.to_string())?,
            mandatory: false,
            immediate: false,
        }),
    );
    conn.send_content(CH, props, body);
    Ok(())
}

/// Serves requests until `stop`.
async fn server(uri: Uri, stop: Arc<AtomicBool>) -> Result<(), String> {
    let e = |e: ClientError| e.to_string();
    let mut c = Conn::connect(&uri, "lagomorph-perf rpc server")
        .await
        .map_err(e)?;
    c.open_channel(CH).await.map_err(e)?;
    c.consume(CH, QUEUE, true).await.map_err(e)?;
    let mut reply_to: Option<String> = None;
    while !stop.load(Ordering::Relaxed) {
        let f = match tokio::time::timeout(Duration::from_millis(200), c.next_frame()).await {
            Ok(f) => f.map_err(e)?,
            Err(_) => continue,
        };
        match f {
            Frame::Header { header, .. } => {
                reply_to = header.properties.reply_to().map(str::to_string);
            }
            Frame::Body { payload, .. } => {
                if let Some(to) = reply_to.take() {
                    publish(&mut c, &to, &Properties::EMPTY, &payload)?;
                    c.flush().await.map_err(|e| e.to_string())?;
                }
            }
            _ => {}
        }
    }
    let _ = c.close().await;
    Ok(())
}

/// Calls until `deadline`; returns the round-trip times, µs.
async fn caller(uri: Uri, deadline: Instant, size: usize) -> Result<Vec<u32>, String> {
    let e = |e: ClientError| e.to_string();
    let mut c = Conn::connect(&uri, "lagomorph-perf rpc caller")
        .await
        .map_err(e)?;
    c.open_channel(CH).await.map_err(e)?;
    c.consume(CH, REPLY_TO, true).await.map_err(e)?;
    let props = Properties::from(&BasicProperties {
        reply_to: Some(ShortStr::from_static(REPLY_TO)),
        ..Default::default()
    });
    let body = vec![b'r'; size.max(1)];
    let mut rtts = Vec::new();
    while Instant::now() < deadline {
        let t0 = Instant::now();
        publish(&mut c, QUEUE, &props, &body)?;
        c.flush().await.map_err(|e| e.to_string())?;
        loop {
            let f = tokio::time::timeout(Duration::from_secs(5), c.next_frame())
                .await
                .map_err(|_| "no reply within 5 s".to_string())?
                .map_err(e)?;
            if let Frame::Body { .. } = f {
                break;
            }
        }
        rtts.push(t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
    }
    let _ = c.close().await;
    Ok(rtts)
}

/// Runs the servers and callers; prints the report.
pub(crate) async fn run(a: &RpcArgs) -> Result<(), String> {
    let uri = Uri::parse(&a.uri).map_err(|e| e.to_string())?;
    let mut setup = Conn::connect(&uri, "lagomorph-perf rpc setup")
        .await
        .map_err(|e| e.to_string())?;
    setup.open_channel(CH).await.map_err(|e| e.to_string())?;
    let _ = setup.queue_delete(CH, QUEUE).await;
    setup
        .queue_declare(CH, QUEUE, false, false, &[])
        .await
        .map_err(|e| e.to_string())?;
    let stop = Arc::new(AtomicBool::new(false));
    let servers: Vec<_> = (0..a.servers.max(1))
        .map(|_| tokio::spawn(server(uri.clone(), Arc::clone(&stop))))
        .collect();
    // Let the servers' consumers register before the first request.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(a.time);
    let callers: Vec<_> = (0..a.callers.max(1))
        .map(|_| tokio::spawn(caller(uri.clone(), deadline, a.size)))
        .collect();
    let mut all = Vec::new();
    let mut errors = Vec::new();
    for c in callers {
        match c.await {
            Ok(Ok(r)) => all.extend(r),
            Ok(Err(e)) => errors.push(e),
            Err(e) => errors.push(e.to_string()),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        let _ = s.await;
    }
    let _ = setup.queue_delete(CH, QUEUE).await;
    let _ = setup.close().await;
    all.sort_unstable();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return 0.0;
        }
        all[((all.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0
    };
    println!(
        "rpc: callers={} servers={} round_trips={} rate={:.0}/s rtt_ms p50={:.3} p99={:.3} \
         max={:.3} errors={}",
        a.callers,
        a.servers,
        all.len(),
        all.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        pct(1.0),
        errors.len()
    );
    match errors.first() {
        Some(e) => Err(e.clone()),
        None => Ok(()),
    }
}
