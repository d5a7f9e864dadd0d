//! What a connection has to write: frames encoded into one buffer, with large message bodies
//! referenced where they already are instead of copied in.
//!
//! A delivery of a 4 KiB message used to be copied twice: into this buffer, then by the kernel
//! into the socket. [`Output::push_shared`] queues the body's `Bytes` (a slice of the publisher's
//! read buffer, or of a stored record) between the encoded frame bytes around it, and the driver
//! writes the parts with vectored writes ([`Transmit`] is a [`Buf`] whose
//! [`Buf::chunks_vectored`] hands the parts to `writev`, hundreds per call: with tokio's
//! `write_all_buf`, which passes 64, the extra syscalls cost more than the copy saved). Small
//! bodies are still copied: below [`SHARE_MIN`] a copy costs less than the extra iovec and
//! reference count.
//!
//! Owns no socket and no clock; the session encodes into it and the server drains it.

use crate::protocol::Properties;
use crate::protocol::frame::{
    FRAME_END, body_frame_payload, encode_body_head, encode_content, encode_content_header,
};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Bodies (or body frames) at least this long are queued by reference, not copied.
pub(crate) const SHARE_MIN: usize = 1024;

/// A connection's encoding buffer until it has written more than this at once: an idle
/// connection (of thousands) keeps a small one.
pub(crate) const START_CAPACITY: usize = 1024;

/// The encoding buffer of a connection that has: fewer, larger allocations for busy ones.
const BUSY_CAPACITY: usize = 16 * 1024;

/// The bytes waiting to be written, in order: `parts`, then `buf`.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// Finished parts: encoded frame bytes split off `buf`, and shared bodies.
    parts: VecDeque<Bytes>,
    /// Bytes of `parts`.
    parts_len: usize,
    /// Where frames are encoded; always after every part.
    buf: BytesMut,
    /// `buf` was replaced by one of [`BUSY_CAPACITY`].
    grown: bool,
}

impl Output {
    /// An empty output whose encoding buffer starts with `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Output {
            buf: BytesMut::with_capacity(capacity),
            ..Default::default()
        }
    }

    /// The buffer to encode the next frame bytes into.
    pub(crate) fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends `bytes` by reference (after everything encoded so far).
    pub(crate) fn push_shared(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        if !self.buf.is_empty() {
            let head = self.buf.split().freeze();
            self.parts_len += head.len();
            self.parts.push_back(head);
        }
        self.parts_len += bytes.len();
        self.parts.push_back(bytes);
    }

    /// Bytes waiting.
    pub(crate) fn len(&self) -> usize {
        self.parts_len + self.buf.len()
    }

    /// True when nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes a content header and its body frames (at most `frame_max` bytes each). A body of
    /// at least [`SHARE_MIN`] bytes is not copied: each body frame's payload is a slice of
    /// `body`, between the frame heads and ends encoded here.
    pub(crate) fn put_content(
        &mut self,
        channel: u16,
        class_id: u16,
        properties: &Properties,
        body: &Bytes,
        frame_max: u32,
    ) {
        if body.len() < SHARE_MIN {
            encode_content(
                channel,
                class_id,
                properties,
                body,
                frame_max,
                &mut self.buf,
            );
            return;
        }
        encode_content_header(
            channel,
            class_id,
            properties,
            body.len() as u64,
            &mut self.buf,
        );
        let step = body_frame_payload(frame_max);
        let mut at = 0;
        while at < body.len() {
            let n = step.min(body.len() - at);
            encode_body_head(channel, n, &mut self.buf);
            self.push_shared(body.slice(at..at + n));
            self.buf.put_u8(FRAME_END);
            at += n;
        }
    }

    /// Takes everything waiting, in order; `None` when nothing waits.
    pub(crate) fn take(&mut self) -> Option<Transmit> {
        if self.is_empty() {
            return None;
        }
        let mut parts = std::mem::take(&mut self.parts);
        let mut remaining = std::mem::take(&mut self.parts_len);
        if !self.buf.is_empty() {
            remaining += self.buf.len();
            parts.push_back(self.buf.split().freeze());
        }
        if !self.grown && remaining > START_CAPACITY {
            // Busy: later buffers come in the larger size (`buf` is empty after the split).
            self.grown = true;
            self.buf = BytesMut::with_capacity(BUSY_CAPACITY);
        }
        Some(Transmit { parts, remaining })
    }
}

/// Bytes to write, as a [`Buf`] over their parts (see the module docs).
#[derive(Debug, Default)]
pub struct Transmit {
    parts: VecDeque<Bytes>,
    remaining: usize,
}

impl Transmit {
    /// Number of parts (contiguous chunks) left.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// All the bytes in one contiguous buffer (copies when there are several parts; tests and
    /// callers that need a slice).
    pub fn into_bytes(mut self) -> Bytes {
        if self.parts.len() == 1 {
            return self.parts.pop_front().unwrap_or_default();
        }
        self.copy_to_bytes(self.remaining)
    }
}

