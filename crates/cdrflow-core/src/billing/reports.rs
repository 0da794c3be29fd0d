//! Business reports over a period's issued invoices (seed 001's
//! reporting layer): revenue by plan or by region, top customers by
//! spending, and product costs — revenue against a wholesale cost per
//! destination, for the margin.
//!
//! Every report reconciles to the invoices to the micro-unit. Revenue is
//! attributed from what the invoices hold: each record's cost (at its
//! current price) to its plan, region or destination, each recurring line
//! to its plan and its number's region. What no record or fee carries —
//! the rounding of usage lines, notes' corrections of recurring fees —
//! is its own figure (`unattributed`), beside the discounts and the tax,
//! so that attributed + unattributed + discounts = the invoices' subtotal
//! and + tax = their total (notes included).

use std::collections::BTreeMap;

use super::invoice::Totals;
use crate::model::Kind;

/// An issued invoice, where it stands (its figures plus its notes').
#[derive(Clone, Debug)]
pub struct ReportInvoice {
    pub customer_id: String,
    pub customer_name: String,
    pub standing: Totals,
}

/// A rated record an issued invoice of the period holds.
#[derive(Clone, Debug)]
pub struct ReportRecord {
    pub plan: String,
    pub region: Option<String>,
    pub kind: Kind,
    pub version: String,
    pub destination: Option<String>,
    pub class: Option<&'static str>,
    /// Seconds, messages or bytes as recorded.
    pub usage_units: u64,
    pub cost_micros: i64,
}

/// A recurring line of an issued invoice of the period.
#[derive(Clone, Debug)]
pub struct ReportFee {
    pub plan: String,
    pub region: Option<String>,
    pub amount_micros: i64,
}

/// How the invoices' figures beyond the attributed revenue add up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reconciliation {
    /// The rows' revenue.
    pub attributed: i64,
    /// Line rounding and notes' corrections no record or fee carries.
    pub unattributed: i64,
    pub discounts: i64,
    pub subtotal: i64,
    pub tax: i64,
    pub total: i64,
}

impl Reconciliation {
    fn of(invoices: &[ReportInvoice], attributed: i64) -> Reconciliation {
        let sum = invoices.iter().fold(Totals::default(), |sum, i| {
            sum.checked_add(&i.standing).unwrap_or(sum)
        });
        Reconciliation {
            attributed,
            unattributed: sum.subtotal - sum.discounts - attributed,
            discounts: sum.discounts,
            subtotal: sum.subtotal,
            tax: sum.tax,
            total: sum.total,
        }
    }
}

/// What revenue is grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grouping {
    Plan,
    /// The record's region (its cell's, else its subscriber's); a fee's
    /// number's region; `unknown` when none.
    Region,
}

/// One group's revenue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevenueRow {
    pub key: String,
    pub records: u64,
    pub usage_micros: i64,
    pub recurring_micros: i64,
    pub revenue_micros: i64,
}

/// Revenue by plan or region, the largest first (ties by key).
pub fn revenue_by(
    grouping: Grouping,
    invoices: &[ReportInvoice],
    records: &[ReportRecord],
    fees: &[ReportFee],
) -> (Vec<RevenueRow>, Reconciliation) {
    let key = |plan: &str, region: &Option<String>| match grouping {
        Grouping::Plan => plan.to_string(),
        Grouping::Region => region.clone().unwrap_or_else(|| "unknown".into()),
    };
    let mut rows: BTreeMap<String, RevenueRow> = BTreeMap::new();
    fn row(rows: &mut BTreeMap<String, RevenueRow>, key: String) -> &mut RevenueRow {
        rows.entry(key.clone()).or_insert(RevenueRow {
            key,
            records: 0,
            usage_micros: 0,
            recurring_micros: 0,
            revenue_micros: 0,
        })
    }
    for r in records {
        let row = row(&mut rows, key(&r.plan, &r.region));
        row.records += 1;
        row.usage_micros += r.cost_micros;
        row.revenue_micros += r.cost_micros;
    }
    for f in fees {
        let row = row(&mut rows, key(&f.plan, &f.region));
        row.recurring_micros += f.amount_micros;
        row.revenue_micros += f.amount_micros;
    }
    let mut rows: Vec<RevenueRow> = rows.into_values().collect();
    rows.sort_by(|a, b| {
        b.revenue_micros
            .cmp(&a.revenue_micros)
            .then(a.key.cmp(&b.key))
    });
    let attributed = rows.iter().map(|r| r.revenue_micros).sum();
    (rows, Reconciliation::of(invoices, attributed))
}

