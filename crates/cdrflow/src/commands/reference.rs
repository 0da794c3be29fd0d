//! `cdrflow reference`: load the reference data rating joins every record
//! with — subscribers (number → customer, plan, prepaid or postpaid),
//! customers (bill-cycle day), cells (region, technology) and plans (name,
//! fee) — show what is loaded, and export what is in force now.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cdrflow_core::normalize::format_timestamp_ms;
use cdrflow_core::reference::{format_effective_from, parse_csv, write_csv, ReferenceKind};
use cdrflow_store::LateReferenceChange;
use clap::{Subcommand, ValueEnum};

use crate::config::Settings;

#[derive(Subcommand, Debug)]
pub enum ReferenceCommand {
    /// Load a CSV file (a header line naming its columns) into the store.
    ///
    /// subscribers: msisdn, customer_id, plan_id [, region, status
    /// (active|suspended|terminated), payment (prepaid|postpaid),
    /// activation_date, effective_from].
    /// customers: customer_id, name [, billing_country, bill_cycle_day (1-28),
    /// effective_from].
    /// cells: cell_id, region, technology (GSM, UMTS, LTE, NR or 2G-5G)
    /// [, effective_from].
    /// plans: plan_id, name [, description, monthly_fee, currency,
    /// effective_from].
    ///
    /// effective_from is a date or an instant; empty means always. A row
    /// with a later effective_from is a change taking effect then: records
    /// are rated against the row in force at their event time. Loading a
    /// row for an id and instant already stored replaces it. The whole file
    /// loads or, at its first mistake (named by line and column), none of it.
    /// Runs started after the load see it.
    Load { kind: Kind, file: PathBuf },
    /// How many rows of each kind are loaded
    Show,
    /// The rows in force once every change so far has taken effect (what
    /// the source tables hold now: removed ids left out), by id, as a CSV
    /// file `load` reads back.
    Export {
        kind: Kind,
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
    },
    /// The changes that arrived after rated records they should have
    /// affected: a subscriber's row put or removed from an instant at or
    /// before some of its records already rated (on the row in force
    /// before). Found as each change commits; counted in /metrics
    /// (cdrflow_reference_changes_late_total). CSV: kind, id,
    /// effective_from, records, first_event_time, first_period, last_period.
    Late {
        #[arg(long, value_enum, default_value = "table")]
        format: LateFormat,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LateFormat {
    /// Aligned columns for a person, times in UTC
    Table,
    Csv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ExportFormat {
    Csv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Kind {
    Subscribers,
    Customers,
    Cells,
    Plans,
    /// Bundle purchases: a number's purchase of a catalogue bundle
    Bundles,
}

impl From<Kind> for ReferenceKind {
    fn from(kind: Kind) -> ReferenceKind {
        match kind {
            Kind::Subscribers => ReferenceKind::Subscribers,
            Kind::Customers => ReferenceKind::Customers,
            Kind::Cells => ReferenceKind::Cells,
            Kind::Plans => ReferenceKind::Plans,
            Kind::Bundles => ReferenceKind::Bundles,
        }
    }
}

pub fn run(settings: &Settings, command: ReferenceCommand) -> Result<()> {
    let mut store = settings.open_store()?;
    match command {
        ReferenceCommand::Load { kind, file } => {
            let kind = ReferenceKind::from(kind);
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let rows = parse_csv(kind, &text, settings.country_code)
                .with_context(|| format!("in {}; nothing was loaded", file.display()))?;
            store.put_reference(&rows)?;
            println!(
                "loaded {} {kind} rows from {} into {}",
                rows.len(),
                file.display(),
                settings.store_label()
            );
        }
        ReferenceCommand::Show => {
            let data = store.reference()?;
            for kind in ReferenceKind::ALL {
                println!("{kind}: {} rows", data.len(kind));
            }
            if let Some(latest) = data.latest_change() {
                println!(
                    "latest change takes effect {}",
                    format_effective_from(latest)
                );
            }
        }
        ReferenceCommand::Export { kind, format } => {
            let ExportFormat::Csv = format;
            let rows = store.reference()?.current(kind.into());
            print!("{}", write_csv(&rows));
        }
        ReferenceCommand::Late { format } => print_late(&store.late_changes()?, format),
    }
    Ok(())
}

fn print_late(changes: &[LateReferenceChange], format: LateFormat) {
    match format {
        LateFormat::Csv => {
            println!("kind,id,effective_from,records,first_event_time,first_period,last_period");
            for c in changes {
                println!(
                    "{},{},{},{},{},{},{}",
                    c.kind,
                    c.id,
                    format_effective_from(c.effective_from),
                    c.records,
                    format_timestamp_ms(c.first_event_time),
                    c.first_period,
                    c.last_period
                );
            }
        }
        LateFormat::Table if changes.is_empty() => {
            println!("no reference change came after records it should have affected")
        }
        LateFormat::Table => {
            println!(
                "{:<12} {:<16} {:<24} {:>8}  {:<24} periods",
                "kind", "id", "in force from", "records", "first record at"
            );
            for c in changes {
                let periods = if c.first_period == c.last_period {
                    c.first_period.clone()
                } else {
                    format!("{} to {}", c.first_period, c.last_period)
                };
                println!(
                    "{:<12} {:<16} {:<24} {:>8}  {:<24} {periods}",
                    c.kind,
                    c.id,
                    format_effective_from(c.effective_from),
                    c.records,
                    format_timestamp_ms(c.first_event_time),
                );
            }
            println!(
                "{} change(s): their records were rated on the row in force before them",
                changes.len()
            );
        }
    }
}
