//! lagomorph-perf end to end: the binary against an in-process broker (and against its own
//! sink), for bounded message counts. Each run must be clean: nothing lost, duplicated or
//! reordered, every publish confirmed.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const PERF: &str = env!("CARGO_BIN_EXE_lagomorph-perf");

/// A number from the tool's flat JSON summary (`"key":123.4`), first occurrence.
fn field(json: &str, key: &str) -> f64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    let num: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == '-')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// Runs the tool with `args` (plus --json --quiet), bounded in time; returns its JSON summary
/// after checking it exited 0 (a clean run).
async fn perf(args: Vec<String>) -> String {
    let run = tokio::task::spawn_blocking(move || {
        Command::new(PERF)
            .args(&args)
            .args(["--json", "--quiet", "--drain-timeout", "20"])
            .output()
            .expect("run lagomorph-perf")
    });
    let out = tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .expect("lagomorph-perf took more than 120 s")
        .expect("join");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("\"clean\":true"), "{stdout}");
    stdout
}

fn args(uri: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec!["--uri".to_string(), uri.to_string()];
    v.extend(rest.iter().map(|s| s.to_string()));
    v
}

fn assert_clean(j: &str) {
    for k in [
        "lost",
        "duplicated",
        "out_of_order",
        "malformed",
        "unexpected",
        "nacked",
    ] {
        assert_eq!(field(j, k), 0.0, "{k} in {j}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_manual_ack_run_is_clean() {
    let b = support::start().await;
    let j = perf(args(
        &b.uri(),
        &[
            "-x", "2", "-y", "2", "-Q", "2", "-C", "3000", "-c", "100", "-q", "50", "-A", "10",
            "-f",
        ],
    ))
    .await;
    assert_eq!(field(&j, "published"), 6000.0);
    assert_eq!(field(&j, "confirmed"), 6000.0);
    assert_eq!(field(&j, "delivered"), 6000.0);
    assert_eq!(field(&j, "acked"), 6000.0);
    assert_eq!(
        field(&j, "count"),
        6000.0,
        "one latency sample per delivery"
    );
    assert_clean(&j);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_and_topic_runs_deliver_every_copy() {
    let b = support::start().await;
    let j = perf(args(
        &b.uri(),
        &["-t", "fanout", "-Q", "3", "-y", "3", "-C", "2000", "-a"],
    ))
    .await;
    assert_eq!(field(&j, "published"), 2000.0);
    assert_eq!(field(&j, "delivered"), 6000.0);
    assert_clean(&j);
    let j = perf(args(
        &b.uri(),
        &[
            "-t",
            "topic",
            "--bindings",
            "50",
            "-x",
            "2",
            "-C",
            "1000",
            "-s",
            "5000",
            "-c",
            "64",
        ],
    ))
    .await;
    assert_eq!(field(&j, "published"), 2000.0);
    assert_eq!(field(&j, "confirmed"), 2000.0);
    assert_eq!(field(&j, "delivered"), 2000.0);
    assert_clean(&j);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backlog_run_fills_then_drains() {
    let b = support::start().await;
    let j = perf(args(&b.uri(), &["--backlog", "5000", "-a"])).await;
    assert_eq!(field(&j, "published"), 5000.0);
    assert_eq!(field(&j, "delivered"), 5000.0);
    assert_eq!(field(&j, "messages"), 5000.0);
    assert!(field(&j, "drain_seconds") > 0.0, "{j}");
    assert_clean(&j);
    b.stop().await;
}

/// Starts `lagomorph-perf sink` with `extra` flags on a free port; returns it and its URI.
async fn start_sink(extra: &[&str]) -> (std::process::Child, String) {
    let mut sink = Command::new(PERF)
        .args(["sink", "--listen", "127.0.0.1:0", "--time", "60"])
        .args(extra)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sink");
    let stderr = sink.stderr.take().expect("stderr");
    let addr = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stderr).read_line(&mut line).expect("read");
        line.trim()
            .strip_prefix("sink: listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string()
    })
    .await
    .expect("join");
    (sink, format!("amqp://guest:guest@{addr}/%2f"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_confirms_everything_and_feeds_consumers() {
    let (mut sink, uri) = start_sink(&[]).await;
    let j = perf(args(&uri, &["-y", "0", "-C", "20000", "-c", "500"])).await;
    assert_eq!(field(&j, "published"), 20000.0);
    assert_eq!(field(&j, "confirmed"), 20000.0);
    let j = perf(args(&uri, &["-x", "0", "-D", "20000", "-q", "100"])).await;
    assert_eq!(field(&j, "delivered"), 20000.0);
    assert_eq!(field(&j, "acked"), 20000.0);
    assert_clean(&j);
    let _ = sink.kill();
    let _ = sink.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_sink_delivers_every_publish_once_in_order() {
    let (mut sink, uri) = start_sink(&["--relay"]).await;
    // Two producers to two consumers, taken in turn; then bodies of several frames each.
    let j = perf(args(&uri, &["-x", "2", "-y", "2", "-C", "10000", "-a"])).await;
    assert_eq!(field(&j, "published"), 20000.0);
    assert_eq!(field(&j, "delivered"), 20000.0);
    assert_eq!(
        field(&j, "count"),
        20000.0,
        "one latency sample per delivery"
    );
    assert_clean(&j);
    let j = perf(args(&uri, &["-C", "200", "-s", "300000", "-a"])).await;
    assert_eq!(field(&j, "delivered"), 200.0);
    assert_clean(&j);
    let _ = sink.kill();
    let _ = sink.wait();
}
