//! [`SledStore`]: the on-disk [`Store`], on the sled embedded database.
//!
//! Owns the data directory's layout:
//! - `lagomorph.lock`: an exclusive lock held for the store's life, so a second broker on the same
//!   directory fails with [`StoreError::Locked`] instead of corrupting it (sled's own lock on its
//!   `db` file is the second line of defence and maps to the same error);
//! - sled's files (`conf`, `db`, `blobs/`, `snap.*`), holding these trees:
//!   - `exchanges`, `queues`, `bindings`: definitions, keyed by [`record::exchange_key`],
//!     [`record::queue_key`], [`record::binding_key`], values encoded by [`record`];
//!   - `msg:` + [`record::name_key`]: one tree per durable queue's messages, keyed by
//!     [`record::message_key`] (big-endian id, so sled's order is queue order), with a delivered
//!     marker ([`record::delivered_key`]) right after each delivered message that was still
//!     unacked at a flush (marks are kept in memory until then, so a message delivered and acked
//!     within one group commit never writes one);
//!   - `tmp:` + [`record::name_key`]: scratch trees for paged-out transient messages, dropped at
//!     every open;
//!   - `quarantine`: damaged records moved aside (key: length-prefixed tree name, then the original
//!     key; value: the original bytes), so one bad record never stops a restart.
//!
//! Durability is group commit: writes go to sled's log in memory and [`Store::flush`] writes the
//! pending delivered marks and fsyncs everything at once (sled also syncs its log in the
//! background every 500 ms, but delivered marks only reach it at a flush). No other operation here
//! fsyncs; dropping the store flushes.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sled::{Db, IVec, Tree};

use super::record::{self, DecodeError, MessageKey};
use super::{
    BindingRecord, Definitions, ExchangeRecord, MessageView, QueueRecord, QueueStore, Store,
    StoreError, StoredMessage,
};

const EXCHANGES: &[u8] = b"exchanges";
const QUEUES: &[u8] = b"queues";
const BINDINGS: &[u8] = b"bindings";
const QUARANTINE: &[u8] = b"quarantine";
const DURABLE_PREFIX: &[u8] = b"msg:";
const SCRATCH_PREFIX: &[u8] = b"tmp:";
const LOCK_FILE: &str = "lagomorph.lock";
/// How long `open` waits for a just-dropped store of this process to release sled's file lock.
const SLED_RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Open message areas by `(durable, name key)`.
type Areas = HashMap<(bool, Vec<u8>), Arc<SledQueue>>;

/// The sled-backed [`Store`]. One per data directory per machine (see [`SledStore::open`]).
pub struct SledStore {
    path: PathBuf,
    db: Db,
    exchanges: Tree,
    queues: Tree,
    bindings: Tree,
    quarantine: Quarantine,
    /// Open message areas by `(durable, name key)`, so every caller shares one handle (and one
    /// message count) per queue.
    areas: Mutex<Areas>,
    /// Queues with delivered marks not yet written (see [`Marks`]).
    dirty: Arc<DirtyList>,
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
    /// `cache_bytes`. Scratch areas left by a previous run are dropped.
    ///
    /// Fails with [`StoreError::Locked`] if another store (in this or another process) has the
    /// directory open.
    pub fn open(path: impl AsRef<Path>, cache_bytes: u64) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        std::fs::create_dir_all(&path).map_err(|e| {
            StoreError::Io(format!(
                "cannot create data directory {}: {e}",
                path.display()
            ))
        })?;
        let lock = lock_dir(&path)?;
        let config = sled::Config::new().path(&path).cache_capacity(cache_bytes);
        // With our lock taken, sled's lock can only be held by a store of this process that has
        // just been dropped: sled's background IO jobs keep its file open for a moment after the
        // `Db` goes. Wait for them, boundedly; a handle that stays alive still ends in `Locked`.
        let deadline = Instant::now() + SLED_RELEASE_WAIT;
        let db = loop {
            match config.open() {
                Ok(db) => break db,
                Err(e) if is_sled_lock_error(&e) && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => return Err(open_err(&path, e)),
            }
        };
        // Transient messages never outlive the broker run that paged them out.
        let _ = std::fs::remove_dir_all(path.join(SPILL_DIR));
        for name in db.tree_names() {
            if name.starts_with(SCRATCH_PREFIX) {
                db.drop_tree(&name).map_err(io)?;
            }
        }
        let quarantine = Quarantine {
            tree: db.open_tree(QUARANTINE).map_err(io)?,
        };
        Ok(SledStore {
            exchanges: db.open_tree(EXCHANGES).map_err(io)?,
            queues: db.open_tree(QUEUES).map_err(io)?,
            bindings: db.open_tree(BINDINGS).map_err(io)?,
            quarantine,
            areas: Mutex::new(HashMap::new()),
            dirty: Arc::new(Mutex::new(Vec::new())),
            path,
            db,
            _lock: lock,
        })
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Any sled tree of this store, for tests that inspect or damage records directly.
    #[cfg(test)]
    pub(super) fn raw_tree(&self, name: &[u8]) -> Tree {
        self.db.open_tree(name).expect("test hook: open tree")
    }

