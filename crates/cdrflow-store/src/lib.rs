//! cdrflow-store: the one place results are written and read.
//!
//! Every store implements [`Store`]. Its central promise is
//! [`Results::commit`]: a checkpoint's summary deltas, rejects, counters,
//! operators' state changes and the source positions they came from become visible together
//! or not at all. Restart from the stored positions and state, and each
//! record counts exactly once.
//!
//! - [`sqlite::SqliteStore`]: the embedded default, one file in the data dir.
//! - [`postgres_store::PgStore`]: the shared store for several processes.

use cdrflow_core::aggregate::{RowKey, Totals};
use cdrflow_core::analytics::daily::{DayCounts, Stat};
use cdrflow_core::analytics::rankings::SpendReport;
use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::analytics::windows::{closed_before, PartitionMark, WindowMeasures};
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::mediation::Counts;
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{Day, EpochMillis, Msisdn};
use cdrflow_core::operator::Checkpoint;
use cdrflow_core::reference::{BillingPeriod, ReferenceData, ReferenceRows};

mod codecs;

use codecs::clamp_day;
pub mod postgres_store;
pub mod postgres_tls;
pub mod schema;
pub mod sqlite;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot open the store at {path}: {why}")]
    Open { path: String, why: String },
    #[error("the {kind} total for {msisdn} on {date} ({service_type}) no longer fits in 64 bits")]
    TotalOverflow {
        kind: Kind,
        msisdn: Msisdn,
        date: Day,
        service_type: String,
    },
    #[error("the store's schema is version {found}, newer than this cdrflow understands ({known}); upgrade cdrflow")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
    #[error("partition {topic}[{partition}] now belongs to another consumer (epoch {epoch} is stale); its batch was not committed")]
    Fenced {
        topic: String,
        partition: i32,
        epoch: i64,
    },
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    #[error("{source_label} was read by another cdrflow process since this one opened it (its committed position moved from {expected} to {found}); nothing of this checkpoint was written. Run the command again to continue from the new position")]
    SourceMoved {
        source_label: String,
        expected: String,
        found: String,
    },
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    Conflict(String),
}

impl StoreError {
    /// Whether trying the same thing again may succeed: the store was
    /// unreachable or momentarily locked. Anything else (a refused value, a
    /// fenced partition, a moved cursor) fails the same way every time.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Open { .. } => true,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy
                    | rusqlite::ErrorCode::DatabaseLocked
                    | rusqlite::ErrorCode::SystemIoFailure
                    | rusqlite::ErrorCode::DiskFull
                    | rusqlite::ErrorCode::CannotOpen
            ),
            StoreError::Postgres(e) => {
                e.is_closed()
                    || e.as_db_error().is_none()
                    || e.code().is_some_and(|c| {
                        let class = &c.code()[..2];
                        // connection exception, insufficient resources, operator
                        // intervention (shutdown), system error; serialization failure, deadlock
                        matches!(class, "08" | "53" | "57" | "58")
                            || matches!(c.code(), "40001" | "40P01")
                    })
            }
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// How far a source has been consumed and committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceCursor {
    /// A stable name of the source, e.g. `file:/data/cdr.jsonl`.
    pub source: String,
    /// The next byte (files) or offset (Kafka) to read.
    pub next_offset: i64,
    /// The number of lines consumed (files); 0 for Kafka.
    pub lines: i64,
    /// A fingerprint of the source's identity (files: a hash of the first bytes),
    /// so that a replaced file is not mistaken for the one already read.
    pub fingerprint: String,
    /// How many leading bytes of the source its identity hashes (files: the
    /// first 4 KiB, or the whole lines of a smaller file when first committed).
    pub prefix_len: i64,
    /// The stored `next_offset` this commit starts from (`None`: nothing
    /// stored yet). The update is a compare-and-set on it: a second process
    /// reading the same source at the same time cannot commit it twice.
    pub from_offset: Option<i64>,
}

/// Where an operator's state table lives: the generic `operator_state`
/// table holds every operator's tables, keyed by these three.
#[derive(Clone, Copy, Debug)]
pub struct StateAt<'a> {
    pub operator: &'a str,
    pub scope: &'a str,
    pub table: &'a str,
}

/// One stored daily summary row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SummaryRecord {
    pub kind: Kind,
    pub msisdn: String,
    pub date: Day,
    pub service_type: String,
    pub totals: Totals,
}

/// A page of one subscriber's summaries (see [`Store::usage_page`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsagePage {
    pub rows: Vec<SummaryRecord>,
    /// The first day not in `rows` that has usage in the range asked for.
    pub next_from: Option<Day>,
}

