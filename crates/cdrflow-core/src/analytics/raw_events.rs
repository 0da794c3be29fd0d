//! Seed 003's `raw_events`: every accepted, non-duplicate record as one
//! row, late ones included, committed with the checkpoint that read it.
//!
//! The daily batch (`daily`) computes its statistics from these rows and
//! reconciles them with the windows, so they are written by the same
//! transaction as the windows and offsets: a replay adds no row twice. The
//! rows are kept for a retention (seven days by default) that the daily
//! batch's cleanup applies, and can be switched off for feeds that need
//! only the windows and summaries.

use crate::mediation::Rated;
use crate::model::Kind;
use crate::normalize::EpochMillis;
use crate::normalize::Msisdn;
use crate::operator::{Checkpoint, RowOf, Rows};

use super::windows::UNKNOWN_REGION;

pub const RAW_EVENTS: &str = "raw_events";
pub const DEFAULT_RETENTION_DAYS: u32 = 7;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RawEventsConfig {
    /// Off: no rows are written (windows, rules and summaries still run).
    pub keep: bool,
    /// Rows whose event day is this many days before the batch date go.
    pub retention_days: u32,
}

impl Default for RawEventsConfig {
    fn default() -> Self {
        RawEventsConfig {
            keep: true,
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }
}

/// One row of `raw_events`, in seed 003's columns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawEvent {
    pub event_id: Option<Box<str>>,
    pub msisdn: Msisdn,
    pub kind: Kind,
    /// `event_subtype` (`incoming`, `outgoing`), or the record's service type.
    pub subtype: Box<str>,
    pub duration_sec: u64,
    /// Uplink plus downlink; `data_mb` is this over 10^6.
    pub data_bytes: u64,
    pub amount_micros: i64,
    pub region: Box<str>,
    pub cell_id: Option<Box<str>>,
    pub event_time: EpochMillis,
}

impl RowOf for RawEvent {
    const OPERATOR: &'static str = RAW_EVENTS;

    fn of(record: &Rated<'_>) -> RawEvent {
        RawEvent {
            event_id: record.record_id.as_deref().map(Box::from),
            msisdn: record.msisdn,
            kind: record.kind,
            subtype: Box::from(&*record.service_type),
            duration_sec: record.usage.duration_sec,
            data_bytes: record.usage.up_bytes + record.usage.down_bytes,
            amount_micros: record.usage.amount_micros,
            region: Box::from(record.region.as_deref().unwrap_or(UNKNOWN_REGION)),
            cell_id: record.cell_id.as_deref().map(Box::from),
            event_time: record.start_time,
        }
    }

    fn rows_in(checkpoint: &mut Checkpoint) -> &mut Vec<RawEvent> {
        &mut checkpoint.raw_events
    }
}

/// Keeps the rows of the accepted records until the next checkpoint
/// (`RawEventsConfig::keep`).
pub type RawEvents = Rows<RawEvent>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mediation::{MediationConfig, Mediator, RawRecord};
    use crate::model::SourcePosition;
    use crate::operator::{BatchContext, MemoryState, Operator};
    use crate::rating::{Tariff, TariffOverrides};

    fn line(id: u32, region: &str, cell: &str) -> String {
        format!(
            r#"{{"event_id":"e{id}","msisdn":"77012345678","event_type":"call","event_subtype":"outgoing","duration_seconds":{id},"region":"{region}","cell_tower_id":"{cell}","timestamp":"2025-11-09T10:00:{s:02}Z"}}"#,
            s = id % 60
        )
    }

    fn rows_of(config: RawEventsConfig, lines: &[String]) -> Vec<RawEvent> {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut operator = RawEvents::new(config.keep);
        let records: Vec<RawRecord> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| RawRecord {
                origin: "test",
                source_id: "test",
                position: SourcePosition::Line {
                    line: i as u64 + 1,
                    byte_offset: 0,
                },
                payload: l.as_bytes(),
                cut_from: None,
            })
            .collect();
        let now = 1_900_000_000_000;
        let mut accepted = Vec::new();
        let mut state = MemoryState::new(mediator.name());
        mediator
            .process_batch(
                &records,
                &mut BatchContext {
                    now,
                    state: &mut state,
                },
                &mut accepted,
            )
            .unwrap();
        let mut state = MemoryState::new(RAW_EVENTS);
        operator
            .process_batch(
                &accepted,
                &mut BatchContext {
                    now,
                    state: &mut state,
                },
                &mut Vec::new(),
            )
            .unwrap();
        let mut checkpoint = Checkpoint::default();
        operator.checkpoint(&mut checkpoint);
        checkpoint.raw_events
    }

    #[test]
    fn a_row_per_accepted_record_in_seed_003s_columns_duplicates_left_out() {
        let lines = [
            line(7, "Almaty", "1523"),
            line(7, "Almaty", "1523"),
            line(9, "Astana", "88"),
        ];
        let rows = rows_of(RawEventsConfig::default(), &lines);
        assert_eq!(rows.len(), 2, "the repeated event_id is a duplicate");
        assert_eq!(rows[0].event_id.as_deref(), Some("e7"));
        assert_eq!(rows[0].msisdn.to_string(), "+77012345678");
        assert_eq!(rows[0].kind, Kind::Voice);
        assert_eq!(&*rows[0].subtype, "outgoing");
        assert_eq!(rows[0].duration_sec, 7);
        assert_eq!(&*rows[1].region, "Astana");
        assert_eq!(rows[1].cell_id.as_deref(), Some("88"));
        // 2025-11-09T10:00:09Z
        assert_eq!(rows[1].event_time, 1_762_682_409_000);
    }

    #[test]
    fn switched_off_it_keeps_nothing() {
        let config = RawEventsConfig {
            keep: false,
            ..RawEventsConfig::default()
        };
        assert!(rows_of(config, &[line(1, "Almaty", "1")]).is_empty());
    }
}
