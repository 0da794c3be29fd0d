//! The one way results reach the store, for every source.
//!
//! A writer thread with its own store connection commits each job — the
//! checkpoints of one or more scopes with the source positions they cover —
//! in one transaction, so that the store's latency overlaps with reading
//! and mediating instead of adding to it. One job waits in the queue at
//! most: memory stays bounded to about two batches and a slow store slows
//! the source down. With the lake on, a stager thread in front of the
//! writer writes each job's Parquet files while the writer commits the
//! job before (on the rating benchmark the writer thread was busy the
//! whole run, half of it in Parquet): a third batch in memory, and the
//! store's transaction and the lake's encoding side by side.
//!
//! Here and only here: retry of transient errors with backoff, the
//! outcome of a fenced Kafka partition (its part dropped, the rest
//! committed), commit telemetry, the lake's files around the transaction
//! ([`LakeSink`]: staged before, published after), and what follows a
//! commit (the dead-letter topic, through [`AfterCommit`]).
//!
//! Questions for the store (operator state of old days, stored totals) can go
//! through the same queue ([`Committer::ask`]): answered after every job
//! handed over before them, so the answers include those commits.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use cdrflow_core::mediation::Counts;
use cdrflow_core::operator::Checkpoint;
use cdrflow_store::{Commit, CommitPart, Cursor, KafkaCursor, Store, StoreError};

use crate::events::{
    CheckpointCommitted, InternalEvent, PartitionFenced, RejectsCommitted, StoreRetry,
};
use crate::lake::LakeSink;
use crate::pipeline::now_millis;
use crate::telemetry::IngestTimes;

/// One scope's share of a commit.
pub struct JobPart {
    pub scope: String,
    pub checkpoint: Checkpoint,
    /// The positions this checkpoint covers (a Kafka partition's, or the files').
    pub cursors: Vec<Cursor>,
    /// Producer timestamps of the records, for end-to-end latency.
    pub produced_at: Vec<i64>,
}

impl JobPart {
    fn holds_partition(&self, topic: &str, partition: i32) -> bool {
        self.cursors
            .iter()
            .filter_map(Cursor::as_kafka)
            .any(|k| k.topic == topic && k.partition == partition)
    }
}

/// Checkpoints prepared by a source, written in one transaction.
pub struct CommitJob {
    pub parts: Vec<JobPart>,
    /// When the job's records were read, for the ingest-to-commit latency.
    pub ingested: IngestTimes,
}

/// What a commit did.
#[derive(Default)]
pub struct CommitOutcome {
    /// The positions now in the store.
    pub committed: Vec<Cursor>,
    /// Kafka partitions another member owns now; their parts were dropped.
    pub fenced: Vec<KafkaCursor>,
    pub counts: Counts,
    /// Producer-to-commit latency of each committed record that had a producer time.
    pub latencies_ms: Vec<i64>,
}

/// What follows a commit, on the writer thread: the hooks default to nothing.
pub trait AfterCommit: Send {
    /// One committed part (its rejects to a dead-letter topic, say).
    fn committed(&mut self, _part: &JobPart) -> Result<()> {
        Ok(())
    }

    /// After the job's parts.
    fn finished(&mut self) -> Result<()> {
        Ok(())
    }
}

/// Nothing follows a commit.
pub struct NothingAfter;

impl AfterCommit for NothingAfter {}

enum Job {
    Commit(CommitJob),
    Ask(Box<dyn FnOnce(&mut dyn Store) + Send>),
    /// A job the stager could not prepare: the writer reports it as the
    /// job's outcome and stops, as after a failed commit.
    Refused(anyhow::Error),
}

