//! Damage to the body log between two runs of the real binary: the last segment cut at a random
//! offset, one byte flipped inside a record, a whole segment deleted. Each time the broker
//! starts, logs what it set aside, and serves every message that was not in a damaged record,
//! byte for byte. The test finds which messages a record held by reading the segment files
//! itself (the layout is documented in `storage::bodylog::format` and `storage::record`).

use futures_lite::StreamExt;
use lapin::BasicProperties;
use lapin::options::*;
use lapin::types::FieldTable;

#[path = "support/process.rs"]
mod process;
use process::{Broker, connect, declare, spawn};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const QUEUE: &str = "damaged";
const MESSAGES: u64 = 3000;

/// A broker and the file its log goes to.
struct Logged {
    broker: Broker,
    log: PathBuf,
}

fn start(dir: &Path, log: PathBuf) -> Logged {
    let file = std::fs::File::create(&log).expect("log file");
    Logged {
        broker: spawn(&dir.join("data"), 1, Some(file)),
        log,
    }
}

/// Stops the broker cleanly (SIGTERM; it flushes) and waits, bounded.
fn stop(mut b: Broker) {
    let _ = std::process::Command::new("kill")
        .arg(b.child.id().to_string())
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = b.child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("broker did not stop");
}

fn body(seq: u64) -> Vec<u8> {
    let mut b = format!("{seq}:").into_bytes();
    b.resize(1000 + (seq as usize * 37) % 1500, (seq % 251) as u8);
    b
}

fn seq_of(body: &[u8]) -> u64 {
    let end = body.iter().position(|&b| b == b':').expect("seq:");
    std::str::from_utf8(&body[..end])
        .expect("utf8")
        .parse()
        .expect("seq")
}

/// One body-log record as found in a segment file: where it is and the sequences it holds
/// (none for an index record, kind 2).
struct Record {
    offset: u64,
    len: u64,
    seqs: Vec<u64>,
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes(b.try_into().expect("4 bytes")))
}

/// The records of a segment file (32-byte header; records of a 36-byte header, its kind at byte
/// 8, then for a chunk (kind 1): schema byte, then entries `id u64, len u32, exchange, routing
/// key, properties, meta, body`).
fn records(path: &Path) -> Vec<Record> {
    let data = std::fs::read(path).expect("segment");
    let mut out = Vec::new();
    let mut at = 32usize;
    while at + 36 <= data.len() {
        let len = be32(&data[at + 4..at + 8]) as usize;
        let payload = &data[at + 36..at + 36 + len];
        let mut seqs = Vec::new();
        let mut p = if data[at + 8] == 1 { 1 } else { payload.len() };
        while p < payload.len() {
            let elen = be32(&payload[p + 8..p + 12]) as usize;
            let mut f = p + 12;
            for _ in 0..4 {
                f += 4 + be32(&payload[f..f + 4]) as usize;
            }
            seqs.push(seq_of(&payload[f..p + 12 + elen]));
            p += 12 + elen;
        }
        out.push(Record {
            offset: at as u64,
            len: (36 + len) as u64,
            seqs,
        });
        at += 36 + len;
    }
    out
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("data").join("bodies"))
        .expect("bodies")
        .map(|e| e.expect("entry").path())
        .collect();
    v.sort();
    v
}

/// Publishes MESSAGES persistent messages with confirms, then stops the broker.
async fn fill(dir: &Path) {
    let Logged { broker: b, .. } = start(dir, dir.join("fill.log"));
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    declare(&ch, QUEUE, false).await;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("select");
    for chunk in (0..MESSAGES).collect::<Vec<_>>().chunks(100) {
        let mut pending = Vec::new();
        for &seq in chunk {
            let props = BasicProperties::default().with_delivery_mode(2);
            pending.push(
                ch.basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    &body(seq),
                    props,
                )
                .await
                .expect("publish"),
            );
        }
        for c in pending {
            assert!(c.await.expect("confirm").is_ack());
        }
    }
    drop(conn);
    stop(b);
}

