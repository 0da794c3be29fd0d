//! The operational PostgreSQL a capture reads: its settings checked, the
//! publication and the slot, the snapshot's tables, the slot's changes.
//!
//! The slot is read with SQL (`pg_logical_slot_peek_binary_changes`, then
//! `pg_replication_slot_advance` once Kafka has the changes) rather than
//! the streaming replication protocol: the `postgres` crate speaks only the
//! ordinary one, and peeking then advancing is exactly the "send, then
//! confirm" order the capture needs.

use anyhow::{bail, Context, Result};
use cdrflow_core::cdc::capture::pgoutput::{Cell, Column, Lsn, Relation, Tuple};
use cdrflow_core::cdc::capture::{format_lsn, parse_lsn, SnapshotVisibility};
use cdrflow_store::postgres_tls::Connector;
use postgres::{Client, SimpleQueryMessage};

/// Rows a snapshot fetches per round trip.
const SNAPSHOT_FETCH: usize = 5_000;

pub struct Source {
    client: Client,
    slot: String,
    publication: String,
    pub database: String,
}

/// `"name"`, with inner quotes doubled.
fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// One change the slot holds: where it is, and its pgoutput bytes.
pub struct SlotChange {
    pub lsn: Lsn,
    pub data: Vec<u8>,
}

impl Source {
    /// Connects and checks what logical decoding needs, saying what to change.
    pub fn connect(url: &str, slot: &str, publication: &str) -> Result<Source> {
        let connector = Connector::from_url(url).map_err(anyhow::Error::msg)?;
        let mut client = connector.connect().with_context(|| {
            "cannot connect to the source database (--source / CDRFLOW_CDC_SOURCE)".to_string()
        })?;
        // Text output as the capture writes it: UTC offsets, ISO dates, hex bytea.
        client
            .batch_execute("SET TimeZone = 'UTC'; SET DateStyle = 'ISO'; SET bytea_output = 'hex'")
            .context("cannot set the capture session's output settings")?;
        let setting = |client: &mut Client, name: &str| -> Result<String> {
            Ok(client
                .query_one(&format!("SHOW {name}"), &[])
                .with_context(|| format!("cannot read the source database's {name}"))?
                .get(0))
        };
        let wal_level = setting(&mut client, "wal_level")?;
        if wal_level != "logical" {
            bail!(
                "the source database's wal_level is `{wal_level}`; logical decoding needs `logical`: \
                 run ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
            );
        }
        if setting(&mut client, "max_replication_slots")?
            .parse::<u32>()
            .unwrap_or(0)
            == 0
        {
            bail!("the source database allows no replication slots: set max_replication_slots to at least 1 and restart PostgreSQL");
        }
        let row = client.query_one(
            "SELECT current_database()::text, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user",
            &[],
        )?;
        let (database, may_replicate): (String, bool) = (row.get(0), row.get(1));
        if !may_replicate {
            bail!("the source database's user may not read replication slots: ALTER ROLE <user> REPLICATION");
        }
        Ok(Source {
            client,
            slot: slot.to_string(),
            publication: publication.to_string(),
            database,
        })
    }

    /// Makes sure the publication exists (creating it for `tables` when
    /// given) and returns the tables it publishes, as (schema, table).
    pub fn published_tables(&mut self, tables: &[String]) -> Result<Vec<(String, String)>> {
        let exists = !self
            .client
            .query(
                "SELECT 1 FROM pg_publication WHERE pubname = $1",
                &[&self.publication],
            )?
            .is_empty();
        if !exists {
            if tables.is_empty() {
                bail!(
                    "the source database has no publication `{0}`: create it \
                     (CREATE PUBLICATION {0} FOR TABLE public.subscribers, public.plans, …) \
                     or pass --tables SCHEMA.TABLE,… to have cdrflow create it",
                    self.publication
                );
            }
            let names: Vec<String> = tables
                .iter()
                .map(|t| match t.split_once('.') {
                    Some((schema, table)) => format!("{}.{}", quote(schema), quote(table)),
                    None => quote(t),
                })
                .collect();
            self.client
                .batch_execute(&format!(
                    "CREATE PUBLICATION {} FOR TABLE {}",
                    quote(&self.publication),
                    names.join(", ")
                ))
                .with_context(|| format!("cannot create the publication `{}`", self.publication))?;
            tracing::info!(
                "created the publication `{}` for {}",
                self.publication,
                tables.join(", ")
            );
        }
        let published: Vec<(String, String)> = self
            .client
            .query(
                "SELECT schemaname::text, tablename::text FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1, 2",
                &[&self.publication],
            )?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if published.is_empty() {
            bail!(
                "the publication `{0}` publishes no table: ALTER PUBLICATION {0} ADD TABLE …",
                self.publication
            );
        }
        Ok(published)
    }

