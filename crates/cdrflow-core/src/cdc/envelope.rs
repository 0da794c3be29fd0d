//! A Debezium message (key and value) as one [`Decoded`] change.
//!
//! Three shapes arrive on the same topics, depending on how the connector
//! is configured, and all are read:
//! - the **envelope**: `before`, `after`, `source`, `op`, `ts_ms`
//!   (and `transaction` with transaction metadata on);
//! - the **new record state** of the `ExtractNewRecordState` transform
//!   (`unwrap`): the row itself, with the metadata its `add.fields` asked
//!   for as `__op`, `__table`, `__lsn`, `__source_ts_ms`, … and deletes as
//!   `__deleted: "true"` (`delete.tombstone.handling.mode=rewrite`);
//! - a **tombstone**: a null value after a delete, for log compaction.
//!
//! Each either bare or wrapped as JsonConverter does with schemas on:
//! `{"schema": …, "payload": …}`, exactly those two keys.
//!
//! Order comes from the source database, not from Kafka or the clock: a
//! change's [`ChangePosition`] is its WAL position (`source.lsn`), then its
//! place in the transaction (`transaction.total_order`), because several
//! rows of one statement can share an LSN and snapshot rows can arrive
//! after newer changes.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::value::{decode_value, ConnectSchema, Row};
use crate::normalize::EpochMillis;
use crate::reject::RejectReason;

/// What a change did to its row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A row read by a snapshot.
    Read,
    /// The whole table emptied.
    Truncate,
}

impl Op {
    /// Debezium's one-letter code.
    pub fn code(self) -> &'static str {
        match self {
            Op::Create => "c",
            Op::Update => "u",
            Op::Delete => "d",
            Op::Read => "r",
            Op::Truncate => "t",
        }
    }
}

/// `source.snapshot`: whether the row was read by a snapshot, and where in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Snapshot {
    /// Streamed (`"false"`, or absent).
    No,
    /// `"true"`, or a newer value cdrflow does not know (still a snapshot row).
    Yes,
    First,
    Last,
    FirstInDataCollection,
    LastInDataCollection,
    Incremental,
}

impl Snapshot {
    fn parse(text: &str) -> Snapshot {
        match text {
            "false" => Snapshot::No,
            "first" => Snapshot::First,
            "last" => Snapshot::Last,
            "first_in_data_collection" => Snapshot::FirstInDataCollection,
            "last_in_data_collection" => Snapshot::LastInDataCollection,
            "incremental" => Snapshot::Incremental,
            _ => Snapshot::Yes,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Snapshot::No => "false",
            Snapshot::Yes => "true",
            Snapshot::First => "first",
            Snapshot::Last => "last",
            Snapshot::FirstInDataCollection => "first_in_data_collection",
            Snapshot::LastInDataCollection => "last_in_data_collection",
            Snapshot::Incremental => "incremental",
        }
    }
}

/// Where a change stands in its database's history: compared as
/// (LSN, place in the transaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangePosition {
    pub lsn: i64,
    /// `transaction.total_order` (1-based) when the connector sends
    /// transaction metadata, else 0.
    pub order: i64,
}

/// One row change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeEvent {
    pub op: Op,
    pub db: Option<String>,
    pub schema: Option<String>,
    pub table: String,
    /// The key message's columns (the primary key), when there was one.
    pub key: Option<Row>,
    pub before: Option<Row>,
    pub after: Option<Row>,
    pub position: ChangePosition,
    pub tx_id: Option<i64>,
    pub snapshot: Snapshot,
    /// `source.ts_ms`: when the change was committed in the source
    /// database (for snapshot rows, when the snapshot read them).
    pub committed_at: Option<EpochMillis>,
}

impl ChangeEvent {
    /// The row as it is after the change, or as it was before a delete.
    pub fn row(&self) -> Option<&Row> {
        match self.op {
            Op::Delete => self.before.as_ref().or(self.key.as_ref()),
            _ => self.after.as_ref(),
        }
    }
}

/// What a message turned out to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Change(ChangeEvent),
    /// A null value: Kafka's compaction marker after a delete.
    Tombstone {
        key: Option<Row>,
    },
    /// A logical decoding message (`op` `m`): nothing to apply.
    Message {
        prefix: Option<String>,
    },
}

/// Why a message is not a change cdrflow can apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the message is not UTF-8 text")]
    NotUtf8,
    #[error("the message is not JSON: {0}")]
    NotJson(String),
    #[error("{0}")]
    NotAChange(String),
    #[error("{0}")]
    NoPosition(String),
    #[error("column `{column}`: {why}")]
    Value { column: String, why: String },
}

