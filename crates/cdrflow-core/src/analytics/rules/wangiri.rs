//! `wangiri` ("one ring and cut"): an international number rings many
//! subscribers for a second or two, hoping they call back a premium line.
//! Fired on the very short incoming call that brings the distinct
//! subscribers one number called in one hour (UTC, aligned) past the
//! threshold. The distinct count is exact: the set is kept only up to one
//! past the threshold, so it stays small without a sketch.

use super::tally::{Buckets, Hashes, TallyState};
use super::{Finding, Identity, Placed, StatefulRule, WangiriConfig};
use crate::model::{Direction, Kind};
use crate::normalize::{format_timestamp, CountryCode};
use crate::operator::{ReadError, StateKind, StateReader, StateTable};

/// Per-hour subscribers called per international number.
pub const WANGIRI_HOURS: StateTable = StateTable {
    name: "wangiri_hours",
    kind: StateKind::Spans,
};

const HOUR_MS: i64 = 3_600_000;

pub struct Wangiri {
    config: WangiriConfig,
    home: CountryCode,
    hours: Buckets<Hashes>,
}

impl Wangiri {
    pub fn new(config: WangiriConfig, home: CountryCode) -> Wangiri {
        Wangiri {
            config,
            home,
            hours: Buckets::new(WANGIRI_HOURS, HOUR_MS, 1),
        }
    }
}

impl StatefulRule for Wangiri {
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
        let Some(caller) = r.other_party else {
            return Ok(());
        };
        if r.kind != Kind::Voice
            || r.direction != Direction::Incoming
            || r.usage.duration_sec > c.max_duration_sec
            || self.home.holds(caller)
        {
            return Ok(());
        }
        self.hours.saw(r.start_time);
        let hour = self.hours.bucket_of(r.start_time);
        let entry = self.hours.entry(hour, caller.to_bits(), state)?;
        let callee = r.msisdn.to_bits();
        let called = entry.total();
        if called.len() > c.above as usize || called.contains(callee) {
            return Ok(());
        }
        entry.add(&Hashes::of(callee));
        let distinct = entry.total().len();
        if distinct == c.above as usize + 1 {
            found.push(Finding {
                rule: "wangiri",
                severity: c.severity,
                msisdn: Some(caller),
                identity: Identity::Span {
                    start: hour,
                    of: caller.to_string(),
                },
                evidence: format!(
                    "{distinct} subscribers called in the hour from {}, each for at most {} s; more than {}",
                    format_timestamp(hour),
                    c.max_duration_sec,
                    c.above
                ),
            });
        }
        Ok(())
    }
}
