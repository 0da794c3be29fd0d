//! `cdrflow bill --period YYYY-MM [--finalise]`: a billing run (seed 001's
//! billing layer). Each customer with postpaid usage or a postpaid
//! subscription gets a draft invoice for the period, recomputed by every
//! run until it is finalised (numbered without gaps per billing entity);
//! a record no issued invoice holds yet, from this period or an earlier one
//! (late) whose draft is not open, goes on it. Only issued invoices hold
//! their records (`invoice_items`): a draft is the recomputation of what
//! would be issued. `--void NUMBER` cancels a finalised invoice and
//! frees its records for the next run. Running it again with nothing new
//! writes nothing and leaves every document byte-identical.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};

use cdrflow_core::billing::document::document_hash;
use cdrflow_core::billing::invoice::{MonthlyFees, Totals};
use cdrflow_core::billing::{
    build_invoice, period_days, recurring_days, BillingConfig, InvoiceDocument, InvoiceInput,
    InvoiceStatus, Usage,
};
use cdrflow_core::normalize::Msisdn;
use cdrflow_core::reference::{BillingPeriod, Payment, ReferenceData};
use cdrflow_store::{BillRun, InvoiceItem, InvoiceQuery, InvoiceWrite, NumberClaim, StoredInvoice};

use cdrflow_lake::{write_invoices, InvoiceRow};

use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct BillArgs {
    /// The billing period to bill, YYYY-MM (each customer's runs from its bill-cycle day)
    #[arg(long, value_name = "PERIOD", required_unless_present = "void")]
    pub period: Option<String>,

    /// Number the period's drafts and issue them (they never change again)
    #[arg(long)]
    pub finalise: bool,

    /// Void the finalised invoice NUMBER: its records go on the next run's invoice
    #[arg(long, value_name = "NUMBER", conflicts_with_all = ["period", "finalise"])]
    pub void: Option<String>,

    /// Billing settings: tax rates, entities, discounts, rounding (TOML;
    /// config/billing.toml documents the format) [default: the shipped ones, 20% tax]
    #[arg(long, env = "CDRFLOW_BILLING", value_name = "FILE")]
    pub billing: Option<PathBuf>,
}

#[derive(Default)]
struct Billable {
    records: Vec<Usage>,
    places: Vec<(Msisdn, i64)>,
    currency: String,
}

/// No catalogue: no plan has a fee.
struct NoFees;

impl MonthlyFees for NoFees {
    fn monthly_fee_nanos(&self, _: &str, _: i64) -> Option<i128> {
        None
    }
}

pub fn load_billing(path: &Option<PathBuf>) -> Result<BillingConfig> {
    match path {
        None => Ok(BillingConfig::shipped()),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the billing file {}", path.display()))?;
            BillingConfig::parse(&text)
                .with_context(|| format!("in the billing file {}", path.display()))
        }
    }
}

/// Each customer's numbers that were postpaid at some time: whose
/// subscriptions may carry a recurring fee.
pub fn postpaid_numbers(reference: &ReferenceData) -> HashMap<Arc<str>, Vec<Msisdn>> {
    let mut numbers: HashMap<Arc<str>, Vec<Msisdn>> = HashMap::new();
    for history in reference.subscriptions() {
        for row in history.filter(|r| r.payment == Payment::Postpaid) {
            let list = numbers.entry(row.customer_id.clone()).or_default();
            if !list.contains(&row.msisdn) {
                list.push(row.msisdn);
            }
        }
    }
    numbers
}

/// Billing, re-rating and reports read rated records from the store: with
/// a catalogue they are kept there unless `--rated-records off` said not
/// to, and then there is nothing to bill — say so rather than bill nothing.
pub fn require_rated_records(settings: &Settings, command: &str) -> Result<()> {
    if settings.catalogue.is_some() && !settings.rated_records_in_store {
        bail!(
            "`cdrflow {command}` reads rated records from the store, and `--rated-records off` \
             (or `rated_records = false` in the config file) keeps them in the lake only: \
             process with rated records on to bill them"
        );
    }
    Ok(())
}

pub fn parse_period(text: &str) -> Result<BillingPeriod> {
    BillingPeriod::parse(text)
        .with_context(|| format!("`{text}` is not a billing period such as 2024-03"))
}

