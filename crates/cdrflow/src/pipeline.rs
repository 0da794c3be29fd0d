//! The driver: source → mediator → store, with commits off the hot path.
//!
//! The calling thread reads and mediates; a writer thread commits each
//! checkpoint together with the source cursors it covers. The two overlap,
//! so on two cores the store write of batch N hides behind the decoding of
//! batch N+1. The channel between them holds one checkpoint, which bounds
//! memory to about two batches.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use cdrflow_core::mediation::{
    Checkpoint, Classifier, Counts, MediationConfig, Mediator, MediatorState, Rated, RawRecord,
};
use cdrflow_core::rating::Rater;
use cdrflow_core::reject::Rejection;
use cdrflow_store::{Commit, CommitPart, Cursor, SourceCursor, Store, FILES_SCOPE};

use crate::latency::LatencyHistogram;
use crate::progress::Progress;
use crate::sources::file::{Chunk, Input, OpenedInput};
use crate::telemetry::{telemetry, IngestTimes};

/// Records per checkpoint unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1_000_000;

pub struct PipelineOptions {
    pub mediation: MediationConfig,
    pub batch_size: usize,
    /// Threads that decode and rate each chunk; dedup and aggregation stay in order on one.
    pub classify_threads: usize,
}

pub fn default_classify_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    pub counts: Counts,
    pub elapsed: Duration,
    pub checkpoints: u64,
    /// Streaming sources: time from the first record to the last.
    pub active: Option<Duration>,
    /// Streaming sources: record produced → its commit visible in the store.
    pub latency: LatencyHistogram,
}