    /// How many damaged records have been moved to the quarantine (in this run or earlier ones).
    pub fn quarantined(&self) -> usize {
        self.quarantine.tree.len()
    }

    fn areas(&self) -> MutexGuard<'_, Areas> {
        lock(&self.areas)
    }

    /// Decodes every record of a definitions tree, quarantining those that fail to decode or
    /// whose key does not match their contents.
    fn load_tree<T>(
        &self,
        tree: &Tree,
        tree_name: &[u8],
        decode: fn(&[u8]) -> Result<T, DecodeError>,
        key_of: fn(&T) -> Vec<u8>,
    ) -> Result<Vec<T>, StoreError> {
        let mut out = Vec::new();
        for item in tree.iter() {
            let (key, value) = item.map_err(io)?;
            let reason = match decode(&value) {
                Ok(rec) if key_of(&rec) == *key => {
                    out.push(rec);
                    continue;
                }
                Ok(_) => DecodeError("key does not match record"),
                Err(e) => e,
            };
            self.quarantine.put(tree_name, &key, &value, reason)?;
            tree.remove(&key).map_err(io)?;
        }
        Ok(out)
    }
}

/// Folder of the spill files, under the data directory.
const SPILL_DIR: &str = "spill";

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
        self.exchanges
            .insert(key, record::encode_exchange(r))
            .map_err(io)?;
        Ok(())
    }

    fn delete_exchange(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        self.exchanges
            .remove(record::exchange_key(vhost, name))
            .map_err(io)?;
        Ok(())
    }

    fn put_queue(&self, r: &QueueRecord) -> Result<(), StoreError> {
        let key = record::queue_key(&r.vhost, &r.name);
        self.queues
            .insert(key, record::encode_queue(r))
            .map_err(io)?;
        Ok(())
    }

    fn delete_queue(&self, vhost: &str, name: &str) -> Result<(), StoreError> {
        let key = record::queue_key(vhost, name);
        let mut areas = self.areas();
        for durable in [true, false] {
            if let Some(area) = areas.remove(&(durable, key.clone())) {
                area.deleted.store(true, Ordering::Release);
            }
            // Messages first: a crash in between leaves an empty queue, never orphaned messages.
            self.db
                .drop_tree(area_tree_name(durable, &key))
                .map_err(io)?;
        }
        self.queues.remove(&key).map_err(io)?;
        Ok(())
    }

    fn put_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        self.bindings
            .insert(record::binding_key(r), record::encode_binding(r))
            .map_err(io)?;
        Ok(())
    }

    fn delete_binding(&self, r: &BindingRecord) -> Result<(), StoreError> {
        self.bindings.remove(record::binding_key(r)).map_err(io)?;
        Ok(())
    }

    fn load_definitions(&self) -> Result<Definitions, StoreError> {
        Ok(Definitions {
            exchanges: self.load_tree(
                &self.exchanges,
                EXCHANGES,
                record::decode_exchange,
                |r| record::exchange_key(&r.vhost, &r.name),
            )?,
            queues: self.load_tree(&self.queues, QUEUES, record::decode_queue, |r| {
                record::queue_key(&r.vhost, &r.name)
            })?,
            bindings: self.load_tree(
                &self.bindings,
                BINDINGS,
                record::decode_binding,
                record::binding_key,
            )?,
        })
    }

    fn open_queue(
        &self,
        vhost: &str,
        name: &str,
        durable: bool,
    ) -> Result<Arc<dyn QueueStore>, StoreError> {
        let key = record::queue_key(vhost, name);
        let mut areas = self.areas();
        if let Some(area) = areas.get(&(durable, key.clone())) {
            return Ok(area.clone());
        }
        let tree_name = area_tree_name(durable, &key);
        if !durable {
            self.db.drop_tree(&tree_name).map_err(io)?;
        }
        let tree = self.db.open_tree(&tree_name).map_err(io)?;
        let area = SledQueue::open(
            tree,
            tree_name,
            self.quarantine.clone(),
            Arc::clone(&self.dirty),
        )?;
        areas.insert((durable, key), area.clone());
        Ok(area)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let dirty = std::mem::take(&mut *lock(&self.dirty));
        for (i, queue) in dirty.iter().enumerate() {
            let Some(queue) = queue.upgrade() else {
                continue;
            };
            if let Err(e) = queue.write_marks() {
                // Keep the rest for the next flush.
                lock(&self.dirty).extend(dirty.get(i..).unwrap_or_default().iter().cloned());
                return Err(e);
            }
        }
        self.db.flush().map_err(io)?;
        Ok(())
    }
}

