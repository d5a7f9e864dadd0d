//! Message deduplication, with LavinMQ's arguments on exchanges and queues:
//! `x-message-deduplication: true` turns it on, `x-cache-size` bounds the cache (default 128
//! entries; the oldest entry goes first), `x-cache-ttl` (ms) is how long an entry counts
//! (default: until evicted; a message's own `x-cache-ttl` header, a 32-bit int, overrides it),
//! `x-deduplication-header` names the header whose value identifies a message (default
//! `x-deduplication-header`). A message without that header is never a duplicate. A duplicate
//! published to a deduplicating exchange is routed nowhere (still confirmed; returned when
//! mandatory, as LavinMQ counts it unroutable); one routed to a deduplicating queue is not
//! queued there.
//!
//! Beyond LavinMQ: the cache of a durable exchange or queue is persisted (durable objects, one
//! per entry, buffered and written by the group commit; evictions delete theirs), so a
//! publisher that retries after a broker crash does not create a duplicate. Deadlines are
//! wall-clock ms, so they hold across the restart.

use crate::protocol::properties::Properties;
use crate::protocol::types::{FieldTable, FieldValue, ShortStr, encode_table};
use crate::storage::{Store, StoreError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::broker::time::Now;

/// The default header naming a message's identity.
pub const DEFAULT_HEADER: &str = "x-deduplication-header";
/// LavinMQ's default cache size.
pub const DEFAULT_CACHE_SIZE: u32 = 128;

/// A deduplicating exchange's or queue's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DedupSpec {
    /// Entries kept at most.
    pub size: u32,
    /// Default entry lifetime, ms.
    pub ttl: Option<u32>,
    /// The identifying header.
    pub header: String,
}

