//! The topic exchange's matcher: a trie over the words of binding patterns.
//!
//! Owns the matching rules for topic patterns and nothing else: values are generic (the broker
//! stores binding destinations), so this module knows no queues, no exchanges and no wire.
//!
//! # Rules (RabbitMQ's, including its edge cases)
//! - A routing key or pattern is split on `.` into words. Words may be empty: `"a..b"` is
//!   `["a", "", "b"]`, `"a."` is `["a", ""]`, `"."` is `["", ""]`. The empty string is the one
//!   exception: it has **zero** words, not one empty word (RabbitMQ's `split_topic_key`).
//! - In a pattern, a word that is exactly `*` matches exactly one word (which may be empty), and a
//!   word that is exactly `#` matches zero or more words. Any other word, including `a*` or `##`,
//!   is literal. In a routing key, `*` and `#` are ordinary words.
//! - So `#` matches every key including `""`; `a.#` matches `a`; `#.#` and `#.#.#` match
//!   everything; `*.#` matches any key with at least one word (not `""`); `""` as a pattern
//!   matches only the key `""`; `*` matches `a` and the key `a.`'s second (empty) word, but
//!   neither `.` (two words) nor `""` (zero words).
//!
//! # Speed
//! [`TopicTrie::route`] walks the trie word by word: one child lookup per literal word, plus the
//! `*` and `#` edges, so its cost follows the number of matching paths, not the number of
//! bindings. It uses no regexes and allocates nothing (its per-call memo, below, lives in a small
//! stack array unless the trie has more than 32 nested `#` nodes). Recursion depth follows the
//! number of words, which AMQP bounds: keys and binding keys are short strings (≤ 255 bytes).
//!
//! A naive walk is exponential for patterns with several `#` (`#.a.#.a.#` against `a.a.a…`),
//! and a client that may bind could use that to stall publishers. Each node reached through a
//! `#` edge below another `#` (the only nodes reachable at several key positions) therefore gets a
//! *memo slot*: during one route call it records the position its subtree was explored from, and
//! a later visit from the same or a later position is skipped, because that walk already
//! reported everything reachable from there. Every (node, position) pair is thus explored at
//! most once, bounding a route by `nodes × words`, and as a bonus every matching pattern reports
//! its values exactly once.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// `Node::slot` of a node that needs no memo (it can only be reached at one key position).
const NO_SLOT: u32 = u32::MAX;
/// Memo value meaning "not explored yet in this route call".
const UNSEEN: usize = usize::MAX;
/// Memo slots kept on the stack during a route; more (a trie with many nested `#`) use the heap.
const STACK_MEMO: usize = 32;
/// Literal children are a linear-scan vector up to this many, a hash map beyond.
const SMALL_CHILDREN: usize = 16;
/// Values bound at one pattern get a hash index (for O(1) insert/remove) beyond this many.
const LEAF_INDEX_AT: usize = 16;

/// A set of `(pattern, value)` topic bindings that routes keys to the values whose pattern matches.
///
/// Patterns are stored word by word; equal prefixes share nodes. The same value may be bound with
/// several patterns (each is a separate pair), and one pattern may carry many values.
pub struct TopicTrie<T> {
    root: Node<T>,
    /// Number of `(pattern, value)` pairs.
    len: usize,
    /// Memo slots handed out so far (live or on the free list): the memo array's length.
    slots: u32,
    /// Slots of pruned nodes, for reuse.
    free_slots: Vec<u32>,
}

/// One trie node: the pattern prefix spelled by the path from the root.
struct Node<T> {
    /// Children by literal word.
    words: Children<T>,
    /// Child for a `*` word.
    star: Option<Box<Node<T>>>,
    /// Child for a `#` word.
    hash: Option<Box<Node<T>>>,
    /// Memo slot, for a node reached through a `#` edge with another `#` above it; else `NO_SLOT`.
    slot: u32,
    /// Values bound with exactly this node's pattern.
    values: Leaf<T>,
}

/// Literal-word children. Most nodes have a few: they are scanned as a vector of packed 8-byte
/// prefixes ([`tag`]), contiguous so a scan touches a cache line or two and rarely compares
/// strings. Wide nodes switch to a hash map (std's randomly keyed hasher, so clients choosing
/// binding words cannot force collisions).
enum Children<T> {
    Small {
        /// `tag(word)` of each entry, in the same order.
        tags: Vec<u64>,
        entries: Vec<(Box<str>, Node<T>)>,
    },
    Large(HashMap<Box<str>, Node<T>>),
}

