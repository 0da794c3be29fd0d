//! Deduplication by record identity within an event-time window.
//!
//! Identities are 128-bit hashes: small enough to keep millions in memory,
//! wide enough that two different records never collide in practice. The
//! index forgets identities whose event time falls out of the window behind
//! the watermark, so its size follows the window, not the input.

use rustc_hash::FxHashMap;
use xxhash_rust::xxh3::{xxh3_128_with_seed, xxh3_64_with_seed};

use crate::model::{Kind, SourcePosition};
use crate::normalize::EpochMillis;

/// A record identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RecordKey(pub u128);

impl RecordKey {
    /// The identity of a record that carries its own id. Ids are scoped per
    /// kind: seed 000's data and voice topics number their CDRs separately.
    pub fn from_id(kind: Kind, id: &str) -> RecordKey {
        RecordKey(xxh3_128_with_seed(id.as_bytes(), kind as u64 + 1))
    }

    /// The identity of a record without an id: where it was read, plus its
    /// bytes. Re-reading the same source yields the same key; two different
    /// lines never share one.
    pub fn from_position(origin: &str, position: SourcePosition, payload: &[u8]) -> RecordKey {
        let place = match position {
            SourcePosition::Line { line, .. } => line,
            SourcePosition::Kafka { partition, offset } => (partition as u64) << 48 ^ offset as u64,
        };
        // The high bit keeps position seeds apart from the small per-kind id seeds.
        let seed = xxh3_64_with_seed(origin.as_bytes(), place) | 1 << 63;
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

/// The set of identities seen within the window.
#[derive(Debug, Default)]
pub struct DedupIndex {
    seen: FxHashMap<RecordKey, i32>,
}

impl DedupIndex {
    pub fn with_entries(entries: impl IntoIterator<Item = DedupEntry>) -> DedupIndex {
        let mut index = DedupIndex::default();
        for entry in entries {
            index.seen.insert(entry.key, entry.event_minute);
        }
        index
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

    /// Forgets identities whose event minute is before `horizon_minute`.
    pub fn evict_before(&mut self, horizon_minute: i32) {
        self.seen.retain(|_, minute| *minute >= horizon_minute);
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
        let a = RecordKey::from_id(Kind::Data, "a");
        assert!(index.insert(a, 10));
        assert!(!index.insert(a, 20));
        assert!(
            index.insert(RecordKey::from_id(Kind::Voice, "a"), 10),
            "ids are scoped per kind"
        );
        index.evict_before(11);
        assert!(index.insert(a, 30));
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
