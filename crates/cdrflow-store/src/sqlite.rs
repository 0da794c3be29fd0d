//! The embedded store: one SQLite file, WAL mode, one transaction per checkpoint.
//!
//! Summaries live in `*_totals` tables keyed by integers (E.164 digits, day
//! number) with integer measures and money in micro-units
//! (`total_cost_wak_micros`), so sums stay exact and upserts stay cheap. Seed 000's names (`daily_data_summary` with `total_cost_wak`, ...)
//! are views over them that show money as decimals with six places. (A
//! generated column did the same but made every upsert ~30% slower.) SQLite silently turns an
//! overflowing integer sum into a float, so every measure carries a CHECK
//! that it is still an integer: an overflow aborts the commit instead.

use std::path::Path;

use cdrflow_core::aggregate::Totals;
use cdrflow_core::dedup::{day_minutes, minute_of, DedupEntry};
use cdrflow_core::mediation::{Counts, DuplicateReason, LookupAnswer, StoreLookup};
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{Day, Msisdn};
use cdrflow_core::reject::RejectReason;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::schema::{Measure, SummaryTable, SUMMARY_TABLES};
use crate::{
    clamp_day, dedup_blobs, Commit, Cursor, KafkaPosition, OverviewRow, PartitionClaim,
    RejectQuery, ReplayTarget, Result, ResumeState, SourceCursor, Store, StoreError, StoredReject,
    SummaryRecord, TopSubscriber,
};

/// Schema migrations, applied in order; a version is never edited once released.
fn migrations() -> Vec<(i64, String)> {
    let mut v1 = String::new();
    for table in &SUMMARY_TABLES {
        v1.push_str(&summary_ddl(table));
        v1.push_str(&summary_view_ddl(table));
    }
    v1.push_str(
        "CREATE TABLE rejected_records (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            reason TEXT NOT NULL,
            detail TEXT NOT NULL,
            origin TEXT NOT NULL,
            position TEXT NOT NULL,
            payload BLOB NOT NULL,
            rejected_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
        );
        CREATE INDEX rejected_records_by_reason ON rejected_records (reason, id);
        CREATE TABLE source_positions (
            source TEXT PRIMARY KEY,
            next_offset INTEGER NOT NULL,
            lines INTEGER NOT NULL,
            fingerprint TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID;
        CREATE TABLE dedup_state (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            scope TEXT NOT NULL,
            max_minute INTEGER NOT NULL,
            entries BLOB NOT NULL
        );
        CREATE INDEX dedup_state_by_scope ON dedup_state (scope, max_minute);
        CREATE TABLE kafka_offsets (
            consumer_group TEXT NOT NULL,
            topic TEXT NOT NULL,
            partition INTEGER NOT NULL,
            next_offset INTEGER,
            epoch INTEGER NOT NULL,
            updated_at TEXT NOT NULL,
            PRIMARY KEY (consumer_group, topic, partition)
        ) WITHOUT ROWID;
        CREATE TABLE pipeline_counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
        CREATE TABLE pipeline_state (scope TEXT PRIMARY KEY, watermark_ms INTEGER NOT NULL) WITHOUT ROWID;",
    );
    // v2: dedup identities per day of event time (min_minute; NULL for blobs
    // written before, which may span days), and file cursors keyed by content.
    let v2 = "ALTER TABLE dedup_state ADD COLUMN min_minute INTEGER;
        ALTER TABLE source_positions ADD COLUMN prefix_len INTEGER NOT NULL DEFAULT 4096;"
        .to_string();
    vec![(1, v1), (2, v2)]
}

fn stored_column(measure: Measure) -> String {
    if measure.is_money() {
        format!("{}_micros", measure.column())
    } else {
        measure.column().to_string()
    }
}

/// The storage table behind a summary: integer measures, money in micro-units.
fn storage_table(table: &SummaryTable) -> String {
    table.name.replace("_summary", "_totals")
}

