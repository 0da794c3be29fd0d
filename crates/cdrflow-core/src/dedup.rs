//! Deduplication by record identity within an event-time window.
//!
//! Identities are 128-bit hashes: small enough to keep millions in memory,
//! wide enough that two different records never collide in practice. The
//! index forgets identities whose event time falls out of the window behind
//! the watermark, so its size follows the window, not the input.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};

use crate::model::{IdSpace, Kind, SourcePosition};
use crate::normalize::EpochMillis;

/// A record identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey(pub u128);

impl RecordKey {
    /// The identity of a record that carries its own id, within the feed
    /// that numbered it ([`IdSpace`]).
    pub fn from_id(space: IdSpace, id: &str) -> RecordKey {
        // Seed 000's feeds keep the seeds they had when ids were scoped by
        // kind (data 1, voice 2), so stores written before stay valid.
        let seed = match space {
            IdSpace::CdrData => Kind::Data as u64 + 1,
            IdSpace::CdrVoice => Kind::Voice as u64 + 1,
            IdSpace::TelecomEvents => 0x7e1e_0000,
            IdSpace::ChargingRecords => 0x3_2298,
        };
        RecordKey(xxh3_128_with_seed(id.as_bytes(), seed))
    }

    /// The identity of a record without an id: the identity of the source it
    /// was read from (for files, a fingerprint of the content, not the path),
    /// where in it, plus its bytes. Re-reading the same bytes yields the same
    /// key under any name; two different lines never share one.
    pub fn from_position(source_id: &str, position: SourcePosition, payload: &[u8]) -> RecordKey {
        let place = match position {
            SourcePosition::Line { line, .. } => line,
            SourcePosition::Kafka { partition, offset } => (partition as u64) << 48 ^ offset as u64,
        };
        // The high bit keeps position seeds apart from the small per-kind id seeds.
        let seed = xxh3_64_with_seed(source_id.as_bytes(), place) | 1 << 63;
        RecordKey(xxh3_128_with_seed(payload, seed))
    }
}

/// A remembered identity and the minute of its event time, as persisted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DedupEntry {
    pub key: RecordKey,
    pub event_minute: i32,
}

impl DedupEntry {
    pub const ENCODED_LEN: usize = 20;

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.0.to_le_bytes());
        out.extend_from_slice(&self.event_minute.to_le_bytes());
    }

    /// Decodes a blob written by [`DedupEntry::encode_into`]; a trailing partial entry is ignored.
    pub fn decode_all(blob: &[u8]) -> impl Iterator<Item = DedupEntry> + '_ {
        blob.chunks_exact(Self::ENCODED_LEN).map(|c| DedupEntry {
            key: RecordKey(u128::from_le_bytes(c[..16].try_into().expect("16 bytes"))),
            event_minute: i32::from_le_bytes(c[16..].try_into().expect("4 bytes")),
        })
    }
}

pub fn minute_of(at: EpochMillis) -> i32 {
    at.div_euclid(60_000) as i32
}

pub fn day_of_minute(minute: i32) -> i32 {
    minute.div_euclid(MINUTES_PER_DAY)
}

const MINUTES_PER_DAY: i32 = 1440;

/// The first and last minute of a UTC day.
pub fn day_minutes(day: i32) -> (i32, i32) {
    (
        day * MINUTES_PER_DAY,
        day * MINUTES_PER_DAY + MINUTES_PER_DAY - 1,
    )
}

/// Loaded days older than the window kept in memory at most; beyond, the
/// oldest are forgotten and read from the store again when needed.
const MAX_LOADED_DAYS: usize = 45;

/// The identities the index can answer for: every identity with an event
/// minute from `covered_from_minute` on (the window behind the watermark),
/// plus whole days older than that loaded from the store on demand (a
/// back-fill of last month's files). For any other minute the store must be
/// asked first ([`DedupIndex::covers`]).
#[derive(Debug)]
pub struct DedupIndex {
    seen: FxHashMap<RecordKey, i32>,
    covered_from_minute: i32,
    loaded_days: BTreeSet<i32>,
}

impl Default for DedupIndex {
    fn default() -> Self {
        DedupIndex {
            seen: FxHashMap::default(),
            covered_from_minute: i32::MIN,
            loaded_days: BTreeSet::new(),
        }
    }
}

