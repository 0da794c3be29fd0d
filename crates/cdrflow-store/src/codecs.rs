//! How both stores encode what they keep: counters as named rows, dedup
//! entries as one blob per day, days within the range SQL dates hold.
//! Shared here so that the two backends cannot drift apart.

use cdrflow_core::dedup::DedupEntry;
use cdrflow_core::mediation::{Counts, DuplicateReason};
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::Day;
use cdrflow_core::reject::RejectReason;

/// A checkpoint's new dedup entries, one blob per UTC day of event time, so
/// that a day can be read back alone when a back-filled record needs it.
pub(crate) struct DedupBlob {
    pub min_minute: i32,
    pub max_minute: i32,
    pub entries: Vec<u8>,
}

pub(crate) fn dedup_blobs(entries: &[DedupEntry]) -> Vec<DedupBlob> {
    let mut by_day: std::collections::BTreeMap<i32, DedupBlob> = Default::default();
    for entry in entries {
        let blob = by_day
            .entry(cdrflow_core::dedup::day_of_minute(entry.event_minute))
            .or_insert_with(|| DedupBlob {
                min_minute: entry.event_minute,
                max_minute: entry.event_minute,
                entries: Vec::new(),
            });
        blob.min_minute = blob.min_minute.min(entry.event_minute);
        blob.max_minute = blob.max_minute.max(entry.event_minute);
        entry.encode_into(&mut blob.entries);
    }
    by_day.into_values().collect()
}

/// A day range the stores' date types can hold: open ranges arrive as the
/// extremes of `i32`, which PostgreSQL's DATE arithmetic refuses.
pub(crate) fn clamp_day(day: Day) -> Day {
    // 0001-01-01 .. 9999-12-31
    Day(day.0.clamp(-719_162, 2_932_896))
}

/// The counters a checkpoint adds, by stored name.
pub(crate) fn counter_entries(counts: &Counts) -> Vec<(String, u64)> {
    let mut out = vec![("records_in".to_string(), counts.records_in)];
    out.extend(
        counts
            .accepted
            .iter()
            .map(|(k, v)| (format!("accepted.{k}"), *v)),
    );
    out.extend(
        counts
            .rejected
            .iter()
            .map(|(k, v)| (format!("rejected.{k}"), *v)),
    );
    out.extend(
        counts
            .duplicates
            .iter()
            .map(|(k, v)| (format!("duplicates.{}", k.as_str()), *v)),
    );
    out.retain(|(_, v)| *v > 0);
    out
}

/// The inverse of [`counter_entries`]; unknown names are ignored.
pub(crate) fn apply_counter(counts: &mut Counts, name: &str, value: u64) {
    match name.split_once('.') {
        None if name == "records_in" => counts.records_in = value,
        Some(("accepted", kind)) => {
            if let Some(kind) = Kind::parse(kind) {
                counts.accepted.insert(kind, value);
            }
        }
        Some(("rejected", reason)) => {
            if let Some(reason) = RejectReason::parse(reason) {
                counts.rejected.insert(reason, value);
            }
        }
        Some(("duplicates", reason)) => {
            let reason = [
                DuplicateReason::SameRecordId,
                DuplicateReason::SameSourcePosition,
            ]
            .into_iter()
            .find(|r| r.as_str() == reason);
            if let Some(reason) = reason {
                counts.duplicates.insert(reason, value);
            }
        }
        _ => {}
    }
}
