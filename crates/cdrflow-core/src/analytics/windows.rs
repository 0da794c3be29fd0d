//! Seed 003's real-time metrics: tumbling windows per region and event type,
//! with late events kept instead of dropped.
//!
//! Exactly defined, so that a replay gives the same windows whatever the
//! interleaving of partitions:
//! - Each input partition (a file, a Kafka partition) has a **watermark**:
//!   the newest event time accepted from it so far minus the allowed
//!   lateness. It never goes back.
//! - An accepted, non-duplicate record is **late** when the end of its
//!   window is at or before its partition's watermark as it arrives. A late
//!   record counts in no window; it is kept as a [`LateEvent`] (and still
//!   counts in usage summaries, which the mediator made before).
//! - Every other record adds to its window's row. Rows leave as deltas at
//!   each checkpoint and are added to the stored rows in the same commit as
//!   the source positions, so several consumers each add their partitions'
//!   share and a replay adds nothing twice.
//! - A window is **final** once every partition's committed watermark has
//!   passed its end, partitions whose input ended or that have been idle
//!   for a while excepted: the store decides it when it is read, from the
//!   [`PartitionMark`]s this operator keeps ([`closed_before`]).
//!
//! Windows are aligned to the epoch in UTC; a window is named by its start.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use crate::mediation::Rated;
use crate::model::{Direction, Kind, SourcePosition};
use crate::normalize::EpochMillis;
use crate::operator::{
    BatchContext, Checkpoint, Operator, ReadError, StateKind, StateReader, StateTable,
};

pub const DEFAULT_WINDOW_MS: i64 = 5 * 60_000;
pub const DEFAULT_ALLOWED_LATENESS_MS: i64 = 60_000;
/// A partition that has read nothing for this long (behind the most recent
/// partition) no longer holds windows open.
pub const DEFAULT_IDLE_AFTER_MS: i64 = 5 * 60_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    pub size_ms: i64,
    pub allowed_lateness_ms: i64,
    pub idle_after_ms: i64,
}

impl Default for WindowConfig {
    fn default() -> Self {
        WindowConfig {
            size_ms: DEFAULT_WINDOW_MS,
            allowed_lateness_ms: DEFAULT_ALLOWED_LATENESS_MS,
            idle_after_ms: DEFAULT_IDLE_AFTER_MS,
        }
    }
}

impl WindowConfig {
    /// The start of the window holding `time`.
    pub fn window_of(&self, time: EpochMillis) -> EpochMillis {
        time.div_euclid(self.size_ms) * self.size_ms
    }
}

/// Seed 003's name for a kind of record (`event_type`).
pub fn event_type(kind: Kind) -> &'static str {
    match kind {
        Kind::Voice => "call",
        Kind::Sms => "sms",
        Kind::Data => "data_session",
        Kind::Recharge => "balance_recharge",
        Kind::Activation => "service_activation",
    }
}

/// The kind named by seed 003's `event_type`.
pub fn kind_of_event_type(name: &str) -> Option<Kind> {
    Kind::ALL.into_iter().find(|&k| event_type(k) == name)
}

/// The region of records that name none (seed 000's feeds).
pub const UNKNOWN_REGION: &str = "unknown";

/// Seed 003's measures of a window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WindowMeasures {
    pub total_events: u64,
    pub incoming_calls: u64,
    pub outgoing_calls: u64,
    pub sms_count: u64,
    /// Uplink plus downlink; megabytes are 10^6 bytes, so exact.
    pub data_bytes: u64,
    pub recharge_micros: i64,
}

impl WindowMeasures {
    fn of(record: &Rated<'_>) -> WindowMeasures {
        let call =
            |direction| u64::from(record.kind == Kind::Voice && record.direction == direction);
        WindowMeasures {
            total_events: 1,
            incoming_calls: call(Direction::Incoming),
            outgoing_calls: call(Direction::Outgoing),
            sms_count: u64::from(record.kind == Kind::Sms),
            data_bytes: record.usage.up_bytes + record.usage.down_bytes,
            recharge_micros: record.usage.amount_micros,
        }
    }

