//! A queue's chunks in key order, in one ring buffer: about 110 bytes a chunk where a
//! `BTreeMap` node cost some 380 (its nodes are about half full when keys only ever grow).
//!
//! Chunks are added at the back (a new chunk's ids are above every other's) and mostly leave
//! from the front (a queue is consumed in order). One that leaves from the middle (its every
//! entry acked before older ones) becomes a gap, a [`Stage::Gone`] chunk that keeps its id span
//! so that lookups still bisect; gaps at either end are dropped at once, and when gaps are
//! half of the list it is packed. A list that held many chunks and holds few gives half its
//! room back, as the ready list does.

use std::cell::Cell;
use std::collections::VecDeque;

use super::{Chunk, Stage};

/// Room a list keeps however few chunks it holds.
const SHRINK_ABOVE: usize = 64;

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct ChunkList {
    items: VecDeque<Chunk>,
    /// Gaps in `items`.
    gone: usize,
    /// The position of the last chunk looked up: acks and deliveries mostly come in id order,
    /// so the next lookup is mostly for the same chunk (checked, never trusted).
    hint: Cell<usize>,
}

impl ChunkList {
    /// Chunks held (gaps not counted).
    pub(super) fn len(&self) -> usize {
        self.items.len() - self.gone
    }

    /// The position of the chunk with key `first`.
    fn find(&self, first: u64) -> Option<usize> {
        let hint = self.hint.get();
        if self
            .items
            .get(hint)
            .is_some_and(|c| c.first == first && c.stage != Stage::Gone)
        {
            return Some(hint);
        }
        let at = self.items.partition_point(|c| c.first < first);
        self.hint.set(at);
        self.items
            .get(at)
            .is_some_and(|c| c.first == first && c.stage != Stage::Gone)
            .then_some(at)
    }

    /// The chunk with key `first`.
    pub(super) fn get(&self, first: u64) -> Option<&Chunk> {
        self.items.get(self.find(first)?)
    }

    /// The chunk with key `first`, to change.
    pub(super) fn get_mut(&mut self, first: u64) -> Option<&mut Chunk> {
        let at = self.find(first)?;
        self.items.get_mut(at)
    }

    /// Where to look for `id`: the position of the last chunk whose key is at most `id` (the
    /// one that may hold it: spans may overlap, when a restart numbered on from a chunk's
    /// acked tail), or of the first chunk after `id` when there is none.
    fn floor(&self, id: u64) -> (usize, bool) {
        let hint = self.hint.get();
        if self
            .items
            .get(hint)
            .is_some_and(|c| c.first <= id && id <= c.last && c.stage != Stage::Gone)
            && self.items.get(hint + 1).is_none_or(|n| n.first > id)
        {
            return (hint, true);
        }
        let end = self.items.partition_point(|c| c.first <= id);
        let mut at = end;
        while at > 0 {
            at -= 1;
            if self.items.get(at).is_some_and(|c| c.stage != Stage::Gone) {
                self.hint.set(at);
                return (at, true);
            }
        }
        (end, false)
    }

    /// The chunk whose span holds `id`.
    pub(super) fn holding_mut(&mut self, id: u64) -> Option<&mut Chunk> {
        let (at, found) = self.floor(id);
        if !found {
            return None;
        }
        self.items.get_mut(at).filter(|c| id <= c.last)
    }

    /// The chunks from the one that may hold `id` (or the first after it) on, in key order.
    pub(super) fn starting(&self, id: u64) -> impl Iterator<Item = &Chunk> {
        self.items
            .range(self.floor(id).0..)
            .filter(|c| c.stage != Stage::Gone)
    }

    /// The chunks from the one that may hold `id` (or the first after it) on, to change.
    pub(super) fn starting_mut(&mut self, id: u64) -> impl Iterator<Item = &mut Chunk> {
        let at = self.floor(id).0;
        self.items
            .range_mut(at..)
            .filter(|c| c.stage != Stage::Gone)
    }

