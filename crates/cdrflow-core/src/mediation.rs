//! The mediation operator: raw records in, a checkpoint of effects out.
//!
//! Modelled on Arroyo's operator interface. [`Mediator::process_batch`]
//! decodes, validates, normalises, rates, deduplicates and aggregates a batch
//! (the first steps, in [`Classifier`], may run on several threads);
//! [`Mediator::handle_watermark`] ages out dedup state; [`Mediator::checkpoint`]
//! hands over everything accumulated since the last checkpoint — summary
//! deltas, rejects, new dedup entries, counters — for the store to commit in
//! one transaction together with the source positions. Nothing here does I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::aggregate::{SummaryDelta, Totals};
use crate::decode::{decode, DecodeOptions};
use crate::dedup::{minute_of, DedupEntry, DedupIndex, RecordKey};
use crate::model::{Kind, SourcePosition};
use crate::normalize::{format_timestamp, Day, EpochMillis, Msisdn, SummaryZone};
use crate::rating::Rater;
use crate::reject::{RejectReason, Rejection};

/// A record as read from a source, before anything is known about it.
#[derive(Clone, Copy, Debug)]
pub struct RawRecord<'a> {
    /// The source it came from: a file path, `stdin`, a Kafka topic.
    pub origin: &'a str,
    pub position: SourcePosition,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub struct MediationConfig {
    pub decode: DecodeOptions,
    /// The calendar that decides a summary's date.
    pub zone: SummaryZone,
    /// How far behind the newest event a duplicate is still recognised.
    pub dedup_window_ms: i64,
    /// Event times further than this ahead of the wall clock are refused:
    /// one bogus far-future record would otherwise push the watermark
    /// forward and make every real record look late.
    pub max_future_skew_ms: i64,
}

impl Default for MediationConfig {
    fn default() -> Self {
        MediationConfig {
            decode: DecodeOptions::default(),
            zone: SummaryZone::UTC,
            dedup_window_ms: 7 * 86_400_000,
            max_future_skew_ms: 86_400_000,
        }
    }
}

/// Why a record was dropped as a duplicate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DuplicateReason {
    /// Its `cdr_id` / `event_id` was already accepted.
    SameRecordId,
    /// It carries no id, and the same line of the same source was already accepted.
    SameSourcePosition,
}

impl DuplicateReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DuplicateReason::SameRecordId => "same_record_id",
            DuplicateReason::SameSourcePosition => "same_source_position",
        }
    }
}

/// A refused record, kept with everything needed to understand and replay it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RejectedRecord {
    pub rejection: Rejection,
    pub origin: String,
    pub position: SourcePosition,
    pub payload: Vec<u8>,
}

/// Running counts since the last checkpoint.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub records_in: u64,
    pub accepted: BTreeMap<Kind, u64>,
    pub rejected: BTreeMap<RejectReason, u64>,
    pub duplicates: BTreeMap<DuplicateReason, u64>,
}

impl Counts {
    pub fn accepted_total(&self) -> u64 {
        self.accepted.values().sum()
    }

    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    pub fn duplicates_total(&self) -> u64 {
        self.duplicates.values().sum()
    }

    pub fn add(&mut self, other: &Counts) {
        self.records_in += other.records_in;
        for (k, v) in &other.accepted {
            *self.accepted.entry(*k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
        for (k, v) in &other.duplicates {
            *self.duplicates.entry(*k).or_default() += v;
        }
    }
}

/// Everything a store must commit, atomically, with the source positions.
#[derive(Debug, Default)]
pub struct Checkpoint {
    pub summaries: SummaryDelta,
    pub rejects: Vec<RejectedRecord>,
    pub dedup_entries: Vec<DedupEntry>,
    pub counts: Counts,
    /// Event times of the accepted records, in order: the drivers measure
    /// event time → committed from them once the store has the checkpoint.
    pub event_times: Vec<EpochMillis>,
    /// The newest accepted event time so far (not just in this checkpoint).
    pub watermark: Option<EpochMillis>,
}

impl Checkpoint {
    pub fn is_empty(&self) -> bool {
        self.counts.records_in == 0
    }
}

/// The state a mediator resumes from: what the store committed last.
#[derive(Debug, Default)]
pub struct MediatorState {
    pub watermark: Option<EpochMillis>,
    pub dedup_entries: Vec<DedupEntry>,
}

/// The stateless half of mediation: decode, validate, normalise and rate one
/// record. It reads no shared state, so a batch can be classified on several
/// threads at once; [`Mediator::admit`] then applies the results in order.
#[derive(Clone, Copy)]
pub struct Classifier<'r> {
    config: MediationConfig,
    rater: &'r dyn Rater,
}

/// A record that passed classification: valid, normalised and rated. Only
/// what admission needs, kept small because batches of these are moved around.
#[derive(Debug)]
pub struct Rated<'a> {
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub service_type: Cow<'a, str>,
    pub start_time: EpochMillis,
    /// The summary date, in the configured zone.
    pub day: Day,
    pub usage: Totals,
    pub key: RecordKey,
    pub duplicate_reason: DuplicateReason,
}

