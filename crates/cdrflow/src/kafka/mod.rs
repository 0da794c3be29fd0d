//! Kafka plumbing shared by the source, the dead-letter sink and the
//! generator: how to reach the cluster (`security`), topic creation, the
//! producer, the reachability check.

mod security;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, DeliveryResult, Producer, ProducerContext, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

pub use security::{Cluster, KafkaFileSettings, KafkaSecurityArgs};

use crate::config::Settings;
/// Seed 000's consumer group.
pub const DEFAULT_GROUP: &str = "cdr-summary-unified";
pub const DEFAULT_DLQ_TOPIC: &str = "cdr.rejected";
/// Where `generate` sends seed 003's events.
pub const DEFAULT_EVENTS_TOPIC: &str = "telecom_events";

/// Broker and topic names, with seed 000's environment variables.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Kafka/Redpanda bootstrap servers [default: localhost:19092]
    #[arg(long, env = "BOOTSTRAP", value_name = "HOST:PORT,...")]
    pub bootstrap: Option<String>,

    /// Topic of seed 000 data CDRs
    #[arg(long, env = "TOPIC_DATA", default_value = "cdr_data")]
    pub topic_data: String,

    /// Topic of seed 000 voice CDRs
    #[arg(long, env = "TOPIC_VOICE", default_value = "cdr_voice")]
    pub topic_voice: String,

    /// Topic of seed 003 telecom events
    #[arg(long, env = "TOPIC_EVENTS", default_value = DEFAULT_EVENTS_TOPIC)]
    pub topic_events: String,

    #[command(flatten)]
    pub security: KafkaSecurityArgs,
}

impl KafkaArgs {
    /// The cluster these flags and the config file's `[kafka]` table name.
    pub fn cluster(&self, settings: &Settings) -> Result<Cluster> {
        Cluster::resolve(self.bootstrap.as_deref(), &self.security, &settings.kafka)
    }
}

/// Applies `CDRFLOW_KAFKA_OPTIONS` (`key=value,key=value`): librdkafka settings
/// for tuning and diagnosis without a rebuild, e.g. `linger.ms=1`. Call last.
pub fn with_env_overrides(config: &mut ClientConfig) -> &mut ClientConfig {
    if let Ok(extra) = std::env::var("CDRFLOW_KAFKA_OPTIONS") {
        for pair in extra.split(',').filter(|p| !p.trim().is_empty()) {
            if let Some((key, value)) = pair.split_once('=') {
                config.set(key.trim(), value.trim());
            }
        }
    }
    config
}

