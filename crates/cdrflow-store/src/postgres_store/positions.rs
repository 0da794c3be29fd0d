//! PostgreSQL: File cursors, Kafka offsets with owner epochs, the files lock.

use super::*;

impl Positions for PgStore {
    fn claim_partitions(
        &mut self,
        group: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<PartitionClaim>> {
        let mut tx = self.live_client()?.transaction()?;
        let mut claims = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let row = tx.query_one(
                "INSERT INTO kafka_offsets (consumer_group, topic, partition, next_offset, epoch) VALUES ($1, $2, $3, NULL, 1)
                 ON CONFLICT (consumer_group, topic, partition)
                 DO UPDATE SET epoch = kafka_offsets.epoch + 1, updated_at = now()
                 RETURNING next_offset, epoch",
                &[&group, topic, partition],
            )?;
            claims.push(PartitionClaim {
                topic: topic.clone(),
                partition: *partition,
                next_offset: row.get(0),
                epoch: row.get(1),
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
        let mut tx = self.live_client()?.transaction()?;
        let rows = tx.query(
            "SELECT topic, partition FROM kafka_offsets WHERE consumer_group = $1 FOR UPDATE",
            &[&group],
        )?;
        let stored = rows.iter().map(|row| (row.get(0), row.get(1)));
        let mut changed = 0;
        for (topic, partition, offset) in target.moves(stored, topics) {
            changed += tx.execute(
                "UPDATE kafka_offsets SET next_offset = $1, epoch = epoch + 1, updated_at = now()
                 WHERE consumer_group = $2 AND topic = $3 AND partition = $4",
                &[&offset, &group, &topic, &partition],
            )?;
        }
        tx.commit()?;
        Ok(changed)
    }

    fn kafka_positions(&mut self, group: &str) -> Result<Vec<KafkaPosition>> {
        Ok(self
            .live_client()?
            .query(
                "SELECT topic, partition, next_offset, epoch FROM kafka_offsets WHERE consumer_group = $1 ORDER BY topic, partition",
                &[&group],
            )?
            .iter()
            .map(|r| KafkaPosition {
                topic: r.get(0),
                partition: r.get(1),
                next_offset: r.get(2),
                epoch: r.get(3),
            })
            .collect())
    }

    fn cursor(&mut self, source: &str) -> Result<Option<SourceCursor>> {
        Ok(self
            .live_client()?
            .query_opt("SELECT source, next_offset, lines, fingerprint, prefix_len FROM source_positions WHERE source = $1", &[&source])?
            .map(|r| SourceCursor { source: r.get(0), next_offset: r.get(1), lines: r.get(2), fingerprint: r.get(3), prefix_len: r.get(4), from_offset: None }))
    }

    fn short_prefix_lens(&mut self, below: i64) -> Result<Vec<i64>> {
        Ok(self
            .live_client()?
            .query(
                "SELECT DISTINCT prefix_len FROM source_positions WHERE prefix_len < $1 ORDER BY prefix_len",
                &[&below],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect())
    }

    fn lock_files(&mut self) -> Result<()> {
        let locked: bool = self
            .live_client()?
            .query_one("SELECT pg_try_advisory_lock($1)", &[&FILES_LOCK])?
            .get(0);
        if locked {
            Ok(())
        } else {
            Err(StoreError::Busy(
                "another cdrflow process is processing files into this PostgreSQL database; wait for it to finish (or stop it), then run this again".into(),
            ))
        }
    }
}
