//! PostgreSQL: invoices, their records and numbers (SQL shared in `codecs::invoice_rows`).

use std::collections::{BTreeMap, BTreeSet};

use cdrflow_core::charging::RatedRecord;

use cdrflow_core::reference::BillingPeriod;
use postgres::fallible_iterator::FallibleIterator;

use super::*;
use crate::codecs::invoice_rows::{self as sql, conflict, StoredRow};
use crate::codecs::note_rows as notes;
use crate::codecs::rated_rows;
use crate::{
    BillRun, BillableRecord, DraftLine, InvoiceQuery, NoteQuery, NumberClaim, RatedRepricing,
    RerateRun, StoredInvoice, StoredNote,
};

/// Re-pricings per statement.
const REPRICES_PER_STATEMENT: usize = 10_000;

/// [`notes::REPRICE`] and [`notes::HOLDER`]'s check for many records at
/// once (arrays, one element per record): each row is re-priced only if
/// it still costs what the re-rating read and the same invoice (or none)
/// still holds it; the count of rows re-priced tells whether all were.
const REPRICE_MANY: &str = "
    WITH input AS (
        SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
            $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
            $12::bigint[], $13::text[])
        AS t(msisdn, event_time, record_id, kind, version, destination_id, destination_class,
            band, rate_id, billed_units, cost_micros, old_cost_micros, held_by)
    ), unmoved AS (
        SELECT * FROM input
        WHERE (SELECT i.invoice_id FROM invoice_items i
               WHERE i.record_id = input.record_id AND i.kind = input.kind)
            IS NOT DISTINCT FROM input.held_by
    ), repriced AS (
        UPDATE rated_records r SET catalogue_version = u.version,
            destination_id = u.destination_id, destination_class = u.destination_class,
            band = u.band, rate_id = u.rate_id, billed_units = u.billed_units,
            cost_micros = u.cost_micros
        FROM unmoved u
        WHERE r.msisdn = u.msisdn AND r.event_time = u.event_time
            AND r.record_id = u.record_id AND r.kind = u.kind
            AND r.cost_micros = u.old_cost_micros
        RETURNING 1
    )
    SELECT count(*) FROM repriced";

impl Billing for PgStore {
    fn billable_usage(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(BillableRecord),
    ) -> Result<()> {
        let period = period.to_string();
        let mut rows = self.live_client()?.query_raw(sql::BILLABLE, [&period])?;
        while let Some(r) = rows.next()? {
            let class = rated_rows::stored_class(r.get(4))?;
            let period = rated_rows::stored_billing_period(r.get(8))?;
            visit(BillableRecord {
                usage: cdrflow_core::billing::Usage {
                    record_id: r.get::<_, &str>(0).into(),
                    kind: sql::stored_kind(r.get(3))?,
                    class,
                    period,
                    cost_micros: r.get(6),
                },
                msisdn: crate::codecs::stored_msisdn("rated_records", r.get(1))?,
                event_time: r.get(2),
                customer_id: r.get(5),
                currency: r.get(7),
            });
        }
        Ok(())
    }

    fn drafts_before(
        &mut self,
        period: BillingPeriod,
    ) -> Result<BTreeSet<(String, BillingPeriod)>> {
        let rows = self
            .live_client()?
            .query(sql::DRAFTS_BEFORE, &[&period.to_string()])?;
        rows.iter()
            .map(|r| Ok((r.get(0), sql::stored_period(r.get(1))?)))
            .collect()
    }

    fn invoices(
        &mut self,
        query: &InvoiceQuery,
        visit: &mut dyn FnMut(StoredInvoice),
    ) -> Result<()> {
        let (text, values) = sql::select(query);
        let mut rows = self.live_client()?.query_raw(&text, &values)?;
        while let Some(r) = rows.next()? {
            let mut figures = [0i64; 9];
            for (i, f) in figures.iter_mut().enumerate() {
                *f = r.get(8 + i);
            }
            visit(
                StoredRow {
                    invoice_id: r.get(0),
                    customer_id: r.get(1),
                    period: r.get(2),
                    revision: i64::from(r.get::<_, i32>(3)),
                    entity: r.get(4),
                    number: r.get(5),
                    status: r.get(6),
                    currency: r.get(7),
                    figures,
                    document: r.get(17),
                    document_hash: r.get(18),
                }
                .into_invoice()?,
            );
        }
        Ok(())
    }