/// A word's first eight bytes packed into an integer (zero-padded), to compare words quickly; equal
/// words have equal tags, and equal tags with equal lengths mean equal words up to eight bytes.
fn tag(word: &str) -> u64 {
    let bytes = word.as_bytes();
    match bytes.first_chunk::<8>() {
        Some(first) => u64::from_le_bytes(*first),
        // Shorter words: a byte loop, cheaper than `copy_from_slice`'s variable-length memcpy.
        None => bytes
            .iter()
            .enumerate()
            .fold(0, |t, (i, &b)| t | u64::from(b) << (8 * i)),
    }
}

/// The values bound at one pattern, without duplicates. Iteration (the route path) is over a plain
/// vector; large sets also keep a value → position index so insert and remove stay O(1).
struct Leaf<T> {
    items: Vec<T>,
    index: Option<HashMap<T, usize>>,
}

/// The words of a pattern or key: none for `""`, else the `.`-separated parts.
fn words(s: &str) -> impl Iterator<Item = &str> {
    (!s.is_empty()).then(|| s.split('.')).into_iter().flatten()
}

/// The naive reference matcher: does `pattern` match `key` under the topic rules (see the module
/// docs)? Allocates; use [`TopicTrie`] on the publish path. Runs in `O(pattern words × key words)`.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    let pattern: Vec<&str> = words(pattern).collect();
    let key: Vec<&str> = words(key).collect();
    // Dynamic programming from the back: `next[j]` says whether the pattern words after the
    // current one match `key[j..]`. With no pattern words left, only an exhausted key matches.
    let mut next = vec![false; key.len() + 1];
    next[key.len()] = true;
    for word in pattern.iter().rev() {
        let mut cur = vec![false; key.len() + 1];
        for j in (0..=key.len()).rev() {
            let has_word = j < key.len();
            cur[j] = match *word {
                // `#` swallows nothing (rest matches here) or one more word (stay on `#`).
                "#" => next[j] || (has_word && cur[j + 1]),
                "*" => has_word && next[j + 1],
                literal => has_word && key[j] == literal && next[j + 1],
            };
        }
        next = cur;
    }
    next[0]
}

impl<T> TopicTrie<T> {
    /// An empty trie.
    pub fn new() -> Self {
        TopicTrie {
            root: Node::new(NO_SLOT),
            len: 0,
            slots: 0,
            free_slots: Vec::new(),
        }
    }

    /// Number of `(pattern, value)` pairs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no pair is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<T: Clone + Eq + Hash> TopicTrie<T> {
    /// Adds (pattern, value); false if that exact pair was already there.
    pub fn insert(&mut self, pattern: &str, value: T) -> bool {
        let TopicTrie {
            root,
            len,
            slots,
            free_slots,
        } = self;
        let mut node = root;
        let mut below_hash = false;
        for word in words(pattern) {
            node = match word {
                "*" => node
                    .star
                    .get_or_insert_with(|| Box::new(Node::new(NO_SLOT))),
                "#" => {
                    let nested = below_hash;
                    below_hash = true;
                    node.hash.get_or_insert_with(|| {
                        // Only a `#` below another `#` can be reached at several key positions.
                        let slot = if nested {
                            free_slots.pop().unwrap_or_else(|| {
                                *slots += 1;
                                *slots - 1
                            })
                        } else {
                            NO_SLOT
                        };
                        Box::new(Node::new(slot))
                    })
                }
                literal => node.words.get_or_insert(literal),
            };
        }
        let added = node.values.insert(value);
        if added {
            *len += 1;
        }
        added
    }

    /// Removes (pattern, value); false if absent. Prunes nodes left with no values and no children.
    pub fn remove(&mut self, pattern: &str, value: &T) -> bool {
        let removed = remove_from(&mut self.root, words(pattern), value, &mut self.free_slots);
        if removed {
            self.len -= 1;
        }
        removed
    }