impl DedupIndex {
    /// An index holding every identity from `covered_from_minute` on.
    pub fn with_entries(
        entries: impl IntoIterator<Item = DedupEntry>,
        covered_from_minute: i32,
    ) -> DedupIndex {
        let mut index = DedupIndex {
            covered_from_minute,
            ..DedupIndex::default()
        };
        for entry in entries {
            index.seen.insert(entry.key, entry.event_minute);
        }
        index
    }

    /// Whether the index knows every identity of `event_minute`.
    pub fn covers(&self, event_minute: i32) -> bool {
        event_minute >= self.covered_from_minute
            || self.loaded_days.contains(&day_of_minute(event_minute))
    }

    /// Adds a whole day's identities read from the store.
    pub fn load_day(&mut self, day: i32, entries: impl IntoIterator<Item = DedupEntry>) {
        self.loaded_days.insert(day);
        for entry in entries {
            self.seen.insert(entry.key, entry.event_minute);
        }
    }

    /// Records `key`; `true` when it is new, `false` when already seen.
    pub fn insert(&mut self, key: RecordKey, event_minute: i32) -> bool {
        match self.seen.entry(key) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(event_minute);
                true
            }
        }
    }

    /// Forgets one identity (a record that was refused after all).
    pub fn remove(&mut self, key: RecordKey) {
        self.seen.remove(&key);
    }

    /// Moves the window's start to `horizon_minute`, forgetting identities
    /// before it except those of loaded days (at most [`MAX_LOADED_DAYS`]).
    pub fn evict_before(&mut self, horizon_minute: i32) {
        self.covered_from_minute = self.covered_from_minute.max(horizon_minute);
        let covered = self.covered_from_minute;
        // A day the window covers whole needs no loading any more; one it
        // covers in part stays loaded for its older minutes.
        self.loaded_days.retain(|day| day_minutes(*day).0 < covered);
        while self.loaded_days.len() > MAX_LOADED_DAYS {
            self.loaded_days.pop_first();
        }
        let loaded = &self.loaded_days;
        self.seen
            .retain(|_, minute| *minute >= covered || loaded.contains(&day_of_minute(*minute)));
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_wins_and_old_entries_are_forgotten() {
        let mut index = DedupIndex::default();
        let a = RecordKey::from_id(IdSpace::CdrData, "a");
        assert!(index.insert(a, 10));
        assert!(!index.insert(a, 20));
        assert!(
            index.insert(RecordKey::from_id(IdSpace::TelecomEvents, "a"), 10),
            "ids are scoped per feed"
        );
        index.evict_before(11);
        assert!(
            !index.covers(10),
            "evicted minutes must be asked of the store"
        );
        assert!(index.insert(a, 30));
    }

    #[test]
    fn loaded_days_stay_known_behind_the_window() {
        let a = RecordKey::from_id(IdSpace::CdrData, "a");
        let mut index = DedupIndex::with_entries([], 10 * 1440);
        assert!(!index.covers(2 * 1440 + 5));
        index.load_day(
            2,
            [DedupEntry {
                key: a,
                event_minute: 2 * 1440 + 5,
            }],
        );
        assert!(index.covers(2 * 1440 + 1439));
        assert!(!index.covers(3 * 1440));
        index.evict_before(11 * 1440);
        assert!(
            !index.insert(a, 2 * 1440 + 5),
            "a loaded day survives eviction"
        );
    }

    #[test]
    fn positions_make_distinct_keys() {
        let at = |line| SourcePosition::Line {
            line,
            byte_offset: 0,
        };
        let same = RecordKey::from_position("f", at(1), b"x");
        assert_eq!(same, RecordKey::from_position("f", at(1), b"x"));
        assert_ne!(same, RecordKey::from_position("f", at(2), b"x"));
        assert_ne!(same, RecordKey::from_position("g", at(1), b"x"));
        assert_ne!(same, RecordKey::from_position("f", at(1), b"y"));
    }

    #[test]
    fn entries_round_trip() {
        let entries = [
            DedupEntry {
                key: RecordKey(u128::MAX - 7),
                event_minute: -3,
            },
            DedupEntry {
                key: RecordKey(5),
                event_minute: 28_000_000,
            },
        ];
        let mut blob = Vec::new();
        entries.iter().for_each(|e| e.encode_into(&mut blob));
        assert_eq!(DedupEntry::decode_all(&blob).collect::<Vec<_>>(), entries);
    }
}
