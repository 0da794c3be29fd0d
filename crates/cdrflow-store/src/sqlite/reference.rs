//! SQLite: reference data (subscribers, customers, cells, plans, removals).

use cdrflow_core::reference::{ReferenceChange, ReferenceData, ReferenceKind, ReferenceRows};
use rusqlite::types::Value;

use super::*;
use crate::codecs::reference_rows::{
    self, change_sql, insert_late_sql, late_candidates, puts, select_sql, LateBy, Param,
};
use crate::LateReferenceChange;
use cdrflow_core::search::{SearchHit, SearchQuery};

impl Reference for SqliteStore {
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()> {
        let tx = self.conn.transaction()?;
        write_changes(&tx, &puts(rows))?;
        tx.commit()?;
        Ok(())
    }

    fn reference(&mut self) -> Result<ReferenceData> {
        let mut data = ReferenceData::default();
        let mut stmt = self.conn.prepare(&select_sql(ReferenceKind::Subscribers))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            data.put_subscriber(reference_rows::subscriber(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                &r.get::<_, String>(2)?,
                &r.get::<_, String>(3)?,
                r.get::<_, Option<String>>(4)?.as_deref(),
                &r.get::<_, String>(5)?,
                &r.get::<_, String>(6)?,
                r.get::<_, Option<String>>(7)?.as_deref(),
            )?);
        }
        let mut stmt = self.conn.prepare(&select_sql(ReferenceKind::Customers))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            data.put_customer(reference_rows::customer(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
            )?);
        }
        let mut stmt = self.conn.prepare(&select_sql(ReferenceKind::Cells))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            data.put_cell(reference_rows::cell(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                &r.get::<_, String>(2)?,
                &r.get::<_, String>(3)?,
            )?);
        }
        let mut stmt = self.conn.prepare(&select_sql(ReferenceKind::Plans))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            data.put_plan(reference_rows::plan(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ));
        }
        let mut stmt = self.conn.prepare(&select_sql(ReferenceKind::Bundles))?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            data.put_bundle(reference_rows::bundle(
                &r.get::<_, String>(0)?,
                r.get(1)?,
                &r.get::<_, String>(2)?,
                &r.get::<_, String>(3)?,
                r.get(4)?,
            )?);
        }
        let mut stmt = self.conn.prepare(reference_rows::SELECT_REMOVALS)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let kind = reference_rows::removal_kind(&r.get::<_, String>(0)?)?;
            data.remove(kind, &r.get::<_, String>(1)?, r.get(2)?);
        }
        Ok(data)
    }

    fn search(&mut self, query: &SearchQuery) -> Result<Vec<SearchHit>> {
        super::search::query(&self.conn, query)
    }

    fn late_changes(&mut self) -> Result<Vec<LateReferenceChange>> {
        let mut stmt = self.conn.prepare(reference_rows::SELECT_LATE)?;
        let rows = stmt.query_map([], |r| {
            Ok(LateReferenceChange {
                kind: r.get(0)?,
                id: r.get(1)?,
                effective_from: r.get(2)?,
                records: r.get(3)?,
                first_event_time: r.get(4)?,
                first_period: r.get(5)?,
                last_period: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

/// Applies reference changes in `tx`, in order.
pub(super) fn write_changes(tx: &Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    for change in changes {
        for (sql, params) in change_sql(change, |i| format!("?{i}")) {
            tx.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(params.into_iter().map(value)))?;
        }
    }
    list_late(tx, changes)?;
    super::search::write_index(tx, changes)
}

/// A value to bind, as SQLite takes it.
pub(super) fn value(param: Param) -> Value {
    match param {
        Param::Text(t) => t.map_or(Value::Null, Value::Text),
        Param::Int(i) => i.map_or(Value::Null, Value::Integer),
        Param::Int32(i) => Value::Integer(i64::from(i)),
    }
}

/// Lists the changes that came after rated records they should
/// have affected (the records of this transaction included: they are
/// written first), and counts them as `changes.late`.
fn list_late(tx: &Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    let moves = late_candidates(changes);
    if moves.is_empty() {
        return Ok(());
    }
    let mut late = 0;
    for by in LateBy::ALL {
        let mut these = moves.iter().filter(|m| m.by == by).peekable();
        if these.peek().is_none() {
            continue;
        }
        // One statement per kind of join, its text built once per commit.
        let mut insert = tx.prepare_cached(&insert_late_sql(
            by,
            "(SELECT CAST(?1 AS TEXT) AS kind, CAST(?2 AS TEXT) AS id, CAST(?3 AS TEXT) AS key,
                     CAST(?4 AS BIGINT) AS at) m",
        ))?;
        for m in these {
            late += insert.execute(rusqlite::params![m.kind, m.id, m.key, m.at])?;
        }
    }
    if late > 0 {
        tx.prepare_cached(BUMP_COUNTER)?
            .execute(params!["changes.late", late as i64])?;
    }
    Ok(())
}
