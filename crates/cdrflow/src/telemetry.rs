//! What this process measures about itself, for `/metrics` and the dashboard.
//!
//! The store's counters (records in, accepted, rejected, duplicates) are the
//! cluster-wide truth and come from the store. What only a processing process
//! can know — how long its commits take, how far behind event time and
//! ingest time its commits land, how far behind the broker it is — lives here,
//! in one process-wide registry like a Prometheus client's default one.
//! Updates are relaxed atomics: a scrape may see a commit half-recorded,
//! never a torn number.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use crate::histogram::Histogram;
use crate::metrics::{Exposition, MetricType};

/// The process-wide registry.
pub struct Telemetry {
    /// Store transaction time per checkpoint.
    pub commit_duration: Histogram,
    /// Per accepted record: its event time → its checkpoint committed.
    pub event_to_commit: Histogram,
    /// Per record: read from the source → its checkpoint committed.
    pub ingest_to_commit: Histogram,
    pub dlq_writes: AtomicU64,
    /// Unix milliseconds of the last commit, 0 before the first.
    pub last_commit_millis: AtomicI64,
    /// Set once this process consumes Kafka: readiness then needs partitions.
    pub reading_kafka: AtomicBool,
    pub assigned_partitions: AtomicU64,
    /// Records between the consumer's position and the broker's high-water
    /// mark (from fetch responses), per assigned (topic, partition).
    pub kafka_lag: Mutex<BTreeMap<(String, i32), i64>>,
    /// Partitions whose stored position was beyond the end of the log.
    pub offset_resets: Mutex<Vec<OffsetReset>>,
    /// Per watched (topic, partition): stalled (behind its log end with no
    /// commit for too long, see `sources::kafka::stall`) or not.
    pub stalled: Mutex<BTreeMap<(String, i32), Option<Stall>>>,
    /// Refused authentication attempts, by [`AuthFailure`].
    auth_failures: [AtomicU64; AuthFailure::ALL.len()],
    /// Connections closed on arrival because `--max-connections` were open.
    http_connections_refused: AtomicU64,
}

/// Why an authentication attempt was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    Missing,
    WrongCredentials,
    RateLimited,
    Busy,
}

impl AuthFailure {
    pub const ALL: [AuthFailure; 4] = [
        AuthFailure::Missing,
        AuthFailure::WrongCredentials,
        AuthFailure::RateLimited,
        AuthFailure::Busy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing_credentials",
            AuthFailure::WrongCredentials => "wrong_credentials",
            AuthFailure::RateLimited => "rate_limited",
            AuthFailure::Busy => "busy",
        }
    }
}

/// A partition that nobody seems to be reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stall {
    /// Records between the stored position and the log end.
    pub behind: i64,
    /// Seconds since its position was last committed (or since it was first
    /// seen behind, when it never was).
    pub idle_seconds: u64,
}

/// A stored Kafka position beyond the end of its partition's log, found
/// when the partition was read: said in the log, in `/metrics` and on `/ready`.
#[derive(Clone, Debug)]
pub struct OffsetReset {
    pub topic: String,
    pub partition: i32,
    pub stored: i64,
    /// Where reading went on, when known (otherwise the earliest retained record).
    pub resumed_at: Option<i64>,
}

impl OffsetReset {
    pub fn describe(&self) -> String {
        let from = self
            .resumed_at
            .map_or(String::new(), |o| format!(" (offset {o})"));
        format!(
            "{}[{}]: the stored position {} is beyond the end of the log (was the topic recreated?); reading from the earliest retained record{from} instead (records already counted are recognised as duplicates)",
            self.topic, self.partition, self.stored
        )
    }
}

static TELEMETRY: Telemetry = Telemetry {
    commit_duration: Histogram::for_metrics(),
    event_to_commit: Histogram::for_metrics(),
    ingest_to_commit: Histogram::for_metrics(),
    dlq_writes: AtomicU64::new(0),
    last_commit_millis: AtomicI64::new(0),
    reading_kafka: AtomicBool::new(false),
    assigned_partitions: AtomicU64::new(0),
    kafka_lag: Mutex::new(BTreeMap::new()),
    offset_resets: Mutex::new(Vec::new()),
    stalled: Mutex::new(BTreeMap::new()),
    auth_failures: [const { AtomicU64::new(0) }; AuthFailure::ALL.len()],
    http_connections_refused: AtomicU64::new(0),
};

pub fn telemetry() -> &'static Telemetry {
    &TELEMETRY
}

/// When each part of a checkpoint was read: (unix ms, records), oldest first.
pub type IngestTimes = Vec<(i64, u64)>;

impl Telemetry {
    /// Records one committed checkpoint.
    pub fn committed(
        &self,
        commit_millis: i64,
        committed_at: i64,
        event_times: impl IntoIterator<Item = i64>,
        ingested: &[(i64, u64)],
    ) {
        self.commit_duration.observe_millis(commit_millis, 1);
        self.event_to_commit
            .observe_all_millis(event_times.into_iter().map(|t| committed_at - t));
        for &(ingested_at, records) in ingested {
            self.ingest_to_commit
                .observe_millis(committed_at - ingested_at, records);
        }
        self.last_commit_millis
            .fetch_max(committed_at, Ordering::Relaxed);
    }

