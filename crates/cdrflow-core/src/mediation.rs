//! The mediation operator: raw records in, a checkpoint of effects out.
//!
//! The first [`Operator`]: [`Mediator::process_batch`] decodes, validates,
//! normalises, rates, deduplicates and aggregates a batch (the first steps,
//! in [`Classifier`], on several threads); [`Mediator::handle_watermark`]
//! ages out dedup state; [`Mediator::checkpoint`] hands over everything
//! accumulated since the last checkpoint — summary deltas, rejects,
//! counters — with its two state tables' changes: the watermark, and the
//! identities of accepted records per day of event time. Nothing here does I/O.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::aggregate::{RowKey, SummaryDelta, Totals};
use crate::formats::{decode, DecodeOptions};
use rustc_hash::FxHashMap;

use crate::dedup::{day_minutes, day_of_minute, minute_of, DedupEntry, DedupIndex, RecordKey};
use crate::model::{Direction, Kind, SourcePosition};
use crate::normalize::{format_timestamp, normalize_msisdn, Day, EpochMillis, Msisdn, SummaryZone};
use crate::operator::{
    decode_millis, encode_millis, BatchContext, Checkpoint, Operator, ReadError, StateKind,
    StateReader, StateTable,
};
use crate::rating::{Rater, Rating, RatingError};
use crate::reference::normalize_technology;
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
    /// Set when the source kept only the first bytes of a longer record
    /// (a line too long to buffer): the record's whole length.
    pub cut_from: Option<u64>,
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
    /// Longer records are refused as `record_too_large`, keeping their first
    /// [`KEPT_BYTES`].
    pub max_record_bytes: usize,
    /// Threads that classify a batch; admission stays in order on one.
    pub classify_threads: usize,
    /// Keep every record's [`Rating`] for the operators after the mediator
    /// (rated records). Off, only ratings with something to charge — a
    /// subscriber's account, an unknown subscriber to count — are kept:
    /// the flat tariff's path then allocates nothing per record for them.
    pub keep_ratings: bool,
}

/// Long enough to back-fill last month's files while this month's flow in.
pub const DEFAULT_DEDUP_HORIZON_DAYS: i64 = 62;

/// Records up to this size are read whole; a source never buffers more.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;

/// What is kept of a record refused for its size: enough to see what it was.
pub const KEPT_BYTES: usize = 4096;

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
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            classify_threads: 1,
            keep_ratings: true,
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
    /// Accepted records that came after their window closed (see
    /// [`crate::analytics::windows`]): counted in usage, in no window.
    pub late_events: u64,
    /// Accepted records of pseudonymous (masked) numbers: counted in
    /// `accepted` and in analytics, never rated, in no usage summary.
    pub pseudonymous: u64,
    /// Accepted records of numbers in no subscribers row at their event
    /// time, rated on the default plan (a catalogue with reference data).
    pub unknown_subscribers: u64,
    /// Change events (reference data from Debezium), by outcome.
    pub changes: crate::cdc::ChangeCounts,
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
        self.late_events += other.late_events;
        self.pseudonymous += other.pseudonymous;
        self.unknown_subscribers += other.unknown_subscribers;
        self.changes.applied += other.changes.applied;
        self.changes.skipped += other.changes.skipped;
        self.changes.ignored += other.changes.ignored;
        self.changes.late += other.changes.late;
    }
}

/// The stateless half of mediation: decode, validate, normalise and rate one
/// record. It reads no shared state, so a batch can be classified on several
/// threads at once; [`Mediator::admit`] then applies the results in order.
#[derive(Clone, Copy)]
pub struct Classifier<'r> {
    config: MediationConfig,
    rater: &'r dyn Rater,
}

