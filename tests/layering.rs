//! The layering rules of STYLE.md, checked like rust-analyzer's tidy tests: the core knows no
//! sockets and no outer layers, the protocol imports nothing of the crate, and every module
//! opens with a `//!` doc saying what it owns.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of every file under `src/<sub>`, comment lines left out (docs may name layers).
fn files(sub: &str) -> Vec<(PathBuf, String)> {
    let mut v = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(sub),
        &mut v,
    );
    v.into_iter()
        .map(|p| {
            let s = fs::read_to_string(&p).expect("read");
            let code: Vec<&str> = s
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            (p, code.join("\n"))
        })
        .collect()
}

#[test]
fn core_layers_know_no_sockets_or_outer_layers() {
    for layer in ["protocol", "session", "broker", "storage"] {
        for (p, s) in files(layer) {
            for bad in [
                "tokio::net",
                "crate::server",
                "crate::management",
                "std::net::TcpStream",
            ] {
                assert!(!s.contains(bad), "{} uses {bad}", p.display());
            }
        }
    }
}

#[test]
fn protocol_imports_nothing_else_of_the_crate() {
    for (p, s) in files("protocol") {
        for line in s.lines().filter(|l| l.contains("crate::")) {
            assert!(line.contains("crate::protocol"), "{}: {line}", p.display());
        }
    }
}

#[test]
fn storage_and_broker_do_not_reach_up() {
    for (p, s) in files("storage") {
        for bad in ["crate::broker", "crate::session", "crate::config"] {
            assert!(!s.contains(bad), "{} uses {bad}", p.display());
        }
    }
    for (p, s) in files("broker") {
        for bad in ["crate::session", "crate::config"] {
            assert!(!s.contains(bad), "{} uses {bad}", p.display());
        }
    }
}

#[test]
fn every_module_has_a_leading_doc() {
    let mut all = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut all);
    for p in all {
        let s = fs::read_to_string(&p).expect("read");
        let first = s.lines().find(|l| !l.trim().is_empty()).unwrap_or_default();
        assert!(
            first.starts_with("//!"),
            "{} does not open with a //! doc",
            p.display()
        );
    }
}

#[test]
fn management_reads_the_broker_not_sessions() {
    for (p, s) in files("management") {
        for bad in ["crate::session", "crate::server", "tokio::net::TcpStream"] {
            assert!(!s.contains(bad), "{} uses {bad}", p.display());
        }
    }
}

/// Code of a file up to its first `#[cfg(test)]` (test modules may read the clock to get a
/// starting instant; what they test may not).
fn non_test_code(p: &Path, s: &str) -> Option<String> {
    if p.file_name().is_some_and(|n| n == "tests.rs") {
        return None;
    }
    // Only the test module is cut off: a `#[cfg(test)]` on a helper earlier in the file must
    // not hide the code after it.
    Some(
        s.split("#[cfg(test)]\nmod tests")
            .next()
            .unwrap_or_default()
            .to_string(),
    )
}

/// Files below `server/` that read a clock for I/O bookkeeping of their own, not for any
/// protocol or queue rule: the sled store waits a bounded time for a previous process to
/// release its lock at open. (The group-commit flusher is given its clock: `broker::Monotonic`.)
const CLOCK_READERS: [&str; 1] = ["storage/sled/mod.rs"];

#[test]
fn core_layers_never_read_a_clock() {
    for layer in ["protocol", "session", "broker", "storage"] {
        for (p, s) in files(layer) {
            let shown = p.display().to_string();
            if CLOCK_READERS.iter().any(|f| shown.ends_with(f)) {
                continue;
            }
            let Some(code) = non_test_code(&p, &s) else {
                continue;
            };
            for bad in ["Instant::now", "SystemTime::now", "crate::clock"] {
                assert!(
                    !code.contains(bad),
                    "{shown} uses {bad}: time is passed in (a broker::Now)"
                );
            }
        }
    }
}
