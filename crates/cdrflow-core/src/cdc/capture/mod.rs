//! The other side of [`super::envelope`]: PostgreSQL's logical decoding
//! written as Debezium's change events, for `cdrflow cdc capture`.
//!
//! Debezium cannot run here (no Java), and users without Kafka Connect
//! still want their reference tables live; so cdrflow produces the same
//! events itself. [`pgoutput`] reads the built-in plugin's messages,
//! [`columns`] writes each column as the Debezium PostgreSQL connector
//! does, [`snapshot`] keeps the initial snapshot and the stream from
//! overlapping, and [`Capture`] turns a slot's messages, transaction by
//! transaction, into Kafka records — what Debezium would have sent, with
//! schemas, keys, tombstones after deletes and transaction metadata.
//! Pure: the command at the edge reads the slot, produces the records, and
//! advances the slot only once Kafka has them.

pub mod columns;
pub mod pgoutput;
pub mod snapshot;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::json;

use self::columns::{push_json_string, ColumnKind, UNAVAILABLE_VALUE};
use self::pgoutput::{Begin, Cell, Lsn, Message, PgoutputError, Relation, Tuple};
pub use self::snapshot::SnapshotVisibility;
use super::envelope::Op;

/// Which database the events say they come from.
#[derive(Clone, Debug)]
pub struct Origin {
    /// Debezium's `topic.prefix` (`database.server.name`): topics are
    /// `<prefix>.<schema>.<table>`, and `source.name` says it.
    pub prefix: String,
    /// `source.db`.
    pub database: String,
    /// Whether BEGIN and END events go to `<prefix>.transaction`.
    pub transaction_topic: bool,
}

impl Origin {
    /// Where a table's events go: `<prefix>.<schema>.<table>`.
    pub fn topic(&self, schema: &str, table: &str) -> String {
        format!("{}.{schema}.{table}", self.prefix)
    }

    pub fn transaction_topic_name(&self) -> String {
        format!("{}.transaction", self.prefix)
    }
}

/// One Kafka record: a null value is a tombstone.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub key: Option<String>,
    pub value: Option<String>,
}

/// Where a change stands, as its `source` and `transaction` blocks say.
#[derive(Clone, Copy, Debug)]
pub struct Place<'a> {
    /// `source.lsn`: the change's own WAL position (or, for snapshot rows,
    /// the slot's start: below every streamed change).
    pub lsn: Lsn,
    /// `source.ts_ms`: the commit time, or when the snapshot read the row.
    pub committed_at_ms: i64,
    /// `source.snapshot`: `false`, `true`, or `last` on the final row.
    pub snapshot: &'static str,
    pub transaction: Option<TransactionPlace<'a>>,
}

#[derive(Clone, Copy, Debug)]
pub struct TransactionPlace<'a> {
    /// `<xid>:<commit LSN>`, as Debezium names a transaction.
    pub id: &'a str,
    pub xid: u32,
    pub total_order: u64,
    pub data_collection_order: u64,
}

/// One table's events: its topic, and its schemas written once.
#[derive(Clone, Debug)]
pub struct TableEvents {
    relation: Relation,
    topic: Arc<str>,
    /// `public.plans`: a transaction's data collection.
    collection: String,
    kinds: Vec<ColumnKind>,
    /// Column names as JSON strings, with the quotes.
    names: Vec<String>,
    key_columns: Vec<usize>,
    key_schema: String,
    value_schema: String,
    /// The `source` block up to the fields that vary per change.
    source_head: String,
}