pub fn run(settings: &Settings, args: BillArgs) -> Result<()> {
    require_rated_records(settings, "bill")?;
    let mut store = settings.open_store()?;
    if let Some(number) = &args.void {
        return match store.void_invoice(number)? {
            Some(id) => {
                println!("voided {number} ({id}): its records go on the next `cdrflow bill` of its period");
                Ok(())
            }
            None => bail!(
                "no finalised invoice is numbered {number} (`cdrflow export invoices` lists them)"
            ),
        };
    }
    let period = parse_period(args.period.as_deref().expect("clap requires --period"))?;
    let config = load_billing(&args.billing)?;
    let catalogue = settings.load_catalogue()?;
    let fees: &dyn MonthlyFees = match &catalogue {
        Some(c) => c,
        None => {
            tracing::warn!("no --catalogue: invoices carry usage only, no plan's monthly fee");
            &NoFees
        }
    };
    let catalogue_currency = catalogue
        .as_ref()
        .and_then(|c| c.versions().last())
        .map(|v| v.currency.clone());
    let started = std::time::Instant::now();
    let reference = store.reference()?;
    tracing::info!(elapsed = ?started.elapsed(), "reference data read");

    // The period's invoices so far: each customer's latest revision.
    let mut existing: BTreeMap<String, StoredInvoice> = BTreeMap::new();
    store.invoices(
        &InvoiceQuery {
            period: Some(period),
            without_documents: true,
            ..InvoiceQuery::default()
        },
        &mut |invoice| {
            existing.insert(invoice.customer_id.clone(), invoice);
        },
    )?;

    // What may be billed, by customer: each one's records, where they are
    // (number, event time) and their currency. Prepaid records were paid
    // from a balance.
    let mut usage: HashMap<String, Billable> = HashMap::new();
    let (mut prepaid, mut waiting) = (0u64, 0u64);
    let mut mixed = None;
    // Records of a period whose draft is still open wait for that draft.
    let earlier_drafts = store.drafts_before(period)?;
    let mut on_earlier_drafts = 0u64;
    store.billable_usage(period, &mut |r| {
        if r.usage.period < period
            && earlier_drafts.contains(&(r.customer_id.clone(), r.usage.period))
        {
            on_earlier_drafts += 1;
            return;
        }
        let postpaid = reference
            .subscriber_at(r.msisdn, r.event_time)
            .is_none_or(|s| s.payment == Payment::Postpaid);
        if !postpaid {
            prepaid += 1;
            return;
        }
        if existing
            .get(&r.customer_id)
            .is_some_and(|i| i.status == InvoiceStatus::Finalised)
        {
            waiting += 1;
            return;
        }
        let entry = usage.entry(r.customer_id).or_insert_with(|| Billable {
            records: Vec::new(),
            places: Vec::new(),
            currency: r.currency.clone(),
        });
        if entry.currency != r.currency && mixed.is_none() {
            mixed = Some((entry.currency.clone(), r.currency.clone()));
        }
        entry.records.push(r.usage);
        entry.places.push((r.msisdn, r.event_time));
    })?;
    tracing::info!(
        records = usage.values().map(|b| b.records.len()).sum::<usize>(),
        customers = usage.len(),
        elapsed = ?started.elapsed(),
        "billable records read"
    );
    if let Some((first, second)) = mixed {
        bail!("one customer's records for {period} are in {first} and in {second}: one invoice holds one currency; rate them with one catalogue currency");
    }

    let numbers = postpaid_numbers(&reference);
    let mut customers: Vec<String> = usage.keys().cloned().collect();
    if catalogue.is_some() {
        customers.extend(numbers.keys().map(|c| c.to_string()));
    }
    customers.sort_unstable();
    customers.dedup();

    let mut last_numbers = store.invoice_numbers()?;
    let mut claims: BTreeMap<String, NumberClaim> = BTreeMap::new();
    let mut run = BillRun::default();
    let (mut unchanged, mut finalised_before, mut no_customer_row) = (0u64, 0u64, Vec::new());
    let mut totals = Totals::default();
    for customer_id in &customers {
        let previous = existing.get(customer_id);
        if previous.is_some_and(|i| i.status == InvoiceStatus::Finalised) {
            finalised_before += 1;
            continue;
        }
        let id: Arc<str> = Arc::from(customer_id.as_str());
        // The customer's latest row: its name, country and bill-cycle day.
        let Some(customer) = reference.customer_at(&id, i64::MAX) else {
            no_customer_row.push(customer_id.clone());
            continue;
        };
        let span = period_days(period, customer.bill_cycle_day);
        let empty = Billable::default();
        let Billable {
            records,
            places,
            currency,
        } = usage.get(customer_id).unwrap_or(&empty);
        let recurring = match numbers.get(&id) {
            Some(list) => recurring_days(&reference, fees, customer_id, list, span),
            None => Vec::new(),
        };
        let draft = previous.filter(|i| i.status == InvoiceStatus::Draft);
        if records.is_empty() && recurring.is_empty() {
            if let Some(draft) = draft {
                run.removed_drafts.push(draft.invoice_id.clone());
            }
            continue;
        }
        let (invoice, lines) = build_invoice(
            &config,
            InvoiceInput {
                customer,
                period,
                usage: records,
                recurring,
                currency: match records.is_empty() {
                    true => catalogue_currency.as_deref().unwrap_or("XXX"),
                    false => currency,
                },
            },
        )?;
        let revision = match previous {
            Some(p) if p.status == InvoiceStatus::Draft => p.revision,
            Some(p) => p.revision + 1,
            None => 1,
        };
        let invoice_id = format!("{customer_id}:{period}:{revision}");
        let (status, number) = if args.finalise {
            let entity = config.entity_for(&customer.billing_country);
            let last = last_numbers.entry(entity.id.clone()).or_insert(0);
            let claim = claims.entry(entity.id.clone()).or_insert(NumberClaim {
                entity: entity.id.clone(),
                last_before: *last,
                last_after: *last,
            });
            *last += 1;
            claim.last_after = *last;
            (
                InvoiceStatus::Finalised,
                Some(format!("{}{:08}", entity.prefix, *last)),
            )
        } else {
            (InvoiceStatus::Draft, None)
        };
        add_totals(&mut totals, &invoice.totals);
        let mut document = serde_json::to_string(&InvoiceDocument::of(
            &invoice,
            &invoice_id,
            number.as_deref(),
            status,
        ))?;
        document.push('\n');
        let hash = document_hash(&document);
        if status == InvoiceStatus::Draft && draft.is_some_and(|d| d.document_hash == hash) {
            unchanged += 1;
            continue;
        }
        // Issued invoices hold their records; drafts are recomputed from the unheld ones.
        let items = match status {
            InvoiceStatus::Draft => Vec::new(),
            _ => records
                .iter()
                .zip(places)
                .zip(&lines)
                .map(|((u, &(msisdn, event_time)), &line)| InvoiceItem {
                    record_id: u.record_id.clone(),
                    kind: u.kind,
                    msisdn,
                    event_time,
                    line,
                })
                .collect(),
        };
        run.writes.push(InvoiceWrite {
            invoice: StoredInvoice {
                invoice_id,
                customer_id: customer_id.clone(),
                period,
                revision,
                entity: invoice.entity.clone(),
                number,
                status,
                currency: invoice.currency.clone(),
                totals: invoice.totals,
                document,
                document_hash: hash,
            },
            items,
        });
    }
    tracing::info!(invoices = run.writes.len(), elapsed = ?started.elapsed(), "invoices computed");
    run.numbers = claims.into_values().collect();
    let written = run.writes.len();
    store.save_bill_run(&run)?;
    tracing::info!(elapsed = ?started.elapsed(), "billing run committed");
    if let Some(root) = &settings.lake {
        let mut stored = Vec::new();
        store.invoices(
            &InvoiceQuery {
                period: Some(period),
                ..InvoiceQuery::default()
            },
            &mut |i| stored.push(i),
        )?;
        let rows: Vec<InvoiceRow<'_>> = stored
            .iter()
            .map(|i| InvoiceRow {
                invoice_id: &i.invoice_id,
                number: i.number.as_deref(),
                customer_id: &i.customer_id,
                status: i.status.as_str(),
                entity: &i.entity,
                currency: &i.currency,
                totals: &i.totals,
                document: &i.document,
            })
            .collect();
        let path = write_invoices(root, period, &rows)?;
        println!("  {} invoices in {}", rows.len(), path.display());
    }

    let money = |micros: i64| cdrflow_core::billing::document::amount_text(micros, config.decimals);
    println!(
        "{period}: {} invoices {} ({written} written, {unchanged} unchanged, {} drafts removed), {finalised_before} finalised before",
        written as u64 + unchanged,
        if args.finalise { "finalised" } else { "drafted" },
        run.removed_drafts.len(),
    );
    println!(
        "  subtotal {}, tax {}, total {}{}",
        money(totals.subtotal),
        money(totals.tax),
        money(totals.total),
        if args.finalise && written > 0 {
            format!("; {written} numbered")
        } else {
            String::new()
        }
    );
    if waiting > 0 {
        println!("  {waiting} records of customers whose {period} invoice is finalised wait for the next period's run");
    }
    if on_earlier_drafts > 0 {
        println!("  {on_earlier_drafts} records are on earlier periods' drafts: finalise those to bill them");
    }
    if prepaid > 0 {
        println!("  {prepaid} prepaid records were paid from balances: not invoiced");
    }
    if !no_customer_row.is_empty() {
        println!(
            "  {} customers have records but no customers row (e.g. {}): not billed; load them with `cdrflow reference load customers`",
            no_customer_row.len(),
            no_customer_row[0]
        );
    }
    Ok(())
}

fn add_totals(sum: &mut Totals, t: &Totals) {
    sum.subtotal += t.subtotal;
    sum.tax += t.tax;
    sum.total += t.total;
}
