//! SQLite: File cursors, Kafka offsets with owner epochs, the files lock.

use super::*;

impl Positions for SqliteStore {
    fn claim_partitions(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<PartitionClaim>> {
        let tx = self.conn.transaction()?;
        let mut claims = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let (next_offset, epoch): (Option<i64>, i64) = tx.query_row(
                "INSERT INTO kafka_offsets (consumer_group, topic, partition, next_offset, epoch, updated_at)
                 VALUES (?1, ?2, ?3, NULL, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
                 ON CONFLICT (consumer_group, topic, partition) DO UPDATE SET epoch = epoch + 1, updated_at = excluded.updated_at
                 RETURNING next_offset, epoch",
                params![group, topic, partition],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            claims.push(PartitionClaim {
                topic: topic.clone(),
                partition: *partition,
                next_offset,
                epoch,
            });
        }
        tx.commit()?;
        Ok(claims)
    }

    fn reset_kafka_offsets(
        &mut self,
        group: &str,
        topics: &[String],
        target: &ReplayTarget,
    ) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let rows: Vec<(String, i32)> = {
            let mut stmt =
                tx.prepare("SELECT topic, partition FROM kafka_offsets WHERE consumer_group = ?")?;
            let rows = stmt.query_map([group], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut changed = 0;
        for (topic, partition, offset) in target.moves(rows, topics) {
            changed += tx.execute(
                "UPDATE kafka_offsets SET next_offset = ?1, epoch = epoch + 1 WHERE consumer_group = ?2 AND topic = ?3 AND partition = ?4",
                params![offset, group, topic, partition],
            )? as u64;
        }
        tx.commit()?;
        Ok(changed)
    }

    fn kafka_positions(&mut self, group: &str) -> Result<Vec<KafkaPosition>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT topic, partition, next_offset, epoch FROM kafka_offsets WHERE consumer_group = ? ORDER BY topic, partition",
        )?;
        let rows = stmt.query_map([group], |r| {
            Ok(KafkaPosition {
                topic: r.get(0)?,
                partition: r.get(1)?,
                next_offset: r.get(2)?,
                epoch: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn cursor(&mut self, source: &str) -> Result<Option<SourceCursor>> {
        Ok(self
            .conn
            .query_row(
                "SELECT source, next_offset, lines, fingerprint, prefix_len FROM source_positions WHERE source = ?",
                [source],
                |r| Ok(SourceCursor { source: r.get(0)?, next_offset: r.get(1)?, lines: r.get(2)?, fingerprint: r.get(3)?, prefix_len: r.get(4)?, from_offset: None }),
            )
            .optional()?)
    }

    fn short_prefix_lens(&mut self, below: i64) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT prefix_len FROM source_positions WHERE prefix_len < ? ORDER BY prefix_len",
        )?;
        let lens = stmt.query_map([below], |r| r.get(0))?;
        Ok(lens.collect::<rusqlite::Result<_>>()?)
    }

    fn lock_files(&mut self) -> Result<()> {
        let lock_path = self.path.with_extension("files.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::Open {
                path: lock_path.display().to_string(),
                why: e.to_string(),
            })?;
        // An OS lock: released when the process ends, however it ends.
        match file.try_lock() {
            Ok(()) => {
                self.files_lock = Some(file);
                Ok(())
            }
            Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Busy(format!(
                "another cdrflow process is processing files into {}; wait for it to finish (or stop it), then run this again",
                self.path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Open {
                path: lock_path.display().to_string(),
                why: e.to_string(),
            }),
        }
    }
}
