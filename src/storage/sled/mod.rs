//! [`SledStore`]: the on-disk [`Store`]: message bodies in the body log, everything else in
//! sled.
//!
//! Owns the data directory's layout:
//! - `lagomorph.lock`: an exclusive lock held for the store's life, so a second broker on the
//!   same directory fails with [`StoreError::Locked`] instead of corrupting it (sled's own lock
//!   on its `db` file is the second line of defence and maps to the same error);
//! - `bodies/`: the body log ([`super::bodylog`]): chunks of messages in checksummed records;
//! - `spill/`: transient messages paged out of memory ([`super::spill`]), emptied at every start;
//! - sled's files (`conf`, `db`, `blobs/`, `snap.*`), holding these trees:
//!   - `exchanges`, `queues`, `bindings`: definitions, keyed by [`record::exchange_key`],
//!     [`record::queue_key`], [`record::binding_key`], values encoded by [`record`];
//!   - `objects`: durable objects ([`Store::put_object`]), keyed by [`record::name_key`] of
//!     kind and key, values as given;
//!   - `qids`: each durable queue's numeric id, by [`record::queue_key`];
//!   - `index`: one entry per stored chunk, keyed by [`record::index_key`] (queue id, first
//!     message id): where its body is in the body log (segment, offset, length, CRC, lsn) and
//!     its state (live and delivered bits, delivery counts). An entry is written once when its
//!     chunk is written, again when acks or deliveries change its state or compaction moves
//!     it, and deleted when its last message is acked;
//!   - `segments`: the segment table (one key per body-log segment file that may be indexed);
//!   - `meta`: the commit point (`commit`: the end of the last index record applied; recovery
//!     replays the index records after it) and the next queue id (`next-qid`);
//!   - `quarantine`: damaged records moved aside, counted by [`SledStore::quarantined`].
//!
//! The life of a persistent message: [`QueueStore::put`] appends it to its queue's open chunk
//! in memory (a copy under a short lock). A full chunk is appended to the body log ahead of
//! its flush (no fsync) by the write-ahead thread (module `ahead`) that
//! [`QueueStore::write_sealed`] hands it to, outside the caller's locks. A flush (group commit,
//! [`Store::flush`]) collects every queue's work while no [`Store::hold_flush`] guard lives,
//! appends the open chunks, then one *index record* (module `wal`) holding every index entry,
//! deletion, definition and segment-table change of the flush, and fdatasyncs the body log:
//! the flush's one fsync. It then applies the definition, queue-id and segment-table changes to
//! sled without flushing it, and keeps the message-index changes in memory (the latest value
//! of each key) for the next checkpoint; only then do confirms go out. The index record and the
//! chunks it points at are synced together before sled sees an entry: an index entry never
//! points at unsynced bytes. A checkpoint (module `checkpoint`, every
//! [`SledOptions::checkpoint_ms`] or [`SledOptions::checkpoint_bytes`] of log, and at
//! shutdown) applies the gathered index changes and the commit point (the end of the last
//! committed index record) in **one transaction**, then flushes and fdatasyncs sled; an entry
//! written and removed between two checkpoints never reaches sled. After a crash, recovery applies the index records
//! past the commit point sled holds again, in order (every change is a value: applying one
//! twice is harmless), so a flush is all-or-nothing, as its index record is. Acks and delivered
//! marks flip bits in memory; a message acked before its chunk is written is never written.

//! Every write call on the broker's side (`put`, `remove`, `mark_delivered`,
//! `set_delivery_count`, `put_exchange`, `put_object`, `delete_queue`, ...) is in memory only,
//! applied by the next flush; `read`, `write_sealed` and `open_queue` may do I/O.
//!
//! Space comes back without copying in FIFO use: a segment none of whose chunks is live any
//! more is deleted by the first checkpoint that covers the flush that removed its last index
//! entry and whose commit point lies in a later segment (so no index record recovery may need
//! goes with it). A segment kept
//! by a few live chunks is compacted when its live share falls under
//! [`SledOptions::compact_live_percent`]: a bounded number of bytes per flush of its live
//! chunks are rewritten (acked entries dropped) at the log's end and their index entries
//! switched in that flush's transaction. At startup every index entry is checked against its
//! segment (present, long enough), and every read checks the record's CRC and identity: what
//! fails is quarantined, counted ([`SledStore::quarantined`]) and logged, the rest is served.

