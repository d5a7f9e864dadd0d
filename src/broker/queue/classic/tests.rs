//! Unit tests of the classic queue at the broker layer: fixed times, the in-memory store, and
//! consumers that are plain mailboxes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::broker::budget::{REFILL_FLOOR, REFILL_FLOOR_BYTES};
use crate::broker::consumer::{ConnId, ConsumerHandle, Credit, Outbound, TRANSIT_LIMIT};
use crate::broker::queue::{Queue, Settle};
use crate::broker::vhost::{ExchangeSpec, QueueSpec};
use crate::broker::{Broker, BrokerOptions, Delivery, MemoryWindow, Now, PublishRequest, VHost};
use crate::protocol::properties::{BasicProperties, Properties};
use crate::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};
use crate::storage::MemoryStore;

/// A broker on the in-memory store at a fixed time, with the default vhost.
struct Harness {
    broker: Broker,
    vh: Arc<VHost>,
    now: Now,
}

/// A consumer's mailbox.
struct Inbox {
    rx: mpsc::UnboundedReceiver<Outbound>,
}

impl Inbox {
    /// Every delivery waiting, in order.
    fn take(&mut self) -> Vec<Delivery> {
        let mut out = Vec::new();
        while let Ok(m) = self.rx.try_recv() {
            if let Outbound::Deliver(d) = m {
                d.queue
                    .consumers()
                    .iter()
                    .filter(|c| c.tag == d.consumer_tag)
                    .for_each(|c| {
                        c.transit.release(1);
                    });
                out.push(d);
            }
        }
        out
    }
}

fn text(s: &str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(s))
}

fn args(entries: &[(&str, FieldValue)]) -> FieldTable {
    FieldTable(
        entries
            .iter()
            .map(|(k, v)| (ShortStr::try_from(*k).expect("key"), v.clone()))
            .collect(),
    )
}

fn body(d: &Delivery) -> String {
    String::from_utf8_lossy(&d.message.msg.body).into_owned()
}

impl Harness {
    fn new() -> Harness {
        Self::with(BrokerOptions::default())
    }

    fn with(opts: BrokerOptions) -> Harness {
        Self::with_store(Arc::new(MemoryStore::new()), opts)
    }

    fn with_store(store: Arc<MemoryStore>, opts: BrokerOptions) -> Harness {
        let broker = Broker::new(store, opts);
        let vh = broker.vhost("/").expect("default vhost");
        // A fixed time: 2023-11-14T22:13:20Z, and a monotonic instant taken once.
        let now = Now::new(std::time::Instant::now(), 1_700_000_000_000);
        Harness { broker, vh, now }
    }

    fn advance(&mut self, ms: u64) {
        self.now = self.now.after(Duration::from_millis(ms));
    }

    fn declare(&self, name: &str, durable: bool, a: FieldTable) -> Arc<Queue> {
        let spec = QueueSpec {
            name: name.into(),
            durable,
            arguments: a,
            ..Default::default()
        };
        self.vh
            .declare_queue(&spec, false, ConnId(0), self.now)
            .expect("declare")
    }

    fn fanout(&self, name: &str, to: &[&str]) {
        let spec = ExchangeSpec {
            name: name.into(),
            kind: "fanout".into(),
            ..Default::default()
        };
        self.vh.declare_exchange(&spec, false).expect("exchange");
        for q in to {
            self.vh
                .bind(name, q, false, "", &FieldTable::new(), ConnId(0))
                .expect("bind");
        }
    }

    fn publish_props(&self, exchange: &str, key: &str, body: &str, p: BasicProperties) -> bool {
        let out = self
            .vh
            .publish(
                PublishRequest {
                    exchange: ShortStr::try_from(exchange).expect("x"),
                    routing_key: ShortStr::try_from(key).expect("k"),
                    properties: Properties::from(&p),
                    body: bytes::Bytes::copy_from_slice(body.as_bytes()),
                    user: "guest",
                    grant: &crate::broker::Grant::all("guest", "/"),
                    awaited: None,
                },
                self.now,
            )
            .expect("publish");
        !out.refused
    }

