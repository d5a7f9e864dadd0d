//! Delayed messages: exchange type `x-delayed-message` (RabbitMQ's
//! rabbitmq_delayed_message_exchange plugin: the routing type in `x-delayed-type`) and LavinMQ's
//! `x-delayed-exchange: true` argument on any exchange type. A message with an `x-delay`
//! header of 1 to 4294967295 ms (integer types, a numeric string, or a float, truncated, as the
//! plugin reads it) waits in the exchange and is routed when it is due, with the bindings of
//! that moment; its `x-delay` header then reads `-delay` (the plugin's marker of a message that
//! was delayed once). Other messages are routed at once.
//!
//! # At scale
//! Every delayed message goes to the store ([`crate::storage::Store::put_delayed`]), keyed by
//! (due wall-clock ms, sequence) so that key order is release order. Only a window of the next
//! due ones is in memory ([`WINDOW_MAX`] messages, [`WINDOW_BYTES`] of bodies): everything
//! stored below the window's `horizon` is in it, everything at or above it only on disk. A
//! publish below the horizon joins the window (evicting its latest entries when over budget,
//! which lowers the horizon); one above it stays on disk. When the window runs low, the ticker
//! reads the next page from the store (with no lock held; publishes meanwhile are remembered so
//! none is missed). So memory stays flat whatever the backlog.
//!
//! # Durability
//! A persistent message to a durable exchange is durable with the group commit its confirm
//! waits for, and survives restarts; the others are stored too (to keep memory flat) but
//! deleted at the next start. Release routes the message, then removes it from the store: a
//! crash in between releases it again after the restart (at least once).
//!
//! # Differences
//! The plugin's `route` returns no queue for a delayed message, so a mandatory delayed publish
//! is returned (basic.return 312) at publish time; we do the same for `x-delayed-message`. A
//! LavinMQ-style delayed exchange counts a delayed message as routed. The plugin deletes the
//! delayed messages of a deleted exchange; ours are dropped when due (unless an exchange of the
//! same name exists again by then, which gets them).

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, FieldValue, ShortStr};
use crate::storage::{DelayKey, Store, StoreError};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use dashmap::DashMap;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::broker::group_commit::GroupCommit;
use crate::broker::message::Message;
use crate::broker::time::Now;
use crate::broker::timers::Timers;

/// The plugin's exchange type.
pub const DELAYED_TYPE: &str = "x-delayed-message";
/// The plugin's argument naming the routing type.
pub const DELAYED_TYPE_ARG: &str = "x-delayed-type";
/// LavinMQ's argument making any exchange delay.
pub const DELAYED_EXCHANGE_ARG: &str = "x-delayed-exchange";
/// The longest delay (the plugin's `?ERL_MAX_T`); longer ones are routed at once.
pub const MAX_DELAY: u64 = 4_294_967_295;
/// Delayed messages kept in memory at most.
pub const WINDOW_MAX: usize = 20_000;
/// Bytes of delayed messages kept in memory at most.
pub const WINDOW_BYTES: usize = 32 << 20;
/// The window is refilled from the store below this many entries.
const REFILL_BELOW: usize = WINDOW_MAX / 4;
/// Messages read from the store per refill.
const REFILL_PAGE: usize = WINDOW_MAX / 2;
/// Messages released per tick at most (the ticker comes back at once for the rest).
pub const RELEASE_BATCH: usize = 20_000;

/// How an exchange delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DelayMode {
    /// Type `x-delayed-message` (the plugin).
    Plugin,
    /// `x-delayed-exchange: true` (LavinMQ).
    Argument,
}

/// The plugin's argument checks for a new `x-delayed-message` exchange: the routing type's
/// name, or the 406 text.
pub fn delayed_type(args: &FieldTable) -> Result<&str, String> {
    match args.get(DELAYED_TYPE_ARG).and_then(|v| v.as_str()) {
        Some(DELAYED_TYPE) => {
            Err("Invalid argument, 'x-delayed-message' can't be used for 'x-delayed-type'".into())
        }
        Some(t) => Ok(t),
        None => Err("Invalid argument, 'x-delayed-type' must be an existing exchange type".into()),
    }
}

