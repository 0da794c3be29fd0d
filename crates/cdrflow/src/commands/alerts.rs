//! `cdrflow alerts`: the alert relay, delivering anomalies to a webhook.
//!
//! The `anomalies` table is the outbox: an anomaly is stored in the same
//! transaction as the records that fired it, once (its idempotency key is
//! unique). The relay reads anomalies after its sink's cursor in id order,
//! POSTs each, and moves the cursor past it once the receiver answered 2xx.
//! Delivery is therefore at least once — a crash between the answer and
//! the cursor's move sends that anomaly again — and every request carries
//! the anomaly's idempotency key (header `Idempotency-Key` and in the JSON
//! body) so a receiver can drop repeats. A failed attempt is retried with
//! exponential backoff; later anomalies wait, so they arrive in order.
//!
//! Separate from `process` so that a slow or broken receiver never holds up
//! ingestion, and so that one relay per receiver (`--sink`) keeps its own
//! position.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::normalize::format_timestamp_ms;
use cdrflow_store::{AnomalyQuery, Store, StoredAnomaly};

use crate::config::Settings;
use crate::views::anomaly_json;

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Webhook to POST each anomaly to (http:// or https://)
    #[arg(long, env = "CDRFLOW_ALERT_WEBHOOK", value_name = "URL")]
    pub webhook: String,

    /// Body: json (the anomaly as `export anomalies` shows it) or slack (a
    /// Slack incoming-webhook message)
    #[arg(long, value_enum, default_value = "json")]
    pub format: AlertFormat,

    /// Only anomalies of this severity or above: low, medium, high, critical [default: low]
    #[arg(long, value_parser = |s: &str| Severity::parse(s).ok_or("expected low, medium, high or critical"))]
    pub min_severity: Option<Severity>,

    /// The name this relay's position is kept under in the store: one per receiver
    #[arg(long, default_value = "webhook")]
    pub sink: String,

    /// Deliver what is waiting, then exit [default: keep polling for new anomalies]
    #[arg(long)]
    pub once: bool,

    /// Seconds between looks at the store when nothing is waiting
    #[arg(long, default_value_t = 2, value_name = "SECONDS")]
    pub poll_seconds: u64,

    /// The first retry's delay; each further one doubles it, up to a minute
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_backoff_ms: u64,

    /// Give up (exit with an error) after this many attempts at one anomaly [default: never]
    #[arg(long, value_name = "N")]
    pub max_attempts: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AlertFormat {
    Json,
    Slack,
}

/// Anomalies read from the store at a time.
const PAGE: u32 = 100;
const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub fn run(settings: &Settings, args: AlertsArgs) -> Result<()> {
    if !(args.webhook.starts_with("http://") || args.webhook.starts_with("https://")) {
        bail!(
            "--webhook `{}` is not an http:// or https:// URL",
            args.webhook
        );
    }
    let mut store = settings.open_store()?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let min_severity = args.min_severity.unwrap_or(Severity::Low);
    let mut delivered = 0u64;
    loop {
        let page = waiting(&mut *store, &args.sink)?;
        if page.is_empty() {
            if args.once {
                break;
            }
            std::thread::sleep(Duration::from_secs(args.poll_seconds));
            continue;
        }
        for anomaly in page {
            if anomaly.severity >= min_severity {
                deliver(&agent, &args, &anomaly)?;
                delivered += 1;
            }
            store
                .advance_alert_cursor(&args.sink, anomaly.id)
                .context("recording a delivered alert in the store")?;
        }
    }
    tracing::info!(
        "alerts: delivered {delivered} anomalies to {} (sink `{}`)",
        args.webhook,
        args.sink
    );
    eprintln!("delivered {delivered} anomalies to {}", args.webhook);
    Ok(())
}

fn waiting(store: &mut dyn Store, sink: &str) -> Result<Vec<StoredAnomaly>> {
    let query = AnomalyQuery {
        severity: None,
        after_id: store.alert_cursor(sink)?,
        limit: Some(PAGE),
    };
    let mut page = Vec::new();
    store.anomalies(&query, &mut |a| page.push(a))?;
    Ok(page)
}

/// POSTs one anomaly until the receiver answers 2xx (or `--max-attempts` runs out).
fn deliver(agent: &ureq::Agent, args: &AlertsArgs, anomaly: &StoredAnomaly) -> Result<()> {
    let body = match args.format {
        AlertFormat::Json => anomaly_json(anomaly),
        AlertFormat::Slack => slack_message(anomaly),
    }
    .to_string();
    let mut backoff = Duration::from_millis(args.retry_backoff_ms);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let outcome = agent
            .post(&args.webhook)
            .header("Idempotency-Key", &anomaly.idempotency_key)
            .content_type("application/json")
            .send(body.as_str());
        let why = match outcome {
            Ok(_) => return Ok(()),
            Err(ureq::Error::StatusCode(code)) => format!("the receiver answered {code}"),
            Err(e) => e.to_string(),
        };
        if args.max_attempts.is_some_and(|max| attempt >= max) {
            bail!(
                "anomaly {} ({}) was not delivered to {} after {attempt} attempts: {why}",
                anomaly.id,
                anomaly.idempotency_key,
                args.webhook
            );
        }
        tracing::warn!(
            "alerts: attempt {attempt} at anomaly {} failed ({why}); retrying in {} ms",
            anomaly.id,
            backoff.as_millis()
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A Slack incoming-webhook message: one line of text, the key beside it.
fn slack_message(anomaly: &StoredAnomaly) -> Value {
    let subject = match &anomaly.event_id {
        Some(id) => format!("event {id}"),
        None => "window".to_string(),
    };
    json!({
        "text": format!(
            ":rotating_light: *{}* `{}` for {} ({subject} at {}): {}",
            anomaly.severity.as_str(),
            anomaly.rule,
            anomaly.msisdn,
            format_timestamp_ms(anomaly.event_time),
            anomaly.evidence
        ),
        "idempotency_key": anomaly.idempotency_key,
    })
}
