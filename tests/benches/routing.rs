//! Topic and headers routing on the publish hot path (`broker::exchange::{topic, headers}`).
//!
//! `cargo bench --bench routing`. The topic set is 1,000 bindings of mixed patterns over a
//! market-data style vocabulary (`class.venue.symbol[.event]`, some words `*`, some tails or heads
//! `#`), made by a fixed-seed generator so every run routes the same keys. The naive scan with the
//! reference matcher is the baseline the trie must beat by orders of magnitude.

use criterion::{Criterion, criterion_group, criterion_main};
use lagomorph::broker::exchange::headers::HeadersBinding;
use lagomorph::broker::exchange::topic::{TopicTrie, topic_matches};
use lagomorph::protocol::types::{FieldTable, FieldValue, LongStr, ShortStr};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

/// xorshift64*: a tiny deterministic generator, so the bench needs no extra crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const CLASSES: [&str; 6] = ["stock", "fx", "bond", "option", "future", "crypto"];
const VENUES: [&str; 12] = [
    "nyse", "nasdaq", "lse", "xetra", "tse", "hkex", "asx", "tsx", "bse", "sse", "jse", "six",
];
const EVENTS: [&str; 5] = ["trade", "quote", "halt", "open", "close"];

fn symbol(rng: &mut Rng) -> String {
    format!("s{}", rng.below(60))
}

/// A routing key: `class.venue.symbol` or `class.venue.symbol.event`.
fn key(rng: &mut Rng) -> String {
    let mut words = vec![
        CLASSES[rng.below(CLASSES.len())].to_string(),
        VENUES[rng.below(VENUES.len())].to_string(),
        symbol(rng),
    ];
    if rng.chance(50) {
        words.push(EVENTS[rng.below(EVENTS.len())].to_string());
    }
    words.join(".")
}

/// A binding pattern: a key with some words replaced by `*`, sometimes a `#` tail or head.
fn pattern(rng: &mut Rng) -> String {
    let key = key(rng);
    let mut words: Vec<&str> = key.split('.').collect();
    for word in words.iter_mut() {
        if rng.chance(20) {
            *word = "*";
        }
    }
    if rng.chance(15) {
        let keep = 1 + rng.below(words.len() - 1);
        words.truncate(keep);
        words.push("#");
    } else if rng.chance(5) {
        words[0] = "#";
    }
    words.join(".")
}

/// 1,000 distinct bindings (pattern → queue name) and 256 keys to route.
fn mixed_set() -> (Vec<(String, Arc<str>)>, Vec<String>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut bindings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    while bindings.len() < 1000 {
        let p = pattern(&mut rng);
        if seen.insert(p.clone()) {
            let queue: Arc<str> = format!("q{}", bindings.len()).into();
            bindings.push((p, queue));
        }
    }
    let keys = (0..256).map(|_| key(&mut rng)).collect();
    (bindings, keys)
}

fn topic(c: &mut Criterion) {
    let (bindings, keys) = mixed_set();
    let mut trie = TopicTrie::new();
    for (p, q) in &bindings {
        assert!(trie.insert(p, q.clone()));
    }
    let matched: usize = keys
        .iter()
        .map(|k| bindings.iter().filter(|(p, _)| topic_matches(p, k)).count())
        .sum();
    eprintln!(
        "topic: {} bindings, {} keys, {:.2} matching bindings per key on average",
        trie.len(),
        keys.len(),
        matched as f64 / keys.len() as f64
    );

    let mut out: Vec<&Arc<str>> = Vec::with_capacity(1024);
    let mut i = 0;
    c.bench_function("topic/trie/1000_mixed", |b| {
        b.iter(|| {
            out.clear();
            trie.route(black_box(&keys[i % keys.len()]), &mut |q| out.push(q));
            i += 1;
            black_box(out.len())
        })
    });

    let miss = "unknown.venue.s1.trade";
    c.bench_function("topic/trie/1000_mixed_no_match", |b| {
        b.iter(|| {
            out.clear();
            trie.route(black_box(miss), &mut |q| out.push(q));
            black_box(out.len())
        })
    });

    let mut i = 0;
    c.bench_function("topic/naive_scan/1000_mixed", |b| {
        b.iter(|| {
            let k = black_box(&keys[i % keys.len()]);
            i += 1;
            bindings.iter().filter(|(p, _)| topic_matches(p, k)).count()
        })
    });

    // 1,000 queues on one pattern: the cost per reported value.
    let mut fan = TopicTrie::new();
    for n in 0..1000u32 {
        fan.insert("stock.#", n);
    }
    let mut fan_out: Vec<&u32> = Vec::with_capacity(1000);
    c.bench_function("topic/trie/fanout_1000_values", |b| {
        b.iter(|| {
            fan_out.clear();
            fan.route(black_box("stock.nyse.s1.trade"), &mut |q| fan_out.push(q));
            black_box(fan_out.len())
        })
    });

    // Nested `#` against a long key: exponential for a plain walk, bounded by the memo.
    let mut nasty = TopicTrie::new();
    nasty.insert("#.a.#.a.#.a.#.a.#", 1u32);
    nasty.insert("#.a.#.a.#.a.#.a.#.b", 2u32);
    let long_key = ["a"; 40].join(".");
    c.bench_function("topic/trie/nested_hash_40_words", |b| {
        b.iter(|| {
            let mut n = 0;
            nasty.route(black_box(&long_key), &mut |_| n += 1);
            black_box(n)
        })
    });

    c.bench_function("topic/trie/build_1000_then_remove", |b| {
        b.iter(|| {
            let mut t = TopicTrie::new();
            for (p, q) in &bindings {
                t.insert(p, q.clone());
            }
            for (p, q) in &bindings {
                t.remove(p, q);
            }
            black_box(t.len())
        })
    });
}

fn headers(c: &mut Criterion) {
    let s = |v: &str| FieldValue::LongStr(LongStr::from(v));
    let k = |v: &'static str| ShortStr::from_static(v);
    let args = FieldTable(vec![
        (k("x-match"), s("all")),
        (k("format"), s("pdf")),
        (k("type"), s("report")),
        (k("priority"), FieldValue::I32(3)),
    ]);
    let binding = HeadersBinding::parse(&args).expect("valid");
    let headers = FieldTable(vec![
        (k("x-trace"), s("abc")),
        (k("type"), s("report")),
        (k("lang"), s("en")),
        (k("format"), s("pdf")),
        (k("priority"), FieldValue::I64(3)),
        (k("source"), s("batch")),
    ]);
    c.bench_function("headers/all_3_conditions_6_headers", |b| {
        b.iter(|| black_box(&binding).matches(Some(black_box(&headers))))
    });
}

fn config() -> Criterion {
    // A shared 2-core machine: short, steady runs.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

criterion_group! { name = benches; config = config(); targets = topic, headers }
criterion_main!(benches);