impl Drop for SledStore {
    /// A store dropped without a final flush still writes its delivered marks and syncs, so a
    /// clean shutdown never loses them.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, path = %self.path.display(), "final flush failed");
        }
    }
}

/// Delivered marks of one queue.
///
/// Marking is the one write on the delivery path, and most deliveries are acked before the next
/// group commit, so marks are kept here and written as sled keys only at [`Store::flush`]: a
/// delivery acked within the same batch costs no write at all for its mark.
#[derive(Default)]
struct Marks {
    /// Marked, not yet written.
    pending: BTreeSet<u64>,
    /// Written as a marker key (by a flush, or found at open).
    written: HashSet<u64>,
}

/// Queues with pending marks, for the next flush to write.
type DirtyList = Mutex<Vec<Weak<SledQueue>>>;

/// One queue's message tree. Keeps the count in memory (sled's `len` is a full scan).
struct SledQueue {
    tree: Tree,
    tree_name: Vec<u8>,
    quarantine: Quarantine,
    count: AtomicUsize,
    marks: Mutex<Marks>,
    /// Set by `delete_queue`: the tree is gone, so further use is an error, not a silent write.
    deleted: AtomicBool,
    /// This queue, to put on `dirty` without an `Arc<Self>` receiver.
    me: Weak<SledQueue>,
    /// The store's list of queues with pending marks.
    dirty: Arc<DirtyList>,
}

impl SledQueue {
    /// Wraps a message tree, counting its messages and delivered markers, removing markers whose
    /// message is gone (left by a crash between an ack's two removals) and quarantining keys that
    /// are not ours.
    fn open(
        tree: Tree,
        tree_name: Vec<u8>,
        quarantine: Quarantine,
        dirty: Arc<DirtyList>,
    ) -> Result<Arc<Self>, StoreError> {
        let mut count = 0;
        let mut written = HashSet::new();
        let mut last_message = None;
        for item in tree.iter() {
            let (key, value) = item.map_err(io)?;
            match record::parse_message_key(&key) {
                Some(MessageKey::Message(id)) => {
                    count += 1;
                    last_message = Some(id);
                }
                Some(MessageKey::Delivered(id)) if last_message == Some(id) => {
                    written.insert(id);
                }
                Some(MessageKey::Delivered(_)) => {
                    tree.remove(&key).map_err(io)?;
                }
                None => {
                    quarantine.put(&tree_name, &key, &value, DecodeError("malformed key"))?;
                    tree.remove(&key).map_err(io)?;
                }
            }
        }
        Ok(Arc::new_cyclic(|me| SledQueue {
            tree,
            tree_name,
            quarantine,
            count: AtomicUsize::new(count),
            marks: Mutex::new(Marks {
                pending: BTreeSet::new(),
                written,
            }),
            deleted: AtomicBool::new(false),
            me: me.clone(),
            dirty,
        }))
    }

