//! The byte layout of body-log segments and records; pure functions, no I/O.
//!
//! A segment file starts with a [`SEGMENT_HEADER`]-byte header:
//! `magic "LGMB" | version u16 | flags u16 | segment id u64 | first lsn u64 | crc32c u32 | 0 u32`
//! (the CRC covers the bytes before it). Records follow one after the other, never spanning
//! two segments:
//! `crc32c u32 | payload length u32 | kind u8 | version u8 | 0 u16 | lsn u64 | queue u64 |
//! first id u64 | payload`. The CRC (Castagnoli, as in iSCSI, ext4 and RocksDB) covers
//! everything after itself, payload included; the lsn grows by one per record, node-wide, and
//! is never reused, so stale bytes can never pass for a record an index entry points at. All
//! integers are big-endian. A chunk record's payload is a chunk value ([`super::super::record`]);
//! an index record's ([`KIND_INDEX`]) is one group commit's index changes.

/// Bytes of a segment's header; the first record starts here.
pub const SEGMENT_HEADER: u64 = 32;
/// Bytes of a record's header, before its payload.
pub const RECORD_HEADER: usize = 36;
/// A segment file's first four bytes.
pub const MAGIC: &[u8; 4] = b"LGMB";
/// Version of the segment and record layout.
pub const VERSION: u16 = 1;
/// Record kind: a chunk of one queue's messages.
pub const KIND_CHUNK: u8 = 1;
/// Record kind: one group commit's index changes (the write-ahead log of sled's trees; its
/// payload is decoded by the store, see `storage::sled::wal`). Its header's queue and first id
/// are 0.
pub const KIND_INDEX: u8 = 2;

/// Where a record is, and what must be found there: what an index entry holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Loc {
    /// Segment id.
    pub seg: u64,
    /// Offset of the record's header in the segment.
    pub offset: u64,
    /// Bytes of the whole record, header included.
    pub len: u32,
    /// The record's CRC32C.
    pub crc: u32,
    /// The record's log sequence number.
    pub lsn: u64,
}

/// Bytes of an encoded [`Loc`].
pub const LOC_LEN: usize = 8 + 8 + 4 + 4 + 8;

impl Loc {
    /// The location's encoding, for index entries.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.seg.to_be_bytes());
        out.extend_from_slice(&self.offset.to_be_bytes());
        out.extend_from_slice(&self.len.to_be_bytes());
        out.extend_from_slice(&self.crc.to_be_bytes());
        out.extend_from_slice(&self.lsn.to_be_bytes());
    }

    /// Decodes [`Loc::encode`]'s bytes; `None` if `b` is too short.
    pub fn decode(b: &[u8]) -> Option<Loc> {
        Some(Loc {
            seg: be64(b.get(0..8)?),
            offset: be64(b.get(8..16)?),
            len: be32(b.get(16..20)?),
            crc: be32(b.get(20..24)?),
            lsn: be64(b.get(24..32)?),
        })
    }

    /// The offset just past the record.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(u64::from(self.len))
    }
}

/// The header a segment file starts with.
pub fn segment_header(seg: u64, first_lsn: u64) -> [u8; SEGMENT_HEADER as usize] {
    let mut h = [0u8; SEGMENT_HEADER as usize];
    h[0..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_be_bytes());
    h[8..16].copy_from_slice(&seg.to_be_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_be_bytes());
    let crc = crc32c::crc32c(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_be_bytes());
    h
}

/// Checks a segment header: `Err` says what is wrong.
pub fn check_segment_header(h: &[u8], seg: u64) -> Result<(), &'static str> {
    let h = h
        .get(..SEGMENT_HEADER as usize)
        .ok_or("short segment header")?;
    if &h[0..4] != MAGIC {
        return Err("not a body-log segment (bad magic)");
    }
    if be32(&h[24..28]) != crc32c::crc32c(&h[0..24]) {
        return Err("segment header checksum mismatch");
    }
    if u16::from_be_bytes([h[4], h[5]]) != VERSION {
        return Err("unknown segment version");
    }
    if be64(&h[8..16]) != seg {
        return Err("segment header names another segment");
    }
    Ok(())
}

/// The identity of a record, as its header states it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordId {
    /// Log sequence number.
    pub lsn: u64,
    /// The queue's numeric id.
    pub queue: u64,
    /// First message id of the chunk.
    pub first: u64,
}

