//! The shared store: PostgreSQL, for several cdrflow processes at once.
//!
//! Seed 000's tables appear under their own names and columns
//! (`daily_data_summary(msisdn, event_date, data_type, total_up_bytes,
//! total_down_bytes, total_cost_wak)`, ...), money as exact `NUMERIC(20,6)`.
//! A checkpoint's summary rows go in as one `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO UPDATE` per table — one round trip, not one per row — with
//! money passed as integer micro-units and divided inside PostgreSQL, exactly.
//! Processes sharing the database are kept apart by the epoch on each Kafka
//! partition's offset row: a commit with a stale epoch is refused whole.

use cdrflow_core::aggregate::Totals;
use cdrflow_core::dedup::{day_minutes, minute_of, DedupEntry};
use cdrflow_core::mediation::{Counts, LookupAnswer, StoreLookup};
use cdrflow_core::normalize::{Day, Msisdn};
use postgres::{Client, Transaction};

use crate::postgres_tls::Connector;
use crate::schema::{Measure, SummaryTable, SUMMARY_TABLES};
use crate::sqlite::{apply_counter, counter_entries};
use crate::{
    clamp_day, dedup_blobs, Commit, Cursor, KafkaCursor, KafkaPosition, OverviewRow,
    PartitionClaim, RejectQuery, ReplayTarget, Result, ResumeState, SourceCursor, Store,
    StoreError, StoredReject, SummaryRecord, TopSubscriber,
};

/// Serialises migrations between processes starting at the same time.
const MIGRATION_LOCK: i64 = 0x6364_7266_6c6f_77; // "cdrflow"

fn migrations() -> Vec<(i32, String)> {
    let mut v1 = String::new();
    for table in &SUMMARY_TABLES {
        let columns: Vec<String> = table
            .measures
            .iter()
            .map(|&m| {
                let ty = if m.is_money() {
                    "NUMERIC(20,6)"
                } else {
                    "BIGINT"
                };
                format!("{} {ty} NOT NULL", m.column())
            })
            .collect();
        v1.push_str(&format!(
            "CREATE TABLE {name} (msisdn TEXT NOT NULL, event_date DATE NOT NULL, {ty} TEXT NOT NULL, {columns},
                 PRIMARY KEY (msisdn, event_date, {ty}));\n",
            name = table.name,
            ty = table.type_column,
            columns = columns.join(", "),
        ));
    }
    v1.push_str(
        "CREATE TABLE rejected_records (
            id BIGSERIAL PRIMARY KEY,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            origin TEXT NOT NULL,
            position TEXT NOT NULL,
            payload BYTEA NOT NULL,
            rejected_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE INDEX rejected_records_by_reason ON rejected_records (reason, id);
        CREATE TABLE source_positions (
            source TEXT PRIMARY KEY,
            next_offset BIGINT NOT NULL,
            lines BIGINT NOT NULL,
            fingerprint TEXT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
        );
        CREATE TABLE kafka_offsets (
            consumer_group TEXT NOT NULL,
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            next_offset BIGINT,
            epoch BIGINT NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            PRIMARY KEY (consumer_group, topic, partition)
        );
        CREATE TABLE dedup_state (
            id BIGSERIAL PRIMARY KEY,
            scope TEXT NOT NULL,
            max_minute INTEGER NOT NULL,
            entries BYTEA NOT NULL
        );
        CREATE INDEX dedup_state_by_scope ON dedup_state (scope, max_minute);
        CREATE TABLE pipeline_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
        CREATE TABLE pipeline_state (scope TEXT PRIMARY KEY, watermark_ms BIGINT NOT NULL);",
    );
    // v2: as SQLite's v2 (dedup identities per day, file cursors keyed by content).
    let v2 = "ALTER TABLE dedup_state ADD COLUMN min_minute INTEGER;
        ALTER TABLE source_positions ADD COLUMN prefix_len BIGINT NOT NULL DEFAULT 4096;"
        .to_string();
    vec![(1, v1), (2, v2)]
}

/// Serialises processes that read files into one store (session lock).
const FILES_LOCK: i64 = 0x6364_7266_6669_6c65; // "cdrffile"

