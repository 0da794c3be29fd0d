//! The Kafka source: a consumer-group member whose offsets live in the store.
//!
//! Exactly-once comes from the pattern Kafka documents as "storing offsets
//! outside Kafka": each partition's results and its next offset commit in one
//! store transaction. On assignment the member claims its partitions in the
//! store (bumping an epoch that fences the previous owner), loads their
//! mediation state and starts reading at the stored offsets. On revocation it
//! commits the batch in hand before letting go. Offsets are committed to
//! Kafka too, after the store, only so that lag tools see progress.
//!
//! Each partition is a scope with its own operators (the mediator's dedup index and watermark): state moves
//! with the partition. Producers key records by MSISDN, so all copies of a
//! record land in the same partition, which is what dedup needs.

pub mod stall;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdrflow_core::cdc::ChangeMessage;
use cdrflow_core::mediation::{RawRecord, RejectedRecord};
use cdrflow_core::model::SourcePosition;
use cdrflow_core::rating::Rater;
use cdrflow_store::{kafka_scope, Cursor, KafkaCursor, Store};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;

use crate::committer::{with_retry, AfterCommit, CommitOutcome, Committer, JobPart, NothingAfter};
use crate::events::{InternalEvent, KafkaClientError, OffsetGap, ReadFailed};
use crate::kafka::{
    cached_high_watermark, ensure_topics, flush, producer, send, wait_until_reachable,
    with_env_overrides, Cluster,
};
use crate::lake::LakeSink;
use crate::pipeline::{now_millis, RunReport};
use crate::runner::{OperatorConfig, Runner, ScopeOperators};
use crate::telemetry::{telemetry, OffsetReset};

/// How the consumer runs.
#[derive(Debug, Clone)]
pub struct KafkaSourceOptions {
    pub cluster: Cluster,
    /// Topic names, or a single regex starting with `^`.
    pub topics: Vec<String>,
    pub group: String,
    pub dlq_topic: Option<String>,
    pub session_timeout_ms: u32,
    /// Commit after this many records in hand ...
    pub batch_size: usize,
    /// ... or after this long, whichever comes first.
    pub commit_interval: Duration,
    /// Stop once no record has arrived for this long (batch-style runs, tests).
    pub idle_exit: Option<Duration>,
}

struct PartitionWork {
    topic: String,
    partition: i32,
    operators: ScopeOperators<'static>,
    epoch: i64,
    /// The next offset to process; records below it are already committed.
    next_offset: Option<i64>,
    /// `next_offset` as of the last batch handed to the committer.
    submitted_offset: Option<i64>,
    /// Producer timestamps of the records in hand, for end-to-end latency.
    produced_at: Vec<i64>,
    /// Set while re-reading from `next_offset - rewind` to close an offset gap.
    rewind: Option<i64>,
    /// No record has arrived since the partition was claimed.
    fresh: bool,
}

impl PartitionWork {
    /// Decides what to do when a fetch returns `got` while `next` was expected:
    /// a seek back to re-read, or `None` to accept the gap.
    fn rewind_for_gap(&mut self, next: i64, got: i64) -> Option<(String, i32, i64)> {
        let (topic, partition) = (&self.topic, self.partition);
        let rewind = self.rewind.map_or(FIRST_REWIND, |r| r * 8);
        let event = |rewind| OffsetGap {
            topic,
            partition,
            expected: next,
            got,
            rewind,
        };
        if rewind <= MAX_REWIND && self.rewind.is_none_or(|r| next - r > 0) {
            event(Some(rewind)).emit();
            self.rewind = Some(rewind);
            return Some((topic.clone(), partition, (next - rewind).max(0)));
        }
        event(None).emit();
        None
    }
}

/// Most messages taken from librdkafka's queue per processing step.
const MAX_POLL_BATCH: usize = 4096;

