//! PostgreSQL: Operator state: watermarks and dedup entries per scope, and admission's questions.

use super::*;

impl OperatorState for PgStore {
    fn resume_state(&mut self, scope: &str, dedup_window_ms: i64) -> Result<ResumeState> {
        let watermark: Option<i64> = self
            .live_client()?
            .query_opt(
                "SELECT watermark_ms FROM pipeline_state WHERE scope = $1",
                &[&scope],
            )?
            .map(|r| r.get(0));
        let horizon = watermark.map_or(i32::MIN, |w| minute_of(w - dedup_window_ms));
        let mut dedup_entries = Vec::new();
        for row in self.live_client()?.query(
            "SELECT entries FROM dedup_state WHERE scope = $1 AND max_minute >= $2",
            &[&scope, &horizon],
        )? {
            let blob: &[u8] = row.get(0);
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
        for &day in &asked.dedup_days {
            let (first, last) = day_minutes(day);
            for row in self.live_client()?.query(
                "SELECT entries FROM dedup_state WHERE scope = $1 AND max_minute >= $2
                   AND (min_minute IS NULL OR min_minute <= $3)",
                &[&scope, &first, &last],
            )? {
                let blob: &[u8] = row.get(0);
                answer.dedup_entries.extend(
                    DedupEntry::decode_all(blob)
                        .filter(|e| (first..=last).contains(&e.event_minute)),
                );
            }
        }
        for row in &asked.totals {
            let table = &SUMMARY_TABLES[row.kind as usize];
            let columns = measure_columns(table);
            let found = self.live_client()?.query_opt(
                &format!(
                    "SELECT {columns} FROM {name} WHERE msisdn = $1 AND event_date = DATE '1970-01-01' + $2::int AND {ty} = $3",
                    name = table.name,
                    ty = table.type_column,
                ),
                &[&row.msisdn.to_string(), &row.day.0, &row.service_type],
            )?;
            answer.totals.push(found.map(|r| {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, r.get::<_, i64>(i));
                }
                totals
            }));
        }
        Ok(answer)
    }
}