    /// The table's shape as a pgoutput Relation message would give it.
    pub fn relation(&mut self, schema: &str, table: &str) -> Result<Relation> {
        let rows = self.client.query(
            "SELECT c.oid, c.relreplident::text, a.attname::text, a.atttypid, a.atttypmod,
                    coalesce(a.attnum = any(i.indkey), false)
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisprimary
             WHERE n.nspname = $1 AND c.relname = $2
             ORDER BY a.attnum",
            &[&schema, &table],
        )?;
        let Some(first) = rows.first() else {
            bail!("the published table {schema}.{table} has no columns cdrflow can see");
        };
        let (id, identity): (u32, String) = (first.get(0), first.get(1));
        let columns: Vec<Column> = rows
            .iter()
            .map(|row| Column {
                name: row.get(2),
                type_oid: row.get(3),
                type_modifier: row.get(4),
                key: row.get(5),
            })
            .collect();
        if identity == "d" && !columns.iter().any(|c| c.key) {
            tracing::warn!(
                "{schema}.{table} has no primary key: its events carry no key, and its deletes and \
                 updates cannot be told apart by row; give it one, or ALTER TABLE {schema}.{table} REPLICA IDENTITY FULL"
            );
        }
        Ok(Relation {
            id,
            schema: schema.to_string(),
            table: table.to_string(),
            replica_identity: identity.bytes().next().unwrap_or(b'd'),
            columns,
        })
    }