/// Offsets re-read when a fetch skips past the expected one. Tansu 0.6 answers
/// a fetch that starts inside a record batch with the *next* batch, silently
/// skipping the rest of the containing one; fetching from a little earlier and
/// skipping what is already processed recovers those records.
const FIRST_REWIND: i64 = 64;
/// Beyond this the gap is taken as real (compaction, retention) and accepted.
const MAX_REWIND: i64 = 1 << 22;

/// Everything the poll loop and the rebalance callback share.
struct Worker {
    /// For claims and restoring state; commits and operators' questions go
    /// through the runner's committer and its own connection.
    store: Box<dyn Store>,
    runner: Runner<'static>,
    group: String,
    partitions: Vec<PartitionWork>,
    report: RunReport,
    stopping: Arc<AtomicBool>,
    /// When the assignment last changed: a member between assignments is not idle, just waiting.
    last_rebalance: Instant,
    /// Commit outcomes waited for before following moved positions, not yet applied.
    finished_early: Vec<Result<CommitOutcome>>,
    first_record: Option<Instant>,
    last_record: Option<Instant>,
}

impl Worker {
    /// Takes the partitions the group assigned to this member.
    fn claim(&mut self, tpl: &mut TopicPartitionList) -> Result<()> {
        self.last_rebalance = Instant::now();
        let wanted: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition, offset) in self.take_over(&wanted)? {
            tpl.set_partition_offset(&topic, partition, offset)?;
        }
        Ok(())
    }

    /// Claims `wanted` in the store (fencing any previous owner), restores
    /// their operators, and returns where to read each from.
    fn take_over(&mut self, wanted: &[(String, i32)]) -> Result<Vec<(String, i32, Offset)>> {
        let claims = with_retry(&self.stopping, "claiming partitions in the store", || {
            self.store.claim_partitions(&self.group, wanted)
        })?;
        let mut starts = Vec::with_capacity(claims.len());
        for claim in claims {
            let scope = kafka_scope(&claim.topic, claim.partition);
            let operators =
                self.runner
                    .start_topic_scope(scope, &claim.topic, self.store.as_mut())?;
            let offset = claim.next_offset.map_or(Offset::Beginning, Offset::Offset);
            starts.push((claim.topic.clone(), claim.partition, offset));
            tracing::info!(topic = %claim.topic, partition = claim.partition, epoch = claim.epoch, next_offset = ?claim.next_offset, "partition assigned");
            self.partitions
                .retain(|p| !(p.topic == claim.topic && p.partition == claim.partition));
            self.partitions.push(PartitionWork {
                operators,
                topic: claim.topic,
                partition: claim.partition,
                epoch: claim.epoch,
                next_offset: claim.next_offset,
                submitted_offset: claim.next_offset,
                produced_at: Vec::new(),
                rewind: None,
                fresh: true,
            });
        }
        self.publish_assignment();
        Ok(starts)
    }

    /// Processes a batch of fetched messages in offset order per partition:
    /// offsets are checked in order, then each partition's run of records
    /// goes through the runner to its operators. Returns the seeks to perform for
    /// partitions that skipped offsets; the rest of such a partition's
    /// messages in the batch are left for the re-read.
    fn process_messages<'m>(
        &mut self,
        messages: &'m [BorrowedMessage<'_>],
        now: i64,
    ) -> Result<Vec<(String, i32, i64)>> {
        let mut seeks: Vec<(String, i32, i64)> = Vec::new();
        let mut current: Option<usize> = None;
        let mut admitted: Vec<usize> = Vec::with_capacity(messages.len());
        let mut records: Vec<RawRecord<'m>> = Vec::with_capacity(messages.len());
        // Partitions of change-event topics: their messages, apart.
        let mut changes_admitted: Vec<usize> = Vec::new();
        let mut changes: Vec<ChangeMessage<'m>> = Vec::new();
        for message in messages {
            let (topic, partition, offset) =
                (message.topic(), message.partition(), message.offset());
            if seeks.iter().any(|(t, p, _)| *p == partition && t == topic) {
                continue;
            }
            // Messages arrive in runs from one partition: look up only on a change.
            let index = match current.filter(|&i| {
                self.partitions[i].partition == partition && self.partitions[i].topic == topic
            }) {
                Some(i) => i,
                None => match self
                    .partitions
                    .iter()
                    .position(|p| p.partition == partition && p.topic == topic)
                {
                    Some(i) => i,
                    None => continue, // revoked while the batch was being fetched
                },
            };
            current = Some(index);
            let work = &mut self.partitions[index];
            if let Some(next) = work.next_offset {
                if offset < next && work.fresh && work.rewind.is_none() {
                    // The first record after the claim lies before the stored
                    // position: librdkafka found that position outside the log
                    // (a recreated topic, a replay past the end) and went back
                    // to the earliest retained record. Skipping up to the
                    // stored position would drop new records silently: read
                    // from here (duplicates are still recognised) and say so.
                    telemetry().offset_reset(OffsetReset {
                        topic: topic.to_string(),
                        partition,
                        stored: next,
                        resumed_at: Some(offset),
                    });
                    work.next_offset = Some(offset);
                } else if offset < next {
                    continue; // already processed
                }
                if offset > next {
                    if let Some(seek) = work.rewind_for_gap(next, offset) {
                        seeks.push(seek);
                        continue;
                    }
                }
            }
            work.rewind = None;
            work.fresh = false;
            work.next_offset = Some(offset + 1);
            work.produced_at.extend(message.timestamp().to_millis());
            let position = SourcePosition::Kafka { partition, offset };
            if work.operators.reads_changes() {
                changes_admitted.push(index);
                changes.push(ChangeMessage {
                    topic,
                    position,
                    key: message.key(),
                    value: message.payload().unwrap_or_default(),
                });
                continue;
            }
            admitted.push(index);
            records.push(RawRecord {
                origin: topic,
                source_id: topic,
                position,
                payload: message.payload().unwrap_or_default(),
                cut_from: None,
            });
        }
        if records.is_empty() && changes.is_empty() {
            return Ok(seeks);
        }
        // Messages arrive in runs from one partition: each run is one batch.
        for (start, len) in runs(&admitted) {
            let index = admitted[start];
            let batch = &records[start..start + len];
            self.runner
                .process(&mut self.partitions[index].operators, batch, now)?;
        }
        for (start, len) in runs(&changes_admitted) {
            let index = changes_admitted[start];
            let batch = &changes[start..start + len];
            self.runner
                .process_changes(&mut self.partitions[index].operators, batch, now)?;
        }
        let now = Instant::now();
        self.first_record.get_or_insert(now);
        self.last_record = Some(now);
        Ok(seeks)
    }

    /// Partitions not read from yet whose stored position lies beyond the
    /// end of the log as the last fetch response gave it: a broker may answer
    /// a fetch there with nothing at all (Tansu 0.6 does), so the records
    /// written since would never be read. Read them from the earliest
    /// retained record instead, and say so.
    fn check_positions(&mut self, consumer: &BaseConsumer<MemberContext>) {
        for work in self.partitions.iter_mut().filter(|w| w.fresh) {
            let (Some(next), Some(high)) = (
                work.next_offset,
                cached_high_watermark(consumer, &work.topic, work.partition),
            ) else {
                continue;
            };
            if next <= high {
                continue;
            }
            telemetry().offset_reset(OffsetReset {
                topic: work.topic.clone(),
                partition: work.partition,
                stored: next,
                resumed_at: None,
            });
            work.next_offset = None;
            work.fresh = false;
            if let Err(e) = consumer.seek(
                &work.topic,
                work.partition,
                Offset::Beginning,
                Duration::from_secs(10),
            ) {
                tracing::warn!(topic = %work.topic, partition = work.partition, "cannot seek to the beginning: {e}");
            }
        }
    }

    fn publish_assignment(&self) {
        telemetry()
            .assigned_partitions
            .store(self.partitions.len() as u64, Ordering::Relaxed);
    }

    /// Records behind the high-water mark per partition, from the watermarks
    /// librdkafka caches from fetch responses (Tansu's ListOffsets is wrong).
    fn publish_lag(&self, consumer: &BaseConsumer<MemberContext>) {
        let mut lag = std::collections::BTreeMap::new();
        for work in &self.partitions {
            if let Some(high) = cached_high_watermark(consumer, &work.topic, work.partition) {
                let position = work.next_offset.unwrap_or(0);
                lag.insert(
                    (work.topic.clone(), work.partition),
                    (high - position).max(0),
                );
            }
        }
        telemetry().set_lag(lag);
    }

    /// Hands every partition's batch in hand to the committer, which writes
    /// them in one store transaction while this thread keeps consuming.
    fn flush(&mut self) -> Result<()> {
        let mut parts = Vec::new();
        for work in &mut self.partitions {
            let Some(next_offset) = work
                .next_offset
                .filter(|n| Some(*n) != work.submitted_offset)
            else {
                continue;
            };
            let from_offset = std::mem::replace(&mut work.submitted_offset, Some(next_offset));
            let cursor = Cursor::Kafka(KafkaCursor {
                group: self.group.clone(),
                topic: work.topic.clone(),
                partition: work.partition,
                next_offset,
                from_offset,
                epoch: work.epoch,
            });
            let produced_at = std::mem::take(&mut work.produced_at);
            parts.push(
                self.runner
                    .checkpoint(&mut work.operators, vec![cursor], produced_at),
            );
        }
        self.runner.submit(parts)
    }

    /// Applies finished commits: counters, latency, Kafka offsets for lag tools, fenced partitions.
    fn collect(
        &mut self,
        consumer: &BaseConsumer<MemberContext>,
        wait_for_all: bool,
        reclaim_fenced: bool,
    ) -> Result<()> {
        let mut outcomes = std::mem::take(&mut self.finished_early);
        let committer = self.runner.committer();
        outcomes.extend(if wait_for_all {
            committer.drain()
        } else {
            committer.finished()
        });
        for outcome in outcomes {
            let outcome = outcome?;
            self.report.counts.add(&outcome.counts);
            self.report.checkpoints += 1;
            for latency in outcome.latencies_ms {
                self.report.latency.observe_millis(latency, 1);
            }
            for fenced in &outcome.fenced {
                self.partitions.retain(|p| {
                    !(p.topic == fenced.topic
                        && p.partition == fenced.partition
                        && p.epoch == fenced.epoch)
                });
                self.publish_assignment();
                let held_anew = self.partitions.iter().any(|p| {
                    p.topic == fenced.topic
                        && p.partition == fenced.partition
                        && p.epoch > fenced.epoch
                });
                if reclaim_fenced && !held_anew {
                    self.reclaim(consumer, &fenced.topic, fenced.partition)?;
                }
            }
            if !outcome.committed.is_empty() {
                let mut offsets = TopicPartitionList::new();
                for c in outcome.committed.iter().filter_map(Cursor::as_kafka) {
                    offsets.add_partition_offset(
                        &c.topic,
                        c.partition,
                        Offset::Offset(c.next_offset),
                    )?;
                }
                // Only for lag tools; the store is the source of truth.
                if let Err(e) = consumer.commit(&offsets, CommitMode::Async) {
                    tracing::debug!("offset commit to Kafka failed (harmless): {e}");
                }
            }
        }
        Ok(())
    }

    /// Follows positions moved in the store while this member holds them
    /// (`cdrflow replay` bumps their epochs): without this, a partition with
    /// no new records would never commit, never learn it was fenced, and keep
    /// its old position until a restart.
    fn follow_moved_positions(&mut self, consumer: &BaseConsumer<MemberContext>) -> Result<()> {
        let stored = match self.store.kafka_positions(&self.group) {
            Ok(stored) => stored,
            Err(e) => {
                tracing::debug!("cannot read the stored positions: {e}");
                return Ok(());
            }
        };
        let moved: Vec<(String, i32)> = self
            .partitions
            .iter()
            .filter(|w| {
                stored
                    .iter()
                    .any(|s| s.topic == w.topic && s.partition == w.partition && s.epoch > w.epoch)
            })
            .map(|w| (w.topic.clone(), w.partition))
            .collect();
        if moved.is_empty() {
            return Ok(());
        }
        // Whatever is in flight for them is fenced; let it finish first.
        let finished = self.runner.committer().drain();
        self.finished_early.extend(finished);
        for (topic, partition) in moved {
            self.partitions
                .retain(|p| !(p.topic == topic && p.partition == partition));
            self.reclaim(consumer, &topic, partition)?;
        }
        self.publish_assignment();
        Ok(())
    }

    /// A partition whose stored position was moved under this member
    /// (`cdrflow replay`) while the group still assigns it here: claim it
    /// again and continue from the new position. (Had another member taken
    /// it over, the group would have revoked it from this one first.)
    fn reclaim(
        &mut self,
        consumer: &BaseConsumer<MemberContext>,
        topic: &str,
        partition: i32,
    ) -> Result<()> {
        let assigned = consumer
            .assignment()
            .is_ok_and(|a| a.find_partition(topic, partition).is_some());
        if !assigned {
            return Ok(());
        }
        tracing::info!(topic, partition, "position moved in the store (replay?); claiming the partition again to continue from there");
        for (topic, partition, offset) in self.take_over(&[(topic.to_string(), partition)])? {
            // Seeking drops what was fetched beyond the old position.
            if let Err(e) = consumer.seek(&topic, partition, offset, Duration::from_secs(10)) {
                tracing::warn!(topic, partition, "cannot seek to {offset:?}: {e}");
            }
        }
        Ok(())
    }

    /// Commits everything in hand and waits until it is written.
    /// Partitions fenced meanwhile are not claimed again: this runs when
    /// they are being given up (revocation, shutdown).
    fn flush_and_wait(&mut self, consumer: &BaseConsumer<MemberContext>) -> Result<()> {
        self.flush()?;
        self.collect(consumer, true, false)
    }
}