pub struct Committer {
    jobs: Option<SyncSender<Job>>,
    outcomes: Receiver<Result<CommitOutcome>>,
    in_flight: usize,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The lake's stager, when there is a lake.
    stager: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    /// Starts the writer thread on `store`, with the lake if there is one.
    /// `stopping` bounds the retries once the process is shutting down.
    pub fn spawn(
        mut store: Box<dyn Store>,
        lake: Option<LakeSink>,
        mut after: Box<dyn AfterCommit>,
        stopping: Arc<AtomicBool>,
    ) -> Result<Committer> {
        let (jobs, queue) = sync_channel::<Job>(1);
        let (outcome_sender, outcomes) = channel();
        let lake = lake.map(Arc::new);
        let (queue, stager) = match &lake {
            None => (queue, None),
            Some(lake) => {
                let (staged, staged_queue) = sync_channel::<Job>(1);
                let stager = std::thread::Builder::new()
                    .name("lake-stager".into())
                    .spawn({
                        let lake = lake.clone();
                        move || stage_all(&lake, queue, staged)
                    })
                    .context("cannot start the lake's stager thread")?;
                (staged_queue, Some(stager))
            }
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                for job in queue {
                    match job {
                        Job::Ask(question) => question(store.as_mut()),
                        Job::Refused(why) => {
                            let _ = outcome_sender.send(Err(why));
                            return;
                        }
                        Job::Commit(job) => {
                            let outcome = write(
                                store.as_mut(),
                                job,
                                lake.as_deref(),
                                after.as_mut(),
                                &stopping,
                            );
                            let failed = outcome.is_err();
                            // A failed job's positions were not stored: a later
                            // job of the same source must not pass them.
                            if outcome_sender.send(outcome).is_err() || failed {
                                return;
                            }
                        }
                    }
                }
            })
            .context("cannot start the store writer thread")?;
        Ok(Committer {
            jobs: Some(jobs),
            outcomes,
            in_flight: 0,
            thread: Some(thread),
            stager,
        })
    }

    /// Queues a job, waiting while one is queued already.
    pub fn submit(&mut self, job: CommitJob) -> Result<()> {
        if self.send(Job::Commit(job)).is_err() {
            return Err(self.why_stopped());
        }
        self.in_flight += 1;
        Ok(())
    }

    /// Asks the store a question after the jobs handed over so far.
    pub fn ask<T: Send + 'static>(
        &self,
        question: impl FnOnce(&mut dyn Store) -> cdrflow_store::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (reply, answer) = sync_channel(1);
        self.send(Job::Ask(Box::new(move |store| {
            let _ = reply.send(question(store));
        })))?;
        Ok(answer.recv().map_err(|_| stopped())??)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// The outcomes of the jobs finished so far, without waiting.
    pub fn finished(&mut self) -> Vec<Result<CommitOutcome>> {
        let outcomes: Vec<_> = self.outcomes.try_iter().collect();
        self.in_flight -= outcomes.len();
        outcomes
    }

    /// Waits for every job in flight.
    pub fn drain(&mut self) -> Vec<Result<CommitOutcome>> {
        let mut outcomes = Vec::with_capacity(self.in_flight);
        while self.in_flight > 0 {
            match self.outcomes.recv() {
                Ok(outcome) => outcomes.push(outcome),
                Err(_) => {
                    outcomes.push(Err(stopped()));
                    self.in_flight = 0;
                    break;
                }
            }
            self.in_flight -= 1;
        }
        outcomes
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().expect("the committer is running");
        jobs.send(job).map_err(|_| stopped())
    }

    /// The writer thread stops only after a failed commit: that failure.
    fn why_stopped(&mut self) -> anyhow::Error {
        self.drain()
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(stopped)
    }
}

/// Callers that cannot wait for the cause (questions) say this; the
/// failed commit's own error comes with the outcomes.
fn stopped() -> anyhow::Error {
    anyhow!("the store writer thread stopped after a failed commit")
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.jobs.take();
        for thread in [self.stager.take(), self.thread.take()]
            .into_iter()
            .flatten()
        {
            let _ = thread.join();
        }
    }
}

/// The stager: stages each job's lake files, in order, and hands the job
/// on to the writer (questions pass through, so that they still come after
/// the jobs handed over before them). Stops after a job it cannot stage.
fn stage_all(lake: &LakeSink, jobs: Receiver<Job>, staged: SyncSender<Job>) {
    for mut job in jobs {
        if let Job::Commit(commit) = &mut job {
            if let Err(why) = commit
                .parts
                .iter_mut()
                .try_for_each(|part| lake.stage(part))
            {
                let _ = staged.send(Job::Refused(why));
                return;
            }
        }
        if staged.send(job).is_err() {
            return;
        }
    }
}

