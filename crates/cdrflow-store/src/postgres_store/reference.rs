//! PostgreSQL: reference data (subscribers, customers, cells, plans, removals).

use cdrflow_core::reference::{ReferenceChange, ReferenceData, ReferenceKind, ReferenceRows};
use postgres::types::ToSql;

use super::*;
use crate::codecs::reference_rows::{self, change_sql, puts, select_sql, Param};

impl Reference for PgStore {
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        write_changes(&mut tx, &puts(rows))?;
        tx.commit()?;
        Ok(())
    }

    fn reference(&mut self) -> Result<ReferenceData> {
        let client = self.live_client()?;
        let mut data = ReferenceData::default();
        for r in client.query(&select_sql(ReferenceKind::Subscribers), &[])? {
            data.put_subscriber(reference_rows::subscriber(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
                r.get(6),
                r.get(7),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Customers), &[])? {
            data.put_customer(reference_rows::customer(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                i64::from(r.get::<_, i32>(4)),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Cells), &[])? {
            data.put_cell(reference_rows::cell(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
            )?);
        }
        for r in client.query(&select_sql(ReferenceKind::Plans), &[])? {
            data.put_plan(reference_rows::plan(
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get(5),
            ));
        }
        for r in client.query(reference_rows::SELECT_REMOVALS, &[])? {
            let kind = reference_rows::removal_kind(r.get(0))?;
            data.remove(kind, r.get(1), r.get(2));
        }
        Ok(data)
    }
}

/// Applies reference changes in `tx`, in order.
pub(super) fn write_changes(tx: &mut Transaction<'_>, changes: &[ReferenceChange]) -> Result<()> {
    for change in changes {
        for (sql, params) in change_sql(change, |i| format!("${i}")) {
            let values: Vec<Box<dyn ToSql + Sync>> = params
                .into_iter()
                .map(|p| -> Box<dyn ToSql + Sync> {
                    match p {
                        Param::Text(t) => Box::new(t),
                        Param::Int(i) => Box::new(i),
                        Param::Int32(i) => Box::new(i),
                    }
                })
                .collect();
            let refs: Vec<&(dyn ToSql + Sync)> = values.iter().map(|v| &**v).collect();
            tx.execute(sql.as_str(), &refs)?;
        }
    }
    Ok(())
}
