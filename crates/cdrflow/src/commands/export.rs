//! `cdrflow export summaries|windows|late-events|anomalies|rated|balances|daily-stats|hourly-stats`: stored results as CSV or JSON lines (rated records also as Parquet).

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};

use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{
    format_timestamp_ms, normalize_msisdn, parse_timestamp, EpochMillis,
};
use cdrflow_core::reference::BillingPeriod;
use cdrflow_lake::RatedParquet;
use cdrflow_store::{
    AnomalyQuery, InvoiceQuery, NoteQuery, RatedQuery, StatGrain, Store, WindowQuery,
};

use crate::commands::daily::parse_day;
use crate::config::Settings;
use crate::views::{
    anomaly_json, invoice_csv, late_event_json, note_csv, rated_csv, rated_json, stat_csv,
    stat_csv_header, stat_json, summary_csv, window_csv, CSV_HEADER, INVOICE_CSV_HEADER,
    NOTE_CSV_HEADER, RATED_CSV_HEADER, WINDOW_CSV_HEADER,
};

#[derive(Debug, clap::Subcommand)]
pub enum ExportCommand {
    /// Every daily summary row (all kinds), one CSV line each
    Summaries(ExportSummariesArgs),
    /// Seed 003's real-time metrics: one CSV line per window, region and
    /// event type, with whether the window is final
    Windows(ExportWindowsArgs),
    /// Records that arrived after their window had closed, one JSON object per line
    LateEvents(ExportLateEventsArgs),
    /// Detected anomalies (rules in config/rules.toml), one JSON object per line
    Anomalies(ExportAnomaliesArgs),
    /// What rating decided for each accepted record: plan, destination, band, rate, billed units, cost, billing period
    Rated(ExportRatedArgs),
    /// Prepaid balances, one CSV line per subscriber
    Balances(ExportBalancesArgs),
    /// Invoices (`cdrflow bill`): one CSV line each with its totals, or each
    /// invoice's document (schema cdrflow.invoice/1) as a JSON line
    Invoices(ExportInvoicesArgs),
    /// Credit and debit notes (`cdrflow rerate`): one CSV line each with its
    /// differences, or each note's document (schema cdrflow.credit_note/1) as a JSON line;
    /// `--period` is the corrected invoice's period
    Notes(ExportInvoicesArgs),
    /// Seed 003's daily_stats of one day (computed by `cdrflow daily`), one CSV line per region and event type
    DailyStats(ExportStatsArgs),
    /// Seed 003's hourly_stats of one day (computed by `cdrflow daily`), one CSV line per hour, region and event type
    HourlyStats(ExportStatsArgs),
}

#[derive(Debug, clap::Args)]
pub struct ExportStatsArgs {
    /// The UTC day, YYYY-MM-DD
    #[arg(long, value_name = "DATE")]
    pub date: String,

