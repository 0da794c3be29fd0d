//! SQLite: data retention (layers' SQL shared in `codecs::retention_rows`).

use cdrflow_core::retention::Cuts;

use super::*;
use crate::codecs::retention_rows::{self as sql, By, Layer};
use crate::{Retention, RetentionCounts};

impl Retention for SqliteStore {
    fn retain(
        &mut self,
        cuts: &Cuts,
        lake_partitions: &[(String, String)],
        apply: bool,
    ) -> Result<RetentionCounts> {
        let tx = self.conn.transaction()?;
        let period = cuts.invoice_periods_before.to_string();
        let run = |layer: &Layer| -> Result<u64> {
            let text = match apply {
                true => layer.delete(),
                false => layer.count(),
            }
            .replace('$', "?");
            let mut statement = tx.prepare(&text)?;
            let changed = match (layer.by, apply) {
                (By::EventTime, true) => statement.execute(params![cuts.rated_before])?,
                (By::Period, true) => statement.execute(params![period])?,
                (By::Both, true) => statement.execute(params![cuts.rated_before, period])?,
                (By::EventTime, false) => statement
                    .query_row(params![cuts.rated_before], |r| r.get::<_, i64>(0))?
                    as usize,
                (By::Period, false) => {
                    statement.query_row(params![period], |r| r.get::<_, i64>(0))? as usize
                }
                (By::Both, false) => statement
                    .query_row(params![cuts.rated_before, period], |r| r.get::<_, i64>(0))?
                    as usize,
            };
            Ok(changed as u64)
        };
        let mut counts = RetentionCounts {
            unbilled_rated: tx.query_row(
                &sql::UNBILLED.replace('$', "?"),
                [cuts.rated_before],
                |r| r.get::<_, i64>(0),
            )? as u64,
            ..RetentionCounts::default()
        };
        counts.raw_events = match apply {
            true => tx.execute(
                "DELETE FROM raw_event_rows WHERE event_time_ms < ?",
                [cuts.raw_before],
            )? as u64,
            false => tx.query_row(
                "SELECT count(*) FROM raw_event_rows WHERE event_time_ms < ?",
                [cuts.raw_before],
                |r| r.get::<_, i64>(0),
            )? as u64,
        };
        counts.invoice_items = run(&sql::ITEMS)?;
        counts.rated_records = run(&sql::RATED)?;
        run(&sql::CELL_USAGE)?;
        counts.notes = run(&sql::NOTES)?;
        counts.invoices = run(&sql::INVOICES)?;
        for (dataset, partition) in lake_partitions {
            counts.lake_files += match apply {
                true => tx.execute(
                    &sql::LAKE_FILES.replace('$', "?"),
                    params![dataset, partition],
                )? as u64,
                false => tx.query_row(
                    &sql::COUNT_LAKE_FILES.replace('$', "?"),
                    params![dataset, partition],
                    |r| r.get::<_, i64>(0),
                )? as u64,
            };
        }
        tx.commit()?;
        Ok(counts)
    }
}