    /// Calls `f` for every value whose pattern matches `key`. A value bound with several matching
    /// patterns is reported once per such pattern (the caller dedups); a value is never reported
    /// twice for the same pattern. Allocates nothing unless the trie holds more than 32 `#` nodes
    /// nested below other `#` nodes (then one small memo array).
    pub fn route<'a>(&'a self, key: &str, f: &mut dyn FnMut(&'a T)) {
        // Positions are byte offsets where the remaining words start; `end` (one past the key)
        // means no words remain.
        let end = key.len() + 1;
        let slots = self.slots as usize;
        let mut on_stack;
        let mut on_heap;
        let memo: &mut [usize] = if slots == 0 {
            &mut []
        } else if slots <= STACK_MEMO {
            on_stack = [UNSEEN; STACK_MEMO];
            &mut on_stack[..slots]
        } else {
            on_heap = vec![UNSEEN; slots];
            &mut on_heap
        };
        let mut walk = Walk { key, end, memo, f };
        // The empty key has no words at all, so it starts at `end`.
        let start = walk.at(if key.is_empty() { end } else { 0 });
        walk.step(&self.root, start);
    }
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> fmt::Debug for TopicTrie<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopicTrie")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// Removes `value` from the node spelled by `words` below `node`, pruning emptied children on the
/// way back up and returning their memo slots to `free_slots`.
fn remove_from<'p, T: Clone + Eq + Hash>(
    node: &mut Node<T>,
    mut words: impl Iterator<Item = &'p str>,
    value: &T,
    free_slots: &mut Vec<u32>,
) -> bool {
    let Some(word) = words.next() else {
        return node.values.remove(value);
    };
    match word {
        "*" | "#" => {
            let edge = if word == "*" {
                &mut node.star
            } else {
                &mut node.hash
            };
            let Some(child) = edge.as_deref_mut() else {
                return false;
            };
            if !remove_from(child, words, value, free_slots) {
                return false;
            }
            if child.is_empty() {
                if child.slot != NO_SLOT {
                    free_slots.push(child.slot);
                }
                *edge = None;
            }
        }
        literal => {
            let Some(child) = node.words.get_mut(literal) else {
                return false;
            };
            if !remove_from(child, words, value, free_slots) {
                return false;
            }
            if child.is_empty() {
                node.words.remove(literal);
            }
        }
    }
    true
}

/// The state of one route call.
struct Walk<'a, 'w, T> {
    key: &'w str,
    /// One past the key: the position meaning "no words left".
    end: usize,
    /// Per memo slot: the position its node was explored from in this call, or `UNSEEN`.
    memo: &'w mut [usize],
    f: &'w mut dyn FnMut(&'a T),
}

/// A position in the key with its first word split out, so each node visit does not split again.
#[derive(Clone, Copy)]
struct At<'k> {
    /// Byte offset where the remaining words start; `end` when none remain.
    pos: usize,
    /// The word at `pos` (empty at `end`).
    word: &'k str,
    /// `tag(word)`.
    tag: u64,
    /// The position after `word`.
    next: usize,
}

impl<'a, 'w, T> Walk<'a, 'w, T> {
    /// The position `pos`, split.
    fn at(&self, pos: usize) -> At<'w> {
        let key = self.key;
        let rest = match key.get(pos..) {
            Some(rest) if pos < self.end => rest,
            _ => {
                return At {
                    pos: self.end,
                    word: "",
                    tag: 0,
                    next: self.end,
                };
            }
        };
        // A byte scan: words are short, and `str::find` costs more to set up than this loop.
        let (word, next) = match rest.bytes().position(|b| b == b'.') {
            Some(dot) => (&rest[..dot], pos + dot + 1),
            None => (rest, self.end),
        };
        At {
            pos,
            word,
            tag: tag(word),
            next,
        }
    }

    /// Matches the subtree of `node` against the words from `at` on.
    fn step(&mut self, node: &'a Node<T>, at: At<'w>) {
        if at.pos == self.end {
            for value in &node.values.items {
                (self.f)(value);
            }
            // A trailing `#` may match zero words.
            if let Some(hash) = &node.hash {
                self.hash(hash, at);
            }
            return;
        }
        let literal = node.words.find(at.word, at.tag);
        if literal.is_some() || node.star.is_some() {
            let next = self.at(at.next);
            if let Some(child) = literal {
                self.step(child, next);
            }
            if let Some(star) = &node.star {
                self.step(star, next);
            }
        }
        if let Some(hash) = &node.hash {
            self.hash(hash, at);
        }
    }

    /// `node` was reached through a `#` edge at `from`: the `#` swallows zero or more words, so
    /// the subtree is matched from every position `from..=end`.
    ///
    /// A memo-slot node is skipped if this call already explored it from `from` or earlier: that
    /// walk covered every position from here on. (Visits to one node arrive in ascending position
    /// order, since every loop here ascends, so in practice any revisit is skipped; a revisit from
    /// an earlier position would simply be explored again, which is correct, only slower.)
    fn hash(&mut self, node: &'a Node<T>, from: At<'w>) {
        if node.slot != NO_SLOT {
            let Some(seen) = self.memo.get_mut(node.slot as usize) else {
                debug_assert!(false, "invariant: memo has a cell for every slot");
                return;
            };
            if *seen <= from.pos {
                return;
            }
            *seen = from.pos;
        }
        let mut at = from;
        loop {
            self.step(node, at);
            if at.pos == self.end {
                break;
            }
            at = self.at(at.next);
        }
    }
}