impl<'r> Classifier<'r> {
    /// `now` is the wall clock, used only to refuse event times from the future.
    pub fn classify<'a>(
        &self,
        record: RawRecord<'a>,
        now: EpochMillis,
    ) -> Result<Rated<'a>, Rejection> {
        let cdr = decode(record.payload, record.position, &self.config.decode)?;
        if cdr.start_time > now + self.config.max_future_skew_ms {
            let detail = format!(
                "event time {} is more than {} h ahead of the clock ({})",
                format_timestamp(cdr.start_time),
                self.config.max_future_skew_ms / 3_600_000,
                format_timestamp(now)
            );
            return Err(Rejection::new(RejectReason::TimeInFuture, detail));
        }
        let cost_micros = self
            .rater
            .rate(&cdr)
            .map_err(|e| Rejection::new(RejectReason::RatingFailed, e.to_string()))?;
        let (key, duplicate_reason) = match &cdr.record_id {
            Some(id) => (
                RecordKey::from_id(cdr.kind, id),
                DuplicateReason::SameRecordId,
            ),
            None => (
                RecordKey::from_position(record.origin, record.position, record.payload),
                DuplicateReason::SameSourcePosition,
            ),
        };
        Ok(Rated {
            kind: cdr.kind,
            msisdn: cdr.served_msisdn,
            start_time: cdr.start_time,
            day: self.config.zone.day_of(cdr.start_time),
            usage: Totals::of(&cdr, cost_micros),
            service_type: cdr.service_type,
            key,
            duplicate_reason,
        })
    }
}

pub struct Mediator<'r> {
    classifier: Classifier<'r>,
    dedup: DedupIndex,
    watermark: Option<EpochMillis>,
    evicted_at_watermark: Option<EpochMillis>,
    pending: Checkpoint,
}

