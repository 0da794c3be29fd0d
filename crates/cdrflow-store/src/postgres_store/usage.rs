//! PostgreSQL: Usage summaries per subscriber and day.

use super::*;

impl Usage for PgStore {
    fn usage(&mut self, msisdn: Msisdn, from: Day, to: Day) -> Result<Vec<SummaryRecord>> {
        let mut out = Vec::new();
        let m = msisdn.to_string();
        let (from, to) = (clamp_day(from), clamp_day(to));
        self.read_summaries(
            "WHERE msisdn = $1 AND event_date BETWEEN DATE '1970-01-01' + $2::int AND DATE '1970-01-01' + $3::int",
            &[&m, &from.0, &to.0],
            &mut |r| out.push(r),
        )?;
        Ok(out)
    }

    fn usage_day_at(&mut self, msisdn: Msisdn, from: Day, to: Day, n: u32) -> Result<Option<Day>> {
        let m = msisdn.to_string();
        let (from, to) = (clamp_day(from), clamp_day(to));
        let days: Vec<String> = SUMMARY_TABLES
            .iter()
            .map(|t| {
                format!(
                    "SELECT event_date FROM {} WHERE msisdn = $1 AND event_date BETWEEN DATE '1970-01-01' + $2::int AND DATE '1970-01-01' + $3::int",
                    t.name
                )
            })
            .collect();
        let sql = format!(
            "SELECT (event_date - DATE '1970-01-01')::int FROM ({}) AS days ORDER BY event_date LIMIT 1 OFFSET $4",
            days.join(" UNION ALL ")
        );
        let row = self
            .live_client()?
            .query_opt(&sql, &[&m, &from.0, &to.0, &i64::from(n)])?;
        Ok(row.map(|r| Day(r.get(0))))
    }

    fn stored_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>> {
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let table = &SUMMARY_TABLES[row.kind as usize];
            let columns = measure_columns(table);
            let stored = self.live_client()?.query_opt(
                &format!(
                    "SELECT {columns} FROM {name} WHERE msisdn = $1 AND event_date = DATE '1970-01-01' + $2::int AND {ty} = $3",
                    name = table.name,
                    ty = table.type_column,
                ),
                &[&row.msisdn.to_string(), &row.day.0, &row.service_type],
            )?;
            found.push(stored.map(|r| {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, r.get::<_, i64>(i));
                }
                totals
            }));
        }
        Ok(found)
    }

    fn for_each_summary(&mut self, visit: &mut dyn FnMut(SummaryRecord)) -> Result<()> {
        self.read_summaries("", &[], visit)
    }
}