impl<T> Node<T> {
    fn new(slot: u32) -> Self {
        Node {
            words: Children::Small {
                tags: Vec::new(),
                entries: Vec::new(),
            },
            star: None,
            hash: None,
            slot,
            values: Leaf {
                items: Vec::new(),
                index: None,
            },
        }
    }

    /// No values and no children: the node can be pruned.
    fn is_empty(&self) -> bool {
        self.values.items.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }
}

impl<T> Children<T> {
    /// Position of `word` (whose tag is `tag`) in a small node's vectors.
    fn position(
        tags: &[u64],
        entries: &[(Box<str>, Node<T>)],
        word: &str,
        tag: u64,
    ) -> Option<usize> {
        let mut from = 0;
        // A tight scan of the tags; the words are compared only on a tag hit.
        while let Some(hit) = tags.get(from..)?.iter().position(|&t| t == tag) {
            let i = from + hit;
            let (w, _) = entries.get(i)?;
            if w.len() == word.len()
                && (word.len() <= 8 || w.as_bytes()[8..] == word.as_bytes()[8..])
            {
                return Some(i);
            }
            from = i + 1;
        }
        None
    }

    /// The child for `word`, given `tag(word)` (the route path computes it once per position).
    fn find(&self, word: &str, tag: u64) -> Option<&Node<T>> {
        match self {
            Children::Small { tags, entries } => {
                let i = Self::position(tags, entries, word, tag)?;
                entries.get(i).map(|(_, n)| n)
            }
            Children::Large(m) => m.get(word),
        }
    }

    fn get_mut(&mut self, word: &str) -> Option<&mut Node<T>> {
        match self {
            Children::Small { tags, entries } => {
                let i = Self::position(tags, entries, word, tag(word))?;
                entries.get_mut(i).map(|(_, n)| n)
            }
            Children::Large(m) => m.get_mut(word),
        }
    }

    /// The child for `word`, created (with no memo slot: literal edges never need one) if absent.
    fn get_or_insert(&mut self, word: &str) -> &mut Node<T> {
        let t = tag(word);
        if let Children::Small { tags, entries } = self
            && entries.len() >= SMALL_CHILDREN
            && Self::position(tags, entries, word, t).is_none()
        {
            *self = Children::Large(std::mem::take(entries).into_iter().collect());
        }
        match self {
            Children::Small { tags, entries } => {
                let i = match Self::position(tags, entries, word, t) {
                    Some(i) => i,
                    None => {
                        tags.push(t);
                        entries.push((word.into(), Node::new(NO_SLOT)));
                        entries.len() - 1
                    }
                };
                &mut entries[i].1
            }
            Children::Large(m) => m.entry(word.into()).or_insert_with(|| Node::new(NO_SLOT)),
        }
    }

