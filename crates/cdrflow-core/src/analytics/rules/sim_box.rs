//! `sim_box`: a SIM in a SIM box (a gateway that turns international calls
//! into local ones) makes many outgoing calls, receives nothing, sends no
//! SMS, uses no data, and does not move. Fired on the outgoing call past
//! the threshold in one hour (UTC, aligned) when the hour so far shows
//! nothing else and at most `max_cells` cells.

use super::tally::{read_u64, stable_hash, Buckets, Hashes, Tally, TallyState};
use super::{Finding, Identity, Placed, SimBoxConfig, StatefulRule};
use crate::model::{Direction, Kind};
use crate::normalize::format_timestamp;
use crate::operator::{ReadError, StateKind, StateReader, StateTable};

/// Per-hour activity per MSISDN.
pub const SIM_BOX_HOURS: StateTable = StateTable {
    name: "sim_box_hours",
    kind: StateKind::Spans,
};

const HOUR_MS: i64 = 3_600_000;

/// One MSISDN's hour: its outgoing calls, anything else it did, and its
/// cells (kept only up to one past `max_cells`: beyond that it cannot fire).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    outgoing_calls: u64,
    other_events: u64,
    cells: Hashes,
}

impl Tally for Activity {
    fn merge(&mut self, other: &Self) {
        self.outgoing_calls += other.outgoing_calls;
        self.other_events += other.other_events;
        self.cells.merge(&other.cells);
    }

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.outgoing_calls.to_le_bytes());
        out.extend_from_slice(&self.other_events.to_le_bytes());
        self.cells.encode(out);
    }

    fn decode(bytes: &mut &[u8]) -> Option<Self> {
        Some(Activity {
            outgoing_calls: read_u64(bytes)?,
            other_events: read_u64(bytes)?,
            cells: Hashes::decode(bytes)?,
        })
    }
}

pub struct SimBox {
    config: SimBoxConfig,
    hours: Buckets<Activity>,
}

impl SimBox {
    pub fn new(config: SimBoxConfig) -> SimBox {
        SimBox {
            config,
            hours: Buckets::new(SIM_BOX_HOURS, HOUR_MS, 1),
        }
    }
}

impl StatefulRule for SimBox {
    fn tallies(&mut self) -> &mut dyn TallyState {
        &mut self.hours
    }

    fn observe(
        &mut self,
        placed: &Placed<'_>,
        state: &mut dyn StateReader,
        found: &mut Vec<Finding>,
    ) -> Result<(), ReadError> {
        let r = placed.record;
        let c = self.config;
        let outgoing_call = r.kind == Kind::Voice && r.direction == Direction::Outgoing;
        if !outgoing_call && !matches!(r.kind, Kind::Voice | Kind::Sms | Kind::Data) {
            return Ok(()); // recharges and activations say nothing either way
        }
        self.hours.saw(r.start_time);
        let hour = self.hours.bucket_of(r.start_time);
        let entry = self.hours.entry(hour, r.msisdn.to_bits(), state)?;
        if !outgoing_call {
            if entry.total().other_events == 0 {
                entry.add(&Activity {
                    other_events: 1,
                    ..Activity::default()
                });
            }
            return Ok(());
        }
        let mut change = Activity {
            outgoing_calls: 1,
            ..Activity::default()
        };
        if let Some(cell) = r.cell_id.as_deref() {
            let cell = stable_hash(&[cell.as_bytes()]);
            let cells = &entry.total().cells;
            if cells.len() <= c.max_cells as usize && !cells.contains(cell) {
                change.cells = Hashes::of(cell);
            }
        }
        entry.add(&change);
        let seen = entry.total();
        if seen.outgoing_calls == u64::from(c.above) + 1
            && seen.other_events == 0
            && seen.cells.len() <= c.max_cells as usize
        {
            found.push(Finding {
                rule: "sim_box",
                severity: c.severity,
                msisdn: None,
                identity: Identity::Span {
                    start: hour,
                    of: r.msisdn.to_string(),
                },
                evidence: format!(
                    "{} outgoing calls in the hour from {} from {} cell(s), no incoming call, SMS or data; more than {} from at most {} cell(s)",
                    seen.outgoing_calls,
                    format_timestamp(hour),
                    seen.cells.len(),
                    c.above,
                    c.max_cells
                ),
            });
        }
        Ok(())
    }
}