/// One stored rejected record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredReject {
    pub id: i64,
    pub reason: String,
    pub detail: String,
    pub origin: String,
    pub position: String,
    pub payload: Vec<u8>,
    pub rejected_at: String,
}

/// A filter for rejected records, paged by id.
#[derive(Clone, Debug, Default)]
pub struct RejectQuery {
    pub reason: Option<String>,
    pub after_id: i64,
    pub limit: Option<u32>,
}

/// Windows to read: those starting in `from..to` (UTC milliseconds), of one
/// region or all.
#[derive(Clone, Debug)]
pub struct WindowQuery {
    pub from: EpochMillis,
    pub to: EpochMillis,
    pub region: Option<String>,
    /// Partitions quiet for longer hold no window open (see
    /// [`cdrflow_core::analytics::windows::closed_before`]).
    pub idle_after_ms: i64,
}

/// One stored window (seed 003's `real_time_metrics` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowRecord {
    pub start: EpochMillis,
    pub end: EpochMillis,
    pub region: String,
    pub kind: Kind,
    pub measures: WindowMeasures,
    /// No partition still reading will add to it.
    pub is_final: bool,
}

/// One stored late event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLateEvent {
    pub id: i64,
    pub event_id: Option<String>,
    pub origin: String,
    pub position: String,
    pub event_time: EpochMillis,
    pub window_start: EpochMillis,
    pub window_end: EpochMillis,
    pub region: String,
    pub kind: Kind,
    pub lateness_ms: i64,
}

/// Anomalies to read: of one severity or all, paged by id.
#[derive(Clone, Debug, Default)]
pub struct AnomalyQuery {
    pub severity: Option<Severity>,
    pub after_id: i64,
    pub limit: Option<u32>,
}

/// One stored anomaly (seed 003's `anomalies` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAnomaly {
    pub id: i64,
    pub rule: String,
    pub severity: Severity,
    /// E.164.
    pub msisdn: String,
    pub event_id: Option<String>,
    pub event_time: EpochMillis,
    pub window_start: Option<EpochMillis>,
    pub evidence: String,
    pub idempotency_key: String,
}

/// One line of a day's overview: all subscribers together, by kind and type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverviewRow {
    pub kind: Kind,
    pub service_type: String,
    pub subscribers: u64,
    pub totals: Totals,
}

/// A subscriber ranked by cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopSubscriber {
    pub msisdn: String,
    pub cost_micros: i128,
}

/// A Kafka partition's committed position, guarded by the owner's epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaCursor {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
    /// The stored `next_offset` this batch starts from (`None`: nothing stored
    /// yet). The update is conditional on it, so that a commit re-sent after
    /// its outcome was lost (connection cut during COMMIT) is recognised as
    /// already applied instead of counted twice.
    pub from_offset: Option<i64>,
    /// The epoch returned by [`Store::claim_partitions`]; a commit carrying an
    /// older epoch than the stored one is refused ([`StoreError::Fenced`]).
    pub epoch: i64,
}

impl KafkaCursor {
    /// For a cursor whose conditional update moved nothing, given the stored
    /// (epoch, next_offset): true when this very commit was applied before.
    /// Otherwise another member owns the partition now: fenced.
    pub fn was_applied(&self, stored_epoch: i64, stored_next_offset: Option<i64>) -> bool {
        stored_epoch == self.epoch && stored_next_offset == Some(self.next_offset)
    }

    pub fn fenced(&self) -> StoreError {
        StoreError::Fenced {
            topic: self.topic.clone(),
            partition: self.partition,
            epoch: self.epoch,
        }
    }
}

impl SourceCursor {
    /// For a cursor whose compare-and-set moved nothing, given the stored
    /// position: true when this very commit was applied before (its outcome
    /// was lost with the connection).
    pub fn already_applied(&self, stored_next_offset: Option<i64>) -> bool {
        stored_next_offset == Some(self.next_offset) && self.from_offset != Some(self.next_offset)
    }

    pub fn moved(&self, stored_next_offset: Option<i64>) -> StoreError {
        let show = |o: Option<i64>| o.map_or("nothing".to_string(), |o| format!("byte {o}"));
        StoreError::SourceMoved {
            source_label: self.source.clone(),
            expected: show(self.from_offset),
            found: show(stored_next_offset),
        }
    }
}

/// A position to commit with a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cursor {
    File(SourceCursor),
    Kafka(KafkaCursor),
}

