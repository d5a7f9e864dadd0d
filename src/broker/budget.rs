//! The global memory budget for ready messages kept in memory by all queues of the broker.
//!
//! A queue keeps a window of its ready messages in memory (at most its [`MemoryWindow`]) and
//! pages the rest out; the budget bounds the sum over all queues, so a thousand queues with
//! backlogs use what one budget allows, not a thousand windows. Each queue holds a
//! [`BudgetShare`] that reserves from the budget in units ([`MemoryBudget::unit`], at most
//! [`CHUNK`] bytes), so the hot path touches the shared counter about once per unit, not once per
//! message. The unit is a 1,024th of the budget (within 4 KiB and [`CHUNK`]), so that a thousand
//! queues can each hold one.
//!
//! **The cap.** The queues may reserve up to the budget's *cap*, not its limit. The broker
//! steers the cap from the process's resident memory ([`MemoryBudget::follow`], ten times a
//! second): what connections, unacknowledged deliveries, indexes and the allocator hold comes out
//! of the queues' part, so the whole process stays near the budget, down to a floor of an eighth
//! of it for the queues. Without that steering (tests, non-Linux hosts) the cap is the limit.
//!
//! **When the cap is reached** the budget is *full*: a share's unused reservation no longer
//! counts as room and goes back at its next credit, and a queue refills only up to a small floor
//! ([`REFILL_FLOOR`] messages, at most [`REFILL_FLOOR_BYTES`]), so that every queue keeps moving
//! in batches, never one message per disk read, while the charges come down.
//!
//! **Refills claim before they read** ([`BudgetShare::claim`]): the room a refill plans for is
//! reserved when it is planned, not when the messages arrive. Messages read back are charged
//! whether they fit or not (they were in memory before), so a thousand queues that each counted
//! the budget's free room as their own would read a thousand times it; that happened when a
//! falling cap made the shares give their slack back at the start of a drain.
//!
//! [`MemoryWindow`]: super::queue::MemoryWindow

use std::sync::atomic::{AtomicUsize, Ordering};

/// Most bytes a share reserves from or returns to the budget at a time.
pub const CHUNK: usize = 256 * 1024;

/// Budgets are split into at least this many reservation units (see the module docs).
const UNITS: usize = 1024;

/// Messages a queue may refill up to when the budget is full (see the module docs).
pub const REFILL_FLOOR: usize = 64;

/// Bytes (messages at their charge) a queue may refill up to when the budget is full: the floor
/// in messages is lowered for large ones, to at least one.
pub const REFILL_FLOOR_BYTES: usize = 64 * 1024;

