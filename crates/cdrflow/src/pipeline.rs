//! The file driver: source → mediator → store, with commits off the hot path.
//!
//! The calling thread reads and mediates; the [`Committer`]'s writer thread
//! commits each checkpoint together with the file cursors it covers. The two
//! overlap, so on two cores the store write of batch N hides behind the
//! decoding of batch N+1.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use cdrflow_core::mediation::{
    Classifier, Counts, MediationConfig, Mediator, MediatorState, Rated, RawRecord,
};
use cdrflow_core::rating::Rater;
use cdrflow_core::reject::{RejectReason, Rejection};
use cdrflow_store::{Cursor, SourceCursor, Store, FILES_SCOPE};

use crate::committer::{CommitJob, Committer, JobPart, NothingAfter};
use crate::histogram::LatencyHistogram;
use crate::progress::Progress;
use crate::sources::file::{
    Chunk, CursorLookup, Input, InputOptions, OpenedInput, IDENTITY_BYTES, KEPT_BYTES,
};
use crate::telemetry::IngestTimes;

/// Records per checkpoint unless configured otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 1_000_000;

pub struct PipelineOptions {
    pub mediation: MediationConfig,
    pub input: InputOptions,
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
    /// Inputs whose unterminated last line was left for the next run, with its length.
    pub held_back: Vec<(String, u64)>,
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
        for (origin, bytes) in &self.held_back {
            line.push_str(&format!(
                "\n{origin}: its last {bytes} bytes have no line end yet and were left for the next run (the file may still be growing); if it is finished, run again with --complete"
            ));
        }
        line
    }
}

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Processes `inputs` in order into `store`, committing every `batch_size` records.
///
/// `reader` is a second handle on the same store, for looking up where each
/// input stopped without waiting behind the commits in flight.
pub fn process_inputs(
    mut store: Box<dyn Store>,
    reader: &mut dyn Store,
    rater: &dyn Rater,
    inputs: &[Input],
    options: &PipelineOptions,
    progress: &mut Progress,
) -> Result<RunReport> {
    let started = Instant::now();
    store.lock_files()?;
    let state = store.resume_state(FILES_SCOPE, options.mediation.dedup_window_ms)?;
    let mut mediator = Mediator::new(
        options.mediation,
        rater,
        MediatorState {
            watermark: state.watermark,
            dedup_entries: state.dedup_entries,
        },
    );
    progress.set_total_bytes(inputs.iter().filter_map(Input::size).sum());

    let mut committer = Committer::spawn(
        store,
        Box::new(NothingAfter),
        Arc::new(AtomicBool::new(false)),
    )?;
    let mut report = RunReport::default();
    let produced = produce(
        &mut mediator,
        inputs,
        options,
        &mut committer,
        reader,
        progress,
        &mut report,
    );
    // A failed commit stops the writer, which surfaces in `produce` as a
    // refused job or question: report the cause.
    if let Some(failed) = committer.drain().into_iter().find_map(Result::err) {
        return Err(failed);
    }
    produced?;
    report.elapsed = started.elapsed();
    progress.finish();
    Ok(report)
}

fn produce(
    mediator: &mut Mediator<'_>,
    inputs: &[Input],
    options: &PipelineOptions,
    committer: &mut Committer,
    reader: &mut dyn Store,
    progress: &mut Progress,
    report: &mut RunReport,
) -> Result<()> {
    let mut ingested = IngestTimes::new();
    let mut cursors = RunCursors {
        reader,
        handed_over: HashMap::new(),
    };
    let send = |committer: &mut Committer,
                mediator: &mut Mediator<'_>,
                cursor: Option<SourceCursor>,
                handed_over: &mut HashMap<String, SourceCursor>,
                ingested: &mut IngestTimes,
                report: &mut RunReport|
     -> Result<()> {
        if let Some(cursor) = &cursor {
            handed_over.insert(cursor.source.clone(), cursor.clone());
        }
        let checkpoint = mediator.checkpoint();
        report.counts.add(&checkpoint.counts);
        report.checkpoints += 1;
        committer.submit(CommitJob {
            parts: vec![JobPart {
                scope: FILES_SCOPE.to_string(),
                checkpoint,
                dedup_horizon_minute: mediator.dedup_horizon_minute(),
                cursors: cursor.into_iter().map(Cursor::File).collect(),
                produced_at: Vec::new(),
            }],
            ingested: std::mem::take(ingested),
        })?;
        // Only a failure is news here; the counts were taken above.
        match committer.finished().into_iter().find_map(Result::err) {
            Some(failed) => Err(failed),
            None => Ok(()),
        }
    };
    // Each input is opened only once the previous one is read, so that the
    // same content named twice resumes where it stopped (positions handed
    // over in this run, committed or not yet, are answered from `RunCursors`).
    for input in inputs {
        let mut opened = OpenedInput::open(input, options.input, &mut cursors)?;
        progress.skip_bytes(opened.start_offset);
        let origin = opened.origin.clone();
        let mut cursor = (opened.start_offset, opened.start_line);
        opened
            .for_each_chunk(|chunk, template| {
                let (before, now) = (mediator.pending_records(), now_millis());
                mediate_chunk(mediator, chunk, options, now, committer)?;
                ingested.push((now, mediator.pending_records() - before));
                cursor = chunk.resume_point();
                progress.advance(
                    chunk.data.len() as u64,
                    report.counts.records_in + mediator.pending_records(),
                );
                if mediator.pending_records() >= options.batch_size as u64 {
                    send(
                        committer,
                        mediator,
                        template.cursor(cursor.0, cursor.1),
                        &mut cursors.handed_over,
                        &mut ingested,
                        report,
                    )?;
                }
                Ok(())
            })
            .with_context(|| format!("processing {origin}"))?;
        // Always commit at the end of an input, even an empty checkpoint: it records the cursor.
        send(
            committer,
            mediator,
            opened.cursors.cursor(cursor.0, cursor.1),
            &mut cursors.handed_over,
            &mut ingested,
            report,
        )?;
        if opened.held_back > 0 {
            report.held_back.push((origin, opened.held_back));
        }
    }
    Ok(())
}