/// Sends each committed part's rejects to the dead-letter topic, then
/// waits for the broker's acknowledgement: a reject leaves the store's
/// transaction first, so a crash between the two re-sends, never loses.
struct DeadLetters {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl AfterCommit for DeadLetters {
    fn committed(&mut self, part: &JobPart) -> Result<()> {
        for reject in &part.checkpoint.rejects {
            send_to_dlq(&self.producer, &self.topic, reject)?;
        }
        telemetry()
            .dlq_writes
            .fetch_add(part.checkpoint.rejects.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn finished(&mut self) -> Result<()> {
        flush(&self.producer)
    }
}

fn send_to_dlq(
    producer: &ThreadedProducer<DefaultProducerContext>,
    topic: &str,
    reject: &RejectedRecord,
) -> Result<()> {
    let (partition, offset) = match reject.position {
        SourcePosition::Kafka { partition, offset } => (partition, offset),
        SourcePosition::Line { line, .. } => (-1, line as i64),
    };
    let (partition, offset) = (partition.to_string(), offset.to_string());
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "cdrflow.reason",
            value: Some(reject.rejection.reason.as_str()),
        })
        .insert(Header {
            key: "cdrflow.detail",
            value: Some(reject.rejection.detail.as_str()),
        })
        .insert(Header {
            key: "cdrflow.source.topic",
            value: Some(reject.origin.as_str()),
        })
        .insert(Header {
            key: "cdrflow.source.partition",
            value: Some(partition.as_str()),
        })
        .insert(Header {
            key: "cdrflow.source.offset",
            value: Some(offset.as_str()),
        });
    let key = format!("{}/{partition}/{offset}", reject.origin);
    send(
        producer,
        BaseRecord::to(topic)
            .key(key.as_bytes())
            .payload(&reject.payload[..])
            .headers(headers),
    )
}

/// The consumer's context: routes rebalances into the shared worker.
pub struct MemberContext {
    worker: Arc<Mutex<Worker>>,
}

impl MemberContext {
    fn worker(&self) -> MutexGuard<'_, Worker> {
        lock(&self.worker)
    }
}

