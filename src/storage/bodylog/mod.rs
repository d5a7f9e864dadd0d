//! The body log: one append-only log of message bodies for the whole node, in segment files of
//! a fixed maximum size (`bodies/seg-<id, 16 hex digits>`), layout in [`mod@format`].
//!
//! Owns the segment files and nothing else: what a record means, which records are live and
//! where the index points is the store's business ([`super::sled`]). Writes are positional
//! (`pwritev` of headers and payloads at the end of the active segment, under one short lock;
//! a write ahead of a flush does not wait for it, [`BodyLog::try_append`]); reads are positional too
//! (`pread` into a fresh buffer, no mmap: the crate forbids unsafe code) and check the record
//! against what the index entry expects (CRC32C, lsn, queue, first id, length). Nothing here
//! fsyncs except [`BodyLog::sync`], called by the group commit once per flush, after it has
//! appended the flush's chunks and its *index record* ([`BodyLog::append_index`]: every index
//! change of the flush): the log is the write-ahead log of the index, so an index entry never
//! points at unsynced bytes, and sled is made durable only at checkpoints.
//!
//! Recovery ([`BodyLog::open`], module `scan`) reads forward from the last checkpoint's commit point,
//! returns the index records found for the store to replay, and ends the log at the first torn
//! or corrupt record (cut there; later segment files deleted). It never writes into an old
//! segment: writing resumes in a new one with lsns above any seen.

pub mod format;
mod recycle;
mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use bytes::Bytes;

pub use format::Loc;
use format::{RECORD_HEADER, RecordId, SEGMENT_HEADER};
pub use scan::Replay;

use super::{StoreError, lock, try_lock};

/// Folder of the segment files, under the data directory.
pub const DIR: &str = "bodies";

/// Where the log stood at a commit: recorded in sled with the index entries of that flush.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPoint {
    /// The active segment (0: none yet).
    pub seg: u64,
    /// Bytes of the active segment covered by the commit (synced).
    pub end: u64,
    /// The next lsn to use.
    pub next_lsn: u64,
}

impl CommitPoint {
    /// The commit point just past the index record at `record`.
    pub fn after(record: &Loc) -> Self {
        CommitPoint {
            seg: record.seg,
            end: record.end(),
            next_lsn: record.lsn.saturating_add(1),
        }
    }

    /// The encoding stored in sled.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24);
        out.extend_from_slice(&self.seg.to_be_bytes());
        out.extend_from_slice(&self.end.to_be_bytes());
        out.extend_from_slice(&self.next_lsn.to_be_bytes());
        out
    }

    /// Decodes [`CommitPoint::encode`]'s bytes.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let w = |r: std::ops::Range<usize>| b.get(r)?.try_into().ok().map(u64::from_be_bytes);
        (b.len() == 24).then_some(())?;
        Some(CommitPoint {
            seg: w(0..8)?,
            end: w(8..16)?,
            next_lsn: w(16..24)?,
        })
    }
}

/// Deleted segments' files the log keeps for reuse, in bytes: this many segments' worth.
const POOL_SEGMENTS: u64 = 2;

/// One append of a flush or a write-ahead: the queue's numeric id, the chunk's first id and
/// the chunk value, as the parts it is made of (see `chunk::value`).
pub type Append<'a> = (u64, u64, &'a [Bytes]);

/// The active segment and what the next sync must cover.
struct Writer {
    /// Active segment: id, file, end offset. `None` until the first append of this run.
    active: Option<(u64, Arc<File>, u64)>,
    next_seg: u64,
    next_lsn: u64,
    /// Files written since the last sync.
    unsynced: BTreeMap<u64, Arc<File>>,
    /// Segments created since the last sync (their directory entries need an fsync).
    created: Vec<u64>,
    /// Segments created since the last index record (which adds them to the segment table).
    unrecorded: Vec<u64>,
    /// The active segment's file was reused (`recycle`): it holds stale bytes past `end`.
    recycled: bool,
}

