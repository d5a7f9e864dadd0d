//! [`SledStore`]: the on-disk [`Store`], on the sled embedded database.
//!
//! Owns the data directory's layout:
//! - `lagomorph.lock`: an exclusive lock held for the store's life, so a second broker on the same
//!   directory fails with [`StoreError::Locked`] instead of corrupting it (sled's own lock on its
//!   `db` file is the second line of defence and maps to the same error);
//! - `spill/`: transient messages paged out of memory ([`super::spill`]), emptied at every start;
//! - sled's files (`conf`, `db`, `blobs/`, `snap.*`), holding these trees:
//!   - `exchanges`, `queues`, `bindings`: definitions, keyed by [`record::exchange_key`],
//!     [`record::queue_key`], [`record::binding_key`], values encoded by [`record`];
//!   - `chunks:` + [`record::name_key`]: one tree per durable queue holding its persistent
//!     messages in chunks (see [`super::chunk`]), each cut into parts of at most
//!     [`PART_BYTES`] keyed by [`record::part_key`] (the chunk's first id, big-endian, so sled's
//!     order is queue order, then the part's number). A chunk is written once;
//!   - `chunk-states:` + [`record::name_key`]: the state of every chunk of that queue (which of
//!     its ids are live and which delivered, and how many parts it has), keyed by
//!     [`record::chunk_key`] (its first id). States are rewritten as acks
//!     and deliveries come, so they live apart from the chunks: rewriting one never copies a
//!     leaf full of message bodies. A chunk and its state are only ever written or deleted
//!     together, in one sled transaction, so neither exists without the other;
//!   - `objects`: durable objects ([`Store::put_object`]), keyed by [`record::name_key`] of kind
//!     and key, values as given;
//!   - `quarantine`: damaged records moved aside (key: length-prefixed tree name, then the original
//!     key; value: the original bytes), so one bad record never stops a restart.
//!
//!   `tmp:` + name key trees (transient scratch areas of an earlier layout) are dropped at open.
//!
//! The life of a persistent message: [`QueueStore::put`] appends it to its queue's open chunk in
//! memory (a copy under a short lock); the chunk is sealed when full (then its body is written
//! ahead by [`QueueStore::write_sealed`], outside the caller's locks) or at the next
//! [`Store::flush`]. A body is part of its queue only once its state exists. A flush collects
//! every queue's work while no [`Store::hold_flush`] guard lives, writes the new bodies, then
//! every state insert and deletion of every queue in one sled transaction (all-or-nothing after
//! a crash), then deletes dead bodies, and fsyncs once (group commit). Acks and delivered marks flip bits in memory; a flush writes the
//! states they changed, and deletes a chunk (with its state) when its last entry is acked. A
//! message acked before its chunk is sealed is never written. At startup only the state records
//! are read, to rebuild counts and ids; chunks are read as the broker pages messages in.
//!
//! Nothing here fsyncs outside [`Store::flush`] (sled syncs its log in the background every
//! 500 ms as well); dropping the store flushes.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use sled::{Db, Transactional, Tree};

use super::chunk::{Bits, Counts, Index, PART_BYTES, ReadPart, Work};
use super::record::{self, DecodeError};
use super::{
    BindingRecord, Definitions, ExchangeRecord, FlushGate, FlushHold, MessageView, PutOutcome,
    QueueRecord, QueueStore, Store, StoreError, StoredMessage,
};

const EXCHANGES: &[u8] = b"exchanges";
const QUEUES: &[u8] = b"queues";
const BINDINGS: &[u8] = b"bindings";
const QUARANTINE: &[u8] = b"quarantine";
const OBJECTS: &[u8] = b"objects";
const CHUNKS_PREFIX: &[u8] = b"chunks:";
const STATES_PREFIX: &[u8] = b"chunk-states:";
/// Scratch areas for transient messages, replaced by spill files: dropped at open.
const LEGACY_SCRATCH_PREFIX: &[u8] = b"tmp:";
/// Bound on read rounds that each meet a damaged chunk (each round forgets at least one).
const MAX_READ_ROUNDS: usize = 1000;
const LOCK_FILE: &str = "lagomorph.lock";
/// The file sled 0.34 keeps its log (every tree) in, inside the data directory.
const SLED_LOG_FILE: &str = "db";
/// How long `open` waits for a just-dropped store of this process to release sled's file lock.
const SLED_RELEASE_WAIT: Duration = Duration::from_secs(3);

