//! `cdrflow rerate --period YYYY-MM [--catalogue FILE]`: re-price a
//! billing period's rated records under a (corrected) catalogue and
//! correct what was issued, never editing an issued invoice.
//!
//! In one transaction: each record of the period whose price changed gets
//! its new price (only if it still has the price it was read with);
//! prepaid balances move by the difference; every issued invoice the
//! records are on — and every finalised invoice of the period, whose
//! recurring fees the catalogue may have changed — is recomputed from the
//! records it holds, and where it stands (its figures plus its notes so
//! far) differs from the recomputation, a credit or debit note numbered in
//! its own sequence carries the difference (`cdrflow_core::billing::notes`).
//! Drafts are not touched: the next `cdrflow bill` recomputes them from the
//! new prices. Running it again finds every record priced and every
//! invoice standing where it should, and writes nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use cdrflow_catalogue::{reprice, Repriced, Repricing};
use cdrflow_core::billing::invoice::Totals;
use cdrflow_core::billing::notes::{note_between, standing, NoteDocument, NoteInput, NoteKind};
use cdrflow_core::billing::{
    build_invoice, period_days, recurring_days, InvoiceInput, InvoiceStatus, Usage,
};
use cdrflow_core::charging::RatedRecord;
use cdrflow_core::model::Kind;
use cdrflow_core::normalize::{Day, Msisdn};
use cdrflow_core::reference::Payment;
use cdrflow_store::{
    BalanceCorrection, InvoiceQuery, NoteQuery, NumberClaim, RatedQuery, RatedRepricing, RerateRun,
    StoredInvoice, StoredNote,
};

use crate::commands::bill::{load_billing, parse_period, postpaid_numbers};
use crate::config::Settings;
use crate::views::{csv_field, money_text};

#[derive(Debug, clap::Args)]
pub struct RerateArgs {
    /// The billing period whose rated records are re-priced, YYYY-MM
    #[arg(long, value_name = "PERIOD")]
    pub period: String,

    /// Billing settings, as for `cdrflow bill` (the recomputed invoices use them)
    #[arg(long, env = "CDRFLOW_BILLING", value_name = "FILE")]
    pub billing: Option<PathBuf>,

