//! A load run from start to summary: declare the topology, connect consumers and producers,
//! start them together, stop the producers on time or count, let consumers drain, then merge
//! what every consumer saw and compare it with what was published.
//!
//! A `--backlog` run publishes first with no consumer attached, waits until the queues hold
//! everything, and only then starts the consumers, so fill and drain are measured apart.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cli::RunArgs;
use crate::client::{Conn, Uri};
use crate::consumer::{Consumer, ConsumerConfig, ConsumerOutcome};
use crate::producer::{Producer, ProducerConfig, ProducerOutcome};
use crate::report::{self, Backlog, Latency, Summary};
use crate::stats::{self, Counters, SeqSet};
use crate::topology::Topology;

/// The setup connection's channel.
const SETUP_CHANNEL: u16 = 1;
/// Hard cap on the drain phase, whatever progress consumers make.
const DRAIN_CAP: Duration = Duration::from_secs(600);
/// How often the coordinator looks at the counters.
const POLL: Duration = Duration::from_millis(10);

/// Runs a load test; `Err` only when the run could not start (connect, declare).
pub(crate) async fn run(args: &RunArgs) -> Result<Summary, String> {
    let uri = Uri::parse(&args.uri).map_err(|e| e.to_string())?;
    let topo = Topology::new(args);
    let _ = stats::origin();
    let mut setup = Conn::connect(&uri, "lagomorph-perf setup")
        .await
        .map_err(|e| format!("setup connection: {e}"))?;
    declare(&mut setup, &topo)
        .await
        .map_err(|e| format!("declaring the topology: {e}"))?;

    let counters = Arc::new(Counters::default());
    let stop_producers = CancellationToken::new();
    let stop_consumers = CancellationToken::new();
    let stop_live = CancellationToken::new();

    let per_producer = |i: u32| -> Option<u64> {
        match args.backlog {
            Some(n) => {
                let p = u64::from(args.producers);
                Some(n / p + u64::from(u64::from(i) < n % p))
            }
            None => args.pmessages,
        }
    };
    let producers = connect_all(
        (0..args.producers).map(|i| {
            let route = &topo.routes[i as usize];
            ProducerConfig {
                id: i,
                exchange: topo.exchange.clone(),
                keys: route.keys.clone(),
                size: args.size,
                rate: args.rate,
                confirm: args.confirm,
                persistent: args.persistent,
                priority_random: args.priority_random,
                limit: per_producer(i),
            }
        }),
        |cfg| {
            let uri = uri.clone();
            async move { Producer::connect(&uri, cfg).await }
        },
    )
    .await
    .map_err(|e| format!("producer: {e}"))?;

    let consumer_cfgs: Vec<ConsumerConfig> = (0..args.consumers)
        .map(|i| {
            let q = topo.queue_of_consumer(i);
            ConsumerConfig {
                id: i,
                queue: topo.queues[q].clone(),
                queue_index: q,
                prefetch: args.prefetch,
                auto_ack: args.auto_ack,
                multi_ack: args.multi_ack,
                limit: args.cmessages,
                producers: args.producers,
            }
        })
        .collect();
    let mut consumers = JoinSet::new();
    if args.backlog.is_none() {
        start_consumers(
            &uri,
            &consumer_cfgs,
            &counters,
            &stop_consumers,
            &mut consumers,
        )
        .await?;
    }

    // Go.
    let start = Instant::now();
    if !args.quiet {
        tokio::spawn(report::live(
            Arc::clone(&counters),
            start,
            stop_live.clone(),
        ));
    }
    let drain = Duration::from_secs_f64(args.drain_timeout);
    let mut producer_tasks = JoinSet::new();
    let mut producer_done = Vec::new();
    let close_gate = CancellationToken::new();
    for p in producers {
        let (tx, rx) = oneshot::channel();
        producer_done.push(rx);
        producer_tasks.spawn(p.run(
            Arc::clone(&counters),
            stop_producers.clone(),
            drain,
            tx,
            close_gate.clone(),
        ));
    }
    if let Some(t) = args.time_limit() {
        let stop = stop_producers.clone();
        tokio::spawn(async move {
            tokio::time::sleep(t).await;
            stop.cancel();
        });
    }
    if let Some(c) = args.cmessages
        && args.pmessages.is_none()
        && args.time.is_none()
    {
        // Producers have no limit of their own: stop them once the consumers have enough.
        let want = c * u64::from(args.consumers);
        let (stop, counters) = (stop_producers.clone(), Arc::clone(&counters));
        tokio::spawn(async move {
            while counters.delivered.load(Ordering::Relaxed) < want && !stop.is_cancelled() {
                tokio::time::sleep(POLL).await;
            }
            stop.cancel();
        });
    }
    let mut outcomes: Vec<ProducerOutcome> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for rx in producer_done {
        match rx.await {
            Ok(o) => outcomes.push(o),
            Err(_) => errors.push("a producer task ended without an outcome".into()),
        }
    }
    let publish_end = outcomes
        .iter()
        .filter_map(|o| o.finished)
        .max()
        .unwrap_or(start);
    let published_total: u64 = outcomes.iter().map(|o| o.published).sum();
    let per_producer_published = producer_counts(&outcomes, &topo);
    errors.extend(
        outcomes
            .iter()
            .filter_map(|o| o.error.as_ref().map(|e| format!("producer {}: {e}", o.id))),
    );

    // Backlog: wait for the queues to hold everything, then start draining.
    let mut backlog = None;
    let mut consume_start = start;
    if let Some(n) = args.backlog {
        let want = expected_in_queues(&topo, &per_producer_published);
        if let Err(e) = wait_for_backlog(&mut setup, &topo, &want, drain).await {
            errors.push(e);
        }
        let fill_end = Instant::now();
        consume_start = fill_end;
        backlog = Some(Backlog {
            messages: n,
            fill_seconds: fill_end.duration_since(start).as_secs_f64(),
            drain_seconds: 0.0,
        });
        start_consumers(
            &uri,
            &consumer_cfgs,
            &counters,
            &stop_consumers,
            &mut consumers,
        )
        .await?;
    }

    // Drain: until every published message reached every consumed queue, or no progress for
    // the drain timeout.
    let consumed_queues: Vec<bool> = (0..topo.queues.len())
        .map(|q| consumer_cfgs.iter().any(|c| c.queue_index == q))
        .collect();
    let expected_deliveries: u64 = topo
        .routes
        .iter()
        .zip(&per_producer_published)
        .map(|(r, n)| n * r.queues.iter().filter(|q| consumed_queues[**q]).count() as u64)
        .sum();
    let want = match args.cmessages {
        Some(c) => (c * u64::from(args.consumers)).min(expected_deliveries),
        None => expected_deliveries,
    };
    let mut seen: Vec<ConsumerOutcome> = Vec::new();
    if args.producers == 0 {
        // Consumers alone (e.g. draining an earlier run, or fed by `sink`): until their
        // --cmessages or the time limit.
        while !consumers.is_empty() && !stop_producers.is_cancelled() {
            while let Some(r) = consumers.try_join_next() {
                match r {
                    Ok(o) => seen.push(o),
                    Err(e) => errors.push(format!("consumer task failed: {e}")),
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let drain_started = Instant::now();
    let mut last_progress = (counters.delivered.load(Ordering::Relaxed), Instant::now());
    while args.producers > 0 && !consumers.is_empty() {
        while let Some(r) = consumers.try_join_next() {
            match r {
                Ok(o) => seen.push(o),
                Err(e) => errors.push(format!("consumer task failed: {e}")),
            }
        }
        let d = counters.delivered.load(Ordering::Relaxed);
        if d >= want {
            break;
        }
        if d != last_progress.0 {
            last_progress = (d, Instant::now());
        } else if last_progress.1.elapsed() >= drain {
            errors.push(format!(
                "consumers made no progress for {drain:?} with {d} of {want} deliveries"
            ));
            break;
        }
        if drain_started.elapsed() >= DRAIN_CAP {
            errors.push(format!("drain phase exceeded {DRAIN_CAP:?}"));
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    stop_consumers.cancel();
    // Now the producers may close (see Producer::run for why they waited).
    close_gate.cancel();
    while let Some(r) = producer_tasks.join_next().await {
        match r {
            Ok(Some(e)) => errors.push(format!("producer: {e}")),
            Ok(None) => {}
            Err(e) => errors.push(format!("producer task failed: {e}")),
        }
    }
    while let Some(r) = consumers.join_next().await {
        match r {
            Ok(o) => seen.push(o),
            Err(e) => errors.push(format!("consumer task failed: {e}")),
        }
    }
    stop_live.cancel();
    for o in &seen {
        if let Some(e) = &o.error {
            errors.push(format!("consumer: {e}"));
        }
    }
    if !args.keep_queues {
        for q in &topo.queues {
            if let Err(e) = setup.queue_delete(SETUP_CHANNEL, q).await {
                errors.push(format!("deleting {q}: {e}"));
                break;
            }
        }
    }
    let _ = setup.close().await;

    let last_delivery = seen.iter().filter_map(|o| o.last_delivery).max();
    let mut summary = Summary {
        setup: describe(args, &topo),
        producers: args.producers,
        consumers: args.consumers,
        queues: args.queues,
        size: args.size,
        publish_seconds: publish_end.duration_since(start).as_secs_f64(),
        consume_seconds: last_delivery.map_or(0.0, |t| {
            t.saturating_duration_since(consume_start).as_secs_f64()
        }),
        published: published_total,
        confirmed: counters.confirmed.load(Ordering::Relaxed),
        nacked: counters.nacked.load(Ordering::Relaxed),
        delivered: counters.delivered.load(Ordering::Relaxed),
        acked: counters.acked.load(Ordering::Relaxed),
        backlog,
        errors,
        ..Summary::default()
    };
    if let Some(b) = &mut summary.backlog {
        b.drain_seconds = summary.consume_seconds;
    }
    check(&mut summary, &topo, &per_producer_published, &seen, args);
    Ok(summary)
}

/// Declares the exchange, the queues (purged, so an earlier run's messages cannot disturb the
/// check) and the bindings.
async fn declare(setup: &mut Conn, topo: &Topology) -> crate::client::Result<()> {
    setup.open_channel(SETUP_CHANNEL).await?;
    if !topo.exchange.is_empty() {
        setup
            .exchange_declare(
                SETUP_CHANNEL,
                &topo.exchange,
                topo.kind.as_str(),
                topo.durable,
            )
            .await?;
    }
    for q in &topo.queues {
        setup
            .queue_declare(SETUP_CHANNEL, q, topo.durable, false, &topo.queue_args)
            .await?;
        setup.queue_purge(SETUP_CHANNEL, q).await?;
    }
    for (q, key) in &topo.bindings {
        setup
            .queue_bind(SETUP_CHANNEL, &topo.queues[*q], &topo.exchange, key)
            .await?;
    }
    Ok(())
}

/// Connects every item with at most 64 handshakes in flight; the first error wins.
async fn connect_all<C, T, F, Fut>(
    cfgs: impl Iterator<Item = C>,
    connect: F,
) -> crate::client::Result<Vec<T>>
where
    F: Fn(C) -> Fut,
    Fut: std::future::Future<Output = crate::client::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    let mut set = JoinSet::new();
    let mut done: Vec<(usize, T)> = Vec::new();
    for (i, cfg) in cfgs.enumerate() {
        if set.len() >= 64
            && let Some(r) = set.join_next().await
        {
            done.push(joined(r)?);
        }
        let fut = connect(cfg);
        set.spawn(async move { fut.await.map(|t| (i, t)) });
    }
    while let Some(r) = set.join_next().await {
        done.push(joined(r)?);
    }
    done.sort_by_key(|(i, _)| *i);
    Ok(done.into_iter().map(|(_, t)| t).collect())
}

/// Unwraps a joined connect task.
fn joined<T>(
    r: Result<crate::client::Result<(usize, T)>, tokio::task::JoinError>,
) -> crate::client::Result<(usize, T)> {
    match r {
        Ok(r) => r,
        Err(e) => Err(crate::client::ClientError::Unexpected(format!(
            "connect task failed: {e}"
        ))),
    }
}

/// Connects the consumers (all consuming once this returns) and spawns their loops.
async fn start_consumers(
    uri: &Uri,
    cfgs: &[ConsumerConfig],
    counters: &Arc<Counters>,
    stop: &CancellationToken,
    set: &mut JoinSet<ConsumerOutcome>,
) -> Result<(), String> {
    let connected = connect_all(cfgs.iter().cloned(), |cfg| {
        let uri = uri.clone();
        async move { Consumer::connect(&uri, cfg).await }
    })
    .await
    .map_err(|e| format!("consumer: {e}"))?;
    for c in connected {
        set.spawn(c.run(Arc::clone(counters), stop.clone()));
    }
    Ok(())
}

/// Messages published per producer id.
fn producer_counts(outcomes: &[ProducerOutcome], topo: &Topology) -> Vec<u64> {
    let mut v = vec![0u64; topo.routes.len()];
    for o in outcomes {
        if let Some(slot) = v.get_mut(o.id as usize) {
            *slot = o.published;
        }
    }
    v
}

/// Messages each queue should hold after a fill.
fn expected_in_queues(topo: &Topology, published: &[u64]) -> Vec<u64> {
    let mut want = vec![0u64; topo.queues.len()];
    for (r, n) in topo.routes.iter().zip(published) {
        for q in &r.queues {
            want[*q] += n;
        }
    }
    want
}

/// Polls queue depths (passive declare) until each holds `want`, for at most `limit` without
/// progress.
async fn wait_for_backlog(
    setup: &mut Conn,
    topo: &Topology,
    want: &[u64],
    limit: Duration,
) -> Result<(), String> {
    let mut last = (0u64, Instant::now());
    loop {
        let mut total = 0u64;
        let mut ok = true;
        for (q, w) in topo.queues.iter().zip(want) {
            let n = setup
                .queue_declare(SETUP_CHANNEL, q, topo.durable, true, &[])
                .await
                .map_err(|e| format!("checking {q}: {e}"))?;
            total += u64::from(n);
            ok &= u64::from(n) >= *w;
        }
        if ok {
            return Ok(());
        }
        if total != last.0 {
            last = (total, Instant::now());
        } else if last.1.elapsed() >= limit {
            return Err(format!(
                "queues hold {total} of {} messages after the fill",
                want.iter().sum::<u64>()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One line describing the run.
fn describe(a: &RunArgs, t: &Topology) -> String {
    let ack = if a.auto_ack {
        "auto-ack".to_string()
    } else if a.multi_ack > 1 {
        format!("ack every {}", a.multi_ack)
    } else {
        "manual ack".to_string()
    };
    let mut s = format!(
        "{} producer(s), {} consumer(s), {} queue(s), {} exchange {:?} ({} binding(s)), {} B bodies, {}",
        a.producers,
        a.consumers,
        a.queues,
        t.kind.as_str(),
        t.exchange,
        t.bindings.len(),
        a.size,
        ack
    );
    if a.prefetch > 0 {
        s += &format!(", prefetch {}", a.prefetch);
    }
    if let Some(w) = a.confirm {
        s += &format!(", confirms (window {w})");
    }
    if a.persistent {
        s += ", persistent";
    }
    if a.rate > 0 {
        s += &format!(", {} msg/s per producer", a.rate);
    }
    if let Some(n) = a.backlog {
        s += &format!(", backlog {n}");
    }
    s
}

/// Merges what the consumers saw per queue and compares it with what was published.
fn check(
    s: &mut Summary,
    topo: &Topology,
    published: &[u64],
    seen: &[ConsumerOutcome],
    args: &RunArgs,
) {
    let mut latency = crate::histogram::Histogram::default();
    // Per queue, per producer id: the union of the consumers' bitmaps.
    let mut merged: Vec<Vec<SeqSet>> = vec![Vec::new(); topo.queues.len()];
    let mut consumed = vec![false; topo.queues.len()];
    for o in seen {
        latency.merge(&o.tracker.latency);
        s.duplicated += o.tracker.duplicated;
        if args.priority_random.is_none() {
            // With random priorities, delivery order is priority order, not publish order.
            s.out_of_order += o.tracker.out_of_order;
        }
        s.malformed += o.tracker.malformed;
        consumed[o.queue_index] = true;
        let m = &mut merged[o.queue_index];
        if m.len() < o.tracker.seen.len() {
            m.resize(o.tracker.seen.len(), SeqSet::default());
        }
        for (p, set) in o.tracker.seen.iter().enumerate() {
            s.duplicated += m[p].union(set);
        }
    }
    s.latency = Latency::from_ns(&latency);
    // A consumer limited by --cmessages stops early by design: count only gaps then.
    let drained = args.cmessages.is_none();
    for (q, sets) in merged.iter().enumerate() {
        if !consumed[q] {
            continue;
        }
        let width = sets.len().max(published.len());
        for p in 0..width {
            let empty = SeqSet::default();
            let set = sets.get(p).unwrap_or(&empty);
            let routed = topo.routes.get(p).is_some_and(|r| r.queues.contains(&q));
            let expected = match published.get(p) {
                Some(n) if drained && routed => *n,
                _ => set.end(),
            };
            let beyond = set.count_from(expected);
            s.unexpected += beyond;
            s.lost += expected - (set.len() - beyond);
        }
    }
}
