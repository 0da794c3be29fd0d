//! `high_frequency` (seed 003): more records than the threshold from one
//! MSISDN in one window, fired on the first record past it.

use super::tally::{Buckets, Count, TallyState};
use super::{Finding, Identity, Placed, StatefulRule, Threshold};
use crate::operator::{ReadError, StateKind, StateReader, StateTable};

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
            counts: Buckets::new(WINDOW_COUNTS, window_ms, 3),
        }
    }
}

impl StatefulRule for HighFrequency {
    fn tallies(&mut self) -> &mut dyn TallyState {
        &mut self.counts
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
}
