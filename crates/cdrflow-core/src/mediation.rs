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
use rustc_hash::FxHashMap;

use crate::dedup::{day_of_minute, minute_of, DedupEntry, DedupIndex, RecordKey};
use crate::model::{Kind, SourcePosition};
use crate::normalize::{format_timestamp, Day, EpochMillis, Msisdn, SummaryZone};
use crate::rating::Rater;
use crate::reject::{RejectReason, Rejection};

/// A record as read from a source, before anything is known about it.
#[derive(Clone, Copy, Debug)]
pub struct RawRecord<'a> {
    /// The source it came from, for people: a file path, `stdin`, a Kafka topic.
    pub origin: &'a str,
    /// The source's identity, for deduplication: for files a fingerprint of
    /// their content (the same bytes under any name or through stdin are one
    /// source), for Kafka the topic.
    pub source_id: &'a str,
    pub position: SourcePosition,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug)]
pub struct MediationConfig {
    pub decode: DecodeOptions,
    /// The calendar that decides a summary's date.
    pub zone: SummaryZone,
    /// How far behind the newest event record identities stay in memory.
    pub dedup_window_ms: i64,
    /// How far behind the newest event a duplicate is still recognised:
    /// identities older than the window are kept per day in the store and
    /// read back on demand, so back-filled files are checked too. Records
    /// older than this are refused (`late_beyond_dedup_window`).
    pub dedup_horizon_ms: i64,
    /// Event times further than this ahead of the wall clock are refused:
    /// one bogus far-future record would otherwise push the watermark
    /// forward and make every real record look late.
    pub max_future_skew_ms: i64,
}

/// Long enough to back-fill last month's files while this month's flow in.
pub const DEFAULT_DEDUP_HORIZON_DAYS: i64 = 62;

/// A record whose largest measure reaches this is checked against the stored
/// totals of its row before it is admitted: only such records can bring a
/// 64-bit daily total near its limit (smaller ones would need ~8 million per
/// subscriber-day), so the store is asked about them alone.
pub const LARGE_MEASURE: u64 = 1 << 40;

impl Default for MediationConfig {
    fn default() -> Self {
        MediationConfig {
            decode: DecodeOptions::default(),
            zone: SummaryZone::UTC,
            dedup_window_ms: 7 * 86_400_000,
            dedup_horizon_ms: DEFAULT_DEDUP_HORIZON_DAYS * 86_400_000,
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

impl Rated<'_> {
    pub fn row_key(&self) -> RowKey {
        RowKey {
            kind: self.kind,
            msisdn: self.msisdn,
            day: self.day,
            service_type: self.service_type.to_string(),
        }
    }
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
                RecordKey::from_id(cdr.id_space, id),
                DuplicateReason::SameRecordId,
            ),
            None => (
                RecordKey::from_position(record.source_id, record.position, record.payload),
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

/// A summary row, named in full (the delta interns its type labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RowKey {
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub day: Day,
    pub service_type: String,
}

/// What admission needs to know from the store before a batch can be
/// admitted: the stored identities of days older than the in-memory window,
/// and the stored totals of rows that large records would add to. Empty for
/// almost every batch; drivers answer it after the store has written every
/// checkpoint handed to it, so the answer includes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreLookup {
    /// UTC day numbers (days since 1970-01-01 of the event time).
    pub dedup_days: Vec<i32>,
    pub totals: Vec<RowKey>,
}

impl StoreLookup {
    pub fn is_empty(&self) -> bool {
        self.dedup_days.is_empty() && self.totals.is_empty()
    }
}

/// The store's answer to a [`StoreLookup`].
#[derive(Debug, Default)]
pub struct LookupAnswer {
    /// The stored identities of the asked days (others are ignored).
    pub dedup_entries: Vec<DedupEntry>,
    /// The stored totals of each asked row, in the order asked (`None`: no row yet).
    pub totals: Vec<Option<Totals>>,
}

/// Rows whose stored totals are tracked at most; beyond, they are forgotten
/// and looked up again.
const MAX_KNOWN_TOTALS: usize = 100_000;

pub struct Mediator<'r> {
    classifier: Classifier<'r>,
    dedup: DedupIndex,
    watermark: Option<EpochMillis>,
    evicted_at_watermark: Option<EpochMillis>,
    /// Stored totals (plus what checkpoints handed over since) of rows that
    /// large records touched: admission keeps them within 64 bits.
    known_totals: FxHashMap<RowKey, Totals>,
    pending: Checkpoint,
}

