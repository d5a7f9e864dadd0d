//! Wire primitives shared by the generated method codec, field tables and content properties.
//!
//! Decoding is nom over `&[u8]` slices of one frame payload held in a `Bytes`; strings are
//! cut out of that `Bytes` ([`sub_bytes`]), so a decoded method borrows the read buffer
//! instead of copying. nom's error type [`WireError`] stays in this module's callers and is
//! turned into a [`FrameError`] by [`finish`] before anything leaves `protocol`.

use bytes::{BufMut, Bytes, BytesMut};
use nom::IResult;
use nom::error::{ErrorKind, ParseError};

use super::error::FrameError;
use super::types::{LongStr, ShortStr};

/// The error type of every parser here: input ran out, or a typed problem found mid-parse.
#[derive(Debug)]
pub(super) enum WireError {
    /// A field ran past the end of its payload; [`finish`] names what was being decoded.
    Short,
    /// A specific problem, reported as is.
    Frame(FrameError),
}

impl<I> ParseError<I> for WireError {
    fn from_error_kind(_input: I, _kind: ErrorKind) -> Self {
        // Every nom primitive we use fails only when input runs out.
        WireError::Short
    }

    fn append(_input: I, _kind: ErrorKind, other: Self) -> Self {
        other
    }
}

/// nom's result over a payload slice, with [`WireError`].
pub(super) type PResult<'a, O> = IResult<&'a [u8], O, WireError>;

/// What a parser that fills a value in place returns: the input left over, or the error.
pub(super) type Rest<'a> = Result<&'a [u8], nom::Err<WireError>>;

/// A typed failure, as nom's unrecoverable error.
#[inline]
pub(super) fn fail<T>(e: FrameError) -> Result<T, nom::Err<WireError>> {
    Err(nom::Err::Failure(WireError::Frame(e)))
}

/// Converts a complete parse of `what` into the codec's result: leftover bytes are an error
/// (RabbitMQ's method decoders match the payload exactly), nom errors become [`FrameError`].
#[inline]
pub(super) fn finish<T>(what: &'static str, r: PResult<'_, T>) -> Result<T, FrameError> {
    match r {
        Ok(([], v)) => Ok(v),
        Ok((rest, _)) => Err(FrameError::TrailingBytes {
            what,
            extra: rest.len(),
        }),
        Err(nom::Err::Error(e) | nom::Err::Failure(e)) => Err(match e {
            WireError::Short => FrameError::Truncated(what),
            WireError::Frame(FrameError::NotUtf8(_)) => FrameError::NotUtf8(what),
            WireError::Frame(f) => f,
        }),
        Err(nom::Err::Incomplete(_)) => Err(FrameError::Truncated(what)),
    }
}

/// The error of a parse of `what` that did not end exactly at the end of its payload: `r` is
/// the rest of the input on success (then non-empty: trailing bytes) or the parse error. Kept
/// out of line: it is the cold side of the generated method decoders.
#[cold]
#[inline(never)]
pub(super) fn failed(what: &'static str, r: Rest<'_>) -> FrameError {
    match finish(what, r.map(|rest| (rest, ()))) {
        Err(e) => e,
        // Only reached with an empty rest, which the caller already took as success.
        Ok(()) => FrameError::TrailingBytes { what, extra: 0 },
    }
}

/// `N` octets at once, as an array: one bounds check for a run of fixed-size fields.
#[inline]
pub(super) fn fixed<const N: usize>(i: &[u8]) -> PResult<'_, &[u8; N]> {
    match i.split_first_chunk::<N>() {
        Some((head, rest)) => Ok((rest, head)),
        None => Err(nom::Err::Error(WireError::Short)),
    }
}

/// A short string: length octet, then that many bytes of UTF-8. Short ones are copied into
/// the `ShortStr`; longer ones are sliced out of `p` (an error when `p` does not hold them, as
/// when the frame decoder parses in place with an empty `p` and must retry with one).
#[inline]
pub(super) fn short_str<'a>(p: &Bytes, i: &'a [u8]) -> PResult<'a, ShortStr> {
    let (rest, s) = short_data(i)?;
    match ShortStr::from_wire(p, s) {
        Ok(s) => Ok((rest, s)),
        Err(e) => fail(e),
    }
}

/// [`short_str`] into `out`, written in place: the generated method decoders fill the method
/// they return this way, each string copied once, to where it stays.
#[inline(always)]
pub(super) fn short_str_into<'a>(p: &Bytes, i: &'a [u8], out: &mut ShortStr) -> Rest<'a> {
    let (rest, s) = short_data(i)?;
    match out.set_from_wire(p, s) {
        Ok(()) => Ok(rest),
        Err(e) => fail(e),
    }
}