impl RunReport {
    pub fn records_per_second(&self) -> f64 {
        self.counts.records_in as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The one-line summary printed at the end of `process`.
    pub fn summary_line(&self) -> String {
        let c = &self.counts;
        let mut line = format!(
            "{} records in {:.2}s ({:.0} CDR/s): accepted {}, rejected {}",
            c.records_in,
            self.elapsed.as_secs_f64(),
            self.records_per_second(),
            c.accepted_total(),
            c.rejected_total()
        );
        if !c.rejected.is_empty() {
            let reasons: Vec<String> = c.rejected.iter().map(|(r, n)| format!("{r} {n}")).collect();
            line.push_str(&format!(" ({})", reasons.join(", ")));
        }
        line.push_str(&format!(", duplicates {}", c.duplicates_total()));
        if !c.duplicates.is_empty() {
            let reasons: Vec<String> = c
                .duplicates
                .iter()
                .map(|(r, n)| format!("{} {n}", r.as_str()))
                .collect();
            line.push_str(&format!(" ({})", reasons.join(", ")));
        }
        if let Some(active) = self.active.filter(|a| !a.is_zero()) {
            let sustained = c.records_in as f64 / active.as_secs_f64();
            line.push_str(&format!(
                "; sustained {sustained:.0} CDR/s over {:.1}s",
                active.as_secs_f64()
            ));
        }
        if self.latency.count() > 0 {
            line.push_str(&format!("; produced→committed {}", self.latency.summary()));
        }
        line
    }
}

struct PendingCommit {
    checkpoint: Checkpoint,
    cursors: Vec<Cursor>,
    dedup_horizon_minute: Option<i32>,
    ingested: IngestTimes,
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Processes `inputs` in order into `store`, committing every `batch_size` records.
pub fn process_inputs(
    store: &mut dyn Store,
    rater: &dyn Rater,
    inputs: &[Input],
    options: &PipelineOptions,
    progress: &mut Progress,
) -> Result<RunReport> {
    let started = Instant::now();
    let state = store.resume_state(FILES_SCOPE, options.mediation.dedup_window_ms)?;
    let mut mediator = Mediator::new(
        options.mediation,
        rater,
        MediatorState {
            watermark: state.watermark,
            dedup_entries: state.dedup_entries,
        },
    );
    let mut opened = Vec::with_capacity(inputs.len());
    for input in inputs {
        opened.push(OpenedInput::open(input, |key| Ok(store.cursor(key)?))?);
    }
    let total_bytes: u64 = opened
        .iter()
        .filter_map(|o| o.size.map(|s| s - o.start_offset))
        .sum();
    progress.set_total_bytes(total_bytes);

    let (sender, receiver) = sync_channel::<PendingCommit>(1);
    let mut report = RunReport::default();
    std::thread::scope(|scope| -> Result<()> {
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn_scoped(scope, move || commit_loop(store, receiver))
            .context("cannot start the store writer thread")?;
        let produced = produce(
            &mut mediator,
            &mut opened,
            options,
            &sender,
            progress,
            &mut report,
        );
        drop(sender);
        let committed = writer
            .join()
            .map_err(|_| anyhow!("the store writer thread panicked"))?;
        // A failed commit closes the channel, which surfaces in `produce` as a send error: report the cause.
        committed?;
        produced
    })?;
    report.elapsed = started.elapsed();
    progress.finish();
    Ok(report)
}

fn produce(
    mediator: &mut Mediator<'_>,
    opened: &mut [OpenedInput],
    options: &PipelineOptions,
    sender: &SyncSender<PendingCommit>,
    progress: &mut Progress,
    report: &mut RunReport,
) -> Result<()> {
    let mut ingested = IngestTimes::new();
    let send = |mediator: &mut Mediator<'_>,
                cursor: Option<SourceCursor>,
                ingested: &mut IngestTimes,
                report: &mut RunReport|
     -> Result<()> {
        let checkpoint = mediator.checkpoint();
        report.counts.add(&checkpoint.counts);
        report.checkpoints += 1;
        let pending = PendingCommit {
            checkpoint,
            cursors: cursor.into_iter().map(Cursor::File).collect(),
            dedup_horizon_minute: mediator.dedup_horizon_minute(),
            ingested: std::mem::take(ingested),
        };
        sender
            .send(pending)
            .map_err(|_| anyhow!("the store stopped accepting commits"))
    };
    for input in opened.iter_mut() {
        let origin = input.origin.clone();
        let mut cursor = (input.start_offset, input.start_line);
        input
            .for_each_chunk(|chunk, cursors| {
                let (before, now) = (mediator.pending_records(), now_millis());
                mediate_chunk(mediator, chunk, options.classify_threads, now);
                ingested.push((now, mediator.pending_records() - before));
                cursor = (chunk.end_offset(), chunk.first_line + chunk.line_count());
                progress.advance(
                    chunk.data.len() as u64,
                    report.counts.records_in + mediator.pending_records(),
                );
                if mediator.pending_records() >= options.batch_size as u64 {
                    send(
                        mediator,
                        cursors.cursor(cursor.0, cursor.1),
                        &mut ingested,
                        report,
                    )?;
                }
                Ok(())
            })
            .with_context(|| format!("processing {origin}"))?;
        // Always commit at the end of an input, even an empty checkpoint: it records the cursor.
        send(
            mediator,
            input.cursors.cursor(cursor.0, cursor.1),
            &mut ingested,
            report,
        )?;
    }
    Ok(())
}

/// Classifies a chunk's records on `threads` threads, then admits them in source order.
fn mediate_chunk(mediator: &mut Mediator<'_>, chunk: &Chunk<'_>, threads: usize, now: i64) {
    if threads <= 1 {
        mediator.process_batch(chunk.records(), now);
        return;
    }
    let records: Vec<RawRecord<'_>> = chunk.records().collect();
    let classified = classify_in_parallel(mediator.classifier(), &records, now, threads);
    for (record, outcome) in records.iter().zip(classified) {
        mediator.admit(*record, outcome);
    }
    mediator.handle_watermark();
}

/// Classification (decode, validate, normalise, rate) is stateless, so a
/// batch splits into `threads` slices classified side by side; the results
/// come back in input order for the in-order admission that dedup needs.
pub fn classify_in_parallel<'a>(
    classifier: Classifier<'_>,
    records: &[RawRecord<'a>],
    now: i64,
    threads: usize,
) -> Vec<Result<Rated<'a>, Rejection>> {
    let classify = |slice: &[RawRecord<'a>]| -> Vec<_> {
        slice.iter().map(|r| classifier.classify(*r, now)).collect()
    };
    if threads <= 1 || records.len() < 2 * MIN_RECORDS_PER_THREAD {
        return classify(records);
    }
    let slice_len = records.len().div_ceil(threads).max(MIN_RECORDS_PER_THREAD);
    std::thread::scope(|scope| {
        let mut slices = records.chunks(slice_len);
        let first = slices.next().unwrap_or(&[]);
        let others: Vec<_> = slices
            .map(|slice| scope.spawn(move || classify(slice)))
            .collect();
        let mut all = classify(first);
        for other in others {
            all.extend(other.join().expect("classification does not panic"));
        }
        all
    })
}

/// Below this many records per thread, starting a thread costs more than it saves.
const MIN_RECORDS_PER_THREAD: usize = 256;

fn commit_loop(store: &mut dyn Store, receiver: Receiver<PendingCommit>) -> Result<()> {
    for pending in receiver {
        let started = Instant::now();
        let rows = pending.checkpoint.summaries.len();
        store
            .commit(Commit {
                parts: &[CommitPart {
                    scope: FILES_SCOPE,
                    checkpoint: &pending.checkpoint,
                    dedup_horizon_minute: pending.dedup_horizon_minute,
                }],
                cursors: &pending.cursors,
            })
            .context("committing a checkpoint to the store")?;
        telemetry().committed(
            started.elapsed().as_millis() as i64,
            now_millis(),
            pending.checkpoint.event_times.iter().copied(),
            &pending.ingested,
        );
        tracing::debug!(
            rows,
            records = pending.checkpoint.counts.records_in,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "checkpoint committed"
        );
    }
    Ok(())
}