impl Cursor {
    pub fn as_kafka(&self) -> Option<&KafkaCursor> {
        match self {
            Cursor::Kafka(cursor) => Some(cursor),
            Cursor::File(_) => None,
        }
    }
}

/// A partition's stored position, as `replay` and running members see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaPosition {
    pub topic: String,
    pub partition: i32,
    pub next_offset: Option<i64>,
    pub epoch: i64,
}

/// A partition this process now owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionClaim {
    pub topic: String,
    pub partition: i32,
    /// Where to resume; `None` when nothing was ever committed for it.
    pub next_offset: Option<i64>,
    pub epoch: i64,
}

/// The scope of operator state (the mediator's watermark and dedup entries) that travels with
/// a unit of ownership: `files` for file inputs, `kafka:TOPIC:PARTITION` for
/// a partition, so whoever owns a partition next inherits exactly its state.
pub fn kafka_scope(topic: &str, partition: i32) -> String {
    format!("kafka:{topic}:{partition}")
}

pub const FILES_SCOPE: &str = "files";

/// One scope's share of a commit: its operators' results and state changes.
pub struct CommitPart<'a> {
    pub scope: &'a str,
    pub checkpoint: &'a Checkpoint,
}

/// What one commit writes, all or nothing.
pub struct Commit<'a> {
    pub parts: &'a [CommitPart<'a>],
    pub cursors: &'a [Cursor],
}

impl Commit<'_> {
    /// The window deltas of all parts, merged so each window appears once.
    pub fn merged_windows(
        &self,
    ) -> std::borrow::Cow<'_, cdrflow_core::analytics::windows::WindowDelta> {
        match self.parts {
            [only] => std::borrow::Cow::Borrowed(&only.checkpoint.windows),
            parts => {
                let mut merged = cdrflow_core::analytics::windows::WindowDelta::default();
                for part in parts {
                    merged.merge(&part.checkpoint.windows);
                }
                std::borrow::Cow::Owned(merged)
            }
        }
    }

    /// The summary deltas of all parts, merged so each key appears once.
    pub fn merged_summaries(&self) -> std::borrow::Cow<'_, cdrflow_core::aggregate::SummaryDelta> {
        match self.parts {
            [only] => std::borrow::Cow::Borrowed(&only.checkpoint.summaries),
            parts => {
                let mut merged = cdrflow_core::aggregate::SummaryDelta::default();
                for part in parts {
                    merged.merge(&part.checkpoint.summaries);
                }
                std::borrow::Cow::Owned(merged)
            }
        }
    }
}

/// Where `replay` moves a group's positions to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayTarget {
    Beginning,
    Offset(i64),
    /// Per partition: (topic, partition, offset).
    Offsets(Vec<(String, i32, i64)>),
}

impl ReplayTarget {
    /// Where each of a group's stored partitions moves: those of `topics`
    /// (all when empty) that the target names, with their new offset
    /// (`None`: the beginning). Both stores apply exactly this.
    pub fn moves(
        &self,
        stored: impl IntoIterator<Item = (String, i32)>,
        topics: &[String],
    ) -> Vec<(String, i32, Option<i64>)> {
        stored
            .into_iter()
            .filter(|(topic, _)| topics.is_empty() || topics.contains(topic))
            .filter_map(|(topic, partition)| {
                let offset = self.offset_for(&topic, partition).ok()?;
                Some((topic, partition, offset))
            })
            .collect()
    }

    /// The offset `topic[partition]` moves to; `None` means the beginning,
    /// and `Err(())` that the partition is not part of the target.
    pub fn offset_for(&self, topic: &str, partition: i32) -> std::result::Result<Option<i64>, ()> {
        match self {
            ReplayTarget::Beginning => Ok(None),
            ReplayTarget::Offset(o) => Ok(Some(*o)),
            ReplayTarget::Offsets(list) => list
                .iter()
                .find(|(t, p, _)| t == topic && *p == partition)
                .map(|(_, _, o)| Some(*o))
                .ok_or(()),
        }
    }
}