/// The cap never goes under this share of the budget (1/8).
const CAP_FLOOR_DIV: usize = 8;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    unit: usize,
    used: AtomicUsize,
    /// What the queues may reserve now, within the limit (see the module docs).
    cap: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
            unit: (limit / UNITS).clamp(4096, CHUNK).min(limit / 64).max(1),
            used: AtomicUsize::new(0),
            cap: AtomicUsize::new(limit),
        }
    }

    /// Takes `n` bytes if they fit under the cap.
    fn try_reserve(&self, n: usize) -> bool {
        let cap = self.cap();
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                u.checked_add(n).filter(|&t| t <= cap)
            })
            .is_ok()
    }

    /// Takes up to `n` bytes of what is left under the cap; returns how many it took.
    fn reserve_up_to(&self, n: usize) -> usize {
        let cap = self.cap();
        match self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u < cap).then(|| u + n.min(cap - u))
            }) {
            Ok(before) => n.min(cap - before),
            Err(_) => 0,
        }
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

    /// What the queues may reserve now: the limit, or less while the rest of the process holds
    /// memory (see [`MemoryBudget::follow`]).
    pub fn cap(&self) -> usize {
        self.cap.load(Ordering::Relaxed)
    }

    /// Sets the cap, within an eighth of the limit and the limit.
    pub fn set_cap(&self, cap: usize) {
        let floor = (self.limit / CAP_FLOOR_DIV).max(1);
        self.cap
            .store(cap.clamp(floor, self.limit), Ordering::Relaxed);
    }

    /// Whether the queues' reservations reached the cap.
    pub fn full(&self) -> bool {
        self.used() >= self.cap()
    }

    /// One step of steering the cap from the process's resident memory `resident` (bytes):
    /// it moves by half the distance between `resident` and the target, seven eighths of the
    /// limit (the eighth above absorbs what refills add between two steps). A process that
    /// holds more than the target outside the queues leaves them the floor.
    pub fn follow(&self, resident: usize) {
        let target = self.limit - self.limit / 8;
        let cap = self.cap();
        let next = if resident > target {
            cap.saturating_sub((resident - target) / 2)
        } else {
            cap.saturating_add((target - resident) / 2)
        };
        self.set_cap(next);
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

    /// Gives `cost` bytes back; returns reserved room to `budget` beyond two units of slack,
    /// or all of it while the budget is over its cap.
    pub fn credit(&mut self, budget: &MemoryBudget, cost: usize) {
        self.used = self.used.saturating_sub(cost);
        let slack = self.held - self.used;
        let give = if slack > 0 && budget.used() > budget.cap() {
            slack
        } else if slack > 2 * budget.unit {
            slack - budget.unit
        } else {
            0
        };
        if give > 0 {
            budget.release(give);
            self.held -= give;
        }
    }

    /// Gives `cost` bytes back to this share only: the room stays reserved (a refill about to
    /// charge what it reads moves messages out before it reads); the next credit returns it.
    pub fn uncharge(&mut self, cost: usize) {
        self.used = self.used.saturating_sub(cost);
    }

    /// Returns everything (the queue is gone).
    pub fn release_all(&mut self, budget: &MemoryBudget) {
        budget.release(self.held);
        self.held = 0;
        self.used = 0;
    }

    /// Reserves room for up to `want` bytes of messages read back (a refill), and returns how
    /// many this share may now charge: its own unused reservation first, then what the budget
    /// has left under its cap, *taken* here, so that a thousand queues refilling at once do not
    /// each count the same room (they would read a thousand times it, and read-back messages
    /// are charged whether they fit or not). Nothing when the budget is full (the queue then
    /// refills up to the floor only, and its slack goes back at its next credit). Room taken
    /// and not used goes back at the next [`BudgetShare::credit`].
    pub fn claim(&mut self, budget: &MemoryBudget, want: usize) -> usize {
        if budget.full() {
            return 0;
        }
        let slack = self.held - self.used;
        if slack >= want {
            return want;
        }
        let more = budget.reserve_up_to(want - slack);
        self.held += more;
        slack + more
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
    fn a_share_claims_its_own_slack_first_and_takes_what_else_it_claims() {
        let b = MemoryBudget::new(UNITS * CHUNK);
        assert_eq!(b.unit(), CHUNK);
        let mut a = BudgetShare::default();
        let mut c = BudgetShare::default();
        assert!(a.charge(&b, UNITS / 2 * CHUNK));
        assert!(c.charge(&b, UNITS / 2 * CHUNK - 4 * CHUNK));
        a.credit(&b, CHUNK);
        assert_eq!(a.claim(&b, CHUNK / 2), CHUNK / 2, "its own slack covers it");
        assert_eq!(b.used(), (UNITS - 4) * CHUNK, "nothing taken for that");
        // The budget has four units left: the first claim takes three, the next finds one.
        assert_eq!(a.claim(&b, 4 * CHUNK), 4 * CHUNK);
        assert_eq!(c.claim(&b, 4 * CHUNK), CHUNK, "what the first claim left");
        assert!(b.full());
        assert_eq!(
            a.claim(&b, 1),
            0,
            "a full budget leaves no room, slack or not"
        );
        assert!(!c.charge(&b, CHUNK + 1));
        // What was claimed and not charged goes back at the next credit.
        b.set_cap(b.limit() / 2);
        a.credit(&b, 0);
        c.credit(&b, 0);
        assert_eq!(b.used(), a.used() + c.used());
    }

    #[test]
    fn a_lower_cap_fills_the_budget_and_shares_give_their_slack_back() {
        let b = MemoryBudget::new(UNITS * CHUNK);
        let mut a = BudgetShare::default();
        assert!(a.charge(&b, 200 * CHUNK));
        a.credit(&b, CHUNK + 1);
        assert!(
            b.used() > a.used(),
            "slack under two units stays while there is room"
        );
        b.set_cap(0);
        assert_eq!(b.cap(), b.limit() / 8, "the cap has a floor");
        assert!(b.full());
        assert_eq!(a.claim(&b, CHUNK), 0);
        assert!(
            !a.charge(&b, 2 * CHUNK),
            "nothing beyond the share's own reservation fits over the cap"
        );
        a.credit(&b, 1);
        assert_eq!(b.used(), a.used(), "over the cap, all slack goes back");
        b.set_cap(usize::MAX);
        assert_eq!(b.cap(), b.limit());
    }

    #[test]
    fn following_resident_memory_brings_it_to_seven_eighths_of_the_budget() {
        // A process whose queues hold what the cap allows and whose other memory is `other`:
        // its resident memory is the two together.
        for other in [0usize, 100, 180, 300] {
            let b = MemoryBudget::new(256 << 20);
            let mut resident = 0;
            for _ in 0..40 {
                resident = (other << 20) + b.cap();
                b.follow(resident);
            }
            let target = 224usize << 20;
            if other << 20 <= target - b.limit() / 8 {
                assert!(
                    resident.abs_diff(target) <= 1 << 20,
                    "other {other} MB: resident {} MB",
                    resident >> 20
                );
            } else {
                assert_eq!(
                    b.cap(),
                    b.limit() / 8,
                    "other {other} MB: the queues keep the floor"
                );
            }
        }
    }
}