    /// Sums stay exact: a record's measures are below 2^63 (the mediator
    /// refuses larger ones), and a window would need billions of
    /// near-limit records from one region in minutes to saturate.
    pub fn add(&mut self, other: &WindowMeasures) {
        self.total_events = self.total_events.saturating_add(other.total_events);
        self.incoming_calls = self.incoming_calls.saturating_add(other.incoming_calls);
        self.outgoing_calls = self.outgoing_calls.saturating_add(other.outgoing_calls);
        self.sms_count = self.sms_count.saturating_add(other.sms_count);
        self.data_bytes = self.data_bytes.saturating_add(other.data_bytes);
        self.recharge_micros = self.recharge_micros.saturating_add(other.recharge_micros);
    }
}

/// One window row of a delta.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowRow<'a> {
    pub start: EpochMillis,
    pub end: EpochMillis,
    pub region: &'a str,
    pub kind: Kind,
    pub measures: &'a WindowMeasures,
}

/// Window rows changed since the last checkpoint. Regions are interned so
/// the map key is small and adding a record allocates nothing.
#[derive(Clone, Debug, Default)]
pub struct WindowDelta {
    size_ms: i64,
    rows: FxHashMap<(EpochMillis, Kind, u32), WindowMeasures>,
    region_ids: FxHashMap<Box<str>, u32>,
    regions: Vec<Box<str>>,
}

impl WindowDelta {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn add(
        &mut self,
        size_ms: i64,
        start: EpochMillis,
        region: &str,
        kind: Kind,
        m: &WindowMeasures,
    ) {
        self.size_ms = size_ms;
        let id = match self.region_ids.get(region) {
            Some(&id) => id,
            None => {
                let id = self.regions.len() as u32;
                self.regions.push(region.into());
                self.region_ids.insert(region.into(), id);
                id
            }
        };
        self.rows.entry((start, kind, id)).or_default().add(m);
    }

    pub fn merge(&mut self, other: &WindowDelta) {
        for row in other.rows() {
            self.add(other.size_ms, row.start, row.region, row.kind, row.measures);
        }
    }

    /// The rows, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = WindowRow<'_>> {
        self.rows
            .iter()
            .map(|(&(start, kind, id), measures)| WindowRow {
                start,
                end: start + self.size_ms,
                region: &self.regions[id as usize],
                kind,
                measures,
            })
    }
}

/// Where the windows put an accepted record: handed on, one per record in
/// order, to the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub window_start: EpochMillis,
    /// It came after its window closed, and counts in none.
    pub late: bool,
}

/// A record that arrived after its window had closed in its partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LateEvent {
    /// The record's own id (`event_id`, `cdr_id`), if it has one.
    pub event_id: Option<String>,
    pub origin: String,
    pub position: SourcePosition,
    pub event_time: EpochMillis,
    pub window_start: EpochMillis,
    pub window_end: EpochMillis,
    pub region: String,
    pub kind: Kind,
    /// How far the record's event time is behind its partition's watermark.
    pub lateness_ms: i64,
}

/// What the operator keeps of a partition, committed with each checkpoint
/// that read from it: the store reads every partition's mark to tell which
/// windows are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionMark {
    pub watermark: EpochMillis,
    /// The wall clock when it last read a record.
    pub seen_at: EpochMillis,
    /// Its input ended (a file read to its end).
    pub finished: bool,
}

impl PartitionMark {
    /// Decimal text, readable in the store: `WATERMARK SEEN_AT open|finished`.
    pub fn encode(&self) -> Vec<u8> {
        let state = if self.finished { "finished" } else { "open" };
        format!("{} {} {state}", self.watermark, self.seen_at).into_bytes()
    }