    /// Every chunk, in key order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = &Chunk> {
        self.items.iter().filter(|c| c.stage != Stage::Gone)
    }

    /// Every chunk, to change.
    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut Chunk> {
        self.items.iter_mut().filter(|c| c.stage != Stage::Gone)
    }

    /// Adds a chunk in key order (at the back unless recovery finds keys out of order).
    pub(super) fn insert(&mut self, chunk: Chunk) {
        match self.items.back() {
            Some(b) if b.first >= chunk.first => {
                let at = self.items.partition_point(|c| c.first < chunk.first);
                if self.items.get(at).is_some_and(|c| c.first == chunk.first) {
                    if let Some(slot) = self.items.get_mut(at) {
                        if slot.stage == Stage::Gone {
                            self.gone -= 1;
                        }
                        *slot = chunk;
                    }
                } else {
                    self.items.insert(at, chunk);
                }
            }
            _ => self.items.push_back(chunk),
        }
    }

    /// Takes the chunk with key `first` out.
    pub(super) fn remove(&mut self, first: u64) -> Option<Chunk> {
        let at = self.find(first)?;
        let last = self.items.get(at)?.last;
        let gap = Chunk::gap(first, last);
        let chunk = std::mem::replace(self.items.get_mut(at)?, gap);
        self.gone += 1;
        while self.items.front().is_some_and(|c| c.stage == Stage::Gone) {
            self.items.pop_front();
            self.gone -= 1;
        }
        while self.items.back().is_some_and(|c| c.stage == Stage::Gone) {
            self.items.pop_back();
            self.gone -= 1;
        }
        if self.gone > 0 && self.gone * 2 >= self.items.len() {
            self.items.retain(|c| c.stage != Stage::Gone);
            self.gone = 0;
        }
        let cap = self.items.capacity();
        if cap > SHRINK_ABOVE && self.items.len() < cap / 4 {
            self.items.shrink_to(cap / 2);
        }
        Some(chunk)
    }

    /// Room for chunks (for tests).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> usize {
        self.items.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(first: u64, last: u64) -> Chunk {
        Chunk {
            last,
            ..Chunk::new(first, Stage::Stored)
        }
    }

    fn keys(l: &ChunkList) -> Vec<u64> {
        l.iter().map(|c| c.first).collect()
    }

    #[test]
    fn a_chunk_costs_a_slot_of_about_a_hundred_bytes() {
        assert!(std::mem::size_of::<Chunk>() <= 112);
    }

    #[test]
    fn removals_leave_gaps_that_lookups_step_over_and_packing_drops() {
        let mut l = ChunkList::default();
        for k in 0..10 {
            l.insert(chunk(k * 10, k * 10 + 9));
        }
        // From the middle: a gap that keeps its span.
        assert!(l.remove(30).is_some() && l.remove(30).is_none());
        assert_eq!((l.len(), l.gone), (9, 1));
        assert!(l.holding_mut(35).is_none());
        assert_eq!(l.holding_mut(45).map(|c| c.first), Some(40));
        // Reading from 35 starts at the last chunk keyed at most 35 (it may hold 35 when spans
        // overlap), past the gap.
        assert_eq!(l.starting(35).next().map(|c| c.first), Some(20));
        assert_eq!(l.starting(40).next().map(|c| c.first), Some(40));
        // From the front: it goes, and the gaps right behind it with it.
        assert!(l.remove(40).is_some() && l.remove(0).is_some());
        assert_eq!((keys(&l), l.gone), (vec![10, 20, 50, 60, 70, 80, 90], 2));
        for k in [10, 20] {
            assert!(l.remove(k).is_some());
        }
        assert_eq!((l.items.len(), l.gone), (5, 0));
        // Gaps reaching half of the list are packed away.
        for k in [60, 70] {
            assert!(l.remove(k).is_some());
        }
        assert_eq!((keys(&l), l.items.len(), l.gone), (vec![50, 80, 90], 5, 2));
        assert!(l.remove(80).is_some());
        assert_eq!((keys(&l), l.items.len(), l.gone), (vec![50, 90], 2, 0));
        assert!(l.get(60).is_none() && l.get(90).is_some());
    }

    #[test]
    fn an_overlapping_span_belongs_to_the_later_chunk() {
        // A restart numbers on after the last live id: the new chunk's span starts inside the
        // old one's acked tail.
        let mut l = ChunkList::default();
        l.insert(chunk(1, 10));
        l.insert(chunk(9, 12));
        assert_eq!(l.holding_mut(9).map(|c| c.first), Some(9));
        assert_eq!(l.holding_mut(8).map(|c| c.first), Some(1));
        assert_eq!(l.starting(9).map(|c| c.first).collect::<Vec<_>>(), [9]);
        // Found out of order at recovery: put in its place.
        l.insert(chunk(0, 0));
        assert_eq!(keys(&l), [0, 1, 9]);
    }

    #[test]
    fn a_list_that_held_many_chunks_gives_room_back() {
        let mut l = ChunkList::default();
        for k in 0..5000 {
            l.insert(chunk(k, k));
        }
        for k in 0..4990 {
            assert!(l.remove(k).is_some());
        }
        assert_eq!(l.len(), 10);
        assert!(l.capacity() <= 128, "kept room for {}", l.capacity());
    }
    #[test]
    fn random_appends_removals_and_lookups_agree_with_a_btree() {
        use std::collections::BTreeMap;
        // A fixed linear congruential sequence: the same run every time, no crate.
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) % n
        };
        let mut l = ChunkList::default();
        let mut model: BTreeMap<u64, u64> = BTreeMap::new();
        let mut top = 0;
        for step in 0..20_000 {
            match next(10) {
                // Append a chunk after a possible run of ids that never were stored.
                0..=3 => {
                    let first = top + next(3);
                    let last = first + next(8);
                    top = last + 1;
                    l.insert(chunk(first, last));
                    model.insert(first, last);
                }
                // Remove: mostly the oldest chunk (a queue consumed in order), else any.
                4..=6 if !model.is_empty() => {
                    let keys: Vec<u64> = model.keys().copied().collect();
                    let k = if next(4) == 0 {
                        keys[next(keys.len() as u64) as usize]
                    } else {
                        keys[0]
                    };
                    assert_eq!(l.remove(k).map(|c| c.first), Some(k), "step {step}");
                    model.remove(&k);
                }
                _ => {
                    let id = next(top + 2);
                    let held = model
                        .range(..=id)
                        .next_back()
                        .filter(|(_, last)| id <= **last)
                        .map(|(k, _)| *k);
                    assert_eq!(l.holding_mut(id).map(|c| c.first), held, "step {step}");
                    let from = model
                        .range(..=id)
                        .next_back()
                        .or_else(|| model.range(id + 1..).next())
                        .map(|(k, _)| *k);
                    let want: Vec<u64> = from
                        .map(|f| model.range(f..).map(|(k, _)| *k).collect())
                        .unwrap_or_default();
                    let got: Vec<u64> = l.starting(id).map(|c| c.first).collect();
                    assert_eq!(got, want, "step {step}, id {id}");
                    assert_eq!(l.get(id).is_some(), model.contains_key(&id));
                }
            }
            assert_eq!(l.len(), model.len());
            assert!(
                l.gone * 2 <= l.items.len().max(1),
                "step {step}: gaps not packed"
            );
        }
        assert_eq!(keys(&l), model.keys().copied().collect::<Vec<_>>());
    }
}