/// The header of a record of `kind` whose payload is the concatenation of `payload`'s parts
/// (written after it where they lie, so that the payload itself is never copied), and the
/// record's CRC: over the header after the CRC field, then the payload.
pub fn record_header<P: AsRef<[u8]>>(
    kind: u8,
    id: RecordId,
    payload: &[P],
) -> ([u8; RECORD_HEADER], u32) {
    let mut h = [0u8; RECORD_HEADER];
    // Payloads are chunk values, far below 4 GiB (a message is at most 512 MiB).
    let len: usize = payload.iter().map(|p| p.as_ref().len()).sum();
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    h[4..8].copy_from_slice(&len.to_be_bytes());
    h[8..12].copy_from_slice(&[kind, 1, 0, 0]);
    h[12..20].copy_from_slice(&id.lsn.to_be_bytes());
    h[20..28].copy_from_slice(&id.queue.to_be_bytes());
    h[28..36].copy_from_slice(&id.first.to_be_bytes());
    let crc = payload.iter().fold(crc32c::crc32c(&h[4..]), |crc, p| {
        crc32c::crc32c_append(crc, p.as_ref())
    });
    h[..4].copy_from_slice(&crc.to_be_bytes());
    (h, crc)
}

/// A record header that passed its checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// [`KIND_CHUNK`] or [`KIND_INDEX`].
    pub kind: u8,
    /// The record's identity.
    pub id: RecordId,
    /// Payload bytes.
    pub payload_len: u32,
    /// The CRC the header states.
    pub crc: u32,
}

/// Parses a record header (without checking the CRC, which needs the payload).
pub fn parse_header(h: &[u8]) -> Result<Header, &'static str> {
    let h = h.get(..RECORD_HEADER).ok_or("short record header")?;
    if !matches!(h[8], KIND_CHUNK | KIND_INDEX) || h[9] != 1 {
        return Err("unknown record kind or version");
    }
    Ok(Header {
        kind: h[8],
        crc: be32(&h[0..4]),
        payload_len: be32(&h[4..8]),
        id: RecordId {
            lsn: be64(&h[12..20]),
            queue: be64(&h[20..28]),
            first: be64(&h[28..36]),
        },
    })
}

/// Checks a whole record (header and payload) against its CRC.
pub fn check_record(rec: &[u8]) -> Result<Header, &'static str> {
    let h = parse_header(rec)?;
    let want = RECORD_HEADER.saturating_add(h.payload_len as usize);
    if rec.len() != want {
        return Err("record length does not match its header");
    }
    if crc32c::crc32c(rec.get(4..).unwrap_or_default()) != h.crc {
        return Err("record checksum mismatch");
    }
    Ok(h)
}

fn be32(b: &[u8]) -> u32 {
    b.try_into().map_or(0, u32::from_be_bytes)
}

fn be64(b: &[u8]) -> u64 {
    b.try_into().map_or(0, u64::from_be_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip_and_any_flip_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            lsn: u64, queue: u64, first: u64, flip in any::<proptest::sample::Index>(), bit in 0u8..8,
        ) {
            let id = RecordId { lsn, queue, first };
            let (header, crc) = record_header(KIND_CHUNK, id, &[&payload]);
            let mut rec = [&header[..], &payload].concat();
            let h = check_record(&rec).expect("valid");
            prop_assert_eq!(h, Header { kind: KIND_CHUNK, id, payload_len: payload.len() as u32, crc });
            let at = flip.index(rec.len());
            rec[at] ^= 1 << bit;
            prop_assert!(check_record(&rec).is_err() || parse_header(&rec).map(|h| h.id) != Ok(id));
        }

        #[test]
        fn parsers_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..80), seg: u64) {
            let _ = parse_header(&buf);
            let _ = check_record(&buf);
            let _ = check_segment_header(&buf, seg);
            let _ = Loc::decode(&buf);
        }
    }

    #[test]
    fn segment_headers_check_their_id_and_checksum() {
        let h = segment_header(7, 100);
        assert_eq!(check_segment_header(&h, 7), Ok(()));
        assert!(check_segment_header(&h, 8).is_err());
        let mut bad = h;
        bad[17] ^= 1;
        assert!(check_segment_header(&bad, 7).is_err());
        let loc = Loc {
            seg: 1,
            offset: 2,
            len: 3,
            crc: 4,
            lsn: 5,
        };
        let mut b = Vec::new();
        loc.encode(&mut b);
        assert_eq!((b.len(), Loc::decode(&b)), (LOC_LEN, Some(loc)));
    }
}