    fn publish(&self, key: &str, body: &str) -> bool {
        self.publish_props("", key, body, BasicProperties::default())
    }

    fn publish_persistent(&self, key: &str, body: &str) -> bool {
        let p = BasicProperties {
            delivery_mode: Some(2),
            ..Default::default()
        };
        self.publish_props("", key, body, p)
    }

    fn consume(&self, q: &Arc<Queue>, tag: &'static str, prefetch: u32) -> Inbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let c = ConsumerHandle {
            tag: ShortStr::from_static(tag),
            channel: 1,
            conn: ConnId(7),
            no_ack: false,
            exclusive: false,
            priority: 0,
            browse: false,
            prefetch: Credit::new(prefetch),
            channel_credit: Credit::new(0),
            transit: Credit::new(TRANSIT_LIMIT),
            mailbox: tx,
        };
        self.vh.consume(q, c, self.now).expect("consume");
        self.vh.dispatch(q, self.now).expect("dispatch");
        Inbox { rx }
    }

    fn settle(&self, d: Vec<Delivery>, how: Settle) {
        let Some(q) = d.first().map(|d| Arc::clone(&d.queue)) else {
            return;
        };
        for d in &d {
            if let Some(c) = q.consumers().iter().find(|c| c.tag == d.consumer_tag) {
                c.prefetch.release(1);
            }
        }
        let msgs = d.into_iter().map(|d| d.message).collect();
        self.vh.settle(&q, how, msgs, self.now).expect("settle");
        // Credit came back: the session asks the queue to dispatch.
        self.vh.dispatch(&q, self.now).expect("dispatch");
    }

    fn get(&self, q: &Arc<Queue>) -> Option<String> {
        self.vh
            .get(q, true, self.now)
            .expect("get")
            .map(|g| String::from_utf8_lossy(&g.message.msg.body).into_owned())
    }

    fn drain(&self, q: &Arc<Queue>) -> Vec<String> {
        std::iter::from_fn(|| self.get(q)).take(100_000).collect()
    }

    fn tick(&self) {
        self.broker.tick(self.now);
    }
}

#[test]
fn consumers_take_turns_and_messages_keep_their_order() {
    let h = Harness::new();
    let q = h.declare("q", false, FieldTable::new());
    let mut a = h.consume(&q, "a", 0);
    let mut b = h.consume(&q, "b", 0);
    for i in 0..6 {
        h.publish("q", &i.to_string());
    }
    let (da, db) = (a.take(), b.take());
    assert_eq!(da.iter().map(body).collect::<Vec<_>>(), ["0", "2", "4"]);
    assert_eq!(db.iter().map(body).collect::<Vec<_>>(), ["1", "3", "5"]);
    // Requeued messages go back to their places, marked redelivered, counted.
    h.settle(da, Settle::Requeue);
    let again: Vec<Delivery> = a.take().into_iter().chain(b.take()).collect();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|d| d.message.redelivered));
    assert!(again.iter().all(|d| d.message.delivery_count == 1));
}

#[test]
fn a_backlog_larger_than_the_window_pages_and_comes_back_in_order() {
    let h = Harness::with(BrokerOptions {
        queue_window: MemoryWindow {
            messages: 16,
            bytes: 1 << 20,
        },
        ..BrokerOptions::default()
    });
    let q = h.declare("q", true, FieldTable::new());
    for i in 0..300 {
        if i % 3 == 0 {
            h.publish("q", &i.to_string());
        } else {
            h.publish_persistent("q", &i.to_string());
        }
    }
    let c = q.counts();
    assert_eq!(c.ready, 300);
    assert!(c.in_memory <= 16, "{} in memory", c.in_memory);
    let got = h.drain(&q);
    let want: Vec<String> = (0..300).map(|i: i32| i.to_string()).collect();
    assert_eq!(got, want);
    assert_eq!(q.counts().memory, 0, "the budget share is given back");
}

