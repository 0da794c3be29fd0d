//! `cdrflow daily --date D`: seed 003's daily batch over a UTC day's raw
//! events, in seed 003's five steps — check the data's quality, compute the
//! daily and hourly statistics, verify them, summarise, clean up.
//!
//! Every step is idempotent (statistics replace the day's rows in one
//! transaction), so a retry or a re-run changes nothing. Each step is
//! retried on failure (3 times, 5 minutes apart by default) when the
//! command runs them itself; the shipped Airflow DAG (`deploy/airflow/`)
//! runs one step per task with `--retries 0` and lets Airflow retry, as
//! seed 003's DAG does.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use cdrflow_core::analytics::daily::{
    differences, reconcile, DayCounts, Stat, StatsFold, DAY_MS, DEFAULT_MIN_EVENTS,
};
use cdrflow_core::analytics::windows::event_type;
use cdrflow_core::money::format_micros;
use cdrflow_core::normalize::{format_timestamp, parse_timestamp, EpochMillis};
use cdrflow_store::{AnomalyQuery, StatGrain, Store, WindowQuery};

use crate::commands::retention::{retain, RetentionPolicyArgs};
use crate::config::Settings;

#[derive(Debug, clap::Args)]
pub struct DailyArgs {
    /// The UTC day to process, YYYY-MM-DD [default: yesterday in UTC]
    #[arg(long, value_name = "DATE")]
    pub date: Option<String>,

    /// Run only this step (the Airflow DAG runs one per task) [default: all five, in order]
    #[arg(long, value_enum)]
    pub step: Option<Step>,

    /// The data-quality check fails for a day with fewer raw events
    #[arg(long, env = "CDRFLOW_DAILY_MIN_EVENTS", default_value_t = DEFAULT_MIN_EVENTS, value_name = "N")]
    pub min_events: u64,

    /// Further attempts of a step that failed (a store outage, data still arriving)
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,

    /// Seconds between a step's attempts
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub retry_delay_seconds: u64,

    /// cleanup_old_data applies every layer's retention (`cdrflow retention`)
    #[command(flatten)]
    pub retention: RetentionPolicyArgs,
}

/// Seed 003's tasks, under its names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Step {
    /// Fail when the day has fewer raw events than --min-events
    #[value(name = "check_data_quality")]
    CheckDataQuality,
    /// Compute daily_stats and hourly_stats from raw_events (replaces the day's rows)
    #[value(name = "run_batch_processing")]
    RunBatchProcessing,
    /// Recompute the statistics row by row and compare; reconcile raw events with windows + late events
    #[value(name = "verify_results")]
    VerifyResults,
    /// Print the day's summary as JSON (stdout and log)
    #[value(name = "send_summary")]
    SendSummary,
    /// Remove raw events older than the retention (--raw-events-retention-days) and what every other layer's retention has passed
    #[value(name = "cleanup_old_data")]
    CleanupOldData,
}

const ALL_STEPS: [Step; 5] = [
    Step::CheckDataQuality,
    Step::RunBatchProcessing,
    Step::VerifyResults,
    Step::SendSummary,
    Step::CleanupOldData,
];

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::CheckDataQuality => "check_data_quality",
            Step::RunBatchProcessing => "run_batch_processing",
            Step::VerifyResults => "verify_results",
            Step::SendSummary => "send_summary",
            Step::CleanupOldData => "cleanup_old_data",
        }
    }
}

pub fn run(settings: &Settings, args: DailyArgs) -> Result<()> {
    let day = match &args.date {
        Some(text) => parse_day(text)?,
        None => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis() as EpochMillis;
            now.div_euclid(DAY_MS) * DAY_MS - DAY_MS
        }
    };
    let steps = match args.step {
        Some(step) => vec![step],
        None => ALL_STEPS.to_vec(),
    };
    for step in steps {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = settings
                .open_store()
                .and_then(|mut store| run_step(step, day, settings, &args, &mut *store));
            match outcome {
                Ok(()) => break,
                Err(e) if attempt <= args.retries => {
                    tracing::warn!(
                        "daily {}: attempt {attempt} of {} failed, retrying in {} s: {e:#}",
                        step.name(),
                        args.retries + 1,
                        args.retry_delay_seconds
                    );
                    std::thread::sleep(Duration::from_secs(args.retry_delay_seconds));
                }
                Err(e) => {
                    return Err(e.context(format!(
                        "daily {} for {} failed after {attempt} attempt(s)",
                        step.name(),
                        date_of(day)
                    )))
                }
            }
        }
    }
    Ok(())
}

