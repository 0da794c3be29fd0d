//! SQLite: Lifetime counters, a day's totals, top subscribers.

use super::*;

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
}
