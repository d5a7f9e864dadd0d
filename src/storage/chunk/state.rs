//! A chunk's state in memory and in its index entry: which entries are live or delivered (a
//! bitmap over the chunk's id span each) and the few delivery counts.

/// A growable bitmap, bit `i` for id `first + i` of a chunk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
}

impl Bits {
    /// Bit `i`.
    pub fn get(&self, i: u64) -> bool {
        let Ok(w) = usize::try_from(i / 64) else {
            return false;
        };
        self.words.get(w).is_some_and(|x| x >> (i % 64) & 1 == 1)
    }

    /// Sets bit `i`, growing the map; returns whether it was clear.
    pub fn set(&mut self, i: u64) -> bool {
        let w = usize::try_from(i / 64).unwrap_or(usize::MAX);
        if w >= self.words.len() {
            // Spans are bounded by MAX_CHUNK_SPAN, so this stays small.
            self.words.resize(w.saturating_add(1), 0);
        }
        let Some(x) = self.words.get_mut(w) else {
            return false;
        };
        let was_clear = *x >> (i % 64) & 1 == 0;
        *x |= 1 << (i % 64);
        was_clear
    }

    /// Clears bit `i`; returns whether it was set.
    pub fn clear(&mut self, i: u64) -> bool {
        let Some(x) = usize::try_from(i / 64)
            .ok()
            .and_then(|w| self.words.get_mut(w))
        else {
            return false;
        };
        let was_set = *x >> (i % 64) & 1 == 1;
        *x &= !(1 << (i % 64));
        was_set
    }

    /// Number of set bits at `i` or above.
    pub fn count_from(&self, i: u64) -> usize {
        let w = usize::try_from(i / 64).unwrap_or(usize::MAX);
        let Some(first) = self.words.get(w) else {
            return 0;
        };
        let head = (first >> (i % 64)).count_ones() as usize;
        head + self
            .words
            .iter()
            .skip(w + 1)
            .map(|x| x.count_ones() as usize)
            .sum::<usize>()
    }

    /// Clears every bit at `i` or above; returns how many were set.
    pub fn clear_from(&mut self, i: u64) -> usize {
        let n = self.count_from(i);
        let w = usize::try_from(i / 64).unwrap_or(usize::MAX);
        if let Some(first) = self.words.get_mut(w) {
            *first &= (1u64 << (i % 64)) - 1;
            self.words.truncate(w + 1);
        }
        n
    }

    /// The highest set bit.
    pub fn last_set(&self) -> Option<u64> {
        let (w, x) = self
            .words
            .iter()
            .enumerate()
            .rev()
            .find(|(_, x)| **x != 0)?;
        Some(w as u64 * 64 + 63 - u64::from(x.leading_zeros()))
    }

    /// The bits as `n` bytes, bit `i` in byte `i / 8` at `1 << (i % 8)`, masked by `mask` when
    /// given.
    pub fn to_bytes(&self, n: usize, mask: Option<&Bits>) -> Vec<u8> {
        (0..n)
            .map(|b| {
                let word = |bits: &Bits| bits.words.get(b / 8).map_or(0, |x| x >> (b % 8 * 8));
                let v = word(self) & mask.map_or(u64::MAX, word);
                (v & 0xff) as u8
            })
            .collect()
    }

    /// Bits from [`Bits::to_bytes`]' layout, keeping only the first `nbits`.
    pub fn from_bytes(bytes: &[u8], nbits: u64) -> Bits {
        let mut words: Vec<u64> = bytes
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u64, |acc, (i, b)| acc | u64::from(*b) << (i * 8))
            })
            .collect();
        let keep = usize::try_from(nbits.div_ceil(64)).unwrap_or(usize::MAX);
        words.truncate(keep);
        if !nbits.is_multiple_of(64)
            && words.len() == keep
            && let Some(last) = words.last_mut()
        {
            *last &= (1u64 << (nbits % 64)) - 1;
        }
        Bits { words }
    }
}

/// Delivery counts of a chunk's entries, as (id - first, count) ascending: few messages are
/// redelivered, so this is usually empty and costs nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts(Vec<(u32, u32)>);

impl Counts {
    /// Counts as decoded from a state record.
    pub fn from_pairs(mut pairs: Vec<(u32, u32)>) -> Self {
        pairs.sort_unstable();
        pairs.dedup_by_key(|p| p.0);
        Counts(pairs)
    }

    /// The count of entry `i` (0 when never set).
    pub fn get(&self, i: u64) -> u32 {
        let Ok(i) = u32::try_from(i) else { return 0 };
        self.0
            .binary_search_by_key(&i, |p| p.0)
            .map_or(0, |at| self.0.get(at).map_or(0, |p| p.1))
    }

    /// Sets the count of entry `i`; false if it was already that.
    pub fn set(&mut self, i: u64, count: u32) -> bool {
        let Ok(i) = u32::try_from(i) else {
            return false;
        };
        match self.0.binary_search_by_key(&i, |p| p.0) {
            Ok(at) => match self.0.get_mut(at) {
                Some(p) if p.1 != count => {
                    p.1 = count;
                    true
                }
                _ => false,
            },
            Err(_) if count == 0 => false,
            Err(at) => {
                self.0.insert(at, (i, count));
                true
            }
        }
    }

    /// The counts of live entries only, for a state record.
    pub fn live(&self, live: &Bits) -> Vec<(u32, u32)> {
        self.0
            .iter()
            .copied()
            .filter(|&(i, c)| c > 0 && live.get(u64::from(i)))
            .collect()
    }
}
