//! SQLite: invoices, their records and numbers (SQL shared in `codecs::invoice_rows`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use cdrflow_core::charging::RatedRecord;

use cdrflow_core::reference::BillingPeriod;

use super::*;
use crate::codecs::invoice_rows::{self as sql, conflict, StoredRow};
use crate::codecs::note_rows as notes;
use crate::codecs::rated_rows;
use crate::{
    BillRun, BillableRecord, DraftLine, InvoiceItem, InvoiceQuery, NoteQuery, NumberClaim,
    RerateRun, StoredInvoice, StoredNote,
};

/// The shared SQL with SQLite's numbered placeholders.
fn sqlite(text: &str) -> String {
    text.replace('$', "?")
}

impl Billing for SqliteStore {
    fn billable_usage(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(BillableRecord),
    ) -> Result<()> {
        let mut select = self.conn.prepare(&sqlite(sql::BILLABLE))?;
        let mut rows = select.query([period.to_string()])?;
        while let Some(r) = rows.next()? {
            let class = rated_rows::stored_class(
                r.get_ref(4)?
                    .as_str_or_null()
                    .map_err(rusqlite::Error::from)?,
            )?;
            let period = rated_rows::stored_billing_period(
                r.get_ref(8)?.as_str().map_err(rusqlite::Error::from)?,
            )?;
            visit(BillableRecord {
                usage: cdrflow_core::billing::Usage {
                    record_id: r
                        .get_ref(0)?
                        .as_str()
                        .map_err(rusqlite::Error::from)?
                        .into(),
                    kind: sql::stored_kind(r.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?)?,
                    class,
                    period,
                    cost_micros: r.get(6)?,
                },
                msisdn: crate::codecs::stored_msisdn(
                    "rated_records",
                    r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?,
                )?,
                event_time: r.get(2)?,
                customer_id: r.get(5)?,
                currency: r.get(7)?,
            });
        }
        Ok(())
    }

    fn drafts_before(
        &mut self,
        period: BillingPeriod,
    ) -> Result<BTreeSet<(String, BillingPeriod)>> {
        let mut select = self.conn.prepare(&sqlite(sql::DRAFTS_BEFORE))?;
        let mut rows = select.query([period.to_string()])?;
        let mut out = BTreeSet::new();
        while let Some(r) = rows.next()? {
            let text: String = r.get(1)?;
            out.insert((r.get(0)?, sql::stored_period(&text)?));
        }
        Ok(out)
    }

    fn invoices(
        &mut self,
        query: &InvoiceQuery,
        visit: &mut dyn FnMut(StoredInvoice),
    ) -> Result<()> {
        let (text, values) = sql::select(query);
        let mut select = self.conn.prepare(&sqlite(&text))?;
        let mut rows = select.query(rusqlite::params_from_iter(values))?;
        while let Some(r) = rows.next()? {
            let mut figures = [0i64; 9];
            for (i, f) in figures.iter_mut().enumerate() {
                *f = r.get(8 + i)?;
            }
            visit(
                StoredRow {
                    invoice_id: r.get(0)?,
                    customer_id: r.get(1)?,
                    period: r.get(2)?,
                    revision: r.get(3)?,
                    entity: r.get(4)?,
                    number: r.get(5)?,
                    status: r.get(6)?,
                    currency: r.get(7)?,
                    figures,
                    document: r.get(17)?,
                    document_hash: r.get(18)?,
                }
                .into_invoice()?,
            );
        }
        Ok(())
    }

