//! Publisher confirms on one channel: sequence numbers from 1, confirmed in order once every
//! store write they depend on is flushed, or once every copy was consumed (see
//! [`crate::broker::consumed`]), coalesced into `multiple` acks (rabbit_confirms).

use crate::broker::{Awaited, ConfirmTo};
use std::collections::VecDeque;
use std::sync::Arc;

/// Bytes of messages (bodies and their in-memory overhead) a channel may have confirmed early
/// whose flush has not come yet, at most. They stay in memory until that flush (it writes or
/// leaves out the chunks that hold them): without a bound, a publisher whose consumer keeps up
/// outruns the disk by as much as memory allows (4k: peak RSS 29-35 MB against 21-22, for 30-45 %
/// more messages a second). Past it, a consumed message's confirm waits for its flush as any
/// other does, so the publisher slows to what the disk takes.
pub(crate) const EARLY_BYTES: usize = 2 << 20;

/// Confirm-mode state of a channel.
#[derive(Debug)]
pub(crate) struct Confirms {
    next_seq: u64,
    /// (sequence, store write it waits for, 0 = none; the bytes an early confirm would keep in
    /// memory, see [`Confirms::publish`]), in sequence order.
    pending: VecDeque<(u64, u64, u32)>,
    /// Sequences to nack (the broker could not take them).
    nacks: Vec<u64>,
    /// Where consumers send the confirms of this channel's consumed messages.
    to: Arc<ConfirmTo>,
    /// Confirmed early and not yet flushed: (store write, bytes), oldest first.
    early: VecDeque<(u64, u32)>,
    /// Their bytes (at most [`EARLY_BYTES`], unless one message is larger).
    early_bytes: usize,
    /// The highest store write among them (0 when there are none).
    early_max: u64,
}

/// One confirm to send.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Confirm {
    /// Delivery tag (sequence number).
    pub(crate) tag: u64,
    /// Covers every earlier unconfirmed sequence too.
    pub(crate) multiple: bool,
    /// basic.nack instead of basic.ack.
    pub(crate) nack: bool,
}

impl Confirms {
    /// A channel's confirms, released early through `to`.
    pub(crate) fn new(to: Arc<ConfirmTo>) -> Self {
        Confirms {
            next_seq: 1,
            pending: VecDeque::new(),
            nacks: Vec::new(),
            to,
            early: VecDeque::new(),
            early_bytes: 0,
            early_max: 0,
        }
    }

    /// The early-confirm record of the publish `ahead` places after the next one to be
    /// recorded (publishes routed but not yet recorded come first).
    pub(crate) fn awaited(&self, ahead: usize) -> Awaited {
        Awaited::new(Arc::clone(&self.to), self.next_seq + ahead as u64)
    }

    /// Publishes `tags` of this channel (`to`) were consumed on every queue: their confirms
    /// wait for no flush, as long as the channel's early confirms stay within
    /// [`EARLY_BYTES`]. False when `to` is not this channel's (an earlier channel with the same
    /// number).
    pub(crate) fn consumed(&mut self, to: &Arc<ConfirmTo>, tags: &[u64]) -> bool {
        if !Arc::ptr_eq(&self.to, to) {
            return false;
        }
        for &tag in tags {
            let i = self.pending.partition_point(|&(seq, ..)| seq < tag);
            let Some(p) = self.pending.get_mut(i).filter(|p| p.0 == tag && p.1 != 0) else {
                continue;
            };
            let bytes = p.2 as usize;
            if self.early_bytes > 0 && self.early_bytes + bytes > EARLY_BYTES {
                continue;
            }
            self.early.push_back((p.1, p.2));
            self.early_bytes += bytes;
            self.early_max = self.early_max.max(p.1);
            p.1 = 0;
        }
        true
    }

    /// Records a publish that waits for store write `flush_seq` (0 if nothing to wait for), with
    /// the `bytes` an early confirm would leave in memory until that write is flushed (0 for a
    /// message that cannot be confirmed early); returns its sequence number.
    pub(crate) fn publish(&mut self, flush_seq: u64, bytes: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        self.pending.push_back((seq, flush_seq, bytes));
        seq
    }

    /// Records a publish the broker refused; it will be nacked.
    pub(crate) fn refuse(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.nacks.push(seq);
        seq
    }

    /// The highest store write a pending confirm waits for, if any waits.
    pub(crate) fn needs_flush(&self, flushed: u64) -> Option<u64> {
        self.pending
            .iter()
            .map(|&(_, f, _)| f)
            .chain([self.early_max])
            .filter(|&f| f > flushed)
            .max()
    }