/// Open message areas by name key.
type Areas = HashMap<Vec<u8>, Arc<SledQueue>>;

/// The sled-backed [`Store`]. One per data directory per machine (see [`SledStore::open`]).
pub struct SledStore {
    path: PathBuf,
    db: Db,
    exchanges: Tree,
    queues: Tree,
    bindings: Tree,
    /// Durable objects, keyed by [`record::name_key`] of kind and key.
    objects: Tree,
    quarantine: Quarantine,
    /// Held shared by [`Store::hold_flush`] guards, exclusively while a flush collects work.
    gate: FlushGate,
    /// Open message areas by name key, so every caller shares one handle (and one index) per
    /// queue.
    areas: Mutex<Areas>,
    /// Queues with writes for the next flush.
    dirty: Arc<DirtyList>,
    /// sled's log file, to `fdatasync` after sled's own flush (see [`Store::flush`]).
    log: File,
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
    /// `cache_bytes`. Spill files and scratch areas left by a previous run are dropped.
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
            if name.starts_with(LEGACY_SCRATCH_PREFIX) {
                db.drop_tree(&name).map_err(io)?;
            }
        }
        let quarantine = Quarantine {
            tree: db.open_tree(QUARANTINE).map_err(io)?,
        };
        let log_path = path.join(SLED_LOG_FILE);
        let log = File::open(&log_path)
            .map_err(|e| StoreError::Io(format!("cannot open {}: {e}", log_path.display())))?;
        Ok(SledStore {
            log,
            exchanges: db.open_tree(EXCHANGES).map_err(io)?,
            queues: db.open_tree(QUEUES).map_err(io)?,
            bindings: db.open_tree(BINDINGS).map_err(io)?,
            objects: db.open_tree(OBJECTS).map_err(io)?,
            quarantine,
            gate: FlushGate::default(),
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

    /// Drops a sled tree behind the store's back (tests that simulate interrupted work).
    #[cfg(test)]
    pub(super) fn drop_raw_tree(&self, name: &[u8]) {
        self.db.drop_tree(name).expect("test hook: drop tree");
    }

    /// The names of sled's trees (tests that check what was dropped).
    #[cfg(test)]
    pub(super) fn tree_names(&self) -> Vec<Vec<u8>> {
        self.db.tree_names().iter().map(|n| n.to_vec()).collect()
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
        let area = areas.remove(&key);
        // Waits for a write in flight, and refuses later ones.
        let _io = area.as_ref().map(|area| area.delete());
        // Messages first: a crash in between leaves an empty queue, never orphaned messages.
        // States before chunks: chunks left without states are dropped when the queue is
        // opened again (see `SledQueue::recover`).
        for prefix in [STATES_PREFIX, CHUNKS_PREFIX] {
            self.db.drop_tree(tree_name(prefix, &key)).map_err(io)?;
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

    fn open_queue(&self, vhost: &str, name: &str) -> Result<Arc<dyn QueueStore>, StoreError> {
        let key = record::queue_key(vhost, name);
        let mut areas = self.areas();
        if let Some(area) = areas.get(&key) {
            return Ok(area.clone());
        }
        let area = SledQueue::open(
            &self.db,
            &key,
            self.quarantine.clone(),
            Arc::clone(&self.dirty),
        )?;
        areas.insert(key, area.clone());
        Ok(area)
    }

    fn put_object(&self, kind: &str, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.objects
            .insert(record::name_key(kind, key), value)
            .map_err(io)?;
        Ok(())
    }

    fn delete_object(&self, kind: &str, key: &str) -> Result<(), StoreError> {
        self.objects
            .remove(record::name_key(kind, key))
            .map_err(io)?;
        Ok(())
    }

    fn load_objects(&self, kind: &str) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut prefix = Vec::with_capacity(4 + kind.len());
        prefix.extend_from_slice(&u32::try_from(kind.len()).unwrap_or(u32::MAX).to_be_bytes());
        prefix.extend_from_slice(kind.as_bytes());
        let mut out = Vec::new();
        for item in self.objects.scan_prefix(&prefix) {
            let (k, v) = item.map_err(io)?;
            match record::parse_name_key(&k) {
                Some((got, key)) if got == kind => out.push((key, Bytes::from_owner(v))),
                _ => {
                    self.quarantine
                        .put(OBJECTS, &k, &v, DecodeError("malformed object key"))?;
                    self.objects.remove(&k).map_err(io)?;
                }
            }
        }
        Ok(out)
    }

    fn hold_flush(&self) -> FlushHold<'_> {
        self.gate.hold()
    }

    fn quarantined(&self) -> u64 {
        self.quarantine.tree.len() as u64
    }

    fn flush(&self) -> Result<(), StoreError> {
        // Collect every queue's work while no `hold_flush` guard lives, so that writes made under
        // one guard are all in this flush or all in a later one.
        let queues: Vec<Arc<SledQueue>>;
        let mut collected: Vec<Collected<'_>> = Vec::new();
        {
            let _gate = self.gate.exclusive();
            queues = std::mem::take(&mut *lock(&self.dirty))
                .iter()
                .filter_map(Weak::upgrade)
                .collect();
            for queue in &queues {
                if let Some((work, guard)) = queue.collect() {
                    collected.push((queue, work, guard));
                }
            }
        }
        let applied = apply_flush(&collected);
        for (queue, work, _io) in collected {
            match &applied {
                Ok(()) => queue.area().index.finish_work(&work, true),
                Err(_) => queue.update(|ix| {
                    ix.undo_work(work);
                    ((), true)
                }),
            }
        }
        applied?;
        self.db.flush().map_err(io)?;
        // sled makes its writes stable with sync_file_range, which waits for the page cache to
        // reach the device but neither flushes the device's write cache nor syncs the metadata
        // of a log file that grew. A confirm promises the message is on disk, power loss
        // included: one fdatasync per group commit (about 0.2 ms here) makes it so.
        self.log
            .sync_data()
            .map_err(|e| StoreError::Io(format!("fdatasync of sled's log: {e}")))?;
        Ok(())
    }
}

/// One queue's share of a flush: the queue, its work, and its write lock, held until the work
/// is applied so that no `write_sealed` of the queue runs in between.
type Collected<'a> = (&'a SledQueue, Work, MutexGuard<'a, ()>);

/// Writes a flush's work: new chunk bodies first (invisible until their state exists), then
/// every state insert and delete of every queue in one sled transaction (so a crash keeps all
/// of a flush's changes or none: sled recovers a transaction whole), then the bodies of deleted
/// chunks (orphaned bodies left by a crash are dropped when the queue is opened).
fn apply_flush(collected: &[Collected<'_>]) -> Result<(), StoreError> {
    for (queue, work, _) in collected {
        queue.write_bodies(work)?;
    }
    let trees: Vec<Tree> = collected.iter().map(|(q, _, _)| q.states.clone()).collect();
    if collected
        .iter()
        .any(|(_, w, _)| !w.writes.is_empty() || !w.removes.is_empty())
    {
        trees
            .as_slice()
            .transaction(|states| {
                for ((_, work, _), tree) in collected.iter().zip(states) {
                    for w in &work.writes {
                        tree.insert(&record::chunk_key(w.first)[..], &w.state[..])?;
                    }
                    for (first, _) in &work.removes {
                        tree.remove(&record::chunk_key(*first)[..])?;
                    }
                }
                Ok(())
            })
            .map_err(tx_err)?;
    }
    for (queue, work, _) in collected {
        queue.remove_bodies(&work.removes)?;
    }
    Ok(())
}

impl Drop for SledStore {
    /// A store dropped without a final flush still writes what is buffered and syncs, so a clean
    /// shutdown never loses it.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, path = %self.path.display(), "final flush failed");
        }
    }
}