    fn invoice_numbers(&mut self) -> Result<BTreeMap<String, u64>> {
        let mut select = self.conn.prepare(sql::NUMBERS)?;
        let rows = select.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn save_bill_run(&mut self, run: &BillRun) -> Result<()> {
        let tx = self.conn.transaction()?;
        if let Some(entity) = claim_numbers(&tx, &run.numbers)? {
            return Err(conflict(&format!("the numbers of entity `{entity}`")));
        }
        for id in &run.removed_drafts {
            tx.execute(&sqlite(sql::DELETE_DRAFT), [id])?;
        }
        {
            let mut status = tx.prepare_cached(&sqlite(sql::STATUS_OF))?;
            let mut upsert = tx.prepare_cached(&sqlite(sql::UPSERT))?;
            let mut item = tx.prepare_cached(&sqlite(sql::INSERT_ITEM))?;
            for write in &run.writes {
                let i = &write.invoice;
                let stored: Option<String> =
                    status.query_row([&i.invoice_id], |r| r.get(0)).optional()?;
                if stored.is_some_and(|s| s != "draft") {
                    return Err(conflict(&format!("invoice {}", i.invoice_id)));
                }
                let f = i.totals.in_order();
                upsert.execute(params![
                    i.invoice_id,
                    i.customer_id,
                    i.period.to_string(),
                    i.revision,
                    i.entity,
                    i.number,
                    i.status.as_str(),
                    i.currency,
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    f[4],
                    f[5],
                    f[6],
                    f[7],
                    f[8],
                    i.document,
                    i.document_hash,
                ])?;
            }
            // In key order: each insert lands beside the one before in the
            // items' B-tree (in invoice order, twice as slow for a million).
            let mut items: Vec<(&InvoiceItem, &str)> = run
                .writes
                .iter()
                .flat_map(|w| {
                    let id = w.invoice.invoice_id.as_str();
                    w.items.iter().map(move |it| (it, id))
                })
                .collect();
            items.sort_unstable_by(|a, b| {
                (&a.0.record_id, a.0.kind).cmp(&(&b.0.record_id, b.0.kind))
            });
            // Many rows per statement: a statement per row was a third of the commit.
            let mut many = tx.prepare_cached(&many_items_sql())?;
            let mut numbers = vec![String::new(); ITEMS_PER_INSERT];
            let chunks = items.chunks_exact(ITEMS_PER_INSERT);
            let rest = chunks.remainder();
            for chunk in chunks {
                for (i, (it, invoice_id)) in chunk.iter().enumerate() {
                    numbers[i].clear();
                    write!(numbers[i], "{}", it.msisdn).expect("writing to a String");
                    let at = i * 6;
                    many.raw_bind_parameter(at + 1, &*it.record_id)?;
                    many.raw_bind_parameter(at + 2, it.kind.as_str())?;
                    many.raw_bind_parameter(at + 3, numbers[i].as_str())?;
                    many.raw_bind_parameter(at + 4, it.event_time)?;
                    many.raw_bind_parameter(at + 5, *invoice_id)?;
                    many.raw_bind_parameter(at + 6, it.line)?;
                }
                refused_as_conflict(many.raw_execute(), || chunk[0].0.record_id.to_string())?;
            }
            for (it, invoice_id) in rest {
                numbers[0].clear();
                write!(numbers[0], "{}", it.msisdn).expect("writing to a String");
                let values = params![
                    &*it.record_id,
                    it.kind.as_str(),
                    numbers[0],
                    it.event_time,
                    invoice_id,
                    it.line
                ];
                refused_as_conflict(item.execute(values), || it.record_id.to_string())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn void_invoice(&mut self, number: &str) -> Result<Option<String>> {
        let tx = self.conn.transaction()?;
        let id: Option<String> = tx
            .query_row(&sqlite(sql::VOID), [number], |r| r.get(0))
            .optional()?;
        if let Some(id) = &id {
            tx.execute(&sqlite(sql::DELETE_ITEMS), [id])?;
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
        let mut select = self.conn.prepare(&sqlite(&sql::line_records()))?;
        let mut rows = select.query(params![invoice_id, line, limit])?;
        while let Some(r) = rows.next()? {
            visit(super::charges::read_rated(r, 0)?);
        }
        Ok(())
    }

    fn draft_line_records(
        &mut self,
        line: &DraftLine,
        limit: u32,
        visit: &mut dyn FnMut(RatedRecord),
    ) -> Result<()> {
        let mut select = self.conn.prepare(&sqlite(&sql::draft_line_records()))?;
        let mut rows = select.query(params![
            line.customer_id,
            line.usage_period.to_string(),
            line.kind.as_str(),
            line.class.as_deref().unwrap_or(""),
            limit
        ])?;
        while let Some(r) = rows.next()? {
            visit(super::charges::read_rated(r, 0)?);
        }
        Ok(())
    }

    fn customers_of(&mut self, msisdns: &[Msisdn]) -> Result<Vec<String>> {
        if msisdns.is_empty() {
            return Ok(Vec::new());
        }
        let numbers: Vec<String> = msisdns.iter().map(|m| m.to_string()).collect();
        let mut select = self
            .conn
            .prepare(&sqlite(&sql::customers_of(numbers.len())))?;
        let rows = select.query_map(rusqlite::params_from_iter(numbers), |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn held_records(
        &mut self,
        period: BillingPeriod,
        visit: &mut dyn FnMut(&str, RatedRecord),
    ) -> Result<()> {
        let mut select = self.conn.prepare(&sqlite(&notes::held()))?;
        let mut rows = select.query([period.to_string()])?;
        while let Some(r) = rows.next()? {
            let invoice: String = r.get(0)?;
            visit(&invoice, super::charges::read_rated(r, 1)?);
        }
        Ok(())
    }

    fn notes(&mut self, query: &NoteQuery, visit: &mut dyn FnMut(StoredNote)) -> Result<()> {
        let (text, values) = notes::select(query);
        let mut select = self.conn.prepare(&sqlite(&text))?;
        let mut rows = select.query(rusqlite::params_from_iter(values))?;
        while let Some(r) = rows.next()? {
            let mut text: [String; 10] = Default::default();
            for (i, t) in text.iter_mut().enumerate() {
                *t = r.get(i)?;
            }
            let mut figures = [0i64; 9];
            for (i, f) in figures.iter_mut().enumerate() {
                *f = r.get(10 + i)?;
            }
            visit(
                notes::StoredRow {
                    text,
                    figures,
                    document: r.get(19)?,
                }
                .into_note()?,
            );
        }
        Ok(())
    }

    fn save_rerate(&mut self, run: &RerateRun) -> Result<()> {
        let tx = self.conn.transaction()?;
        if let Some(sequence) = claim_numbers(&tx, &run.numbers)? {
            return Err(notes::conflict(&format!("the note sequence `{sequence}`")));
        }
        {
            let mut holder = tx.prepare_cached(&sqlite(notes::HOLDER))?;
            let mut reprice = tx.prepare_cached(&sqlite(notes::REPRICE))?;
            for p in &run.repriced {
                let what = || format!("record {} ({})", p.record_id, p.kind.as_str());
                let held: Option<String> = holder
                    .query_row(params![&*p.record_id, p.kind.as_str()], |r| r.get(0))
                    .optional()?;
                if held != p.held_by {
                    return Err(notes::conflict(&what()));
                }
                let changed = reprice.execute(params![
                    p.msisdn.to_string(),
                    p.event_time,
                    &*p.record_id,
                    p.kind.as_str(),
                    p.version,
                    p.destination.as_ref().map(|d| d.0.as_str()),
                    p.destination.as_ref().map(|d| d.1),
                    p.band,
                    p.rate,
                    p.billed_units as i64,
                    p.cost_micros,
                    p.old_cost_micros,
                ])?;
                if changed != 1 {
                    return Err(notes::conflict(&what()));
                }
            }
            let mut balance = tx.prepare_cached(&sqlite(notes::CORRECT_BALANCE))?;
            for b in &run.balances {
                balance.execute(params![
                    b.msisdn.to_string(),
                    b.micros,
                    b.currency,
                    b.last_event_time
                ])?;
            }
            let mut insert = tx.prepare_cached(&sqlite(notes::INSERT))?;
            for note in &run.notes {
                let (text, f) = notes::values(note);
                let inserted = insert.execute(params![
                    text[0],
                    text[1],
                    text[2],
                    text[3],
                    text[4],
                    text[5],
                    text[6],
                    text[7],
                    text[8],
                    text[9],
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    f[4],
                    f[5],
                    f[6],
                    f[7],
                    f[8],
                    note.document,
                ]);
                match inserted {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        return Err(notes::conflict(&format!("note {}", note.note_id)));
                    }
                    other => other?,
                };
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Moves each claimed sequence from its `last_before` to its
/// `last_after`; the sequence another run moved meanwhile, if any.
fn claim_numbers(tx: &Transaction<'_>, claims: &[NumberClaim]) -> Result<Option<String>> {
    for claim in claims {
        let changed = if claim.last_before == 0 {
            tx.execute(
                &sqlite(sql::CLAIM_FIRST_NUMBER),
                params![claim.entity, claim.last_after as i64],
            )?
        } else {
            tx.execute(
                &sqlite(sql::CLAIM_NEXT_NUMBER),
                params![
                    claim.entity,
                    claim.last_before as i64,
                    claim.last_after as i64
                ],
            )?
        };
        if changed != 1 {
            return Ok(Some(claim.entity.clone()));
        }
    }
    Ok(None)
}

/// Items per multi-row insert (6 values each, far under SQLite's limit).
const ITEMS_PER_INSERT: usize = 64;

fn many_items_sql() -> String {
    let row = "(?, ?, ?, ?, ?, ?)";
    let rows = vec![row; ITEMS_PER_INSERT].join(", ");
    let single = sqlite(sql::INSERT_ITEM);
    let head = &single[..single.find("VALUES").expect("an INSERT ... VALUES")];
    format!("{head}VALUES {rows}")
}

/// An insert that broke the items' key: another run issued the record first.
fn refused_as_conflict(
    result: rusqlite::Result<usize>,
    record: impl FnOnce() -> String,
) -> Result<()> {
    match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            Err(conflict(&format!("record {}", record())))
        }
        other => other.map(|_| ()).map_err(Into::into),
    }
}