fn summary_ddl(table: &SummaryTable) -> String {
    let mut columns = String::new();
    for &m in table.measures {
        let stored = stored_column(m);
        columns.push_str(&format!(
            "    {stored} INTEGER NOT NULL CHECK (typeof({stored}) = 'integer'),\n"
        ));
    }
    format!(
        "CREATE TABLE {name} (\n    msisdn_digits INTEGER NOT NULL,\n    event_day INTEGER NOT NULL,\n    {ty} TEXT NOT NULL,\n{columns}    PRIMARY KEY (msisdn_digits, event_day, {ty})\n) WITHOUT ROWID;\n",
        name = storage_table(table),
        ty = table.type_column,
    )
}

/// Seed 000's table under its own name, as a view: money as a decimal with six places.
fn summary_view_ddl(table: &SummaryTable) -> String {
    let columns: Vec<String> = table
        .measures
        .iter()
        .map(|&m| {
            if m.is_money() {
                let stored = stored_column(m);
                format!(
                    "printf('%d.%06d', {stored} / 1000000, {stored} % 1000000) AS {}",
                    m.column()
                )
            } else {
                m.column().to_string()
            }
        })
        .collect();
    format!(
        "CREATE VIEW {name} AS SELECT '+' || msisdn_digits AS msisdn, date(event_day * 86400, 'unixepoch') AS event_date, {ty}, {columns} FROM {storage};\n",
        name = table.name,
        ty = table.type_column,
        columns = columns.join(", "),
        storage = storage_table(table),
    )
}

fn upsert_sql(table: &SummaryTable) -> String {
    let stored: Vec<String> = table.measures.iter().map(|&m| stored_column(m)).collect();
    let placeholders = vec!["?"; stored.len() + 3].join(", ");
    let updates: Vec<String> = stored
        .iter()
        .map(|c| format!("{c} = {c} + excluded.{c}"))
        .collect();
    format!(
        "INSERT INTO {name} (msisdn_digits, event_day, {ty}, {cols}) VALUES ({placeholders})
         ON CONFLICT (msisdn_digits, event_day, {ty}) DO UPDATE SET {updates}",
        name = storage_table(table),
        ty = table.type_column,
        cols = stored.join(", "),
        updates = updates.join(", "),
    )
}

fn select_sql(table: &SummaryTable, filter: &str) -> String {
    let stored: Vec<String> = table.measures.iter().map(|&m| stored_column(m)).collect();
    format!(
        "SELECT msisdn_digits, event_day, {ty}, {cols} FROM {name} {filter} ORDER BY msisdn_digits, event_day, {ty}",
        name = storage_table(table),
        ty = table.type_column,
        cols = stored.join(", "),
    )
}