    pub fn lag(&self) -> BTreeMap<(String, i32), i64> {
        self.kafka_lag
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn set_lag(&self, lag: BTreeMap<(String, i32), i64>) {
        *self.kafka_lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }

    pub fn offset_reset(&self, reset: OffsetReset) {
        tracing::error!("{}", reset.describe());
        self.offset_resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(reset);
    }

    pub fn offset_resets(&self) -> Vec<OffsetReset> {
        self.offset_resets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn auth_failure(&self, why: AuthFailure) {
        self.auth_failures[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_connection_refused(&self) {
        let before = self
            .http_connections_refused
            .fetch_add(1, Ordering::Relaxed);
        if before.is_power_of_two() || before == 0 {
            tracing::warn!(
                "{} connections closed on arrival: --max-connections are open",
                before + 1
            );
        }
    }

    pub fn set_stalled(&self, stalled: BTreeMap<(String, i32), Option<Stall>>) {
        *self.stalled.lock().unwrap_or_else(|p| p.into_inner()) = stalled;
    }

    /// What an operator should look at, in sentences (for `/ready` and the dashboard).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings: Vec<String> = self.offset_resets().iter().map(|r| r.describe()).collect();
        let stalled = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
        for ((topic, partition), stall) in stalled.iter() {
            if let Some(stall) = stall {
                warnings.push(format!(
                    "{topic}[{partition}] is stalled: {} records behind its log end and no commit for {} s; is its consumer alive? (the group coordinator may not have expired a dead member)",
                    stall.behind, stall.idle_seconds
                ));
            }
        }
        warnings
    }

    /// Ready to process: not a Kafka consumer, or one with partitions.
    pub fn has_work(&self) -> bool {
        !self.reading_kafka.load(Ordering::Relaxed)
            || self.assigned_partitions.load(Ordering::Relaxed) > 0
    }

    /// This process's metrics, onto a `/metrics` page.
    pub fn expose(&self, page: &mut Exposition) {
        let last = self.last_commit_millis.load(Ordering::Relaxed) as f64 / 1000.0;
        page.family(
            "cdr_last_update_timestamp",
            MetricType::Gauge,
            "Unix time of this process's last commit to the store (0: none yet).",
        )
        .sample(&[], last);
        self.commit_duration.expose(
            page,
            "cdrflow_batch_commit_duration_seconds",
            "Time to commit one checkpoint (results and source positions) to the store.",
        );
        self.event_to_commit.expose(
            page,
            "cdrflow_event_to_commit_seconds",
            "Accepted records: event time to committed in the store.",
        );
        self.ingest_to_commit.expose(
            page,
            "cdrflow_ingest_to_commit_seconds",
            "Records: read from the source to committed in the store.",
        );
        page.family(
            "cdrflow_dlq_writes_total",
            MetricType::Counter,
            "Rejected records written to the dead-letter topic.",
        )
        .sample(&[], self.dlq_writes.load(Ordering::Relaxed));
        let mut resets: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for reset in self.offset_resets() {
            *resets
                .entry((reset.topic.clone(), reset.partition))
                .or_default() += 1;
        }
        let mut family = page.family(
            "cdrflow_kafka_offset_resets_total",
            MetricType::Counter,
            "Partitions whose stored position was beyond the end of the log.",
        );
        for ((topic, partition), n) in resets {
            family.sample(
                &[("topic", &topic), ("partition", &partition.to_string())],
                n,
            );
        }
        let mut family = page.family(
            "cdrflow_auth_failures_total",
            MetricType::Counter,
            "Refused authentication attempts, by reason.",
        );
        for why in AuthFailure::ALL {
            let value = self.auth_failures[why as usize].load(Ordering::Relaxed);
            family.sample(&[("reason", why.as_str())], value);
        }
        page.family(
            "cdrflow_http_connections_refused_total",
            MetricType::Counter,
            "Connections closed on arrival because the connection limit was reached.",
        )
        .sample(&[], self.http_connections_refused.load(Ordering::Relaxed));
        let mut family = page.family(
            "cdrflow_partition_stalled",
            MetricType::Gauge,
            "1 when a partition is behind its log end with no commit for longer than --stall-timeout.",
        );
        for ((topic, partition), stall) in self
            .stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let partition = partition.to_string();
            family.sample(
                &[("topic", topic), ("partition", &partition)],
                u8::from(stall.is_some()),
            );
        }
        let mut family = page.family(
            "cdrflow_kafka_consumer_lag",
            MetricType::Gauge,
            "Records behind the high-water mark, per assigned partition.",
        );
        for ((topic, partition), records) in &self.lag() {
            family.sample(
                &[("topic", topic), ("partition", &partition.to_string())],
                records,
            );
        }
    }
}
