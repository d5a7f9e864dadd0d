//! Definitions and durable objects: writes are buffered in memory (no sled call on the caller's
//! thread, so the broker may make them under its locks) and applied by the next flush in its
//! one transaction; loads read sled and overlay what is still buffered.

use std::collections::BTreeMap;

use bytes::Bytes;
use sled::Tree;

use super::super::record::{self, DecodeError};
use super::super::{BindingRecord, Definitions, ExchangeRecord, QueueRecord, StoreError};
use super::quarantine::Quarantine;
use super::{Trees, io};

/// Which tree a buffered write goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Exchanges,
    Queues,
    Bindings,
    Objects,
    Qids,
    Meta,
    Segments,
    Quarantine,
    Index,
}

/// A buffered write: insert (`Some`) or remove (`None`).
pub(super) type Op = (Target, Vec<u8>, Option<Vec<u8>>);

impl Trees {
    pub(super) fn of(&self, t: Target) -> &Tree {
        match t {
            Target::Exchanges => &self.exchanges,
            Target::Queues => &self.queues,
            Target::Bindings => &self.bindings,
            Target::Objects => &self.objects,
            Target::Qids => &self.qids,
            Target::Meta => &self.meta,
            Target::Segments => &self.segments,
            Target::Quarantine => &self.quarantine,
            Target::Index => &self.index,
        }
    }

    /// Every (key, value) of `target` as sled holds it with the buffered `ops` applied on top.
    pub(super) fn overlay(
        &self,
        target: Target,
        prefix: &[u8],
        ops: &[Op],
    ) -> Result<BTreeMap<Vec<u8>, Vec<u8>>, StoreError> {
        let mut map = BTreeMap::new();
        for item in self.of(target).scan_prefix(prefix) {
            let (k, v) = item.map_err(io)?;
            map.insert(k.to_vec(), v.to_vec());
        }
        for (t, k, v) in ops {
            if *t != target || !k.starts_with(prefix) {
                continue;
            }
            match v {
                Some(v) => map.insert(k.clone(), v.clone()),
                None => map.remove(k),
            };
        }
        Ok(map)
    }
}

/// Decodes one definitions tree (with buffered writes), quarantining records that do not
/// decode or whose key does not match their contents; returns the good ones and the writes
/// that move the bad ones aside (their quarantine copies and removals).
pub(super) fn load_tree<T>(
    trees: &Trees,
    quarantine: &Quarantine,
    target: Target,
    tree_name: &[u8],
    ops: &[Op],
    decode: fn(&[u8]) -> Result<T, DecodeError>,
    key_of: fn(&T) -> Vec<u8>,
) -> Result<(Vec<T>, Vec<Op>), StoreError> {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for (key, value) in trees.overlay(target, &[], ops)? {
        let reason = match decode(&value) {
            Ok(rec) if key_of(&rec) == key => {
                out.push(rec);
                continue;
            }
            Ok(_) => DecodeError("key does not match record"),
            Err(e) => e,
        };
        quarantine.put(tree_name, &key, &value, reason)?;
        // Also logged with the removal by the next flush: the copy is as durable as the removal.
        bad.push((
            Target::Quarantine,
            Quarantine::key(tree_name, &key),
            Some(value),
        ));
        bad.push((target, key, None));
    }
    Ok((out, bad))
}

/// Loads every definition; damaged records are copied to the quarantine, and the writes that
/// move them aside are returned for the next flush.
pub(super) fn load_definitions(
    trees: &Trees,
    quarantine: &Quarantine,
    ops: &[Op],
) -> Result<(Definitions, Vec<Op>), StoreError> {
    let mut removals = Vec::new();
    let (exchanges, bad) = load_tree(
        trees,
        quarantine,
        Target::Exchanges,
        super::EXCHANGES,
        ops,
        record::decode_exchange,
        |r: &ExchangeRecord| record::exchange_key(&r.vhost, &r.name),
    )?;
    removals.extend(bad);
    let (queues, bad) = load_tree(
        trees,
        quarantine,
        Target::Queues,
        super::QUEUES,
        ops,
        record::decode_queue,
        |r: &QueueRecord| record::queue_key(&r.vhost, &r.name),
    )?;
    removals.extend(bad);
    let (bindings, bad) = load_tree(
        trees,
        quarantine,
        Target::Bindings,
        super::BINDINGS,
        ops,
        record::decode_binding,
        |r: &BindingRecord| record::binding_key(r),
    )?;
    removals.extend(bad);
    Ok((
        Definitions {
            exchanges,
            queues,
            bindings,
        },
        removals,
    ))
}

/// Loads the objects of `kind` (with buffered writes).
pub(super) fn load_objects(
    trees: &Trees,
    kind: &str,
    ops: &[Op],
) -> Result<Vec<(String, Bytes)>, StoreError> {
    let mut prefix = Vec::with_capacity(4 + kind.len());
    prefix.extend_from_slice(&u32::try_from(kind.len()).unwrap_or(u32::MAX).to_be_bytes());
    prefix.extend_from_slice(kind.as_bytes());
    Ok(trees
        .overlay(Target::Objects, &prefix, ops)?
        .into_iter()
        .filter_map(|(k, v)| match record::parse_name_key(&k) {
            Some((got, key)) if got == kind => Some((key, Bytes::from(v))),
            _ => None,
        })
        .collect())
}
