//! Crash safety: the real binary is killed with SIGKILL while publishers wait for confirms; after
//! each restart every confirmed message is there, in per-publisher order (at least once).

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Broker {
    child: Child,
    port: u16,
}

fn spawn(dir: &std::path::Path) -> Broker {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_lagomorph"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .args(["--management-listen", &format!("127.0.0.1:{}", free_port())])
        .env("LAGOMORPH_LOG_LEVEL", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lagomorph");
    Broker { child, port }
}

async fn connect(b: &Broker) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    loop {
        match Connection::connect(&uri, ConnectionProperties::default()).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("broker did not come up: {e}"),
        }
    }
}

/// A cheap deterministic pseudo-random source (no extra crate).
fn rand_u64(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_messages_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    const PUBLISHERS: usize = 2;
    // Per publisher, the ranges of sequences confirmed in each cycle (a cycle's unconfirmed
    // tail may be lost; the next cycle starts after it).
    let mut confirmed: BTreeMap<usize, Vec<std::ops::Range<u64>>> = BTreeMap::new();
    let mut next_seq: BTreeMap<usize, u64> = BTreeMap::new();
    for cycle in 0..3 {
        let mut b = spawn(dir.path());
        let kill_after = 200 + rand_u64(&mut seed) % 2000;
        let conn = connect(&b).await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(
            "crash".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
        let mut tasks = Vec::new();
        for p in 0..PUBLISHERS {
            let ch = conn.create_channel().await.expect("channel");
            ch.confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("select");
            let start = *next_seq.get(&p).unwrap_or(&0);
            tasks.push(tokio::spawn(async move {
                // Publish in windows of 50 and record the highest confirmed sequence.
                let mut last_confirmed = None;
                let mut seq = start;
                'outer: loop {
                    let mut window = Vec::new();
                    for _ in 0..50 {
                        let body = format!("{p}:{seq}");
                        match ch
                            .basic_publish(
                                "".into(),
                                "crash".into(),
                                BasicPublishOptions::default(),
                                body.as_bytes(),
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await
                        {
                            Ok(c) => window.push((seq, c)),
                            Err(_) => break 'outer,
                        }
                        seq += 1;
                    }
                    for (s, c) in window {
                        match c.await {
                            Ok(conf) if conf.is_ack() => last_confirmed = Some(s),
                            _ => break 'outer,
                        }
                    }
                    if seq - start > 100_000 {
                        break;
                    }
                }
                (p, start, last_confirmed, seq)
            }));
        }
        // Kill once enough messages are confirmed: poll the broker's queue depth through a
        // passive declare (bounded in time).
        let watch = conn.create_channel().await.expect("channel");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let q = watch
                .queue_declare(
                    "crash".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive");
            if u64::from(q.message_count()) >= kill_after * (cycle + 1) || Instant::now() > deadline
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        b.child.kill().expect("SIGKILL");
        let _ = b.child.wait();
        for t in tasks {
            let (p, start, last, seq) = t.await.expect("publisher");
            if let Some(l) = last {
                confirmed.entry(p).or_default().push(start..l + 1);
            }
            next_seq.insert(p, seq);
        }
        drop(conn);
    }
    // Final restart: read everything back.
    let mut b = spawn(dir.path());
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    let q = ch
        .queue_declare(
            "crash".into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declare");
    let total = q.message_count();
    let mut cons = ch
        .basic_consume(
            "crash".into(),
            "check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let mut seen: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for _ in 0..total {
        let d = tokio::time::timeout(Duration::from_secs(10), cons.next())
            .await
            .expect("timely")
            .expect("open")
            .expect("delivery");
        let s = String::from_utf8(d.data).expect("utf8");
        let (p, n) = s.split_once(':').expect("p:n");
        seen.entry(p.parse().expect("p"))
            .or_default()
            .push(n.parse().expect("n"));
    }
    b.child.kill().expect("kill");
    let _ = b.child.wait();
    let mut total_confirmed = 0;
    for (p, ranges) in &confirmed {
        let got = seen.get(p).cloned().unwrap_or_default();
        // Per-publisher order: increasing, apart from at-least-once duplicates.
        assert!(
            got.windows(2).all(|w| w[0] <= w[1]),
            "publisher {p} out of order"
        );
        let mut sorted = got.clone();
        sorted.dedup();
        for r in ranges {
            total_confirmed += r.end - r.start;
            for s in r.clone() {
                assert!(
                    sorted.binary_search(&s).is_ok(),
                    "publisher {p}: confirmed message {s} lost"
                );
            }
        }
    }
    assert!(total_confirmed > 0, "something was confirmed");
}

/// Dead-lettering between durable queues keeps every persistent message in exactly one of the
/// two across a crash: SIGKILL while messages expire from a durable queue into another; after
/// the restart every confirmed message is in exactly one of them (the source's removal and the
/// target's put land in the same store flush), and none is there twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_between_durable_queues_survive_kill_9_exactly_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(11, |d| d.as_nanos() as u64)
        | 1;
    const CYCLES: usize = 3;
    const MESSAGES: u64 = 3000;
    let durable = || QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let source_args = |target: &str| {
        let mut t = FieldTable::default();
        t.insert(
            "x-message-ttl".into(),
            lapin::types::AMQPValue::LongInt(100),
        );
        t.insert(
            "x-dead-letter-exchange".into(),
            lapin::types::AMQPValue::LongString("".into()),
        );
        t.insert(
            "x-dead-letter-routing-key".into(),
            lapin::types::AMQPValue::LongString(target.into()),
        );
        t
    };
    // Per cycle, the sequences confirmed before the kill.
    let mut confirmed: Vec<std::collections::BTreeSet<u64>> = Vec::new();
    for cycle in 0..CYCLES {
        let (src, dst) = (format!("dl-src-{cycle}"), format!("dl-dst-{cycle}"));
        let mut b = spawn(dir.path());
        let conn = connect(&b).await;
        let ch = conn.create_channel().await.expect("channel");
        ch.queue_declare(dst.as_str().into(), durable(), FieldTable::default())
            .await
            .expect("target");
        ch.queue_declare(src.as_str().into(), durable(), source_args(&dst))
            .await
            .expect("source");
        ch.confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("select");
        let publisher = {
            let src = src.clone();
            tokio::spawn(async move {
                let mut ok = std::collections::BTreeSet::new();
                'outer: for start in (0..MESSAGES).step_by(100) {
                    let mut window = Vec::new();
                    for seq in start..start + 100 {
                        match ch
                            .basic_publish(
                                "".into(),
                                src.as_str().into(),
                                BasicPublishOptions::default(),
                                format!("{cycle}:{seq}").as_bytes(),
                                BasicProperties::default().with_delivery_mode(2),
                            )
                            .await
                        {
                            Ok(c) => window.push((seq, c)),
                            Err(_) => break 'outer,
                        }
                    }
                    for (seq, c) in window {
                        match c.await {
                            Ok(conf) if conf.is_ack() => {
                                ok.insert(seq);
                            }
                            _ => break 'outer,
                        }
                    }
                }
                ok
            })
        };
        // Kill once some of them have been dead-lettered (bounded in time).
        let kill_at = 1 + rand_u64(&mut seed) % (MESSAGES / 2);
        let watch = conn.create_channel().await.expect("channel");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let moved = watch
                .queue_declare(
                    dst.as_str().into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("passive")
                .message_count();
            if u64::from(moved) >= kill_at || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        b.child.kill().expect("SIGKILL");
        let _ = b.child.wait();
        confirmed.push(publisher.await.expect("publisher"));
        drop(conn);
    }
    let mut b = spawn(dir.path());
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    for (cycle, ok) in confirmed.iter().enumerate() {
        let (src, dst) = (format!("dl-src-{cycle}"), format!("dl-dst-{cycle}"));
        // What is left in the source expires into the target now.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = ch
                .queue_declare(src.as_str().into(), durable(), source_args(&dst))
                .await
                .expect("source")
                .message_count();
            if left == 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{left} never expired from {src}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut seen = std::collections::BTreeMap::<u64, u32>::new();
        while let Some(m) = ch
            .basic_get(dst.as_str().into(), BasicGetOptions { no_ack: true })
            .await
            .expect("get")
        {
            let s = String::from_utf8(m.delivery.data.clone()).expect("utf8");
            let (c, n) = s.split_once(':').expect("c:n");
            assert_eq!(c, cycle.to_string());
            *seen.entry(n.parse().expect("n")).or_default() += 1;
        }
        for seq in ok {
            assert_eq!(
                seen.get(seq),
                Some(&1),
                "cycle {cycle}: confirmed message {seq} not exactly once"
            );
        }
        assert!(
            seen.values().all(|&n| n == 1),
            "cycle {cycle}: a message is there twice"
        );
        assert!(!ok.is_empty(), "cycle {cycle}: something was confirmed");
    }
    b.child.kill().expect("kill");
    let _ = b.child.wait();
}