/// Queues with writes for the next flush.
type DirtyList = Mutex<Vec<Weak<SledQueue>>>;

/// What a queue's mutex guards: its chunk index, and whether it is on the store's dirty list.
struct Area {
    index: Index,
    /// On [`SledStore::dirty`] (so a write need not put it there again).
    queued: bool,
}

/// One durable queue's messages: two sled trees (chunks and their states, see the module docs)
/// and the in-memory [`Index`] over them.
///
/// Locks: `area` is held only for in-memory work (appends, bit flips, planning); `io` is held
/// by whoever writes the index's work to sled, so writes of one queue never interleave (taken
/// before `area`, never while holding it).
struct SledQueue {
    chunks: Tree,
    states: Tree,
    chunks_name: Vec<u8>,
    states_name: Vec<u8>,
    quarantine: Quarantine,
    area: Mutex<Area>,
    io: Mutex<()>,
    /// Set by `delete_queue`: the trees are gone, so further use is an error, not a silent write.
    deleted: AtomicBool,
    /// This queue, to put on `dirty` without an `Arc<Self>` receiver.
    me: Weak<SledQueue>,
    /// The store's list of queues with writes for the next flush.
    dirty: Arc<DirtyList>,
}

impl SledQueue {
    /// Opens the queue's trees and rebuilds its index from the state records alone.
    fn open(
        db: &Db,
        name_key: &[u8],
        quarantine: Quarantine,
        dirty: Arc<DirtyList>,
    ) -> Result<Arc<Self>, StoreError> {
        let chunks_name = tree_name(CHUNKS_PREFIX, name_key);
        let states_name = tree_name(STATES_PREFIX, name_key);
        let chunks = db.open_tree(&chunks_name).map_err(io)?;
        let states = db.open_tree(&states_name).map_err(io)?;
        let q = Arc::new_cyclic(|me| SledQueue {
            chunks,
            states,
            chunks_name,
            states_name,
            quarantine,
            area: Mutex::new(Area {
                index: Index::new(),
                queued: false,
            }),
            io: Mutex::new(()),
            deleted: AtomicBool::new(false),
            me: me.clone(),
            dirty,
        });
        q.recover()?;
        Ok(q)
    }

