//! `cdrflow report revenue-by-plan|top-customers|regions|product-costs
//! --period YYYY-MM`: seed 001's business reports as CSV (RFC 4180), over
//! the period's issued invoices and the notes against them
//! (`cdrflow_core::billing::reports` does the arithmetic). Each ends with
//! its reconciliation rows — `(unattributed)`, `(discounts)`,
//! `(subtotal)`, `(tax)`, `(total)` — so that it adds up to the invoices
//! to the micro-unit. With `--lake DIR` it is also written to
//! `DIR/reports/period=YYYY-MM/NAME.csv` (kept for good: retention never
//! removes reports).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use cdrflow_core::billing::reports::{
    mask_msisdn, product_costs, revenue_by, top_customers, Grouping, Reconciliation, WholesaleCosts,
};
use cdrflow_core::reference::BillingPeriod;

use crate::commands::bill::parse_period;
use crate::config::Settings;
use crate::reports::{report_data, ReportData};
use crate::views::{csv_field, money_text};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportName {
    /// Revenue by subscription plan: usage and recurring fees
    RevenueByPlan,
    /// The customers who spent most, and everyone else as one row
    TopCustomers,
    /// Revenue by region (the record's cell's, else its subscriber's)
    Regions,
    /// Revenue against the catalogue's wholesale cost per destination: the margin
    ProductCosts,
}

