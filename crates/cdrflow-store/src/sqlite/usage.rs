//! SQLite: Usage summaries per subscriber and day.

use super::*;

impl Usage for SqliteStore {
    fn usage(&mut self, msisdn: Msisdn, from: Day, to: Day) -> Result<Vec<SummaryRecord>> {
        let mut out = Vec::new();
        let digits = msisdn.digits() as i64;
        let (from, to) = (clamp_day(from), clamp_day(to));
        self.read_summaries(
            "WHERE msisdn_digits = ?1 AND event_day BETWEEN ?2 AND ?3",
            &[&digits, &from.0, &to.0],
            &mut |r| out.push(r),
        )?;
        Ok(out)
    }

    fn usage_day_at(&mut self, msisdn: Msisdn, from: Day, to: Day, n: u32) -> Result<Option<Day>> {
        let digits = msisdn.digits() as i64;
        let (from, to) = (clamp_day(from), clamp_day(to));
        let days: Vec<String> = SUMMARY_TABLES
            .iter()
            .map(|t| {
                format!(
                    "SELECT event_day FROM {} WHERE msisdn_digits = ?1 AND event_day BETWEEN ?2 AND ?3",
                    storage_table(t)
                )
            })
            .collect();
        let sql = format!(
            "SELECT event_day FROM ({}) ORDER BY event_day LIMIT 1 OFFSET ?4",
            days.join(" UNION ALL ")
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let day: Option<i32> = stmt
            .query_row(params![digits, from.0, to.0, i64::from(n)], |r| r.get(0))
            .optional()?;
        Ok(day.map(Day))
    }

    fn stored_totals(&mut self, rows: &[RowKey]) -> Result<Vec<Option<Totals>>> {
        let mut found = Vec::with_capacity(rows.len());
        for row in rows {
            let table = &SUMMARY_TABLES[row.kind as usize];
            let stored: Vec<String> = table.measures.iter().map(|&m| stored_column(m)).collect();
            let sql = format!(
                "SELECT {cols} FROM {name} WHERE msisdn_digits = ? AND event_day = ? AND {ty} = ?",
                cols = stored.join(", "),
                name = storage_table(table),
                ty = table.type_column,
            );
            let totals = self
                .conn
                .prepare_cached(&sql)?
                .query_row(
                    params![row.msisdn.digits() as i64, row.day.0, row.service_type],
                    |r| {
                        let mut totals = Totals::default();
                        for (i, &m) in table.measures.iter().enumerate() {
                            m.set(&mut totals, r.get(i)?);
                        }
                        Ok(totals)
                    },
                )
                .optional()?;
            found.push(totals);
        }
        Ok(found)
    }

    fn for_each_summary(&mut self, visit: &mut dyn FnMut(SummaryRecord)) -> Result<()> {
        self.read_summaries("", &[], visit)
    }
}