/// Commits a job in one transaction (its lake files staged already); a
/// fenced partition's part is dropped and the rest committed without it.
/// Then what follows a commit.
fn write(
    store: &mut dyn Store,
    mut job: CommitJob,
    lake: Option<&LakeSink>,
    after: &mut dyn AfterCommit,
    stopping: &AtomicBool,
) -> Result<CommitOutcome> {
    let mut outcome = CommitOutcome::default();
    while !job.parts.is_empty() {
        let parts: Vec<CommitPart<'_>> = job
            .parts
            .iter()
            .map(|p| CommitPart {
                scope: &p.scope,
                checkpoint: &p.checkpoint,
            })
            .collect();
        let cursors: Vec<Cursor> = job
            .parts
            .iter()
            .flat_map(|p| p.cursors.iter().cloned())
            .collect();
        let started = Instant::now();
        match with_retry(stopping, "committing to the store", || {
            store.commit(Commit {
                parts: &parts,
                cursors: &cursors,
            })
        }) {
            Ok(()) => {
                let from_kafka = cursors.iter().any(|c| c.as_kafka().is_some());
                CheckpointCommitted {
                    source: if from_kafka { "kafka" } else { "files" },
                    parts: job.parts.len(),
                    rows: job.parts.iter().map(|p| p.checkpoint.summaries.len()).sum(),
                    elapsed: started.elapsed(),
                    committed_at: now_millis(),
                    event_times: job
                        .parts
                        .iter()
                        .flat_map(|p| p.checkpoint.event_times.iter().copied()),
                    ingested: &job.ingested,
                }
                .emit();
                break;
            }
            Err(e) => {
                let StoreError::Fenced {
                    topic, partition, ..
                } = &e
                else {
                    return Err(e).context("committing a checkpoint to the store");
                };
                PartitionFenced { topic, error: &e }.emit();
                let lost = job
                    .parts
                    .iter()
                    .position(|p| p.holds_partition(topic, *partition))
                    .expect("the fenced partition is in the job");
                let lost = job.parts.remove(lost);
                if let Some(lake) = lake {
                    lake.discard(&lost);
                }
                outcome
                    .fenced
                    .extend(lost.cursors.iter().filter_map(Cursor::as_kafka).cloned());
            }
        }
    }
    if let Some(lake) = lake {
        lake.publish(store, &job.parts, stopping)?;
    }
    let committed_at = now_millis();
    for part in &job.parts {
        RejectsCommitted {
            rejected: &part.checkpoint.counts.rejected,
        }
        .emit();
        outcome.counts.add(&part.checkpoint.counts);
        outcome
            .latencies_ms
            .extend(part.produced_at.iter().map(|p| committed_at - p));
        after.committed(part)?;
    }
    after.finished()?;
    outcome.committed = job.parts.into_iter().flat_map(|p| p.cursors).collect();
    Ok(outcome)
}

/// Retries `attempt` with exponential backoff (100 ms to 5 s) while it fails
/// for transient reasons — a store that is down must not crash-loop a
/// consumer — and for up to 10 s once the process is shutting down; any
/// other failure returns at once, so a refused commit never loops. The
/// store's own error comes back, so that callers can match on it.
pub fn with_retry<T>(
    stopping: &AtomicBool,
    what: &str,
    mut attempt: impl FnMut() -> cdrflow_store::Result<T>,
) -> cdrflow_store::Result<T> {
    let mut delay = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            // Fenced, refused values, a moved cursor: the same every time.
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => {
                if stopping.load(Ordering::Relaxed) && started.elapsed() > Duration::from_secs(10) {
                    tracing::error!("{what}: giving up after 10 s while shutting down");
                    return Err(e);
                }
                StoreRetry {
                    operation: what,
                    delay,
                    error: &e,
                }
                .emit();
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