mod ahead;
mod checkpoint;
mod defs;
mod flush;
mod quarantine;
mod queue;
mod recovery;
mod wal;

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sled::{Db, Tree};

use super::chunk::Index;
use super::record;
use super::{
    BindingRecord, Definitions, ExchangeRecord, FlushGate, FlushHold, PreparedFlush, QueueRecord,
    QueueStore, Store, StoreError, lock,
};
use defs::Target;
#[cfg(test)]
pub(super) use queue::WHILE_APPENDING;
use queue::{Pending, Shared, SledQueue};

pub(super) const EXCHANGES: &[u8] = b"exchanges";
pub(super) const QUEUES: &[u8] = b"queues";
pub(super) const BINDINGS: &[u8] = b"bindings";
pub(super) const OBJECTS: &[u8] = b"objects";
pub(super) const QIDS: &[u8] = b"qids";
pub(super) const INDEX: &[u8] = b"index";
pub(super) const META: &[u8] = b"meta";
pub(super) const SEGMENTS: &[u8] = b"segments";
pub(super) const QUARANTINE: &[u8] = b"quarantine";
/// `meta` key of the body log's commit point.
const COMMIT_KEY: &[u8] = b"commit";
/// `meta` key of the next queue id to hand out.
const NEXT_QID_KEY: &[u8] = b"next-qid";
/// Trees of earlier development layouts (chunks inside sled), refused at open.
const OLD_LAYOUT_PREFIXES: [&[u8]; 2] = [b"chunks:", b"chunk-states:"];
/// Scratch areas of an earlier layout: dropped at open.
const LEGACY_SCRATCH_PREFIX: &[u8] = b"tmp:";
const LOCK_FILE: &str = "lagomorph.lock";
/// The file sled 0.34 keeps its log (every tree) in, inside the data directory.
const SLED_LOG_FILE: &str = "db";
/// How long `open` waits for a just-dropped store of this process to release sled's file lock.
const SLED_RELEASE_WAIT: Duration = Duration::from_secs(3);
/// Folder of the spill files, under the data directory.
const SPILL_DIR: &str = "spill";
/// Directory of the delayed messages' files.
const DELAYED_DIR: &str = "delayed";

/// Tuning of the on-disk store (config keys under `[storage]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SledOptions {
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Largest body-log segment file, in bytes (a chunk larger than this gets one of its own).
    pub segment_bytes: u64,
    /// A sealed segment whose live bytes fall under this percentage of its size is compacted.
    pub compact_live_percent: u8,
    /// At most this many bytes of live chunks are copied by compaction per flush (so a flush,
    /// and the confirms waiting for it, is never held up by much).
    pub compact_bytes_per_flush: u64,
    /// sled is made durable (a checkpoint) at least this often, in milliseconds; recovery
    /// replays the index records written since the last one.
    pub checkpoint_ms: u64,
    /// ... and whenever this many bytes have been appended to the body log since the last one.
    pub checkpoint_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            cache_bytes: 16 << 20,
            segment_bytes: 64 << 20,
            compact_live_percent: 50,
            compact_bytes_per_flush: 4 << 20,
            checkpoint_ms: 1000,
            checkpoint_bytes: 256 << 20,
        }
    }
}

/// Body-log counters since the store was opened (for metrics and benchmarks).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Segment files in the body log now.
    pub segments: u64,
    /// Segments deleted (no live chunk left).
    pub segments_deleted: u64,
    /// Segments emptied by compaction.
    pub segments_compacted: u64,
    /// Chunks moved by compaction.
    pub chunks_moved: u64,
    /// Bytes written by compaction.
    pub bytes_copied: u64,
}

/// Every sled tree of the store.
#[derive(Clone)]
pub(super) struct Trees {
    pub(super) exchanges: Tree,
    pub(super) queues: Tree,
    pub(super) bindings: Tree,
    pub(super) objects: Tree,
    pub(super) qids: Tree,
    pub(super) meta: Tree,
    pub(super) segments: Tree,
    pub(super) quarantine: Tree,
    pub(super) index: Tree,
}

/// Queue ids by name key, and the next one to hand out.
struct Qids {
    by_name: HashMap<Vec<u8>, u64>,
    next: u64,
}