impl Writer {
    /// Stops appending to the active segment. A reused file is first cut to its real end, and
    /// that length is synced with the next sync, before anything of a later segment: the scan
    /// at startup reads a segment to its file length (see `recycle`).
    fn leave_active(&mut self) -> std::io::Result<()> {
        if let Some((seg, file, end)) = &self.active
            && self.recycled
        {
            file.set_len(*end)?;
            self.unsynced.insert(*seg, Arc::clone(file));
        }
        self.active = None;
        self.recycled = false;
        Ok(())
    }
}

/// The writer as [`BodyLog::try_settled`] shows it: no append under way.
pub struct Settled<'a> {
    w: &'a mut Writer,
}

impl Settled<'_> {
    /// The active segment's id, if any (appends go there; it is never deleted).
    pub fn active(&self) -> Option<u64> {
        self.w.active.as_ref().map(|(s, _, _)| *s)
    }

    /// Bytes written to the active segment so far.
    pub fn active_len(&self) -> u64 {
        self.w.active.as_ref().map_or(0, |(_, _, end)| *end)
    }

    /// Closes the active segment: the next append starts a new one (so an emptied active
    /// segment can be deleted). If its reused file cannot be cut to its end, it stays active.
    pub fn seal(&mut self) {
        if let Err(e) = self.w.leave_active() {
            tracing::error!(error = %e, "cannot cut a reused body-log segment to its end; it stays active");
        }
    }
}

/// The body log of one data directory. See the module docs.
pub struct BodyLog {
    dir: PathBuf,
    segment_bytes: u64,
    writer: Mutex<Writer>,
    /// Every segment file, by id, for reads.
    files: RwLock<HashMap<u64, Arc<File>>>,
    /// Length of each segment at open (what reads may reach in segments that existed then).
    sizes_at_open: HashMap<u64, u64>,
    /// Bytes appended since open (the store checkpoints every so many).
    appended: AtomicU64,
    /// Deleted segments' files kept for new segments.
    pool: recycle::Pool,
}

impl Drop for BodyLog {
    /// A clean close cuts a reused active segment to its end (so that the next open finds no
    /// stale tail to report) and deletes the files kept for reuse.
    fn drop(&mut self) {
        let w = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((_, file, _)) = &w.active {
            let file = Arc::clone(file);
            if w.leave_active().is_ok() {
                let _ = file.sync_data();
            }
        }
        self.pool.clear();
    }
}

impl std::fmt::Debug for BodyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyLog")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