impl<'r> Mediator<'r> {
    pub fn new(
        config: MediationConfig,
        rater: &'r dyn Rater,
        state: MediatorState,
    ) -> Mediator<'r> {
        // The store hands back exactly the identities within the window of the
        // stored watermark; older ones it is asked for by day.
        let covered_from = state
            .watermark
            .map_or(i32::MIN, |w| minute_of(w - config.dedup_window_ms));
        let mut mediator = Mediator {
            classifier: Classifier { config, rater },
            dedup: DedupIndex::with_entries(state.dedup_entries, covered_from),
            watermark: state.watermark,
            evicted_at_watermark: None,
            known_totals: FxHashMap::default(),
            pending: Checkpoint::default(),
        };
        mediator.handle_watermark();
        mediator
    }

    /// The stateless half, to classify records on other threads.
    pub fn classifier(&self) -> Classifier<'r> {
        self.classifier
    }

    /// Processes one batch on this thread, asking `lookup` for what only
    /// the store knows (see [`Mediator::note_lookups`]).
    pub fn process_batch<'a>(
        &mut self,
        records: impl IntoIterator<Item = RawRecord<'a>>,
        now: EpochMillis,
        lookup: impl FnOnce(&StoreLookup) -> LookupAnswer,
    ) {
        let records: Vec<RawRecord<'a>> = records.into_iter().collect();
        let classified: Vec<_> = records
            .iter()
            .map(|r| self.classifier.classify(*r, now))
            .collect();
        let answered: Result<(), std::convert::Infallible> =
            self.admit_batch(&records, classified, |asked| Ok(lookup(asked)));
        answered.unwrap_or_else(|never| match never {});
    }

    /// Admits a classified batch in source order, first asking `lookup` (the
    /// store, once every checkpoint taken so far is in it) for what memory
    /// cannot decide; then ages out dedup state.
    pub fn admit_batch<'a, E>(
        &mut self,
        records: &[RawRecord<'a>],
        classified: Vec<Result<Rated<'a>, Rejection>>,
        lookup: impl FnOnce(&StoreLookup) -> Result<LookupAnswer, E>,
    ) -> Result<(), E> {
        let mut needed = StoreLookup::default();
        for rated in classified.iter().flatten() {
            self.note_lookups(rated, &mut needed);
        }
        if !needed.is_empty() {
            let answer = lookup(&needed)?;
            self.apply_lookup(&needed, answer);
        }
        for (record, outcome) in records.iter().zip(classified) {
            self.admit(*record, outcome);
        }
        self.handle_watermark();
        Ok(())
    }

    /// Adds to `lookup` what the store must be asked before `rated` can be
    /// admitted. The answer must include every checkpoint taken so far,
    /// committed or not yet: drivers wait for their writer first.
    pub fn note_lookups(&self, rated: &Rated<'_>, lookup: &mut StoreLookup) {
        let minute = minute_of(rated.start_time);
        if !self.dedup.covers(minute) {
            let day = day_of_minute(minute);
            if !lookup.dedup_days.contains(&day) {
                lookup.dedup_days.push(day);
            }
        }
        if rated.usage.largest_measure() >= LARGE_MEASURE {
            let row = rated.row_key();
            if !self.known_totals.contains_key(&row) && !lookup.totals.contains(&row) {
                lookup.totals.push(row);
            }
        }
    }

    /// Takes in the store's answer to what [`Mediator::note_lookups`] asked.
    pub fn apply_lookup(&mut self, asked: &StoreLookup, answer: LookupAnswer) {
        for &day in &asked.dedup_days {
            // Identities of this day handed over in the checkpoint being built
            // may have been evicted from memory; the store does not have them yet.
            let pending = self
                .pending
                .dedup_entries
                .iter()
                .filter(|e| day_of_minute(e.event_minute) == day);
            let stored = answer
                .dedup_entries
                .iter()
                .filter(|e| day_of_minute(e.event_minute) == day);
            self.dedup.load_day(day, stored.chain(pending).copied());
        }
        if self.known_totals.len() + asked.totals.len() > MAX_KNOWN_TOTALS {
            self.known_totals.clear();
        }
        for (row, stored) in asked.totals.iter().zip(answer.totals) {
            self.known_totals
                .insert(row.clone(), stored.unwrap_or_default());
        }
    }

    /// Applies a classified record, in source order: rejects it, drops it as a
    /// late arrival or duplicate (first wins), or adds it to the summaries.
    /// The store must have answered [`Mediator::note_lookups`] for it.
    pub fn admit(&mut self, record: RawRecord<'_>, classified: Result<Rated<'_>, Rejection>) {
        self.pending.counts.records_in += 1;
        let rated = match classified {
            Ok(rated) => rated,
            Err(rejection) => return self.reject(record, rejection),
        };
        let horizon = self.classifier.config.dedup_horizon_ms;
        if let Some(watermark) = self.watermark {
            if rated.start_time < watermark - horizon {
                let detail = format!(
                    "event time {} is more than {} days behind the newest event ({}): duplicates are remembered that long (--dedup-horizon-days, CDRFLOW_DEDUP_HORIZON_DAYS)",
                    format_timestamp(rated.start_time),
                    horizon / 86_400_000,
                    format_timestamp(watermark)
                );
                return self.reject(
                    record,
                    Rejection::new(RejectReason::LateBeyondDedupWindow, detail),
                );
            }
        }
        let event_minute = minute_of(rated.start_time);
        assert!(
            self.dedup.covers(event_minute),
            "the driver admitted a record without asking the store about its day first"
        );
        let known = (!self.known_totals.is_empty())
            .then(|| self.known_totals.get(&rated.row_key()))
            .flatten();
        if let Some(stored) = known {
            let pending = self.pending.summaries.row(
                rated.kind,
                rated.msisdn,
                rated.day,
                &rated.service_type,
            );
            let fits = pending
                .map_or(Ok(*stored), |p| stored.checked_add(p))
                .and_then(|t| t.checked_add(&rated.usage));
            if fits.is_err() {
                let detail = format!(
                    "adding this record to the stored {} total of {} on {} ({}) would take it past 2^63-1",
                    rated.kind, rated.msisdn, rated.day, rated.service_type
                );
                return self.reject(record, Rejection::new(RejectReason::ValueTooLarge, detail));
            }
        }
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
        for (row, known) in self.known_totals.iter_mut() {
            let delta = checkpoint
                .summaries
                .row(row.kind, row.msisdn, row.day, &row.service_type);
            if let Some(delta) = delta {
                // Admission kept stored + delta within range.
                *known = known.checked_add(delta).unwrap_or(*known);
            }
        }
        checkpoint
    }

    /// Records processed since the last checkpoint.
    pub fn pending_records(&self) -> u64 {
        self.pending.counts.records_in
    }

    /// The oldest event minute the stored dedup state must keep, for pruning the store.
    pub fn dedup_horizon_minute(&self) -> Option<i32> {
        self.watermark
            .map(|w| minute_of(w - self.classifier.config.dedup_horizon_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::IdSpace;
    use crate::normalize::parse_timestamp;
    use crate::rating::{Tariff, TariffOverrides};

    fn record(line: u64, payload: &str) -> RawRecord<'_> {
        RawRecord {
            origin: "test",
            source_id: "test",
            position: SourcePosition::Line {
                line,
                byte_offset: 0,
            },
            payload: payload.as_bytes(),
        }
    }

    fn no_lookup(asked: &StoreLookup) -> LookupAnswer {
        panic!("no store lookup expected, asked {asked:?}")
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
        let late = voice("c", "2023-12-01T11:00:00Z", 1);
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
        mediator.process_batch(batch, now, no_lookup);
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
        first.process_batch([record(1, &a)], now, no_lookup);
        let cp = first.checkpoint();
        let state = MediatorState {
            watermark: cp.watermark,
            dedup_entries: cp.dedup_entries,
        };
        let mut second = Mediator::new(MediationConfig::default(), &tariff, state);
        second.process_batch([record(1, &a)], now, no_lookup);
        assert_eq!(second.checkpoint().counts.duplicates_total(), 1);
    }

    #[test]
    fn days_behind_the_window_are_asked_of_the_store() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-30T00:00:00Z").unwrap();
        let recent = voice("r", "2024-03-29T10:00:00Z", 60);
        let old = voice("o", "2024-03-01T10:00:00Z", 60);
        let stored_twin = voice("s", "2024-03-01T12:00:00Z", 60);
        let mut mediator = Mediator::new(
            MediationConfig::default(),
            &tariff,
            MediatorState::default(),
        );
        mediator.process_batch([record(1, &recent)], now, no_lookup);
        let mut asked = Vec::new();
        let stored = DedupEntry {
            key: RecordKey::from_id(IdSpace::CdrVoice, "s"),
            event_minute: minute_of(parse_timestamp("2024-03-01T12:00:00Z").unwrap()),
        };
        mediator.process_batch(
            [record(2, &old), record(3, &stored_twin), record(4, &old)],
            now,
            |lookup| {
                asked.push(lookup.dedup_days.clone());
                LookupAnswer {
                    dedup_entries: vec![stored],
                    totals: vec![None; lookup.totals.len()],
                }
            },
        );
        let day = parse_timestamp("2024-03-01T00:00:00Z").unwrap() / 86_400_000;
        assert_eq!(asked, [vec![day as i32]]);
        let cp = mediator.checkpoint();
        assert_eq!(cp.counts.accepted_total(), 2, "recent and old once");
        assert_eq!(
            cp.counts.duplicates_total(),
            2,
            "the stored twin and the repeat"
        );
        // A day already loaded is not asked again.
        mediator.process_batch([record(5, &old)], now, no_lookup);
        assert_eq!(mediator.checkpoint().counts.duplicates_total(), 1);
    }

    #[test]
    fn large_records_are_checked_against_stored_totals() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-30T00:00:00Z").unwrap();
        let data = |id: &str, up: u64| {
            format!(
                r#"{{"cdr_id":"{id}","msisdn":"0821234567","event_datetime":"2024-03-29T10:00:00Z","data_type":"lte","up_bytes":{up},"down_bytes":0}}"#
            )
        };
        let (big, small) = (data("big", 5_000_000_000_000_000_000), data("small", 1));
        let mut mediator = Mediator::new(
            MediationConfig::default(),
            &tariff,
            MediatorState::default(),
        );
        let stored = Totals {
            records: 1,
            up_bytes: 5_000_000_000_000_000_000,
            ..Totals::default()
        };
        mediator.process_batch([record(1, &big), record(2, &small)], now, |lookup| {
            assert_eq!(lookup.totals.len(), 1, "only the large record's row");
            LookupAnswer {
                dedup_entries: vec![],
                totals: vec![Some(stored)],
            }
        });
        let cp = mediator.checkpoint();
        assert_eq!(
            cp.counts.rejected.get(&RejectReason::ValueTooLarge),
            Some(&1),
            "{:?}",
            cp.rejects
        );
        assert_eq!(cp.counts.accepted_total(), 1);
        assert_eq!(cp.summaries.len(), 1, "no empty row for the refused record");
    }
}