/// A record that passed classification: valid, normalised and rated. What
/// admission and the operators after it need, borrowed from the batch
/// where it can be, because batches of these are moved around.
#[derive(Debug)]
pub struct Rated<'a> {
    /// The source it came from ([`RawRecord::origin`]) and the partition
    /// within it ([`RawRecord::source_id`]: a file's content, a topic).
    pub origin: &'a str,
    pub partition: &'a str,
    pub position: SourcePosition,
    pub record_id: Option<Cow<'a, str>>,
    pub kind: Kind,
    pub direction: Direction,
    pub region: Option<Cow<'a, str>>,
    pub cell_id: Option<Cow<'a, str>>,
    pub msisdn: Msisdn,
    /// The other end of a call or message, when the record names one as a
    /// number (an alphanumeric SMS sender is none): the fraud rules' caller.
    pub other_party: Option<Msisdn>,
    pub service_type: Cow<'a, str>,
    /// The radio generation (`2G`…`5G`): the cell's, else the record's own code.
    pub technology: Option<&'static str>,
    pub start_time: EpochMillis,
    /// The summary date, in the configured zone.
    pub day: Day,
    pub usage: Totals,
    pub key: RecordKey,
    pub duplicate_reason: DuplicateReason,
    /// What priced it; `None` for a pseudonymous subscriber (never rated)
    /// and for one with nothing to charge unless `keep_ratings` says so.
    /// Boxed: batches of records are moved whole, and a rating is large.
    pub rating: Option<Box<Rating>>,
}

impl Rated<'_> {
    /// The record's id, or where it came from (`partition:position`) for a
    /// record without one: what alerts and rated records name it by.
    pub fn source_identity(&self) -> String {
        match &self.record_id {
            Some(id) => id.to_string(),
            None => format!("{}:{}", self.partition, self.position),
        }
    }

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
        let length = record.cut_from.unwrap_or(record.payload.len() as u64);
        if length > self.config.max_record_bytes as u64 {
            return Err(Rejection::new(
                RejectReason::RecordTooLarge,
                format!(
                    "the record is {length} bytes, more than the {} a record may have (--max-record-bytes); its first {KEPT_BYTES} bytes are kept",
                    self.config.max_record_bytes
                ),
            ));
        }
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
        // A pseudonymous subscriber is counted in analytics only: never rated.
        let rating = match cdr.served_msisdn.is_pseudonymous() {
            true => None,
            false => Some(self.rater.rate(&cdr).map_err(|e| {
                let reason = match e {
                    RatingError::NoRate(_) => RejectReason::NoRate,
                    RatingError::Overflow => RejectReason::RatingFailed,
                };
                Rejection::new(reason, e.to_string())
            })?),
        };
        let cost_micros = rating.as_ref().map_or(0, |r| r.cost_micros);
        let technology = match &rating {
            Some(rating) => rating.technology,
            None => cdr
                .radio_technology
                .as_deref()
                .and_then(normalize_technology),
        };
        let rating = rating
            .filter(|r| self.config.keep_ratings || r.account.is_some() || r.unknown_subscriber)
            .map(Box::new);
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
        let usage = Totals::of(&cdr, cost_micros);
        Ok(Rated {
            origin: record.origin,
            partition: record.source_id,
            position: record.position,
            record_id: cdr.record_id,
            kind: cdr.kind,
            direction: cdr.direction,
            region: cdr.region,
            cell_id: cdr.cell_id,
            msisdn: cdr.served_msisdn,
            other_party: cdr.other_party.as_deref().and_then(|party| {
                normalize_msisdn(party, self.config.decode.default_country_code).ok()
            }),
            start_time: cdr.start_time,
            day: self.config.zone.day_of(cdr.start_time),
            usage,
            service_type: cdr.service_type,
            technology,
            key,
            duplicate_reason,
            rating,
        })
    }

    /// Classification is stateless, so a batch splits into the configured
    /// number of slices classified side by side; the results come back in
    /// input order for the in-order admission that dedup needs.
    pub fn classify_all<'a>(
        &self,
        records: &[RawRecord<'a>],
        now: EpochMillis,
    ) -> Vec<Result<Rated<'a>, Rejection>> {
        let classify = |slice: &[RawRecord<'a>]| -> Vec<_> {
            slice.iter().map(|r| self.classify(*r, now)).collect()
        };
        let threads = self.config.classify_threads;
        if threads <= 1 || records.len() < 2 * MIN_RECORDS_PER_THREAD {
            return classify(records);
        }
        let slice_len = records.len().div_ceil(threads).max(MIN_RECORDS_PER_THREAD);
        std::thread::scope(|scope| {
            let mut slices = records.chunks(slice_len);
            let first = slices.next().unwrap_or(&[]);
            let others: Vec<_> = slices
                .map(|slice| scope.spawn(move || classify(slice)))
                .collect();
            let mut all = classify(first);
            for other in others {
                all.extend(other.join().expect("classification does not panic"));
            }
            all
        })
    }
}