    fn invoice_numbers(&mut self) -> Result<BTreeMap<String, u64>> {
        let rows = self.live_client()?.query(sql::NUMBERS, &[])?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }

    fn save_bill_run(&mut self, run: &BillRun) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        if let Some(entity) = claim_numbers(&mut tx, &run.numbers)? {
            return Err(conflict(&format!("the numbers of entity `{entity}`")));
        }
        for id in &run.removed_drafts {
            tx.execute(sql::DELETE_DRAFT, &[id])?;
        }
        for write in &run.writes {
            let i = &write.invoice;
            let stored = tx.query_opt(sql::STATUS_OF, &[&i.invoice_id])?;
            if stored.is_some_and(|r| r.get::<_, &str>(0) != "draft") {
                return Err(conflict(&format!("invoice {}", i.invoice_id)));
            }
            let f = i.totals.in_order();
            let period = i.period.to_string();
            let revision = i.revision as i32;
            tx.execute(
                sql::UPSERT,
                &[
                    &i.invoice_id,
                    &i.customer_id,
                    &period,
                    &revision,
                    &i.entity,
                    &i.number,
                    &i.status.as_str(),
                    &i.currency,
                    &f[0],
                    &f[1],
                    &f[2],
                    &f[3],
                    &f[4],
                    &f[5],
                    &f[6],
                    &f[7],
                    &f[8],
                    &i.document,
                    &i.document_hash,
                ],
            )?;
            let items = &write.items;
            let ids: Vec<&str> = items.iter().map(|it| &*it.record_id).collect();
            let kinds: Vec<&str> = items.iter().map(|it| it.kind.as_str()).collect();
            let numbers: Vec<String> = items.iter().map(|it| it.msisdn.to_string()).collect();
            let times: Vec<i64> = items.iter().map(|it| it.event_time).collect();
            let lines: Vec<i32> = items.iter().map(|it| it.line as i32).collect();
            let inserted = tx.execute(
                "INSERT INTO invoice_items (record_id, kind, msisdn, event_time, invoice_id, line_no)
                 SELECT u.r, u.k, u.m, u.t, $6, u.l
                 FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::int[]) AS u(r, k, m, t, l)
                 ON CONFLICT DO NOTHING",
                &[&ids, &kinds, &numbers, &times, &lines, &i.invoice_id],
            )?;
            if inserted as usize != items.len() {
                return Err(conflict(&format!(
                    "the records of invoice {}",
                    i.invoice_id
                )));
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn void_invoice(&mut self, number: &str) -> Result<Option<String>> {
        let mut tx = self.live_client()?.transaction()?;
        let id: Option<String> = tx.query_opt(sql::VOID, &[&number])?.map(|r| r.get(0));
        if let Some(id) = &id {
            tx.execute(sql::DELETE_ITEMS, &[id])?;
        }
        tx.commit()?;
        Ok(id)
    }

    fn invoice_line_records(
        &mut self,
        invoice_id: &str,
        line: u32,
        limit: u32,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()> {
        let (line, limit) = (line as i32, i64::from(limit));
        let rows = self
            .live_client()?
            .query(&sql::line_records(), &[&invoice_id, &line, &limit])?;
        for r in rows {
            visit(super::charges::read_rated(&r, 0)?);
        }
        Ok(())
    }

    fn draft_line_records(
        &mut self,
        line: &DraftLine,
        limit: u32,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()> {
        let rows = self.live_client()?.query(
            &sql::draft_line_records(),
            &[
                &line.customer_id,
                &line.usage_period.to_string(),
                &line.kind.as_str(),
                &line.class.as_deref().unwrap_or(""),
                &i64::from(limit),
            ],
        )?;
        for r in rows {
            visit(super::charges::read_rated(&r, 0)?);
        }
        Ok(())
    }

    fn customers_of(&mut self, msisdns: &[Msisdn]) -> Result<Vec<String>> {
        if msisdns.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<String> = msisdns.iter().map(|m| m.to_string()).collect();
        let rows = self
            .live_client()?
            .query_raw(&sql::customers_of(numbers.len()), &numbers)?;
        Ok(rows.map(|r| Ok(r.get(0))).collect()?)
    }

    fn held_records(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(&str, RatedRecord),
    ) -> Result<()> {
        let period = period.to_string();
        let mut rows = self.live_client()?.query_raw(&notes::held(), [&period])?;
        while let Some(r) = rows.next()? {
            visit(r.get(0), super::charges::read_rated(&r, 1)?);
        }
        Ok(())
    }

    fn notes(&mut self, query: &NoteQuery, visit: &mut dyn FnMut(StoredNote)) -> Result<()> {
        let (text, values) = notes::select(query);
        let mut rows = self.live_client()?.query_raw(&text, &values)?;
        while let Some(r) = rows.next()? {
            let text: [String; 10] = std::array::from_fn(|i| r.get(i));
            let figures: [i64; 9] = std::array::from_fn(|i| r.get(10 + i));
            visit(
                notes::StoredRow {
                    text,
                    figures,
                    document: r.get(19),
                }
                .into_note()?,
            );
        }
        Ok(())
    }

    fn save_rerate(&mut self, run: &RerateRun) -> Result<()> {
        let mut tx = self.live_client()?.transaction()?;
        if let Some(sequence) = claim_numbers(&mut tx, &run.numbers)? {
            return Err(notes::conflict(&format!("the note sequence `{sequence}`")));
        }
        // A statement per chunk, not two per record: a round trip each was
        // the whole of a large period's re-rating.
        let reprice = tx.prepare(REPRICE_MANY)?;
        for chunk in run.repriced.chunks(REPRICES_PER_STATEMENT) {
            let column = |f: &dyn Fn(&RatedRepricing) -> Option<String>| -> Vec<Option<String>> {
                chunk.iter().map(f).collect()
            };
            let number =
                |f: &dyn Fn(&RatedRepricing) -> i64| -> Vec<i64> { chunk.iter().map(f).collect() };
            let changed: i64 = tx
                .query_one(
                    &reprice,
                    &[
                        &column(&|p| Some(p.msisdn.to_string())),
                        &number(&|p| p.event_time),
                        &column(&|p| Some(p.record_id.to_string())),
                        &column(&|p| Some(p.kind.as_str().to_string())),
                        &column(&|p| Some(p.version.clone())),
                        &column(&|p| p.destination.as_ref().map(|d| d.0.clone())),
                        &column(&|p| p.destination.as_ref().map(|d| d.1.to_string())),
                        &column(&|p| p.band.clone()),
                        &column(&|p| Some(p.rate.clone())),
                        &number(&|p| p.billed_units as i64),
                        &number(&|p| p.cost_micros),
                        &number(&|p| p.old_cost_micros),
                        &column(&|p| p.held_by.clone()),
                    ],
                )?
                .get(0);
            if changed != chunk.len() as i64 {
                return Err(notes::conflict(&format!(
                    "{} of {} records from {} ({})",
                    chunk.len() as i64 - changed,
                    chunk.len(),
                    chunk[0].record_id,
                    chunk[0].kind.as_str()
                )));
            }
        }
        for b in &run.balances {
            tx.execute(
                notes::CORRECT_BALANCE,
                &[
                    &b.msisdn.to_string(),
                    &b.micros,
                    &b.currency,
                    &b.last_event_time,
                ],
            )?;
        }
        let insert = format!("{} ON CONFLICT DO NOTHING", notes::INSERT);
        for note in &run.notes {
            let (text, f) = notes::values(note);
            let inserted = tx.execute(
                &insert,
                &[
                    &text[0],
                    &text[1],
                    &text[2],
                    &text[3],
                    &text[4],
                    &text[5],
                    &text[6],
                    &text[7],
                    &text[8],
                    &text[9],
                    &f[0],
                    &f[1],
                    &f[2],
                    &f[3],
                    &f[4],
                    &f[5],
                    &f[6],
                    &f[7],
                    &f[8],
                    &note.document,
                ],
            )?;
            if inserted != 1 {
                return Err(notes::conflict(&format!("note {}", note.note_id)));
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Moves each claimed sequence from its `last_before` to its
/// `last_after`; the sequence another run moved meanwhile, if any.
fn claim_numbers(
    tx: &mut postgres::Transaction<'_>,
    claims: &[NumberClaim],
) -> Result<Option<String>> {
    for claim in claims {
        let (before, after) = (claim.last_before as i64, claim.last_after as i64);
        let changed = if claim.last_before == 0 {
            tx.execute(sql::CLAIM_FIRST_NUMBER, &[&claim.entity, &after])?
        } else {
            tx.execute(sql::CLAIM_NEXT_NUMBER, &[&claim.entity, &before, &after])?
        };
        if changed != 1 {
            return Ok(Some(claim.entity.clone()));
        }
    }
    Ok(None)
}
