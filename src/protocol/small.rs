//! `SmallBytes`: bytes kept inline when they are short, in a shared `Bytes` when they are long.
//!
//! Why: every clone and drop of a `Bytes` slice of a shared buffer is an atomic reference-count
//! update, and a small publish decoded into `Bytes` slices (exchange, routing key, content type,
//! the frames' payloads) paid about ten of them. Copying a short string into the value itself
//! costs a few moves and no atomics, and the value is no larger to move than a `Bytes` plus a
//! few words. Long values stay zero-copy slices of the read buffer.
//!
//! The copies here use overlapping fixed-size moves ([`copy_into`]) rather than `memcpy`, whose
//! call and length dispatch cost more than copying a routing key.
//!
//! Private to `protocol`: [`super::types::ShortStr`] and [`super::properties::Properties`] are
//! built on it and give it meaning (UTF-8, a validated property list).

use bytes::Bytes;

/// At most `N` (< 256) bytes inline, or any number in a `Bytes`. Construction puts values of at
/// most `N` bytes inline, so clones and drops of short values never touch a reference count.
#[derive(Clone)]
pub(super) enum SmallBytes<const N: usize> {
    /// `len` bytes at the front of `buf`; invariant: `len <= N`.
    Inline {
        /// Bytes in use.
        len: u8,
        /// The bytes; those past `len` mean nothing (a shorter value may have overwritten a
        /// longer one in place).
        buf: [u8; N],
    },
    /// A longer value, shared with the buffer it came from.
    Shared(Bytes),
}

impl<const N: usize> SmallBytes<N> {
    /// Compile-time check that the length fits the `u8`.
    const FITS: () = assert!(N <= 255, "invariant: inline capacity fits a u8 length");

    /// No bytes.
    pub(super) const EMPTY: Self = {
        let () = Self::FITS;
        SmallBytes::Inline {
            len: 0,
            buf: [0; N],
        }
    };

    /// `s` copied inline, or `None` when it is longer than `N`.
    #[inline(always)]
    pub(super) fn inline(s: &[u8]) -> Option<Self> {
        let () = Self::FITS;
        let len = u8::try_from(s.len()).ok().filter(|_| s.len() <= N)?;
        let mut buf = [0; N];
        copy_into(&mut buf, s);
        Some(SmallBytes::Inline { len, buf })
    }

    /// Replaces the bytes with `s`, written straight into this value's own inline buffer
    /// when it fits (nothing is built elsewhere and moved in); `false`, unchanged, when `s` is
    /// longer than `N`.
    #[inline(always)]
    pub(super) fn set_inline(&mut self, s: &[u8]) -> bool {
        let Ok(n) = u8::try_from(s.len()) else {
            return false;
        };
        if s.len() > N {
            return false;
        }
        match self {
            SmallBytes::Inline { len, buf } => {
                copy_into(buf, s);
                *len = n;
            }
            SmallBytes::Shared(_) => match Self::inline(s) {
                Some(v) => *self = v,
                None => return false,
            },
        }
        true
    }

    /// A static value, inline when it fits (usable in constants).
    pub(super) const fn from_static(s: &'static [u8]) -> Self {
        let () = Self::FITS;
        if s.len() > N {
            return SmallBytes::Shared(Bytes::from_static(s));
        }
        let mut buf = [0; N];
        let mut i = 0;
        while i < s.len() {
            buf[i] = s[i];
            i += 1;
        }
        // s.len() <= N <= 255, so the cast is exact.
        SmallBytes::Inline {
            len: s.len() as u8,
            buf,
        }
    }

    /// `b` itself when long; copied inline (and `b` released) when short.
    #[inline]
    pub(super) fn from_bytes(b: Bytes) -> Self {
        match Self::inline(&b) {
            Some(s) => s,
            None => SmallBytes::Shared(b),
        }
    }

