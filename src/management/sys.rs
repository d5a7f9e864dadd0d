//! Process and host figures for `/api/nodes` and `/metrics`, read from Linux's `/proc`; on other
//! systems (or if `/proc` is unreadable) they are zero. Disk space comes from `statvfs`.

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

/// The soft limit on open file descriptors (`Max open files` in `/proc/self/limits`), 0 if
/// unknown or unlimited.
pub(crate) fn fd_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Max open files"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

/// Bytes available to this process on the file system holding `path` (`statvfs`), `None` if
/// it cannot be read.
pub(crate) fn disk_free(path: &std::path::Path) -> Option<u64> {
    let v = rustix::fs::statvfs(path).ok()?;
    Some(v.f_bavail.saturating_mul(v.f_frsize))
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
        assert!(super::fd_limit() > 0);
        assert!(super::disk_free(std::path::Path::new("/")).is_some());
    }
}