impl ClientContext for MemberContext {
    /// librdkafka's errors (a broker lost, a TLS handshake or SASL login
    /// refused) reach the log; it retries them itself.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        KafkaClientError {
            error: &error,
            reason,
        }
        .emit();
    }
}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = self.worker().claim(tpl) {
                    tracing::error!("cannot take the assigned partitions: {e:#}");
                    return;
                }
                if let Err(e) = consumer.assign(tpl) {
                    tracing::error!("cannot assign partitions: {e}");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let mut worker = self.worker();
                if let Err(e) = worker.flush_and_wait(consumer) {
                    tracing::error!(
                        "could not commit the batch in hand before giving partitions up: {e:#}"
                    );
                }
                for element in tpl.elements() {
                    tracing::info!(
                        topic = element.topic(),
                        partition = element.partition(),
                        "partition revoked"
                    );
                    worker.partitions.retain(|p| {
                        !(p.topic == element.topic() && p.partition == element.partition())
                    });
                }
                worker.last_rebalance = Instant::now();
                worker.publish_assignment();
                drop(worker);
                if let Err(e) = consumer.unassign() {
                    tracing::error!("cannot unassign partitions: {e}");
                }
            }
            other => tracing::warn!("rebalance error: {other:?}"),
        }
    }
}

/// Runs the consumer until `stopping` is set (SIGTERM/SIGINT) or it has been idle for `idle_exit`.
pub fn consume(
    store: Box<dyn Store>,
    commit_store: Box<dyn Store>,
    lake: Option<LakeSink>,
    rater: &'static dyn Rater,
    operators: OperatorConfig,
    options: &KafkaSourceOptions,
    stopping: Arc<AtomicBool>,
) -> Result<RunReport> {
    let started = Instant::now();
    telemetry().reading_kafka.store(true, Ordering::Relaxed);
    if !wait_until_reachable(&options.cluster, &stopping, None)? {
        return Ok(RunReport::default());
    }
    let after_commit: Box<dyn AfterCommit> = match &options.dlq_topic {
        Some(topic) => {
            ensure_topics(&options.cluster, &[topic], 1)?;
            Box::new(DeadLetters {
                producer: producer(&options.cluster, "lz4")?,
                topic: topic.clone(),
            })
        }
        None => Box::new(NothingAfter),
    };
    let committer = Committer::spawn(commit_store, lake, after_commit, stopping.clone())?;
    let worker = Arc::new(Mutex::new(Worker {
        store,
        runner: Runner::new(committer, operators, rater, stopping.clone()),
        group: options.group.clone(),
        partitions: Vec::new(),
        report: RunReport::default(),
        stopping: stopping.clone(),
        last_rebalance: Instant::now(),
        finished_early: Vec::new(),
        first_record: None,
        last_record: None,
    }));
    let mut config = options.cluster.client_config();
    config
        .set("group.id", &options.group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("session.timeout.ms", options.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (options.session_timeout_ms / 3).max(100).to_string(),
        )
        // The coordinator waits this long for members to rejoin a rebalance; the
        // default (5 min) would stall the group when a member dies mid-rebalance.
        .set(
            "max.poll.interval.ms",
            (options.session_timeout_ms * 2).max(10_000).to_string(),
        )
        // Bigger fetches: fewer round trips per record, which is what limits one consumer.
        .set("max.partition.fetch.bytes", "8388608")
        // Keep fetching ahead while this many messages wait locally (default
        // 100,000): with the default, a consumer with a backlog sat idle
        // waiting for fetches half the time (180k → 400k CDR/s against Tansu).
        // Memory stays bounded by queued.max.messages.kbytes (64 MB).
        .set("queued.min.messages", "1000000")
        // A fetch should return as soon as records arrive, but Tansu 0.6 holds it for
        // the whole wait (default 500 ms), which became the end-to-end latency.
        .set("fetch.wait.max.ms", "10");
    if options.topics.iter().any(|t| t.starts_with('^')) {
        // A pattern matches a topic made later (a table added to the
        // capture) only once the client refreshes its metadata: every 30 s
        // instead of librdkafka's 5 minutes.
        config.set("topic.metadata.refresh.interval.ms", "30000");
    }
    let consumer: BaseConsumer<MemberContext> = with_env_overrides(&mut config)
        .create_with_context(MemberContext {
            worker: worker.clone(),
        })
        .with_context(|| {
            format!(
                "cannot create a Kafka consumer for {}",
                options.cluster.bootstrap
            )
        })?;
    let topics: Vec<&str> = options.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .with_context(|| format!("cannot subscribe to {topics:?}"))?;
    tracing::info!(group = %options.group, topics = ?topics, bootstrap = %options.cluster.bootstrap, "consuming");

    let mut last_commit = Instant::now();
    let mut last_record = Instant::now();
    let mut last_lag = Instant::now();
    let mut messages = Vec::with_capacity(MAX_POLL_BATCH);
    while !stopping.load(Ordering::Relaxed) {
        // Wait for one message, then take whatever else is already fetched:
        // the batch is processed under one lock with one clock reading.
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => messages.push(message),
            Some(Err(e)) => kafka_read_failed(&e),
            None => {
                let quiet = last_record
                    .elapsed()
                    .min(lock(&worker).last_rebalance.elapsed());
                if options.idle_exit.is_some_and(|idle| quiet >= idle) {
                    tracing::info!(
                        "no records for {:?}; stopping",
                        options.idle_exit.unwrap_or_default()
                    );
                    break;
                }
            }
        }
        while !messages.is_empty() && messages.len() < MAX_POLL_BATCH {
            match consumer.poll(Duration::ZERO) {
                Some(Ok(message)) => messages.push(message),
                Some(Err(e)) => {
                    kafka_read_failed(&e);
                    break;
                }
                None => break,
            }
        }
        let mut worker = lock(&worker);
        if !messages.is_empty() {
            last_record = Instant::now();
            let seeks = worker.process_messages(&messages, now_millis())?;
            messages.clear();
            for (topic, partition, offset) in seeks {
                // Seeking discards what was fetched before it, so the next record of this partition is from `offset`.
                if let Err(e) = consumer.seek(
                    &topic,
                    partition,
                    Offset::Offset(offset),
                    Duration::from_secs(10),
                ) {
                    tracing::warn!(topic, partition, "cannot seek back to {offset}: {e}");
                }
            }
        }
        worker.collect(&consumer, false, true)?;
        // Group commit: on the interval only when the writer is idle. While it
        // writes, records keep accumulating into the next, larger checkpoint,
        // whose rows aggregate more — so under load each commit carries more
        // records per row, and at light load commits stay small and frequent.
        if worker.runner.pending_records() >= options.batch_size as u64
            || (last_commit.elapsed() >= options.commit_interval
                && worker.runner.committer().in_flight() == 0)
        {
            worker.flush()?;
            last_commit = Instant::now();
        }
        if last_lag.elapsed() >= Duration::from_secs(1) {
            worker.check_positions(&consumer);
            worker.follow_moved_positions(&consumer)?;
            worker.publish_lag(&consumer);
            last_lag = Instant::now();
        }
    }
    lock(&worker).flush_and_wait(&consumer)?;
    consumer.unsubscribe();
    let mut worker = lock(&worker);
    let mut report = std::mem::take(&mut worker.report);
    report.elapsed = started.elapsed();
    if let (Some(first), Some(last)) = (worker.first_record, worker.last_record) {
        report.active = Some(last - first);
    }
    Ok(report)
}

/// Where each run of equal partition indices starts, and its length.
fn runs(indices: &[usize]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let index = *indices.get(start)?;
        let len = indices[start..].iter().take_while(|&&i| i == index).count();
        start += len;
        Some((start - len, len))
    })
}

fn kafka_read_failed(error: &rdkafka::error::KafkaError) {
    ReadFailed {
        source: "kafka",
        origin: "Kafka",
        error,
    }
    .emit();
}

fn lock(worker: &Mutex<Worker>) -> MutexGuard<'_, Worker> {
    worker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