    /// The slot's plugin and whether some session is reading it now;
    /// `None` when there is no such slot.
    fn slot_state(&mut self) -> Result<Option<(String, String, bool)>> {
        Ok(self
            .client
            .query(
                "SELECT coalesce(plugin, '')::text, coalesce(database, '')::text, active \
                 FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )?
            .first()
            .map(|row| (row.get(0), row.get(1), row.get(2))))
    }

    /// Whether the slot exists, checking that it is one this capture can read.
    pub fn slot_exists(&mut self) -> Result<bool> {
        let Some((plugin, database, active)) = self.slot_state()? else {
            return Ok(false);
        };
        if plugin != "pgoutput" || database != self.database {
            bail!(
                "the replication slot `{}` exists for plugin `{plugin}` on database `{database}`, \
                 not pgoutput on `{}`: pass another --slot, or drop it (SELECT pg_drop_replication_slot('{}'))",
                self.slot, self.database, self.slot
            );
        }
        if active {
            bail!("the replication slot `{}` is in use by another session: is another capture running?", self.slot);
        }
        Ok(true)
    }

    pub fn drop_slot(&mut self) -> Result<()> {
        self.client
            .execute("SELECT pg_drop_replication_slot($1)", &[&self.slot])
            .with_context(|| format!("cannot drop the replication slot `{}`", self.slot))?;
        Ok(())
    }

    /// Creates the slot; returns where its decoding starts (`restart_lsn`),
    /// below every change it will ever stream.
    pub fn create_slot(&mut self) -> Result<Lsn> {
        self.client
            .execute(
                "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
                &[&self.slot],
            )
            .with_context(|| format!("cannot create the replication slot `{}`", self.slot))?;
        let start: String = self
            .client
            .query_one(
                "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1",
                &[&self.slot],
            )?
            .get(0);
        parse_lsn(&start).with_context(|| format!("PostgreSQL gave `{start}` as an LSN"))
    }

    /// Reads every table in one REPEATABLE READ transaction begun after the
    /// slot was created, giving `rows` each batch of each table. Returns
    /// what the snapshot saw, to keep the stream from sending it again.
    pub fn snapshot(
        &mut self,
        relations: &[Relation],
        mut rows: impl FnMut(usize, Vec<Tuple>) -> Result<()>,
    ) -> Result<SnapshotVisibility> {
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        // The transaction's snapshot is taken by its first statement: this one.
        let row = tx.query_one(
            "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text",
            &[],
        )?;
        let (seen, until): (String, String) = (row.get(0), row.get(1));
        let until =
            parse_lsn(&until).with_context(|| format!("PostgreSQL gave `{until}` as an LSN"))?;
        let visibility = SnapshotVisibility::parse(&seen, until).map_err(anyhow::Error::msg)?;
        for (index, relation) in relations.iter().enumerate() {
            let columns: Vec<String> = relation.columns.iter().map(|c| quote(&c.name)).collect();
            tx.batch_execute(&format!(
                "DECLARE cdrflow_snapshot NO SCROLL CURSOR FOR SELECT {} FROM {}.{}",
                columns.join(", "),
                quote(&relation.schema),
                quote(&relation.table)
            ))?;
            loop {
                // The simple protocol returns every column as its text output,
                // as pgoutput sends it.
                let batch: Vec<Tuple> = tx
                    .simple_query(&format!("FETCH {SNAPSHOT_FETCH} FROM cdrflow_snapshot"))?
                    .into_iter()
                    .filter_map(|message| match message {
                        SimpleQueryMessage::Row(row) => Some(
                            (0..row.len())
                                .map(|i| {
                                    row.get(i).map_or(Cell::Null, |t| Cell::Text(t.to_string()))
                                })
                                .collect(),
                        ),
                        _ => None,
                    })
                    .collect();
                if batch.is_empty() {
                    break;
                }
                rows(index, batch)?;
            }
            tx.batch_execute("CLOSE cdrflow_snapshot")?;
        }
        tx.commit()?;
        Ok(visibility)
    }

    /// Up to `changes` changes (whole transactions) the slot holds past
    /// what was confirmed, without consuming them, of the transactions
    /// committed before the WAL flushed so far. Also returns that flush
    /// position when the read reached it (fewer changes than asked): every
    /// transaction committed before it has then been returned, so the slot
    /// may be confirmed up to it even when none was for the publication.
    /// Without that, a slot on a database whose WAL grows from other work
    /// (another database in the cluster, unpublished tables) was never
    /// confirmed past its last change, its restart point never moved, and
    /// every read decoded all the WAL since again.
    pub fn peek(&mut self, changes: i32) -> Result<(Vec<SlotChange>, Option<Lsn>)> {
        let flushed: String = self
            .client
            .query_one("SELECT pg_current_wal_flush_lsn()::text", &[])?
            .get(0);
        let rows = self
            .client
            .query(
                "SELECT lsn::text, data FROM pg_logical_slot_peek_binary_changes($1, $2::text::pg_lsn, $3, \
                 'proto_version', '1', 'publication_names', $4)",
                &[&self.slot, &flushed, &changes, &publication_names(&self.publication)],
            )
            .with_context(|| format!("cannot read the replication slot `{}`", self.slot))?;
        let covered = (rows.len() < changes as usize)
            .then(|| parse_lsn(&flushed))
            .flatten();
        let changes = rows
            .iter()
            .map(|row| {
                let lsn: String = row.get(0);
                Ok(SlotChange {
                    lsn: parse_lsn(&lsn)
                        .with_context(|| format!("PostgreSQL gave `{lsn}` as an LSN"))?,
                    data: row.get(1),
                })
            })
            .collect::<Result<_>>()?;
        Ok((changes, covered))
    }

    /// Confirms everything before `lsn`: the slot lets PostgreSQL recycle it.
    pub fn advance(&mut self, lsn: Lsn) -> Result<()> {
        self.client
            .execute(
                "SELECT pg_replication_slot_advance($1, $2::text::pg_lsn)",
                &[&self.slot, &format_lsn(lsn)],
            )
            .with_context(|| {
                format!(
                    "cannot advance the replication slot `{}` to {}",
                    self.slot,
                    format_lsn(lsn)
                )
            })?;
        Ok(())
    }

    /// Where the slot is confirmed to, and where the WAL is now.
    pub fn positions(&mut self) -> Result<(Lsn, Lsn)> {
        let row = self.client.query_one(
            "SELECT confirmed_flush_lsn::text, pg_current_wal_lsn()::text FROM pg_replication_slots WHERE slot_name = $1",
            &[&self.slot],
        )?;
        let (slot, wal): (String, String) = (row.get(0), row.get(1));
        Ok((parse_lsn(&slot).unwrap_or(0), parse_lsn(&wal).unwrap_or(0)))
    }
}

/// pgoutput's `publication_names` is a comma-separated list of names,
/// quoted as identifiers where they need it.
fn publication_names(publication: &str) -> String {
    if publication
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        publication.to_string()
    } else {
        quote(publication)
    }
}
