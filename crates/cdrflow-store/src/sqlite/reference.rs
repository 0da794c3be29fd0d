//! SQLite: reference data (subscribers, customers, cells).

use cdrflow_core::reference::{ReferenceData, ReferenceKind, ReferenceRows};
use rusqlite::types::Value;

use super::*;
use crate::codecs::reference_rows::{self, select_sql, upsert_sql};

impl Reference for SqliteStore {
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()> {
        let tx = self.conn.transaction()?;
        let text = |s: &str| Value::Text(s.to_string());
        let optional = |s: Option<&str>| s.map_or(Value::Null, text);
        let (kind, values): (ReferenceKind, Vec<Vec<Value>>) = match rows {
            ReferenceRows::Subscribers(rows) => (
                ReferenceKind::Subscribers,
                rows.iter()
                    .map(|r| {
                        vec![
                            Value::Text(r.msisdn.to_string()),
                            Value::Integer(r.effective_from),
                            text(&r.customer_id),
                            text(&r.plan_id),
                            optional(r.region.as_deref()),
                            text(r.status.as_str()),
                            text(r.payment.as_str()),
                            r.activation_date
                                .map_or(Value::Null, |d| Value::Text(d.to_string())),
                        ]
                    })
                    .collect(),
            ),
            ReferenceRows::Customers(rows) => (
                ReferenceKind::Customers,
                rows.iter()
                    .map(|r| {
                        vec![
                            text(&r.customer_id),
                            Value::Integer(r.effective_from),
                            text(&r.name),
                            text(&r.billing_country),
                            Value::Integer(i64::from(r.bill_cycle_day)),
                        ]
                    })
                    .collect(),
            ),
            ReferenceRows::Cells(rows) => (
                ReferenceKind::Cells,
                rows.iter()
                    .map(|r| {
                        vec![
                            text(&r.cell_id),
                            Value::Integer(r.effective_from),
                            text(&r.region),
                            text(&r.technology),
                        ]
                    })
                    .collect(),
            ),
        };
        {
            let mut upsert = tx.prepare(&upsert_sql(kind, |i| format!("?{i}")))?;
            for row in values {
                upsert.execute(rusqlite::params_from_iter(row))?;
            }
        }
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
        Ok(data)
    }
}
