//! `cdrflow usage`: one subscriber's daily summaries.

use anyhow::{bail, Result};
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{normalize_msisdn, usage_period, Day};
use cdrflow_store::schema::{table_for, Measure};
use serde_json::json;

use crate::config::Settings;
use crate::views::summary_json;

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// The subscriber, in any spelling: +27 82 123 4567, 0821234567, 0027821234567...
    pub msisdn: String,

    /// One day (YYYY-MM-DD)
    #[arg(long, conflicts_with_all = ["from", "to"], value_parser = parse_day)]
    pub date: Option<Day>,

    /// First day of a range (YYYY-MM-DD), inclusive
    #[arg(long, value_parser = parse_day)]
    pub from: Option<Day>,

    /// Last day of a range (YYYY-MM-DD), inclusive
    #[arg(long, value_parser = parse_day)]
    pub to: Option<Day>,

    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

pub fn parse_day(text: &str) -> Result<Day, String> {
    Day::parse(text).ok_or_else(|| format!("`{text}` is not a date; use YYYY-MM-DD"))
}

pub fn run(settings: &Settings, args: UsageArgs) -> Result<()> {
    let msisdn = match normalize_msisdn(&args.msisdn, settings.country_code) {
        Ok(m) => m,
        Err(why) => bail!("`{}` is not a subscriber number: it {why}", args.msisdn),
    };
    let (from, to) = usage_period(args.date, args.from, args.to).map_err(anyhow::Error::msg)?;
    let rows = settings.open_store()?.usage(msisdn, from, to)?;
    if args.json {
        let summaries: Vec<_> = rows.iter().map(summary_json).collect();
        println!(
            "{}",
            json!({ "msisdn": msisdn.to_string(), "summaries": summaries })
        );
        return Ok(());
    }
    if rows.is_empty() {
        println!("no usage for {msisdn} in that period");
        return Ok(());
    }
    println!(
        "{:<10} {:<10} {:<14} {:>8} {:>15} {:>15} {:>12} {:>16}",
        "kind", "date", "type", "records", "up_bytes", "down_bytes", "duration_s", "cost/amount"
    );
    for row in &rows {
        let measures = table_for(row.kind).measures;
        let show = |m: Measure| {
            if measures.contains(&m) {
                m.value(&row.totals).to_string()
            } else {
                "-".into()
            }
        };
        let money = if measures.contains(&Measure::Amount) {
            row.totals.amount_micros
        } else {
            row.totals.cost_micros
        };
        println!(
            "{:<10} {:<10} {:<14} {:>8} {:>15} {:>15} {:>12} {:>16}",
            row.kind.as_str(),
            row.date.to_string(),
            row.service_type,
            row.totals.records,
            show(Measure::UpBytes),
            show(Measure::DownBytes),
            show(Measure::DurationSec),
            format_micros(i128::from(money))
        );
    }
    Ok(())
}
