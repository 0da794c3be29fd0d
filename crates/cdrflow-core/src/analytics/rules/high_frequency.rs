//! `high_frequency` (seed 003): more records than the threshold from one
//! MSISDN in one window, fired on the first record past it.

use super::tally::{Buckets, Count};
use super::{Finding, Identity, Placed, StatefulRule, Threshold};
use crate::operator::{ReadError, StateKind, StateReader, StateTable, StateWriter};

/// Per-window record counts per MSISDN.
pub const WINDOW_COUNTS: StateTable = StateTable {
    name: "window_counts",
    kind: StateKind::Spans,
};

pub struct HighFrequency {
    threshold: Threshold<u64>,
    counts: Buckets<Count>,
}

impl HighFrequency {
    pub fn new(threshold: Threshold<u64>, window_ms: i64) -> HighFrequency {
        HighFrequency {
            threshold,
            counts: Buckets::new(WINDOW_COUNTS, window_ms),
        }
    }
}

impl StatefulRule for HighFrequency {
    fn on_start(&mut self, state: &mut dyn StateReader) -> Result<(), ReadError> {
        self.counts.on_start(state)
    }

    fn observe(
        &mut self,
        placed: &Placed<'_>,
        state: &mut dyn StateReader,
        found: &mut Vec<Finding>,
    ) -> Result<(), ReadError> {
        let r = placed.record;
        let window = placed.window_start;
        self.counts.saw(r.start_time);
        let entry = self.counts.entry(window, r.msisdn.to_bits(), state)?;
        entry.add(&Count(1));
        let count = entry.total().0;
        if count == self.threshold.above + 1 {
            found.push(Finding {
                rule: "high_frequency",
                severity: self.threshold.severity,
                msisdn: None,
                identity: Identity::Span {
                    start: window,
                    of: r.msisdn.to_string(),
                },
                evidence: format!(
                    "{count} events in the window from {}; more than {}",
                    crate::normalize::format_timestamp(window),
                    self.threshold.above
                ),
            });
        }
        Ok(())
    }

    fn handle_watermark(&mut self) {
        self.counts.evict(|_, _| {});
    }

    fn checkpoint(&mut self, state: &mut StateWriter<'_>) {
        self.counts.checkpoint(state);
    }
}
