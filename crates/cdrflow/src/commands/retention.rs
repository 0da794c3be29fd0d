//! `cdrflow retention [--dry-run] [--now TIME]`: remove what each layer's
//! retention has passed (seed 001's table, `cdrflow_core::retention`) —
//! store rows in one transaction, then the lake's partitions — and say
//! what. `cdrflow daily` runs it as part of its cleanup step.
//!
//! The store goes first: a lake partition whose manifest rows are gone but
//! whose files a crash left is found and removed by the next run (the
//! lake is walked, not the manifest). Reports are never removed.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use cdrflow_core::normalize::{format_timestamp, parse_timestamp, Day, EpochMillis};
use cdrflow_core::reference::BillingPeriod;
use cdrflow_core::retention::{Cuts, RetentionPolicy};
use cdrflow_store::{RetentionCounts, Store};

use crate::config::Settings;

/// How long each layer is kept (raw events: `--raw-events-retention-days`).
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionPolicyArgs {
    /// Days the lake's mediated partitions are kept
    #[arg(
        long,
        env = "CDRFLOW_RETENTION_MEDIATED_DAYS",
        default_value_t = 90,
        value_name = "DAYS"
    )]
    pub mediated_days: u32,

    /// Days rated records (and the lake's rated partitions) are kept
    #[arg(
        long,
        env = "CDRFLOW_RETENTION_RATED_DAYS",
        default_value_t = 365,
        value_name = "DAYS"
    )]
    pub rated_days: u32,

    /// Years invoices and their notes (and the lake's invoices) are kept
    #[arg(
        long,
        env = "CDRFLOW_RETENTION_INVOICE_YEARS",
        default_value_t = 7,
        value_name = "YEARS"
    )]
    pub invoice_years: u32,
}

#[derive(Debug, clap::Args)]
pub struct RetentionArgs {
    /// Say what would be removed; remove nothing
    #[arg(long)]
    pub dry_run: bool,

    /// The instant retention counts back from (RFC 3339) [default: now]
    #[arg(long, value_name = "TIME")]
    pub now: Option<String>,

    #[command(flatten)]
    pub policy: RetentionPolicyArgs,
}

/// A lake partition past its retention.
struct Expired {
    dataset: &'static str,
    /// As the manifest names it (`kind=voice/date=2024-03-01`).
    partition: String,
    dir: PathBuf,
    files: u64,
    bytes: u64,
}

pub fn run(settings: &Settings, args: RetentionArgs) -> Result<()> {
    let now = match &args.now {
        Some(text) => parse_timestamp(text).ok().with_context(|| {
            format!("`{text}` is not an RFC 3339 time such as 2031-05-15T00:00:00Z")
        })?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as EpochMillis,
    };
    let mut store = settings.open_store()?;
    let (_, report) = retain(settings, &mut *store, now, &args.policy, args.dry_run)?;
    for line in report {
        println!("{line}");
    }
    Ok(())
}

