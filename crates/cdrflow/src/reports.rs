//! What seed 001's business reports are computed from, read from a store:
//! a period's issued invoices where they stand (with their notes), the
//! rated records they hold and their recurring lines. `cdrflow report`
//! writes the reports as CSV; the API's `/billing/summary` (the
//! dashboard's billing panel) serves two of them as JSON; the arithmetic
//! is the core's (`cdrflow_core::billing::reports`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::Result;

use cdrflow_core::billing::notes::standing;
use cdrflow_core::billing::reports::{ReportFee, ReportInvoice, ReportRecord};
use cdrflow_core::billing::InvoiceStatus;
use cdrflow_core::money::Decimal;
use cdrflow_core::normalize::{normalize_msisdn, CountryCode, Msisdn};
use cdrflow_core::reference::{BillingPeriod, ReferenceData};
use cdrflow_store::{InvoiceQuery, NoteQuery, Store, StoredNote};

use crate::commands::bill::postpaid_numbers;

/// What the reports are computed from: a period's issued invoices where
/// they stand, the records they hold and their recurring lines.
pub struct ReportData {
    pub invoices: Vec<ReportInvoice>,
    pub records: Vec<ReportRecord>,
    pub fees: Vec<ReportFee>,
    /// Each customer's postpaid numbers.
    pub numbers: HashMap<Arc<str>, Vec<Msisdn>>,
    /// The invoices' currencies (one, as `cdrflow bill` makes them).
    pub currencies: BTreeSet<String>,
}

/// Reads `period`'s finalised invoices with their notes, records and fees.
pub fn report_data(
    store: &mut dyn Store,
    reference: &ReferenceData,
    period: BillingPeriod,
) -> Result<ReportData> {
    let mut notes: HashMap<String, Vec<StoredNote>> = HashMap::new();
    store.notes(
        &NoteQuery {
            period: Some(period),
            ..NoteQuery::default()
        },
        &mut |n| notes.entry(n.invoice_id.clone()).or_default().push(n),
    )?;
    let mut invoices = Vec::new();
    let mut fees = Vec::new();
    let mut issued = BTreeSet::new();
    let mut currencies = BTreeSet::new();
    let mut failure = None;
    store.invoices(
        &InvoiceQuery {
            period: Some(period),
            ..InvoiceQuery::default()
        },
        &mut |i| {
            if i.status != InvoiceStatus::Finalised || failure.is_some() {
                return;
            }
            let earlier = notes.get(&i.invoice_id).map_or(&[][..], Vec::as_slice);
            let Some(stands) = standing(&i.totals, earlier.iter().map(|n| &n.totals)) else {
                failure = Some(format!("invoice {} and its notes overflow", i.invoice_id));
                return;
            };
            if let Err(why) = recurring_lines(&i.document, reference, &mut fees) {
                failure = Some(format!("invoice {}'s document: {why}", i.invoice_id));
                return;
            }
            let name = reference
                .customer_at(&Arc::from(i.customer_id.as_str()), i64::MAX)
                .map_or(String::new(), |c| c.name.to_string());
            issued.insert(i.invoice_id.clone());
            currencies.insert(i.currency.clone());
            invoices.push(ReportInvoice {
                customer_id: i.customer_id,
                customer_name: name,
                standing: stands,
            });
        },
    )?;
    if let Some(why) = failure {
        anyhow::bail!(why);
    }
    let mut records = Vec::new();
    store.held_records(period, &mut |invoice, r| {
        if issued.contains(invoice) {
            records.push(ReportRecord {
                plan: r.plan.to_string(),
                region: r.region.as_deref().map(str::to_string),
                kind: r.kind,
                version: r.version.to_string(),
                destination: r.destination.as_ref().map(|d| d.0.to_string()),
                class: r.destination.as_ref().map(|d| d.1),
                usage_units: r.usage_units,
                cost_micros: r.cost_micros,
            });
        }
    })?;
    Ok(ReportData {
        invoices,
        records,
        fees,
        numbers: postpaid_numbers(reference),
        currencies,
    })
}

/// The recurring lines of a `cdrflow.invoice/1` document.
fn recurring_lines(
    document: &str,
    reference: &ReferenceData,
    fees: &mut Vec<ReportFee>,
) -> Result<(), String> {
    let value: serde_json::Value = serde_json::from_str(document).map_err(|e| e.to_string())?;
    let lines = value["lines"].as_array().ok_or("no lines")?;
    for line in lines.iter().filter(|l| l["category"] == "recurring") {
        let text = |field: &str| {
            line[field]
                .as_str()
                .ok_or(format!("a recurring line without `{field}`"))
        };
        let amount = text("amount")?;
        let micros = Decimal::parse(amount)
            .ok()
            .and_then(|d| d.scaled_to_integer(6))
            .and_then(|m| i64::try_from(m).ok())
            .ok_or(format!("the amount `{amount}`"))?;
        // Documents spell numbers in E.164 with `+`: no default country code applies.
        let region = normalize_msisdn(text("msisdn")?, CountryCode::SOUTH_AFRICA)
            .ok()
            .and_then(|m| reference.subscriber_at(m, i64::MAX))
            .and_then(|s| s.region.as_deref().map(str::to_string));
        fees.push(ReportFee {
            plan: text("plan")?.to_string(),
            region,
            amount_micros: micros,
        });
    }
    Ok(())
}