/// LavinMQ's argument: true when `x-delayed-exchange` is a true boolean.
pub fn delayed_by_argument(args: &FieldTable) -> bool {
    args.get(DELAYED_EXCHANGE_ARG).and_then(|v| v.as_bool()) == Some(true)
}

/// The delay a message asks for (its `x-delay` header, read as the plugin reads it) and its
/// properties with the header turned to `-delay`; `None` when it is not to be delayed.
pub fn delay_of(props: &Properties) -> Option<(u64, Properties)> {
    if !props.as_bytes().windows(8).any(|w| w == b"\x07x-delay") {
        return None;
    }
    let mut p = props.decode();
    let headers = p.headers.as_mut()?;
    let delay: i128 = match headers.get("x-delay")? {
        FieldValue::LongStr(s) => s.to_str()?.parse().ok()?,
        FieldValue::F32(f) => *f as i128,
        FieldValue::F64(f) => *f as i128,
        FieldValue::Decimal(d) => i128::from(d.value) / 10i128.checked_pow(u32::from(d.scale))?,
        FieldValue::Timestamp(_) => return None,
        other => i128::from(other.as_i64()?),
    };
    if delay <= 0 || delay > i128::from(MAX_DELAY) {
        return None;
    }
    let delay = u64::try_from(delay).ok()?;
    let marker = i32::try_from(delay)
        .map(|d| FieldValue::I32(-d))
        .unwrap_or(FieldValue::I64(-(delay as i64)));
    headers.insert(ShortStr::from_static("x-delay"), marker);
    Some((delay, Properties::from(&p)))
}

fn key_of(due: u64, seq: u64) -> u128 {
    (u128::from(due) << 64) | u128::from(seq)
}

fn due_of(key: u128) -> u64 {
    (key >> 64) as u64
}

/// Version tag of a stored delayed message.
const RECORD_V1: u8 = 1;

/// A stored delayed message: version, durable flag, the epoch (start count) it was stored in
/// (u32), vhost (u16 length), exchange and routing key (u8 lengths), properties (u32 length),
/// body (the rest).
fn encode(durable: bool, epoch: u32, vhost: &str, exchange: &str, msg: &Message) -> Bytes {
    let props = msg.properties.as_bytes();
    let mut b = BytesMut::with_capacity(
        16 + vhost.len() + exchange.len() + msg.routing_key.len() + props.len() + msg.body.len(),
    );
    b.put_u8(RECORD_V1);
    b.put_u8(u8::from(durable));
    b.put_u32(epoch);
    b.put_u16(u16::try_from(vhost.len()).unwrap_or(u16::MAX));
    b.put_slice(&vhost.as_bytes()[..vhost.len().min(usize::from(u16::MAX))]);
    b.put_u8(u8::try_from(exchange.len()).unwrap_or(u8::MAX));
    b.put_slice(&exchange.as_bytes()[..exchange.len().min(255)]);
    b.put_u8(u8::try_from(msg.routing_key.len()).unwrap_or(u8::MAX));
    b.put_slice(msg.routing_key.as_bytes());
    b.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
    b.put_slice(props);
    b.put_slice(&msg.body);
    b.freeze()
}

/// A delayed message read back.
#[derive(Debug)]
struct Decoded {
    durable: bool,
    epoch: u32,
    vhost: Arc<str>,
    exchange: Arc<str>,
    msg: Option<Arc<Message>>,
}

fn take_str(b: &mut Bytes, len: usize) -> Option<Bytes> {
    (b.remaining() >= len).then(|| b.split_to(len))
}