    /// `s` inline when short, else a zero-copy slice of `shared`, which `s` must lie in
    /// (`None` when it does not, e.g. because `shared` is empty).
    #[inline]
    pub(super) fn from_slice_of(shared: &Bytes, s: &[u8]) -> Option<Self> {
        if let Some(v) = Self::inline(s) {
            return Some(v);
        }
        slice_within(shared, s).map(SmallBytes::Shared)
    }

    /// The bytes.
    #[inline]
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            // `len <= N` by construction; an impossible longer one reads as empty, not a panic.
            SmallBytes::Inline { len, buf } => buf.get(..usize::from(*len)).unwrap_or_default(),
            SmallBytes::Shared(b) => b,
        }
    }

    /// Number of bytes.
    #[inline]
    pub(super) fn len(&self) -> usize {
        match self {
            SmallBytes::Inline { len, .. } => usize::from(*len),
            SmallBytes::Shared(b) => b.len(),
        }
    }

    /// The bytes as a `Bytes`: shared when they are, copied (one allocation) when inline.
    pub(super) fn to_bytes(&self) -> Bytes {
        match self {
            SmallBytes::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            SmallBytes::Shared(b) => b.clone(),
        }
    }

    /// [`SmallBytes::to_bytes`], consuming.
    pub(super) fn into_bytes(self) -> Bytes {
        match self {
            SmallBytes::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            SmallBytes::Shared(b) => b,
        }
    }

    /// True when the bytes are inline (tests and benchmarks of the no-atomics path).
    #[cfg(test)]
    pub(super) fn is_inline(&self) -> bool {
        matches!(self, SmallBytes::Inline { .. })
    }
}

/// Writes `s` to the front of `buf` (nothing, if `buf` is shorter) with two overlapping
/// fixed-size moves, the usual small-copy trick, instead of a call to `memcpy`: on the publish
/// path this runs for the exchange, the routing key and the property list of every message.
#[inline(always)]
pub(super) fn copy_into(buf: &mut [u8], s: &[u8]) {
    let n = s.len();
    if n > buf.len() {
        return;
    }
    // Copies `s[..K]` to the front and `s[n-K..]` to `n-K`: together all of `s` when
    // `K <= n <= 2K`. `get`/`get_mut` keep it panic-free; with `n` in range the checks fold.
    fn two<const K: usize>(buf: &mut [u8], s: &[u8]) {
        let n = s.len();
        if let (Some(d), Some(h)) = (buf.get_mut(..K), s.first_chunk::<K>()) {
            d.copy_from_slice(h);
        }
        if let (Some(d), Some(t)) = (buf.get_mut(n.saturating_sub(K)..n), s.last_chunk::<K>()) {
            d.copy_from_slice(t);
        }
    }
    match n {
        0 => {}
        1..=3 => {
            // First, middle and last byte: all of a 1-, 2- or 3-byte string.
            for at in [0, n / 2, n - 1] {
                if let (Some(d), Some(b)) = (buf.get_mut(at), s.get(at)) {
                    *d = *b;
                }
            }
        }
        4..=7 => two::<4>(buf, s),
        8..=15 => two::<8>(buf, s),
        16..=31 => two::<16>(buf, s),
        32..=64 => two::<32>(buf, s),
        _ => {
            if let Some(d) = buf.get_mut(..n) {
                d.copy_from_slice(s);
            }
        }
    }
}

/// True when every byte of `s` is ASCII: for up to 16 bytes (most names and routing keys) two
/// overlapping word loads, no loop over the length; longer, the standard word-at-a-time check.
#[inline(always)]
pub(super) fn is_ascii_short(s: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |c: &[u8; 8]| u64::from_ne_bytes(*c);
    match s.len() {
        0 => true,
        1..=7 => s.iter().fold(0u8, |a, b| a | b) & 0x80 == 0,
        8..=16 => match (s.first_chunk::<8>(), s.last_chunk::<8>()) {
            (Some(h), Some(t)) => (word(h) | word(t)) & HIGH == 0,
            _ => s.is_ascii(),
        },
        _ => s.is_ascii(),
    }
}