impl BodyLog {
    /// Opens the log in `data_dir/bodies`, given the last durable commit point and segment table
    /// from sled (see the module docs for what recovery does), and returns the index records past the
    /// commit point, to replay in order. Segments roll at `segment_bytes`.
    pub fn open(
        data_dir: &Path,
        commit: Option<CommitPoint>,
        table: &BTreeSet<u64>,
        segment_bytes: u64,
    ) -> Result<(Self, Vec<Replay>), StoreError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        let segment_bytes = segment_bytes.max(SEGMENT_HEADER + 1);
        // Before the scan: what a crash left in the pool is deleted, not taken for a segment.
        let pool = recycle::Pool::open(&dir, POOL_SEGMENTS * segment_bytes);
        let commit = commit.unwrap_or(CommitPoint {
            seg: 0,
            end: 0,
            next_lsn: 1,
        });
        let scan::Opened {
            files,
            sizes,
            next_seg,
            next_lsn,
            replay,
        } = scan::open_segments(&dir, commit, table)?;
        let writer = Mutex::new(Writer {
            active: None,
            next_seg,
            next_lsn,
            unsynced: BTreeMap::new(),
            created: Vec::new(),
            unrecorded: Vec::new(),
            recycled: false,
        });
        let log = BodyLog {
            dir,
            segment_bytes,
            writer,
            files: RwLock::new(files),
            sizes_at_open: sizes,
            appended: AtomicU64::new(0),
            pool,
        };
        Ok((log, replay))
    }

    /// Where writing resumes (before anything is appended in this run): the start of the next
    /// segment. Recovery records it as the commit point once everything before is in sled.
    pub fn resume_point(&self) -> CommitPoint {
        let w = lock(&self.writer);
        CommitPoint {
            seg: w.next_seg,
            end: SEGMENT_HEADER,
            next_lsn: w.next_lsn,
        }
    }

    /// Bytes appended since the log was opened.
    pub fn appended(&self) -> u64 {
        self.appended.load(Ordering::Relaxed)
    }

    /// Length of segment `seg` when the log was opened (`None`: it did not exist then). Index
    /// entries found at startup must end within it.
    pub fn size_at_open(&self, seg: u64) -> Option<u64> {
        self.sizes_at_open.get(&seg).copied()
    }

    fn path(&self, seg: u64) -> PathBuf {
        segment_path(&self.dir, seg)
    }

    /// Appends records (one write per segment touched) and returns where each went. No fsync:
    /// [`BodyLog::sync`] makes them durable. `written` runs with their locations before the
    /// writer is released: what it records about them (the store counts them live) is in place
    /// before any other append, or any [`BodyLog::try_settled`], can run.
    pub fn append(
        &self,
        records: &[Append<'_>],
        written: impl FnOnce(&[Loc]),
    ) -> Result<Vec<Loc>, StoreError> {
        let mut w = lock(&self.writer);
        let locs = self.append_locked(&mut w, records)?;
        written(&locs);
        Ok(locs)
    }

    /// [`BodyLog::append`] unless another append (a group commit's) is under way: `None` then,
    /// and nothing is written. For writes ahead of a flush, which the flush makes anyway.
    pub fn try_append(
        &self,
        records: &[Append<'_>],
        written: impl FnOnce(&[Loc]),
    ) -> Result<Option<Vec<Loc>>, StoreError> {
        let Some(mut w) = try_lock(&self.writer) else {
            return Ok(None);
        };
        let locs = self.append_locked(&mut w, records)?;
        written(&locs);
        Ok(Some(locs))
    }

    /// Runs `f` with the active segment while no append is under way (every record appended
    /// so far has been through its `written`), or returns `None` at once when one is. Which
    /// segments are empty, and whether to close the active one, is decided here: a segment
    /// an append has just left for a new one cannot look empty while its last records are
    /// still uncounted.
    pub fn try_settled<R>(&self, f: impl FnOnce(&mut Settled<'_>) -> R) -> Option<R> {
        let mut w = try_lock(&self.writer)?;
        Some(f(&mut Settled { w: &mut w }))
    }

    /// Holds the writer as an append would (tests of writes that must not wait for one).
    #[cfg(test)]
    pub(crate) fn hold_writer(&self) -> impl Sized + '_ {
        lock(&self.writer)
    }

    fn append_locked(
        &self,
        w: &mut Writer,
        records: &[Append<'_>],
    ) -> Result<Vec<Loc>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        // Headers built here; payloads written from where they lie (no copy of a chunk).
        let mut headers: Vec<[u8; RECORD_HEADER]> = Vec::with_capacity(records.len());
        let mut payloads: Vec<&[Bytes]> = Vec::with_capacity(records.len());
        let mut pending = 0u64;
        for &(queue, first, payload) in records {
            let payload_len: usize = payload.iter().map(Bytes::len).sum();
            let rec_len = (RECORD_HEADER + payload_len) as u64;
            let need_new = match &w.active {
                None => true,
                Some((_, _, end)) => {
                    let end = end + pending;
                    end > SEGMENT_HEADER && end + rec_len > self.segment_bytes
                }
            };
            if need_new {
                self.write_records(w, &headers, &payloads)?;
                headers.clear();
                payloads.clear();
                pending = 0;
                self.roll(w)?;
            }
            let Some((seg, _, end)) = &w.active else {
                return Err(StoreError::Io("invariant: an active segment".into()));
            };
            let offset = end + pending;
            let lsn = w.next_lsn;
            let (header, crc) =
                format::record_header(format::KIND_CHUNK, RecordId { lsn, queue, first }, payload);
            let len = u32::try_from(rec_len)
                .map_err(|_| StoreError::Io("body-log record over 4 GiB".into()))?;
            out.push(Loc {
                seg: *seg,
                offset,
                len,
                crc,
                lsn,
            });
            headers.push(header);
            payloads.push(payload);
            pending += rec_len;
            w.next_lsn += 1;
        }
        self.write_records(w, &headers, &payloads)?;
        Ok(out)
    }

    /// Writes records (each header followed by its payload) at the active segment's end.
    fn write_records<P: AsRef<[u8]>>(
        &self,
        w: &mut Writer,
        headers: &[[u8; RECORD_HEADER]],
        payloads: &[&[P]],
    ) -> Result<(), StoreError> {
        let mut parts: Vec<&[u8]> = Vec::with_capacity(headers.len() * 3);
        for (h, p) in headers.iter().zip(payloads) {
            parts.push(&h[..]);
            parts.extend(p.iter().map(AsRef::as_ref));
        }
        self.write_parts(w, &parts)
    }

    /// Appends `parts`, one after the other, at the active segment's end.
    fn write_parts(&self, w: &mut Writer, parts: &[&[u8]]) -> Result<(), StoreError> {
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        if total == 0 {
            return Ok(());
        }
        let Some((seg, file, end)) = &mut w.active else {
            return Err(StoreError::Io("invariant: an active segment".into()));
        };
        let (seg, file) = (*seg, Arc::clone(file));
        write_all_at(&file, parts, *end).map_err(|e| io_err("cannot write", &self.path(seg), e))?;
        *end += total;
        self.appended.fetch_add(total, Ordering::Relaxed);
        w.unsynced.insert(seg, file);
        Ok(())
    }

    /// Starts a new segment, in a deleted segment's file when the pool has one.
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        if let Some((seg, _, _)) = &w.active {
            let seg = *seg;
            w.leave_active()
                .map_err(|e| io_err("cannot cut", &self.path(seg), e))?;
        }
        let seg = w.next_seg;
        let path = self.path(seg);
        let (file, recycled) = match self.pool.take(&path) {
            Some(file) => (file, true),
            None => (
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_err("cannot create", &path, e))?,
                false,
            ),
        };
        file.write_all_at(&format::segment_header(seg, w.next_lsn), 0)
            .map_err(|e| io_err("cannot write", &path, e))?;
        let file = Arc::new(file);
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seg, Arc::clone(&file));
        w.next_seg += 1;
        w.created.push(seg);
        w.unrecorded.push(seg);
        w.unsynced.insert(seg, Arc::clone(&file));
        w.active = Some((seg, file, SEGMENT_HEADER));
        w.recycled = recycled;
        Ok(())
    }

    /// Appends one index record (see [`format::KIND_INDEX`]): `payload`, extended by
    /// `add_segments` with the segments created since the previous index record (this record's
    /// own included), each adding at most `per_segment` bytes. No fsync. Returns its location,
    /// which `written` sees first, as [`BodyLog::append`]'s does.
    pub fn append_index(
        &self,
        mut payload: Vec<u8>,
        per_segment: usize,
        add_segments: impl FnOnce(&mut Vec<u8>, &[u64]),
        written: impl FnOnce(&Loc),
    ) -> Result<Loc, StoreError> {
        let mut w = lock(&self.writer);
        let bound = (RECORD_HEADER + payload.len() + per_segment * (w.unrecorded.len() + 1)) as u64;
        let need_new = match &w.active {
            None => true,
            Some((_, _, end)) => *end > SEGMENT_HEADER && end + bound > self.segment_bytes,
        };
        if need_new {
            self.roll(&mut w)?;
        }
        let created = std::mem::take(&mut w.unrecorded);
        add_segments(&mut payload, &created);
        let Some((seg, _, end)) = &w.active else {
            return Err(StoreError::Io("invariant: an active segment".into()));
        };
        let (seg, offset, lsn) = (*seg, *end, w.next_lsn);
        let id = RecordId {
            lsn,
            queue: 0,
            first: 0,
        };
        let (header, crc) =
            format::record_header(format::KIND_INDEX, id, std::slice::from_ref(&payload));
        let len = u32::try_from(RECORD_HEADER + payload.len())
            .map_err(|_| StoreError::Io("body-log index record over 4 GiB".into()))?;
        if let Err(e) = self.write_records(&mut w, &[header], &[std::slice::from_ref(&payload)]) {
            let later = std::mem::replace(&mut w.unrecorded, created);
            w.unrecorded.extend(later);
            return Err(e);
        }
        w.next_lsn += 1;
        let loc = Loc {
            seg,
            offset,
            len,
            crc,
            lsn,
        };
        written(&loc);
        Ok(loc)
    }

    /// Makes every record appended so far durable (`fdatasync` of each segment written, and of
    /// the folder when segments were created).
    pub fn sync(&self) -> Result<(), StoreError> {
        let (files, created) = {
            let mut w = lock(&self.writer);
            (
                std::mem::take(&mut w.unsynced),
                std::mem::take(&mut w.created),
            )
        };
        for (seg, file) in &files {
            file.sync_data()
                .map_err(|e| io_err("fdatasync of", &self.path(*seg), e))?;
        }
        if !created.is_empty() {
            let dir = File::open(&self.dir).map_err(|e| io_err("cannot open", &self.dir, e))?;
            dir.sync_all()
                .map_err(|e| io_err("fsync of", &self.dir, e))?;
        }
        Ok(())
    }

    /// Reads the record at `loc` and checks it is the one expected (queue and first id): its
    /// payload, or `Err(reason)` when it is missing or damaged.
    pub fn read(
        &self,
        loc: &Loc,
        queue: u64,
        first: u64,
    ) -> Result<Result<Bytes, String>, StoreError> {
        let file = self
            .files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&loc.seg)
            .cloned();
        let Some(file) = file else {
            return Ok(Err(format!("segment {} missing", loc.seg)));
        };
        let mut buf = vec![0u8; loc.len as usize];
        if let Err(e) = file.read_exact_at(&mut buf, loc.offset) {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                return Ok(Err(format!(
                    "segment {} offset {}: record cut short",
                    loc.seg, loc.offset
                )));
            }
            return Err(io_err("cannot read", &self.path(loc.seg), e));
        }
        let reason = match format::check_record(&buf) {
            Ok(h)
                if h.kind == format::KIND_CHUNK
                    && h.crc == loc.crc
                    && h.id
                        == (RecordId {
                            lsn: loc.lsn,
                            queue,
                            first,
                        }) =>
            {
                let mut b = Bytes::from(buf);
                return Ok(Ok(b.split_off(RECORD_HEADER)));
            }
            Ok(_) => "another record than the index expects",
            Err(why) => why,
        };
        Ok(Err(format!(
            "segment {} offset {}: {reason}",
            loc.seg, loc.offset
        )))
    }

    /// The active segment's id (never deleted), if any.
    pub fn active(&self) -> Option<u64> {
        lock(&self.writer).active.as_ref().map(|(s, _, _)| *s)
    }

    /// Deletes a segment no index entry points into any more (durably so).
    pub fn delete(&self, seg: u64) -> Result<(), StoreError> {
        if self.active() == Some(seg) {
            return Ok(());
        }
        let file = self
            .files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seg);
        let path = self.path(seg);
        let size = file.and_then(|f| f.metadata().ok()).map(|m| m.len());
        if let Some(size) = size
            && self.pool.give(seg, &path, size)
        {
            return Ok(());
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot remove", &path, e)),
        }
    }

    /// Deletes the files kept for reuse unless a new segment took one since the last call (the
    /// checkpointer calls this once per checkpoint: a log that stopped rolling gives the space
    /// back within two).
    pub fn trim_pool(&self) {
        self.pool.trim();
    }

    /// Files and bytes kept for reuse.
    #[cfg(test)]
    pub(crate) fn pooled(&self) -> (usize, u64) {
        self.pool.held()
    }

    /// Ids of the segment files present.
    pub fn segments(&self) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .files
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        v.sort_unstable();
        v
    }
}

