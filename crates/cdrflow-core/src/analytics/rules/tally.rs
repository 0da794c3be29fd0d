//! Per-key tallies in event-time buckets: the state of every stateful rule.
//!
//! A rule counts something per key (an MSISDN, a caller, a region and event
//! type) per bucket of event time (a window, an hour). Memory keeps the
//! buckets near the newest event; each checkpoint appends the changes of
//! every bucket it touched to a span table (one value per bucket and
//! checkpoint, the bucket's first minute as its span), so that:
//! - a restart, or a record for a bucket memory already let go (a lagging
//!   partition), reads the bucket back — stored changes plus those not yet
//!   handed over — and never counts it from zero;
//! - nothing is read while records flow for buckets no checkpoint stored
//!   (`stored_up_to`): a store read in the poll loop would hold up a Kafka
//!   consumer.
//!
//! Tallies merge (counts add, sets unite, the latest wins), so stored
//! changes can be added up in any order.

use std::collections::BTreeMap;

use std::sync::Arc;

use rustc_hash::{FxHashMap, FxHashSet};

use crate::dedup::minute_of;
use crate::normalize::EpochMillis;
use crate::operator::{
    decode_millis, encode_millis, ReadError, StateKind, StateReader, StateTable, StateWriter,
};

/// What a rule counts per key and bucket.
pub trait Tally: Default {
    /// Adds another tally of the same key and bucket.
    fn merge(&mut self, other: &Self);
    fn encode(&self, out: &mut Vec<u8>);
    /// Reads one tally from the front of `bytes`, advancing past it.
    fn decode(bytes: &mut &[u8]) -> Option<Self>;
}

/// The latest bucket of each tally table that any checkpoint handed over
/// (decimal text), keyed by the table's name.
pub const STORED_UP_TO: StateTable = StateTable {
    name: "stored_up_to",
    kind: StateKind::Keyed,
};

/// Stored changes a day behind the newest event are dropped: no bucket that
/// old is counted any more, its records being late in every partition that
/// is still reading.
const EXPIRE_AFTER_MS: i64 = 86_400_000;

/// A key's tally in one bucket: all of it, and the changes since the last
/// checkpoint (what the next one hands over).
#[derive(Default)]
pub struct Entry<T> {
    total: T,
    changes: T,
    changed: bool,
}

impl<T: Tally> Entry<T> {
    pub fn total(&self) -> &T {
        &self.total
    }

    pub fn add(&mut self, change: &T) {
        self.total.merge(change);
        self.changes.merge(change);
        self.changed = true;
    }
}

type Bucket<T> = FxHashMap<u64, Entry<T>>;

pub struct Buckets<T> {
    table: StateTable,
    bucket_ms: i64,
    /// Buckets kept in memory before the newest one's (older ones are read
    /// back from the store if a record for one still comes).
    keep_behind: i64,
    live: BTreeMap<EpochMillis, Bucket<T>>,
    /// Changes of buckets that left memory since the last checkpoint, encoded.
    evicted: Vec<(EpochMillis, Vec<u8>)>,
    stored_up_to: Option<EpochMillis>,
    newest: Option<EpochMillis>,
}

impl<T: Tally> Buckets<T> {
    pub fn new(table: StateTable, bucket_ms: i64, keep_behind: i64) -> Buckets<T> {
        debug_assert_eq!(table.kind, StateKind::Spans);
        // Buckets are found again by their first minute.
        debug_assert!(bucket_ms >= 60_000 && bucket_ms % 60_000 == 0);
        Buckets {
            table,
            bucket_ms,
            keep_behind,
            live: BTreeMap::new(),
            evicted: Vec::new(),
            stored_up_to: None,
            newest: None,
        }
    }

    pub fn bucket_ms(&self) -> i64 {
        self.bucket_ms
    }

    /// The start of the bucket holding `time`.
    pub fn bucket_of(&self, time: EpochMillis) -> EpochMillis {
        time.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    pub fn stored_up_to(&self) -> Option<EpochMillis> {
        self.stored_up_to
    }

    pub fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.stored_up_to = match state.value(&STORED_UP_TO, self.table.name)? {
            None => None,
            Some(value) => Some(decode_millis(&value, self.table.name)?),
        };
        Ok(())
    }

    /// Event time has reached `time` (memory keeps the buckets near it).
    pub fn saw(&mut self, time: EpochMillis) {
        self.newest = Some(self.newest.map_or(time, |n| n.max(time)));
    }

    /// `key`'s entry in the bucket starting at `bucket`, new if it has none.
    pub fn entry(
        &mut self,
        bucket: EpochMillis,
        key: u64,
        state: &mut dyn StateReader,
    ) -> Result<&mut Entry<T>, ReadError> {
        Ok(self.load(bucket, state)?.entry(key).or_default())
    }