    fn area(&self) -> MutexGuard<'_, Area> {
        lock(&self.area)
    }

    fn check_live(&self) -> Result<(), StoreError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(StoreError::Io(format!(
                "message store {} used after its queue was deleted",
                self.chunks_name.escape_ascii()
            )));
        }
        Ok(())
    }

    /// Marks the queue deleted and waits for a write in flight; the guard keeps later writers
    /// out while the caller drops the trees.
    fn delete(&self) -> MutexGuard<'_, ()> {
        self.deleted.store(true, Ordering::Release);
        lock(&self.io)
    }

    /// Runs `f` on the index, then puts the queue on the store's dirty list if `f` changed
    /// something and it is not there yet.
    fn update<T>(&self, f: impl FnOnce(&mut Index) -> (T, bool)) -> T {
        let (out, push) = {
            let mut area = self.area();
            let (out, changed) = f(&mut area.index);
            let push = changed && !area.queued;
            if push {
                area.queued = true;
            }
            (out, push)
        };
        if push {
            lock(&self.dirty).push(self.me.clone());
        }
        out
    }

    /// Takes the queue's work for a flush (every sealed chunk, the open one, every changed
    /// state and deletion), with the queue's write lock, held until it is applied.
    fn collect(&self) -> Option<(Work, MutexGuard<'_, ()>)> {
        let guard = lock(&self.io);
        if self.deleted.load(Ordering::Acquire) {
            return None;
        }
        let work = {
            let mut area = self.area();
            area.queued = false;
            area.index.take_work(true, true)
        };
        (!work.is_empty()).then_some((work, guard))
    }

    /// Writes sealed chunks' bodies to sled ahead of a flush (bounding the memory they hold);
    /// their states follow in the next flush, which makes them part of the queue.
    fn write_ahead(&self) -> Result<(), StoreError> {
        let _io = lock(&self.io);
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        let work = self.area().index.take_work(false, false);
        if work.is_empty() {
            return Ok(());
        }
        match self.write_bodies(&work) {
            Ok(()) => {
                self.update(|ix| {
                    ix.finish_work(&work, false);
                    ((), true)
                });
                Ok(())
            }
            Err(e) => {
                self.update(|ix| {
                    ix.undo_work(work);
                    ((), true)
                });
                Err(e)
            }
        }
    }

    /// Writes the bodies of the new chunks in `work`, each cut into parts. A body without its
    /// state is not part of the queue: nothing reads it until the state is written.
    fn write_bodies(&self, work: &Work) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut any = false;
        for w in &work.writes {
            if let Some(body) = &w.body {
                for (i, part) in (0u32..).zip(body.chunks(PART_BYTES)) {
                    batch.insert(&record::part_key(w.first, i)[..], part);
                    any = true;
                }
            }
        }
        if any {
            self.chunks.apply_batch(batch).map_err(io)?;
        }
        Ok(())
    }

    /// Deletes the bodies of chunks whose states are gone.
    fn remove_bodies(&self, removes: &[(u64, u32)]) -> Result<(), StoreError> {
        if removes.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for &(first, parts) in removes {
            for i in 0..parts {
                batch.remove(&record::part_key(first, i)[..]);
            }
        }
        self.chunks.apply_batch(batch).map_err(io)
    }

    /// Runs `f` as one sled transaction over the chunk and state trees.
    fn transact(
        &self,
        f: impl Fn(
            &sled::transaction::TransactionalTree,
            &sled::transaction::TransactionalTree,
        ) -> Result<(), ConflictableTransactionError<()>>,
    ) -> Result<(), StoreError> {
        (&self.chunks, &self.states)
            .transaction(|(chunks, states)| f(chunks, states))
            .map_err(tx_err)
    }

    /// The stored parts of the chunk whose first id is `first`, in order, found by a scan
    /// (for damaged records, whose part count is unknown).
    fn scan_parts(&self, first: u64) -> Result<Vec<(sled::IVec, sled::IVec)>, StoreError> {
        self.chunks
            .range(record::part_key(first, 0)..=record::part_key(first, u32::MAX))
            .map(|kv| kv.map_err(io))
            .collect()
    }

    /// Reads a stored chunk's value from its parts; `Err` when one is missing.
    fn fetch(&self, first: u64, parts: u32) -> Result<Result<Bytes, DecodeError>, StoreError> {
        if parts == 1 {
            // The usual case for small chunks: the value itself, no copy.
            return Ok(
                match self.chunks.get(record::part_key(first, 0)).map_err(io)? {
                    Some(v) => Ok(Bytes::from_owner(v)),
                    None => Err(DecodeError("chunk missing")),
                },
            );
        }
        let mut out = Vec::with_capacity(PART_BYTES * parts as usize);
        for i in 0..parts {
            match self.chunks.get(record::part_key(first, i)).map_err(io)? {
                Some(v) => out.extend_from_slice(&v),
                None => return Ok(Err(DecodeError("chunk part missing"))),
            }
        }
        Ok(Ok(Bytes::from(out)))
    }

    /// Rebuilds the index from the state records. A state that does not decode is quarantined
    /// and rebuilt from its chunk with every entry live and none delivered (at least once: an
    /// acked message may come back); a chunk that does not decode either is quarantined too.
    /// Chunk bodies without a state (written ahead of a flush that never came, or left by a
    /// deletion cut short) are not part of the queue and are dropped.
    fn recover(&self) -> Result<(), StoreError> {
        let mut index = Index::new();
        let mut dead = Vec::new();
        let mut known = std::collections::HashSet::new();
        for item in self.states.iter() {
            let (key, value) = item.map_err(io)?;
            let Some(first) = record::parse_chunk_key(&key) else {
                self.quarantine.put(
                    &self.states_name,
                    &key,
                    &value,
                    DecodeError("malformed key"),
                )?;
                self.states.remove(&key).map_err(io)?;
                continue;
            };
            let state = match record::decode_state(first, &value) {
                Ok(st) => {
                    let nbits = (st.last - first).saturating_add(1);
                    Some(Recovered {
                        last: st.last,
                        parts: st.parts,
                        live: Bits::from_bytes(st.live, nbits),
                        delivered: Bits::from_bytes(st.delivered, nbits),
                        counts: Counts::from_pairs(st.counts()),
                    })
                }
                Err(reason) => {
                    self.quarantine
                        .put(&self.states_name, &key, &value, reason)?;
                    self.states.remove(&key).map_err(io)?;
                    self.rebuild_state(first)?
                }
            };
            let Some(r) = state else {
                continue;
            };
            known.insert(first);
            if r.live.last_set().is_none() {
                dead.push((first, r.parts));
                continue;
            }
            index.recover(first, r.last, r.parts, r.live, r.delivered, r.counts);
        }
        self.drop_orphan_bodies(&known)?;
        if !dead.is_empty() {
            // Every entry acked, the deletion lost to a crash: finish it.
            let mut batch = sled::Batch::default();
            for (first, _) in &dead {
                batch.remove(&record::chunk_key(*first)[..]);
            }
            self.states.apply_batch(batch).map_err(io)?;
            self.remove_bodies(&dead)?;
        }
        self.area().index = index;
        Ok(())
    }

    /// Deletes the chunk bodies whose first id is not in `known` (the chunks with a state).
    fn drop_orphan_bodies(&self, known: &std::collections::HashSet<u64>) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        let mut orphans = 0usize;
        for item in self.chunks.iter().keys() {
            let key = item.map_err(io)?;
            let keep =
                record::parse_part_key(&key).is_some_and(|(first, _)| known.contains(&first));
            if !keep {
                batch.remove(key);
                orphans += 1;
            }
        }
        if orphans > 0 {
            self.chunks.apply_batch(batch).map_err(io)?;
            tracing::debug!(tree = %self.chunks_name.escape_ascii(), parts = orphans, "dropped chunk bodies without a state");
        }
        Ok(())
    }

    /// A fresh state for the chunk at `first` whose state record was damaged: every entry
    /// live, none delivered, written at once. `None` (and the chunk quarantined) when the chunk
    /// is missing or damaged too.
    fn rebuild_state(&self, first: u64) -> Result<Option<Recovered>, StoreError> {
        let stored = self.scan_parts(first)?;
        if stored.is_empty() {
            return Ok(None);
        }
        let numbered = stored
            .iter()
            .zip(0u32..)
            .all(|((k, _), i)| record::parse_part_key(k) == Some((first, i)));
        let value: Vec<u8> = stored.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let entries = if numbered {
            match record::chunk_entries(&value) {
                Ok(e) if e.first().is_some_and(|e| e.id >= first) => Ok(e),
                Ok(_) => Err(DecodeError("chunk empty or below its key")),
                Err(reason) => Err(reason),
            }
        } else {
            Err(DecodeError("chunk parts missing"))
        };
        let entries = match entries {
            Ok(e) => e,
            Err(reason) => {
                self.quarantine_parts(&stored, reason)?;
                return Ok(None);
            }
        };
        let mut live = Bits::default();
        for e in &entries {
            live.set(e.id - first);
        }
        let last = entries.last().map_or(first, |e| e.id);
        let parts = u32::try_from(stored.len()).unwrap_or(u32::MAX);
        let n = record::bitmap_len(first, last);
        let state = record::encode_state(last, parts, &live.to_bytes(n, None), &vec![0; n], &[]);
        self.states
            .insert(record::chunk_key(first), state)
            .map_err(io)?;
        tracing::warn!(
            tree = %self.states_name.escape_ascii(),
            first,
            messages = entries.len(),
            "chunk state rebuilt from its chunk: its messages come back unacked and not redelivered"
        );
        Ok(Some(Recovered {
            last,
            parts,
            live,
            delivered: Bits::default(),
            counts: Counts::default(),
        }))
    }

    /// Moves the given parts of a chunk to the quarantine and deletes them.
    fn quarantine_parts(
        &self,
        parts: &[(sled::IVec, sled::IVec)],
        reason: DecodeError,
    ) -> Result<(), StoreError> {
        for (k, v) in parts {
            self.quarantine
                .put(&self.chunks_name, k, v, reason.clone())?;
            self.chunks.remove(k).map_err(io)?;
        }
        Ok(())
    }

    /// Moves a damaged (or missing) chunk and its state aside and forgets its messages.
    fn quarantine_chunk(
        &self,
        first: u64,
        in_memory: Option<&Bytes>,
        reason: DecodeError,
    ) -> Result<(), StoreError> {
        let _io = lock(&self.io);
        let key = record::chunk_key(first);
        let stored = self.scan_parts(first)?;
        if let Some(v) = in_memory {
            self.quarantine
                .put(&self.chunks_name, &key, v, reason.clone())?;
        }
        for (k, v) in &stored {
            self.quarantine
                .put(&self.chunks_name, k, v, reason.clone())?;
        }
        if let Some(v) = self.states.get(key).map_err(io)? {
            self.quarantine.put(&self.states_name, &key, &v, reason)?;
        }
        // Every part found, whatever the state said, with the state, at once.
        self.transact(|chunks, states| {
            for (k, _) in &stored {
                chunks.remove(k)?;
            }
            states.remove(&key[..])?;
            Ok(())
        })?;
        let lost = self.area().index.forget(first);
        if lost > 0 {
            tracing::error!(
                tree = %self.chunks_name.escape_ascii(),
                first,
                lost,
                "messages of a damaged chunk skipped"
            );
        }
        Ok(())
    }

    /// Decodes the live entries of id `from` or more of one read part into `out`, up to `limit`.
    /// `Err` when its chunk is missing or damaged.
    fn read_part(
        &self,
        part: &ReadPart,
        from: u64,
        limit: usize,
        out: &mut Vec<StoredMessage>,
    ) -> Result<Result<(), DecodeError>, StoreError> {
        let value = match &part.body {
            Some(b) => b.clone(),
            None => match self.fetch(part.first, part.parts)? {
                Ok(v) => v,
                Err(reason) => return Ok(Err(reason)),
            },
        };
        let entries = match record::chunk_entries(&value) {
            Ok(e) => e,
            Err(reason) => return Ok(Err(reason)),
        };
        let start = out.len();
        for e in entries {
            if out.len() == limit {
                break;
            }
            let Some(i) = e.id.checked_sub(part.first) else {
                out.truncate(start);
                return Ok(Err(DecodeError("entry below its chunk's key")));
            };
            if e.id < from || !part.live.get(i) {
                continue;
            }
            match e.decode(&value) {
                Ok(record) => out.push(StoredMessage {
                    id: e.id,
                    delivered: part.delivered.get(i),
                    delivery_count: part.counts.get(i),
                    record,
                }),
                Err(reason) => {
                    // All or nothing: a chunk with one bad entry is moved aside whole.
                    out.truncate(start);
                    return Ok(Err(reason));
                }
            }
        }
        Ok(Ok(()))
    }
}