/// Restarts, consumes everything, and checks that exactly the messages outside `lost` come
/// back, whole; returns the broker's log.
async fn check(dir: &Path, lost: &BTreeSet<u64>, what: &str) -> String {
    let Logged { broker: b, log } = start(dir, dir.join(format!("{what}.log")));
    let conn = connect(&b).await;
    let ch = conn.create_channel().await.expect("channel");
    let mut cons = ch
        .basic_consume(
            QUEUE.into(),
            "check".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let expected: Vec<u64> = (0..MESSAGES).filter(|s| !lost.contains(s)).collect();
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let d = tokio::time::timeout(Duration::from_secs(20), cons.next())
            .await
            .unwrap_or_else(|_| {
                panic!("{what}: only {} of {} came back", got.len(), expected.len())
            })
            .expect("open")
            .expect("delivery");
        let seq = seq_of(&d.data);
        assert_eq!(d.data, body(seq), "{what}: message {seq} damaged");
        got.push(seq);
    }
    assert_eq!(got, expected, "{what}");
    let left = declare(&ch, QUEUE, true).await;
    assert_eq!(left, 0, "{what}: nothing else in the queue");
    let quarantined = quarantined_metric(&b).await;
    if lost.is_empty() {
        assert_eq!(quarantined, 0, "{what}: nothing set aside");
    } else {
        assert!(
            quarantined > 0,
            "{what}: /metrics counts what was set aside"
        );
    }
    drop(conn);
    stop(b);
    std::fs::read_to_string(log).expect("log")
}

/// `lagomorph_store_quarantined_records_total` from the broker's /metrics.
async fn quarantined_metric(b: &Broker) -> u64 {
    let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", b.http))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix("lagomorph_store_quarantined_records_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no quarantine counter in /metrics:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_segments_are_set_aside_and_the_rest_is_served() {
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(7, |d| d.as_nanos() as u64)
        | 1;
    eprintln!("damage test seed {seed}");
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };

    // 1. The last segment cut at a random offset.
    let dir = tempfile::tempdir().expect("tmp");
    fill(dir.path()).await;
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "{segs:?}");
    let last = segs.last().expect("segment").clone();
    let recs = records(&last);
    let size = std::fs::metadata(&last).expect("meta").len();
    let cut = 32 + next() % (size - 32);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .expect("open")
        .set_len(cut)
        .expect("truncate");
    let lost: BTreeSet<u64> = recs
        .iter()
        .filter(|r| r.offset + r.len > cut)
        .flat_map(|r| r.seqs.clone())
        .collect();
    let log = check(dir.path(), &lost, "truncated").await;
    if !lost.is_empty() {
        assert!(
            log.contains("set aside"),
            "the log says what was set aside:\n{log}"
        );
    }

    // 2. One byte flipped inside a record of a middle segment.
    let dir = tempfile::tempdir().expect("tmp");
    fill(dir.path()).await;
    let segs = segments(dir.path());
    let victim = &segs[segs.len() / 2];
    let recs: Vec<Record> = records(victim)
        .into_iter()
        .filter(|r| !r.seqs.is_empty())
        .collect();
    let rec = &recs[(next() % recs.len() as u64) as usize];
    let at = rec.offset + next() % rec.len;
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(victim)
            .expect("open");
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, at).expect("read");
        b[0] ^= 1 << (next() % 8);
        f.write_all_at(&b, at).expect("write");
    }
    let lost: BTreeSet<u64> = rec.seqs.iter().copied().collect();
    let log = check(dir.path(), &lost, "flipped").await;
    assert!(
        log.contains("set aside"),
        "the log says what was set aside:\n{log}"
    );

    // 3. A whole segment deleted.
    let dir = tempfile::tempdir().expect("tmp");
    fill(dir.path()).await;
    let segs = segments(dir.path());
    let victim = &segs[(next() % (segs.len() as u64 - 1)) as usize];
    let lost: BTreeSet<u64> = records(victim).into_iter().flat_map(|r| r.seqs).collect();
    std::fs::remove_file(victim).expect("rm");
    let log = check(dir.path(), &lost, "deleted").await;
    assert!(
        log.contains("missing"),
        "the log names the missing segment:\n{log}"
    );
}
