//! Named internal events, as Vector's `src/internal_events/`: each notable
//! thing the process does or suffers is a type whose `emit` writes its log
//! line and bumps its counter together. A new stage's failures then come
//! with both, and `/metrics` never disagrees with the log about what
//! happened. Add an event here, with its counter in [`COUNTERS`].

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use cdrflow_store::StoreError;
use rdkafka::error::KafkaError;

use crate::metrics::{Exposition, MetricType};
use crate::telemetry::{telemetry, IngestTimes};

pub trait InternalEvent {
    fn emit(self);
}

/// A Prometheus counter with one label, shown in `/metrics` once bumped.
pub struct EventCounter {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Mutex<BTreeMap<String, u64>>,
}

impl EventCounter {
    const fn new(name: &'static str, help: &'static str, label: &'static str) -> EventCounter {
        EventCounter {
            name,
            help,
            label,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    fn add(&self, label_value: &str, by: u64) {
        let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        *values.entry(label_value.to_string()).or_default() += by;
    }

    #[cfg(test)]
    fn get(&self, label_value: &str) -> u64 {
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        values.get(label_value).copied().unwrap_or(0)
    }

    fn expose(&self, page: &mut Exposition) {
        let mut family = page.family(self.name, MetricType::Counter, self.help);
        let values = self.values.lock().unwrap_or_else(|p| p.into_inner());
        for (value, count) in values.iter() {
            family.sample(&[(self.label, value)], count);
        }
    }
}

pub static STORE_RETRIES: EventCounter = EventCounter::new(
    "cdrflow_store_retries_total",
    "Store operations retried after a transient failure (unreachable, busy), by operation.",
    "operation",
);
pub static PARTITIONS_FENCED: EventCounter = EventCounter::new(
    "cdrflow_partitions_fenced_total",
    "Batches dropped uncommitted because another member had claimed their partition, by topic.",
    "topic",
);
pub static KAFKA_CLIENT_ERRORS: EventCounter = EventCounter::new(
    "cdrflow_kafka_client_errors_total",
    "Errors librdkafka reported (lost brokers, refused TLS or SASL; it retries them), by kind.",
    "kind",
);
pub static CHECKPOINTS_COMMITTED: EventCounter = EventCounter::new(
    "cdrflow_checkpoints_committed_total",
    "Store transactions that committed results with their source positions, by source.",
    "source",
);

pub static REJECTS_COMMITTED: EventCounter = EventCounter::new(
    "cdrflow_rejects_committed_total",
    "Records this process refused and committed to the rejects table, by reason.",
    "reason",
);
pub static READ_ERRORS: EventCounter = EventCounter::new(
    "cdrflow_read_errors_total",
    "Failures to read a source (an I/O error on a file, a failed Kafka fetch), by source.",
    "source",
);
pub static OFFSET_GAPS: EventCounter = EventCounter::new(
    "cdrflow_offset_gaps_total",
    "Kafka fetches that skipped offsets: re-read from earlier, or accepted as gone (compaction, retention), by outcome.",
    "outcome",
);

/// Every event counter, in exposition order.
pub const COUNTERS: [&EventCounter; 8] = [
    &CHECKPOINTS_COMMITTED,
    &REJECTS_COMMITTED,
    &STORE_RETRIES,
    &PARTITIONS_FENCED,
    &KAFKA_CLIENT_ERRORS,
    &READ_ERRORS,
    &OFFSET_GAPS,
    &LOGICAL_MESSAGES,
];

/// Every event counter, onto a `/metrics` page.
pub fn expose(page: &mut Exposition) {
    for counter in COUNTERS {
        counter.expose(page);
    }
}

/// A transient store failure, about to be retried.
pub struct StoreRetry<'a> {
    pub operation: &'a str,
    pub delay: Duration,
    pub error: &'a StoreError,
}

impl InternalEvent for StoreRetry<'_> {
    fn emit(self) {
        tracing::warn!(
            "{} failed, retrying in {:?}: {}",
            self.operation,
            self.delay,
            self.error
        );
        STORE_RETRIES.add(self.operation, 1);
    }
}

/// A batch not committed because its partition has a new owner.
pub struct PartitionFenced<'a> {
    pub topic: &'a str,
    pub error: &'a StoreError,
}

impl InternalEvent for PartitionFenced<'_> {
    fn emit(self) {
        tracing::warn!(
            "{}; dropping its batch, the new owner re-reads it",
            self.error
        );
        PARTITIONS_FENCED.add(self.topic, 1);
    }
}

/// An error librdkafka reported to a client.
pub struct KafkaClientError<'a> {
    pub error: &'a KafkaError,
    pub reason: &'a str,
}

impl InternalEvent for KafkaClientError<'_> {
    fn emit(self) {
        tracing::warn!("Kafka: {}: {}", self.error, self.reason);
        let kind = self
            .error
            .rdkafka_error_code()
            .map_or_else(|| "other".to_string(), |code| format!("{code:?}"));
        KAFKA_CLIENT_ERRORS.add(&kind, 1);
    }
}

