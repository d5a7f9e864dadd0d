//! The binary as an operator meets it: bad configuration exits 2 naming the key, a port in use
//! exits 1, SIGTERM closes clients with 320 and exits 0, and the start-up banner says where it is.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::raw::Raw;
use support::{LogLines, free_port, free_ports};

const BIN: &str = env!("CARGO_BIN_EXE_lagomorph");

#[test]
fn bad_key_in_config_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[amqp]\nframe_maxx = 4096\n").expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("amqp.frame_maxx"), "{err}");
}

#[test]
fn bad_value_in_config_file_exits_2_naming_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[amqp]\nframe_max = 100\n").expect("write");
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("amqp.frame_max"), "{err}");
}

#[test]
fn port_in_use_exits_1_with_a_clear_message() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let out = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .args(["--management-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn second_broker_on_the_same_data_dir_refuses_to_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let first = lagomorph::storage::SledStore::open(dir.path(), 1 << 20).expect("first");
    let [amqp, http] = free_ports();
    let out = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{amqp}"), "--data-dir"])
        .arg(dir.path())
        .args(["--management-listen", &format!("127.0.0.1:{http}")])
        .output()
        .expect("run");
    drop(first);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another process"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_320_and_exits_0() {
    let dir = tempfile::tempdir().expect("tmp");
    let [port, http] = free_ports();
    let mut child = Command::new(BIN)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir.path())
        .args(["--management-listen", &format!("127.0.0.1:{http}")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    // The banner names the listener and the data directory; wait for it (bounded).
    let banner = LogLines::of(&mut child).wait_for("Lagomorph started");
    assert!(banner.contains(&format!("127.0.0.1:{port}")), "{banner}");
    assert!(
        banner.contains(&dir.path().display().to_string()),
        "{banner}"
    );
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let mut r = Raw::connect(addr).await;
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let (code, text, _, _) = r.expect_connection_close().await;
    assert_eq!(
        (code, text.as_str()),
        (
            320,
            "CONNECTION_FORCED - broker forced connection closure with reason 'shutdown'"
        )
    );
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "exited within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
}
