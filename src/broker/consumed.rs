//! Confirms for messages consumed before they were written.
//!
//! RabbitMQ confirms a persistent message "when it is persisted to disk or when it is consumed
//! on every queue" (its publisher-confirms announcement; `rabbit_msg_store` confirms a message
//! whose removal arrives before its write, and never writes it). We do the same: a message a
//! consumer acknowledged (or rejected without requeue) on every queue it went to needs no
//! disk to be safe, so its confirm need not wait for the group commit. When consumers keep up,
//! most persistent messages are confirmed this way and never written at all: the chunk that
//! would have carried them leaves acknowledged entries out.
//!
//! How: a publish on a confirm-mode channel carries an [`Awaited`] in its [`Message`]: where
//! the confirm goes ([`ConfirmTo`]: the publisher's channel and mailbox), its sequence number,
//! and a count of copies still to be consumed. The count starts at one, a guard the publisher
//! holds; routing adds one per target queue before any push ([`Awaited::expect`]). A consumer's
//! session takes one off per copy acknowledged or discarded ([`Awaited::consumed`]) and the
//! publisher's session takes the guard off once every queue took the message
//! ([`Awaited::pushed`]; a message a queue refused keeps its guard, so it is never confirmed
//! this way: it is nacked). Whoever takes the count to zero releases the confirm: the consumer
//! by sending [`Outbound::Consumed`] to the publisher (grouped per channel by [`Consumed`]),
//! the publisher by not waiting for a flush. Every other way out of a queue (expiry, purge,
//! deletion, a dropped head) leaves the count above zero, and the confirm waits for the flush
//! as before: this only ever makes a confirm earlier, for messages already consumed. The
//! session bounds what it lets through (memory kept until the flush, and queues that build a
//! backlog: see `session/confirms.rs` and `session/channel/acks.rs`).
//!
//! [`Message`]: super::Message

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::consumer::{Mailbox, Outbound};

/// Where a channel's confirms go: one per confirm-mode channel, shared by its publishes. A
/// session tells its own channel from a later one with the same number by pointer.
#[derive(Debug)]
pub struct ConfirmTo {
    /// The publisher's channel.
    pub channel: u16,
    mailbox: Mailbox,
}

impl ConfirmTo {
    /// The confirm target of channel `channel` on the connection whose mailbox is `mailbox`.
    pub fn new(channel: u16, mailbox: Mailbox) -> Arc<Self> {
        Arc::new(ConfirmTo { channel, mailbox })
    }
}

/// A publish's confirm, waiting for its copies to be consumed. See the module docs.
#[derive(Debug)]
pub struct Awaited {
    to: Arc<ConfirmTo>,
    tag: u64,
    /// Copies not yet consumed, plus one while the publisher holds its guard.
    left: AtomicU32,
}

impl Awaited {
    /// The confirm of publish `tag` on `to`'s channel, guarded by the publisher.
    pub fn new(to: Arc<ConfirmTo>, tag: u64) -> Self {
        Awaited {
            to,
            tag,
            left: AtomicU32::new(1),
        }
    }

    /// The publish's sequence number.
    pub fn tag(&self) -> u64 {
        self.tag
    }

    /// The message goes to `copies` queues (before it is pushed to any).
    pub fn expect(&self, copies: usize) {
        let n = u32::try_from(copies).unwrap_or(u32::MAX - 1);
        self.left.fetch_add(n, Ordering::AcqRel);
    }

    /// A copy was consumed; true when it was the last thing the confirm waited for.
    pub fn consumed(&self) -> bool {
        self.take_one()
    }

    /// Every queue took the message (the publisher's guard goes); true when every copy was
    /// consumed already, so the confirm waits for nothing.
    pub fn pushed(&self) -> bool {
        self.take_one()
    }

    fn take_one(&self) -> bool {
        // Never below zero: a count that reached zero stays there.
        self.left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok_and(|before| before == 1)
    }
}

/// Confirms released by one batch of a consumer's acknowledgements, grouped by publisher
/// channel, sent with [`Consumed::send`] once the batch is settled.
#[derive(Debug, Default)]
pub struct Consumed {
    groups: Vec<(Arc<ConfirmTo>, Vec<u64>)>,
}

impl Consumed {
    /// A copy of a message carrying `awaited` was consumed.
    pub fn copy(&mut self, awaited: &Awaited) {
        if !awaited.consumed() {
            return;
        }
        match self
            .groups
            .iter_mut()
            .rev()
            .find(|(to, _)| Arc::ptr_eq(to, &awaited.to))
        {
            Some((_, tags)) => tags.push(awaited.tag),
            None => self
                .groups
                .push((Arc::clone(&awaited.to), vec![awaited.tag])),
        }
    }

    /// Sends each publisher channel its released confirms. A publisher that is gone drops
    /// them (its channel is closed: there is no one to confirm to).
    pub fn send(self) {
        for (to, tags) in self.groups {
            let mailbox = to.mailbox.clone();
            let _ = mailbox.send(Outbound::Consumed { to, tags });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn the_last_of_the_copies_and_the_guard_releases_the_confirm_once() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let a = Awaited::new(ConfirmTo::new(1, tx), 7);
        a.expect(2);
        assert!(!a.consumed());
        assert!(!a.pushed());
        assert!(a.consumed(), "the second copy was the last");
        assert!(!a.consumed(), "already released");
        let b = Awaited::new(Arc::clone(&a.to), 8);
        b.expect(1);
        assert!(!b.consumed());
        assert!(b.pushed(), "consumed before the publisher let go");
    }

    #[test]
    fn a_refused_publish_keeps_its_guard_and_is_never_released() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let a = Awaited::new(ConfirmTo::new(1, tx), 1);
        a.expect(2);
        assert!(!a.consumed());
        assert!(!a.consumed(), "the guard still counts");
    }

    #[test]
    fn released_confirms_go_to_their_channels_grouped() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let one = ConfirmTo::new(1, tx.clone());
        let two = ConfirmTo::new(2, tx);
        let mut c = Consumed::default();
        for (to, tag) in [(&one, 1), (&two, 1), (&one, 2)] {
            let a = Awaited::new(Arc::clone(to), tag);
            a.expect(1);
            assert!(!a.pushed());
            c.copy(&a);
        }
        c.send();
        let mut got = Vec::new();
        while let Ok(Outbound::Consumed { to, tags }) = rx.try_recv() {
            got.push((to.channel, tags));
        }
        assert_eq!(got, vec![(1, vec![1, 2]), (2, vec![1])]);
    }
}
