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
