//! SQLite: Operator state: watermarks and dedup entries per scope, and admission's questions.

use super::*;

impl OperatorState for SqliteStore {
    fn resume_state(&mut self, scope: &str, dedup_window_ms: i64) -> Result<ResumeState> {
        let watermark: Option<i64> = self
            .conn
            .query_row(
                "SELECT watermark_ms FROM pipeline_state WHERE scope = ?",
                [scope],
                |r| r.get(0),
            )
            .optional()?;
        let horizon = watermark.map_or(i32::MIN, |w| minute_of(w - dedup_window_ms));
        let mut stmt = self
            .conn
            .prepare("SELECT entries FROM dedup_state WHERE scope = ? AND max_minute >= ?")?;
        let mut rows = stmt.query(params![scope, horizon])?;
        let mut dedup_entries = Vec::new();
        while let Some(row) = rows.next()? {
            let blob = row
                .get_ref(0)?
                .as_blob()
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            dedup_entries
                .extend(DedupEntry::decode_all(blob).filter(|e| e.event_minute >= horizon));
        }
        Ok(ResumeState {
            watermark,
            dedup_entries,
        })
    }

    fn lookup(&mut self, scope: &str, asked: &StoreLookup) -> Result<LookupAnswer> {
        let mut answer = LookupAnswer::default();
        let mut stmt = self.conn.prepare_cached(
            "SELECT entries FROM dedup_state WHERE scope = ?1 AND max_minute >= ?2
               AND (min_minute IS NULL OR min_minute <= ?3)",
        )?;
        for &day in &asked.dedup_days {
            let (first, last) = day_minutes(day);
            let mut rows = stmt.query(params![scope, first, last])?;
            while let Some(row) = rows.next()? {
                let blob = row
                    .get_ref(0)?
                    .as_blob()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                answer.dedup_entries.extend(
                    DedupEntry::decode_all(blob)
                        .filter(|e| (first..=last).contains(&e.event_minute)),
                );
            }
        }
        drop(stmt);
        for row in &asked.totals {
            let table = &SUMMARY_TABLES[row.kind as usize];
            let stored: Vec<String> = table.measures.iter().map(|&m| stored_column(m)).collect();
            let sql = format!(
                "SELECT {cols} FROM {name} WHERE msisdn_digits = ? AND event_day = ? AND {ty} = ?",
                cols = stored.join(", "),
                name = storage_table(table),
                ty = table.type_column,
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let totals = stmt
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
            answer.totals.push(totals);
        }
        Ok(answer)
    }
}
