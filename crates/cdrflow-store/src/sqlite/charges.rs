//! SQLite: rated records and prepaid balances.

use std::fmt::Write as _;

use cdrflow_core::charging::RatedRecord;
use rusqlite::types::Value;

use super::*;
use crate::codecs::rated_rows::{filter, filter_values, FilterValue, StoredRow, COLUMNS};
use crate::{RatedQuery, StoredBalance};

/// Adds a commit's rated records and balance changes.
pub(super) fn write_charges(tx: &Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let mut insert = tx.prepare_cached(&format!(
        "INSERT INTO rated_records ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?;
    let (mut msisdn, mut other) = (String::new(), String::new());
    for part in commit.parts {
        for r in &part.checkpoint.rated_records {
            msisdn.clear();
            write!(msisdn, "{}", r.msisdn).expect("writing to a String");
            other.clear();
            if let Some(party) = r.other_party {
                write!(other, "{party}").expect("writing to a String");
            }
            let period = r.billing_period.to_string();
            insert.raw_bind_parameter(1, &*r.record_id)?;
            insert.raw_bind_parameter(2, msisdn.as_str())?;
            insert.raw_bind_parameter(3, r.event_time)?;
            insert.raw_bind_parameter(4, r.kind.as_str())?;
            insert.raw_bind_parameter(5, &*r.service_type)?;
            insert.raw_bind_parameter(6, r.other_party.map(|_| other.as_str()))?;
            insert.raw_bind_parameter(7, r.customer_id.as_deref())?;
            insert.raw_bind_parameter(8, &*r.plan)?;
            insert.raw_bind_parameter(9, &*r.version)?;
            insert.raw_bind_parameter(10, r.destination.as_ref().map(|d| &*d.0))?;
            insert.raw_bind_parameter(11, r.destination.as_ref().map(|d| d.1))?;
            insert.raw_bind_parameter(12, r.band.as_deref())?;
            insert.raw_bind_parameter(13, &*r.rate)?;
            insert.raw_bind_parameter(14, r.region.as_deref())?;
            insert.raw_bind_parameter(15, r.cell_id.as_deref())?;
            insert.raw_bind_parameter(16, r.technology.as_deref())?;
            insert.raw_bind_parameter(17, r.usage_units as i64)?;
            insert.raw_bind_parameter(18, r.billed_units as i64)?;
            insert.raw_bind_parameter(19, r.allowance.as_ref().map(|a| &*a.0))?;
            insert.raw_bind_parameter(20, r.allowance.as_ref().map_or(0, |a| a.1 as i64))?;
            insert.raw_bind_parameter(21, r.cost_micros)?;
            insert.raw_bind_parameter(22, &*r.currency)?;
            insert.raw_bind_parameter(23, period.as_str())?;
            insert.raw_execute()?;
        }
    }
    let mut cells = tx.prepare_cached(&crate::codecs::upsert_cell_hours_sql(
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        "min",
        "max",
    ))?;
    for c in crate::codecs::cell_hours(commit) {
        cells.execute(params![
            c.cell_id,
            c.hour,
            c.records,
            c.first_event_time,
            c.last_event_time,
            c.first_period.to_string(),
            c.last_period.to_string()
        ])?;
    }
    let mut upsert = tx.prepare_cached(
        "INSERT INTO balances (msisdn, balance_micros, currency, last_event_time) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (msisdn) DO UPDATE SET balance_micros = balance_micros + excluded.balance_micros,
             last_event_time = max(last_event_time, excluded.last_event_time)",
    )?;
    for part in commit.parts {
        for (msisdn, delta) in &part.checkpoint.balances {
            upsert.execute(params![
                msisdn.to_string(),
                delta.micros,
                &*delta.currency,
                delta.last_event_time
            ])?;
        }
    }
    Ok(())
}

impl Charges for SqliteStore {
    fn stored_balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>> {
        let mut select = self
            .conn
            .prepare_cached("SELECT balance_micros FROM balances WHERE msisdn = ?")?;
        msisdns
            .iter()
            .map(|m| Ok(select.query_row([m.to_string()], |r| r.get(0)).optional()?))
            .collect()
    }

    fn balances(&mut self, visit: &mut dyn FnMut(StoredBalance)) -> Result<()> {
        let mut select = self.conn.prepare(
            "SELECT msisdn, balance_micros, currency, last_event_time FROM balances ORDER BY msisdn",
        )?;
        let mut rows = select.query([])?;
        while let Some(r) = rows.next()? {
            visit(StoredBalance {
                msisdn: crate::codecs::stored_msisdn("balances", &r.get::<_, String>(0)?)?,
                micros: r.get(1)?,
                currency: r.get(2)?,
                last_event_time: r.get(3)?,
            });
        }
        Ok(())
    }

    fn rated_records(
        &mut self,
        query: &RatedQuery,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()> {
        let sql = format!(
            "SELECT {COLUMNS} FROM rated_records {}",
            filter(query, |i| format!("?{i}"))
        );
        let values: Vec<Value> = filter_values(query)
            .into_iter()
            .map(|v| match v {
                FilterValue::Text(t) => Value::Text(t),
                FilterValue::Millis(m) => Value::Integer(m),
            })
            .collect();
        let mut select = self.conn.prepare(&sql)?;
        let mut rows = select.query(rusqlite::params_from_iter(values))?;
        while let Some(r) = rows.next()? {
            visit(read_rated(&r, 0)?);
        }
        Ok(())
    }
}

/// A `rated_records` row selected with [`COLUMNS`] from column `first` on, as the core's record.
pub(super) fn read_rated(r: &rusqlite::Row<'_>, first: usize) -> Result<RatedRecord> {
    StoredRow {
        record_id: r.get(first)?,
        msisdn: r.get(first + 1)?,
        event_time: r.get(first + 2)?,
        kind: r.get(first + 3)?,
        service_type: r.get(first + 4)?,
        other_party: r.get(first + 5)?,
        customer_id: r.get(first + 6)?,
        plan_id: r.get(first + 7)?,
        version: r.get(first + 8)?,
        destination_id: r.get(first + 9)?,
        destination_class: r.get(first + 10)?,
        band: r.get(first + 11)?,
        rate_id: r.get(first + 12)?,
        region: r.get(first + 13)?,
        cell_id: r.get(first + 14)?,
        technology: r.get(first + 15)?,
        usage_units: r.get(first + 16)?,
        billed_units: r.get(first + 17)?,
        allowance_id: r.get(first + 18)?,
        allowance_units: r.get(first + 19)?,
        cost_micros: r.get(first + 20)?,
        currency: r.get(first + 21)?,
        billing_period: r.get(first + 22)?,
    }
    .into_record()
}
