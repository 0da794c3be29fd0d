//! The summary tables, described once and shared by every store.
//!
//! Seed 000's names are a compatibility contract: `daily_data_summary`
//! (msisdn, event_date, data_type → total_up_bytes, total_down_bytes,
//! total_cost_wak) and `daily_voice_summary` (msisdn, event_date, call_type →
//! total_duration_sec, total_cost_wak). The other kinds follow the same shape.

use cdrflow_core::aggregate::Totals;
use cdrflow_core::model::Kind;

/// A measure column of a summary table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    Records,
    UpBytes,
    DownBytes,
    DurationSec,
    /// Money in the tariff currency (seed 000: WAK).
    Cost,
    /// Money paid in (recharges).
    Amount,
}

impl Measure {
    pub fn column(self) -> &'static str {
        match self {
            Measure::Records => "record_count",
            Measure::UpBytes => "total_up_bytes",
            Measure::DownBytes => "total_down_bytes",
            Measure::DurationSec => "total_duration_sec",
            Measure::Cost => "total_cost_wak",
            Measure::Amount => "total_amount",
        }
    }

    pub fn is_money(self) -> bool {
        matches!(self, Measure::Cost | Measure::Amount)
    }

    /// The measure's value in a row: counts, or micro-units for money.
    pub fn value(self, totals: &Totals) -> i128 {
        match self {
            Measure::Records => i128::from(totals.records),
            Measure::UpBytes => i128::from(totals.up_bytes),
            Measure::DownBytes => i128::from(totals.down_bytes),
            Measure::DurationSec => i128::from(totals.duration_sec),
            Measure::Cost => i128::from(totals.cost_micros),
            Measure::Amount => i128::from(totals.amount_micros),
        }
    }

    pub fn set(self, totals: &mut Totals, value: i64) {
        match self {
            Measure::Records => totals.records = value as u64,
            Measure::UpBytes => totals.up_bytes = value as u64,
            Measure::DownBytes => totals.down_bytes = value as u64,
            Measure::DurationSec => totals.duration_sec = value as u64,
            Measure::Cost => totals.cost_micros = value,
            Measure::Amount => totals.amount_micros = value,
        }
    }
}

/// One summary table: its name, its type column and its measures.
#[derive(Clone, Copy, Debug)]
pub struct SummaryTable {
    pub kind: Kind,
    pub name: &'static str,
    pub type_column: &'static str,
    pub measures: &'static [Measure],
}

/// One table per kind, in `Kind` order, so `SUMMARY_TABLES[kind as usize]` is the kind's table.
pub const SUMMARY_TABLES: [SummaryTable; 5] = [
    SummaryTable {
        kind: Kind::Data,
        name: "daily_data_summary",
        type_column: "data_type",
        measures: &[
            Measure::Records,
            Measure::UpBytes,
            Measure::DownBytes,
            Measure::Cost,
        ],
    },
    SummaryTable {
        kind: Kind::Voice,
        name: "daily_voice_summary",
        type_column: "call_type",
        measures: &[Measure::Records, Measure::DurationSec, Measure::Cost],
    },
    SummaryTable {
        kind: Kind::Sms,
        name: "daily_sms_summary",
        type_column: "sms_type",
        measures: &[Measure::Records, Measure::Cost],
    },
    SummaryTable {
        kind: Kind::Recharge,
        name: "daily_recharge_summary",
        type_column: "recharge_type",
        measures: &[Measure::Records, Measure::Amount],
    },
    SummaryTable {
        kind: Kind::Activation,
        name: "daily_activation_summary",
        type_column: "service_type",
        measures: &[Measure::Records, Measure::Cost],
    },
];

pub fn table_for(kind: Kind) -> &'static SummaryTable {
    SUMMARY_TABLES
        .iter()
        .find(|t| t.kind == kind)
        .expect("every kind has a table")
}
