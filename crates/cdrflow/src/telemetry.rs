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
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Bucket upper bounds in seconds: from a few milliseconds (streaming) to a
/// day (files of yesterday's CDRs are hours behind event time by nature).
const BUCKETS_SECONDS: [f64; 20] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0, 21600.0, 86400.0, 604800.0, 2592000.0,
];

/// A Prometheus histogram of durations.
pub struct Histogram {
    /// Per bucket (not cumulative); the last one is +Inf.
    counts: [AtomicU64; BUCKETS_SECONDS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new() -> Histogram {
        Histogram {
            counts: [const { AtomicU64::new(0) }; BUCKETS_SECONDS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    fn bucket_of(millis: i64) -> usize {
        let seconds = millis as f64 / 1000.0;
        BUCKETS_SECONDS.partition_point(|&bound| bound < seconds)
    }

    /// Records `times` observations of `millis` (negative clock skew counts as 0).
    pub fn observe_millis(&self, millis: i64, times: u64) {
        if times == 0 {
            return;
        }
        let millis = millis.max(0);
        self.counts[Histogram::bucket_of(millis)].fetch_add(times, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(millis as u64 * 1000 * times, Ordering::Relaxed);
    }

    /// Records one observation per item. Counted locally first: a checkpoint
    /// of a million records costs one atomic add per bucket, not two per record.
    pub fn observe_all_millis(&self, all_millis: impl IntoIterator<Item = i64>) {
        let mut counts = [0u64; BUCKETS_SECONDS.len() + 1];
        let mut sum_millis = 0u64;
        for millis in all_millis {
            let millis = millis.max(0);
            counts[Histogram::bucket_of(millis)] += 1;
            sum_millis += millis as u64;
        }
        for (bucket, &count) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
            self.counts[bucket].fetch_add(count, Ordering::Relaxed);
        }
        self.sum_micros
            .fetch_add(sum_millis * 1000, Ordering::Relaxed);
    }

    fn snapshot(&self) -> Vec<u64> {
        self.counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    pub fn count(&self) -> u64 {
        self.snapshot().iter().sum()
    }

    /// The `quantile` (0..=1) in milliseconds, interpolated within its bucket
    /// as Prometheus' `histogram_quantile` does; `None` with no observations.
    pub fn quantile_millis(&self, quantile: f64) -> Option<f64> {
        let counts = self.snapshot();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = quantile * total as f64;
        let mut below = 0u64;
        for (bucket, &count) in counts.iter().enumerate() {
            if count > 0 && (below + count) as f64 >= rank {
                let lower = if bucket == 0 {
                    0.0
                } else {
                    BUCKETS_SECONDS[bucket - 1]
                };
                let Some(&upper) = BUCKETS_SECONDS.get(bucket) else {
                    return Some(lower * 1000.0); // in +Inf: the best bound known
                };
                let within = ((rank - below as f64) / count as f64).clamp(0.0, 1.0);
                return Some((lower + (upper - lower) * within) * 1000.0);
            }
            below += count;
        }
        None
    }

    fn expose(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let counts = self.snapshot();
        let mut cumulative = 0;
        for (bound, count) in BUCKETS_SECONDS.iter().zip(&counts) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += counts[BUCKETS_SECONDS.len()];
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {cumulative}\n{name}_sum {sum}\n{name}_count {cumulative}"
        );
    }
}

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
    commit_duration: Histogram::new(),
    event_to_commit: Histogram::new(),
    ingest_to_commit: Histogram::new(),
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

    /// Appends this process's metrics in Prometheus text format.
    pub fn expose(&self, out: &mut String) {
        let last = self.last_commit_millis.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(
            out,
            "# HELP cdr_last_update_timestamp Unix time of this process's last commit to the store (0: none yet).\n\
             # TYPE cdr_last_update_timestamp gauge\ncdr_last_update_timestamp {last}"
        );
        self.commit_duration.expose(
            out,
            "cdrflow_batch_commit_duration_seconds",
            "Time to commit one checkpoint (results and source positions) to the store.",
        );
        self.event_to_commit.expose(
            out,
            "cdrflow_event_to_commit_seconds",
            "Accepted records: event time to committed in the store.",
        );
        self.ingest_to_commit.expose(
            out,
            "cdrflow_ingest_to_commit_seconds",
            "Records: read from the source to committed in the store.",
        );
        let _ = writeln!(
            out,
            "# HELP cdrflow_dlq_writes_total Rejected records written to the dead-letter topic.\n\
             # TYPE cdrflow_dlq_writes_total counter\ncdrflow_dlq_writes_total {}",
            self.dlq_writes.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cdrflow_kafka_offset_resets_total Partitions whose stored position was beyond the end of the log.\n\
             # TYPE cdrflow_kafka_offset_resets_total counter"
        );
        let mut resets: BTreeMap<(String, i32), u64> = BTreeMap::new();
        for reset in self.offset_resets() {
            *resets
                .entry((reset.topic.clone(), reset.partition))
                .or_default() += 1;
        }
        for ((topic, partition), n) in resets {
            let _ = writeln!(
                out,
                "cdrflow_kafka_offset_resets_total{{topic=\"{}\",partition=\"{partition}\"}} {n}",
                escape_label(&topic)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdrflow_auth_failures_total Refused authentication attempts, by reason.\n\
             # TYPE cdrflow_auth_failures_total counter"
        );
        for why in AuthFailure::ALL {
            let _ = writeln!(
                out,
                "cdrflow_auth_failures_total{{reason=\"{}\"}} {}",
                why.as_str(),
                self.auth_failures[why as usize].load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdrflow_http_connections_refused_total Connections closed on arrival because the connection limit was reached.\n\
             # TYPE cdrflow_http_connections_refused_total counter\ncdrflow_http_connections_refused_total {}",
            self.http_connections_refused.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP cdrflow_partition_stalled 1 when a partition is behind its log end with no commit for longer than --stall-timeout.\n\
             # TYPE cdrflow_partition_stalled gauge"
        );
        for ((topic, partition), stall) in self
            .stalled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "cdrflow_partition_stalled{{topic=\"{}\",partition=\"{partition}\"}} {}",
                escape_label(topic),
                u8::from(stall.is_some())
            );
        }
        let lag = self.lag();
        let _ = writeln!(
            out,
            "# HELP cdrflow_kafka_consumer_lag Records behind the high-water mark, per assigned partition.\n\
             # TYPE cdrflow_kafka_consumer_lag gauge"
        );
        for ((topic, partition), records) in &lag {
            let _ = writeln!(
                out,
                "cdrflow_kafka_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {records}",
                escape_label(topic)
            );
        }
    }
}

/// Label values escape backslash, quote and newline (Prometheus text format).
pub fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let h = Histogram::new();
        assert_eq!(h.quantile_millis(0.5), None);
        h.observe_millis(30, 50); // bucket 25..50 ms
        h.observe_millis(200, 50); // bucket 100..250 ms
        let p50 = h.quantile_millis(0.5).unwrap();
        assert!((25.0..=50.0).contains(&p50), "{p50}");
        let p99 = h.quantile_millis(0.99).unwrap();
        assert!((100.0..=250.0).contains(&p99), "{p99}");
        assert_eq!(h.count(), 100);
    }

    #[test]
    fn observing_all_at_once_equals_one_by_one() {
        let (one_by_one, at_once) = (Histogram::new(), Histogram::new());
        let samples = [-5, 0, 3, 30, 30, 200, 7_000, 90_000_000_000];
        for &ms in &samples {
            one_by_one.observe_millis(ms, 1);
        }
        at_once.observe_all_millis(samples);
        let (mut a, mut b) = (String::new(), String::new());
        one_by_one.expose(&mut a, "h", "help");
        at_once.expose(&mut b, "h", "help");
        assert_eq!(a, b);
        assert_eq!(at_once.count(), samples.len() as u64);
    }

    #[test]
    fn exposition_is_cumulative() {
        let h = Histogram::new();
        h.observe_millis(3, 2);
        h.observe_millis(7_000, 1);
        let mut out = String::new();
        h.expose(&mut out, "x_seconds", "help");
        assert!(out.contains("x_seconds_bucket{le=\"0.005\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_count 3\n"), "{out}");
        assert!(out.contains("x_seconds_sum 7.006\n"), "{out}");
    }
}