/// Slices per `pwritev` at most (Linux takes up to 1024).
const MAX_IOV: usize = 1024;

/// Writes `parts` one after the other at `offset`, with positional vectored writes (short
/// writes and interruptions resumed).
fn write_all_at(file: &File, parts: &[&[u8]], offset: u64) -> std::io::Result<()> {
    let total: usize = parts.iter().map(|p| p.len()).sum();
    let mut done = 0usize;
    while done < total {
        let mut slices = Vec::with_capacity(parts.len().min(MAX_IOV));
        let mut at = 0usize;
        for p in parts {
            let start = done.saturating_sub(at);
            at += p.len();
            if start < p.len() {
                slices.push(std::io::IoSlice::new(p.get(start..).unwrap_or_default()));
                if slices.len() == MAX_IOV {
                    break;
                }
            }
        }
        match rustix::io::pwritev(file, &slices, offset + done as u64) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The path of segment `seg` in the folder `dir`.
pub(crate) fn segment_path(dir: &Path, seg: u64) -> PathBuf {
    dir.join(format!("seg-{seg:016x}"))
}

/// The segment id of a file name `seg-<16 hex digits>`.
pub(crate) fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?;
    (hex.len() == 16).then_some(())?;
    u64::from_str_radix(hex, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    fn no_segments(_: &mut Vec<u8>, _: &[u64]) {}

    /// More records in one append than one vectored write takes (two slices each, at most
    /// MAX_IOV per write), and empty payloads among them: every one reads back.
    #[test]
    fn a_large_batch_is_written_in_several_vectored_writes() {
        let dir = tempfile::tempdir().expect("tmp");
        let (log, _) = BodyLog::open(dir.path(), None, &table(&[]), 1 << 20).expect("open");
        let payloads: Vec<[Bytes; 1]> = (0..1500u32)
            .map(|i| [Bytes::from(vec![(i % 251) as u8; (i % 7) as usize * 3])])
            .collect();
        let recs: Vec<Append<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (3, i as u64, &p[..]))
            .collect();
        let locs = log.append(&recs, |_| ()).expect("append");
        log.sync().expect("sync");
        assert_eq!(log.segments().len(), 1);
        for (i, loc) in locs.iter().enumerate() {
            let got = log.read(loc, 3, i as u64).expect("io").expect("valid");
            assert_eq!(got, payloads[i][0], "record {i}");
        }
    }

    #[test]
    fn appends_roll_segments_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let (log, replay) = BodyLog::open(dir.path(), None, &table(&[]), 1000).expect("open");
        assert!(replay.is_empty());
        let payloads: Vec<[Bytes; 1]> = (0..20u8)
            .map(|i| [Bytes::from(vec![i; 100 + i as usize])])
            .collect();
        let recs: Vec<Append<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (7, i as u64 * 10, &p[..]))
            .collect();
        let locs = log.append(&recs, |_| ()).expect("append");
        // A record bigger than a segment gets one of its own.
        let big = [Bytes::from(vec![9u8; 5000])];
        let big_loc = log.append(&[(7, 999, &big)], |_| ()).expect("append big")[0];
        let mut recorded = Vec::new();
        let ix = log
            .append_index(
                b"changes".to_vec(),
                8,
                |_, segs| recorded.extend_from_slice(segs),
                |_| (),
            )
            .expect("index record");
        log.sync().expect("sync");
        assert!(log.segments().len() >= 4, "{:?}", log.segments());
        assert_eq!(recorded, log.segments());
        assert_eq!(ix.lsn, 22);
        for (i, loc) in locs.iter().enumerate() {
            let got = log.read(loc, 7, i as u64 * 10).expect("io").expect("valid");
            assert_eq!(got, payloads[i][0]);
            assert!(log.read(loc, 8, i as u64 * 10).expect("io").is_err());
        }
        assert_eq!(log.read(&big_loc, 7, 999).expect("io").expect("ok"), big[0]);
        // An index record is never served as a chunk.
        assert!(log.read(&ix, 0, 0).expect("io").is_err());
    }

    #[test]
    fn recovery_replays_index_records_past_the_commit_point_and_cuts_the_torn_tail() {
        let dir = tempfile::tempdir().expect("tmp");
        let (commit, second, loc, tail) = {
            let (log, _) = BodyLog::open(dir.path(), None, &table(&[]), 1 << 20).expect("open");
            let loc = log
                .append(&[(1, 1, &[Bytes::from_static(b"kept")][..])], |_| ())
                .expect("append")[0];
            let first = log
                .append_index(b"first".to_vec(), 0, no_segments, |_| ())
                .expect("index");
            log.append(
                &[(
                    1,
                    2,
                    &[Bytes::from_static(b"indexed after the checkpoint")][..],
                )],
                |_| (),
            )
            .expect("append");
            let second = log
                .append_index(b"second".to_vec(), 0, no_segments, |_| ())
                .expect("index");
            let tail = log
                .append(
                    &[(1, 3, &[Bytes::from_static(b"never indexed")][..])],
                    |_| (),
                )
                .expect("append")[0];
            log.sync().expect("sync");
            (
                CommitPoint::after(&first),
                CommitPoint::after(&second),
                loc,
                tail,
            )
        };
        let seg_path = segment_path(&dir.path().join(DIR), commit.seg);
        // A torn record after the unindexed one.
        let f = OpenOptions::new()
            .append(true)
            .open(&seg_path)
            .expect("open");
        std::io::Write::write_all(&mut &f, &[1, 2, 3]).expect("write");
        // A segment after a gap in the sequence: past the end of the log.
        std::fs::write(dir.path().join(DIR).join("seg-00000000000000ff"), b"junk").expect("junk");
        let (log, replay) = BodyLog::open(dir.path(), Some(commit), &table(&[commit.seg]), 1 << 20)
            .expect("reopen");
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].commit, second);
        assert_eq!(replay[0].payload, &b"second"[..]);
        assert_eq!(log.segments(), [commit.seg]);
        assert_eq!(
            std::fs::metadata(&seg_path).expect("meta").len(),
            tail.end()
        );
        assert_eq!(log.read(&loc, 1, 1).expect("io").expect("ok"), &b"kept"[..]);
        let next = log
            .append(&[(1, 4, &[Bytes::from_static(b"new")][..])], |_| ())
            .expect("append")[0];
        assert!(next.seg > 0xff && next.lsn > tail.lsn, "{next:?}");
    }

    /// Two segments of three 316-byte records (980 bytes each) deleted into the pool, then
    /// three 536-byte records: the first fits the active segment, the next two roll into the
    /// two reused files, each written to 568 bytes of its 980. Returns the log, the commit
    /// point before the three, and the ids of the reused segments.
    fn log_with_reused_segments(dir: &Path) -> (BodyLog, CommitPoint, [u64; 2]) {
        let (log, _) = BodyLog::open(dir, None, &table(&[]), 1000).expect("open");
        let first = (0..6u8)
            .map(|i| {
                log.append_index(vec![i; 280], 0, no_segments, |_| ())
                    .expect("index")
            })
            .collect::<Vec<_>>();
        assert_eq!((first[0].seg, first[5].seg), (1, 2));
        let x = log
            .append_index(vec![9; 280], 0, no_segments, |_| ())
            .expect("index");
        assert_eq!(x.seg, 3);
        log.sync().expect("sync");
        log.delete(1).expect("delete");
        log.delete(2).expect("delete");
        assert_eq!(log.pooled(), (2, 1960));
        let locs = (0..3u8)
            .map(|i| {
                log.append_index(vec![10 + i; 500], 0, no_segments, |_| ())
                    .expect("index")
            })
            .collect::<Vec<_>>();
        log.sync().expect("sync");
        assert_eq!(log.pooled(), (0, 0));
        let segs = [locs[1].seg, locs[2].seg];
        assert_eq!((locs[0].seg, segs), (3, [4, 5]));
        assert_eq!(locs[2].end(), 568);
        (log, CommitPoint::after(&x), segs)
    }

    /// The three records after the commit point come back in order; nothing of the reused
    /// segments' stale bytes does, and no segment is dropped.
    fn check_reopened(dir: &Path, commit: CommitPoint) -> BodyLog {
        let (log, replay) =
            BodyLog::open(dir, Some(commit), &table(&[3, 4, 5]), 1000).expect("reopen");
        let payloads: Vec<u8> = replay.iter().map(|r| r.payload[0]).collect();
        assert_eq!(payloads, [10, 11, 12]);
        assert!(replay.iter().all(|r| r.payload.len() == 500));
        assert_eq!(log.segments(), [3, 4, 5]);
        log
    }

    /// A reused segment left for the next one is cut to its end: the scan after a crash reads
    /// across it (with its stale tail, it took the first stale record for the end of the log
    /// and dropped every later segment), and cuts the active one's stale tail as a torn one.
    #[test]
    fn reused_segments_are_cut_at_their_end_and_a_crash_loses_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join(DIR);
        let (log, commit, [left, active]) = log_with_reused_segments(dir.path());
        let len = |seg| {
            std::fs::metadata(segment_path(&d, seg))
                .expect("meta")
                .len()
        };
        assert_eq!(len(left), 568);
        assert_eq!(len(active), 980, "the active segment keeps its stale tail");
        // A crash: no clean close.
        std::mem::forget(log);
        let log = check_reopened(dir.path(), commit);
        assert_eq!(len(active), 568, "the stale tail is cut at open");
        // Appends go on after it, in a new segment.
        let next = log
            .append_index(vec![1; 10], 0, no_segments, |_| ())
            .expect("index");
        assert!(next.seg > active, "{next:?}");
    }

    /// A clean close cuts the reused active segment and deletes what the pool holds; files a
    /// crash left in the pool are deleted at open; a pool no new segment drew from since the
    /// last trim is emptied by the next.
    #[test]
    fn the_pool_is_emptied_at_close_at_open_and_when_unused() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = dir.path().join(DIR);
        let (log, commit, [_, active]) = log_with_reused_segments(dir.path());
        drop(log);
        assert_eq!(
            std::fs::metadata(segment_path(&d, active))
                .expect("meta")
                .len(),
            568
        );
        std::fs::write(d.join("free-0000000000000001"), [7u8; 300]).expect("leftover");
        let log = check_reopened(dir.path(), commit);
        let names = |d: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(d)
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert!(
            names(&d).iter().all(|n| n.starts_with("seg-")),
            "{:?}",
            names(&d)
        );
        // A new active segment, then segment 3 into the pool; a trim with no roll since
        // deletes it, and the log still opens whole.
        let next = log
            .append_index(vec![1; 900], 0, no_segments, |_| ())
            .expect("index");
        log.sync().expect("sync");
        log.delete(3).expect("delete");
        assert_eq!(log.pooled().0, 1);
        log.trim_pool();
        assert_eq!(log.pooled(), (0, 0));
        assert_eq!(names(&d), [4, 5, next.seg].map(|s| format!("seg-{s:016x}")));
        // Given back and taken by a roll: the trim after keeps what is left.
        log.delete(4).expect("delete");
        log.delete(5).expect("delete");
        assert_eq!(log.pooled().0, 2);
        log.append_index(vec![2; 900], 0, no_segments, |_| ())
            .expect("index");
        assert_eq!(log.pooled().0, 1);
        log.trim_pool();
        assert_eq!(log.pooled().0, 1, "a file was taken since the last trim");
        log.trim_pool();
        assert_eq!(log.pooled().0, 0);
    }

    #[test]
    fn a_corrupt_record_ends_the_log_and_later_segments_go() {
        let dir = tempfile::tempdir().expect("tmp");
        let (commit, first_ix, second_ix) = {
            let (log, _) = BodyLog::open(dir.path(), None, &table(&[]), 200).expect("open");
            let a = log
                .append_index(vec![1; 100], 0, no_segments, |_| ())
                .expect("index");
            let b = log
                .append_index(vec![2; 100], 0, no_segments, |_| ())
                .expect("index");
            let c = log
                .append_index(vec![3; 100], 0, no_segments, |_| ())
                .expect("index");
            log.sync().expect("sync");
            assert!(a.seg < b.seg && b.seg < c.seg, "{a:?} {b:?} {c:?}");
            (
                CommitPoint {
                    seg: a.seg,
                    end: SEGMENT_HEADER,
                    next_lsn: 1,
                },
                a,
                b,
            )
        };
        let d = dir.path().join(DIR);
        // Flip a payload byte of the second record: the first replays, the third is dropped.
        use std::os::unix::fs::FileExt;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(segment_path(&d, second_ix.seg))
            .expect("open");
        f.write_all_at(&[0xee], second_ix.offset + 50)
            .expect("flip");
        let (log, replay) =
            BodyLog::open(dir.path(), Some(commit), &table(&[]), 200).expect("reopen");
        assert_eq!(replay.len(), 1);
        assert_eq!(replay[0].commit, CommitPoint::after(&first_ix));
        assert_eq!(log.segments(), [first_ix.seg, second_ix.seg]);
        assert_eq!(log.size_at_open(second_ix.seg), Some(SEGMENT_HEADER));
    }
}