impl ReportName {
    fn file_name(self) -> &'static str {
        match self {
            ReportName::RevenueByPlan => "revenue-by-plan.csv",
            ReportName::TopCustomers => "top-customers.csv",
            ReportName::Regions => "regions.csv",
            ReportName::ProductCosts => "product-costs.csv",
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Which report
    #[arg(value_enum)]
    pub report: ReportName,

    /// The billing period, YYYY-MM: its issued invoices and their notes
    #[arg(long, value_name = "PERIOD")]
    pub period: String,

    /// Output format (RFC 4180 CSV)
    #[arg(long, default_value = "csv", value_parser = ["csv"])]
    pub format: String,

    /// How many customers top-customers lists before "the rest"
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub top: usize,

    /// Hide each MSISDN's last four digits (seed 001's PII masking)
    #[arg(long)]
    pub mask_msisdn: bool,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The report as CSV lines, header first.
pub fn report_csv(
    name: ReportName,
    data: &ReportData,
    top: usize,
    mask: bool,
    wholesale: Option<&dyn WholesaleCosts>,
) -> Vec<String> {
    let mut out = Vec::new();
    let reconciliation = |out: &mut Vec<String>, r: Reconciliation, columns: usize, at: usize| {
        for (label, value) in [
            ("(unattributed)", r.unattributed),
            ("(discounts)", r.discounts),
            ("(subtotal)", r.subtotal),
            ("(tax)", r.tax),
            ("(total)", r.total),
        ] {
            let mut fields = vec![String::new(); columns];
            fields[0] = label.to_string();
            fields[at] = money_text(value);
            out.push(fields.join(","));
        }
    };
    match name {
        ReportName::RevenueByPlan | ReportName::Regions => {
            let (grouping, key) = match name {
                ReportName::RevenueByPlan => (Grouping::Plan, "plan"),
                _ => (Grouping::Region, "region"),
            };
            out.push(format!("{key},records,usage,recurring,revenue"));
            let (rows, r) = revenue_by(grouping, &data.invoices, &data.records, &data.fees);
            for row in rows {
                out.push(
                    [
                        csv_field(&row.key),
                        row.records.to_string(),
                        money_text(row.usage_micros),
                        money_text(row.recurring_micros),
                        money_text(row.revenue_micros),
                    ]
                    .join(","),
                );
            }
            reconciliation(&mut out, r, 5, 4);
        }
        ReportName::TopCustomers => {
            out.push("rank,customer_id,name,msisdns,invoices,subtotal,tax,total".into());
            let (rows, others, r) = top_customers(&data.invoices, top);
            for (rank, row) in rows.iter().enumerate() {
                let numbers: Vec<String> = data
                    .numbers
                    .get(row.customer_id.as_str())
                    .map_or(&[][..], Vec::as_slice)
                    .iter()
                    .map(|m| {
                        let text = m.to_string();
                        if mask {
                            mask_msisdn(&text)
                        } else {
                            text
                        }
                    })
                    .collect();
                out.push(
                    [
                        (rank + 1).to_string(),
                        csv_field(&row.customer_id),
                        csv_field(&row.name),
                        csv_field(&numbers.join(" ")),
                        row.invoices.to_string(),
                        money_text(row.subtotal_micros),
                        money_text(row.tax_micros),
                        money_text(row.total_micros),
                    ]
                    .join(","),
                );
            }
            out.push(
                [
                    "(others)".to_string(),
                    String::new(),
                    csv_field(&others.name),
                    String::new(),
                    others.invoices.to_string(),
                    money_text(others.subtotal_micros),
                    money_text(others.tax_micros),
                    money_text(others.total_micros),
                ]
                .join(","),
            );
            reconciliation(&mut out, r, 8, 7);
        }
        ReportName::ProductCosts => {
            out.push("kind,destination,class,records,usage_units,revenue,wholesale,margin".into());
            let none = NoWholesale;
            let costs = wholesale.unwrap_or(&none);
            let (rows, recurring, r) =
                product_costs(&data.invoices, &data.records, &data.fees, costs);
            for row in rows {
                out.push(
                    [
                        row.kind.as_str().to_string(),
                        row.destination.as_deref().map_or(String::new(), csv_field),
                        row.class.unwrap_or_default().to_string(),
                        row.records.to_string(),
                        row.usage_units.to_string(),
                        money_text(row.revenue_micros),
                        row.wholesale_micros.map_or(String::new(), money_text),
                        row.margin_micros.map_or(String::new(), money_text),
                    ]
                    .join(","),
                );
            }
            out.push(format!("recurring,,,,,{},,", money_text(recurring)));
            reconciliation(&mut out, r, 8, 5);
        }
    }
    out
}

/// No catalogue: no wholesale costs.
struct NoWholesale;

impl WholesaleCosts for NoWholesale {
    fn per_minute_nanos(&self, _: &str, _: &str) -> Option<i128> {
        None
    }
    fn per_message_nanos(&self, _: &str, _: &str) -> Option<i128> {
        None
    }
}

pub fn run(settings: &Settings, args: ReportArgs) -> Result<()> {
    let period = parse_period(&args.period)?;
    let catalogue = settings.load_catalogue()?;
    if args.report == ReportName::ProductCosts && catalogue.is_none() {
        tracing::warn!("no --catalogue: product-costs has no wholesale costs, so no margins");
    }
    crate::commands::bill::require_rated_records(settings, "report")?;
    let mut store = settings.open_store()?;
    let reference = store.reference()?;
    let data = report_data(&mut *store, &reference, period)?;
    if data.invoices.is_empty() {
        tracing::warn!("{period} has no finalised invoices: `cdrflow bill --period {period} --finalise` issues them");
    }
    let wholesale = catalogue.as_ref().map(|c| c as &dyn WholesaleCosts);
    let mut text = report_csv(args.report, &data, args.top, args.mask_msisdn, wholesale).join("\n");
    text.push('\n');
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write the report {}", path.display()))?,
        None => print!("{text}"),
    }
    if let Some(root) = &settings.lake {
        let path = write_to_lake(root, period, args.report.file_name(), &text)?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}

/// Writes `text` to `root/reports/period=P/NAME`, whole or not at all (a
/// temporary file renamed over it).
fn write_to_lake(root: &Path, period: BillingPeriod, name: &str, text: &str) -> Result<PathBuf> {
    let folder = root.join("reports").join(format!("period={period}"));
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let path = folder.join(name);
    let staged = folder.join(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&staged, text).with_context(|| format!("cannot write {}", staged.display()))?;
    std::fs::rename(&staged, &path)
        .with_context(|| format!("cannot move {} into place", staged.display()))?;
    Ok(path)
}
