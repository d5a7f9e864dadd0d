//! The real `lagomorph` binary as a child process, for tests that kill it, stop it or damage
//! its files between runs (`tests/crash.rs`, `tests/damage.rs`). Included with
//! `#[path = "support/process.rs"] mod process;`.

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Two distinct free loopback ports (bound at once, then released: ports taken one at a time
/// may repeat, and a broker given the same port twice refuses to start).
pub(crate) fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = |l: &std::net::TcpListener| l.local_addr().expect("addr").port();
    (port(&a), port(&b))
}

/// A running broker; dropping it kills it, so a failing test leaves nothing running.
pub(crate) struct Broker {
    pub(crate) child: Child,
    pub(crate) port: u16,
    /// The management listener's port (tests/damage.rs reads /metrics there).
    #[allow(dead_code)]
    pub(crate) http: u16,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on `data_dir` with body-log segments of `segment_mb` MiB, its
/// stderr to `stderr` (inherited when `None`).
pub(crate) fn spawn(data_dir: &Path, segment_mb: u32, stderr: Option<std::fs::File>) -> Broker {
    let (port, http) = free_ports();
    let child = Command::new(env!("CARGO_BIN_EXE_lagomorph"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data_dir)
        .args(["--management-listen", &format!("127.0.0.1:{http}")])
        .env("LAGOMORPH_LOG_LEVEL", "warn")
        .env("LAGOMORPH_SEGMENT_SIZE_MB", segment_mb.to_string())
        .stdout(Stdio::null())
        .stderr(stderr.map_or_else(Stdio::inherit, Stdio::from))
        .spawn()
        .expect("spawn lagomorph");
    Broker { child, port, http }
}

/// Connects, retrying while the broker starts (bounded).
pub(crate) async fn connect(b: &Broker) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", b.port);
    loop {
        match Connection::connect(&uri, ConnectionProperties::default()).await {
            Ok(c) => return c,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("broker did not come up: {e}"),
        }
    }
}

/// Declares a durable queue (or, `passive`, looks it up); returns its message count.
pub(crate) async fn declare(ch: &Channel, queue: &str, passive: bool) -> u32 {
    ch.queue_declare(
        queue.into(),
        QueueDeclareOptions {
            durable: true,
            passive,
            ..Default::default()
        },
        FieldTable::default(),
    )
    .await
    .expect("declare")
    .message_count()
}