#[test]
fn ttl_expires_from_the_head_and_dead_letters_with_x_death() {
    let mut h = Harness::new();
    let dlq = h.declare("dlq", false, FieldTable::new());
    h.fanout("dlx", &["dlq"]);
    let q = h.declare(
        "q",
        false,
        args(&[
            ("x-message-ttl", FieldValue::I32(1000)),
            ("x-dead-letter-exchange", text("dlx")),
        ]),
    );
    h.publish("q", "m");
    h.advance(999);
    h.tick();
    assert_eq!(q.message_count(), 1, "not yet");
    h.advance(1);
    h.tick();
    assert_eq!(q.message_count(), 0, "expired at its deadline");
    let d =
        h.vh.get(&dlq, true, h.now)
            .expect("get")
            .expect("dead-lettered");
    let headers = d.message.msg.properties.headers().expect("headers");
    let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
        panic!("no x-death: {headers:?}");
    };
    let FieldValue::Table(death) = &deaths[0] else {
        panic!("not a table");
    };
    assert_eq!(
        death.get("reason").and_then(FieldValue::as_str),
        Some("expired")
    );
    assert_eq!(death.get("queue").and_then(FieldValue::as_str), Some("q"));
    assert_eq!(death.get("count"), Some(&FieldValue::I64(1)));
    assert_eq!(
        death.get("time"),
        Some(&FieldValue::Timestamp(h.now.unix_secs()))
    );
    assert_eq!(d.message.msg.exchange.as_str(), "dlx");
}

#[test]
fn an_expired_message_is_never_delivered_even_without_a_tick() {
    let mut h = Harness::new();
    let q = h.declare("q", false, args(&[("x-message-ttl", FieldValue::I32(50))]));
    h.publish("q", "old");
    h.advance(60);
    h.publish("q", "new");
    let mut c = h.consume(&q, "c", 0);
    assert_eq!(c.take().iter().map(body).collect::<Vec<_>>(), ["new"]);
    assert_eq!(h.get(&q), None);
}

#[test]
fn ttl_zero_means_deliver_now_or_expire() {
    let h = Harness::new();
    let q = h.declare("q", false, args(&[("x-message-ttl", FieldValue::I32(0))]));
    h.publish("q", "nobody waits");
    assert_eq!(q.message_count(), 0);
    let mut c = h.consume(&q, "c", 0);
    h.publish("q", "taken");
    assert_eq!(c.take().iter().map(body).collect::<Vec<_>>(), ["taken"]);
}

#[test]
fn the_lower_of_queue_and_message_ttl_wins() {
    let mut h = Harness::new();
    let q = h.declare(
        "q",
        false,
        args(&[("x-message-ttl", FieldValue::I32(1000))]),
    );
    let short = BasicProperties {
        expiration: Some(ShortStr::from_static("100")),
        ..Default::default()
    };
    let long = BasicProperties {
        expiration: Some(ShortStr::from_static("5000")),
        ..Default::default()
    };
    h.publish_props("", "q", "short", short);
    h.advance(150);
    h.tick();
    assert_eq!(q.message_count(), 0);
    h.publish_props("", "q", "long", long);
    h.advance(1000);
    h.tick();
    assert_eq!(q.message_count(), 0, "the queue's 1000 ms won over 5000");
}