/// Where each source stands and who owns it: file cursors, Kafka offsets
/// with owner epochs, the files lock.
pub trait Positions {
    /// Takes ownership of Kafka partitions for `group`: bumps each one's epoch
    /// (fencing any previous owner) and returns where to resume.
    fn claim_partitions(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<PartitionClaim>>;

    /// Moves `group`'s stored positions (all topics, or those listed) so the
    /// next run re-reads from `target`; also bumps epochs to fence running consumers.
    fn reset_kafka_offsets(
        &mut self,
        group: &str,
        topics: &[String],
        target: &ReplayTarget,
    ) -> Result<u64>;

    /// `group`'s stored Kafka positions and their owners' epochs.
    fn kafka_positions(&mut self, group: &str) -> Result<Vec<KafkaPosition>>;

    /// Where `source` was last committed, if ever.
    fn cursor(&mut self, source: &str) -> Result<Option<SourceCursor>>;

    /// The identity prefix lengths below `below` that stored file cursors
    /// use (files smaller than 4 KiB when first committed), so that a file
    /// that has grown since is still recognised.
    fn short_prefix_lens(&mut self, below: i64) -> Result<Vec<i64>>;

    /// Makes this store handle the only one processing files into the store
    /// until it is dropped; a second process gets [`StoreError::Busy`].
    fn lock_files(&mut self) -> Result<()>;
}

/// Operators' state tables, as their checkpoints left them (written by
/// [`Results::commit`]).
pub trait OperatorState {
    /// The value under `key` in a keyed table.
    fn state_value(&mut self, at: StateAt<'_>, key: &str) -> Result<Option<Vec<u8>>>;

    /// The values under `keys`, in the order asked: a store with a round
    /// trip per question answers all in one.
    fn state_values_of(
        &mut self,
        at: StateAt<'_>,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        keys.iter().map(|key| self.state_value(at, key)).collect()
    }

    /// Every value of a span table whose span overlaps `first_minute..=last_minute`.
    fn state_spans(
        &mut self,
        at: StateAt<'_>,
        first_minute: i32,
        last_minute: i32,
        visit: &mut dyn FnMut(&[u8]),
    ) -> Result<()>;

    /// Every key and value of a keyed table.
    fn state_values(&mut self, at: StateAt<'_>, visit: &mut dyn FnMut(&str, &[u8])) -> Result<()>;
}

/// Writing results: the one transaction that carries every concern's
/// rows with the positions they came from, and clearing them for a rebuild.
pub trait Results {
    /// Writes checkpoints (results and operator state) and the source cursors in one transaction; refuses
    /// the whole commit with [`StoreError::Fenced`] when a Kafka cursor's epoch is stale.
    fn commit(&mut self, commit: Commit<'_>) -> Result<()>;

    /// Clears every summary, counter, reject, operator state and file position: the start of a rebuild.
    fn clear_results(&mut self) -> Result<()>;
}

/// Usage summaries per subscriber and day.
pub trait Usage {
    /// One subscriber's summaries for the inclusive date range.
    fn usage(&mut self, msisdn: Msisdn, from: Day, to: Day) -> Result<Vec<SummaryRecord>>;

    /// The day of the subscriber's `n`-th summary row (from 0) in the range,
    /// counting rows of every kind in day order; `None` when there are fewer.
    fn usage_day_at(&mut self, msisdn: Msisdn, from: Day, to: Day, n: u32) -> Result<Option<Day>>;

    /// A page of one subscriber's summaries: whole days from `from`, at most
    /// `limit` rows unless a single day holds more, and the first day left
    /// out when rows remain (ask again from there). A heavy subscriber's
    /// years of usage never come back in one answer.
    fn usage_page(&mut self, msisdn: Msisdn, from: Day, to: Day, limit: u32) -> Result<UsagePage> {
        let (from, to) = (clamp_day(from), clamp_day(to));
        let Some(cut) = self.usage_day_at(msisdn, from, to, limit)? else {
            return Ok(UsagePage {
                rows: self.usage(msisdn, from, to)?,
                next_from: None,
            });
        };
        // Days before the (limit+1)-th row's are complete within the limit;
        // when that row is on the first day with usage, that day alone is the page.
        let first = self.usage_day_at(msisdn, from, to, 0)?.unwrap_or(cut);
        let last = if cut > first { Day(cut.0 - 1) } else { first };
        let next_from = if last < to {
            self.usage_day_at(msisdn, Day(last.0 + 1), to, 0)?
        } else {
            None
        };
        Ok(UsagePage {
            rows: self.usage(msisdn, first, last)?,
            next_from,
        })
    }

    /// The stored totals of summary rows, in the order asked (`None`: no row yet).
    fn stored_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>>;

    /// Every summary row, in (kind, msisdn, date, type) order.
    fn for_each_summary(&mut self, visit: &mut dyn FnMut(SummaryRecord)) -> Result<()>;
}

/// Rejected records, with their reasons and payloads.
pub trait Rejects {
    /// Rejected records matching `query`, oldest first.
    fn rejects(&mut self, query: &RejectQuery, visit: &mut dyn FnMut(StoredReject)) -> Result<()>;
}

/// Seed 003's real-time metrics: windows (`real_time_metrics`), the
/// records that came too late for theirs (`late_events`), and anomalies.
pub trait Analytics {
    /// Windows matching `query`, in (start, region, event type) order, each
    /// marked final or not by every partition's committed mark.
    fn windows(&mut self, query: &WindowQuery, visit: &mut dyn FnMut(WindowRecord)) -> Result<()> {
        let marks = self.window_marks()?;
        let closed_before = closed_before(marks, query.idle_after_ms).unwrap_or(EpochMillis::MIN);
        self.window_rows(query, closed_before, visit)
    }

    /// Windows matching `query`; final when they end at or before `closed_before`.
    fn window_rows(
        &mut self,
        query: &WindowQuery,
        closed_before: EpochMillis,
        visit: &mut dyn FnMut(WindowRecord),
    ) -> Result<()>;

    /// The windows operator's mark of every partition, in every scope.
    fn window_marks(&mut self) -> Result<Vec<PartitionMark>>;

    /// Late events after `after_id`, oldest first.
    fn late_events(
        &mut self,
        after_id: i64,
        limit: Option<u32>,
        visit: &mut dyn FnMut(StoredLateEvent),
    ) -> Result<()>;

    /// Anomalies matching `query`, oldest first. An anomaly is stored once
    /// whatever fires it again (its idempotency key is unique).
    fn anomalies(
        &mut self,
        query: &AnomalyQuery,
        visit: &mut dyn FnMut(StoredAnomaly),
    ) -> Result<()>;

    /// The anomalies table is the alert outbox: a relay delivers them in id
    /// order and keeps, per sink, the last id acknowledged (0: none yet).
    fn alert_cursor(&mut self, sink: &str) -> Result<i64>;

    /// `sink` has delivered every anomaly up to `after_id`.
    fn advance_alert_cursor(&mut self, sink: &str, after_id: i64) -> Result<()>;
}

/// Which of seed 003's statistics tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatGrain {
    Daily,
    Hourly,
}

/// One stored raw event (seed 003's `raw_events` row).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRawEvent {
    pub event_id: Option<String>,
    /// E.164, or masked (`+7701234****`).
    pub msisdn: String,
    pub kind: Kind,
    pub subtype: String,
    pub duration_sec: u64,
    pub data_bytes: u64,
    pub amount_micros: i64,
    pub region: String,
    pub cell_id: Option<String>,
    pub event_time: EpochMillis,
}

/// Seed 003's daily batch over the raw events: statistics, what verifies
/// them, and the retention. Times are UTC milliseconds; `from..to` is half open.
pub trait DailyBatch {
    /// The raw events of `from..to` grouped by UTC hour, region and event
    /// type: the hourly statistics, in key order.
    fn raw_event_hours(&mut self, from: EpochMillis, to: EpochMillis) -> Result<Vec<Stat>>;

