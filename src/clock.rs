//! Reads the clocks: the one function that turns "now" into a [`Now`] for the broker. Used by
//! `server/`, `management/`, `main` and tests; the layers below never read a clock (see
//! `tests/layering.rs`), they are given one of these.

use crate::broker::{Monotonic, Now};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Both clocks, read now.
pub fn now() -> Now {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    Now::new(Instant::now(), unix_ms)
}

/// The system's monotonic clock, for the broker's threads that time their own work.
impl Default for Monotonic {
    fn default() -> Self {
        Monotonic(Instant::now)
    }
}
