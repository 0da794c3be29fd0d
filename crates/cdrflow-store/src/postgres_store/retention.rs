//! PostgreSQL: data retention (layers' SQL shared in `codecs::retention_rows`).

use cdrflow_core::retention::Cuts;

use super::*;
use crate::codecs::retention_rows::{self as sql, By, Layer};
use crate::{Retention, RetentionCounts};

impl Retention for PgStore {
    fn retain(
        &mut self,
        cuts: &Cuts,
        lake_partitions: &[(String, String)],
        apply: bool,
    ) -> Result<RetentionCounts> {
        let mut tx = self.live_client()?.transaction()?;
        let period = cuts.invoice_periods_before.to_string();
        let run = |tx: &mut postgres::Transaction<'_>, layer: &Layer| -> Result<u64> {
            let values: Vec<&(dyn postgres::types::ToSql + Sync)> = match layer.by {
                By::EventTime => vec![&cuts.rated_before],
                By::Period => vec![&period],
                By::Both => vec![&cuts.rated_before, &period],
            };
            Ok(match apply {
                true => tx.execute(&layer.delete(), &values)?,
                false => tx.query_one(&layer.count(), &values)?.get::<_, i64>(0) as u64,
            })
        };
        let raw_before = cuts
            .raw_before
            .clamp(analytics::YEAR_1, analytics::YEAR_10000);
        let raw = format!(
            "raw_events WHERE timestamp < {}",
            analytics::at("$1::bigint")
        );
        let mut counts = RetentionCounts {
            unbilled_rated: tx
                .query_one(sql::UNBILLED, &[&cuts.rated_before])?
                .get::<_, i64>(0) as u64,
            raw_events: match apply {
                true => tx.execute(&format!("DELETE FROM {raw}"), &[&raw_before])?,
                false => tx
                    .query_one(&format!("SELECT count(*) FROM {raw}"), &[&raw_before])?
                    .get::<_, i64>(0) as u64,
            },
            ..RetentionCounts::default()
        };
        counts.invoice_items = run(&mut tx, &sql::ITEMS)?;
        counts.rated_records = run(&mut tx, &sql::RATED)?;
        run(&mut tx, &sql::CELL_USAGE)?;
        counts.notes = run(&mut tx, &sql::NOTES)?;
        counts.invoices = run(&mut tx, &sql::INVOICES)?;
        for (dataset, partition) in lake_partitions {
            counts.lake_files += match apply {
                true => tx.execute(sql::LAKE_FILES, &[dataset, partition])?,
                false => tx
                    .query_one(sql::COUNT_LAKE_FILES, &[dataset, partition])?
                    .get::<_, i64>(0) as u64,
            };
        }
        tx.commit()?;
        Ok(counts)
    }
}