#[test]
fn drop_head_dead_letters_the_oldest_with_reason_maxlen() {
    let h = Harness::new();
    let dlq = h.declare("dlq", false, FieldTable::new());
    let q = h.declare(
        "q",
        false,
        args(&[
            ("x-max-length", FieldValue::I32(2)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dlq")),
        ]),
    );
    for m in ["a", "b", "c", "d"] {
        assert!(h.publish("q", m));
    }
    assert_eq!(h.drain(&q), ["c", "d"]);
    assert_eq!(h.drain(&dlq), ["a", "b"]);
}

#[test]
fn reject_publish_refuses_and_reject_publish_dlx_dead_letters_too() {
    let h = Harness::new();
    let dlq = h.declare("dlq", false, FieldTable::new());
    let q = h.declare(
        "q",
        false,
        args(&[
            ("x-max-length", FieldValue::I32(1)),
            ("x-overflow", text("reject-publish")),
        ]),
    );
    assert!(h.publish("q", "a"));
    assert!(!h.publish("q", "b"), "refused: basic.nack");
    assert_eq!(h.drain(&q), ["a"]);
    let q2 = h.declare(
        "q2",
        false,
        args(&[
            ("x-max-length-bytes", FieldValue::I32(3)),
            ("x-overflow", text("reject-publish-dlx")),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dlq")),
        ]),
    );
    assert!(h.publish("q2", "abc"));
    assert!(!h.publish("q2", "d"));
    assert_eq!(h.drain(&q2), ["abc"]);
    assert_eq!(h.drain(&dlq), ["d"]);
}

#[test]
fn the_delivery_limit_dead_letters_after_too_many_returns() {
    let h = Harness::new();
    let dlq = h.declare("dlq", false, FieldTable::new());
    let q = h.declare(
        "q",
        false,
        args(&[
            ("x-delivery-limit", FieldValue::I32(1)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("dlq")),
        ]),
    );
    let mut c = h.consume(&q, "c", 1);
    h.publish("q", "poison");
    let first = c.take();
    assert_eq!(first[0].message.delivery_count, 0);
    h.settle(first, Settle::Requeue);
    let second = c.take();
    assert_eq!(second[0].message.delivery_count, 1);
    let headers = second[0]
        .message
        .delivery_properties()
        .headers()
        .expect("headers");
    assert_eq!(headers.get("x-delivery-count"), Some(&FieldValue::I64(1)));
    h.settle(second, Settle::Requeue);
    assert!(c.take().is_empty(), "returned twice with a limit of 1");
    assert_eq!(h.drain(&dlq), ["poison"]);
}

#[test]
fn an_unused_queue_expires_and_a_consumer_or_a_get_keeps_it() {
    let mut h = Harness::new();
    let q = h.declare("q", false, args(&[("x-expires", FieldValue::I32(1000))]));
    h.advance(600);
    assert_eq!(h.get(&q), None, "a get uses the queue");
    h.advance(600);
    h.tick();
    assert!(h.vh.queue("q").is_ok(), "1200 ms old but used 600 ms ago");
    let c = h.consume(&q, "c", 0);
    h.advance(5000);
    h.tick();
    assert!(h.vh.queue("q").is_ok(), "a consumer keeps it");
    h.vh.cancel(&q, ConnId(7), 1, "c", h.now).expect("cancel");
    drop(c);
    h.advance(999);
    h.tick();
    assert!(h.vh.queue("q").is_ok());
    h.advance(1);
    h.tick();
    assert!(
        h.vh.queue("q").is_err(),
        "expired 1000 ms after its last consumer left"
    );
}

#[test]
fn a_dead_letter_cycle_without_rejects_is_dropped_and_does_not_deadlock() {
    let mut h = Harness::new();
    let a = h.declare(
        "a",
        false,
        args(&[
            ("x-message-ttl", FieldValue::I32(10)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("b")),
        ]),
    );
    let b = h.declare(
        "b",
        false,
        args(&[
            ("x-message-ttl", FieldValue::I32(10)),
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("a")),
        ]),
    );
    h.publish("a", "m");
    h.advance(10);
    h.tick();
    assert_eq!((a.message_count(), b.message_count()), (0, 1));
    h.advance(10);
    h.tick();
    assert_eq!(
        (a.message_count(), b.message_count()),
        (0, 0),
        "cycle dropped"
    );
    assert_eq!(
        h.broker
            .stats()
            .dead_letter_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn rejected_messages_dead_letter_and_repeat_deaths_count_up() {
    let h = Harness::new();
    let q = h.declare(
        "q",
        false,
        args(&[
            ("x-dead-letter-exchange", text("")),
            ("x-dead-letter-routing-key", text("q")),
        ]),
    );
    let mut c = h.consume(&q, "c", 1);
    h.publish("q", "m");
    for round in 1..=3i64 {
        let d = c.take();
        assert_eq!(d.len(), 1, "round {round}");
        h.settle(d, Settle::Reject);
        let back = c.take();
        let headers = back[0].message.msg.properties.headers().expect("headers");
        let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
            panic!("no x-death");
        };
        assert_eq!(deaths.len(), 1, "one table per queue and reason");
        let FieldValue::Table(t) = &deaths[0] else {
            panic!("table");
        };
        assert_eq!(t.get("count"), Some(&FieldValue::I64(round)));
        // Rejections are never a cycle: the message keeps coming back.
        h.settle(back, Settle::Requeue);
    }
}

#[test]
fn policies_apply_at_once_and_arguments_win_where_rabbitmq_says() {
    let h = Harness::new();
    let q = h.declare("pq", false, args(&[("x-max-length", FieldValue::I32(5))]));
    for i in 0..4 {
        h.publish("pq", &i.to_string());
    }
    let p = crate::broker::policy::build(
        crate::broker::policy::PolicyKind::Policy,
        "/",
        "limit",
        "^pq$",
        Some("queues"),
        None,
        &serde_json::json!({"max-length": 2, "overflow": "reject-publish"}),
    )
    .expect("policy");
    h.vh.put_policy(crate::broker::policy::PolicyKind::Policy, p, h.now)
        .expect("put");
    assert_eq!(q.message_count(), 4, "reject-publish does not drop");
    assert_eq!(q.settings().max_length, Some(2), "the lower limit wins");
    assert!(!h.publish("pq", "x"));
    assert_eq!(q.policy().policy.as_deref(), Some("limit"));
    h.vh.delete_policy(crate::broker::policy::PolicyKind::Policy, "limit", h.now)
        .expect("delete");
    assert_eq!(q.settings().max_length, Some(5));
    assert!(h.publish("pq", "y"));
}

#[test]
fn one_memory_budget_bounds_many_queues() {
    let h = Harness::with(BrokerOptions {
        queue_memory_budget: 256 * 1024,
        ..BrokerOptions::default()
    });
    let queues: Vec<Arc<Queue>> = (0..50)
        .map(|i| h.declare(&format!("q{i}"), false, FieldTable::new()))
        .collect();
    let payload = "x".repeat(1000);
    for q in &queues {
        for _ in 0..100 {
            h.publish(&q.name, &payload);
        }
    }
    let budget = h.broker.memory_budget();
    // Each queue may keep one message whatever the budget says, plus spill tails waiting to
    // be written.
    assert!(
        budget.used() <= budget.limit() + 50 * 2 * 1300,
        "{} used of {}",
        budget.used(),
        budget.limit()
    );
    for q in &queues {
        assert_eq!(h.drain(q).len(), 100);
    }
}

#[test]
fn a_consumer_drains_a_paged_backlog_in_order() {
    let h = Harness::with(BrokerOptions {
        queue_window: MemoryWindow {
            messages: 16,
            bytes: 1 << 20,
        },
        ..BrokerOptions::default()
    });
    let q = h.declare("q", true, FieldTable::new());
    for i in 0..300 {
        if i % 3 == 0 {
            h.publish("q", &i.to_string());
        } else {
            h.publish_persistent("q", &i.to_string());
        }
    }
    let mut c = h.consume(&q, "c", 10);
    let mut got = Vec::new();
    for _ in 0..1000 {
        let d = c.take();
        if d.is_empty() {
            break;
        }
        got.extend(d.iter().map(body));
        h.settle(d, Settle::Ack);
    }
    let want: Vec<String> = (0..300).map(|i: i32| i.to_string()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_queue_refills_from_its_own_reservation_when_other_queues_hold_the_budget() {
    // A grain of 4 KiB: each queue that ever held a message keeps one reservation of slack.
    let h = Harness::with(BrokerOptions {
        queue_memory_budget: 64 * 4096,
        ..BrokerOptions::default()
    });
    let body = "x".repeat(100);
    for i in 0..63 {
        let q = h.declare(&format!("idle{i}"), false, FieldTable::new());
        assert!(h.publish(&q.name, &body));
        assert!(h.get(&q).is_some());
    }
    let q = h.declare("backlog", true, FieldTable::new());
    for i in 0..200 {
        assert!(h.publish_persistent("backlog", &format!("{i:03}{body}")));
    }
    let budget = h.broker.memory_budget();
    assert!(
        budget.used() >= budget.limit(),
        "the shares hold the whole budget"
    );
    let mut got = Vec::new();
    for _ in 0..30 {
        got.extend(h.get(&q));
        // Refilled from what its own deliveries gave back, not one message at a time.
        assert!(
            q.counts().in_memory >= 4,
            "{} in memory after {} gets",
            q.counts().in_memory,
            got.len()
        );
    }
    got.extend(h.drain(&q));
    let want: Vec<String> = (0..200).map(|i| format!("{i:03}{body}")).collect();
    assert_eq!(got, want);
}

#[test]
fn queues_refilling_at_once_share_the_budget_s_room() {
    // 8 MiB, the backlogs published under the cap's floor (1 MiB), so paged. When the cap
    // comes back up twenty queues refill at once, each wanting its whole backlog (1.2 MB):
    // together they may fill the ~7 MiB of room once, not each of them count it as its own.
    let store = Arc::new(MemoryStore::new());
    let h = Harness::with_store(
        Arc::clone(&store),
        BrokerOptions {
            queue_memory_budget: 8 << 20,
            ..BrokerOptions::default()
        },
    );
    let budget = h.broker.memory_budget();
    budget.set_cap(0);
    let body = "x".repeat(1000);
    let queues: Vec<Arc<Queue>> = (0..20)
        .map(|i| {
            let q = h.declare(&format!("q{i}"), true, FieldTable::new());
            for _ in 0..1000 {
                assert!(h.publish_persistent(&q.name, &body));
            }
            q
        })
        .collect();
    // The first queue filled the cap; the others hold one message each.
    for q in &queues[1..] {
        assert_eq!(q.counts().in_memory, 1);
    }
    budget.set_cap(budget.limit());
    // Every refill is planned before any of them reads.
    let refilling = &queues[1..];
    store.hold_reads(refilling.len());
    std::thread::scope(|s| {
        for q in refilling {
            let h = &h;
            s.spawn(move || assert!(h.get(q).is_some()));
        }
    });
    // Beyond the room, each queue may refill up to the floor.
    assert!(
        budget.used() <= budget.limit() + refilling.len() * 2 * REFILL_FLOOR_BYTES,
        "{} used of {}",
        budget.used(),
        budget.limit()
    );
    assert_eq!(h.drain(&queues[0]).len(), 1000);
    for q in refilling {
        assert_eq!(h.drain(q).len(), 999);
    }
}

#[test]
fn over_its_cap_the_budget_lets_a_queue_refill_up_to_the_floor_only() {
    // 8 MiB, its cap lowered to the floor (1 MiB) as when the rest of the process grows; idle
    // queues hold more than the cap, so the budget stays full.
    let h = Harness::with(BrokerOptions {
        queue_memory_budget: 8 << 20,
        ..BrokerOptions::default()
    });
    let budget = h.broker.memory_budget();
    let body = "x".repeat(1000);
    for i in 0..12 {
        let q = h.declare(&format!("idle{i}"), false, FieldTable::new());
        for _ in 0..100 {
            assert!(h.publish(&q.name, &body));
        }
    }
    budget.set_cap(0);
    assert_eq!(budget.cap(), 1 << 20);
    assert!(budget.full(), "{} used", budget.used());
    let idle = budget.used();
    let q = h.declare("backlog", true, FieldTable::new());
    for i in 0..2000 {
        assert!(h.publish_persistent("backlog", &format!("{i:04}")));
    }
    assert!(q.counts().in_memory <= 1, "published over the cap: paged");
    let mut got = Vec::new();
    while got.len() < 2000 {
        let Some(m) = h.get(&q) else { break };
        got.push(m);
        let in_memory = q.counts().in_memory;
        if got.len() < 2000 - REFILL_FLOOR {
            // Refilled in batches (not a disk read per message), and no further than the floor.
            assert!(
                in_memory >= 4,
                "{in_memory} in memory after {} gets",
                got.len()
            );
        }
        assert!(
            in_memory <= REFILL_FLOOR,
            "{in_memory} in memory over the cap"
        );
    }
    assert!(
        budget.used() <= idle + 2 * budget.unit(),
        "{} used",
        budget.used()
    );
    let want: Vec<String> = (0..2000).map(|i| format!("{i:04}")).collect();
    assert_eq!(got, want);
}
