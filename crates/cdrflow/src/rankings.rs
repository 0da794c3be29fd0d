//! Seed 004's analytics flush, beside a running job: every
//! `--rankings-every` seconds, and once more when the job ends (SIGTERM,
//! Ctrl-C, `--idle-exit-secs` or the input's end), a spend report taken from the store's
//! committed state (`cdrflow_core::analytics::rankings`), kept in the store
//! for `GET /analytics/rankings` and, with `--lake`, written to the lake.
//!
//! The flush reads what the consumer committed; it holds no buffer of its
//! own, so a process killed between flushes loses no figure: the next
//! flush, of the next run, says what this one would have.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cdrflow_core::analytics::rankings::SpendReport;
use cdrflow_store::Store;

use crate::config::Settings;
use crate::pipeline::now_millis;

/// How often, how many, and where the lake is.
#[derive(Clone, Debug)]
pub struct Flushes {
    /// `None`: no flush at all (`--rankings-every 0`).
    pub every: Option<Duration>,
    pub top: u32,
    pub lake: Option<PathBuf>,
}

/// Takes a report, keeps it, and writes it to the lake.
pub fn flush(store: &mut dyn Store, top: u32, lake: Option<&Path>) -> Result<SpendReport> {
    let report = store
        .take_spend_report(top, now_millis())
        .context("taking the spend report")?;
    store
        .put_spend_report(&report)
        .context("keeping the spend report")?;
    let path = lake
        .map(|root| cdrflow_lake::write_spend_report(root, &report))
        .transpose()
        .context("writing the spend report to the lake")?;
    tracing::info!(
        path = ?path.map(|p| p.display().to_string()),
        period = ?report.period.map(|p| p.to_string()),
        subscribers = report.subscribers.len(),
        plans = report.plans.len(),
        "spend report flushed"
    );
    Ok(report)
}

/// The flushes of one consumer: a thread of their own, then the last one.
pub struct Flusher {
    thread: Option<(JoinHandle<()>, Arc<AtomicBool>)>,
    flushes: Flushes,
}

impl Flusher {
    /// Starts the timed flushes (on a store connection of their own).
    pub fn start(settings: &Settings, flushes: Flushes) -> Result<Flusher> {
        let Some(every) = flushes.every else {
            return Ok(Flusher {
                thread: None,
                flushes,
            });
        };
        let mut store = settings.open_store()?;
        let done = Arc::new(AtomicBool::new(false));
        let (top, lake, stop) = (flushes.top, flushes.lake.clone(), done.clone());
        let thread = std::thread::Builder::new()
            .name("rankings".into())
            .spawn(move || {
                let mut last = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    if last.elapsed() < every {
                        continue;
                    }
                    last = Instant::now();
                    // A store that does not answer now may at the next flush.
                    if let Err(e) = flush(store.as_mut(), top, lake.as_deref()) {
                        tracing::warn!("the spend report was not flushed: {e:#}");
                    }
                }
            })
            .context("cannot start the rankings thread")?;
        Ok(Flusher {
            thread: Some((thread, done)),
            flushes,
        })
    }

    /// After the job's last commit: stops the timed flushes and takes the
    /// final one, so the report says what the run ended with. A report
    /// that cannot be taken is logged, not the job's failure: the job's
    /// results are committed, and the report is only a view of them.
    pub fn finish(self, settings: &Settings) {
        let Some((thread, done)) = self.thread else {
            return;
        };
        done.store(true, Ordering::Relaxed);
        let _ = thread.join();
        let flushed = settings.open_store().and_then(|mut store| {
            flush(
                store.as_mut(),
                self.flushes.top,
                self.flushes.lake.as_deref(),
            )
        });
        if let Err(e) = flushed {
            tracing::warn!("the final spend report was not flushed: {e:#}");
        }
    }
}