impl ChangeError {
    /// The reject reason the event is kept under.
    pub fn reason(&self) -> RejectReason {
        match self {
            ChangeError::NotUtf8 => RejectReason::InvalidUtf8,
            ChangeError::NotJson(_) => RejectReason::MalformedJson,
            ChangeError::NotAChange(_) => RejectReason::NotAChangeEvent,
            ChangeError::NoPosition(_) => RejectReason::ChangeWithoutPosition,
            ChangeError::Value { .. } => RejectReason::InvalidChangeValue,
        }
    }
}

type Object<'a> = BTreeMap<String, &'a RawValue>;

fn not_a_change(why: impl Into<String>) -> ChangeError {
    ChangeError::NotAChange(why.into())
}

fn object<'a>(raw: &'a RawValue, what: &str) -> Result<Object<'a>, ChangeError> {
    serde_json::from_str(raw.get()).map_err(|_| not_a_change(format!("{what} is not an object")))
}

fn is_null(raw: Option<&&RawValue>) -> bool {
    raw.is_none_or(|r| r.get().trim() == "null")
}

/// Decodes a message of `topic` (`dbserver1.public.subscribers`: the schema
/// and table when the event does not name them). An empty value is a tombstone.
pub fn decode(topic: &str, key: Option<&[u8]>, value: &[u8]) -> Result<Decoded, ChangeError> {
    decode_with(&mut SchemaCache::default(), topic, key, value)
}

/// The Connect schemas of recent messages, parsed once. With schemas on,
/// every message repeats its table's schema — most of its bytes — and
/// parsing it each time was most of the consumer's work.
#[derive(Default)]
pub struct SchemaCache {
    /// (schema text, parsed), most recently used last; a handful of tables'.
    recent: Vec<(Box<str>, Arc<ConnectSchema>)>,
}

impl SchemaCache {
    const KEPT: usize = 16;

    fn parse(&mut self, text: &str) -> Result<Arc<ConnectSchema>, ChangeError> {
        if let Some(i) = self.recent.iter().position(|(t, _)| &**t == text) {
            let entry = self.recent.remove(i);
            let schema = entry.1.clone();
            self.recent.push(entry);
            return Ok(schema);
        }
        let schema: Arc<ConnectSchema> = Arc::new(
            serde_json::from_str(text)
                .map_err(|e| not_a_change(format!("`schema` is not a Connect schema: {e}")))?,
        );
        if self.recent.len() == Self::KEPT {
            self.recent.remove(0);
        }
        self.recent.push((text.into(), schema.clone()));
        Ok(schema)
    }
}

/// [`decode`], with schemas parsed through `schemas`.
pub fn decode_with(
    schemas: &mut SchemaCache,
    topic: &str,
    key: Option<&[u8]>,
    value: &[u8],
) -> Result<Decoded, ChangeError> {
    let key = key
        .filter(|k| !k.is_empty())
        .and_then(|k| decode_key(schemas, k));
    let Some((schema, fields)) = split(schemas, value)? else {
        return Ok(Decoded::Tombstone { key });
    };
    if fields.contains_key("op") && !fields.contains_key("__op") {
        envelope(topic, key, &fields, schema.as_deref())
    } else {
        new_record_state(topic, key, fields, schema.as_deref())
    }
}

/// The payload and its schema, unwrapping `{"schema":…,"payload":…}`;
/// `None` for a null value.
fn split<'m>(
    schemas: &mut SchemaCache,
    message: &'m [u8],
) -> Result<Option<(Option<Arc<ConnectSchema>>, Object<'m>)>, ChangeError> {
    let text = std::str::from_utf8(message).map_err(|_| ChangeError::NotUtf8)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    // Straight to the object, the common case: the message is read once
    // (a schema is most of its bytes); only a failure looks closer.
    let top = match serde_json::from_str::<Object<'_>>(text) {
        Ok(top) => top,
        Err(_) => {
            let raw: &RawValue =
                serde_json::from_str(text).map_err(|e| ChangeError::NotJson(e.to_string()))?;
            if raw.get().trim() == "null" {
                return Ok(None);
            }
            return Err(not_a_change("the message is JSON but not an object"));
        }
    };

    if top.len() == 2 && top.contains_key("schema") && top.contains_key("payload") {
        let payload = top["payload"];
        if payload.get().trim() == "null" {
            return Ok(None);
        }
        let schema = if is_null(top.get("schema")) {
            None
        } else {
            Some(schemas.parse(top["schema"].get())?)
        };
        return Ok(Some((schema, object(payload, "the event")?)));
    }
    Ok(Some((None, top)))
}

