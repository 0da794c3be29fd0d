//! `cdrflow alerts`: the alert relay, delivering anomalies to a webhook or
//! a Kafka topic (`cdr.anomalies`).
//!
//! The `anomalies` table is the outbox: an anomaly is stored in the same
//! transaction as the records that fired it, once (its idempotency key is
//! unique). The relay reads anomalies after its sink's cursor in id order,
//! delivers them and moves the cursor past them once the receiver has them:
//! a webhook answered 2xx to each POST, or Kafka acknowledged every record
//! of a page (an idempotent producer with `acks=all`; a delivery report
//! that failed sends the page again). Delivery is therefore at least once —
//! a crash between the acknowledgement and the cursor's move sends again —
//! and every alert carries the anomaly's idempotency key (the HTTP header
//! `Idempotency-Key` and in the JSON body; the Kafka record's key) so a
//! receiver can drop repeats. A failed attempt is retried with exponential
//! backoff; later anomalies wait, so they arrive in order.
//!
//! Separate from `process` so that a slow or broken receiver never holds up
//! ingestion, and so that one relay per receiver (`--sink`) keeps its own
//! position.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use cdrflow_core::analytics::rules::Severity;
use cdrflow_core::normalize::format_timestamp_ms;
use cdrflow_store::{AnomalyQuery, Store, StoredAnomaly};
use rdkafka::producer::{BaseRecord, ThreadedProducer};

use crate::config::Settings;
use crate::kafka::{
    self, ensure_topics, producer_with, wait_until_reachable, DeliveryFailures, KafkaArgs,
};
use crate::views::anomaly_json;

#[derive(Debug, clap::Args)]
pub struct AlertsArgs {
    /// Webhook to POST each anomaly to (http:// or https://)
    #[arg(
        long,
        env = "CDRFLOW_ALERT_WEBHOOK",
        value_name = "URL",
        required_unless_present = "kafka_topic",
        conflicts_with = "kafka_topic"
    )]
    pub webhook: Option<String>,

    /// Kafka topic to publish each anomaly to instead (JSON, keyed by its
    /// idempotency key), e.g. cdr.anomalies; the broker from --bootstrap
    #[arg(long, env = "CDRFLOW_ALERT_TOPIC", value_name = "TOPIC")]
    pub kafka_topic: Option<String>,

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

    #[command(flatten)]
    pub kafka: KafkaArgs,
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
    let sink = Sink::open(settings, &args)?;
    let mut store = settings.open_store()?;
    let min_severity = args.min_severity.unwrap_or(Severity::Low);
    let mut delivered = 0u64;
    loop {
        let page = waiting(&mut *store, &args.sink)?;
        let Some(last) = page.last().map(|a| a.id) else {
            if args.once {
                break;
            }
            std::thread::sleep(Duration::from_secs(args.poll_seconds));
            continue;
        };
        let alerts: Vec<&StoredAnomaly> =
            page.iter().filter(|a| a.severity >= min_severity).collect();
        sink.deliver(&args, &alerts)?;
        delivered += alerts.len() as u64;
        store
            .advance_alert_cursor(&args.sink, last)
            .context("recording delivered alerts in the store")?;
    }
    tracing::info!(
        "alerts: delivered {delivered} anomalies to {} (sink `{}`)",
        sink.label(),
        args.sink
    );
    eprintln!("delivered {delivered} anomalies to {}", sink.label());
    Ok(())
}

/// Where alerts go.
enum Sink {
    Webhook {
        agent: ureq::Agent,
        url: String,
    },
    Kafka {
        producer: ThreadedProducer<DeliveryFailures>,
        topic: String,
        failures: Arc<AtomicU64>,
    },
}

impl Sink {
    fn open(settings: &Settings, args: &AlertsArgs) -> Result<Sink> {
        if let Some(topic) = &args.kafka_topic {
            let cluster = args.kafka.cluster(settings)?;
            wait_until_reachable(
                &cluster,
                &AtomicBool::new(false),
                Some(Duration::from_secs(30)),
            )?;
            ensure_topics(&cluster, &[topic], 1)?;
            let failures = Arc::new(AtomicU64::new(0));
            return Ok(Sink::Kafka {
                producer: producer_with(
                    &cluster,
                    "lz4",
                    DeliveryFailures::new("alerts", failures.clone()),
                )?,
                topic: topic.clone(),
                failures,
            });
        }
        let url = args
            .webhook
            .clone()
            .expect("clap requires --webhook or --kafka-topic");
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--webhook `{url}` is not an http:// or https:// URL");
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        Ok(Sink::Webhook { agent, url })
    }

    fn label(&self) -> String {
        match self {
            Sink::Webhook { url, .. } => url.clone(),
            Sink::Kafka { topic, .. } => format!("Kafka topic {topic}"),
        }
    }

    /// Delivers `alerts` until the receiver has them (or `--max-attempts` runs out).
    fn deliver(&self, args: &AlertsArgs, alerts: &[&StoredAnomaly]) -> Result<()> {
        match self {
            Sink::Webhook { agent, url } => {
                for anomaly in alerts {
                    let body = match args.format {
                        AlertFormat::Json => anomaly_json(anomaly),
                        AlertFormat::Slack => slack_message(anomaly),
                    }
                    .to_string();
                    retrying(args, &format!("anomaly {}", anomaly.id), || {
                        match agent
                            .post(url)
                            .header("Idempotency-Key", &anomaly.idempotency_key)
                            .content_type("application/json")
                            .send(body.as_str())
                        {
                            Ok(_) => Ok(()),
                            Err(ureq::Error::StatusCode(code)) => {
                                Err(format!("{url} answered {code}"))
                            }
                            Err(e) => Err(format!("{url}: {e}")),
                        }
                    })?;
                }
                Ok(())
            }
            Sink::Kafka {
                producer,
                topic,
                failures,
            } => {
                if alerts.is_empty() {
                    return Ok(());
                }
                let bodies: Vec<String> =
                    alerts.iter().map(|a| anomaly_json(a).to_string()).collect();
                let what = format!(
                    "anomalies {}..={}",
                    alerts[0].id,
                    alerts[alerts.len() - 1].id
                );
                retrying(args, &what, || {
                    failures.store(0, Ordering::Relaxed);
                    for (anomaly, body) in alerts.iter().zip(&bodies) {
                        kafka::send(
                            producer,
                            BaseRecord::to(topic)
                                .key(anomaly.idempotency_key.as_bytes())
                                .payload(body.as_bytes()),
                        )
                        .map_err(|e| format!("{e:#}"))?;
                    }
                    kafka::flush(producer).map_err(|e| format!("{e:#}"))?;
                    match failures.load(Ordering::Relaxed) {
                        0 => Ok(()),
                        n => Err(format!("Kafka refused {n} of {} alerts", alerts.len())),
                    }
                })
            }
        }
    }
}

/// Runs `attempt` until it succeeds, with exponential backoff between tries.
fn retrying(
    args: &AlertsArgs,
    what: &str,
    mut attempt: impl FnMut() -> Result<(), String>,
) -> Result<()> {
    let mut backoff = Duration::from_millis(args.retry_backoff_ms);
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let why = match attempt() {
            Ok(()) => return Ok(()),
            Err(why) => why,
        };
        if args.max_attempts.is_some_and(|max| attempts >= max) {
            bail!("{what} was not delivered after {attempts} attempts: {why}");
        }
        tracing::warn!(
            "alerts: attempt {attempts} at {what} failed ({why}); retrying in {} ms",
            backoff.as_millis()
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
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