    pub fn decode(value: &[u8]) -> Result<PartitionMark, ReadError> {
        let damaged = || {
            ReadError(format!(
                "the stored window partition mark {:?} is not `WATERMARK SEEN_AT open|finished`; the store is damaged",
                String::from_utf8_lossy(value)
            ))
        };
        let text = std::str::from_utf8(value).map_err(|_| damaged())?;
        let mut parts = text.split(' ');
        let mut number = || {
            parts
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(damaged)
        };
        let (watermark, seen_at) = (number()?, number()?);
        let finished = match parts.next() {
            Some("finished") => true,
            Some("open") => false,
            _ => return Err(damaged()),
        };
        Ok(PartitionMark {
            watermark,
            seen_at,
            finished,
        })
    }
}

/// Windows ending at or before this are final, given every partition's
/// mark: the lowest watermark of the partitions still reading (not
/// finished, and seen within `idle_after_ms` of the most recently seen
/// one); when none is, every window is final. `None` when nothing was
/// ever read.
pub fn closed_before(
    marks: impl IntoIterator<Item = PartitionMark>,
    idle_after_ms: i64,
) -> Option<EpochMillis> {
    let marks: Vec<PartitionMark> = marks.into_iter().collect();
    let latest_seen = marks.iter().map(|m| m.seen_at).max()?;
    let reading = marks
        .iter()
        .filter(|m| !m.finished && latest_seen - m.seen_at <= idle_after_ms);
    Some(
        reading
            .map(|m| m.watermark)
            .min()
            .unwrap_or(EpochMillis::MAX),
    )
}

/// The windows operator's state: one mark per partition, keyed by the
/// partition's source id.
pub const PARTITIONS: StateTable = StateTable {
    name: "partitions",
    kind: StateKind::Keyed,
};
const TABLES: [StateTable; 1] = [PARTITIONS];

/// The operator's name, and the key of its state in every store.
pub const WINDOWS: &str = "windows";

pub struct Windows {
    config: WindowConfig,
    /// Marks of the partitions this run has read from.
    partitions: FxHashMap<Box<str>, PartitionMark>,
    /// Partitions whose mark changed since the last checkpoint.
    changed: BTreeSet<Box<str>>,
    delta: WindowDelta,
    late: Vec<LateEvent>,
}

impl Windows {
    pub fn new(config: WindowConfig) -> Windows {
        Windows {
            config,
            partitions: FxHashMap::default(),
            changed: BTreeSet::new(),
            delta: WindowDelta::default(),
            late: Vec::new(),
        }
    }

    /// A partition's mark: restored at the start, or new.
    fn mark_of(&mut self, partition: &str) -> &mut PartitionMark {
        if !self.partitions.contains_key(partition) {
            let new = PartitionMark {
                watermark: EpochMillis::MIN,
                seen_at: EpochMillis::MIN,
                finished: false,
            };
            self.partitions.insert(partition.into(), new);
        }
        self.partitions.get_mut(partition).expect("inserted above")
    }
}

impl Operator for Windows {
    type Input<'a> = Rated<'a>;
    type Output<'a> = Placement;