/// Decodes a stored record; with `full`, the message too (else only where it goes).
fn decode(mut b: Bytes, full: bool) -> Option<Decoded> {
    if b.remaining() < 8 || b.get_u8() != RECORD_V1 {
        return None;
    }
    let durable = b.get_u8() == 1;
    let epoch = b.get_u32();
    let vlen = usize::from(b.get_u16());
    let vhost = take_str(&mut b, vlen)?;
    let xlen = usize::from(*b.first()?);
    b.advance(1);
    let exchange = take_str(&mut b, xlen)?;
    let vhost: Arc<str> = Arc::from(std::str::from_utf8(&vhost).ok()?);
    let xname = ShortStr::from_bytes(exchange).ok()?;
    let exchange: Arc<str> = Arc::from(xname.as_str());
    if !full {
        return Some(Decoded {
            durable,
            epoch,
            vhost,
            exchange,
            msg: None,
        });
    }
    let klen = usize::from(*b.first()?);
    b.advance(1);
    let routing_key = ShortStr::from_bytes(take_str(&mut b, klen)?).ok()?;
    if b.remaining() < 4 {
        return None;
    }
    let plen = b.get_u32() as usize;
    let properties = Properties::from_bytes(take_str(&mut b, plen)?).ok()?;
    let msg = Message {
        exchange: xname,
        routing_key,
        properties,
        body: b,
        awaited: None,
    };
    Some(Decoded {
        durable,
        epoch,
        vhost,
        exchange,
        msg: Some(Arc::new(msg)),
    })
}

/// A delayed message in the memory window.
#[derive(Debug, Clone)]
struct Entry {
    vhost: Arc<str>,
    exchange: Arc<str>,
    msg: Arc<Message>,
}

/// A message whose delay is over: route it through its exchange, then call
/// [`DelayedMessages::released`].
#[derive(Debug)]
pub struct Due {
    /// Its store key.
    pub key: DelayKey,
    /// Its vhost.
    pub vhost: Arc<str>,
    /// Its exchange.
    pub exchange: Arc<str>,
    /// The message (its `x-delay` already reads `-delay`).
    pub msg: Arc<Message>,
    /// When it was due, wall-clock ms.
    pub due_ms: u64,
}

#[derive(Debug, Default)]
struct State {
    window: BTreeMap<u128, Entry>,
    bytes: usize,
    /// Every stored key below it is in the window; `None`: everything stored is.
    horizon: Option<u128>,
    /// A page is being read from the store.
    refilling: bool,
    /// Publishes at or above the horizon while a page was read.
    side: Vec<(u128, Entry)>,
    /// The due time the ticker was last asked to wake at.
    armed: Option<u64>,
}

/// The delayed messages of the node (see the module docs).
pub struct DelayedMessages {
    store: Arc<dyn Store>,
    commit: Arc<GroupCommit>,
    timers: Arc<Timers>,
    seq: AtomicU64,
    /// This start's number: transient messages of earlier starts are skipped.
    epoch: std::sync::atomic::AtomicU32,
    /// The latest due time released: a new message is due after it (its key stays above the
    /// store's released watermark even if the publisher's clock reading was a little older).
    released_due: AtomicU64,
    state: Mutex<State>,
    counts: DashMap<(Arc<str>, Arc<str>), u64>,
}

impl std::fmt::Debug for DelayedMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedMessages").finish_non_exhaustive()
    }
}