    fn marks(&self) -> MutexGuard<'_, Marks> {
        lock(&self.marks)
    }

    fn check_live(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Io(format!(
                "message store {} used after its queue was deleted",
                self.tree_name.escape_ascii()
            )));
        }
        Ok(())
    }

    /// Writes the pending marks as marker keys (called by [`Store::flush`] before the fsync).
    ///
    /// One mark per critical section: an ack racing the flush either takes the mark out of
    /// `pending` first (nothing is written) or finds it in `written` afterwards (and deletes the
    /// marker), and never waits for more than one insert.
    fn write_marks(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        loop {
            let mut marks = self.marks();
            let Some(id) = marks.pending.pop_first() else {
                return Ok(());
            };
            if let Err(e) = self.tree.insert(record::delivered_key(id), IVec::default()) {
                marks.pending.insert(id);
                return Err(io(e));
            }
            marks.written.insert(id);
        }
    }

    /// Moves a damaged message aside and forgets it.
    fn quarantine_message(
        &self,
        key: &[u8],
        value: &[u8],
        reason: DecodeError,
    ) -> Result<(), StoreError> {
        self.quarantine.put(&self.tree_name, key, value, reason)?;
        let removed = self.tree.remove(key).map_err(io)?;
        if removed.is_some() && key.len() == record::MESSAGE_KEY_LEN {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

impl QueueStore for SledQueue {
    fn put(&self, id: u64, m: MessageView<'_>) -> Result<(), StoreError> {
        self.check_live()?;
        let mut value = Vec::with_capacity(record::message_len(&m));
        record::encode_message_into(&m, &mut value);
        let old = self
            .tree
            .insert(record::message_key(id), value)
            .map_err(io)?;
        if old.is_none() {
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn mark_delivered(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        let was_clean = {
            let mut marks = self.marks();
            if marks.pending.contains(&id) || marks.written.contains(&id) {
                return Ok(());
            }
            // A mark with no message would wrongly flag a later message with that id. Checked
            // under the lock so an ack of `id` cannot slip in between.
            if !self
                .tree
                .contains_key(record::message_key(id))
                .map_err(io)?
            {
                return Ok(());
            }
            let was_clean = marks.pending.is_empty();
            marks.pending.insert(id);
            was_clean
        };
        if was_clean {
            lock(&self.dirty).push(self.me.clone());
        }
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        let had_marker = {
            let mut marks = self.marks();
            marks.pending.remove(&id);
            marks.written.remove(&id)
        };
        // Marker first: a crash in between leaves a message that comes back not redelivered,
        // never an orphan marker.
        if had_marker {
            self.tree.remove(record::delivered_key(id)).map_err(io)?;
        }
        if self
            .tree
            .remove(record::message_key(id))
            .map_err(io)?
            .is_some()
        {
            self.count.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read(&self, from_id: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check_live()?;
        let mut out: Vec<StoredMessage> = Vec::with_capacity(limit.min(4096));
        if limit == 0 {
            return Ok(out);
        }
        for item in self.tree.range(record::message_key(from_id)..) {
            let (key, value) = item.map_err(io)?;
            match record::parse_message_key(&key) {
                Some(MessageKey::Message(id)) => {
                    let buf = Bytes::from_owner(value);
                    match record::decode_message(buf.clone()) {
                        Ok(record) => out.push(StoredMessage {
                            id,
                            delivered: false,
                            record,
                        }),
                        Err(reason) => self.quarantine_message(&key, &buf, reason)?,
                    }
                    if out.len() == limit {
                        break;
                    }
                }
                // Marks are tracked in memory (`written` mirrors the marker keys).
                Some(MessageKey::Delivered(_)) => {}
                None => self.quarantine_message(&key, &value, DecodeError("malformed key"))?,
            }
        }
        let marks = self.marks();
        if !marks.pending.is_empty() || !marks.written.is_empty() {
            for m in &mut out {
                m.delivered = marks.pending.contains(&m.id) || marks.written.contains(&m.id);
            }
        }
        Ok(out)
    }

    fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    fn last_id(&self) -> Option<u64> {
        // Scans back over at most a trailing delivered marker (or stray keys) to the last message.
        self.tree
            .iter()
            .keys()
            .rev()
            .filter_map(Result::ok)
            .find_map(|k| match record::parse_message_key(&k) {
                Some(MessageKey::Message(id)) => Some(id),
                _ => None,
            })
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.check_live()?;
        {
            let mut marks = self.marks();
            marks.pending.clear();
            marks.written.clear();
        }
        // Key by key (not `Tree::clear`) so the count stays exact if a put races the purge.
        for key in self.tree.iter().keys() {
            let key = key.map_err(io)?;
            let removed = self.tree.remove(&key).map_err(io)?;
            if removed.is_some() && key.len() == record::MESSAGE_KEY_LEN {
                self.count.fetch_sub(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// The quarantine tree: damaged records, moved aside with a log line.
#[derive(Clone)]
struct Quarantine {
    tree: Tree,
}

impl Quarantine {
    fn put(
        &self,
        tree_name: &[u8],
        key: &[u8],
        value: &[u8],
        reason: DecodeError,
    ) -> Result<(), StoreError> {
        let err = StoreError::Corrupt {
            key: format!("{}/{}", tree_name.escape_ascii(), key.escape_ascii()),
            reason: reason.to_string(),
        };
        tracing::error!(error = %err, "damaged record moved to quarantine");
        let len = u32::try_from(tree_name.len()).unwrap_or(u32::MAX);
        let mut qkey = Vec::with_capacity(4 + tree_name.len() + key.len());
        qkey.extend_from_slice(&len.to_be_bytes());
        qkey.extend_from_slice(tree_name);
        qkey.extend_from_slice(key);
        self.tree.insert(qkey, value).map_err(io)?;
        Ok(())
    }
}

/// `msg:` or `tmp:` followed by the queue's name key.
fn area_tree_name(durable: bool, name_key: &[u8]) -> Vec<u8> {
    let prefix = if durable {
        DURABLE_PREFIX
    } else {
        SCRATCH_PREFIX
    };
    let mut out = Vec::with_capacity(prefix.len() + name_key.len());
    out.extend_from_slice(prefix);
    out.extend_from_slice(name_key);
    out
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

/// Locks a mutex whose every critical section leaves its data consistent before anything can
/// panic, so a poisoned lock is still safe to use.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn io(e: sled::Error) -> StoreError {
    StoreError::Io(format!("sled: {e}"))
}