/// The sled + body-log [`Store`]. One per data directory per machine (see [`SledStore::open`]).
pub struct SledStore {
    path: PathBuf,
    trees: Trees,
    shared: Arc<Shared>,
    gate: FlushGate,
    opts: SledOptions,
    /// Open message areas by name key: every caller shares one handle (and one index).
    areas: Mutex<HashMap<Vec<u8>, Arc<SledQueue>>>,
    qids: Mutex<Qids>,
    /// Held while a flush is prepared: one at a time.
    preparing: Mutex<()>,
    /// Flushes prepared and committed, so that commits happen in order.
    order: Mutex<flush::Order>,
    order_turn: std::sync::Condvar,
    /// Failed commits so far: a flush prepared before one failed fails too.
    failures: std::sync::atomic::AtomicU64,
    /// Indexes rebuilt at open, by queue id, until their queue is opened.
    recovered: Mutex<HashMap<u64, Index>>,
    /// Checkpoints (sled made durable), and the thread that takes them.
    checkpoints: Arc<checkpoint::Checkpointer>,
    checkpoint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The write-ahead thread ([`ahead`]).
    ahead_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Delayed messages (synced by each flush).
    delayed: super::delayed_log::DelayedLog,
    /// Index records replayed at open.
    replayed: u64,
    /// Held (locked) for as long as the store lives; declared last so it is released last.
    _lock: File,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Opens (creating if needed) the store in the data directory `path`, with a page cache of
    /// `cache_bytes` and default [`SledOptions`] otherwise.
    pub fn open(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, StoreError> {
        Self::open_with(
            path,
            SledOptions {
                cache_bytes,
                ..SledOptions::default()
            },
        )
    }

    /// Opens (creating if needed) the store in the data directory `path`. Spill files left by
    /// a previous run are dropped; the body log and index are checked (see the module docs).
    ///
    /// Fails with [`StoreError::Locked`] if another store (in this or another process) has the
    /// directory open.
    pub fn open_with(path: impl AsRef<Path>, opts: SledOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                path.display()
            ))
        })?;
        let lock_file = lock_dir(&path)?;
        let db = open_sled(&path, opts.cache_bytes)?;
        // Transient messages never outlive the broker run that paged them out.
        let _ = std::fs::remove_dir_all(path.join(SPILL_DIR));
        for name in db.tree_names() {
            if name.starts_with(LEGACY_SCRATCH_PREFIX) {
                db.drop_tree(&name).map_err(io)?;
            }
            if OLD_LAYOUT_PREFIXES.iter().any(|p| name.starts_with(p)) {
                return Err(StoreError::Io(format!(
                    "data directory {} holds messages in an earlier development layout \
                     (chunks inside sled) that this version does not read; move it aside",
                    path.display()
                )));
            }
        }
        let tree = |name: &[u8]| db.open_tree(name).map_err(io);
        let trees = Trees {
            exchanges: tree(EXCHANGES)?,
            queues: tree(QUEUES)?,
            bindings: tree(BINDINGS)?,
            objects: tree(OBJECTS)?,
            qids: tree(QIDS)?,
            meta: tree(META)?,
            segments: tree(SEGMENTS)?,
            quarantine: tree(QUARANTINE)?,
            index: tree(INDEX)?,
        };
        let delayed = super::delayed_log::DelayedLog::open(&path.join(DELAYED_DIR))?;
        let log_path = path.join(SLED_LOG_FILE);
        let sled_log = File::open(&log_path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", log_path.display())))?;
        let sync_sled = || -> Result<(), StoreError> {
            db.flush().map_err(io)?;
            sled_log
                .sync_data()
                .map_err(|e| StoreError::Io(format!("fdatasync of sled's log: {e}")))
        };
        let found = recovery::recover(&path, &trees, &opts, &sync_sled)?;
        let shared = Arc::new(Shared {
            dirty: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            log: found.log,
            quarantine: found.quarantine,
            space: Mutex::new(found.space),
            ahead: Arc::new(ahead::Ahead::default()),
        });
        let checkpoints = Arc::new(checkpoint::Checkpointer::new(
            db.clone(),
            trees.clone(),
            sled_log,
            Arc::clone(&shared),
            Duration::from_millis(opts.checkpoint_ms.max(1)),
            opts.checkpoint_bytes,
        ));
        let checkpoint_thread = {
            let c = Arc::clone(&checkpoints);
            std::thread::Builder::new()
                .name("lagomorph-checkpoint".into())
                .spawn(move || c.run())
                .map_err(|e| StoreError::Io(format!("cannot start a thread: {e}")))?
        };
        let ahead_thread = {
            let a = Arc::clone(&shared.ahead);
            std::thread::Builder::new()
                .name("lagomorph-write-ahead".into())
                .spawn(move || a.run())
                .map_err(|e| StoreError::Io(format!("cannot start a thread: {e}")))?
        };
        Ok(SledStore {
            ahead_thread: Mutex::new(Some(ahead_thread)),
            shared,
            checkpoints,
            checkpoint_thread: Mutex::new(Some(checkpoint_thread)),
            replayed: found.replayed,
            gate: FlushGate::default(),
            opts,
            areas: Mutex::new(HashMap::new()),
            qids: Mutex::new(Qids {
                by_name: found.qids,
                next: found.next_qid,
            }),
            preparing: Mutex::new(()),
            order: Mutex::new(flush::Order::default()),
            order_turn: std::sync::Condvar::new(),
            failures: std::sync::atomic::AtomicU64::new(0),
            recovered: Mutex::new(found.indexes),
            delayed,
            path,
            trees,
            _lock: lock_file,
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Any sled tree of this store, for tests that inspect or damage records directly.
    #[cfg(test)]
    pub(super) fn raw_tree(&self, name: &[u8]) -> Tree {
        self.checkpoints
            .db()
            .open_tree(name)
            .expect("test hook: open tree")
    }

    /// The names of sled's trees (tests that check what was dropped).
    #[cfg(test)]
    pub(super) fn tree_names(&self) -> Vec<Vec<u8>> {
        self.checkpoints
            .db()
            .tree_names()
            .iter()
            .map(|n| n.to_vec())
            .collect()
    }

    /// Waits until the write-ahead thread has written every queue handed to it (tests).
    #[cfg(test)]
    pub(super) fn wait_write_ahead(&self) {
        self.shared.ahead.wait_idle();
    }

    /// Sets how many sealed chunks a queue, and how many bytes the node, keep for the next flush
    /// (tests; 0 writes every sealed chunk ahead at once, as before the hold).
    #[cfg(test)]
    pub(super) fn set_hold(&self, chunks: usize, bytes: usize) {
        self.shared.ahead.hold.set(chunks, bytes);
    }

    /// Bytes of sealed chunks the node keeps for the next flush (tests).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.shared.ahead.hold.held()
    }

    /// Pauses (`true`) or resumes the write-ahead thread (tests of what publishers do meanwhile).
    #[cfg(test)]
    pub(super) fn pause_write_ahead(&self, pause: bool) {
        if pause {
            self.shared.ahead.pause();
        } else {
            self.shared.ahead.resume();
        }
    }

    /// Holds the body log's writer, as a group commit appending does (tests).
    #[cfg(test)]
    pub(super) fn hold_log_writer(&self) -> impl Sized + '_ {
        self.shared.log.hold_writer()
    }

    /// The payload of the body-log record at `loc` (tests that look at what was written).
    #[cfg(test)]
    pub(super) fn raw_body(&self, loc: &super::bodylog::Loc, qid: u64, first: u64) -> Bytes {
        self.shared
            .log
            .read(loc, qid, first)
            .expect("test hook: read")
            .expect("test hook: valid record")
    }

    /// How many index records recovery applied again at open (0 after a clean shutdown).
    pub fn replayed(&self) -> u64 {
        self.replayed
    }

    /// Makes sled durable up to the last committed flush and deletes the body-log segments that
    /// may go (the checkpoint thread does this on its own, see [`SledOptions::checkpoint_ms`]).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        self.checkpoints.checkpoint()
    }

    /// The last committed flush's index record (tests that damage it).
    #[cfg(test)]
    pub(super) fn last_index_record(&self) -> Option<super::bodylog::Loc> {
        self.checkpoints.last_committed()
    }

    /// How many damaged records have been moved to the quarantine (in this run or earlier ones).
    pub fn quarantined(&self) -> u64 {
        self.shared.quarantine.count()
    }

    /// Body-log counters since the store was opened.
    pub fn log_stats(&self) -> LogStats {
        let mut s = lock(&self.shared.space).stats;
        s.segments = self.shared.log.segments().len() as u64;
        s
    }

    /// Buffers a write for the next flush.
    fn pend(&self, target: Target, key: Vec<u8>, value: Option<Vec<u8>>) {
        lock(&self.shared.pending).ops.push((target, key, value));
    }
}

