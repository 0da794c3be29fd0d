//! PostgreSQL: Lifetime counters, a day's totals, top subscribers, spend reports.

use super::*;
use crate::codecs::spend_reports as reports;
use cdrflow_core::analytics::rankings::{Ranking, SpendReport};

/// Serialises writers of the spend report.
const SPEND_REPORT_LOCK: i64 = 0x6364_7266_7370_6e64; // "cdrfspnd"

impl Overview for PgStore {
    fn counts(&mut self) -> Result<Counts> {
        let mut counts = Counts::default();
        for r in self
            .live_client()?
            .query("SELECT name, value FROM pipeline_counters", &[])?
        {
            apply_counter(&mut counts, r.get(0), r.get::<_, i64>(1) as u64);
        }
        Ok(counts)
    }

    fn overview(&mut self, day: Day) -> Result<Vec<OverviewRow>> {
        let mut out = Vec::new();
        for table in &SUMMARY_TABLES {
            let sums: Vec<String> = table
                .measures
                .iter()
                .map(|&m| {
                    if m.is_money() {
                        format!("(sum({}) * 1000000)::bigint", m.column())
                    } else {
                        format!("sum({})::bigint", m.column())
                    }
                })
                .collect();
            let sql = format!(
                "SELECT {ty}, count(DISTINCT msisdn), {sums} FROM {name}
                 WHERE event_date = DATE '1970-01-01' + $1::int GROUP BY {ty} ORDER BY {ty}",
                ty = table.type_column,
                sums = sums.join(", "),
                name = table.name,
            );
            for row in self.live_client()?.query(&sql, &[&day.0])? {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, row.get::<_, i64>(2 + i));
                }
                out.push(OverviewRow {
                    kind: table.kind,
                    service_type: row.get(0),
                    subscribers: row.get::<_, i64>(1) as u64,
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
            .map(|t| format!("SELECT msisdn, total_cost_wak FROM {}", t.name))
            .collect();
        let sql = format!(
            "SELECT msisdn, (sum(total_cost_wak) * 1000000)::bigint AS total FROM ({}) AS costs
             GROUP BY msisdn ORDER BY total DESC, msisdn LIMIT $1",
            parts.join(" UNION ALL ")
        );
        let rows = self.live_client()?.query(&sql, &[&i64::from(limit)])?;
        Ok(rows
            .iter()
            .map(|r| TopSubscriber {
                msisdn: r.get(0),
                cost_micros: i128::from(r.get::<_, i64>(1)),
            })
            .collect())
    }

    fn take_spend_report(&mut self, top: u32, flushed_at: i64) -> Result<SpendReport> {
        // One snapshot: the rankings and the statuses of one state.
        let mut tx = self
            .live_client()?
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let period: Option<String> = tx.query_one(reports::LATEST_PERIOD, &[])?.get(0);
        let rank = |tx: &mut postgres::Transaction<'_>, ranking| -> Result<_> {
            let Some(period) = &period else {
                return Ok(Vec::new());
            };
            let sql = reports::top_sql(ranking, |i| format!("${i}"));
            let rows = tx.query(&sql, &[period, &i64::from(top)])?;
            Ok(reports::ranked(
                rows.iter()
                    .map(|r| (r.get(0), r.get(1), r.get(2), r.get::<_, i64>(3)))
                    .collect(),
            ))
        };
        let subscribers = rank(&mut tx, Ranking::Subscribers)?;
        let plans = rank(&mut tx, Ranking::Plans)?;
        let counts = tx
            .query(&reports::statuses_sql(), &[])?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        tx.commit()?;
        Ok(SpendReport {
            flushed_at,
            period: reports::period(period)?,
            subscribers,
            plans,
            statuses: reports::statuses(counts)?,
        })
    }

    fn put_spend_report(&mut self, report: &SpendReport) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        // The members of a consumer group flush on their own: one report
        // replaces the other whole, never two interleaved (which failed on
        // the key when three members stopped together).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SPEND_REPORT_LOCK])?;
        tx.execute(reports::CLEAR, &[])?;
        let insert = tx.prepare(&reports::insert_row_sql(|i| format!("${i}")))?;
        for (ranking, row) in report.rows() {
            tx.execute(
                &insert,
                &[
                    &ranking.as_str(),
                    &(row.rank as i32),
                    &row.id,
                    &row.spend_micros,
                    &(row.records as i64),
                    &(row.subscribers as i64),
                ],
            )?;
        }
        tx.execute(
            &reports::put_state_sql(|i| format!("${i}")),
            &[&report.flushed_at, &report.period.map(|p| p.to_string())],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn spend_report(&mut self) -> Result<Option<SpendReport>> {
        let mut tx = self.live_client()?.transaction()?;
        let Some(state) = tx.query_opt(reports::SELECT_STATE, &[])? else {
            return Ok(None);
        };
        let rows = tx
            .query(reports::SELECT_ROWS, &[])?
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    i64::from(r.get::<_, i32>(1)),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                )
            })
            .collect();
        tx.commit()?;
        Ok(Some(reports::report(state.get(0), state.get(1), rows)?))
    }
}