/// The key message's columns; `None` for a key that is not a JSON object
/// (a topic keyed some other way: the key is only a fallback for which row
/// a delete removed, never a reason to refuse the event).
fn decode_key(schemas: &mut SchemaCache, key: &[u8]) -> Option<Row> {
    let (schema, fields) = split(schemas, key).ok()??;
    row(fields.into_iter(), schema.as_deref()).ok()
}

fn row<'a>(
    fields: impl Iterator<Item = (String, &'a RawValue)>,
    schema: Option<&ConnectSchema>,
) -> Result<Row, ChangeError> {
    let mut columns = Vec::new();
    for (name, raw) in fields {
        let value = decode_value(raw, schema.and_then(|s| s.field(&name))).map_err(|why| {
            ChangeError::Value {
                column: name.clone(),
                why,
            }
        })?;
        columns.push((name, value));
    }
    Ok(Row(columns))
}

fn string_of(fields: &Object<'_>, name: &str, what: &str) -> Result<Option<String>, ChangeError> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) if raw.get().trim() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|_| not_a_change(format!("{what} `{name}` is not a string"))),
    }
}

fn int_of(fields: &Object<'_>, name: &str, what: &str) -> Result<Option<i64>, ChangeError> {
    match fields.get(name) {
        None => Ok(None),
        Some(raw) if raw.get().trim() == "null" => Ok(None),
        // Also as a string: some converters write int64 metadata that way.
        Some(raw) => raw
            .get()
            .trim()
            .trim_matches('"')
            .parse()
            .map(Some)
            .map_err(|_| not_a_change(format!("{what} `{name}` is not a whole number"))),
    }
}

/// `true`, `"true"` and the snapshot enum's other values.
fn snapshot_of(fields: &Object<'_>, name: &str) -> Snapshot {
    match fields.get(name).map(|r| r.get().trim()) {
        None | Some("null") | Some("false") => Snapshot::No,
        Some("true") => Snapshot::Yes,
        Some(text) => Snapshot::parse(text.trim_matches('"')),
    }
}

fn table_of_topic(topic: &str) -> &str {
    topic.rsplit('.').next().unwrap_or(topic)
}

/// The schema of a Debezium topic name, `<prefix>.<schema>.<table>`.
fn schema_of_topic(topic: &str) -> Option<&str> {
    let mut segments = topic.rsplit('.');
    segments.next()?;
    let schema = segments.next()?;
    segments.next().map(|_| schema)
}

fn envelope(
    topic: &str,
    key: Option<Row>,
    fields: &Object<'_>,
    schema: Option<&ConnectSchema>,
) -> Result<Decoded, ChangeError> {
    let op = string_of(fields, "op", "the envelope's")?.unwrap_or_default();
    let op = match op.as_str() {
        "c" => Op::Create,
        "u" => Op::Update,
        "d" => Op::Delete,
        "r" => Op::Read,
        "t" => Op::Truncate,
        "m" => {
            let prefix = match fields.get("message") {
                Some(raw) if raw.get().trim() != "null" => {
                    string_of(&object(raw, "`message`")?, "prefix", "the message's")?
                }
                _ => None,
            };
            return Ok(Decoded::Message { prefix });
        }
        other => {
            return Err(not_a_change(format!(
                "`op` is `{other}`, not one of c, u, d, r, t, m"
            )))
        }
    };
    let source = match fields.get("source") {
        Some(raw) if raw.get().trim() != "null" => object(raw, "`source`")?,
        _ => return Err(not_a_change("the envelope has no `source`")),
    };
    let lsn = int_of(&source, "lsn", "`source`'s")?.ok_or_else(|| {
        ChangeError::NoPosition(
            "`source` has no `lsn`: cdrflow orders changes by their PostgreSQL WAL position".into(),
        )
    })?;
    let order = match fields.get("transaction") {
        Some(raw) if raw.get().trim() != "null" => int_of(
            &object(raw, "`transaction`")?,
            "total_order",
            "`transaction`'s",
        )?,
        _ => None,
    };
    let side = |name: &str| -> Result<Option<Row>, ChangeError> {
        match fields.get(name) {
            Some(raw) if raw.get().trim() != "null" => {
                let columns = object(raw, &format!("`{name}`"))?;
                row(columns.into_iter(), schema.and_then(|s| s.field(name))).map(Some)
            }
            _ => Ok(None),
        }
    };
    let (before, after) = (side("before")?, side("after")?);
    match op {
        Op::Create | Op::Update | Op::Read if after.is_none() => {
            return Err(not_a_change(format!(
                "a `{}` event without `after`",
                op.code()
            )))
        }
        Op::Delete if before.is_none() && key.is_none() => {
            return Err(not_a_change(
                "a delete with neither `before` nor a key: nothing says which row went",
            ))
        }
        _ => {}
    }
    let table = string_of(&source, "table", "`source`'s")?
        .unwrap_or_else(|| table_of_topic(topic).to_string());
    Ok(Decoded::Change(ChangeEvent {
        op,
        db: string_of(&source, "db", "`source`'s")?,
        schema: string_of(&source, "schema", "`source`'s")?,
        table,
        key,
        before,
        after,
        position: ChangePosition {
            lsn,
            order: order.unwrap_or(0),
        },
        tx_id: int_of(&source, "txId", "`source`'s")?,
        snapshot: snapshot_of(&source, "snapshot"),
        committed_at: match int_of(&source, "ts_ms", "`source`'s")? {
            Some(ms) => Some(ms),
            // Debezium before 0.10 wrote microseconds.
            None => int_of(&source, "ts_usec", "`source`'s")?.map(|us| us.div_euclid(1000)),
        },
    }))
}