impl Buf for Transmit {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.parts.front().map_or(&[], |b| &b[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(
            cnt <= self.remaining,
            "invariant: cannot advance past the end of a Transmit"
        );
        self.remaining -= cnt;
        while cnt > 0 {
            let Some(front) = self.parts.front_mut() else {
                return;
            };
            if cnt < front.len() {
                front.advance(cnt);
                return;
            }
            cnt -= front.len();
            self.parts.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, part) in dst.iter_mut().zip(&self.parts) {
            *slot = IoSlice::new(part);
            n += 1;
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    fn collect(mut t: Transmit) -> Vec<u8> {
        let mut v = Vec::new();
        while t.has_remaining() {
            let c = t.chunk().to_vec();
            v.extend_from_slice(&c);
            t.advance(c.len());
        }
        v
    }

    #[test]
    fn the_encoding_buffer_grows_once_the_connection_writes_much() {
        let mut o = Output::with_capacity(START_CAPACITY);
        o.buf().put_slice(&[1; 100]);
        assert_eq!(collect(o.take().expect("bytes")), [1; 100]);
        assert!(
            o.buf().capacity() < BUSY_CAPACITY,
            "small writes keep it small"
        );
        o.buf().put_slice(&[2; START_CAPACITY + 1]);
        assert_eq!(collect(o.take().expect("bytes")), [2; START_CAPACITY + 1]);
        assert!(
            o.buf().capacity() >= BUSY_CAPACITY,
            "a large write grows it"
        );
        o.buf().put_slice(b"next");
        assert_eq!(collect(o.take().expect("bytes")), b"next");
    }

    #[test]
    fn parts_come_out_in_the_order_they_went_in() {
        let mut o = Output::with_capacity(16);
        o.buf().put_slice(b"head-");
        o.push_shared(Bytes::from_static(b"BODY"));
        o.buf().put_slice(b"-tail");
        o.push_shared(Bytes::from_static(b"SECOND"));
        assert_eq!(o.len(), 20);
        let t = o.take().expect("bytes wait");
        assert_eq!(t.remaining(), 20);
        assert_eq!(collect(t), b"head-BODY-tailSECOND");
        assert!(o.is_empty() && o.take().is_none());
    }

    #[test]
    fn vectored_chunks_cover_every_part_and_partial_advances_resume_mid_part() {
        let mut o = Output::default();
        o.buf().put_slice(b"ab");
        o.push_shared(Bytes::from_static(b"cdef"));
        o.buf().put_slice(b"g");
        let mut t = o.take().expect("bytes wait");
        let mut slots = [IoSlice::new(&[]); 8];
        assert_eq!(t.chunks_vectored(&mut slots), 3);
        assert_eq!(&*slots[1], b"cdef");
        // A short write of 3 bytes: "ab" and "c" are gone, "def" then "g" remain.
        t.advance(3);
        assert_eq!(t.remaining(), 4);
        assert_eq!(t.chunk(), b"def");
        assert_eq!(t.into_bytes(), Bytes::from_static(b"defg"));
    }

    /// Decodes every frame of `t`: (body frames' payloads joined, number of body frames).
    fn decode_content(t: Transmit, frame_max: u32) -> (Vec<u8>, usize) {
        use crate::protocol::frame::{self, Frame};
        let mut wire = BytesMut::from(&t.into_bytes()[..]);
        let (mut body, mut frames) = (Vec::new(), 0);
        while let Some(f) = frame::decode(&mut wire, frame_max).expect("valid frames") {
            if let Frame::Body { payload, .. } = f {
                body.extend_from_slice(&payload);
                frames += 1;
            }
        }
        assert!(wire.is_empty());
        (body, frames)
    }

    #[test]
    fn a_large_body_is_framed_by_reference_and_decodes_to_the_same_bytes() {
        let body = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let mut o = Output::default();
        o.put_content(3, 60, &Properties::EMPTY, &body, 4096);
        let t = o.take().expect("bytes wait");
        // Not copied: every part that is not frame bytes points into `body`.
        let range = body.as_ptr_range();
        let shared: usize = t
            .parts
            .iter()
            .filter(|p| range.contains(&p.as_ptr()))
            .map(Bytes::len)
            .sum();
        assert_eq!(shared, body.len());
        let (got, frames) = decode_content(t, 4096);
        assert_eq!(frames, 3, "10,000 bytes in frames of at most 4096");
        assert_eq!(got, body);
    }

    #[test]
    fn a_small_body_is_copied_into_one_part() {
        let body = Bytes::from_static(b"sixteen bytes!!!");
        let mut o = Output::default();
        o.put_content(1, 60, &Properties::EMPTY, &body, 4096);
        let t = o.take().expect("bytes wait");
        assert_eq!(t.parts.len(), 1);
        assert_eq!(decode_content(t, 4096), (body.to_vec(), 1));
    }

    #[test]
    fn an_output_of_encoded_bytes_only_is_one_part() {
        let mut o = Output::default();
        o.buf().put_slice(b"xyz");
        o.push_shared(Bytes::new());
        let t = o.take().expect("bytes wait");
        let mut slots = [IoSlice::new(&[]); 4];
        assert_eq!(t.chunks_vectored(&mut slots), 1);
        assert_eq!(t.into_bytes(), Bytes::from_static(b"xyz"));
    }
}
