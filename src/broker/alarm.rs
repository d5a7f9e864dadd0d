//! Resource alarms (RabbitMQ's `rabbit_alarm`): memory and free disk space. While any is set,
//! publishing connections are blocked (connection.blocked, then not read) until all clear.
//! The monitors that raise them live in `server/`; this module only keeps the set and says
//! what to tell connections.

use std::sync::atomic::{AtomicU8, Ordering};

/// One resource alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Alarm {
    /// Resident memory above the high watermark.
    Memory,
    /// Free disk space below `disk_free_limit`.
    Disk,
}

impl Alarm {
    /// Both, in the order RabbitMQ's health checks list them.
    pub const ALL: [Alarm; 2] = [Alarm::Disk, Alarm::Memory];

    fn bit(self) -> u8 {
        match self {
            Alarm::Memory => 1,
            Alarm::Disk => 2,
        }
    }

    /// The resource's name in RabbitMQ's health checks (`/api/health/checks/alarms`):
    /// `memory`, `disk space`.
    pub fn resource(self) -> &'static str {
        match self {
            Alarm::Memory => "memory",
            Alarm::Disk => "disk space",
        }
    }
}

/// The set of alarms in effect.
#[derive(Debug, Default)]
pub(crate) struct Alarms(AtomicU8);

impl Alarms {
    /// Sets or clears one; returns the blocked reason before and after when that changed.
    pub(crate) fn set(&self, alarm: Alarm, on: bool) -> Option<(Option<String>, Option<String>)> {
        let old = if on {
            self.0.fetch_or(alarm.bit(), Ordering::AcqRel)
        } else {
            self.0.fetch_and(!alarm.bit(), Ordering::AcqRel)
        };
        let new = if on {
            old | alarm.bit()
        } else {
            old & !alarm.bit()
        };
        (old != new).then(|| (reason(old), reason(new)))
    }

    pub(crate) fn is_set(&self, alarm: Alarm) -> bool {
        self.0.load(Ordering::Acquire) & alarm.bit() != 0
    }

    /// The connection.blocked reason for the alarms in effect, `None` when there are none.
    pub(crate) fn reason(&self) -> Option<String> {
        reason(self.0.load(Ordering::Acquire))
    }
}

/// RabbitMQ's `rabbit_reader` reason: `low on ` and the resources joined with ` & `
/// (recorded in `tests/fixtures/rabbitmq-3.10/alarms.json`).
fn reason(bits: u8) -> Option<String> {
    let names: Vec<&str> = [(Alarm::Disk, "disk"), (Alarm::Memory, "memory")]
        .iter()
        .filter(|(a, _)| bits & a.bit() != 0)
        .map(|(_, n)| *n)
        .collect();
    (!names.is_empty()).then(|| format!("low on {}", names.join(" & ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_combine() {
        let a = Alarms::default();
        assert_eq!(a.reason(), None);
        assert_eq!(
            a.set(Alarm::Disk, true),
            Some((None, Some("low on disk".into())))
        );
        assert_eq!(a.set(Alarm::Disk, true), None);
        let both = a.set(Alarm::Memory, true).map(|(_, new)| new);
        assert_eq!(both, Some(Some("low on disk & memory".into())));
        assert!(a.is_set(Alarm::Memory) && a.is_set(Alarm::Disk));
        a.set(Alarm::Memory, false);
        assert_eq!(a.reason().as_deref(), Some("low on disk"));
        assert_eq!(
            a.set(Alarm::Disk, false),
            Some((Some("low on disk".into()), None))
        );
    }
}
