//! The global memory budget for ready messages kept in memory by all queues of the broker.
//!
//! A queue keeps a window of its ready messages in memory (at most its [`MemoryWindow`]) and
//! pages the rest out; the budget bounds the sum over all queues, so a thousand queues with
//! backlogs use what one budget allows, not a thousand windows. Each queue holds a
//! [`BudgetShare`] that reserves from the budget in units ([`MemoryBudget::unit`], at most
//! [`CHUNK`] bytes), so the hot path touches the shared counter about once per unit, not once per
//! message. The unit is a 1,024th of the budget (within 4 KiB and [`CHUNK`]), so that a thousand
//! queues can each hold one: with fewer units than busy queues, the queues without one find no
//! room and refill one message at a time. A queue with nothing in memory may always take one
//! message, whatever the budget says, so that every queue makes progress.
//!
//! [`MemoryWindow`]: super::queue::MemoryWindow

use std::sync::atomic::{AtomicUsize, Ordering};

/// Most bytes a share reserves from or returns to the budget at a time.
pub const CHUNK: usize = 256 * 1024;

/// Budgets are split into at least this many reservation units (see the module docs).
const UNITS: usize = 1024;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    unit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            unit: (limit / UNITS).clamp(4096, CHUNK).min(limit / 64).max(1),
            used: AtomicUsize::new(0),
        }
    }

    /// Takes `n` bytes if they fit.
    fn try_reserve(&self, n: usize) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= self.limit)
            })
            .is_ok()
    }

    /// Takes `n` bytes whether they fit or not.
    fn force(&self, n: usize) {
        self.used.fetch_add(n, Ordering::AcqRel);
    }

    fn release(&self, n: usize) {
        let _ = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Bytes reserved by all queues.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Acquire)
    }

    /// The budget.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes a share reserves at a time.
    pub fn unit(&self) -> usize {
        self.unit
    }
}

/// One queue's part of the budget: what it reserved and what of that it uses.
#[derive(Debug, Default)]
pub struct BudgetShare {
    held: usize,
    used: usize,
}

impl BudgetShare {
    /// Charges `cost` bytes to this share, reserving more from `budget` when needed; false
    /// (nothing charged) when the budget has no room.
    pub fn charge(&mut self, budget: &MemoryBudget, cost: usize) -> bool {
        if self.used + cost > self.held {
            let want = (self.used + cost - self.held).max(budget.unit.max(cost));
            if !budget.try_reserve(want) {
                // Less than a unit may still fit.
                let exact = self.used + cost - self.held;
                if exact == want || !budget.try_reserve(exact) {
                    return false;
                }
                self.held += exact;
            } else {
                self.held += want;
            }
        }
        self.used += cost;
        true
    }

    /// Charges `cost` bytes even over budget (a queue's only message in memory).
    pub fn force(&mut self, budget: &MemoryBudget, cost: usize) {
        if self.used + cost > self.held {
            let more = self.used + cost - self.held;
            budget.force(more);
            self.held += more;
        }
        self.used += cost;
    }

    /// Gives `cost` bytes back; returns reserved room to `budget` beyond two units of slack.
    pub fn credit(&mut self, budget: &MemoryBudget, cost: usize) {
        self.used = self.used.saturating_sub(cost);
        let slack = self.held - self.used;
        if slack > 2 * budget.unit {
            let give = slack - budget.unit;
            budget.release(give);
            self.held -= give;
        }
    }

    /// Returns everything (the queue is gone).
    pub fn release_all(&mut self, budget: &MemoryBudget) {
        budget.release(self.held);
        self.held = 0;
        self.used = 0;
    }

    /// Bytes this share could charge now: what it reserved and does not use, plus what the
    /// budget has left. A queue's own reservation is room for its refills: counting only the
    /// budget's free bytes starves a queue whose room is all in its own share (a thousand
    /// queues' shares may hold the whole budget between them).
    pub fn room(&self, budget: &MemoryBudget) -> usize {
        self.held.saturating_sub(self.used) + budget.limit().saturating_sub(budget.used())
    }

    /// Bytes charged.
    pub fn used(&self) -> usize {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_reserve_in_units_and_stay_within_the_budget() {
        let b = MemoryBudget::new(256 * CHUNK);
        assert_eq!(b.unit(), 256 * CHUNK / UNITS);
        let mut a = BudgetShare::default();
        let mut c = BudgetShare::default();
        assert!(a.charge(&b, 100));
        assert_eq!(b.used(), b.unit(), "one unit reserved for a small charge");
        let mut charged = 100;
        while a.charge(&b, 1000) {
            charged += 1000;
        }
        assert!(b.used() <= b.limit());
        assert!(
            charged > 255 * CHUNK,
            "the share used nearly the whole budget"
        );
        assert!(!c.charge(&b, CHUNK), "nothing left for another queue");
        c.force(&b, 10);
        assert!(b.used() > b.limit(), "one forced message may go over");
        a.credit(&b, charged);
        assert!(
            b.used() <= 2 * b.unit() + 10,
            "slack beyond a unit went back"
        );
        a.release_all(&b);
        c.release_all(&b);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_thousand_shares_each_get_a_unit_of_any_budget() {
        for mb in [8, 32, 128, 256, 1024] {
            let b = MemoryBudget::new(mb << 20);
            assert!(b.unit() <= CHUNK);
            let mut shares: Vec<BudgetShare> = (0..1000).map(|_| BudgetShare::default()).collect();
            for s in &mut shares {
                assert!(s.charge(&b, 300), "{mb} MB: every queue finds room");
            }
            assert!(b.used() <= b.limit());
        }
    }

    #[test]
    fn a_share_counts_its_own_slack_as_room_when_the_budget_is_spent() {
        let b = MemoryBudget::new(UNITS * CHUNK);
        assert_eq!(b.unit(), CHUNK);
        let mut a = BudgetShare::default();
        let mut c = BudgetShare::default();
        assert!(a.charge(&b, UNITS / 2 * CHUNK));
        assert!(c.charge(&b, UNITS / 2 * CHUNK));
        assert_eq!(b.used(), b.limit(), "the shares hold the whole budget");
        assert_eq!(a.room(&b), 0);
        a.credit(&b, CHUNK);
        assert_eq!(
            b.used(),
            b.limit(),
            "slack under two units stays with the share"
        );
        assert_eq!(a.room(&b), CHUNK, "what it gave back is its room");
        assert_eq!(c.room(&b), 0, "and not another share's");
        assert!(a.charge(&b, CHUNK), "room means a charge fits");
    }
}
