//! Figures about this process and its host, read from Linux's `/proc`: resident memory (the
//! memory alarm's input and management's `mem_used`), open file descriptors, total memory (the
//! default memory watermark), host name and processors; and the free space of a filesystem
//! (`statvfs`, the disk alarm's input and management's `disk_free`). The one place that reads
//! them, so the alarms and the management API report the same number. A leaf: imports nothing
//! of the crate.
//!
//! On other systems, or when `/proc` cannot be read, the `/proc` figures are `None`.

use std::path::Path;

/// Bytes free for unprivileged users on the filesystem holding `path` (`statvfs`'s
/// `f_bavail × f_frsize`, the "Available" column of `df`, which RabbitMQ reads). `None` when
/// it cannot be read.
pub fn disk_free(path: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        let st = rustix::fs::statvfs(path).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Resident memory of this process in bytes (`VmRSS` of `/proc/self/status`).
pub fn resident_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    kib_field(&status, "VmRSS:")
}

/// Total memory of the machine in bytes (`MemTotal` of `/proc/meminfo`).
pub fn total_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    kib_field(&info, "MemTotal:")
}

/// Open file descriptors of this process (entries of `/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    let dir = std::fs::read_dir("/proc/self/fd").ok()?;
    Some(dir.count() as u64)
}

/// The soft limit on open file descriptors (`Max open files` of `/proc/self/limits`); `None`
/// when unknown or unlimited.
pub fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The host name, `localhost` if unknown.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// Logical CPUs available to this process.
pub fn processors() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

/// The value of a `Name:   123 kB` line, in bytes.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix(name))?;
    let kib: u64 = line.split_whitespace().next()?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kib_fields() {
        let status = "Name:\tlagomorph\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(2 << 20));
        assert_eq!(kib_field(status, "VmSwap:"), None);
        assert_eq!(kib_field("VmRSS: x kB", "VmRSS:"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn reads_proc() {
        assert!(resident_memory().is_some_and(|n| n > 0));
        assert!(total_memory().is_some_and(|n| n >= resident_memory().unwrap_or(0)));
        assert!(open_fds().is_some_and(|n| n > 0));
        assert!(!hostname().is_empty());
        assert!(processors() >= 1);
        assert!(fd_limit().is_some_and(|n| n > 0));
        assert!(disk_free(Path::new(".")).is_some_and(|n| n > 0));
        assert_eq!(disk_free(Path::new("/no/such/directory")), None);
    }
}
