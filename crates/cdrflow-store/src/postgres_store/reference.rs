//! PostgreSQL: reference data (subscribers, customers, cells).

use cdrflow_core::reference::{ReferenceData, ReferenceKind, ReferenceRows};
use postgres::types::ToSql;

use super::*;
use crate::codecs::reference_rows::{self, select_sql, upsert_sql};

impl Reference for PgStore {
    fn put_reference(&mut self, rows: &ReferenceRows) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        let kind = match rows {
            ReferenceRows::Subscribers(_) => ReferenceKind::Subscribers,
            ReferenceRows::Customers(_) => ReferenceKind::Customers,
            ReferenceRows::Cells(_) => ReferenceKind::Cells,
        };
        let upsert = tx.prepare(&upsert_sql(kind, |i| format!("${i}")))?;
        match rows {
            ReferenceRows::Subscribers(rows) => {
                for r in rows {
                    let date = r.activation_date.map(|d| d.to_string());
                    let values: [&(dyn ToSql + Sync); 8] = [
                        &r.msisdn.to_string(),
                        &r.effective_from,
                        &&*r.customer_id,
                        &&*r.plan_id,
                        &r.region.as_deref(),
                        &r.status.as_str(),
                        &r.payment.as_str(),
                        &date,
                    ];
                    tx.execute(&upsert, &values)?;
                }
            }
            ReferenceRows::Customers(rows) => {
                for r in rows {
                    let values: [&(dyn ToSql + Sync); 5] = [
                        &&*r.customer_id,
                        &r.effective_from,
                        &r.name,
                        &r.billing_country,
                        &i32::from(r.bill_cycle_day),
                    ];
                    tx.execute(&upsert, &values)?;
                }
            }
            ReferenceRows::Cells(rows) => {
                for r in rows {
                    let values: [&(dyn ToSql + Sync); 4] = [
                        &&*r.cell_id,
                        &r.effective_from,
                        &&*r.region,
                        &&*r.technology,
                    ];
                    tx.execute(&upsert, &values)?;
                }
            }
        }
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
        Ok(data)
    }
}