    /// True when nothing is pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.nacks.is_empty() && self.early.is_empty()
    }

    /// Takes the confirms that may go out now that writes up to `flushed` are on disk: the
    /// longest ready prefix as one ack (multiple when it covers more than one), plus nacks.
    pub(crate) fn take_ready(&mut self, flushed: u64, out: &mut Vec<Confirm>) {
        for tag in self.nacks.drain(..) {
            out.push(Confirm {
                tag,
                multiple: false,
                nack: true,
            });
        }
        while let Some(&(_, bytes)) = self.early.front().filter(|e| e.0 <= flushed) {
            self.early.pop_front();
            self.early_bytes -= bytes as usize;
        }
        if self.early.is_empty() {
            self.early_max = 0;
        }
        let mut count = 0;
        let mut last = 0;
        while let Some(&(seq, f, _)) = self.pending.front() {
            if f > flushed {
                break;
            }
            self.pending.pop_front();
            count += 1;
            last = seq;
        }
        if count > 0 {
            out.push(Confirm {
                tag: last,
                multiple: count > 1,
                nack: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirms() -> Confirms {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        Confirms::new(ConfirmTo::new(1, tx))
    }

    #[test]
    fn coalesces_ready_prefix_and_waits_for_flush() {
        let mut c = confirms();
        assert_eq!(c.publish(0, 0), 1);
        assert_eq!(c.publish(0, 0), 2);
        assert_eq!(c.publish(5, 0), 3);
        assert_eq!(c.publish(0, 0), 4);
        assert_eq!(c.needs_flush(0), Some(5));
        let mut out = Vec::new();
        c.take_ready(0, &mut out);
        assert_eq!(
            out,
            vec![Confirm {
                tag: 2,
                multiple: true,
                nack: false
            }]
        );
        out.clear();
        c.take_ready(4, &mut out);
        assert!(out.is_empty(), "seq 3 waits for write 5");
        c.take_ready(5, &mut out);
        assert_eq!(
            out,
            vec![Confirm {
                tag: 4,
                multiple: true,
                nack: false
            }]
        );
        assert!(c.is_idle());
    }

    #[test]
    fn single_confirm_is_not_multiple_and_nacks_go_first() {
        let mut c = confirms();
        c.publish(0, 0);
        c.refuse();
        let mut out = Vec::new();
        c.take_ready(0, &mut out);
        assert_eq!(
            out,
            vec![
                Confirm {
                    tag: 2,
                    multiple: false,
                    nack: true
                },
                Confirm {
                    tag: 1,
                    multiple: false,
                    nack: false
                }
            ]
        );
    }

    #[test]
    fn consumed_publishes_wait_for_no_flush_but_keep_their_order() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let to = ConfirmTo::new(1, tx.clone());
        let mut c = Confirms::new(Arc::clone(&to));
        assert_eq!(c.awaited(0).tag(), 1);
        assert_eq!(c.awaited(2).tag(), 3);
        for _ in 0..4 {
            c.publish(9, 4096);
        }
        assert!(c.consumed(&to, &[2, 3, 7]), "an unknown tag is ignored");
        let mut out = Vec::new();
        c.take_ready(0, &mut out);
        assert!(out.is_empty(), "1 still waits for its flush");
        assert!(c.consumed(&to, &[1]));
        c.take_ready(0, &mut out);
        assert_eq!(
            out,
            vec![Confirm {
                tag: 3,
                multiple: true,
                nack: false
            }]
        );
        assert_eq!(c.needs_flush(0), Some(9), "4 was not consumed");
        let other = ConfirmTo::new(1, tx);
        assert!(
            !c.consumed(&other, &[4]),
            "another channel with the same number"
        );
        out.clear();
        c.take_ready(0, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn early_confirms_wait_for_their_flush_past_the_byte_bound() {
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let to = ConfirmTo::new(1, tx);
        let mut c = Confirms::new(Arc::clone(&to));
        let half = EARLY_BYTES / 2;
        for flush in [3, 3, 4] {
            c.publish(flush, half);
        }
        assert!(c.consumed(&to, &[1, 2, 3]));
        let mut out = Vec::new();
        c.take_ready(0, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(
            (out[0].tag, out[0].multiple),
            (2, true),
            "3 is past the bound"
        );
        assert_eq!(c.needs_flush(0), Some(4));
        assert!(!c.is_idle());
        out.clear();
        c.take_ready(3, &mut out);
        assert!(out.is_empty(), "3 waits for write 4");
        assert!(c.consumed(&to, &[3]), "room again once 1 and 2 are flushed");
        c.take_ready(3, &mut out);
        assert_eq!((out[0].tag, out[0].multiple), (3, false));
        assert_eq!(
            c.needs_flush(3),
            Some(4),
            "its body stays in memory until write 4"
        );
        c.take_ready(4, &mut out);
        assert!(c.is_idle());
    }
}
