//! SQLite: The one transaction that writes a checkpoint with its positions, and clearing results for a rebuild.

use super::*;

impl Results for SqliteStore {
    fn commit(&mut self, commit: Commit<'_>) -> Result<()> {
        let tx = self.conn.transaction()?;
        // Fence first: a consumer that lost a partition must not write anything.
        for cursor in commit.cursors {
            match cursor {
                Cursor::Kafka(k) => {
                    let updated = tx.execute(
                        "UPDATE kafka_offsets SET next_offset = ?1, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                         WHERE consumer_group = ?2 AND topic = ?3 AND partition = ?4 AND epoch = ?5
                           AND next_offset IS ?6",
                        params![k.next_offset, k.group, k.topic, k.partition, k.epoch, k.from_offset],
                    )?;
                    if updated == 0 {
                        let stored: Option<(i64, Option<i64>)> = tx
                            .query_row(
                                "SELECT epoch, next_offset FROM kafka_offsets
                                 WHERE consumer_group = ?1 AND topic = ?2 AND partition = ?3",
                                params![k.group, k.topic, k.partition],
                                |r| Ok((r.get(0)?, r.get(1)?)),
                            )
                            .optional()?;
                        return match stored {
                            // Applied before: the transaction rolls back, nothing counts twice.
                            Some((epoch, next)) if k.was_applied(epoch, next) => Ok(()),
                            _ => Err(k.fenced()),
                        };
                    }
                }
                Cursor::File(c) => {
                    // Compare-and-set on the position this run started from.
                    let moved = match c.from_offset {
                        None => tx.execute(
                            "INSERT INTO source_positions (source, next_offset, lines, fingerprint, prefix_len, updated_at)
                             VALUES (?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                             ON CONFLICT (source) DO NOTHING",
                            params![c.source, c.next_offset, c.lines, c.fingerprint, c.prefix_len],
                        )?,
                        Some(from) => tx.execute(
                            "UPDATE source_positions SET next_offset = ?, lines = ?, fingerprint = ?,
                                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
                             WHERE source = ? AND next_offset = ?",
                            params![c.next_offset, c.lines, c.fingerprint, c.source, from],
                        )?,
                    };
                    if moved == 0 {
                        let stored: Option<i64> = tx
                            .query_row(
                                "SELECT next_offset FROM source_positions WHERE source = ?",
                                [&c.source],
                                |r| r.get(0),
                            )
                            .optional()?;
                        return match c.already_applied(stored) {
                            // Applied before: the transaction rolls back, nothing counts twice.
                            true => Ok(()),
                            false => Err(c.moved(stored)),
                        };
                    }
                }
            }
        }
        SqliteStore::write_summaries(&tx, &commit)?;
        analytics::write_windows(&tx, &commit)?;
        daily::write_raw_events(&tx, &commit)?;
        charges::write_charges(&tx, &commit)?;
        for part in commit.parts {
            reference::write_changes(&tx, &part.checkpoint.reference)?;
        }
        lake::write_manifest(&tx, &commit)?;
        let mut insert_reject = tx.prepare_cached(
            "INSERT INTO rejected_records (reason, detail, origin, position, payload) VALUES (?, ?, ?, ?, ?)",
        )?;
        let mut bump = tx.prepare_cached(BUMP_COUNTER)?;
        for part in commit.parts {
            let checkpoint = part.checkpoint;
            for r in &checkpoint.rejects {
                insert_reject.execute(params![
                    r.rejection.reason.as_str(),
                    r.rejection.detail,
                    r.origin,
                    r.position.to_string(),
                    r.payload
                ])?;
            }
            for (name, value) in counter_entries(&checkpoint.counts) {
                bump.execute(params![name, value as i64])?;
            }
        }
        drop((insert_reject, bump));
        operator_state::write_state(&tx, &commit)?;
        tx.commit()?;
        Ok(())
    }

    fn clear_results(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        for table in &SUMMARY_TABLES {
            tx.execute(&format!("DELETE FROM {}", storage_table(table)), [])?;
        }
        tx.execute_batch(
            "DELETE FROM rejected_records; DELETE FROM operator_state; DELETE FROM pipeline_counters;
             DELETE FROM source_positions; DELETE FROM window_totals; DELETE FROM late_events; DELETE FROM anomalies;
             DELETE FROM raw_event_rows; DELETE FROM daily_stats_totals; DELETE FROM hourly_stats_totals;
             DELETE FROM rated_records; DELETE FROM cell_usage; DELETE FROM balances; DELETE FROM lake_files;",
        )?;
        tx.commit()?;
        Ok(())
    }
}