/// Removes (or, `dry_run`, counts) what is past retention at `now`; the
/// counts, and a report of them for a person.
pub fn retain(
    settings: &Settings,
    store: &mut dyn Store,
    now: EpochMillis,
    policy: &RetentionPolicyArgs,
    dry_run: bool,
) -> Result<(RetentionCounts, Vec<String>)> {
    let policy = RetentionPolicy {
        raw_days: settings.raw_events.retention_days,
        mediated_days: policy.mediated_days,
        rated_days: policy.rated_days,
        invoice_years: policy.invoice_years,
    };
    let cuts = policy.cuts(now);
    let expired = match &settings.lake {
        Some(root) => expired_partitions(root, &cuts)?,
        None => Vec::new(),
    };
    let manifest: Vec<(String, String)> = expired
        .iter()
        .filter(|e| e.dataset != "invoices")
        .map(|e| (e.dataset.to_string(), e.partition.clone()))
        .collect();
    let counts = store.retain(&cuts, &manifest, !dry_run)?;
    if !dry_run {
        for e in &expired {
            std::fs::remove_dir_all(&e.dir)
                .with_context(|| format!("cannot remove {}", e.dir.display()))?;
        }
    }
    let lake = |dataset: &str| {
        let parts: Vec<&Expired> = expired.iter().filter(|e| e.dataset == dataset).collect();
        match parts.is_empty() {
            true => String::new(),
            false => format!(
                "; {} lake partitions ({} files, {} bytes)",
                parts.len(),
                parts.iter().map(|e| e.files).sum::<u64>(),
                parts.iter().map(|e| e.bytes).sum::<u64>()
            ),
        }
    };
    let day = |ms: EpochMillis| Day(ms.div_euclid(86_400_000) as i32);
    let report = vec![
        format!(
        "retention at {}{}",
        format_timestamp(now),
        if dry_run {
            " (dry run: nothing removed)"
        } else {
            ""
        }
        ),
        format!(
        "  raw       {:>4} days  before {}: {} raw events",
        policy.raw_days,
        day(cuts.raw_before),
        counts.raw_events
        ),
        format!(
        "  mediated  {:>4} days  before {}: {}",
        policy.mediated_days,
        cuts.mediated_before,
        match lake("mediated").as_str() {
            "" => "nothing".to_string(),
            text => text[2..].to_string(),
        }
        ),
        format!(
        "  rated     {:>4} days  before {}: {} rated records ({} of them on no issued invoice: prepaid, or never billed), {} invoice-line traces{}",
        policy.rated_days,
        day(cuts.rated_before),
        counts.rated_records,
        counts.unbilled_rated,
        counts.invoice_items,
        lake("rated")
        ),
        format!(
        "  invoices  {:>4} years periods before {}: {} invoices, {} credit and debit notes{}",
        policy.invoice_years,
        cuts.invoice_periods_before,
        counts.invoices,
        counts.notes,
        lake("invoices")
        ),
        "  reports   kept".to_string(),
    ];
    Ok((counts, report))
}

/// The lake's partitions past their retention: `mediated/kind=K/date=D`,
/// `rated/period=P`, `invoices/period=P`.
fn expired_partitions(root: &Path, cuts: &Cuts) -> Result<Vec<Expired>> {
    let mut out = Vec::new();
    let mut visit = |dataset: &'static str, dir: PathBuf, partition: String| -> Result<()> {
        let (mut files, mut bytes) = (0, 0);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
        out.push(Expired {
            dataset,
            partition,
            dir,
            files,
            bytes,
        });
        Ok(())
    };
    let dirs = |path: PathBuf| -> Result<Vec<(String, PathBuf)>> {
        if !path.is_dir() {
            return Ok(Vec::new());
        }
        let mut found = Vec::new();
        for entry in
            std::fs::read_dir(&path).with_context(|| format!("cannot read {}", path.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                found.push((
                    entry.file_name().to_string_lossy().into_owned(),
                    entry.path(),
                ));
            }
        }
        found.sort();
        Ok(found)
    };
    let period_of = |name: &str| name.strip_prefix("period=").and_then(BillingPeriod::parse);
    for (kind, kind_dir) in dirs(root.join("mediated"))? {
        for (date, dir) in dirs(kind_dir)? {
            let day = date.strip_prefix("date=").and_then(Day::parse);
            if day.is_some_and(|d| d < cuts.mediated_before) {
                visit("mediated", dir, format!("{kind}/{date}"))?;
            }
        }
    }
    for (dataset, before) in [
        ("rated", cuts.rated_periods_before),
        ("invoices", cuts.invoice_periods_before),
    ] {
        for (name, dir) in dirs(root.join(dataset))? {
            if period_of(&name).is_some_and(|p| p < before) {
                visit(dataset, dir, name)?;
            }
        }
    }
    Ok(out)
}