impl DelayedMessages {
    /// Empty, over `store`. [`DelayedMessages::recover`] loads what the store holds.
    pub fn new(store: Arc<dyn Store>, commit: Arc<GroupCommit>, timers: Arc<Timers>) -> Self {
        DelayedMessages {
            store,
            commit,
            timers,
            seq: AtomicU64::new(1),
            epoch: std::sync::atomic::AtomicU32::new(1),
            released_due: AtomicU64::new(0),
            state: Mutex::new(State::default()),
            counts: DashMap::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Messages waiting in exchange `name` of `vhost` (management's `messages_delayed`).
    pub fn count(&self, vhost: &str, name: &str) -> u64 {
        self.counts
            .get(&(Arc::from(vhost), Arc::from(name)))
            .map_or(0, |c| *c)
    }

    /// Messages waiting in memory (tests, metrics).
    pub fn in_memory(&self) -> usize {
        self.state().window.len()
    }

    fn count_add(&self, vhost: &Arc<str>, exchange: &Arc<str>, up: bool) {
        let mut c = self
            .counts
            .entry((Arc::clone(vhost), Arc::clone(exchange)))
            .or_insert(0);
        *c = if up { *c + 1 } else { c.saturating_sub(1) };
    }

    /// Forgets an exchange's count (exchange deleted).
    pub fn forget(&self, vhost: &str, name: &str) {
        self.counts.remove(&(Arc::from(vhost), Arc::from(name)));
    }

    /// Delays `msg` (already carrying its `-delay` marker) by `delay` ms in `exchange`.
    /// Returns the group-commit sequence its confirm waits for (0: none, not durable).
    pub fn delay(
        &self,
        vhost: &Arc<str>,
        exchange: &Arc<str>,
        durable_exchange: bool,
        msg: Arc<Message>,
        delay: u64,
        now: Now,
    ) -> Result<u64, StoreError> {
        let due = now
            .unix_ms
            .saturating_add(delay)
            .max(self.released_due.load(Ordering::Acquire) + 1);
        let key = key_of(due, self.seq.fetch_add(1, Ordering::Relaxed));
        let durable = durable_exchange && msg.is_persistent();
        let epoch = self.epoch.load(Ordering::Relaxed);
        self.store.put_delayed(
            key.to_be_bytes(),
            &encode(durable, epoch, vhost, exchange, &msg),
        )?;
        // Every put is counted, so that the flusher takes it out of memory soon; only a
        // durable one holds its confirm back.
        let seq = self.commit.note_write();
        self.count_add(vhost, exchange, true);
        // The window keeps a compact copy: the published body (and properties) may be slices
        // of a large read buffer, which a long-lived entry would pin whole.
        let compact = Arc::new(Message {
            exchange: msg.exchange.clone(),
            routing_key: msg.routing_key.clone(),
            properties: Properties::from_bytes(Bytes::copy_from_slice(msg.properties.as_bytes()))
                .unwrap_or_else(|_| msg.properties.clone()),
            body: Bytes::copy_from_slice(&msg.body),
            awaited: None,
        });
        let entry = Entry {
            vhost: Arc::clone(vhost),
            exchange: Arc::clone(exchange),
            msg: compact,
        };
        let arm = {
            let mut st = self.state();
            if st.horizon.is_none_or(|h| key < h) {
                insert(&mut st, key, entry);
                evict(&mut st);
            } else if st.refilling {
                st.side.push((key, entry));
            }
            let in_window = st.window.contains_key(&key);
            let arm = in_window && st.armed.is_none_or(|a| due < a);
            if arm {
                st.armed = Some(due);
            }
            arm
        };
        if arm {
            self.timers.wake_at(now.mono_at(due));
        }
        Ok(if durable { seq } else { 0 })
    }

    /// Takes the messages due at `now` out of the window (at most [`RELEASE_BATCH`]), reading
    /// the next page from the store when the window runs low, and arms the ticker for the next
    /// one. Route each, then call [`DelayedMessages::released`].
    pub fn take_due(&self, now: Now) -> Result<Vec<Due>, StoreError> {
        self.refill()?;
        let mut out = Vec::new();
        let next = {
            let mut st = self.state();
            while out.len() < RELEASE_BATCH {
                let Some(entry) = st.window.first_entry() else {
                    break;
                };
                let key = *entry.key();
                if due_of(key) > now.unix_ms {
                    break;
                }
                let e = entry.remove();
                st.bytes = st.bytes.saturating_sub(e.msg.body.len());
                self.released_due.fetch_max(due_of(key), Ordering::AcqRel);
                out.push(Due {
                    key: key.to_be_bytes(),
                    vhost: e.vhost,
                    exchange: e.exchange,
                    msg: e.msg,
                    due_ms: due_of(key),
                });
            }
            let more_stored = st.horizon.is_some();
            let next = match st.window.first_key_value() {
                _ if out.len() >= RELEASE_BATCH => Some(now.unix_ms),
                Some((k, _)) => Some(due_of(*k)),
                // Nothing in memory but more on disk: come back at once to read it.
                None if more_stored => Some(now.unix_ms),
                None => None,
            };
            st.armed = next;
            next
        };
        if let Some(due) = next {
            self.timers.wake_at(now.mono_at(due));
        }
        Ok(out)
    }

    /// Due messages were routed: they leave the store and the counts.
    pub fn released(&self, done: &[Due]) -> Result<(), StoreError> {
        for d in done {
            self.count_add(&d.vhost, &d.exchange, false);
        }
        let keys: Vec<DelayKey> = done.iter().map(|d| d.key).collect();
        self.store.remove_delayed(&keys)
    }

    /// Reads the next page from the store into the window if it runs low.
    fn refill(&self) -> Result<(), StoreError> {
        let from = {
            let mut st = self.state();
            match st.horizon {
                Some(h) if !st.refilling && st.window.len() < REFILL_BELOW => {
                    st.refilling = true;
                    h
                }
                _ => return Ok(()),
            }
        };
        let page = match self.store.read_delayed(from.to_be_bytes(), REFILL_PAGE) {
            Ok(p) => p,
            Err(e) => {
                self.state().refilling = false;
                return Err(e);
            }
        };
        let new_horizon = page.resume.map(u128::from_be_bytes);
        let below = |k: u128| new_horizon.is_none_or(|h| k < h);
        let mut loaded = Vec::with_capacity(page.entries.len());
        let mut bad = 0usize;
        let epoch = self.epoch.load(Ordering::Relaxed);
        for (k, v) in page.entries {
            let key = u128::from_be_bytes(k);
            match decode(v, true) {
                // Transient messages of an earlier start are gone; the watermark passes them.
                Some(d) if !d.durable && d.epoch != epoch => {}
                Some(Decoded {
                    vhost,
                    exchange,
                    msg: Some(msg),
                    ..
                }) => loaded.push((
                    key,
                    Entry {
                        vhost,
                        exchange,
                        msg,
                    },
                )),
                _ => bad += 1,
            }
        }
        let mut st = self.state();
        for (key, e) in loaded {
            if below(key) && key >= from {
                insert(&mut st, key, e);
            }
        }
        for (key, e) in std::mem::take(&mut st.side) {
            if below(key) {
                insert(&mut st, key, e);
            }
        }
        st.horizon = new_horizon;
        st.refilling = false;
        evict(&mut st);
        drop(st);
        if bad > 0 {
            tracing::error!(count = bad, "undecodable delayed messages skipped");
        }
        Ok(())
    }

    /// Startup: counts what the store holds per exchange, deletes what must not survive a
    /// restart (transient messages, messages of exchanges that are gone or no longer delay),
    /// continues the sequence above every stored key, and arms the ticker to load the window.
    /// `keeps(vhost, exchange)` says whether a durable delayed exchange of that name exists.
    pub fn recover(&self, keeps: impl Fn(&str, &str) -> bool, now: Now) -> Result<(), StoreError> {
        let mut from = [0u8; 16];
        let mut dropped = 0usize;
        let mut max_seq = 0u64;
        let mut max_epoch = 0u32;
        let mut kept = 0u64;
        loop {
            let page = self.store.read_delayed(from, 10_000)?;
            for (k, v) in page.entries {
                max_seq = max_seq.max(u128::from_be_bytes(k) as u64);
                match decode(v, false) {
                    Some(d) => {
                        max_epoch = max_epoch.max(d.epoch);
                        if d.durable && keeps(&d.vhost, &d.exchange) {
                            kept += 1;
                            self.count_add(&d.vhost, &d.exchange, true);
                        } else {
                            // Skipped when its turn comes (transient, or its exchange is gone).
                            dropped += 1;
                        }
                    }
                    None => dropped += 1,
                }
            }
            match page.resume {
                Some(r) => from = r,
                None => break,
            }
        }
        self.seq.store(max_seq + 1, Ordering::Relaxed);
        self.epoch.store(max_epoch + 1, Ordering::Relaxed);
        {
            let mut st = self.state();
            *st = State {
                horizon: (kept + dropped as u64 > 0).then_some(0),
                ..State::default()
            };
        }
        if kept + dropped as u64 > 0 {
            tracing::info!(kept, dropped, "delayed messages recovered");
            self.timers.wake_at(now.mono);
        }
        Ok(())
    }
}

fn insert(st: &mut State, key: u128, e: Entry) {
    let len = e.msg.body.len();
    if st.window.insert(key, e).is_none() {
        st.bytes += len;
    }
}

/// Evicts the latest entries while over budget (they stay on disk): the horizon comes down.
fn evict(st: &mut State) {
    while st.window.len() > WINDOW_MAX || (st.bytes > WINDOW_BYTES && st.window.len() > 1) {
        let Some((key, e)) = st.window.pop_last() else {
            break;
        };
        st.bytes = st.bytes.saturating_sub(e.msg.body.len());
        st.horizon = Some(st.horizon.map_or(key, |h| h.min(key)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties::BasicProperties;
    use crate::protocol::types::LongStr;

    fn with_delay(v: FieldValue) -> Properties {
        Properties::from(&BasicProperties {
            headers: Some(FieldTable(vec![(ShortStr::from_static("x-delay"), v)])),
            ..Default::default()
        })
    }

    #[test]
    fn x_delay_is_read_as_the_plugin_reads_it() {
        let d = |v| delay_of(&with_delay(v)).map(|(d, _)| d);
        assert_eq!(d(FieldValue::I32(500)), Some(500));
        assert_eq!(d(FieldValue::LongStr(LongStr::from("250"))), Some(250));
        assert_eq!(d(FieldValue::F64(99.9)), Some(99));
        assert_eq!(d(FieldValue::I32(0)), None);
        assert_eq!(d(FieldValue::I32(-5)), None);
        assert_eq!(d(FieldValue::I64(4_294_967_296)), None);
        assert_eq!(d(FieldValue::LongStr(LongStr::from("soon"))), None);
        assert!(delay_of(&Properties::EMPTY).is_none());
        let (_, p) = delay_of(&with_delay(FieldValue::I32(7))).expect("delayed");
        assert_eq!(
            p.headers().and_then(|h| h.get("x-delay").cloned()),
            Some(FieldValue::I32(-7))
        );
    }

    #[test]
    fn records_round_trip() {
        let m = Message {
            properties: with_delay(FieldValue::I32(-3)),
            ..Message::for_tests("dx", "rk", b"body".to_vec())
        };
        let d = decode(encode(true, 3, "/", "dx", &m), true).expect("decodes");
        assert!(d.durable);
        assert_eq!((&*d.vhost, &*d.exchange), ("/", "dx"));
        let got = d.msg.expect("message");
        assert_eq!(got.routing_key.as_str(), "rk");
        assert_eq!(&got.body[..], b"body");
        assert_eq!(got.properties, m.properties);
        assert!(decode(Bytes::from_static(b"\x09"), true).is_none());
    }

    #[test]
    fn plugin_argument_checks() {
        let t = |v: Option<&str>| {
            let mut a = FieldTable::new();
            if let Some(v) = v {
                a.insert(
                    ShortStr::from_static(DELAYED_TYPE_ARG),
                    FieldValue::LongStr(LongStr::from(v)),
                );
            }
            delayed_type(&a).map(str::to_string)
        };
        assert_eq!(t(Some("topic")), Ok("topic".into()));
        assert!(
            t(None)
                .expect_err("missing")
                .contains("must be an existing exchange type")
        );
        assert!(
            t(Some(DELAYED_TYPE))
                .expect_err("self")
                .contains("can't be used")
        );
    }
}