    /// Output format
    #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
    pub format: String,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportRatedArgs {
    /// Output format: CSV, JSON lines, or one zstd Parquet file (the lake's
    /// rated columns plus `billing_period`)
    #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl", "parquet"])]
    pub format: String,

    /// Only this subscriber's records
    #[arg(long, value_name = "MSISDN")]
    pub msisdn: Option<String>,

    /// Only this billing period (YYYY-MM)
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportInvoicesArgs {
    /// Only this billing period (YYYY-MM)
    #[arg(long, value_name = "PERIOD")]
    pub period: Option<String>,

    /// Only this customer's invoices
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,

    /// Output format
    #[arg(long, default_value = "csv", value_parser = ["csv", "jsonl"])]
    pub format: String,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportBalancesArgs {
    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportAnomaliesArgs {
    /// Output format
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
    pub format: String,

    /// Only this severity: low, medium, high or critical
    #[arg(long, value_parser = |s: &str| Severity::parse(s).ok_or("expected low, medium, high or critical"))]
    pub severity: Option<Severity>,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportWindowsArgs {
    /// Output format
    #[arg(long, default_value = "csv", value_parser = ["csv"])]
    pub format: String,

    /// Windows starting at or after this time (RFC 3339) [default: all]
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,

    /// Windows starting before this time (RFC 3339) [default: all]
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,

    /// Only this region
    #[arg(long)]
    pub region: Option<String>,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportLateEventsArgs {
    /// Output format
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl"])]
    pub format: String,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ExportSummariesArgs {
    /// Output format
    #[arg(long, default_value = "csv", value_parser = ["csv"])]
    pub format: String,

    /// Write to FILE instead of stdout
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

pub fn run(settings: &Settings, command: ExportCommand) -> Result<()> {
    let mut store = settings.open_store()?;
    match command {
        ExportCommand::Summaries(args) => write_lines(&args.output, Some(CSV_HEADER), |line| {
            store.for_each_summary(&mut |record| line(summary_csv(&record)))
        }),
        ExportCommand::Windows(args) => {
            let time = |text: &Option<String>, flag: &str, open: EpochMillis| {
                match text {
                None => Ok(open),
                Some(text) => parse_timestamp(text).map_err(|e| {
                    anyhow::anyhow!("--{flag} `{text}` is not an RFC 3339 time ({e:?}); write e.g. 2025-11-09T10:00:00Z")
                }),
            }
            };
            let query = WindowQuery {
                from: time(&args.from, "from", EpochMillis::MIN)?,
                to: time(&args.to, "to", EpochMillis::MAX)?,
                region: args.region,
                idle_after_ms: settings.windows.idle_after_ms,
            };
            write_lines(&args.output, Some(WINDOW_CSV_HEADER), |line| {
                store.windows(&query, &mut |window| line(window_csv(&window)))
            })
        }
        ExportCommand::LateEvents(args) => write_lines(&args.output, None, |line| {
            store.late_events(0, None, &mut |event| {
                line(late_event_json(&event).to_string())
            })
        }),
        ExportCommand::Anomalies(args) => {
            let query = AnomalyQuery {
                severity: args.severity,
                ..AnomalyQuery::default()
            };
            write_lines(&args.output, None, |line| {
                store.anomalies(&query, &mut |a| line(anomaly_json(&a).to_string()))
            })
        }
        ExportCommand::Rated(args) => {
            let query = RatedQuery {
                msisdn: args
                    .msisdn
                    .as_deref()
                    .map(|m| {
                        normalize_msisdn(m, settings.country_code)
                            .map_err(|why| anyhow::anyhow!("--msisdn `{m}` {why}"))
                    })
                    .transpose()?,
                period: args
                    .period
                    .as_deref()
                    .map(|p| {
                        BillingPeriod::parse(p).with_context(|| {
                            format!("--period `{p}` is not a billing period such as 2024-03")
                        })
                    })
                    .transpose()?,
                ..RatedQuery::default()
            };
            if args.format == "parquet" {
                return export_rated_parquet(&mut *store, &query, &args.output);
            }
            let csv = args.format == "csv";
            write_lines(&args.output, csv.then_some(RATED_CSV_HEADER), |line| {
                store.rated_records(&query, &mut |r| {
                    line(if csv {
                        rated_csv(&r)
                    } else {
                        rated_json(&r).to_string()
                    })
                })
            })
        }
        ExportCommand::Balances(args) => write_lines(
            &args.output,
            Some("msisdn,balance,currency,last_event_time"),
            |line| {
                store.balances(&mut |b| {
                    line(format!(
                        "{},{},{},{}",
                        b.msisdn,
                        format_micros(i128::from(b.micros)),
                        b.currency,
                        format_timestamp_ms(b.last_event_time)
                    ))
                })
            },
        ),
        ExportCommand::Invoices(args) => {
            let query = InvoiceQuery {
                customer: args.customer,
                period: args
                    .period
                    .as_deref()
                    .map(crate::commands::bill::parse_period)
                    .transpose()?,
                ..InvoiceQuery::default()
            };
            let csv = args.format == "csv";
            write_lines(&args.output, csv.then_some(INVOICE_CSV_HEADER), |line| {
                store.invoices(&query, &mut |i| {
                    line(if csv {
                        invoice_csv(&i)
                    } else {
                        i.document.trim_end().to_string()
                    })
                })
            })
        }
        ExportCommand::Notes(args) => {
            let query = NoteQuery {
                customer: args.customer,
                period: args
                    .period
                    .as_deref()
                    .map(crate::commands::bill::parse_period)
                    .transpose()?,
                ..NoteQuery::default()
            };
            let csv = args.format == "csv";
            write_lines(&args.output, csv.then_some(NOTE_CSV_HEADER), |line| {
                store.notes(&query, &mut |n| {
                    line(if csv {
                        note_csv(&n)
                    } else {
                        n.document.trim_end().to_string()
                    })
                })
            })
        }
        ExportCommand::DailyStats(args) => export_stats(&mut *store, StatGrain::Daily, &args),
        ExportCommand::HourlyStats(args) => export_stats(&mut *store, StatGrain::Hourly, &args),
    }
}

fn export_stats(store: &mut dyn Store, grain: StatGrain, args: &ExportStatsArgs) -> Result<()> {
    let day = parse_day(&args.date)?;
    let csv = args.format == "csv";
    let header = stat_csv_header(grain);
    write_lines(&args.output, csv.then_some(header.as_str()), |line| {
        for stat in store.stats(grain, day)? {
            line(if csv {
                stat_csv(&stat)
            } else {
                stat_json(&stat).to_string()
            });
        }
        Ok(())
    })
}

/// `export rated --format parquet`: one Parquet file, to FILE or to a
/// stdout that is not a terminal.
fn export_rated_parquet(
    store: &mut dyn Store,
    query: &RatedQuery,
    output: &Option<PathBuf>,
) -> Result<()> {
    if output.is_none() && std::io::stdout().is_terminal() {
        anyhow::bail!("Parquet is binary: give --output FILE, or redirect the output")
    }
    let mut parquet = RatedParquet::new(open_output(output)?)?;
    let mut failed = None;
    store.rated_records(query, &mut |r| {
        if failed.is_none() {
            failed = parquet.push(r).err();
        }
    })?;
    if let Some(e) = failed {
        return Err(e).context("writing the export");
    }
    parquet.finish()?.flush().context("writing the export")?;
    Ok(())
}

/// FILE, or stdout, buffered.
fn open_output(output: &Option<PathBuf>) -> Result<BufWriter<Box<dyn Write + Send>>> {
    let sink: Box<dyn Write + Send> = match output {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    Ok(BufWriter::new(sink))
}

/// Writes a header and the lines `produce` gives to FILE or stdout; the
/// first write error stops the output and is reported.
fn write_lines(
    output: &Option<PathBuf>,
    header: Option<&str>,
    produce: impl FnOnce(&mut dyn FnMut(String)) -> cdrflow_store::Result<()>,
) -> Result<()> {
    let mut out = open_output(output)?;
    if let Some(header) = header {
        writeln!(out, "{header}")?;
    }
    let mut write_error = None;
    produce(&mut |line| {
        if write_error.is_none() {
            write_error = writeln!(out, "{line}").err();
        }
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing the export");
    }
    out.flush()?;
    Ok(())
}
