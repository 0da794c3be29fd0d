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
use cdrflow_core::mediation::{Counts, RawRecord};
use cdrflow_core::rating::Rater;
use cdrflow_store::{Cursor, SourceCursor, Store, FILES_SCOPE};

use crate::committer::{Committer, NothingAfter};
use crate::histogram::LatencyHistogram;
use crate::lake::LakeSink;
use crate::progress::Progress;
use crate::runner::{start_scope, OperatorConfig, Runner, ScopeOperators};
use crate::sources::file::{CursorLookup, Input, InputOptions, OpenedInput, IDENTITY_BYTES};

/// Records per checkpoint unless configured otherwise. A quarter of a
/// million lets reading and the store's commit overlap four times per
/// million records and keeps a checkpoint's rows out of fresh pages: on
/// `bench/rating_throughput.sh` (2 M records) the flat job took 12.1 s at
/// 1,000,000 and 4.9–5.5 s at 250,000, at 0.7 GB instead of 1.2 GB
/// (BENCHMARKS.md, twelfth session).
pub const DEFAULT_BATCH_SIZE: usize = 250_000;

pub struct PipelineOptions {
    pub operators: OperatorConfig,
    pub input: InputOptions,
    pub batch_size: usize,
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
            "{} records in {:.2}s ({:.0} CDR/s): accepted {}",
            c.records_in,
            self.elapsed.as_secs_f64(),
            self.records_per_second(),
            c.accepted_total(),
        );
        if c.pseudonymous > 0 {
            line.push_str(&format!(
                " ({} of masked numbers: in analytics only, never rated)",
                c.pseudonymous
            ));
        }
        if c.unknown_subscribers > 0 {
            line.push_str(&format!(
                " ({} of unknown subscribers: rated on the default plan)",
                c.unknown_subscribers
            ));
        }
        line.push_str(&format!(", rejected {}", c.rejected_total()));
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
        let changes = c.changes;
        if changes.applied + changes.skipped + changes.ignored > 0 {
            line.push_str(&format!(
                "; change events: applied {}, skipped {} (already applied), ignored {}",
                changes.applied, changes.skipped, changes.ignored
            ));
        }
        if c.late_events > 0 {
            line.push_str(&format!(
                "; late events {} (in usage, in no window: export late-events)",
                c.late_events
            ));
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
    lake: Option<LakeSink>,
    reader: &mut dyn Store,
    rater: &dyn Rater,
    inputs: &[Input],
    options: &PipelineOptions,
    progress: &mut Progress,
) -> Result<RunReport> {
    let started = Instant::now();
    store.lock_files()?;
    let stopping = Arc::new(AtomicBool::new(false));
    let mut files = start_scope(
        FILES_SCOPE.to_string(),
        &options.operators,
        rater,
        store.as_mut(),
        &stopping,
    )?;
    progress.set_total_bytes(inputs.iter().filter_map(Input::size).sum());

    let committer = Committer::spawn(store, lake, Box::new(NothingAfter), stopping.clone())?;
    let mut runner = Runner::new(committer, options.operators.clone(), rater, stopping);
    let mut report = RunReport::default();
    let produced = produce(
        &mut runner,
        &mut files,
        inputs,
        options,
        reader,
        progress,
        &mut report,
    );
    // A failed commit stops the writer, which surfaces in `produce` as a
    // refused job or question: report the cause.
    if let Some(failed) = runner.committer().drain().into_iter().find_map(Result::err) {
        return Err(failed);
    }
    produced?;
    report.elapsed = started.elapsed();
    progress.finish();
    Ok(report)
}

fn produce<'r>(
    runner: &mut Runner<'r>,
    files: &mut ScopeOperators<'r>,
    inputs: &[Input],
    options: &PipelineOptions,
    reader: &mut dyn Store,
    progress: &mut Progress,
    report: &mut RunReport,
) -> Result<()> {
    let mut cursors = RunCursors {
        reader,
        handed_over: HashMap::new(),
    };
    let send = |runner: &mut Runner<'r>,
                files: &mut ScopeOperators<'r>,
                cursor: Option<SourceCursor>,
                handed_over: &mut HashMap<String, SourceCursor>,
                report: &mut RunReport|
     -> Result<()> {
        if let Some(cursor) = &cursor {
            handed_over.insert(cursor.source.clone(), cursor.clone());
        }
        let part = runner.checkpoint(
            files,
            cursor.into_iter().map(Cursor::File).collect(),
            Vec::new(),
        );
        report.counts.add(&part.checkpoint.counts);
        report.checkpoints += 1;
        runner.submit(vec![part])?;
        // Only a failure is news here; the counts were taken above.
        match runner
            .committer()
            .finished()
            .into_iter()
            .find_map(Result::err)
        {
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
                let batch: Vec<RawRecord<'_>> = chunk.records().collect();
                runner.process(files, &batch, now_millis())?;
                cursor = chunk.resume_point();
                progress.advance(
                    chunk.data.len() as u64,
                    report.counts.records_in + runner.pending_records(),
                );
                if runner.pending_records() >= options.batch_size as u64 {
                    send(
                        runner,
                        files,
                        template.cursor(cursor.0, cursor.1),
                        &mut cursors.handed_over,
                        report,
                    )?;
                }
                Ok(())
            })
            .with_context(|| format!("processing {origin}"))?;
        // Always commit at the end of an input, even an empty checkpoint: it
        // records the cursor (and closes the input's windows).
        runner.end_of_input(files);
        send(
            runner,
            files,
            opened.cursors.cursor(cursor.0, cursor.1),
            &mut cursors.handed_over,
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