    /// Say what would change; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Also write the change report as CSV, a line per corrected invoice
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// A record whose price changes.
struct Change {
    record: RatedRecord,
    new: Repricing,
}

/// The report's header (`--report`).
const REPORT_HEADER: &str =
    "note_number,kind,invoice_number,customer_id,invoice_period,total_before,total_after,difference,currency";

pub fn run(settings: &Settings, args: RerateArgs) -> Result<()> {
    let period = parse_period(&args.period)?;
    let config = load_billing(&args.billing)?;
    let Some(catalogue) = settings.load_catalogue()? else {
        bail!("re-rating prices records under a catalogue: give --catalogue FILE (CDRFLOW_CATALOGUE), the corrected one")
    };
    crate::commands::bill::require_rated_records(settings, "rerate")?;
    let mut store = settings.open_store()?;
    let reference = store.reference()?;

    // The period's records at their new prices.
    let mut changes: HashMap<(Box<str>, Kind), Change> = HashMap::new();
    let (mut read, mut same) = (0u64, 0u64);
    let mut kept: BTreeMap<String, u64> = BTreeMap::new();
    store.rated_records(
        &RatedQuery {
            period: Some(period),
            ..RatedQuery::default()
        },
        &mut |record| {
            read += 1;
            match reprice(&catalogue, &record) {
                Repriced::Same => same += 1,
                Repriced::Kept(why) => *kept.entry(why).or_default() += 1,
                Repriced::Changed(new) => {
                    changes.insert(
                        (record.record_id.clone(), record.kind),
                        Change { record, new },
                    );
                }
            }
        },
    )?;

    // The issued invoices they touch, with the records each holds.
    let mut held: BTreeMap<String, Vec<RatedRecord>> = BTreeMap::new();
    store.held_records(period, &mut |invoice, record| {
        held.entry(invoice.to_string()).or_default().push(record)
    })?;
    let mut holder: HashMap<(Box<str>, Kind), String> = HashMap::new();
    for (invoice, records) in &held {
        for r in records {
            if changes.contains_key(&(r.record_id.clone(), r.kind)) {
                holder.insert((r.record_id.clone(), r.kind), invoice.clone());
            }
        }
    }
    // The period's invoices and those of later periods holding its late
    // records; the finalised ones, with their notes so far.
    let mut found: Vec<StoredInvoice> = Vec::new();
    let mut notes_so_far: HashMap<String, Vec<StoredNote>> = HashMap::new();
    let mut keep_note = |n: StoredNote| {
        notes_so_far
            .entry(n.invoice_id.clone())
            .or_default()
            .push(n)
    };
    store.invoices(
        &InvoiceQuery {
            period: Some(period),
            without_documents: true,
            ..InvoiceQuery::default()
        },
        &mut |i| found.push(i),
    )?;
    store.notes(
        &NoteQuery {
            period: Some(period),
            ..NoteQuery::default()
        },
        &mut keep_note,
    )?;
    let of_the_period: std::collections::HashSet<String> =
        found.iter().map(|i| i.invoice_id.clone()).collect();
    for id in held
        .keys()
        .filter(|id| !of_the_period.contains(*id))
        .cloned()
        .collect::<Vec<_>>()
    {
        store.invoices(
            &InvoiceQuery {
                invoice_id: Some(id.clone()),
                without_documents: true,
                ..InvoiceQuery::default()
            },
            &mut |i| found.push(i),
        )?;
        store.notes(
            &NoteQuery {
                invoice_id: Some(id),
                ..NoteQuery::default()
            },
            &mut keep_note,
        )?;
    }
    let invoices: BTreeMap<String, StoredInvoice> = found
        .into_iter()
        .filter(|i| i.status == InvoiceStatus::Finalised)
        .map(|i| (i.invoice_id.clone(), i))
        .collect();

    // Each recomputed from its records at their new prices; a note where it differs.
    let numbers = postpaid_numbers(&reference);
    let mut last_numbers = store.invoice_numbers()?;
    let mut claims: BTreeMap<String, NumberClaim> = BTreeMap::new();
    let issued_on = today();
    let mut notes: Vec<StoredNote> = Vec::new();
    let mut report: Vec<String> = Vec::new();
    let mut no_customer = Vec::new();
    for (invoice_id, invoice) in &invoices {
        let id: Arc<str> = Arc::from(invoice.customer_id.as_str());
        let Some(customer) = reference.customer_at(&id, i64::MAX) else {
            no_customer.push(invoice.customer_id.clone());
            continue;
        };
        let usage: Vec<Usage> = held
            .get(invoice_id)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .map(|r| {
                let change = changes.get(&(r.record_id.clone(), r.kind));
                Usage {
                    record_id: r.record_id.clone(),
                    kind: r.kind,
                    class: match change {
                        Some(c) => c.new.destination.map(|d| d.1),
                        None => r.destination.as_ref().map(|d| d.1),
                    },
                    period: r.billing_period,
                    cost_micros: change.map_or(r.cost_micros, |c| c.new.cost_micros),
                }
            })
            .collect();
        let span = period_days(invoice.period, customer.bill_cycle_day);
        let recurring = match numbers.get(&id) {
            Some(list) => recurring_days(&reference, &catalogue, &invoice.customer_id, list, span),
            None => Vec::new(),
        };
        let (now, _) = build_invoice(
            &config,
            InvoiceInput {
                customer,
                period: invoice.period,
                usage: &usage,
                recurring,
                currency: &invoice.currency,
            },
        )?;
        let earlier = notes_so_far.get(invoice_id).map_or(&[][..], Vec::as_slice);
        let Some(before) = standing(&invoice.totals, earlier.iter().map(|n| &n.totals)) else {
            bail!("invoice {invoice_id} and its notes do not fit in 64-bit micro-units");
        };
        let Some((kind, difference)) = note_between(&before, &now.totals) else {
            continue;
        };
        let entity = config
            .entities
            .iter()
            .find(|e| e.id == invoice.entity)
            .unwrap_or_else(|| config.entity_for(&customer.billing_country));
        let sequence = kind.sequence(&entity.id);
        let last = last_numbers.entry(sequence.clone()).or_insert(0);
        let claim = claims.entry(sequence.clone()).or_insert(NumberClaim {
            entity: sequence,
            last_before: *last,
            last_after: *last,
        });
        *last += 1;
        claim.last_after = *last;
        let prefix = match kind {
            NoteKind::Credit => &entity.credit_note_prefix,
            NoteKind::Debit => &entity.debit_note_prefix,
        };
        let number = format!("{prefix}{:08}", *last);
        let invoice_number = invoice.number.clone().unwrap_or_default();
        let mut document = serde_json::to_string(&NoteDocument::of(&NoteInput {
            number: &number,
            kind,
            entity: &entity.id,
            issued_on,
            invoice_number: &invoice_number,
            invoice_id,
            customer_id: &invoice.customer_id,
            invoice_period: invoice.period,
            rerated_period: period,
            currency: &invoice.currency,
            decimals: config.decimals,
            before: &before,
            after: &now.totals,
        }))?;
        document.push('\n');
        report.push(
            [
                number.clone(),
                kind.as_str().to_string(),
                invoice_number.clone(),
                csv_field(&invoice.customer_id),
                invoice.period.to_string(),
                money_text(before.total),
                money_text(now.totals.total),
                money_text(difference.total),
                invoice.currency.clone(),
            ]
            .join(","),
        );
        notes.push(StoredNote {
            note_id: format!("{invoice_id}:{}", earlier.len() + 1),
            number,
            kind,
            invoice_id: invoice_id.clone(),
            invoice_number,
            customer_id: invoice.customer_id.clone(),
            period: invoice.period,
            rerated_period: period,
            entity: entity.id.clone(),
            currency: invoice.currency.clone(),
            totals: difference,
            document,
        });
    }

    // The new prices, and the prepaid balances they move.
    let mut balances: BTreeMap<Msisdn, BalanceCorrection> = BTreeMap::new();
    let (mut cost_before, mut cost_after, mut unheld) = (0i128, 0i128, 0u64);
    let mut by_kind: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut repriced: Vec<RatedRepricing> = Vec::with_capacity(changes.len());
    for (key, Change { record: r, new }) in &changes {
        cost_before += i128::from(r.cost_micros);
        cost_after += i128::from(new.cost_micros);
        *by_kind.entry(r.kind.as_str()).or_default() += 1;
        let held_by = holder.get(key).cloned();
        unheld += u64::from(held_by.is_none());
        let prepaid = reference
            .subscriber_at(r.msisdn, r.event_time)
            .is_some_and(|s| s.payment == Payment::Prepaid);
        if prepaid && new.cost_micros != r.cost_micros {
            let b = balances.entry(r.msisdn).or_insert(BalanceCorrection {
                msisdn: r.msisdn,
                micros: 0,
                currency: r.currency.to_string(),
                last_event_time: r.event_time,
            });
            b.micros += r.cost_micros - new.cost_micros;
        }
        repriced.push(RatedRepricing {
            record_id: r.record_id.clone(),
            kind: r.kind,
            msisdn: r.msisdn,
            event_time: r.event_time,
            old_cost_micros: r.cost_micros,
            held_by,
            version: new.version.to_string(),
            destination: new.destination.map(|(id, class)| (id.to_string(), class)),
            band: new.band.map(str::to_string),
            rate: new.rate.to_string(),
            billed_units: new.billed_units,
            cost_micros: new.cost_micros,
        });
    }
    let run = RerateRun {
        repriced,
        balances: balances.into_values().collect(),
        notes,
        numbers: claims.into_values().collect(),
    };
    if !args.dry_run && !(run.repriced.is_empty() && run.notes.is_empty()) {
        store.save_rerate(&run)?;
    }

    // What changed.
    let verb = if args.dry_run { "would be" } else { "were" };
    let kinds: Vec<String> = by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    println!(
        "{period}: {read} rated records read; {} {verb} re-priced{}, {same} priced as before",
        run.repriced.len(),
        if kinds.is_empty() {
            String::new()
        } else {
            format!(" ({})", kinds.join(", "))
        },
    );
    for (why, count) in &kept {
        println!("  {count} kept their price: {why}");
    }
    if !run.repriced.is_empty() {
        println!(
            "  their cost: {} before, {} after ({})",
            money_text(cost_before as i64),
            money_text(cost_after as i64),
            money_text((cost_after - cost_before) as i64)
        );
    }
    let moved: i64 = run.balances.iter().map(|b| b.micros).sum();
    if !run.balances.is_empty() {
        println!(
            "  {} prepaid balances {verb} corrected, by {} in all",
            run.balances.len(),
            money_text(moved)
        );
    }
    let count = |kind| run.notes.iter().filter(|n| n.kind == kind).count();
    let noted: Totals = run.notes.iter().fold(Totals::default(), |sum, n| {
        sum.checked_add(&n.totals).unwrap_or(sum)
    });
    println!(
        "  {} issued invoices recomputed: {} credit notes and {} debit notes {verb} issued, {} in all",
        invoices.len(),
        count(NoteKind::Credit),
        count(NoteKind::Debit),
        money_text(noted.total)
    );
    for line in report.iter().take(10) {
        println!("    {line}");
    }
    if report.len() > 10 {
        println!(
            "    … {} more (--report FILE lists them all)",
            report.len() - 10
        );
    }
    if unheld > 0 {
        println!("  {unheld} re-priced records are on no issued invoice: the next `cdrflow bill` bills them at the new prices");
    }
    if !no_customer.is_empty() {
        println!(
            "  {} invoices' customers have no customers row (e.g. {}): not recomputed",
            no_customer.len(),
            no_customer[0]
        );
    }
    if let Some(path) = &args.report {
        let mut text = format!("{REPORT_HEADER}\n");
        for line in &report {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(path, text)
            .with_context(|| format!("cannot write the report {}", path.display()))?;
    }
    Ok(())
}

/// Today (UTC): a note's issue date.
fn today() -> Day {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Day((now / 86_400) as i32)
}