impl<'r> Mediator<'r> {
    pub fn new(
        config: MediationConfig,
        rater: &'r dyn Rater,
        state: MediatorState,
    ) -> Mediator<'r> {
        let mut mediator = Mediator {
            classifier: Classifier { config, rater },
            dedup: DedupIndex::with_entries(state.dedup_entries),
            watermark: state.watermark,
            evicted_at_watermark: None,
            pending: Checkpoint::default(),
        };
        mediator.handle_watermark();
        mediator
    }

    /// The stateless half, to classify records on other threads.
    pub fn classifier(&self) -> Classifier<'r> {
        self.classifier
    }

    /// Processes one batch on this thread.
    pub fn process_batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = RawRecord<'a>>,
        now: EpochMillis,
    ) {
        for record in records {
            let classified = self.classifier.classify(record, now);
            self.admit(record, classified);
        }
        self.handle_watermark();
    }

    /// Applies a classified record, in source order: rejects it, drops it as a
    /// late arrival or duplicate (first wins), or adds it to the summaries.
    pub fn admit(&mut self, record: RawRecord<'_>, classified: Result<Rated<'_>, Rejection>) {
        self.pending.counts.records_in += 1;
        let rated = match classified {
            Ok(rated) => rated,
            Err(rejection) => return self.reject(record, rejection),
        };
        let window = self.classifier.config.dedup_window_ms;
        if let Some(watermark) = self.watermark {
            if rated.start_time < watermark - window {
                let detail = format!(
                    "event time {} is more than {} days behind the newest event ({}); duplicates can no longer be ruled out",
                    format_timestamp(rated.start_time),
                    window / 86_400_000,
                    format_timestamp(watermark)
                );
                return self.reject(
                    record,
                    Rejection::new(RejectReason::LateBeyondDedupWindow, detail),
                );
            }
        }
        let event_minute = minute_of(rated.start_time);
        if !self.dedup.insert(rated.key, event_minute) {
            *self
                .pending
                .counts
                .duplicates
                .entry(rated.duplicate_reason)
                .or_default() += 1;
            return;
        }
        if self
            .pending
            .summaries
            .add(
                rated.kind,
                rated.msisdn,
                rated.day,
                &rated.service_type,
                &rated.usage,
            )
            .is_err()
        {
            // Not counted, so not seen: a corrected copy must still be accepted.
            self.dedup.remove(rated.key);
            let detail = format!(
                "adding this record would take the {} total of {} on {} past 2^63-1",
                rated.kind, rated.msisdn, rated.day
            );
            return self.reject(record, Rejection::new(RejectReason::ValueTooLarge, detail));
        }
        self.pending.dedup_entries.push(DedupEntry {
            key: rated.key,
            event_minute,
        });
        *self.pending.counts.accepted.entry(rated.kind).or_default() += 1;
        let t = rated.start_time;
        self.pending.event_times.push(t);
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
    }

    fn reject(&mut self, record: RawRecord<'_>, rejection: Rejection) {
        *self
            .pending
            .counts
            .rejected
            .entry(rejection.reason)
            .or_default() += 1;
        self.pending.rejects.push(RejectedRecord {
            rejection,
            origin: record.origin.to_string(),
            position: record.position,
            payload: record.payload.to_vec(),
        });
    }

    /// Ages dedup state out of the window. Cheap to call often: it only
    /// sweeps when the watermark has moved by a tenth of the window.
    pub fn handle_watermark(&mut self) {
        let Some(watermark) = self.watermark else {
            return;
        };
        let window = self.classifier.config.dedup_window_ms;
        let step = window / 10;
        if self
            .evicted_at_watermark
            .is_some_and(|at| watermark - at < step)
        {
            return;
        }
        self.dedup.evict_before(minute_of(watermark - window));
        self.evicted_at_watermark = Some(watermark);
    }

    /// Takes everything since the last checkpoint, for the store to commit.
    pub fn checkpoint(&mut self) -> Checkpoint {
        // The next delta starts at the size of this one: regrowing a hash map
        // from empty on every checkpoint costs more than the aggregation itself.
        let capacity = self.pending.summaries.len();
        let mut checkpoint = std::mem::replace(
            &mut self.pending,
            Checkpoint {
                summaries: SummaryDelta::with_capacity(capacity),
                ..Checkpoint::default()
            },
        );
        checkpoint.watermark = self.watermark;
        checkpoint
    }

    /// Records processed since the last checkpoint.
    pub fn pending_records(&self) -> u64 {
        self.pending.counts.records_in
    }

    /// The oldest event minute the dedup state must keep, for pruning the store.
    pub fn dedup_horizon_minute(&self) -> Option<i32> {
        self.watermark
            .map(|w| minute_of(w - self.classifier.config.dedup_window_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::parse_timestamp;
    use crate::rating::{Tariff, TariffOverrides};

    fn record(line: u64, payload: &str) -> RawRecord<'_> {
        RawRecord {
            origin: "test",
            position: SourcePosition::Line {
                line,
                byte_offset: 0,
            },
            payload: payload.as_bytes(),
        }
    }

    fn voice(id: &str, time: &str, seconds: u64) -> String {
        format!(
            r#"{{"cdr_id":"{id}","msisdn":"0821234567","start_time":"{time}","call_type":"voice","call_duration_sec":{seconds}}}"#
        )
    }

    #[test]
    fn dedups_rejects_and_aggregates() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(
            MediationConfig::default(),
            &tariff,
            MediatorState::default(),
        );
        let now = parse_timestamp("2024-03-10T00:00:00Z").unwrap();
        let a = voice("a", "2024-03-01T10:00:00Z", 60);
        let b = voice("b", "2024-03-01T11:00:00Z", 1);
        let late = voice("c", "2024-02-01T11:00:00Z", 1);
        let future = voice("d", "2024-03-12T11:00:00Z", 1);
        let no_id = r#"{"msisdn":"0821234567","start_time":"2024-03-01T12:00:00Z","call_type":"voice","call_duration_sec":1}"#;
        let batch = [
            record(1, &a),
            record(2, &a),
            record(3, &b),
            record(4, "garbage"),
            record(5, &late),
            record(6, &future),
            record(7, no_id),
            record(7, no_id),
            record(8, no_id),
        ];
        mediator.process_batch(batch, now);
        let cp = mediator.checkpoint();
        assert_eq!(cp.counts.records_in, 9);
        assert_eq!(cp.counts.accepted_total(), 4);
        assert_eq!(cp.counts.duplicates[&DuplicateReason::SameRecordId], 1);
        assert_eq!(
            cp.counts.duplicates[&DuplicateReason::SameSourcePosition],
            1
        );
        let reasons: Vec<_> = cp.rejects.iter().map(|r| r.rejection.reason).collect();
        assert_eq!(
            reasons,
            [
                RejectReason::MalformedJson,
                RejectReason::LateBeyondDedupWindow,
                RejectReason::TimeInFuture
            ]
        );
        let rows: Vec<_> = cp.summaries.rows().collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].totals.duration_sec, 63);
        assert_eq!(rows[0].totals.cost_micros, 1_000_000 + 3 * 16_667);
        assert_eq!(cp.dedup_entries.len(), 4);
        assert!(mediator.checkpoint().is_empty());
    }

    #[test]
    fn resumed_state_still_recognises_duplicates() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-10T00:00:00Z").unwrap();
        let a = voice("a", "2024-03-01T10:00:00Z", 60);
        let mut first = Mediator::new(
            MediationConfig::default(),
            &tariff,
            MediatorState::default(),
        );
        first.process_batch([record(1, &a)], now);
        let cp = first.checkpoint();
        let state = MediatorState {
            watermark: cp.watermark,
            dedup_entries: cp.dedup_entries,
        };
        let mut second = Mediator::new(MediationConfig::default(), &tariff, state);
        second.process_batch([record(1, &a)], now);
        assert_eq!(second.checkpoint().counts.duplicates_total(), 1);
    }
}