    /// The raw events of `from..to`, one by one, in no particular order.
    fn raw_events(
        &mut self,
        from: EpochMillis,
        to: EpochMillis,
        visit: &mut dyn FnMut(StoredRawEvent),
    ) -> Result<()>;

    /// Late events per region and event type whose window starts in `from..to`.
    fn late_event_counts(&mut self, from: EpochMillis, to: EpochMillis) -> Result<DayCounts>;

    /// Replaces the statistics of the UTC day starting at `day`, both
    /// grains in one transaction: running it again changes nothing.
    fn replace_stats(&mut self, day: EpochMillis, hourly: &[Stat], daily: &[Stat]) -> Result<()>;

    /// The stored statistics of the UTC day starting at `day`, in key order.
    fn stats(&mut self, grain: StatGrain, day: EpochMillis) -> Result<Vec<Stat>>;
}

/// Totals across subscribers: lifetime counters, a day's totals, top spenders.
pub trait Overview {
    /// Lifetime counters: records in, accepted by kind, rejected by reason, duplicates by reason.
    fn counts(&mut self) -> Result<Counts>;

    /// Totals of `day` by kind and type, across all subscribers.
    fn overview(&mut self, day: Day) -> Result<Vec<OverviewRow>>;

    /// The `limit` subscribers with the highest total cost.
    fn top_subscribers(&mut self, limit: u32) -> Result<Vec<TopSubscriber>>;

    /// Seed 004's analytics flush, taken from committed state: the `top`
    /// subscribers and plans by spend in the latest billing period rated,
    /// and the subscribers in force by status
    /// (`cdrflow_core::analytics::rankings`).
    fn take_spend_report(&mut self, top: u32, flushed_at: i64) -> Result<SpendReport>;