pub fn parse_day(text: &str) -> Result<EpochMillis> {
    let start = parse_timestamp(&format!("{text}T00:00:00Z"))
        .ok()
        .filter(|_| text.len() == 10)
        .with_context(|| {
            format!("--date `{text}` is not a date; write YYYY-MM-DD, e.g. 2025-11-09")
        })?;
    Ok(start)
}

fn date_of(day: EpochMillis) -> String {
    format_timestamp(day)[..10].to_string()
}

fn run_step(
    step: Step,
    day: EpochMillis,
    settings: &Settings,
    args: &DailyArgs,
    store: &mut dyn Store,
) -> Result<()> {
    let (from, to) = (day, day + DAY_MS);
    let date = date_of(day);
    match step {
        Step::CheckDataQuality => {
            let events: u64 = store
                .raw_event_hours(from, to)?
                .iter()
                .map(|h| h.totals.events)
                .sum();
            if events < args.min_events {
                let hint = if settings.raw_events.keep {
                    ""
                } else {
                    " (raw events are switched off: --raw-events off)"
                };
                bail!(
                    "{date} has {events} raw events, fewer than the minimum of {}{hint}; lower it with --min-events if that is expected",
                    args.min_events
                );
            }
            tracing::info!("daily check_data_quality: {date} has {events} raw events");
        }
        Step::RunBatchProcessing => {
            let hourly = store.raw_event_hours(from, to)?;
            if hourly.is_empty() && !store.stats(StatGrain::Daily, day)?.is_empty() {
                bail!(
                    "{date} has no raw events left (past the retention?) but has statistics: they are kept, not replaced by none"
                );
            }
            let daily = Stat::daily_of(&hourly);
            store.replace_stats(day, &hourly, &daily)?;
            tracing::info!(
                "daily run_batch_processing: {date}: {} daily and {} hourly statistics rows",
                daily.len(),
                hourly.len()
            );
        }
        Step::VerifyResults => verify(store, day, settings)?,
        Step::SendSummary => {
            let summary = summary(store, day, settings)?;
            tracing::info!("daily send_summary: {summary}");
            println!("{summary}");
        }
        Step::CleanupOldData => {
            // Every layer's retention, counted from the end of the day.
            let keep_from = to - i64::from(settings.raw_events.retention_days) * DAY_MS;
            let (counts, report) = retain(settings, store, to, &args.retention, false)?;
            for line in report {
                tracing::info!("daily cleanup_old_data: {}", line.trim_start());
            }
            let removed = counts.raw_events;
            tracing::info!(
                "daily cleanup_old_data: removed {removed} raw events before {} ({} days kept)",
                date_of(keep_from),
                settings.raw_events.retention_days
            );
        }
    }
    Ok(())
}

/// The day's raw events folded row by row into hourly statistics: a
/// computation apart from the store's grouping that the stored rows came from.
fn recompute(store: &mut dyn Store, day: EpochMillis) -> Result<Vec<Stat>> {
    let mut fold = StatsFold::default();
    store.raw_events(day, day + DAY_MS, &mut |e| {
        fold.add(
            e.event_time,
            &e.region,
            e.kind,
            e.duration_sec,
            e.data_bytes,
            e.amount_micros,
        )
    })?;
    Ok(fold.hourly())
}