/// Below this many records per thread, starting a thread costs more than it saves.
const MIN_RECORDS_PER_THREAD: usize = 256;

/// What admission needs to know from the store before a batch can be
/// admitted: the stored identities of days older than the in-memory window,
/// and the stored totals of rows that large records would add to. Empty for
/// almost every batch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct StoreLookup {
    /// UTC day numbers (days since 1970-01-01 of the event time).
    dedup_days: Vec<i32>,
    totals: Vec<RowKey>,
}

impl StoreLookup {
    fn is_empty(&self) -> bool {
        self.dedup_days.is_empty() && self.totals.is_empty()
    }
}

/// The mediator's state tables.
pub const WATERMARK: StateTable = StateTable {
    name: "watermark",
    kind: StateKind::Keyed,
};
/// Identities of accepted records, one value per UTC day of event time (see
/// [`DedupEntry::encode_into`]), so that a day can be read back alone when a
/// back-filled record needs it.
pub const DEDUP_IDENTITIES: StateTable = StateTable {
    name: "dedup_identities",
    kind: StateKind::Spans,
};
const TABLES: [StateTable; 2] = [WATERMARK, DEDUP_IDENTITIES];

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
    /// Identities accepted since the last checkpoint.
    pending_identities: Vec<DedupEntry>,
}

impl<'r> Mediator<'r> {
    /// A mediator with no state: [`Operator::on_start`] restores it.
    pub fn new(config: MediationConfig, rater: &'r dyn Rater) -> Mediator<'r> {
        Mediator {
            classifier: Classifier { config, rater },
            dedup: DedupIndex::default(),
            watermark: None,
            evicted_at_watermark: None,
            known_totals: FxHashMap::default(),
            pending: Checkpoint::default(),
            pending_identities: Vec::new(),
        }
    }

    /// The stateless half, to classify records on other threads.
    pub fn classifier(&self) -> Classifier<'r> {
        self.classifier
    }

