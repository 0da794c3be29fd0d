//! The invoice document, schema `cdrflow.invoice/1` (docs/invoice-schema.md):
//! what `cdrflow bill` stores for each invoice and what the JSON, HTML and
//! Parquet forms are made from. A document is a function of the invoice
//! alone (no clock, no file order), so a billing run that finds nothing
//! new writes the same bytes.

use serde::Serialize;

use super::invoice::{Invoice, LineKind, Totals};
use crate::money::Decimal;

pub const SCHEMA: &str = "cdrflow.invoice/1";

/// Where an invoice stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InvoiceStatus {
    /// Recomputed by every billing run until finalised.
    Draft,
    /// Numbered and issued: never changed again.
    Finalised,
    /// Cancelled after issue; its records may be billed again.
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Finalised => "finalised",
            InvoiceStatus::Void => "void",
        }
    }

    pub fn parse(text: &str) -> Option<InvoiceStatus> {
        [
            InvoiceStatus::Draft,
            InvoiceStatus::Finalised,
            InvoiceStatus::Void,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

#[derive(Serialize)]
pub struct InvoiceDocument<'a> {
    pub schema: &'static str,
    pub invoice_id: &'a str,
    /// `None` until finalised.
    pub number: Option<&'a str>,
    pub status: InvoiceStatus,
    pub entity: &'a str,
    /// The first day after the period, once finalised.
    pub issue_date: Option<String>,
    pub customer: CustomerPart<'a>,
    pub period: PeriodPart,
    pub currency: &'a str,
    pub prices_include_tax: bool,
    pub lines: Vec<LinePart>,
    pub taxes: Vec<TaxPart>,
    pub totals: TotalsPart,
}

#[derive(Serialize)]
pub struct CustomerPart<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub billing_country: &'a str,
    pub bill_cycle_day: u8,
}

#[derive(Serialize)]
pub struct PeriodPart {
    pub name: String,
    pub first_day: String,
    pub last_day: String,
    pub days: i32,
}

#[derive(Serialize)]
pub struct LinePart {
    pub line: u32,
    /// `usage`, `prior_period_usage`, `recurring` or `discount`.
    pub category: &'static str,
    pub description: String,
    pub kind: Option<&'static str>,
    pub destination_class: Option<&'static str>,
    /// The period the usage happened in.
    pub usage_period: Option<String>,
    pub msisdn: Option<String>,
    pub plan: Option<String>,
    pub quantity: u64,
    /// `records`, `days` or `percent`.
    pub unit: &'static str,
    pub amount: String,
}

#[derive(Serialize)]
pub struct TaxPart {
    pub percent: String,
    pub base: String,
    pub amount: String,
}

#[derive(Serialize)]
pub struct TotalsPart {
    pub voice: String,
    pub sms: String,
    pub data: String,
    pub other: String,
    pub recurring: String,
    pub discounts: String,
    pub subtotal: String,
    pub tax: String,
    pub total: String,
}

impl TotalsPart {
    pub fn of(t: &Totals, decimals: u32) -> TotalsPart {
        let money = |micros: i64| amount_text(micros, decimals);
        TotalsPart {
            voice: money(t.voice),
            sms: money(t.sms),
            data: money(t.data),
            other: money(t.other),
            recurring: money(t.recurring),
            discounts: money(t.discounts),
            subtotal: money(t.subtotal),
            tax: money(t.tax),
            total: money(t.total),
        }
    }
}

/// What a run compares a stored document by without reading it: the
/// xxh3-128 of its bytes, in hex.
pub fn document_hash(document: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(document.as_bytes()))
}

/// Micro-units as a decimal with `decimals` places (they are whole steps of it).
pub fn amount_text(micros: i64, decimals: u32) -> String {
    Decimal {
        mantissa: i128::from(micros) / 10i128.pow(6 - decimals),
        scale: decimals,
    }
    .to_string()
}

fn percent_text(milli: u64) -> String {
    crate::money::format_trimmed(i128::from(milli), 3)
}

impl<'a> InvoiceDocument<'a> {
    pub fn of(
        invoice: &'a Invoice,
        invoice_id: &'a str,
        number: Option<&'a str>,
        status: InvoiceStatus,
    ) -> InvoiceDocument<'a> {
        let money = |micros: i64| amount_text(micros, invoice.decimals);
        let lines = invoice
            .lines
            .iter()
            .map(|line| {
                let mut part = LinePart {
                    line: line.number,
                    category: "usage",
                    description: String::new(),
                    kind: None,
                    destination_class: None,
                    usage_period: None,
                    msisdn: None,
                    plan: None,
                    quantity: 0,
                    unit: "records",
                    amount: money(line.amount_micros),
                };
                match &line.what {
                    LineKind::Usage {
                        kind,
                        class,
                        period,
                        records,
                    } => {
                        let prior = *period != invoice.period;
                        part.category = if prior { "prior_period_usage" } else { "usage" };
                        part.description = format!(
                            "{}{}{}",
                            kind.as_str(),
                            class.map_or(String::new(), |c| format!(", {c}")),
                            if prior {
                                format!(" (usage of {period})")
                            } else {
                                String::new()
                            }
                        );
                        part.kind = Some(kind.as_str());
                        part.destination_class = *class;
                        part.usage_period = Some(period.to_string());
                        part.quantity = *records;
                    }
                    LineKind::Recurring(r) => {
                        part.category = "recurring";
                        part.description =
                            format!("{} for {}, {} to {}", r.plan, r.msisdn, r.first, r.last);
                        part.msisdn = Some(r.msisdn.to_string());
                        part.plan = Some(r.plan.clone());
                        part.quantity = u64::from(r.days);
                        part.unit = "days";
                    }
                    LineKind::Discount { id, percent_milli } => {
                        part.category = "discount";
                        part.description = format!("{id}, {}%", percent_text(*percent_milli));
                        part.quantity = *percent_milli;
                        part.unit = "percent_milli";
                    }
                }
                part
            })
            .collect();
        InvoiceDocument {
            schema: SCHEMA,
            invoice_id,
            number,
            status,
            entity: &invoice.entity,
            issue_date: (status != InvoiceStatus::Draft).then(|| invoice.ends.to_string()),
            customer: CustomerPart {
                id: &invoice.customer.customer_id,
                name: &invoice.customer.name,
                billing_country: &invoice.customer.billing_country,
                bill_cycle_day: invoice.customer.bill_cycle_day,
            },
            period: PeriodPart {
                name: invoice.period.to_string(),
                first_day: invoice.starts.to_string(),
                last_day: crate::normalize::Day(invoice.ends.0 - 1).to_string(),
                days: invoice.ends.0 - invoice.starts.0,
            },
            currency: &invoice.currency,
            prices_include_tax: invoice.prices_include_tax,
            lines,
            taxes: invoice
                .taxes
                .iter()
                .map(|tax| TaxPart {
                    percent: percent_text(tax.percent_milli),
                    base: money(tax.base_micros),
                    amount: money(tax.amount_micros),
                })
                .collect(),
            totals: TotalsPart::of(&invoice.totals, invoice.decimals),
        }
    }
}
