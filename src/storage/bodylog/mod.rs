//! The body log: one append-only log of message bodies for the whole node, in segment files of
//! a fixed maximum size (`bodies/seg-<id, 16 hex digits>`), layout in [`mod@format`].
//!
//! Owns the segment files and nothing else: what a record means, which records are live and
//! where the index points is the store's business ([`super::sled`]). Writes are positional
//! (`pwrite` at the end of the active segment, under one short lock); reads are positional too
//! (`pread` into a fresh buffer, no mmap: the crate forbids unsafe code) and check the record
//! against what the index entry expects (CRC32C, lsn, queue, first id, length). Nothing here
//! fsyncs except [`BodyLog::sync`], called by the group commit before sled's batch: log first,
//! then the index, then the confirm, so an index entry never points at unsynced bytes.
//!
//! Recovery ([`BodyLog::open`]) never writes into the segment that was active at the last
//! commit: records past the commit point were never indexed (never confirmed) and are dropped
//! with a log line naming segment and offset, the file is cut at the commit point, and writing
//! resumes in a new segment with lsns above any seen. Files the segment table does not know
//! (created, then a crash before a commit recorded them) are deleted.

pub mod format;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use bytes::Bytes;

pub use format::Loc;
use format::{RECORD_HEADER, RecordId, SEGMENT_HEADER};

use super::StoreError;

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

/// What [`BodyLog::sync`] made durable.
#[derive(Debug)]
pub struct Synced {
    /// The commit point: every record appended before the sync began is at or below it.
    pub commit: CommitPoint,
    /// Segments created since the previous sync, to add to the segment table.
    pub created: Vec<u64>,
}

/// One append of a flush or a write-ahead: the queue's numeric id, the chunk's first id and
/// the chunk value.
pub type Append<'a> = (u64, u64, &'a [u8]);

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
}

/// Bytes appended since the last sync after which the write-behind thread starts the device
/// on them (see [`WriteBehind`]).
const WRITE_BEHIND_BYTES: u64 = 1 << 20;

/// A thread that `fdatasync`s the active segment in the background whenever a megabyte has
/// been appended since, so that the group commit's own `fdatasync` finds little left to write:
/// the device writes bodies while the previous flush is busy with sled. Extra syncs change
/// nothing about what is durable when: only [`BodyLog::sync`] counts.
#[derive(Default)]
struct WriteBehind {
    /// Bytes appended since the thread last synced, and whether to stop.
    state: Mutex<(u64, bool)>,
    wake: std::sync::Condvar,
}