    /// Adds to `lookup` what the store must be asked before `rated` can be
    /// admitted.
    fn note_lookups(&self, rated: &Rated<'_>, lookup: &mut StoreLookup) {
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

    /// Asks the store what memory cannot decide and takes the answers in.
    /// The answers include every checkpoint taken so far, committed or not
    /// yet: the runner waits for its writer first.
    fn ask_store(
        &mut self,
        asked: &StoreLookup,
        state: &mut dyn StateReader,
    ) -> Result<(), ReadError> {
        for &day in &asked.dedup_days {
            let (first, last) = day_minutes(day);
            let mut stored = Vec::new();
            state.spans(&DEDUP_IDENTITIES, first, last, &mut |value| {
                stored.extend(
                    DedupEntry::decode_all(value)
                        .filter(|e| (first..=last).contains(&e.event_minute)),
                )
            })?;
            // Identities of this day in the checkpoint being built may have
            // been evicted from memory; the store does not have them yet.
            let pending = self
                .pending_identities
                .iter()
                .filter(|e| day_of_minute(e.event_minute) == day);
            self.dedup
                .load_day(day, stored.into_iter().chain(pending.copied()));
        }
        if asked.totals.is_empty() {
            return Ok(());
        }
        let answer = state.summary_totals(&asked.totals)?;
        if self.known_totals.len() + asked.totals.len() > MAX_KNOWN_TOTALS {
            self.known_totals.clear();
        }
        for (row, stored) in asked.totals.iter().zip(answer) {
            self.known_totals
                .insert(row.clone(), stored.unwrap_or_default());
        }
        Ok(())
    }

    /// Applies a classified record, in source order: rejects it, drops it as a
    /// late arrival or duplicate (first wins), or adds it to the summaries
    /// and returns it for the operators after this one. The store must have
    /// been asked what memory could not decide about it.
    fn admit<'a>(
        &mut self,
        record: RawRecord<'a>,
        classified: Result<Rated<'a>, Rejection>,
    ) -> Option<Rated<'a>> {
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
            return None;
        }
        let pseudonymous = rated.msisdn.is_pseudonymous();
        if !pseudonymous
            && self
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
        self.pending_identities.push(DedupEntry {
            key: rated.key,
            event_minute,
        });
        *self.pending.counts.accepted.entry(rated.kind).or_default() += 1;
        self.pending.counts.pseudonymous += u64::from(pseudonymous);
        self.pending.counts.unknown_subscribers +=
            u64::from(rated.rating.as_ref().is_some_and(|r| r.unknown_subscriber));
        let t = rated.start_time;
        self.pending.event_times.push(t);
        self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
        Some(rated)
    }

    /// Keeps a refused record; `None`, as [`Mediator::admit`] returns for it.
    fn reject<T>(&mut self, record: RawRecord<'_>, rejection: Rejection) -> Option<T> {
        *self
            .pending
            .counts
            .rejected
            .entry(rejection.reason)
            .or_default() += 1;
        let payload = match rejection.reason {
            RejectReason::RecordTooLarge => &record.payload[..KEPT_BYTES.min(record.payload.len())],
            _ => record.payload,
        };
        self.pending.rejects.push(RejectedRecord {
            rejection,
            origin: record.origin.to_string(),
            position: record.position,
            payload: payload.to_vec(),
        });
        None
    }

    /// The identities handed over at a checkpoint, one value per UTC day of
    /// event time, with the span of minutes each covers.
    fn identities_by_day(entries: &[DedupEntry]) -> Vec<(i32, i32, Vec<u8>)> {
        // (day, first minute, last minute, encoded): records arrive mostly
        // in time order, so the day of the previous entry is tried first.
        let mut days: Vec<(i32, i32, i32, Vec<u8>)> = Vec::new();
        let mut current = 0;
        for entry in entries {
            let (minute, day) = (entry.event_minute, day_of_minute(entry.event_minute));
            if days.get(current).is_none_or(|d| d.0 != day) {
                current = match days.iter().position(|d| d.0 == day) {
                    Some(i) => i,
                    None => {
                        days.push((day, minute, minute, Vec::new()));
                        days.len() - 1
                    }
                };
            }
            let (_, first, last, value) = &mut days[current];
            *first = (*first).min(minute);
            *last = (*last).max(minute);
            entry.encode_into(value);
        }
        days.sort_unstable_by_key(|d| d.0);
        days.into_iter()
            .map(|(_, first, last, value)| (first, last, value))
            .collect()
    }
}

impl<'r> Operator for Mediator<'r> {
    type Input<'a> = RawRecord<'a>;
    /// The accepted records: valid, rated, not duplicates.
    type Output<'a> = Rated<'a>;

