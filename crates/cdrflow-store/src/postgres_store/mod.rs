//! The shared store: PostgreSQL, for several cdrflow processes at once.
//!
//! Seed 000's tables appear under their own names and columns
//! (`daily_data_summary(msisdn, event_date, data_type, total_up_bytes,
//! total_down_bytes, total_cost_wak)`, ...), money as exact `NUMERIC(20,6)`.
//! A checkpoint's summary rows go in as one `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO UPDATE` per table — one round trip, not one per row — with
//! money passed as integer micro-units and scaled inside PostgreSQL, exactly.
//! Processes sharing the database are kept apart by the epoch on each Kafka
//! partition's offset row: a commit with a stale epoch is refused whole.

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

use cdrflow_core::aggregate::{RowKey, Totals};
use cdrflow_core::analytics::windows::{PartitionMark, WindowMeasures};
use cdrflow_core::mediation::Counts;
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{Day, EpochMillis, Msisdn};
use cdrflow_core::operator::StateChange;
use postgres::{Client, Transaction};

use crate::codecs::{apply_counter, clamp_day, counter_entries};
use crate::postgres_tls::Connector;
use crate::prelude::*;
use crate::schema::{Measure, SummaryTable, SUMMARY_TABLES};
use crate::{
    Commit, Cursor, KafkaCursor, KafkaPosition, OverviewRow, PartitionClaim, RejectQuery,
    ReplayTarget, Result, SourceCursor, StateAt, StoreError, StoredReject, SummaryRecord,
    TopSubscriber,
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
    vec![
        (1, v1),
        (2, v2),
        (
            3,
            crate::codecs::operator_state_v3(&crate::codecs::Dialect {
                serial_key: "BIGSERIAL PRIMARY KEY",
                bytes: "BYTEA",
                integer_as_text_bytes: "convert_to({}::text, 'UTF8')",
            }),
        ),
        (4, analytics::V4.to_string()),
        (5, daily::v5()),
        (6, crate::codecs::RATING_V6.to_string()),
        (7, crate::codecs::LAKE_V7.to_string()),
        (8, crate::codecs::billing_v8("")),
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
            // Multiplying keeps every digit; PostgreSQL's numeric division
            // rounds to ~16 significant digits.
            format!("{name}::numeric * 0.000001")
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
        search::rebuild_if_needed(&mut store)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A store written by schema v2 (the mediator's own tables) opens with
    /// the same watermark and identities under `operator_state`. Needs
    /// PostgreSQL on 127.0.0.1:5432 (or `CDRFLOW_TEST_POSTGRES`): fails without.
    /// A fresh database (`CDRFLOW_TEST_POSTGRES`'s server, or
    /// 127.0.0.1:5432: fails without) with the migrations up to `version`
    /// applied: its URL and a client.
    fn database_at_version(name: &str, version: i32) -> (String, postgres::Client) {
        let admin_url = std::env::var("CDRFLOW_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let mut admin = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("PostgreSQL must be reachable at {admin_url}: {e}"));
        let db = format!("cdrflow_test_{name}_{}", std::process::id());
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {db}"))
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {db}"))
            .unwrap();
        let url = format!("{}/{db}", &admin_url[..admin_url.rfind('/').unwrap()]);
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .batch_execute(
                "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
            )
            .unwrap();
        for (v, sql) in migrations().into_iter().filter(|(v, _)| *v <= version) {
            client.batch_execute(&sql).unwrap();
            client
                .execute("INSERT INTO schema_migrations (version) VALUES ($1)", &[&v])
                .unwrap();
        }
        (url, client)
    }

    /// A store with reference rows from before the search index (v12)
    /// gets its index built from them when it is opened.
    #[test]
    fn a_version_12_store_gets_its_search_index_built() {
        let (url, mut client) = database_at_version("v12_search", 12);
        client
            .batch_execute(crate::codecs::tests::VERSION_12_CUSTOMERS)
            .unwrap();
        let mut store = PgStore::connect(&url).unwrap();
        crate::codecs::tests::check_version_12_search(&mut store);
    }

    #[test]
    fn a_version_2_store_keeps_its_mediation_state() {
        let old = crate::codecs::tests::Version2State::example();
        let (url, mut client) = database_at_version("v2_migration", 2);
        {
            for (scope, first, last, entries) in &old.dedup {
                client
                    .execute(
                        "INSERT INTO dedup_state (scope, min_minute, max_minute, entries) VALUES ($1, $2, $3, $4)",
                        &[scope, first, last, entries],
                    )
                    .unwrap();
            }
            for (scope, watermark) in &old.watermarks {
                client
                    .execute(
                        "INSERT INTO pipeline_state (scope, watermark_ms) VALUES ($1, $2)",
                        &[scope, watermark],
                    )
                    .unwrap();
            }
        }
        let mut store = PgStore::connect(&url).unwrap();
        old.check(&mut store);
    }
}