impl TableEvents {
    pub fn new(origin: &Origin, relation: Relation) -> TableEvents {
        let topic = origin.topic(&relation.schema, &relation.table);
        let kinds: Vec<ColumnKind> = relation
            .columns
            .iter()
            .map(|c| ColumnKind::of(c.type_oid, c.type_modifier))
            .collect();
        let key_columns: Vec<usize> = (0..relation.columns.len())
            .filter(|&i| relation.columns[i].key)
            .collect();
        let field = |i: usize| kinds[i].schema(&relation.columns[i].name, !relation.columns[i].key);
        let row_schema = |side: &str| {
            json!({
                "type": "struct", "optional": true, "name": format!("{topic}.Value"),
                "fields": (0..kinds.len()).map(field).collect::<Vec<_>>(), "field": side,
            })
        };
        let key_schema = json!({
            "type": "struct", "optional": false, "name": format!("{topic}.Key"),
            "fields": key_columns.iter().map(|&i| field(i)).collect::<Vec<_>>(),
        });
        let optional =
            |kind: &str, field: &str| json!({"type": kind, "optional": true, "field": field});
        let required =
            |kind: &str, field: &str| json!({"type": kind, "optional": false, "field": field});
        let value_schema = json!({
            "type": "struct", "optional": false, "name": format!("{topic}.Envelope"), "version": 1,
            "fields": [
                row_schema("before"),
                row_schema("after"),
                {
                    "type": "struct", "optional": false, "field": "source",
                    "name": "io.debezium.connector.postgresql.Source",
                    "fields": [
                        required("string", "version"), required("string", "connector"),
                        required("string", "name"), required("int64", "ts_ms"),
                        {"type": "string", "optional": true, "name": "io.debezium.data.Enum",
                         "version": 1, "parameters": {"allowed": "true,last,false,incremental"},
                         "default": "false", "field": "snapshot"},
                        required("string", "db"), optional("string", "sequence"),
                        required("string", "schema"), required("string", "table"),
                        optional("int64", "txId"), optional("int64", "lsn"), optional("int64", "xmin"),
                    ],
                },
                required("string", "op"),
                optional("int64", "ts_ms"),
                {
                    "type": "struct", "optional": true, "name": "event.block", "version": 1,
                    "field": "transaction",
                    "fields": [
                        required("string", "id"), required("int64", "total_order"),
                        required("int64", "data_collection_order"),
                    ],
                },
            ],
        });
        let mut source_head = String::from("{\"version\":");
        push_json_string(
            &mut source_head,
            concat!("cdrflow-", env!("CARGO_PKG_VERSION")),
        );
        source_head.push_str(",\"connector\":\"postgresql\",\"name\":");
        push_json_string(&mut source_head, &origin.prefix);
        source_head.push_str(",\"db\":");
        push_json_string(&mut source_head, &origin.database);
        source_head.push_str(",\"schema\":");
        push_json_string(&mut source_head, &relation.schema);
        source_head.push_str(",\"table\":");
        push_json_string(&mut source_head, &relation.table);
        let names = relation
            .columns
            .iter()
            .map(|c| serde_json::Value::from(c.name.as_str()).to_string())
            .collect();
        TableEvents {
            collection: format!("{}.{}", relation.schema, relation.table),
            topic: topic.into(),
            kinds,
            names,
            key_columns,
            key_schema: key_schema.to_string(),
            value_schema: value_schema.to_string(),
            source_head,
            relation,
        }
    }

    pub fn relation(&self) -> &Relation {
        &self.relation
    }

    pub fn topic(&self) -> &Arc<str> {
        &self.topic
    }

    /// The key message of the row `tuple` holds: its key columns, or none
    /// for a table without a primary key (Debezium then sends a null key).
    pub fn key(&self, tuple: &Tuple, problems: &mut Vec<String>) -> Option<String> {
        if self.key_columns.is_empty() {
            return None;
        }
        let mut out = String::with_capacity(self.key_schema.len() + 64);
        out.push_str("{\"schema\":");
        out.push_str(&self.key_schema);
        out.push_str(",\"payload\":");
        self.write_row(tuple, self.key_columns.iter().copied(), &mut out, problems);
        out.push('}');
        Some(out)
    }