fn upsert_sql(table: &SummaryTable) -> String {
    let mut inputs = vec![
        "$1::text[]".to_string(),
        "$2::int[]".to_string(),
        "$3::text[]".to_string(),
    ];
    let mut selects = vec![
        "m".to_string(),
        "DATE '1970-01-01' + d".to_string(),
        "t".to_string(),
    ];
    for (i, &m) in table.measures.iter().enumerate() {
        inputs.push(format!("${}::bigint[]", i + 4));
        let name = format!("v{i}");
        selects.push(if m.is_money() {
            format!("{name}::numeric / 1000000")
        } else {
            name
        });
    }
    let aliases: Vec<String> = ["m", "d", "t"]
        .iter()
        .map(|s| s.to_string())
        .chain((0..table.measures.len()).map(|i| format!("v{i}")))
        .collect();
    let columns: Vec<&str> = table.measures.iter().map(|m| m.column()).collect();
    let updates: Vec<String> = columns
        .iter()
        .map(|c| format!("{c} = {name}.{c} + excluded.{c}", name = table.name))
        .collect();
    format!(
        "INSERT INTO {name} (msisdn, event_date, {ty}, {cols})
         SELECT {selects} FROM unnest({inputs}) AS u({aliases})
         ON CONFLICT (msisdn, event_date, {ty}) DO UPDATE SET {updates}",
        name = table.name,
        ty = table.type_column,
        cols = columns.join(", "),
        selects = selects.join(", "),
        inputs = inputs.join(", "),
        aliases = aliases.join(", "),
        updates = updates.join(", "),
    )
}

/// A table's measures as integers (money in micro-units).
fn measure_columns(table: &SummaryTable) -> String {
    let columns: Vec<String> = table
        .measures
        .iter()
        .map(|&m| {
            if m.is_money() {
                format!("({} * 1000000)::bigint", m.column())
            } else {
                m.column().to_string()
            }
        })
        .collect();
    columns.join(", ")
}

/// Rows in the same order as SQLite's integer keys: numbers by value (for
/// E.164 text, by length then digits), types byte-wise.
fn select_sql(table: &SummaryTable, filter: &str) -> String {
    format!(
        "SELECT msisdn, (event_date - DATE '1970-01-01')::int, {ty}, {cols} FROM {name} {filter}
         ORDER BY length(msisdn), msisdn, event_date, {ty} COLLATE \"C\"",
        name = table.name,
        ty = table.type_column,
        cols = measure_columns(table),
    )
}

pub struct PgStore {
    url: String,
    connector: Connector,
    client: Client,
}