/// Positions as the file source needs them: those handed over in this run
/// (committed or still on their way), else the store's. This process is the
/// only one writing file positions (`Store::lock_files`), so the store's
/// answer for any other source is final.
struct RunCursors<'r> {
    reader: &'r mut dyn Store,
    handed_over: HashMap<String, SourceCursor>,
}

impl CursorLookup for RunCursors<'_> {
    fn short_prefix_lens(&mut self) -> Result<Vec<i64>> {
        let mut lens = self.reader.short_prefix_lens(IDENTITY_BYTES as i64)?;
        lens.extend(
            self.handed_over
                .values()
                .map(|c| c.prefix_len)
                .filter(|&len| len < IDENTITY_BYTES as i64),
        );
        lens.sort_unstable();
        lens.dedup();
        Ok(lens)
    }

    fn cursor(&mut self, key: &str) -> Result<Option<SourceCursor>> {
        match self.handed_over.get(key) {
            Some(cursor) => Ok(Some(cursor.clone())),
            None => Ok(self.reader.cursor(key)?),
        }
    }
}

/// Classifies a chunk's records on `threads` threads, asks the store what
/// admission needs to know beyond memory, then admits them in source order.
fn mediate_chunk(
    mediator: &mut Mediator<'_>,
    chunk: &Chunk<'_>,
    options: &PipelineOptions,
    now: i64,
    committer: &Committer,
) -> Result<()> {
    let limit = options.input.max_record_bytes;
    if let Some(oversized) = chunk.oversized {
        for record in chunk.records() {
            mediator.admit(record, Err(too_large(oversized.length, limit)));
        }
        return Ok(());
    }
    let mut records: Vec<RawRecord<'_>> = chunk.records().collect();
    let threads = options.classify_threads;
    let mut classified = classify_in_parallel(mediator.classifier(), &records, now, threads);
    // Lines over the limit that fit the read buffer: refused all the same.
    refuse_oversized(&mut records, &mut classified, limit);
    mediator.admit_batch(&records, classified, |asked| {
        let asked = asked.clone();
        committer.ask(move |store| store.lookup(FILES_SCOPE, &asked))
    })
}

/// Records longer than `limit` are refused as `record_too_large`, keeping
/// only their first [`KEPT_BYTES`] as the payload — from files (lines that
/// fit the read buffer) and from Kafka (messages up to librdkafka's size).
pub fn refuse_oversized<'a>(
    records: &mut [RawRecord<'a>],
    classified: &mut [Result<Rated<'a>, Rejection>],
    limit: usize,
) {
    for (record, outcome) in records.iter_mut().zip(classified.iter_mut()) {
        if record.payload.len() > limit {
            *outcome = Err(too_large(record.payload.len() as u64, limit));
            record.payload = &record.payload[..KEPT_BYTES.min(record.payload.len())];
        }
    }
}

fn too_large(length: u64, limit: usize) -> Rejection {
    Rejection::new(
        RejectReason::RecordTooLarge,
        format!(
            "the record is {length} bytes, more than the {limit} a record may have (--max-record-bytes); its first {KEPT_BYTES} bytes are kept"
        ),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use cdrflow_core::model::SourcePosition;

    #[test]
    fn oversized_records_are_refused_with_their_first_bytes_kept() {
        let (small, big) = (vec![b'x'; 100], vec![b'y'; KEPT_BYTES * 3]);
        let record = |payload: &'static [u8], offset| RawRecord {
            origin: "cdr_data",
            source_id: "cdr_data",
            position: SourcePosition::Kafka {
                partition: 0,
                offset,
            },
            payload,
        };
        let (small, big): (&'static [u8], &'static [u8]) = (small.leak(), big.leak());
        let mut records = vec![record(small, 0), record(big, 1)];
        let mut classified: Vec<Result<Rated<'_>, Rejection>> = vec![
            Err(Rejection::new(RejectReason::MalformedJson, "x")),
            Err(Rejection::new(RejectReason::MalformedJson, "y")),
        ];
        refuse_oversized(&mut records, &mut classified, KEPT_BYTES * 2);
        assert_eq!(records[0].payload.len(), 100);
        assert!(matches!(&classified[0], Err(r) if r.reason == RejectReason::MalformedJson));
        assert_eq!(records[1].payload, &big[..KEPT_BYTES]);
        assert!(matches!(&classified[1], Err(r) if r.reason == RejectReason::RecordTooLarge));
    }
}
