//! Delayed messages on disk with memory that does not grow with their number: a memtable
//! (up to [`MEMTABLE_BYTES`]) backed by a write-ahead log, spilled into immutable sorted run
//! files with a sparse index (one entry per [`INDEX_EVERY`] records) in their footer. Reads
//! merge the memtable and every run lazily (a small buffer per run), so a page costs what it
//! returns plus one block per run.
//!
//! Removal is a watermark: the broker releases delayed messages in key order and a new key is
//! always above every released one (its due time is in the future), so "removed" is "at or
//! below the watermark". A run whose keys are all at or below it is deleted. Sled was tried
//! first: it costs ~165 bytes of RSS per entry (1M random-order inserts, 16 MiB cache: 165 MB),
//! far from a 10M-message target.
//!
//! Files in the directory: `wal` (records of the memtable), `run-<n>` (sorted records, then the
//! index, then the index length and data length, u64 each), `watermark` (u128, written with
//! rename). Records: key (16 bytes, big-endian), value length (u32), value. [`DelayedLog::sync`]
//! (the group commit) makes every put that returned before it durable.

use bytes::Bytes;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{DelayKey, DelayedPage, StoreError};

/// Memtable size that triggers a spill into a run.
pub const MEMTABLE_BYTES: usize = 8 << 20;
/// Records per sparse-index entry.
pub const INDEX_EVERY: usize = 256;
/// Bytes read from a run at a time.
const BLOCK: usize = 32 << 10;

fn io(what: &str, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("delayed messages: {what}: {e}"))
}

#[derive(Debug)]
struct Run {
    path: PathBuf,
    file: File,
    max: u128,
    data_len: u64,
    /// (first key of every INDEX_EVERY-th record, its offset).
    index: Vec<(u128, u64)>,
}

#[derive(Debug)]
struct Inner {
    mem: BTreeMap<u128, Bytes>,
    mem_bytes: usize,
    wal: BufWriter<File>,
    runs: Vec<Run>,
    next_run: u64,
    watermark: u128,
    watermark_dirty: bool,
    /// Puts since the last sync (a flush with none costs no fsync).
    wal_dirty: bool,
}