/// A short string's bytes, checked but not copied: length octet, then that many bytes of
/// UTF-8. Names and routing keys are nearly always ASCII, which `is_ascii` checks a word at a
/// time; only other text goes through the full UTF-8 check.
#[inline]
pub(super) fn short_str_slice(i: &[u8]) -> PResult<'_, &[u8]> {
    let (rest, s) = short_data(i)?;
    if !s.is_ascii() && std::str::from_utf8(s).is_err() {
        return fail(FrameError::NotUtf8(""));
    }
    Ok((rest, s))
}

/// A length octet, then that many bytes.
#[inline]
fn short_data(i: &[u8]) -> PResult<'_, &[u8]> {
    let Some((&len, rest)) = i.split_first() else {
        return Err(nom::Err::Error(WireError::Short));
    };
    match rest.split_at_checked(usize::from(len)) {
        Some((s, rest)) => Ok((rest, s)),
        None => Err(nom::Err::Error(WireError::Short)),
    }
}

/// `sub` (a slice of the payload being parsed) as a zero-copy `Bytes` of `p`. Like
/// `Bytes::slice_ref`, but a slice outside `p` is an error instead of a panic; the frame
/// decoder passes an empty `p` for methods it parses in place.
#[inline]
pub(super) fn sub_bytes(p: &Bytes, sub: &[u8]) -> Result<Bytes, nom::Err<WireError>> {
    if sub.is_empty() {
        return Ok(Bytes::new());
    }
    match super::small::slice_within(p, sub) {
        Some(b) => Ok(b),
        None => fail(FrameError::Syntax("field outside its frame")),
    }
}

/// A long string: u32 length, then that many bytes, sliced out of `p`.
#[inline]
pub(super) fn long_str<'a>(p: &Bytes, i: &'a [u8]) -> PResult<'a, LongStr> {
    let (i, s) = long_data(i)?;
    Ok((i, LongStr(sub_bytes(p, s)?)))
}

/// A u32 length, then that many bytes. nom checks the length against the remaining input
/// before taking it, so a hostile length allocates nothing.
#[inline]
pub(super) fn long_data(i: &[u8]) -> PResult<'_, &[u8]> {
    nom::multi::length_data(nom::number::complete::be_u32).parse_complete(i)
}

use nom::Parser as _;

/// A length as the u32 the wire carries. Nothing that fits in a frame is 4 GiB long; a
/// larger value saturates (and the frame is then rejected by the peer) rather than panic.
pub(super) fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Writes a short string (length octet + bytes). The type guarantees at most 255 bytes.
#[inline]
pub(super) fn put_short_str(buf: &mut BytesMut, s: &ShortStr) {
    let b = s.as_bytes();
    buf.put_u8(u8::try_from(b.len()).unwrap_or(u8::MAX));
    buf.put_slice(b);
}

/// Writes a long string (u32 length + bytes).
#[inline]
pub(super) fn put_long_str(buf: &mut BytesMut, s: &LongStr) {
    buf.put_u32(len_u32(s.0.len()));
    buf.put_slice(&s.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_str_is_inline_or_zero_copy_and_checked() {
        let p = Bytes::from_static(b"\x03abcX");
        let (rest, s) = short_str(&p, &p).expect("parses");
        assert_eq!(s, "abc");
        assert_eq!(rest, b"X");
        assert!(s.is_inline(), "short: copied inline, no reference count");
        // Parsing in place (no `Bytes`) works for short strings.
        let (_, s) = short_str(&Bytes::new(), &p).expect("parses in place");
        assert_eq!(s, "abc");

        let mut long = vec![200u8];
        long.extend(std::iter::repeat_n(b'k', 200));
        let p = Bytes::from(long);
        let (rest, s) = short_str(&p, &p).expect("parses");
        assert!(rest.is_empty() && !s.is_inline() && s.len() == 200);
        assert_eq!(s.as_bytes().as_ptr(), p[1..].as_ptr(), "sliced, not copied");
        // In place, a long one needs the `Bytes`: an error the frame decoder retries on.
        assert!(short_str(&Bytes::new(), &p).is_err());

        let short = Bytes::from_static(b"\x05ab");
        assert_eq!(
            finish("t", short_str(&short, &short)),
            Err(FrameError::Truncated("t"))
        );
        let bad = Bytes::from_static(b"\x02\xff\xfe");
        assert_eq!(
            finish("t", short_str(&bad, &bad)),
            Err(FrameError::NotUtf8("t"))
        );
    }

    #[test]
    fn hostile_long_length_is_rejected_without_allocating() {
        let p = Bytes::from_static(b"\xff\xff\xff\xffabc");
        assert_eq!(
            finish("t", long_str(&p, &p)),
            Err(FrameError::Truncated("t"))
        );
    }

    #[test]
    fn finish_rejects_trailing_bytes() {
        let p = Bytes::from_static(b"\x01aZZ");
        assert_eq!(
            finish("m", short_str(&p, &p)),
            Err(FrameError::TrailingBytes {
                what: "m",
                extra: 2
            })
        );
    }
}