    /// The value message of one change.
    pub fn change(
        &self,
        op: Op,
        before: Option<&Tuple>,
        after: Option<&Tuple>,
        place: &Place<'_>,
        now_ms: i64,
        problems: &mut Vec<String>,
    ) -> String {
        let mut out = String::with_capacity(self.value_schema.len() + 512);
        out.push_str("{\"schema\":");
        out.push_str(&self.value_schema);
        out.push_str(",\"payload\":{\"before\":");
        match before {
            Some(tuple) => self.write_row(tuple, 0..self.kinds.len(), &mut out, problems),
            None => out.push_str("null"),
        }
        out.push_str(",\"after\":");
        match after {
            Some(tuple) => self.write_row(tuple, 0..self.kinds.len(), &mut out, problems),
            None => out.push_str("null"),
        }
        out.push_str(",\"source\":");
        out.push_str(&self.source_head);
        let tx_id = place
            .transaction
            .map_or("null".to_string(), |t| t.xid.to_string());
        out.push_str(&format!(
            ",\"ts_ms\":{},\"snapshot\":\"{}\",\"sequence\":null,\"txId\":{tx_id},\"lsn\":{},\"xmin\":null}}",
            place.committed_at_ms, place.snapshot, place.lsn
        ));
        out.push_str(",\"op\":\"");
        out.push_str(op.code());
        out.push_str(&format!("\",\"ts_ms\":{now_ms},\"transaction\":"));
        match place.transaction {
            Some(t) => {
                out.push_str("{\"id\":");
                push_json_string(&mut out, t.id);
                out.push_str(&format!(
                    ",\"total_order\":{},\"data_collection_order\":{}}}",
                    t.total_order, t.data_collection_order
                ));
            }
            None => out.push_str("null"),
        }
        out.push_str("}}");
        out
    }

    /// `{"column":value,…}` for the columns at `columns`.
    fn write_row(
        &self,
        tuple: &Tuple,
        columns: impl Iterator<Item = usize>,
        out: &mut String,
        problems: &mut Vec<String>,
    ) {
        out.push('{');
        for (n, i) in columns.enumerate() {
            if n > 0 {
                out.push(',');
            }
            out.push_str(&self.names[i]);
            out.push(':');
            let kind = self.kinds[i];
            match tuple.get(i) {
                Some(Cell::Text(text)) => {
                    let mark = out.len();
                    if let Err(why) = kind.write(text, out) {
                        out.truncate(mark);
                        out.push_str("null");
                        problems.push(format!(
                            "{}.{}: {why}; sent as null",
                            self.collection, self.relation.columns[i].name
                        ));
                    }
                }
                Some(Cell::Unchanged) if kind.takes_placeholder() => {
                    push_json_string(out, UNAVAILABLE_VALUE)
                }
                Some(Cell::Null | Cell::Unchanged) | None => out.push_str("null"),
            }
        }
        out.push('}');
    }
}

/// Why the slot's messages cannot be turned into events. Each stops the
/// capture: skipping a message would lose a change for good.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("at WAL position {lsn}: {source}")]
    Decode { lsn: String, source: PgoutputError },
    #[error("at WAL position {lsn}: a change to relation {relation}, which no Relation message described")]
    UnknownRelation { lsn: String, relation: u32 },
    #[error("at WAL position {lsn}: a {what} outside a transaction")]
    OutsideTransaction { lsn: String, what: &'static str },
}

/// `0/16B3748`, as PostgreSQL writes an LSN.
pub fn format_lsn(lsn: Lsn) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xffff_ffff)
}

/// Reads `0/16B3748`.
pub fn parse_lsn(text: &str) -> Option<Lsn> {
    let (high, low) = text.trim().split_once('/')?;
    Some(u64::from_str_radix(high, 16).ok()? << 32 | u64::from_str_radix(low, 16).ok()?)
}

/// What a message did to the transaction in hand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fed {
    /// Part of a transaction: wait for its end.
    Within,
    /// A transaction ended; once its records are acknowledged the slot may
    /// advance to `end_lsn`. `skipped`: the snapshot already held it.
    Committed { end_lsn: Lsn, skipped: bool },
}

