//! Opening the body log after a crash or a clean stop: which segment files to keep, where the
//! log really ends, and which index records past the last checkpoint must be replayed.
//!
//! Segments below the one holding the checkpoint's commit point are kept as they are (they hold
//! nothing to replay). From the commit point on, records are read one by one across segments of
//! consecutive ids: each must parse, pass its CRC and carry an lsn above the previous one. Chunk
//! records are skipped (their index entries, if any, are in index records); index records are
//! returned for replay. The first torn, short or corrupt record (or a missing segment in the
//! sequence) ends the log: it is logged with segment and offset, the file is cut there and every
//! later segment file is deleted. Nothing here panics on any byte.

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::format::{self, KIND_INDEX, RECORD_HEADER, SEGMENT_HEADER};
use super::{CommitPoint, io_err, parse_name, segment_path};
use crate::storage::StoreError;

/// An index record found past the checkpoint, to apply to the index again.
#[derive(Debug)]
pub struct Replay {
    /// Where the log stands just after it (the commit point of its flush).
    pub commit: CommitPoint,
    /// Its offset in its segment (for log lines).
    pub offset: u64,
    /// Its payload (the store decodes it).
    pub payload: Bytes,
}

/// What the scan found.
pub(super) struct Opened {
    pub(super) files: HashMap<u64, Arc<File>>,
    pub(super) sizes: HashMap<u64, u64>,
    pub(super) next_seg: u64,
    pub(super) next_lsn: u64,
    pub(super) replay: Vec<Replay>,
}

fn open_rw(path: &Path) -> Result<(File, u64), StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| io_err("cannot open", path, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot stat", path, e))?
        .len();
    Ok((file, len))
}

/// Opens the segment files of `dir` given sled's last durable commit point. See the module docs.
pub(super) fn open_segments(
    dir: &Path,
    commit: CommitPoint,
    table: &BTreeSet<u64>,
) -> Result<Opened, StoreError> {
    let mut ids = BTreeSet::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_err("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_err("cannot list", dir, e))?;
        match parse_name(&entry.file_name().to_string_lossy()) {
            Some(id) => {
                ids.insert(id);
            }
            None => {
                tracing::warn!(file = %entry.path().display(), "unknown file in the body-log folder left alone");
            }
        }
    }
    let mut out = Opened {
        files: HashMap::new(),
        sizes: HashMap::new(),
        next_seg: ids
            .last()
            .copied()
            .unwrap_or(0)
            .max(commit.seg)
            .saturating_add(1),
        next_lsn: commit.next_lsn.max(1),
        replay: Vec::new(),
    };
    for &id in ids.range(..commit.seg) {
        if !table.contains(&id) {
            // Kept all the same: the store deletes it if nothing live points into it.
            tracing::warn!(
                segment = id,
                "body-log segment missing from the segment table"
            );
        }
        let (file, len) = open_rw(&segment_path(dir, id))?;
        out.sizes.insert(id, len);
        out.files.insert(id, Arc::new(file));
    }
    for id in table.range(..commit.seg).filter(|id| !ids.contains(id)) {
        tracing::error!(
            segment = id,
            "body-log segment missing: the messages it held are set aside"
        );
    }
    let mut last_lsn = commit.next_lsn.saturating_sub(1);
    let mut expect = commit.seg.max(1);
    let mut ended = false;
    if !ids.contains(&commit.seg) && commit.end > SEGMENT_HEADER {
        tracing::error!(
            segment = commit.seg,
            "body-log segment of the last checkpoint missing: the messages it held are set aside"
        );
        ended = true;
    }
    for id in ids.range(commit.seg..).copied().collect::<Vec<_>>() {
        let path = segment_path(dir, id);
        if !ended && id != expect {
            tracing::error!(
                segment = expect,
                "body-log segment missing after the last checkpoint: the log ends before it"
            );
            ended = true;
        }
        if ended {
            tracing::warn!(
                segment = id,
                "body-log segment past the end of the log dropped"
            );
            std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, e))?;
            continue;
        }
        let (file, mut len) = open_rw(&path)?;
        let at_commit = id == commit.seg && commit.end > SEGMENT_HEADER;
        let header_ok = check_header(&file, id);
        if !header_ok && !at_commit {
            // Created after the checkpoint and torn before its header was synced.
            tracing::warn!(
                segment = id,
                "body-log segment with a damaged header past the checkpoint dropped"
            );
            drop(file);
            std::fs::remove_file(&path).map_err(|e| io_err("cannot remove", &path, e))?;
            ended = true;
            continue;
        }
        let start = if at_commit {
            commit.end
        } else {
            SEGMENT_HEADER
        };
        if len < start {
            tracing::error!(
                segment = id,
                length = len,
                commit_point = start,
                "body-log segment shorter than its commit point: records past its end are set aside"
            );
            ended = true;
        } else {
            let end = scan_records(&file, id, start, len, &mut last_lsn, &mut out.replay);
            if end < len {
                file.set_len(end)
                    .map_err(|e| io_err("cannot truncate", &path, e))?;
                len = end;
                ended = true;
            }
        }
        out.sizes.insert(id, len);
        out.files.insert(id, Arc::new(file));
        expect = id.saturating_add(1);
    }
    out.next_lsn = out.next_lsn.max(last_lsn.saturating_add(1));
    Ok(out)
}

