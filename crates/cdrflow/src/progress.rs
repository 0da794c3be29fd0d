//! A progress line on stderr for long runs, drawn only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

const REDRAW_EVERY: Duration = Duration::from_millis(200);
const BAR_WIDTH: usize = 30;

pub struct Progress {
    enabled: bool,
    label: String,
    started: Instant,
    last_draw: Option<Instant>,
    total_bytes: u64,
    bytes_done: u64,
    records: u64,
}

impl Progress {
    /// A progress line labelled `label`, shown only on an interactive terminal.
    pub fn new(label: &str) -> Progress {
        Progress::with_enabled(label, std::io::stderr().is_terminal())
    }

    fn with_enabled(label: &str, enabled: bool) -> Progress {
        Progress {
            enabled,
            label: label.to_string(),
            started: Instant::now(),
            last_draw: None,
            total_bytes: 0,
            bytes_done: 0,
            records: 0,
        }
    }

    pub fn set_total_bytes(&mut self, total: u64) {
        self.total_bytes = total;
    }

    /// Leaves out `bytes` of the total: input committed by an earlier run,
    /// which this one skips.
    pub fn skip_bytes(&mut self, bytes: u64) {
        self.total_bytes = self.total_bytes.saturating_sub(bytes);
    }

    /// Notes `bytes` more read and `records` processed in all.
    pub fn advance(&mut self, bytes: u64, records: u64) {
        self.bytes_done += bytes;
        self.records = records;
        if !self.enabled || self.last_draw.is_some_and(|at| at.elapsed() < REDRAW_EVERY) {
            return;
        }
        self.last_draw = Some(Instant::now());
        let rate = self.records as f64 / self.started.elapsed().as_secs_f64().max(1e-3);
        let bar = if self.total_bytes > 0 {
            let fraction = (self.bytes_done as f64 / self.total_bytes as f64).min(1.0);
            let filled = (fraction * BAR_WIDTH as f64) as usize;
            format!(
                "[{}{}] {:>3.0}% ",
                "#".repeat(filled),
                "-".repeat(BAR_WIDTH - filled),
                fraction * 100.0
            )
        } else {
            String::new()
        };
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} {bar}{} records, {:.0} CDR/s",
            self.label, self.records, rate
        );
        let _ = err.flush();
    }

    /// Clears the progress line.
    pub fn finish(&mut self) {
        if self.enabled && self.last_draw.is_some() {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
        }
    }
}