    fn name(&self) -> &'static str {
        "mediation"
    }

    fn tables(&self) -> &'static [StateTable] {
        &TABLES
    }

    /// Takes the stored watermark, and the identities within the in-memory
    /// window behind it; older days are read when a record needs them.
    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.watermark = match state.value(&WATERMARK, "")? {
            Some(value) => Some(decode_millis(&value, "mediation watermark")?),
            None => None,
        };
        let covered_from = self.watermark.map_or(i32::MIN, |w| {
            minute_of(w - self.classifier.config.dedup_window_ms)
        });
        let mut entries = Vec::new();
        state.spans(&DEDUP_IDENTITIES, covered_from, i32::MAX, &mut |value| {
            entries.extend(DedupEntry::decode_all(value).filter(|e| e.event_minute >= covered_from))
        })?;
        self.dedup = DedupIndex::with_entries(entries, covered_from);
        if let Some(watermark) = self.watermark {
            self.handle_watermark(watermark);
        }
        Ok(())
    }

    /// Classifies the batch (on the configured threads), asks the store what
    /// admission needs to know beyond memory, then admits in source order.
    fn process_batch<'a>(
        &mut self,
        batch: &[RawRecord<'a>],
        context: &mut BatchContext<'_>,
        accepted: &mut Vec<Rated<'a>>,
    ) -> Result<(), ReadError> {
        let classified = self.classifier.classify_all(batch, context.now);
        let mut needed = StoreLookup::default();
        for rated in classified.iter().flatten() {
            self.note_lookups(rated, &mut needed);
        }
        if !needed.is_empty() {
            self.ask_store(&needed, context.state)?;
        }
        for (record, outcome) in batch.iter().zip(classified) {
            accepted.extend(self.admit(*record, outcome));
        }
        Ok(())
    }

    fn watermark(&self) -> Option<EpochMillis> {
        self.watermark
    }

    /// Ages dedup state out of the window. Cheap to call often: it only
    /// sweeps when the watermark has moved by a tenth of the window.
    fn handle_watermark(&mut self, watermark: EpochMillis) {
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

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        // The next delta starts at the size of this one: regrowing a hash map
        // from empty on every checkpoint costs more than the aggregation itself.
        let capacity = self.pending.summaries.len();
        let pending = std::mem::replace(
            &mut self.pending,
            Checkpoint {
                summaries: SummaryDelta::with_capacity(capacity),
                ..Checkpoint::default()
            },
        );
        for (row, known) in self.known_totals.iter_mut() {
            let delta = pending
                .summaries
                .row(row.kind, row.msisdn, row.day, &row.service_type);
            if let Some(delta) = delta {
                // Admission kept stored + delta within range.
                *known = known.checked_add(delta).unwrap_or(*known);
            }
        }
        out.absorb(pending);
        let identities = std::mem::take(&mut self.pending_identities);
        let mut state = out.state_of(self.name());
        for (first, last, value) in Mediator::identities_by_day(&identities) {
            state.append(&DEDUP_IDENTITIES, first, last, value);
        }
        if let Some(watermark) = self.watermark {
            let horizon = minute_of(watermark - self.classifier.config.dedup_horizon_ms);
            state.expire_before(&DEDUP_IDENTITIES, horizon);
            state.put(&WATERMARK, "", encode_millis(watermark));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::normalize::parse_timestamp;
    use crate::operator::MemoryState;
    use crate::rating::{Tariff, TariffOverrides};

    /// A store that must not be asked anything, or records what it was asked.
    #[derive(Default)]
    struct Asked {
        days: Vec<(i32, i32)>,
        totals: Vec<RowKey>,
        state: Option<MemoryState>,
    }

    impl StateReader for Asked {
        fn value(&mut self, _: &StateTable, _: &str) -> Result<Option<Vec<u8>>, ReadError> {
            Ok(None)
        }

        fn spans(
            &mut self,
            table: &StateTable,
            first: i32,
            last: i32,
            visit: &mut dyn FnMut(&[u8]),
        ) -> Result<(), ReadError> {
            match &mut self.state {
                Some(state) => {
                    self.days.push((first, last));
                    state.spans(table, first, last, visit)
                }
                None => panic!(
                    "no store lookup expected, asked {} {first}..={last}",
                    table.name
                ),
            }
        }

        fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
            match &mut self.state {
                Some(state) => {
                    self.totals.extend_from_slice(rows);
                    state.summary_totals(rows)
                }
                None => panic!("no store lookup expected, asked {rows:?}"),
            }
        }
    }

    fn process(
        mediator: &mut Mediator<'_>,
        batch: &[RawRecord<'_>],
        now: EpochMillis,
        state: &mut dyn StateReader,
    ) {
        mediator
            .process_batch(batch, &mut BatchContext { now, state }, &mut Vec::new())
            .unwrap();
        // As the runner does after every batch.
        if let Some(watermark) = mediator.watermark() {
            mediator.handle_watermark(watermark);
        }
    }

    fn checkpoint(mediator: &mut Mediator<'_>) -> Checkpoint {
        let mut cp = Checkpoint::default();
        mediator.checkpoint(&mut cp);
        cp
    }

    /// The identities a checkpoint hands over, decoded from its state writes.
    fn identities(cp: &Checkpoint) -> Vec<DedupEntry> {
        let mut out = Vec::new();
        for write in &cp.state {
            if let crate::operator::StateChange::Append { value, .. } = &write.change {
                out.extend(DedupEntry::decode_all(value));
            }
        }
        out
    }

    fn record(line: u64, payload: &str) -> RawRecord<'_> {
        RawRecord {
            origin: "test",
            source_id: "test",
            position: SourcePosition::Line {
                line,
                byte_offset: 0,
            },
            payload: payload.as_bytes(),
            cut_from: None,
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
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
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
        process(&mut mediator, &batch, now, &mut Asked::default());
        let cp = checkpoint(&mut mediator);
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
        assert_eq!(identities(&cp).len(), 4);
        assert!(checkpoint(&mut mediator).is_empty());
    }

    #[test]
    fn resumed_state_still_recognises_duplicates() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-10T00:00:00Z").unwrap();
        let a = voice("a", "2024-03-01T10:00:00Z", 60);
        let mut first = Mediator::new(MediationConfig::default(), &tariff);
        process(&mut first, &[record(1, &a)], now, &mut Asked::default());
        let mut stored = MemoryState::new("mediation");
        stored.apply(&checkpoint(&mut first));
        let mut second = Mediator::new(MediationConfig::default(), &tariff);
        second.on_start(&mut stored).unwrap();
        assert_eq!(second.watermark(), first.watermark());
        process(&mut second, &[record(1, &a)], now, &mut Asked::default());
        assert_eq!(checkpoint(&mut second).counts.duplicates_total(), 1);
    }

    #[test]
    fn the_watermark_is_stored_as_text_and_identities_expire_behind_the_horizon() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-10T00:00:00Z").unwrap();
        let a = voice("a", "2024-03-01T10:00:00Z", 60);
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        process(&mut mediator, &[record(1, &a)], now, &mut Asked::default());
        let cp = checkpoint(&mut mediator);
        let watermark = parse_timestamp("2024-03-01T10:00:00Z").unwrap();
        let horizon = minute_of(watermark - DEFAULT_DEDUP_HORIZON_DAYS * 86_400_000);
        let minute = minute_of(watermark);
        let changes: Vec<_> = cp
            .state
            .iter()
            .map(|w| (w.operator, w.table, &w.change))
            .collect();
        use crate::operator::StateChange::*;
        assert_eq!(
            changes,
            [
                (
                    "mediation",
                    "dedup_identities",
                    &Append {
                        first_minute: minute,
                        last_minute: minute,
                        value: identities(&cp)
                            .iter()
                            .flat_map(|e| {
                                let mut v = Vec::new();
                                e.encode_into(&mut v);
                                v
                            })
                            .collect()
                    }
                ),
                (
                    "mediation",
                    "dedup_identities",
                    &ExpireBefore { minute: horizon }
                ),
                (
                    "mediation",
                    "watermark",
                    &Put {
                        key: String::new(),
                        value: watermark.to_string().into_bytes()
                    }
                ),
            ]
        );
        assert_eq!(mediator.tables(), &[WATERMARK, DEDUP_IDENTITIES]);
    }

    #[test]
    fn days_behind_the_window_are_asked_of_the_store() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let now = parse_timestamp("2024-03-30T00:00:00Z").unwrap();
        let recent = voice("r", "2024-03-29T10:00:00Z", 60);
        let old = voice("o", "2024-03-01T10:00:00Z", 60);
        let stored_twin = voice("s", "2024-03-01T12:00:00Z", 60);
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        process(
            &mut mediator,
            &[record(1, &recent)],
            now,
            &mut Asked::default(),
        );
        // The store holds the twin's identity on that day.
        let mut twin = Mediator::new(MediationConfig::default(), &tariff);
        process(
            &mut twin,
            &[record(9, &stored_twin)],
            now,
            &mut Asked::default(),
        );
        let mut stored = MemoryState::new("mediation");
        stored.apply(&checkpoint(&mut twin));
        let mut asked = Asked {
            state: Some(stored),
            ..Asked::default()
        };
        process(
            &mut mediator,
            &[record(2, &old), record(3, &stored_twin), record(4, &old)],
            now,
            &mut asked,
        );
        let day = (parse_timestamp("2024-03-01T00:00:00Z").unwrap() / 86_400_000) as i32;
        assert_eq!(asked.days, [day_minutes(day)]);
        let cp = checkpoint(&mut mediator);
        assert_eq!(cp.counts.accepted_total(), 2, "recent and old once");
        assert_eq!(
            cp.counts.duplicates_total(),
            2,
            "the stored twin and the repeat"
        );
        // A day already loaded is not asked again.
        process(
            &mut mediator,
            &[record(5, &old)],
            now,
            &mut Asked::default(),
        );
        assert_eq!(checkpoint(&mut mediator).counts.duplicates_total(), 1);
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
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut stored = MemoryState::new("mediation");
        let mut earlier = Mediator::new(MediationConfig::default(), &tariff);
        process(
            &mut earlier,
            &[record(0, &data("earlier", 5_000_000_000_000_000_000))],
            now,
            &mut MemoryState::new("mediation"),
        );
        stored.apply(&checkpoint(&mut earlier));
        let mut asked = Asked {
            state: Some(stored),
            ..Asked::default()
        };
        process(
            &mut mediator,
            &[record(1, &big), record(2, &small)],
            now,
            &mut asked,
        );
        assert_eq!(asked.totals.len(), 1, "only the large record's row");
        let cp = checkpoint(&mut mediator);
        assert_eq!(
            cp.counts.rejected.get(&RejectReason::ValueTooLarge),
            Some(&1),
            "{:?}",
            cp.rejects
        );
        assert_eq!(cp.counts.accepted_total(), 1);
        assert_eq!(cp.summaries.len(), 1, "no empty row for the refused record");
    }

    #[test]
    fn records_over_the_size_limit_are_refused_keeping_their_first_bytes() {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let config = MediationConfig {
            max_record_bytes: KEPT_BYTES * 2,
            ..MediationConfig::default()
        };
        let mut mediator = Mediator::new(config, &tariff);
        let big = "y".repeat(KEPT_BYTES * 3);
        let start_of_longer = "z".repeat(KEPT_BYTES);
        let cut = RawRecord {
            cut_from: Some(10 * KEPT_BYTES as u64),
            ..record(3, &start_of_longer)
        };
        let now = parse_timestamp("2024-03-10T00:00:00Z").unwrap();
        process(
            &mut mediator,
            &[record(1, "x"), record(2, &big), cut],
            now,
            &mut Asked::default(),
        );
        let cp = checkpoint(&mut mediator);
        let kept: Vec<_> = cp
            .rejects
            .iter()
            .map(|r| (r.rejection.reason, r.payload.len()))
            .collect();
        assert_eq!(
            kept,
            [
                (RejectReason::MalformedJson, 1),
                (RejectReason::RecordTooLarge, KEPT_BYTES),
                (RejectReason::RecordTooLarge, KEPT_BYTES)
            ]
        );
        assert!(cp.rejects[2]
            .rejection
            .detail
            .contains(&(10 * KEPT_BYTES).to_string()));
    }
}