/// Checks a segment's header, logging what is wrong.
fn check_header(file: &File, seg: u64) -> bool {
    let mut header = [0u8; SEGMENT_HEADER as usize];
    match file
        .read_exact_at(&mut header, 0)
        .map_err(|_| "short segment header")
        .and_then(|()| format::check_segment_header(&header, seg))
    {
        Ok(()) => true,
        Err(why) => {
            tracing::error!(
                segment = seg,
                error = why,
                "body-log segment header damaged"
            );
            false
        }
    }
}

/// Reads the records of segment `seg` from `start` to `len`; returns where the valid ones end
/// (`len` unless one is torn or corrupt, which is logged).
fn scan_records(
    file: &File,
    seg: u64,
    start: u64,
    len: u64,
    last_lsn: &mut u64,
    replay: &mut Vec<Replay>,
) -> u64 {
    let mut at = start;
    while at < len {
        let why = match read_record(file, at, len) {
            Ok((hd, rec)) if hd.id.lsn > *last_lsn => {
                *last_lsn = hd.id.lsn;
                let rec_end = at + rec.len() as u64;
                if hd.kind == KIND_INDEX {
                    let mut rec = Bytes::from(rec);
                    replay.push(Replay {
                        commit: CommitPoint {
                            seg,
                            end: rec_end,
                            next_lsn: hd.id.lsn.saturating_add(1),
                        },
                        offset: at,
                        payload: rec.split_off(RECORD_HEADER),
                    });
                }
                at = rec_end;
                continue;
            }
            Ok(_) => "record lsn not above the previous one",
            Err(why) => why,
        };
        tracing::warn!(
            segment = seg,
            offset = at,
            error = why,
            "torn or corrupt record: the body log ends here (later records dropped)"
        );
        return at;
    }
    len
}

/// Reads and checks the record at `at` (the file being `len` bytes long).
fn read_record(file: &File, at: u64, len: u64) -> Result<(format::Header, Vec<u8>), &'static str> {
    let mut h = [0u8; RECORD_HEADER];
    file.read_exact_at(&mut h, at)
        .map_err(|_| "torn record header")?;
    let hd = format::parse_header(&h)?;
    let rec_end = at + (RECORD_HEADER as u64) + u64::from(hd.payload_len);
    if rec_end > len {
        return Err("torn record");
    }
    let mut rec = vec![0u8; (rec_end - at) as usize];
    file.read_exact_at(&mut rec, at)
        .map_err(|_| "torn record")?;
    let hd = format::check_record(&rec)?;
    Ok((hd, rec))
}