    /// `key`'s tally in the bucket starting at `bucket`, if it has one.
    pub fn get(
        &mut self,
        bucket: EpochMillis,
        key: u64,
        state: &mut dyn StateReader,
    ) -> Result<Option<&T>, ReadError> {
        Ok(self.load(bucket, state)?.get(&key).map(Entry::total))
    }

    /// The bucket, read back from the store if memory let it go (it did so
    /// only after keeping the bucket's changes for the next checkpoint).
    pub fn load(
        &mut self,
        bucket: EpochMillis,
        state: &mut dyn StateReader,
    ) -> Result<&mut Bucket<T>, ReadError> {
        if !self.live.contains_key(&bucket) {
            let mut entries = Bucket::default();
            if self.stored_up_to.is_some_and(|up_to| bucket <= up_to) {
                let minute = minute_of(bucket);
                let mut damaged = None;
                state.spans(&self.table, minute, minute, &mut |value| {
                    if let Err(e) = decode_into(self.table.name, value, &mut entries) {
                        damaged = Some(e);
                    }
                })?;
                if let Some(e) = damaged {
                    return Err(e);
                }
            }
            for (_, changes) in self.evicted.iter().filter(|(s, _)| *s == bucket) {
                decode_into(self.table.name, changes, &mut entries)?;
            }
            self.live.insert(bucket, entries);
        }
        Ok(self.live.get_mut(&bucket).expect("inserted above"))
    }

    /// Lets buckets far behind the newest event leave memory, keeping their
    /// changes for the next checkpoint; `leaving` sees each one's tallies.
    pub fn evict(&mut self, mut leaving: impl FnMut(EpochMillis, &Bucket<T>)) {
        let Some(newest) = self.newest else { return };
        let keep_from = self.bucket_of(newest) - self.keep_behind * self.bucket_ms;
        if self
            .live
            .first_key_value()
            .is_none_or(|(start, _)| *start >= keep_from)
        {
            return;
        }
        let kept = self.live.split_off(&keep_from);
        for (start, mut entries) in std::mem::replace(&mut self.live, kept) {
            leaving(start, &entries);
            let changes = take_changes(&mut entries);
            if !changes.is_empty() {
                self.evicted.push((start, changes));
            }
        }
    }

    /// Hands over every bucket's changes since the last checkpoint.
    pub fn checkpoint(&mut self, state: &mut StateWriter<'_>) {
        let in_memory = self
            .live
            .iter_mut()
            .map(|(start, entries)| (*start, take_changes(entries)));
        let mut up_to = self.stored_up_to;
        for (start, changes) in std::mem::take(&mut self.evicted)
            .into_iter()
            .chain(in_memory)
        {
            if !changes.is_empty() {
                let minute = minute_of(start);
                state.append(&self.table, minute, minute, changes);
                up_to = Some(up_to.map_or(start, |u| u.max(start)));
            }
        }
        if up_to != self.stored_up_to {
            self.stored_up_to = up_to;
            if let Some(up_to) = up_to {
                state.put(&STORED_UP_TO, self.table.name, encode_millis(up_to));
            }
        }
        if let Some(newest) = self.newest {
            state.expire_before(&self.table, minute_of(newest - EXPIRE_AFTER_MS));
        }
    }
}

/// What the operator's hooks do to a rule's tallies, whatever their type.
pub trait TallyState {
    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError>;
    fn evict(&mut self);
    fn checkpoint(&mut self, state: &mut StateWriter<'_>);
}

impl<T: Tally> TallyState for Buckets<T> {
    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        Buckets::on_start(self, state)
    }

    fn evict(&mut self) {
        Buckets::evict(self, |_, _| {});
    }

    fn checkpoint(&mut self, state: &mut StateWriter<'_>) {
        Buckets::checkpoint(self, state);
    }
}

/// Names (regions) shared by every tally that holds them.
#[derive(Default)]
pub struct Names(FxHashSet<Arc<str>>);

impl Names {
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(known) = self.0.get(name) {
            return known.clone();
        }
        let new: Arc<str> = Arc::from(name);
        self.0.insert(new.clone());
        new
    }
}

/// The changes since the last checkpoint as (key, tally) pairs in key
/// order; resets them.
fn take_changes<T: Tally>(entries: &mut Bucket<T>) -> Vec<u8> {
    let mut changed: Vec<(u64, T)> = entries
        .iter_mut()
        .filter(|(_, e)| e.changed)
        .map(|(key, e)| {
            e.changed = false;
            (*key, std::mem::take(&mut e.changes))
        })
        .collect();
    changed.sort_unstable_by_key(|(key, _)| *key);
    let mut out = Vec::with_capacity(changed.len() * 16);
    for (key, tally) in changed {
        out.extend_from_slice(&key.to_le_bytes());
        tally.encode(&mut out);
    }
    out
}

