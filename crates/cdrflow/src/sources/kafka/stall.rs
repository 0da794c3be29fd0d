//! Stalled partitions: a partition whose stored position lags its log end
//! while nobody commits for it.
//!
//! The group coordinator moves a dead member's partitions to the living once
//! its session times out — if it does. Tansu 0.6 never expires such a member,
//! and then its partitions stay assigned to a ghost forever: the survivors are
//! healthy, lag tools see nothing wrong about their own partitions, and
//! results silently stop growing. So every member watches every partition of
//! its group, owned or not, from the positions in the store and the log ends
//! the broker reports (ListOffsets), and says when one is behind with no
//! commit for longer than `--stall-timeout`: in the log, in `/metrics`
//! (`cdrflow_partition_stalled`) and on `/ready`.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdrflow_store::Store;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::kafka::{with_env_overrides, Cluster};
use crate::telemetry::{telemetry, Stall};

/// What to watch, and when a quiet partition is stalled.
#[derive(Clone, Debug)]
pub struct StallWatch {
    pub cluster: Cluster,
    pub group: String,
    /// Topics named on the command line (a regex subscription is watched
    /// through the positions its members stored).
    pub topics: Vec<String>,
    pub timeout: Duration,
}

/// Per partition: the stored position last seen and since when it has not moved.
#[derive(Default)]
pub struct StallTracker {
    seen: HashMap<(String, i32), (Option<i64>, Instant)>,
}

impl StallTracker {
    /// `stored`: the stored next offset (None: never committed); `low`/`high`:
    /// the log's start and end. Stalled when behind the end and the stored
    /// position has not moved for `timeout`.
    pub fn observe(
        &mut self,
        partition: (String, i32),
        stored: Option<i64>,
        (low, high): (i64, i64),
        now: Instant,
        timeout: Duration,
    ) -> Option<Stall> {
        let entry = self.seen.entry(partition).or_insert((stored, now));
        if entry.0 != stored {
            *entry = (stored, now);
        }
        let behind = high - stored.unwrap_or(low).max(low);
        let quiet = now.saturating_duration_since(entry.1);
        (behind > 0 && quiet >= timeout).then(|| Stall {
            behind,
            idle_seconds: quiet.as_secs(),
        })
    }
}

/// Watches from a thread of its own (ListOffsets calls block), until `stopping`.
pub fn spawn(
    watch: StallWatch,
    mut store: Box<dyn Store>,
    stopping: Arc<AtomicBool>,
) -> Result<()> {
    let client: BaseConsumer = with_env_overrides(&mut watch.cluster.client_config())
        .create()
        .with_context(|| {
            format!(
                "cannot create a Kafka client for {}",
                watch.cluster.bootstrap
            )
        })?;
    let every = (watch.timeout / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    std::thread::Builder::new()
        .name("stall-watch".into())
        .spawn(move || {
            let mut tracker = StallTracker::default();
            while !stopping.load(Ordering::Relaxed) {
                if let Err(e) = check(&watch, store.as_mut(), &client, &mut tracker) {
                    tracing::debug!("cannot check for stalled partitions: {e:#}");
                }
                std::thread::sleep(every);
            }
        })?;
    Ok(())
}

fn check(
    watch: &StallWatch,
    store: &mut dyn Store,
    client: &BaseConsumer,
    tracker: &mut StallTracker,
) -> Result<()> {
    let mut stored: BTreeMap<(String, i32), Option<i64>> = store
        .kafka_positions(&watch.group)?
        .into_iter()
        .map(|p| ((p.topic, p.partition), p.next_offset))
        .collect();
    for topic in watch.topics.iter().filter(|t| !t.starts_with('^')) {
        if let Ok(metadata) = client.fetch_metadata(Some(topic), Duration::from_secs(2)) {
            for t in metadata.topics() {
                for p in t.partitions() {
                    stored.entry((t.name().to_string(), p.id())).or_insert(None);
                }
            }
        }
    }
    let before = telemetry()
        .stalled
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut now_stalled = BTreeMap::new();
    for ((topic, partition), next_offset) in stored {
        let Ok(ends) = client.fetch_watermarks(&topic, partition, Duration::from_secs(2)) else {
            continue;
        };
        let key = (topic, partition);
        let stall = tracker.observe(
            key.clone(),
            next_offset,
            ends,
            Instant::now(),
            watch.timeout,
        );
        let was = before.get(&key).cloned().flatten();
        match (&was, &stall) {
            (None, Some(s)) => tracing::error!(
                topic = %key.0,
                partition = key.1,
                "partition stalled: {} records behind its log end and no commit for {} s; is its consumer alive? (a coordinator that never expires a dead member keeps its partitions assigned to it: restart the group's members)",
                s.behind,
                s.idle_seconds
            ),
            (Some(_), None) => {
                tracing::info!(topic = %key.0, partition = key.1, "partition moving again")
            }
            _ => {}
        }
        now_stalled.insert(key, stall);
    }
    telemetry().set_stalled(now_stalled);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_stalled_only_behind_and_quiet_for_the_timeout() {
        let timeout = Duration::from_secs(10);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let p = || ("cdr_data".to_string(), 4);
        let mut tracker = StallTracker::default();
        assert_eq!(
            tracker.observe(p(), Some(100), (0, 500), at(0), timeout),
            None
        );
        assert_eq!(
            tracker.observe(p(), Some(100), (0, 500), at(9), timeout),
            None
        );
        assert_eq!(
            tracker.observe(p(), Some(100), (0, 900), at(10), timeout),
            Some(Stall {
                behind: 800,
                idle_seconds: 10
            })
        );
        // A commit moves it: quiet again from there.
        assert_eq!(
            tracker.observe(p(), Some(200), (0, 900), at(12), timeout),
            None
        );
        assert!(tracker
            .observe(p(), Some(200), (0, 900), at(22), timeout)
            .is_some());
        // Caught up: idle but not behind is fine.
        assert_eq!(
            tracker.observe(p(), Some(900), (0, 900), at(23), timeout),
            None
        );
        assert_eq!(
            tracker.observe(p(), Some(900), (0, 900), at(99), timeout),
            None
        );
        // Never committed: measured from the log start.
        let q = || ("cdr_voice".to_string(), 0);
        assert_eq!(tracker.observe(q(), None, (50, 50), at(0), timeout), None);
        assert_eq!(tracker.observe(q(), None, (50, 50), at(30), timeout), None);
        assert_eq!(
            tracker.observe(q(), None, (50, 70), at(31), timeout),
            Some(Stall {
                behind: 20,
                idle_seconds: 31
            })
        );
    }
}