    fn remove(&mut self, word: &str) {
        match self {
            Children::Small { tags, entries } => {
                if let Some(i) = Self::position(tags, entries, word, tag(word)) {
                    tags.remove(i);
                    entries.remove(i);
                }
            }
            Children::Large(m) => {
                m.remove(word);
                if m.len() <= SMALL_CHILDREN / 2 {
                    let entries: Vec<_> = std::mem::take(m).into_iter().collect();
                    let tags = entries.iter().map(|(w, _)| tag(w)).collect();
                    *self = Children::Small { tags, entries };
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Children::Small { entries, .. } => entries.is_empty(),
            Children::Large(m) => m.is_empty(),
        }
    }
}

impl<T: Clone + Eq + Hash> Leaf<T> {
    /// Adds `value`; false if already present.
    fn insert(&mut self, value: T) -> bool {
        match &mut self.index {
            Some(index) => {
                if index.contains_key(&value) {
                    return false;
                }
                index.insert(value.clone(), self.items.len());
                self.items.push(value);
            }
            None => {
                if self.items.contains(&value) {
                    return false;
                }
                self.items.push(value);
                if self.items.len() > LEAF_INDEX_AT {
                    let index = self
                        .items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (v.clone(), i))
                        .collect();
                    self.index = Some(index);
                }
            }
        }
        true
    }

    /// Removes `value`; false if absent.
    fn remove(&mut self, value: &T) -> bool {
        let found = match &mut self.index {
            Some(index) => index.remove(value),
            None => self.items.iter().position(|v| v == value),
        };
        let Some(pos) = found else {
            return false;
        };
        self.items.swap_remove(pos);
        if self.items.len() < LEAF_INDEX_AT / 2 {
            self.index = None;
        } else if let (Some(index), Some(moved)) = (&mut self.index, self.items.get(pos))
            && let Some(at) = index.get_mut(moved)
        {
            *at = pos;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, HashSet};

    /// Routes `key` and returns each reported value with how often it was reported, sorted.
    fn route_counts<T: Clone + Eq + Hash + Ord>(trie: &TopicTrie<T>, key: &str) -> Vec<(T, usize)> {
        let mut counts = BTreeMap::new();
        trie.route(key, &mut |v| *counts.entry(v.clone()).or_insert(0) += 1);
        counts.into_iter().collect()
    }

    /// Routes `key` and returns the distinct values reported, sorted.
    fn route_set<T: Clone + Eq + Hash + Ord>(trie: &TopicTrie<T>, key: &str) -> Vec<T> {
        route_counts(trie, key)
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// RabbitMQ's topic routing table (rabbit's own unit test bindings t1..t26).
    const RABBIT_BINDINGS: [(&str, &str); 26] = [
        ("a.b.c", "t1"),
        ("a.*.c", "t2"),
        ("a.#.b", "t3"),
        ("a.b.b.c", "t4"),
        ("#", "t5"),
        ("#.#", "t6"),
        ("#.b", "t7"),
        ("*.*", "t8"),
        ("a.*", "t9"),
        ("*.b.c", "t10"),
        ("a.#", "t11"),
        ("a.#.#", "t12"),
        ("b.b.c", "t13"),
        ("a.b.b", "t14"),
        ("a.b", "t15"),
        ("b.c", "t16"),
        ("", "t17"),
        ("*.*.*", "t18"),
        ("vodka.martini", "t19"),
        ("a.b.c", "t20"),
        ("*.#", "t21"),
        ("#.*.#", "t22"),
        ("*.#.#", "t23"),
        ("#.#.#", "t24"),
        ("*", "t25"),
        ("#.b.#", "t26"),
    ];

    fn sorted(names: &[&'static str]) -> Vec<&'static str> {
        let mut v = names.to_vec();
        v.sort_unstable();
        v
    }

    /// Checks the trie, and the reference matcher over the `bound` pairs, against `table`.
    fn check_table(
        trie: &TopicTrie<&'static str>,
        bound: &[(&str, &'static str)],
        table: &[(&str, &[&'static str])],
    ) {
        for (key, expected) in table {
            assert_eq!(route_set(trie, key), sorted(expected), "key {key:?}");
            let mut naive: Vec<&str> = bound
                .iter()
                .filter(|(p, _)| topic_matches(p, key))
                .map(|(_, v)| *v)
                .collect();
            naive.sort_unstable();
            naive.dedup();
            assert_eq!(naive, sorted(expected), "naive, key {key:?}");
        }
    }

    #[test]
    fn rabbitmq_routing_table() {
        let mut trie = TopicTrie::new();
        for (p, v) in RABBIT_BINDINGS {
            assert!(trie.insert(p, v));
        }
        assert_eq!(trie.len(), 26);
        #[rustfmt::skip]
        check_table(&trie, &RABBIT_BINDINGS, &[
            ("a.b.c", &["t1", "t2", "t5", "t6", "t10", "t11", "t12", "t18", "t20", "t21", "t22", "t23", "t24", "t26"]),
            ("a.b", &["t3", "t5", "t6", "t7", "t8", "t9", "t11", "t12", "t15", "t21", "t22", "t23", "t24", "t26"]),
            ("a.b.b", &["t3", "t5", "t6", "t7", "t11", "t12", "t14", "t18", "t21", "t22", "t23", "t24", "t26"]),
            ("", &["t5", "t6", "t17", "t24"]),
            ("b.c.c", &["t5", "t6", "t18", "t21", "t22", "t23", "t24", "t26"]),
            ("a.a.a.a.a", &["t5", "t6", "t11", "t12", "t21", "t22", "t23", "t24"]),
            ("vodka.gin", &["t5", "t6", "t8", "t21", "t22", "t23", "t24"]),
            ("vodka.martini", &["t5", "t6", "t8", "t19", "t21", "t22", "t23", "t24"]),
            ("b.b.c", &["t5", "t6", "t10", "t13", "t18", "t21", "t22", "t23", "t24", "t26"]),
            ("nothing.here.at.all", &["t5", "t6", "t21", "t22", "t23", "t24"]),
            ("oneword", &["t5", "t6", "t21", "t22", "t23", "t24", "t25"]),
        ]);

        // RabbitMQ's test then removes t1, t5, t11, t19 and t21.
        let removed = ["t1", "t5", "t11", "t19", "t21"];
        let (gone, kept): (Vec<_>, Vec<_>) = RABBIT_BINDINGS
            .iter()
            .copied()
            .partition(|(_, v)| removed.contains(v));
        for (p, v) in &gone {
            assert!(trie.remove(p, v));
        }
        assert_eq!(trie.len(), 21);
        #[rustfmt::skip]
        check_table(&trie, &kept, &[
            ("a.b.c", &["t2", "t6", "t10", "t12", "t18", "t20", "t22", "t23", "t24", "t26"]),
            ("a.b", &["t3", "t6", "t7", "t8", "t9", "t12", "t15", "t22", "t23", "t24", "t26"]),
            ("a.b.b", &["t3", "t6", "t7", "t12", "t14", "t18", "t22", "t23", "t24", "t26"]),
            ("", &["t6", "t17", "t24"]),
            ("b.c.c", &["t6", "t18", "t22", "t23", "t24", "t26"]),
            ("a.a.a.a.a", &["t6", "t12", "t22", "t23", "t24"]),
            ("vodka.gin", &["t6", "t8", "t22", "t23", "t24"]),
            ("vodka.martini", &["t6", "t8", "t22", "t23", "t24"]),
            ("b.b.c", &["t6", "t10", "t13", "t18", "t22", "t23", "t24", "t26"]),
            ("nothing.here.at.all", &["t6", "t22", "t23", "t24"]),
            ("oneword", &["t6", "t22", "t23", "t24", "t25"]),
        ]);

        for (p, v) in RABBIT_BINDINGS {
            assert_eq!(trie.remove(p, &v), !removed.contains(&v), "{p:?} {v}");
        }
        assert!(trie.is_empty());
        assert!(trie.root.is_empty());
        for key in ["a.b.c", "b.b.c", ""] {
            assert!(route_set(&trie, key).is_empty());
        }
    }

    #[test]
    fn edge_cases_against_the_reference() {
        // (pattern, key, matches)
        let cases = [
            ("", "", true),
            ("", "a", false),
            ("", ".", false),
            ("#", "", true),
            ("#", ".", true),
            ("#", "a.b.c", true),
            ("#.#", "", true),
            ("#.#.#", "a", true),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("a.#", "b", false),
            ("#.a", "a", true),
            ("#.a", "b.a", true),
            ("#.a", "a.b", false),
            ("*", "", false),
            ("*", "a", true),
            ("*", ".", false),
            ("*.*", ".", true),
            ("*.#", "", false),
            ("*.#", "a", true),
            ("#.*", "", false),
            ("#.*", "a.b", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("a.#.b", "a..b", true),
            ("a.b", "a..b", false),
            ("a.", "a.", true),
            ("a.", "a", false),
            ("a.*", "a.", true),
            ("a.*", "a", false),
            ("a.#", "a.", true),
            (".", ".", true),
            (".", "", false),
            ("*", "*", true),
            ("a.*", "a.#", true),
            ("a*", "ab", false),
            ("a*", "a*", true),
            ("##", "a", false),
            ("##", "##", true),
            ("#.b.#", "b", true),
            ("#.b.#", "a.b.c", true),
            ("#.b.#", "a.c", false),
            ("#.*.#", "", false),
            ("#.*.#", "x", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(
                topic_matches(pattern, key),
                expected,
                "naive {pattern:?} vs {key:?}"
            );
            let mut trie = TopicTrie::new();
            trie.insert(pattern, 1u8);
            assert_eq!(
                !route_set(&trie, key).is_empty(),
                expected,
                "trie {pattern:?} vs {key:?}"
            );
        }
    }

    #[test]
    fn insert_and_remove_report_presence() {
        let mut trie = TopicTrie::new();
        assert!(trie.is_empty());
        assert!(trie.insert("a.*", 1));
        assert!(!trie.insert("a.*", 1));
        assert!(trie.insert("a.*", 2));
        assert!(trie.insert("a.#", 1));
        assert_eq!(trie.len(), 3);
        assert!(!trie.remove("a.*", &3));
        assert!(!trie.remove("a.b", &1));
        assert!(!trie.remove("a.#.#", &1));
        assert!(trie.remove("a.*", &1));
        assert!(!trie.remove("a.*", &1));
        assert_eq!(trie.len(), 2);
        assert_eq!(route_set(&trie, "a.x"), vec![1, 2]);
        assert!(trie.remove("a.*", &2));
        assert!(trie.remove("a.#", &1));
        assert!(trie.is_empty());
        assert!(trie.root.is_empty(), "every node pruned");
    }

    #[test]
    fn a_value_under_several_patterns_is_reported_once_per_pattern() {
        let mut trie = TopicTrie::new();
        trie.insert("#", 7);
        trie.insert("#.#", 7);
        trie.insert("a.*", 7);
        trie.insert("a.b", 8);
        assert_eq!(route_counts(&trie, "a.b"), vec![(7, 3), (8, 1)]);
        assert_eq!(route_counts(&trie, "c"), vec![(7, 2)]);
    }

    #[test]
    fn wide_nodes_and_big_leaves_switch_representation_and_back() {
        let mut trie = TopicTrie::new();
        // 40 literal children of the root, each with 40 values.
        for w in 0..40 {
            for v in 0..40u32 {
                assert!(trie.insert(&format!("w{w}.x"), v));
            }
            assert!(!trie.insert(&format!("w{w}.x"), 5));
        }
        assert!(matches!(trie.root.words, Children::Large(_)));
        assert_eq!(trie.len(), 1600);
        assert_eq!(route_set(&trie, "w17.x"), (0..40).collect::<Vec<_>>());
        assert!(route_set(&trie, "w40.x").is_empty());
        // Remove most values from one leaf: it drops its index and stays correct.
        for v in 0..37u32 {
            assert!(trie.remove("w17.x", &v));
            assert!(!trie.remove("w17.x", &v));
        }
        assert_eq!(route_set(&trie, "w17.x"), vec![37, 38, 39]);
        for w in 0..40 {
            for v in 0..40u32 {
                assert_eq!(trie.remove(&format!("w{w}.x"), &v), w != 17 || v >= 37);
            }
        }
        assert!(trie.is_empty());
        assert!(trie.root.is_empty());
    }

    #[test]
    fn words_sharing_a_tag_stay_apart() {
        // Equal first eight bytes, and zero padding that looks like NUL bytes.
        let words = [
            "abcdefgh",
            "abcdefgh1",
            "abcdefgh2",
            "abcdefgh12",
            "ab",
            "ab\0",
            "ab\0\0\0\0\0\0",
            "ab\0\0\0\0\0\0\0",
            "",
            "\0",
        ];
        for wide in [false, true] {
            let mut trie = TopicTrie::new();
            for (i, w) in words.iter().enumerate() {
                trie.insert(&format!("{w}.x"), i);
            }
            if wide {
                for i in 0..20 {
                    trie.insert(&format!("filler{i}.x"), 100 + i);
                }
                assert!(matches!(trie.root.words, Children::Large(_)));
            } else {
                assert!(matches!(trie.root.words, Children::Small { .. }));
            }
            for (i, w) in words.iter().enumerate() {
                assert_eq!(route_set(&trie, &format!("{w}.x")), vec![i], "{w:?}");
            }
            assert!(route_set(&trie, "abcdefgh3.x").is_empty());
            assert!(route_set(&trie, "a.x").is_empty());
        }
    }

    #[test]
    fn many_hashes_route_in_polynomial_time() {
        // Without the memo this is C(60, 10) ≈ 7.5e10 paths; with it, a few thousand steps.
        let pattern = ["#"; 11].join(".a.");
        let key = ["a"; 60].join(".");
        let mut trie = TopicTrie::new();
        trie.insert(&pattern, 1);
        trie.insert(&format!("{pattern}.b"), 2);
        assert_eq!(route_counts(&trie, &key), vec![(1, 1)]);
        assert!(topic_matches(&pattern, &key));
        // More nested `#` nodes than the stack memo holds: the heap memo path.
        let mut wide = TopicTrie::new();
        for i in 0..(STACK_MEMO + 8) {
            wide.insert(&format!("#.x{i}.#"), i);
        }
        assert!(wide.slots as usize > STACK_MEMO);
        assert_eq!(route_set(&wide, "q.x3.r"), vec![3]);
        assert_eq!(route_counts(&wide, "x5"), vec![(5, 1)]);
    }

    #[test]
    fn memo_slots_are_recycled() {
        let mut trie = TopicTrie::new();
        for round in 0..5 {
            for i in 0..10 {
                trie.insert(&format!("#.{i}.#"), round);
            }
            for i in 0..10 {
                assert!(trie.remove(&format!("#.{i}.#"), &round));
            }
        }
        assert_eq!(trie.slots, 10);
        assert_eq!(trie.free_slots.len(), 10);
        assert!(trie.root.is_empty());
    }

    /// Words from a tiny alphabet so that patterns and keys collide often.
    fn pattern_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "", "*", "#"]), 0..6)
            .prop_map(|w| w.join("."))
    }

    fn key_strategy() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "", "a", "b", "*", "#"]),
            0..7,
        )
        .prop_map(|w| w.join("."))
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(String, u8),
        Remove(String, u8),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (pattern_strategy(), 0..6u8).prop_map(|(p, v)| Op::Insert(p, v)),
            1 => (pattern_strategy(), 0..6u8).prop_map(|(p, v)| Op::Remove(p, v)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// The trie reports exactly the values whose patterns the naive matcher accepts, each once
        /// per matching pattern, after any sequence of inserts and removes.
        #[test]
        fn trie_agrees_with_naive_matcher(
            ops in prop::collection::vec(op_strategy(), 0..40),
            keys in prop::collection::vec(key_strategy(), 1..12),
        ) {
            let mut trie = TopicTrie::new();
            let mut model: HashSet<(String, u8)> = HashSet::new();
            for op in &ops {
                match op {
                    Op::Insert(p, v) => {
                        prop_assert_eq!(trie.insert(p, *v), model.insert((p.clone(), *v)));
                    }
                    Op::Remove(p, v) => {
                        prop_assert_eq!(trie.remove(p, v), model.remove(&(p.clone(), *v)));
                    }
                }
                prop_assert_eq!(trie.len(), model.len());
            }
            for key in &keys {
                let mut expected: BTreeMap<u8, usize> = BTreeMap::new();
                for (p, v) in &model {
                    if topic_matches(p, key) {
                        *expected.entry(*v).or_insert(0) += 1;
                    }
                }
                let expected: Vec<(u8, usize)> = expected.into_iter().collect();
                prop_assert_eq!(route_counts(&trie, key), expected, "key {:?}", key);
            }
            for (p, v) in &model {
                prop_assert!(trie.remove(p, v));
            }
            prop_assert!(trie.is_empty());
            prop_assert!(trie.root.is_empty());
            prop_assert_eq!(trie.free_slots.len(), trie.slots as usize);
        }

        /// The reference matcher against a direct recursive reading of the rules.
        #[test]
        fn naive_matcher_agrees_with_recursive_definition(
            pattern in pattern_strategy(),
            key in key_strategy(),
        ) {
            fn rec(p: &[&str], k: &[&str]) -> bool {
                match p.split_first() {
                    None => k.is_empty(),
                    Some((&"#", rest)) => (0..=k.len()).any(|skip| rec(rest, &k[skip..])),
                    Some((&"*", rest)) => !k.is_empty() && rec(rest, &k[1..]),
                    Some((w, rest)) => k.first() == Some(w) && rec(rest, &k[1..]),
                }
            }
            let p: Vec<&str> = words(&pattern).collect();
            let k: Vec<&str> = words(&key).collect();
            prop_assert_eq!(topic_matches(&pattern, &key), rec(&p, &k));
        }
    }
}