impl Store for SledStore {
    fn open_spill(&self, vhost: &str, name: &str) -> Result<Box<dyn super::Spill>, StoreError> {
        // Names can hold any character and be 510 bytes long together: the file is named by
        // the SHA-256 of the unambiguous key.
        use sha2::Digest;
        let key = record::queue_key(vhost, name);
        let hex: String = sha2::Sha256::digest(&key)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let file = self.path.join(SPILL_DIR).join(format!("{hex}.spill"));
        Ok(Box::new(super::spill::FileSpill::create(file)?))
    }

    fn put_exchange(&self, r: &ExchangeRecord) -> Result<(), StoreError> {
        let key = record::exchange_key(&r.vhost, &r.name);
        self.pend(Target::Exchanges, key, Some(record::encode_exchange(r)));
        Ok(())
    }

    fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        self.pend(Target::Exchanges, record::exchange_key(vhost, name), None);
        Ok(())
    }

    fn put_queue(&self, r: &QueueRecord) -> Result<(), StoreError> {
        let key = record::queue_key(&r.vhost, &r.name);
        self.pend(Target::Queues, key, Some(record::encode_queue(r)));
        Ok(())
    }

    fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        let key = record::queue_key(vhost, name);
        let area = lock(&self.areas).remove(&key);
        let mut freed = area.map(|a| a.delete()).unwrap_or_default();
        let qid = lock(&self.qids).by_name.remove(&key);
        if let Some(ix) = qid.and_then(|qid| lock(&self.recovered).remove(&qid)) {
            freed.extend(ix.accounted());
        }
        let mut pending = lock(&self.shared.pending);
        pending.freed.extend(freed);
        if let Some(qid) = qid {
            // Its index entries go in the next flush, all at once, with the definition.
            pending.dropped.push(qid);
            pending.ops.push((Target::Qids, key.clone(), None));
        }
        pending.ops.push((Target::Queues, key, None));
        Ok(())
    }

    fn put_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        let value = record::encode_binding(r);
        self.pend(Target::Bindings, record::binding_key(r), Some(value));
        Ok(())
    }

    fn delete_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        self.pend(Target::Bindings, record::binding_key(r), None);
        Ok(())
    }

    fn load_definitions(&self) -> Result<Definitions, StoreError> {
        let ops = lock(&self.shared.pending).ops.clone();
        let (defs, removals) = defs::load_definitions(&self.trees, &self.shared.quarantine, &ops)?;
        lock(&self.shared.pending).ops.extend(removals);
        Ok(defs)
    }

    fn put_object(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.pend(
            Target::Objects,
            record::name_key(kind, key),
            Some(value.to_vec()),
        );
        Ok(())
    }

    fn delete_object(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.pend(Target::Objects, record::name_key(kind, key), None);
        Ok(())
    }

    fn load_objects(&self, kind: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let ops = lock(&self.shared.pending).ops.clone();
        defs::load_objects(&self.trees, kind, &ops)
    }

    // Delayed messages live in their own files (see `delayed_log`): sled costs ~165 bytes of
    // RSS per entry, too much for millions of them. The group commit syncs them.
    fn put_delayed(&self, key: super::DelayKey, value: &[u8]) -> Result<(), StoreError> {
        self.delayed.put(key, value)
    }

    fn remove_delayed(&self, keys: &[super::DelayKey]) -> Result<(), StoreError> {
        if let Some(max) = keys.iter().max() {
            self.delayed.release_upto(*max);
        }
        Ok(())
    }

    fn read_delayed(
        &self,
        from: super::DelayKey,
        limit: usize,
    ) -> Result<super::DelayedPage, StoreError> {
        self.delayed.read(from, limit)
    }

    fn open_queue(&self, vhost: &str, name: &str) -> Result<Arc<dyn QueueStore>, StoreError> {
        let key = record::queue_key(vhost, name);
        let mut areas = lock(&self.areas);
        if let Some(area) = areas.get(&key) {
            return Ok(area.clone());
        }
        let qid = {
            let mut qids = lock(&self.qids);
            match qids.by_name.get(&key) {
                Some(&qid) => qid,
                None => {
                    let qid = qids.next;
                    qids.next += 1;
                    qids.by_name.insert(key.clone(), qid);
                    let mut pending = lock(&self.shared.pending);
                    pending
                        .ops
                        .push((Target::Qids, key.clone(), Some(qid.to_be_bytes().to_vec())));
                    pending.ops.push((
                        Target::Meta,
                        NEXT_QID_KEY.to_vec(),
                        Some(qids.next.to_be_bytes().to_vec()),
                    ));
                    qid
                }
            }
        };
        let index = lock(&self.recovered).remove(&qid).unwrap_or_default();
        let printable = format!("{}/{}", vhost, name);
        let area = SledQueue::new(qid, printable, index, Arc::clone(&self.shared));
        areas.insert(key, area.clone());
        Ok(area)
    }

    fn hold_flush(&self) -> FlushHold<'_> {
        self.gate.hold()
    }

    fn quarantined(&self) -> u64 {
        self.shared.quarantine.count()
    }

    fn wants_flush(&self) -> bool {
        self.maintenance_due()
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.flush_all()
    }

    fn flush_prepare(&self) -> Result<PreparedFlush, StoreError> {
        Ok(PreparedFlush::new(self.prepare()?))
    }

    fn flush_commit(&self, p: PreparedFlush) -> Result<(), StoreError> {
        match p.take::<flush::Prepared>() {
            Some(p) => self.commit(p),
            None => Ok(()),
        }
    }
}