/// One customer's spending (or the rest's, together).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomerRow {
    pub customer_id: String,
    pub name: String,
    pub invoices: u64,
    pub subtotal_micros: i64,
    pub tax_micros: i64,
    pub total_micros: i64,
}

/// The `top` customers by total spent, the largest first (ties by id),
/// and everyone else as one row.
pub fn top_customers(
    invoices: &[ReportInvoice],
    top: usize,
) -> (Vec<CustomerRow>, CustomerRow, Reconciliation) {
    let mut by_customer: BTreeMap<&str, CustomerRow> = BTreeMap::new();
    for i in invoices {
        let row = by_customer
            .entry(&i.customer_id)
            .or_insert_with(|| CustomerRow {
                customer_id: i.customer_id.clone(),
                name: i.customer_name.clone(),
                invoices: 0,
                subtotal_micros: 0,
                tax_micros: 0,
                total_micros: 0,
            });
        row.invoices += 1;
        row.subtotal_micros += i.standing.subtotal;
        row.tax_micros += i.standing.tax;
        row.total_micros += i.standing.total;
    }
    let mut rows: Vec<CustomerRow> = by_customer.into_values().collect();
    rows.sort_by(|a, b| {
        b.total_micros
            .cmp(&a.total_micros)
            .then_with(|| a.customer_id.cmp(&b.customer_id))
    });
    let rest = rows.split_off(top.min(rows.len()));
    let mut others = CustomerRow {
        customer_id: String::new(),
        name: format!("{} other customers", rest.len()),
        invoices: 0,
        subtotal_micros: 0,
        tax_micros: 0,
        total_micros: 0,
    };
    for r in &rest {
        others.invoices += r.invoices;
        others.subtotal_micros += r.subtotal_micros;
        others.tax_micros += r.tax_micros;
        others.total_micros += r.total_micros;
    }
    let attributed = rows
        .iter()
        .chain([&others])
        .map(|r| r.subtotal_micros)
        .sum::<i64>()
        - invoices.iter().map(|i| i.standing.discounts).sum::<i64>();
    (rows, others, Reconciliation::of(invoices, attributed))
}

/// What terminating traffic costs the operator, per destination of a
/// catalogue version, in billionths (`None`: not given).
pub trait WholesaleCosts {
    fn per_minute_nanos(&self, version: &str, destination: &str) -> Option<i128>;
    fn per_message_nanos(&self, version: &str, destination: &str) -> Option<i128>;
}

/// One product's revenue against its wholesale cost: a kind and, for
/// calls and messages, a destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRow {
    pub kind: Kind,
    pub destination: Option<String>,
    pub class: Option<&'static str>,
    pub records: u64,
    /// Seconds, messages or bytes as recorded.
    pub usage_units: u64,
    pub revenue_micros: i64,
    /// Σ units × the wholesale price of each record's version, rounded
    /// once per row, half up (`None`: some record's destination has none).
    pub wholesale_micros: Option<i64>,
    pub margin_micros: Option<i64>,
}

/// Revenue and wholesale cost per product, the largest revenue first;
/// recurring fees are one figure of their own (they have no destination).
pub fn product_costs(
    invoices: &[ReportInvoice],
    records: &[ReportRecord],
    fees: &[ReportFee],
    wholesale: &dyn WholesaleCosts,
) -> (Vec<ProductRow>, i64, Reconciliation) {
    // Per row: the figures and the exact wholesale in billionths × 60
    // (a voice second is 1/60 of a minute's price).
    let mut rows: BTreeMap<(usize, Option<String>), (ProductRow, Option<i128>)> = BTreeMap::new();
    for r in records {
        let order = Kind::ALL
            .iter()
            .position(|k| *k == r.kind)
            .unwrap_or(usize::MAX);
        let (row, exact) = rows
            .entry((order, r.destination.clone()))
            .or_insert_with(|| {
                (
                    ProductRow {
                        kind: r.kind,
                        destination: r.destination.clone(),
                        class: r.class,
                        records: 0,
                        usage_units: 0,
                        revenue_micros: 0,
                        wholesale_micros: None,
                        margin_micros: None,
                    },
                    Some(0),
                )
            });
        row.records += 1;
        row.usage_units += r.usage_units;
        row.revenue_micros += r.cost_micros;
        let units = i128::from(r.usage_units);
        let cost = match (&r.destination, r.kind) {
            (Some(d), Kind::Voice) => wholesale.per_minute_nanos(&r.version, d).map(|p| p * units),
            (Some(d), Kind::Sms) => wholesale
                .per_message_nanos(&r.version, d)
                .map(|p| p * units * 60),
            _ => None,
        };
        *exact = match (*exact, cost) {
            (Some(sum), Some(cost)) => Some(sum + cost),
            _ => None,
        };
    }
    let mut out: Vec<ProductRow> = rows
        .into_values()
        .map(|(mut row, exact)| {
            // Half up, once: billionths × 60 to micro-units.
            let step = 60_000i128;
            row.wholesale_micros = exact.map(|e| ((e + step / 2) / step) as i64);
            row.margin_micros = row.wholesale_micros.map(|w| row.revenue_micros - w);
            row
        })
        .collect();
    out.sort_by(|a, b| {
        b.revenue_micros
            .cmp(&a.revenue_micros)
            .then_with(|| (a.kind.as_str(), &a.destination).cmp(&(b.kind.as_str(), &b.destination)))
    });
    let recurring: i64 = fees.iter().map(|f| f.amount_micros).sum();
    let attributed = out.iter().map(|r| r.revenue_micros).sum::<i64>() + recurring;
    (out, recurring, Reconciliation::of(invoices, attributed))
}

