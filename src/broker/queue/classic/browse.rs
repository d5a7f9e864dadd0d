//! Browsing: the ready messages from a position on, in delivery order, without taking them,
//! reordering them or marking them redelivered.
//!
//! Lanes are read highest priority first; within a lane, the messages in memory, then the
//! paged ones in id order, merged from the store (persistent), the read-back lookahead, the
//! spill file and the spill tail (transient). The pager lock is held throughout, so no refill
//! moves messages meanwhile; the queue lock only while copying the in-memory part (message
//! bodies are shared, nothing is copied) and the bounds of the paged part. Reads of paged
//! messages happen under the pager lock only.

use super::recovery::to_queued;
use super::{ClassicQueue, StoreError};
use crate::broker::message::QueuedMessage;
use crate::storage::StoredMessage;

/// Farthest into a queue a browse reaches (offset plus count): paged messages up to there
/// are read to find the position.
pub const MAX_BROWSE_REACH: usize = 50_000;

/// What a browse planned for one lane under the queue lock.
struct LanePlan {
    lane: usize,
    /// In-memory messages from the lane's start that the browse needs.
    memory: Vec<QueuedMessage>,
    /// Messages of the lane in memory (all of them, also those not copied).
    in_memory: usize,
    /// Paged messages of the lane.
    paged: usize,
    paged_start: u64,
    tail: Vec<QueuedMessage>,
}

/// Walks the queue's order, keeping the messages from `offset` up to `reach`.
struct Cursor {
    pos: usize,
    offset: usize,
    reach: usize,
    out: Vec<QueuedMessage>,
}

impl Cursor {
    fn take(&mut self, m: QueuedMessage) {
        if self.pos >= self.offset && self.pos < self.reach {
            self.out.push(m);
        }
        self.pos += 1;
    }
}

/// A browse's result: the messages and the number of ready messages.
#[derive(Debug, Default)]
pub struct Browsed {
    /// The messages from the offset, at most the count asked.
    pub messages: Vec<QueuedMessage>,
    /// Ready messages in the queue.
    pub ready: usize,
}

impl ClassicQueue {
    /// Up to `count` ready messages from position `offset` (0 = the next to be delivered).
    pub(super) fn browse_messages(
        &self,
        offset: usize,
        count: usize,
    ) -> Result<Browsed, StoreError> {
        let reach = offset.saturating_add(count).min(MAX_BROWSE_REACH);
        let mut pager = self.pager();
        let (plans, ready, lanes) = {
            let st = self.lock();
            let mut plans = Vec::new();
            let mut seen = 0usize;
            for lane in (0..st.ready.count()).rev() {
                if seen >= reach {
                    break;
                }
                let l = st.ready.lane(lane);
                if l.ready.is_empty() {
                    continue;
                }
                let memory: Vec<QueuedMessage> =
                    l.ready.iter().take(reach - seen).cloned().collect();
                plans.push(LanePlan {
                    lane,
                    memory,
                    in_memory: l.ready.in_memory(),
                    paged: l.ready.paged(),
                    paged_start: l.ready.paged_start(),
                    tail: l.tail.clone(),
                });
                seen += l.ready.len();
            }
            (plans, st.ready.len(), st.ready.count())
        };
        let mut at = Cursor {
            pos: 0,
            offset,
            reach,
            out: Vec::new(),
        };
        for plan in plans {
            if at.pos + plan.in_memory <= offset {
                at.pos += plan.in_memory;
            } else {
                let copied = plan.memory.len();
                for m in plan.memory.iter().cloned() {
                    at.take(m);
                }
                at.pos += plan.in_memory - copied;
            }
            if plan.paged == 0 || at.pos >= reach {
                continue;
            }
            let want = (reach - at.pos).min(plan.paged);
            for m in self.peek_paged(&mut pager, &plan, lanes, want)? {
                at.take(m);
            }
        }
        let mut out = at.out;
        out.truncate(count);
        Ok(Browsed {
            messages: out,
            ready,
        })
    }

    /// The first `want` paged messages of a lane, in id order, left where they are.
    fn peek_paged(
        &self,
        pager: &mut super::paging::Pager,
        plan: &LanePlan,
        lanes: usize,
        want: usize,
    ) -> Result<Vec<QueuedMessage>, StoreError> {
        let mut all: Vec<QueuedMessage> = Vec::new();
        if let Some(store) = self.store() {
            let mut from = plan.paged_start;
            let mut found = 0;
            while found < want {
                let batch = store.read(from, 1024)?;
                let Some(last) = batch.last().map(|m| m.id) else {
                    break;
                };
                for sm in batch {
                    if let Some(qm) = to_queued(&self.name, sm, true)
                        && (lanes == 1 || super::paging::lane_of(&qm, lanes) == plan.lane)
                    {
                        all.push(qm);
                        found += 1;
                    }
                }
                from = last + 1;
            }
        }
        let (lookahead, spilled) = pager.peek_lane(plan.lane, want)?;
        all.extend(lookahead);
        for (id, record) in spilled {
            let sm = StoredMessage {
                id,
                delivered: false,
                delivery_count: 0,
                record,
            };
            all.extend(to_queued(&self.name, sm, false));
        }
        all.extend(plan.tail.iter().take(want).cloned());
        all.sort_by_key(|m| m.id);
        all.truncate(want);
        Ok(all)
    }
}