/// `s` as a zero-copy slice of `shared`, which it must lie in: like `Bytes::slice_ref`, but a
/// slice outside `shared` (or a `shared` that is empty) gives `None` instead of a panic.
#[inline]
pub(super) fn slice_within(shared: &Bytes, s: &[u8]) -> Option<Bytes> {
    let start = (s.as_ptr() as usize).wrapping_sub(shared.as_ptr() as usize);
    match start.checked_add(s.len()) {
        Some(end) if end <= shared.len() => Some(shared.slice(start..end)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_go_inline_long_ones_stay_shared() {
        let shared = Bytes::from_static(b"0123456789");
        let s: SmallBytes<4> = SmallBytes::from_slice_of(&shared, &shared[2..5]).expect("in");
        assert!(s.is_inline());
        assert_eq!(s.as_slice(), b"234");
        let l: SmallBytes<4> = SmallBytes::from_slice_of(&shared, &shared[2..8]).expect("in");
        assert!(!l.is_inline());
        assert_eq!(l.as_slice(), b"234567");
        assert_eq!(l.as_slice().as_ptr(), shared[2..].as_ptr(), "zero-copy");
        // A long slice with no shared buffer to cut it from.
        assert!(SmallBytes::<4>::from_slice_of(&Bytes::new(), &shared[..6]).is_none());
        // Exactly N is inline.
        assert!(SmallBytes::<4>::inline(b"abcd").is_some_and(|s| s.is_inline()));
        assert!(SmallBytes::<4>::inline(b"abcde").is_none());
    }

    #[test]
    fn small_copies_and_ascii_checks_of_every_length() {
        let src: Vec<u8> = (1..=100).collect();
        for n in 0..=100 {
            let s = &src[..n];
            let mut buf = [0xee_u8; 100];
            copy_into(&mut buf, s);
            assert_eq!(&buf[..n], s, "length {n}");
            assert!(
                buf[n..].iter().all(|&b| b == 0xee),
                "nothing past {n} written"
            );
            assert!(is_ascii_short(s), "length {n}");
            // One non-ASCII byte anywhere is seen.
            for at in 0..n {
                let mut t = s.to_vec();
                t[at] = 0xc3;
                assert!(!is_ascii_short(&t), "length {n}, at {at}");
            }
        }
        // Too long for the buffer: nothing written, no panic.
        let mut small = [0u8; 4];
        copy_into(&mut small, &src[..5]);
        assert_eq!(small, [0; 4]);
        // Overwriting in place with a shorter value.
        let mut v: SmallBytes<38> = SmallBytes::inline(b"a-long-routing-key").expect("fits");
        assert!(v.set_inline(b"short"));
        assert_eq!(v.as_slice(), b"short");
        assert!(!v.set_inline(&[b'x'; 39]), "too long to hold inline");
        assert_eq!(v.as_slice(), b"short", "unchanged");
        let mut shared: SmallBytes<4> = SmallBytes::Shared(Bytes::from_static(b"shared"));
        assert!(shared.set_inline(b"ab") && shared.is_inline());
        assert_eq!(shared.as_slice(), b"ab");
    }

    #[test]
    fn static_and_empty() {
        const S: SmallBytes<8> = SmallBytes::from_static(b"amq");
        const L: SmallBytes<2> = SmallBytes::from_static(b"amq");
        assert!(S.is_inline() && !L.is_inline());
        assert_eq!((S.as_slice(), L.as_slice()), (&b"amq"[..], &b"amq"[..]));
        assert_eq!(SmallBytes::<8>::EMPTY.len(), 0);
        assert_eq!(S.to_bytes(), Bytes::from_static(b"amq"));
        assert_eq!(L.into_bytes(), Bytes::from_static(b"amq"));
    }
}