/// `ExtractNewRecordState`'s output: the row, and `__`-prefixed metadata.
fn new_record_state(
    topic: &str,
    key: Option<Row>,
    fields: Object<'_>,
    schema: Option<&ConnectSchema>,
) -> Result<Decoded, ChangeError> {
    let meta = |names: &[&'static str]| -> Option<&'static str> {
        names.iter().copied().find(|n| fields.contains_key(*n))
    };
    let deleted = match fields.get("__deleted").map(|r| r.get().trim()) {
        None | Some("null") | Some("false") | Some("\"false\"") => false,
        Some("true") | Some("\"true\"") => true,
        Some(other) => {
            return Err(not_a_change(format!(
                "`__deleted` is {other}, not \"true\" or \"false\""
            )))
        }
    };
    let op = match string_of(&fields, "__op", "the")?.as_deref() {
        _ if deleted => Op::Delete,
        Some("c") => Op::Create,
        Some("u") | None => Op::Update,
        Some("r") => Op::Read,
        Some("d") => Op::Delete,
        Some(other) => {
            return Err(not_a_change(format!(
                "`__op` is `{other}`, not one of c, u, d, r"
            )))
        }
    };
    let lsn = match meta(&["__lsn", "__source_lsn"]) {
        Some(name) => int_of(&fields, name, "the")?,
        None => None,
    }
    .ok_or_else(|| {
        ChangeError::NoPosition(
            "the row has no `__lsn`: cdrflow orders changes by their WAL position; add `lsn` to ExtractNewRecordState's `add.fields` (add.fields=op,table,lsn,source.ts_ms)".into(),
        )
    })?;
    let text_meta = |names: &[&'static str]| match meta(names) {
        Some(name) => string_of(&fields, name, "the"),
        None => Ok(None),
    };
    let table = text_meta(&["__table", "__source_table"])?
        .unwrap_or_else(|| table_of_topic(topic).to_string());
    let db = text_meta(&["__db", "__source_db"])?;
    let schema_name = text_meta(&["__schema", "__source_schema"])?
        .or_else(|| schema_of_topic(topic).map(str::to_string));
    let committed_at = match meta(&["__source_ts_ms", "__ts_ms"]) {
        Some(name) => int_of(&fields, name, "the")?,
        None => None,
    };
    let tx_id = match meta(&["__txId", "__source_txId"]) {
        Some(name) => int_of(&fields, name, "the")?,
        None => None,
    };
    let snapshot = match meta(&["__snapshot", "__source_snapshot"]) {
        Some(name) => snapshot_of(&fields, name),
        None if op == Op::Read => Snapshot::Yes,
        None => Snapshot::No,
    };
    let columns = row(
        fields
            .into_iter()
            .filter(|(name, _)| !name.starts_with("__")),
        schema,
    )?;
    let (before, after) = match op {
        Op::Delete => (Some(columns), None),
        _ => (None, Some(columns)),
    };
    Ok(Decoded::Change(ChangeEvent {
        op,
        db,
        schema: schema_name,
        table,
        key,
        before,
        after,
        position: ChangePosition { lsn, order: 0 },
        tx_id,
        snapshot,
        committed_at,
    }))
}
