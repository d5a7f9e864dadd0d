//! Time as the broker sees it: a value passed in, never read from a clock here.
//!
//! [`Now`] carries both clocks the broker needs: a monotonic [`Instant`] for durations that
//! only matter while the process runs (queue expiry with `x-expires`, timers) and wall-clock
//! milliseconds since the Unix epoch for deadlines that must survive a restart (message TTL is
//! stored as an absolute wall-clock deadline, as RabbitMQ does). Only `server/`, `management/`
//! and `main` read the clocks and build one ([`Now::new`]); tests build them at fixed values,
//! which makes every time rule of the broker testable in microseconds (quinn-proto's rule).

use std::time::{Duration, Instant};

/// A monotonic clock handed to the broker's own threads (the group-commit flusher times its
/// flushes with it, for the latency histogram and the stall watch). The broker calls it; it
/// never names a clock itself. Its `Default`, in `crate::clock`, reads the system's monotonic
/// clock; a test may pass any function.
#[derive(Clone, Copy, Debug)]
pub struct Monotonic(pub fn() -> Instant);

impl Monotonic {
    /// The clock's current reading.
    pub fn read(&self) -> Instant {
        (self.0)()
    }
}

/// The current time, in both clocks the broker uses. Cheap to copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time: durations and in-process deadlines.
    pub mono: Instant,
    /// Wall-clock milliseconds since the Unix epoch: deadlines that are persisted.
    pub unix_ms: u64,
}

impl Now {
    /// A time read by the caller from both clocks at (about) the same moment.
    pub fn new(mono: Instant, unix_ms: u64) -> Now {
        Now { mono, unix_ms }
    }

    /// This time plus `d` on both clocks (tests step time forward with it).
    pub fn after(self, d: Duration) -> Now {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Now {
            mono: self.mono + d,
            unix_ms: self.unix_ms.saturating_add(ms),
        }
    }

    /// The monotonic instant at which the wall clock will read `unix_ms`, assuming both clocks
    /// advance together from now (the past maps to now). Used to sleep until a persisted
    /// deadline.
    pub fn mono_at(self, unix_ms: u64) -> Instant {
        self.mono + Duration::from_millis(unix_ms.saturating_sub(self.unix_ms))
    }

    /// Wall-clock seconds since the epoch (x-death's `time`).
    pub fn unix_secs(self) -> u64 {
        self.unix_ms / 1000
    }
}
