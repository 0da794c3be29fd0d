//! The embedded store: one SQLite file, WAL mode, one transaction per checkpoint.
//!
//! Summaries live in `*_totals` tables keyed by integers (E.164 digits, day
//! number) with integer measures and money in micro-units
//! (`total_cost_wak_micros`), so sums stay exact and upserts stay cheap. Seed 000's names (`daily_data_summary` with `total_cost_wak`, ...)
//! are views over them that show money as decimals with six places. (A
//! generated column did the same but made every upsert ~30% slower.) SQLite silently turns an
//! overflowing integer sum into a float, so every measure carries a CHECK
//! that it is still an integer: an overflow aborts the commit instead.

mod analytics;
mod billing;
mod charges;
mod daily;
mod lake;
mod operator_state;
mod overview;
mod positions;
mod reference;
mod rejects;
mod results;
mod retention;
mod search;
mod usage;

use std::path::Path;

use cdrflow_core::aggregate::{RowKey, Totals};
use cdrflow_core::analytics::windows::{PartitionMark, WindowMeasures};
use cdrflow_core::mediation::Counts;
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{Day, EpochMillis, Msisdn};
use cdrflow_core::operator::StateChange;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::codecs::{apply_counter, clamp_day, counter_entries};
use crate::prelude::*;
use crate::schema::{Measure, SummaryTable, SUMMARY_TABLES};
use crate::{
    Commit, Cursor, KafkaPosition, OverviewRow, PartitionClaim, RejectQuery, ReplayTarget, Result,
    SourceCursor, StateAt, StoreError, StoredReject, SummaryRecord, TopSubscriber,
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
    vec![
        (1, v1),
        (2, v2),
        (
            3,
            crate::codecs::operator_state_v3(&crate::codecs::Dialect {
                serial_key: "INTEGER PRIMARY KEY AUTOINCREMENT",
                bytes: "BLOB",
                integer_as_text_bytes: "CAST(CAST({} AS TEXT) AS BLOB)",
            }),
        ),
        (4, analytics::V4.to_string()),
        (5, daily::v5()),
        (6, crate::codecs::RATING_V6.to_string()),
        (7, crate::codecs::LAKE_V7.to_string()),
        (8, crate::codecs::billing_v8(" WITHOUT ROWID")),
        (9, crate::codecs::NOTES_V9.to_string()),
        (10, crate::codecs::ITEMS_BY_KEY_ONLY_V10.to_string()),
        (11, crate::codecs::CDC_V11.to_string()),
        (12, crate::codecs::LATE_CHANGES_V12.to_string()),
        (13, search::SEARCH_V13.to_string()),
        (14, crate::codecs::BUNDLES_V14.to_string()),
        (15, crate::codecs::SPEND_REPORTS_V15.to_string()),
        (16, crate::codecs::SUBSCRIBERS_UNINDEXED_V16.to_string()),
        (17, crate::codecs::RATED_CELLS_V17.to_string()),
    ]
}

/// Adds `?2` to the counter named `?1`.
const BUMP_COUNTER: &str = "INSERT INTO pipeline_counters (name, value) VALUES (?1, ?2)
     ON CONFLICT (name) DO UPDATE SET value = value + excluded.value";

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
        // Statement journals (the undo of one statement inside a
        // transaction: an upsert, a multi-row insert) in memory, not in a
        // temporary file: written page by page, they were a fifth of a
        // large billing run.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
        let mut store = SqliteStore {
            conn,
            path: path.to_path_buf(),
            files_lock: None,
        };
        store.migrate()?;
        search::rebuild_if_needed(&mut store)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CommitPart;
    use cdrflow_core::mediation::{MediationConfig, Mediator, RawRecord};
    use cdrflow_core::model::SourcePosition;
    use cdrflow_core::normalize::parse_timestamp;
    use cdrflow_core::operator::{BatchContext, Checkpoint, MemoryState, Operator};
    use cdrflow_core::rating::{Tariff, TariffOverrides};

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("cdrflow-sqlite-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    // The behaviour shared with PostgreSQL is in tests/conformance; this
    // checks what only SQLite has: seed 000's names as views over the integer tables.
    #[test]
    fn seed_000_views_show_decimal_money_and_e164_numbers() {
        let dir = temp_dir("views");
        let mut store = SqliteStore::open(&dir.join("s.db")).unwrap();
        let tariff = Tariff::default_with(&TariffOverrides::default()).unwrap();
        let mut mediator = Mediator::new(MediationConfig::default(), &tariff);
        let line = r#"{"cdr_id":"2","msisdn":"0821234567","start_time":"2024-03-01T10:00:00Z","call_type":"voice","call_duration_sec":1}"#;
        let record = RawRecord {
            origin: "t",
            source_id: "t",
            position: SourcePosition::Line {
                line: 1,
                byte_offset: 0,
            },
            payload: line.as_bytes(),
            cut_from: None,
        };
        let mut context = BatchContext {
            now: parse_timestamp("2024-03-02T00:00:00Z").unwrap(),
            state: &mut MemoryState::new("mediation"),
        };
        mediator
            .process_batch(&[record], &mut context, &mut Vec::new())
            .unwrap();
        let mut checkpoint = Checkpoint::default();
        mediator.checkpoint(&mut checkpoint);
        let parts = [CommitPart {
            scope: crate::FILES_SCOPE,
            checkpoint: &checkpoint,
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

    /// A store written by schema v2 (the mediator's own tables) opens with
    /// the same watermark and identities under `operator_state`.
    #[test]
    fn a_version_2_store_keeps_its_mediation_state() {
        let dir = temp_dir("v2");
        let path = dir.join("s.db");
        let old = crate::codecs::tests::Version2State::example();
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            for (version, sql) in migrations().into_iter().filter(|(v, _)| *v <= 2) {
                conn.execute_batch(&sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, 'then')",
                    [version],
                )
                .unwrap();
            }
            for (scope, first, last, entries) in &old.dedup {
                conn.execute(
                    "INSERT INTO dedup_state (scope, min_minute, max_minute, entries) VALUES (?, ?, ?, ?)",
                    params![scope, first, last, entries],
                )
                .unwrap();
            }
            for (scope, watermark) in &old.watermarks {
                conn.execute(
                    "INSERT INTO pipeline_state (scope, watermark_ms) VALUES (?, ?)",
                    params![scope, watermark],
                )
                .unwrap();
            }
        }
        let mut store = SqliteStore::open(&path).unwrap();
        old.check(&mut store);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A store with reference rows from before the search index (v12)
    /// gets its index built from them when it is opened, and only then.
    #[test]
    fn a_version_12_store_gets_its_search_index_built() {
        use crate::codecs::tests::{check_version_12_search, found, VERSION_12_CUSTOMERS};
        let dir = temp_dir("v12");
        let path = dir.join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)",
            )
            .unwrap();
            for (version, sql) in migrations().into_iter().filter(|(v, _)| *v <= 12) {
                conn.execute_batch(&sql).unwrap();
                conn.execute(
                    "INSERT INTO schema_migrations VALUES (?, 'then')",
                    [version],
                )
                .unwrap();
            }
            conn.execute_batch(VERSION_12_CUSTOMERS).unwrap();
        }
        let mut store = SqliteStore::open(&path).unwrap();
        check_version_12_search(&mut store);
        // Built once: an index emptied behind the store's back stays empty.
        store
            .conn
            .execute("DELETE FROM search_documents", [])
            .unwrap();
        drop(store);
        let mut store = SqliteStore::open(&path).unwrap();
        assert!(found(&mut store, "hotel").is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