impl Drop for SledStore {
    /// A store dropped without a final flush still writes what is buffered and syncs, so a clean
    /// shutdown never loses it; then a final checkpoint, so the next open replays nothing.
    fn drop(&mut self) {
        self.shared.ahead.stop();
        if let Some(t) = lock(&self.ahead_thread).take() {
            let _ = t.join();
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, path = %self.path.display(), "final flush failed");
        }
        self.checkpoints.stop();
        if let Some(t) = lock(&self.checkpoint_thread).take() {
            let _ = t.join();
        }
        // Twice: the segments the first checkpoint deletes leave the segment table in the
        // second flush.
        for _ in 0..2 {
            if let Err(e) = self.checkpoints.checkpoint() {
                tracing::error!(error = %e, path = %self.path.display(), "final checkpoint failed");
            }
            if !self.maintenance_due() {
                break;
            }
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, path = %self.path.display(), "final flush failed");
            }
        }
        if let Err(e) = self.checkpoints.checkpoint() {
            tracing::error!(error = %e, path = %self.path.display(), "final checkpoint failed");
        }
    }
}

/// Opens sled. With our lock taken, sled's lock can only be held by a store of this process
/// that has just been dropped: sled's background IO jobs keep its file open for a moment after
/// the `Db` goes. Wait for them, boundedly; a handle that stays alive still ends in `Locked`.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<Db, StoreError> {
    // No flush on sled's own timer: sled is made durable at checkpoints (the body log holds
    // every change since), so its IO threads write when its buffers fill and at checkpoints.
    let config = sled::Config::new()
        .path(path)
        .cache_capacity(cache_bytes)
        .flush_every_ms(None);
    let deadline = Instant::now() + SLED_RELEASE_WAIT;
    loop {
        match config.open() {
            Ok(db) => return Ok(db),
            Err(e) if is_sled_lock_error(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(open_err(path, e)),
        }
    }
}

/// Takes the data directory's lock file, exclusively and without waiting.
fn lock_dir(path: &Path) -> Result<File, StoreError> {
    let lock_path = path.join(LOCK_FILE);
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", lock_path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: path.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(StoreError::Io(format!(
            "cannot lock {}: {e}",
            lock_path.display()
        ))),
    }
}

/// Whether sled failed to open because another handle holds its file lock (sled 0.34 reports
/// this only as an `Other` I/O error with this text).
fn is_sled_lock_error(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(ioe) if ioe.to_string().contains("could not acquire lock"))
}

/// Maps sled's open error, recognising its own file-lock failure as [`StoreError::Locked`].
fn open_err(path: &Path, e: sled::Error) -> StoreError {
    if is_sled_lock_error(&e) {
        StoreError::Locked {
            path: path.to_path_buf(),
        }
    } else {
        io(e)
    }
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(format!("sled: {e}"))
}