fn verify(store: &mut dyn Store, day: EpochMillis, settings: &Settings) -> Result<()> {
    let date = date_of(day);
    let hourly = recompute(store, day)?;
    let daily = Stat::daily_of(&hourly);
    let stored_hourly = store.stats(StatGrain::Hourly, day)?;
    let stored_daily = store.stats(StatGrain::Daily, day)?;
    if stored_daily.is_empty() && !daily.is_empty() {
        bail!("{date} has raw events but no daily_stats: run the run_batch_processing step first");
    }
    let mut problems: Vec<String> = Vec::new();
    for (table, stored, recomputed) in [
        ("daily_stats", &stored_daily, &daily),
        ("hourly_stats", &stored_hourly, &hourly),
    ] {
        problems.extend(
            differences(stored, recomputed)
                .iter()
                .map(|d| format!("{table} {d}")),
        );
    }
    if DAY_MS % settings.windows.size_ms == 0 {
        let mut raw = DayCounts::new();
        for row in &daily {
            raw.insert((row.key.region.clone(), row.key.kind), row.totals.events);
        }
        let mut windows = DayCounts::new();
        let query = WindowQuery {
            from: day,
            to: day + DAY_MS,
            region: None,
            idle_after_ms: settings.windows.idle_after_ms,
        };
        store.windows(&query, &mut |w| {
            *windows.entry((w.region, w.kind)).or_default() += w.measures.total_events
        })?;
        let late = store.late_event_counts(day, day + DAY_MS)?;
        problems.extend(
            reconcile(&raw, &windows, &late)
                .iter()
                .map(|u| format!("reconcile {u}")),
        );
    } else {
        tracing::warn!(
            "daily verify_results: windows of {} minutes do not divide a day, so raw events are not reconciled with them",
            settings.windows.size_ms / 60_000
        );
    }
    if !problems.is_empty() {
        bail!(
            "{date}: {} problem(s):\n  {}",
            problems.len(),
            problems.join("\n  ")
        );
    }
    tracing::info!(
        "daily verify_results: {date}: {} daily and {} hourly rows equal a recomputation; raw events = windows + late events",
        daily.len(),
        hourly.len()
    );
    Ok(())
}

fn summary(store: &mut dyn Store, day: EpochMillis, settings: &Settings) -> Result<Value> {
    let daily = store.stats(StatGrain::Daily, day)?;
    let mut by_type: BTreeMap<&str, (u64, u64, u64, i64)> = BTreeMap::new();
    for row in &daily {
        let entry = by_type.entry(event_type(row.key.kind)).or_default();
        entry.0 += row.totals.events;
        entry.1 += row.totals.call_duration_sec;
        entry.2 += row.totals.data_bytes;
        entry.3 += row.totals.amount_micros;
    }
    let mut windows = 0u64;
    let query = WindowQuery {
        from: day,
        to: day + DAY_MS,
        region: None,
        idle_after_ms: settings.windows.idle_after_ms,
    };
    store.windows(&query, &mut |_| windows += 1)?;
    let late: u64 = store.late_event_counts(day, day + DAY_MS)?.values().sum();
    let mut anomalies: BTreeMap<&'static str, u64> = BTreeMap::new();
    store.anomalies(&AnomalyQuery::default(), &mut |a| {
        if (day..day + DAY_MS).contains(&a.event_time) {
            *anomalies.entry(a.severity.as_str()).or_default() += 1;
        }
    })?;
    let regions: std::collections::BTreeSet<&str> =
        daily.iter().map(|r| r.key.region.as_str()).collect();
    Ok(json!({
        "date": date_of(day),
        "raw_events": by_type.values().map(|t| t.0).sum::<u64>(),
        "regions": regions.len(),
        "by_event_type": by_type.iter().map(|(name, t)| (name.to_string(), json!({
            "events": t.0,
            "total_call_duration": t.1,
            "total_data_mb": format_micros(i128::from(t.2)),
            "total_revenue": format_micros(i128::from(t.3)),
        }))).collect::<serde_json::Map<_, _>>(),
        "window_rows": windows,
        "late_events": late,
        "anomalies": anomalies,
        "daily_stats_rows": daily.len(),
    }))
}