struct OpenTransaction {
    begin: Begin,
    id: String,
    skipped: bool,
    total_order: u64,
    /// Events per relation id (named at the END event).
    per_relation: HashMap<u32, u64>,
}

/// A slot's messages, in order, to Kafka records.
pub struct Capture {
    origin: Origin,
    tables: HashMap<u32, TableEvents>,
    visibility: Option<SnapshotVisibility>,
    open: Option<OpenTransaction>,
    transaction_topic: Arc<str>,
    /// Values written as null because their schema has no form for them.
    pub problems: Vec<String>,
}

impl Capture {
    /// `visibility`: the initial snapshot's, while the stream may still
    /// hold transactions it saw.
    pub fn new(origin: Origin, visibility: Option<SnapshotVisibility>) -> Capture {
        Capture {
            transaction_topic: origin.transaction_topic_name().into(),
            origin,
            tables: HashMap::new(),
            visibility,
            open: None,
            problems: Vec::new(),
        }
    }

    /// Where BEGIN and END events go (when asked for).
    pub fn transaction_topic(&self) -> &str {
        &self.transaction_topic
    }

    /// Feeds the message found at `lsn`, appending its records to `out`.
    pub fn feed(
        &mut self,
        lsn: Lsn,
        message: &[u8],
        now_ms: i64,
        out: &mut Vec<Record>,
    ) -> Result<Fed, CaptureError> {
        let at = || format_lsn(lsn);
        let message = pgoutput::decode(message)
            .map_err(|source| CaptureError::Decode { lsn: at(), source })?;
        let changes: Vec<(u32, Change)> = match message {
            Message::Begin(begin) => {
                let skipped = self.visibility.as_ref().is_some_and(|v| v.holds(&begin));
                let id = format!("{}:{}", begin.xid, begin.final_lsn);
                if self.origin.transaction_topic && !skipped {
                    out.push(self.transaction_record(
                        &id,
                        "BEGIN",
                        begin.committed_at_micros,
                        None,
                    ));
                }
                self.open = Some(OpenTransaction {
                    begin,
                    id,
                    skipped,
                    total_order: 0,
                    per_relation: HashMap::new(),
                });
                return Ok(Fed::Within);
            }
            Message::Commit(commit) => {
                let open = self
                    .open
                    .take()
                    .ok_or_else(|| CaptureError::OutsideTransaction {
                        lsn: at(),
                        what: "commit",
                    })?;
                if self.origin.transaction_topic && !open.skipped {
                    out.push(self.transaction_record(
                        &open.id,
                        "END",
                        commit.committed_at_micros,
                        Some(&open),
                    ));
                }
                return Ok(Fed::Committed {
                    end_lsn: commit.end_lsn,
                    skipped: open.skipped,
                });
            }
            Message::Relation(relation) => {
                let unchanged = self
                    .tables
                    .get(&relation.id)
                    .is_some_and(|t| *t.relation() == relation);
                if !unchanged {
                    self.tables
                        .insert(relation.id, TableEvents::new(&self.origin, relation));
                }
                return Ok(Fed::Within);
            }
            Message::LogicalMessage { .. } | Message::Other(_) => return Ok(Fed::Within),
            Message::Insert { relation, new } => vec![(relation, Change::Insert(new))],
            Message::Update { relation, old, new } => vec![(relation, Change::Update(old, new))],
            Message::Delete { relation, old } => vec![(relation, Change::Delete(old))],
            Message::Truncate { relations } => relations
                .into_iter()
                .map(|r| (r, Change::Truncate))
                .collect(),
        };
        let open = self
            .open
            .as_mut()
            .ok_or_else(|| CaptureError::OutsideTransaction {
                lsn: at(),
                what: "row change",
            })?;
        if open.skipped {
            return Ok(Fed::Within);
        }
        for (relation, change) in changes {
            let table =
                self.tables
                    .get(&relation)
                    .ok_or_else(|| CaptureError::UnknownRelation {
                        lsn: at(),
                        relation,
                    })?;
            let committed_at_ms = open.begin.committed_at_micros.div_euclid(1000);
            // The key is the row's: the new one, or the old one for a delete.
            let mut emit = |op: Op,
                            before: Option<&Tuple>,
                            after: Option<&Tuple>,
                            out: &mut Vec<Record>,
                            problems: &mut Vec<String>| {
                open.total_order += 1;
                let in_collection = open.per_relation.entry(relation).or_default();
                *in_collection += 1;
                let place = Place {
                    lsn,
                    committed_at_ms,
                    snapshot: "false",
                    transaction: Some(TransactionPlace {
                        id: &open.id,
                        xid: open.begin.xid,
                        total_order: open.total_order,
                        data_collection_order: *in_collection,
                    }),
                };
                let key = after
                    .or(before)
                    .and_then(|tuple| table.key(tuple, problems));
                let value = table.change(op, before, after, &place, now_ms, problems);
                out.push(Record {
                    topic: table.topic.clone(),
                    key: key.clone(),
                    value: Some(value),
                });
                if op == Op::Delete && key.is_some() {
                    out.push(Record {
                        topic: table.topic.clone(),
                        key,
                        value: None,
                    });
                }
            };
            let problems = &mut self.problems;
            match &change {
                Change::Insert(new) => emit(Op::Create, None, Some(new), out, problems),
                // A new primary key is, as Debezium sends it, the old row
                // deleted and the new one created.
                Change::Update(Some(old), new) if table.key_changed(old, new) => {
                    emit(Op::Delete, Some(old), None, out, problems);
                    emit(Op::Create, None, Some(new), out, problems);
                }
                Change::Update(old, new) => {
                    emit(Op::Update, old.as_ref(), Some(new), out, problems)
                }
                Change::Delete(old) => emit(Op::Delete, Some(old), None, out, problems),
                Change::Truncate => emit(Op::Truncate, None, None, out, problems),
            }
        }
        Ok(Fed::Within)
    }