    /// Keeps `report` as the latest, in place of the one before.
    fn put_spend_report(&mut self, report: &SpendReport) -> Result<()>;

    /// The latest report kept (`None`: none was flushed yet).
    fn spend_report(&mut self) -> Result<Option<SpendReport>>;
}

/// Reference data: subscribers, customers and cells, each row with the
/// instant it took effect (see `cdrflow_core::reference`).
pub trait Reference {
    /// Stores `rows` in one transaction; a row for an id and instant
    /// already stored replaces it.
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()>;

    /// Every row, indexed for rating.
    fn reference(&mut self) -> Result<ReferenceData>;

    /// Subscribers, customers, cells and plans as they are now, found by
    /// words, number prefix or fee range (`cdrflow_core::search`): every
    /// match of every word, in the index's order (no relevance ranking: over
    /// a million documents, ranking a common name's thousands of matches took
    /// longer than the 10 ms a search may take), numbers in order; the store's full-text engine (FTS5, PostgreSQL text search)
    /// over an index every reference change keeps in step.
    fn search(
        &mut self,
        query: &cdrflow_core::search::SearchQuery,
    ) -> Result<Vec<cdrflow_core::search::SearchHit>>;

    /// The changes that came after records they should have affected, by
    /// kind, id and instant (see [`LateReferenceChange`]).
    fn late_changes(&mut self) -> Result<Vec<LateReferenceChange>>;
}

/// A reference change that arrived after rated records it should have
/// affected: a subscriber's row put or removed from `effective_from`, when
/// the store already held `records` rated records of that number from
/// then on (rated on what was in force before it). Those records keep
/// their prices until they are re-rated; `cdrflow rerate` for the periods
/// from `first_period` to `last_period` does that.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateReferenceChange {
    /// `subscribers`.
    pub kind: String,
    pub id: String,
    pub effective_from: EpochMillis,
    pub records: i64,
    /// The earliest of those records' event times.
    pub first_event_time: EpochMillis,
    pub first_period: String,
    pub last_period: String,
}

/// Which rated records to read: one subscriber's or everyone's, by event
/// time (`from` inclusive, `to` exclusive, milliseconds) and billing period.
#[derive(Clone, Debug, Default)]
pub struct RatedQuery {
    pub msisdn: Option<Msisdn>,
    pub record_id: Option<String>,
    pub from: Option<EpochMillis>,
    pub to: Option<EpochMillis>,
    pub period: Option<BillingPeriod>,
    pub limit: Option<u32>,
}

/// A prepaid balance as committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBalance {
    pub msisdn: Msisdn,
    pub micros: i64,
    pub currency: String,
    /// The event time of the latest record that moved it.
    pub last_event_time: EpochMillis,
}

/// Rated records and prepaid balances, written by [`Results::commit`].
pub trait Charges {
    /// The committed balances of `msisdns`, in the order asked (`None`: none yet).
    fn stored_balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>>;

    /// Every balance, by number.
    fn balances(&mut self, visit: &mut dyn FnMut(StoredBalance)) -> Result<()>;

    /// Rated records matching `query`, by event time then record id.
    fn rated_records(
        &mut self,
        query: &RatedQuery,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()>;
}

/// A rated record a bill run may take (see [`Billing::billable_usage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillableRecord {
    pub usage: cdrflow_core::billing::Usage,
    pub msisdn: Msisdn,
    pub event_time: EpochMillis,
    pub customer_id: String,
    pub currency: String,
}

/// An invoice as stored: its figures for exports and reports, and its
/// document (`cdrflow.invoice/1` JSON) as issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredInvoice {
    /// `customer:period:revision` (a voided invoice's successor has the next revision).
    pub invoice_id: String,
    pub customer_id: String,
    pub period: BillingPeriod,
    pub revision: u32,
    pub entity: String,
    /// Assigned at finalisation.
    pub number: Option<String>,
    pub status: cdrflow_core::billing::InvoiceStatus,
    pub currency: String,
    pub totals: cdrflow_core::billing::invoice::Totals,
    /// Empty when read with [`InvoiceQuery::without_documents`].
    pub document: String,
    /// `cdrflow_core::billing::document::document_hash` of the document.
    pub document_hash: String,
}

/// A rated record on an invoice line (its number and event time find its
/// row through `rated_records`' index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceItem {
    pub record_id: Box<str>,
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub event_time: EpochMillis,
    pub line: u32,
}

