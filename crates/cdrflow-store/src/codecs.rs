//! What both stores do the same way: counters as named rows, days within
//! the range SQL dates hold, and the migrations written once for both
//! dialects.
//! Shared here so that the two backends cannot drift apart.

use cdrflow_core::mediation::{Counts, DuplicateReason};
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::Day;
use cdrflow_core::reject::RejectReason;

/// What differs between the stores' SQL in the migrations written once here.
pub(crate) struct Dialect {
    /// An auto-numbered primary key column's type.
    pub serial_key: &'static str,
    pub bytes: &'static str,
    /// An integer expression `{}` as the bytes of its decimal text.
    pub integer_as_text_bytes: &'static str,
}

/// Migration v3: every operator's state in one table, `operator_state`,
/// keyed by operator, scope and table name: keyed values (a unique key) or
/// values covering a span of event minutes (no key). The mediator's
/// watermark (as decimal text) and dedup identities move there from
/// `pipeline_state` and `dedup_state`.
pub(crate) fn operator_state_v3(dialect: &Dialect) -> String {
    let watermark = dialect.integer_as_text_bytes.replace("{}", "watermark_ms");
    format!(
        "CREATE TABLE operator_state (
            id {serial_key},
            operator TEXT NOT NULL,
            scope TEXT NOT NULL,
            state_table TEXT NOT NULL,
            state_key TEXT,
            first_minute INTEGER,
            last_minute INTEGER,
            value {bytes} NOT NULL
        );
        CREATE UNIQUE INDEX operator_state_by_key ON operator_state (operator, scope, state_table, state_key)
            WHERE state_key IS NOT NULL;
        CREATE INDEX operator_state_by_span ON operator_state (operator, scope, state_table, last_minute)
            WHERE state_key IS NULL;
        INSERT INTO operator_state (operator, scope, state_table, first_minute, last_minute, value)
            SELECT 'mediation', scope, 'dedup_identities', min_minute, max_minute, entries FROM dedup_state ORDER BY id;
        INSERT INTO operator_state (operator, scope, state_table, state_key, value)
            SELECT 'mediation', scope, 'watermark', '', {watermark} FROM pipeline_state;
        DROP TABLE dedup_state;
        DROP TABLE pipeline_state;",
        serial_key = dialect.serial_key,
        bytes = dialect.bytes,
    )
}

/// A day range the stores' date types can hold: open ranges arrive as the
/// extremes of `i32`, which PostgreSQL's DATE arithmetic refuses.
pub(crate) fn clamp_day(day: Day) -> Day {
    // 0001-01-01 .. 9999-12-31
    Day(day.0.clamp(-719_162, 2_932_896))
}

/// The counters a checkpoint adds, by stored name.
pub(crate) fn counter_entries(counts: &Counts) -> Vec<(String, u64)> {
    let mut out = vec![
        ("records_in".to_string(), counts.records_in),
        ("late_events".to_string(), counts.late_events),
        ("pseudonymous".to_string(), counts.pseudonymous),
    ];
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
        None if name == "late_events" => counts.late_events = value,
        None if name == "pseudonymous" => counts.pseudonymous = value,
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

#[cfg(test)]
pub(crate) mod tests {
    use cdrflow_core::aggregate::{RowKey, Totals};
    use cdrflow_core::dedup::{DedupEntry, RecordKey};
    use cdrflow_core::mediation::{MediationConfig, Mediator, DEDUP_IDENTITIES, WATERMARK};
    use cdrflow_core::operator::{Operator, ReadError, StateReader, StateTable};
    use cdrflow_core::rating::{Tariff, TariffOverrides};

    use crate::prelude::*;
    use crate::StateAt;

    /// What schema v2 kept of the mediator: dedup blobs per scope (one from
    /// before v2, without a first minute) and watermarks.
    pub(crate) struct Version2State {
        pub dedup: Vec<(&'static str, Option<i32>, i32, Vec<u8>)>,
        pub watermarks: Vec<(&'static str, i64)>,
    }

    fn blob(minutes: &[i32]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, &minute) in minutes.iter().enumerate() {
            DedupEntry {
                key: RecordKey(0xfeed_0000 + i as u128 + minute as u128),
                event_minute: minute,
            }
            .encode_into(&mut out);
        }
        out
    }

    impl Version2State {
        pub fn example() -> Version2State {
            let watermark = 28_500_000 * 60_000_i64;
            Version2State {
                dedup: vec![
                    ("files", None, 28_499_000, blob(&[28_497_000, 28_499_000])),
                    (
                        "files",
                        Some(28_499_990),
                        28_500_000,
                        blob(&[28_499_990, 28_500_000]),
                    ),
                    (
                        "kafka:cdr_data:3",
                        Some(28_400_000),
                        28_400_010,
                        blob(&[28_400_000, 28_400_010]),
                    ),
                ],
                watermarks: vec![("files", watermark), ("kafka:cdr_data:3", watermark - 1)],
            }
        }

        /// The migrated store answers as v2 did, and a mediator resumes from it.
        pub fn check(&self, store: &mut dyn Store) {
            for (scope, watermark) in &self.watermarks {
                let at = StateAt {
                    operator: "mediation",
                    scope,
                    table: WATERMARK.name,
                };
                assert_eq!(
                    store.state_value(at, "").unwrap(),
                    Some(watermark.to_string().into_bytes()),
                    "{scope}"
                );
                let mut spans = Vec::new();
                let at = StateAt {
                    table: DEDUP_IDENTITIES.name,
                    ..at
                };
                store
                    .state_spans(at, i32::MIN, i32::MAX, &mut |v| spans.push(v.to_vec()))
                    .unwrap();
                let expected: Vec<Vec<u8>> = self
                    .dedup
                    .iter()
                    .filter(|d| d.0 == *scope)
                    .map(|d| d.3.clone())
                    .collect();
                assert_eq!(spans, expected, "{scope}");
            }
            let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
            let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
            mediator
                .on_start(&mut Scoped {
                    store,
                    scope: "files",
                })
                .unwrap();
            assert_eq!(mediator.watermark(), Some(self.watermarks[0].1));
        }
    }

    /// A store seen as one scope's mediation state.
    struct Scoped<'s> {
        store: &'s mut dyn Store,
        scope: &'s str,
    }

    impl StateReader for Scoped<'_> {
        fn value(&mut self, table: &StateTable, key: &str) -> Result<Option<Vec<u8>>, ReadError> {
            let at = StateAt {
                operator: "mediation",
                scope: self.scope,
                table: table.name,
            };
            self.store
                .state_value(at, key)
                .map_err(|e| ReadError(e.to_string()))
        }

        fn spans(
            &mut self,
            table: &StateTable,
            first: i32,
            last: i32,
            visit: &mut dyn FnMut(&[u8]),
        ) -> Result<(), ReadError> {
            let at = StateAt {
                operator: "mediation",
                scope: self.scope,
                table: table.name,
            };
            self.store
                .state_spans(at, first, last, visit)
                .map_err(|e| ReadError(e.to_string()))
        }

        fn summary_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>, ReadError> {
            self.store
                .stored_totals(rows)
                .map_err(|e| ReadError(e.to_string()))
        }
    }
}
