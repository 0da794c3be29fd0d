//! PostgreSQL: rated records and prepaid balances.

use cdrflow_core::charging::RatedRecord;
use postgres::types::ToSql;

use super::*;
use crate::codecs::rated_rows::{filter, filter_values, FilterValue, StoredRow, COLUMNS};
use crate::{RatedQuery, StoredBalance};

/// Adds a commit's rated records and balance changes.
pub(super) fn write_charges(tx: &mut Transaction<'_>, commit: &Commit<'_>) -> Result<()> {
    let rows: Vec<&RatedRecord> = commit
        .parts
        .iter()
        .flat_map(|p| &p.checkpoint.rated_records)
        .collect();
    if !rows.is_empty() {
        let text =
            |f: &dyn Fn(&RatedRecord) -> &str| -> Vec<&str> { rows.iter().map(|r| f(r)).collect() };
        let optional = |f: &dyn Fn(&RatedRecord) -> Option<&str>| -> Vec<Option<&str>> {
            rows.iter().map(|r| f(r)).collect()
        };
        let integer =
            |f: &dyn Fn(&RatedRecord) -> i64| -> Vec<i64> { rows.iter().map(|r| f(r)).collect() };
        let msisdns: Vec<String> = rows.iter().map(|r| r.msisdn.to_string()).collect();
        let others: Vec<Option<String>> = rows
            .iter()
            .map(|r| r.other_party.map(|m| m.to_string()))
            .collect();
        let periods: Vec<String> = rows.iter().map(|r| r.billing_period.to_string()).collect();
        let columns: [&(dyn ToSql + Sync); 23] = [
            &text(&|r| &r.record_id),
            &msisdns,
            &integer(&|r| r.event_time),
            &text(&|r| r.kind.as_str()),
            &text(&|r| &r.service_type),
            &others,
            &optional(&|r| r.customer_id.as_deref()),
            &text(&|r| &r.plan),
            &text(&|r| &r.version),
            &optional(&|r| r.destination.as_ref().map(|d| &*d.0)),
            &optional(&|r| r.destination.as_ref().map(|d| d.1)),
            &optional(&|r| r.band.as_deref()),
            &text(&|r| &r.rate),
            &optional(&|r| r.region.as_deref()),
            &optional(&|r| r.cell_id.as_deref()),
            &optional(&|r| r.technology.as_deref()),
            &integer(&|r| r.usage_units as i64),
            &integer(&|r| r.billed_units as i64),
            &optional(&|r| r.allowance.as_ref().map(|a| &*a.0)),
            &integer(&|r| r.allowance.as_ref().map_or(0, |a| a.1 as i64)),
            &integer(&|r| r.cost_micros),
            &text(&|r| &r.currency),
            &periods,
        ];
        tx.execute(
            &format!(
                "INSERT INTO rated_records ({COLUMNS})
                 SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                     $13::text[], $14::text[], $15::text[], $16::text[], $17::bigint[], $18::bigint[],
                     $19::text[], $20::bigint[], $21::bigint[], $22::text[], $23::text[])"
            ),
            &columns,
        )?;
    }
    let cells = crate::codecs::cell_hours(commit);
    if !cells.is_empty() {
        let ids: Vec<&str> = cells.iter().map(|c| c.cell_id).collect();
        let hours: Vec<i64> = cells.iter().map(|c| c.hour).collect();
        let records: Vec<i64> = cells.iter().map(|c| c.records).collect();
        let firsts: Vec<i64> = cells.iter().map(|c| c.first_event_time).collect();
        let lasts: Vec<i64> = cells.iter().map(|c| c.last_event_time).collect();
        let first_periods: Vec<String> = cells.iter().map(|c| c.first_period.to_string()).collect();
        let last_periods: Vec<String> = cells.iter().map(|c| c.last_period.to_string()).collect();
        tx.execute(
            &crate::codecs::upsert_cell_hours_sql(
                "SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[],
                     $5::bigint[], $6::text[], $7::text[])",
                "least",
                "greatest",
            ),
            &[
                &ids,
                &hours,
                &records,
                &firsts,
                &lasts,
                &first_periods,
                &last_periods,
            ],
        )?;
    }
    for part in commit.parts {
        for (msisdn, delta) in &part.checkpoint.balances {
            tx.execute(
                "INSERT INTO balances (msisdn, balance_micros, currency, last_event_time) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (msisdn) DO UPDATE SET balance_micros = balances.balance_micros + excluded.balance_micros,
                     last_event_time = greatest(balances.last_event_time, excluded.last_event_time)",
                &[&msisdn.to_string(), &delta.micros, &&*delta.currency, &delta.last_event_time],
            )?;
        }
    }
    Ok(())
}

impl Charges for PgStore {
    fn stored_balances(&mut self, msisdns: &[Msisdn]) -> Result<Vec<Option<i64>>> {
        let numbers: Vec<String> = msisdns.iter().map(|m| m.to_string()).collect();
        let rows = self.live_client()?.query(
            "SELECT b.balance_micros FROM unnest($1::text[]) WITH ORDINALITY AS u(m, n)
             LEFT JOIN balances b ON b.msisdn = u.m ORDER BY u.n",
            &[&numbers],
        )?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    fn balances(&mut self, visit: &mut dyn FnMut(StoredBalance)) -> Result<()> {
        for r in self.live_client()?.query(
            "SELECT msisdn, balance_micros, currency, last_event_time FROM balances ORDER BY msisdn",
            &[],
        )? {
            visit(StoredBalance {
                msisdn: crate::codecs::stored_msisdn("balances", r.get(0))?,
                micros: r.get(1),
                currency: r.get(2),
                last_event_time: r.get(3),
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
            filter(query, |i| format!("${i}"))
        );
        let values = filter_values(query);
        let params: Vec<&(dyn ToSql + Sync)> = values
            .iter()
            .map(|v| match v {
                FilterValue::Text(t) => t as &(dyn ToSql + Sync),
                FilterValue::Millis(m) => m as &(dyn ToSql + Sync),
            })
            .collect();
        for r in self.live_client()?.query(&sql, &params)? {
            visit(read_rated(&r, 0)?);
        }
        Ok(())
    }
}

/// A `rated_records` row selected with [`COLUMNS`] from column `first` on, as the core's record.
pub(super) fn read_rated(r: &postgres::Row, first: usize) -> Result<RatedRecord> {
    StoredRow {
        record_id: r.get(first),
        msisdn: r.get(first + 1),
        event_time: r.get(first + 2),
        kind: r.get(first + 3),
        service_type: r.get(first + 4),
        other_party: r.get(first + 5),
        customer_id: r.get(first + 6),
        plan_id: r.get(first + 7),
        version: r.get(first + 8),
        destination_id: r.get(first + 9),
        destination_class: r.get(first + 10),
        band: r.get(first + 11),
        rate_id: r.get(first + 12),
        region: r.get(first + 13),
        cell_id: r.get(first + 14),
        technology: r.get(first + 15),
        usage_units: r.get(first + 16),
        billed_units: r.get(first + 17),
        allowance_id: r.get(first + 18),
        allowance_units: r.get(first + 19),
        cost_micros: r.get(first + 20),
        currency: r.get(first + 21),
        billing_period: r.get(first + 22),
    }
    .into_record()
}
