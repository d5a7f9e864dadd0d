//! Process and host figures for `/api/nodes` and `/metrics`, read from Linux's `/proc`; on other
//! systems (or if `/proc` is unreadable) they are zero.

/// Resident memory of this process in bytes (`VmRSS`).
pub(crate) fn resident_memory() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Open file descriptors of this process.
pub(crate) fn open_fds() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The host name (for the node name), `localhost` if unknown.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Logical CPUs.
pub(crate) fn processors() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    #[cfg(target_os = "linux")]
    fn reads_proc() {
        assert!(super::resident_memory() > 0);
        assert!(super::open_fds() > 0);
        assert!(!super::hostname().is_empty());
    }
}
