//! Publisher confirms on one channel: sequence numbers from 1, confirmed in order once every
//! store write they depend on is flushed, coalesced into `multiple` acks (rabbit_confirms).

use std::collections::VecDeque;

/// Confirm-mode state of a channel.
#[derive(Debug)]
pub(crate) struct Confirms {
    next_seq: u64,
    /// (sequence, store write it waits for; 0 = none), in sequence order.
    pending: VecDeque<(u64, u64)>,
    /// Sequences to nack (the broker could not take them).
    nacks: Vec<u64>,
}

impl Default for Confirms {
    fn default() -> Self {
        Confirms {
            next_seq: 1,
            pending: VecDeque::new(),
            nacks: Vec::new(),
        }
    }
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
    /// Records a publish that waits for store write `flush_seq` (0 if nothing to wait for);
    /// returns its sequence number.
    pub(crate) fn publish(&mut self, flush_seq: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, flush_seq));
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
            .map(|&(_, f)| f)
            .filter(|&f| f > flushed)
            .max()
    }

    /// True when nothing is pending.
    pub(crate) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.nacks.is_empty()
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
        let mut count = 0;
        let mut last = 0;
        while let Some(&(seq, f)) = self.pending.front() {
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

    #[test]
    fn coalesces_ready_prefix_and_waits_for_flush() {
        let mut c = Confirms::default();
        assert_eq!(c.publish(0), 1);
        assert_eq!(c.publish(0), 2);
        assert_eq!(c.publish(5), 3);
        assert_eq!(c.publish(0), 4);
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
        let mut c = Confirms::default();
        c.publish(0);
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
}
