//! The mediated records themselves: one row per accepted record, in the one
//! schema every source is normalised to — what the Parquet lake keeps under
//! `mediated/` (issue 12) for data teams to query beside the summaries.
//!
//! Rows are collected only when something keeps them (the lake): the
//! summaries, windows and rules do not need them, and a row per record is
//! the largest thing a checkpoint would carry.

use crate::mediation::Rated;
use crate::model::{Direction, Kind};
use crate::normalize::{Day, EpochMillis, Msisdn};
use crate::operator::{Checkpoint, RowOf, Rows};

pub const MEDIATED: &str = "mediated";

/// One accepted record after validation, normalisation and deduplication.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MediatedRecord {
    /// The source's id, or `partition:position` for a record without one.
    pub record_id: Box<str>,
    pub msisdn: Msisdn,
    pub kind: Kind,
    pub direction: Direction,
    pub service_type: Box<str>,
    pub event_time: EpochMillis,
    /// The summary date (in the configured zone): the lake's `date=` partition.
    pub day: Day,
    pub duration_sec: u64,
    pub up_bytes: u64,
    pub down_bytes: u64,
    /// Money paid in by a recharge, in micro-units.
    pub amount_micros: i64,
    /// The rated cost before allowances, in micro-units.
    pub cost_micros: i64,
    pub other_party: Option<Msisdn>,
    pub region: Option<Box<str>>,
    pub cell_id: Option<Box<str>>,
    /// `2G`, `3G`, `4G` or `5G`.
    pub technology: Option<&'static str>,
}

impl RowOf for MediatedRecord {
    const OPERATOR: &'static str = MEDIATED;

    fn of(record: &Rated<'_>) -> MediatedRecord {
        MediatedRecord {
            record_id: record.source_identity().into_boxed_str(),
            msisdn: record.msisdn,
            kind: record.kind,
            direction: record.direction,
            service_type: Box::from(&*record.service_type),
            event_time: record.start_time,
            day: record.day,
            duration_sec: record.usage.duration_sec,
            up_bytes: record.usage.up_bytes,
            down_bytes: record.usage.down_bytes,
            amount_micros: record.usage.amount_micros,
            cost_micros: record.usage.cost_micros,
            other_party: record.other_party,
            region: record.region.as_deref().map(Box::from),
            cell_id: record.cell_id.as_deref().map(Box::from),
            technology: record.technology,
        }
    }

    fn rows_in(checkpoint: &mut Checkpoint) -> &mut Vec<MediatedRecord> {
        &mut checkpoint.mediated
    }
}

/// Keeps the accepted records' rows until the next checkpoint, when on.
pub type Mediated = Rows<MediatedRecord>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mediation::{MediationConfig, Mediator, RawRecord};
    use crate::model::SourcePosition;
    use crate::operator::{BatchContext, MemoryState, Operator};
    use crate::rating::{Tariff, TariffOverrides};

    fn rows(keep: bool, lines: &[&str]) -> Vec<MediatedRecord> {
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let mut operator = Mediated::new(keep);
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
        let mut state = MemoryState::new(mediator.name());
        let mut context = BatchContext {
            now,
            state: &mut state,
        };
        let mut accepted = Vec::new();
        mediator
            .process_batch(&records, &mut context, &mut accepted)
            .unwrap();
        let mut state = MemoryState::new(MEDIATED);
        let mut context = BatchContext {
            now,
            state: &mut state,
        };
        operator
            .process_batch(&accepted, &mut context, &mut Vec::new())
            .unwrap();
        let mut checkpoint = Checkpoint::default();
        operator.checkpoint(&mut checkpoint);
        checkpoint.mediated
    }

    // Seed 003's event with seed 001's called number and raw technology code.
    const CALL: &str = r#"{"event_id":"c1","msisdn":"27821234567","event_type":"call","event_subtype":"outgoing","duration_seconds":61,"other_party":"0829876543","radio_technology":"LTE","region":"Gauteng","timestamp":"2024-03-01T23:59:59Z"}"#;

    #[test]
    fn an_accepted_record_becomes_one_normalised_row() {
        let rows = rows(true, &[CALL, CALL]);
        assert_eq!(rows.len(), 1, "the duplicate is not a mediated record");
        let row = &rows[0];
        assert_eq!(&*row.record_id, "c1");
        assert_eq!(row.msisdn.to_string(), "+27821234567");
        assert_eq!(
            row.other_party.map(|p| p.to_string()).as_deref(),
            Some("+27829876543")
        );
        assert_eq!(
            (row.kind, row.direction),
            (Kind::Voice, Direction::Outgoing)
        );
        assert_eq!(row.duration_sec, 61);
        assert_eq!(row.technology, Some("4G"), "LTE is the 4th generation");
        assert_eq!(row.day.to_string(), "2024-03-01");
        assert_eq!(row.region.as_deref(), Some("Gauteng"));
        // The flat tariff: 1 ZAR/min by the second; 61/60 ZAR = 1.0166666…,
        // rounded half away from zero to micro-units.
        assert_eq!(row.cost_micros, 1_016_667);
    }

    #[test]
    fn nothing_is_kept_when_no_one_keeps_the_rows() {
        assert!(rows(false, &[CALL]).is_empty());
    }
}