/// See the module docs.
#[derive(Debug)]
pub struct DelayedLog {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

fn encode_record(out: &mut Vec<u8>, key: u128, value: &[u8]) {
    out.extend_from_slice(&key.to_be_bytes());
    out.extend_from_slice(&(value.len() as u32).to_be_bytes());
    out.extend_from_slice(value);
}

/// Decodes the record at the start of `b`: (key, value range, record length).
fn decode_record(b: &[u8]) -> Option<(u128, std::ops::Range<usize>, usize)> {
    let key = u128::from_be_bytes(b.get(..16)?.try_into().ok()?);
    let len = u32::from_be_bytes(b.get(16..20)?.try_into().ok()?) as usize;
    b.get(20..20 + len)?;
    Some((key, 20..20 + len, 20 + len))
}

impl DelayedLog {
    /// Opens (creating) the directory: runs, the watermark, and the memtable from the WAL.
    pub fn open(dir: &Path) -> Result<DelayedLog, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| io("create dir", e))?;
        let watermark = match std::fs::read(dir.join("watermark")) {
            Ok(b) if b.len() == 16 => u128::from_be_bytes(b.try_into().unwrap_or([0; 16])),
            _ => 0,
        };
        let mut runs = Vec::new();
        let mut next_run = 1;
        for entry in std::fs::read_dir(dir).map_err(|e| io("list", e))? {
            let entry = entry.map_err(|e| io("list", e))?;
            let name = entry.file_name().to_string_lossy().to_string();
            let Some(n) = name
                .strip_prefix("run-")
                .and_then(|n| n.parse::<u64>().ok())
            else {
                if name.ends_with(".tmp") {
                    let _ = std::fs::remove_file(entry.path());
                }
                continue;
            };
            next_run = next_run.max(n + 1);
            match open_run(&entry.path()) {
                Ok(r) if r.max <= watermark => {
                    let _ = std::fs::remove_file(&r.path);
                }
                Ok(r) => runs.push(r),
                Err(e) => {
                    tracing::error!(run = %name, error = %e, "unreadable delayed run skipped")
                }
            }
        }
        let wal_path = dir.join("wal");
        let mut mem = BTreeMap::new();
        let mut mem_bytes = 0;
        if let Ok(mut f) = File::open(&wal_path) {
            let mut b = Vec::new();
            f.read_to_end(&mut b).map_err(|e| io("read wal", e))?;
            let mut at = 0;
            // A torn last record (crash mid-append) ends the replay.
            while let Some((key, value, len)) = b.get(at..).and_then(decode_record) {
                let v = Bytes::copy_from_slice(&b[at..][value]);
                at += len;
                if key > watermark {
                    mem_bytes += v.len() + 48;
                    mem.insert(key, v);
                }
            }
        }
        // The memtable is rewritten to a fresh WAL (dropping a torn tail and released keys).
        let tmp = dir.join("wal.tmp");
        {
            let mut w = BufWriter::new(File::create(&tmp).map_err(|e| io("create wal", e))?);
            let mut rec = Vec::new();
            for (k, v) in &mem {
                rec.clear();
                encode_record(&mut rec, *k, v);
                w.write_all(&rec).map_err(|e| io("write wal", e))?;
            }
            w.into_inner()
                .map_err(|e| io("write wal", e.into_error()))?
                .sync_data()
                .map_err(|e| io("sync wal", e))?;
        }
        std::fs::rename(&tmp, &wal_path).map_err(|e| io("rename wal", e))?;
        let wal = OpenOptions::new()
            .append(true)
            .open(&wal_path)
            .map_err(|e| io("open wal", e))?;
        Ok(DelayedLog {
            dir: dir.to_path_buf(),
            inner: Mutex::new(Inner {
                mem,
                mem_bytes,
                wal: BufWriter::with_capacity(256 << 10, wal),
                runs,
                next_run,
                watermark,
                watermark_dirty: false,
                wal_dirty: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores a record (durable at the next [`DelayedLog::sync`]); a full memtable is spilled
    /// into a run first.
    pub fn put(&self, key: DelayKey, value: &[u8]) -> Result<(), StoreError> {
        let key = u128::from_be_bytes(key);
        let mut st = self.lock();
        if key <= st.watermark {
            return Err(StoreError::Io(
                "delayed message key at or below the released watermark".into(),
            ));
        }
        let mut rec = Vec::with_capacity(20 + value.len());
        encode_record(&mut rec, key, value);
        st.wal.write_all(&rec).map_err(|e| io("append wal", e))?;
        st.wal_dirty = true;
        st.mem_bytes += value.len() + 48;
        st.mem.insert(key, Bytes::copy_from_slice(value));
        if st.mem_bytes >= MEMTABLE_BYTES {
            self.spill(&mut st)?;
        }
        Ok(())
    }

    /// Writes the memtable as a run (synced), then empties the WAL.
    fn spill(&self, st: &mut Inner) -> Result<(), StoreError> {
        let n = st.next_run;
        st.next_run += 1;
        let path = self.dir.join(format!("run-{n:012}"));
        let tmp = self.dir.join(format!("run-{n:012}.tmp"));
        let mut index = Vec::new();
        let mut data_len = 0u64;
        let mut max = 0u128;
        {
            let mut w = BufWriter::with_capacity(
                256 << 10,
                File::create(&tmp).map_err(|e| io("create run", e))?,
            );
            let mut rec = Vec::new();
            for (i, (k, v)) in st.mem.iter().enumerate() {
                if i % INDEX_EVERY == 0 {
                    index.push((*k, data_len));
                }
                rec.clear();
                encode_record(&mut rec, *k, v);
                w.write_all(&rec).map_err(|e| io("write run", e))?;
                data_len += rec.len() as u64;
                max = *k;
            }
            for (k, off) in &index {
                w.write_all(&k.to_be_bytes())
                    .and_then(|()| w.write_all(&off.to_be_bytes()))
                    .map_err(|e| io("write run", e))?;
            }
            w.write_all(&(index.len() as u64).to_be_bytes())
                .and_then(|()| w.write_all(&data_len.to_be_bytes()))
                .map_err(|e| io("write run", e))?;
            w.into_inner()
                .map_err(|e| io("write run", e.into_error()))?
                .sync_data()
                .map_err(|e| io("sync run", e))?;
        }
        std::fs::rename(&tmp, &path).map_err(|e| io("rename run", e))?;
        let file = File::open(&path).map_err(|e| io("open run", e))?;
        st.runs.push(Run {
            path,
            file,
            max,
            data_len,
            index,
        });
        // The run holds everything the WAL did: empty it.
        st.wal.flush().map_err(|e| io("flush wal", e))?;
        let f = st.wal.get_ref();
        f.set_len(0).map_err(|e| io("truncate wal", e))?;
        f.sync_data().map_err(|e| io("sync wal", e))?;
        st.mem.clear();
        st.mem_bytes = 0;
        Ok(())
    }

    /// Records that every key up to `key` was released.
    pub fn release_upto(&self, key: DelayKey) {
        let key = u128::from_be_bytes(key);
        let mut st = self.lock();
        if key > st.watermark {
            st.watermark = key;
            st.watermark_dirty = true;
            let wm = st.watermark;
            st.mem.retain(|k, _| *k > wm);
        }
    }

    /// Makes every put so far durable, persists the watermark and deletes released runs.
    pub fn sync(&self) -> Result<(), StoreError> {
        let mut st = self.lock();
        if st.wal_dirty {
            st.wal.flush().map_err(|e| io("flush wal", e))?;
            st.wal
                .get_ref()
                .sync_data()
                .map_err(|e| io("sync wal", e))?;
            st.wal_dirty = false;
        }
        if st.watermark_dirty {
            let tmp = self.dir.join("watermark.tmp");
            let mut f = File::create(&tmp).map_err(|e| io("write watermark", e))?;
            f.write_all(&st.watermark.to_be_bytes())
                .and_then(|()| f.sync_data())
                .map_err(|e| io("write watermark", e))?;
            std::fs::rename(&tmp, self.dir.join("watermark"))
                .map_err(|e| io("rename watermark", e))?;
            st.watermark_dirty = false;
            let wm = st.watermark;
            let (gone, keep): (Vec<Run>, Vec<Run>) = std::mem::take(&mut st.runs)
                .into_iter()
                .partition(|r| r.max <= wm);
            st.runs = keep;
            for r in gone {
                let _ = std::fs::remove_file(&r.path);
            }
        }
        Ok(())
    }

    /// Up to `limit` records with keys at or above `from` (and above the watermark), in key
    /// order.
    pub fn read(&self, from: DelayKey, limit: usize) -> Result<DelayedPage, StoreError> {
        let st = self.lock();
        let from = u128::from_be_bytes(from).max(st.watermark.saturating_add(1));
        let mut sources: Vec<Source<'_>> = Vec::new();
        sources.push(Source::Mem(Box::new(
            st.mem.range(from..).map(|(k, v)| (*k, v.clone())),
        )));
        for r in st.runs.iter().filter(|r| r.max >= from) {
            let start = match r.index.partition_point(|(k, _)| *k <= from) {
                0 => 0,
                i => r.index[i - 1].1,
            };
            sources.push(Source::Run(RunReader {
                run: r,
                pos: start,
                buf: Vec::new(),
                at: 0,
            }));
        }
        let mut heap = BinaryHeap::new();
        for (i, s) in sources.iter_mut().enumerate() {
            if let Some((k, v)) = s.next_from(from)? {
                heap.push(std::cmp::Reverse((k, i, v)));
            }
        }
        let mut entries = Vec::with_capacity(limit.min(16_384));
        let mut resume = None;
        while let Some(std::cmp::Reverse((k, i, v))) = heap.pop() {
            if entries.len() >= limit {
                resume = Some(k.to_be_bytes());
                break;
            }
            entries.push((k.to_be_bytes(), v));
            if let Some((k2, v2)) = sources[i].next_from(from)? {
                heap.push(std::cmp::Reverse((k2, i, v2)));
            }
        }
        Ok(DelayedPage {
            entries,
            complete: resume.is_none(),
            resume,
        })
    }
}

fn open_run(path: &Path) -> Result<Run, StoreError> {
    let file = File::open(path).map_err(|e| io("open run", e))?;
    let size = file.metadata().map_err(|e| io("stat run", e))?.len();
    let mut tail = [0u8; 16];
    if size < 16 {
        return Err(StoreError::Io("delayed run too short".into()));
    }
    file.read_exact_at(&mut tail, size - 16)
        .map_err(|e| io("read run", e))?;
    let n = u64::from_be_bytes(tail[..8].try_into().unwrap_or_default());
    let data_len = u64::from_be_bytes(tail[8..].try_into().unwrap_or_default());
    if data_len + n * 24 + 16 != size {
        return Err(StoreError::Io("delayed run footer does not match".into()));
    }
    let mut raw = vec![0u8; (n * 24) as usize];
    file.read_exact_at(&mut raw, data_len)
        .map_err(|e| io("read run", e))?;
    let index: Vec<(u128, u64)> = raw
        .chunks_exact(24)
        .map(|c| {
            (
                u128::from_be_bytes(c[..16].try_into().unwrap_or_default()),
                u64::from_be_bytes(c[16..].try_into().unwrap_or_default()),
            )
        })
        .collect();
    // The last key: read forward from the last index entry.
    let mut max = 0u128;
    if let Some(&(_, off)) = index.last() {
        let mut r = RunReaderOwned {
            file: &file,
            data_len,
            pos: off,
            buf: Vec::new(),
            at: 0,
        };
        while let Some((k, _)) = r.next()? {
            max = k;
        }
    }
    Ok(Run {
        path: path.to_path_buf(),
        file,
        max,
        data_len,
        index,
    })
}

/// A lazy reader over one run's records.
struct RunReader<'a> {
    run: &'a Run,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

struct RunReaderOwned<'a> {
    file: &'a File,
    data_len: u64,
    pos: u64,
    buf: Vec<u8>,
    at: usize,
}

/// Reads the next record from `file` (data ends at `data_len`), refilling `buf` as needed.
fn next_record(
    file: &File,
    data_len: u64,
    pos: &mut u64,
    buf: &mut Vec<u8>,
    at: &mut usize,
) -> Result<Option<(u128, Bytes)>, StoreError> {
    loop {
        if let Some((k, v, len)) = buf.get(*at..).and_then(decode_record) {
            let value = Bytes::copy_from_slice(&buf[*at..][v]);
            *at += len;
            return Ok(Some((k, value)));
        }
        if *pos >= data_len {
            return Ok(None);
        }
        // Keep the partial record, read the next block after it.
        buf.drain(..*at);
        *at = 0;
        let want = BLOCK.max(buf.len() + 20).min((data_len - *pos) as usize);
        let old = buf.len();
        buf.resize(old + want, 0);
        file.read_exact_at(&mut buf[old..], *pos)
            .map_err(|e| io("read run", e))?;
        *pos += want as u64;
        // A record larger than a block: keep reading until it is whole.
        if let Some(len) = buf
            .get(16..20)
            .map(|l| 20 + u32::from_be_bytes(l.try_into().unwrap_or_default()) as usize)
            && len > buf.len()
            && *pos < data_len
        {
            let more = (len - buf.len()).min((data_len - *pos) as usize);
            let old = buf.len();
            buf.resize(old + more, 0);
            file.read_exact_at(&mut buf[old..], *pos)
                .map_err(|e| io("read run", e))?;
            *pos += more as u64;
        }
    }
}

impl RunReaderOwned<'_> {
    fn next(&mut self) -> Result<Option<(u128, Bytes)>, StoreError> {
        next_record(
            self.file,
            self.data_len,
            &mut self.pos,
            &mut self.buf,
            &mut self.at,
        )
    }
}

enum Source<'a> {
    Mem(Box<dyn Iterator<Item = (u128, Bytes)> + 'a>),
    Run(RunReader<'a>),
}

impl Source<'_> {
    /// The next record at or above `from`.
    fn next_from(&mut self, from: u128) -> Result<Option<(u128, Bytes)>, StoreError> {
        loop {
            let next = match self {
                Source::Mem(it) => it.next(),
                Source::Run(r) => next_record(
                    &r.run.file,
                    r.run.data_len,
                    &mut r.pos,
                    &mut r.buf,
                    &mut r.at,
                )?,
            };
            match next {
                Some((k, _)) if k < from => continue,
                other => return Ok(other),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u128) -> DelayKey {
        n.to_be_bytes()
    }

    #[test]
    fn merges_runs_and_memtable_in_order_across_reopen_and_watermark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = DelayedLog::open(dir.path()).expect("open");
        // Enough for several runs, keys interleaved across them.
        let big = vec![7u8; 4000];
        let n = (MEMTABLE_BYTES / 4000) as u128 * 3 + 10;
        for i in 0..n {
            let k = (i * 7919) % n + 1;
            log.put(key(k), &big[..(k % 50) as usize + 1]).expect("put");
        }
        log.sync().expect("sync");
        let page = log.read(key(0), 100).expect("read");
        let keys: Vec<u128> = page
            .entries
            .iter()
            .map(|(k, _)| u128::from_be_bytes(*k))
            .collect();
        assert_eq!(keys, (1..=100).collect::<Vec<_>>());
        assert_eq!(page.resume, Some(key(101)));
        assert_eq!(page.entries[4].1.len(), 6);
        log.release_upto(key(n - 5));
        log.sync().expect("sync");
        drop(log);
        let log = DelayedLog::open(dir.path()).expect("reopen");
        let page = log.read(key(0), 100).expect("read");
        let keys: Vec<u128> = page
            .entries
            .iter()
            .map(|(k, _)| u128::from_be_bytes(*k))
            .collect();
        assert_eq!(keys, ((n - 4)..=n).collect::<Vec<_>>());
        assert!(page.complete);
        assert!(log.put(key(3), b"x").is_err(), "below the watermark");
    }
}