/// A draft to store (new, or replacing the draft of the same id) or an
/// invoice to finalise, with the line each of its records is on.
#[derive(Clone, Debug)]
pub struct InvoiceWrite {
    pub invoice: StoredInvoice,
    /// The records on its lines: written for an issued invoice only
    /// (a draft holds none; it is recomputed by every run).
    pub items: Vec<InvoiceItem>,
}

/// An entity's last invoice number before and after a run's finalisations:
/// the run commits only if no other run numbered invoices meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberClaim {
    pub entity: String,
    pub last_before: u64,
    pub last_after: u64,
}

/// One billing run's changes, committed in one transaction.
#[derive(Clone, Debug, Default)]
pub struct BillRun {
    pub writes: Vec<InvoiceWrite>,
    /// Drafts that bill nothing any more.
    pub removed_drafts: Vec<String>,
    pub numbers: Vec<NumberClaim>,
}

/// A usage line of a customer's draft, by what puts a record on it: the
/// customer, the record's billing period, kind and destination class.
#[derive(Clone, Debug)]
pub struct DraftLine {
    pub customer_id: String,
    pub usage_period: BillingPeriod,
    pub kind: Kind,
    /// The destination class as stored (`None`: a record without one).
    pub class: Option<String>,
}

/// Which invoices to read (every filter optional), by period, customer, revision.
#[derive(Clone, Debug, Default)]
pub struct InvoiceQuery {
    pub customer: Option<String>,
    pub period: Option<BillingPeriod>,
    pub number: Option<String>,
    pub invoice_id: Option<String>,
    /// Leave the documents out (a run compares their hashes).
    pub without_documents: bool,
}

/// A credit or debit note as stored: its figures (differences, negative
/// when credited) and its document (`cdrflow.credit_note/1` JSON).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNote {
    /// `invoice_id:n`, n counting the invoice's notes from 1.
    pub note_id: String,
    pub number: String,
    pub kind: cdrflow_core::billing::notes::NoteKind,
    pub invoice_id: String,
    pub invoice_number: String,
    pub customer_id: String,
    /// The invoice's period.
    pub period: BillingPeriod,
    /// The period whose re-rating issued it.
    pub rerated_period: BillingPeriod,
    pub entity: String,
    pub currency: String,
    pub totals: cdrflow_core::billing::invoice::Totals,
    pub document: String,
}

/// Which notes to read (every filter optional), by invoice period, invoice, note id.
#[derive(Clone, Debug, Default)]
pub struct NoteQuery {
    pub period: Option<BillingPeriod>,
    pub customer: Option<String>,
    pub invoice_id: Option<String>,
}

/// A rated record's new price (`cdrflow rerate`), applied only if the
/// record still costs `old_cost_micros` and is held by `held_by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatedRepricing {
    pub record_id: Box<str>,
    pub kind: Kind,
    pub msisdn: Msisdn,
    pub event_time: EpochMillis,
    pub old_cost_micros: i64,
    /// The issued invoice holding it when the re-rating read it.
    pub held_by: Option<String>,
    pub version: String,
    pub destination: Option<(String, &'static str)>,
    pub band: Option<String>,
    pub rate: String,
    pub billed_units: u64,
    pub cost_micros: i64,
}

/// A prepaid balance moved by a re-rating: `micros` added (a record that
/// costs more takes more).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalanceCorrection {
    pub msisdn: Msisdn,
    pub micros: i64,
    pub currency: String,
    pub last_event_time: EpochMillis,
}

/// One re-rating's changes, committed in one transaction: refused whole
/// (`StoreError::Conflict`) when a record's price or holder, a note
/// sequence or an invoice's notes changed since it read them.
#[derive(Clone, Debug, Default)]
pub struct RerateRun {
    pub repriced: Vec<RatedRepricing>,
    pub balances: Vec<BalanceCorrection>,
    pub notes: Vec<StoredNote>,
    /// The note sequences' claims (`NoteKind::sequence` keys).
    pub numbers: Vec<NumberClaim>,
}

/// Invoices (issue 13): drafts, finalised and void invoices with their
/// documents, which rated record is on which line of an issued invoice,
/// and the entities' gapless numbers. A rated record is held by at most
/// one invoice that is not void, so it is billed once.
pub trait Billing {
    /// Every rated record with a customer and a billing period not after
    /// `period` that no issued invoice holds.
    fn billable_usage(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(BillableRecord),
    ) -> Result<()>;

