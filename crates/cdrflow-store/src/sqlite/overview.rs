//! SQLite: Lifetime counters, a day's totals, top subscribers, spend reports.

use super::*;
use crate::codecs::spend_reports as reports;
use cdrflow_core::analytics::rankings::{Ranking, SpendReport};

impl Overview for SqliteStore {
    fn counts(&mut self) -> Result<Counts> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM pipeline_counters")?;
        let mut rows = stmt.query([])?;
        let mut counts = Counts::default();
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let value: i64 = r.get(1)?;
            apply_counter(&mut counts, &name, value as u64);
        }
        Ok(counts)
    }

    fn overview(&mut self, day: Day) -> Result<Vec<OverviewRow>> {
        let mut out = Vec::new();
        for table in &SUMMARY_TABLES {
            let sums: Vec<String> = table
                .measures
                .iter()
                .map(|&m| format!("sum({})", stored_column(m)))
                .collect();
            let sql = format!(
                "SELECT {ty}, count(DISTINCT msisdn_digits), {sums} FROM {name} WHERE event_day = ? GROUP BY {ty} ORDER BY {ty}",
                ty = table.type_column,
                sums = sums.join(", "),
                name = storage_table(table),
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([day.0])?;
            while let Some(row) = rows.next()? {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, row.get(2 + i)?);
                }
                out.push(OverviewRow {
                    kind: table.kind,
                    service_type: row.get(0)?,
                    subscribers: row.get::<_, i64>(1)? as u64,
                    totals,
                });
            }
        }
        Ok(out)
    }

    fn top_subscribers(&mut self, limit: u32) -> Result<Vec<TopSubscriber>> {
        let parts: Vec<String> = SUMMARY_TABLES
            .iter()
            .filter(|t| t.measures.contains(&Measure::Cost))
            .map(|t| {
                format!(
                    "SELECT msisdn_digits, total_cost_wak_micros AS cost FROM {}",
                    storage_table(t)
                )
            })
            .collect();
        let sql = format!(
            "SELECT msisdn_digits, sum(cost) AS total FROM ({}) GROUP BY msisdn_digits ORDER BY total DESC, msisdn_digits LIMIT ?",
            parts.join(" UNION ALL ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([limit], |r| {
            let digits: i64 = r.get(0)?;
            Ok(TopSubscriber {
                msisdn: Msisdn::from_digits(digits as u64).to_string(),
                cost_micros: i128::from(r.get::<_, i64>(1)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn take_spend_report(&mut self, top: u32, flushed_at: i64) -> Result<SpendReport> {
        // One read transaction: the rankings and the statuses of one state.
        let tx = self.conn.transaction()?;
        let period: Option<String> = tx.query_row(reports::LATEST_PERIOD, [], |r| r.get(0))?;
        let rank = |ranking| -> Result<_> {
            let Some(period) = &period else {
                return Ok(Vec::new());
            };
            let mut stmt = tx.prepare(&reports::top_sql(ranking, |i| format!("?{i}")))?;
            let rows = stmt.query_map(rusqlite::params![period, top], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            Ok(reports::ranked(rows.collect::<rusqlite::Result<_>>()?))
        };
        let subscribers = rank(Ranking::Subscribers)?;
        let plans = rank(Ranking::Plans)?;
        let counts = {
            let mut stmt = tx.prepare(&reports::statuses_sql())?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        Ok(SpendReport {
            flushed_at,
            period: reports::period(period)?,
            subscribers,
            plans,
            statuses: reports::statuses(counts)?,
        })
    }

    fn put_spend_report(&mut self, report: &SpendReport) -> Result<()> {
        // Writing from the start, so a report from another process waits
        // for this one rather than failing halfway.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute(reports::CLEAR, [])?;
        {
            let mut insert = tx.prepare(&reports::insert_row_sql(|i| format!("?{i}")))?;
            for (ranking, row) in report.rows() {
                insert.execute(rusqlite::params![
                    ranking.as_str(),
                    row.rank,
                    row.id,
                    row.spend_micros,
                    row.records as i64,
                    row.subscribers as i64
                ])?;
            }
        }
        tx.execute(
            &reports::put_state_sql(|i| format!("?{i}")),
            rusqlite::params![report.flushed_at, report.period.map(|p| p.to_string())],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn spend_report(&mut self) -> Result<Option<SpendReport>> {
        let tx = self.conn.transaction()?;
        let state: Option<(i64, Option<String>)> = tx
            .query_row(reports::SELECT_STATE, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((flushed_at, period)) = state else {
            return Ok(None);
        };
        let rows = {
            let mut stmt = tx.prepare(reports::SELECT_ROWS)?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        Ok(Some(reports::report(flushed_at, period, rows)?))
    }
}