/// The body log of one data directory. See the module docs.
pub struct BodyLog {
    dir: PathBuf,
    segment_bytes: u64,
    writer: Arc<Mutex<Writer>>,
    behind: Arc<WriteBehind>,
    behind_thread: Option<std::thread::JoinHandle<()>>,
    /// Every segment file, by id, for reads.
    files: RwLock<HashMap<u64, Arc<File>>>,
    /// Length of each segment at open (what reads may reach in segments that existed then).
    sizes_at_open: HashMap<u64, u64>,
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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the writer consistent before anything can fail.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl BodyLog {
    /// Opens the log in `data_dir/bodies`, given the last commit point and segment table from
    /// sled (see the module docs for what recovery does). Segments roll at `segment_bytes`.
    pub fn open(
        data_dir: &Path,
        commit: Option<CommitPoint>,
        table: &BTreeSet<u64>,
        segment_bytes: u64,
    ) -> Result<Self, StoreError> {
        let dir = data_dir.join(DIR);
        std::fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", &dir, e))?;
        let commit = commit.unwrap_or(CommitPoint {
            seg: 0,
            end: 0,
            next_lsn: 1,
        });
        let mut files = HashMap::new();
        let mut sizes = HashMap::new();
        let mut next_lsn = commit.next_lsn.max(1);
        let mut top = commit.seg;
        let entries = std::fs::read_dir(&dir).map_err(|e| io_err("cannot list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("cannot list", &dir, e))?;
            let path = entry.path();
            let Some(id) = parse_name(&entry.file_name().to_string_lossy()) else {
                tracing::warn!(file = %path.display(), "unknown file in the body-log folder left alone");
                continue;
            };
            top = top.max(id);
            if !table.contains(&id) {
                // Created after the last commit: nothing indexed points into it.
                tracing::warn!(
                    segment = id,
                    "body-log segment written after the last commit dropped"
                );
                std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, e))?;
                continue;
            }
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| io_err("cannot open", &path, e))?;
            let mut len = file
                .metadata()
                .map_err(|e| io_err("cannot stat", &path, e))?
                .len();
            if id == commit.seg {
                let (end, max_lsn) = check_tail(&file, id, commit.end, len)?;
                next_lsn = next_lsn.max(max_lsn.saturating_add(1));
                if len > end {
                    file.set_len(end)
                        .map_err(|e| io_err("cannot truncate", &path, e))?;
                    len = end;
                }
            }
            sizes.insert(id, len);
            files.insert(id, Arc::new(file));
        }
        for id in table.iter().filter(|id| !files.contains_key(id)) {
            tracing::error!(
                segment = id,
                "body-log segment missing: the messages it held are set aside"
            );
        }
        let writer = Arc::new(Mutex::new(Writer {
            active: None,
            next_seg: top.saturating_add(1),
            next_lsn,
            unsynced: BTreeMap::new(),
            created: Vec::new(),
        }));
        let behind = Arc::new(WriteBehind::default());
        let behind_thread = {
            let (writer, behind) = (Arc::clone(&writer), Arc::clone(&behind));
            std::thread::Builder::new()
                .name("lagomorph-write-behind".into())
                .spawn(move || write_behind(&writer, &behind))
                .map_err(|e| StoreError::Io(format!("cannot start a thread: {e}")))?
        };
        Ok(BodyLog {
            dir,
            segment_bytes: segment_bytes.max(SEGMENT_HEADER + 1),
            writer,
            behind,
            behind_thread: Some(behind_thread),
            files: RwLock::new(files),
            sizes_at_open: sizes,
        })
    }

    /// Length of segment `seg` when the log was opened (`None`: it did not exist then). Index
    /// entries found at startup must end within it.
    pub fn size_at_open(&self, seg: u64) -> Option<u64> {
        self.sizes_at_open.get(&seg).copied()
    }

    fn path(&self, seg: u64) -> PathBuf {
        self.dir.join(format!("seg-{seg:016x}"))
    }

    /// Appends records (one write per segment touched) and returns where each went. No fsync:
    /// [`BodyLog::sync`] makes them durable.
    pub fn append(&self, records: &[Append<'_>]) -> Result<Vec<Loc>, StoreError> {
        let mut out = Vec::with_capacity(records.len());
        let mut w = lock(&self.writer);
        let mut buf: Vec<u8> = Vec::new();
        let mut buf_at = 0u64;
        for &(queue, first, payload) in records {
            let rec_len = (RECORD_HEADER + payload.len()) as u64;
            let need_new = match &w.active {
                None => true,
                Some((_, _, end)) => {
                    let end = end + buf.len() as u64;
                    end > SEGMENT_HEADER && end + rec_len > self.segment_bytes
                }
            };
            if need_new {
                self.write_out(&mut w, &mut buf)?;
                self.roll(&mut w)?;
            }
            let Some((seg, _, end)) = &w.active else {
                return Err(StoreError::Io("invariant: an active segment".into()));
            };
            if buf.is_empty() {
                buf_at = *end;
            }
            let offset = buf_at + buf.len() as u64;
            let lsn = w.next_lsn;
            let crc = format::encode_record(RecordId { lsn, queue, first }, payload, &mut buf);
            let len = u32::try_from(rec_len)
                .map_err(|_| StoreError::Io("body-log record over 4 GiB".into()))?;
            out.push(Loc {
                seg: *seg,
                offset,
                len,
                crc,
                lsn,
            });
            w.next_lsn += 1;
        }
        self.write_out(&mut w, &mut buf)?;
        Ok(out)
    }

    /// Writes `buf` at the active segment's end.
    fn write_out(&self, w: &mut Writer, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        if buf.is_empty() {
            return Ok(());
        }
        let Some((seg, file, end)) = &mut w.active else {
            return Err(StoreError::Io("invariant: an active segment".into()));
        };
        let (seg, file) = (*seg, Arc::clone(file));
        file.write_all_at(buf, *end)
            .map_err(|e| io_err("cannot write", &self.path(seg), e))?;
        *end += buf.len() as u64;
        w.unsynced.insert(seg, file);
        let mut st = lock(&self.behind.state);
        st.0 += buf.len() as u64;
        if st.0 >= WRITE_BEHIND_BYTES {
            self.behind.wake.notify_one();
        }
        drop(st);
        buf.clear();
        Ok(())
    }

    /// Starts a new segment.
    fn roll(&self, w: &mut Writer) -> Result<(), StoreError> {
        let seg = w.next_seg;
        let path = self.path(seg);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err("cannot create", &path, e))?;
        file.write_all_at(&format::segment_header(seg, w.next_lsn), 0)
            .map_err(|e| io_err("cannot write", &path, e))?;
        let file = Arc::new(file);
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(seg, Arc::clone(&file));
        w.next_seg += 1;
        w.created.push(seg);
        w.unsynced.insert(seg, Arc::clone(&file));
        w.active = Some((seg, file, SEGMENT_HEADER));
        Ok(())
    }

    /// Makes every record appended so far durable (`fdatasync` of each segment written, and of
    /// the folder when segments were created) and says where the log stands.
    pub fn sync(&self) -> Result<Synced, StoreError> {
        let (files, created, commit) = {
            let mut w = lock(&self.writer);
            let commit = match &w.active {
                Some((seg, _, end)) => CommitPoint {
                    seg: *seg,
                    end: *end,
                    next_lsn: w.next_lsn,
                },
                None => CommitPoint {
                    seg: 0,
                    end: 0,
                    next_lsn: w.next_lsn,
                },
            };
            (
                std::mem::take(&mut w.unsynced),
                std::mem::take(&mut w.created),
                commit,
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
        Ok(Synced { commit, created })
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
                if h.crc == loc.crc
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

    /// Bytes written to the active segment so far.
    pub fn active_len(&self) -> u64 {
        lock(&self.writer)
            .active
            .as_ref()
            .map_or(0, |(_, _, end)| *end)
    }

    /// Closes the active segment: the next append starts a new one (so an emptied active
    /// segment can be deleted).
    pub fn seal_active(&self) {
        lock(&self.writer).active = None;
    }

    /// Deletes a segment no index entry points into any more (durably so).
    pub fn delete(&self, seg: u64) -> Result<(), StoreError> {
        if self.active() == Some(seg) {
            return Ok(());
        }
        self.files
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&seg);
        let path = self.path(seg);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("cannot remove", &path, e)),
        }
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

impl Drop for BodyLog {
    fn drop(&mut self) {
        lock(&self.behind.state).1 = true;
        self.behind.wake.notify_one();
        if let Some(t) = self.behind_thread.take() {
            let _ = t.join();
        }
    }
}

/// The write-behind thread's loop (see [`WriteBehind`]).
fn write_behind(writer: &Mutex<Writer>, behind: &WriteBehind) {
    loop {
        {
            let mut st = lock(&behind.state);
            while st.0 < WRITE_BEHIND_BYTES && !st.1 {
                st = behind.wake.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            if st.1 {
                return;
            }
            st.0 = 0;
        }
        let file = lock(writer).active.as_ref().map(|(_, f, _)| Arc::clone(f));
        if let Some(f) = file {
            // Only a head start for the device: a failure here shows again at the real sync.
            let _ = f.sync_data();
        }
    }
}

/// The segment id of a file name `seg-<16 hex digits>`.
fn parse_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("seg-")?;
    (hex.len() == 16).then_some(())?;
    u64::from_str_radix(hex, 16).ok()
}

/// Checks the segment that was active at the last commit: its header, and the records past the
/// commit point `end` (written, never indexed), which are dropped with a log line. Returns the
/// length to keep and the highest lsn seen.
fn check_tail(file: &File, seg: u64, end: u64, len: u64) -> Result<(u64, u64), StoreError> {
    let mut header = [0u8; SEGMENT_HEADER as usize];
    if let Err(why) = file
        .read_exact_at(&mut header, 0)
        .map_err(|_| "short segment header")
        .and_then(|()| format::check_segment_header(&header, seg))
    {
        tracing::error!(
            segment = seg,
            error = why,
            "body-log segment header damaged"
        );
    }
    if len < end {
        tracing::error!(
            segment = seg,
            length = len,
            commit_point = end,
            "body-log segment shorter than its commit point: records past its end are set aside"
        );
        return Ok((len, 0));
    }
    let (mut at, mut max_lsn, mut dropped) = (end.max(SEGMENT_HEADER), 0u64, 0usize);
    while at < len {
        let mut h = [0u8; RECORD_HEADER];
        let why = match file.read_exact_at(&mut h, at) {
            Err(_) => "torn record header",
            Ok(()) => match format::parse_header(&h) {
                Err(why) => why,
                Ok(hd) => {
                    let rec_end = at + (RECORD_HEADER as u64) + u64::from(hd.payload_len);
                    let mut rec = vec![0u8; (rec_end.min(len) - at) as usize];
                    match file.read_exact_at(&mut rec, at) {
                        Ok(()) if rec_end <= len => match format::check_record(&rec) {
                            Ok(_) => {
                                max_lsn = max_lsn.max(hd.id.lsn);
                                dropped += 1;
                                at = rec_end;
                                continue;
                            }
                            Err(why) => why,
                        },
                        _ => "torn record",
                    }
                }
            },
        };
        tracing::warn!(
            segment = seg,
            offset = at,
            error = why,
            "torn or corrupt record at the body log's tail dropped"
        );
        break;
    }
    if dropped > 0 {
        tracing::warn!(
            segment = seg,
            offset = end,
            records = dropped,
            "records written after the last commit (never confirmed) dropped"
        );
    }
    Ok((end, max_lsn))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[u64]) -> BTreeSet<u64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn appends_roll_segments_and_read_back() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = BodyLog::open(dir.path(), None, &table(&[]), 1000).expect("open");
        let payloads: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; 100 + i as usize]).collect();
        let recs: Vec<Append<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| (7, i as u64 * 10, p.as_slice()))
            .collect();
        let locs = log.append(&recs).expect("append");
        // A record bigger than a segment gets one of its own.
        let big = vec![9u8; 5000];
        let big_loc = log.append(&[(7, 999, &big)]).expect("append big")[0];
        let synced = log.sync().expect("sync");
        assert!(synced.created.len() >= 4, "{:?}", synced.created);
        assert_eq!(synced.commit.next_lsn, 22);
        for (i, loc) in locs.iter().enumerate() {
            let got = log.read(loc, 7, i as u64 * 10).expect("io").expect("valid");
            assert_eq!(got, payloads[i]);
            assert!(log.read(loc, 8, i as u64 * 10).expect("io").is_err());
        }
        assert_eq!(log.read(&big_loc, 7, 999).expect("io").expect("ok"), big);
    }

    #[test]
    fn recovery_drops_the_uncommitted_tail_and_starts_a_new_segment() {
        let dir = tempfile::tempdir().expect("tmp");
        let (commit, created, loc) = {
            let log = BodyLog::open(dir.path(), None, &table(&[]), 1 << 20).expect("open");
            let loc = log.append(&[(1, 1, b"kept")]).expect("append")[0];
            let synced = log.sync().expect("sync");
            log.append(&[(1, 2, b"never indexed")]).expect("append");
            (synced.commit, synced.created, loc)
        };
        let seg_path = dir
            .path()
            .join(DIR)
            .join(format!("seg-{:016x}", commit.seg));
        // A torn record after the unindexed one.
        let f = OpenOptions::new()
            .append(true)
            .open(&seg_path)
            .expect("open");
        std::io::Write::write_all(&mut &f, &[1, 2, 3]).expect("write");
        // A segment created after the commit.
        std::fs::write(dir.path().join(DIR).join("seg-00000000000000ff"), b"junk").expect("junk");
        let log = BodyLog::open(
            dir.path(),
            Some(commit),
            &created.iter().copied().collect(),
            1 << 20,
        )
        .expect("reopen");
        assert_eq!(log.segments(), [commit.seg]);
        assert_eq!(
            std::fs::metadata(&seg_path).expect("meta").len(),
            commit.end
        );
        assert_eq!(log.read(&loc, 1, 1).expect("io").expect("ok"), &b"kept"[..]);
        let next = log.append(&[(1, 3, b"new")]).expect("append")[0];
        assert!(next.seg > 0xff && next.lsn > commit.next_lsn, "{next:?}");
    }
}
