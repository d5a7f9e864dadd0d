//! Spill files: where a queue's transient messages wait on disk while its backlog is larger
//! than its memory window. A spill is a FIFO, not a map: records are appended at the tail and
//! read back, in order, from the head, so it costs one sequential write and one sequential read
//! per message and holds nothing in memory but a write buffer. The file is truncated whenever
//! the reader catches up, and emptied at every start (transient messages do not survive).
//!
//! Record layout: `u32 length (BE) | u64 id (BE) | message record` (see [`super::record`]).

use super::{MessageRecord, MessageView, StoreError, record};
use bytes::Bytes;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

/// A FIFO of paged-out transient messages for one queue.
pub trait Spill: Send + Sync + 'static {
    /// Appends a message.
    fn push(&mut self, id: u64, m: MessageView<'_>) -> Result<(), StoreError>;
    /// Takes up to `limit` messages from the head, in the order they were pushed.
    fn pop(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError>;
    /// Up to `limit` messages from the head, in the order they were pushed, left in place
    /// (browsing).
    fn peek(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError>;
    /// Messages held.
    fn len(&self) -> usize;
    /// True when empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Drops every message (purge).
    fn clear(&mut self) -> Result<(), StoreError>;
}

/// Write buffer size: the file is written in chunks of this size.
const WRITE_CHUNK: usize = 256 * 1024;
/// Read size when refilling.
const READ_CHUNK: usize = 1024 * 1024;

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// A spill in a file on disk.
pub struct FileSpill {
    path: PathBuf,
    file: File,
    /// Bytes written to the file.
    written: u64,
    /// Bytes of the file already read back.
    read: u64,
    /// Appended, not yet written.
    buf: Vec<u8>,
    count: usize,
}

impl FileSpill {
    /// Creates (or empties) the spill file at `path`.
    pub fn create(path: PathBuf) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(io)?;
        Ok(FileSpill {
            path,
            file,
            written: 0,
            read: 0,
            buf: Vec::with_capacity(WRITE_CHUNK),
            count: 0,
        })
    }

    fn write_out(&mut self) -> Result<(), StoreError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file
            .write_all_at(&self.buf, self.written)
            .map_err(io)?;
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Reads up to `limit` records from byte `from` on; returns them and the byte after the
    /// last one.
    fn read_from(
        &mut self,
        from: u64,
        limit: usize,
    ) -> Result<(Vec<(u64, MessageRecord)>, u64), StoreError> {
        let mut out = Vec::new();
        let mut read = from;
        self.write_out()?;
        while out.len() < limit && read < self.written {
            let want =
                usize::try_from((self.written - read).min(READ_CHUNK as u64)).unwrap_or(READ_CHUNK);
            let mut chunk = vec![0u8; want];
            self.file.read_exact_at(&mut chunk, read).map_err(io)?;
            let chunk = Bytes::from(chunk);
            let mut at = 0usize;
            while out.len() < limit && at + 4 <= chunk.len() {
                let mut len4 = [0u8; 4];
                len4.copy_from_slice(&chunk[at..at + 4]);
                let len = u32::from_be_bytes(len4) as usize;
                if len < 8 {
                    return Err(StoreError::Corrupt {
                        key: self.path.display().to_string(),
                        reason: "spill record shorter than its id".into(),
                    });
                }
                if at + 4 + len > chunk.len() {
                    if at == 0 {
                        // A record larger than the read chunk: read exactly it.
                        let mut big = vec![0u8; 4 + len];
                        self.file.read_exact_at(&mut big, read).map_err(io)?;
                        let big = Bytes::from(big);
                        let mut id8 = [0u8; 8];
                        id8.copy_from_slice(&big[4..12]);
                        let rec = record::decode_message(big.slice(12..)).map_err(|e| {
                            StoreError::Corrupt {
                                key: self.path.display().to_string(),
                                reason: e.0.to_string(),
                            }
                        })?;
                        out.push((u64::from_be_bytes(id8), rec));
                        at = 4 + len;
                    }
                    break;
                }
                let mut id8 = [0u8; 8];
                id8.copy_from_slice(&chunk[at + 4..at + 12]);
                let rec =
                    record::decode_message(chunk.slice(at + 12..at + 4 + len)).map_err(|e| {
                        StoreError::Corrupt {
                            key: self.path.display().to_string(),
                            reason: e.0.to_string(),
                        }
                    })?;
                out.push((u64::from_be_bytes(id8), rec));
                at += 4 + len;
            }
            read += at as u64;
            if at == 0 {
                break;
            }
        }
        Ok((out, read))
    }
}

impl Drop for FileSpill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Spill for FileSpill {
    fn push(&mut self, id: u64, m: MessageView<'_>) -> Result<(), StoreError> {
        let len = 8 + record::message_len(&m);
        self.buf
            .extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        self.buf.extend_from_slice(&id.to_be_bytes());
        record::encode_message_into(&m, &mut self.buf);
        self.count += 1;
        if self.buf.len() >= WRITE_CHUNK {
            self.write_out()?;
        }
        Ok(())
    }

    fn pop(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        let (out, read) = self.read_from(self.read, limit)?;
        self.read = read;
        self.count = self.count.saturating_sub(out.len());
        if self.read >= self.written && self.buf.is_empty() {
            // Caught up: start the file over so it never grows past one backlog.
            self.file.set_len(0).map_err(io)?;
            self.read = 0;
            self.written = 0;
        }
        Ok(out)
    }

    fn peek(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        Ok(self.read_from(self.read, limit)?.0)
    }

    fn len(&self) -> usize {
        self.count
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.file.set_len(0).map_err(io)?;
        self.read = 0;
        self.written = 0;
        self.count = 0;
        Ok(())
    }
}

/// A spill in memory (for the in-memory store and tests).
#[derive(Default)]
pub struct MemorySpill {
    items: VecDeque<(u64, MessageRecord)>,
}

impl Spill for MemorySpill {
    fn push(&mut self, id: u64, m: MessageView<'_>) -> Result<(), StoreError> {
        self.items.push_back((id, MessageRecord::from_view(&m)));
        Ok(())
    }

    fn pop(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        let n = limit.min(self.items.len());
        Ok(self.items.drain(..n).collect())
    }

    fn peek(&mut self, limit: usize) -> Result<Vec<(u64, MessageRecord)>, StoreError> {
        Ok(self.items.iter().take(limit).cloned().collect())
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn clear(&mut self) -> Result<(), StoreError> {
        self.items.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64, size: usize) -> MessageRecord {
        MessageRecord {
            exchange: "x".into(),
            routing_key: format!("k{i}"),
            properties: Bytes::from_static(&[0, 0]),
            meta: Bytes::from(i.to_be_bytes().to_vec()),
            body: Bytes::from(vec![(i % 251) as u8; size]),
        }
    }

    fn fifo_round_trip(s: &mut dyn Spill) {
        for i in 0..5000u64 {
            s.push(i, rec(i, (i as usize * 37) % 3000).view())
                .expect("push");
        }
        // A record larger than the read chunk.
        s.push(5000, rec(5000, 3 * READ_CHUNK).view())
            .expect("push big");
        assert_eq!(s.len(), 5001);
        let mut next = 0u64;
        while !s.is_empty() {
            // A peek sees what the next pop takes, and takes nothing.
            let peeked: Vec<u64> = s.peek(5).expect("peek").iter().map(|m| m.0).collect();
            let want: Vec<u64> = (next..(next + 5).min(5001)).collect();
            assert_eq!(peeked, want);
            for (id, r) in s.pop(777).expect("pop") {
                assert_eq!(id, next);
                assert_eq!(
                    r,
                    rec(
                        id,
                        if id == 5000 {
                            3 * READ_CHUNK
                        } else {
                            (id as usize * 37) % 3000
                        }
                    )
                );
                next += 1;
            }
        }
        assert_eq!(next, 5001);
        // Reused after catching up, and cleared.
        s.push(7, rec(7, 10).view()).expect("push");
        s.clear().expect("clear");
        assert!(s.pop(10).expect("pop").is_empty());
    }

    #[test]
    fn file_spill_is_a_fifo_and_starts_over() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("q.spill");
        let mut s = FileSpill::create(path.clone()).expect("create");
        fifo_round_trip(&mut s);
        assert_eq!(
            std::fs::metadata(&path).expect("meta").len(),
            0,
            "truncated when caught up"
        );
        drop(s);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn memory_spill_is_a_fifo() {
        fifo_round_trip(&mut MemorySpill::default());
    }
}