/// Connects, saying what to check when the server cannot be reached or its
/// certificate is refused.
fn open(connector: &Connector, url: &str) -> Result<Client> {
    connector.connect().map_err(|e| {
        let mut why = e.to_string();
        if let Some(source) = std::error::Error::source(&e) {
            why = format!("{why}: {source}");
        }
        if why.contains("certificate") || why.contains("TLS") {
            why.push_str(
                " (the server's certificate is checked against sslrootcert= for sslmode=verify-ca/verify-full; is that the CA that signed it, and for verify-full, was it issued for this host?)",
            );
        } else if e.as_db_error().is_none() {
            why.push_str(
                " (is PostgreSQL running and listening at the host and port of the URL, and reachable from here? connect_timeout= in the URL sets how long to try, 5 s by default)",
            );
        }
        StoreError::Open {
            path: redact(url),
            why,
        }
    })
}

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`) and applies migrations.
    pub fn connect(url: &str) -> Result<PgStore> {
        let connector = Connector::from_url(url).map_err(|why| StoreError::Open {
            path: redact(url),
            why,
        })?;
        let client = open(&connector, url)?;
        let mut store = PgStore {
            url: url.to_string(),
            connector,
            client,
        };
        store.migrate()?;
        Ok(store)
    }

    /// The URL this store connected to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connection, re-established first if the server closed it (restart,
    /// failover, network cut), so that a caller retrying a failed commit gets
    /// a fresh connection rather than the same dead one. An open transaction
    /// died with the old connection, so nothing half-written survives.
    fn live_client(&mut self) -> Result<&mut Client> {
        if self.client.is_closed() {
            self.client = open(&self.connector, &self.url)?;
            tracing::info!("reconnected to PostgreSQL");
        }
        Ok(&mut self.client)
    }

    fn migrate(&mut self) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )?;
        let current: i32 = tx
            .query_one(
                "SELECT coalesce(max(version), 0) FROM schema_migrations",
                &[],
            )?
            .get(0);
        let all = migrations();
        let known = all.last().map_or(0, |m| m.0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: i64::from(current),
                known: i64::from(known),
            });
        }
        for (version, sql) in all.into_iter().filter(|(v, _)| *v > current) {
            tx.batch_execute(&sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Moves every Kafka cursor's partition from its `from_offset` to its next
    /// offset, only where the committer still holds the partition's epoch.
    /// Returns false when this very commit was applied before (its outcome
    /// was lost with the connection): the caller then writes nothing. Any
    /// other partition not moved was claimed by another member since: the
    /// whole commit is refused.
    fn advance_kafka_offsets(tx: &mut Transaction<'_>, cursors: &[Cursor]) -> Result<bool> {
        let kafka: Vec<&KafkaCursor> = cursors
            .iter()
            .filter_map(|c| match c {
                Cursor::Kafka(k) => Some(k),
                Cursor::File(_) => None,
            })
            .collect();
        if kafka.is_empty() {
            return Ok(true);
        }
        let groups: Vec<&str> = kafka.iter().map(|k| k.group.as_str()).collect();
        let topics: Vec<&str> = kafka.iter().map(|k| k.topic.as_str()).collect();
        let partitions: Vec<i32> = kafka.iter().map(|k| k.partition).collect();
        let offsets: Vec<i64> = kafka.iter().map(|k| k.next_offset).collect();
        let from_offsets: Vec<Option<i64>> = kafka.iter().map(|k| k.from_offset).collect();
        let epochs: Vec<i64> = kafka.iter().map(|k| k.epoch).collect();
        let moved = tx.query(
            "UPDATE kafka_offsets o SET next_offset = c.next_offset, updated_at = now()
             FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[], $5::bigint[], $6::bigint[])
                  AS c(consumer_group, topic, partition, next_offset, from_offset, epoch)
             WHERE o.consumer_group = c.consumer_group AND o.topic = c.topic
               AND o.partition = c.partition AND o.epoch = c.epoch
               AND o.next_offset IS NOT DISTINCT FROM c.from_offset
             RETURNING o.topic, o.partition",
            &[&groups, &topics, &partitions, &offsets, &from_offsets, &epochs],
        )?;
        let moved: Vec<(String, i32)> = moved.iter().map(|r| (r.get(0), r.get(1))).collect();
        for unmoved in kafka.iter().filter(|k| {
            !moved
                .iter()
                .any(|(t, p)| *t == k.topic && *p == k.partition)
        }) {
            let stored = tx.query_opt(
                "SELECT epoch, next_offset FROM kafka_offsets
                 WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                &[&unmoved.group, &unmoved.topic, &unmoved.partition],
            )?;
            return match stored {
                Some(row) if unmoved.was_applied(row.get(0), row.get(1)) => Ok(false),
                _ => Err(unmoved.fenced()),
            };
        }
        Ok(true)
    }

    fn write_summaries(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
        let merged = commit.merged_summaries();
        for table in &SUMMARY_TABLES {
            let rows: Vec<_> = merged.rows().filter(|r| r.kind == table.kind).collect();
            if rows.is_empty() {
                continue;
            }
            let msisdns: Vec<String> = rows.iter().map(|r| r.msisdn.to_string()).collect();
            let days: Vec<i32> = rows.iter().map(|r| r.day.0).collect();
            let types: Vec<&str> = rows.iter().map(|r| r.service_type).collect();
            let measures: Vec<Vec<i64>> = table
                .measures
                .iter()
                .map(|&m| {
                    rows.iter()
                        .map(|r| {
                            i64::try_from(m.value(r.totals)).map_err(|_| {
                                StoreError::TotalOverflow {
                                    kind: r.kind,
                                    msisdn: r.msisdn,
                                    date: r.day,
                                    service_type: r.service_type.to_string(),
                                }
                            })
                        })
                        .collect::<Result<Vec<i64>>>()
                })
                .collect::<Result<_>>()?;
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                vec![&msisdns, &days, &types];
            params.extend(
                measures
                    .iter()
                    .map(|v| v as &(dyn postgres::types::ToSql + Sync)),
            );
            tx.execute(&upsert_sql(table), &params)?;
        }
        Ok(())
    }

    fn read_summaries(
        &mut self,
        filter: &str,
        args: &[&(dyn postgres::types::ToSql + Sync)],
        visit: &mut dyn FnMut(SummaryRecord),
    ) -> Result<()> {
        for table in &SUMMARY_TABLES {
            for row in self
                .live_client()?
                .query(&select_sql(table, filter), args)?
            {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, row.get::<_, i64>(3 + i));
                }
                visit(SummaryRecord {
                    kind: table.kind,
                    msisdn: row.get(0),
                    date: Day(row.get(1)),
                    service_type: row.get(2),
                    totals,
                });
            }
        }
        Ok(())
    }
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            let user = credentials.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

impl Store for PgStore {
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
        let mut changed = 0;
        for row in rows {
            let (topic, partition): (String, i32) = (row.get(0), row.get(1));
            if !topics.is_empty() && !topics.contains(&topic) {
                continue;
            }
            let Ok(offset) = target.offset_for(&topic, partition) else {
                continue;
            };
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

    fn clear_results(&mut self) -> Result<()> {
        let tables: Vec<&str> = SUMMARY_TABLES.iter().map(|t| t.name).collect();
        self.live_client()?.batch_execute(&format!(
            "TRUNCATE {}, rejected_records, dedup_state, pipeline_counters, pipeline_state, source_positions",
            tables.join(", ")
        ))?;
        Ok(())
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

    /// One transaction of a fixed handful of set-based statements (arrays
    /// through `unnest`), whatever the number of partitions, rejects or
    /// counters: every statement is a round trip to the server, and a
    /// per-partition statement list made a 12-partition commit cost ~100 ms.
    fn commit(&mut self, commit: Commit<'_>) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
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

        let (mut scopes, mut min_minutes, mut max_minutes, mut blobs) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut horizon_scopes, mut horizons) = (Vec::new(), Vec::new());
        let (mut watermark_scopes, mut watermarks) = (Vec::new(), Vec::new());
        let mut counts = Counts::default();
        for part in commit.parts {
            for blob in dedup_blobs(&part.checkpoint.dedup_entries) {
                scopes.push(part.scope);
                min_minutes.push(blob.min_minute);
                max_minutes.push(blob.max_minute);
                blobs.push(blob.entries);
            }
            if let Some(horizon) = part.dedup_horizon_minute {
                horizon_scopes.push(part.scope);
                horizons.push(horizon);
            }
            if let Some(watermark) = part.checkpoint.watermark {
                watermark_scopes.push(part.scope);
                watermarks.push(watermark);
            }
            counts.add(&part.checkpoint.counts);
        }
        if !scopes.is_empty() {
            tx.execute(
                "INSERT INTO dedup_state (scope, min_minute, max_minute, entries)
                 SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::bytea[])",
                &[&scopes, &min_minutes, &max_minutes, &blobs],
            )?;
        }
        if !horizon_scopes.is_empty() {
            tx.execute(
                "DELETE FROM dedup_state d USING unnest($1::text[], $2::int[]) AS h(scope, horizon)
                 WHERE d.scope = h.scope AND d.max_minute < h.horizon",
                &[&horizon_scopes, &horizons],
            )?;
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
        if !watermark_scopes.is_empty() {
            tx.execute(
                "INSERT INTO pipeline_state (scope, watermark_ms) SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (scope) DO UPDATE SET watermark_ms = greatest(pipeline_state.watermark_ms, excluded.watermark_ms)",
                &[&watermark_scopes, &watermarks],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

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

    fn for_each_summary(&mut self, visit: &mut dyn FnMut(SummaryRecord)) -> Result<()> {
        self.read_summaries("", &[], visit)
    }

    fn rejects(&mut self, query: &RejectQuery, visit: &mut dyn FnMut(StoredReject)) -> Result<()> {
        let limit = query.limit.map(i64::from);
        for r in self.live_client()?.query(
            "SELECT id, reason, detail, origin, position, payload,
                    to_char(rejected_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')
             FROM rejected_records WHERE id > $1 AND ($2::text IS NULL OR reason = $2) ORDER BY id LIMIT $3",
            &[&query.after_id, &query.reason, &limit],
        )? {
            visit(StoredReject {
                id: r.get(0),
                reason: r.get(1),
                detail: r.get(2),
                origin: r.get(3),
                position: r.get(4),
                payload: r.get(5),
                rejected_at: r.get(6),
            });
        }
        Ok(())
    }

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
