//! `SmallBytes`: bytes kept inline when they are short, in a shared `Bytes` when they are long.
//!
//! Why: every clone and drop of a `Bytes` slice of a shared buffer is an atomic reference-count
//! update, and a small publish decoded into `Bytes` slices (exchange, routing key, content type,
//! the frames' payloads) paid about ten of them. Copying a short string into the value itself
//! costs a memcpy of a few dozen bytes and no atomics, and the value is no larger to move than a
//! `Bytes` plus a few words. Long values stay zero-copy slices of the read buffer.
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
        /// The bytes, zero past `len`.
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
    #[inline]
    pub(super) fn inline(s: &[u8]) -> Option<Self> {
        let () = Self::FITS;
        let len = u8::try_from(s.len())
            .ok()
            .filter(|&l| usize::from(l) <= N)?;
        let mut buf = [0; N];
        buf.get_mut(..s.len())?.copy_from_slice(s);
        Some(SmallBytes::Inline { len, buf })
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
        let start = (s.as_ptr() as usize).wrapping_sub(shared.as_ptr() as usize);
        match start.checked_add(s.len()) {
            Some(end) if end <= shared.len() => Some(SmallBytes::Shared(shared.slice(start..end))),
            _ => None,
        }
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