    /// A BEGIN or END event for `<prefix>.transaction`, keyed by its id.
    fn transaction_record(
        &self,
        id: &str,
        status: &str,
        at_micros: i64,
        ended: Option<&OpenTransaction>,
    ) -> Record {
        let (event_count, collections) = match ended {
            Some(open) => {
                // By name, as Debezium lists them.
                let per_collection: BTreeMap<&str, u64> = open
                    .per_relation
                    .iter()
                    .filter_map(|(id, count)| {
                        Some((self.tables.get(id)?.collection.as_str(), *count))
                    })
                    .collect();
                (
                    json!(open.total_order),
                    json!(per_collection
                        .iter()
                        .map(|(name, count)| json!({"data_collection": name, "event_count": count}))
                        .collect::<Vec<_>>()),
                )
            }
            None => (json!(null), json!(null)),
        };
        Record {
            topic: self.transaction_topic.clone(),
            key: Some(json!({ "id": id }).to_string()),
            value: Some(
                json!({
                    "status": status, "id": id, "ts_ms": at_micros.div_euclid(1000),
                    "event_count": event_count, "data_collections": collections,
                })
                .to_string(),
            ),
        }
    }
}

enum Change {
    Insert(Tuple),
    Update(Option<Tuple>, Tuple),
    Delete(Tuple),
    Truncate,
}

impl TableEvents {
    fn key_changed(&self, old: &Tuple, new: &Tuple) -> bool {
        self.key_columns
            .iter()
            .any(|&i| match (old.get(i), new.get(i)) {
                // An unchanged TOASTed key column is the same key.
                (_, Some(Cell::Unchanged)) => false,
                (a, b) => a != b,
            })
    }
}

#[cfg(test)]
mod tests;
