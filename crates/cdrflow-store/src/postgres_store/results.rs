//! PostgreSQL: The one transaction that writes a checkpoint with its positions, and clearing results for a rebuild.

use super::*;

impl Results for PgStore {
    /// One transaction of a fixed handful of set-based statements (arrays
    /// through `unnest`), whatever the number of partitions, rejects or
    /// counters: every statement is a round trip to the server, and a
    /// per-partition statement list made a 12-partition commit cost ~100 ms.
    fn commit(&mut self, commit: Commit<'_>) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        analytics::lock_anomaly_ids(&mut tx, &commit)?;
        if !PgStore::advance_kafka_offsets(&mut tx, commit.cursors)? {
            // Applied before: the transaction rolls back, nothing counts twice.
            return Ok(());
        }
        for cursor in commit.cursors {
            if let Cursor::File(c) = cursor {
                // Compare-and-set on the position this run started from.
                let moved = match c.from_offset {
                    None => tx.execute(
                        "INSERT INTO source_positions (source, next_offset, lines, fingerprint, prefix_len)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (source) DO NOTHING",
                        &[&c.source, &c.next_offset, &c.lines, &c.fingerprint, &c.prefix_len],
                    )?,
                    Some(from) => tx.execute(
                        "UPDATE source_positions SET next_offset = $1, lines = $2, fingerprint = $3, updated_at = now()
                         WHERE source = $4 AND next_offset = $5",
                        &[&c.next_offset, &c.lines, &c.fingerprint, &c.source, &from],
                    )?,
                };
                if moved == 0 {
                    let stored: Option<i64> = tx
                        .query_opt(
                            "SELECT next_offset FROM source_positions WHERE source = $1",
                            &[&c.source],
                        )?
                        .map(|r| r.get(0));
                    return match c.already_applied(stored) {
                        // Applied before: the transaction rolls back, nothing counts twice.
                        true => Ok(()),
                        false => Err(c.moved(stored)),
                    };
                }
            }
        }
        PgStore::write_summaries(&mut tx, &commit)?;
        analytics::write_windows(&mut tx, &commit)?;
        daily::write_raw_events(&mut tx, &commit)?;
        charges::write_charges(&mut tx, &commit)?;
        for part in commit.parts {
            reference::write_changes(&mut tx, &part.checkpoint.reference)?;
        }
        lake::write_manifest(&mut tx, &commit)?;

        let rejects: Vec<_> = commit
            .parts
            .iter()
            .flat_map(|p| &p.checkpoint.rejects)
            .collect();
        if !rejects.is_empty() {
            let reasons: Vec<&str> = rejects
                .iter()
                .map(|r| r.rejection.reason.as_str())
                .collect();
            let details: Vec<&str> = rejects
                .iter()
                .map(|r| r.rejection.detail.as_str())
                .collect();
            let origins: Vec<&str> = rejects.iter().map(|r| r.origin.as_str()).collect();
            let positions: Vec<String> = rejects.iter().map(|r| r.position.to_string()).collect();
            let payloads: Vec<&[u8]> = rejects.iter().map(|r| &r.payload[..]).collect();
            tx.execute(
                "INSERT INTO rejected_records (reason, detail, origin, position, payload)
                 SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bytea[])",
                &[&reasons, &details, &origins, &positions, &payloads],
            )?;
        }

        let mut counts = Counts::default();
        for part in commit.parts {
            counts.add(&part.checkpoint.counts);
        }
        let (names, values): (Vec<String>, Vec<i64>) = counter_entries(&counts)
            .into_iter()
            .map(|(name, value)| (name, value as i64))
            .unzip();
        tx.execute(
            "INSERT INTO pipeline_counters (name, value) SELECT * FROM unnest($1::text[], $2::bigint[])
             ON CONFLICT (name) DO UPDATE SET value = pipeline_counters.value + excluded.value",
            &[&names, &values],
        )?;
        operator_state::write_state(&mut tx, &commit)?;
        tx.commit()?;
        Ok(())
    }

    fn clear_results(&mut self) -> Result<()> {
        let tables: Vec<&str> = SUMMARY_TABLES.iter().map(|t| t.name).collect();
        self.live_client()?.batch_execute(&format!(
            "TRUNCATE {}, rejected_records, operator_state, pipeline_counters, source_positions, real_time_metrics, late_events, anomalies, raw_events, daily_stats, hourly_stats, rated_records, cell_usage, balances, lake_files",
            tables.join(", ")
        ))?;
        Ok(())
    }
}