    fn name(&self) -> &'static str {
        WINDOWS
    }

    fn tables(&self) -> &'static [StateTable] {
        &TABLES
    }

    /// Every partition's mark of this scope, read once: a store read while
    /// records flow would hold up the source (a Kafka consumer's poll loop).
    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        let mut damaged = None;
        state.values(
            &PARTITIONS,
            &mut |partition, value| match PartitionMark::decode(value) {
                Ok(mark) => {
                    self.partitions.insert(partition.into(), mark);
                }
                Err(e) => damaged = Some(e),
            },
        )?;
        damaged.map_or(Ok(()), Err)
    }

    fn process_batch<'a>(
        &mut self,
        batch: &[Rated<'a>],
        context: &mut BatchContext<'_>,
        placements: &mut Vec<Placement>,
    ) -> Result<(), ReadError> {
        let config = self.config;
        let mut last: Option<&str> = None;
        for record in batch {
            if last != Some(record.partition) {
                // Batches come from one partition almost always: one lookup each.
                self.mark_of(record.partition);
                if !self.changed.contains(record.partition) {
                    self.changed.insert(record.partition.into());
                }
                last = Some(record.partition);
            }
            let mark = self
                .partitions
                .get_mut(record.partition)
                .expect("read above");
            mark.seen_at = context.now;
            mark.finished = false;
            let start = config.window_of(record.start_time);
            let end = start + config.size_ms;
            let region = record.region.as_deref().unwrap_or(UNKNOWN_REGION);
            let late = end <= mark.watermark;
            placements.push(Placement {
                window_start: start,
                late,
            });
            if late {
                self.late.push(LateEvent {
                    event_id: record.record_id.as_deref().map(str::to_string),
                    origin: record.origin.to_string(),
                    position: record.position,
                    event_time: record.start_time,
                    window_start: start,
                    window_end: end,
                    region: region.to_string(),
                    kind: record.kind,
                    lateness_ms: mark.watermark - record.start_time,
                });
                continue;
            }
            mark.watermark = mark
                .watermark
                .max(record.start_time.saturating_sub(config.allowed_lateness_ms));
            self.delta.add(
                config.size_ms,
                start,
                region,
                record.kind,
                &WindowMeasures::of(record),
            );
        }
        Ok(())
    }

    /// The input ended: its partitions hold no window open any more.
    fn handle_end_of_input(&mut self) {
        for (partition, mark) in self.partitions.iter_mut() {
            if !mark.finished {
                mark.finished = true;
                self.changed.insert(partition.clone());
            }
        }
    }

    fn checkpoint(&mut self, out: &mut Checkpoint) {
        let delta = std::mem::take(&mut self.delta);
        if out.windows.is_empty() {
            out.windows = delta;
        } else {
            out.windows.merge(&delta);
        }
        out.counts.late_events += self.late.len() as u64;
        out.late_events.append(&mut self.late);
        let mut state = out.state_of(WINDOWS);
        for partition in std::mem::take(&mut self.changed) {
            let mark = self.partitions[&partition];
            state.put(&PARTITIONS, partition, mark.encode());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mediation::{MediationConfig, Mediator, RawRecord};
    use crate::normalize::parse_timestamp;
    use crate::operator::MemoryState;
    use crate::rating::{Tariff, TariffOverrides};

    fn at(text: &str) -> EpochMillis {
        parse_timestamp(text).unwrap()
    }

    fn event(id: &str, time: &str, region: &str, kind: &str, extra: &str) -> String {
        format!(
            r#"{{"event_id":"{id}","msisdn":"+77011234567","event_type":"{kind}","region":"{region}","timestamp":"{time}"{extra}}}"#
        )
    }

    /// Runs `lines` of `partition` (one batch each) through a mediator and
    /// the windows operator, as the runner does; returns the checkpoint.
    fn run(batches: &[(&str, Vec<String>)], end_of_input: bool) -> Checkpoint {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut windows = Windows::new(WindowConfig::default());
        let mut mediation_state = MemoryState::new("mediation");
        let mut window_state = MemoryState::new(WINDOWS);
        for (partition, lines) in batches {
            let records: Vec<RawRecord<'_>> = lines
                .iter()
                .enumerate()
                .map(|(i, line)| RawRecord {
                    origin: partition,
                    source_id: partition,
                    position: SourcePosition::Line {
                        line: i as u64 + 1,
                        byte_offset: 0,
                    },
                    payload: line.as_bytes(),
                    cut_from: None,
                })
                .collect();
            let now = at("2025-11-10T00:00:00Z");
            let mut accepted = Vec::new();
            mediator
                .process_batch(
                    &records,
                    &mut BatchContext {
                        now,
                        state: &mut mediation_state,
                    },
                    &mut accepted,
                )
                .unwrap();
            windows
                .process_batch(
                    &accepted,
                    &mut BatchContext {
                        now,
                        state: &mut window_state,
                    },
                    &mut Vec::new(),
                )
                .unwrap();
        }
        if end_of_input {
            windows.handle_end_of_input();
        }
        let mut checkpoint = Checkpoint::default();
        mediator.checkpoint(&mut checkpoint);
        windows.checkpoint(&mut checkpoint);
        checkpoint
    }

    fn rows(cp: &Checkpoint) -> Vec<(EpochMillis, String, &'static str, WindowMeasures)> {
        let mut rows: Vec<_> = cp
            .windows
            .rows()
            .map(|r| {
                (
                    r.start,
                    r.region.to_string(),
                    event_type(r.kind),
                    *r.measures,
                )
            })
            .collect();
        rows.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
        rows
    }

    #[test]
    fn records_fall_in_epoch_aligned_windows_with_seed_003_measures() {
        let cp = run(
            &[(
                "p",
                vec![
                    event(
                        "1",
                        "2025-11-09T10:00:00Z",
                        "Almaty",
                        "call",
                        r#","event_subtype":"incoming","duration_seconds":5"#,
                    ),
                    event(
                        "2",
                        "2025-11-09T10:04:59Z",
                        "Almaty",
                        "call",
                        r#","event_subtype":"outgoing","duration_seconds":5"#,
                    ),
                    event(
                        "3",
                        "2025-11-09T10:01:00Z",
                        "Almaty",
                        "data_session",
                        r#","data_mb":1.5"#,
                    ),
                    event(
                        "4",
                        "2025-11-09T10:02:00Z",
                        "Almaty",
                        "data_session",
                        r#","data_mb":0.25"#,
                    ),
                    event(
                        "5",
                        "2025-11-09T10:05:00Z",
                        "Almaty",
                        "balance_recharge",
                        r#","amount":5000.5"#,
                    ),
                    event(
                        "5",
                        "2025-11-09T10:05:00Z",
                        "Almaty",
                        "balance_recharge",
                        r#","amount":5000.5"#,
                    ),
                    event(
                        "6",
                        "2025-11-09T10:03:00Z",
                        "Astana",
                        "sms",
                        r#","event_subtype":"outgoing""#,
                    ),
                ],
            )],
            false,
        );
        let ten = at("2025-11-09T10:00:00Z");
        let five = at("2025-11-09T10:05:00Z");
        let call = WindowMeasures {
            total_events: 2,
            incoming_calls: 1,
            outgoing_calls: 1,
            ..WindowMeasures::default()
        };
        let data = WindowMeasures {
            total_events: 2,
            data_bytes: 1_750_000,
            ..WindowMeasures::default()
        };
        let recharge = WindowMeasures {
            total_events: 1,
            recharge_micros: 5_000_500_000,
            ..WindowMeasures::default()
        };
        let sms = WindowMeasures {
            total_events: 1,
            sms_count: 1,
            ..WindowMeasures::default()
        };
        assert_eq!(
            rows(&cp),
            vec![
                (ten, "Almaty".into(), "call", call),
                (ten, "Almaty".into(), "data_session", data),
                (ten, "Astana".into(), "sms", sms),
                (five, "Almaty".into(), "balance_recharge", recharge),
            ]
        );
        assert!(cp.late_events.is_empty());
        assert_eq!(
            cp.counts.duplicates_total(),
            1,
            "the repeated event is the mediator's"
        );
    }

    #[test]
    fn a_record_is_late_when_its_window_ends_at_or_before_the_watermark() {
        // Newest 10:06:00 → watermark 10:05:00 = the end of window 10:00.
        let cp = run(
            &[(
                "p",
                vec![
                    event("1", "2025-11-09T10:06:00Z", "Almaty", "sms", ""),
                    event("2", "2025-11-09T10:04:59Z", "Almaty", "sms", ""),
                    event("3", "2025-11-09T10:05:00Z", "Almaty", "sms", ""),
                ],
            )],
            false,
        );
        let late: Vec<_> = cp
            .late_events
            .iter()
            .map(|l| {
                (
                    l.event_id.as_deref(),
                    l.window_start,
                    l.window_end,
                    l.lateness_ms,
                )
            })
            .collect();
        assert_eq!(
            late,
            vec![(
                Some("2"),
                at("2025-11-09T10:00:00Z"),
                at("2025-11-09T10:05:00Z"),
                1_000
            )]
        );
        assert_eq!(cp.counts.late_events, 1);
        let windows = rows(&cp);
        assert_eq!(windows.len(), 1);
        assert_eq!(
            windows[0].3.total_events, 2,
            "10:06 and 10:05 in window 10:05"
        );
        assert_eq!(
            cp.counts.accepted_total(),
            3,
            "a late record still counts in usage"
        );
    }

    #[test]
    fn watermarks_are_per_partition_so_interleaving_does_not_matter() {
        let a = || {
            vec![
                event("a1", "2025-11-09T10:20:00Z", "Almaty", "sms", ""),
                event("a2", "2025-11-09T10:01:00Z", "Almaty", "sms", ""),
            ]
        };
        let b = || {
            vec![
                event("b1", "2025-11-09T10:02:00Z", "Almaty", "sms", ""),
                event("b2", "2025-11-09T10:03:00Z", "Almaty", "sms", ""),
            ]
        };
        let one = run(&[("a", a()), ("b", b())], false);
        let other = run(&[("b", b()), ("a", a())], false);
        assert_eq!(rows(&one), rows(&other));
        assert_eq!(
            one.late_events.len(),
            1,
            "only a2, behind its own partition"
        );
        assert_eq!(one.late_events[0].event_id.as_deref(), Some("a2"));
        assert_eq!(
            rows(&one)[0].3.total_events,
            2,
            "b's records are on time in b"
        );
    }

    #[test]
    fn marks_are_kept_per_partition_and_finish_with_the_input() {
        let cp = run(
            &[(
                "f",
                vec![event("1", "2025-11-09T10:06:00Z", "A", "sms", "")],
            )],
            true,
        );
        let marks: Vec<_> = cp
            .state
            .iter()
            .filter(|w| w.operator == WINDOWS)
            .map(|w| match &w.change {
                crate::operator::StateChange::Put { key, value } => {
                    (key.clone(), PartitionMark::decode(value).unwrap())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            marks,
            vec![(
                "f".to_string(),
                PartitionMark {
                    watermark: at("2025-11-09T10:05:00Z"),
                    seen_at: at("2025-11-10T00:00:00Z"),
                    finished: true,
                }
            )]
        );
    }

    #[test]
    fn windows_close_behind_the_slowest_partition_still_reading() {
        let mark = |watermark, seen_at, finished| PartitionMark {
            watermark,
            seen_at,
            finished,
        };
        let idle = 60_000;
        assert_eq!(closed_before([], idle), None);
        assert_eq!(
            closed_before([mark(500, 1_000, false), mark(300, 1_000, false)], idle),
            Some(300)
        );
        assert_eq!(
            closed_before([mark(500, 1_000, false), mark(300, 1_000, true)], idle),
            Some(500),
            "a finished input holds nothing open"
        );
        assert_eq!(
            closed_before([mark(500, 100_000, false), mark(300, 1_000, false)], idle),
            Some(500),
            "idle for more than a minute behind the latest"
        );
        assert_eq!(
            closed_before([mark(500, 1_000, true)], idle),
            Some(EpochMillis::MAX),
            "every input ended: every window is final"
        );
    }

    #[test]
    fn a_damaged_mark_is_reported() {
        let mark = PartitionMark {
            watermark: -5,
            seen_at: 7,
            finished: false,
        };
        assert_eq!(PartitionMark::decode(&mark.encode()), Ok(mark));
        let error = PartitionMark::decode(b"12 x open").unwrap_err();
        assert!(error.0.contains("damaged"), "{error}");
    }
}