impl QueueStore for SledQueue {
    fn put(&self, id: u64, m: MessageView<'_>) -> Result<PutOutcome, StoreError> {
        self.check_live()?;
        let due = self.update(|ix| match ix.append(id, &m) {
            Ok(due) => (Ok(due), true),
            Err(e) => (Err(e), false),
        })?;
        Ok(if due {
            PutOutcome::WriteDue
        } else {
            PutOutcome::Buffered
        })
    }

    fn write_sealed(&self) -> Result<(), StoreError> {
        self.check_live()?;
        self.write_ahead()
    }

    fn mark_delivered(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.mark_delivered(id)));
        Ok(())
    }

    fn set_delivery_count(&self, id: u64, count: u32) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.set_delivery_count(id, count)));
        Ok(())
    }

    fn remove(&self, id: u64) -> Result<(), StoreError> {
        self.check_live()?;
        self.update(|ix| ((), ix.remove(id)));
        Ok(())
    }

    fn remove_from(&self, from_id: u64) -> Result<usize, StoreError> {
        self.check_live()?;
        Ok(self.update(|ix| {
            let n = ix.remove_from(from_id);
            (n, n > 0)
        }))
    }

    fn read(&self, from_id: u64, limit: usize) -> Result<Vec<StoredMessage>, StoreError> {
        self.check_live()?;
        let mut out: Vec<StoredMessage> = Vec::with_capacity(limit.min(4096));
        let mut from = from_id;
        for _ in 0..MAX_READ_ROUNDS {
            let parts = self.area().index.plan_read(from, limit - out.len());
            let mut damaged = Vec::new();
            for part in &parts {
                if out.len() == limit {
                    break;
                }
                if let Err(reason) = self.read_part(part, from, limit, &mut out)? {
                    damaged.push((part.first, part.body.clone(), reason));
                }
            }
            if damaged.is_empty() {
                return Ok(out);
            }
            for (first, body, reason) in damaged {
                self.quarantine_chunk(first, body.as_ref(), reason)?;
            }
            if out.len() == limit {
                return Ok(out);
            }
            if let Some(last) = out.last() {
                from = last.id.saturating_add(1);
            }
        }
        tracing::error!(tree = %self.chunks_name.escape_ascii(), "too many damaged chunks in one read");
        Ok(out)
    }

    fn len(&self) -> usize {
        self.area().index.len()
    }

    fn last_id(&self) -> Option<u64> {
        self.area().index.last_id()
    }
}

/// A chunk's state as found at startup.
struct Recovered {
    last: u64,
    parts: u32,
    live: Bits,
    delivered: Bits,
    counts: Counts,
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

/// A tree prefix followed by the queue's name key.
fn tree_name(prefix: &[u8], name_key: &[u8]) -> Vec<u8> {
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

fn tx_err(e: TransactionError<()>) -> StoreError {
    match e {
        TransactionError::Storage(e) => io(e),
        TransactionError::Abort(()) => StoreError::Io("sled: transaction aborted".into()),
    }
}