fn int_arg(args: &FieldTable, name: &str) -> Result<Option<u32>, String> {
    match args.get(name) {
        None => Ok(None),
        Some(v) => match v {
            FieldValue::Timestamp(_) => None,
            other => other.as_i64(),
        }
        .map(|n| Some(u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
        .ok_or_else(|| format!("{name} header not a Int")),
    }
}

impl DedupSpec {
    /// The settings in declare arguments (LavinMQ's checks and texts, 406), `None` when
    /// deduplication is off.
    pub fn parse(args: &FieldTable) -> Result<Option<DedupSpec>, String> {
        match args.get("x-message-deduplication") {
            None => return Ok(None),
            Some(FieldValue::Bool(false)) => return Ok(None),
            Some(FieldValue::Bool(true)) => {}
            Some(_) => return Err("x-message-deduplication header not a Bool".into()),
        }
        let size = int_arg(args, "x-cache-size")?.unwrap_or(DEFAULT_CACHE_SIZE);
        let ttl = int_arg(args, "x-cache-ttl")?;
        let header = match args.get("x-deduplication-header") {
            None => DEFAULT_HEADER.to_string(),
            Some(v) => v
                .as_str()
                .ok_or("x-deduplication-header header not a String")?
                .to_string(),
        };
        Ok(Some(DedupSpec {
            size: size.max(1),
            ttl,
            header,
        }))
    }
}

#[derive(Debug, Default)]
struct Cache {
    /// Encoded identity → (deadline wall-ms, 0 = none; insertion number).
    map: HashMap<String, (u64, u64)>,
    /// Insertion order (entries whose number no longer matches were replaced).
    order: VecDeque<(String, u64)>,
    next: u64,
}

/// One exchange's or queue's cache.
pub struct Deduper {
    spec: DedupSpec,
    /// The store and object kind its entries persist under (durable owners).
    persist: Option<(Arc<dyn Store>, String)>,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for Deduper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deduper")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// The object kind a durable owner's entries are stored under.
pub fn object_kind(vhost: &str, queue: bool, name: &str) -> String {
    format!("dedup:{}:{vhost}:{name}", if queue { 'q' } else { 'x' })
}

/// A header value as a stable string (typed: `1` and `"1"` differ, as in LavinMQ).
fn identity(v: &FieldValue) -> String {
    let mut b = BytesMut::new();
    encode_table(
        &FieldTable(vec![(ShortStr::from_static("k"), v.clone())]),
        &mut b,
    );
    URL_SAFE_NO_PAD.encode(&b)
}

impl Deduper {
    /// An empty cache; with `persist`, its entries are stored as objects of that kind.
    pub fn new(spec: DedupSpec, persist: Option<(Arc<dyn Store>, String)>) -> Arc<Self> {
        Arc::new(Deduper {
            spec,
            persist,
            cache: Mutex::new(Cache::default()),
        })
    }

    /// Loads the stored entries (startup; reads the store, so no broker lock may be held),
    /// dropping those already expired at `now`.
    pub fn load(&self, now: Now) -> Result<(), StoreError> {
        let Some((store, kind)) = &self.persist else {
            return Ok(());
        };
        let mut entries: Vec<(String, u64, u64)> = Vec::new();
        for (key, value) in store.load_objects(kind)? {
            let (Some(d), Some(n)) = (value.get(..8), value.get(8..16)) else {
                store.delete_object(kind, &key)?;
                continue;
            };
            let deadline = u64::from_be_bytes(d.try_into().unwrap_or_default());
            let seq = u64::from_be_bytes(n.try_into().unwrap_or_default());
            if deadline != 0 && deadline <= now.unix_ms {
                store.delete_object(kind, &key)?;
                continue;
            }
            entries.push((key, deadline, seq));
        }
        entries.sort_by_key(|e| e.2);
        let mut c = self.lock();
        for (key, deadline, seq) in entries {
            c.next = c.next.max(seq + 1);
            c.order.push_back((key.clone(), seq));
            c.map.insert(key, (deadline, seq));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Entries in the cache (tests, metrics).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// True when the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True if a message with these properties is a duplicate; otherwise it is remembered
    /// (when it has an identity). Store writes are buffered (no I/O).
    pub fn check(&self, props: &Properties, now: Now) -> Result<bool, StoreError> {
        // Cheap test first: the header's name must appear in the encoded properties.
        let h = self.spec.header.as_bytes();
        if h.is_empty() || !props.as_bytes().windows(h.len()).any(|w| w == h) {
            return Ok(false);
        }
        let Some(headers) = props.headers() else {
            return Ok(false);
        };
        let Some(v) = headers.get(&self.spec.header) else {
            return Ok(false);
        };
        let key = identity(v);
        let ttl = match headers.get("x-cache-ttl") {
            Some(FieldValue::I32(t)) => u32::try_from(*t).ok().or(self.spec.ttl),
            _ => self.spec.ttl,
        };
        let deadline = ttl.map_or(0, |t| now.unix_ms.saturating_add(u64::from(t)).max(1));
        let mut c = self.lock();
        if let Some(&(d, _)) = c.map.get(&key)
            && (d == 0 || d > now.unix_ms)
        {
            return Ok(true);
        }
        while c.map.len() >= self.spec.size as usize {
            let Some((old, seq)) = c.order.pop_front() else {
                break;
            };
            if c.map.get(&old).is_some_and(|e| e.1 == seq) {
                c.map.remove(&old);
                if let Some((store, kind)) = &self.persist {
                    store.delete_object(kind, &old)?;
                }
            }
        }
        let seq = c.next;
        c.next += 1;
        c.order.push_back((key.clone(), seq));
        if let Some((store, kind)) = &self.persist {
            let mut v = [0u8; 16];
            v[..8].copy_from_slice(&deadline.to_be_bytes());
            v[8..].copy_from_slice(&seq.to_be_bytes());
            store.put_object(kind, &key, &v)?;
        }
        c.map.insert(key, (deadline, seq));
        Ok(false)
    }

    /// Forgets every entry, stored ones too (its owner was deleted).
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut c = self.lock();
        if let Some((store, kind)) = &self.persist {
            for key in c.map.keys() {
                store.delete_object(kind, key)?;
            }
        }
        *c = Cache::default();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::properties::BasicProperties;
    use crate::protocol::types::LongStr;
    use crate::storage::MemoryStore;
    use std::time::Duration;

    fn msg(id: &str, ttl: Option<i32>) -> Properties {
        let mut h = vec![(
            ShortStr::from_static(DEFAULT_HEADER),
            FieldValue::LongStr(LongStr::from(id)),
        )];
        if let Some(t) = ttl {
            h.push((ShortStr::from_static("x-cache-ttl"), FieldValue::I32(t)));
        }
        Properties::from(&BasicProperties {
            headers: Some(FieldTable(h)),
            ..Default::default()
        })
    }

    fn spec(size: u32, ttl: Option<u32>) -> DedupSpec {
        DedupSpec {
            size,
            ttl,
            header: DEFAULT_HEADER.into(),
        }
    }

    #[test]
    fn duplicates_size_bound_and_ttl() {
        let now = Now::new(crate::clock::now().mono, 1_000_000);
        let d = Deduper::new(spec(2, Some(100)), None);
        assert!(!d.check(&msg("a", None), now).expect("ok"));
        assert!(d.check(&msg("a", None), now).expect("ok"));
        assert!(!d.check(&Properties::EMPTY, now).expect("ok"));
        assert!(!d.check(&msg("b", None), now).expect("ok"));
        assert!(!d.check(&msg("c", None), now).expect("ok"), "evicts a");
        assert!(!d.check(&msg("a", None), now).expect("ok"), "a was evicted");
        let later = now.after(Duration::from_millis(150));
        assert!(!d.check(&msg("a", None), later).expect("ok"), "expired");
        // A message's own x-cache-ttl wins.
        assert!(!d.check(&msg("z", Some(1000)), now).expect("ok"));
        assert!(d.check(&msg("z", None), later).expect("ok"));
    }

    #[test]
    fn persisted_entries_come_back_in_order_and_evictions_are_deleted() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let now = Now::new(crate::clock::now().mono, 5_000);
        let kind = object_kind("/", false, "x");
        let d = Deduper::new(spec(2, None), Some((Arc::clone(&store), kind.clone())));
        for id in ["a", "b", "c"] {
            assert!(!d.check(&msg(id, None), now).expect("ok"));
        }
        assert_eq!(store.load_objects(&kind).expect("load").len(), 2);
        let again = Deduper::new(spec(2, None), Some((Arc::clone(&store), kind.clone())));
        again.load(now).expect("load");
        assert!(again.check(&msg("b", None), now).expect("ok"));
        assert!(again.check(&msg("c", None), now).expect("ok"));
        assert!(!again.check(&msg("a", None), now).expect("ok"));
        again.clear().expect("clear");
        assert!(store.load_objects(&kind).expect("load").is_empty());
    }

    #[test]
    fn arguments_are_checked_as_lavinmq_does() {
        let t = |pairs: Vec<(&'static str, FieldValue)>| {
            DedupSpec::parse(&FieldTable(
                pairs
                    .into_iter()
                    .map(|(k, v)| (ShortStr::from_static(k), v))
                    .collect(),
            ))
        };
        assert_eq!(t(vec![]), Ok(None));
        assert_eq!(
            t(vec![("x-message-deduplication", FieldValue::Bool(true))]),
            Ok(Some(spec(DEFAULT_CACHE_SIZE, None)))
        );
        assert_eq!(
            t(vec![
                ("x-message-deduplication", FieldValue::Bool(true)),
                ("x-cache-size", FieldValue::LongStr(LongStr::from("9")))
            ]),
            Err("x-cache-size header not a Int".into())
        );
    }
}