pub struct SqliteStore {
    conn: Connection,
    path: std::path::PathBuf,
    /// Held while this handle processes files (see [`Store::lock_files`]).
    files_lock: Option<std::fs::File>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store file and applies migrations.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        disable_memory_statistics();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: dir.display().to_string(),
                why: e.to_string(),
            })?;
        }
        // Each store is used by one thread at a time: SQLite's own locking is pure overhead.
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
            | rusqlite::OpenFlags::SQLITE_OPEN_CREATE
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            why: e.to_string(),
        })?;
        // First: switching a new store to WAL needs its lock, which another
        // process opening it at the same moment may hold (seen as "database
        // is locked" from two runs started together).
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        // WAL with FULL sync: a commit survives a crash of the process or the machine.
        // Commits are per checkpoint, not per record, so the fsync is cheap.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "cache_size", -131_072)?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            files_lock: None,
        };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        // One write transaction for the check and every step, taken before
        // reading: two processes opening a new store at once must not both
        // find it empty and both create its tables.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
        )?;
        let current: i64 = tx.query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )?;
        let all = migrations();
        let known = all.last().map_or(0, |m| m.0);
        if current > known {
            return Err(StoreError::SchemaTooNew {
                found: current,
                known,
            });
        }
        for (version, sql) in all.into_iter().filter(|(v, _)| *v > current) {
            tx.execute_batch(&sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
                [version],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn write_summaries(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
        let mut statements = Vec::with_capacity(SUMMARY_TABLES.len());
        for table in &SUMMARY_TABLES {
            statements.push(tx.prepare_cached(&upsert_sql(table))?);
        }
        // In primary-key order, consecutive upserts touch neighbouring B-tree
        // pages: several times faster than hash order on a large table.
        let merged = commit.merged_summaries();
        let mut rows: Vec<_> = merged.rows().collect();
        rows.sort_unstable_by(|a, b| {
            (a.kind, a.msisdn, a.day, a.service_type).cmp(&(
                b.kind,
                b.msisdn,
                b.day,
                b.service_type,
            ))
        });
        let mut measures = [0i64; 6];
        for row in rows {
            let index = row.kind as usize;
            let table = &SUMMARY_TABLES[index];
            debug_assert_eq!(table.kind, row.kind);
            for (slot, &m) in measures.iter_mut().zip(table.measures) {
                *slot =
                    i64::try_from(m.value(row.totals)).map_err(|_| StoreError::TotalOverflow {
                        kind: row.kind,
                        msisdn: row.msisdn,
                        date: row.day,
                        service_type: row.service_type.to_string(),
                    })?;
            }
            let stmt = &mut statements[index];
            stmt.raw_bind_parameter(1, row.msisdn.digits() as i64)?;
            stmt.raw_bind_parameter(2, row.day.0)?;
            stmt.raw_bind_parameter(3, row.service_type)?;
            for (i, value) in measures[..table.measures.len()].iter().enumerate() {
                stmt.raw_bind_parameter(4 + i, value)?;
            }
            stmt.raw_execute()?;
        }
        Ok(())
    }

    fn read_summaries(
        &self,
        filter: &str,
        args: &[&dyn rusqlite::ToSql],
        visit: &mut dyn FnMut(SummaryRecord),
    ) -> Result<()> {
        for table in &SUMMARY_TABLES {
            let mut stmt = self.conn.prepare_cached(&select_sql(table, filter))?;
            let mut rows = stmt.query(args)?;
            while let Some(row) = rows.next()? {
                let digits: i64 = row.get(0)?;
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    let value: i64 = row.get(3 + i)?;
                    m.set(&mut totals, value);
                }
                visit(SummaryRecord {
                    kind: table.kind,
                    msisdn: Msisdn::from_digits(digits as u64).to_string(),
                    date: Day(row.get(1)?),
                    service_type: row.get(2)?,
                    totals,
                });
            }
        }
        Ok(())
    }
}

impl Store for SqliteStore {
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
        for (topic, partition) in rows
            .into_iter()
            .filter(|(t, _)| topics.is_empty() || topics.contains(t))
        {
            let Ok(offset) = target.offset_for(&topic, partition) else {
                continue;
            };
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

    fn clear_results(&mut self) -> Result<()> {
        let tx = self.conn.transaction()?;
        for table in &SUMMARY_TABLES {
            tx.execute(&format!("DELETE FROM {}", storage_table(table)), [])?;
        }
        tx.execute_batch(
            "DELETE FROM rejected_records; DELETE FROM dedup_state; DELETE FROM pipeline_counters;
             DELETE FROM pipeline_state; DELETE FROM source_positions;",
        )?;
        tx.commit()?;
        Ok(())
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
        let mut insert_reject = tx.prepare_cached(
            "INSERT INTO rejected_records (reason, detail, origin, position, payload) VALUES (?, ?, ?, ?, ?)",
        )?;
        let mut bump = tx.prepare_cached(
            "INSERT INTO pipeline_counters (name, value) VALUES (?, ?)
             ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
        )?;
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
            for blob in dedup_blobs(&checkpoint.dedup_entries) {
                tx.execute(
                    "INSERT INTO dedup_state (scope, min_minute, max_minute, entries) VALUES (?, ?, ?, ?)",
                    params![part.scope, blob.min_minute, blob.max_minute, blob.entries],
                )?;
            }
            if let Some(horizon) = part.dedup_horizon_minute {
                tx.execute(
                    "DELETE FROM dedup_state WHERE scope = ? AND max_minute < ?",
                    params![part.scope, horizon],
                )?;
            }
            for (name, value) in counter_entries(&checkpoint.counts) {
                bump.execute(params![name, value as i64])?;
            }
            if let Some(watermark) = checkpoint.watermark {
                tx.execute(
                    "INSERT INTO pipeline_state (scope, watermark_ms) VALUES (?, ?)
                     ON CONFLICT (scope) DO UPDATE SET watermark_ms = max(watermark_ms, excluded.watermark_ms)",
                    params![part.scope, watermark],
                )?;
            }
        }
        drop((insert_reject, bump));
        tx.commit()?;
        Ok(())
    }

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