/// `number` with its last four digits hidden (seed 001's "data masking
/// for PII in reports", in seed 003's spelling `7701234****`).
pub fn mask_msisdn(number: &str) -> String {
    let keep = number.len().saturating_sub(4);
    format!("{}{}", &number[..keep], "*".repeat(number.len() - keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invoice(customer: &str, subtotal: i64, discounts: i64) -> ReportInvoice {
        ReportInvoice {
            customer_id: customer.into(),
            customer_name: format!("{customer} Ltd"),
            standing: Totals {
                voice: subtotal - discounts,
                discounts,
                subtotal,
                tax: subtotal / 5,
                total: subtotal + subtotal / 5,
                ..Totals::default()
            },
        }
    }

    fn call(plan: &str, region: &str, destination: &str, seconds: u64, cost: i64) -> ReportRecord {
        ReportRecord {
            plan: plan.into(),
            region: Some(region.into()),
            kind: Kind::Voice,
            version: "v1".into(),
            destination: Some(destination.into()),
            class: Some("mobile"),
            usage_units: seconds,
            cost_micros: cost,
        }
    }

    struct Flat;
    impl WholesaleCosts for Flat {
        fn per_minute_nanos(&self, _: &str, d: &str) -> Option<i128> {
            (d == "mobile").then_some(100_000_000)
        }
        fn per_message_nanos(&self, _: &str, _: &str) -> Option<i128> {
            None
        }
    }

    #[test]
    fn revenue_reconciles_to_the_invoices() {
        // Two invoices: 10.01 and 5.00 of usage; line rounding left 0.01 unattributed.
        let invoices = [invoice("A", 10_010_000, 0), invoice("B", 5_000_000, 0)];
        let records = [
            call("gold", "north", "mobile", 60, 6_000_000),
            call("basic", "south", "mobile", 30, 4_000_000),
            call("gold", "south", "mobile", 90, 5_000_000),
        ];
        let (rows, r) = revenue_by(Grouping::Plan, &invoices, &records, &[]);
        assert_eq!(rows[0].key, "gold");
        assert_eq!(rows[0].revenue_micros, 11_000_000);
        assert_eq!(r.unattributed, 10_000);
        assert_eq!(r.attributed + r.unattributed + r.discounts, r.subtotal);
        let (rows, _) = revenue_by(Grouping::Region, &invoices, &records, &[]);
        assert_eq!(rows[0].key, "south");
        // Wholesale: 180 s at 0.10 a minute = 0.30.
        let (products, _, _) = product_costs(&invoices, &records, &[], &Flat);
        assert_eq!(products[0].wholesale_micros, Some(300_000));
        assert_eq!(products[0].margin_micros, Some(14_700_000));
    }

    #[test]
    fn the_top_customers_and_the_rest_add_up_to_everyone() {
        let invoices = [
            invoice("A", 1_000_000, 0),
            invoice("B", 3_000_000, 0),
            invoice("C", 2_000_000, 0),
        ];
        let (top, others, r) = top_customers(&invoices, 2);
        assert_eq!(
            top.iter()
                .map(|c| c.customer_id.as_str())
                .collect::<Vec<_>>(),
            ["B", "C"]
        );
        assert_eq!(others.total_micros, 1_200_000);
        assert_eq!(
            top.iter().map(|c| c.total_micros).sum::<i64>() + others.total_micros,
            r.total
        );
    }

    #[test]
    fn masking_keeps_all_but_the_last_four_digits() {
        assert_eq!(mask_msisdn("77012345678"), "7701234****");
        assert_eq!(mask_msisdn("123"), "***");
    }
}