fn decode_into<T: Tally>(
    table: &str,
    mut value: &[u8],
    into: &mut Bucket<T>,
) -> Result<(), ReadError> {
    let damaged = || {
        ReadError(format!(
            "a stored `{table}` value is not whole (key, tally) pairs; the store is damaged"
        ))
    };
    while !value.is_empty() {
        let key = read_u64(&mut value).ok_or_else(damaged)?;
        let tally = T::decode(&mut value).ok_or_else(damaged)?;
        into.entry(key).or_default().total.merge(&tally);
    }
    Ok(())
}

/// Reads a little-endian `u64` from the front of `bytes`.
pub fn read_u64(bytes: &mut &[u8]) -> Option<u64> {
    let (head, rest) = bytes.split_first_chunk::<8>()?;
    *bytes = rest;
    Some(u64::from_le_bytes(*head))
}

/// A hash that stays the same across versions and machines, for keys that
/// are stored (FNV-1a; the hash maps' FxHash makes no such promise).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &byte in *part {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Parts are separated, so ("ab", "c") and ("a", "bc") differ.
        hash ^= 0xff;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// An event count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Count(pub u64);

impl Tally for Count {
    fn merge(&mut self, other: &Self) {
        self.0 = self.0.saturating_add(other.0);
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0.to_le_bytes());
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        read_u64(bytes).map(Count)
    }
}

/// A small set of hashes (cells, callees), in order; rules stop adding once
/// it is past their threshold, which keeps it small.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Hashes(pub Vec<u64>);

impl Hashes {
    pub fn of(hash: u64) -> Hashes {
        Hashes(vec![hash])
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.0.binary_search(&hash).is_ok()
    }
}

impl Tally for Hashes {
    fn merge(&mut self, other: &Self) {
        for &hash in &other.0 {
            if let Err(at) = self.0.binary_search(&hash) {
                self.0.insert(at, hash);
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u64).to_le_bytes());
        for hash in &self.0 {
            out.extend_from_slice(&hash.to_le_bytes());
        }
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        let len = usize::try_from(read_u64(bytes)?).ok()?;
        if bytes.len() / 8 < len {
            return None;
        }
        let mut set = Hashes::default();
        for _ in 0..len {
            set.merge(&Hashes::of(read_u64(bytes)?));
        }
        Some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::{Checkpoint, MemoryState};

    const TABLE: StateTable = StateTable {
        name: "test_counts",
        kind: StateKind::Spans,
    };

    fn checkpoint(buckets: &mut Buckets<Count>, state: &mut MemoryState) {
        let mut cp = Checkpoint::default();
        buckets.checkpoint(&mut cp.state_of("test"));
        state.apply(&cp);
    }

    #[test]
    fn a_bucket_counts_on_across_eviction_checkpoints_and_restarts() {
        let mut state = MemoryState::new("test");
        let minute = 60_000;
        let mut first = Buckets::<Count>::new(TABLE, 5 * minute, 3);
        first.on_start(&mut state).unwrap();
        first.entry(0, 7, &mut state).unwrap().add(&Count(2));
        first.saw(0);
        checkpoint(&mut first, &mut state);
        first.entry(0, 7, &mut state).unwrap().add(&Count(1));
        // Far ahead: bucket 0 leaves memory with one change not yet handed over.
        first.saw(100 * minute);
        let mut left = Vec::new();
        first.evict(|start, entries| left.push((start, entries[&7].total().0)));
        assert_eq!(left, vec![(0, 3)]);
        assert_eq!(first.get(0, 7, &mut state).unwrap(), Some(&Count(3)));
        checkpoint(&mut first, &mut state);

        let mut second = Buckets::<Count>::new(TABLE, 5 * minute, 3);
        second.on_start(&mut state).unwrap();
        assert_eq!(second.stored_up_to(), Some(0));
        second.entry(0, 7, &mut state).unwrap().add(&Count(1));
        assert_eq!(second.get(0, 7, &mut state).unwrap(), Some(&Count(4)));
        assert_eq!(second.get(0, 8, &mut state).unwrap(), None);
    }

    #[test]
    fn sets_merge_in_order_and_decode_what_they_encode() {
        let mut set = Hashes::of(9);
        set.merge(&Hashes(vec![3, 9, 12]));
        assert_eq!(set, Hashes(vec![3, 9, 12]));
        let mut bytes = Vec::new();
        set.encode(&mut bytes);
        let mut slice = bytes.as_slice();
        assert_eq!(Hashes::decode(&mut slice), Some(set));
        assert!(slice.is_empty());
        let mut cut = &bytes[..bytes.len() - 1];
        assert_eq!(Hashes::decode(&mut cut), None);
        assert_ne!(stable_hash(&[b"ab", b"c"]), stable_hash(&[b"a", b"bc"]));
    }
}