/// Creates the topics that do not exist yet, with `partitions` partitions each.
/// Topics the cluster already lists are left alone, so a cluster whose
/// topics are made by its operators (no CreateTopics permission) is fine.
pub fn ensure_topics(cluster: &Cluster, topics: &[&str], partitions: i32) -> Result<()> {
    let bootstrap = &cluster.bootstrap;
    let admin: AdminClient<DefaultClientContext> = with_env_overrides(&mut cluster.client_config())
        .create()
        .context("cannot create a Kafka admin client")?;
    let listed = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .with_context(|| {
            format!("cannot list the topics on {bootstrap}: is the broker running?")
        })?;
    let existing: std::collections::HashSet<&str> = listed
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    let topics: Vec<&str> = topics
        .iter()
        .copied()
        .filter(|t| !existing.contains(t))
        .collect();
    if topics.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = futures_executor::block_on(admin.create_topics(&new_topics, &options))
        .with_context(|| format!("cannot create topics on {bootstrap}: is the broker running?"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => bail!("cannot create topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Keeps librdkafka's last error, which says why a broker cannot be reached
/// (connection refused, TLS handshake, SASL authentication) where a metadata
/// timeout says only that it was not.
#[derive(Default)]
struct LastError(Mutex<Option<String>>);

impl ClientContext for LastError {
    fn error(&self, error: KafkaError, reason: &str) {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // "1/1 brokers are down" follows every failure; keep the failure.
        if last.is_some() && error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            return;
        }
        *last = Some(if reason.is_empty() {
            error.to_string()
        } else {
            reason.to_string()
        });
    }
}

impl ConsumerContext for LastError {}

/// How long a one-shot command (generate, replay) waits for the cluster.
pub const ONE_SHOT_PATIENCE: Duration = Duration::from_secs(15);

/// Waits until the cluster answers, saying within seconds when it does not —
/// with the address, librdkafka's reason and what to check — and again every
/// 30 s while it keeps trying (or fails after `give_up`). Without this a
/// consumer facing no broker printed nothing for half a minute, and one
/// facing a wrong CA or password only timed out. False when stopped first.
pub fn wait_until_reachable(
    cluster: &Cluster,
    stopping: &AtomicBool,
    give_up: Option<Duration>,
) -> Result<bool> {
    const ASK: Duration = Duration::from_secs(3);
    let bootstrap = &cluster.bootstrap;
    let client: BaseConsumer<LastError> = with_env_overrides(
        cluster
            .client_config()
            .set("socket.connection.setup.timeout.ms", "3000"),
    )
    .create_with_context(LastError::default())
    .with_context(|| format!("cannot create a Kafka client for {bootstrap}"))?;
    let started = std::time::Instant::now();
    let mut said: Option<std::time::Instant> = None;
    while !stopping.load(Ordering::Relaxed) {
        match client.fetch_metadata(None, ASK) {
            Ok(_) => {
                if said.is_some() {
                    tracing::info!(
                        "reached the Kafka broker at {bootstrap} after {} s",
                        started.elapsed().as_secs()
                    );
                }
                return Ok(true);
            }
            Err(e) => {
                serve_events(&client, Duration::from_millis(100));
                let reason = client
                    .context()
                    .0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone()
                    .unwrap_or_else(|| e.to_string());
                let problem = format!(
                    "cannot reach the Kafka broker at {bootstrap}: asked for its metadata for {} s ({reason})",
                    started.elapsed().as_secs().max(ASK.as_secs())
                );
                if give_up.is_some_and(|limit| started.elapsed() >= limit) {
                    bail!("{problem}. Check {}", cluster.what_to_check());
                }
                if said.map_or(true, |at| at.elapsed() >= Duration::from_secs(30)) {
                    tracing::error!("{problem}; still trying. Check {}", cluster.what_to_check());
                    said = Some(std::time::Instant::now());
                }
            }
        }
        serve_events(&client, Duration::from_millis(500));
    }
    Ok(false)
}

/// Polls for `period`: error and log events reach a client's context only
/// when it is polled, and each poll serves at most one of them.
fn serve_events<C: ConsumerContext>(client: &BaseConsumer<C>, period: Duration) {
    let until = std::time::Instant::now() + period;
    while std::time::Instant::now() < until {
        let _ = client.poll(Duration::from_millis(10));
    }
}

/// Compression codecs the producer accepts.
pub const COMPRESSIONS: [&str; 5] = ["none", "lz4", "zstd", "snappy", "gzip"];

/// An idempotent producer with `acks=all`: retries never duplicate or reorder
/// a partition's records.
pub fn producer(
    cluster: &Cluster,
    compression: &str,
) -> Result<ThreadedProducer<DefaultProducerContext>> {
    producer_with(cluster, compression, DefaultProducerContext)
}

/// [`producer`] with a context that hears each record's delivery report.
pub fn producer_with<C: ProducerContext + 'static>(
    cluster: &Cluster,
    compression: &str,
    context: C,
) -> Result<ThreadedProducer<C>> {
    let mut config = cluster.client_config();
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", compression)
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000");
    with_env_overrides(&mut config)
        .create_with_context(context)
        .with_context(|| format!("cannot create a Kafka producer for {}", cluster.bootstrap))
}

/// Counts the records Kafka did not take (their delivery reports), saying
/// each in a warning prefixed by who produced it.
pub struct DeliveryFailures {
    producer: &'static str,
    failures: Arc<AtomicU64>,
}

impl DeliveryFailures {
    pub fn new(producer: &'static str, failures: Arc<AtomicU64>) -> DeliveryFailures {
        DeliveryFailures { producer, failures }
    }
}

impl ClientContext for DeliveryFailures {}

impl ProducerContext for DeliveryFailures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            tracing::warn!("{}: Kafka did not take a record: {e}", self.producer);
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Sends one record, waiting while the producer's queue is full.
pub fn send<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    mut record: BaseRecord<'_, [u8], [u8], C::DeliveryOpaque>,
) -> Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, returned)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = returned;
                producer.poll(Duration::from_millis(10));
            }
            Err((e, _)) => return Err(e).context("cannot queue a record for Kafka"),
        }
    }
}

/// Waits until every queued record is acknowledged (or has failed: only a
/// context's delivery reports tell which).
pub fn flush<C: ProducerContext + 'static>(producer: &ThreadedProducer<C>) -> Result<()> {
    producer
        .flush(Duration::from_secs(30))
        .context("Kafka did not acknowledge the produced records within 30 s")
}

/// The high-water mark librdkafka last saw in a fetch response for this
/// partition (`rd_kafka_get_watermark_offsets`: no request to the broker).
/// rdkafka 0.39 wraps only the querying variant, hence the direct call.
pub fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid while `consumer` lives; the topic is a
    // NUL-terminated string that outlives the call; low/high are valid out-pointers.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// Where each partition's log ends, from fetch responses. (Asking with
/// ListOffsets would be one request, but Tansu 0.6 answers it with the start
/// of the last record batch, not the end of the log.)
pub fn log_ends(cluster: &Cluster, partitions: &[(String, i32)]) -> Result<Vec<i64>> {
    let bootstrap = &cluster.bootstrap;
    let consumer: BaseConsumer = with_env_overrides(
        cluster
            .client_config()
            .set("group.id", "cdrflow-probe")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "latest")
            .set("fetch.wait.max.ms", "10"),
    )
    .create()
    .with_context(|| format!("cannot create a Kafka client for {bootstrap}"))?;
    let mut assignment = TopicPartitionList::new();
    for (topic, partition) in partitions {
        assignment.add_partition_offset(topic, *partition, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    let started = std::time::Instant::now();
    loop {
        let ends: Vec<Option<i64>> = partitions
            .iter()
            .map(|(t, p)| cached_high_watermark(&consumer, t, *p))
            .collect();
        if ends.iter().all(Option::is_some) {
            return Ok(ends.into_iter().flatten().collect());
        }
        if started.elapsed() > Duration::from_secs(15) {
            bail!("{bootstrap} did not say where the partitions end within 15 s; is the broker reachable?");
        }
        let _ = consumer.poll(Duration::from_millis(100));
    }
}
