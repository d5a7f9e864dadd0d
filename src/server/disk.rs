//! The disk alarm's monitor (RabbitMQ's `rabbit_disk_monitor`): reads the free space of the
//! data directory's filesystem every interval and raises the broker's disk alarm while it is
//! below the limit, clearing it above. The limit can be changed while running
//! ([`DiskLimit::set`], RabbitMQ's `rabbitmqctl set_disk_free_limit`); the monitor checks again
//! at once.

use crate::broker::{Alarm, Broker};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The free-space limit in bytes, shared between whoever sets it and the monitor.
#[derive(Debug, Default)]
pub struct DiskLimit {
    bytes: AtomicU64,
    changed: Notify,
}

impl DiskLimit {
    /// A limit of `bytes` (0: the alarm never goes off).
    pub fn new(bytes: u64) -> DiskLimit {
        DiskLimit {
            bytes: AtomicU64::new(bytes),
            changed: Notify::new(),
        }
    }

    /// The limit in bytes.
    pub fn get(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Changes the limit; the monitor checks the disk again at once.
    pub fn set(&self, bytes: u64) {
        self.bytes.store(bytes, Ordering::Release);
        self.changed.notify_one();
    }
}

/// Checks the free space of `dir`'s filesystem every `interval` (and whenever the limit
/// changes) until `token` is cancelled. If the free space cannot be read (not Unix, or the
/// directory is gone) it logs once and leaves the alarm as it is.
pub async fn disk_monitor(
    broker: Broker,
    dir: PathBuf,
    limit: std::sync::Arc<DiskLimit>,
    interval: Duration,
    token: CancellationToken,
) {
    let mut warned = false;
    loop {
        match crate::process::disk_free(&dir) {
            Some(free) => {
                warned = false;
                let low = free < limit.get();
                if broker.set_alarm(Alarm::Disk, low) {
                    tracing::info!(
                        free_bytes = free,
                        limit_bytes = limit.get(),
                        dir = %dir.display(),
                        "free disk space {} the limit",
                        if low { "fell below" } else { "is back above" }
                    );
                }
            }
            None if !warned => {
                warned = true;
                tracing::warn!(dir = %dir.display(), "cannot read the free disk space");
            }
            None => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = limit.changed.notified() => {}
            _ = token.cancelled() => return,
        }
    }
}
