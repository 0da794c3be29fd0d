//! PostgreSQL: Lifetime counters, a day's totals, top subscribers.

use super::*;

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
}
