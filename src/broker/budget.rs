//! The global memory budget for ready messages kept in memory by all queues of the broker.
//!
//! A queue keeps a window of its ready messages in memory (at most its [`MemoryWindow`]) and
//! pages the rest out; the budget bounds the sum over all queues, so a thousand queues with
//! backlogs use what one budget allows, not a thousand windows. Each queue holds a
//! [`BudgetShare`] that reserves from the budget in chunks, so the hot path touches the shared
//! counter about once per [`CHUNK`] bytes, not once per message. A queue with nothing in memory
//! may always take one message, whatever the budget says, so that every queue makes progress.
//!
//! [`MemoryWindow`]: super::queue::MemoryWindow

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes a share reserves from or returns to the budget at a time.
pub const CHUNK: usize = 256 * 1024;

/// See the module docs.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: usize,
    used: AtomicUsize,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> MemoryBudget {
        MemoryBudget {
            limit,
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
            let want = (self.used + cost - self.held).max(CHUNK.min(budget.limit / 64).max(cost));
            if !budget.try_reserve(want) {
                // Less than a chunk may still fit.
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

    /// Gives `cost` bytes back; returns reserved room to `budget` beyond two chunks of slack.
    pub fn credit(&mut self, budget: &MemoryBudget, cost: usize) {
        self.used = self.used.saturating_sub(cost);
        let slack = self.held - self.used;
        if slack > 2 * CHUNK {
            let give = slack - CHUNK;
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
    fn shares_reserve_in_chunks_and_stay_within_the_budget() {
        let b = MemoryBudget::new(256 * CHUNK);
        let mut a = BudgetShare::default();
        let mut c = BudgetShare::default();
        assert!(a.charge(&b, 100));
        assert_eq!(b.used(), CHUNK, "one chunk reserved for a small charge");
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
        assert!(b.used() <= 2 * CHUNK + 10, "slack beyond a chunk went back");
        a.release_all(&b);
        c.release_all(&b);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_share_counts_its_own_slack_as_room_when_the_budget_is_spent() {
        let b = MemoryBudget::new(4 * CHUNK);
        let mut a = BudgetShare::default();
        let mut c = BudgetShare::default();
        assert!(a.charge(&b, 2 * CHUNK));
        assert!(c.charge(&b, 2 * CHUNK));
        assert_eq!(b.used(), b.limit(), "the shares hold the whole budget");
        assert_eq!(a.room(&b), 0);
        a.credit(&b, CHUNK);
        assert_eq!(
            b.used(),
            b.limit(),
            "slack under two chunks stays with the share"
        );
        assert_eq!(a.room(&b), CHUNK, "what it gave back is its room");
        assert_eq!(c.room(&b), 0, "and not another share's");
        assert!(a.charge(&b, CHUNK), "room means a charge fits");
    }
}
