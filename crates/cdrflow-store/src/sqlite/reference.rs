//! SQLite: reference data (subscribers, customers, cells, plans, removals).

use cdrflow_core::reference::{ReferenceChange, ReferenceData, ReferenceKind, ReferenceRows};
use rusqlite::types::Value;

use super::*;
use crate::codecs::reference_rows::{self, change_sql, puts, select_sql, Param};

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
        let mut stmt = self.conn.prepare(reference_rows::SELECT_REMOVALS)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let kind = reference_rows::removal_kind(&r.get::<_, String>(0)?)?;
            data.remove(kind, &r.get::<_, String>(1)?, r.get(2)?);
        }
        Ok(data)
    }
}

/// Applies reference changes in `tx`, in order.
pub(super) fn write_changes(tx: &Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    for change in changes {
        for (sql, params) in change_sql(change, |i| format!("?{i}")) {
            let values = params.into_iter().map(|p| match p {
                Param::Text(t) => t.map_or(Value::Null, Value::Text),
                Param::Int(i) => i.map_or(Value::Null, Value::Integer),
                Param::Int32(i) => Value::Integer(i64::from(i)),
            });
            tx.prepare_cached(&sql)?
                .execute(rusqlite::params_from_iter(values))?;
        }
    }
    Ok(())
}