    fn for_each_summary(&mut self, visit: &mut dyn FnMut(SummaryRecord)) -> Result<()> {
        self.read_summaries("", &[], visit)
    }

    fn rejects(&mut self, query: &RejectQuery, visit: &mut dyn FnMut(StoredReject)) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, reason, detail, origin, position, payload, rejected_at FROM rejected_records
             WHERE id > ?1 AND (?2 IS NULL OR reason = ?2) ORDER BY id LIMIT ?3",
        )?;
        let limit = query.limit.map_or(-1, i64::from);
        let mut rows = stmt.query(params![query.after_id, query.reason, limit])?;
        while let Some(r) = rows.next()? {
            visit(StoredReject {
                id: r.get(0)?,
                reason: r.get(1)?,
                detail: r.get(2)?,
                origin: r.get(3)?,
                position: r.get(4)?,
                payload: r.get(5)?,
                rejected_at: r.get(6)?,
            });
        }
        Ok(())
    }

    fn counts(&mut self) -> Result<Counts> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, value FROM pipeline_counters")?;
        let mut rows = stmt.query([])?;
        let mut counts = Counts::default();
        while let Some(r) = rows.next()? {
            let name: String = r.get(0)?;
            let value: i64 = r.get(1)?;
            apply_counter(&mut counts, &name, value as u64);
        }
        Ok(counts)
    }

    fn overview(&mut self, day: Day) -> Result<Vec<OverviewRow>> {
        let mut out = Vec::new();
        for table in &SUMMARY_TABLES {
            let sums: Vec<String> = table
                .measures
                .iter()
                .map(|&m| format!("sum({})", stored_column(m)))
                .collect();
            let sql = format!(
                "SELECT {ty}, count(DISTINCT msisdn_digits), {sums} FROM {name} WHERE event_day = ? GROUP BY {ty} ORDER BY {ty}",
                ty = table.type_column,
                sums = sums.join(", "),
                name = storage_table(table),
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let mut rows = stmt.query([day.0])?;
            while let Some(row) = rows.next()? {
                let mut totals = Totals::default();
                for (i, &m) in table.measures.iter().enumerate() {
                    m.set(&mut totals, row.get(2 + i)?);
                }
                out.push(OverviewRow {
                    kind: table.kind,
                    service_type: row.get(0)?,
                    subscribers: row.get::<_, i64>(1)? as u64,
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
            .map(|t| {
                format!(
                    "SELECT msisdn_digits, total_cost_wak_micros AS cost FROM {}",
                    storage_table(t)
                )
            })
            .collect();
        let sql = format!(
            "SELECT msisdn_digits, sum(cost) AS total FROM ({}) GROUP BY msisdn_digits ORDER BY total DESC, msisdn_digits LIMIT ?",
            parts.join(" UNION ALL ")
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([limit], |r| {
            let digits: i64 = r.get(0)?;
            Ok(TopSubscriber {
                msisdn: Msisdn::from_digits(digits as u64).to_string(),
                cost_micros: i128::from(r.get::<_, i64>(1)?),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// SQLite keeps global memory statistics behind a mutex that every malloc
/// takes; cdrflow never reads them, and the lock costs ~7% of a commit.
/// Must run before SQLite initialises, hence once, before the first open.
fn disable_memory_statistics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before any connection exists (guarded by
        // `Once`, and `open` is the only way this crate creates connections), which
        // is the documented precondition; SQLITE_CONFIG_MEMSTATUS takes one int.
        // A non-OK answer means SQLite was initialised elsewhere first: harmless, only slower.
        let _ = unsafe {
            rusqlite::ffi::sqlite3_config(
                rusqlite::ffi::SQLITE_CONFIG_MEMSTATUS,
                0 as std::os::raw::c_int,
            )
        };
    });
}

/// The counters a checkpoint adds, by stored name.
pub(crate) fn counter_entries(counts: &Counts) -> Vec<(String, u64)> {
    let mut out = vec![("records_in".to_string(), counts.records_in)];
    out.extend(
        counts
            .accepted
            .iter()
            .map(|(k, v)| (format!("accepted.{k}"), *v)),
    );
    out.extend(
        counts
            .rejected
            .iter()
            .map(|(k, v)| (format!("rejected.{k}"), *v)),
    );
    out.extend(
        counts
            .duplicates
            .iter()
            .map(|(k, v)| (format!("duplicates.{}", k.as_str()), *v)),
    );
    out.retain(|(_, v)| *v > 0);
    out
}

/// The inverse of [`counter_entries`]; unknown names are ignored.
pub(crate) fn apply_counter(counts: &mut Counts, name: &str, value: u64) {
    match name.split_once('.') {
        None if name == "records_in" => counts.records_in = value,
        Some(("accepted", kind)) => {
            if let Some(kind) = Kind::parse(kind) {
                counts.accepted.insert(kind, value);
            }
        }
        Some(("rejected", reason)) => {
            if let Some(reason) = RejectReason::parse(reason) {
                counts.rejected.insert(reason, value);
            }
        }
        Some(("duplicates", reason)) => {
            let reason = [
                DuplicateReason::SameRecordId,
                DuplicateReason::SameSourcePosition,
            ]
            .into_iter()
            .find(|r| r.as_str() == reason);
            if let Some(reason) = reason {
                counts.duplicates.insert(reason, value);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommitPart;
    use cdrflow_core::mediation::{MediationConfig, Mediator, MediatorState, RawRecord};
    use cdrflow_core::model::SourcePosition;
    use cdrflow_core::normalize::parse_timestamp;
    use cdrflow_core::rating::{Tariff, TariffOverrides};

    // The behaviour shared with PostgreSQL is in tests/conformance.rs; this
    // checks what only SQLite has: seed 000's names as views over the integer tables.
    #[test]
    fn seed_000_views_show_decimal_money_and_e164_numbers() {
        let dir = std::env::temp_dir().join(format!("cdrflow-sqlite-views-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut store = SqliteStore::open(&dir.join("s.db")).unwrap();
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(
            MediationConfig::default(),
            &tariff,
            MediatorState::default(),
        );
        let line = r#"{"cdr_id":"2","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#;
        let record = RawRecord {
            origin: "t",
            source_id: "t",
            position: SourcePosition::Line {
                line: 1,
                byte_offset: 0,
            },
            payload: line.as_bytes(),
        };
        mediator.process_batch(
            [record],
            parse_timestamp("2024-03-02T00:00:00Z").unwrap(),
            |_| cdrflow_core::mediation::LookupAnswer::default(),
        );
        let checkpoint = mediator.checkpoint();
        let parts = [CommitPart {
            scope: crate::FILES_SCOPE,
            checkpoint: &checkpoint,
            dedup_horizon_minute: None,
        }];
        store
            .commit(Commit {
                parts: &parts,
                cursors: &[],
            })
            .unwrap();
        let row: (String, String, String, i64) = store
            .conn
            .query_row("SELECT msisdn, event_date, total_cost_wak, total_duration_sec FROM daily_voice_summary", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(
            row,
            (
                "+27821234567".into(),
                "2024-03-01".into(),
                "0.016667".into(),
                1
            )
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