/// A store transaction that committed checkpoints with their positions.
pub struct CheckpointCommitted<'a, E: Iterator<Item = i64>> {
    /// `files` or `kafka`.
    pub source: &'a str,
    pub parts: usize,
    pub rows: usize,
    pub elapsed: Duration,
    pub committed_at: i64,
    /// Event times of the accepted records.
    pub event_times: E,
    pub ingested: &'a IngestTimes,
}

impl<E: Iterator<Item = i64>> InternalEvent for CheckpointCommitted<'_, E> {
    fn emit(self) {
        tracing::debug!(
            source = self.source,
            parts = self.parts,
            rows = self.rows,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "checkpoint committed"
        );
        telemetry().committed(
            self.elapsed.as_millis() as i64,
            self.committed_at,
            self.event_times,
            self.ingested,
        );
        CHECKPOINTS_COMMITTED.add(self.source, 1);
    }
}

/// Records refused and committed to the rejects table with a checkpoint.
pub struct RejectsCommitted<'a> {
    pub rejected: &'a std::collections::BTreeMap<cdrflow_core::reject::RejectReason, u64>,
}

impl InternalEvent for RejectsCommitted<'_> {
    fn emit(self) {
        if self.rejected.is_empty() {
            return;
        }
        let reasons: Vec<String> = self
            .rejected
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        // Debug: every commit may carry some; the run's report and
        // `/metrics` sum them up.
        tracing::debug!(
            "{} records rejected ({}); `cdrflow rejected` lists them",
            self.rejected.values().sum::<u64>(),
            reasons.join(", ")
        );
        for (reason, n) in self.rejected {
            REJECTS_COMMITTED.add(reason.as_str(), *n);
        }
    }
}

/// A source could not be read.
pub struct ReadFailed<'a> {
    /// `file` or `kafka`.
    pub source: &'a str,
    pub origin: &'a str,
    pub error: &'a dyn std::fmt::Display,
}

impl InternalEvent for ReadFailed<'_> {
    fn emit(self) {
        tracing::warn!("reading {}: {}", self.origin, self.error);
        READ_ERRORS.add(self.source, 1);
    }
}

/// A Kafka fetch answered from a later offset than the one expected.
pub struct OffsetGap<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub expected: i64,
    pub got: i64,
    /// `Some(n)`: re-reading from `n` offsets earlier; `None`: accepted as gone.
    pub rewind: Option<i64>,
}

impl InternalEvent for OffsetGap<'_> {
    fn emit(self) {
        let (topic, partition, expected, got) =
            (self.topic, self.partition, self.expected, self.got);
        match self.rewind {
            Some(rewind) => {
                tracing::warn!(
                    topic,
                    partition,
                    expected,
                    got,
                    "offset gap; re-reading from {rewind} earlier"
                );
                OFFSET_GAPS.add("reread", 1);
            }
            None => {
                tracing::warn!(
                    topic,
                    partition,
                    expected,
                    got,
                    "offset gap accepted: the records are gone (compaction or retention)"
                );
                OFFSET_GAPS.add("accepted", 1);
            }
        }
    }
}

pub static LOGICAL_MESSAGES: EventCounter = EventCounter::new(
    "cdrflow_logical_messages_ignored_total",
    "Logical decoding messages (Debezium op `m`) read from change-event topics: nothing to apply.",
    "topic",
);

/// A logical decoding message on a change-event topic, skipped.
pub struct LogicalMessageIgnored<'a> {
    pub message: cdrflow_core::cdc::LogicalMessage<'a>,
}

impl InternalEvent for LogicalMessageIgnored<'_> {
    fn emit(self) {
        let m = self.message;
        tracing::info!(
            topic = m.topic,
            position = %m.position,
            prefix = m.prefix.as_deref().unwrap_or(""),
            "logical decoding message ignored: it changes no row"
        );
        LOGICAL_MESSAGES.add(m.topic, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_counts_and_shows_in_the_exposition() {
        let error = StoreError::Fenced {
            topic: "events-test".into(),
            partition: 3,
            epoch: 7,
        };
        let before = PARTITIONS_FENCED.get("events-test");
        for _ in 0..2 {
            PartitionFenced {
                topic: "events-test",
                error: &error,
            }
            .emit();
        }
        assert_eq!(PARTITIONS_FENCED.get("events-test"), before + 2);
        let mut page = Exposition::default();
        expose(&mut page);
        let out = page.into_text();
        assert!(
            out.contains("# TYPE cdrflow_partitions_fenced_total counter\n"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "cdrflow_partitions_fenced_total{{topic=\"events-test\"}} {}\n",
                before + 2
            )),
            "{out}"
        );
        let rejected = [(cdrflow_core::reject::RejectReason::MalformedJson, 3)]
            .into_iter()
            .collect();
        let before = REJECTS_COMMITTED.get("malformed_json");
        RejectsCommitted {
            rejected: &rejected,
        }
        .emit();
        assert_eq!(REJECTS_COMMITTED.get("malformed_json"), before + 3);
        // Every counter has its HELP and TYPE, bumped or not.
        for counter in COUNTERS {
            assert!(out.contains(&format!("# TYPE {} counter", counter.name)));
        }
    }
}