    /// The customers and periods before `period` that have a draft: their
    /// records wait for that draft.
    fn drafts_before(
        &mut self,
        period: BillingPeriod,
    ) -> Result<std::collections::BTreeSet<(String, BillingPeriod)>>;

    fn invoices(
        &mut self,
        query: &InvoiceQuery,
        visit: &mut dyn FnMut(StoredInvoice),
    ) -> Result<()>;

    /// Each entity's last assigned invoice number.
    fn invoice_numbers(&mut self) -> Result<std::collections::BTreeMap<String, u64>>;

    /// Writes a run in one transaction; refused whole (`StoreError::Conflict`)
    /// when another run numbered invoices or took its records meanwhile.
    fn save_bill_run(&mut self, run: &BillRun) -> Result<()>;

    /// Voids the finalised invoice `number`, releasing its records; `None`:
    /// no finalised invoice has that number.
    fn void_invoice(&mut self, number: &str) -> Result<Option<String>>;

    /// The first `limit` rated records on line `line` of `invoice_id`, by
    /// event time then record id.
    fn invoice_line_records(
        &mut self,
        invoice_id: &str,
        line: u32,
        limit: u32,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()>;

    /// The first `limit` records a draft's usage `line` stands for — the
    /// customer's postpaid records of its period, kind and class that no
    /// issued invoice holds, as `cdrflow bill` reads them — by event time
    /// then record id. A draft holds none (it is recomputed by every run).
    fn draft_line_records(
        &mut self,
        line: &DraftLine,
        limit: u32,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()>;

    /// The customers whose subscriptions (any row) hold one of `msisdns`.
    fn customers_of(&mut self, msisdns: &[Msisdn]) -> Result<Vec<String>>;

    /// The records held by the issued invoices a re-rating of `period`
    /// touches — the period's finalised invoices and any holding one of its
    /// records — each with its invoice's id, by invoice.
    fn held_records(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(&str, RatedRecord),
    ) -> Result<()>;

    /// Credit and debit notes matching `query`, by invoice then note.
    fn notes(&mut self, query: &NoteQuery, visit: &mut dyn FnMut(StoredNote)) -> Result<()>;

    /// Writes a re-rating in one transaction.
    fn save_rerate(&mut self, run: &RerateRun) -> Result<()>;
}

/// The lake's manifest: the Parquet files commits named (`cdrflow-lake`
/// stages them, [`Results::commit`] names them with the positions).
pub trait LakeManifest {
    /// Which of `paths` a commit named.
    fn committed_lake_files(
        &mut self,
        paths: &[String],
    ) -> Result<std::collections::BTreeSet<String>>;

    /// Every file commits named, in path order.
    fn lake_files(&mut self) -> Result<Vec<cdrflow_core::operator::LakeFile>>;
}

/// What a retention run removes (see `cdrflow_core::retention`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionCounts {
    pub raw_events: u64,
    pub rated_records: u64,
    /// Of those, records with a customer that no issued invoice held.
    pub unbilled_rated: u64,
    pub invoices: u64,
    pub invoice_items: u64,
    pub notes: u64,
    /// Manifest rows of the lake partitions removed.
    pub lake_files: u64,
}

/// Data retention (issue 13): each layer's rows past its cut, counted or
/// removed in one transaction.
pub trait Retention {
    /// Counts (`apply` false) or removes (true) what `cuts` put past
    /// retention, and the manifest rows of `lake_partitions` (dataset,
    /// partition path) whose files are being removed.
    fn retain(
        &mut self,
        cuts: &cdrflow_core::retention::Cuts,
        lake_partitions: &[(String, String)],
        apply: bool,
    ) -> Result<RetentionCounts>;
}

/// A store: every concern, behind one connection, so that one transaction
/// (`Results::commit`) spans them all. Implement the concern traits; this
/// one follows.
pub trait Store:
    Positions
    + OperatorState
    + Results
    + Usage
    + Rejects
    + Analytics
    + DailyBatch
    + Overview
    + Reference
    + Charges
    + Billing
    + LakeManifest
    + Retention
    + Send
{
}

impl<
        T: Positions
            + OperatorState
            + Results
            + Usage
            + Rejects
            + Analytics
            + DailyBatch
            + Overview
            + Reference
            + Charges
            + Billing
            + LakeManifest
            + Retention
            + Send,
    > Store for T
{
}

/// The store traits, for callers that use a `dyn Store`'s methods.
pub mod prelude {
    pub use crate::{
        Analytics, Billing, Charges, DailyBatch, LakeManifest, OperatorState, Overview, Positions,
        Reference, Rejects, Results, Store, Usage,
    };
}
