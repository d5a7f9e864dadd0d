//! Emptied segment files kept for reuse: a segment the checkpointer deletes is renamed aside
//! (`free-<id>`), and the next new segment takes such a file, renamed to its own id, instead of
//! creating one. Writing over blocks a file already has makes every `fdatasync` cheaper than
//! appending to a file: an append changes the file's size, so each sync also commits the file
//! system's journal (1 MB and a sync: 1.25-1.50 ms overwriting, 2.07-2.53 ms appending, on this
//! project's machine), and scenario 4k is bound by those syncs (docs/STORAGE.md).
//!
//! A reused file holds stale records past what is written to it now. The writer cuts it to its
//! real end when it leaves it (`BodyLog::leave_active`), before anything of a later segment is
//! synced, because the scan at startup reads a segment to its file length and takes a record
//! that does not belong (a stale one has an lsn below its predecessor's) for the end of the log.
//! The active segment's stale tail is cut by that same scan after a crash (a torn tail), or at a
//! clean close. The pool is bounded in files and bytes, and emptied when a checkpoint finds it
//! unused since the one before, so that the data directory shrinks after a drain; files left in
//! it by a crash are deleted at open.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::lock;

/// At most this many files wait for reuse.
const MAX_FILES: usize = 64;

/// Prefix of a file waiting for reuse.
const PREFIX: &str = "free-";

#[derive(Debug, Default)]
struct Files {
    /// Paths and sizes, oldest first.
    free: Vec<(PathBuf, u64)>,
    bytes: u64,
    /// A file was taken since the last [`Pool::trim`].
    taken: bool,
}

/// The files waiting for reuse in one body-log folder.
#[derive(Debug)]
pub(super) struct Pool {
    dir: PathBuf,
    /// Bytes of files the pool keeps at most.
    max_bytes: u64,
    files: Mutex<Files>,
}

impl Pool {
    /// A pool for `dir` keeping at most `max_bytes` of files; deletes what a previous run left
    /// in it.
    pub(super) fn open(dir: &Path, max_bytes: u64) -> Pool {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if is_free(&e.file_name().to_string_lossy()) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Pool {
            dir: dir.to_path_buf(),
            max_bytes,
            files: Mutex::new(Files::default()),
        }
    }

    /// Keeps the file of deleted segment `seg` (at `path`, `size` bytes) for reuse, if there
    /// is room; false when the caller should delete it.
    pub(super) fn give(&self, seg: u64, path: &Path, size: u64) -> bool {
        let mut f = lock(&self.files);
        if f.free.len() >= MAX_FILES || f.bytes + size > self.max_bytes {
            return false;
        }
        let free = self.dir.join(format!("{PREFIX}{seg:016x}"));
        if std::fs::rename(path, &free).is_err() {
            return false;
        }
        f.bytes += size;
        f.free.push((free, size));
        true
    }

    /// A file for a new segment at `path`, renamed from the pool (its old bytes still in it),
    /// or `None` when the pool is empty or the rename fails.
    pub(super) fn take(&self, path: &Path) -> Option<File> {
        let free = {
            let mut f = lock(&self.files);
            let (free, size) = f.free.pop()?;
            f.bytes -= size;
            f.taken = true;
            free
        };
        if std::fs::rename(&free, path).is_err() {
            let _ = std::fs::remove_file(&free);
            return None;
        }
        OpenOptions::new().read(true).write(true).open(path).ok()
    }

    /// Deletes every file waiting, unless one was taken since the last call (the checkpointer
    /// calls this once per checkpoint).
    pub(super) fn trim(&self) {
        let gone = {
            let mut f = lock(&self.files);
            if std::mem::take(&mut f.taken) {
                return;
            }
            f.bytes = 0;
            std::mem::take(&mut f.free)
        };
        for (path, _) in gone {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Deletes every file waiting (a clean close).
    pub(super) fn clear(&self) {
        lock(&self.files).taken = false;
        self.trim();
    }

    /// Files and bytes waiting.
    #[cfg(test)]
    pub(super) fn held(&self) -> (usize, u64) {
        let f = lock(&self.files);
        (f.free.len(), f.bytes)
    }
}

/// Whether `name` is a file waiting for reuse.
fn is_free(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}
